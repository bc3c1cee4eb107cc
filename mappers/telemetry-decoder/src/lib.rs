//! # telemetry-decoder
//!
//! Packed binary sensor payloads → one Ditto `merge` (or `modify`) of feature properties.
//!
//! Options (the mapping definition's `options`, besides `module`):
//!
//! ```json
//! {
//!   "namespace": "org.acme",
//!   "thingIdHeader": "device_id",
//!   "topicPattern": "devices/{name}/up",
//!   "action": "merge",
//!   "headers": {"response-required": false},
//!   "fields": [
//!     {"name": "temperature", "type": "i16le", "scale": 0.01, "feature": "environment"},
//!     {"name": "humidity", "type": "u8", "feature": "environment"},
//!     {"name": "battery", "type": "u16be", "scale": 0.001, "decimals": 3, "feature": "power", "property": "voltage"}
//!   ]
//! }
//! ```
//!
//! - `fields` (required): the layout, in order. `type`: `bool`, `u8`, `i8`, or
//!   `u16`/`i16`/`u32`/`i32`/`u64`/`i64`/`f32`/`f64` + `le`/`be`. `offset`: the byte offset
//!   (default: right after the previous field). The value is `raw * scale + add` (both
//!   optional), rounded to `decimals` places when given (else to 9, which hides float noise
//!   such as `21.560000000000002`). Integers without `scale`/`add` stay integers. It lands in
//!   `/features/{feature}/properties/{property}` (`property` defaults to `name`; it may be a
//!   pointer such as `env/t`).
//! - The thing id: when `topicPattern` is set, the `mqtt.topic` header (or `topicHeader`) is
//!   matched against it: `/`-separated segments, `{namespace}`, `{name}` or `{thingId}` as whole
//!   segments, `+` for any one segment, `#` last for the rest. Otherwise (or when the pattern
//!   does not match) the header `thingIdHeader` (default `device_id`). An id without `:` is a
//!   name in `namespace`.
//! - `action`: `merge` (default): one merge command at `/features` that leaves other properties
//!   as they are; `modify`: one modify of `/features/{feature}/properties` per feature, which
//!   replaces that feature's properties.
//! - `headers`: Ditto headers added to every command. The correlation id of the incoming
//!   message is kept.
//!
//! A payload shorter than the layout fails with a message that names the field that does not
//! fit. Longer payloads are accepted (the rest is ignored).

use ferrule_mapper_sdk::ditto::set_pointer;
use ferrule_mapper_sdk::payload::{Number, Scalar};
use ferrule_mapper_sdk::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value, json};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Options {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    thing_id_header: Option<String>,
    #[serde(default)]
    topic_pattern: Option<String>,
    #[serde(default)]
    topic_header: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    headers: Map<String, Value>,
    fields: Vec<FieldOptions>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FieldOptions {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    feature: String,
    #[serde(default)]
    property: Option<String>,
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    scale: Option<f64>,
    #[serde(default)]
    add: Option<f64>,
    #[serde(default)]
    decimals: Option<u8>,
}

#[derive(Debug)]
struct Field {
    name: String,
    scalar: Scalar,
    type_name: String,
    offset: usize,
    feature: String,
    property: String,
    scale: Option<f64>,
    add: Option<f64>,
    decimals: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Merge,
    Modify,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Namespace,
    Name,
    ThingId,
    Any,
    Rest,
}

pub struct TelemetryDecoder {
    namespace: Option<String>,
    thing_id_header: String,
    topic_pattern: Option<Vec<Segment>>,
    topic_header: String,
    action: Action,
    headers: Map<String, Value>,
    fields: Vec<Field>,
    /// The bytes the layout needs.
    min_len: usize,
}

fn parse_pattern(pattern: &str, namespace: Option<&str>) -> Result<Vec<Segment>, MappingError> {
    let segments: Vec<Segment> = pattern
        .split('/')
        .map(|s| match s {
            "{namespace}" => Segment::Namespace,
            "{name}" => Segment::Name,
            "{thingId}" => Segment::ThingId,
            "+" => Segment::Any,
            "#" => Segment::Rest,
            other => Segment::Literal(other.to_string()),
        })
        .collect();
    if let Some(i) = segments.iter().position(|s| *s == Segment::Rest)
        && i + 1 != segments.len()
    {
        return Err(MappingError::invalid_options(format!(
            "topicPattern <{pattern}>: '#' may only be the last segment."
        )));
    }
    let has = |s: Segment| segments.contains(&s);
    if !has(Segment::ThingId) && !has(Segment::Name) {
        return Err(MappingError::invalid_options(format!(
            "topicPattern <{pattern}> has neither {{name}} nor {{thingId}}."
        )));
    }
    if has(Segment::Name) && !has(Segment::Namespace) && namespace.is_none() {
        return Err(MappingError::invalid_options(format!(
            "topicPattern <{pattern}> has {{name}} but no {{namespace}}: set the option 'namespace'."
        )));
    }
    Ok(segments)
}

/// Matches `topic` against the pattern: the thing id, or `None` when it does not match.
fn match_topic(
    pattern: &[Segment],
    topic: &str,
    namespace: Option<&str>,
) -> Option<Result<ThingId, MappingError>> {
    let parts: Vec<&str> = topic.split('/').collect();
    let (mut ns, mut name, mut id) = (None, None, None);
    let mut i = 0;
    for seg in pattern {
        if *seg == Segment::Rest {
            i = parts.len();
            break;
        }
        let part = *parts.get(i)?;
        match seg {
            Segment::Literal(l) if l != part => return None,
            Segment::Namespace => ns = Some(part),
            Segment::Name => name = Some(part),
            Segment::ThingId => id = Some(part),
            _ => {}
        }
        i += 1;
    }
    if i != parts.len() {
        return None;
    }
    Some(match (id, ns.or(namespace), name) {
        (Some(id), _, _) => ThingId::parse_or_in(id, namespace),
        (None, Some(ns), Some(name)) => ThingId::new(ns, name),
        _ => return None,
    })
}

impl TelemetryDecoder {
    fn thing_id(&self, message: &ExternalMessage) -> Result<ThingId, MappingError> {
        let ns = self.namespace.as_deref();
        if let Some(pattern) = &self.topic_pattern
            && let Some(topic) = message.headers.get_str(&self.topic_header)
        {
            match match_topic(pattern, &topic, ns) {
                Some(id) => return id,
                None => log::debug(format!(
                    "The topic <{topic}> does not match the topicPattern; trying the header '{}'.",
                    self.thing_id_header
                )),
            }
        }
        match message.headers.get_str(&self.thing_id_header) {
            Some(id) => ThingId::parse_or_in(&id, ns),
            None if self.topic_pattern.is_some() => Err(MappingError::new(format!(
                "No thing id: the header '{}' does not match the topicPattern and there is no header '{}'.",
                self.topic_header, self.thing_id_header
            ))
            .with_description("Publish to a topic that matches the topicPattern, or send the thing id header.")),
            None => Err(MappingError::missing_header(&self.thing_id_header)),
        }
    }

    fn decode(&self, reader: &ByteReader<'_>, field: &Field) -> Result<Value, MappingError> {
        let raw = field.scalar.read_at(reader, field.offset)?;
        if field.scale.is_none() && field.add.is_none() && field.decimals.is_none() {
            return Ok(raw.to_json());
        }
        if let Number::Bool(_) = raw {
            return Ok(raw.to_json());
        }
        let v = raw.as_f64() * field.scale.unwrap_or(1.0) + field.add.unwrap_or(0.0);
        let p = 10f64.powi(i32::from(field.decimals.unwrap_or(9)));
        let rounded = (v * p).round() / p;
        Ok(Number::Float(if rounded.is_finite() { rounded } else { v }).to_json())
    }
}

impl Mapper for TelemetryDecoder {
    fn new(options: &Map<String, Value>) -> Result<Self, MappingError> {
        let o: Options = ferrule_mapper_sdk::options::parse(options)?;
        if let Some(ns) = &o.namespace
            && ns.contains(['/', ':'])
        {
            return Err(MappingError::invalid_options(format!(
                "namespace <{ns}> must not contain '/' or ':'."
            )));
        }
        let action = match o.action.as_deref() {
            None | Some("merge") => Action::Merge,
            Some("modify") => Action::Modify,
            Some(other) => {
                return Err(MappingError::invalid_options(format!(
                    "action <{other}> is neither 'merge' nor 'modify'."
                )));
            }
        };
        if o.fields.is_empty() {
            return Err(MappingError::invalid_options(
                "fields is empty: describe at least one field of the payload.",
            ));
        }
        let mut fields = Vec::with_capacity(o.fields.len());
        let mut next = 0usize;
        for f in o.fields {
            let scalar = Scalar::parse(&f.kind).map_err(|e| {
                MappingError::invalid_options(format!("Field '{}': {}", f.name, e.message))
            })?;
            if f.feature.is_empty() || f.feature.contains('/') {
                return Err(MappingError::invalid_options(format!(
                    "Field '{}': feature <{}> must be a non-empty feature id without '/'.",
                    f.name, f.feature
                )));
            }
            if f.decimals.is_some_and(|d| d > 15) {
                return Err(MappingError::invalid_options(format!(
                    "Field '{}': decimals must be at most 15.",
                    f.name
                )));
            }
            let property = f.property.unwrap_or_else(|| f.name.clone());
            if property.trim_matches('/').is_empty() {
                return Err(MappingError::invalid_options(format!(
                    "Field '{}': the property must not be empty.",
                    f.name
                )));
            }
            let offset = f.offset.unwrap_or(next);
            next = offset + scalar.size();
            fields.push(Field {
                name: f.name,
                scalar,
                type_name: f.kind,
                offset,
                feature: f.feature,
                property,
                scale: f.scale,
                add: f.add,
                decimals: f.decimals,
            });
        }
        // Two fields at the same property would silently overwrite each other.
        for (i, a) in fields.iter().enumerate() {
            if let Some(b) = fields[..i]
                .iter()
                .find(|b| b.feature == a.feature && b.property == a.property)
            {
                return Err(MappingError::invalid_options(format!(
                    "Fields '{}' and '{}' both write /features/{}/properties/{}.",
                    b.name, a.name, a.feature, a.property
                )));
            }
        }
        let features = {
            let mut f: Vec<&str> = fields.iter().map(|f| f.feature.as_str()).collect();
            f.sort_unstable();
            f.dedup();
            f.len()
        };
        if action == Action::Modify && features > 10 {
            return Err(MappingError::invalid_options(format!(
                "action 'modify' sends one command per feature, and {features} features is more than the 10 messages a mapper may return: use 'merge'."
            )));
        }
        let topic_pattern = o
            .topic_pattern
            .as_deref()
            .map(|p| parse_pattern(p, o.namespace.as_deref()))
            .transpose()?;
        let min_len = fields
            .iter()
            .map(|f| f.offset + f.scalar.size())
            .max()
            .unwrap_or(0);
        Ok(TelemetryDecoder {
            namespace: o.namespace,
            thing_id_header: o.thing_id_header.unwrap_or_else(|| "device_id".into()),
            topic_pattern,
            topic_header: o.topic_header.unwrap_or_else(|| "mqtt.topic".into()),
            action,
            headers: o.headers,
            fields,
            min_len,
        })
    }

    fn map_inbound(&self, message: &ExternalMessage) -> Result<Vec<DittoMessage>, MappingError> {
        let thing = self.thing_id(message)?;
        let reader = ByteReader::of(message);
        if reader.len() < self.min_len {
            let field = self
                .fields
                .iter()
                .find(|f| f.offset + f.scalar.size() > reader.len())
                .expect("some field does not fit");
            return Err(MappingError::invalid_payload(format!(
                "The payload has {} byte(s), but the layout needs {}: field '{}' ({} at offset {}) does not fit.",
                reader.len(),
                self.min_len,
                field.name,
                field.type_name,
                field.offset
            )));
        }
        // feature → properties, in the order of the fields.
        let mut features = Map::new();
        for field in &self.fields {
            let value = self.decode(&reader, field)?;
            let properties = features
                .entry(field.feature.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let pointer = format!("/{}", field.property.trim_start_matches('/'));
            set_pointer(properties, &pointer, value)?;
        }
        let finish = |mut b: MessageBuilder| {
            b = b.correlation_id_from(&message.headers);
            for (k, v) in &self.headers {
                b = b.header(k, v.clone());
            }
            b.build()
        };
        Ok(match self.action {
            Action::Merge => {
                let value = Value::Object(
                    features
                        .into_iter()
                        .map(|(f, props)| (f, json!({ "properties": props })))
                        .collect(),
                );
                vec![finish(thing.merge("/features", value))]
            }
            Action::Modify => features
                .into_iter()
                .map(|(f, props)| finish(thing.modify_feature_properties(&f, props)))
                .collect(),
        })
    }

    // Outbound: the SDK's default, Ditto Protocol JSON.
}

ferrule_mapper_sdk::export!(TelemetryDecoder);

#[cfg(test)]
mod tests {
    use super::*;
    use ferrule_mapper_sdk::testing::Harness;

    fn options() -> Value {
        json!({
            "namespace": "org.acme",
            "fields": [
                {"name": "temperature", "type": "i16le", "scale": 0.01, "feature": "environment"},
                {"name": "humidity", "type": "u8", "feature": "environment"},
                {"name": "voltage", "type": "u16be", "scale": 0.001, "decimals": 3, "feature": "power"},
                {"name": "charging", "type": "bool", "feature": "power", "property": "state/charging"}
            ]
        })
    }

    fn payload() -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&2156i16.to_le_bytes()); // 21.56 °C
        p.push(48); // 48 %
        p.extend_from_slice(&3712u16.to_be_bytes()); // 3.712 V
        p.push(1);
        p
    }

    fn with_header(bytes: Vec<u8>, key: &str, value: &str) -> ExternalMessage {
        let mut m = ExternalMessage::bytes(bytes);
        m.headers.insert(key, value);
        m
    }

    #[test]
    fn decodes_a_packed_payload_into_one_merge() {
        let mut h = Harness::<TelemetryDecoder>::new(options()).unwrap();
        let mut m = with_header(payload(), "device_id", "sensor-1");
        m.headers.insert("correlation-id", "c-9");
        let out = h.inbound(&m).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            Value::Object(out[0].to_json()),
            json!({
                "topic": "org.acme/sensor-1/things/twin/commands/merge",
                "headers": {"content-type": "application/merge-patch+json", "correlation-id": "c-9"},
                "path": "/features",
                "value": {
                    "environment": {"properties": {"temperature": 21.56, "humidity": 48}},
                    "power": {"properties": {"voltage": 3.712, "state": {"charging": true}}}
                }
            })
        );
    }

    #[test]
    fn the_readme_example() {
        let mut o = options();
        o["topicPattern"] = json!("devices/{name}/up");
        let mut h = Harness::<TelemetryDecoder>::new(o).unwrap();
        let m = with_header(
            vec![0x6c, 0x08, 0x30, 0x0e, 0x80, 0x01],
            "mqtt.topic",
            "devices/sensor-1/up",
        );
        assert_eq!(
            Value::Object(h.inbound(m).unwrap()[0].to_json()),
            json!({"topic": "org.acme/sensor-1/things/twin/commands/merge",
                   "headers": {"content-type": "application/merge-patch+json"},
                   "path": "/features",
                   "value": {"environment": {"properties": {"temperature": 21.56, "humidity": 48}},
                             "power": {"properties": {"voltage": 3.712, "state": {"charging": true}}}}})
        );
    }

    #[test]
    fn modify_sends_one_command_per_feature() {
        let mut o = options();
        o["action"] = json!("modify");
        o["headers"] = json!({"response-required": false});
        let mut h = Harness::<TelemetryDecoder>::new(o).unwrap();
        let out = h
            .inbound(with_header(payload(), "device_id", "other.ns:sensor-2"))
            .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0].topic.to_string(),
            "other.ns/sensor-2/things/twin/commands/modify"
        );
        assert_eq!(out[0].path, "/features/environment/properties");
        assert_eq!(
            out[0].value,
            Some(json!({"temperature": 21.56, "humidity": 48}))
        );
        assert_eq!(out[0].headers.get("response-required"), Some(&json!(false)));
        assert_eq!(out[1].path, "/features/power/properties");
    }

    #[test]
    fn short_payloads_name_the_field_that_does_not_fit() {
        let mut h = Harness::<TelemetryDecoder>::new(options()).unwrap();
        let e = h
            .inbound(with_header(payload()[..4].to_vec(), "device_id", "s"))
            .unwrap_err();
        assert_eq!(
            e.message,
            "The payload has 4 byte(s), but the layout needs 6: field 'voltage' (u16be at offset 3) does not fit."
        );
        assert!(e.description.is_some());
        let e = h
            .inbound(with_header(vec![], "device_id", "s"))
            .unwrap_err();
        assert!(e.message.contains("field 'temperature'"), "{e}");
        // Longer payloads are fine.
        let mut long = payload();
        long.extend_from_slice(&[9, 9, 9]);
        assert!(h.inbound(with_header(long, "device_id", "s")).is_ok());
    }

    #[test]
    fn thing_id_from_the_mqtt_topic() {
        let mut o = options();
        o["topicPattern"] = json!("tenants/+/devices/{name}/up");
        let mut h = Harness::<TelemetryDecoder>::new(o).unwrap();
        let out = h
            .inbound(with_header(
                payload(),
                "mqtt.topic",
                "tenants/t1/devices/d-7/up",
            ))
            .unwrap();
        assert_eq!(out[0].topic.entity_id(), "org.acme:d-7");
        // No match: falls back to the header, and says so in the logs.
        let mut m = with_header(payload(), "mqtt.topic", "elsewhere/d-7");
        m.headers.insert("device_id", "d-8");
        let out = h.inbound(&m).unwrap();
        assert_eq!(out[0].topic.entity_id(), "org.acme:d-8");
        assert!(h.logged("does not match the topicPattern"));
        let e = h
            .inbound(with_header(payload(), "mqtt.topic", "elsewhere"))
            .unwrap_err();
        assert!(e.message.contains("does not match the topicPattern"), "{e}");

        let mut o = options();
        o["topicPattern"] = json!("{namespace}/{name}/#");
        let mut h = Harness::<TelemetryDecoder>::new(o).unwrap();
        let out = h
            .inbound(with_header(
                payload(),
                "mqtt.topic",
                "ns.x/dev/telemetry/raw",
            ))
            .unwrap();
        assert_eq!(out[0].topic.entity_id(), "ns.x:dev");
        let mut o = options();
        o["topicPattern"] = json!("things/{thingId}");
        let mut h = Harness::<TelemetryDecoder>::new(o).unwrap();
        let out = h
            .inbound(with_header(payload(), "mqtt.topic", "things/a.b:c"))
            .unwrap();
        assert_eq!(out[0].topic.entity_id(), "a.b:c");
    }

    #[test]
    fn missing_thing_id() {
        let mut h = Harness::<TelemetryDecoder>::new(options()).unwrap();
        let e = h.inbound(ExternalMessage::bytes(payload())).unwrap_err();
        assert_eq!(e.message, "The message has no header 'device_id'.");
        let mut o = options();
        o.as_object_mut().unwrap().remove("namespace");
        let mut h = Harness::<TelemetryDecoder>::new(o).unwrap();
        let e = h
            .inbound(with_header(payload(), "device_id", "no-namespace"))
            .unwrap_err();
        assert!(e.message.contains("<no-namespace> is not valid"), "{e}");
    }

    #[test]
    fn every_number_type_and_explicit_offsets() {
        let o = json!({
            "namespace": "n",
            "fields": [
                {"name": "f64", "type": "f64be", "offset": 0, "feature": "x"},
                {"name": "f32", "type": "f32le", "feature": "x"},
                {"name": "i32", "type": "i32be", "feature": "x"},
                {"name": "u64", "type": "u64le", "feature": "x"},
                {"name": "i8", "type": "i8", "feature": "x"},
                {"name": "again", "type": "u8", "offset": 0, "feature": "x"},
                {"name": "kelvin", "type": "i8", "offset": 24, "add": 273.15, "feature": "x"}
            ]
        });
        let mut p = Vec::new();
        p.extend_from_slice(&1.5f64.to_be_bytes());
        p.extend_from_slice(&1.1f32.to_le_bytes());
        p.extend_from_slice(&(-70000i32).to_be_bytes());
        p.extend_from_slice(&u64::MAX.to_le_bytes());
        p.push(0xfe);
        let mut h = Harness::<TelemetryDecoder>::new(o).unwrap();
        let out = h.inbound(with_header(p, "device_id", "d")).unwrap();
        assert_eq!(
            out[0].value,
            Some(json!({"x": {"properties": {
                "f64": 1.5, "f32": 1.1, "i32": -70000, "u64": u64::MAX, "i8": -2,
                "again": 0x3f, "kelvin": 271.15
            }}}))
        );
    }

    #[test]
    fn options_are_checked_at_configure() {
        for (options, needle) in [
            (json!({}), "missing field `fields`"),
            (json!({"fields": []}), "fields is empty"),
            (
                json!({"fields": [{"name": "a", "type": "i24le", "feature": "f"}]}),
                "Field 'a': Unknown number type <i24le>",
            ),
            (
                json!({"fields": [{"name": "a", "type": "u8", "feature": "f/g"}]}),
                "feature <f/g>",
            ),
            (
                json!({"fields": [{"name": "a", "type": "u8", "feature": "f"}], "action": "put"}),
                "action <put>",
            ),
            (
                json!({"fields": [{"name": "a", "type": "u8", "feature": "f"},
                                  {"name": "b", "type": "u8", "feature": "f", "property": "a"}]}),
                "Fields 'a' and 'b' both write",
            ),
            (
                json!({"fields": [{"name": "a", "type": "u8", "feature": "f"}],
                       "topicPattern": "devices/{name}"}),
                "set the option 'namespace'",
            ),
            (
                json!({"fields": [{"name": "a", "type": "u8", "feature": "f"}],
                       "topicPattern": "devices/+"}),
                "neither {name} nor {thingId}",
            ),
            (
                json!({"fields": [{"name": "a", "type": "u8", "feature": "f"}],
                       "topicPattern": "#/{thingId}"}),
                "'#' may only be the last segment",
            ),
            (
                json!({"fields": [{"name": "a", "type": "u8", "feature": "f", "colour": 1}]}),
                "unknown field `colour`",
            ),
        ] {
            let e = Harness::<TelemetryDecoder>::new(options).err().unwrap();
            assert!(e.message.contains(needle), "{needle}: {e}");
        }
        let many: Vec<Value> = (0..11)
            .map(|i| json!({"name": "a", "type": "u8", "feature": format!("f{i}")}))
            .collect();
        let e = Harness::<TelemetryDecoder>::new(json!({"fields": many, "action": "modify"}))
            .err()
            .unwrap();
        assert!(e.message.contains("use 'merge'"), "{e}");
        assert!(Harness::<TelemetryDecoder>::new(json!({"fields": many})).is_ok());
    }
}
