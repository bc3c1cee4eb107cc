//! Twin commands applied to things: the pure part of the twin, without I/O.
//!
//! `apply` takes one command and the current state of its thing, and gives the response, the
//! event (for a change) and the new state. Paths follow Ditto's thing structure: `/`,
//! `/policyId`, `/definition`, `/attributes[/<pointer>]`, `/features[/<id>[/definition |
//! /properties[/<pointer>] | /desiredProperties[/<pointer>]]]`.

use super::errors;
use super::pointer::{self, escape, segments};
use crate::conditions::{PreconditionFailure, Preconditions};
use crate::model::parse::{MAX_JSON_DEPTH, json_depth};
use crate::model::record::timestamp;
use chrono::{DateTime, Utc};
use ferrule_protocol::{Criterion, DittoMessage, Headers, ProtocolError, Topic};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The entity tag of a thing at `revision`.
fn etag(revision: u64) -> String {
    format!("\"rev:{revision}\"")
}

/// A thing as it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredThing {
    /// The thing JSON: `thingId`, `policyId`, `definition`, `attributes`, `features`.
    pub thing: Value,
    pub revision: u64,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
}

impl StoredThing {
    pub fn id(&self) -> &str {
        self.thing["thingId"].as_str().unwrap_or_default()
    }

    pub fn etag(&self) -> String {
        etag(self.revision)
    }

    /// The thing JSON with the special fields `_revision`, `_created`, `_modified`.
    pub fn with_special_fields(&self) -> Map<String, Value> {
        let mut m = self.thing.as_object().cloned().unwrap_or_default();
        m.insert("_revision".into(), Value::from(self.revision));
        m.insert("_created".into(), Value::from(timestamp(&self.created)));
        m.insert("_modified".into(), Value::from(timestamp(&self.modified)));
        m
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Create,
    Retrieve,
    Modify,
    Merge,
    Delete,
}

impl Action {
    pub fn parse(action: &str) -> Option<Action> {
        Some(match action {
            "create" => Action::Create,
            "retrieve" => Action::Retrieve,
            "modify" => Action::Modify,
            "merge" => Action::Merge,
            "delete" => Action::Delete,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Retrieve => "retrieve",
            Action::Modify => "modify",
            Action::Merge => "merge",
            Action::Delete => "delete",
        }
    }
}

/// One twin command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwinCommand {
    pub thing_id: String,
    pub action: Action,
    pub path: String,
    pub value: Option<Value>,
    pub headers: Headers,
    /// `fields` of a retrieve.
    pub fields: Option<String>,
}

impl TwinCommand {
    /// From a Ditto Protocol twin command (`<ns>/<name>/things/twin/commands/<action>`). Its
    /// path, value, headers and fields are taken out of `msg`, not copied: the caller keeps the
    /// topic (and what it puts back) to answer the sender. An error leaves `msg` as it was.
    pub fn taking(msg: &mut DittoMessage) -> Result<TwinCommand, ProtocolError> {
        let topic = &msg.topic;
        let action = topic
            .action
            .as_deref()
            .and_then(Action::parse)
            .filter(|_| topic.is_twin() && topic.criterion == Criterion::Commands)
            .ok_or_else(|| ProtocolError::unknown_topic_path(&topic.to_string()))?;
        Ok(TwinCommand {
            thing_id: topic.entity_id(),
            action,
            path: std::mem::take(&mut msg.path),
            value: msg.value.take(),
            headers: std::mem::take(&mut msg.headers),
            fields: msg.fields.take(),
        })
    }
}

/// What a command did. It changed its thing exactly when it has an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub response: DittoMessage,
    pub event: Option<DittoMessage>,
}

/// What a command did, without what it carries: [`Applied::finish`] moves the command's
/// headers and path into the response (the event gets a copy) and its value into the event,
/// once the command is not needed again (after the commit: a batch applied again after a
/// conflict needs its commands whole).
#[derive(Debug)]
pub struct Applied {
    response: DittoMessage,
    event: Option<DittoMessage>,
    /// The `etag` header of the response.
    etag: Etag,
    /// The event's value is the command's.
    event_takes_value: bool,
}

#[derive(Debug)]
enum Etag {
    /// As the command had it (an error).
    Keep,
    Set(String),
    /// None (a deleted thing).
    Remove,
}

impl Applied {
    /// Whether the command changed its thing (or created or deleted it).
    pub fn changed(&self) -> bool {
        self.event.is_some()
    }

    /// The outcome, with the headers, path and value taken out of `cmd`.
    pub fn finish(self, cmd: &mut TwinCommand) -> Outcome {
        let headers = std::mem::take(&mut cmd.headers);
        let path = std::mem::take(&mut cmd.path);
        let value = if self.event_takes_value {
            cmd.value.take()
        } else {
            None
        };
        self.finish_with(headers, path, value)
    }

    /// The outcome, with copies of what `cmd` carries.
    pub fn finish_copy(self, cmd: &TwinCommand) -> Outcome {
        let value = if self.event_takes_value {
            cmd.value.clone()
        } else {
            None
        };
        self.finish_with(cmd.headers.clone(), cmd.path.clone(), value)
    }

    /// The event [`Applied::finish`] will give, copied from `cmd` before the commit (a store
    /// that keeps events writes it with the change).
    pub fn event_copy(&self, cmd: &TwinCommand) -> Option<DittoMessage> {
        let mut event = self.event.clone()?;
        let value = self.event_takes_value.then(|| cmd.value.clone());
        fill_event(&mut event, cmd.headers.clone(), cmd.path.clone(), value);
        Some(event)
    }

    fn finish_with(self, headers: Headers, path: String, value: Option<Value>) -> Outcome {
        let Applied {
            mut response,
            mut event,
            etag,
            event_takes_value,
        } = self;
        if let Some(event) = &mut event {
            fill_event(
                event,
                headers.clone(),
                path.clone(),
                event_takes_value.then_some(value),
            );
        }
        response.headers = headers;
        response.path = path;
        match etag {
            Etag::Keep => {}
            Etag::Set(tag) => response.headers.insert("etag", tag),
            Etag::Remove => {
                response.headers.remove("etag");
            }
        }
        Outcome { response, event }
    }
}

/// What an event takes from its command: the headers, the path and (`Some`) the value.
fn fill_event(
    event: &mut DittoMessage,
    headers: Headers,
    path: String,
    value: Option<Option<Value>>,
) {
    event.headers = headers;
    event.path = path;
    if let Some(value) = value {
        event.value = value;
    }
}

/// `namespace:name`: the namespace is empty or dot-separated identifiers; the name is not empty
/// and has no `/` and no control characters.
pub fn is_valid_thing_id(id: &str) -> bool {
    let Some((ns, name)) = id.split_once(':') else {
        return false;
    };
    let ns_ok = ns.is_empty()
        || ns.split('.').all(|part| {
            part.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    ns_ok
        && !name.is_empty()
        && id.len() <= 256
        && !name.chars().any(|c| c == '/' || c.is_control())
}

/// Where in a thing a command points.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Thing,
    PolicyId,
    Definition,
    Attributes,
    Attribute(Vec<String>),
    Features,
    Feature(String),
    FeatureDefinition(String),
    Properties {
        feature: String,
        desired: bool,
    },
    Property {
        feature: String,
        desired: bool,
        pointer: Vec<String>,
    },
}

impl Level {
    fn parse(path: &str) -> Result<Level, ProtocolError> {
        let segs = segments(path);
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        Ok(match s.as_slice() {
            [] => Level::Thing,
            ["policyId"] => Level::PolicyId,
            ["definition"] => Level::Definition,
            ["attributes"] => Level::Attributes,
            ["attributes", ..] => Level::Attribute(segs[1..].to_vec()),
            ["features"] => Level::Features,
            [_, id] if s[0] == "features" => Level::Feature(id.to_string()),
            ["features", id, "definition"] => Level::FeatureDefinition(id.to_string()),
            ["features", id, kind] if *kind == "properties" || *kind == "desiredProperties" => {
                Level::Properties {
                    feature: id.to_string(),
                    desired: *kind == "desiredProperties",
                }
            }
            ["features", id, kind, ..] if *kind == "properties" || *kind == "desiredProperties" => {
                Level::Property {
                    feature: id.to_string(),
                    desired: *kind == "desiredProperties",
                    pointer: segs[3..].to_vec(),
                }
            }
            _ => return Err(errors::unknown_path(path)),
        })
    }

    /// The JSON path of this level inside the thing document.
    fn json_path(&self) -> Vec<String> {
        let props = |desired: bool| {
            if desired {
                "desiredProperties"
            } else {
                "properties"
            }
            .to_string()
        };
        match self {
            Level::Thing => vec![],
            Level::PolicyId => vec!["policyId".into()],
            Level::Definition => vec!["definition".into()],
            Level::Attributes => vec!["attributes".into()],
            Level::Attribute(p) => [vec!["attributes".to_string()], p.clone()].concat(),
            Level::Features => vec!["features".into()],
            Level::Feature(f) => vec!["features".into(), f.clone()],
            Level::FeatureDefinition(f) => vec!["features".into(), f.clone(), "definition".into()],
            Level::Properties { feature, desired } => {
                vec!["features".into(), feature.clone(), props(*desired)]
            }
            Level::Property {
                feature,
                desired,
                pointer,
            } => [
                vec!["features".to_string(), feature.clone(), props(*desired)],
                pointer.clone(),
            ]
            .concat(),
        }
    }

    fn feature(&self) -> Option<&str> {
        match self {
            Level::FeatureDefinition(f)
            | Level::Properties { feature: f, .. }
            | Level::Property { feature: f, .. } => Some(f),
            _ => None,
        }
    }

    fn not_found(&self, id: &str) -> ProtocolError {
        let ptr = |p: &[String]| {
            format!(
                "/{}",
                p.iter().map(|s| escape(s)).collect::<Vec<_>>().join("/")
            )
        };
        match self {
            Level::Thing => errors::thing_not_found(id),
            Level::PolicyId => errors::policy_id_not_found(id),
            Level::Definition => errors::definition_not_found(id),
            Level::Attributes => errors::attributes_not_found(id),
            Level::Attribute(p) => errors::attribute_not_found(id, &ptr(p)),
            Level::Features => errors::features_not_found(id),
            Level::Feature(f) => errors::feature_not_found(id, f),
            Level::FeatureDefinition(f) => errors::feature_definition_not_found(id, f),
            Level::Properties { feature, desired } => {
                errors::properties_not_found(id, feature, *desired)
            }
            Level::Property {
                feature,
                desired,
                pointer,
            } => errors::property_not_found(id, feature, &ptr(pointer), *desired),
        }
    }

    /// Checks the type of a value written at this level.
    fn check_value(&self, v: &Value, path: &str) -> Result<(), ProtocolError> {
        let objects_of_objects = |v: &Value| {
            v.as_object()
                .is_some_and(|m| m.values().all(|f| f.is_object() || f.is_null()))
        };
        let ok = match self {
            Level::Thing => v.is_object(),
            Level::PolicyId => v.is_string(),
            Level::Definition => v.is_string() || v.is_null(),
            Level::Attributes | Level::Feature(_) | Level::Properties { .. } => v.is_object(),
            Level::Features => objects_of_objects(v),
            Level::FeatureDefinition(_) => v
                .as_array()
                .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string)),
            Level::Attribute(_) | Level::Property { .. } => true,
        };
        if !ok {
            let expected = match self {
                Level::Thing | Level::Attributes | Level::Feature(_) | Level::Properties { .. } => {
                    "a JSON object"
                }
                Level::Features => "a JSON object of feature objects",
                Level::PolicyId => "a string",
                Level::Definition => "a string or null",
                Level::FeatureDefinition(_) => "a non-empty array of strings",
                _ => "valid",
            };
            return Err(errors::invalid_value(path, expected));
        }
        Ok(())
    }
}

/// A thing nested deeper than [`MAX_JSON_DEPTH`] is refused, so every stored thing loads again.
fn check_depth(thing: &Value) -> Result<(), ProtocolError> {
    let depth = json_depth(thing);
    if depth > MAX_JSON_DEPTH {
        return Err(ProtocolError::json_invalid(format!(
            "The Thing would nest {depth} levels deep; at most {MAX_JSON_DEPTH} are stored."
        )));
    }
    Ok(())
}

/// Refuses to write `value` at `path` when the thing would then nest deeper than
/// [`MAX_JSON_DEPTH`], before anything is built: a path of 100,000 segments would otherwise
/// build a value so deep that dropping it overflows the stack.
fn check_write_depth(path: &[String], value: &Value) -> Result<(), ProtocolError> {
    let depth = path.len().saturating_add(json_depth(value));
    if depth > MAX_JSON_DEPTH {
        return Err(ProtocolError::json_invalid(format!(
            "The Thing would nest {depth} levels deep; at most {MAX_JSON_DEPTH} are stored."
        )));
    }
    Ok(())
}

/// The members a thing document has; a body's other top-level members are not stored (as
/// Ditto's `ThingsModelFactory`, which reads only the thing's fields).
const THING_FIELDS: [&str; 5] = [
    "thingId",
    "policyId",
    "definition",
    "attributes",
    "features",
];

/// The special fields a thing body may carry, as Ditto reads them (`Thing.JsonFields.REVISION`,
/// `CREATED`, `MODIFIED`): `_revision` a 64-bit integer, `_created` and `_modified` ISO-8601
/// timestamps (each may be null); anything else is Ditto's `json.invalid`. They are then
/// ignored: the twin keeps its own revision and timestamps, as Ditto's things service does.
fn check_special_fields(body: &Map<String, Value>) -> Result<(), ProtocolError> {
    let not_of_type = |key: &str, v: &Value, java_type: &str| {
        ProtocolError::json_invalid(format!(
            "Value <{v}> for </{key}> is not of type <{java_type}>!"
        ))
    };
    if let Some(v) = body.get("_revision")
        && !v.is_null()
        && v.as_i64().is_none()
    {
        return Err(not_of_type("_revision", v, "Long"));
    }
    for key in ["_modified", "_created"] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if DateTime::parse_from_rfc3339(s).is_ok() => {}
            Some(Value::String(_)) => {
                return Err(ProtocolError::json_invalid(format!(
                    "The JSON object's field </{key}> is not in ISO-8601 format as expected!"
                )));
            }
            Some(other) => return Err(not_of_type(key, other, "String")),
        }
    }
    Ok(())
}

/// A merge patch for the whole thing: its special fields checked, only the thing's fields kept.
fn thing_patch(patch: &Value) -> Result<Value, ProtocolError> {
    let Some(members) = patch.as_object() else {
        return Ok(patch.clone());
    };
    check_special_fields(members)?;
    Ok(Value::Object(
        members
            .iter()
            .filter(|(key, _)| THING_FIELDS.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
    ))
}

/// Checks the shape of a whole thing document after a merge.
fn check_thing(thing: &Value) -> Result<(), ProtocolError> {
    check_depth(thing)?;
    for (level, key) in [
        (Level::PolicyId, "policyId"),
        (Level::Definition, "definition"),
        (Level::Attributes, "attributes"),
        (Level::Features, "features"),
    ] {
        if let Some(v) = thing.get(key) {
            check_part(&level, v)?;
        }
    }
    Ok(())
}

/// Checks the shape of `part`, the value a write leaves at `level` of a thing whose other
/// parts are valid: what [`check_thing`] checks of that part, the features inside it included
/// (its depth is checked by [`check_write_depth`]: a merge is no deeper than what it merges and
/// what it merges into).
fn check_part(level: &Level, part: &Value) -> Result<(), ProtocolError> {
    let properties_key = |desired: bool| {
        if desired {
            "desiredProperties"
        } else {
            "properties"
        }
    };
    match level {
        Level::Thing => check_thing(part),
        Level::PolicyId => level.check_value(part, "/policyId"),
        Level::Definition => level.check_value(part, "/definition"),
        Level::Attributes => level.check_value(part, "/attributes"),
        Level::Features => {
            level.check_value(part, "/features")?;
            for (id, feature) in part.as_object().into_iter().flatten() {
                check_feature(id, feature)?;
            }
            Ok(())
        }
        Level::Feature(id) => {
            if !(part.is_object() || part.is_null()) {
                return Err(errors::invalid_value(
                    "/features",
                    "a JSON object of feature objects",
                ));
            }
            check_feature(id, part)
        }
        Level::FeatureDefinition(id) => {
            level.check_value(part, &format!("/features/{id}/definition"))
        }
        Level::Properties { feature, desired } if !part.is_object() => Err(errors::invalid_value(
            &format!("/features/{feature}/{}", properties_key(*desired)),
            "a JSON object",
        )),
        Level::Properties { .. } | Level::Attribute(_) | Level::Property { .. } => Ok(()),
    }
}

/// Checks the parts of feature `id` that have a shape: its properties and its definition.
fn check_feature(id: &str, feature: &Value) -> Result<(), ProtocolError> {
    for key in ["properties", "desiredProperties"] {
        if let Some(p) = feature.get(key)
            && !p.is_object()
        {
            return Err(errors::invalid_value(
                &format!("/features/{id}/{key}"),
                "a JSON object",
            ));
        }
    }
    if let Some(d) = feature.get("definition") {
        Level::FeatureDefinition(id.to_string())
            .check_value(d, &format!("/features/{id}/definition"))?;
    }
    Ok(())
}

/// A new thing document from a create or modify of `/`.
fn new_thing(id: &str, value: &Value) -> Result<Value, ProtocolError> {
    let Some(obj) = value.as_object() else {
        return Err(errors::invalid_value("/", "a JSON object"));
    };
    check_special_fields(obj)?;
    if let Some(given) = obj.get("thingId")
        && given.as_str() != Some(id)
    {
        return Err(ProtocolError::new(
            400,
            "things:id.notsettable",
            format!(
                "The Thing ID in the JSON ({given}) does not match the Thing ID '{id}' of the command."
            ),
            "Either delete the Thing ID from the JSON or use the same one.",
        ));
    }
    let mut thing = Map::new();
    thing.insert("thingId".into(), Value::from(id));
    thing.insert(
        "policyId".into(),
        obj.get("policyId")
            .cloned()
            .unwrap_or_else(|| Value::from(id)),
    );
    for key in ["definition", "attributes", "features"] {
        if let Some(v) = obj.get(key) {
            thing.insert(key.into(), v.clone());
        }
    }
    let thing = Value::Object(thing);
    check_thing(&thing)?;
    Ok(thing)
}

/// A response without the command's headers and path ([`Applied::finish`] puts them in).
fn response(topic: &Topic, status: u16, value: Option<Value>) -> DittoMessage {
    let mut m = DittoMessage::new(topic.clone(), String::new());
    m.status = Some(status);
    m.value = value;
    m
}

/// The error response to a command, on the `errors` topic.
pub fn error_response(
    thing_id: &str,
    path: &str,
    headers: &Headers,
    e: &ProtocolError,
) -> DittoMessage {
    let (ns, name) = thing_id.split_once(':').unwrap_or(("_", thing_id));
    let mut m = DittoMessage::new(Topic::twin(ns, name, Criterion::Errors, None), path);
    m.headers = headers.clone();
    m.status = Some(e.status);
    m.value = Some(serde_json::to_value(e).unwrap_or_default());
    m
}

/// Applies one command to its thing in `slot` (`None`: no such thing) and changes the thing
/// there, in place: it is copied only when it is shared (`Arc::make_mut`), so the commands of a
/// batch change one copy of their thing. A command that fails or only reads leaves `slot` as it
/// was; one that changes the thing (or creates or deletes it) has an event.
pub fn apply(
    cmd: &TwinCommand,
    slot: &mut Option<Arc<StoredThing>>,
    now: DateTime<Utc>,
) -> Applied {
    match try_apply(cmd, slot, now) {
        Ok(applied) => applied,
        Err(e) => Applied {
            response: error_response(&cmd.thing_id, "", &Headers::new(), &e),
            event: None,
            etag: Etag::Keep,
            event_takes_value: false,
        },
    }
}

/// The thing in a slot that holds one, at its next `revision` changed `now`: for the change
/// of a command that found it there.
fn changing(slot: &mut Option<Arc<StoredThing>>, revision: u64, now: DateTime<Utc>) -> &mut Value {
    let next = Arc::make_mut(slot.as_mut().expect("the command found its thing"));
    next.revision = revision;
    next.modified = now;
    &mut next.thing
}

fn try_apply(
    cmd: &TwinCommand,
    slot: &mut Option<Arc<StoredThing>>,
    now: DateTime<Utc>,
) -> Result<Applied, ProtocolError> {
    let id = cmd.thing_id.as_str();
    if !is_valid_thing_id(id) {
        return Err(errors::thing_id_invalid(id));
    }
    let (ns, name) = id.split_once(':').expect("a valid id has ':'");
    let level = Level::parse(&cmd.path)?;
    let command_topic = Topic::twin(ns, name, Criterion::Commands, Some(cmd.action.as_str()));
    let read = cmd.action == Action::Retrieve;
    let creates_thing =
        matches!(cmd.action, Action::Create | Action::Modify) && level == Level::Thing;
    let current = slot.as_deref();
    match Preconditions::from_ditto_headers(&cmd.headers).check(
        current.map(StoredThing::etag).as_deref(),
        read || (current.is_none() && !creates_thing),
    ) {
        Ok(()) => {}
        Err(PreconditionFailure::NotModified(tag)) => {
            return Err(errors::precondition_not_modified(&tag));
        }
        Err(PreconditionFailure::Failed {
            header,
            value,
            actual,
        }) => return Err(errors::precondition_failed(header, &value, &actual)),
    }
    if cmd.action == Action::Create && level != Level::Thing {
        return Err(errors::unknown_path(&cmd.path));
    }
    let value = || {
        cmd.value
            .as_ref()
            .ok_or_else(|| ProtocolError::json_field_missing("/value"))
    };

    // Creating a thing: create, or modify of `/` for a thing that does not exist.
    let Some(current) = current else {
        if !creates_thing {
            return Err(errors::thing_not_found(id));
        }
        let thing = new_thing(id, value()?)?;
        let outcome = changed(
            &command_topic,
            Reply::Created(thing.clone()),
            "created",
            EventValue::Value(thing.clone()),
            1,
            now,
        );
        *slot = Some(Arc::new(StoredThing {
            thing,
            revision: 1,
            created: now,
            modified: now,
        }));
        return Ok(outcome);
    };
    if cmd.action == Action::Create {
        return Err(errors::thing_conflict(id));
    }
    if let Some(feature) = level.feature()
        && current
            .thing
            .pointer(&format!("/features/{}", escape(feature)))
            .is_none()
        && cmd.action != Action::Merge
    {
        return Err(errors::feature_not_found(id, feature));
    }
    let path = level.json_path();
    let existing = pointer::get(&current.thing, &path);
    let revision = current.revision + 1;
    match cmd.action {
        Action::Retrieve => {
            let found = existing.ok_or_else(|| level.not_found(id))?;
            let value = match (&level, &cmd.fields) {
                (Level::Thing, Some(fields)) => {
                    let selector = ferrule_protocol::FieldSelector::parse(fields)?;
                    Value::Object(selector.apply(&current.with_special_fields()))
                }
                _ => found.clone(),
            };
            Ok(Applied {
                response: response(&command_topic, 200, Some(value)),
                event: None,
                etag: Etag::Set(current.etag()),
                event_takes_value: false,
            })
        }
        Action::Modify => {
            let v = value()?;
            level.check_value(v, &cmd.path)?;
            let created = existing.is_none();
            let whole = if level == Level::Thing {
                Some(new_thing(id, v)?)
            } else {
                // The path and the value are all the write adds: the rest of the thing keeps
                // its shape and depth, so the whole thing is not walked again for each write.
                check_part(&level, v)?;
                check_write_depth(&path, v)?;
                None
            };
            let next = changing(slot, revision, now);
            match whole {
                Some(thing) => *next = thing,
                None => pointer::set(next, &path, v.clone()),
            }
            let (reply, action) = if created {
                (Reply::Created(v.clone()), "created")
            } else {
                (Reply::NoContent, "modified")
            };
            Ok(changed(
                &command_topic,
                reply,
                action,
                EventValue::Command,
                revision,
                now,
            ))
        }
        Action::Merge => {
            // A patch of the whole thing keeps only the thing's fields; the event carries what
            // was merged.
            let given = value()?;
            let filtered = match level {
                Level::Thing => Some(thing_patch(given)?),
                _ => None,
            };
            let patch = filtered.as_ref().unwrap_or(given);
            check_write_depth(&path, patch)?;
            let mut merged = existing.cloned().unwrap_or(Value::Null);
            pointer::merge(&mut merged, patch);
            if level == Level::Thing {
                let mut m = match merged {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                m.insert("thingId".into(), Value::from(id));
                if !m.contains_key("policyId") {
                    m.insert("policyId".into(), Value::from(id));
                }
                merged = Value::Object(m);
            }
            // What the merge leaves is checked before the thing changes: the rest of the
            // thing was valid and stays as it was.
            if !merged.is_null() {
                check_part(&level, &merged)?;
            }
            let next = changing(slot, revision, now);
            if level == Level::Thing {
                *next = merged;
            } else if merged.is_null() {
                pointer::remove(next, &path);
            } else {
                pointer::set(next, &path, merged);
            }
            let event_value = match filtered {
                Some(patch) => EventValue::Value(patch),
                None => EventValue::Command,
            };
            Ok(changed(
                &command_topic,
                Reply::NoContent,
                "merged",
                event_value,
                revision,
                now,
            ))
        }
        Action::Delete => {
            if existing.is_none() {
                return Err(level.not_found(id));
            }
            if level == Level::PolicyId {
                return Err(ProtocolError::new(
                    400,
                    "things:policyId.notdeletable",
                    format!("The Policy ID of the Thing with ID '{id}' cannot be deleted."),
                    "Modify the Policy ID instead.",
                ));
            }
            let mut applied = changed(
                &command_topic,
                Reply::NoContent,
                "deleted",
                EventValue::None,
                revision,
                now,
            );
            if level == Level::Thing {
                applied.etag = Etag::Remove;
                *slot = None;
            } else {
                pointer::remove(changing(slot, revision, now), &path);
            }
            Ok(applied)
        }
        Action::Create => unreachable!("handled above"),
    }
}

/// The response to a change: 201 with the created value, or 204.
enum Reply {
    Created(Value),
    NoContent,
}

/// The value of an event.
enum EventValue {
    None,
    /// The command's value, moved in by [`Applied::finish`].
    Command,
    Value(Value),
}

fn changed(
    command_topic: &Topic,
    reply: Reply,
    event_action: &str,
    event_value: EventValue,
    revision: u64,
    modified: DateTime<Utc>,
) -> Applied {
    let (ns, name) = (&command_topic.namespace, &command_topic.name);
    let mut event = DittoMessage::new(
        Topic::twin(ns, name, Criterion::Events, Some(event_action)),
        String::new(),
    );
    let event_takes_value = matches!(event_value, EventValue::Command);
    if let EventValue::Value(v) = event_value {
        event.value = Some(v);
    }
    event.revision = Some(revision);
    event.timestamp = Some(timestamp(&modified));
    let response = match reply {
        Reply::Created(body) => response(command_topic, 201, Some(body)),
        Reply::NoContent => response(command_topic, 204, None),
    };
    Applied {
        response,
        event: Some(event),
        etag: Etag::Set(etag(revision)),
        event_takes_value,
    }
}
