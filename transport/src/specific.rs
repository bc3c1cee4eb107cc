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
