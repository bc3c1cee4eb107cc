//! Between the host's model (`ferrule-protocol`) and the records of the WIT world.

use crate::bindings;
use ferrule_protocol::headers::{header_value_from_string, value_to_header_string};
use ferrule_protocol::{DittoMessage, ExternalMessage, Headers, ProtocolError, Topic};
use serde_json::Value;

fn headers_out(headers: &Headers) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| (k.to_string(), value_to_header_string(v)))
        .collect()
}

/// Transport headers: strings on both sides.
fn external_headers_in(headers: Vec<(String, String)>) -> Headers {
    let mut out = Headers::new();
    for (k, v) in headers {
        out.insert(k, Value::String(v));
    }
    out
}

/// Ditto headers: `true`/`false` and JSON arrays/objects become JSON again, as the SDK does.
fn ditto_headers_in(headers: Vec<(String, String)>) -> Headers {
    let mut out = Headers::new();
    for (k, v) in headers {
        out.insert(k, header_value_from_string(&v));
    }
    out
}

pub fn external_to_wit(m: &ExternalMessage) -> bindings::ExternalMessage {
    bindings::ExternalMessage {
        headers: headers_out(&m.headers),
        text_payload: m.text.clone(),
        bytes_payload: m.bytes.clone(),
        content_type: m.content_type.clone(),
    }
}

pub fn external_from_wit(m: bindings::ExternalMessage) -> ExternalMessage {
    ExternalMessage {
        headers: external_headers_in(m.headers),
        text: m.text_payload,
        bytes: m.bytes_payload,
        content_type: m.content_type,
    }
}

pub fn ditto_to_wit(m: &DittoMessage) -> bindings::DittoMessage {
    bindings::DittoMessage {
        topic: m.topic.to_string(),
        headers: headers_out(&m.headers),
        path: m.path.clone(),
        value: m.value.as_ref().map(Value::to_string),
        status: m.status,
        extra: m.extra.as_ref().map(Value::to_string),
        revision: m.revision,
        timestamp: m.timestamp.clone(),
        fields: m.fields.clone(),
    }
}

fn json_field(field: &str, text: Option<String>) -> Result<Option<Value>, ProtocolError> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| {
            ProtocolError::mapping_failed(
                format!("The mapper returned a Ditto message whose <{field}> is not JSON: {e}."),
                "A ditto-message carries JSON text in value and extra (e.g. \"21.5\" or \"{\\\"a\\\":1}\"; a string is \"\\\"text\\\"\").",
            )
        })
    })
    .transpose()
}

pub fn ditto_from_wit(m: bindings::DittoMessage) -> Result<DittoMessage, ProtocolError> {
    let topic = Topic::parse(&m.topic).map_err(|e| {
        ProtocolError::mapping_failed(
            format!(
                "The mapper returned a Ditto message with an invalid topic <{}>.",
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
    Ok(DittoMessage {
        topic,
        headers: ditto_headers_in(m.headers),
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
