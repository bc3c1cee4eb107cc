//! Order and no loss under load, for each transport, through the real binary and real brokers
//! (issue 17): a device publishes a burst as fast as it can, JavaScript mappers on both sides
//! (mapped on processors, in batches, so the cooperative budget of the tasks runs out many times
//! over), the twin applies each message, and a consumer checks that every event arrives once, in
//! the order the device sent it. Also: a backlog larger than every internal queue is published
//! whole, and two devices' equal correlation ids do not cross acknowledgements.

mod common;

use common::{Ferrule, Mosquitto, json, wait_for_live_status};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use reqwest::StatusCode;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc;

/// Messages per burst.
const BURST: u64 = 5_000;
/// How long a consumer waits for the next message before the test fails.
const QUIET: Duration = Duration::from_secs(30);

const SCRIPT: &str = r#"
function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    var d = JSON.parse(textPayload);
    return Ditto.buildDittoProtocolMsg("org.order", d.thing, "things", "twin", "commands",
        "modify", "/attributes/n", headers, d.n);
}
function mapFromDittoProtocolMsg(namespace, name, group, channel, criterion, action, path, dittoHeaders, value, status, extra) {
    return Ditto.buildExternalMsg({}, JSON.stringify({"path": path, "value": value}),
        null, "application/json");
}"#;

/// A connection of `kind` consuming `source` and publishing twin events to `target`, with the
/// JavaScript mapper on both.
fn scripted(kind: &str, uri: &str, source: &str, target: &str) -> Value {
    json!({
        "connectionType": kind, "connectionStatus": "open", "uri": uri,
        "mappingDefinitions": {"js": {"mappingEngine": "JavaScript",
            "options": {"incomingScript": SCRIPT, "outgoingScript": SCRIPT}}},
        "sources": [{"addresses": [source], "qos": 1,
                     "authorizationContext": ["ditto:inbound"], "payloadMapping": ["js"]}],
        "targets": [{"address": target, "topics": ["_/_/things/twin/events"], "qos": 1,
                     "authorizationContext": ["ditto:outbound"], "payloadMapping": ["js"]}]
    })
}

async fn open(f: &Ferrule, id: &str, connection: &Value) {
    let resp = f
        .put_json(&format!("/api/2/connections/{id}"), connection)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED, "{}", json(resp).await);
    wait_for_live_status(f, id, "open").await;
}

async fn create_thing(f: &Ferrule, id: &str) {
    let resp = f.put_json(&format!("/api/2/things/{id}"), &json!({})).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}

/// Reads `n` events of `/attributes/n` from `events` and checks they are 0..n in order; on a
/// gap, says what the connection's metrics show.
async fn expect_in_order(
    f: &Ferrule,
    id: &str,
    events: &mut mpsc::UnboundedReceiver<Value>,
    n: u64,
) {
    let mut seen = Vec::with_capacity(n as usize);
    while seen.len() < n as usize {
        let event = match tokio::time::timeout(QUIET, events.recv()).await {
            Ok(Some(e)) => e,
            _ => {
                let metrics = json(f.get(&format!("/api/2/connections/{id}/metrics")).await).await;
                panic!(
                    "{} of {n} events arrived; the last: {:?}; metrics: {metrics}",
                    seen.len(),
                    seen.last()
                );
            }
        };
        if event["path"] != "/attributes/n" {
            continue;
        }
        seen.push(event["value"].as_u64().unwrap());
    }
    let expected: Vec<u64> = (0..n).collect();
    if seen != expected {
        let first = seen.iter().zip(&expected).position(|(a, b)| a != b);
        let logs = json(f.get(&format!("/api/2/connections/{id}/logs")).await).await;
        let status = json(f.get(&format!("/api/2/connections/{id}/status")).await).await;
        panic!(
            "out of order from position {first:?}: {:?}\nstatus: {status}\nlogs: {logs}\noutput: {}",
            &seen[first.unwrap_or(0)..(first.unwrap_or(0) + 20).min(seen.len())],
            f.output()
        );
    }
}

/// An MQTT 3.1.1 client of the test on `port` whose incoming payloads (JSON) arrive in the
/// returned channel; subscribed to `topic` (QoS 1) when given.
async fn mqtt_client(
    id: &str,
    port: u16,
    topic: Option<&str>,
) -> (AsyncClient, mpsc::UnboundedReceiver<Value>) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_clean_session(true)
        .set_inflight(1000)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(o, 10_000);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    let subscribing = topic.is_some();
    if let Some(topic) = topic {
        client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    }
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) if !subscribing => {
                    ready_tx.take().map(|r| r.send(()));
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    ready_tx.take().map(|r| r.send(()));
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(serde_json::from_slice(&p.payload).unwrap_or(Value::Null));
                }
                Ok(_) => {}
                Err(e) => panic!("the test's MQTT client failed: {e}"),
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready)
        .await
        .expect("the test's Mosquitto answers")
        .unwrap();
    (client, rx)
}

/// 5,000 QoS 1 messages through a Mosquitto of the test's own (unlimited queues, so the broker
/// drops nothing), JavaScript on both sides: every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_burst_through_script_mappers_keeps_its_order() {
    let broker = Mosquitto::start().await;
    let (_d, f) = common::live_server();
    let u = common::unique("order-mqtt", '-');
    let (input, output) = (format!("{u}/in"), format!("{u}/out"));
    let uri = format!("tcp://127.0.0.1:{}", broker.port);
    open(&f, "order-mqtt", &scripted("mqtt", &uri, &input, &output)).await;
    create_thing(&f, &format!("org.order:{u}")).await;
    let (_consumer, mut events) = mqtt_client(&format!("{u}-c"), broker.port, Some(&output)).await;
    let (device, _) = mqtt_client(&format!("{u}-d"), broker.port, None).await;
    for n in 0..BURST {
        let body = json!({"thing": u, "n": n}).to_string();
        device
            .publish(&input, QoS::AtLeastOnce, false, body)
            .await
            .unwrap();
    }
    expect_in_order(&f, "order-mqtt", &mut events, BURST).await;
}

/// The test's AMQP 0.9.1 client on the shared RabbitMQ.
async fn rabbit() -> (Connection, Channel) {
    let connection = Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        ConnectionProperties::default(),
    )
    .await
    .expect("RabbitMQ on 127.0.0.1:5672 must be reachable");
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (connection, channel)
}

/// A queue that RabbitMQ removes two minutes after its last use.
async fn queue(channel: &Channel, name: &str) {
    let mut arguments = FieldTable::default();
    arguments.insert("x-expires".into(), AMQPValue::LongInt(120_000));
    channel
        .queue_declare(name.into(), QueueDeclareOptions::default(), arguments)
        .await
        .unwrap();
}

/// Every message of `queue` (JSON from its first `{`, as AMQP 1.0 bodies reach AMQP 0.9.1
/// consumers in their section encoding) in the returned channel.
async fn consume(channel: &Channel, queue: &str) -> mpsc::UnboundedReceiver<Value> {
    channel
        .basic_qos(1000, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let start = delivery.data.iter().position(|b| *b == b'{').unwrap_or(0);
            let end = delivery
                .data
                .iter()
                .rposition(|b| *b == b'}')
                .map_or(delivery.data.len(), |e| e + 1);
            let _ =
                tx.send(serde_json::from_slice(&delivery.data[start..end]).unwrap_or(Value::Null));
            delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
    });
    rx
}

/// Publishes the burst to `queue` as fast as RabbitMQ confirms (all confirms outstanding).
async fn send_burst(channel: &Channel, queue: &str, thing: &str) {
    let mut confirms = Vec::with_capacity(BURST as usize);
    for n in 0..BURST {
        let body = json!({"thing": thing, "n": n}).to_string();
        confirms.push(
            channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    BasicProperties::default().with_content_type("application/json".into()),
                )
                .await
                .unwrap(),
        );
    }
    for c in confirms {
        c.await.unwrap();
    }
}

/// 5,000 messages from a RabbitMQ queue to another through an AMQP 0.9.1 connection,
/// JavaScript on both sides: every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amqp_091_burst_through_script_mappers_keeps_its_order() {
    let (_d, f) = common::live_server();
    let (_rabbit, channel) = rabbit().await;
    let u = common::unique("ferrule-e2e.order091", '.');
    let (input, output) = (format!("{u}.in"), format!("{u}.out"));
    queue(&channel, &input).await;
    queue(&channel, &output).await;
    let connection = scripted(
        "amqp-091",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        &input,
        &format!("/{output}"),
    );
    open(&f, "order-091", &connection).await;
    let thing = u.replace('.', "-");
    create_thing(&f, &format!("org.order:{thing}")).await;
    let mut events = consume(&channel, &output).await;
    send_burst(&channel, &input, &thing).await;
    expect_in_order(&f, "order-091", &mut events, BURST).await;
}

/// 5,000 messages from a RabbitMQ queue to another through an AMQP 1.0 connection (RabbitMQ's
/// AMQP 1.0 plugin), JavaScript on both sides: every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amqp_10_burst_through_script_mappers_keeps_its_order() {
    let (_d, f) = common::live_server();
    let (_rabbit, channel) = rabbit().await;
    let u = common::unique("ferrule-e2e.order10", '.');
    let (input, output) = (format!("{u}.in"), format!("{u}.out"));
    queue(&channel, &input).await;
    queue(&channel, &output).await;
    let connection = scripted(
        "amqp-10",
        "amqp://guest:guest@127.0.0.1:5672",
        &format!("/amq/queue/{input}"),
        &format!("/amq/queue/{output}"),
    );
    open(&f, "order-10", &connection).await;
    let thing = u.replace('.', "-");
    create_thing(&f, &format!("org.order:{thing}")).await;
    let mut events = consume(&channel, &output).await;
    send_burst(&channel, &input, &thing).await;
    expect_in_order(&f, "order-10", &mut events, BURST).await;
}

/// The issue's case: one MQTT connection (QoS 1 source, the Ditto mapper, a twin modify, a
/// QoS 1 target) fed 30,000 messages as fast as one client publishes, through a Mosquitto with
/// unlimited queues. Every message is consumed, and every event is published, in order:
/// Ferrule consumes more slowly instead of dropping (before, 2,418–2,861 were dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_larger_than_every_queue_is_published_whole() {
    const N: u64 = 30_000;
    let broker = Mosquitto::start().await;
    let (_d, f) = common::live_server();
    let u = common::unique("backlog30k", '-');
    let (input, output) = (format!("{u}/in"), format!("{u}/out"));
    let connection = json!({
        "connectionType": "mqtt", "connectionStatus": "open",
        "uri": format!("tcp://127.0.0.1:{}", broker.port),
        "sources": [{"addresses": [input], "qos": 1, "authorizationContext": ["ditto:inbound"]}],
        "targets": [{"address": output, "topics": ["_/_/things/twin/events"], "qos": 1,
                     "authorizationContext": ["ditto:outbound"]}]
    });
    open(&f, "backlog30k", &connection).await;
    create_thing(&f, &format!("org.order:{u}")).await;
    let (_consumer, mut events) = mqtt_client(&format!("{u}-c"), broker.port, Some(&output)).await;
    let (device, _) = mqtt_client(&format!("{u}-d"), broker.port, None).await;
    for n in 0..N {
        let command = json!({"topic": format!("org.order/{u}/things/twin/commands/modify"),
            "path": "/attributes/n", "value": n});
        device
            .publish(&input, QoS::AtLeastOnce, false, command.to_string())
            .await
            .unwrap();
    }
    expect_in_order(&f, "backlog30k", &mut events, N).await;
    let metrics = json(f.get("/api/2/connections/backlog30k/metrics").await).await;
    let outbound = &metrics["connectionMetrics"]["outbound"];
    assert_eq!(outbound["dropped"]["failure"]["PT1H"], 0, "{metrics}");
    assert_eq!(
        metrics["connectionMetrics"]["inbound"]["consumed"]["success"]["PT1H"], N,
        "{metrics}"
    );
}

/// Two devices send 50 commands each with the same 50 correlation ids at the same time; the
/// source requests the twin's and its target's acknowledgements. Every message is settled as
/// a success and answered with the correlation id its device sent (before, the second waiter
/// of an id replaced the first, and the target's acknowledgements timed out: 424).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_correlation_ids_of_two_devices_do_not_cross_acknowledgements() {
    let broker = Mosquitto::start().await;
    let (_d, f) = common::live_server();
    let u = common::unique("corr", '-');
    let (input, output, replies) = (
        format!("{u}/in"),
        format!("{u}/out"),
        format!("{u}/replies"),
    );
    let connection = json!({
        "connectionType": "mqtt-5", "connectionStatus": "open",
        "uri": format!("tcp://127.0.0.1:{}", broker.port),
        "sources": [{"addresses": [format!("{input}/+")], "qos": 1,
                     "authorizationContext": ["ditto:inbound"],
                     "acknowledgementRequests": {"includes": ["twin-persisted", "{{connection:id}}:published"]},
                     "replyTarget": {"enabled": true, "address": replies,
                         "expectedResponseTypes": ["response", "error", "nack"]}}],
        "targets": [{"address": output, "topics": ["_/_/things/twin/events"], "qos": 1,
                     "authorizationContext": ["ditto:outbound"],
                     "issuedAcknowledgementLabel": "{{connection:id}}:published"}]
    });
    open(&f, "corr", &connection).await;
    for device in ["one", "two"] {
        create_thing(&f, &format!("org.order:{u}-{device}")).await;
    }
    let (_r, mut answers) = mqtt_client(&format!("{u}-r"), broker.port, Some(&replies)).await;
    let (_c, mut events) = mqtt_client(&format!("{u}-c"), broker.port, Some(&output)).await;
    let mut devices = Vec::new();
    for device in ["one", "two"] {
        devices.push((
            device,
            mqtt_client(&format!("{u}-{device}"), broker.port, None)
                .await
                .0,
        ));
    }
    for n in 0..50 {
        for (device, client) in &devices {
            let command = json!({"topic": format!("org.order/{u}-{device}/things/twin/commands/modify"),
                "headers": {"correlation-id": format!("corr-{n}"), "timeout": "10s"},
                "path": "/attributes/n", "value": n});
            client
                .publish(
                    format!("{input}/{device}"),
                    QoS::AtLeastOnce,
                    false,
                    command.to_string(),
                )
                .await
                .unwrap();
        }
    }
    let mut responses = 0;
    while responses < 100 {
        let answer = tokio::time::timeout(QUIET, answers.recv())
            .await
            .expect("every command is answered")
            .unwrap();
        let status = answer["status"].as_u64().unwrap();
        assert!(
            (200..300).contains(&status),
            "a success, not a 424: {answer}"
        );
        let correlation = answer["headers"]["correlation-id"].as_str().unwrap();
        assert!(correlation.starts_with("corr-"), "{answer}");
        assert!(
            answer["headers"].get("ditto-auth-context").is_none(),
            "{answer}"
        );
        responses += 1;
    }
    let mut published = 0;
    while published < 100 {
        tokio::time::timeout(QUIET, events.recv()).await.unwrap();
        published += 1;
    }
    let metrics = json(f.get("/api/2/connections/corr/metrics").await).await;
    let acknowledged = &metrics["connectionMetrics"]["inbound"]["acknowledged"];
    assert_eq!(acknowledged["success"]["PT1H"], 100, "{metrics}");
    assert_eq!(acknowledged["failure"]["PT1H"], 0, "{metrics}");
}
