//! Typed builders for Ditto Protocol messages: twin (and live) commands and events of a thing.
//!
//! ```
//! use ferrule_mapper_sdk::ditto::ThingId;
//! use serde_json::json;
//!
//! let thing = ThingId::parse("org.acme:sensor-1")?;
//! let msg = thing
//!     .modify_feature_property("environment", "temperature", json!(21.5))
//!     .correlation_id("c-1")
//!     .build();
//! assert_eq!(msg.topic.to_string(), "org.acme/sensor-1/things/twin/commands/modify");
//! assert_eq!(msg.path, "/features/environment/properties/temperature");
//! # Ok::<(), ferrule_mapper_sdk::MappingError>(())
//! ```

use crate::error::MappingError;
use ferrule_protocol::{Channel, Criterion, DittoMessage, Group, Topic};
use serde_json::Value;

/// The content type Ditto expects on merge commands (JSON merge patch, RFC 7396).
pub const MERGE_PATCH_CONTENT_TYPE: &str = "application/merge-patch+json";

/// A thing id, `namespace:name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThingId {
    namespace: String,
    name: String,
}

fn valid_namespace(ns: &str) -> bool {
    // Ditto: an empty namespace or dot-separated segments of [a-zA-Z0-9_], each starting with a
    // letter or digit... kept permissive here: no '/', ':' or whitespace.
    !ns.contains(['/', ':']) && !ns.chars().any(char::is_whitespace)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && !name.chars().any(char::is_control)
}

impl ThingId {
    /// A thing id from its namespace and name.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Result<Self, MappingError> {
        let (namespace, name) = (namespace.into(), name.into());
        if !valid_namespace(&namespace) || !valid_name(&name) {
            return Err(invalid_thing_id(&format!("{namespace}:{name}")));
        }
        Ok(ThingId { namespace, name })
    }

    /// Parses `namespace:name` (the name may contain further `:`).
    pub fn parse(id: &str) -> Result<Self, MappingError> {
        match id.split_once(':') {
            Some((ns, name)) => ThingId::new(ns, name).map_err(|_| invalid_thing_id(id)),
            None => Err(invalid_thing_id(id)),
        }
    }

    /// Parses `namespace:name`; an id without `:` is a name in `default_namespace`, when given.
    pub fn parse_or_in(id: &str, default_namespace: Option<&str>) -> Result<Self, MappingError> {
        match (id.contains(':'), default_namespace) {
            (false, Some(ns)) => ThingId::new(ns, id).map_err(|_| invalid_thing_id(id)),
            _ => ThingId::parse(id),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic `{namespace}/{name}/things/twin/{criterion}/{action}`.
    pub fn twin_topic(&self, criterion: Criterion, action: Option<&str>) -> Topic {
        Topic::twin(&self.namespace, &self.name, criterion, action)
    }

    /// A twin command at `path` (a JSON pointer into the thing; `/` is the whole thing).
    pub fn command(&self, action: CommandAction, path: &str) -> MessageBuilder {
        let mut b = MessageBuilder::new(
            self.twin_topic(Criterion::Commands, Some(action.as_str())),
            path,
        );
        if action == CommandAction::Merge {
            b = b.header("content-type", MERGE_PATCH_CONTENT_TYPE);
        }
        b
    }

    /// A twin event at `path`; set its `revision` and `timestamp` on the builder.
    pub fn event(&self, action: EventAction, path: &str) -> MessageBuilder {
        MessageBuilder::new(
            self.twin_topic(Criterion::Events, Some(action.as_str())),
            path,
        )
    }

    /// A live message with `subject` (`{ns}/{name}/things/live/messages/{subject}`), sent to the
    /// thing (`path` `/inbox/messages/{subject}`).
    pub fn live_message(&self, subject: &str, value: Value) -> MessageBuilder {
        let mut topic = self.twin_topic(Criterion::Messages, Some(subject));
        topic.channel = Some(Channel::Live);
        MessageBuilder::new(topic, &format!("/inbox/messages/{subject}")).value(value)
    }

    /// `create` the thing (`value` is the whole thing JSON).
    pub fn create_thing(&self, value: Value) -> MessageBuilder {
        self.command(CommandAction::Create, "/").value(value)
    }

    /// `modify` the whole thing.
    pub fn modify_thing(&self, value: Value) -> MessageBuilder {
        self.command(CommandAction::Modify, "/").value(value)
    }

    /// `modify` at any path.
    pub fn modify(&self, path: &str, value: Value) -> MessageBuilder {
        self.command(CommandAction::Modify, path).value(value)
    }

    /// `merge` (JSON merge patch) at any path; `/` with `{"attributes":…,"features":…}` patches
    /// several parts of the thing at once.
    pub fn merge(&self, path: &str, value: Value) -> MessageBuilder {
        self.command(CommandAction::Merge, path).value(value)
    }

    /// `delete` at any path.
    pub fn delete(&self, path: &str) -> MessageBuilder {
        self.command(CommandAction::Delete, path)
    }

    /// `retrieve` at any path.
    pub fn retrieve(&self, path: &str) -> MessageBuilder {
        self.command(CommandAction::Retrieve, path)
    }

    /// `modify` `/attributes` (all of them).
    pub fn modify_attributes(&self, value: Value) -> MessageBuilder {
        self.modify("/attributes", value)
    }

    /// `modify` `/attributes/{pointer}`; `pointer` may have several segments (`location/lat`).
    pub fn modify_attribute(&self, pointer: &str, value: Value) -> MessageBuilder {
        self.modify(&join_path("/attributes", pointer), value)
    }

    /// `modify` `/features` (all of them).
    pub fn modify_features(&self, value: Value) -> MessageBuilder {
        self.modify("/features", value)
    }

    /// `modify` `/features/{feature}`.
    pub fn modify_feature(&self, feature: &str, value: Value) -> MessageBuilder {
        self.modify(&feature_path(feature), value)
    }

    /// `modify` `/features/{feature}/properties` (replaces all properties of the feature).
    pub fn modify_feature_properties(&self, feature: &str, value: Value) -> MessageBuilder {
        self.modify(&format!("{}/properties", feature_path(feature)), value)
    }

    /// `modify` `/features/{feature}/properties/{pointer}`.
    pub fn modify_feature_property(
        &self,
        feature: &str,
        pointer: &str,
        value: Value,
    ) -> MessageBuilder {
        self.modify(
            &join_path(&format!("{}/properties", feature_path(feature)), pointer),
            value,
        )
    }

    /// `merge` into `/features/{feature}/properties` (leaves the other properties as they are).
    pub fn merge_feature_properties(&self, feature: &str, value: Value) -> MessageBuilder {
        self.merge(&format!("{}/properties", feature_path(feature)), value)
    }
}

impl std::fmt::Display for ThingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.namespace, self.name)
    }
}

impl std::str::FromStr for ThingId {
    type Err = MappingError;
    fn from_str(s: &str) -> Result<Self, MappingError> {
        ThingId::parse(s)
    }
}

fn invalid_thing_id(id: &str) -> MappingError {
    MappingError::new(format!("The thing id <{id}> is not valid.")).with_description(
        "A thing id is 'namespace:name'; the name must not be empty or contain '/'.",
    )
}

fn feature_path(feature: &str) -> String {
    format!("/features/{}", escape_pointer_segment(feature))
}

/// `base` + `/` + `pointer` (whose own segments are kept; a leading `/` is optional).
fn join_path(base: &str, pointer: &str) -> String {
    let p = pointer.trim_start_matches('/');
    if p.is_empty() {
        base.to_string()
    } else {
        format!("{base}/{p}")
    }
}

/// Escapes one JSON pointer segment (`~` → `~0`, `/` → `~1`, RFC 6901).
pub fn escape_pointer_segment(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// A JSON pointer (RFC 6901) parsed once: its segments unescaped, ready to look values up or
/// set them without parsing the text again. Parse pointers from options in `Mapper::new` and
/// keep them; each use then costs no allocation for the pointer itself.
///
/// ```
/// use ferrule_mapper_sdk::ditto::Pointer;
/// use serde_json::json;
///
/// let from = Pointer::parse("/readings/t")?;
/// let to = Pointer::parse("/features/env/properties/temperature")?;
/// let payload = json!({"readings": {"t": 21.5}});
/// let mut patch = json!({});
/// to.set(&mut patch, from.get(&payload).unwrap().clone())?;
/// assert_eq!(patch, json!({"features": {"env": {"properties": {"temperature": 21.5}}}}));
/// # Ok::<(), ferrule_mapper_sdk::MappingError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    segments: Vec<String>,
}

impl Pointer {
    /// Parses `""` (the whole document) or `/segment/...` (`~1` is `/`, `~0` is `~`).
    pub fn parse(pointer: &str) -> Result<Pointer, MappingError> {
        let segments = match pointer {
            "" => Vec::new(),
            p if p.starts_with('/') => p[1..].split('/').map(unescape_segment).collect(),
            p => {
                return Err(MappingError::invalid_options(format!(
                    "<{p}> is not a JSON pointer: it must be empty or start with '/'."
                )));
            }
        };
        Ok(Pointer {
            text: pointer.to_string(),
            segments,
        })
    }

    /// The pointer as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The unescaped segments (none for the whole document).
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The value at this pointer inside `target` (array elements by decimal index), as
    /// `serde_json::Value::pointer` finds it.
    pub fn get<'a>(&self, target: &'a Value) -> Option<&'a Value> {
        self.segments
            .iter()
            .try_fold(target, |current, seg| match current {
                Value::Object(map) => map.get(seg.as_str()),
                Value::Array(items) => array_index(seg).and_then(|i| items.get(i)),
                _ => None,
            })
    }

    /// Sets `value` at this pointer inside `target`, creating objects on the way (`/a/b` on
    /// `{}` gives `{"a":{"b":value}}`; a `null` on the way becomes an object). The empty
    /// pointer replaces `target`. Errors when the way is blocked by a non-object.
    pub fn set(&self, target: &mut Value, value: Value) -> Result<(), MappingError> {
        let Some((last, parents)) = self.segments.split_last() else {
            *target = value;
            return Ok(());
        };
        let mut current = target;
        for seg in parents {
            let map = object_of(current, &self.text, seg)?;
            // Look up before inserting: `entry` would allocate the key even when it exists.
            if !map.contains_key(seg.as_str()) {
                map.insert(seg.clone(), Value::Object(Default::default()));
            }
            current = map.get_mut(seg.as_str()).expect("present or just inserted");
        }
        object_of(current, &self.text, last)?.insert(last.clone(), value);
        Ok(())
    }
}

impl std::fmt::Display for Pointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Pointer {
    type Err = MappingError;
    fn from_str(s: &str) -> Result<Pointer, MappingError> {
        Pointer::parse(s)
    }
}

fn unescape_segment(segment: &str) -> String {
    if segment.contains('~') {
        segment.replace("~1", "/").replace("~0", "~")
    } else {
        segment.to_string()
    }
}

/// A decimal array index as RFC 6901 has it: no sign, no leading zero.
fn array_index(segment: &str) -> Option<usize> {
    if segment.is_empty()
        || (segment.len() > 1 && segment.starts_with('0'))
        || !segment.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    segment.parse().ok()
}

/// The object `value` is (a `null` becomes an empty object), or an error naming `pointer`.
fn object_of<'a>(
    value: &'a mut Value,
    pointer: &str,
    segment: &str,
) -> Result<&'a mut serde_json::Map<String, Value>, MappingError> {
    if value.is_null() {
        *value = Value::Object(Default::default());
    }
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(MappingError::new(format!(
            "Cannot set <{pointer}>: <{segment}> is inside a value that is not an object."
        ))),
    }
}

/// Sets `value` at the JSON `pointer` inside `target`, creating objects on the way
/// (`/a/b` on `{}` gives `{"a":{"b":value}}`). Errors when the way is blocked by a non-object.
/// `"/"` (as well as `""`) replaces `target`. To set the same pointer many times, parse a
/// [`Pointer`] once.
pub fn set_pointer(target: &mut Value, pointer: &str, value: Value) -> Result<(), MappingError> {
    if pointer.is_empty() || pointer == "/" {
        *target = value;
        return Ok(());
    }
    Pointer::parse(pointer)?.set(target, value)
}

/// The action of a twin command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandAction {
    Create,
    Retrieve,
    Modify,
    Merge,
    Delete,
}

impl CommandAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandAction::Create => "create",
            CommandAction::Retrieve => "retrieve",
            CommandAction::Modify => "modify",
            CommandAction::Merge => "merge",
            CommandAction::Delete => "delete",
        }
    }
}

/// The action of a twin event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventAction {
    Created,
    Modified,
    Merged,
    Deleted,
}

impl EventAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Created => "created",
            EventAction::Modified => "modified",
            EventAction::Merged => "merged",
            EventAction::Deleted => "deleted",
        }
    }
}

/// Builds a [`DittoMessage`]: start from a [`ThingId`] method or [`MessageBuilder::new`].
#[derive(Debug, Clone)]
#[must_use = "call .build() to get the message"]
pub struct MessageBuilder {
    message: DittoMessage,
}

impl MessageBuilder {
    /// A message with `topic` at `path` (a leading `/` is added when missing).
    pub fn new(topic: Topic, path: &str) -> MessageBuilder {
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        MessageBuilder {
            message: DittoMessage::new(topic, path),
        }
    }

    pub fn value(mut self, value: Value) -> Self {
        self.message.value = Some(value);
        self
    }

    /// Sets a Ditto header (`response-required`, `requested-acks`, your own, …).
    pub fn header(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.message.headers.insert(key, value);
        self
    }

    pub fn correlation_id(self, id: impl Into<String>) -> Self {
        self.header("correlation-id", id.into())
    }

    /// Copies the correlation id of an incoming message's headers, when it has one.
    pub fn correlation_id_from(self, headers: &ferrule_protocol::Headers) -> Self {
        match headers.correlation_id() {
            Some(id) => self.correlation_id(id),
            None => self,
        }
    }

    /// `response-required: false`: no response is sent back to the source.
    pub fn no_response(self) -> Self {
        self.header("response-required", false)
    }

    /// Moves the message to the `live` channel (`…/things/live/…`).
    pub fn live(mut self) -> Self {
        if self.message.topic.group == Group::Things {
            self.message.topic.channel = Some(Channel::Live);
        }
        self
    }

    pub fn revision(mut self, revision: u64) -> Self {
        self.message.revision = Some(revision);
        self
    }

    /// The ISO-8601 timestamp of an event.
    pub fn timestamp(mut self, timestamp: impl Into<String>) -> Self {
        self.message.timestamp = Some(timestamp.into());
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.message.status = Some(status);
        self
    }

    pub fn extra(mut self, extra: Value) -> Self {
        self.message.extra = Some(extra);
        self
    }

    pub fn build(self) -> DittoMessage {
        self.message
    }
}

impl From<MessageBuilder> for DittoMessage {
    fn from(b: MessageBuilder) -> DittoMessage {
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn thing() -> ThingId {
        ThingId::parse("org.acme:sensor-1").unwrap()
    }

    #[test]
    fn thing_ids() {
        let t = thing();
        assert_eq!((t.namespace(), t.name()), ("org.acme", "sensor-1"));
        assert_eq!(t.to_string(), "org.acme:sensor-1");
        assert_eq!(ThingId::parse(":x").unwrap().namespace(), "");
        assert_eq!(ThingId::parse("a:b:c").unwrap().name(), "b:c");
        assert!(ThingId::parse("nocolon").is_err());
        assert!(ThingId::parse("a:").is_err());
        assert!(ThingId::parse("a/b:c").is_err());
        assert_eq!(
            ThingId::parse_or_in("dev-7", Some("org.acme")).unwrap(),
            ThingId::new("org.acme", "dev-7").unwrap()
        );
        assert_eq!(
            ThingId::parse_or_in("x:dev-7", Some("org.acme"))
                .unwrap()
                .namespace(),
            "x"
        );
        assert!(ThingId::parse_or_in("dev-7", None).is_err());
    }

    #[test]
    fn commands() {
        let t = thing();
        let cases = [
            (t.modify_thing(json!({})), "modify", "/"),
            (t.modify_attributes(json!({})), "modify", "/attributes"),
            (
                t.modify_attribute("location/lat", json!(1)),
                "modify",
                "/attributes/location/lat",
            ),
            (t.modify_features(json!({})), "modify", "/features"),
            (
                t.modify_feature("env", json!({})),
                "modify",
                "/features/env",
            ),
            (
                t.modify_feature_properties("env", json!({})),
                "modify",
                "/features/env/properties",
            ),
            (
                t.modify_feature_property("env", "t", json!(1)),
                "modify",
                "/features/env/properties/t",
            ),
            (
                t.merge_feature_properties("env", json!({})),
                "merge",
                "/features/env/properties",
            ),
            (t.merge("/", json!({})), "merge", "/"),
            (t.create_thing(json!({})), "create", "/"),
            (t.delete("/attributes/a"), "delete", "/attributes/a"),
            (t.retrieve("/"), "retrieve", "/"),
        ];
        for (b, action, path) in cases {
            let m = b.build();
            assert_eq!(
                m.topic.to_string(),
                format!("org.acme/sensor-1/things/twin/commands/{action}")
            );
            assert_eq!(m.path, path);
            // Every builder output is a valid Ditto Protocol message.
            let again = DittoMessage::from_json_str(&m.to_json_string()).unwrap();
            assert_eq!(again, m);
        }
        let m = t.merge("/", json!({"attributes": {"a": 1}})).build();
        assert_eq!(
            m.headers.get_str("content-type").as_deref(),
            Some(MERGE_PATCH_CONTENT_TYPE)
        );
    }

    #[test]
    fn headers_events_and_live() {
        let t = thing();
        let mut incoming = ferrule_protocol::Headers::new();
        incoming.insert("Correlation-Id", "abc");
        let m = t
            .modify_attribute("a", json!(1))
            .correlation_id_from(&incoming)
            .no_response()
            .live()
            .build();
        assert_eq!(
            Value::Object(m.to_json()),
            json!({"topic": "org.acme/sensor-1/things/live/commands/modify",
                   "headers": {"correlation-id": "abc", "response-required": false},
                   "path": "/attributes/a", "value": 1})
        );
        let e = t
            .event(EventAction::Modified, "/features/env/properties/t")
            .value(json!(2))
            .revision(3)
            .timestamp("2024-01-01T00:00:00Z")
            .build();
        assert_eq!(
            e.topic.to_string(),
            "org.acme/sensor-1/things/twin/events/modified"
        );
        assert_eq!(
            (e.revision, e.timestamp.as_deref()),
            (Some(3), Some("2024-01-01T00:00:00Z"))
        );
        let l = t.live_message("heatUp", json!(5)).build();
        assert_eq!(
            l.topic.to_string(),
            "org.acme/sensor-1/things/live/messages/heatUp"
        );
        assert_eq!(l.path, "/inbox/messages/heatUp");
    }

    #[test]
    fn pointers() {
        let mut v = Value::Null;
        set_pointer(&mut v, "/features/env/properties/t", json!(1)).unwrap();
        set_pointer(&mut v, "/features/env/properties/h", json!(2)).unwrap();
        set_pointer(&mut v, "/attributes/a~1b", json!(3)).unwrap();
        assert_eq!(
            v,
            json!({"features": {"env": {"properties": {"t": 1, "h": 2}}}, "attributes": {"a/b": 3}})
        );
        assert!(set_pointer(&mut v, "/features/env/properties/t/x", json!(1)).is_err());
        assert!(set_pointer(&mut v, "nope", json!(1)).is_err());
        assert_eq!(escape_pointer_segment("a/b~c"), "a~1b~0c");
        assert_eq!(
            thing().modify_feature("a/b", json!(1)).build().path,
            "/features/a~1b"
        );
    }

    #[test]
    fn parsed_pointers_find_what_serde_json_finds() {
        let doc = json!({"a": {"b/c": [10, {"~x": true}], "": 5, "0": "zero"}, "n": null});
        for p in [
            "",
            "/a",
            "/a/b~1c",
            "/a/b~1c/0",
            "/a/b~1c/1/~0x",
            "/a/",
            "/a/0",
            "/a/b~1c/01",
            "/a/b~1c/-1",
            "/a/b~1c/2",
            "/n/x",
            "/missing",
        ] {
            assert_eq!(Pointer::parse(p).unwrap().get(&doc), doc.pointer(p), "{p}");
        }
        assert!(Pointer::parse("a").is_err());
        let p = Pointer::parse("/x~1y/~0z").unwrap();
        assert_eq!(p.segments(), ["x/y", "~z"]);
        assert_eq!(p.to_string(), "/x~1y/~0z");
        let mut v = json!({"x/y": null});
        p.set(&mut v, json!(1)).unwrap();
        assert_eq!(v, json!({"x/y": {"~z": 1}}));
        // The whole document.
        Pointer::parse("").unwrap().set(&mut v, json!([])).unwrap();
        assert_eq!(v, json!([]));
        let e = Pointer::parse("/a/b")
            .unwrap()
            .set(&mut v, json!(1))
            .unwrap_err();
        assert!(e.message.contains("</a/b>"), "{e}");
    }
}
