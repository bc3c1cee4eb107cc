//! The Ditto Protocol envelope (spec §7), parsed from and written to JSON.

use crate::error::{ProtocolError, excerpt};
use crate::fields::FieldSelector;
use crate::headers::Headers;
use crate::read::Members;
use crate::topic::Topic;
use serde_json::{Map, Value};

pub const CONTENT_TYPE: &str = "application/vnd.eclipse.ditto+json";

/// The most segments the `path` of a message may have. Paths become nested JSON objects (a
/// thing's value at the path), so a path of 100,000 segments would build a value whose drop
/// alone exhausts a worker's stack; 128 is as deep as the values the reader accepts
/// (serde_json's nesting limit), and deeper than any thing can be stored.
pub const MAX_PATH_DEPTH: usize = 128;

/// How many characters of a refused text an error message quotes.
const QUOTED_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq)]
pub struct DittoMessage {
    pub topic: Topic,
    pub headers: Headers,
    /// A JSON pointer; `/` is the whole entity.
    pub path: String,
    pub value: Option<Value>,
    /// Present on responses (HTTP semantics).
    pub status: Option<u16>,
    pub extra: Option<Value>,
    pub revision: Option<u64>,
    pub timestamp: Option<String>,
    pub fields: Option<String>,
    pub metadata: Option<Value>,
}

impl DittoMessage {
    pub fn new(topic: Topic, path: impl Into<String>) -> DittoMessage {
        DittoMessage {
            topic,
            headers: Headers::new(),
            path: path.into(),
            value: None,
            status: None,
            extra: None,
            revision: None,
            timestamp: None,
            fields: None,
            metadata: None,
        }
    }

    /// Reads an envelope from JSON text, straight into its parts (no JSON tree of the whole
    /// envelope in between); the same message and errors as [`DittoMessage::from_json`].
    pub fn from_json_str(text: &str) -> Result<DittoMessage, ProtocolError> {
        let read = crate::read::from_text(text).map_err(|e| {
            ProtocolError::json_invalid(format!(
                "Failed to parse JSON string '{}'! {e}",
                excerpt(text, QUOTED_CHARS)
            ))
        })?;
        match read {
            Some(members) => members.check(),
            None => {
                let other: Value = serde_json::from_str(text).unwrap_or_default();
                Err(ProtocolError::json_invalid(format!(
                    "<{}> is not a valid JSON object!",
                    excerpt(&other.to_string(), QUOTED_CHARS)
                )))
            }
        }
    }

    pub fn from_json(map: Map<String, Value>) -> Result<DittoMessage, ProtocolError> {
        Members::from_map(map).check()
    }

    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("topic".into(), Value::String(self.topic.to_text()));
        m.insert(
            "headers".into(),
            serde_json::to_value(&self.headers).unwrap_or_default(),
        );
        m.insert("path".into(), Value::String(self.path.clone()));
        if let Some(v) = &self.value {
            m.insert("value".into(), v.clone());
        }
        if let Some(e) = &self.extra {
            m.insert("extra".into(), e.clone());
        }
        if let Some(s) = self.status {
            m.insert("status".into(), Value::from(s));
        }
        if let Some(r) = self.revision {
            m.insert("revision".into(), Value::from(r));
        }
        if let Some(t) = &self.timestamp {
            m.insert("timestamp".into(), Value::String(t.clone()));
        }
        if let Some(f) = &self.fields {
            m.insert("fields".into(), Value::String(f.clone()));
        }
        if let Some(md) = &self.metadata {
            m.insert("metadata".into(), md.clone());
        }
        m
    }

    /// The JSON text of [`DittoMessage::to_json`], written straight from the fields (no copy
    /// of the value, no intermediate JSON tree).
    pub fn to_json_string(&self) -> String {
        crate::json::to_string_sized(&Envelope::from(self), 256)
    }

    pub fn is_response(&self) -> bool {
        self.status.is_some()
    }
}

/// The envelope's fields in the order of [`DittoMessage::to_json`], borrowed for writing.
#[derive(serde::Serialize)]
struct Envelope<'a> {
    #[serde(serialize_with = "as_display")]
    topic: &'a Topic,
    headers: &'a Headers,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a Value>,
}

fn as_display<S: serde::Serializer>(topic: &&Topic, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(topic)
}

impl<'a> From<&'a DittoMessage> for Envelope<'a> {
    fn from(m: &'a DittoMessage) -> Envelope<'a> {
        Envelope {
            topic: &m.topic,
            headers: &m.headers,
            path: &m.path,
            value: m.value.as_ref(),
            extra: m.extra.as_ref(),
            status: m.status,
            revision: m.revision,
            timestamp: m.timestamp.as_deref(),
            fields: m.fields.as_deref(),
            metadata: m.metadata.as_ref(),
        }
    }
}

/// Refuses a path of more than [`MAX_PATH_DEPTH`] segments (empty segments do not count, as
/// in every reader of paths) with Ditto's `json.pointer.invalid`.
pub(crate) fn check_path(path: &str) -> Result<(), ProtocolError> {
    let depth = path.split('/').filter(|s| !s.is_empty()).count();
    if depth <= MAX_PATH_DEPTH {
        return Ok(());
    }
    Err(ProtocolError::new(
        400,
        "json.pointer.invalid",
        format!(
            "The JSON pointer <{}> is invalid!",
            excerpt(path, QUOTED_CHARS)
        ),
        &format!(
            "The path has {depth} levels; a Ditto Protocol path may have at most {MAX_PATH_DEPTH}."
        ),
    ))
}

/// Refuses `fields` that are not a field selector (as Ditto's reader, which parses them into a
/// `JsonFieldSelector`): `json.fieldselector.invalid`.
pub(crate) fn check_fields(fields: Option<&str>) -> Result<(), ProtocolError> {
    match fields {
        Some(f) => FieldSelector::parse(f).map(drop),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spec_examples_round_trip() {
        for v in [
            json!({"topic":"org.eclipse.ditto/fancy-thing/things/twin/commands/modify",
                   "headers":{"correlation-id":"c-1"},
                   "path":"/attributes/location","value":{"latitude":44.673856,"longitude":8.261719}}),
            json!({"topic":"org.eclipse.ditto/fancy-thing/things/twin/commands/modify",
                   "headers":{"correlation-id":"c-1"},"path":"/attributes/location","status":204}),
            json!({"topic":"org.eclipse.ditto/fancy-thing/things/twin/events/modified",
                   "headers":{"correlation-id":"c-1"},"path":"/features/accelerometer/properties/x",
                   "value":42,"revision":1}),
            json!({"topic":"org.eclipse.ditto/fancy-thing/things/twin/errors",
                   "headers":{"correlation-id":"c-1"},"path":"/",
                   "value":{"status":404,"error":"things:feature.notfound","message":"m","description":"d"},
                   "status":404}),
        ] {
            let m = DittoMessage::from_json(v.as_object().unwrap().clone()).unwrap();
            assert_eq!(Value::Object(m.to_json()), v);
            assert_eq!(m.to_json_string(), v.to_string());
        }
        // Every field, in the order of to_json, with text that needs escaping.
        let mut all = DittoMessage::new(
            Topic::parse("org.acme/a\"b/things/live/messages/hello").unwrap(),
            "/inbox/messages/hello",
        );
        all.headers.insert("X-Note", "line\nbreak");
        all.headers
            .insert("requested-acks", json!(["twin-persisted"]));
        all.value = Some(json!({"z": 1, "a": [1.5, null, "\u{e9}"]}));
        all.extra = Some(json!({"attributes": {}}));
        all.status = Some(200);
        all.revision = Some(3);
        all.timestamp = Some("2026-01-01T00:00:00Z".into());
        all.fields = Some("thingId,attributes".into());
        all.metadata = Some(json!({"m": true}));
        assert_eq!(
            all.to_json_string(),
            Value::Object(all.to_json()).to_string()
        );
    }

    /// Found by the `protocol` fuzz target: without serde_json's `float_roundtrip`, a number too
    /// large for an integer was read one unit in the last place off, so the message written back
    /// parsed to another value.
    #[test]
    fn numbers_written_back_parse_to_the_same_value() {
        for number in [
            "184467440718446744073709553709551615",
            "48000000000000000000000000000",
            "4.8e28",
            "0.30000000000000004",
            "2.2250738585072011e-308",
        ] {
            let text = format!(r#"{{"topic":"o/t/things/twin/events/created","value":{number}}}"#);
            let m = DittoMessage::from_json_str(&text).unwrap();
            let again = DittoMessage::from_json_str(&m.to_json_string()).unwrap();
            assert_eq!(again, m, "{number}");
        }
    }

    /// Runs `f` on a thread with a 2 MiB stack, the size of the test harness' and tokio's
    /// worker threads: a recursion that input can drive overflows it.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .expect("thread")
            .join()
            .expect("no panic, no stack overflow")
    }

    const RETRIEVE: &str = "org.acme/t/things/twin/commands/retrieve";

    /// Issue 16: what a device can publish that reaches a recursive parser, 100,000 levels deep,
    /// read on a 2 MiB stack: refused with Ditto's error for that input, and the error quotes
    /// only the start of it.
    #[test]
    fn messages_nested_100_000_levels_are_refused_on_a_small_stack() {
        let errors = on_small_stack(|| {
            let deep_value = format!(
                r#"{{"topic":"{RETRIEVE}","value":{}1{}}}"#,
                "[".repeat(100_000),
                "]".repeat(100_000)
            );
            let deep_object = format!(
                r#"{{"topic":"{RETRIEVE}","value":{}1{}}}"#,
                r#"{"a":"#.repeat(100_000),
                "}".repeat(100_000)
            );
            let deep_header = format!(
                r#"{{"topic":"{RETRIEVE}","headers":{{"x":{}}}}}"#,
                "[".repeat(100_000)
            );
            let deep_fields = format!(
                r#"{{"topic":"{RETRIEVE}","fields":"{}a{}"}}"#,
                "a(".repeat(100_000),
                ")".repeat(100_000)
            );
            let deep_path = format!(
                r#"{{"topic":"{RETRIEVE}","path":"{}"}}"#,
                "/attributes".repeat(100_000)
            );
            [deep_value, deep_object, deep_header, deep_fields, deep_path]
                .map(|text| DittoMessage::from_json_str(&text).unwrap_err())
        });
        let [value, object, header, fields, path] = errors;
        for e in [&value, &object, &header] {
            assert_eq!(e.error, "json.invalid");
            assert!(
                e.message.contains("recursion limit exceeded"),
                "{}",
                e.message
            );
        }
        assert_eq!(fields.error, "json.fieldselector.invalid");
        assert!(fields.message.contains("deeper than 128 levels"));
        assert_eq!(path.error, "json.pointer.invalid");
        assert_eq!(
            path.description.as_deref(),
            Some("The path has 100000 levels; a Ditto Protocol path may have at most 128.")
        );
        for e in [&value, &object, &header, &fields, &path] {
            assert!(e.message.len() < 600, "{} quotes the whole input", e.error);
        }
    }

    #[test]
    fn paths_and_fields_at_their_limits_are_read() {
        let path = "/attributes".repeat(MAX_PATH_DEPTH);
        let text = format!(r#"{{"topic":"{RETRIEVE}","path":"{path}//"}}"#);
        assert_eq!(
            DittoMessage::from_json_str(&text).unwrap().path,
            format!("{path}//")
        );
        let text = format!(r#"{{"topic":"{RETRIEVE}","path":"{path}/x"}}"#);
        assert_eq!(
            DittoMessage::from_json_str(&text).unwrap_err().error,
            "json.pointer.invalid"
        );
        let text = format!(r#"{{"topic":"{RETRIEVE}","fields":"thingId,attributes(a,b)"}}"#);
        assert_eq!(
            DittoMessage::from_json_str(&text)
                .unwrap()
                .fields
                .as_deref(),
            Some("thingId,attributes(a,b)")
        );
        for bad in ["a(b", "", ")"] {
            let text = format!(r#"{{"topic":"{RETRIEVE}","fields":"{bad}"}}"#);
            assert_eq!(
                DittoMessage::from_json_str(&text).unwrap_err().error,
                "json.fieldselector.invalid",
                "{bad}"
            );
        }
        // The WebAssembly boundary applies the same limits.
        let wire = crate::wire::DittoMessage {
            topic: RETRIEVE.into(),
            path: "/a".repeat(MAX_PATH_DEPTH + 1),
            ..Default::default()
        };
        assert_eq!(
            DittoMessage::try_from(wire).unwrap_err().error,
            "json.pointer.invalid"
        );
        let wire = crate::wire::DittoMessage {
            topic: RETRIEVE.into(),
            fields: Some("a(".repeat(200)),
            ..Default::default()
        };
        assert_eq!(
            DittoMessage::try_from(wire).unwrap_err().error,
            "json.fieldselector.invalid"
        );
    }

    /// 1 MB messages (a long string, a wide array, many headers, a long path segment) are read
    /// whole and written back the same.
    #[test]
    fn one_megabyte_messages_are_read_and_written_back() {
        let (big_string, wide, headers, segment) = on_small_stack(|| {
            let read = |text: String| {
                assert!(text.len() > 1_000_000);
                let m = DittoMessage::from_json_str(&text).unwrap();
                assert_eq!(DittoMessage::from_json_str(&m.to_json_string()).unwrap(), m);
                m
            };
            let big_string = read(format!(
                r#"{{"topic":"{RETRIEVE}","value":"{}"}}"#,
                "x".repeat(1_000_000)
            ));
            let wide = read(format!(
                r#"{{"topic":"{RETRIEVE}","value":[{}1]}}"#,
                "[1],".repeat(250_000)
            ));
            let headers = read(format!(
                r#"{{"topic":"{RETRIEVE}","headers":{{{}"z":1}}}}"#,
                (0..100_000)
                    .map(|i| format!(r#""h{i}":"v","#))
                    .collect::<String>()
            ));
            let segment = read(format!(
                r#"{{"topic":"{RETRIEVE}","path":"/attributes/{}"}}"#,
                "s".repeat(1_000_000)
            ));
            (big_string, wide, headers, segment)
        });
        assert_eq!(big_string.value.unwrap().as_str().unwrap().len(), 1_000_000);
        assert_eq!(wide.value.unwrap().as_array().unwrap().len(), 250_001);
        assert_eq!(headers.headers.len(), 100_001);
        assert_eq!(segment.path.len(), 1_000_012);
    }

    #[test]
    fn invalid_messages_get_ditto_errors() {
        let e =
            DittoMessage::from_json_str(r#"{"thingId": "fan:octopus", "Value": 0}"#).unwrap_err();
        assert_eq!(e.error, "json.field.missing");
        assert_eq!(e.message, "JSON did not include required </topic> field!");
        assert_eq!(
            DittoMessage::from_json_str("{").unwrap_err().error,
            "json.invalid"
        );
        assert_eq!(
            DittoMessage::from_json_str("[]").unwrap_err().error,
            "json.invalid"
        );
        let e = DittoMessage::from_json_str(r#"{"topic":"a/b/c"}"#).unwrap_err();
        assert_eq!(e.error, "things.protocol.adapter:unknown.topicpath");
        let e = DittoMessage::from_json_str(
            r#"{"topic":"a/b/things/twin/commands/modify","status":"x"}"#,
        )
        .unwrap_err();
        assert_eq!(e.error, "json.invalid");
    }
}
