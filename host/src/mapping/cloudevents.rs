//! The `CloudEvents` mapper (spec §6.2): Ditto Protocol messages carried in CloudEvents 1.0.
//!
//! Inbound, both modes: *structured* (`content-type: application/cloudevents+json`, the Ditto
//! Protocol message in `data`, or base64 in `data_base64`) and *binary* (`ce-specversion`,
//! `ce-id`, `ce-source`, `ce-type` headers; the payload is the Ditto Protocol message).
//! The required attributes `specversion`, `id`, `source` and `type` must be present.
//! Outbound: a structured event: `specversion` 1.0, `id` (the correlation id, else a new UUID),
//! `source` (`ditto:<namespace>:<name>` of the entity), `type` (`org.eclipse.ditto.<group>.
//! <criterion>[.<action>]`), `time` (the event's timestamp, when it has one), `datacontenttype`
//! and `data`: the Ditto Protocol message.

use super::Mapper;
use super::ditto::DittoMapper;
use base64::Engine;
use ferrule_protocol::{DittoMessage, ExternalMessage, ProtocolError};
use serde_json::{Map, Value, json};

pub const STRUCTURED: &str = "application/cloudevents+json";
const REQUIRED: [&str; 4] = ["specversion", "id", "source", "type"];

pub struct CloudEventsMapper;

fn invalid(message: impl Into<String>) -> ProtocolError {
    ProtocolError::new(
        400,
        "connectivity:message.mapping.failed",
        message,
        "Send a CloudEvent 1.0 with specversion, id, source and type, whose data is a Ditto Protocol message.",
    )
}

fn media_type(m: &ExternalMessage) -> Option<String> {
    m.content_type
        .clone()
        .or_else(|| m.headers.get_str("content-type"))
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

impl Mapper for CloudEventsMapper {
    fn map_inbound(&self, m: &ExternalMessage) -> Result<Vec<DittoMessage>, ProtocolError> {
        if media_type(m).as_deref() == Some(STRUCTURED) {
            let text = m
                .payload_text()
                .ok_or_else(|| invalid("The structured CloudEvent is not UTF-8 text."))?;
            let event: Map<String, Value> = serde_json::from_str(text).map_err(|e| {
                invalid(format!(
                    "The structured CloudEvent is not a JSON object: {e}"
                ))
            })?;
            if let Some(missing) = REQUIRED.iter().find(|k| !event.contains_key(**k)) {
                return Err(invalid(format!(
                    "The CloudEvent has no '{missing}' attribute."
                )));
            }
            let data = match (event.get("data"), event.get("data_base64")) {
                (Some(Value::Object(o)), _) => Value::Object(o.clone()),
                (Some(Value::String(s)), _) => serde_json::from_str(s)
                    .map_err(|e| invalid(format!("The CloudEvent's data is not JSON: {e}")))?,
                (None, Some(Value::String(b))) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .map_err(|e| invalid(format!("data_base64 is not base64: {e}")))?;
                    serde_json::from_slice(&bytes)
                        .map_err(|e| invalid(format!("The CloudEvent's data is not JSON: {e}")))?
                }
                _ => {
                    return Err(invalid(
                        "The CloudEvent has no Ditto Protocol message in 'data'.",
                    ));
                }
            };
            let Value::Object(data) = data else {
                return Err(invalid("The CloudEvent's data is not a JSON object."));
            };
            return Ok(vec![DittoMessage::from_json(data)?]);
        }
        if let Some(missing) = REQUIRED
            .iter()
            .find(|k| !m.headers.contains(&format!("ce-{k}")))
        {
            return Err(invalid(format!(
                "The message is neither a structured CloudEvent ({STRUCTURED}) nor a binary one: the header 'ce-{missing}' is missing."
            )));
        }
        DittoMapper.map_inbound(m)
    }

    fn map_outbound(&self, m: &DittoMessage) -> Result<Vec<ExternalMessage>, ProtocolError> {
        let t = &m.topic;
        let mut kind = format!(
            "org.eclipse.ditto.{}.{}",
            t.group.as_str(),
            t.criterion.as_str()
        );
        if let Some(a) = &t.action {
            kind.push('.');
            kind.push_str(a);
        }
        let mut event = json!({
            "specversion": "1.0",
            "id": m.headers.correlation_id().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            "source": format!("ditto:{}:{}", t.namespace, t.name),
            "type": kind,
            "datacontenttype": ferrule_protocol::CONTENT_TYPE,
            "data": Value::Object(m.to_json()),
        });
        if let Some(ts) = &m.timestamp {
            event["time"] = Value::from(ts.clone());
        }
        let mut out = ExternalMessage::text(event.to_string());
        out.content_type = Some(STRUCTURED.to_string());
        out.headers.insert("content-type", STRUCTURED);
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DITTO: &str =
        r#"{"topic":"org.acme/t/things/twin/commands/modify","path":"/attributes/a","value":1}"#;

    #[test]
    fn structured_and_binary_inbound() {
        let mut structured = ExternalMessage::text(
            json!({"specversion": "1.0", "id": "1", "source": "/dev", "type": "t",
                   "data": serde_json::from_str::<Value>(DITTO).unwrap()})
            .to_string(),
        );
        structured.content_type = Some("application/cloudevents+json; charset=utf-8".into());
        let out = CloudEventsMapper.map_inbound(&structured).unwrap();
        assert_eq!(
            out[0].topic.to_string(),
            "org.acme/t/things/twin/commands/modify"
        );

        let b64 = base64::engine::general_purpose::STANDARD.encode(DITTO);
        let mut encoded = ExternalMessage::text(
            json!({"specversion": "1.0", "id": "1", "source": "/dev", "type": "t", "data_base64": b64}).to_string(),
        );
        encoded.content_type = Some(STRUCTURED.into());
        assert_eq!(CloudEventsMapper.map_inbound(&encoded).unwrap().len(), 1);

        let mut binary = ExternalMessage::text(DITTO);
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/d"),
            ("ce-type", "t"),
        ] {
            binary.headers.insert(k, v);
        }
        assert_eq!(CloudEventsMapper.map_inbound(&binary).unwrap().len(), 1);

        let e = CloudEventsMapper
            .map_inbound(&ExternalMessage::text(DITTO))
            .unwrap_err();
        assert!(e.message.contains("ce-specversion"));
        let mut no_id = ExternalMessage::text(
            json!({"specversion": "1.0", "source": "s", "type": "t", "data": {}}).to_string(),
        );
        no_id.content_type = Some(STRUCTURED.into());
        assert!(
            CloudEventsMapper
                .map_inbound(&no_id)
                .unwrap_err()
                .message
                .contains("'id'")
        );
    }

    #[test]
    fn structured_outbound() {
        let m = DittoMessage::from_json_str(
            r#"{"topic":"org.acme/t/things/twin/events/modified","headers":{"correlation-id":"c-1"},"path":"/attributes/a","value":1,"revision":2,"timestamp":"2026-11-25T12:00:00.000Z"}"#,
        )
        .unwrap();
        let out = CloudEventsMapper.map_outbound(&m).unwrap();
        assert_eq!(out[0].content_type.as_deref(), Some(STRUCTURED));
        let event: Value = serde_json::from_str(out[0].text.as_deref().unwrap()).unwrap();
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["id"], "c-1");
        assert_eq!(event["source"], "ditto:org.acme:t");
        assert_eq!(event["type"], "org.eclipse.ditto.things.events.modified");
        assert_eq!(event["time"], "2026-11-25T12:00:00.000Z");
        assert_eq!(event["data"]["revision"], 2);
        // And back: what it writes, it reads.
        let mut back = ExternalMessage::text(out[0].text.clone().unwrap());
        back.content_type = out[0].content_type.clone();
        assert_eq!(CloudEventsMapper.map_inbound(&back).unwrap()[0], m);
    }
}
