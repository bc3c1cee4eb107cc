//! Integration tests of the AMQP 0.9.1 transport against the RabbitMQ on 127.0.0.1:5672
//! (guest/guest). A test that cannot reach the broker fails. Every test declares its own
//! uniquely named queues and exchanges with an independent lapin connection and deletes them.

use ferrule_protocol::ExternalMessage;
use ferrule_transport::{
    ClientConfig, ClientEvent, Connected, Delivery, ErrorKind, Protocol, Publish, Settle,
    SourceSpec, TargetSpec, connect,
};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::time::timeout;

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672";
const WAIT: Duration = Duration::from_secs(5);

fn unique(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("ferrule-test.{test}.{}-{nanos}", std::process::id())
}

/// An independent connection for setting up and checking the broker.
struct Admin {
    connection: Connection,
    channel: Channel,
    queues: Vec<String>,
    exchanges: Vec<String>,
}

impl Admin {
    async fn new() -> Admin {
        let connection = Connection::connect(
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            ConnectionProperties::default(),
        )
        .await
        .expect("the test broker on 127.0.0.1:5672 must be reachable");
        let channel = connection.create_channel().await.unwrap();
        Admin {
            connection,
            channel,
            queues: Vec::new(),
            exchanges: Vec::new(),
        }
    }

    /// Declares a queue; RabbitMQ removes it after two unused minutes should the test fail
    /// before its cleanup.
    async fn queue(&mut self, name: &str, mut arguments: FieldTable) {
        arguments.insert("x-expires".into(), AMQPValue::LongInt(120_000));
        self.channel
            .queue_declare(name.into(), QueueDeclareOptions::default(), arguments)
            .await
            .unwrap();
        self.queues.push(name.to_string());
    }

    async fn exchange(&mut self, name: &str) {
        self.channel
            .exchange_declare(
                name.into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    auto_delete: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        self.exchanges.push(name.to_string());
    }

    async fn bind(&self, queue: &str, exchange: &str, key: &str) {
        self.channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }

    async fn send(&self, queue: &str, body: &[u8], properties: BasicProperties) {
        self.channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .unwrap();
    }

    async fn message_count(&self, queue: &str) -> u32 {
        let channel = self.connection.create_channel().await.unwrap();
        let q = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = channel.close(200, "OK".into()).await;
        q.message_count()
    }

    /// Waits until `queue` holds `count` ready messages.
    async fn await_count(&self, queue: &str, count: u32) {
        let deadline = Instant::now() + WAIT;
        loop {
            let n = self.message_count(queue).await;
            if n == count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "queue {queue} holds {n} messages, expected {count}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn cleanup(self) {
        for q in &self.queues {
            let _ = self
                .channel
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        for e in &self.exchanges {
            let _ = self
                .channel
                .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
        let _ = self.connection.close(200, "OK".into()).await;
    }
}

fn config(id: &str, sources: Vec<SourceSpec>, targets: Vec<TargetSpec>) -> ClientConfig {
    ClientConfig {
        connection_id: id.to_string(),
        client_index: 0,
        protocol: Protocol::Amqp091,
        uri: BROKER.to_string(),
        validate_certificates: true,
        ca: None,
        client_cert: None,
        credentials: None,
        specific_config: Default::default(),
        sources,
        targets,
        connect_timeout: Duration::from_secs(10),
        max_in_flight: 100,
        dry_run: false,
    }
}

fn source(queue: &str, at_least_once: bool) -> SourceSpec {
    SourceSpec {
        index: 0,
        addresses: vec![queue.to_string()],
        qos: None,
        consumer_count: 1,
        at_least_once,
    }
}

fn target(address: &str) -> TargetSpec {
    TargetSpec {
        index: 0,
        address: address.to_string(),
        qos: None,
    }
}

async fn next_delivery(connected: &mut Connected) -> Delivery {
    timeout(WAIT, connected.deliveries.recv())
        .await
        .expect("no delivery in time")
        .expect("deliveries closed")
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

#[tokio::test]
async fn consume_maps_properties_headers_and_payload() {
    let mut admin = Admin::new().await;
    let queue = unique("consume");
    admin.queue(&queue, FieldTable::default()).await;
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_correlation_id("corr-1".into())
        .with_reply_to("replies".into())
        .with_message_id("msg-1".into())
        .with_user_id("guest".into())
        .with_app_id("app".into())
        .with_type("kind".into())
        .with_timestamp(1_700_000_000)
        .with_priority(3)
        .with_headers(table(&[
            ("custom", long("value")),
            ("number", AMQPValue::LongInt(42)),
            ("flag", AMQPValue::Boolean(true)),
            ("correlation-id", long("overridden by the property")),
        ]));
    admin.send(&queue, br#"{"a":1}"#, props).await;
    admin
        .send(
            &queue,
            &[0xff, 0x00],
            BasicProperties::default().with_content_type("application/octet-stream".into()),
        )
        .await;

    let mut c = connect(config(&queue, vec![source(&queue, false)], vec![]))
        .await
        .unwrap();
    let d = next_delivery(&mut c).await;
    assert_eq!((d.source, d.address.as_str()), (0, queue.as_str()));
    let h = &d.message.headers;
    let get = |k: &str| h.get_str(k).unwrap_or_else(|| panic!("no header {k}"));
    assert_eq!(get("content-type"), "application/json");
    assert_eq!(get("correlation-id"), "corr-1");
    assert_eq!(get("reply-to"), "replies");
    assert_eq!(get("message-id"), "msg-1");
    assert_eq!(get("user-id"), "guest");
    assert_eq!(get("app-id"), "app");
    assert_eq!(get("type"), "kind");
    assert_eq!(get("timestamp"), "1700000000");
    assert_eq!(get("priority"), "3");
    assert_eq!(get("custom"), "value");
    assert_eq!(get("number"), "42");
    assert_eq!(get("flag"), "true");
    assert_eq!(d.message.content_type.as_deref(), Some("application/json"));
    assert_eq!(d.message.text.as_deref(), Some(r#"{"a":1}"#));
    assert_eq!(d.message.bytes.as_deref(), Some(&br#"{"a":1}"#[..]));

    let d = next_delivery(&mut c).await;
    assert_eq!(d.message.text, None);
    assert_eq!(d.message.bytes.as_deref(), Some(&[0xff, 0x00][..]));
    // Not at least once: acknowledged on receipt, whatever the settler says.
    d.settler.settle(Settle::Redeliver);
    admin.await_count(&queue, 0).await;
    c.client.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(admin.message_count(&queue).await, 0);
    admin.cleanup().await;
}

#[tokio::test]
async fn at_least_once_settlement() {
    let mut admin = Admin::new().await;
    let queue = unique("settle");
    let dead = unique("settle-dead");
    admin.queue(&dead, FieldTable::default()).await;
    admin
        .queue(
            &queue,
            table(&[
                ("x-dead-letter-exchange", long("")),
                ("x-dead-letter-routing-key", long(&dead)),
            ]),
        )
        .await;
    let mut c = connect(config(&queue, vec![source(&queue, true)], vec![]))
        .await
        .unwrap();

    // Redeliver: the same message comes again, marked redelivered by the broker.
    admin.send(&queue, b"one", BasicProperties::default()).await;
    let d = next_delivery(&mut c).await;
    assert_eq!(d.message.text.as_deref(), Some("one"));
    d.settler.settle(Settle::Redeliver);
    let d = next_delivery(&mut c).await;
    assert_eq!(d.message.text.as_deref(), Some("one"));
    // Dropping the settler counts as Redeliver too.
    drop(d);
    let d = next_delivery(&mut c).await;
    assert_eq!(d.message.text.as_deref(), Some("one"));

    // Reject: not redelivered; dead-lettered.
    d.settler.settle(Settle::Reject);
    admin.await_count(&dead, 1).await;

    // Accept: gone.
    admin.send(&queue, b"two", BasicProperties::default()).await;
    let d = next_delivery(&mut c).await;
    assert_eq!(d.message.text.as_deref(), Some("two"));
    d.settler.settle(Settle::Accept);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(c.deliveries.try_recv().is_err());
    c.client.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(admin.message_count(&queue).await, 0);
    assert_eq!(admin.message_count(&dead).await, 1);
    admin.cleanup().await;
}

#[tokio::test]
async fn prefetch_bounds_unsettled_deliveries() {
    let mut admin = Admin::new().await;
    let queue = unique("prefetch");
    admin.queue(&queue, FieldTable::default()).await;
    for i in 0..20 {
        admin
            .send(
                &queue,
                format!("m{i}").as_bytes(),
                BasicProperties::default(),
            )
            .await;
    }
    admin.await_count(&queue, 20).await;
    let mut cfg = config(&queue, vec![source(&queue, true)], vec![]);
    cfg.max_in_flight = 5;
    let mut c = connect(cfg).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(next_delivery(&mut c).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        c.deliveries.try_recv().is_err(),
        "more than max_in_flight deliveries arrived unsettled"
    );
    for d in held.drain(..) {
        d.settler.settle(Settle::Accept);
    }
    for _ in 0..15 {
        next_delivery(&mut c).await.settler.settle(Settle::Accept);
    }
    admin.await_count(&queue, 0).await;
    c.client.close().await;
    admin.cleanup().await;
}

/// Consumes one message from `queue` with the admin connection.
async fn consume_one(admin: &Admin, queue: &str) -> lapin::message::Delivery {
    let channel = admin.connection.create_channel().await.unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let d = timeout(WAIT, consumer.next())
        .await
        .expect("no message in time")
        .unwrap()
        .unwrap();
    d.acker.ack(BasicAckOptions::default()).await.unwrap();
    d
}

#[tokio::test]
async fn publish_maps_properties_and_headers() {
    let mut admin = Admin::new().await;
    let queue = unique("publish");
    let exchange = unique("publish-x");
    admin.queue(&queue, FieldTable::default()).await;
    admin.exchange(&exchange).await;
    admin.bind(&queue, &exchange, "key").await;
    let address = format!("{exchange}/key");
    let c = connect(config(&queue, vec![], vec![target(&address)]))
        .await
        .unwrap();

    let mut message = ExternalMessage::text(r#"{"x":true}"#);
    let h = &mut message.headers;
    h.insert("content-type", "application/vnd.eclipse.ditto+json");
    h.insert("correlation-id", "c-7");
    h.insert("reply-to", "answers");
    h.insert("message-id", "m-7");
    h.insert("priority", "4");
    h.insert("custom-header", "custom value");
    h.insert("response-required", false);
    c.client
        .publish(Publish {
            target: 0,
            address: address.clone(),
            message,
        })
        .await
        .unwrap();
    let d = consume_one(&admin, &queue).await;
    assert_eq!(d.data, br#"{"x":true}"#);
    let p = &d.properties;
    let s = |v: &Option<ShortString>| v.as_ref().map(|v| v.as_str().to_string());
    assert_eq!(
        s(p.content_type()).as_deref(),
        Some("application/vnd.eclipse.ditto+json")
    );
    assert_eq!(s(p.correlation_id()).as_deref(), Some("c-7"));
    assert_eq!(s(p.reply_to()).as_deref(), Some("answers"));
    assert_eq!(s(p.message_id()).as_deref(), Some("m-7"));
    assert_eq!(*p.priority(), Some(4));
    let t = p.headers().as_ref().unwrap().inner();
    assert_eq!(t.get("custom-header"), Some(&long("custom value")));
    assert_eq!(t.get("response-required"), Some(&long("false")));
    assert!(!t.contains_key("correlation-id"));

    // Bytes win over text.
    let message = ExternalMessage {
        text: Some("text".into()),
        bytes: Some(vec![1, 2, 3]),
        ..Default::default()
    };
    c.client
        .publish(Publish {
            target: 0,
            address: format!("/{queue}"),
            message,
        })
        .await
        .unwrap();
    assert_eq!(consume_one(&admin, &queue).await.data, vec![1, 2, 3]);
    c.client.close().await;
    admin.cleanup().await;
}

#[tokio::test]
async fn publish_confirms_pipelined() {
    let mut admin = Admin::new().await;
    let queue = unique("confirms");
    admin.queue(&queue, FieldTable::default()).await;
    let c = connect(config(&queue, vec![], vec![])).await.unwrap();
    let address = format!("/{queue}");
    let publishes = (0..100).map(|i| {
        c.client.publish(Publish {
            target: 0,
            address: address.clone(),
            message: ExternalMessage::text(format!("m{i}")),
        })
    });
    let results = timeout(WAIT, futures_util::future::join_all(publishes))
        .await
        .expect("confirms did not arrive in time");
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(admin.message_count(&queue).await, 100);
    c.client.close().await;
    admin.cleanup().await;
}

#[tokio::test]
async fn publish_failures_are_rejected_and_the_client_recovers() {
    let mut admin = Admin::new().await;
    let queue = unique("rejects");
    let exchange = unique("rejects-x");
    admin.queue(&queue, FieldTable::default()).await;
    admin.exchange(&exchange).await;
    let c = connect(config(&queue, vec![], vec![])).await.unwrap();
    let publish = |address: String| {
        c.client.publish(Publish {
            target: 0,
            address,
            message: ExternalMessage::text("x"),
        })
    };
    // Unroutable (mandatory, as Ditto): returned → rejected.
    let e = publish(format!("{exchange}/nobody-bound"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Rejected, "{e:?}");
    // Missing exchange: the broker closes the channel.
    let e = publish(format!("{}/key", unique("missing-x")))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Rejected, "{e:?}");
    // Not exchange/routingKey.
    let e = publish("no-slash".into()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Misconfigured, "{e:?}");
    // The next publish gets a new channel.
    publish(format!("/{queue}")).await.unwrap();
    assert_eq!(admin.message_count(&queue).await, 1);
    c.client.close().await;
    admin.cleanup().await;
}

#[tokio::test]
async fn missing_queue_is_misconfigured() {
    let queue = unique("missing");
    let e = match connect(config(&queue, vec![source(&queue, true)], vec![])).await {
        Ok(_) => panic!("connected to a missing queue"),
        Err(e) => e,
    };
    assert_eq!(e.kind, ErrorKind::Misconfigured, "{e:?}");
    assert!(e.message.contains(&queue), "{}", e.message);
}

#[tokio::test]
async fn wrong_password_is_unauthorized() {
    let mut cfg = config("wrong-password", vec![], vec![]);
    cfg.uri = "amqp://guest:s3cr3t-wrong@127.0.0.1:5672".into();
    let e = match connect(cfg).await {
        Ok(_) => panic!("connected with a wrong password"),
        Err(e) => e,
    };
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e:?}");
    assert!(!e.message.contains("s3cr3t"), "{}", e.message);
    assert!(e.message.contains("127.0.0.1:5672"), "{}", e.message);
}

#[tokio::test]
async fn unknown_vhost_is_misconfigured() {
    let mut cfg = config("vhost", vec![], vec![]);
    cfg.uri = format!("{BROKER}/{}", unique("no-such-vhost"));
    let e = match connect(cfg).await {
        Ok(_) => panic!("connected to a missing vhost"),
        Err(e) => e,
    };
    assert_eq!(e.kind, ErrorKind::Misconfigured, "{e:?}");
}

#[tokio::test]
async fn unreachable_port_fails_quickly() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = config("unreachable", vec![], vec![]);
    cfg.uri = format!("amqp://guest:guest@127.0.0.1:{port}");
    let start = Instant::now();
    let e = match connect(cfg).await {
        Ok(_) => panic!("connected to a closed port"),
        Err(e) => e,
    };
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e:?}");
    assert!(
        e.message.contains(&format!("127.0.0.1:{port}")),
        "{}",
        e.message
    );
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn connect_timeout_is_timeout() {
    // A listener that accepts and never answers the AMQP handshake.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            sockets.push(s);
        }
    });
    let mut cfg = config("timeout", vec![], vec![]);
    cfg.uri = format!("amqp://guest:guest@127.0.0.1:{port}");
    cfg.connect_timeout = Duration::from_millis(500);
    let start = Instant::now();
    let e = match connect(cfg).await {
        Ok(_) => panic!("connected to a silent server"),
        Err(e) => e,
    };
    assert_eq!(e.kind, ErrorKind::Timeout, "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
    hold.abort();
}

#[tokio::test]
async fn dry_run_checks_queues_and_exchanges() {
    let mut admin = Admin::new().await;
    let queue = unique("dry");
    let exchange = unique("dry-x");
    admin.queue(&queue, FieldTable::default()).await;
    admin.exchange(&exchange).await;
    admin
        .send(&queue, b"stays", BasicProperties::default())
        .await;
    let targets = vec![
        target(&format!("{exchange}/key")),
        target("{{ thing:id }}/key"),
        target("/direct-to-queue"),
    ];
    let mut cfg = config(&queue, vec![source(&queue, true)], targets.clone());
    cfg.dry_run = true;
    let mut c = connect(cfg.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(c.deliveries.try_recv().is_err(), "a dry run consumed");
    c.client.close().await;
    assert_eq!(admin.message_count(&queue).await, 1);

    let mut missing_queue = cfg.clone();
    let q = unique("dry-missing");
    missing_queue.sources = vec![source(&q, true)];
    let e = connect(missing_queue).await.err().unwrap();
    assert_eq!(e.kind, ErrorKind::Misconfigured);
    assert!(e.message.contains(&q), "{}", e.message);

    let mut missing_exchange = cfg.clone();
    let x = unique("dry-missing-x");
    missing_exchange.targets = vec![target(&format!("{x}/key"))];
    let e = connect(missing_exchange).await.err().unwrap();
    assert_eq!(e.kind, ErrorKind::Misconfigured);
    assert!(e.message.contains(&x), "{}", e.message);

    let mut bad_address = cfg;
    bad_address.targets = vec![target("exchange-without-key")];
    let e = connect(bad_address).await.err().unwrap();
    assert_eq!(e.kind, ErrorKind::Misconfigured);
    admin.cleanup().await;
}

/// The pid (for `rabbitmqctl close_connection`) of the connection whose client properties mention `marker`.
async fn broker_connection_name(marker: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = tokio::process::Command::new("rabbitmqctl")
            .args(["list_connections", "-q", "pid", "client_properties"])
            .output()
            .await
            .expect("rabbitmqctl must be available");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if let Some(line) = stdout.lines().find(|l| l.contains(marker)) {
            return line.split('\t').next().unwrap().trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "connection {marker} not listed: {stdout}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn disconnected_event_when_the_broker_closes_the_connection() {
    let mut admin = Admin::new().await;
    let queue = unique("disconnect");
    admin.queue(&queue, FieldTable::default()).await;
    let mut c = connect(config(&queue, vec![source(&queue, true)], vec![]))
        .await
        .unwrap();
    let name = broker_connection_name(&format!("ferrule:{queue}:0")).await;
    let out = tokio::process::Command::new("rabbitmqctl")
        .args(["close_connection", &name, "closed by the test"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "rabbitmqctl close_connection {name:?}: {out:?}"
    );
    let event = timeout(Duration::from_secs(10), c.events.recv())
        .await
        .expect("no event in time")
        .unwrap();
    match event {
        ClientEvent::Disconnected(e) => assert_eq!(e.kind, ErrorKind::Closed, "{e:?}"),
        other => panic!("unexpected {other:?}"),
    }
    // Once, and no SourceFailed for the consumer that died with the connection.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(c.events.try_recv().is_err());
    let e = c
        .client
        .publish(Publish {
            target: 0,
            address: format!("/{queue}"),
            message: ExternalMessage::text("x"),
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Closed, "{e:?}");
    c.client.close().await;
    admin.cleanup().await;
}

#[tokio::test]
async fn source_failed_when_the_queue_is_deleted() {
    let mut admin = Admin::new().await;
    let queue = unique("deleted");
    let other = unique("deleted-other");
    admin.queue(&queue, FieldTable::default()).await;
    admin.queue(&other, FieldTable::default()).await;
    let mut sources = vec![source(&queue, true), source(&other, true)];
    sources[1].index = 1;
    sources[1].consumer_count = 2;
    let mut c = connect(config(&queue, sources, vec![])).await.unwrap();
    admin
        .channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let event = timeout(WAIT, c.events.recv()).await.unwrap().unwrap();
    match event {
        ClientEvent::SourceFailed {
            source, address, ..
        } => assert_eq!((source, address), (0, queue.clone())),
        other => panic!("unexpected {other:?}"),
    }
    // The other source runs on.
    admin
        .send(&other, b"still", BasicProperties::default())
        .await;
    let d = next_delivery(&mut c).await;
    assert_eq!((d.source, d.message.text.as_deref()), (1, Some("still")));
    d.settler.settle(Settle::Accept);
    c.client.close().await;
    admin.cleanup().await;
}
