//! Poison inputs (issue 16, "No input may crash or exhaust Ferrule"): what a device publishes, or
//! an operator sends over REST, that reaches a recursive parser or evaluator, nested far deeper
//! than any limit (tens of thousands of levels), against the real `ferrule` binary and the real
//! brokers (Mosquitto on 127.0.0.1:1883, RabbitMQ on 127.0.0.1:5672, guest/guest; a missing
//! broker fails the test). For every poison message: the process stays up (`/health` answers,
//! nothing overflowed its stack), the message is refused with Ditto's error and settled (a failure
//! in the connection's logs and metrics, dead-lettered or counted once, never redelivered), and
//! the next normal message on the same source changes the twin.

mod common;

use common::{Ferrule, json, wait_for_live_status};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

fn server() -> (tempfile::TempDir, Ferrule) {
    common::live_server()
}

/// `a(a(…a…))` nested `levels` deep: 3 characters a level.
fn nested_selector(levels: usize) -> String {
    format!("{}a{}", "a(".repeat(levels), ")".repeat(levels))
}

/// Ditto Protocol messages (raw JSON text: too deep for serde_json to build) aimed at the thing
/// `ns:name`, each with the Ditto error it must be refused with.
fn poison_messages(ns: &str, name: &str) -> Vec<(&'static str, String, &'static str)> {
    let topic = |action: &str| format!("{ns}/{name}/things/twin/commands/{action}");
    let envelope = |action: &str, correlation: &str, rest: String| {
        format!(
            r#"{{"topic":"{}","headers":{{"correlation-id":"{correlation}"}},{rest}}}"#,
            topic(action)
        )
    };
    vec![
        // Item 1 of the issue: a retrieve whose `fields` nest 20,000 levels (60 KB).
        (
            "deep fields",
            envelope(
                "retrieve",
                "p-fields",
                format!(r#""path":"/","fields":"{}""#, nested_selector(20_000)),
            ),
            "json.fieldselector.invalid",
        ),
        (
            "deep array value",
            envelope(
                "modify",
                "p-array",
                format!(
                    r#""path":"/attributes/x","value":{}1{}"#,
                    "[".repeat(100_000),
                    "]".repeat(100_000)
                ),
            ),
            "json.invalid",
        ),
        (
            "deep object value",
            envelope(
                "merge",
                "p-object",
                format!(
                    r#""path":"/attributes","value":{}1{}"#,
                    r#"{"a":"#.repeat(50_000),
                    "}".repeat(50_000)
                ),
            ),
            "json.invalid",
        ),
        (
            "deep path",
            envelope(
                "modify",
                "p-path",
                format!(r#""path":"/attributes{}","value":1"#, "/a".repeat(20_000)),
            ),
            "json.pointer.invalid",
        ),
        (
            "deep header value",
            format!(
                r#"{{"topic":"{}","headers":{{"correlation-id":"p-header","x":{}}},"path":"/","value":{{}}}}"#,
                topic("modify"),
                "[".repeat(50_000)
            ),
            "json.invalid",
        ),
        (
            "deep extra",
            envelope(
                "modify",
                "p-extra",
                format!(
                    r#""path":"/attributes/x","value":1,"extra":{}{}"#,
                    "[".repeat(50_000),
                    "]".repeat(50_000)
                ),
            ),
            "json.invalid",
        ),
    ]
}

/// A normal command after the poison: sets `attributes/after` to `n`.
fn normal_message(ns: &str, name: &str, n: u32) -> String {
    json!({
        "topic": format!("{ns}/{name}/things/twin/commands/modify"),
        "headers": {"correlation-id": format!("normal-{n}")},
        "path": "/attributes/after",
        "value": n
    })
    .to_string()
}

/// Header values a device sends that the source's header mapping resolves: a 54 KB string of
/// nested `{{ … }}` (never parsed as a template, only copied) and JSON nested 10,000 levels
/// (which `fn:format` reads as a value and cannot). Each fits an MQTT 5 user property.
fn poison_headers() -> Vec<(String, String)> {
    vec![
        (
            "x-template".into(),
            format!(
                "{}header:x{}",
                "{{ fn:default(".repeat(3_000),
                ") }}".repeat(3_000)
            ),
        ),
        (
            "x-json".into(),
            format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000)),
        ),
    ]
}

/// The source header mapping that resolves [`poison_headers`].
fn header_mapping() -> Value {
    json!({
        "copied": "{{ header:x-template | fn:substring-before('|') | fn:lower() }}",
        "formatted": "{{ header:x-json | fn:format('{a}') | fn:default('none') }}",
        "split": "{{ header:x-template | fn:split('(') | fn:join('-') }}"
    })
}

/// The server is up: its process has not aborted and `/health` answers.
async fn assert_alive(f: &Ferrule) {
    let health = reqwest::get(f.url("/health"))
        .await
        .expect("the server answers /health");
    assert_eq!(health.status(), StatusCode::OK);
    assert!(
        std::path::Path::new(&format!("/proc/{}", f.pid())).exists(),
        "the process is gone"
    );
    let output = f.output();
    assert!(
        !output.contains("overflowed its stack") && !output.contains("fatal runtime error"),
        "{output}"
    );
}

/// Creates the thing `ns:name` over REST (the poison is aimed at it).
async fn create_thing(f: &Ferrule, thing: &str) {
    let resp = f
        .put_json(
            &format!("/api/2/things/{thing}"),
            &json!({"attributes": {"before": 1}}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}

/// Waits until `attributes/after` of the thing is `n`: the normal message was applied.
async fn wait_for_after(f: &Ferrule, thing: &str, n: u32) {
    let deadline = Instant::now() + WAIT;
    loop {
        let resp = f
            .get(&format!("/api/2/things/{thing}/attributes/after"))
            .await;
        if resp.status() == StatusCode::OK && json(resp).await == json!(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the normal message {n} after the poison did not change the twin"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every error code in `codes` is in a failure entry of the connection's logs, and the source's
/// `mapped` failures count `poisons`.
async fn assert_failures_logged(f: &Ferrule, id: &str, codes: &[&str], poisons: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let logs = json(f.get(&format!("/api/2/connections/{id}/logs")).await).await;
        let failures: Vec<&Value> = logs["connectionLogs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["level"] == "failure" && e["category"] == "source")
            .collect();
        let missing: Vec<&&str> = codes
            .iter()
            .filter(|code| {
                !failures
                    .iter()
                    .any(|e| e["message"].as_str().unwrap_or("").contains(**code))
            })
            .collect();
        let metrics = json(f.get(&format!("/api/2/connections/{id}/metrics")).await).await;
        let mapped_failures = &metrics["connectionMetrics"]["inbound"]["mapped"]["failure"]["PT1M"];
        if missing.is_empty() && mapped_failures == poisons {
            for e in &failures {
                assert!(
                    e["message"].as_str().unwrap().len() < 200_000,
                    "a log entry quotes a whole poison input"
                );
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not logged: {missing:?}; mapped failures {mapped_failures}; logs: {}",
            failures
                .iter()
                .map(|e| e["message"]
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .take(300)
                    .collect())
                .collect::<Vec<String>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Consumed messages stay at `expected` for a second: nothing was redelivered.
async fn assert_consumed_once(f: &Ferrule, id: &str, expected: u64) {
    let consumed = || async {
        let m = json(f.get(&format!("/api/2/connections/{id}/metrics")).await).await;
        m["connectionMetrics"]["inbound"]["consumed"]["success"]["PT1M"].clone()
    };
    assert_eq!(consumed().await, expected);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(consumed().await, expected, "a message was redelivered");
    let status = json(f.get(&format!("/api/2/connections/{id}/status")).await).await;
    assert_eq!(status["liveStatus"], "open", "{status}");
}

// ---- MQTT ------------------------------------------------------------------------------------

/// An MQTT 5 device that publishes large messages with user properties.
async fn mqtt5_device(id: &str) -> rumqttc::v5::AsyncClient {
    let mut o = rumqttc::v5::MqttOptions::new(id, "127.0.0.1", 1883);
    o.set_clean_start(true);
    o.set_max_packet_size(Some(4 << 20));
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(o, 100);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready = Some(ready_tx);
    tokio::spawn(async move {
        use rumqttc::v5::{Event, mqttbytes::v5::Packet};
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    ready.take().map(|r| r.send(()));
                }
                Ok(_) => {}
                Err(e) => panic!("the test's MQTT client failed: {e}"),
            }
        }
    });
    timeout(WAIT, ready_rx)
        .await
        .expect("the test's MQTT client could not connect to 127.0.0.1:1883")
        .unwrap();
    client
}

async fn mqtt_publish(
    device: &rumqttc::v5::AsyncClient,
    topic: &str,
    payload: String,
    user_properties: Vec<(String, String)>,
) {
    let properties = rumqttc::v5::mqttbytes::v5::PublishProperties {
        user_properties,
        ..Default::default()
    };
    device
        .publish_with_properties(
            topic,
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            payload,
            properties,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn mqtt_poison_messages_are_refused_logged_and_settled() {
    let (_d, f) = server();
    let u = common::unique("poison", '-');
    let (ns, name) = ("org.poison", u.as_str());
    let thing = format!("{ns}:{name}");
    let address = format!("ferrule-e2e/{u}/in");
    let connection = json!({
        "connectionType": "mqtt-5", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "sources": [{"addresses": [address.clone()], "qos": 1,
                     "authorizationContext": ["ditto:inbound"],
                     "headerMapping": header_mapping()}]
    });
    let resp = f
        .put_json("/api/2/connections/poison-mqtt", &connection)
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
    wait_for_live_status(&f, "poison-mqtt", "open").await;
    create_thing(&f, &thing).await;
    let device = mqtt5_device(&format!("{u}-device")).await;

    let poisons = poison_messages(ns, name);
    for (_, payload, _) in &poisons {
        mqtt_publish(&device, &address, payload.clone(), Vec::new()).await;
    }
    // Poison headers with a normal command: resolved by the header mapping, then applied.
    mqtt_publish(
        &device,
        &address,
        normal_message(ns, name, 1),
        poison_headers(),
    )
    .await;
    wait_for_after(&f, &thing, 1).await;
    mqtt_publish(&device, &address, normal_message(ns, name, 2), Vec::new()).await;
    wait_for_after(&f, &thing, 2).await;

    let codes: Vec<&str> = poisons.iter().map(|(_, _, code)| *code).collect();
    assert_failures_logged(&f, "poison-mqtt", &codes, poisons.len() as u64).await;
    assert_consumed_once(&f, "poison-mqtt", poisons.len() as u64 + 2).await;
    assert_alive(&f).await;
}

/// A JavaScript mapper that parses the device's payload (`JSON.parse`) and returns what it
/// read: JSON nested 100,000 levels (QuickJS refuses to parse it) and 1,000 levels (QuickJS
/// parses it, the value is refused on its way back: more than 128 levels) each fail their message
/// only; the next message maps.
#[tokio::test]
async fn mqtt_javascript_mapper_fails_deep_json_payloads_one_by_one() {
    let (_d, f) = server();
    let u = common::unique("poison-js", '-');
    let thing = format!("org.poison:{u}");
    let address = format!("ferrule-e2e/{u}/in");
    let script = format!(
        "function mapToDittoProtocolMsg(headers, textPayload) {{ \
           var v = JSON.parse(textPayload); \
           return Ditto.buildDittoProtocolMsg('org.poison', '{u}', 'things', 'twin', 'commands', \
             'modify', '/attributes/after', headers, v); }}"
    );
    let connection = json!({
        "connectionType": "mqtt", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "mappingDefinitions": {"js": {"mappingEngine": "JavaScript",
                               "options": {"incomingScript": script, "outgoingScript": ""}}},
        "sources": [{"addresses": [address.clone()], "qos": 1,
                     "authorizationContext": ["ditto:inbound"], "payloadMapping": ["js"]}]
    });
    let resp = f
        .put_json("/api/2/connections/poison-js", &connection)
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
    wait_for_live_status(&f, "poison-js", "open").await;
    create_thing(&f, &thing).await;
    let device = mqtt5_device(&format!("{u}-device")).await;
    let poisons = [
        format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!("{}1{}", r#"{"n":"#.repeat(1_000), "}".repeat(1_000)),
    ];
    for payload in &poisons {
        mqtt_publish(&device, &address, payload.clone(), Vec::new()).await;
    }
    mqtt_publish(&device, &address, "7".to_string(), Vec::new()).await;
    wait_for_after(&f, &thing, 7).await;
    assert_failures_logged(&f, "poison-js", &[], poisons.len() as u64).await;
    assert_consumed_once(&f, "poison-js", poisons.len() as u64 + 1).await;
    assert_alive(&f).await;
}

// ---- AMQP 0.9.1 ------------------------------------------------------------------------------

async fn rabbit_channel() -> (Connection, Channel) {
    let connection = Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        ConnectionProperties::default(),
    )
    .await
    .expect("RabbitMQ on 127.0.0.1:5672 must be reachable");
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

/// A queue RabbitMQ removes two minutes after its last use; with `dead` its rejected messages
/// go there.
async fn declare_queue(channel: &Channel, name: &str, dead: Option<&str>) {
    let mut arguments = FieldTable::default();
    arguments.insert("x-expires".into(), AMQPValue::LongInt(120_000));
    if let Some(dead) = dead {
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(dead.into()),
        );
    }
    channel
        .queue_declare(name.into(), QueueDeclareOptions::default(), arguments)
        .await
        .unwrap();
}

async fn amqp_send(channel: &Channel, queue: &str, payload: &str, headers: &[(String, String)]) {
    let mut table = FieldTable::default();
    for (k, v) in headers {
        table.insert(
            ShortString::from(k.as_str()),
            AMQPValue::LongString(LongString::from(v.as_str())),
        );
    }
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            payload.as_bytes(),
            BasicProperties::default()
                .with_content_type("application/vnd.eclipse.ditto+json".into())
                .with_headers(table),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// The correlation ids of the next `n` messages of `queue` (acknowledged).
async fn take_correlations(channel: &Channel, queue: &str, n: usize) -> Vec<String> {
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let delivery = timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {out:?} arrived on {queue}"))
            .unwrap()
            .unwrap();
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        let text = String::from_utf8_lossy(&delivery.data);
        let marker = r#""correlation-id":""#;
        let id = text
            .find(marker)
            .map(|i| &text[i + marker.len()..])
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("?");
        out.push(id.to_string());
    }
    out
}

async fn message_count(channel: &Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count()
}

#[tokio::test]
async fn amqp_poison_messages_are_refused_logged_and_dead_lettered() {
    let (_d, f) = server();
    let (_connection, channel) = rabbit_channel().await;
    let u = common::unique("ferrule-e2e.poison", '.');
    let (ns, name) = ("org.poison", u.replace('.', "-"));
    let thing = format!("{ns}:{name}");
    let (commands, dead) = (format!("{u}.commands"), format!("{u}.dead"));
    declare_queue(&channel, &dead, None).await;
    declare_queue(&channel, &commands, Some(&dead)).await;
    let connection = json!({
        "connectionType": "amqp-091", "connectionStatus": "open",
        "uri": "amqp://guest:guest@127.0.0.1:5672/%2f",
        "sources": [{"addresses": [commands.clone()], "authorizationContext": ["ditto:inbound"],
                     "headerMapping": header_mapping()}]
    });
    let resp = f
        .put_json("/api/2/connections/poison-amqp", &connection)
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
    wait_for_live_status(&f, "poison-amqp", "open").await;
    create_thing(&f, &thing).await;

    let poisons = poison_messages(ns, &name);
    for (_, payload, _) in &poisons {
        amqp_send(&channel, &commands, payload, &[]).await;
    }
    amqp_send(
        &channel,
        &commands,
        &normal_message(ns, &name, 1),
        &poison_headers(),
    )
    .await;
    wait_for_after(&f, &thing, 1).await;
    amqp_send(&channel, &commands, &normal_message(ns, &name, 2), &[]).await;
    wait_for_after(&f, &thing, 2).await;

    // Each poison message was rejected without requeueing: it is in the dead-letter queue,
    // once, and the command queue is empty.
    let mut dead_lettered = take_correlations(&channel, &dead, poisons.len()).await;
    dead_lettered.sort();
    let mut expected: Vec<String> = poisons
        .iter()
        .map(|(label, payload, _)| {
            let marker = r#""correlation-id":""#;
            let rest = &payload
                [payload.find(marker).unwrap_or_else(|| panic!("{label}")) + marker.len()..];
            rest.split('"').next().unwrap().to_string()
        })
        .collect();
    expected.sort();
    assert_eq!(dead_lettered, expected);
    assert_eq!(message_count(&channel, &commands).await, 0);
    assert_eq!(message_count(&channel, &dead).await, 0);

    let codes: Vec<&str> = poisons.iter().map(|(_, _, code)| *code).collect();
    assert_failures_logged(&f, "poison-amqp", &codes, poisons.len() as u64).await;
    assert_consumed_once(&f, "poison-amqp", poisons.len() as u64 + 2).await;
    assert_alive(&f).await;
}

/// An AMQP 0.9.1 header whose value is a field table nested 10,000 levels deep (70 KB; a
/// content header may nest about 18,000 in RabbitMQ's default 128 KB frame). Published with a
/// hand-written client (lapin would write the table recursively in the test process).
///
/// lapin reads field tables with a recursive parser on its `lapin-io-loop` thread (2 MiB of
/// stack): this message aborted the process (from about 175 levels in the debug build and
/// 2,000 in the release build), and RabbitMQ redelivered it after the restart. The transport's
/// guard now takes such headers out before lapin reads them, and the message is refused
/// (dead-lettered) with a mapping failure in the logs; the next message is processed.
#[tokio::test]
async fn amqp_header_tables_nested_10_000_levels_leave_the_server_running() {
    let (_d, f) = server();
    let (_connection, channel) = rabbit_channel().await;
    let u = common::unique("ferrule-e2e.poison-table", '.');
    let (ns, name) = ("org.poison", u.replace('.', "-"));
    let thing = format!("{ns}:{name}");
    let (commands, dead) = (format!("{u}.commands"), format!("{u}.dead"));
    declare_queue(&channel, &dead, None).await;
    declare_queue(&channel, &commands, Some(&dead)).await;
    let connection = json!({
        "connectionType": "amqp-091", "connectionStatus": "open",
        "uri": "amqp://guest:guest@127.0.0.1:5672/%2f",
        "sources": [{"addresses": [commands.clone()], "authorizationContext": ["ditto:inbound"]}]
    });
    let resp = f
        .put_json("/api/2/connections/poison-table", &connection)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    wait_for_live_status(&f, "poison-table", "open").await;
    create_thing(&f, &thing).await;

    raw_amqp::publish_with_nested_header(&commands, &normal_message(ns, &name, 1), 10_000).await;
    amqp_send(&channel, &commands, &normal_message(ns, &name, 2), &[]).await;
    wait_for_after(&f, &thing, 2).await;
    assert_alive(&f).await;
    let status = json(f.get("/api/2/connections/poison-table/status").await).await;
    assert_eq!(status["liveStatus"], "open", "{status}");
    // The nested message was refused without redelivery: dead-lettered (counted, not read:
    // lapin in this test would overflow on it as Ferrule's did), and logged.
    let deadline = Instant::now() + WAIT;
    while message_count(&channel, &dead).await < 1 {
        assert!(Instant::now() < deadline, "nothing was dead-lettered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(message_count(&channel, &dead).await, 1);
    assert_eq!(message_count(&channel, &commands).await, 0);
    assert_failures_logged(
        &f,
        "poison-table",
        &["its AMQP headers nest deeper than 32 levels"],
        1,
    )
    .await;
    assert_consumed_once(&f, "poison-table", 2).await;
}

/// Just enough of AMQP 0.9.1 to publish one message whose `headers` hold a deeply nested table.
mod raw_amqp {
    use super::*;

    fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&channel.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out.push(0xCE);
        out
    }

    fn method(class: u16, id: u16, arguments: &[u8]) -> Vec<u8> {
        let mut out = class.to_be_bytes().to_vec();
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(arguments);
        out
    }

    fn short_string(s: &str) -> Vec<u8> {
        let mut out = vec![s.len() as u8];
        out.extend_from_slice(s.as_bytes());
        out
    }

    /// `{"x": {"k": {"k": … {}}}}`, `levels` tables deep, written without recursion.
    fn nested_table(levels: usize) -> Vec<u8> {
        // Each level: its length, then the entry `k` of type `F` (a table): 7 bytes.
        let mut out = Vec::with_capacity(levels * 7 + 8);
        out.extend_from_slice(&((levels * 7 + 7) as u32).to_be_bytes());
        out.extend_from_slice(&[1, b'x', b'F']);
        for level in 0..levels {
            out.extend_from_slice(&(((levels - level) * 7) as u32).to_be_bytes());
            out.extend_from_slice(&[1, b'k', b'F']);
        }
        out.extend_from_slice(&0u32.to_be_bytes());
        out
    }

    /// Reads one frame: (type, channel, payload).
    async fn read_frame(socket: &mut tokio::net::TcpStream) -> (u8, u16, Vec<u8>) {
        let mut head = [0u8; 7];
        socket.read_exact(&mut head).await.unwrap();
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
        let mut payload = vec![0u8; size + 1];
        socket.read_exact(&mut payload).await.unwrap();
        payload.pop();
        (head[0], u16::from_be_bytes([head[1], head[2]]), payload)
    }

    /// Reads frames until the method `class`.`id` arrives.
    async fn expect_method(socket: &mut tokio::net::TcpStream, class: u16, id: u16) -> Vec<u8> {
        loop {
            let (kind, _, payload) = timeout(WAIT, read_frame(socket))
                .await
                .expect("RabbitMQ answers");
            if kind == 1 && payload[..4] == method(class, id, &[])[..] {
                return payload[4..].to_vec();
            }
            assert!(
                !(kind == 1 && payload[..4] == method(10, 50, &[])[..]),
                "RabbitMQ closed the connection: {:?}",
                String::from_utf8_lossy(&payload)
            );
        }
    }

    pub async fn publish_with_nested_header(queue: &str, body: &str, levels: usize) {
        let mut s = tokio::net::TcpStream::connect("127.0.0.1:5672")
            .await
            .expect("RabbitMQ on 127.0.0.1:5672 must be reachable");
        s.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
        expect_method(&mut s, 10, 10).await; // connection.start
        let mut start_ok = 0u32.to_be_bytes().to_vec(); // client properties: {}
        start_ok.extend(short_string("PLAIN"));
        let response = b"\0guest\0guest";
        start_ok.extend_from_slice(&(response.len() as u32).to_be_bytes());
        start_ok.extend_from_slice(response);
        start_ok.extend(short_string("en_US"));
        s.write_all(&frame(1, 0, &method(10, 11, &start_ok)))
            .await
            .unwrap();
        let tune = expect_method(&mut s, 10, 30).await;
        let mut tune_ok = tune[..6].to_vec(); // channel-max, frame-max as offered
        tune_ok.extend_from_slice(&0u16.to_be_bytes()); // no heartbeats
        s.write_all(&frame(1, 0, &method(10, 31, &tune_ok)))
            .await
            .unwrap();
        let mut open = short_string("/");
        open.extend(short_string(""));
        open.push(0);
        s.write_all(&frame(1, 0, &method(10, 40, &open)))
            .await
            .unwrap();
        expect_method(&mut s, 10, 41).await;
        s.write_all(&frame(1, 1, &method(20, 10, &short_string(""))))
            .await
            .unwrap();
        expect_method(&mut s, 20, 11).await;

        let mut publish = 0u16.to_be_bytes().to_vec();
        publish.extend(short_string(""));
        publish.extend(short_string(queue));
        publish.push(0);
        s.write_all(&frame(1, 1, &method(60, 40, &publish)))
            .await
            .unwrap();
        let mut header = 60u16.to_be_bytes().to_vec();
        header.extend_from_slice(&0u16.to_be_bytes());
        header.extend_from_slice(&(body.len() as u64).to_be_bytes());
        header.extend_from_slice(&0x2000u16.to_be_bytes()); // only `headers`
        header.extend(nested_table(levels));
        s.write_all(&frame(2, 1, &header)).await.unwrap();
        s.write_all(&frame(3, 1, body.as_bytes())).await.unwrap();

        // channel.close, then connection.close: RabbitMQ has taken the message when it answers.
        let mut close = 200u16.to_be_bytes().to_vec();
        close.extend(short_string("bye"));
        close.extend_from_slice(&[0, 0, 0, 0]);
        s.write_all(&frame(1, 1, &method(20, 40, &close)))
            .await
            .unwrap();
        expect_method(&mut s, 20, 41).await;
        s.write_all(&frame(1, 0, &method(10, 50, &close)))
            .await
            .unwrap();
        expect_method(&mut s, 10, 51).await;
    }
}

// ---- REST ------------------------------------------------------------------------------------

/// Item 2: `?fields=` 5,000 levels deep (15,000 characters) and the 30,000-character
/// "quadratic" selector on both APIs: 400 `json.fieldselector.invalid` at once, the server goes
/// on; a wide selector of the same size is answered.
#[tokio::test]
async fn deep_and_quadratic_field_selectors_over_rest_are_400() {
    let (_d, f) = server();
    let thing = "org.poison:rest";
    create_thing(&f, thing).await;
    let resp = f
        .put_json("/api/2/connections/fields-conn", &common::mqtt_connection())
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let deep = nested_selector(5_000);
    assert_eq!(deep.len(), 15_001);
    let quadratic = format!("{}{}", "a(".repeat(10_000), ")".repeat(10_000));
    assert_eq!(quadratic.len(), 30_000);
    let open_only = "(".repeat(30_000);
    for path in [
        format!("/api/2/things/{thing}"),
        "/api/2/connections/fields-conn".to_string(),
        "/api/2/connections".to_string(),
    ] {
        for selector in [&deep, &quadratic, &open_only] {
            let started = Instant::now();
            // `(` and `)` may stand in a query unencoded, as an attacker sends them (encoded,
            // 30,000 of them would exceed the longest URI hyper takes).
            let resp = f.get(&format!("{path}?fields={selector}")).await;
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path}");
            let body = json(resp).await;
            assert_eq!(
                body["error"], "json.fieldselector.invalid",
                "{path}: {body}"
            );
            assert!(body["message"].as_str().unwrap().len() < 1_000);
            assert!(started.elapsed() < Duration::from_secs(5));
        }
        let wide = "x,".repeat(15_000) + "thingId,id";
        let resp = f.get(&format!("{path}?fields={wide}")).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    assert_alive(&f).await;
}

/// Item 3: a target whose `extraFields` nest 20,000 levels is refused at create (Ditto checks
/// target topics when a connection is created): 400 `json.fieldselector.invalid`; names that
/// are no thing fields are Ditto's `things:field.selection.invalid`. A target with valid extra
/// fields gets them with its events, and a deep RQL filter or placeholder is refused too.
#[tokio::test]
async fn deep_extra_fields_filters_and_placeholders_are_refused_at_create() {
    let (_d, f) = server();
    let target = |topic: String| {
        json!({
            "connectionType": "mqtt", "connectionStatus": "closed", "uri": "tcp://127.0.0.1:1883",
            "targets": [{"address": "out", "topics": [topic], "qos": 0,
                         "authorizationContext": ["ditto:outbound"]}]
        })
    };
    let deep_extra = format!(
        "_/_/things/twin/events?extraFields={}",
        nested_selector(20_000)
    );
    let deep_filter = format!(
        "_/_/things/twin/events?filter={}exists(attributes/a){}",
        "not(".repeat(20_000),
        ")".repeat(20_000)
    );
    for (topic, error) in [
        (deep_extra, "json.fieldselector.invalid"),
        (
            "_/_/things/twin/events?extraFields=sources".to_string(),
            "things:field.selection.invalid",
        ),
        (deep_filter, "rql.expression.invalid"),
    ] {
        let create = f
            .put_json("/api/2/connections/extra", &target(topic.clone()))
            .await;
        let dry_run = f
            .post_json("/api/2/connections?dry-run=true", &target(topic.clone()))
            .await;
        for resp in [create, dry_run] {
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
            let body = json(resp).await;
            assert_eq!(body["error"], error, "{body}");
            assert!(body["message"].as_str().unwrap().len() < 1_000);
        }
    }
    let mut deep_header = target("_/_/things/twin/events".into());
    deep_header["targets"][0]["headerMapping"] = json!({
        "mqtt.topic": format!("{{{{ {}thing:id{} }}}}", "fn:default(".repeat(20_000), ")".repeat(20_000))
    });
    let resp = f.put_json("/api/2/connections/extra", &deep_header).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = json(resp).await;
    // The validator answers the placeholder error or wraps it in the configuration error.
    assert!(
        body["error"] == "placeholder:function.too.complex"
            || body["error"] == "connectivity:connection.configuration.invalid",
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("too complex"),
        "{body}"
    );
    assert_eq!(
        f.get("/api/2/connections/extra").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_alive(&f).await;

    // Valid extra fields reach the events of an open target.
    let u = common::unique("poison-extra", '-');
    let connection = json!({
        "connectionType": "mqtt", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "targets": [{"address": format!("ferrule-e2e/{u}/events"),
                     "topics": ["_/_/things/twin/events?extraFields=attributes/place,thingId"],
                     "qos": 1, "authorizationContext": ["ditto:outbound"]}]
    });
    let resp = f.put_json("/api/2/connections/extra-ok", &connection).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    wait_for_live_status(&f, "extra-ok", "open").await;
    let mut o = rumqttc::MqttOptions::new(format!("{u}-sub"), "127.0.0.1", 1883);
    o.set_clean_session(true);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 10);
    client
        .subscribe(format!("ferrule-e2e/{u}/events"), rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    let _ = tx.send(None);
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let _ = tx.send(Some(p.payload));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    timeout(WAIT, rx.recv()).await.expect("subscribed").unwrap();
    let thing = format!("org.poison:{u}");
    let resp = f
        .put_json(
            &format!("/api/2/things/{thing}"),
            &json!({"attributes": {"place": "hall", "other": 1}}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let payload = timeout(WAIT, rx.recv())
        .await
        .expect("the event arrived")
        .unwrap()
        .unwrap();
    let event: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        event["extra"],
        json!({"thingId": thing, "attributes": {"place": "hall"}}),
        "{event}"
    );
    assert_alive(&f).await;
}

/// A REST path of 20,000 segments builds no value that deep: 400 `json.invalid`.
#[tokio::test]
async fn a_thing_path_20_000_segments_deep_is_400() {
    let (_d, f) = server();
    let thing = "org.poison:path";
    create_thing(&f, thing).await;
    let deep = format!("/api/2/things/{thing}/attributes{}", "/a".repeat(20_000));
    let resp = f
        .req(reqwest::Method::PUT, &deep)
        .json(&json!(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = json(resp).await;
    assert_eq!(body["error"], "json.invalid");
    assert_eq!(
        body["message"],
        "The Thing would nest 20001 levels deep; at most 100 are stored."
    );
    let resp = f
        .req(reqwest::Method::PATCH, &deep)
        .header("content-type", "application/merge-patch+json")
        .body("{\"b\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(f.get(&deep).await.status(), StatusCode::NOT_FOUND);
    assert_alive(&f).await;
}

/// Item 9: a client-supplied `_revision` (and `_created`, `_modified`) in a thing body. Ditto
/// reads them with the thing, type-checked (`json.invalid` otherwise), and keeps its own
/// revision and timestamps; so does Ferrule, for PUT and PATCH.
#[tokio::test]
async fn special_fields_in_a_thing_body_are_checked_and_ignored() {
    let (_d, f) = server();
    let path = "/api/2/things/org.poison:special";
    let resp = f
        .put_json(
            path,
            &json!({"_revision": 999, "_created": "2000-01-01T00:00:00Z",
                    "_modified": "2000-01-01T00:00:00Z", "attributes": {"a": 1}}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["etag"], "\"rev:1\"");
    let resp = f
        .put_json(path, &json!({"_revision": 5000, "attributes": {"a": 2}}))
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(resp.headers()["etag"], "\"rev:2\"");
    let resp = f
        .req(reqwest::Method::PATCH, path)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"_revision": 7, "_modified": null, "attributes": {"b": 3}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let whole = json(f.get(path).await).await;
    assert_eq!(
        whole,
        json!({"thingId": "org.poison:special", "policyId": "org.poison:special",
               "attributes": {"a": 2, "b": 3}})
    );
    let special = json(f.get(&format!("{path}?fields=_revision,_created")).await).await;
    assert_eq!(special["_revision"], 3);
    assert_ne!(special["_created"], "2000-01-01T00:00:00Z");

    for (body, message) in [
        (
            json!({"_revision": "abc"}),
            r#"Value <"abc"> for </_revision> is not of type <Long>!"#,
        ),
        (
            json!({"_created": "yesterday"}),
            "The JSON object's field </_created> is not in ISO-8601 format as expected!",
        ),
        (
            json!({"_modified": 1}),
            "Value <1> for </_modified> is not of type <String>!",
        ),
    ] {
        let put = f.put_json(path, &body).await;
        let patch = f
            .req(reqwest::Method::PATCH, path)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        for resp in [put, patch] {
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
            let error = json(resp).await;
            assert_eq!(error["error"], "json.invalid");
            assert_eq!(error["message"], message);
            assert_eq!(error["status"], 400);
        }
    }
    let special = json(f.get(&format!("{path}?fields=_revision")).await).await;
    assert_eq!(special["_revision"], 3, "nothing changed");
    assert_alive(&f).await;
}
