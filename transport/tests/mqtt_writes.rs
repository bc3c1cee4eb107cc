//! Publishes and acknowledgements that are ready together leave in few writes: the MQTT client
//! (rumqttc with Ferrule's patch, `vendor/rumqttc/FERRULE.md`) writes every request it has
//! when it writes, instead of one write (a syscall and a TCP segment, for the broker too) per
//! packet. The test runs the client on a runtime of one thread and counts that thread's write
//! syscalls (`/proc/thread-self/io`): the client's event loop, its forwarder and acker, and
//! for MQTT 5 its guard all run there. A subscriber checks that every message arrives, in order.
//! Each test runs a Mosquitto of its own with unlimited queues and in-flight windows, so a
//! backlog the client has not read yet is held, not dropped.

mod common;

use common::{Mosquitto, mosquitto};
use ferrule_protocol::ExternalMessage;
use ferrule_transport::{ClientConfig, Protocol, Publish, Settle, SourceSpec, TargetSpec, connect};
use std::time::Duration;

const BROKER_CONFIG: &str = "max_inflight_messages 0";
const MESSAGES: usize = 2_000;

/// Runs the future `make` returns on a new thread with a runtime of its own (one thread), so
/// that thread's write syscalls are the client's.
fn on_a_thread_of_its_own<T, F, Fut>(make: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(make())
    })
}

/// Write syscalls of the calling thread so far.
fn writes_of_this_thread() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").expect("/proc/thread-self/io");
    io.lines()
        .find_map(|l| l.strip_prefix("syscw: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("syscw in /proc/thread-self/io")
}

fn config(
    broker: &Mosquitto,
    name: &str,
    protocol: Protocol,
    qos: u8,
    source: Option<&str>,
    target: &str,
) -> ClientConfig {
    ClientConfig {
        connection_id: name.to_string(),
        client_index: 0,
        protocol,
        uri: format!("tcp://127.0.0.1:{}", broker.port),
        validate_certificates: true,
        ca: None,
        client_cert: None,
        credentials: None,
        specific_config: Default::default(),
        sources: source
            .map(|address| SourceSpec {
                index: 0,
                addresses: vec![address.to_string()],
                qos: Some(qos),
                consumer_count: 1,
                at_least_once: true,
            })
            .into_iter()
            .collect(),
        targets: vec![TargetSpec {
            index: 0,
            address: target.to_string(),
            qos: Some(qos),
        }],
        connect_timeout: Duration::from_secs(5),
        max_in_flight: 1_000,
        dry_run: false,
    }
}

/// A subscriber (on the test's multi-threaded runtime) that returns the payloads of the first
/// `n` messages on `topic`.
async fn subscriber(
    broker: &Mosquitto,
    topic: &str,
    n: usize,
) -> tokio::task::JoinHandle<Vec<String>> {
    let mut o = rumqttc::MqttOptions::new("writes-sub", "127.0.0.1", broker.port);
    o.set_inflight(1_000);
    let (client, mut events) = rumqttc::AsyncClient::new(o, 100);
    client
        .subscribe(topic, rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    // Subscribed once the SUBACK is in.
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll())
            .await
            .expect("a SUBACK within 10 s")
            .expect("the subscriber connects")
        {
            rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => break,
            _ => continue,
        }
    }
    tokio::spawn(async move {
        let _client = client;
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let Ok(event) = tokio::time::timeout(Duration::from_secs(30), events.poll()).await
            else {
                panic!("only {} of {n} messages arrived", got.len());
            };
            let event = event.unwrap();
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = event {
                got.push(String::from_utf8_lossy(&p.payload).into_owned());
            }
        }
        got
    })
}

/// Hands `MESSAGES` publishes to a client at once and returns the write syscalls its thread
/// made until all were confirmed, after checking that they all arrived in order.
async fn publish_burst(protocol: Protocol, qos: u8) -> u64 {
    let broker = mosquitto(BROKER_CONFIG).await;
    let topic = "writes/out".to_string();
    let received = subscriber(&broker, &topic, MESSAGES).await;
    let config = config(&broker, "writes", protocol, qos, None, &topic);
    let topic2 = topic.clone();
    let writes = on_a_thread_of_its_own(move || async move {
        let connected = connect(config).await.expect("the client connects");
        let before = writes_of_this_thread();
        let confirmations: Vec<_> = (0..MESSAGES)
            .map(|i| {
                connected.client.publish(Publish {
                    target: 0,
                    address: topic2.clone(),
                    message: ExternalMessage::text(format!("m{i}")),
                })
            })
            .collect();
        for c in confirmations {
            tokio::time::timeout(Duration::from_secs(30), c)
                .await
                .expect("confirmed within 30 s")
                .expect("published");
        }
        let writes = writes_of_this_thread() - before;
        connected.client.close().await;
        writes
    })
    .join()
    .unwrap();
    let got = received.await.unwrap();
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("m{i}")).collect();
    assert_eq!(got, expected, "every message arrives once, in order");
    eprintln!("{protocol:?} QoS {qos}: {MESSAGES} publishes in {writes} writes");
    writes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_publishes_leaves_in_few_writes() {
    for protocol in [Protocol::Mqtt3, Protocol::Mqtt5] {
        for qos in [0, 1] {
            let writes = publish_burst(protocol, qos).await;
            // One write per publish without the patch (2,000 or more); with it, a few dozen
            // at QoS 0, and a few hundred at QoS 1, where each batch of the broker's
            // confirmations lets a few more publishes go.
            assert!(
                writes < MESSAGES as u64 / 2,
                "{protocol:?} QoS {qos}: {MESSAGES} publishes took {writes} write syscalls"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_of_a_burst_leave_in_few_writes() {
    for protocol in [Protocol::Mqtt3, Protocol::Mqtt5] {
        let broker = mosquitto(BROKER_CONFIG).await;
        let topic = "writes/in";
        let config = config(&broker, "writes-acks", protocol, 1, Some(topic), "unused");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let consumer = on_a_thread_of_its_own(move || async move {
            let mut connected = connect(config).await.expect("the client connects");
            ready_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            // Every delivery is taken and settled at once, as fast as they come.
            let before = writes_of_this_thread();
            let mut got = Vec::with_capacity(MESSAGES);
            while got.len() < MESSAGES {
                let d = tokio::time::timeout(Duration::from_secs(30), connected.deliveries.recv())
                    .await
                    .unwrap_or_else(|_| panic!("only {} of {MESSAGES} consumed", got.len()))
                    .expect("deliveries open");
                got.push(d.message.text.clone().unwrap_or_default());
                d.settler.settle(Settle::Accept);
            }
            // The last acknowledgements are written before the client closes.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let writes = writes_of_this_thread() - before;
            connected.client.close().await;
            (got, writes)
        });
        ready_rx.recv().unwrap();
        // The messages are all at the broker (and sent on to the consumer, whose runtime waits)
        // before the consumer takes any.
        let mut o = rumqttc::MqttOptions::new("writes-pub", "127.0.0.1", broker.port);
        o.set_inflight(1_000);
        let (publisher, mut events) = rumqttc::AsyncClient::new(o, MESSAGES);
        for i in 0..MESSAGES {
            publisher
                .publish(topic, rumqttc::QoS::AtLeastOnce, false, format!("m{i}"))
                .await
                .unwrap();
        }
        let mut acked = 0;
        while acked < MESSAGES {
            if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) =
                tokio::time::timeout(Duration::from_secs(30), events.poll())
                    .await
                    .expect("the publisher's messages are confirmed")
                    .unwrap()
            {
                acked += 1;
            }
        }
        go_tx.send(()).unwrap();
        let (got, writes) = consumer.join().unwrap();
        let expected: Vec<String> = (0..MESSAGES).map(|i| format!("m{i}")).collect();
        assert_eq!(got, expected, "every message is consumed once, in order");
        eprintln!("{protocol:?}: {MESSAGES} acknowledgements in {writes} writes");
        assert!(
            writes < MESSAGES as u64 / 2,
            "{protocol:?}: {MESSAGES} acknowledgements took {writes} write syscalls"
        );
    }
}
