//! Each twin command at each path level, and a property test against a plain JSON model.

use super::engine::{self, Action, StoredThing, TwinCommand};
use super::pointer;
use crate::model::parse::MAX_JSON_DEPTH as MAX_DEPTH;
use chrono::{TimeZone, Utc};
use ferrule_protocol::Headers;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;

const ID: &str = "org.acme:thing-1";

fn cmd(action: Action, path: &str, value: Option<Value>) -> TwinCommand {
    let mut headers = Headers::new();
    headers.insert("correlation-id", "c-1");
    TwinCommand {
        thing_id: ID.into(),
        action,
        path: path.into(),
        value,
        headers,
        fields: None,
    }
}

/// What a command did, with the thing after it when it changed it (`Some(None)`: deleted).
#[derive(Debug)]
struct Outcome {
    response: ferrule_protocol::DittoMessage,
    event: Option<ferrule_protocol::DittoMessage>,
    change: Option<Option<StoredThing>>,
}

/// [`engine::apply`] on a copy of `current`; a command without an event must leave the thing
/// as it found it.
fn apply(cmd: &TwinCommand, current: Option<&StoredThing>, now: chrono::DateTime<Utc>) -> Outcome {
    let mut slot = current.cloned().map(Arc::new);
    let out = engine::apply(cmd, &mut slot, now).finish_copy(cmd);
    if out.event.is_none() {
        assert_eq!(
            slot.as_deref(),
            current,
            "a command without an event changed its thing"
        );
    }
    let change = out.event.is_some().then(|| slot.map(Arc::unwrap_or_clone));
    Outcome {
        response: out.response,
        event: out.event,
        change,
    }
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn thing() -> StoredThing {
    let out = apply(
        &cmd(
            Action::Create,
            "/",
            Some(json!({
                "definition": "org.acme:sensor:1.0.0",
                "attributes": {"location": {"room": "kitchen"}, "serial": 7},
                "features": {"temp": {"properties": {"value": 21.5, "unit": "C"},
                                      "desiredProperties": {"value": 20}}}
            })),
        ),
        None,
        now(),
    );
    out.change.unwrap().unwrap()
}

fn run(action: Action, path: &str, value: Option<Value>) -> Outcome {
    apply(&cmd(action, path, value), Some(&thing()), now())
}

fn status(o: &Outcome) -> u16 {
    o.response.status.unwrap()
}

fn error(o: &Outcome) -> String {
    o.response.value.as_ref().unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn create_thing() {
    let out = apply(
        &cmd(Action::Create, "/", Some(json!({"attributes": {"a": 1}}))),
        None,
        now(),
    );
    assert_eq!(status(&out), 201);
    assert_eq!(
        out.response.topic.to_string(),
        "org.acme/thing-1/things/twin/commands/create"
    );
    assert_eq!(
        out.response.value,
        Some(json!({"thingId": ID, "policyId": ID, "attributes": {"a": 1}}))
    );
    let event = out.event.unwrap();
    assert_eq!(
        event.topic.to_string(),
        "org.acme/thing-1/things/twin/events/created"
    );
    assert_eq!(event.revision, Some(1));
    assert_eq!(event.timestamp.as_deref(), Some("2026-11-25T12:00:00.000Z"));
    assert_eq!(event.headers.correlation_id().as_deref(), Some("c-1"));
    // Again: conflict.
    let again = apply(
        &cmd(Action::Create, "/", Some(json!({}))),
        Some(&thing()),
        now(),
    );
    assert_eq!(status(&again), 409);
    assert_eq!(error(&again), "things:thing.conflict");
    assert_eq!(
        again.response.topic.to_string(),
        "org.acme/thing-1/things/twin/errors"
    );
    assert!(again.event.is_none() && again.change.is_none());
    // A thingId that does not match.
    let bad = apply(
        &cmd(Action::Create, "/", Some(json!({"thingId": "x:y"}))),
        None,
        now(),
    );
    assert_eq!(status(&bad), 400);
    // Invalid ids.
    let mut c = cmd(Action::Create, "/", Some(json!({})));
    c.thing_id = "no-namespace-separator".into();
    assert_eq!(error(&apply(&c, None, now())), "things:id.invalid");
}

#[test]
fn retrieve_every_level() {
    for (path, expected) in [
        (
            "/attributes",
            json!({"location": {"room": "kitchen"}, "serial": 7}),
        ),
        ("/attributes/location/room", json!("kitchen")),
        (
            "/features/temp",
            json!({"properties": {"value": 21.5, "unit": "C"}, "desiredProperties": {"value": 20}}),
        ),
        (
            "/features/temp/properties",
            json!({"value": 21.5, "unit": "C"}),
        ),
        ("/features/temp/properties/value", json!(21.5)),
        ("/features/temp/desiredProperties/value", json!(20)),
        ("/definition", json!("org.acme:sensor:1.0.0")),
        ("/policyId", json!(ID)),
    ] {
        let out = run(Action::Retrieve, path, None);
        assert_eq!(status(&out), 200, "{path}");
        assert_eq!(out.response.value, Some(expected), "{path}");
        assert!(out.event.is_none() && out.change.is_none());
    }
    let whole = run(Action::Retrieve, "/", None);
    assert_eq!(whole.response.value.unwrap()["thingId"], ID);
    let mut c = cmd(Action::Retrieve, "/", None);
    c.fields = Some("thingId,_revision,attributes/serial".into());
    let selected = apply(&c, Some(&thing()), now());
    assert_eq!(
        selected.response.value,
        Some(json!({"thingId": ID, "attributes": {"serial": 7}, "_revision": 1}))
    );
}

#[test]
fn not_found_errors_per_level() {
    let missing = apply(&cmd(Action::Retrieve, "/attributes", None), None, now());
    assert_eq!(
        (status(&missing), error(&missing)),
        (404, "things:thing.notfound".into())
    );
    let empty = apply(&cmd(Action::Create, "/", Some(json!({}))), None, now())
        .change
        .unwrap()
        .unwrap();
    for (path, code) in [
        ("/attributes", "things:attributes.notfound"),
        ("/attributes/x", "things:attribute.notfound"),
        ("/features", "things:features.notfound"),
        ("/features/f", "things:feature.notfound"),
        ("/features/f/properties", "things:feature.notfound"),
        ("/definition", "things:definition.notfound"),
    ] {
        let out = apply(&cmd(Action::Retrieve, path, None), Some(&empty), now());
        assert_eq!(
            (status(&out), error(&out)),
            (404, code.to_string()),
            "{path}"
        );
    }
    for (path, code) in [
        (
            "/features/temp/properties/nope",
            "things:feature.property.notfound",
        ),
        (
            "/features/temp/desiredProperties/nope",
            "things:feature.desiredProperty.notfound",
        ),
        (
            "/features/temp/definition",
            "things:feature.definition.notfound",
        ),
        ("/features/other", "things:feature.notfound"),
    ] {
        let out = run(Action::Retrieve, path, None);
        assert_eq!(
            (status(&out), error(&out)),
            (404, code.to_string()),
            "{path}"
        );
        let out = run(Action::Delete, path, None);
        assert_eq!(status(&out), 404, "delete {path}");
    }
    let out = run(Action::Retrieve, "/features/temp/properties/nope", None);
    assert_eq!(
        out.response.value.unwrap()["message"],
        "The Property with JSON Pointer '/nope' of the Feature with ID 'temp' on the Thing with ID 'org.acme:thing-1' does not exist or the requester had insufficient permissions to access it."
    );
    let unknown = run(Action::Retrieve, "/something", None);
    assert_eq!(error(&unknown), "things.protocol.adapter:unknown.path");
}

#[test]
fn modify_creates_or_modifies() {
    let out = run(Action::Modify, "/attributes/serial", Some(json!(8)));
    assert_eq!(status(&out), 204);
    assert_eq!(out.response.value, None);
    let event = out.event.unwrap();
    assert_eq!(event.topic.action.as_deref(), Some("modified"));
    assert_eq!(event.value, Some(json!(8)));
    assert_eq!(event.revision, Some(2));
    assert_eq!(
        out.response.headers.get_str("etag").as_deref(),
        Some("\"rev:2\"")
    );
    let t = out.change.unwrap().unwrap();
    assert_eq!(t.thing["attributes"]["serial"], 8);
    assert_eq!(t.revision, 2);

    let out = run(
        Action::Modify,
        "/attributes/new/deep",
        Some(json!({"x": 1})),
    );
    assert_eq!(status(&out), 201);
    assert_eq!(out.response.value, Some(json!({"x": 1})));
    assert_eq!(out.event.unwrap().topic.action.as_deref(), Some("created"));

    for (path, value) in [
        ("/features/temp/properties/value", json!(22)),
        ("/features/temp/properties", json!({"value": 1})),
        ("/features/temp/desiredProperties", json!({"value": 2})),
        ("/features/temp", json!({"properties": {}})),
        ("/features", json!({"a": {}})),
        ("/attributes", json!({"b": 2})),
        ("/definition", json!("org.acme:other:2.0.0")),
        ("/policyId", json!("org.acme:policy")),
    ] {
        let out = run(Action::Modify, path, Some(value.clone()));
        assert_eq!(status(&out), 204, "{path}");
        let t = out.change.unwrap().unwrap();
        assert_eq!(
            pointer::get(&t.thing, &pointer::segments(path)),
            Some(&value),
            "{path}"
        );
    }
    let out = run(
        Action::Modify,
        "/features/temp/definition",
        Some(json!(["org.acme:temp:1.0.0"])),
    );
    assert_eq!(status(&out), 201);
    let out = run(
        Action::Modify,
        "/features/new-feature",
        Some(json!({"properties": {"a": 1}})),
    );
    assert_eq!(status(&out), 201);
    // A property of a feature that does not exist.
    let out = run(
        Action::Modify,
        "/features/ghost/properties/x",
        Some(json!(1)),
    );
    assert_eq!(
        (status(&out), error(&out)),
        (404, "things:feature.notfound".into())
    );
    // Wrong types.
    for (path, value) in [
        ("/attributes", json!(1)),
        ("/features", json!({"f": 1})),
        ("/features/temp/properties", json!([1])),
        ("/features/temp/definition", json!("x")),
        ("/policyId", json!(5)),
        ("/", json!([1])),
        // A feature's properties and definition have their shape wherever the feature is
        // written, as when the whole thing is.
        ("/features/temp", json!({"properties": null})),
        ("/features/temp", json!({"definition": "x"})),
        ("/features", json!({"f": {"desiredProperties": 5}})),
    ] {
        let out = run(Action::Modify, path, Some(value.clone()));
        assert_eq!(status(&out), 400, "{path}");
        // The same feature in a whole thing is refused alike.
        if let Some(feature) = path.strip_prefix("/features/") {
            let body = json!({"features": {feature: value}});
            let out = apply(&cmd(Action::Create, "/", Some(body)), None, now());
            assert_eq!(status(&out), 400, "{path} as a whole thing");
        }
    }
    let out = run(Action::Modify, "/attributes/x", None);
    assert_eq!(error(&out), "json.field.missing");
    // Modify of `/` replaces the thing; of a missing thing creates it.
    let out = run(
        Action::Modify,
        "/",
        Some(json!({"attributes": {"only": true}})),
    );
    assert_eq!(status(&out), 204);
    assert_eq!(
        out.change.unwrap().unwrap().thing,
        json!({"thingId": ID, "policyId": ID, "attributes": {"only": true}})
    );
    let out = apply(&cmd(Action::Modify, "/", Some(json!({}))), None, now());
    assert_eq!(status(&out), 201);
    assert_eq!(out.event.unwrap().revision, Some(1));
}

#[test]
fn merge_patches() {
    let out = run(
        Action::Merge,
        "/",
        Some(
            json!({"attributes": {"serial": null, "new": 1}, "features": {"temp": {"properties": {"value": 23}}}}),
        ),
    );
    assert_eq!(status(&out), 204);
    let event = out.event.unwrap();
    assert_eq!(event.topic.action.as_deref(), Some("merged"));
    assert_eq!(event.value.unwrap()["attributes"]["serial"], Value::Null);
    let t = out.change.unwrap().unwrap();
    assert_eq!(
        t.thing["attributes"],
        json!({"location": {"room": "kitchen"}, "new": 1})
    );
    assert_eq!(
        t.thing["features"]["temp"]["properties"],
        json!({"value": 23, "unit": "C"})
    );
    // Merge at a property path that does not exist yet creates it, also for a new feature.
    let out = run(
        Action::Merge,
        "/features/fresh/properties/a",
        Some(json!({"b": 1})),
    );
    assert_eq!(status(&out), 204);
    assert_eq!(
        out.change.unwrap().unwrap().thing["features"]["fresh"],
        json!({"properties": {"a": {"b": 1}}})
    );
    // null at a path removes it.
    let out = run(Action::Merge, "/attributes/serial", Some(Value::Null));
    assert!(
        out.change.unwrap().unwrap().thing["attributes"]
            .get("serial")
            .is_none()
    );
    // Invalid results are refused, the thing as it was (checked by `apply`).
    for (path, patch, message) in [
        (
            "/",
            json!({"attributes": 5}),
            "The value at </attributes> must be a JSON object.",
        ),
        (
            "/attributes",
            json!(5),
            "The value at </attributes> must be a JSON object.",
        ),
        (
            "/features/temp",
            json!({"properties": 5}),
            "The value at </features/temp/properties> must be a JSON object.",
        ),
        (
            "/features/temp",
            json!(5),
            "The value at </features> must be a JSON object of feature objects.",
        ),
        (
            "/features",
            json!({"temp": {"definition": []}}),
            "The value at </features/temp/definition> must be a non-empty array of strings.",
        ),
        (
            "/features/temp/desiredProperties",
            json!(true),
            "The value at </features/temp/desiredProperties> must be a JSON object.",
        ),
        (
            "/policyId",
            json!(1),
            "The value at </policyId> must be a string.",
        ),
    ] {
        let out = run(Action::Merge, path, Some(patch));
        assert_eq!(status(&out), 400, "{path}");
        assert_eq!(out.response.value.unwrap()["message"], message, "{path}");
    }
    let out = apply(&cmd(Action::Merge, "/", Some(json!({}))), None, now());
    assert_eq!(error(&out), "things:thing.notfound");
}

/// Issue 16, item 9: a client-supplied `_revision` (and `_created`, `_modified`) in a thing body.
/// Ditto type-checks them as it reads the thing (`json.invalid`) and then ignores them: the
/// revision and timestamps are the twin's. Other top-level members are not stored either.
#[test]
fn special_fields_in_a_body_are_checked_and_ignored() {
    let body = json!({"_revision": 999, "_created": "2000-01-01T00:00:00Z",
                      "_modified": null, "_policy": {"x": 1}, "foo": 1,
                      "attributes": {"a": 1}});
    for (action, status_code) in [(Action::Modify, 204), (Action::Merge, 204)] {
        let out = run(action, "/", Some(body.clone()));
        assert_eq!(status(&out), status_code, "{action:?}");
        let event = out.event.unwrap();
        let stored = out.change.unwrap().unwrap();
        assert_eq!(stored.revision, thing().revision + 1);
        assert_eq!(stored.created, thing().created);
        for key in ["_revision", "_created", "_modified", "_policy", "foo"] {
            assert!(stored.thing.get(key).is_none(), "{action:?} stored {key}");
            if action == Action::Merge {
                assert!(
                    event.value.as_ref().unwrap().get(key).is_none(),
                    "event {key}"
                );
            }
        }
        assert_eq!(stored.thing["attributes"]["a"], 1);
        let selected = apply(
            &TwinCommand {
                fields: Some("_revision,_created".into()),
                ..cmd(Action::Retrieve, "/", None)
            },
            Some(&stored),
            now(),
        );
        assert_eq!(
            selected.response.value.unwrap(),
            json!({"_revision": stored.revision, "_created": "2026-11-25T12:00:00.000Z"})
        );
    }
    let created = apply(&cmd(Action::Create, "/", Some(body)), None, now());
    assert_eq!(created.change.unwrap().unwrap().revision, 1);

    for (body, message) in [
        (
            json!({"_revision": "abc"}),
            r#"Value <"abc"> for </_revision> is not of type <Long>!"#,
        ),
        (
            json!({"_revision": 1.5}),
            "Value <1.5> for </_revision> is not of type <Long>!",
        ),
        (
            json!({"_created": 5}),
            "Value <5> for </_created> is not of type <String>!",
        ),
        (
            json!({"_modified": "yesterday"}),
            "The JSON object's field </_modified> is not in ISO-8601 format as expected!",
        ),
    ] {
        for action in [Action::Create, Action::Modify, Action::Merge] {
            let current = (action != Action::Create).then(thing);
            let out = apply(
                &cmd(action, "/", Some(body.clone())),
                current.as_ref(),
                now(),
            );
            assert_eq!(status(&out), 400, "{action:?} {body}");
            assert_eq!(error(&out), "json.invalid");
            assert_eq!(out.response.value.unwrap()["message"], message);
            assert!(out.change.is_none());
        }
    }
}

/// Runs `f` on a thread with a 2 MiB stack, a tokio worker's: a recursion that input can drive
/// overflows it.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("thread")
        .join()
        .expect("no panic, no stack overflow")
}

/// Issue 16: paths 100,000 segments deep (a REST path or a command's `path`) and field
/// selectors 100,000 levels deep, on a 2 MiB stack: writes are refused before the deep value is
/// built (dropping it would overflow the stack), reads find nothing, selectors are refused.
#[test]
fn paths_and_selectors_100_000_levels_deep_are_refused_on_a_small_stack() {
    let outcomes = on_small_stack(|| {
        let deep = format!("/attributes{}", "/a".repeat(100_000));
        let selector = format!("{}a{}", "a(".repeat(100_000), ")".repeat(100_000));
        let retrieve = TwinCommand {
            fields: Some(selector),
            ..cmd(Action::Retrieve, "/", None)
        };
        [
            run(Action::Modify, &deep, Some(json!(1))),
            run(Action::Merge, &deep, Some(json!({"b": 1}))),
            run(Action::Retrieve, &deep, None),
            run(Action::Delete, &deep, None),
            apply(&retrieve, Some(&thing()), now()),
        ]
        .map(|o| (status(&o), error(&o), o.change.is_none()))
    });
    let [modify, merge, retrieve, delete, fields] = outcomes;
    assert_eq!(modify, (400, "json.invalid".into(), true));
    assert_eq!(merge, (400, "json.invalid".into(), true));
    assert_eq!(retrieve, (404, "things:attribute.notfound".into(), true));
    assert_eq!(delete, (404, "things:attribute.notfound".into(), true));
    assert_eq!(fields, (400, "json.fieldselector.invalid".into(), true));
    let at_limit = run(
        Action::Modify,
        &format!("/attributes{}", "/a".repeat(MAX_DEPTH - 1)),
        Some(json!(1)),
    );
    assert_eq!(status(&at_limit), 201);
    let over = run(
        Action::Modify,
        &format!("/attributes{}", "/a".repeat(MAX_DEPTH - 1)),
        Some(json!({})),
    );
    assert_eq!(
        over.response.value.unwrap()["message"],
        "The Thing would nest 101 levels deep; at most 100 are stored."
    );
}

/// 1 MB values, keys and selectors are written and read whole.
#[test]
fn one_megabyte_values_and_selectors() {
    let (written, selected) = on_small_stack(|| {
        let big = "x".repeat(1_000_000);
        let written = run(
            Action::Modify,
            &format!("/attributes/{big}"),
            Some(json!(big)),
        );
        let stored = written.change.clone().unwrap().unwrap();
        let fields = format!("{}attributes/{big}", "thingId,".repeat(10));
        let selected = apply(
            &TwinCommand {
                fields: Some(fields),
                ..cmd(Action::Retrieve, "/", None)
            },
            Some(&stored),
            now(),
        );
        (status(&written), selected.response.value.unwrap())
    });
    assert_eq!(written, 201);
    let attributes = selected["attributes"].as_object().unwrap();
    assert_eq!(attributes.len(), 1);
    assert_eq!(selected["thingId"], ID);
}

#[test]
fn delete_levels() {
    for path in [
        "/attributes/serial",
        "/attributes",
        "/features/temp/properties/unit",
        "/features/temp",
        "/features",
        "/definition",
    ] {
        let out = run(Action::Delete, path, None);
        assert_eq!(status(&out), 204, "{path}");
        assert_eq!(
            out.event.as_ref().unwrap().topic.action.as_deref(),
            Some("deleted")
        );
        let t = out.change.unwrap().unwrap();
        assert!(
            pointer::get(&t.thing, &pointer::segments(path)).is_none(),
            "{path}"
        );
    }
    let out = run(Action::Delete, "/", None);
    assert_eq!(status(&out), 204);
    assert_eq!(out.change, Some(None));
    assert_eq!(out.event.unwrap().revision, Some(2));
    assert_eq!(status(&run(Action::Delete, "/policyId", None)), 400);
}

#[test]
fn conditional_headers() {
    let with = |header: &str, value: &str, action: Action, v: Option<Value>| {
        let mut c = cmd(action, "/attributes/serial", v);
        c.headers.insert(header, value);
        apply(&c, Some(&thing()), now())
    };
    assert_eq!(
        status(&with(
            "if-match",
            "\"rev:1\"",
            Action::Modify,
            Some(json!(1))
        )),
        204
    );
    let out = with("if-match", "\"rev:2\"", Action::Modify, Some(json!(1)));
    assert_eq!(
        (status(&out), error(&out)),
        (412, "things:precondition.failed".into())
    );
    assert_eq!(status(&with("if-match", "*", Action::Delete, None)), 204);
    assert_eq!(
        status(&with("if-none-match", "*", Action::Modify, Some(json!(1)))),
        412
    );
    assert_eq!(
        status(&with("if-none-match", "\"rev:1\"", Action::Retrieve, None)),
        304
    );
    assert_eq!(
        status(&with("if-none-match", "\"rev:9\"", Action::Retrieve, None)),
        200
    );
    let mut c = cmd(Action::Modify, "/", Some(json!({})));
    c.headers.insert("If-None-Match", "*");
    assert_eq!(status(&apply(&c, None, now())), 201);
    assert_eq!(status(&apply(&c, Some(&thing()), now())), 412);
    let mut c = cmd(Action::Modify, "/", Some(json!({})));
    c.headers.insert("if-match", "*");
    assert_eq!(status(&apply(&c, None, now())), 412);
}

// ---- property test: the engine against a plain JSON model ----------------------------------

#[derive(Debug, Clone)]
enum Op {
    Modify(String, Value),
    Merge(String, Value),
    Delete(String),
}

fn path() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "/attributes",
        "/attributes/a",
        "/attributes/a/b",
        "/attributes/c",
        "/features",
        "/features/f",
        "/features/f/properties",
        "/features/f/properties/x",
        "/features/f/properties/x/y",
        "/features/g",
        "/features/g/desiredProperties/z",
        "/features/f/definition",
        "/definition",
        "/policyId",
    ])
    .prop_map(String::from)
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i32>().prop_map(Value::from),
        "[a-z]{0,3}".prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 12, 3, |inner| {
        prop::collection::vec(
            (
                prop::sample::select(vec!["a", "b", "x", "properties", "f"]),
                inner,
            ),
            0..3,
        )
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (path(), value()).prop_map(|(p, v)| Op::Modify(p, v)),
        (path(), value()).prop_map(|(p, v)| Op::Merge(p, v)),
        path().prop_map(Op::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Any sequence of modify/merge/delete gives the JSON that applying the same operations to a
    /// plain `serde_json::Value` gives (for the operations the twin accepts), revisions grow by one
    /// per change, and nothing panics.
    #[test]
    fn twin_matches_a_plain_json_model(ops in prop::collection::vec(op(), 1..25)) {
        let mut stored = thing();
        let mut model = stored.thing.clone();
        for op in ops {
            let (c, path) = match &op {
                Op::Modify(p, v) => (cmd(Action::Modify, p, Some(v.clone())), p.clone()),
                Op::Merge(p, v) => (cmd(Action::Merge, p, Some(v.clone())), p.clone()),
                Op::Delete(p) => (cmd(Action::Delete, p, None), p.clone()),
            };
            let out = apply(&c, Some(&stored), now());
            let st = out.response.status.unwrap();
            match out.change {
                Some(Some(next)) => {
                    prop_assert!(st < 300);
                    prop_assert_eq!(next.revision, stored.revision + 1);
                    let segs = pointer::segments(&path);
                    match &op {
                        Op::Modify(_, v) => pointer::set(&mut model, &segs, v.clone()),
                        Op::Merge(_, v) => {
                            let mut merged = pointer::get(&model, &segs).cloned().unwrap_or(Value::Null);
                            pointer::merge(&mut merged, v);
                            if merged.is_null() { pointer::remove(&mut model, &segs); }
                            else { pointer::set(&mut model, &segs, merged); }
                        }
                        Op::Delete(_) => { pointer::remove(&mut model, &segs); }
                    }
                    prop_assert_eq!(&next.thing, &model);
                    // What a change leaves is a valid thing as a whole, whatever part it checked.
                    let whole = apply(&cmd(Action::Create, "/", Some(next.thing.clone())), None, now());
                    prop_assert_eq!(whole.response.status, Some(201), "{:?}", whole.response.value);
                    stored = next;
                }
                Some(None) => prop_assert!(false, "the thing itself is never deleted here"),
                None => prop_assert!(st >= 400, "a refused command is an error: {}", st),
            }
        }
    }
}

/// What a command carries moves into its answers (`finish`, after the commit) exactly as it is
/// copied into them (`finish_copy`): the same response and event for every kind of outcome. The
/// event copied before the commit for a store that keeps events (`event_copy`) is that event.
#[test]
fn finishing_by_move_and_by_copy_answer_alike() {
    let mut with_etag = cmd(Action::Modify, "/attributes/serial", Some(json!(9)));
    with_etag.headers.insert("etag", "\"from-the-device\"");
    let mut delete_with_etag = cmd(Action::Delete, "/", None);
    delete_with_etag.headers.insert("etag", "\"x\"");
    for c in [
        cmd(Action::Modify, "/attributes/serial", Some(json!(8))),
        cmd(Action::Modify, "/attributes/new", Some(json!({"a": [1]}))),
        cmd(
            Action::Merge,
            "/",
            Some(json!({"attributes": {"n": 1}, "x": 2})),
        ),
        cmd(
            Action::Merge,
            "/features/temp/properties",
            Some(json!({"value": 1})),
        ),
        cmd(Action::Retrieve, "/attributes", None),
        cmd(Action::Delete, "/attributes/serial", None),
        cmd(Action::Modify, "/attributes", Some(json!(5))),
        with_etag,
        delete_with_etag,
    ] {
        let current = Arc::new(thing());
        let mut copied = c.clone();
        let by_copy = engine::apply(&c, &mut Some(current.clone()), now()).finish_copy(&c);
        let applied = engine::apply(&c, &mut Some(current), now());
        let before_commit = applied.event_copy(&copied);
        let by_move = applied.finish(&mut copied);
        assert_eq!(by_move.response, by_copy.response, "{c:?}");
        assert_eq!(by_move.event, by_copy.event, "{c:?}");
        assert_eq!(before_commit, by_move.event, "{c:?}");
        assert_eq!(by_move.response.path, c.path, "{c:?}");
        assert_eq!(
            by_move.response.headers.correlation_id().as_deref(),
            Some("c-1")
        );
        // The twin's entity tag after a change or a read, none after the thing is deleted,
        // and what the command had after an error.
        let etag = by_move.response.headers.get_str("etag");
        let expected = match (c.action, c.path.as_str(), by_move.response.status) {
            (Action::Delete, "/", _) => None,
            (_, _, Some(400)) => c.headers.get_str("etag"),
            (Action::Retrieve, _, _) => Some("\"rev:1\"".to_string()),
            _ => Some("\"rev:2\"".to_string()),
        };
        assert_eq!(etag, expected, "{c:?}");
    }
}
