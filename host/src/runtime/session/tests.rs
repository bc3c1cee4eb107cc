//! Unit tests of the session's guarantees (order, bounded memory, back-pressure, settlement,
//! acknowledgements by identity) with the real hub and twin and a fake client: a client that
//! records what it is given to publish, in call order, and confirms each publish when the test
//! lets it.

use super::*;
use crate::hub::Hub;
use crate::mapping::MappingContext;
use crate::model::parse::connection_from_object;
use crate::monitoring::logs::{ConnectionLogs, LogLimits};
use crate::runtime::processor::Processor;
use crate::store::MemoryStore;
use crate::twin::TwinService;
use ferrule_protocol::ExternalMessage;
use ferrule_transport::{Delivery, Settle, Settler};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, oneshot};

/// What the fake client shows the test.
#[derive(Clone)]
struct Broker {
    /// The published payloads (JSON), in the order `publish` was called.
    published: Arc<Mutex<Vec<Value>>>,
    /// Confirmations given out; a confirmation completes once it takes a permit.
    confirms: Arc<Semaphore>,
    outstanding: Arc<AtomicUsize>,
    max_outstanding: Arc<AtomicUsize>,
}

impl Default for Broker {
    /// A broker that confirms nothing until the test adds permits.
    fn default() -> Broker {
        Broker {
            published: Arc::default(),
            confirms: Arc::new(Semaphore::new(0)),
            outstanding: Arc::default(),
            max_outstanding: Arc::default(),
        }
    }
}

impl Broker {
    /// A broker that confirms at once (after a few yields, so confirmations overlap).
    fn confirming() -> Broker {
        let b = Broker::default();
        b.confirms.add_permits(Semaphore::MAX_PERMITS);
        b
    }

    fn published(&self) -> Vec<Value> {
        self.published.lock().unwrap().clone()
    }

    fn client(&self) -> Box<dyn BrokerClient> {
        Box::new(FakeClient(self.clone()))
    }
}

struct FakeClient(Broker);

impl BrokerClient for FakeClient {
    fn publish(&self, publish: Publish) -> Confirmation {
        let b = self.0.clone();
        let payload = publish.message.text.as_deref().unwrap_or("null");
        b.published
            .lock()
            .unwrap()
            .push(serde_json::from_str(payload).unwrap());
        let now = b.outstanding.fetch_add(1, Ordering::SeqCst) + 1;
        b.max_outstanding.fetch_max(now, Ordering::SeqCst);
        Box::pin(async move {
            for _ in 0..(now % 7) {
                tokio::task::yield_now().await;
            }
            b.confirms.acquire().await.unwrap().forget();
            b.outstanding.fetch_sub(1, Ordering::SeqCst);
            Ok(None)
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// A running session of `connection` over the fake client, fed through `deliveries`.
struct Harness {
    ctx: Arc<Context>,
    deliveries: mpsc::Sender<Delivery>,
    _events: mpsc::Sender<ClientEvent>,
    session: Session,
}

impl Harness {
    async fn start(connection: Value, broker: &Broker, stall: Duration) -> Harness {
        let (twin, events) = TwinService::start_with_events(Arc::new(MemoryStore::default()))
            .await
            .unwrap();
        let hub = Hub::start(twin, events, stall);
        let connection = connection_from_object(connection.as_object().unwrap().clone()).unwrap();
        let compiled = Compiled::build(&connection, &MappingContext::default()).unwrap();
        let mut logs = ConnectionLogs::new(LogLimits {
            failure_capacity: 1000,
            ..LogLimits::default()
        });
        logs.enable(Utc::now());
        let ctx = Arc::new(Context {
            metrics: Arc::new(ConnectionMetrics::new(
                connection
                    .sources
                    .iter()
                    .flat_map(|s| s.addresses.iter().cloned()),
                connection.targets.iter().map(|t| t.address.clone()),
            )),
            status: Arc::new(Mutex::new(open_status(
                &connection,
                &crate::runtime::status::Clients::all(1),
            ))),
            connection: Arc::new(connection),
            compiled: Arc::new(compiled),
            hub,
            logs: Arc::new(Mutex::new(logs)),
            processor: Processor::new(2),
            partition: None,
            slot: None,
        });
        let (deliveries, rx) = mpsc::channel(1000);
        let (events, events_rx) = mpsc::channel(1);
        let mut session = Session::new(&ctx);
        session.attach(
            &ctx,
            0,
            Connected {
                client: broker.client(),
                deliveries: rx,
                events: events_rx,
            },
        );
        Harness {
            ctx,
            deliveries,
            _events: events,
            session,
        }
    }

    /// Hands the client a message for source 0; the receiver gets its settlement.
    async fn deliver(&self, payload: Value) -> oneshot::Receiver<Settle> {
        let (settler, settled) = Settler::new();
        self.deliveries
            .send(Delivery {
                source: 0,
                address: "in".into(),
                message: ExternalMessage::text(payload.to_string()),
                unreadable: None,
                settler,
            })
            .await
            .unwrap();
        settled
    }

    /// The connection's `outbound` or `inbound` count of `metric` (success or failure).
    fn count(&self, direction: &str, metric: &str, outcome: &str) -> u64 {
        let metrics = self.ctx.metrics.to_json(Utc::now());
        metrics["connectionMetrics"][direction][metric][outcome]["PT1M"]
            .as_u64()
            .unwrap_or(0)
    }
}

fn connection(targets: Value, mapping: Value) -> Value {
    json!({"id": "c", "connectionType": "mqtt-5", "connectionStatus": "open",
        "uri": "tcp://127.0.0.1:1883", "mappingDefinitions": mapping,
        "sources": [{"addresses": ["in"], "authorizationContext": ["ditto:in"]}],
        "targets": targets})
}

fn events_target(extra: Value) -> Value {
    let mut target = json!({"address": "out", "topics": ["_/_/things/twin/events"],
        "authorizationContext": ["ditto:out"]});
    for (k, v) in extra.as_object().unwrap() {
        target[k] = v.clone();
    }
    json!([target])
}

fn modify(thing: &str, n: u64, headers: Value) -> Value {
    json!({"topic": format!("org.test/{thing}/things/twin/commands/modify"),
        "path": "/attributes/n", "value": n, "headers": headers})
}

/// The values of the published `/attributes/n` events of `thing` (the first is `created`, the
/// others `modified`), in publish order.
fn published_values(broker: &Broker, thing: &str) -> Vec<u64> {
    broker
        .published()
        .iter()
        .filter(|e| {
            let topic = e["topic"].as_str().unwrap_or_default();
            topic.starts_with(&format!("org.test/{thing}/things/twin/events/"))
        })
        .filter_map(|e| e["value"].as_u64())
        .collect()
}

/// Creates `org.test:<thing>` in the twin (its `created` event is routed as any other).
async fn create(h: &Harness, thing: &str) {
    let command = crate::twin::TwinCommand {
        thing_id: format!("org.test:{thing}"),
        action: crate::twin::Action::Create,
        path: "/".into(),
        value: Some(json!({})),
        headers: ferrule_protocol::Headers::new(),
        fields: None,
    };
    assert_eq!(h.ctx.hub.twin.execute(command).await.status, Some(201));
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        if std::time::Instant::now() > deadline {
            return Err(format!("timed out: {what}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// A burst through a script mapper on both sides (mapped on processors, in batches) keeps the
/// order of every thing from the consumed message to the published event. Five things are
/// interleaved; confirmations overlap and complete out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_holds_from_the_consumed_message_to_the_published_event() {
    let script = r#"
function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    var d = JSON.parse(textPayload);
    return Ditto.buildDittoProtocolMsg("org.test", d.thing, "things", "twin", "commands",
        "modify", "/attributes/n", headers, d.n);
}
function mapFromDittoProtocolMsg(namespace, name, group, channel, criterion, action, path, dittoHeaders, value, status, extra) {
    return Ditto.buildExternalMsg({}, JSON.stringify({"topic": namespace + "/" + name +
        "/things/twin/events/" + action, "value": value}), null, "application/json");
}"#;
    let mut c = connection(
        events_target(json!({"payloadMapping": ["js"]})),
        json!({"js": {"mappingEngine": "JavaScript",
            "options": {"incomingScript": script, "outgoingScript": script}}}),
    );
    c["sources"][0]["payloadMapping"] = json!(["js"]);
    let broker = Broker::confirming();
    let h = Harness::start(c, &broker, Duration::from_secs(30)).await;
    const N: u64 = 5000;
    let things = ["a", "b", "c", "d", "e"];
    for thing in things {
        create(&h, thing).await;
    }
    let mut settled = Vec::new();
    for n in 0..N {
        let thing = things[n as usize % things.len()];
        settled.push(h.deliver(json!({"thing": thing, "n": n})).await);
    }
    for s in settled {
        assert_eq!(s.await.unwrap(), Settle::Accept);
    }
    wait_until("every event published", || {
        broker.published().len() >= N as usize + things.len()
    })
    .await
    .map_err(|e| {
        let logs = lock(&h.ctx.logs).retrieve("c", Utc::now());
        format!("{e}: {} published; logs {logs}", broker.published().len())
    })
    .unwrap();
    for (i, thing) in things.iter().enumerate() {
        let expected: Vec<u64> = (0..N).filter(|n| *n as usize % 5 == i).collect();
        assert_eq!(published_values(&broker, thing), expected, "thing {thing}");
    }
}

/// With a broker that confirms nothing, at most CONCURRENCY publishes wait for confirmation,
/// the routing waits for the target's queue, the twin for the routing, the consumer for the
/// twin, and the source for the consumer: the feeder cannot hand over everything. Once the
/// broker confirms, every event is published, in order, none dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_does_not_confirm_holds_the_source_back_and_nothing_is_lost() {
    let broker = Broker::default();
    let h = Harness::start(
        connection(events_target(json!({})), json!({})),
        &broker,
        Duration::from_secs(60),
    )
    .await;
    broker.confirms.add_permits(1);
    create(&h, "t").await;
    // More than every queue between the source and the client holds together.
    let total = CONCURRENCY + TARGET_QUEUE + crate::twin::service::EVENT_QUEUE + 2 * 8192;
    let h = Arc::new(h);
    let fed = Arc::new(AtomicUsize::new(0));
    let feeder = {
        let (h, fed) = (h.clone(), fed.clone());
        tokio::spawn(async move {
            let mut settled = Vec::with_capacity(total);
            for n in 0..total as u64 {
                settled.push(h.deliver(modify("t", n, json!({}))).await);
                fed.fetch_add(1, Ordering::SeqCst);
            }
            settled
        })
    };
    // Let the pipeline fill up.
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = fed.load(Ordering::SeqCst);
        if now == last {
            break;
        }
        last = now;
    }
    assert!(
        last < total,
        "the source was not held back: all {total} messages were taken"
    );
    assert_eq!(broker.outstanding.load(Ordering::SeqCst), CONCURRENCY);
    assert_eq!(broker.max_outstanding.load(Ordering::SeqCst), CONCURRENCY);
    assert_eq!(h.count("outbound", "dropped", "failure"), 0);
    // The broker confirms: everything flows.
    broker.confirms.add_permits(Semaphore::MAX_PERMITS / 2);
    let settled = feeder.await.unwrap();
    for s in settled {
        assert_eq!(s.await.unwrap(), Settle::Accept);
    }
    wait_until("every event published", || {
        published_values(&broker, "t").len() == total
    })
    .await
    .map_err(|e| {
        format!(
            "{e}: {} published, metrics {}",
            published_values(&broker, "t").len(),
            serde_json::Value::Object(h.ctx.metrics.to_json(Utc::now()))
        )
    })
    .unwrap();
    assert_eq!(
        published_values(&broker, "t"),
        (0..total as u64).collect::<Vec<_>>()
    );
    assert_eq!(h.count("outbound", "dropped", "failure"), 0);
    assert!(broker.max_outstanding.load(Ordering::SeqCst) <= CONCURRENCY);
}

/// A target that stalls (its broker confirms nothing for longer than the stall bound) is
/// reported (status, log), what does not fit is dropped with a count and a 503 acknowledgement,
/// so a source waiting for the target's acknowledgement is told to redeliver instead of
/// waiting for its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_target_is_reported_and_its_drops_are_answered() {
    let broker = Broker::default();
    let stall = Duration::from_millis(300);
    let h = Harness::start(
        connection(
            events_target(json!({"issuedAcknowledgementLabel": "c:published"})),
            json!({}),
        ),
        &broker,
        stall,
    )
    .await;
    broker.confirms.add_permits(1);
    create(&h, "t").await;
    // Fill the target: CONCURRENCY wait for confirmation, TARGET_QUEUE wait in the queue.
    let fill = CONCURRENCY + TARGET_QUEUE;
    for n in 0..fill as u64 {
        drop(h.deliver(modify("t", n, json!({}))).await);
    }
    wait_until("the target's queue is full", || {
        broker.outstanding.load(Ordering::SeqCst) == CONCURRENCY
    })
    .await
    .unwrap();
    let waiting = h
        .deliver(modify(
            "t",
            1_000_000,
            json!({"requested-acks": ["c:published"], "timeout": "60s"}),
        ))
        .await;
    let started = std::time::Instant::now();
    let settle = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("answered well before the acknowledgement timeout")
        .unwrap();
    assert_eq!(settle, Settle::Redeliver, "a 503 acknowledgement");
    assert!(started.elapsed() >= stall / 2);
    assert!(h.count("outbound", "dropped", "failure") >= 1);
    let status = lock(&h.ctx.status).clone();
    assert_eq!(status.targets[0].status, Live::Failed);
    assert!(status.targets[0].details.contains("stalled"));
    let logs = lock(&h.ctx.logs).retrieve("c", Utc::now());
    assert!(logs.to_string().contains("The target stalled"), "{logs}");
}

/// Deliveries are settled once each, with the hub's verdict: a change that is durable is
/// accepted, a message that cannot be mapped is rejected (a redelivery would fail again), an
/// acknowledgement that times out asks for a redelivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_settled_with_the_hubs_verdict() {
    let broker = Broker::confirming();
    let h = Harness::start(
        connection(events_target(json!({})), json!({})),
        &broker,
        Duration::from_secs(5),
    )
    .await;
    create(&h, "t").await;
    let ok = h.deliver(modify("t", 1, json!({}))).await;
    let unmappable = h.deliver(json!("not a Ditto Protocol message")).await;
    let unanswered = h
        .deliver(modify(
            "t",
            2,
            json!({"requested-acks": ["nobody:answers"], "timeout": "200ms"}),
        ))
        .await;
    assert_eq!(ok.await.unwrap(), Settle::Accept);
    assert_eq!(unmappable.await.unwrap(), Settle::Reject);
    assert_eq!(unanswered.await.unwrap(), Settle::Redeliver);
    assert_eq!(h.count("inbound", "mapped", "failure"), 1);
    assert_eq!(h.ctx.hub.inbound.waiting(), 0, "nothing is left waiting");
}

/// Two devices send commands with the same correlation ids at the same time, each requesting
/// the target's acknowledgement: every one is acknowledged by its own event's publish (the
/// waiters are keyed by the id Ferrule gives each signal, not by the correlation id), and the
/// replies carry the correlation id the device sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_correlation_ids_of_two_devices_do_not_cross() {
    let broker = Broker::confirming();
    let mut c = connection(
        events_target(json!({"issuedAcknowledgementLabel": "c:published"})),
        json!({}),
    );
    c["sources"][0]["replyTarget"] = json!({"enabled": true, "address": "replies",
        "expectedResponseTypes": ["response", "error", "nack"]});
    let h = Harness::start(c, &broker, Duration::from_secs(5)).await;
    create(&h, "one").await;
    create(&h, "two").await;
    let mut settled = Vec::new();
    for n in 0..50u64 {
        for thing in ["one", "two"] {
            let headers = json!({"correlation-id": format!("corr-{n}"),
                "requested-acks": ["twin-persisted", "c:published"], "timeout": "10s"});
            settled.push(h.deliver(modify(thing, n, headers)).await);
        }
    }
    for s in settled {
        assert_eq!(s.await.unwrap(), Settle::Accept);
    }
    assert_eq!(h.ctx.hub.inbound.waiting(), 0);
    let replies: Vec<Value> = broker
        .published()
        .into_iter()
        .filter(|m| {
            m["topic"]
                .as_str()
                .unwrap_or("")
                .contains("/commands/modify")
        })
        .collect();
    assert_eq!(replies.len(), 100, "one response per command");
    for r in &replies {
        let correlation = r["headers"]["correlation-id"].as_str().unwrap();
        assert!(correlation.starts_with("corr-"), "{r}");
        assert!(r["headers"].get("ditto-signal-id").is_none(), "{r}");
        assert!(r["headers"].get("ditto-auth-context").is_none(), "{r}");
    }
    assert_eq!(h.count("outbound", "dropped", "failure"), 0);
}

/// A closed session takes no more deliveries and publishes nothing more: its routes are gone
/// and its tasks ended.
#[tokio::test]
async fn a_closed_session_takes_and_publishes_nothing() {
    let broker = Broker::confirming();
    let mut h = Harness::start(
        connection(events_target(json!({})), json!({})),
        &broker,
        Duration::from_secs(5),
    )
    .await;
    create(&h, "t").await;
    wait_until("the created event", || broker.published().len() == 1)
        .await
        .unwrap();
    h.session.close().await;
    wait_until("the consumer ended", || h.deliveries.is_closed())
        .await
        .unwrap();
    let twin = h.ctx.hub.twin.clone();
    let command = crate::twin::TwinCommand {
        thing_id: "org.test:t".into(),
        action: crate::twin::Action::Modify,
        path: "/attributes/n".into(),
        value: Some(json!(1)),
        headers: ferrule_protocol::Headers::new(),
        fields: None,
    };
    assert_eq!(twin.execute(command).await.status, Some(201));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(broker.published().len(), 1, "{:?}", broker.published());
}

/// An outbound mapper that throws is counted as Ditto counts it (`OutboundMappingProcessorActor`):
/// a failure of type `other` at the target, not `mapped`, with a log entry of type `other`
/// that names the mapper; nothing is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_mapper_exception_is_an_other_failure() {
    let script = r#"function mapFromDittoProtocolMsg() { throw new Error("no way out"); }"#;
    let broker = Broker::confirming();
    let h = Harness::start(
        connection(
            events_target(json!({"payloadMapping": ["boom"]})),
            json!({"boom": {"mappingEngine": "JavaScript",
                "options": {"outgoingScript": script}}}),
        ),
        &broker,
        Duration::from_secs(5),
    )
    .await;
    create(&h, "t").await;
    wait_until("the failure is counted", || {
        h.count("outbound", "other", "failure") == 1
    })
    .await
    .unwrap();
    assert_eq!(h.count("outbound", "mapped", "failure"), 0);
    assert_eq!(h.count("outbound", "mapped", "success"), 0);
    let metrics = Value::Object(h.ctx.metrics.to_json(Utc::now()));
    assert_eq!(
        metrics["targetMetrics"]["addressMetrics"]["out"]["other"]["failure"]["PT1M"], 1,
        "{metrics}"
    );
    assert_eq!(
        metrics["connectionMetrics"]["inbound"]["other"]["failure"]["PT1M"], 0,
        "inbound reports the type too: {metrics}"
    );
    let logs = lock(&h.ctx.logs).retrieve("c", Utc::now());
    let entry = logs["connectionLogs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "other")
        .unwrap_or_else(|| panic!("no `other` entry: {logs}"));
    assert_eq!(entry["level"], "failure");
    assert_eq!(entry["category"], "target");
    assert_eq!(entry["address"], "out");
    let message = entry["message"].as_str().unwrap();
    assert!(
        message.contains("<boom>") && message.contains("no way out"),
        "{message}"
    );
    assert!(broker.published().is_empty());
}

/// Cluster mode: a routed log event is held in its slot's ledger until the broker confirmed
/// its publish; what the publisher had taken when its session ended unconfirmed holds the
/// slot's cursor before it, so the slot's next session publishes it again.
#[tokio::test]
async fn a_routed_log_event_is_held_until_confirmed_and_abandoned_when_its_session_ends() {
    use crate::hub::ledger::Ledger;
    use crate::hub::routing::Routed;
    use std::sync::atomic::AtomicI64;
    let broker = Broker::default();
    let h = Harness::start(
        connection(events_target(json!({})), json!({})),
        &broker,
        Duration::from_secs(5),
    )
    .await;
    let read_to = Arc::new(AtomicI64::new(10));
    let ledger = Ledger::new(None, (0, 1), read_to.clone());
    let (tx, rx) = mpsc::channel(16);
    let client = Arc::new(ClientSlot::new(broker.client()));
    let publisher = tokio::spawn(outbound::publish_routed(h.ctx.clone(), client, 0, rx));
    let event = |n: u64| {
        let mut m = ferrule_protocol::DittoMessage::new(
            ferrule_protocol::Topic::parse("org.test/t/things/twin/events/modified").unwrap(),
            "/attributes/n",
        );
        m.value = Some(json!(n));
        Arc::new(m)
    };
    let route = |seq: i64| Routed {
        signal: event(seq as u64),
        extra: None,
        hold: Some(ledger.hold(seq)),
    };
    tx.send(route(11)).await.unwrap();
    read_to.store(11, Ordering::SeqCst);
    wait_until("11 published", || broker.published().len() == 1)
        .await
        .unwrap();
    assert_eq!(ledger.cursor(), Some(10), "published, not confirmed");
    broker.confirms.add_permits(1);
    wait_until("11 confirmed", || ledger.cursor() == Some(11))
        .await
        .unwrap();
    tx.send(route(12)).await.unwrap();
    tx.send(route(13)).await.unwrap();
    read_to.store(13, Ordering::SeqCst);
    wait_until("12 and 13 published", || broker.published().len() == 3)
        .await
        .unwrap();
    // The session ends: 12 and 13 were never confirmed.
    publisher.abort();
    let _ = publisher.await;
    broker.confirms.add_permits(10);
    read_to.store(20, Ordering::SeqCst);
    assert_eq!(ledger.cursor(), Some(11));
}
