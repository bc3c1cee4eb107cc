//! Routing of outbound signals to connection targets (spec §1.3 "Filtered topics").
//!
//! Each target of an open connection is a [`Route`]: the signal streams it subscribed to, each
//! with its `namespaces`, RQL `filter` and `extraFields`, and a bounded queue to the connection's
//! publisher. [`Router::dispatch`] gives a signal to every route that wants it: the namespace
//! must be listed (when a list is given); `extraFields` are read from the twin and attached as
//! `extra`; the filter is evaluated against the signal's thing (its value placed at its path)
//! merged with the extra fields, with `topic:*`, `resource:*`, `thing:*`, `feature:id` and
//! `time:now` as placeholders.

use crate::error::DittoError;
use crate::model::topic::{FilteredTopic, TopicKind, rql_invalid};
use crate::twin::pointer;
use crate::twin::{Action, TwinCommand, TwinService};
use ferrule_protocol::{Channel, Criterion, DittoMessage, Group, Headers};
use ferrule_rql::Filter;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;

/// A target topic, ready to match signals.
#[derive(Debug)]
pub struct CompiledTopic {
    pub kind: TopicKind,
    pub namespaces: Vec<String>,
    pub filter: Option<Filter>,
    pub extra_fields: Vec<String>,
}

impl CompiledTopic {
    pub fn compile(raw: &str) -> Result<CompiledTopic, DittoError> {
        let topic = FilteredTopic::parse(raw)?;
        let filter = topic
            .filter
            .as_deref()
            .map(|f| Filter::parse(f).map_err(|e| rql_invalid(f, &e)))
            .transpose()?;
        Ok(CompiledTopic {
            kind: topic.kind,
            namespaces: topic.namespaces,
            filter,
            extra_fields: topic.extra_fields,
        })
    }
}

/// Which target topic a signal belongs to, if any.
pub fn kind_of(signal: &DittoMessage) -> Option<TopicKind> {
    let t = &signal.topic;
    if signal.is_response() {
        return None;
    }
    match (t.group, t.channel, t.criterion) {
        (Group::Things, Some(Channel::Twin), Criterion::Events) => Some(TopicKind::TwinEvents),
        (Group::Things, Some(Channel::Live), Criterion::Messages) => Some(TopicKind::LiveMessages),
        (Group::Things, Some(Channel::Live), Criterion::Commands) => Some(TopicKind::LiveCommands),
        (Group::Things, Some(Channel::Live), Criterion::Events) => Some(TopicKind::LiveEvents),
        (Group::Policies, _, Criterion::Announcements) => Some(TopicKind::PolicyAnnouncements),
        (Group::Connections, _, Criterion::Announcements) => {
            Some(TopicKind::ConnectionAnnouncements)
        }
        _ => None,
    }
}

/// A signal on its way to one target.
#[derive(Debug, Clone)]
pub struct Routed {
    pub signal: Arc<DittoMessage>,
    /// The `extraFields` read from the twin, when the topic asked for them.
    pub extra: Option<Value>,
}

/// Why a route did not take a signal of a stream it subscribed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Its namespaces or filter did not pass the signal.
    Filtered,
    /// Its queue was full (or closed): the signal was dropped for it.
    Dropped,
}

/// Called when a route skips a signal of a stream it subscribed to (the target counts and logs
/// a drop, and answers an acknowledgement the signal requested from it).
pub type OnSkip = Box<dyn Fn(&DittoMessage, Skipped) + Send + Sync>;

/// One target of one open connection.
pub struct Route {
    pub connection_id: String,
    pub target: usize,
    pub topics: Vec<CompiledTopic>,
    pub sink: mpsc::Sender<Routed>,
    /// Told of what the route filtered out or dropped.
    pub on_skip: Option<OnSkip>,
}

/// What a dispatch did, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dispatched {
    pub delivered: usize,
    /// Routes subscribed to the signal's stream whose namespaces or filter did not pass it.
    pub filtered: usize,
    /// Routes whose queue was full or closed.
    pub dropped: usize,
}

#[derive(Default)]
pub struct Router {
    routes: RwLock<Vec<(u64, Arc<Route>)>>,
    next: AtomicU64,
}

impl Router {
    /// Adds a route; the returned id removes it.
    pub fn add(&self, route: Route) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, Arc::new(route)));
        id
    }

    pub fn remove(&self, id: u64) {
        self.routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(i, _)| *i != id);
    }

    fn snapshot(&self) -> Vec<Arc<Route>> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Gives the signal to every route that wants it. Connection announcements go only to the
    /// targets of the connection they announce.
    pub async fn dispatch(&self, signal: Arc<DittoMessage>, twin: &TwinService) -> Dispatched {
        let mut report = Dispatched::default();
        let Some(kind) = kind_of(&signal) else {
            return report;
        };
        // The document filters see: built once per signal, and only when a filter needs it.
        let doc = std::sync::OnceLock::new();
        for route in self.snapshot() {
            if kind == TopicKind::ConnectionAnnouncements
                && signal.topic.name != route.connection_id
            {
                continue;
            }
            let mut subscribed = false;
            let mut passed = None;
            for topic in route.topics.iter().filter(|t| t.kind == kind) {
                subscribed = true;
                if let Some(extra) = passes(topic, &signal, &doc, twin).await {
                    passed = Some(extra);
                    break;
                }
            }
            if !subscribed {
                continue;
            }
            match passed {
                None => {
                    report.filtered += 1;
                    if let Some(on_skip) = &route.on_skip {
                        on_skip(&signal, Skipped::Filtered);
                    }
                }
                Some(extra) => {
                    let routed = Routed {
                        signal: signal.clone(),
                        extra,
                    };
                    if route.sink.try_send(routed).is_ok() {
                        report.delivered += 1;
                    } else {
                        report.dropped += 1;
                        if let Some(on_skip) = &route.on_skip {
                            on_skip(&signal, Skipped::Dropped);
                        }
                    }
                }
            }
        }
        report
    }
}

/// `Some(extra)` when the topic passes the signal.
async fn passes(
    topic: &CompiledTopic,
    signal: &DittoMessage,
    doc: &std::sync::OnceLock<Value>,
    twin: &TwinService,
) -> Option<Option<Value>> {
    if !topic.namespaces.is_empty() && !topic.namespaces.contains(&signal.topic.namespace) {
        return None;
    }
    let extra = if topic.extra_fields.is_empty() {
        None
    } else {
        extra_fields(signal, &topic.extra_fields, twin).await
    };
    if let Some(filter) = &topic.filter {
        let doc = doc.get_or_init(|| signal_thing(signal));
        let enriched;
        let doc = match &extra {
            Some(extra) => {
                let mut d = doc.clone();
                pointer::merge(&mut d, extra);
                enriched = d;
                &enriched
            }
            None => doc,
        };
        if !filter.matches(doc, &|name| placeholder(signal, name)) {
            return None;
        }
    }
    Some(extra)
}

/// The thing a signal speaks of, as far as the signal shows it: its value at its path.
pub fn signal_thing(signal: &DittoMessage) -> Value {
    let mut doc = Value::Object(Map::new());
    if let Some(v) = &signal.value {
        pointer::set(&mut doc, &pointer::segments(&signal.path), v.clone());
    }
    if let Value::Object(m) = &mut doc {
        m.insert("thingId".into(), Value::from(signal.topic.entity_id()));
    }
    doc
}

async fn extra_fields(
    signal: &DittoMessage,
    fields: &[String],
    twin: &TwinService,
) -> Option<Value> {
    let response = twin
        .execute(TwinCommand {
            thing_id: signal.topic.entity_id(),
            action: Action::Retrieve,
            path: "/".into(),
            value: None,
            headers: Headers::new(),
            fields: Some(fields.join(",")),
        })
        .await;
    (response.status == Some(200))
        .then_some(response.value)
        .flatten()
        .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()))
}

/// The placeholders a target filter may use: those of the signal, and `time:now`.
fn placeholder(signal: &DittoMessage, name: &str) -> Option<Value> {
    if name == "time:now" {
        return Some(Value::from(crate::model::record::timestamp(
            &chrono::Utc::now(),
        )));
    }
    super::resolve::SignalResolver::outbound(signal, "")
        .value(name)
        .map(Value::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use ferrule_protocol::Topic;
    use serde_json::json;

    fn event(topic: &str, path: &str, value: Value) -> Arc<DittoMessage> {
        let mut m = DittoMessage::new(Topic::parse(topic).unwrap(), path);
        m.value = Some(value);
        m.revision = Some(1);
        Arc::new(m)
    }

    fn route(router: &Router, connection: &str, topics: &[&str]) -> mpsc::Receiver<Routed> {
        let (tx, rx) = mpsc::channel(16);
        router.add(Route {
            connection_id: connection.into(),
            target: 0,
            topics: topics
                .iter()
                .map(|t| CompiledTopic::compile(t).unwrap())
                .collect(),
            sink: tx,
            on_skip: None,
        });
        rx
    }

    #[tokio::test]
    async fn namespaces_filters_and_extra_fields() {
        let twin = TwinService::start(Arc::new(MemoryStore::default()))
            .await
            .unwrap();
        twin.execute(TwinCommand {
            thing_id: "org.acme:t".into(),
            action: Action::Create,
            path: "/".into(),
            value: Some(json!({"attributes": {"placement": "Kitchen", "counter": 1}})),
            headers: Headers::new(),
            fields: None,
        })
        .await;
        let router = Router::default();
        let mut all = route(&router, "c1", &["_/_/things/twin/events"]);
        let mut acme = route(
            &router,
            "c1",
            &["_/_/things/twin/events?namespaces=org.acme"],
        );
        let mut other_ns = route(
            &router,
            "c1",
            &["_/_/things/twin/events?namespaces=org.other"],
        );
        let mut counter = route(
            &router,
            "c2",
            &["_/_/things/twin/events?filter=gt(attributes/counter,42)"],
        );
        let mut kitchen = route(
            &router,
            "c2",
            &[
                "_/_/things/twin/events?extraFields=attributes/placement&filter=eq(attributes/placement,'Kitchen')",
            ],
        );
        let mut created_only = route(
            &router,
            "c3",
            &["_/_/things/twin/events?filter=eq(topic:action,'created')"],
        );
        let mut live = route(&router, "c3", &["_/_/things/live/messages"]);

        let e = event(
            "org.acme/t/things/twin/events/modified",
            "/attributes/counter",
            json!(43),
        );
        let report = router.dispatch(e, &twin).await;
        assert_eq!(
            report,
            Dispatched {
                delivered: 4,
                filtered: 2,
                dropped: 0
            }
        );
        assert!(all.try_recv().is_ok());
        assert!(acme.try_recv().is_ok());
        assert!(other_ns.try_recv().is_err());
        assert!(counter.try_recv().is_ok());
        let k = kitchen.try_recv().unwrap();
        assert_eq!(
            k.extra,
            Some(json!({"attributes": {"placement": "Kitchen"}}))
        );
        assert!(created_only.try_recv().is_err());
        assert!(live.try_recv().is_err());

        let e = event(
            "org.acme/t/things/twin/events/modified",
            "/attributes/counter",
            json!(41),
        );
        router.dispatch(e, &twin).await;
        assert!(counter.try_recv().is_err(), "41 is not > 42");
        assert!(all.try_recv().is_ok());

        let msg = event(
            "org.acme/t/things/live/messages/hello",
            "/inbox/messages/hello",
            json!("hi"),
        );
        router.dispatch(msg, &twin).await;
        assert!(live.try_recv().is_ok());
        assert!(all.try_recv().is_err());
    }

    #[tokio::test]
    async fn announcements_stay_with_their_connection_and_full_queues_drop() {
        let twin = TwinService::start(Arc::new(MemoryStore::default()))
            .await
            .unwrap();
        let router = Router::default();
        let mut mine = route(&router, "conn-a", &["_/_/connections/announcements"]);
        let mut theirs = route(&router, "conn-b", &["_/_/connections/announcements"]);
        let opened = event(
            "_/conn-a/connections/announcements/opened",
            "/",
            json!({"openedAt": "x"}),
        );
        router.dispatch(opened, &twin).await;
        assert!(mine.try_recv().is_ok());
        assert!(theirs.try_recv().is_err());

        let (tx, _rx) = mpsc::channel(1);
        router.add(Route {
            connection_id: "slow".into(),
            target: 0,
            topics: vec![CompiledTopic::compile("_/_/things/twin/events").unwrap()],
            sink: tx,
            on_skip: None,
        });
        let e = || {
            event(
                "ns/t/things/twin/events/modified",
                "/attributes/a",
                json!(1),
            )
        };
        router.dispatch(e(), &twin).await;
        let report = router.dispatch(e(), &twin).await;
        assert_eq!(report.dropped, 1);
    }

    #[test]
    fn invalid_filters_are_rql_errors() {
        let e = CompiledTopic::compile("_/_/things/twin/events?filter=gt(attributes/counter")
            .unwrap_err();
        assert_eq!(e.error, "rql.expression.invalid");
    }

    #[test]
    fn responses_are_not_routed_to_subscribers() {
        let mut m = DittoMessage::new(Topic::parse("ns/t/things/live/messages/x").unwrap(), "/");
        assert_eq!(kind_of(&m), Some(TopicKind::LiveMessages));
        m.status = Some(200);
        assert_eq!(kind_of(&m), None);
    }
}
