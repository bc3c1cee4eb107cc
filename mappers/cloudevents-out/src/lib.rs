//! # cloudevents-out
//!
//! Outbound Ditto events → CloudEvents 1.0 in structured JSON mode
//! (content type `application/cloudevents+json`).
//!
//! ```json
//! {
//!   "source": "urn:acme:ditto:{namespace}",
//!   "typePrefix": "com.acme.thing",
//!   "data": "value",
//!   "eventsOnly": true
//! }
//! ```
//!
//! Every option is optional:
//! - `source` (default `urn:eclipse:ditto`): the CloudEvents `source`; `{namespace}`, `{name}`
//!   and `{thingId}` are replaced by the thing's.
//! - `typePrefix` (default `org.eclipse.ditto.thing`): `type` is `{typePrefix}.{action}` for
//!   events (`….modified`, `….merged`, `….created`, `….deleted`), and
//!   `{typePrefix}.{criterion}[.{action}]` for other messages.
//! - `data`: `value` (default) puts the event's value into `data` (`datacontenttype`
//!   `application/json`; no `data` when the event has no value, e.g. `deleted`); `message` puts
//!   the whole Ditto Protocol message (`datacontenttype` `application/vnd.eclipse.ditto+json`).
//! - `eventsOnly` (default `true`): messages that are not events (live messages, command
//!   responses, errors, …) are dropped; with `false` they are published too.
//!
//! The event: `specversion` `1.0`; `id`: `{thingId}:{revision}` when the event has a revision
//! (unique per thing and change), else the correlation id, else a hash of the message;
//! `subject`: the thing id; `time`: the event's timestamp (omitted when it has none: the mapper
//! has no clock); the extension attributes `dittopath` (the path) and `dittorevision`.
//!
//! Inbound this mapper keeps the SDK default: the payload is a Ditto Protocol message.

use ferrule_mapper_sdk::prelude::*;
use ferrule_mapper_sdk::{CONTENT_TYPE, Criterion};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The content type of a structured CloudEvent in JSON.
pub const STRUCTURED: &str = "application/cloudevents+json";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Options {
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    type_prefix: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    events_only: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Data {
    Value,
    Message,
}

pub struct CloudEventsOut {
    source: String,
    type_prefix: String,
    data: Data,
    events_only: bool,
}

/// FNV-1a, 64 bits: a stable id for messages without revision or correlation id.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Mapper for CloudEventsOut {
    fn new(options: &Map<String, Value>) -> Result<Self, MappingError> {
        let o: Options = ferrule_mapper_sdk::options::parse(options)?;
        let data = match o.data.as_deref() {
            None | Some("value") => Data::Value,
            Some("message") => Data::Message,
            Some(other) => {
                return Err(MappingError::invalid_options(format!(
                    "data <{other}> is neither 'value' nor 'message'."
                )));
            }
        };
        let source = o.source.unwrap_or_else(|| "urn:eclipse:ditto".into());
        if source.trim().is_empty() {
            return Err(MappingError::invalid_options("source must not be empty."));
        }
        let type_prefix = o
            .type_prefix
            .unwrap_or_else(|| "org.eclipse.ditto.thing".into())
            .trim_end_matches('.')
            .to_string();
        if type_prefix.is_empty() {
            return Err(MappingError::invalid_options(
                "typePrefix must not be empty.",
            ));
        }
        Ok(CloudEventsOut {
            source,
            type_prefix,
            data,
            events_only: o.events_only.unwrap_or(true),
        })
    }

    fn map_outbound(&self, message: &DittoMessage) -> Result<Vec<ExternalMessage>, MappingError> {
        let topic = &message.topic;
        let is_event = topic.criterion == Criterion::Events;
        if self.events_only && !is_event {
            log::debug(format!("Not an event, dropped (eventsOnly): {topic}"));
            return Ok(Vec::new());
        }
        let thing_id = topic.entity_id();
        let kind = match (&topic.action, is_event) {
            (Some(action), true) => format!("{}.{action}", self.type_prefix),
            (Some(action), false) => format!(
                "{}.{}.{}",
                self.type_prefix,
                topic.criterion.as_str(),
                action.replace('/', ".")
            ),
            (None, _) => format!("{}.{}", self.type_prefix, topic.criterion.as_str()),
        };
        let id = match (message.revision, message.headers.correlation_id()) {
            (Some(rev), _) => format!("{thing_id}:{rev}"),
            (None, Some(cid)) => cid,
            (None, None) => format!("{:016x}", fnv1a(message.to_json_string().as_bytes())),
        };
        let source = self
            .source
            .replace("{namespace}", &topic.namespace)
            .replace("{name}", &topic.name)
            .replace("{thingId}", &thing_id);

        let mut event = Map::new();
        event.insert("specversion".into(), "1.0".into());
        event.insert("id".into(), id.into());
        event.insert("source".into(), source.into());
        event.insert("type".into(), kind.into());
        event.insert("subject".into(), thing_id.into());
        if let Some(ts) = &message.timestamp {
            event.insert("time".into(), ts.clone().into());
        }
        event.insert("dittopath".into(), message.path.clone().into());
        if let Some(rev) = message.revision {
            event.insert("dittorevision".into(), rev.into());
        }
        match self.data {
            Data::Value => {
                if let Some(v) = &message.value {
                    event.insert("datacontenttype".into(), "application/json".into());
                    event.insert("data".into(), v.clone());
                }
            }
            Data::Message => {
                event.insert("datacontenttype".into(), CONTENT_TYPE.into());
                event.insert("data".into(), Value::Object(message.to_json()));
            }
        }
        let mut out = ExternalMessage::text(Value::Object(event).to_string());
        out.content_type = Some(STRUCTURED.to_string());
        out.headers.insert("content-type", STRUCTURED);
        Ok(vec![out])
    }

    // Inbound: the SDK's default, Ditto Protocol JSON.
}

ferrule_mapper_sdk::export!(CloudEventsOut);

#[cfg(test)]
mod tests {
    use super::*;
    use ferrule_mapper_sdk::testing::Harness;
    use serde_json::json;

    fn event() -> DittoMessage {
        ThingId::parse("org.acme:sensor-1")
            .unwrap()
            .event(EventAction::Modified, "/features/env/properties/t")
            .value(json!(21.5))
            .revision(42)
            .timestamp("2024-05-01T12:00:00Z")
            .correlation_id("c-1")
            .build()
    }

    fn published(out: &[ExternalMessage]) -> Value {
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].content_type.as_deref(), Some(STRUCTURED));
        assert_eq!(
            out[0].headers.get_str("content-type").as_deref(),
            Some(STRUCTURED)
        );
        serde_json::from_str(out[0].text.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn an_event_becomes_a_structured_cloudevent() {
        let mut h = Harness::<CloudEventsOut>::new(json!({})).unwrap();
        let ce = published(&h.outbound(event()).unwrap());
        assert_eq!(
            ce,
            json!({
                "specversion": "1.0",
                "id": "org.acme:sensor-1:42",
                "source": "urn:eclipse:ditto",
                "type": "org.eclipse.ditto.thing.modified",
                "subject": "org.acme:sensor-1",
                "time": "2024-05-01T12:00:00Z",
                "dittopath": "/features/env/properties/t",
                "dittorevision": 42,
                "datacontenttype": "application/json",
                "data": 21.5
            })
        );
    }

    #[test]
    fn the_readme_example() {
        let mut h = Harness::<CloudEventsOut>::new(json!({
            "module": "cloudevents-out", "source": "urn:acme:ditto:{namespace}", "typePrefix": "com.acme.thing"
        }))
        .unwrap();
        assert_eq!(
            published(&h.outbound(event()).unwrap()),
            json!({"specversion": "1.0", "id": "org.acme:sensor-1:42", "source": "urn:acme:ditto:org.acme",
                   "type": "com.acme.thing.modified", "subject": "org.acme:sensor-1",
                   "time": "2024-05-01T12:00:00Z", "dittopath": "/features/env/properties/t", "dittorevision": 42,
                   "datacontenttype": "application/json", "data": 21.5})
        );
    }

    #[test]
    fn options_shape_source_type_and_data() {
        let mut h = Harness::<CloudEventsOut>::new(json!({
            "source": "urn:acme:{namespace}/{name}", "typePrefix": "com.acme.thing.", "data": "message"
        }))
        .unwrap();
        let ce = published(&h.outbound(event()).unwrap());
        assert_eq!(ce["source"], "urn:acme:org.acme/sensor-1");
        assert_eq!(ce["type"], "com.acme.thing.modified");
        assert_eq!(ce["datacontenttype"], CONTENT_TYPE);
        let data = DittoMessage::from_json(ce["data"].as_object().unwrap().clone()).unwrap();
        assert_eq!(data, event());
    }

    #[test]
    fn ids_without_revision_and_events_without_value() {
        let mut h = Harness::<CloudEventsOut>::new(json!({})).unwrap();
        let deleted = ThingId::parse("a:b")
            .unwrap()
            .event(EventAction::Deleted, "/attributes/x")
            .correlation_id("c-7")
            .build();
        let ce = published(&h.outbound(&deleted).unwrap());
        assert_eq!(ce["id"], "c-7");
        assert_eq!(ce["type"], "org.eclipse.ditto.thing.deleted");
        assert!(ce.get("data").is_none() && ce.get("datacontenttype").is_none());
        assert!(ce.get("time").is_none() && ce.get("dittorevision").is_none());
        let mut bare = deleted.clone();
        bare.headers = Default::default();
        let a = published(&h.outbound(&bare).unwrap());
        let b = published(&h.outbound(&bare).unwrap());
        assert_eq!(a["id"], b["id"], "the hash id is stable");
        assert_eq!(a["id"].as_str().unwrap().len(), 16);
    }

    #[test]
    fn non_events_are_dropped_unless_asked_for() {
        let live = ThingId::parse("a:b")
            .unwrap()
            .live_message("heatUp/now", json!({"t": 90}))
            .correlation_id("m-1")
            .build();
        let mut h = Harness::<CloudEventsOut>::new(json!({})).unwrap();
        assert!(h.outbound(&live).unwrap().is_empty());
        assert!(h.logged("Not an event"));
        let mut h = Harness::<CloudEventsOut>::new(json!({"eventsOnly": false})).unwrap();
        let ce = published(&h.outbound(&live).unwrap());
        assert_eq!(ce["type"], "org.eclipse.ditto.thing.messages.heatUp.now");
        assert_eq!(ce["data"], json!({"t": 90}));
    }

    #[test]
    fn options_are_checked_and_inbound_is_the_default() {
        for (o, needle) in [
            (json!({"data": "all"}), "data <all>"),
            (json!({"source": " "}), "source must not be empty"),
            (json!({"typePrefix": "."}), "typePrefix must not be empty"),
            (json!({"sauce": "x"}), "unknown field `sauce`"),
        ] {
            let e = Harness::<CloudEventsOut>::new(o).err().unwrap();
            assert!(e.message.contains(needle), "{needle}: {e}");
        }
        let mut h = Harness::<CloudEventsOut>::new(json!({})).unwrap();
        let out = h
            .inbound(ExternalMessage::text(event().to_json_string()))
            .unwrap();
        assert_eq!(out[0].path, "/features/env/properties/t");
    }
}
