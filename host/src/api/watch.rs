//! `GET /api/2/things` with `Accept: text/event-stream`: Ditto's server-sent events of twin
//! changes. Each twin event becomes the thing as the event shows it (Ditto's
//! `ThingEventToThingConverter`: the thing id and the changed value at its path; a merge without
//! its `null`s; a deletion only the id), enriched with `extraFields`, passed through the
//! `namespaces`, `ids` and RQL `filter` of the request, and projected with `fields` (which may
//! select `_revision`, `_modified` and `_context` with the event's topic, path, value and
//! headers). A comment line every second keeps the stream alive, as Ditto's heartbeat.
//!
//! A watcher is a lossy route of the hub's router: it never holds the twin's events back. A
//! client that falls [`QUEUE`] events behind is disconnected (the stream ends); a browser's
//! `EventSource` reconnects by itself, and the client reads the thing again.

use crate::error::DittoError;
use crate::hub::routing::{CompiledTopic, Route, Routed, Router, Skipped};
use crate::model::fields::FieldSelector;
use crate::model::topic::{TopicKind, check_extra_fields, comma_list, rql_invalid};
use crate::twin::pointer;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use ferrule_protocol::DittoMessage;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// How many events a watcher may be behind before it is disconnected.
pub const QUEUE: usize = 1024;

/// How often a comment keeps an idle stream alive.
const KEEP_ALIVE: Duration = Duration::from_secs(1);

/// What a watcher asked for, from the query of its request.
#[derive(Default)]
pub struct WatchRequest {
    pub ids: Vec<String>,
    pub namespaces: Vec<String>,
    pub filter: Option<String>,
    pub extra_fields: Option<String>,
    pub fields: Option<String>,
    /// `GET /api/2/things/{id}/<path>`: only the value at this pointer of each event's thing,
    /// and only events that show a value there.
    pub pointer: Option<String>,
}

impl WatchRequest {
    /// Reads the parameters Ditto's SSE endpoint takes; others are ignored, as Ditto does.
    pub fn from_query(query: Option<&str>) -> WatchRequest {
        let mut out = WatchRequest::default();
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match name.as_ref() {
                "ids" => out.ids.extend(comma_list(&value).map(String::from)),
                "namespaces" => out.namespaces.extend(comma_list(&value).map(String::from)),
                "filter" => out.filter = Some(value.into_owned()),
                "extraFields" => out.extra_fields = Some(value.into_owned()),
                "fields" => out.fields = Some(value.into_owned()),
                _ => {}
            }
        }
        out
    }
}

/// The topic a watcher's route subscribes with: twin events, its namespaces, its filter and the
/// thing ids as one RQL filter (so events of other things never enter its queue), and its extra
/// fields. Refused as Ditto refuses them: a bad filter with `rql.expression.invalid`, bad extra
/// fields with the field selector's error.
fn compile(request: &WatchRequest) -> Result<CompiledTopic, DittoError> {
    if let Some(filter) = &request.filter {
        ferrule_rql::Filter::parse(filter).map_err(|e| rql_invalid(filter, &e))?;
    }
    let extra_fields = match &request.extra_fields {
        Some(raw) => {
            check_extra_fields(raw)?;
            comma_list(raw).map(String::from).collect()
        }
        None => Vec::new(),
    };
    let ids = (!request.ids.is_empty()).then(|| {
        let quoted: Vec<String> = request
            .ids
            .iter()
            .map(|id| Value::from(id.as_str()).to_string())
            .collect();
        format!("in(thingId,{})", quoted.join(","))
    });
    let expression = match (ids, &request.filter) {
        (Some(ids), Some(filter)) => Some(format!("and({ids},{filter})")),
        (Some(ids), None) => Some(ids),
        (None, filter) => filter.clone(),
    };
    let filter = expression
        .map(|e| ferrule_rql::Filter::parse(&e).map_err(|err| rql_invalid(&e, &err)))
        .transpose()?;
    Ok(CompiledTopic {
        kind: TopicKind::TwinEvents,
        namespaces: request.namespaces.clone(),
        filter,
        extra_fields,
    })
}

/// Removes the watcher's route when its stream is dropped (the client went away).
struct Registration {
    router: Arc<Router>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.router.remove(self.id);
    }
}

/// The event stream of a watcher, or the error of its request.
pub fn watch(router: &Arc<Router>, request: &WatchRequest) -> Result<Response, DittoError> {
    let topic = compile(request)?;
    let fields = request
        .fields
        .as_deref()
        .map(FieldSelector::parse)
        .transpose()?;
    let (sink, queue) = mpsc::channel::<Routed>(QUEUE);
    let overflowed = Arc::new(AtomicBool::new(false));
    let flag = overflowed.clone();
    let id = router.add(Route {
        connection_id: String::new(),
        target: 0,
        topics: vec![topic],
        sink,
        on_skip: Some(Box::new(move |_, skipped| {
            if skipped == Skipped::Dropped {
                flag.store(true, Ordering::Relaxed);
            }
        })),
        on_stall: None,
        partition: None,
        lossy: true,
        ledger: None,
    });
    let registration = Registration {
        router: router.clone(),
        id,
    };
    let pointer = request.pointer.clone();
    let state = (queue, registration, overflowed, fields, pointer);
    let stream = futures_util::stream::unfold(
        state,
        |(mut queue, registration, overflowed, fields, pointer)| async move {
            loop {
                let routed = queue.recv().await?;
                if overflowed.load(Ordering::Relaxed) {
                    tracing::info!(
                        "a things watcher fell {QUEUE} events behind and was disconnected"
                    );
                    return None;
                }
                let thing = event_thing(&routed.signal, routed.extra.as_ref(), fields.as_ref());
                let Some(data) = shown(thing, fields.is_some(), pointer.as_deref()) else {
                    continue;
                };
                let event =
                    Ok::<_, std::convert::Infallible>(Event::default().data(data.to_string()));
                return Some((event, (queue, registration, overflowed, fields, pointer)));
            }
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// The thing a twin event shows (Ditto's `ThingEventToThingConverter`), merged with the extra
/// fields (the event's values win), projected with `fields` when given.
pub fn event_thing(
    signal: &DittoMessage,
    extra: Option<&Value>,
    fields: Option<&FieldSelector>,
) -> Value {
    let mut doc = Value::Object(Map::new());
    let action = signal.topic.action.as_deref();
    if action != Some("deleted")
        && let Some(value) = &signal.value
    {
        let value = if action == Some("merged") {
            without_nulls(value)
        } else {
            value.clone()
        };
        pointer::set(&mut doc, &pointer::segments(&signal.path), value);
    }
    if !doc.is_object() {
        doc = Value::Object(Map::new());
    }
    if let Some(extra) = extra {
        let mut enriched = extra.clone();
        pointer::merge(&mut enriched, &doc);
        if enriched.is_object() {
            doc = enriched;
        }
    }
    let Value::Object(members) = doc else {
        unreachable!("the document is an object")
    };
    // The thing id first, as Ditto writes a thing.
    let mut thing = Map::new();
    thing.insert("thingId".into(), Value::from(signal.topic.entity_id()));
    thing.extend(members.into_iter().filter(|(name, _)| name != "thingId"));
    let Some(fields) = fields else {
        return Value::Object(thing);
    };
    if let Some(revision) = signal.revision {
        thing.insert("_revision".into(), Value::from(revision));
    }
    if let Some(timestamp) = &signal.timestamp {
        thing.insert("_modified".into(), Value::from(timestamp.as_str()));
    }
    let mut headers = signal.headers.clone();
    crate::hub::inbound::remove_internal(&mut headers);
    let mut context = Map::new();
    context.insert("topic".into(), Value::from(signal.topic.to_string()));
    context.insert("path".into(), Value::from(signal.path.as_str()));
    if let Some(value) = &signal.value {
        context.insert("value".into(), value.clone());
    }
    let headers: Map<String, Value> = headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect();
    context.insert("headers".into(), Value::Object(headers));
    thing.insert("_context".into(), Value::Object(context));
    Value::Object(fields.apply(&thing))
}

/// What a watcher is sent of an event's thing, as Ditto decides it: nothing when `fields`
/// selected nothing of it; with a `pointer`, the value there (nothing when the event shows none).
fn shown(thing: Value, selected: bool, pointer: Option<&str>) -> Option<Value> {
    if selected && thing.as_object().is_some_and(|m| m.is_empty()) {
        return None;
    }
    match pointer {
        Some(p) => thing.pointer(p).cloned(),
        None => Some(thing),
    }
}

/// A merge patch's value as the thing shows it: without the `null`s that delete.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrule_protocol::Topic;
    use serde_json::json;

    fn event(topic: &str, path: &str, value: Option<Value>) -> DittoMessage {
        let mut m = DittoMessage::new(Topic::parse(topic).unwrap(), path);
        m.value = value;
        m.revision = Some(7);
        m.timestamp = Some("2026-12-07T08:00:00Z".into());
        m.headers.insert("correlation-id", "c-1");
        m.headers.insert("ditto-signal-id", "42");
        m
    }

    #[test]
    fn a_modified_property_is_the_thing_with_that_value() {
        let e = event(
            "org.acme/lamp/things/twin/events/modified",
            "/attributes",
            Some(json!({"on": true})),
        );
        let members: Vec<String> = event_thing(&e, None, None)
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            members,
            ["thingId", "attributes"],
            "the id first, as Ditto writes it"
        );
        let e = event(
            "org.acme/lamp/things/twin/events/modified",
            "/features/lamp/properties/on",
            Some(json!(true)),
        );
        assert_eq!(
            event_thing(&e, None, None),
            json!({"thingId": "org.acme:lamp", "features": {"lamp": {"properties": {"on": true}}}})
        );
    }

    #[test]
    fn a_whole_thing_a_merge_and_a_deletion() {
        let created = event(
            "org.acme/lamp/things/twin/events/created",
            "/",
            Some(json!({"thingId": "org.acme:lamp", "attributes": {"a": 1}})),
        );
        assert_eq!(
            event_thing(&created, None, None),
            json!({"thingId": "org.acme:lamp", "attributes": {"a": 1}})
        );
        let merged = event(
            "org.acme/lamp/things/twin/events/merged",
            "/attributes",
            Some(json!({"a": null, "b": {"c": 2, "d": null}})),
        );
        assert_eq!(
            event_thing(&merged, None, None),
            json!({"thingId": "org.acme:lamp", "attributes": {"b": {"c": 2}}})
        );
        let deleted = event(
            "org.acme/lamp/things/twin/events/deleted",
            "/attributes/a",
            None,
        );
        assert_eq!(
            event_thing(&deleted, None, None),
            json!({"thingId": "org.acme:lamp"})
        );
    }

    #[test]
    fn extra_fields_are_merged_under_the_event_and_fields_select_special_members() {
        let e = event(
            "org.acme/lamp/things/twin/events/modified",
            "/attributes/on",
            Some(json!(true)),
        );
        let extra = json!({"attributes": {"on": false, "room": "kitchen"}});
        assert_eq!(
            event_thing(&e, Some(&extra), None),
            json!({"thingId": "org.acme:lamp", "attributes": {"on": true, "room": "kitchen"}})
        );
        let fields = FieldSelector::parse("thingId,_revision,_modified,_context").unwrap();
        let thing = event_thing(&e, None, Some(&fields));
        assert_eq!(thing["_revision"], 7);
        assert_eq!(thing["_modified"], "2026-12-07T08:00:00Z");
        assert_eq!(
            thing["_context"]["topic"],
            "org.acme/lamp/things/twin/events/modified"
        );
        assert_eq!(thing["_context"]["path"], "/attributes/on");
        assert_eq!(thing["_context"]["value"], true);
        assert_eq!(thing["_context"]["headers"]["correlation-id"], "c-1");
        assert!(
            thing["_context"]["headers"]
                .get("ditto-signal-id")
                .is_none(),
            "internal headers stay inside"
        );
        assert!(thing.get("attributes").is_none(), "not selected");
    }

    #[test]
    fn a_pointer_shows_the_value_there_and_an_empty_selection_nothing() {
        let thing = json!({"thingId": "a:b", "attributes": {"location": "hall"}});
        assert_eq!(
            shown(thing.clone(), false, Some("/attributes/location")),
            Some(json!("hall"))
        );
        assert_eq!(shown(thing.clone(), false, Some("/features")), None);
        assert_eq!(shown(thing.clone(), false, None), Some(thing));
        assert_eq!(shown(json!({}), true, None), None);
    }

    #[test]
    fn ids_become_a_filter_and_bad_parameters_are_refused_as_ditto_refuses_them() {
        let request = WatchRequest::from_query(Some(
            "ids=org.acme:a,org.acme:%22b%22&filter=gt(attributes/x,1)&namespaces=org.acme",
        ));
        let topic = compile(&request).unwrap();
        let filter = topic.filter.unwrap();
        let doc = |id: &str, x: i64| json!({"thingId": id, "attributes": {"x": x}});
        let none = |_: &str| None;
        assert!(filter.matches(&doc("org.acme:a", 2), &none));
        assert!(filter.matches(&doc("org.acme:\"b\"", 2), &none));
        assert!(!filter.matches(&doc("org.acme:c", 2), &none));
        assert!(!filter.matches(&doc("org.acme:a", 1), &none));
        assert_eq!(topic.namespaces, vec!["org.acme"]);
        let bad = compile(&WatchRequest::from_query(Some("filter=eq(a"))).unwrap_err();
        assert_eq!(bad.error, "rql.expression.invalid");
        let bad = compile(&WatchRequest::from_query(Some("extraFields=nope"))).unwrap_err();
        assert_eq!(bad.status, 400);
        assert!(compile(&WatchRequest::from_query(Some("extraFields=attributes"))).is_ok());
    }
}
