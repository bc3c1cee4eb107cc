//! Integration tests of the MQTT transport against the Mosquitto broker at 127.0.0.1:1883
//! (anonymous). A test that cannot reach the broker fails.

use ferrule_protocol::{ExternalMessage, Headers};
use ferrule_transport::{
    BrokerClient, ClientConfig, ClientEvent, Connected, Delivery, ErrorKind, Protocol, Publish,
    Settle, SourceSpec, TargetSpec, connect,
};
use rumqttc::v5::mqttbytes::v5 as p5;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::timeout;

const BROKER: &str = "tcp://127.0.0.1:1883";
const WAIT: Duration = Duration::from_secs(5);

/// A topic prefix of its own for every test run.
fn base(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("ferrule-test/{test}/{}-{nanos}", std::process::id())
}

fn source(index: usize, addresses: &[String], qos: u8, at_least_once: bool) -> SourceSpec {
    SourceSpec {
        index,
        addresses: addresses.to_vec(),
        qos: Some(qos),
        consumer_count: 1,
        at_least_once,
    }
}

fn target(index: usize, address: &str, qos: u8) -> TargetSpec {
    TargetSpec {
        index,
        address: address.into(),
        qos: Some(qos),
    }
}

fn config(protocol: Protocol, id: &str) -> ClientConfig {
    ClientConfig {
        connection_id: id.replace('/', "-"),
        client_index: 0,
        protocol,
        uri: BROKER.into(),
        validate_certificates: true,
        ca: None,
        client_cert: None,
        credentials: None,
        specific_config: Default::default(),
        sources: vec![],
        targets: vec![],
        connect_timeout: Duration::from_secs(5),
        max_in_flight: 10,
        dry_run: false,
    }
}

fn with(mut c: ClientConfig, specific: &[(&str, &str)]) -> ClientConfig {
    for (k, v) in specific {
        c.specific_config.insert(k.to_string(), v.to_string());
    }
    c
}

async fn connected(c: ClientConfig) -> Connected {
    match connect(c).await {
        Ok(c) => c,
        Err(e) => panic!("connecting to the broker failed: {e:?}"),
    }
}

async fn next_delivery(rx: &mut mpsc::Receiver<Delivery>) -> Delivery {
    timeout(WAIT, rx.recv())
        .await
        .expect("no delivery in time")
        .expect("deliveries closed")
}

fn header(d: &Delivery, key: &str) -> Option<String> {
    d.message.headers.get_str(key)
}

fn publish(target: usize, address: &str, text: &str, headers: &[(&str, &str)]) -> Publish {
    let mut h = Headers::new();
    for (k, v) in headers {
        h.insert(*k, *v);
    }
    Publish {
        target,
        address: address.into(),
        message: ExternalMessage {
            headers: h,
            ..ExternalMessage::text(text)
        },
    }
}

// ---- independent clients ------------------------------------------------------------------

/// Publishes `m0` … `m<n-1>` to `topic` at QoS 1.
async fn publish_numbered(publisher: &rumqttc::AsyncClient, topic: &str, n: usize) {
    for i in 0..n {
        publisher
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, format!("m{i}"))
            .await
            .unwrap();
    }
}

/// A plain MQTT 3.1.1 client; every incoming PUBLISH goes to the returned receiver. Returns once
/// connected and (when `filter` is given) subscribed.
async fn plain3(
    id: &str,
    filter: Option<&str>,
    clean: bool,
) -> (
    rumqttc::AsyncClient,
    mpsc::UnboundedReceiver<rumqttc::Publish>,
) {
    let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", 1883);
    o.set_clean_session(clean);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 100);
    if let Some(f) = filter {
        client
            .subscribe(f, rumqttc::QoS::ExactlyOnce)
            .await
            .unwrap();
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    let want_suback = filter.is_some();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) if !want_suback => {
                    ready_tx.take().map(|r| r.send(()));
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    ready_tx.take().map(|r| r.send(()));
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let _ = tx.send(p);
                }
                Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => panic!("plain MQTT 3 client failed: {e}"),
            }
        }
    });
    timeout(WAIT, ready_rx)
        .await
        .expect("plain client: no CONNACK/SUBACK in time")
        .unwrap();
    (client, rx)
}

/// A plain MQTT 5 client, as [`plain3`].
async fn plain5(
    id: &str,
    filter: Option<&str>,
) -> (
    rumqttc::v5::AsyncClient,
    mpsc::UnboundedReceiver<p5::Publish>,
) {
    let o = rumqttc::v5::MqttOptions::new(id, "127.0.0.1", 1883);
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(o, 100);
    if let Some(f) = filter {
        client
            .subscribe(f, rumqttc::v5::mqttbytes::QoS::ExactlyOnce)
            .await
            .unwrap();
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    let want_suback = filter.is_some();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::v5::Event::Incoming(p5::Packet::ConnAck(_))) if !want_suback => {
                    ready_tx.take().map(|r| r.send(()));
                }
                Ok(rumqttc::v5::Event::Incoming(p5::Packet::SubAck(_))) => {
                    ready_tx.take().map(|r| r.send(()));
                }
                Ok(rumqttc::v5::Event::Incoming(p5::Packet::Publish(p))) => {
                    let _ = tx.send(p);
                }
                Ok(rumqttc::v5::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => panic!("plain MQTT 5 client failed: {e}"),
            }
        }
    });
    timeout(WAIT, ready_rx)
        .await
        .expect("plain client: no CONNACK/SUBACK in time")
        .unwrap();
    (client, rx)
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    timeout(WAIT, rx.recv())
        .await
        .expect("the independent client received nothing in time")
        .expect("the independent client ended")
}

async fn next_event(c: &mut Connected) -> ClientEvent {
    timeout(WAIT, c.events.recv())
        .await
        .expect("no client event in time")
        .expect("events closed")
}

// ---- consuming -----------------------------------------------------------------------------

#[tokio::test]
async fn consume_mqtt3_headers_payload_and_first_matching_source() {
    let b = base("consume3");
    let mut c = config(Protocol::Mqtt3, &b);
    c.sources = vec![
        source(4, &[format!("{b}/in/a")], 1, false),
        source(7, &[format!("{b}/in/+"), format!("{b}/other")], 1, true),
    ];
    let mut conn = connected(c).await;
    let (publisher, _) = plain3(&format!("{b}-pub"), None, true).await;
    publisher
        .publish(
            format!("{b}/in/a"),
            rumqttc::QoS::AtLeastOnce,
            false,
            "hello",
        )
        .await
        .unwrap();
    let d = next_delivery(&mut conn.deliveries).await;
    assert_eq!(d.source, 4);
    assert_eq!(d.address, format!("{b}/in/a"));
    assert_eq!(header(&d, "mqtt.topic"), Some(format!("{b}/in/a")));
    assert_eq!(header(&d, "mqtt.qos").as_deref(), Some("1"));
    assert_eq!(header(&d, "mqtt.retain").as_deref(), Some("false"));
    assert_eq!(d.message.text.as_deref(), Some("hello"));
    assert_eq!(d.message.bytes.as_deref(), Some(&b"hello"[..]));
    d.settler.settle(Settle::Accept);

    publisher
        .publish(
            format!("{b}/in/b"),
            rumqttc::QoS::AtMostOnce,
            false,
            vec![0xff, 0x00],
        )
        .await
        .unwrap();
    let d = next_delivery(&mut conn.deliveries).await;
    assert_eq!(d.source, 7);
    assert_eq!(d.address, format!("{b}/in/b"));
    assert_eq!(header(&d, "mqtt.qos").as_deref(), Some("0"));
    assert_eq!(d.message.text, None);
    assert_eq!(d.message.bytes.as_deref(), Some(&[0xff, 0x00][..]));
    conn.client.close().await;
}

#[tokio::test]
async fn consume_mqtt5_maps_properties_to_headers() {
    let b = base("consume5");
    let mut c = config(Protocol::Mqtt5, &b);
    c.sources = vec![source(0, &[format!("{b}/in/#")], 2, true)];
    let mut conn = connected(c).await;
    let (publisher, _) = plain5(&format!("{b}-pub"), None).await;
    let props = p5::PublishProperties {
        message_expiry_interval: Some(120),
        response_topic: Some(format!("{b}/reply")),
        correlation_data: Some(b"corr-1".to_vec().into()),
        user_properties: vec![
            ("x-custom".into(), "value".into()),
            ("mqtt.topic".into(), "spoofed".into()),
        ],
        content_type: Some("application/json".into()),
        ..Default::default()
    };
    publisher
        .publish_with_properties(
            format!("{b}/in/x/y"),
            rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
            false,
            r#"{"a":1}"#,
            props,
        )
        .await
        .unwrap();
    let d = next_delivery(&mut conn.deliveries).await;
    assert_eq!(d.source, 0);
    assert_eq!(d.address, format!("{b}/in/x/y"));
    assert_eq!(header(&d, "mqtt.topic"), Some(format!("{b}/in/x/y")));
    assert_eq!(header(&d, "mqtt.qos").as_deref(), Some("2"));
    assert_eq!(header(&d, "mqtt.retain").as_deref(), Some("false"));
    assert_eq!(header(&d, "x-custom").as_deref(), Some("value"));
    assert_eq!(header(&d, "correlation-id").as_deref(), Some("corr-1"));
    assert_eq!(header(&d, "reply-to"), Some(format!("{b}/reply")));
    assert_eq!(
        header(&d, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(d.message.content_type.as_deref(), Some("application/json"));
    let expiry: u32 = header(&d, "mqtt.message-expiry-interval")
        .unwrap()
        .parse()
        .unwrap();
    assert!((100..=120).contains(&expiry), "{expiry}");
    assert_eq!(d.message.text.as_deref(), Some(r#"{"a":1}"#));
    d.settler.settle(Settle::Accept);
    conn.client.close().await;
}

// ---- at least once -------------------------------------------------------------------------

async fn redelivery(protocol: Protocol, name: &str) {
    let b = base(name);
    let mut c = config(protocol, &b);
    c.sources = vec![source(0, &[format!("{b}/in")], 1, true)];
    let c = with(
        c,
        &[
            ("cleanSession", "false"),
            ("reconnectForRedelivery", "true"),
            ("reconnectForRedeliveryDelay", "1500ms"),
        ],
    );
    let client_id = c.connection_id.clone();
    let (publisher, _) = plain3(&format!("{b}-pub"), None, true).await;

    // Not accepted: the client disconnects and the broker redelivers after the reconnect.
    let mut first = connected(c.clone()).await;
    publisher
        .publish(format!("{b}/in"), rumqttc::QoS::AtLeastOnce, false, "m1")
        .await
        .unwrap();
    let d = next_delivery(&mut first.deliveries).await;
    assert_eq!(d.message.text.as_deref(), Some("m1"));
    d.settler.settle(Settle::Redeliver);
    match next_event(&mut first).await {
        ClientEvent::Disconnected(e) => {
            assert_eq!(e.kind, ErrorKind::Closed);
            // The host reconnects after the configured delay, not after its backoff.
            assert_eq!(e.retry_after, Some(Duration::from_millis(1500)));
        }
        other => panic!("{other:?}"),
    }
    first.client.close().await;

    let mut second = connected(c.clone()).await;
    let d = next_delivery(&mut second.deliveries).await;
    assert_eq!(d.message.text.as_deref(), Some("m1"), "redelivered");
    d.settler.settle(Settle::Accept);
    publisher
        .publish(format!("{b}/in"), rumqttc::QoS::AtLeastOnce, false, "m2")
        .await
        .unwrap();
    let d = next_delivery(&mut second.deliveries).await;
    assert_eq!(d.message.text.as_deref(), Some("m2"));
    d.settler.settle(Settle::Accept);
    second.client.close().await;

    // Accepted messages are not redelivered.
    let mut third = connected(c).await;
    let nothing = timeout(Duration::from_millis(1000), third.deliveries.recv()).await;
    assert!(nothing.is_err(), "unexpected redelivery: {nothing:?}");
    third.client.close().await;

    // Remove the persistent session from the broker.
    let (cleaner, _) = plain3(&client_id, None, true).await;
    cleaner.disconnect().await.unwrap();
}

#[tokio::test]
async fn at_least_once_redelivery_mqtt3() {
    redelivery(Protocol::Mqtt3, "redeliver3").await;
}

#[tokio::test]
async fn at_least_once_redelivery_mqtt5() {
    redelivery(Protocol::Mqtt5, "redeliver5").await;
}

// ---- publishing ----------------------------------------------------------------------------

#[tokio::test]
async fn publish_mqtt3_qos0_qos1_pipelined() {
    let b = base("publish3");
    let (_sub, mut received) = plain3(&format!("{b}-sub"), Some(&format!("{b}/out/#")), true).await;
    let mut c = config(Protocol::Mqtt3, &b);
    c.max_in_flight = 5;
    c.targets = vec![
        target(0, &format!("{b}/out/q0"), 0),
        target(1, &format!("{b}/out/q1"), 1),
    ];
    let conn = connected(c).await;
    conn.client
        .publish(publish(0, &format!("{b}/out/q0"), "zero", &[]))
        .await
        .unwrap();
    let p = recv(&mut received).await;
    assert_eq!(p.topic, format!("{b}/out/q0"));
    assert_eq!(p.qos, rumqttc::QoS::AtMostOnce);
    assert_eq!(&p.payload[..], b"zero");
    conn.client
        .publish(publish(1, &format!("{b}/out/q1"), "one", &[]))
        .await
        .unwrap();
    let p = recv(&mut received).await;
    assert_eq!(p.topic, format!("{b}/out/q1"));
    assert_eq!(p.qos, rumqttc::QoS::AtLeastOnce);
    assert_eq!(&p.payload[..], b"one");

    // Many publishes in flight at once, more than max_in_flight.
    let client: Arc<Box<dyn BrokerClient>> = Arc::new(conn.client);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let client = client.clone();
        let topic = format!("{b}/out/many");
        tasks.spawn(async move {
            client
                .publish(publish(i % 2, &topic, &format!("m{i}"), &[]))
                .await
        });
    }
    let started = Instant::now();
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    assert!(started.elapsed() < WAIT);
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 100 {
        let p = recv(&mut received).await;
        seen.insert(String::from_utf8(p.payload.to_vec()).unwrap());
    }
    let client = Arc::into_inner(client).unwrap();
    client.close().await;
}

#[tokio::test]
async fn publish_mqtt5_maps_headers_to_properties() {
    let b = base("publish5");
    let (_sub, mut received) = plain5(&format!("{b}-sub"), Some(&format!("{b}/out/#"))).await;
    let mut c = config(Protocol::Mqtt5, &b);
    c.targets = vec![target(0, &format!("{b}/out/t"), 1)];
    let conn = connected(c).await;
    let mut p = publish(
        0,
        &format!("{b}/out/t"),
        "payload",
        &[
            ("correlation-id", "c-42"),
            ("reply-to", "replies/here"),
            ("content-type", "text/plain"),
            ("mqtt.message-expiry-interval", "60"),
            ("x-custom", "v1"),
        ],
    );
    p.message.content_type = Some("text/plain".into());
    conn.client.publish(p).await.unwrap();
    let r = recv(&mut received).await;
    assert_eq!(&r.topic[..], format!("{b}/out/t").as_bytes());
    assert_eq!(r.qos, rumqttc::v5::mqttbytes::QoS::AtLeastOnce);
    assert_eq!(&r.payload[..], b"payload");
    let props = r.properties.expect("properties");
    assert_eq!(props.correlation_data.as_deref(), Some(&b"c-42"[..]));
    assert_eq!(props.response_topic.as_deref(), Some("replies/here"));
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert!(
        props
            .message_expiry_interval
            .is_some_and(|e| e <= 60 && e > 50)
    );
    assert_eq!(
        props.user_properties,
        vec![("x-custom".to_string(), "v1".to_string())]
    );
    conn.client.close().await;
}

#[tokio::test]
async fn publish_header_overrides_topic_qos_retain() {
    let b = base("overrides");
    let (_sub, mut received) = plain3(&format!("{b}-sub"), Some(&format!("{b}/out/#")), true).await;
    let mut c = config(Protocol::Mqtt3, &b);
    c.targets = vec![target(0, &format!("{b}/out/default"), 0)];
    let conn = connected(c).await;
    let overridden = format!("{b}/out/override");
    conn.client
        .publish(publish(
            0,
            &format!("{b}/out/default"),
            "kept",
            &[
                ("mqtt.topic", &overridden),
                ("mqtt.qos", "1"),
                ("mqtt.retain", "true"),
            ],
        ))
        .await
        .unwrap();
    let p = recv(&mut received).await;
    assert_eq!(p.topic, overridden);
    assert_eq!(p.qos, rumqttc::QoS::AtLeastOnce);
    assert_eq!(&p.payload[..], b"kept");
    // Retained: a later subscriber gets it with the retain flag.
    let (late, mut late_received) = plain3(&format!("{b}-late"), Some(&overridden), true).await;
    let p = recv(&mut late_received).await;
    assert!(p.retain);
    assert_eq!(&p.payload[..], b"kept");
    // Clear the retained message.
    late.publish(&overridden, rumqttc::QoS::AtLeastOnce, true, Vec::new())
        .await
        .unwrap();
    // An invalid mqtt.qos falls back to the target's QoS.
    conn.client
        .publish(publish(
            0,
            &format!("{b}/out/default"),
            "fallback",
            &[("mqtt.qos", "seven")],
        ))
        .await
        .unwrap();
    loop {
        let p = recv(&mut received).await;
        if &p.payload[..] == b"fallback" {
            assert_eq!(p.topic, format!("{b}/out/default"));
            assert_eq!(p.qos, rumqttc::QoS::AtMostOnce);
            break;
        }
    }
    // Wildcards are no topic to publish to.
    let e = conn
        .client
        .publish(publish(0, &format!("{b}/out/+"), "x", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Misconfigured);
    conn.client.close().await;
}

// ---- failures and events -------------------------------------------------------------------

#[tokio::test]
async fn unreachable_port_fails_quickly_without_password() {
    let mut c = config(Protocol::Mqtt3, &base("unreachable"));
    c.uri = "tcp://user:s3cret@127.0.0.1:1".into();
    let started = Instant::now();
    let e = connect(c.clone()).await.err().expect("must fail");
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e:?}");
    assert!(e.message.contains("127.0.0.1:1"), "{}", e.message);
    assert!(!e.message.contains("s3cret"));
    assert!(started.elapsed() < Duration::from_secs(2));
    c.protocol = Protocol::Mqtt5;
    let e = connect(c.clone()).await.err().expect("must fail");
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e:?}");

    c.uri = "ssl://127.0.0.1:8883".into();
    let e = connect(c.clone()).await.err().expect("must fail");
    assert_eq!(e.kind, ErrorKind::Misconfigured, "{e:?}");
    c.uri = BROKER.into();
    c.specific_config.insert("keepAlive".into(), "soon".into());
    let e = connect(c).await.err().expect("must fail");
    assert_eq!(e.kind, ErrorKind::Misconfigured, "{e:?}");
}

#[tokio::test]
async fn disconnected_event_when_the_broker_drops_the_client() {
    for protocol in [Protocol::Mqtt3, Protocol::Mqtt5] {
        let b = base("takeover");
        let c = with(config(protocol, &b), &[("cleanSession", "true")]);
        let mut conn = connected(c).await;
        // A second client with the same id makes Mosquitto drop the first.
        let (thief, _) = plain3(&b.replace('/', "-"), None, true).await;
        match next_event(&mut conn).await {
            ClientEvent::Disconnected(e) => {
                assert_eq!(e.kind, ErrorKind::Closed);
                assert!(e.message.contains("127.0.0.1:1883"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
        let e = conn
            .client
            .publish(publish(0, "x/y", "late", &[]))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Closed);
        conn.client.close().await;
        thief.disconnect().await.unwrap();
    }
}

#[tokio::test]
async fn dry_run_connects_and_subscribes_with_its_own_client_id() {
    let b = base("dryrun");
    let mut c = config(Protocol::Mqtt5, &b);
    c.sources = vec![source(0, &[format!("{b}/in")], 1, true)];
    let mut live = connected(c.clone()).await;
    c.dry_run = true;
    let test = connected(c.clone()).await;
    let e = test
        .client
        .publish(publish(0, &format!("{b}/in"), "no", &[]))
        .await
        .unwrap_err();
    assert_ne!(e.kind, ErrorKind::Closed);
    test.client.close().await;
    // The dry run did not take the live client's id.
    let event = timeout(Duration::from_millis(300), live.events.recv()).await;
    assert!(event.is_err(), "{event:?}");
    live.client.close().await;

    // A dry run fails like a connect does.
    c.uri = "tcp://127.0.0.1:1".into();
    assert_eq!(
        connect(c).await.err().expect("must fail").kind,
        ErrorKind::Unreachable
    );
}

/// A TCP proxy to the broker whose connections die when the returned task is aborted.
async fn proxy() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut inbound, _) = listener.accept().await.unwrap();
        let mut outbound = tokio::net::TcpStream::connect("127.0.0.1:1883")
            .await
            .unwrap();
        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
    });
    (port, task)
}

#[tokio::test]
async fn last_will_only_when_the_connection_dies() {
    let b = base("will");
    let will = format!("{b}/will");
    let (_sub, mut received) = plain3(&format!("{b}-sub"), Some(&will), true).await;
    let c = with(
        config(Protocol::Mqtt3, &b),
        &[
            ("lastWillTopic", &will),
            ("lastWillQos", "1"),
            ("lastWillMessage", "gone"),
        ],
    );
    // A clean close sends no will.
    let conn = connected(c.clone()).await;
    conn.client.close().await;
    let nothing = timeout(Duration::from_millis(300), received.recv()).await;
    assert!(nothing.is_err(), "{nothing:?}");

    // A dying connection does, and the client reports it.
    let (port, proxy) = proxy().await;
    let mut c = c;
    c.uri = format!("tcp://127.0.0.1:{port}");
    let mut conn = connected(c).await;
    proxy.abort();
    let p = recv(&mut received).await;
    assert_eq!(p.topic, will);
    assert_eq!(&p.payload[..], b"gone");
    assert!(matches!(
        next_event(&mut conn).await,
        ClientEvent::Disconnected(_)
    ));
    conn.client.close().await;
}

#[tokio::test]
async fn without_reconnect_for_redelivery_everything_is_acknowledged() {
    let b = base("noredeliver");
    let mut c = config(Protocol::Mqtt3, &b);
    c.sources = vec![
        source(0, &[format!("{b}/alo")], 1, true),
        source(1, &[format!("{b}/amo")], 1, false),
    ];
    let c = with(c, &[("cleanSession", "false")]);
    let client_id = c.connection_id.clone();
    let (publisher, _) = plain3(&format!("{b}-pub"), None, true).await;
    let mut conn = connected(c.clone()).await;
    publisher
        .publish(format!("{b}/alo"), rumqttc::QoS::AtLeastOnce, false, "r")
        .await
        .unwrap();
    publisher
        .publish(format!("{b}/amo"), rumqttc::QoS::AtLeastOnce, false, "u")
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let d = next_delivery(&mut conn.deliveries).await;
        got.push(d.message.text.clone().unwrap());
        if d.source == 0 {
            // Redeliver without reconnectForRedelivery: acknowledged anyway (as Ditto does).
            d.settler.settle(Settle::Redeliver);
        } else {
            // At most once: acknowledged on receipt, the settler is ignored.
            drop(d);
        }
    }
    got.sort();
    assert_eq!(got, ["r", "u"]);
    let event = timeout(Duration::from_millis(200), conn.events.recv()).await;
    assert!(event.is_err(), "{event:?}");
    conn.client.close().await;

    let mut again = connected(c).await;
    let nothing = timeout(Duration::from_millis(700), again.deliveries.recv()).await;
    assert!(nothing.is_err(), "unexpected redelivery: {nothing:?}");
    again.client.close().await;
    let (cleaner, _) = plain3(&client_id, None, true).await;
    cleaner.disconnect().await.unwrap();
}

#[tokio::test]
async fn mqtt5_receive_maximum_bounds_unsettled_deliveries() {
    let b = base("inflight");
    let mut c = config(Protocol::Mqtt5, &b);
    c.max_in_flight = 3;
    c.sources = vec![source(0, &[format!("{b}/in")], 1, true)];
    let mut conn = connected(c).await;
    let (publisher, _) = plain3(&format!("{b}-pub"), None, true).await;
    publish_numbered(&publisher, &format!("{b}/in"), 6).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(next_delivery(&mut conn.deliveries).await);
    }
    let more = timeout(Duration::from_millis(400), conn.deliveries.recv()).await;
    assert!(more.is_err(), "a 4th unsettled delivery: {more:?}");
    for d in held {
        d.settler.settle(Settle::Accept);
    }
    for _ in 0..3 {
        next_delivery(&mut conn.deliveries)
            .await
            .settler
            .settle(Settle::Accept);
    }
    conn.client.close().await;
}

#[tokio::test]
async fn a_separate_publisher_client_publishes_while_the_consumer_consumes() {
    for protocol in [Protocol::Mqtt3, Protocol::Mqtt5] {
        let b = base("separate");
        let id = b.replace('/', "-");
        let mut c = with(
            config(protocol, &b),
            &[
                ("cleanSession", "true"),
                ("separatePublisherClient", "true"),
            ],
        );
        c.sources = vec![source(0, &[format!("{b}/in")], 1, false)];
        c.targets = vec![target(0, &format!("{b}/out"), 1)];
        let mut conn = connected(c).await;
        let (watcher, mut out) =
            plain3(&format!("{id}-watch"), Some(&format!("{b}/out")), true).await;

        conn.client
            .publish(publish(0, &format!("{b}/out"), "hello", &[]))
            .await
            .expect("the publisher publishes");
        assert_eq!(recv(&mut out).await.payload.as_ref(), b"hello");
        watcher
            .publish(format!("{b}/in"), rumqttc::QoS::AtLeastOnce, false, "in")
            .await
            .unwrap();
        let mut deliveries = std::mem::replace(&mut conn.deliveries, mpsc::channel(1).1);
        assert_eq!(
            next_delivery(&mut deliveries).await.message.text.as_deref(),
            Some("in")
        );

        // The publisher is a client of its own, `<clientId>p`: taking its id over ends the
        // connection, which reports it.
        let (thief, _) = plain3(&format!("{id}p"), None, true).await;
        match next_event(&mut conn).await {
            ClientEvent::Disconnected(e) => assert_eq!(e.kind, ErrorKind::Closed),
            other => panic!("{other:?}"),
        }
        conn.client.close().await;
        thief.disconnect().await.unwrap();
        watcher.disconnect().await.unwrap();
    }
}

#[tokio::test]
async fn the_publisher_id_is_configurable_and_checked() {
    let b = base("publisherid");
    let id = b.replace('/', "-");
    let mut c = with(
        config(Protocol::Mqtt5, &b),
        &[
            ("cleanSession", "true"),
            ("separatePublisherClient", "true"),
            ("publisherId", &format!("{id}-pub")),
        ],
    );
    c.targets = vec![target(0, &format!("{b}/out"), 0)];
    let mut conn = connected(c).await;
    let (thief, _) = plain3(&format!("{id}-pub"), None, true).await;
    assert!(matches!(
        next_event(&mut conn).await,
        ClientEvent::Disconnected(_)
    ));
    conn.client.close().await;
    thief.disconnect().await.unwrap();

    let bad = with(
        config(Protocol::Mqtt3, &b),
        &[("separatePublisherClient", "yes")],
    );
    let e = ferrule_transport::check_config(&bad).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Misconfigured);
    assert!(
        e.message.contains("separatePublisherClient"),
        "{}",
        e.message
    );
}

/// The host may hold the deliveries it has until a publish on the same client is confirmed (a
/// source requesting its target's acknowledgement). A persistent session's backlog arrives at
/// once on connect, more than the deliveries channel holds: the client must still read the
/// publish's confirmation (was: its event loop waited for the host to take a delivery, the host
/// waited for the confirmation, and both waited until the acknowledgement timeout). Nothing is
/// lost or reordered meanwhile.
#[tokio::test]
async fn a_publish_is_confirmed_while_a_backlog_waits_for_the_host() {
    let b = base("backlog-confirm");
    let mut c = config(Protocol::Mqtt3, &b);
    c.max_in_flight = 1; // a deliveries channel of 10
    c.sources = vec![source(0, &[format!("{b}/in")], 1, true)];
    c.targets = vec![target(0, &format!("{b}/out"), 1)];
    let c = with(c, &[("cleanSession", "false")]);
    let client_id = c.connection_id.clone();
    // The session exists (subscribed), then the client goes away.
    connected(c.clone()).await.client.close().await;
    let (publisher, _) = plain3(&format!("{b}-pub"), None, true).await;
    const N: usize = 60;
    publish_numbered(&publisher, &format!("{b}/in"), N).await;
    // Let the broker queue all of them for the session.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut client = connected(c.clone()).await;
    let first = next_delivery(&mut client.deliveries).await;
    // Give the broker time to send its backlog, more than the channel holds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let confirmed = timeout(
        Duration::from_secs(5),
        client
            .client
            .publish(publish(0, &format!("{b}/out"), "out", &[])),
    )
    .await;
    assert!(
        matches!(confirmed, Ok(Ok(None))),
        "the publish was confirmed while the host held its delivery: {confirmed:?}"
    );
    let mut texts = vec![first.message.text.clone().unwrap()];
    first.settler.settle(Settle::Accept);
    while texts.len() < N {
        let d = next_delivery(&mut client.deliveries).await;
        texts.push(d.message.text.clone().unwrap());
        d.settler.settle(Settle::Accept);
    }
    let expected: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected, "every message once, in order");
    client.client.close().await;

    // Remove the persistent session from the broker.
    let (cleaner, _) = plain3(&client_id, None, true).await;
    cleaner.disconnect().await.unwrap();
}

/// Reads one MQTT packet (fixed header, remaining length, body) from a socket.
async fn read_packet(socket: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let kind = socket.read_u8().await.unwrap();
    let (mut length, mut shift) = (0usize, 0);
    loop {
        let byte = socket.read_u8().await.unwrap();
        length |= ((byte & 0x7f) as usize) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0; length];
    socket.read_exact(&mut body).await.unwrap();
    (kind, body)
}

/// Messages settled in reverse order are acknowledged in the order they arrived (MQTT-4.6.0-2):
/// a broker of the test's own sends three QoS 1 PUBLISHes and reads the PUBACKs.
#[tokio::test]
async fn acks_go_out_in_arrival_order_whatever_the_settlement_order() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let broker = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let (connect, _) = read_packet(&mut socket).await;
        assert_eq!(connect >> 4, 1, "CONNECT");
        socket.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap();
        let (subscribe, body) = read_packet(&mut socket).await;
        assert_eq!(subscribe >> 4, 8, "SUBSCRIBE");
        socket
            .write_all(&[0x90, 0x03, body[0], body[1], 0x01])
            .await
            .unwrap();
        for pkid in 1u8..=3 {
            let topic = b"in";
            let payload = format!("m{pkid}");
            let mut packet = vec![0x32, (2 + topic.len() + 2 + payload.len()) as u8, 0, 2];
            packet.extend_from_slice(topic);
            packet.extend_from_slice(&[0, pkid]);
            packet.extend_from_slice(payload.as_bytes());
            socket.write_all(&packet).await.unwrap();
        }
        let mut acked = Vec::new();
        while acked.len() < 3 {
            let (kind, body) = read_packet(&mut socket).await;
            if kind >> 4 == 4 {
                acked.push(body[1]);
            }
        }
        acked
    });
    let mut c = config(Protocol::Mqtt3, "ack-order");
    c.uri = format!("tcp://127.0.0.1:{port}");
    c.sources = vec![source(0, &["in".to_string()], 1, true)];
    let mut conn = connected(c).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(next_delivery(&mut conn.deliveries).await);
    }
    while let Some(d) = held.pop() {
        d.settler.settle(Settle::Accept);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let acked = timeout(WAIT, broker).await.unwrap().unwrap();
    assert_eq!(acked, [1, 2, 3]);
}
