//! Integration tests of MQTT over TLS (`ssl://`) against the Mosquitto with TLS that
//! `scripts/brokers` (`scripts/tls-broker`) starts: 127.0.0.1:8883 (server certificate of a test
//! CA for `localhost` and `127.0.0.1`) and 127.0.0.1:8884 (a client certificate of the test CA
//! required). The certificates are read from `/var/lib/ferrule-test-tls` (or
//! `$FERRULE_TLS_DIR`); a test fails when they or the broker are missing.

use ferrule_protocol::ExternalMessage;
use ferrule_transport::{
    ClientConfig, Connected, ErrorKind, Protocol, Publish, SourceSpec, TargetSpec, connect,
};
use std::time::Duration;
use tokio::time::timeout;

const TLS: &str = "ssl://127.0.0.1:8883";
const TLS_CLIENT_CERT: &str = "ssl://127.0.0.1:8884";
const WAIT: Duration = Duration::from_secs(5);

fn tls_dir() -> String {
    std::env::var("FERRULE_TLS_DIR").unwrap_or_else(|_| "/var/lib/ferrule-test-tls".into())
}

/// A file of the test CA's directory; panics (the test fails) when it is missing.
fn read(name: &str) -> String {
    let path = format!("{}/{name}", tls_dir());
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{path}: {e}; run scripts/brokers (as root) to create the test CA and start the TLS broker")
    })
}

fn base(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("ferrule-test/{test}/{}-{nanos}", std::process::id())
}

fn config(protocol: Protocol, id: &str, uri: &str) -> ClientConfig {
    ClientConfig {
        connection_id: id.replace('/', "-"),
        client_index: 0,
        protocol,
        uri: uri.into(),
        validate_certificates: true,
        ca: Some(read("ca.pem")),
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

async fn connected(c: ClientConfig) -> Connected {
    match connect(c).await {
        Ok(c) => c,
        Err(e) => panic!(
            "connecting to the TLS broker failed: {e:?} (is it up? run scripts/brokers as root)"
        ),
    }
}

async fn connect_err(c: ClientConfig) -> ferrule_transport::TransportError {
    match connect(c).await {
        Ok(_) => panic!("connecting succeeded, a failure was expected"),
        Err(e) => e,
    }
}

/// Publishes one message with a plain rumqttc client over TLS (trusting the test CA).
async fn plain_publish(topic: &str, payload: &str) {
    let tls = ferrule_transport::tls::client_config(Some(&read("ca.pem")), None, true).unwrap();
    let mut o = rumqttc::MqttOptions::new(format!("plain-{}", base("p")), "127.0.0.1", 8883);
    o.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(tls),
    ));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 10);
    client
        .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    let acked = timeout(WAIT, async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => return,
                Ok(_) => {}
                Err(e) => panic!("the plain TLS client failed: {e}"),
            }
        }
    })
    .await;
    assert!(acked.is_ok(), "the plain TLS client got no PUBACK");
    let _ = client.disconnect().await;
}

async fn consume_and_publish(protocol: Protocol, name: &str) {
    let topic = base(name);
    let mut c = config(protocol, &topic, TLS);
    c.sources = vec![SourceSpec {
        index: 0,
        addresses: vec![format!("{topic}/in")],
        qos: Some(1),
        consumer_count: 1,
        at_least_once: true,
    }];
    c.targets = vec![TargetSpec {
        index: 0,
        address: format!("{topic}/in"),
        qos: Some(1),
    }];
    let mut conn = connected(c).await;
    plain_publish(&format!("{topic}/in"), "over tls").await;
    let d = timeout(WAIT, conn.deliveries.recv())
        .await
        .expect("no delivery in time")
        .expect("deliveries closed");
    assert_eq!(d.address, format!("{topic}/in"));
    assert_eq!(d.message.text.as_deref(), Some("over tls"));
    d.settler.settle(ferrule_transport::Settle::Accept);
    // Publishing over TLS is confirmed (QoS 1) and comes back through the subscription.
    conn.client
        .publish(Publish {
            target: 0,
            address: format!("{topic}/in"),
            message: ExternalMessage::text("back"),
        })
        .await
        .expect("publish over TLS");
    let d = timeout(WAIT, conn.deliveries.recv())
        .await
        .expect("no delivery in time")
        .expect("deliveries closed");
    assert_eq!(d.message.text.as_deref(), Some("back"));
    d.settler.settle(ferrule_transport::Settle::Accept);
    conn.client.close().await;
}

#[tokio::test]
async fn tls_mqtt3_with_ca_consumes_and_publishes() {
    consume_and_publish(Protocol::Mqtt3, "tls-mqtt3").await;
}

#[tokio::test]
async fn tls_mqtt5_with_ca_consumes_and_publishes() {
    consume_and_publish(Protocol::Mqtt5, "tls-mqtt5").await;
}

#[tokio::test]
async fn tls_localhost_name_is_verified_too() {
    let c = config(
        Protocol::Mqtt3,
        &base("tls-localhost"),
        "ssl://localhost:8883",
    );
    connected(c).await.client.close().await;
}

#[tokio::test]
async fn tls_unknown_issuer_is_misconfigured_without_password() {
    for protocol in [Protocol::Mqtt3, Protocol::Mqtt5] {
        let _ = read("ca.pem");
        let mut c = config(
            protocol,
            &base("tls-unknown"),
            "ssl://user:s3cr3t-pw@127.0.0.1:8883",
        );
        c.ca = None;
        let e = connect_err(c).await;
        assert_eq!(e.kind, ErrorKind::Misconfigured, "{protocol:?}: {e:?}");
        assert!(e.message.contains("certificate"), "{}", e.message);
        assert!(e.message.contains("127.0.0.1:8883"), "{}", e.message);
        assert!(!e.message.contains("s3cr3t-pw"), "{}", e.message);
    }
}

#[tokio::test]
async fn tls_without_validation_connects_without_ca() {
    for protocol in [Protocol::Mqtt3, Protocol::Mqtt5] {
        let _ = read("ca.pem");
        let mut c = config(protocol, &base("tls-novalidate"), TLS);
        c.ca = None;
        c.validate_certificates = false;
        connected(c).await.client.close().await;
    }
}

#[tokio::test]
async fn tls_bad_ca_pem_is_misconfigured() {
    let mut c = config(Protocol::Mqtt3, &base("tls-badpem"), TLS);
    c.ca = Some("-----BEGIN CERTIFICATE-----\nnot base64 !!!\n-----END CERTIFICATE-----\n".into());
    let e = connect_err(c.clone()).await;
    assert_eq!(e.kind, ErrorKind::Misconfigured, "{e:?}");
    assert!(e.message.contains("ca"), "{}", e.message);
    c.ca = Some("no PEM at all".into());
    let e = connect_err(c).await;
    assert_eq!(e.kind, ErrorKind::Misconfigured, "{e:?}");
}

#[tokio::test]
async fn tls_client_certificate_required() {
    for protocol in [Protocol::Mqtt3, Protocol::Mqtt5] {
        let mut c = config(protocol, &base("tls-clientcert"), TLS_CLIENT_CERT);
        c.client_cert = Some((read("client.pem"), read("client.key")));
        connected(c.clone()).await.client.close().await;

        c.client_cert = None;
        let e = connect_err(c.clone()).await;
        assert_eq!(e.kind, ErrorKind::Misconfigured, "{protocol:?}: {e:?}");
        assert!(e.message.contains("certificate"), "{}", e.message);

        c.client_cert = Some((read("client.pem"), "not a key".into()));
        let e = connect_err(c).await;
        assert_eq!(e.kind, ErrorKind::Misconfigured, "{protocol:?}: {e:?}");
        assert!(e.message.contains("key"), "{}", e.message);
    }
}
