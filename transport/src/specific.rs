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

/// A duration as Ditto reads one from `specificConfig` (Typesafe Config's `getDuration`): a
/// number, which may have a fraction, then a unit, blanks allowed between them: `ns`, `us`,
/// `ms`, `s`, `m`, `h`, `d` and their long forms (`nanos`, `micros`, `millis`, `milliseconds`,
/// `seconds`, `minute`, `hours`, `days`, ...). A bare number is counted in `bare` (Typesafe
/// Config counts it in milliseconds; the caller says what it does). Absent is `None`; a value
/// that is negative or does not parse is a misconfiguration that names the key.
pub(crate) fn parse_duration(
    config: &ClientConfig,
    key: &str,
    bare: std::time::Duration,
) -> Result<Option<std::time::Duration>, TransportError> {
    let Some(raw) = config.specific_config.get(key) else {
        return Ok(None);
    };
    duration(raw.trim(), bare)
        .map(Some)
        .ok_or_else(|| invalid(key, raw))
}

pub(crate) fn duration(text: &str, bare: std::time::Duration) -> Option<std::time::Duration> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim_start());
    if number.is_empty() || number.starts_with('.') {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let unit_secs = match unit {
        "" => bare.as_secs_f64(),
        "ns" | "nano" | "nanos" | "nanosecond" | "nanoseconds" => 1e-9,
        "us" | "micro" | "micros" | "microsecond" | "microseconds" => 1e-6,
        "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1e-3,
        "s" | "second" | "seconds" => 1.0,
        "m" | "minute" | "minutes" => 60.0,
        "h" | "hour" | "hours" => 3_600.0,
        "d" | "day" | "days" => 86_400.0,
        _ => return None,
    };
    std::time::Duration::try_from_secs_f64(number * unit_secs).ok()
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
        ClientConfig::for_test(Protocol::Mqtt5, "tcp://h", &[(key, value)])
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

    #[test]
    fn durations_are_read_as_ditto_reads_them() {
        let secs = Duration::from_secs(1);
        let read = |v: &str| parse_duration(&config("keepAlive", v), "keepAlive", secs);
        for (text, expected) in [
            ("60s", Duration::from_secs(60)),
            ("60 s", Duration::from_secs(60)),
            ("60 seconds", Duration::from_secs(60)),
            ("1m", Duration::from_secs(60)),
            ("1.5 minutes", Duration::from_secs(90)),
            ("2h", Duration::from_secs(7_200)),
            ("1d", Duration::from_secs(86_400)),
            ("500ms", Duration::from_millis(500)),
            ("250 millis", Duration::from_millis(250)),
            ("7us", Duration::from_micros(7)),
            ("9ns", Duration::from_nanos(9)),
            (" 30 ", Duration::from_secs(30)),
            ("0", Duration::ZERO),
        ] {
            assert_eq!(read(text).unwrap(), Some(expected), "{text}");
        }
        for bad in [
            "", "s", "-5s", "5 sec", "soon", "1e3s", ".5s", "5.s.", "PT5S",
        ] {
            let e = read(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Misconfigured, "{bad}");
            assert!(e.message.contains("'keepAlive'"), "{}", e.message);
        }
        let none = parse_duration(&config("other", "1s"), "keepAlive", secs).unwrap();
        assert_eq!(none, None);
    }
}
