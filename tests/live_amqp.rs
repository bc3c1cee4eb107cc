//! Live AMQP connections of the real binary against the real RabbitMQ (127.0.0.1:5672,
//! guest/guest): consuming with acknowledgements, publishing events, replies, dry-run errors and
//! recovery. An MQTT device's change reaches AMQP consumers (issue 4 point 9).

mod common;

use common::{Ferrule, Proxy, json, wait_for_live_status};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn unique(test: &str) -> String {
    common::unique(&format!("ferrule-e2e.{test}"), '.')
}

fn server() -> (tempfile::TempDir, Ferrule) {
    common::live_server()
}

/// An independent AMQP 0.9.1 client for setting up queues and checking what arrives.
struct Rabbit {
    _connection: Connection,
    channel: Channel,
}

impl Rabbit {
    async fn new() -> Rabbit {
        let connection = Connection::connect(
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            ConnectionProperties::default(),
        )
        .await
        .expect("RabbitMQ on 127.0.0.1:5672 must be reachable");
        let channel = connection.create_channel().await.unwrap();
        Rabbit {
            _connection: connection,
            channel,
        }
    }

    /// A queue that RabbitMQ removes two minutes after its last use.
    async fn queue(&self, name: &str, mut arguments: FieldTable) {
        arguments.insert("x-expires".into(), AMQPValue::LongInt(120_000));
        self.channel
            .queue_declare(name.into(), QueueDeclareOptions::default(), arguments)
            .await
            .unwrap();
    }

    async fn exchange_to_queue(&self, exchange: &str, queue: &str) {
        self.channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        self.channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }

    async fn send(&self, queue: &str, body: &Value, properties: BasicProperties) {
        self.channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body.to_string().as_bytes(),
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// The next message of a queue: (properties, JSON body).
    async fn next(&self, queue: &str) -> (BasicProperties, Value) {
        let mut consumer = self
            .channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let delivery = timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("nothing arrived on {queue}"))
            .unwrap()
            .unwrap();
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        // A message sent over AMQP 1.0 reaches AMQP 0.9.1 consumers with its AMQP 1.0 body
        // section encoding (an amqp-value string): the JSON starts at the first '{'.
        let start = delivery.data.iter().position(|b| *b == b'{').unwrap_or(0);
        let body = serde_json::from_slice(&delivery.data[start..]).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?}",
                String::from_utf8_lossy(&delivery.data)
            )
        });
        (delivery.properties, body)
    }

    async fn count(&self, queue: &str) -> u32 {
        self.channel
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
}

fn create(thing_ns: &str, name: &str, correlation: &str) -> Value {
    json!({"topic": format!("{thing_ns}/{name}/things/twin/commands/create"),
           "headers": {"correlation-id": correlation}, "path": "/", "value": {"attributes": {"a": 1}}})
}

#[tokio::test]
async fn consumed_commands_are_acknowledged_after_the_twin_change() {
    let (_d, f) = server();
    let rabbit = Rabbit::new().await;
    let u = unique("ack");
    let (commands, dead) = (format!("{u}.commands"), format!("{u}.dead"));
    rabbit.queue(&dead, FieldTable::default()).await;
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(dead.as_str().into()),
    );
    rabbit.queue(&commands, args).await;
    let connection = json!({
        "connectionType": "amqp-091", "connectionStatus": "open",
        "uri": "amqp://guest:guest@127.0.0.1:5672/%2f",
        "sources": [{"addresses": [commands.clone()], "authorizationContext": ["ditto:inbound"],
                     "acknowledgementRequests": {"includes": ["twin-persisted"]}}]
    });
    assert_eq!(
        f.put_json("/api/2/connections/ack-conn", &connection)
            .await
            .status(),
        StatusCode::CREATED
    );
    wait_for_live_status(&f, "ack-conn", "open").await;
    let name = u.replace('.', "-");
    rabbit
        .send(
            &commands,
            &create("org.e2e", &name, "c-1"),
            BasicProperties::default(),
        )
        .await;
    let deadline = std::time::Instant::now() + WAIT;
    while f
        .get(&format!("/api/2/things/org.e2e:{name}"))
        .await
        .status()
        != StatusCode::OK
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the twin was not created"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A command that fails (the thing exists already: 409) is rejected, not redelivered.
    rabbit
        .send(
            &commands,
            &create("org.e2e", &name, "c-2"),
            BasicProperties::default(),
        )
        .await;
    let (_, rejected) = rabbit.next(&dead).await;
    assert_eq!(rejected["headers"]["correlation-id"], "c-2");
    assert_eq!(
        rabbit.count(&commands).await,
        0,
        "the successful command was acknowledged"
    );
    let m = json(f.get("/api/2/connections/ack-conn/metrics").await).await;
    let acked = &m["sourceMetrics"]["addressMetrics"][&commands]["acknowledged"];
    assert_eq!(acked["success"]["PT1M"], 1, "{m}");
    assert_eq!(acked["failure"]["PT1M"], 1, "{m}");
}

#[tokio::test]
async fn an_mqtt_device_change_reaches_amqp_consumers_with_reply_and_headers() {
    let (_d, f) = server();
    let rabbit = Rabbit::new().await;
    let u = unique("fanout");
    let (exchange, events) = (format!("{u}.x"), format!("{u}.events"));
    rabbit.queue(&events, FieldTable::default()).await;
    rabbit.exchange_to_queue(&exchange, &events).await;
    let out = json!({
        "connectionType": "amqp-091", "connectionStatus": "open",
        "uri": "amqp://guest:guest@127.0.0.1:5672/%2f",
        "targets": [{"address": format!("{exchange}/events.{{{{ thing:name }}}}"),
                     "topics": ["_/_/things/twin/events?namespaces=org.e2e"],
                     "authorizationContext": ["ditto:outbound"],
                     "headerMapping": {"correlation-id": "{{ header:correlation-id }}", "thing": "{{ thing:id }}"}}]
    });
    assert_eq!(
        f.put_json("/api/2/connections/amqp-out", &out)
            .await
            .status(),
        StatusCode::CREATED
    );
    // The same events through AMQP 1.0, into a queue of RabbitMQ's AMQP 1.0 plugin.
    let events10 = format!("{u}.events10");
    rabbit.queue(&events10, FieldTable::default()).await;
    let out10 = json!({
        "connectionType": "amqp-10", "connectionStatus": "open",
        "uri": "amqp://guest:guest@127.0.0.1:5672",
        // `/amq/queue/NAME`: an existing queue (RabbitMQ 3.10 would declare `/queue/NAME`).
        "targets": [{"address": format!("/amq/queue/{events10}"),
                     "topics": ["_/_/things/twin/events"],
                     "authorizationContext": ["ditto:outbound"]}]
    });
    assert_eq!(
        f.put_json("/api/2/connections/amqp10-out", &out10)
            .await
            .status(),
        StatusCode::CREATED
    );
    wait_for_live_status(&f, "amqp10-out", "open").await;
    let topic = format!("ferrule-e2e/{u}/in");
    let device = json!({
        "connectionType": "mqtt", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "sources": [{"addresses": [topic.clone()], "qos": 1, "authorizationContext": ["ditto:inbound"]}]
    });
    assert_eq!(
        f.put_json("/api/2/connections/mqtt-in", &device)
            .await
            .status(),
        StatusCode::CREATED
    );
    wait_for_live_status(&f, "amqp-out", "open").await;
    wait_for_live_status(&f, "mqtt-in", "open").await;

    let mut o = rumqttc::MqttOptions::new(format!("{u}-dev"), "127.0.0.1", 1883);
    o.set_clean_session(true);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 10);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let name = u.replace('.', "-");
    client
        .publish(
            topic,
            rumqttc::QoS::AtLeastOnce,
            false,
            create("org.e2e", &name, "dev-1").to_string(),
        )
        .await
        .unwrap();
    let (properties, event) = rabbit.next(&events).await;
    assert_eq!(
        event["topic"],
        format!("org.e2e/{name}/things/twin/events/created")
    );
    assert_eq!(
        properties
            .correlation_id()
            .as_ref()
            .map(ShortString::as_str),
        Some("dev-1")
    );
    assert_eq!(
        properties.content_type().as_ref().map(ShortString::as_str),
        Some("application/vnd.eclipse.ditto+json")
    );
    let headers = properties.headers().as_ref().unwrap();
    assert_eq!(
        headers.inner().get("thing"),
        Some(&AMQPValue::LongString(
            format!("org.e2e:{name}").as_str().into()
        ))
    );
    let (_, event10) = rabbit.next(&events10).await;
    assert_eq!(
        event10["topic"],
        format!("org.e2e/{name}/things/twin/events/created")
    );
    assert_eq!(event10["headers"]["correlation-id"], "dev-1");
}

#[tokio::test]
async fn replies_go_to_the_reply_to_queue() {
    let (_d, f) = server();
    let rabbit = Rabbit::new().await;
    let u = unique("reply");
    let (commands, replies) = (format!("{u}.commands"), format!("{u}.replies"));
    rabbit.queue(&commands, FieldTable::default()).await;
    rabbit.queue(&replies, FieldTable::default()).await;
    let connection = json!({
        "connectionType": "amqp-091", "connectionStatus": "open",
        "uri": "amqp://guest:guest@127.0.0.1:5672/%2f",
        "sources": [{"addresses": [commands.clone()], "authorizationContext": ["ditto:inbound"]}]
    });
    assert_eq!(
        f.put_json("/api/2/connections/reply-conn", &connection)
            .await
            .status(),
        StatusCode::CREATED
    );
    wait_for_live_status(&f, "reply-conn", "open").await;
    let name = u.replace('.', "-");
    // The default reply target answers to `reply-to` (an `exchange/routingKey`, here the default
    // exchange) with the correlation id.
    let properties = BasicProperties::default()
        .with_reply_to(format!("/{replies}").as_str().into())
        .with_correlation_id("corr-9".into())
        .with_content_type("application/json".into());
    rabbit
        .send(&commands, &create("org.e2e", &name, "ignored"), properties)
        .await;
    let (props, response) = rabbit.next(&replies).await;
    assert_eq!(response["status"], 201);
    assert_eq!(
        props.correlation_id().as_ref().map(ShortString::as_str),
        Some("corr-9")
    );
}

#[tokio::test]
async fn dry_run_errors_say_what_is_wrong() {
    let (_d, f) = server();
    let u = unique("dry");
    let mut c = json!({
        "connectionType": "amqp-091", "connectionStatus": "open",
        "uri": "amqp://guest:wrong@127.0.0.1:5672/%2f",
        "sources": [{"addresses": [format!("{u}.missing")], "authorizationContext": ["a"]}]
    });
    let resp = f.post_json("/api/2/connections?dry-run=true", &c).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body = json(resp).await;
    assert_eq!(body["error"], "connectivity:connection.unauthorized");
    assert!(
        !body.to_string().contains("wrong"),
        "the password is not echoed: {body}"
    );
    c["uri"] = json!("amqp://guest:guest@127.0.0.1:5672/%2f");
    let resp = f.post_json("/api/2/connections?dry-run=true", &c).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = json(resp).await;
    assert_eq!(
        body["error"],
        "connectivity:connection.configuration.invalid"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{u}.missing")),
        "{body}"
    );
}

#[tokio::test]
async fn messages_sent_while_the_broker_is_away_are_consumed_after_recovery() {
    let (_d, f) = server();
    let rabbit = Rabbit::new().await;
    let u = unique("recover");
    let commands = format!("{u}.commands");
    rabbit.queue(&commands, FieldTable::default()).await;
    let proxy = Proxy::start(0, 5672).await;
    let connection = json!({
        "connectionType": "amqp-091", "connectionStatus": "open",
        "uri": format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port),
        "sources": [{"addresses": [commands.clone()], "authorizationContext": ["a"],
                     "acknowledgementRequests": {"includes": ["twin-persisted"]}}]
    });
    assert_eq!(
        f.put_json("/api/2/connections/rec-amqp", &connection)
            .await
            .status(),
        StatusCode::CREATED
    );
    wait_for_live_status(&f, "rec-amqp", "open").await;
    let port = proxy.cut();
    wait_for_live_status(&f, "rec-amqp", "failed").await;
    let name = u.replace('.', "-");
    for i in 0..20 {
        let cmd = json!({"topic": format!("org.e2e/{name}-{i}/things/twin/commands/create"), "path": "/", "value": {}});
        rabbit
            .send(&commands, &cmd, BasicProperties::default())
            .await;
    }
    let _proxy = Proxy::start(port, 5672).await;
    wait_for_live_status(&f, "rec-amqp", "open").await;
    let deadline = std::time::Instant::now() + WAIT;
    for i in 0..20 {
        while f
            .get(&format!("/api/2/things/org.e2e:{name}-{i}"))
            .await
            .status()
            != StatusCode::OK
        {
            assert!(
                std::time::Instant::now() < deadline,
                "thing {i} was not created"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(rabbit.count(&commands).await, 0);
}

#[tokio::test]
async fn an_outgoing_javascript_mapper_publishes_text_to_amqp() {
    let (_d, f) = server();
    let rabbit = Rabbit::new().await;
    let u = unique("jsout");
    let (exchange, queue) = (format!("{u}.x"), format!("{u}.texts"));
    rabbit.queue(&queue, FieldTable::default()).await;
    rabbit.exchange_to_queue(&exchange, &queue).await;
    // Example E4 of Ditto's JavaScript documentation, in spirit: a text per event.
    let script = r#"
function mapFromDittoProtocolMsg(namespace, name, group, channel, criterion, action, path, dittoHeaders, value, status, extra) {
    var text = "Thing " + namespace + ":" + name + " " + action + " at " + path + ": " + JSON.stringify(value);
    return Ditto.buildExternalMsg({"subject": action, "thing": namespace + ":" + name}, text, null, "text/plain");
}"#;
    let connection = json!({
        "connectionType": "amqp-091", "connectionStatus": "open",
        "uri": "amqp://guest:guest@127.0.0.1:5672/%2f",
        "mappingDefinitions": {"text": {"mappingEngine": "JavaScript",
            "options": {"incomingScript": "", "outgoingScript": script}}},
        "targets": [{"address": format!("{exchange}/texts"), "topics": ["_/_/things/twin/events"],
                     "authorizationContext": ["ditto:outbound"], "payloadMapping": ["text"]}]
    });
    let resp = f.put_json("/api/2/connections/js-out", &connection).await;
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
    wait_for_live_status(&f, "js-out", "open").await;
    let name = u.replace('.', "-");
    let resp = f
        .put_json(
            &format!("/api/2/things/org.e2e:{name}"),
            &json!({"attributes": {"on": true}}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);

    let mut consumer = rabbit
        .channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery = timeout(WAIT, consumer.next())
        .await
        .expect("a text arrives")
        .unwrap()
        .unwrap();
    delivery.ack(BasicAckOptions::default()).await.unwrap();
    let text = String::from_utf8(delivery.data.clone()).unwrap();
    assert!(
        text.starts_with(&format!("Thing org.e2e:{name} created at /: ")),
        "{text}"
    );
    assert_eq!(
        delivery
            .properties
            .content_type()
            .as_ref()
            .map(ShortString::as_str),
        Some("text/plain")
    );
    // The headers the script set are published, beside the target's header mapping.
    let headers = delivery.properties.headers().as_ref().unwrap();
    assert_eq!(
        headers.inner().get("subject"),
        Some(&AMQPValue::LongString("created".into()))
    );
}

/// A WebAssembly mapper's log lines reach the connection logs with their level and the
/// correlation id of the message it was mapping (issue 20: the SDK README documents them).
#[tokio::test]
async fn mapper_log_lines_carry_the_correlation_id_of_their_message() {
    use ferrule_test_guests as guests;
    let (_d, f) = server();
    let rabbit = Rabbit::new().await;
    let u = unique("maplog");
    let queue = format!("{u}.in");
    rabbit.queue(&queue, FieldTable::default()).await;
    let resp = f
        .req(reqwest::Method::PUT, "/api/2/mappers/maplog")
        .header("content-type", "application/wasm")
        .body(guests::bytes(guests::BEHAVE))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let connection = json!({
        "connectionType": "amqp-091", "connectionStatus": "open",
        "uri": "amqp://guest:guest@127.0.0.1:5672/%2f",
        "mappingDefinitions": {"w": {"mappingEngine": "WebAssembly", "options": {"module": "maplog"}}},
        "sources": [{"addresses": [queue.clone()], "authorizationContext": ["ditto:inbound"],
                     "payloadMapping": ["w"]}]
    });
    let id = format!("maplog-{}", u.replace('.', "-"));
    assert_eq!(
        f.put_json(&format!("/api/2/connections/{id}"), &connection)
            .await
            .status(),
        StatusCode::CREATED
    );
    wait_for_live_status(&f, &id, "open").await;
    // behave writes `line 0` and `line 1` at level warn for `log:2`.
    rabbit
        .channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"log:2",
            BasicProperties::default()
                .with_correlation_id("dev-7".into())
                .with_content_type("text/plain".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let logs = json(f.get(&format!("/api/2/connections/{id}/logs")).await).await;
        let lines: Vec<&Value> = logs["connectionLogs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["message"].as_str().unwrap().starts_with("Mapper: line"))
            .collect();
        if lines.len() == 2 {
            for line in &lines {
                assert_eq!(line["correlationId"], "dev-7", "{logs}");
                assert_eq!(line["type"], "mapped", "{logs}");
                // warn and error are failure entries, debug and info success entries.
                assert_eq!(line["level"], "failure", "{logs}");
            }
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
