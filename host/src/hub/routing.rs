//! Routing of outbound signals to connection targets (spec §1.3 "Filtered topics").
//!
//! Each target of an open connection is a [`Route`]: the signal streams it subscribed to, each
//! with its `namespaces`, RQL `filter` and `extraFields`, and a bounded queue to the connection's
//! publisher. [`Router::dispatch`] gives a signal to every route that wants it: the namespace
//! must be listed (when a list is given); `extraFields` are read from the twin and attached as
//! `extra`; the filter is evaluated against the signal's thing (its value placed at its path)
//! merged with the extra fields, with `topic:*`, `resource:*`, `thing:*`, `feature:id` and
//! `time:now` as placeholders.
//!
//! Back-pressure, not loss: when a route's queue is full, `dispatch` waits for room, and so does
//! whoever dispatches (the twin's event pump, a source's live signal). A route whose queue has
//! had no room for the stall bound (`[runtime] target_stall_timeout_ms`) has stalled: the signal
//! is dropped for it (counted, logged, its acknowledgement answered 503 by the route's
//! `on_skip`), and so is every signal that does not fit at once until its queue is half empty
//! again. A dead or stuck target so holds the others up once, for the bound, not for every
//! signal; a slow target that makes progress slows the dispatch down but loses nothing.

use super::ledger::{Hold, Ledger};
use crate::error::DittoError;
use crate::model::topic::{FilteredTopic, TopicKind, rql_invalid};
use crate::twin::pointer;
use crate::twin::{Action, TwinCommand, TwinService};
use ferrule_protocol::{Channel, Criterion, DittoMessage, Group, Headers};
use ferrule_rql::Filter;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
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
#[derive(Debug)]
pub struct Routed {
    pub signal: Arc<DittoMessage>,
    /// The `extraFields` read from the twin, when the topic asked for them.
    pub extra: Option<Value>,
    /// Cluster mode: the event of the log this is, held in the slot's ledger until the target
    /// is done with it ([`Ledger`]).
    pub hold: Option<Hold>,
}

impl Routed {
    /// Dropped on purpose (a stalled route): the target is done with it.
    pub fn dropped(self) {
        if let Some(hold) = self.hold {
            hold.done();
        }
    }
}

/// Why a route did not take a signal of a stream it subscribed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Its namespaces or filter did not pass the signal.
    Filtered,
    /// Its queue was closed, or had no room for the stall bound (or is draining after that): the
    /// signal was dropped for it.
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
    /// Told when the route stalled (its queue had no room for the stall bound): `true`, and
    /// when it takes signals again: `false`.
    pub on_stall: Option<Box<dyn Fn(bool) + Send + Sync>>,
    /// `(index, count)`: the route takes only the signals of the things whose
    /// [`partition_of`] modulo `count` is `index` (cluster mode: each client of a connection
    /// publishes a share of the things, each thing always through the same client). `None`:
    /// every signal.
    pub partition: Option<(usize, usize)>,
    /// A watcher's route (server-sent events of the things API): it never holds the dispatch
    /// back; a signal that does not fit in its queue at once is dropped for it (`on_skip` with
    /// [`Skipped::Dropped`]). Connection targets are not lossy.
    pub lossy: bool,
    /// Cluster mode: the ledger of the session's slot, which holds the log events the route
    /// takes, and says from where it takes them.
    pub ledger: Option<Arc<Ledger>>,
}

/// The partition key of a signal: a stable hash (FNV-1a) of its entity, the same in every
/// instance and build. Signals about no thing (connection announcements) have key 0.
pub fn partition_of(signal: &DittoMessage) -> u64 {
    if signal.topic.group == ferrule_protocol::Group::Connections {
        return 0;
    }
    let namespace = signal.topic.namespace.as_bytes();
    let name = signal.topic.name.as_bytes();
    fnv1a(namespace.iter().chain(b":").chain(name))
}

/// The partition key of the signals about thing `id` (`namespace:name`).
pub fn partition_of_thing(id: &str) -> u64 {
    fnv1a(id.as_bytes().iter())
}

fn fnv1a<'a>(bytes: impl Iterator<Item = &'a u8>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A route as the router keeps it.
struct Entry {
    route: Route,
    /// The route stalled and drops what does not fit until its queue is half empty.
    stalled: AtomicBool,
}

impl Entry {
    /// Hands the routed signal to the route's queue, waiting up to `stall` for room; `false`
    /// when it was dropped.
    async fn offer(&self, routed: Routed, stall: Duration) -> bool {
        let sink = &self.route.sink;
        if self.route.lossy {
            return sink.try_send(routed).is_ok();
        }
        if self.stalled.load(Ordering::Relaxed) {
            if sink.capacity() * 2 < sink.max_capacity() {
                routed.dropped();
                return false;
            }
            self.stalled.store(false, Ordering::Relaxed);
            if let Some(on_stall) = &self.route.on_stall {
                on_stall(false);
            }
        }
        // A closed queue (the session is closing) abandons the routed signal's hold.
        let routed = match sink.try_send(routed) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
            Err(mpsc::error::TrySendError::Full(routed)) => routed,
        };
        match tokio::time::timeout(stall, sink.reserve()).await {
            Ok(Ok(permit)) => {
                permit.send(routed);
                true
            }
            Ok(Err(_)) => false,
            Err(_) => {
                routed.dropped();
                self.stalled.store(true, Ordering::Relaxed);
                if let Some(on_stall) = &self.route.on_stall {
                    on_stall(true);
                }
                false
            }
        }
    }
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

pub struct Router {
    routes: RwLock<Vec<(u64, Arc<Entry>)>>,
    next: AtomicU64,
    /// Set when the service stops: watchers are ended and no new one is added.
    watchers_closed: AtomicBool,
    /// Where `extraFields` are read.
    twin: TwinService,
    /// How long a dispatch waits for room in one route's queue before that route has stalled.
    stall: Duration,
    /// Cluster mode: how far the pump has dispatched the event log (see [`Ledger`]).
    read_to: Arc<AtomicI64>,
    /// Cluster mode: ledgers waiting for their replay (taken by the event relay).
    replays: Mutex<Vec<Arc<Ledger>>>,
    /// Woken when a ledger waits for its replay.
    pub replay_wanted: tokio::sync::Notify,
}

impl Router {
    pub fn new(twin: TwinService, stall: Duration) -> Router {
        Router {
            routes: RwLock::default(),
            next: AtomicU64::new(0),
            watchers_closed: AtomicBool::new(false),
            twin,
            stall,
            read_to: Arc::new(AtomicI64::new(0)),
            replays: Mutex::new(Vec::new()),
            replay_wanted: tokio::sync::Notify::new(),
        }
    }

    /// How far the pump has dispatched the event log, for the ledgers.
    pub fn read_to(&self) -> Arc<AtomicI64> {
        self.read_to.clone()
    }

    /// The pump has dispatched every event of the log up to `seq`.
    pub fn dispatched_to(&self, seq: i64) {
        self.read_to.fetch_max(seq, Ordering::AcqRel);
    }

    /// The routes of `ledger` are in place: the relay replays the slot's events after its
    /// cursor to them, then they take the log's events ([`Ledger::activate`]). A ledger from
    /// nothing takes them already.
    pub fn request_replay(&self, ledger: Arc<Ledger>) {
        if ledger.from().is_none() {
            return;
        }
        self.replays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ledger);
        self.replay_wanted.notify_one();
    }

    /// The ledgers waiting for their replay.
    pub fn take_replays(&self) -> Vec<Arc<Ledger>> {
        std::mem::take(&mut *self.replays.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Adds a route; the returned id removes it. A watcher (lossy route) added after
    /// [`Router::close_watchers`] is dropped at once, so its stream ends.
    pub fn add(&self, route: Route) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        if route.lossy && self.watchers_closed.load(Ordering::Relaxed) {
            return id;
        }
        let entry = Entry {
            route,
            stalled: AtomicBool::new(false),
        };
        routes.push((id, Arc::new(entry)));
        id
    }

    /// The service stops: every watcher's route is removed (its queue closes, so its stream
    /// ends once it has sent what it holds) and no new one is added. A graceful stop so does not
    /// wait for clients that would watch forever.
    pub fn close_watchers(&self) {
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        self.watchers_closed.store(true, Ordering::Relaxed);
        routes.retain(|(_, entry)| !entry.route.lossy);
    }

    pub fn remove(&self, id: u64) {
        self.routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(i, _)| *i != id);
    }

    /// Whether a twin event of partition key `key` ([`partition_of`]) may be taken by a route
    /// here: a watcher, or a target subscribed to twin events whose partition takes the key.
    /// Cluster mode: another instance's event that no route here could take is not read at all.
    pub fn may_take_twin_event(&self, key: u64) -> bool {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(_, entry)| {
                let route = &entry.route;
                route.topics.iter().any(|t| t.kind == TopicKind::TwinEvents)
                    && route
                        .partition
                        .is_none_or(|(index, count)| key % count as u64 == index as u64)
            })
    }

    fn snapshot(&self) -> Vec<Arc<Entry>> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Gives the signal to every route that wants it, in the order the routes were added, waiting
    /// for room in their queues (see the module documentation). Connection announcements go
    /// only to the targets of the connection they announce.
    pub async fn dispatch(&self, signal: Arc<DittoMessage>) -> Dispatched {
        self.dispatch_logged(signal, None, None).await
    }

    /// [`Router::dispatch`] of the log's event `seq` (cluster mode): a route with a ledger
    /// takes it only as its ledger says, and holds it there. With `only`, a replay: the event
    /// goes to the routes of that ledger alone.
    pub async fn dispatch_logged(
        &self,
        signal: Arc<DittoMessage>,
        seq: Option<i64>,
        only: Option<&Arc<Ledger>>,
    ) -> Dispatched {
        let twin = &self.twin;
        let mut report = Dispatched::default();
        let Some(kind) = kind_of(&signal) else {
            return report;
        };
        // The document filters see: built once per signal, and only when a filter needs it.
        let doc = std::sync::OnceLock::new();
        let mut key = None;
        for entry in self.snapshot() {
            let route = &entry.route;
            if kind == TopicKind::ConnectionAnnouncements
                && signal.topic.name != route.connection_id
            {
                continue;
            }
            let ledger = route.ledger.as_ref();
            let takes = match (only, ledger) {
                (Some(only), Some(ledger)) => Arc::ptr_eq(only, ledger),
                (Some(_), None) => false,
                (None, Some(ledger)) => ledger.takes(seq),
                (None, None) => true,
            };
            if !takes {
                continue;
            }
            if let Some((index, count)) = route.partition
                && *key.get_or_insert_with(|| partition_of(&signal)) % count as u64 != index as u64
            {
                // Another client of the connection publishes this thing's signals.
                continue;
            }
            let mut subscribed = false;
            let mut passed = None;
            for topic in route.topics.iter().filter(|t| t.kind == kind) {
                subscribed = true;
                if let Some(extra) = passes(topic, &signal, &doc, twin) {
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
                        hold: seq.zip(ledger).map(|(seq, ledger)| ledger.hold(seq)),
                    };
                    if entry.offer(routed, self.stall).await {
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
fn passes(
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
        extra_fields(signal, &topic.extra_fields, twin)
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

/// The `extraFields` of the signal's thing, read from the things in memory: the twin may be
/// waiting for the dispatch that asks (it waits while its events are not taken).
fn extra_fields(signal: &DittoMessage, fields: &[String], twin: &TwinService) -> Option<Value> {
    let response = twin.read(&TwinCommand {
        thing_id: signal.topic.entity_id(),
        action: Action::Retrieve,
        path: "/".into(),
        value: None,
        headers: Headers::new(),
        fields: Some(fields.join(",")),
    });
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
            on_stall: None,
            partition: None,
            lossy: false,
            ledger: None,
        });
        rx
    }

    /// A route of connection `c` to twin events, taking `partition`, with a queue of
    /// `capacity`.
    fn events_route(
        router: &Router,
        capacity: usize,
        partition: (usize, usize),
        ledger: Option<Arc<Ledger>>,
    ) -> mpsc::Receiver<Routed> {
        let (tx, rx) = mpsc::channel(capacity);
        router.add(Route {
            connection_id: "c".into(),
            target: 0,
            topics: vec![CompiledTopic::compile("_/_/things/twin/events").unwrap()],
            sink: tx,
            on_skip: None,
            on_stall: None,
            partition: Some(partition),
            lossy: false,
            ledger,
        });
        rx
    }

    #[tokio::test]
    async fn partitioned_routes_take_each_thing_once_and_always_the_same_one() {
        let twin = TwinService::start(Arc::new(MemoryStore::default()))
            .await
            .unwrap();
        let router = Router::new(twin, Duration::from_secs(5));
        let mut shares: Vec<mpsc::Receiver<Routed>> = (0..3)
            .map(|i| events_route(&router, 1000, (i, 3), None))
            .collect();
        for round in 0..2 {
            for t in 0..90 {
                let e = event(
                    &format!("org.p/t{t}/things/twin/events/modified"),
                    "/attributes/round",
                    json!(round),
                );
                // The key of a thing's events is the key of its id (the cluster's event log
                // decides from the id alone whether a route here may take an event).
                assert_eq!(partition_of(&e), partition_of_thing(&format!("org.p:t{t}")));
                router.dispatch(e).await;
            }
        }
        let mut owner = std::collections::HashMap::new();
        let mut total = 0;
        for (i, rx) in shares.iter_mut().enumerate() {
            let mut taken = 0;
            while let Ok(r) = rx.try_recv() {
                taken += 1;
                total += 1;
                let first = *owner.entry(r.signal.topic.name.clone()).or_insert(i);
                assert_eq!(first, i, "a thing's events always go through one client");
            }
            assert!((30..=150).contains(&taken), "share {i} took {taken} of 180");
        }
        assert_eq!(owner.len(), 90, "every thing was published");
        assert_eq!(total, 180, "each event once");
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
        let router = Router::new(twin.clone(), Duration::from_secs(5));
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
        let report = router.dispatch(e).await;
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
        router.dispatch(e).await;
        assert!(counter.try_recv().is_err(), "41 is not > 42");
        assert!(all.try_recv().is_ok());

        let msg = event(
            "org.acme/t/things/live/messages/hello",
            "/inbox/messages/hello",
            json!("hi"),
        );
        router.dispatch(msg).await;
        assert!(live.try_recv().is_ok());
        assert!(all.try_recv().is_err());
    }

    #[tokio::test]
    async fn announcements_stay_with_their_connection() {
        let twin = TwinService::start(Arc::new(MemoryStore::default()))
            .await
            .unwrap();
        let router = Router::new(twin.clone(), Duration::from_secs(5));
        let mut mine = route(&router, "conn-a", &["_/_/connections/announcements"]);
        let mut theirs = route(&router, "conn-b", &["_/_/connections/announcements"]);
        let opened = event(
            "_/conn-a/connections/announcements/opened",
            "/",
            json!({"openedAt": "x"}),
        );
        router.dispatch(opened).await;
        assert!(mine.try_recv().is_ok());
        assert!(theirs.try_recv().is_err());
    }

    fn modified(n: i64) -> Arc<DittoMessage> {
        event(
            "ns/t/things/twin/events/modified",
            "/attributes/a",
            json!(n),
        )
    }

    /// A route with a queue of `capacity` whose stalls are recorded.
    fn slow_route(
        router: &Router,
        capacity: usize,
    ) -> (mpsc::Receiver<Routed>, Arc<std::sync::Mutex<Vec<bool>>>) {
        let (tx, rx) = mpsc::channel(capacity);
        let stalls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = stalls.clone();
        router.add(Route {
            connection_id: "slow".into(),
            target: 0,
            topics: vec![CompiledTopic::compile("_/_/things/twin/events").unwrap()],
            sink: tx,
            on_skip: None,
            on_stall: Some(Box::new(move |s| seen.lock().unwrap().push(s))),
            partition: None,
            lossy: false,
            ledger: None,
        });
        (rx, stalls)
    }

    #[tokio::test]
    async fn a_full_queue_holds_the_dispatch_back_and_loses_nothing() {
        let twin = TwinService::start(Arc::new(MemoryStore::default()))
            .await
            .unwrap();
        let router = Arc::new(Router::new(twin, Duration::from_secs(5)));
        let (mut rx, stalls) = slow_route(&router, 4);
        // A consumer far slower than the dispatcher: 1,000 signals through a queue of 4.
        let consumer = tokio::spawn(async move {
            let mut seen = Vec::new();
            while seen.len() < 1000 {
                let r = rx.recv().await.unwrap();
                seen.push(r.signal.value.clone().unwrap().as_i64().unwrap());
                if seen.len() % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            seen
        });
        for n in 0..1000 {
            let report = router.dispatch(modified(n)).await;
            assert_eq!(report.delivered, 1, "signal {n} was not delivered");
        }
        let seen = consumer.await.unwrap();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>(), "all of them, in order");
        assert!(stalls.lock().unwrap().is_empty());
    }

    /// Cluster mode reads another instance's event only when a route here may take it: a
    /// target of twin events whose partition takes the key, or one without partition (a
    /// watcher, a connection with one client).
    /// Cluster mode: a route with a ledger that starts from a cursor takes log events only
    /// after its replay, and only those after the cursor; the replay reaches its routes alone;
    /// what a route takes is held until the target is done with it, a stalled route's drop is
    /// done with, and what a closing session leaves in its queue holds the cursor back.
    #[tokio::test]
    async fn a_ledgers_routes_take_the_log_after_their_replay_and_hold_what_they_take() {
        let twin = TwinService::start(Arc::new(MemoryStore::default()))
            .await
            .unwrap();
        let router = Router::new(twin, Duration::from_millis(50));
        router.dispatched_to(100);
        let ledger = Ledger::new(Some(100), (0, 1), router.read_to());
        let mut rx = events_route(&router, 2, (0, 1), Some(ledger.clone()));
        let mut other = route(&router, "d", &["_/_/things/twin/events"]);
        // Pending: live log events are not taken; the replay is, by this route alone.
        router.dispatch_logged(modified(1), Some(101), None).await;
        assert!(rx.try_recv().is_err());
        assert_eq!(other.try_recv().unwrap().signal.revision, Some(1));
        router
            .dispatch_logged(modified(1), Some(101), Some(&ledger))
            .await;
        assert!(
            other.try_recv().is_err(),
            "a replay is for its ledger's routes"
        );
        let replayed = rx.try_recv().unwrap();
        assert_eq!(ledger.cursor(), Some(100), "pending: from its cursor");
        ledger.activate();
        router.dispatched_to(101);
        assert_eq!(ledger.cursor(), Some(100), "101 is held");
        replayed.hold.unwrap().done();
        assert_eq!(ledger.cursor(), Some(101));
        // Active: what is after the cursor is taken and held.
        router.dispatch_logged(modified(2), Some(99), None).await;
        assert!(
            rx.try_recv().is_err(),
            "at or before the cursor: done before"
        );
        router.dispatch_logged(modified(3), Some(102), None).await;
        router.dispatch_logged(modified(4), Some(103), None).await;
        router.dispatched_to(103);
        assert_eq!(ledger.cursor(), Some(101));
        // The queue is full: the route stalls and drops 104, which is done with.
        router.dispatch_logged(modified(5), Some(104), None).await;
        router.dispatched_to(104);
        assert_eq!(ledger.cursor(), Some(101));
        let (a, b) = (rx.try_recv().unwrap(), rx.try_recv().unwrap());
        a.hold.unwrap().done();
        b.hold.unwrap().done();
        assert_eq!(ledger.cursor(), Some(104));
        // The session closes with 105 in its queue: abandoned, the cursor stays before it.
        router.dispatch_logged(modified(6), Some(105), None).await;
        router.dispatched_to(105);
        drop(rx);
        assert_eq!(ledger.cursor(), Some(104));
    }

    #[tokio::test]
    async fn a_twin_event_is_wanted_only_by_routes_that_may_take_it() {
        let twin = TwinService::start(Arc::new(MemoryStore::default()))
            .await
            .unwrap();
        let router = Router::new(twin, Duration::from_secs(5));
        assert!(!router.may_take_twin_event(4), "no routes");
        let add = |topic: &str, partition: Option<(usize, usize)>| {
            router.add(Route {
                connection_id: "c".into(),
                target: 0,
                topics: vec![CompiledTopic::compile(topic).unwrap()],
                sink: mpsc::channel(1).0,
                on_skip: None,
                on_stall: None,
                partition,
                lossy: false,
                ledger: None,
            })
        };
        add("_/_/things/live/messages", None);
        assert!(!router.may_take_twin_event(4), "live messages only");
        let share = add("_/_/things/twin/events", Some((1, 3)));
        assert!(router.may_take_twin_event(4));
        assert!(!router.may_take_twin_event(5));
        router.remove(share);
        assert!(!router.may_take_twin_event(4));
        add("_/_/things/twin/events?namespaces=a", None);
        assert!(router.may_take_twin_event(5));
    }

    /// A lossy route (a things watcher) with a full queue never holds the dispatch back, not
    /// even for the stall bound: the signal is dropped for it at once and it is told so; the
    /// other routes get every signal. (With a bound of a minute, any wait would show.)
    #[tokio::test]
    async fn a_full_lossy_route_drops_at_once_and_holds_nothing_back() {
        let twin = TwinService::start(Arc::new(MemoryStore::default()))
            .await
            .unwrap();
        let router = Router::new(twin, Duration::from_secs(60));
        let (tx, mut watcher) = mpsc::channel(2);
        let skipped = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = skipped.clone();
        router.add(Route {
            connection_id: String::new(),
            target: 0,
            topics: vec![CompiledTopic::compile("_/_/things/twin/events").unwrap()],
            sink: tx,
            on_skip: Some(Box::new(move |_, why| seen.lock().unwrap().push(why))),
            on_stall: None,
            partition: None,
            lossy: true,
            ledger: None,
        });
        let mut other = route(&router, "other", &["_/_/things/twin/events"]);
        let started = std::time::Instant::now();
        for n in 0..5 {
            let report = router.dispatch(modified(n)).await;
            assert_eq!(report.delivered + report.dropped, 2);
            assert_eq!(other.try_recv().unwrap().signal.value, Some(json!(n)));
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the dispatch waited for the lossy route"
        );
        assert_eq!(*skipped.lock().unwrap(), vec![Skipped::Dropped; 3]);
        assert_eq!(watcher.try_recv().unwrap().signal.value, Some(json!(0)));
        assert_eq!(watcher.try_recv().unwrap().signal.value, Some(json!(1)));
        assert!(watcher.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_stalled_route_holds_others_up_once_then_drops_until_it_drains() {
        let twin = TwinService::start(Arc::new(MemoryStore::default()))
            .await
            .unwrap();
        let stall = Duration::from_millis(200);
        let router = Router::new(twin, stall);
        let (mut stuck, stalls) = slow_route(&router, 4);
        let mut other = route(&router, "other", &["_/_/things/twin/events"]);
        // Fill the stuck route's queue.
        for n in 0..4 {
            assert_eq!(router.dispatch(modified(n)).await.delivered, 2);
            assert!(other.try_recv().is_ok());
        }
        // The first signal that does not fit waits for the bound, then is dropped for the stuck
        // route; the other route gets it.
        let started = std::time::Instant::now();
        let report = router.dispatch(modified(4)).await;
        assert!(started.elapsed() >= stall, "{:?}", started.elapsed());
        assert_eq!((report.delivered, report.dropped), (1, 1));
        assert_eq!(*stalls.lock().unwrap(), vec![true]);
        // From then on the stuck route costs the others nothing.
        let started = std::time::Instant::now();
        for n in 5..100 {
            let report = router.dispatch(modified(n)).await;
            assert_eq!((report.delivered, report.dropped), (1, 1));
            assert!(other.try_recv().is_ok());
        }
        assert!(started.elapsed() < stall, "{:?}", started.elapsed());
        // One place free is not half empty: still dropped at once.
        assert_eq!(stuck.recv().await.unwrap().signal.value, Some(json!(0)));
        assert_eq!(router.dispatch(modified(100)).await.dropped, 1);
        // Half empty: it takes signals again.
        assert_eq!(stuck.recv().await.unwrap().signal.value, Some(json!(1)));
        let report = router.dispatch(modified(101)).await;
        assert_eq!((report.delivered, report.dropped), (2, 0));
        assert_eq!(*stalls.lock().unwrap(), vec![true, false]);
        let rest: Vec<_> = std::iter::from_fn(|| stuck.try_recv().ok())
            .map(|r| r.signal.value.clone().unwrap())
            .collect();
        assert_eq!(rest, vec![json!(2), json!(3), json!(101)]);
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
