//! A connection's `specificConfig` values, read the same way by every protocol: a value that
//! does not parse is a misconfiguration that names the key.

use crate::{ClientConfig, ErrorKind, TransportError};

pub(crate) fn invalid(key: &str, value: &str) -> TransportError {
    TransportError::new(
        ErrorKind::Misconfigured,
        format!("Invalid value '{value}' for configuration '{key}'"),
    )
}

/// `true`/`false` (any case); absent is `false`.
pub(crate) fn parse_bool(config: &ClientConfig, key: &str) -> Result<bool, TransportError> {
    match config.specific_config.get(key).map(|v| v.trim()) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(invalid(key, v)),
    }
}

pub(crate) fn parse_num<T: std::str::FromStr>(
    config: &ClientConfig,
    key: &str,
) -> Result<Option<T>, TransportError> {
    config
        .specific_config
        .get(key)
        .map(|v| v.trim().parse::<T>().map_err(|_| invalid(key, v)))
        .transpose()
}

/// A size in bytes (a maximum packet or frame size): a whole number within `range`; absent is
/// `default`. A value that is not a number, or outside the range, is a misconfiguration that
/// names the key and the range.
pub(crate) fn parse_size(
    config: &ClientConfig,
    key: &str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, TransportError> {
    let Some(raw) = config.specific_config.get(key) else {
        return Ok(default);
    };
    match raw.trim().parse::<u32>() {
        Ok(size) if range.contains(&size) => Ok(size),
        _ => Err(TransportError::new(
            ErrorKind::Misconfigured,
            format!(
                "Invalid value '{raw}' for configuration '{key}': a size in bytes from {} to {} \
                 is expected",
                range.start(),
                range.end()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Protocol;
    use std::time::Duration;

    fn config(key: &str, value: &str) -> ClientConfig {
        ClientConfig {
            connection_id: "c".into(),
            client_index: 0,
            protocol: Protocol::Mqtt5,
            uri: "tcp://h".into(),
            validate_certificates: true,
            ca: None,
            client_cert: None,
            specific_config: [(key.to_string(), value.to_string())].into_iter().collect(),
            sources: vec![],
            targets: vec![],
            connect_timeout: Duration::from_secs(1),
            max_in_flight: 1,
            dry_run: false,
        }
    }

    #[test]
    fn sizes_are_numbers_within_their_range() {
        let range = 512..=1024;
        assert_eq!(
            parse_size(&config("x", "1"), "size", 700, range.clone()),
            Ok(700)
        );
        assert_eq!(
            parse_size(&config("size", " 512 "), "size", 700, range.clone()),
            Ok(512)
        );
        assert_eq!(
            parse_size(&config("size", "1024"), "size", 700, range.clone()),
            Ok(1024)
        );
        for bad in ["1025", "511", "-1", "1k", "", "4294967296"] {
            let e = parse_size(&config("size", bad), "size", 700, range.clone()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Misconfigured, "{bad}");
            assert!(e.message.contains("'size'"), "{}", e.message);
            assert!(e.message.contains("512 to 1024"), "{}", e.message);
        }
    }
}
