//! One MQTT client that consumes and publishes at full speed, the way the host drives it: every
//! delivery is republished on the same client, at most 256 publishes wait for their broker
//! confirmation, and the next delivery is taken only when there is room for its publish. A
//! backlog of 100,000 QoS 1 messages in a Mosquitto of the test's own (unlimited queues) must
//! come out whole: the client must go on reading the confirmations of its publishes while
//! deliveries wait for the host.

mod common;

use common::mosquitto;
use ferrule_protocol::ExternalMessage;
use ferrule_transport::{ClientConfig, Protocol, Publish, Settle, SourceSpec, TargetSpec, connect};
use futures_util::StreamExt;
use std::time::{Duration, Instant};

async fn run(protocol: Protocol, qos: u8, broker_config: &str, n: usize) {
    let broker = mosquitto(broker_config).await;
    let uri = format!("tcp://127.0.0.1:{}", broker.port);
    // The backlog first: published and confirmed before the client connects.
    let mut o = rumqttc::MqttOptions::new("loop-feeder", "127.0.0.1", broker.port);
    o.set_inflight(1000);
    let (feeder, mut feeder_loop) = rumqttc::AsyncClient::new(o, 10_000);
    let fed = tokio::spawn(async move {
        let mut acked = 0;
        while acked < n {
            if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) =
                feeder_loop.poll().await.unwrap()
            {
                acked += 1;
            }
        }
    });
    // A subscriber of the output, counting.
    let mut o = rumqttc::MqttOptions::new("loop-counter", "127.0.0.1", broker.port);
    o.set_inflight(1000);
    let (counter, mut counter_loop) = rumqttc::AsyncClient::new(o, 100);
    counter
        .subscribe("out", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let (count_tx, mut counted) = tokio::sync::watch::channel(0usize);
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(_))) =
                counter_loop.poll().await
            {
                seen += 1;
                let _ = count_tx.send(seen);
            }
        }
    });
    // A persistent session for the client under test, subscribed before the backlog is sent.
    let config = ClientConfig {
        connection_id: format!("loop-{qos}"),
        client_index: 0,
        protocol,
        uri,
        validate_certificates: true,
        ca: None,
        client_cert: None,
        credentials: None,
        specific_config: [("cleanSession".to_string(), "false".to_string())]
            .into_iter()
            .collect(),
        sources: vec![SourceSpec {
            index: 0,
            addresses: vec!["in".into()],
            qos: Some(qos),
            consumer_count: 1,
            at_least_once: true,
        }],
        targets: vec![TargetSpec {
            index: 0,
            address: "out".into(),
            qos: Some(qos),
        }],
        connect_timeout: Duration::from_secs(5),
        max_in_flight: 100,
        dry_run: false,
    };
    let first = connect(config.clone()).await.unwrap();
    first.client.close().await;
    for i in 0..n {
        feeder
            .publish("in", rumqttc::QoS::AtLeastOnce, false, format!("m{i}"))
            .await
            .unwrap();
    }
    fed.await.unwrap();
    let mut connected = connect(config).await.unwrap();
    let mut confirming: futures_util::stream::FuturesUnordered<ferrule_transport::Confirmation> =
        futures_util::stream::FuturesUnordered::new();
    let started = Instant::now();
    let mut taken = 0;
    while taken < n {
        while confirming.len() >= 256 {
            tokio::time::timeout(Duration::from_secs(10), confirming.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("no publish confirmed for 10 s after {taken} of {n} deliveries")
                })
                .unwrap()
                .unwrap();
        }
        let next = tokio::select! {
            biased;
            Some(done) = confirming.next(), if !confirming.is_empty() => {
                done.unwrap();
                continue;
            }
            d = tokio::time::timeout(Duration::from_secs(10), connected.deliveries.recv()) => d,
        };
        let delivery = next
            .unwrap_or_else(|_| panic!("stalled after {taken} of {n} deliveries"))
            .expect("deliveries open");
        let text = delivery.message.text.clone().unwrap_or_default();
        delivery.settler.settle(Settle::Accept);
        confirming.push(connected.client.publish(Publish {
            target: 0,
            address: "out".into(),
            message: ExternalMessage::text(text),
        }));
        taken += 1;
    }
    while let Some(done) = confirming.next().await {
        done.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while *counted.borrow() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} arrived",
            *counted.borrow()
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), counted.changed()).await;
    }
    eprintln!(
        "{protocol:?} QoS {qos} ({broker_config:?}): {n} through in {:?}",
        started.elapsed()
    );
    connected.client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_100_000_qos_1_messages_goes_through_one_client() {
    run(Protocol::Mqtt3, 1, "", 100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_100_000_mqtt5_messages_goes_through_one_client() {
    run(Protocol::Mqtt5, 1, "", 100_000).await;
}
