//! The `RawMessage` mapper (spec §6.2): a raw payload becomes a live message of a thing, and a
//! live message is published as its raw payload. Everything else goes through the Ditto mapper.

use super::Mapper;
use super::ditto::DittoMapper;
use base64::Engine;
use ferrule_placeholders::{Resolution, Resolver, Template};
use ferrule_protocol::{
    CONTENT_TYPE as DITTO_CONTENT_TYPE, Channel, Criterion, DittoMessage, ExternalMessage, Group,
    Headers, ProtocolError, Topic,
};
use serde_json::{Map, Value};

const DEFAULT_HEADERS: [(&str, &str); 6] = [
    (
        "content-type",
        "{{ header:content-type | fn:default('application/octet-stream') }}",
    ),
    (
        "ditto-message-subject",
        "{{ header:ditto-message-subject }}",
    ),
    (
        "ditto-message-thing-id",
        "{{ header:ditto-message-thing-id }}",
    ),
    ("ditto-message-direction", "TO"),
    (
        "ditto-message-feature-id",
        "{{ header:ditto-message-feature-id }}",
    ),
    ("status", "{{ header:status }}"),
];

pub struct RawMessageMapper {
    outgoing_content_type: String,
    incoming: Vec<(String, Template)>,
}

fn is_text(content_type: &str) -> bool {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    ct.starts_with("text/") || ct == "application/json" || ct.ends_with("+json")
}

fn is_json(content_type: &str) -> bool {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    ct == "application/json" || (ct.ends_with("+json") && ct != DITTO_CONTENT_TYPE)
}

fn failed(message: impl Into<String>) -> ProtocolError {
    ProtocolError::new(
        400,
        "connectivity:message.mapping.failed",
        message,
        "Set the headers the RawMessage mapper needs (ditto-message-thing-id, ditto-message-subject), or configure them in its option 'incomingMessageHeaders'.",
    )
}

struct HeaderResolver<'a>(&'a Headers);

impl Resolver for HeaderResolver<'_> {
    fn resolve(&self, prefix: &str, name: &str) -> Option<Vec<String>> {
        (prefix == "header").then(|| self.0.get_str(name).map(|v| vec![v]))?
    }
}

impl RawMessageMapper {
    pub fn new(options: &Map<String, Value>) -> Result<RawMessageMapper, String> {
        let outgoing_content_type = match options.get("outgoingContentType") {
            None | Some(Value::Null) => "text/plain; charset=UTF-8".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err("The option 'outgoingContentType' must be a string.".into()),
        };
        let mut templates: Vec<(String, String)> = DEFAULT_HEADERS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match options.get("incomingMessageHeaders") {
            None | Some(Value::Null) => {}
            Some(Value::Object(o)) => {
                for (k, v) in o {
                    let v = v.as_str().ok_or_else(|| {
                        format!("The incoming message header '{k}' must be a string.")
                    })?;
                    match templates
                        .iter_mut()
                        .find(|(key, _)| key.eq_ignore_ascii_case(k))
                    {
                        Some(entry) => entry.1 = v.to_string(),
                        None => templates.push((k.clone(), v.to_string())),
                    }
                }
            }
            Some(_) => return Err("The option 'incomingMessageHeaders' must be an object.".into()),
        }
        let incoming = templates
            .into_iter()
            .map(|(k, v)| Template::parse(&v).map(|t| (k, t)).map_err(|e| e.message))
            .collect::<Result<_, _>>()?;
        Ok(RawMessageMapper {
            outgoing_content_type,
            incoming,
        })
    }
}

impl Mapper for RawMessageMapper {
    fn map_inbound(&self, message: &ExternalMessage) -> Result<Vec<DittoMessage>, ProtocolError> {
        let content_type = message
            .content_type
            .clone()
            .or_else(|| message.headers.get_str("content-type"));
        if content_type
            .as_deref()
            .is_some_and(|ct| ct.split(';').next().unwrap_or("").trim() == DITTO_CONTENT_TYPE)
        {
            return DittoMapper.map_inbound(message);
        }
        let resolver = HeaderResolver(&message.headers);
        let mut resolved = Headers::new();
        for (k, t) in &self.incoming {
            if let Resolution::Resolved(v) = t.resolve(&resolver)
                && let Some(v) = v.into_iter().next().filter(|v| !v.is_empty())
            {
                resolved.insert(k.clone(), v);
            }
        }
        let thing_id = resolved
            .get_str("ditto-message-thing-id")
            .ok_or_else(|| failed("The header 'ditto-message-thing-id' is missing."))?;
        let (namespace, name) = thing_id
            .split_once(':')
            .ok_or_else(|| failed(format!("The thing ID '{thing_id}' is not namespace:name.")))?;
        let subject = resolved
            .get_str("ditto-message-subject")
            .ok_or_else(|| failed("The header 'ditto-message-subject' is missing."))?;
        let direction = match resolved.get_str("ditto-message-direction").as_deref() {
            Some("FROM") => "outbox",
            _ => "inbox",
        };
        let path = match resolved.get_str("ditto-message-feature-id") {
            Some(f) => format!("/features/{f}/{direction}/messages/{subject}"),
            None => format!("/{direction}/messages/{subject}"),
        };
        let ct = resolved
            .get_str("content-type")
            .unwrap_or_else(|| "application/octet-stream".into());
        let value = if is_json(&ct) {
            let text = message.payload_text().unwrap_or_default();
            serde_json::from_str(text).unwrap_or_else(|_| Value::from(text))
        } else if is_text(&ct) {
            Value::from(message.payload_text().unwrap_or_default())
        } else {
            Value::from(base64::engine::general_purpose::STANDARD.encode(message.payload()))
        };
        let mut m = DittoMessage::new(
            Topic {
                namespace: namespace.into(),
                name: name.into(),
                group: Group::Things,
                channel: Some(Channel::Live),
                criterion: Criterion::Messages,
                action: Some(subject),
            },
            path,
        );
        m.status = resolved.get_str("status").and_then(|s| s.parse().ok());
        for (k, v) in resolved.iter() {
            if k != "status" {
                m.headers.insert(k, v.clone());
            }
        }
        if let Some(c) = message.headers.correlation_id() {
            m.headers.insert("correlation-id", c);
        }
        m.value = Some(value);
        Ok(vec![m])
    }

    fn map_outbound(&self, m: &DittoMessage) -> Result<Vec<ExternalMessage>, ProtocolError> {
        if m.topic.criterion != Criterion::Messages {
            return DittoMapper.map_outbound(m);
        }
        let ct = m
            .headers
            .get_str("content-type")
            .unwrap_or_else(|| self.outgoing_content_type.clone());
        let mut out = match &m.value {
            None | Some(Value::Null) => ExternalMessage::default(),
            Some(Value::String(s)) if !is_text(&ct) => {
                match base64::engine::general_purpose::STANDARD.decode(s) {
                    Ok(bytes) => ExternalMessage::bytes(bytes),
                    Err(_) => ExternalMessage::text(s.clone()),
                }
            }
            Some(Value::String(s)) => ExternalMessage::text(s.clone()),
            Some(other) => ExternalMessage::text(other.to_string()),
        };
        out.content_type = Some(ct.clone());
        out.headers.insert("content-type", ct);
        if let Some(s) = m.status {
            out.headers.insert("status", s.to_string());
        }
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapper() -> RawMessageMapper {
        RawMessageMapper::new(&Map::new()).unwrap()
    }

    #[test]
    fn the_spec_example_both_ways() {
        let mut inbound = ExternalMessage::bytes(vec![1, 2, 3, 4, 5, 6]);
        for (k, v) in [
            ("content-type", "application/octet-stream"),
            ("status", "200"),
            ("ditto-message-subject", "heatUp"),
            ("ditto-message-direction", "TO"),
            ("ditto-message-thing-id", "org.eclipse.ditto:smartcoffee"),
            ("ditto-message-feature-id", "water-tank"),
        ] {
            inbound.headers.insert(k, v);
        }
        let m = &mapper().map_inbound(&inbound).unwrap()[0];
        assert_eq!(
            m.topic.to_string(),
            "org.eclipse.ditto/smartcoffee/things/live/messages/heatUp"
        );
        assert_eq!(m.path, "/features/water-tank/inbox/messages/heatUp");
        assert_eq!(m.value, Some(json!("AQIDBAUG")));
        assert_eq!(m.status, Some(200));
        let out = &mapper().map_outbound(m).unwrap()[0];
        assert_eq!(out.bytes.as_deref(), Some(&[1u8, 2, 3, 4, 5, 6][..]));
        assert_eq!(
            out.headers.get_str("content-type").as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(out.headers.get_str("status").as_deref(), Some("200"));
    }

    #[test]
    fn text_json_defaults_and_fallthrough() {
        let mut m = ExternalMessage::text(r#"{"on": true}"#);
        m.headers.insert("content-type", "application/json");
        m.headers.insert("ditto-message-thing-id", "a:b");
        m.headers.insert("ditto-message-subject", "toggle");
        let d = &mapper().map_inbound(&m).unwrap()[0];
        assert_eq!(d.path, "/inbox/messages/toggle");
        assert_eq!(d.value, Some(json!({"on": true})));
        assert_eq!(d.status, None);
        // Missing thing id: a mapping failure that says what is missing.
        let e = mapper()
            .map_inbound(&ExternalMessage::text("x"))
            .unwrap_err();
        assert!(e.message.contains("ditto-message-thing-id"));
        // Configured headers replace the defaults.
        let custom = RawMessageMapper::new(json!({"incomingMessageHeaders": {
            "ditto-message-thing-id": "org.acme:{{ header:device }}", "ditto-message-subject": "telemetry"}})
            .as_object().unwrap()).unwrap();
        let mut m = ExternalMessage::text("21.5");
        m.headers.insert("device", "d7");
        m.headers.insert("content-type", "text/plain");
        let d = &custom.map_inbound(&m).unwrap()[0];
        assert_eq!(
            d.topic.to_string(),
            "org.acme/d7/things/live/messages/telemetry"
        );
        assert_eq!(d.value, Some(json!("21.5")));
        // Ditto Protocol JSON falls through to the Ditto mapper, both ways.
        let mut ditto = ExternalMessage::text(
            r#"{"topic":"a/b/things/twin/commands/modify","path":"/attributes/x","value":1}"#,
        );
        ditto.headers.insert("content-type", DITTO_CONTENT_TYPE);
        assert_eq!(
            mapper().map_inbound(&ditto).unwrap()[0].topic.to_string(),
            "a/b/things/twin/commands/modify"
        );
        let event = DittoMessage::new(
            Topic::parse("a/b/things/twin/events/modified").unwrap(),
            "/",
        );
        assert_eq!(
            mapper().map_outbound(&event).unwrap()[0]
                .content_type
                .as_deref(),
            Some(DITTO_CONTENT_TYPE)
        );
        // A text message outbound with the default outgoing content type.
        let mut live = DittoMessage::new(
            Topic::parse("a/b/things/live/messages/hi").unwrap(),
            "/outbox/messages/hi",
        );
        live.value = Some(json!("hello"));
        let out = &mapper().map_outbound(&live).unwrap()[0];
        assert_eq!(out.text.as_deref(), Some("hello"));
        assert_eq!(
            out.content_type.as_deref(),
            Some("text/plain; charset=UTF-8")
        );
    }
}
