//! AMQP 1.0 transport against a real RabbitMQ 3.x with the `rabbitmq_amqp1_0` plugin on
//! 127.0.0.1:5672 (guest/guest), and against `amqp10_peer.py`, a minimal broker on Apache Qpid
//! Proton (pip package `python-qpid-proton`, which `scripts/test` installs) for what RabbitMQ 3.x
//! cannot show: the `modified` outcome and a link detached by the peer. A test that cannot reach
//! the broker, or start the peer, fails.
//!
//! Every RabbitMQ test uses queues of its own (`ferrule-test.<test>.<pid>-<nanos>`), created by an
//! independent fe2o3-amqp client (RabbitMQ creates `/queue/NAME` on attach) and deleted with
//! lapin at the end. Every Proton test starts a peer of its own, on a port of the system's
//! choosing.

use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{
    AmqpValue, ApplicationProperties, Body, Data, Message, MessageAnnotations, MessageId,
    Properties,
};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Symbol, Timestamp, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use ferrule_protocol::ExternalMessage;
use ferrule_transport::{
    ClientConfig, ClientEvent, Connected, Delivery, ErrorKind, Protocol, Publish, Settle,
    SourceSpec, TargetSpec, connect,
};
use serde_json::{Value as Json, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

const URI: &str = "amqp://guest:guest@127.0.0.1:5672";

fn queue_name(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("ferrule-test.{test}.{}-{nanos}", std::process::id())
}

fn config(sources: Vec<SourceSpec>, targets: Vec<TargetSpec>) -> ClientConfig {
    ClientConfig {
        connection_id: format!("amqp10-test-{}", std::process::id()),
        client_index: 0,
        protocol: Protocol::Amqp10,
        uri: URI.to_string(),
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

fn source(index: usize, addresses: &[&str], at_least_once: bool) -> SourceSpec {
    SourceSpec {
        index,
        addresses: addresses.iter().map(|a| a.to_string()).collect(),
        qos: None,
        consumer_count: 1,
        at_least_once,
    }
}

fn target(index: usize, address: &str) -> TargetSpec {
    TargetSpec {
        index,
        address: address.to_string(),
        qos: None,
    }
}

/// An independent AMQP 1.0 client plus an AMQP 0.9.1 channel for queue management.
/// How long the test helper waits for the broker's answer to one step at most.
const HELPER_WAIT: Duration = Duration::from_secs(30);

struct Broker {
    connection: fe2o3_amqp::connection::ConnectionHandle<()>,
    session: fe2o3_amqp::session::SessionHandle<()>,
    channel: lapin::Channel,
    _amqp091: lapin::Connection,
    queues: Vec<String>,
}

impl Broker {
    async fn new() -> Broker {
        let (connection, session) = Self::open().await;
        let amqp091 = lapin::Connection::connect(
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            lapin::ConnectionProperties::default(),
        )
        .await
        .expect("RabbitMQ must be reachable over AMQP 0.9.1");
        let channel = amqp091.create_channel().await.unwrap();
        Broker {
            connection,
            session,
            channel,
            _amqp091: amqp091,
            queues: Vec::new(),
        }
    }

    async fn open() -> (
        fe2o3_amqp::connection::ConnectionHandle<()>,
        fe2o3_amqp::session::SessionHandle<()>,
    ) {
        let mut connection = Connection::open("ferrule-test-helper", URI)
            .await
            .expect("the RabbitMQ AMQP 1.0 listener on 127.0.0.1:5672 must be reachable");
        let session = Session::begin(&mut connection).await.unwrap();
        (connection, session)
    }

    async fn reconnect(&mut self) {
        let (connection, session) = Self::open().await;
        let _ = self.connection.close().await;
        self.connection = connection;
        self.session = session;
    }

    /// A fresh queue, created by attaching a sender to `/queue/NAME`.
    async fn queue(&mut self, test: &str) -> String {
        let name = queue_name(test);
        // Bounded, as every wait of this helper: a broker that never answers fails the test
        // naming the step instead of holding the whole test command (one test once waited here
        // or in `receive` for over 10 minutes, 2026-12-08).
        let sender = tokio::time::timeout(
            HELPER_WAIT,
            Sender::attach(
                &mut self.session,
                format!("create-{name}"),
                format!("/queue/{name}"),
            ),
        )
        .await
        .expect("the helper's attach to create a queue was not answered")
        .unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), sender.close()).await;
        self.queues.push(name.clone());
        name
    }

    async fn send(&mut self, address: &str, messages: Vec<Message<Body<Value>>>) {
        let name = format!("helper-sender-{}", queue_name("s"));
        let mut sender = match Sender::attach(&mut self.session, name.clone(), address).await {
            Ok(sender) => sender,
            // RabbitMQ 3.10's AMQP 1.0 plugin once ended the helper's whole connection with
            // `internal_error` (`<pid>:noproc`) at this attach, with the other tests of this
            // file running beside it (CI, 2026-12-03; not reproduced since). The helper is not
            // what is tested: it attaches once more on a new connection.
            Err(e) => {
                eprintln!("the helper's attach failed ({e:?}); once more on a new connection");
                self.reconnect().await;
                Sender::attach(&mut self.session, name, address)
                    .await
                    .unwrap()
            }
        };
        for message in messages {
            let outcome = sender.send(message).await.unwrap();
            outcome.accepted_or("not accepted").unwrap();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), sender.close()).await;
    }

    /// Receives up to `n` messages (accepting them), waiting at most `wait` for each.
    async fn receive(
        &mut self,
        address: &str,
        n: usize,
        wait: Duration,
    ) -> Vec<Message<Body<Value>>> {
        let mut receiver = tokio::time::timeout(
            HELPER_WAIT,
            Receiver::attach(
                &mut self.session,
                format!("helper-receiver-{}", queue_name("r")),
                address,
            ),
        )
        .await
        .expect("the helper's receiver attach was not answered")
        .unwrap();
        let mut out = Vec::new();
        while out.len() < n {
            match tokio::time::timeout(wait, receiver.recv::<Body<Value>>()).await {
                Ok(Ok(delivery)) => {
                    tokio::time::timeout(HELPER_WAIT, receiver.accept(&delivery))
                        .await
                        .expect("the helper's accept was not answered")
                        .unwrap();
                    out.push(delivery.into_message());
                }
                _ => break,
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), receiver.close()).await;
        out
    }

    async fn message_count(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .unwrap()
            .message_count()
    }

    async fn cleanup(mut self) {
        for q in std::mem::take(&mut self.queues) {
            let _ = self
                .channel
                .queue_delete(q.as_str().into(), Default::default())
                .await;
        }
        let _ = self.session.end().await;
        let _ = self.connection.close().await;
    }
}

fn text_message(text: &str) -> Message<Body<Value>> {
    Message::builder()
        .body(Body::Value(AmqpValue(Value::String(text.to_string()))))
        .build()
}

async fn next(connected: &mut Connected, wait: Duration) -> Option<Delivery> {
    tokio::time::timeout(wait, connected.deliveries.recv())
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_maps_properties_application_properties_and_bodies() {
    let mut broker = Broker::new().await;
    let q = broker.queue("consume").await;
    let address = format!("/queue/{q}");
    let mut annotations = MessageAnnotations::default();
    annotations.0.insert(
        OwnedKey::Symbol(Symbol::from("x-opt-origin")),
        Value::String("sensor".into()),
    );
    let mut app = ApplicationProperties::default();
    app.0
        .insert("custom".into(), SimpleValue::String("value".into()));
    app.0.insert("count".into(), SimpleValue::Int(42));
    app.0
        .insert("subject".into(), SimpleValue::String("colliding".into()));
    let properties = Properties {
        message_id: Some(MessageId::String("m-1".into())),
        user_id: Some(Binary::from(b"guest".to_vec())),
        to: Some("somewhere".into()),
        subject: Some("the-subject".into()),
        reply_to: Some("/queue/replies".into()),
        correlation_id: Some(MessageId::String("c-1".into())),
        content_type: Some(Symbol::from("application/json")),
        content_encoding: None,
        absolute_expiry_time: Some(Timestamp::from_milliseconds(4_102_444_800_000)),
        creation_time: Some(Timestamp::from_milliseconds(1_700_000_000_000)),
        group_id: Some("g".into()),
        group_sequence: Some(3),
        reply_to_group_id: Some("rg".into()),
    };
    let first = Message {
        header: None,
        delivery_annotations: None,
        message_annotations: Some(annotations),
        properties: Some(properties),
        application_properties: Some(app),
        body: Body::Value(AmqpValue(Value::String("{\"hello\":1}".into()))),
        footer: None,
    };
    let second = Message::builder()
        .properties(Properties {
            content_type: Some(Symbol::from("application/octet-stream")),
            ..Default::default()
        })
        .body(Body::from(Data(Binary::from(vec![0xde, 0xad, 0xbe, 0xef]))))
        .build();
    let third = Message::builder()
        .properties(Properties {
            content_type: Some(Symbol::from("text/plain; charset=utf-8")),
            ..Default::default()
        })
        .body(Body::from(Data(Binary::from(b"plain text".to_vec()))))
        .build();
    broker.send(&address, vec![first, second, third]).await;

    let mut connected = connect(config(vec![source(3, &[&address], false)], vec![]))
        .await
        .unwrap();
    let d = next(&mut connected, Duration::from_secs(5))
        .await
        .expect("first message");
    assert_eq!(d.source, 3);
    assert_eq!(d.address, address);
    let h = &d.message.headers;
    let get = |k: &str| h.get_str(k).unwrap_or_else(|| panic!("header {k} missing"));
    assert_eq!(get("message-id"), "m-1");
    assert_eq!(get("user-id"), "guest");
    assert_eq!(get("to"), "somewhere");
    assert_eq!(get("subject"), "the-subject");
    assert_eq!(get("reply-to"), "/queue/replies");
    assert_eq!(get("correlation-id"), "c-1");
    assert_eq!(get("content-type"), "application/json");
    assert_eq!(get("absolute-expiry-time"), "4102444800000");
    assert_eq!(get("creation-time"), "1700000000000");
    assert_eq!(get("group-id"), "g");
    assert_eq!(get("group-sequence"), "3");
    assert_eq!(get("reply-to-group-id"), "rg");
    assert_eq!(get("custom"), "value");
    assert_eq!(get("count"), "42");
    assert_eq!(get("amqp.application.property:subject"), "colliding");
    assert_eq!(get("amqp.message.annotation:x-opt-origin"), "sensor");
    assert_eq!(d.message.text.as_deref(), Some("{\"hello\":1}"));
    assert_eq!(d.message.bytes, None);
    assert_eq!(d.message.content_type.as_deref(), Some("application/json"));
    d.settler.settle(Settle::Accept);

    let d = next(&mut connected, Duration::from_secs(5))
        .await
        .expect("second message");
    assert_eq!(d.message.bytes, Some(vec![0xde, 0xad, 0xbe, 0xef]));
    assert_eq!(d.message.text, None);
    let d = next(&mut connected, Duration::from_secs(5))
        .await
        .expect("third message");
    assert_eq!(d.message.bytes.as_deref(), Some(&b"plain text"[..]));
    assert_eq!(d.message.text.as_deref(), Some("plain text"));

    connected.client.close().await;
    assert_eq!(
        broker.message_count(&q).await,
        0,
        "at most once: accepted on receipt"
    );
    broker.cleanup().await;
}

/// Messages larger than the frame size come in several frames, which the client's check reads
/// whole (a copy of the parts until the last one) before fe2o3-amqp decodes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_in_several_frames_arrive_whole() {
    let mut broker = Broker::new().await;
    let q = broker.queue("split").await;
    let address = format!("/queue/{q}");
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let text = "ferrule ".repeat(2_500);
    let big_bytes = Message::builder()
        .properties(Properties {
            content_type: Some(Symbol::from("application/octet-stream")),
            ..Default::default()
        })
        .body(Body::from(Data(Binary::from(bytes.clone()))))
        .build();
    broker
        .send(&address, vec![big_bytes, text_message(&text)])
        .await;
    let mut c = config(vec![source(0, &[&address], true)], vec![]);
    // RabbitMQ splits what is larger than the client's max-frame-size.
    c.specific_config
        .insert("amqp.maxFrameSize".into(), "4096".into());
    let mut connected = connect(c).await.unwrap();
    let d = next(&mut connected, Duration::from_secs(5))
        .await
        .expect("the 100 KB message");
    assert_eq!(d.message.bytes.as_deref(), Some(&bytes[..]));
    d.settler.settle(Settle::Accept);
    let d = next(&mut connected, Duration::from_secs(5))
        .await
        .expect("the 20 KB text");
    assert_eq!(d.message.text.as_deref(), Some(text.as_str()));
    d.settler.settle(Settle::Accept);
    connected.client.close().await;
    broker.cleanup().await;
}

/// RabbitMQ 3.10 ends the session on a `modified` outcome: the redelivery arrives only because the
/// client told the broker by its `open` and settled "redeliver" as `released`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_redeliver_accept_reject() {
    let mut broker = Broker::new().await;
    let q = broker.queue("settle").await;
    let address = format!("/queue/{q}");
    broker
        .send(
            &address,
            vec![text_message("a"), text_message("b"), text_message("c")],
        )
        .await;
    let mut connected = connect(config(vec![source(0, &[&address], true)], vec![]))
        .await
        .unwrap();
    receive_abc_and_settle_redeliver_accept_reject(&mut connected).await;

    let again = match next(&mut connected, Duration::from_secs(5)).await {
        Some(d) => d,
        None => panic!("no redelivery; events: {:?}", connected.events.try_recv()),
    };
    assert!(
        connected.events.try_recv().is_err(),
        "settling broke nothing"
    );
    assert_eq!(again.message.text.as_deref(), Some("a"));
    again.settler.settle(Settle::Accept);
    assert!(
        next(&mut connected, Duration::from_millis(500))
            .await
            .is_none(),
        "accepted and rejected messages are gone"
    );
    connected.client.close().await;
    assert_eq!(broker.message_count(&q).await, 0);
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_bounds_unsettled_deliveries() {
    let mut broker = Broker::new().await;
    let q = broker.queue("credit").await;
    let address = format!("/queue/{q}");
    broker
        .send(
            &address,
            (0..10).map(|i| text_message(&i.to_string())).collect(),
        )
        .await;
    let mut cfg = config(vec![source(0, &[&address], true)], vec![]);
    cfg.max_in_flight = 3;
    let mut connected = connect(cfg).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            next(&mut connected, Duration::from_secs(5))
                .await
                .expect("delivery"),
        );
    }
    assert!(
        next(&mut connected, Duration::from_millis(700))
            .await
            .is_none(),
        "no more than max_in_flight unsettled deliveries"
    );
    held.remove(0).settler.settle(Settle::Accept);
    let more = next(&mut connected, Duration::from_secs(5))
        .await
        .expect("credit was topped up");
    held.push(more);
    assert!(
        next(&mut connected, Duration::from_millis(500))
            .await
            .is_none()
    );
    // Settle the rest as they come: all ten arrive.
    let mut accepted = 1;
    for d in held.drain(..) {
        d.settler.settle(Settle::Accept);
        accepted += 1;
    }
    while accepted < 10 {
        let Some(d) = next(&mut connected, Duration::from_secs(5)).await else {
            panic!("remaining: events {:?}", connected.events.try_recv())
        };
        d.settler.settle(Settle::Accept);
        accepted += 1;
    }
    connected.client.close().await;
    assert_eq!(broker.message_count(&q).await, 0);
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_queue_maps_headers() {
    let mut broker = Broker::new().await;
    let q = broker.queue("publish").await;
    let address = format!("/queue/{q}");
    let connected = connect(config(vec![], vec![target(0, &address)]))
        .await
        .unwrap();

    let mut message = ExternalMessage::text("{\"thing\":1}");
    message.content_type = Some("application/vnd.eclipse.ditto+json".into());
    for (k, v) in [
        ("correlation-id", "corr-1"),
        ("reply-to", "/queue/answers"),
        ("message-id", "msg-9"),
        ("subject", "subj"),
        ("creation-time", "1700000000000"),
        ("custom-header", "custom"),
        ("amqp.application.property:to", "app-to"),
        ("amqp.message.annotation:x-opt-ann", "annotated"),
    ] {
        message.headers.insert(k, v);
    }
    connected
        .client
        .publish(Publish {
            target: 0,
            address: address.clone(),
            message,
        })
        .await
        .unwrap();
    connected
        .client
        .publish(Publish {
            target: 0,
            address: address.clone(),
            message: ExternalMessage::bytes(vec![1, 2, 3]),
        })
        .await
        .unwrap();
    // `queue://NAME`: a bare NAME for RabbitMQ, i.e. the queue NAME.
    connected
        .client
        .publish(Publish {
            target: 0,
            address: format!("queue://{q}"),
            message: ExternalMessage::text("via prefix"),
        })
        .await
        .unwrap();

    let received = broker.receive(&address, 3, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 3);
    let m = &received[0];
    let p = m.properties.as_ref().unwrap();
    assert_eq!(p.correlation_id, Some(MessageId::String("corr-1".into())));
    assert_eq!(p.message_id, Some(MessageId::String("msg-9".into())));
    assert_eq!(p.reply_to.as_deref(), Some("/queue/answers"));
    assert_eq!(p.subject.as_deref(), Some("subj"));
    assert_eq!(p.to, None);
    assert_eq!(
        p.creation_time,
        Some(Timestamp::from_milliseconds(1_700_000_000_000))
    );
    assert_eq!(
        p.content_type,
        Some(Symbol::from("application/vnd.eclipse.ditto+json"))
    );
    let app = &m.application_properties.as_ref().unwrap().0;
    assert_eq!(
        app.get("custom-header"),
        Some(&SimpleValue::String("custom".into()))
    );
    assert_eq!(app.get("to"), Some(&SimpleValue::String("app-to".into())));
    let ann = &m.message_annotations.as_ref().unwrap().0;
    assert_eq!(
        ann.get(&OwnedKey::Symbol(Symbol::from("x-opt-ann"))),
        Some(&Value::String("annotated".into()))
    );
    match &m.body {
        Body::Value(AmqpValue(Value::String(s))) => assert_eq!(s, "{\"thing\":1}"),
        other => panic!("text is sent as an amqp-value string, got {other:?}"),
    }
    match &received[1].body {
        Body::Data(batch) => {
            let bytes: Vec<u8> = batch.iter().flat_map(|d| d.0.to_vec()).collect();
            assert_eq!(bytes, vec![1, 2, 3]);
        }
        other => panic!("bytes are sent as data, got {other:?}"),
    }
    match &received[2].body {
        Body::Value(AmqpValue(Value::String(s))) => assert_eq!(s, "via prefix"),
        other => panic!("unexpected body {other:?}"),
    }
    connected.client.close().await;
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_publishes_resolve_quickly() {
    let mut broker = Broker::new().await;
    let q = broker.queue("pipelined").await;
    let address = format!("/queue/{q}");
    let connected = connect(config(vec![], vec![target(0, &address)]))
        .await
        .unwrap();
    let started = Instant::now();
    let publishes = (0..200).map(|i| {
        connected.client.publish(Publish {
            target: 0,
            address: address.clone(),
            message: ExternalMessage::text(format!("message {i}")),
        })
    });
    let results = futures_util::future::join_all(publishes).await;
    let elapsed = started.elapsed();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    // Awaited one by one, 200 outcomes take ~4.4 s against this broker.
    assert!(
        elapsed < Duration::from_secs(3),
        "200 publishes took {elapsed:?}"
    );
    let mut count = 0;
    for _ in 0..20 {
        count = broker.message_count(&q).await;
        if count == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count, 200);
    connected.client.close().await;
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_source_address_is_misconfigured() {
    let mut broker = Broker::new().await;
    let q = broker.queue("badsource").await;
    let good = format!("/queue/{q}");
    let bad = format!("/queues/{q}");
    let err = match connect(config(vec![source(0, &[&good, &bad], true)], vec![])).await {
        Ok(_) => panic!("an unknown address must fail the connect"),
        Err(e) => e,
    };
    assert_eq!(err.kind, ErrorKind::Misconfigured, "{err:?}");
    assert!(err.message.contains(&bad), "{err:?}");
    assert!(!err.message.contains("guest:guest"));
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_target_address_fails_without_breaking_other_links() {
    let mut broker = Broker::new().await;
    let consumed = broker.queue("badtarget-in").await;
    let published = broker.queue("badtarget-out").await;
    let consumed_address = format!("/queue/{consumed}");
    let published_address = format!("/queue/{published}");
    let mut connected = connect(config(
        vec![source(0, &[&consumed_address], false)],
        vec![target(0, &published_address)],
    ))
    .await
    .unwrap();
    let publish = |address: String| Publish {
        target: 0,
        address,
        message: ExternalMessage::text("x"),
    };
    connected
        .client
        .publish(publish(published_address.clone()))
        .await
        .unwrap();
    let err = connected
        .client
        .publish(publish(format!("/queues/{published}")))
        .await
        .unwrap_err();
    assert!(err.message.contains("/queues/"), "{err:?}");
    // The other links still work.
    connected
        .client
        .publish(publish(published_address.clone()))
        .await
        .unwrap();
    broker
        .send(&consumed_address, vec![text_message("still here")])
        .await;
    let d = next(&mut connected, Duration::from_secs(5))
        .await
        .expect("consumer still runs");
    assert_eq!(d.message.text.as_deref(), Some("still here"));
    assert!(connected.events.try_recv().is_err(), "no events");
    assert_eq!(
        broker
            .receive(&published_address, 2, Duration::from_secs(5))
            .await
            .len(),
        2
    );
    connected.client.close().await;
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_unauthorized() {
    let mut cfg = config(vec![], vec![]);
    cfg.uri = "amqp://guest:wrong-secret@127.0.0.1:5672".into();
    let err = match connect(cfg).await {
        Ok(_) => panic!("wrong password must not connect"),
        Err(e) => e,
    };
    assert_eq!(err.kind, ErrorKind::Unauthorized, "{err:?}");
    assert!(err.message.contains("127.0.0.1:5672"), "{err:?}");
    assert!(!err.message.contains("wrong-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_port_is_unreachable_quickly() {
    let mut cfg = config(vec![], vec![]);
    cfg.uri = "amqp://guest:guest@127.0.0.1:1".into();
    let started = Instant::now();
    let err = match connect(cfg).await {
        Ok(_) => panic!("nothing listens on port 1"),
        Err(e) => e,
    };
    assert_eq!(err.kind, ErrorKind::Unreachable, "{err:?}");
    assert!(err.message.contains("127.0.0.1:1"), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_attaches_and_consumes_nothing() {
    let mut broker = Broker::new().await;
    let q = broker.queue("dryrun").await;
    let out = broker.queue("dryrun-out").await;
    let address = format!("/queue/{q}");
    broker.send(&address, vec![text_message("keep me")]).await;
    let mut cfg = config(
        vec![source(0, &[&address], true)],
        vec![
            target(0, &format!("/queue/{out}")),
            target(1, "{{ thing:id }}"),
        ],
    );
    cfg.dry_run = true;
    let mut connected = connect(cfg.clone()).await.unwrap();
    assert!(
        next(&mut connected, Duration::from_millis(300))
            .await
            .is_none()
    );
    connected.client.close().await;
    assert_eq!(
        broker.message_count(&q).await,
        1,
        "a dry run consumes nothing"
    );

    cfg.sources = vec![source(0, &[&address, &format!("/queues/{q}")], true)];
    let err = connect(cfg.clone()).await.err().expect("bad source");
    assert_eq!(err.kind, ErrorKind::Misconfigured, "{err:?}");
    cfg.sources = vec![];
    cfg.targets = vec![target(0, &format!("/queues/{out}"))];
    let err = connect(cfg).await.err().expect("bad target");
    assert_eq!(err.kind, ErrorKind::Misconfigured, "{err:?}");
    assert!(err.message.contains("/queues/"), "{err:?}");
    broker.cleanup().await;
}

async fn next_event(connected: &mut Connected) -> ClientEvent {
    tokio::time::timeout(Duration::from_secs(10), connected.events.recv())
        .await
        .expect("no client event in time")
        .expect("events closed")
}

/// RabbitMQ 3.10's AMQP 1.0 plugin answers the deletion of a queue a receiver is attached to by
/// closing the whole connection (not by detaching that link): the client reports it as lost,
/// and the host reconnects (where the attach then fails with the missing queue). A broker that
/// detaches only the link gets `ClientEvent::SourceFailed` for that source instead
/// (`a_link_detached_by_the_peer_is_source_failed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_source_queue_is_reported() {
    let mut broker = Broker::new().await;
    let doomed = broker.queue("doomed").await;
    let doomed_address = format!("/queue/{doomed}");
    let mut connected = connect(config(vec![source(0, &[&doomed_address], true)], vec![]))
        .await
        .expect("connects");
    // Deleted before RabbitMQ set up the consumer, the queue would go unnoticed: one message
    // through it first.
    broker
        .send(&doomed_address, vec![text_message("first")])
        .await;
    next(&mut connected, Duration::from_secs(5))
        .await
        .expect("the consumer runs")
        .settler
        .settle(Settle::Accept);
    broker
        .channel
        .queue_delete(doomed.as_str().into(), Default::default())
        .await
        .unwrap();
    match next_event(&mut connected).await {
        ClientEvent::Disconnected(e) => {
            assert_eq!(e.kind, ErrorKind::Closed);
            assert!(e.message.contains("127.0.0.1:5672"), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
    connected.client.close().await;
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_reported_once() {
    let mut broker = Broker::new().await;
    let q = broker.queue("lost").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let proxy = tokio::spawn(async move {
        let (mut inbound, _) = listener.accept().await.unwrap();
        let mut outbound = tokio::net::TcpStream::connect("127.0.0.1:5672")
            .await
            .unwrap();
        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
    });
    let mut c = config(vec![source(0, &[&format!("/queue/{q}")], true)], vec![]);
    c.uri = format!("amqp://guest:guest@127.0.0.1:{port}");
    let mut connected = connect(c).await.expect("connects through the proxy");
    proxy.abort();
    match next_event(&mut connected).await {
        ClientEvent::Disconnected(e) => {
            assert_eq!(e.kind, ErrorKind::Closed);
            assert!(!e.message.contains("guest:guest"), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
    let again = tokio::time::timeout(Duration::from_millis(500), connected.events.recv()).await;
    assert!(
        !matches!(again, Ok(Some(ClientEvent::Disconnected(_)))),
        "reported once: {again:?}"
    );
    connected.client.close().await;
    broker.cleanup().await;
}

/// A peer that vanishes without closing the TCP connection (a black hole: the proxy keeps both
/// sockets open and forwards nothing more) is noticed within `amqp.idleTimeout`; before that,
/// RabbitMQ's heartbeats keep the quiet connection open. (RabbitMQ 3.x sends them every half
/// time-out in whole seconds, so time-outs under 2 s get none.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_noticed_within_the_idle_timeout() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        frozen: Arc<AtomicBool>,
    ) {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if !frozen.load(Ordering::SeqCst) && to.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    }
    let mut broker = Broker::new().await;
    let q = broker.queue("silent").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let frozen = Arc::new(AtomicBool::new(false));
    let flag = frozen.clone();
    let proxy = tokio::spawn(async move {
        let (inbound, _) = listener.accept().await.unwrap();
        let outbound = tokio::net::TcpStream::connect("127.0.0.1:5672")
            .await
            .unwrap();
        let ((in_read, in_write), (out_read, out_write)) =
            (inbound.into_split(), outbound.into_split());
        tokio::join!(
            pump(in_read, out_write, flag.clone()),
            pump(out_read, in_write, flag)
        );
    });
    let mut c = config(vec![source(0, &[&format!("/queue/{q}")], true)], vec![]);
    c.uri = format!("amqp://guest:guest@127.0.0.1:{port}");
    c.specific_config
        .insert("amqp.idleTimeout".into(), "4000".into());
    let mut connected = connect(c).await.expect("connects through the proxy");
    let quiet = tokio::time::timeout(Duration::from_secs(9), connected.events.recv()).await;
    assert!(quiet.is_err(), "a quiet connection stays open: {quiet:?}");
    frozen.store(true, Ordering::SeqCst);
    let since = Instant::now();
    match next_event(&mut connected).await {
        ClientEvent::Disconnected(e) => assert!(!e.message.contains("guest:guest"), "{e:?}"),
        other => panic!("{other:?}"),
    }
    assert!(
        since.elapsed() < Duration::from_secs(9),
        "noticed after {:?}",
        since.elapsed()
    );
    proxy.abort();
    connected.client.close().await;
    broker.cleanup().await;
}

#[tokio::test]
async fn a_bad_idle_timeout_is_misconfigured() {
    let mut c = config(vec![], vec![]);
    c.specific_config
        .insert("amqp.idleTimeout".into(), "soon".into());
    match connect(c).await {
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::Misconfigured);
            assert!(e.message.contains("amqp.idleTimeout"), "{e:?}");
        }
        Ok(_) => panic!("connected with amqp.idleTimeout = soon"),
    }
}

/// The Proton peer (`amqp10_peer.py`): commands on its stdin, its reports (JSON lines) read by a
/// thread; killed on drop.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    reports: tokio::sync::mpsc::UnboundedReceiver<Json>,
    /// reports read but not asked for yet
    backlog: std::collections::VecDeque<Json>,
    port: u16,
}

impl Peer {
    async fn start() -> Peer {
        let mut child = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/amqp10_peer.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the Proton peer");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let (tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(serde_json::from_str::<Json>(&line).unwrap());
            }
        });
        let first = tokio::time::timeout(Duration::from_secs(10), reports.recv())
            .await
            .ok()
            .flatten()
            .expect(
                "the Proton peer starts (pip package python-qpid-proton; scripts/test installs it)",
            );
        let port = first["listening"]
            .as_u64()
            .expect("the peer reports its port") as u16;
        Peer {
            child,
            stdin,
            reports,
            backlog: Default::default(),
            port,
        }
    }

    fn uri(&self) -> String {
        format!("amqp://127.0.0.1:{}", self.port)
    }

    fn command(&mut self, command: Json) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The first report with `key` not taken yet (the others stay for later calls).
    async fn report(&mut self, key: &str) -> Json {
        if let Some(i) = self.backlog.iter().position(|r| r.get(key).is_some()) {
            return self.backlog.remove(i).unwrap();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.reports.recv()).await {
                Ok(Some(report)) if report.get(key).is_some() => return report,
                Ok(Some(report)) => self.backlog.push_back(report),
                _ => panic!(
                    "no report with '{key}' from the peer; not taken: {:?}",
                    self.backlog
                ),
            }
        }
    }

    async fn put(&mut self, address: &str, body: &str) {
        self.command(json!({"put": address, "body": body}));
        self.report("put").await;
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peer_config(peer: &Peer, sources: Vec<SourceSpec>) -> ClientConfig {
    let mut c = config(sources, vec![]);
    c.uri = peer.uri();
    c
}

/// A dry run answers though the broker never answers the detach of the links it attached (as
/// RabbitMQ 3.10's AMQP 1.0 plugin, whose session process can crash when a consumer detaches
/// right after its attach): each link's teardown waits at most a second, and the answer is the
/// dry run's, not the connect's time-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_answers_when_the_broker_never_answers_a_detach() {
    let mut peer = Peer::start().await;
    peer.command(json!({"silent": true}));
    peer.report("silent").await;
    let mut cfg = peer_config(&peer, vec![source(0, &["dry-a", "dry-b"], true)]);
    cfg.targets = vec![target(0, "dry-out")];
    cfg.dry_run = true;
    cfg.connect_timeout = Duration::from_secs(10);
    let started = Instant::now();
    let connected = connect(cfg).await.expect("the dry run answers");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "three links, each taken down within a second: {:?}",
        started.elapsed()
    );
    assert_eq!(peer.report("unanswered").await["unanswered"], "detach");
    connected.client.close().await;
}

/// A peer that is not RabbitMQ 3.x gets Ditto's outcome for "redeliver": `modified` with
/// delivery-failed (and so redelivers with the delivery count incremented).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proton_peer_gets_modified_accepted_and_rejected() {
    let mut peer = Peer::start().await;
    let address = "settle-outcomes";
    for body in ["a", "b", "c"] {
        peer.put(address, body).await;
    }
    let mut connected = connect(peer_config(&peer, vec![source(0, &[address], true)]))
        .await
        .unwrap();
    for _ in 0..3 {
        peer.report("sent").await;
    }
    receive_abc_and_settle_redeliver_accept_reject(&mut connected).await;

    let mut outcomes = std::collections::HashMap::new();
    for _ in 0..3 {
        let report = peer.report("outcome").await;
        assert_eq!(report["address"], address);
        outcomes.insert(report["body"].as_str().unwrap().to_string(), report);
    }
    assert_eq!(outcomes["a"]["outcome"], "modified", "{outcomes:?}");
    assert_eq!(outcomes["a"]["delivery_failed"], true, "{outcomes:?}");
    assert_eq!(outcomes["a"]["undeliverable_here"], false, "{outcomes:?}");
    assert_eq!(outcomes["b"]["outcome"], "accepted", "{outcomes:?}");
    assert_eq!(outcomes["c"]["outcome"], "rejected", "{outcomes:?}");

    let again = peer.report("sent").await;
    assert_eq!(again["body"], "a");
    assert_eq!(again["delivery_count"], 1, "delivery-failed counts");
    let d = next(&mut connected, Duration::from_secs(5))
        .await
        .expect("redelivered");
    assert_eq!(d.message.text.as_deref(), Some("a"));
    d.settler.settle(Settle::Accept);
    let report = peer.report("outcome").await;
    assert_eq!(
        (&report["outcome"], &report["body"]),
        (&json!("accepted"), &json!("a"))
    );
    assert!(connected.events.try_recv().is_err(), "no events");
    connected.client.close().await;
}

/// A receiver link the peer detaches fails its source only: one `SourceFailed` with the source's
/// index and address (and the peer's error: Proton sends it with a closing detach only); the
/// connection and the other sources live on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_detached_by_the_peer_is_source_failed() {
    let mut peer = Peer::start().await;
    let (keep, closed, detached) = ("detach-keep", "detach-closed", "detach-suspended");
    let mut connected = connect(peer_config(
        &peer,
        vec![
            source(0, &[keep], true),
            source(1, &[closed], true),
            source(4, &[detached], false),
        ],
    ))
    .await
    .unwrap();
    for (index, address, closing) in [(1, closed, true), (4, detached, false)] {
        let text = format!("node {address} deleted by the test");
        peer.command(json!({"detach": address, "error": text, "closed": closing}));
        assert_eq!(peer.report("detached").await["links"], 1);
        match next_event(&mut connected).await {
            ClientEvent::SourceFailed {
                source,
                address: failed,
                error,
            } => {
                assert_eq!((source, failed.as_str()), (index, address));
                assert!(error.message.contains(address), "{error:?}");
                assert!(error.message.contains("detached it"), "{error:?}");
                if closing {
                    assert!(error.message.contains(&text), "{error:?}");
                }
            }
            other => panic!("{other:?}"),
        }
        let again = tokio::time::timeout(Duration::from_millis(700), connected.events.recv()).await;
        assert!(again.is_err(), "one event, no disconnect: {again:?}");
    }
    // The connection is up: the remaining source still consumes.
    peer.put(keep, "still here").await;
    let d = next(&mut connected, Duration::from_secs(5))
        .await
        .expect("the other source still consumes");
    assert_eq!(
        (d.source, d.message.text.as_deref()),
        (0, Some("still here"))
    );
    d.settler.settle(Settle::Accept);
    assert_eq!(peer.report("outcome").await["outcome"], "accepted");
    assert!(connected.events.try_recv().is_err(), "no events");
    connected.client.close().await;
}

/// Receives the three messages "a", "b", "c" in order and settles them redeliver, accept,
/// reject.
async fn receive_abc_and_settle_redeliver_accept_reject(connected: &mut Connected) {
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            next(connected, Duration::from_secs(5))
                .await
                .expect("delivery"),
        );
    }
    let texts: Vec<_> = got
        .iter()
        .map(|d| d.message.text.clone().unwrap())
        .collect();
    assert_eq!(texts, ["a", "b", "c"]);
    let mut it = got.into_iter();
    it.next().unwrap().settler.settle(Settle::Redeliver);
    it.next().unwrap().settler.settle(Settle::Accept);
    it.next().unwrap().settler.settle(Settle::Reject);
}
