//! Integration tests of AMQP 0.9.1 and AMQP 1.0 over TLS (`amqps://`) against RabbitMQ's TLS
//! listener on 127.0.0.1:5671, which `scripts/brokers` (`scripts/rabbitmq-broker`) sets up: a
//! server certificate of the test CA (for `localhost` and `127.0.0.1`); a client certificate is
//! verified against the test CA when one is presented, and not required. The certificates are
//! read from `/var/lib/ferrule-test-tls` (or `$FERRULE_TLS_DIR`, see `scripts/tls-broker`); a
//! test fails when they or the broker are missing.
//!
//! Every test uses a queue of its own, declared over plain AMQP 0.9.1 on 127.0.0.1:5672 (with
//! `x-expires`, so a failed test leaves nothing behind for long) and deleted at the end; AMQP 1.0
//! reaches it as `/amq/queue/NAME`.

use ferrule_protocol::ExternalMessage;
use ferrule_transport::{
    ClientConfig, Connected, ErrorKind, Protocol, Publish, Settle, SourceSpec, TargetSpec,
    TransportError, connect,
};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use std::time::{Duration, Instant};
use tokio::time::timeout;

const TLS: &str = "amqps://guest:guest@127.0.0.1:5671";
const PLAIN: &str = "amqp://guest:guest@127.0.0.1:5672";
const WAIT: Duration = Duration::from_secs(5);
const PROTOCOLS: [Protocol; 2] = [Protocol::Amqp091, Protocol::Amqp10];

fn tls_dir() -> String {
    std::env::var("FERRULE_TLS_DIR").unwrap_or_else(|_| "/var/lib/ferrule-test-tls".into())
}

/// A file of the test CA's directory; panics (the test fails) when it is missing.
fn read(name: &str) -> String {
    let path = format!("{}/{name}", tls_dir());
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{path}: {e}; run scripts/brokers (as root) to create the test CA and set up RabbitMQ's TLS listener")
    })
}

fn unique(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("ferrule-test.{test}.{}-{nanos}", std::process::id())
}

fn config(protocol: Protocol, id: &str) -> ClientConfig {
    ClientConfig {
        connection_id: id.to_string(),
        client_index: 0,
        protocol,
        uri: TLS.into(),
        validate_certificates: true,
        ca: Some(read("ca.pem")),
        client_cert: None,
        credentials: None,
        specific_config: Default::default(),
        sources: vec![],
        targets: vec![],
        connect_timeout: Duration::from_secs(10),
        max_in_flight: 10,
        dry_run: false,
    }
}

/// The address of a queue for a source and for a target of `protocol`.
fn addresses(protocol: Protocol, queue: &str) -> (String, String) {
    match protocol {
        Protocol::Amqp10 => (format!("/amq/queue/{queue}"), format!("/amq/queue/{queue}")),
        _ => (queue.to_string(), format!("/{queue}")),
    }
}

/// A queue of the test's own, declared and deleted over plain AMQP 0.9.1.
struct Queue {
    name: String,
    connection: lapin::Connection,
    channel: lapin::Channel,
}

impl Queue {
    async fn new(test: &str) -> Queue {
        let connection = lapin::Connection::connect(
            &format!("{PLAIN}/%2f"),
            lapin::ConnectionProperties::default(),
        )
        .await
        .expect("RabbitMQ on 127.0.0.1:5672 must be reachable (run scripts/brokers)");
        let channel = connection.create_channel().await.unwrap();
        let name = unique(test);
        let mut arguments = FieldTable::default();
        arguments.insert("x-expires".into(), AMQPValue::LongInt(120_000));
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions::default(),
                arguments,
            )
            .await
            .unwrap();
        Queue {
            name,
            connection,
            channel,
        }
    }

    async fn delete(self) {
        let _ = self
            .channel
            .queue_delete(self.name.as_str().into(), QueueDeleteOptions::default())
            .await;
        let _ = self.connection.close(200, "OK".into()).await;
    }
}

async fn connected(c: ClientConfig) -> Connected {
    let protocol = c.protocol;
    match connect(c).await {
        Ok(c) => c,
        Err(e) => panic!(
            "{protocol:?}: connecting to RabbitMQ's TLS listener failed: {e:?} (is it up? run \
             scripts/brokers as root)"
        ),
    }
}

async fn connect_err(c: ClientConfig) -> TransportError {
    let protocol = c.protocol;
    match connect(c).await {
        Ok(c) => {
            c.client.close().await;
            panic!("{protocol:?}: connecting succeeded, a failure was expected")
        }
        Err(e) => e,
    }
}

/// Connects over TLS with source and target on a fresh queue, publishes a message and consumes
/// it again: both directions go over the TLS connection.
async fn round_trip(mut c: ClientConfig, test: &str) {
    let protocol = c.protocol;
    let queue = Queue::new(test).await;
    let (source, target) = addresses(protocol, &queue.name);
    c.sources = vec![SourceSpec {
        index: 0,
        addresses: vec![source.clone()],
        qos: None,
        consumer_count: 1,
        at_least_once: true,
    }];
    c.targets = vec![TargetSpec {
        index: 0,
        address: target.clone(),
        qos: None,
    }];
    let mut conn = connected(c).await;
    conn.client
        .publish(Publish {
            target: 0,
            address: target,
            message: ExternalMessage::text("over tls"),
        })
        .await
        .unwrap_or_else(|e| panic!("{protocol:?}: publish over TLS: {e:?}"));
    let d = timeout(WAIT, conn.deliveries.recv())
        .await
        .unwrap_or_else(|_| panic!("{protocol:?}: no delivery in time"))
        .expect("deliveries closed");
    assert_eq!(d.address, source, "{protocol:?}");
    assert_eq!(d.message.text.as_deref(), Some("over tls"), "{protocol:?}");
    d.settler.settle(Settle::Accept);
    conn.client.close().await;
    queue.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_amqp091_with_ca_publishes_and_consumes() {
    let c = config(Protocol::Amqp091, &unique("tls-091"));
    round_trip(c, "tls-091").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_amqp10_with_ca_publishes_and_consumes() {
    let c = config(Protocol::Amqp10, &unique("tls-10"));
    round_trip(c, "tls-10").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_localhost_name_is_verified_too() {
    for protocol in PROTOCOLS {
        let mut c = config(protocol, &unique("tls-localhost"));
        c.uri = "amqps://guest:guest@localhost:5671".into();
        connected(c).await.client.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_wrong_ca_is_misconfigured_without_password() {
    for protocol in PROTOCOLS {
        // A CA that did not issue the broker's certificate, and no CA (the system's roots).
        for ca in [Some(read("other-ca.pem")), None] {
            let mut c = config(protocol, &unique("tls-wrong-ca"));
            c.uri = "amqps://guest:s3cr3t-pw@127.0.0.1:5671".into();
            c.ca = ca.clone();
            let e = connect_err(c).await;
            let with = if ca.is_some() { "other CA" } else { "no CA" };
            assert_eq!(
                e.kind,
                ErrorKind::Misconfigured,
                "{protocol:?}, {with}: {e:?}"
            );
            assert!(
                e.message
                    .contains("unknown (untrusted) certificate authority"),
                "{protocol:?}, {with}: {}",
                e.message
            );
            assert!(e.message.contains("127.0.0.1:5671"), "{}", e.message);
            assert!(!e.message.contains("s3cr3t-pw"), "{}", e.message);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_amqp091_without_validation_accepts_an_untrusted_server() {
    let mut c = config(Protocol::Amqp091, &unique("tls-091-novalidate"));
    c.ca = Some(read("other-ca.pem"));
    c.validate_certificates = false;
    round_trip(c, "tls-091-novalidate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_amqp10_without_validation_accepts_an_untrusted_server() {
    let mut c = config(Protocol::Amqp10, &unique("tls-10-novalidate"));
    c.ca = None;
    c.validate_certificates = false;
    round_trip(c, "tls-10-novalidate").await;
}

/// The subject of the client certificate the broker saw on the connection whose
/// `rabbitmqctl list_connections` line mentions `marker`.
async fn peer_cert_subject(marker: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = tokio::process::Command::new("rabbitmqctl")
            .args([
                "list_connections",
                "-q",
                "--no-table-headers",
                "ssl",
                "peer_cert_subject",
                "client_properties",
            ])
            .output()
            .await
            .expect("rabbitmqctl must be available");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if let Some(line) = stdout.lines().find(|l| l.contains(marker)) {
            let mut fields = line.split('\t');
            assert_eq!(fields.next(), Some("true"), "not a TLS connection: {line}");
            return fields.next().unwrap_or_default().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "connection {marker} not listed: {stdout}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificate_is_presented() {
    for protocol in PROTOCOLS {
        let id = unique("tls-client-cert");
        let mut c = config(protocol, &id);
        c.client_cert = Some((read("client.pem"), read("client.key")));
        let conn = connected(c).await;
        // RabbitMQ 3.x lists no AMQP 1.0 connections; that the AMQP 1.0 client presents its
        // certificate shows in tls_client_certificate_of_another_ca_is_rejected.
        if protocol == Protocol::Amqp091 {
            // The connection name (a client property) tells the connection apart.
            let subject = peer_cert_subject(&format!("ferrule:{id}:0")).await;
            assert!(subject.contains("CN=ferrule-test-client"), "{subject}");
        }
        conn.client.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificate_of_another_ca_is_rejected() {
    for protocol in PROTOCOLS {
        let mut c = config(protocol, &unique("tls-client-cert-rejected"));
        c.client_cert = Some((read("other-client.pem"), read("other-client.key")));
        let e = connect_err(c).await;
        assert_eq!(e.kind, ErrorKind::Misconfigured, "{protocol:?}: {e:?}");
        // The broker's alert ("rejected the client certificate (UnknownCA)"), or, with TLS 1.3,
        // a reset that came before it ("probably rejected the client certificate").
        assert!(
            e.message.contains("rejected the client certificate"),
            "{protocol:?}: {}",
            e.message
        );
        assert!(e.message.contains("127.0.0.1:5671"), "{}", e.message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_bad_pem_is_misconfigured_before_connecting() {
    for protocol in PROTOCOLS {
        let mut c = config(protocol, &unique("tls-bad-pem"));
        // Nothing listens on port 1: the PEM is checked first.
        c.uri = "amqps://guest:guest@127.0.0.1:1".into();
        c.ca = Some("no PEM at all".into());
        let e = connect_err(c.clone()).await;
        assert_eq!(e.kind, ErrorKind::Misconfigured, "{protocol:?}: {e:?}");
        assert!(e.message.contains("ca"), "{}", e.message);

        c.ca = Some(read("ca.pem"));
        c.client_cert = Some((read("client.pem"), "not a key".into()));
        let e = connect_err(c).await;
        assert_eq!(e.kind, ErrorKind::Misconfigured, "{protocol:?}: {e:?}");
        assert!(e.message.contains("key"), "{}", e.message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_plain_port_is_misconfigured() {
    for protocol in PROTOCOLS {
        for validate in [true, false] {
            let mut c = config(protocol, &unique("tls-plain-port"));
            c.uri = "amqps://guest:guest@127.0.0.1:5672".into();
            c.validate_certificates = validate;
            let e = connect_err(c).await;
            assert_eq!(
                e.kind,
                ErrorKind::Misconfigured,
                "{protocol:?}, validate {validate}: {e:?}"
            );
            assert!(e.message.contains("127.0.0.1:5672"), "{}", e.message);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_unreachable_port_is_unreachable() {
    for protocol in PROTOCOLS {
        let mut c = config(protocol, &unique("tls-unreachable"));
        c.uri = "amqps://guest:guest@127.0.0.1:1".into();
        let e = connect_err(c).await;
        assert_eq!(e.kind, ErrorKind::Unreachable, "{protocol:?}: {e:?}");
    }
}
