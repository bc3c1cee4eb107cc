//! External messages: what a broker carries (headers, a text and/or bytes payload, a content
//! type). Mappers turn them into Ditto Protocol messages and back.

use crate::headers::Headers;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExternalMessage {
    /// Transport headers (AMQP properties and application properties, MQTT 5 user properties,
    /// `mqtt.topic`/`mqtt.qos`/`mqtt.retain`, ...), case-insensitive; values are strings.
    pub headers: Headers,
    pub text: Option<String>,
    pub bytes: Option<Vec<u8>>,
    pub content_type: Option<String>,
}

impl ExternalMessage {
    pub fn text(text: impl Into<String>) -> ExternalMessage {
        ExternalMessage {
            text: Some(text.into()),
            ..ExternalMessage::default()
        }
    }

    pub fn bytes(bytes: impl Into<Vec<u8>>) -> ExternalMessage {
        ExternalMessage {
            bytes: Some(bytes.into()),
            ..ExternalMessage::default()
        }
    }

    /// The payload as bytes: the bytes if set (they win over text, as in Ditto), else the text.
    pub fn payload(&self) -> &[u8] {
        match (&self.bytes, &self.text) {
            (Some(b), _) => b,
            (None, Some(t)) => t.as_bytes(),
            (None, None) => &[],
        }
    }

    /// The payload as text: the text if set, else the bytes when they are UTF-8.
    pub fn payload_text(&self) -> Option<&str> {
        match (&self.text, &self.bytes) {
            (Some(t), _) => Some(t),
            (None, Some(b)) => std::str::from_utf8(b).ok(),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_views() {
        let t = ExternalMessage::text("hi");
        assert_eq!(t.payload(), b"hi");
        assert_eq!(t.payload_text(), Some("hi"));
        let b = ExternalMessage::bytes(vec![0xff, 0x00]);
        assert_eq!(b.payload(), &[0xff, 0x00]);
        assert_eq!(b.payload_text(), None);
        let both = ExternalMessage {
            text: Some("t".into()),
            bytes: Some(b"b".to_vec()),
            ..Default::default()
        };
        assert_eq!(both.payload(), b"b");
    }
}
