//! The `Normalized` mapper (outbound only, spec §6.2): a thing event becomes the part of the
//! thing it changed, with `thingId`, `_revision`, `_modified` and a `_context` of the event.

use super::Mapper;
use crate::model::FieldSelector;
use crate::twin::pointer;
use ferrule_protocol::{Channel, Criterion, DittoMessage, ExternalMessage, Group, ProtocolError};
use serde_json::{Map, Value};

pub struct NormalizedMapper {
    fields: Option<FieldSelector>,
    include_deleted_fields: bool,
}

impl NormalizedMapper {
    pub fn new(options: &Map<String, Value>) -> Result<NormalizedMapper, String> {
        let fields = match options.get("fields") {
            None | Some(Value::Null) => None,
            Some(Value::String(f)) if f.trim().is_empty() => None,
            Some(Value::String(f)) => Some(
                FieldSelector::parse(f)
                    .map_err(|e| format!("The option 'fields' is not valid: {}", e.message))?,
            ),
            Some(_) => return Err("The option 'fields' must be a string.".into()),
        };
        let include_deleted_fields = match options.get("includeDeletedFields") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            Some(_) => return Err("The option 'includeDeletedFields' must be a boolean.".into()),
        };
        Ok(NormalizedMapper {
            fields,
            include_deleted_fields,
        })
    }
}

impl Mapper for NormalizedMapper {
    fn map_inbound(&self, _: &ExternalMessage) -> Result<Vec<DittoMessage>, ProtocolError> {
        Err(ProtocolError::new(
            400,
            "connectivity:message.mapping.failed",
            "The Normalized mapper maps outgoing messages only.",
            "Use the Normalized mapper in the payloadMapping of a target.",
        ))
    }

    fn map_outbound(&self, m: &DittoMessage) -> Result<Vec<ExternalMessage>, ProtocolError> {
        let t = &m.topic;
        let action = t.action.as_deref().unwrap_or_default();
        let is_thing_event = t.group == Group::Things
            && t.channel == Some(Channel::Twin)
            && t.criterion == Criterion::Events
            && matches!(action, "created" | "modified" | "merged" | "deleted");
        if !is_thing_event {
            return Ok(Vec::new());
        }
        let path = pointer::segments(&m.path);
        let mut out = Value::Object(Map::new());
        if action != "deleted"
            && let Some(v) = &m.value
        {
            pointer::set(&mut out, &path, v.clone());
        }
        let Value::Object(mut doc) = out else {
            // The value of a whole-thing event that is not an object: nothing to normalise.
            return Ok(Vec::new());
        };
        doc.insert("thingId".into(), Value::from(t.entity_id()));
        if let Some(r) = m.revision {
            doc.insert("_revision".into(), Value::from(r));
        }
        if let Some(ts) = &m.timestamp {
            doc.insert("_modified".into(), Value::from(ts.clone()));
        }
        if action == "deleted" {
            let when = Value::from(m.timestamp.clone().unwrap_or_default());
            if path.is_empty() {
                doc.insert("_deleted".into(), when);
            } else if self.include_deleted_fields {
                let mut deleted = Value::Object(Map::new());
                pointer::set(&mut deleted, &path, when);
                doc.insert("_deletedFields".into(), deleted);
            }
        }
        let mut context = Map::new();
        context.insert("topic".into(), Value::from(t.to_string()));
        context.insert("path".into(), Value::from(m.path.clone()));
        if let Some(v) = &m.value {
            context.insert("value".into(), v.clone());
        }
        if !m.headers.is_empty() {
            context.insert(
                "headers".into(),
                serde_json::to_value(&m.headers).unwrap_or_default(),
            );
        }
        doc.insert("_context".into(), Value::Object(context));
        let doc = match &self.fields {
            Some(selector) => selector.apply(&doc),
            None => doc,
        };
        let mut out = ExternalMessage::text(Value::Object(doc).to_string());
        out.content_type = Some("application/json".into());
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrule_protocol::Topic;
    use serde_json::json;

    fn event(action: &str, path: &str, value: Option<Value>) -> DittoMessage {
        let mut m = DittoMessage::new(
            Topic::parse(&format!("thing/id/things/twin/events/{action}")).unwrap(),
            path,
        );
        m.value = value;
        m.revision = Some(3);
        m.timestamp = Some("2026-11-25T12:00:00.000Z".into());
        m
    }

    fn map(m: &NormalizedMapper, e: &DittoMessage) -> Value {
        let out = m.map_outbound(e).unwrap();
        serde_json::from_str(out[0].text.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn the_spec_example() {
        let m = NormalizedMapper::new(&Map::new()).unwrap();
        let e = event(
            "modified",
            "/features/sensors/properties/temperature/value",
            Some(json!(42)),
        );
        let v = map(&m, &e);
        assert_eq!(v["thingId"], "thing:id");
        assert_eq!(
            v["features"],
            json!({"sensors": {"properties": {"temperature": {"value": 42}}}})
        );
        assert_eq!(v["_revision"], 3);
        assert_eq!(v["_modified"], "2026-11-25T12:00:00.000Z");
        assert_eq!(
            v["_context"]["topic"],
            "thing/id/things/twin/events/modified"
        );
        assert_eq!(
            v["_context"]["path"],
            "/features/sensors/properties/temperature/value"
        );
        assert_eq!(v["_context"]["value"], 42);
    }

    #[test]
    fn deletions_fields_and_other_signals() {
        let m = NormalizedMapper::new(&Map::new()).unwrap();
        let v = map(&m, &event("deleted", "/", None));
        assert_eq!(v["_deleted"], "2026-11-25T12:00:00.000Z");
        let v = map(&m, &event("deleted", "/attributes/a", None));
        assert!(v.get("_deletedFields").is_none());
        let with =
            NormalizedMapper::new(json!({"includeDeletedFields": true}).as_object().unwrap())
                .unwrap();
        let v = map(&with, &event("deleted", "/attributes/a", None));
        assert_eq!(
            v["_deletedFields"],
            json!({"attributes": {"a": "2026-11-25T12:00:00.000Z"}})
        );
        let selected =
            NormalizedMapper::new(json!({"fields": "thingId,attributes"}).as_object().unwrap())
                .unwrap();
        let v = map(
            &selected,
            &event("merged", "/attributes", Some(json!({"x": 1}))),
        );
        assert_eq!(v, json!({"attributes": {"x": 1}, "thingId": "thing:id"}));
        // Not a thing event: dropped.
        let mut live = event("modified", "/", Some(json!({})));
        live.topic = Topic::parse("thing/id/things/live/messages/hello").unwrap();
        assert!(m.map_outbound(&live).unwrap().is_empty());
        assert!(NormalizedMapper::new(json!({"fields": 5}).as_object().unwrap()).is_err());
    }
}
