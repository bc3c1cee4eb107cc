//! Faults mid-stream, counted end to end (issue 8). A device publishes a numbered stream at
//! MQTT QoS 1 into a broker of the test's own (a private Mosquitto, so that it can be stopped
//! and restarted); Ferrule's source requests the twin's and the target's acknowledgements, so a
//! message is acknowledged to the broker only after its twin change is durable and its event is
//! published; a consumer checks every number. While the stream runs, the test kills Ferrule with
//! SIGKILL, restarts the broker, cuts the broker connection, stops the target's broker, or fills
//! the disk. Expected each time: every message the broker acknowledged to the publisher is
//! delivered at least once; duplicates are counted and printed; memory stays bounded.

mod common;

use common::{Ferrule, Proxy, json};
use reqwest::StatusCode;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};

/// Ferrule's settings for these tests: reconnects within a second.
const CONFIG: &str =
    "[runtime]\nmin_backoff_ms = 200\nmax_backoff_ms = 1000\nconnect_timeout_ms = 3000\n";

use common::Mosquitto as Broker;

fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

/// What a publisher's stream came to.
#[derive(Debug, Default)]
struct Published {
    /// Messages the broker acknowledged (PUBACK), each once.
    acknowledged: usize,
    /// Publishes repeated because no PUBACK came (the broker was away).
    repeated: usize,
}

/// Where a publisher sends: an MQTT topic at QoS 1, or an AMQP 0.9.1 queue (default exchange)
/// with publisher confirms.
#[derive(Clone)]
enum Via {
    Mqtt { port: u16, topic: String },
    Amqp { port: u16, queue: String },
}

/// A publisher's connection: MQTT (the client and a channel that says `true` per PUBACK and
/// `false` when the connection failed), or an AMQP channel in confirm mode.
enum Link {
    Mqtt(AsyncClient, mpsc::UnboundedReceiver<bool>),
    Amqp {
        channel: lapin::Channel,
        _connection: Box<lapin::Connection>,
    },
}

impl Link {
    /// `None` when the broker is not reachable now.
    async fn open(via: &Via) -> Option<Link> {
        match via {
            Via::Mqtt { port, .. } => mqtt_publisher(*port)
                .await
                .map(|(c, acks)| Link::Mqtt(c, acks)),
            Via::Amqp { port, .. } => {
                let connection = lapin::Connection::connect(
                    &amqp_uri(*port),
                    lapin::ConnectionProperties::default(),
                )
                .await
                .ok()?;
                let channel = connection.create_channel().await.ok()?;
                channel
                    .confirm_select(lapin::options::ConfirmSelectOptions::default())
                    .await
                    .ok()?;
                Some(Link::Amqp {
                    channel,
                    _connection: Box::new(connection),
                })
            }
        }
    }

    /// Sends one message; `true` when the broker acknowledged it within 3 s.
    async fn send(&mut self, via: &Via, payload: Vec<u8>) -> bool {
        let wait = Duration::from_secs(3);
        match (self, via) {
            (Link::Mqtt(client, acks), Via::Mqtt { topic, .. }) => {
                client
                    .publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
                    .await
                    .is_ok()
                    && matches!(timeout(wait, acks.recv()).await, Ok(Some(true)))
            }
            (Link::Amqp { channel, .. }, Via::Amqp { queue, .. }) => {
                let confirm = channel
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        lapin::options::BasicPublishOptions::default(),
                        &payload,
                        lapin::BasicProperties::default().with_delivery_mode(2),
                    )
                    .await;
                match confirm {
                    Ok(confirm) => timeout(wait, confirm)
                        .await
                        .is_ok_and(|c| c.is_ok_and(|c| c.is_ack())),
                    Err(_) => false,
                }
            }
            _ => unreachable!("a link is opened for its own kind"),
        }
    }
}

/// Publishes `payload(i)` for i in 0..n `via` a broker, one after another, each repeated (on a
/// new connection) until the broker acknowledges it; at most `rate` per second. `progress`
/// counts the acknowledged ones.
async fn publish_stream(
    via: Via,
    n: usize,
    rate: u32,
    payload: impl Fn(usize) -> Vec<u8>,
    progress: Arc<AtomicUsize>,
) -> Published {
    let started = Instant::now();
    let mut out = Published::default();
    let mut link: Option<Link> = None;
    for i in 0..n {
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        loop {
            if link.is_none() {
                link = Link::open(&via).await;
                if link.is_none() {
                    sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
            if link.as_mut().unwrap().send(&via, payload(i)).await {
                break;
            }
            out.repeated += 1;
            link = None;
        }
        out.acknowledged += 1;
        progress.store(out.acknowledged, Ordering::SeqCst);
    }
    out
}

async fn mqtt_publisher(port: u16) -> Option<(AsyncClient, mpsc::UnboundedReceiver<bool>)> {
    let id = common::unique("fault-pub", '-');
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_clean_session(true)
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(o, 10);
    let (tx, rx) = mpsc::unbounded_channel();
    let (up_tx, up_rx) = tokio::sync::oneshot::channel();
    let mut up = Some(up_tx);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    up.take().map(|u| u.send(true));
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    let _ = tx.send(true);
                }
                Ok(_) => {}
                Err(_) => {
                    up.take().map(|u| u.send(false));
                    let _ = tx.send(false);
                    return;
                }
            }
        }
    });
    match timeout(Duration::from_secs(3), up_rx).await {
        Ok(Ok(true)) => Some((client, rx)),
        _ => None,
    }
}

/// The numbers a consumer received (how often each): from an MQTT topic filter through a
/// persistent session that survives broker restarts and lost connections, or from an AMQP 0.9.1
/// queue.
struct Consumer {
    seen: Arc<Mutex<HashMap<u64, u32>>>,
    _task: tokio::task::JoinHandle<()>,
}

/// Counts the `seq` attribute of a twin event.
fn count(seen: &Mutex<HashMap<u64, u32>>, payload: &[u8]) {
    let event: Value = serde_json::from_slice(payload).unwrap_or_default();
    if let Some(seq) = event["value"]["attributes"]["seq"].as_u64() {
        *seen.lock().unwrap().entry(seq).or_insert(0) += 1;
    }
}

impl Consumer {
    async fn mqtt(port: u16, filter: &str) -> Consumer {
        let mut o = MqttOptions::new(common::unique("fault-sub", '-'), "127.0.0.1", port);
        o.set_clean_session(false)
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(o, 100);
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready = Some(ready_tx);
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            let _client = client;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        ready.take().map(|r| r.send(()));
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => count(&sink, &p.payload),
                    Ok(_) => {}
                    // The broker is away: poll again, which reconnects (the session is kept).
                    Err(_) => sleep(Duration::from_millis(100)).await,
                }
            }
        });
        timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("the consumer subscribed")
            .unwrap();
        Consumer { seen, _task: task }
    }

    /// Consumes `queue` of the RabbitMQ on `port`, connecting again when the broker goes away.
    async fn amqp(port: u16, queue: &str) -> Consumer {
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let sink = seen.clone();
        let queue = queue.to_string();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready = Some(ready_tx);
        let task = tokio::spawn(async move {
            use futures_util::StreamExt;
            loop {
                if let Ok(connection) = lapin::Connection::connect(
                    &amqp_uri(port),
                    lapin::ConnectionProperties::default(),
                )
                .await
                {
                    let consumer = match connection.create_channel().await {
                        Ok(channel) => {
                            channel
                                .basic_consume(
                                    queue.as_str().into(),
                                    "fault-consumer".into(),
                                    lapin::options::BasicConsumeOptions {
                                        no_ack: true,
                                        ..Default::default()
                                    },
                                    lapin::types::FieldTable::default(),
                                )
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    if let Ok(mut deliveries) = consumer {
                        ready.take().map(|r| r.send(()));
                        while let Some(Ok(delivery)) = deliveries.next().await {
                            count(&sink, &delivery.data);
                        }
                    }
                }
                sleep(Duration::from_millis(200)).await;
            }
        });
        timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("the consumer reached RabbitMQ")
            .unwrap();
        Consumer { seen, _task: task }
    }

    /// Waits until every number below `n` arrived (at most `within`); returns how many arrived
    /// and how many arrived more than once.
    async fn wait_for_all(&self, n: usize, within: Duration) -> (usize, usize) {
        let deadline = Instant::now() + within;
        loop {
            let (distinct, duplicates) = {
                let seen = self.seen.lock().unwrap();
                let distinct = (0..n as u64).filter(|i| seen.contains_key(i)).count();
                let duplicates = seen.values().map(|c| (*c as usize).saturating_sub(1)).sum();
                (distinct, duplicates)
            };
            if distinct == n || Instant::now() > deadline {
                return (distinct, duplicates);
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// How many of the numbers below `n` arrived so far.
    fn distinct(&self, n: usize) -> usize {
        let seen = self.seen.lock().unwrap();
        (0..n as u64).filter(|i| seen.contains_key(i)).count()
    }

    fn missing(&self, n: usize) -> Vec<u64> {
        let seen = self.seen.lock().unwrap();
        (0..n as u64).filter(|i| !seen.contains_key(i)).collect()
    }
}

/// Device message `i`: a modify of thing `org.fault:<u>-<i % 20>` that sets attribute `seq`
/// to `i`, padded to about `size` bytes.
fn device_message(u: &str, i: usize, size: usize) -> Vec<u8> {
    let pad = "x".repeat(size.saturating_sub(160));
    json!({
        "topic": format!("org.fault/{u}-{}/things/twin/commands/modify", i % 20),
        "path": "/",
        "value": {"attributes": {"seq": i, "pad": pad}}
    })
    .to_string()
    .into_bytes()
}

/// An MQTT source at QoS 1 that is settled only after the twin change is durable and the
/// target labelled `ack_label` published its event; redelivered by the broker (persistent
/// session, reconnect for redelivery) when that fails.
fn source(address: &str, ack_label: &str) -> Value {
    json!({
        "addresses": [address], "qos": 1, "authorizationContext": ["ditto:inbound"],
        "acknowledgementRequests": {"includes": ["twin-persisted", ack_label]}
    })
}

fn mqtt_specific_config(client_id: &str) -> Value {
    json!({"clientId": client_id, "cleanSession": "false", "reconnectForRedelivery": "true",
           "reconnectForRedeliveryDelay": "1s"})
}

/// One connection with the source and its event target on the same broker.
fn looped_connection(port: u16, u: &str) -> Value {
    json!({
        "connectionType": "mqtt", "connectionStatus": "open",
        "uri": format!("tcp://127.0.0.1:{port}"),
        "specificConfig": mqtt_specific_config(&format!("ferrule-{u}")),
        "sources": [source(&format!("fault/{u}/in"), "loop:published")],
        "targets": [{"address": format!("fault/{u}/out"), "qos": 1,
                     "topics": ["_/_/things/twin/events"],
                     "issuedAcknowledgementLabel": "{{connection:id}}:published",
                     "authorizationContext": ["ditto:outbound"]}]
    })
}

fn start(dir: &Path) -> Ferrule {
    common::start_with_config(dir, CONFIG)
}

/// Resident and peak resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

const N: usize = 3_000;
const RATE: u32 = 1_000;

/// Publishes the stream of `N` device messages `via` a broker, calls `fault` once a third of it
/// is acknowledged by the broker, and returns what was published once all of it is.
async fn stream_with_fault<F, Fut>(via: Via, u: &str, consumer: &Consumer, fault: F) -> Published
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let progress = Arc::new(AtomicUsize::new(0));
    let uu = u.to_string();
    let publisher = tokio::spawn(publish_stream(
        via,
        N,
        RATE,
        move |i| device_message(&uu, i, 200),
        progress.clone(),
    ));
    while progress.load(Ordering::SeqCst) < N / 3 {
        assert!(!publisher.is_finished(), "the publisher stopped early");
        sleep(Duration::from_millis(10)).await;
    }
    let before = consumer.distinct(N);
    let started = Instant::now();
    fault().await;
    eprintln!(
        "the fault came after {before} of {N} messages had been delivered and took {:?}",
        started.elapsed()
    );
    assert!(before < N, "the fault came mid-stream");
    publisher.await.unwrap()
}

/// Waits for every number of the stream at the consumer, prints what arrived and asserts that
/// every acknowledged message was delivered.
async fn assert_all_delivered(case: &str, f: &Ferrule, published: &Published, consumer: &Consumer) {
    let (delivered, dups) = consumer.wait_for_all(N, Duration::from_secs(60)).await;
    if delivered != N {
        print_state(f).await;
    }
    eprintln!(
        "{case}: {} acknowledged to the publisher ({} publishes repeated), {delivered} delivered, \
         {dups} duplicates, missing {:?}",
        published.acknowledged,
        published.repeated,
        consumer.missing(N).iter().take(20).collect::<Vec<_>>()
    );
    assert_eq!(published.acknowledged, N);
    assert_eq!(
        delivered, N,
        "{case}: every acknowledged message is delivered"
    );
}

/// What Ferrule says of its connections (status, metrics, the newest log entries) and the tail
/// of its own output: printed when a stream did not arrive whole, to tell where it stopped.
async fn print_state(f: &Ferrule) {
    let ids = json(f.get("/api/2/connections?ids-only=true").await).await;
    for id in ids
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        for what in ["status", "metrics", "logs"] {
            let mut body = json(f.get(&format!("/api/2/connections/{id}/{what}")).await).await;
            if let Some(logs) = body.get_mut("connectionLogs").and_then(Value::as_array_mut) {
                let keep = logs.len().saturating_sub(30);
                logs.drain(..keep);
            }
            eprintln!("{id} {what}: {body}");
        }
    }
    let output = f.output();
    let tail: Vec<&str> = output.lines().rev().take(40).collect();
    eprintln!("Ferrule's output (newest last):");
    for line in tail.into_iter().rev() {
        eprintln!("  {line}");
    }
}

fn mqtt_in(port: u16, u: &str) -> Via {
    Via::Mqtt {
        port,
        topic: format!("fault/{u}/in"),
    }
}

/// Kills Ferrule with SIGKILL, and starts it again on the same data dir (as a supervisor
/// would); the new process is left in `slot`.
async fn kill_and_restart(f: &mut Ferrule, data: &Path, slot: &Mutex<Option<Ferrule>>) {
    f.kill();
    *slot.lock().unwrap() = Some(start(data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_sigkill_mid_stream_loses_no_acknowledged_message() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut f = start(dir.path());
    let u = common::unique("kill", '-');
    common::create_open(&f, "loop", &looped_connection(broker.port, &u)).await;
    let consumer = Consumer::mqtt(broker.port, &format!("fault/{u}/out")).await;

    let restarted = Mutex::new(None);
    let published = stream_with_fault(mqtt_in(broker.port, &u), &u, &consumer, || {
        kill_and_restart(&mut f, dir.path(), &restarted)
    })
    .await;
    let f = restarted.lock().unwrap().take().unwrap();
    assert_all_delivered("MQTT, SIGKILL", &f, &published, &consumer).await;
    common::wait_for_live_status(&f, "loop", "open").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_broker_restart_mid_stream_loses_no_acknowledged_message() {
    let mut broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path());
    let u = common::unique("restart", '-');
    common::create_open(&f, "loop", &looped_connection(broker.port, &u)).await;
    let consumer = Consumer::mqtt(broker.port, &format!("fault/{u}/out")).await;

    let via = mqtt_in(broker.port, &u);
    let published = stream_with_fault(via, &u, &consumer, || async {
        broker.stop();
        sleep(Duration::from_millis(500)).await;
        broker.run().await;
    })
    .await;
    assert_all_delivered("MQTT, broker restart", &f, &published, &consumer).await;
    assert!(published.repeated > 0, "the publisher saw the broker go");
    common::wait_for_live_status(&f, "loop", "open").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_dropped_connection_mid_stream_loses_no_acknowledged_message() {
    let broker = Broker::start().await;
    let proxy = Proxy::start(0, broker.port).await;
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path());
    let u = common::unique("drop", '-');
    // Ferrule reaches the broker through the proxy; the publisher and consumer do not.
    common::create_open(&f, "loop", &looped_connection(proxy.port, &u)).await;
    let consumer = Consumer::mqtt(broker.port, &format!("fault/{u}/out")).await;

    let bport = broker.port;
    let published = stream_with_fault(mqtt_in(bport, &u), &u, &consumer, || async move {
        let port = proxy.cut();
        sleep(Duration::from_millis(500)).await;
        // Back on the same port, until the test ends.
        std::mem::forget(Proxy::start(port, bport).await);
    })
    .await;
    assert_all_delivered("MQTT, connection dropped", &f, &published, &consumer).await;
    common::assert_connection_failure_logged(&f, "loop").await;
}

/// Durable queues of the test's own on the RabbitMQ at `port`: the source queue, and an exchange
/// bound to the queue the consumer reads. Returns (source queue, exchange, consumer queue).
async fn amqp_queues(port: u16, u: &str) -> (String, String, String) {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::{AMQPValue, FieldTable};
    let connection =
        lapin::Connection::connect(&amqp_uri(port), lapin::ConnectionProperties::default())
            .await
            .expect("RabbitMQ on 127.0.0.1:5672 must be reachable");
    let channel = connection.create_channel().await.unwrap();
    let (input, exchange, output) = (format!("{u}.in"), format!("{u}.x"), format!("{u}.out"));
    for queue in [&input, &output] {
        let mut arguments = FieldTable::default();
        arguments.insert("x-expires".into(), AMQPValue::LongInt(300_000));
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                arguments,
            )
            .await
            .unwrap();
    }
    channel
        .exchange_declare(
            exchange.as_str().into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            output.as_str().into(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    (input, exchange, output)
}

/// An AMQP 0.9.1 connection `amqp-loop` that consumes `input` (settled after the twin change is
/// durable and the event is published) and publishes events to `exchange`.
fn amqp_connection(port: u16, input: &str, exchange: &str) -> Value {
    json!({
        "connectionType": "amqp-091", "connectionStatus": "open",
        "uri": amqp_uri(port),
        "sources": [{"addresses": [input], "authorizationContext": ["ditto:inbound"],
                     "acknowledgementRequests": {"includes": ["twin-persisted", "amqp-loop:published"]}}],
        "targets": [{"address": format!("{exchange}/events"), "topics": ["_/_/things/twin/events"],
                     "issuedAcknowledgementLabel": "{{connection:id}}:published",
                     "headerMapping": {"delivery-mode": "2"},
                     "authorizationContext": ["ditto:outbound"]}]
    })
}

fn amqp_uri(port: u16) -> String {
    format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_sigkill_mid_stream_loses_no_acknowledged_message() {
    let u = common::unique("ferrule-fault.kill", '.');
    let (input, exchange, output) = amqp_queues(5672, &u).await;
    let dir = tempfile::tempdir().unwrap();
    let mut f = start(dir.path());
    common::create_open(&f, "amqp-loop", &amqp_connection(5672, &input, &exchange)).await;
    let consumer = Consumer::amqp(5672, &output).await;

    let restarted = Mutex::new(None);
    let name = u.replace('.', "-");
    let via = Via::Amqp {
        port: 5672,
        queue: input,
    };
    let published = stream_with_fault(via, &name, &consumer, || {
        kill_and_restart(&mut f, dir.path(), &restarted)
    })
    .await;
    let f = restarted.lock().unwrap().take().unwrap();
    assert_all_delivered("AMQP 0.9.1, SIGKILL", &f, &published, &consumer).await;
    common::wait_for_live_status(&f, "amqp-loop", "open").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_dropped_connection_mid_stream_loses_no_acknowledged_message() {
    let u = common::unique("ferrule-fault.drop", '.');
    let (input, exchange, output) = amqp_queues(5672, &u).await;
    let proxy = Proxy::start(0, 5672).await;
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path());
    common::create_open(
        &f,
        "amqp-loop",
        &amqp_connection(proxy.port, &input, &exchange),
    )
    .await;
    let consumer = Consumer::amqp(5672, &output).await;

    let name = u.replace('.', "-");
    let via = Via::Amqp {
        port: 5672,
        queue: input,
    };
    let published = stream_with_fault(via, &name, &consumer, || async move {
        let port = proxy.cut();
        sleep(Duration::from_millis(500)).await;
        std::mem::forget(Proxy::start(port, 5672).await);
    })
    .await;
    assert_all_delivered("AMQP 0.9.1, connection dropped", &f, &published, &consumer).await;
    common::assert_connection_failure_logged(&f, "amqp-loop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_broker_restart_mid_stream_loses_no_acknowledged_message() {
    let mut rabbit = PrivateRabbit::start().await;
    let u = common::unique("ferrule-fault.restart", '.');
    let (input, exchange, output) = amqp_queues(rabbit.port, &u).await;
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path());
    common::create_open(
        &f,
        "amqp-loop",
        &amqp_connection(rabbit.port, &input, &exchange),
    )
    .await;
    let consumer = Consumer::amqp(rabbit.port, &output).await;

    let name = u.replace('.', "-");
    let via = Via::Amqp {
        port: rabbit.port,
        queue: input,
    };
    let published = stream_with_fault(via, &name, &consumer, || async {
        rabbit.stop().await;
        rabbit.run().await;
    })
    .await;
    assert_all_delivered("AMQP 0.9.1, broker restart", &f, &published, &consumer).await;
    assert!(published.repeated > 0, "the publisher saw the broker go");
    common::wait_for_live_status(&f, "amqp-loop", "open").await;
}

/// A RabbitMQ node of the test's own (its own node name, ports and data directory, owned by the
/// `rabbitmq` user the server runs as), so that the test can restart it. Durable queues and
/// persistent messages survive the restart.
struct PrivateRabbit {
    port: u16,
    node: String,
    dir: tempfile::TempDir,
    /// The node's process id (from its pid file) and the `rabbitmq-server` script that runs it.
    pid: Option<u32>,
    server: Option<Child>,
}

impl PrivateRabbit {
    async fn start() -> PrivateRabbit {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        std::fs::write(
            dir.path().join("rabbitmq.conf"),
            format!("loopback_users = none\nlisteners.tcp.local = 127.0.0.1:{port}\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("plugins"), "[].\n").unwrap();
        for sub in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let owned = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            owned,
            "the rabbitmq user exists (scripts/brokers installs RabbitMQ)"
        );
        let mut rabbit = PrivateRabbit {
            port,
            node: format!("ferrule-fault-{}-{port}@localhost", std::process::id()),
            dir,
            pid: None,
            server: None,
        };
        rabbit.run().await;
        rabbit
    }

    async fn run(&mut self) {
        let d = self.dir.path();
        let pid_file = d.join("pid");
        let _ = std::fs::remove_file(&pid_file);
        let server = Command::new("rabbitmq-server")
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", common::free_port().to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("plugins"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"))
            .env("RABBITMQ_FEATURE_FLAGS_FILE", d.join("feature_flags"))
            .env("RABBITMQ_PID_FILE", &pid_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rabbitmq-server is installed (scripts/brokers installs it)");
        self.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|p| p.trim().parse().ok());
            // A node still booting may accept the socket and not answer it yet: each try is
            // bounded, so the deadline below is reached (a try without a bound hung the test).
            let uri = amqp_uri(self.port);
            let connect = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default());
            if let Some(pid) = pid
                && matches!(
                    tokio::time::timeout(Duration::from_secs(5), connect).await,
                    Ok(Ok(_))
                )
            {
                self.pid = Some(pid);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the test's RabbitMQ node did not start on port {} (logs in {})",
                self.port,
                d.join("log").display()
            );
            sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM to the node (a clean stop), and wait until it is gone.
    async fn stop(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        sigterm(pid);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                Instant::now() < deadline,
                "the test's RabbitMQ did not stop"
            );
            sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_broker_down_holds_the_source_back_with_bounded_memory() {
    let source_broker = Broker::start().await;
    let mut target_broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path());
    let u = common::unique("target-down", '-');
    let consumer = Consumer::mqtt(target_broker.port, &format!("fault/{u}/out")).await;
    common::create_open(
        &f,
        "dst",
        &json!({
            "connectionType": "mqtt", "connectionStatus": "open",
            "uri": format!("tcp://127.0.0.1:{}", target_broker.port),
            "specificConfig": mqtt_specific_config(&format!("ferrule-dst-{u}")),
            "targets": [{"address": format!("fault/{u}/out"), "qos": 1,
                         "topics": ["_/_/things/twin/events"],
                         "issuedAcknowledgementLabel": "{{connection:id}}:published",
                         "authorizationContext": ["ditto:outbound"]}]
        }),
    )
    .await;
    common::create_open(
        &f,
        "src",
        &json!({
            "connectionType": "mqtt", "connectionStatus": "open",
            "uri": format!("tcp://127.0.0.1:{}", source_broker.port),
            "specificConfig": mqtt_specific_config(&format!("ferrule-src-{u}")),
            "sources": [source(&format!("fault/{u}/in"), "dst:published")]
        }),
    )
    .await;

    // 16,000 messages of 8 KiB (125 MiB) arrive while the target's broker is down.
    const M: usize = 16_000;
    const SIZE: usize = 8 * 1024;
    let progress = Arc::new(AtomicUsize::new(0));
    let uu = u.clone();
    let publisher = tokio::spawn(publish_stream(
        mqtt_in(source_broker.port, &u),
        M,
        4_000,
        move |i| device_message(&uu, i, SIZE),
        progress.clone(),
    ));
    while progress.load(Ordering::SeqCst) < 200 {
        sleep(Duration::from_millis(5)).await;
    }
    let (before, _) = rss_kib(f.pid());
    target_broker.stop();
    let mut peak = before;
    while !publisher.is_finished() {
        peak = peak.max(rss_kib(f.pid()).0);
        sleep(Duration::from_millis(50)).await;
    }
    let published = publisher.await.unwrap();
    // Down a little longer, then back.
    for _ in 0..20 {
        peak = peak.max(rss_kib(f.pid()).0);
        sleep(Duration::from_millis(50)).await;
    }
    let metrics = json(f.get("/api/2/connections/src/metrics").await).await;
    target_broker.run().await;
    let (delivered, dups) = {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (d, dups) = consumer.wait_for_all(M, Duration::from_secs(1)).await;
            peak = peak.max(rss_kib(f.pid()).0);
            if d == M || Instant::now() > deadline {
                break (d, dups);
            }
        }
    };
    let (_, hwm) = rss_kib(f.pid());
    eprintln!(
        "target down: {} acknowledged to the publisher, {delivered} delivered, {dups} duplicates; \
         Ferrule RSS {} MiB before the outage, at most {} MiB while {} MiB were waiting, peak \
         (VmHWM) {} MiB; source metrics during the outage: {}",
        published.acknowledged,
        before / 1024,
        peak / 1024,
        M * SIZE / (1 << 20),
        hwm / 1024,
        metrics["connectionMetrics"]["inbound"]["acknowledged"]
    );
    assert_eq!(published.acknowledged, M);
    assert_eq!(delivered, M, "every acknowledged message is delivered");
    assert!(
        (peak - before) / 1024 < 64,
        "memory stays bounded while the target is down: {} MiB → {} MiB with {} MiB waiting",
        before / 1024,
        peak / 1024,
        M * SIZE / (1 << 20)
    );
}

/// Mounts a tmpfs of `mib` MiB at `dir` (root only; these tests run as root).
fn mount_tmpfs(dir: &Path, mib: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mounting a tmpfs at {} needs root", dir.display());
}

fn remount(dir: &Path, mode: &str) {
    let ok = Command::new("mount")
        .args(["-o", &format!("remount,{mode}")])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "remount {mode} {}", dir.display());
}

/// Unmounts when dropped (after the server using it is gone).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` to the last byte.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let mut byte = [0u8; 1];
    while file.write_all(&byte).is_ok() {
        byte[0] = 1;
    }
    let _ = file.flush();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_read_only_data_dir_refuses_changes_clearly_and_recovers() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    mount_tmpfs(&data, 32);
    let _mounted = Mounted(data.clone());
    let mut f = start(dir.path());
    let u = common::unique("disk", '-');
    common::create_open(&f, "loop", &looped_connection(broker.port, &u)).await;
    let consumer = Consumer::mqtt(broker.port, &format!("fault/{u}/out")).await;
    assert!(
        f.put_json(
            "/api/2/things/org.fault:disk",
            &json!({"attributes": {"v": 0}})
        )
        .await
        .status()
        .is_success()
    );

    // A full data directory: changes are refused clearly, nothing is half-written, held
    // messages wait at the broker, and everything goes through once there is space again. The
    // change is large enough that the database file must grow to hold it.
    let thing = json!({"attributes": {"v": 1, "pad": "p".repeat(512 * 1024)}});
    fill(&data);
    // A twin change and a new connection are refused with Ditto's error JSON...
    let resp = f.put_json("/api/2/things/org.fault:disk", &thing).await;
    let status = resp.status();
    let body = json(resp).await;
    assert!(status.is_server_error(), "full disk: {status} {body}");
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "full disk: {body}"
    );
    eprintln!("disk full: a thing change is answered {status} {body}");
    // A connection change is small: it may still fit into free pages inside the database
    // file. Either it is refused and absent, or it is stored whole.
    let mut c = common::mqtt_connection();
    c["connectionStatus"] = json!("closed");
    let id = "during-full";
    let resp = f.put_json(&format!("/api/2/connections/{id}"), &c).await;
    let status = resp.status();
    let body = json(resp).await;
    eprintln!("disk full: a new connection is answered {status} {body}");
    let stored = f.get(&format!("/api/2/connections/{id}")).await.status();
    if status.is_server_error() {
        assert_eq!(
            body["error"], "connectivity:connection.unavailable",
            "full disk"
        );
        assert_eq!(
            stored,
            StatusCode::NOT_FOUND,
            "full disk: nothing half-written"
        );
    } else {
        assert_eq!(status, StatusCode::CREATED, "full disk: {body}");
        assert_eq!(stored, StatusCode::OK, "full disk");
    }
    assert_eq!(
        json(f.get("/api/2/things/org.fault:disk").await).await["attributes"]["v"],
        json!(0),
        "full disk: the refused change is not visible"
    );
    // A mapper module upload is refused the same way (503, not an internal error) and leaves
    // no temporary file.
    let resp = f
        .req(reqwest::Method::PUT, "/api/2/mappers/during-full")
        .header("content-type", "application/wasm")
        .body(ferrule_test_guests::bytes(ferrule_test_guests::BEHAVE))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = json(resp).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "full disk: {body}");
    assert_eq!(body["error"], "mappers:mapper.unavailable", "full disk");
    let leftovers: Vec<_> = std::fs::read_dir(data.join("mappers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "full disk: {leftovers:?}");
    assert_eq!(
        f.get("/api/2/mappers/during-full").await.status(),
        StatusCode::NOT_FOUND
    );
    // Device messages meanwhile are not acknowledged to the broker (it keeps them).
    let uu = u.clone();
    publish_stream(
        mqtt_in(broker.port, &u),
        100,
        1_000,
        move |i| device_message(&uu, i, 200),
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    sleep(Duration::from_millis(500)).await;
    assert_eq!(
        f.get("/health").await.status(),
        StatusCode::OK,
        "full disk: the server goes on"
    );
    std::fs::remove_file(data.join("filler")).unwrap();
    let repaired = Instant::now();
    // Once the disk is writable again, everything goes through without a restart.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = f.put_json("/api/2/things/org.fault:disk", &thing).await;
        if resp.status().is_success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "full disk: writes work again after the repair: {}",
            resp.text().await.unwrap()
        );
        sleep(Duration::from_millis(200)).await;
    }
    let (delivered, dups) = consumer.wait_for_all(100, Duration::from_secs(60)).await;
    eprintln!(
        "disk full: {delivered} of {} device messages delivered, {dups} duplicates, \
         {:?} after the repair",
        100,
        repaired.elapsed()
    );
    assert_eq!(
        delivered,
        100,
        "full disk: missing {:?}",
        consumer.missing(100)
    );
    // A read-only data directory (a volume mounted wrongly): the start fails with a message
    // that names the database and the cause; nothing stored is lost.
    let ids = json(f.get("/api/2/connections?ids-only=true").await).await;
    assert!(f.stop().success());
    remount(&data, "ro");
    let options = common::Options {
        args: vec![
            "--config".into(),
            dir.path().join("ferrule.toml").display().to_string(),
        ],
        ..Default::default()
    };
    let (code, stderr) = match common::try_start(&data, options) {
        Ok(_) => panic!("Ferrule started on a read-only data directory"),
        Err(failed) => failed,
    };
    eprintln!("disk read-only: the start fails with exit code {code}: {stderr}");
    assert_ne!(code, 0);
    assert!(
        stderr.contains("Read-only file system") && stderr.contains("ferrule.redb"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    remount(&data, "rw");
    // No corruption: a restart reads everything back.
    let f = start(dir.path());
    assert_eq!(
        json(f.get("/api/2/connections?ids-only=true").await).await,
        ids
    );
    assert_eq!(
        json(f.get("/api/2/things/org.fault:disk").await).await["attributes"]["v"],
        json!(1)
    );
    common::wait_for_live_status(&f, "loop", "open").await;
}
