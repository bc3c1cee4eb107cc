//! # json-reshaper
//!
//! A JSON payload (an object, or an array of objects) → Ditto commands, driven by options that
//! map JSON pointers of the input to paths of the thing.
//!
//! ```json
//! {
//!   "namespace": "org.acme",
//!   "thingIdPointer": "/device/id",
//!   "thingIdHeader": "device_id",
//!   "action": "merge",
//!   "headers": {"response-required": false},
//!   "mappings": [
//!     {"from": "/readings/t", "to": "/features/environment/properties/temperature"},
//!     {"from": "/readings/h", "to": "/features/environment/properties/humidity"},
//!     {"from": "/fw", "to": "/attributes/firmware", "required": true},
//!     {"from": "/status", "to": "/features/status/properties/value", "default": "unknown"}
//!   ]
//! }
//! ```
//!
//! - `mappings` (required): `from` is a JSON pointer into the payload (`""` is the whole
//!   payload), `to` a JSON pointer into the thing (`/attributes/…`, `/features/…`, …; not `/`).
//!   A `from` that is absent is skipped, unless the mapping has a `default` (used instead) or
//!   `required: true` (the message fails).
//! - The thing id: the string at `thingIdPointer` in the payload, else the header
//!   `thingIdHeader` (default `device_id`). An id without `:` is a name in `namespace`.
//! - `action`: `merge` (default): one merge command at `/` with all mapped values, which leaves
//!   the rest of the thing as it is; `modify`: one modify command per mapped value (so at most
//!   10 mappings).
//! - `headers`: Ditto headers added to every command; the incoming correlation id is kept.
//! - A payload that is an array is a batch: each element is mapped on its own (at most 10
//!   commands in all). A message from which no mapping takes a value is dropped (with a debug
//!   log line).

use ferrule_mapper_sdk::ditto::Pointer;
use ferrule_mapper_sdk::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value};

const MAX_OUTPUTS: usize = 10;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Options {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    thing_id_pointer: Option<String>,
    #[serde(default)]
    thing_id_header: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    headers: Map<String, Value>,
    mappings: Vec<Mapping>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Mapping {
    from: String,
    to: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    default: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Merge,
    Modify,
}

/// A mapping with its pointers parsed once.
struct Rule {
    from: Pointer,
    to: Pointer,
    required: bool,
    default: Option<Value>,
}

pub struct JsonReshaper {
    namespace: Option<String>,
    thing_id_pointer: Option<Pointer>,
    thing_id_header: String,
    action: Action,
    headers: Map<String, Value>,
    rules: Vec<Rule>,
}

fn parse_pointer(option: &str, p: &str) -> Result<Pointer, MappingError> {
    Pointer::parse(p).map_err(|_| {
        MappingError::invalid_options(format!(
            "{option} <{p}> is not a JSON pointer: it must be empty or start with '/'."
        ))
    })
}

/// Whether thing path `a` is `b` or inside it (segment-wise).
fn within(a: &str, b: &str) -> bool {
    a == b || a.strip_prefix(b).is_some_and(|rest| rest.starts_with('/'))
}

impl JsonReshaper {
    fn thing_id(&self, item: &Value, message: &ExternalMessage) -> Result<ThingId, MappingError> {
        let ns = self.namespace.as_deref();
        if let Some(p) = &self.thing_id_pointer {
            match p.get(item) {
                Some(Value::String(id)) => return ThingId::parse_or_in(id, ns),
                Some(other) => {
                    return Err(MappingError::invalid_payload(format!(
                        "The thing id at <{p}> is not a string but <{other}>."
                    )));
                }
                None => {}
            }
        }
        match message.headers.get_str(&self.thing_id_header) {
            Some(id) => ThingId::parse_or_in(&id, ns),
            None => Err(match &self.thing_id_pointer {
                Some(p) => MappingError::invalid_payload(format!(
                    "No thing id: the payload has nothing at <{p}> and the message has no header '{}'.",
                    self.thing_id_header
                )),
                None => MappingError::missing_header(&self.thing_id_header),
            }),
        }
    }

    /// One input object → its commands (none when no mapping takes a value).
    fn reshape(
        &self,
        item: &Value,
        message: &ExternalMessage,
    ) -> Result<Vec<DittoMessage>, MappingError> {
        let mut values = Vec::with_capacity(self.rules.len());
        for m in &self.rules {
            match m.from.get(item).or(m.default.as_ref()) {
                Some(v) => values.push((&m.to, v.clone())),
                None if m.required => {
                    return Err(MappingError::invalid_payload(format!(
                        "The payload has no value at <{}>, which is required for <{}>.",
                        m.from, m.to
                    )));
                }
                None => {}
            }
        }
        if values.is_empty() {
            log::debug("No mapping found a value in the payload: nothing to send.");
            return Ok(Vec::new());
        }
        let thing = self.thing_id(item, message)?;
        let finish = |mut b: MessageBuilder| {
            b = b.correlation_id_from(&message.headers);
            for (k, v) in &self.headers {
                b = b.header(k, v.clone());
            }
            b.build()
        };
        Ok(match self.action {
            Action::Merge => {
                let mut patch = Value::Object(Map::new());
                for (to, v) in values {
                    to.set(&mut patch, v)?;
                }
                vec![finish(thing.merge("/", patch))]
            }
            Action::Modify => values
                .into_iter()
                .map(|(to, v)| finish(thing.modify(to.as_str(), v)))
                .collect(),
        })
    }
}

impl Mapper for JsonReshaper {
    fn new(options: &Map<String, Value>) -> Result<Self, MappingError> {
        let o: Options = ferrule_mapper_sdk::options::parse(options)?;
        let action = match o.action.as_deref() {
            None | Some("merge") => Action::Merge,
            Some("modify") => Action::Modify,
            Some(other) => {
                return Err(MappingError::invalid_options(format!(
                    "action <{other}> is neither 'merge' nor 'modify'."
                )));
            }
        };
        if o.mappings.is_empty() {
            return Err(MappingError::invalid_options(
                "mappings is empty: map at least one field of the payload.",
            ));
        }
        if action == Action::Modify && o.mappings.len() > MAX_OUTPUTS {
            return Err(MappingError::invalid_options(format!(
                "action 'modify' sends one command per mapping, and {} mappings is more than the {MAX_OUTPUTS} messages a mapper may return: use 'merge'.",
                o.mappings.len()
            )));
        }
        if let Some(ns) = &o.namespace
            && ns.contains(['/', ':'])
        {
            return Err(MappingError::invalid_options(format!(
                "namespace <{ns}> must not contain '/' or ':'."
            )));
        }
        let thing_id_pointer = o
            .thing_id_pointer
            .as_deref()
            .map(|p| parse_pointer("thingIdPointer", p))
            .transpose()?;
        let mut rules = Vec::with_capacity(o.mappings.len());
        for (i, m) in o.mappings.iter().enumerate() {
            let from = parse_pointer("from", &m.from)?;
            if !m.to.starts_with('/') || m.to == "/" {
                return Err(MappingError::invalid_options(format!(
                    "to <{}> must be a JSON pointer into the thing below '/', e.g. /attributes/x or /features/f/properties/p.",
                    m.to
                )));
            }
            if let Some(other) = o.mappings[..i]
                .iter()
                .find(|o| within(&m.to, &o.to) || within(&o.to, &m.to))
            {
                return Err(MappingError::invalid_options(format!(
                    "The targets <{}> and <{}> overlap: each value needs its own place in the thing.",
                    other.to, m.to
                )));
            }
            rules.push(Rule {
                from,
                to: parse_pointer("to", &m.to)?,
                required: m.required,
                default: m.default.clone(),
            });
        }
        Ok(JsonReshaper {
            namespace: o.namespace,
            thing_id_pointer,
            thing_id_header: o.thing_id_header.unwrap_or_else(|| "device_id".into()),
            action,
            headers: o.headers,
            rules,
        })
    }

    fn map_inbound(&self, message: &ExternalMessage) -> Result<Vec<DittoMessage>, MappingError> {
        let payload = ferrule_mapper_sdk::payload::json(message)?;
        let items = match &payload {
            Value::Array(items) => items.iter().collect(),
            Value::Object(_) => vec![&payload],
            other => {
                return Err(MappingError::invalid_payload(format!(
                    "The payload is JSON but neither an object nor an array of objects: <{other}>."
                )));
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            if !item.is_object() {
                return Err(MappingError::invalid_payload(format!(
                    "Element {i} of the payload array is not an object."
                )));
            }
            out.extend(self.reshape(item, message)?);
            if out.len() > MAX_OUTPUTS {
                return Err(MappingError::invalid_payload(format!(
                    "The payload makes more than {MAX_OUTPUTS} commands; a mapper may return at most {MAX_OUTPUTS}."
                ))
                .with_description("Send smaller batches, or use the action 'merge'."));
            }
        }
        Ok(out)
    }
}

ferrule_mapper_sdk::export!(JsonReshaper);

#[cfg(test)]
mod tests {
    use super::*;
    use ferrule_mapper_sdk::testing::Harness;
    use serde_json::json;

    fn options() -> Value {
        json!({
            "namespace": "org.acme",
            "thingIdPointer": "/device/id",
            "mappings": [
                {"from": "/readings/t", "to": "/features/environment/properties/temperature"},
                {"from": "/readings/h", "to": "/features/environment/properties/humidity"},
                {"from": "/fw", "to": "/attributes/firmware", "required": true},
                {"from": "/status", "to": "/features/status/properties/value", "default": "unknown"}
            ]
        })
    }

    #[test]
    fn merges_mapped_fields() {
        let mut h = Harness::<JsonReshaper>::new(options()).unwrap();
        let mut m = ExternalMessage::text(
            json!({"device": {"id": "sensor-1"}, "readings": {"t": 21.5, "h": 40, "x": 1}, "fw": "1.2"})
                .to_string(),
        );
        m.headers.insert("correlation-id", "c-1");
        let out = h.inbound(&m).unwrap();
        assert_eq!(
            Value::Object(out[0].to_json()),
            json!({
                "topic": "org.acme/sensor-1/things/twin/commands/merge",
                "headers": {"content-type": "application/merge-patch+json", "correlation-id": "c-1"},
                "path": "/",
                "value": {
                    "features": {
                        "environment": {"properties": {"temperature": 21.5, "humidity": 40}},
                        "status": {"properties": {"value": "unknown"}}
                    },
                    "attributes": {"firmware": "1.2"}
                }
            })
        );
    }

    #[test]
    fn modify_sends_one_command_per_value() {
        let mut o = options();
        o["action"] = json!("modify");
        o["headers"] = json!({"response-required": false});
        let mut h = Harness::<JsonReshaper>::new(o).unwrap();
        let out = h
            .inbound(ExternalMessage::text(
                r#"{"device":{"id":"x.y:s2"},"readings":{"t":1},"fw":"2","status":"ok"}"#,
            ))
            .unwrap();
        let summary: Vec<(String, String, Value)> = out
            .iter()
            .map(|m| {
                (
                    m.topic.to_string(),
                    m.path.clone(),
                    m.value.clone().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "x.y/s2/things/twin/commands/modify".into(),
                    "/features/environment/properties/temperature".into(),
                    json!(1)
                ),
                (
                    "x.y/s2/things/twin/commands/modify".into(),
                    "/attributes/firmware".into(),
                    json!("2")
                ),
                (
                    "x.y/s2/things/twin/commands/modify".into(),
                    "/features/status/properties/value".into(),
                    json!("ok")
                ),
            ]
        );
        assert_eq!(out[0].headers.get("response-required"), Some(&json!(false)));
    }

    #[test]
    fn thing_id_from_header_and_batches() {
        let o = json!({
            "namespace": "org.acme",
            "thingIdPointer": "/id",
            "thingIdHeader": "device",
            "mappings": [{"from": "/v", "to": "/attributes/v"}]
        });
        let mut h = Harness::<JsonReshaper>::new(o).unwrap();
        let mut m = ExternalMessage::text(r#"[{"v":1},{"v":2,"id":"other"},{"nothing":0}]"#);
        m.headers.insert("device", "from-header");
        let out = h.inbound(&m).unwrap();
        let ids: Vec<String> = out.iter().map(|m| m.topic.entity_id()).collect();
        assert_eq!(ids, ["org.acme:from-header", "org.acme:other"]);
        assert!(h.logged("nothing to send"));
        let e = h.inbound(ExternalMessage::text(r#"{"v":1}"#)).unwrap_err();
        assert!(e.message.contains("no header 'device'"), "{e}");
        let e = h
            .inbound(ExternalMessage::text(r#"{"v":1,"id":7}"#))
            .unwrap_err();
        assert!(e.message.contains("not a string"), "{e}");
        let big: Vec<Value> = (0..11).map(|i| json!({"v": i, "id": "a"})).collect();
        let e = h
            .inbound(ExternalMessage::text(Value::Array(big).to_string()))
            .unwrap_err();
        assert!(e.message.contains("more than 10"), "{e}");
    }

    #[test]
    fn payload_errors() {
        let mut h = Harness::<JsonReshaper>::new(options()).unwrap();
        let e = h
            .inbound(ExternalMessage::text(r#"{"device":{"id":"d"}}"#))
            .unwrap_err();
        assert_eq!(
            e.message,
            "The payload has no value at </fw>, which is required for </attributes/firmware>."
        );
        for (payload, needle) in [
            ("{", "not valid JSON"),
            ("42", "neither an object nor an array"),
            ("[1]", "Element 0"),
        ] {
            let e = h.inbound(ExternalMessage::text(payload)).unwrap_err();
            assert!(e.message.contains(needle), "{payload}: {e}");
        }
        // The whole payload can be copied with the empty pointer.
        let mut h = Harness::<JsonReshaper>::new(json!({
            "mappings": [{"from": "", "to": "/features/raw/properties/last"}]
        }))
        .unwrap();
        let mut m = ExternalMessage::bytes(br#"{"a":[1,2]}"#.to_vec());
        m.headers.insert("device_id", "n:d");
        let out = h.inbound(&m).unwrap();
        assert_eq!(
            out[0].value,
            Some(json!({"features": {"raw": {"properties": {"last": {"a": [1, 2]}}}}}))
        );
    }

    #[test]
    fn options_are_checked_at_configure() {
        for (options, needle) in [
            (json!({}), "missing field `mappings`"),
            (json!({"mappings": []}), "mappings is empty"),
            (
                json!({"mappings": [{"from": "a", "to": "/attributes/a"}]}),
                "from <a> is not a JSON pointer",
            ),
            (
                json!({"mappings": [{"from": "/a", "to": "/"}]}),
                "to </> must be a JSON pointer",
            ),
            (
                json!({"mappings": [{"from": "/a", "to": "/attributes/a"},
                                    {"from": "/b", "to": "/attributes/a/b"}]}),
                "overlap",
            ),
            (
                json!({"mappings": [{"from": "/a", "to": "/attributes/a"}], "action": "x"}),
                "action <x>",
            ),
            (
                json!({"mappings": [{"from": "/a", "to": "/attributes/a"}], "thingIdPointer": "id"}),
                "thingIdPointer <id>",
            ),
            (
                json!({"mappings": [{"from": "/a", "to": "/attributes/a"}], "namespace": "a:b"}),
                "namespace <a:b>",
            ),
        ] {
            let e = Harness::<JsonReshaper>::new(options).err().unwrap();
            assert!(e.message.contains(needle), "{needle}: {e}");
        }
        // Siblings that share a prefix are not overlaps.
        assert!(
            Harness::<JsonReshaper>::new(json!({"mappings": [
                {"from": "/a", "to": "/attributes/a"}, {"from": "/b", "to": "/attributes/ab"}
            ]}))
            .is_ok()
        );
        let many: Vec<Value> = (0..11)
            .map(|i| json!({"from": format!("/{i}"), "to": format!("/attributes/a{i}")}))
            .collect();
        let e = Harness::<JsonReshaper>::new(json!({"mappings": many, "action": "modify"}))
            .err()
            .unwrap();
        assert!(e.message.contains("use 'merge'"), "{e}");
    }
}
