//! Broker URIs: `scheme://[user[:password]@]host[:port][/path]`, user and password URL-encoded.

use crate::{ErrorKind, TransportError};
use percent_encoding::percent_decode_str;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUri {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// `amqps`, `ssl`: TLS.
    pub secure: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The path without its leading `/`, URL-decoded (the AMQP 0.9.1 vhost); empty when none.
    pub path: String,
}

fn misconfigured(message: String) -> TransportError {
    TransportError::new(ErrorKind::Misconfigured, message)
}

fn decode(s: &str) -> Result<String, TransportError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| misconfigured("the URI's user or password is not URL-encoded UTF-8".into()))
}

impl BrokerUri {
    pub fn parse(uri: &str) -> Result<BrokerUri, TransportError> {
        let url = url::Url::parse(uri)
            .map_err(|e| misconfigured(format!("the connection URI is not valid: {e}")))?;
        let scheme = url.scheme().to_string();
        let (secure, default_port) = match scheme.as_str() {
            "amqp" => (false, 5672),
            "amqps" => (true, 5671),
            "tcp" => (false, 1883),
            "ssl" => (true, 8883),
            other => {
                return Err(misconfigured(format!(
                    "the URI scheme '{other}' is not supported"
                )));
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| misconfigured("the connection URI has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let username = match url.username() {
            "" => None,
            u => Some(decode(u)?),
        };
        let password = url.password().map(decode).transpose()?;
        let path = decode(url.path().trim_start_matches('/'))?;
        Ok(BrokerUri {
            scheme,
            host,
            port: url.port().unwrap_or(default_port),
            secure,
            username,
            password,
            path,
        })
    }

    /// `host:port`, for messages (never the credentials).
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_decodes() {
        let u = BrokerUri::parse("amqp://us%40er:p%3Ass@broker.example:5673/%2fvhost").unwrap();
        assert_eq!(u.username.as_deref(), Some("us@er"));
        assert_eq!(u.password.as_deref(), Some("p:ss"));
        assert_eq!(u.host, "broker.example");
        assert_eq!(u.port, 5673);
        assert_eq!(u.path, "/vhost");
        assert!(!u.secure);
        let u = BrokerUri::parse("ssl://h").unwrap();
        assert_eq!((u.port, u.secure, u.username.clone()), (8883, true, None));
        assert_eq!(BrokerUri::parse("tcp://127.0.0.1").unwrap().port, 1883);
        assert_eq!(BrokerUri::parse("amqps://h").unwrap().port, 5671);
        assert_eq!(BrokerUri::parse("amqp://h/").unwrap().path, "");
        assert_eq!(
            BrokerUri::parse("http://h").unwrap_err().kind,
            ErrorKind::Misconfigured
        );
        assert!(BrokerUri::parse("nonsense").is_err());
    }
}
