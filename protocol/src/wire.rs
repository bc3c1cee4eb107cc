//! The records of `wit/mapper.wit` (interface `types`) as plain Rust structs, and their
//! conversion to and from the model of this crate: the one place of the rules at the WebAssembly
//! boundary. The SDK's guest bindings use these structs directly (wit-bindgen's `with`); the
//! host moves its generated records into them. The rules:
//!
//! - Ditto header values that are JSON strings cross as the string itself, other JSON values
//!   (booleans, arrays, objects, numbers) as their JSON text. Coming back, a header value
//!   `true`/`false`, or one that starts with `[` or `{` and is valid JSON, becomes that JSON
//!   value; every other value stays a string (so a correlation id `"42"` stays a string).
//! - External message headers are strings on both sides.
//! - `value` and `extra` cross as JSON text; `topic` as its string form.
//! - `metadata` is not in the WIT record: it is dropped.

use crate::error::ProtocolError;
use crate::headers::{header_value_from_owned, value_into_header_string, value_to_header_string};
use crate::{DittoMessage as Ditto, ExternalMessage as External, Headers as ModelHeaders, Topic};
use serde_json::Value;
/// `type headers = list<tuple<string, string>>`
pub type Headers = Vec<(String, String)>;

/// `record external-message`
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExternalMessage {
    pub headers: Headers,
    pub text_payload: Option<String>,
    pub bytes_payload: Option<Vec<u8>>,
    pub content_type: Option<String>,
}

/// `record ditto-message`
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DittoMessage {
    pub topic: String,
    pub headers: Headers,
    pub path: String,
    pub value: Option<String>,
    pub status: Option<u16>,
    pub extra: Option<String>,
    pub revision: Option<u64>,
    pub timestamp: Option<String>,
    pub fields: Option<String>,
}

fn headers_to_wire(headers: &ModelHeaders) -> Headers {
    headers
        .iter()
        .map(|(k, v)| (k.to_string(), value_to_header_string(v)))
        .collect()
}

impl From<&External> for ExternalMessage {
    fn from(m: &External) -> ExternalMessage {
        ExternalMessage {
            headers: headers_to_wire(&m.headers),
            text_payload: m.text.clone(),
            bytes_payload: m.bytes.clone(),
            content_type: m.content_type.clone(),
        }
    }
}

impl From<ExternalMessage> for External {
    fn from(m: ExternalMessage) -> External {
        External {
            headers: m.headers.into_iter().collect(),
            text: m.text_payload,
            bytes: m.bytes_payload,
            content_type: m.content_type,
        }
    }
}

/// Owned: moves the strings instead of copying them (the guest's outputs).
impl From<Ditto> for DittoMessage {
    fn from(m: Ditto) -> DittoMessage {
        DittoMessage {
            topic: m.topic.to_text(),
            headers: m
                .headers
                .into_iter()
                .map(|(k, v)| (k, value_into_header_string(v)))
                .collect(),
            path: m.path,
            value: m.value.as_ref().map(json_text),
            status: m.status,
            extra: m.extra.as_ref().map(json_text),
            revision: m.revision,
            timestamp: m.timestamp,
            fields: m.fields,
        }
    }
}

/// Owned: moves the headers and payloads (the guest's outputs).
impl From<External> for ExternalMessage {
    fn from(m: External) -> ExternalMessage {
        ExternalMessage {
            headers: m
                .headers
                .into_iter()
                .map(|(k, v)| (k, value_into_header_string(v)))
                .collect(),
            text_payload: m.text,
            bytes_payload: m.bytes,
            content_type: m.content_type,
        }
    }
}

impl From<&Ditto> for DittoMessage {
    fn from(m: &Ditto) -> DittoMessage {
        DittoMessage {
            topic: m.topic.to_text(),
            headers: headers_to_wire(&m.headers),
            path: m.path.clone(),
            value: m.value.as_ref().map(json_text),
            status: m.status,
            extra: m.extra.as_ref().map(json_text),
            revision: m.revision,
            timestamp: m.timestamp.clone(),
            fields: m.fields.clone(),
        }
    }
}

/// JSON text, written directly into a buffer (`Value::to_string` goes through `fmt`, slower).
fn json_text(v: &Value) -> String {
    crate::json::to_string_sized(v, 128)
}

fn json_field(name: &str, text: Option<String>) -> Result<Option<Value>, ProtocolError> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| {
            ProtocolError::mapping_failed(
                format!("The <{name}> of the Ditto Protocol message is not JSON text: {e}"),
                "The value and extra fields cross the WebAssembly boundary as JSON text \
                 (e.g. 21.5, {\"a\":1}, or \"text\" with its quotes).",
            )
        })
    })
    .transpose()
}

impl TryFrom<DittoMessage> for Ditto {
    type Error = ProtocolError;

    fn try_from(m: DittoMessage) -> Result<Ditto, ProtocolError> {
        let topic = Topic::parse(&m.topic).map_err(|e| {
            ProtocolError::mapping_failed(
                format!(
                    "The Ditto Protocol message has an invalid topic <{}>.",
                    m.topic
                ),
                e.message,
            )
        })?;
        let path = if m.path.is_empty() {
            "/".to_string()
        } else if m.path.starts_with('/') {
            m.path
        } else {
            format!("/{}", m.path)
        };
        crate::message::check_path(&path)?;
        crate::message::check_fields(m.fields.as_deref())?;
        Ok(Ditto {
            topic,
            headers: m
                .headers
                .into_iter()
                .map(|(k, v)| (k, header_value_from_owned(v)))
                .collect(),
            path,
            value: json_field("value", m.value)?,
            status: m.status,
            extra: json_field("extra", m.extra)?,
            revision: m.revision,
            timestamp: m.timestamp,
            fields: m.fields,
            metadata: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ditto_messages_cross_and_come_back() {
        let original = Ditto::from_json(
            json!({
                "topic": "org.acme/sensor-1/things/twin/events/modified",
                "headers": {"correlation-id": "42", "response-required": false,
                            "requested-acks": ["twin-persisted"], "x-note": "[not json"},
                "path": "/features/env/properties/t",
                "value": {"a": [1, 2.5, "x"]},
                "extra": {"attributes": {"site": "b1"}},
                "revision": 7,
                "timestamp": "2024-01-01T00:00:00Z",
                "metadata": {"ignored": true}
            })
            .as_object()
            .unwrap()
            .clone(),
        )
        .unwrap();
        let wire = DittoMessage::from(&original);
        assert_eq!(wire.topic, "org.acme/sensor-1/things/twin/events/modified");
        assert_eq!(
            wire.headers,
            vec![
                ("correlation-id".to_string(), "42".to_string()),
                ("response-required".to_string(), "false".to_string()),
                (
                    "requested-acks".to_string(),
                    "[\"twin-persisted\"]".to_string()
                ),
                ("x-note".to_string(), "[not json".to_string()),
            ]
        );
        assert_eq!(wire.value.as_deref(), Some(r#"{"a":[1,2.5,"x"]}"#));
        assert_eq!(
            DittoMessage::from(original.clone()),
            wire,
            "owned = borrowed"
        );
        let back = Ditto::try_from(wire).unwrap();
        let mut expected = original.clone();
        expected.metadata = None;
        assert_eq!(back, expected);
        assert_eq!(back.headers.get("correlation-id"), Some(&json!("42")));
    }

    #[test]
    fn bad_records_are_mapping_errors() {
        let wire = DittoMessage {
            topic: "a/b/c".into(),
            ..Default::default()
        };
        let e = Ditto::try_from(wire).unwrap_err();
        assert!(e.message.contains("a/b/c"), "{e}");
        let wire = DittoMessage {
            topic: "a/b/things/twin/commands/modify".into(),
            path: "attributes".into(),
            value: Some("{".into()),
            ..Default::default()
        };
        let e = Ditto::try_from(wire).unwrap_err();
        assert!(e.message.contains("<value>"), "{e}");
        let wire = DittoMessage {
            topic: "a/b/things/twin/commands/modify".into(),
            path: "attributes".into(),
            ..Default::default()
        };
        assert_eq!(Ditto::try_from(wire).unwrap().path, "/attributes");
    }

    #[test]
    fn external_messages_cross_and_come_back() {
        let mut m = External::bytes(vec![1, 2, 3]);
        m.headers.insert("mqtt.topic", "devices/d1/up");
        m.headers.insert("qos", 1);
        m.content_type = Some("application/octet-stream".into());
        let wire = ExternalMessage::from(&m);
        assert_eq!(ExternalMessage::from(m.clone()), wire, "owned = borrowed");
        assert_eq!(wire.headers[1], ("qos".to_string(), "1".to_string()));
        let back = External::from(wire);
        assert_eq!(back.headers.get_str("qos").as_deref(), Some("1"));
        assert_eq!(back.bytes, m.bytes);
        assert_eq!(back.content_type, m.content_type);
        assert_eq!(back.text, None);
    }
}
