//! Kafka connections of the real binary against the Kafka-compatible brokers that
//! `scripts/kafka-broker` runs on 127.0.0.1:9092 (and with TLS on 9093; a test that cannot
//! reach them fails). The test
//! side is an independent librdkafka client (the `rdkafka` crate); every test uses topics and
//! consumer groups of its own.

mod common;

use common::{Ferrule, json, wait_for_live_status};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::time::timeout;

const BROKER: &str = "127.0.0.1:9092";
/// The broker with TLS (the test CA's server certificate), topics of its own.
const TLS_BROKER: &str = "127.0.0.1:9093";
/// The broker that requires SASL SCRAM (users `ferrule-scram512`, `ferrule-scram256`, password
/// `s3cret`), topics of its own.
const SASL_BROKER: &str = "127.0.0.1:9094";
const WAIT: Duration = Duration::from_secs(30);

fn unique(test: &str) -> String {
    common::unique(test, '-').replace(':', "-")
}

fn client_config() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", BROKER)
        .set("broker.address.family", "v4");
    c
}

/// A client of the TLS broker that trusts the test CA.
fn tls_client_config() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", TLS_BROKER)
        .set("broker.address.family", "v4")
        .set("security.protocol", "SSL")
        .set("ssl.ca.location", common::tls_file("ca.pem"));
    c
}

/// Creates topics of `partitions` partitions.
async fn topics(names: &[&str], partitions: i32) {
    topics_at(client_config(), names, partitions).await
}

async fn topics_at(config: ClientConfig, names: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .expect("an admin client of the broker on 127.0.0.1:9092");
    let new: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = timeout(WAIT, admin.create_topics(&new, &AdminOptions::new()))
        .await
        .expect("the Kafka broker on 127.0.0.1:9092 answers (scripts/kafka-broker starts it)")
        .expect("topics are created");
    for r in results {
        r.expect("the topic is created");
    }
}

fn producer() -> FutureProducer {
    producer_at(client_config())
}

fn producer_at(mut config: ClientConfig) -> FutureProducer {
    config.set("linger.ms", "0").create().expect("a producer")
}

async fn produce(
    p: &FutureProducer,
    topic: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: &Value,
) {
    let mut h = OwnedHeaders::new();
    for (k, v) in headers {
        h = h.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    let payload = body.to_string();
    p.send(
        FutureRecord::to(topic)
            .key(key)
            .payload(&payload)
            .headers(h),
        Duration::from_secs(10),
    )
    .await
    .expect("the record is produced");
}

/// A consumer of `topic` in a group of its own, from the earliest offset.
fn consumer(topic: &str) -> StreamConsumer {
    consumer_at(client_config(), topic)
}

fn consumer_at(mut config: ClientConfig, topic: &str) -> StreamConsumer {
    let c: StreamConsumer = config
        .set("group.id", format!("test-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .create()
        .expect("a consumer");
    c.subscribe(&[topic]).unwrap();
    c
}

/// One consumed record: key, headers, JSON body.
struct Record {
    partition: i32,
    key: Option<String>,
    headers: HashMap<String, String>,
    body: Value,
}

async fn next(c: &StreamConsumer) -> Record {
    let m = timeout(WAIT, c.recv())
        .await
        .expect("a record arrived in time")
        .expect("the consumer works");
    let mut headers = HashMap::new();
    if let Some(h) = m.headers() {
        for h in h.iter() {
            headers.insert(
                h.key.to_string(),
                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
            );
        }
    }
    Record {
        partition: m.partition(),
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        headers,
        body: serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or(Value::Null),
    }
}

/// A test's names: its unique word, its input and output topics, its connection's id.
fn names(test: &str) -> (String, String, String, String) {
    let u = unique(test);
    (
        format!("{u}-in"),
        format!("{u}-out"),
        format!("kafka-{u}"),
        u,
    )
}

/// A target that publishes the twin's events to `address`.
fn events_target(address: String) -> Value {
    json!([{"address": address, "topics": ["_/_/things/twin/events"],
            "authorizationContext": ["ditto:outbound"]}])
}

fn kafka_connection(sources: Value, targets: Value) -> Value {
    json!({
        "connectionType": "kafka",
        "connectionStatus": "open",
        "uri": format!("tcp://{BROKER}"),
        "specificConfig": {"bootstrapServers": BROKER, "consumerOffsetReset": "earliest"},
        "sources": sources,
        "targets": targets
    })
}

async fn metric(f: &Ferrule, id: &str, direction: &str, kind: &str) -> u64 {
    let m = json(f.get(&format!("/api/2/connections/{id}/metrics")).await).await;
    m["connectionMetrics"][direction][kind]["success"]["PT1H"]
        .as_u64()
        .unwrap_or(0)
}

/// A device's command on a Kafka topic changes the twin; the twin's event is published to
/// another topic with the thing as key, the mapped headers and `ditto-connection-id`; the
/// command's record headers and `kafka.*` headers are visible to placeholders.
#[tokio::test]
async fn a_kafka_record_changes_the_twin_and_its_event_is_published_with_key_and_headers() {
    let (_d, f) = common::live_server();
    let (input, output, id, u) = names("kafka-e2e");
    topics(&[&input, &output], 2).await;
    common::create_open(
        &f,
        &id,
        &kafka_connection(
            json!([{"addresses": [input.clone()], "qos": 1,
                    "authorizationContext": ["ditto:inbound"],
                    "headerMapping": {"correlation-id": "{{ header:correlation-id }}",
                                      "x-from": "{{ header:kafka.topic }}/{{ header:kafka.key }}",
                                      "x-site": "{{ header:site }}"}}]),
            json!([{"address": format!("{output}/{{{{ thing:id }}}}"),
                    "topics": ["_/_/things/twin/events"],
                    "authorizationContext": ["ditto:outbound"],
                    "headerMapping": {"x-thing": "{{ thing:id }}", "x-site": "{{ header:x-site }}",
                                      "correlation-id": "{{ header:correlation-id }}"}}]),
        ),
    )
    .await;
    let events = consumer(&output);
    let p = producer();
    let ns = u.replace('-', "_");
    let command = json!({"topic": format!("{ns}/pump/things/twin/commands/create"),
        "headers": {"correlation-id": "k-1"}, "path": "/",
        "value": {"attributes": {"rpm": 1200}}});
    produce(&p, &input, "pump-1", &[("site", "b1")], &command).await;
    let event = next(&events).await;
    let thing = format!("{ns}:pump");
    assert_eq!(event.key.as_deref(), Some(thing.as_str()));
    assert_eq!(
        event.body["topic"],
        format!("{ns}/pump/things/twin/events/created")
    );
    assert_eq!(event.body["value"]["attributes"]["rpm"], 1200);
    assert_eq!(event.headers["x-thing"], thing);
    assert_eq!(event.headers["x-site"], "b1", "{:?}", event.headers);
    assert_eq!(event.headers["correlation-id"], "k-1");
    assert_eq!(event.headers["ditto-connection-id"], id);
    let twin = json(f.get(&format!("/api/2/things/{thing}")).await).await;
    assert_eq!(twin["attributes"]["rpm"], 1200, "{twin}");
}

/// Under a burst (10,000 commands for 10 things over two partitions, produced as fast as the
/// client goes, each waiting for `twin-persisted`) nothing is lost and each thing's events leave in the order of its commands;
/// a second run of the connection reads on from the committed offsets (nothing twice), and
/// takes what was produced while it was closed.
#[tokio::test]
async fn a_burst_keeps_its_order_and_a_reopened_connection_resumes_at_the_committed_offsets() {
    let (_d, f) = common::live_server();
    let (input, output, id, u) = names("kafka-burst");
    topics(&[&input, &output], 2).await;
    let connection = kafka_connection(
        json!([{"addresses": [input.clone()], "qos": 1,
                "authorizationContext": ["ditto:inbound"],
                "acknowledgementRequests": {"includes": ["twin-persisted"]}}]),
        events_target(format!("{output}/{{{{ thing:id }}}}")),
    );
    common::create_open(&f, &id, &connection).await;
    let ns = u.replace('-', "_");
    let things: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    for t in &things {
        let resp = f
            .put_json(
                &format!("/api/2/things/{ns}:{t}"),
                &json!({"attributes": {"n": -1}}),
            )
            .await;
        assert!(resp.status().is_success());
    }
    let events = consumer(&output);
    let p = producer();
    const N: usize = 10_000;
    let modify = |t: &str, n: usize| {
        json!({"topic": format!("{ns}/{t}/things/twin/commands/modify"),
               "headers": {"correlation-id": format!("{t}-{n}")},
               "path": "/attributes/n", "value": n})
    };
    let sends: Vec<_> = (0..N)
        .map(|n| {
            let t = &things[n % things.len()];
            // The thing is the key: its commands share a partition, in order.
            let record = modify(t, n).to_string();
            let key = t.clone();
            let p = p.clone();
            let topic = input.clone();
            async move {
                p.send(
                    FutureRecord::to(&topic).key(&key).payload(&record),
                    Duration::from_secs(30),
                )
                .await
                .expect("produced");
            }
        })
        .collect();
    futures_util::future::join_all(sends).await;
    let mut seen: HashMap<String, Vec<i64>> = HashMap::new();
    let mut modified = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while modified < N {
        assert!(Instant::now() < deadline, "{modified} of {N} events");
        let r = next(&events).await;
        let topic = r.body["topic"].as_str().unwrap_or_default().to_string();
        if topic.ends_with("/modified") {
            modified += 1;
            let thing = r.key.unwrap_or_default();
            seen.entry(thing)
                .or_default()
                .push(r.body["value"].as_i64().unwrap());
        }
    }
    for (i, t) in things.iter().enumerate() {
        let expected: Vec<i64> = (0..N)
            .filter(|n| n % things.len() == i)
            .map(|n| n as i64)
            .collect();
        assert_eq!(seen[&format!("{ns}:{t}")], expected, "thing {t}");
    }
    let consumed = metric(&f, &id, "inbound", "consumed").await;
    assert_eq!(consumed, N as u64, "each record consumed once");
    assert_eq!(
        metric(&f, &id, "inbound", "acknowledged").await,
        N as u64,
        "each record acknowledged by twin-persisted"
    );

    // Closed, records arrive; opened, only those are consumed.
    assert_eq!(
        f.command(&id, "connectivity.commands:closeConnection")
            .await
            .status(),
        StatusCode::OK
    );
    wait_for_live_status(&f, &id, "closed").await;
    for n in 0..5 {
        produce(&p, &input, "t0", &[], &modify("t0", N + n)).await;
    }
    assert_eq!(
        f.command(&id, "connectivity.commands:openConnection")
            .await
            .status(),
        StatusCode::OK
    );
    let mut later = Vec::new();
    while later.len() < 5 {
        let r = next(&events).await;
        if r.body["topic"]
            .as_str()
            .is_some_and(|t| t.ends_with("/modified"))
        {
            later.push(r.body["value"].as_i64().unwrap());
        }
    }
    assert_eq!(later, (N as i64..N as i64 + 5).collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        metric(&f, &id, "inbound", "consumed").await,
        N as u64 + 5,
        "nothing before the committed offsets was consumed again"
    );
}

/// A target with a partition in its address publishes there, and its issued acknowledgement
/// answers the source that requested it once the broker took the record: the source's record
/// is acknowledged (and its offset committed) only then.
#[tokio::test]
async fn a_target_writes_to_its_partition_and_acknowledges_what_the_broker_took() {
    let (_d, f) = common::live_server();
    let (input, output, id, u) = names("kafka-acks");
    topics(&[&input, &output], 3).await;
    common::create_open(
        &f,
        &id,
        &kafka_connection(
            json!([{"addresses": [input.clone()], "qos": 1,
                    "authorizationContext": ["ditto:inbound"],
                    "acknowledgementRequests": {"includes": [format!("{id}:written")]}}]),
            json!([{"address": format!("{output}#2"),
                    "topics": ["_/_/things/twin/events"],
                    "authorizationContext": ["ditto:outbound"],
                    "issuedAcknowledgementLabel": "{{connection:id}}:written"}]),
        ),
    )
    .await;
    let events = consumer(&output);
    let ns = u.replace('-', "_");
    let command = json!({"topic": format!("{ns}/fan/things/twin/commands/create"),
        "headers": {"correlation-id": "a-1"}, "path": "/", "value": {}});
    produce(&producer(), &input, "fan", &[], &command).await;
    let event = next(&events).await;
    assert_eq!(event.partition, 2);
    assert_eq!(event.key, None);
    assert_eq!(
        event.body["topic"],
        format!("{ns}/fan/things/twin/events/created")
    );
    let deadline = Instant::now() + WAIT;
    while metric(&f, &id, "inbound", "acknowledged").await < 1 {
        assert!(Instant::now() < deadline, "the record was not acknowledged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = json(f.get(&format!("/api/2/connections/{id}/metrics")).await).await;
    assert_eq!(
        m["connectionMetrics"]["inbound"]["acknowledged"]["failure"]["PT1H"], 0,
        "{m}"
    );
    assert_eq!(
        m["connectionMetrics"]["outbound"]["published"]["success"]["PT1H"], 1,
        "{m}"
    );
}

/// `ssl://`: records travel both ways over TLS when the connection's `ca` vouches for the
/// broker's certificate; without it the certificate is refused and the dry run says why.
#[tokio::test]
async fn records_travel_over_tls_to_a_broker_the_ca_vouches_for() {
    let (_d, f) = common::live_server();
    let (input, output, id, u) = names("kafka-tls");
    topics_at(tls_client_config(), &[&input, &output], 1).await;
    let ca = std::fs::read_to_string(common::tls_file("ca.pem")).unwrap();
    let mut connection = kafka_connection(
        json!([{"addresses": [input.clone()], "qos": 1,
                "authorizationContext": ["ditto:inbound"]}]),
        events_target(format!("{output}/{{{{ thing:id }}}}")),
    );
    connection["uri"] = json!(format!("ssl://{TLS_BROKER}"));
    connection["specificConfig"]["bootstrapServers"] = json!(TLS_BROKER);
    connection["validateCertificates"] = json!(true);
    let untrusted = connection.clone();
    connection["ca"] = json!(ca);
    let body = json(
        f.post_json("/api/2/connections?dry-run=true", &untrusted)
            .await,
    )
    .await;
    assert_eq!(body["error"], "connectivity:connection.failed", "{body}");
    assert!(
        body["description"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase()
            .contains("certificate")
            || body["message"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase()
                .contains("certificate"),
        "the refusal names the certificate: {body}"
    );
    common::create_open(&f, &id, &connection).await;
    let events = consumer_at(tls_client_config(), &output);
    let ns = u.replace('-', "_");
    let command = json!({"topic": format!("{ns}/lock/things/twin/commands/create"),
        "headers": {"correlation-id": "s-1"}, "path": "/", "value": {"attributes": {"locked": true}}});
    produce(
        &producer_at(tls_client_config()),
        &input,
        "lock",
        &[],
        &command,
    )
    .await;
    let event = next(&events).await;
    assert_eq!(
        event.body["topic"],
        format!("{ns}/lock/things/twin/events/created")
    );
    assert_eq!(event.key.as_deref(), Some(format!("{ns}:lock").as_str()));
}

/// SASL: a user of the broker logs in with SCRAM-SHA-512 or -256 (`saslMechanism`), and
/// records travel; a wrong password is a 401 with the broker's refusal.
#[tokio::test]
async fn a_sasl_user_logs_in_with_scram_and_a_wrong_password_is_refused() {
    let (_d, f) = common::live_server();
    let u = unique("kafka-sasl");
    let output = format!("{u}-out");
    let mut admin = client_config();
    admin
        .set("bootstrap.servers", SASL_BROKER)
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanisms", "SCRAM-SHA-512")
        .set("sasl.username", "ferrule-scram512")
        .set("sasl.password", "s3cret");
    topics_at(admin.clone(), &[&output], 1).await;
    let connection = |user: &str, password: &str, mechanism: &str| {
        let mut c = kafka_connection(
            json!([]),
            events_target(format!("{output}/{{{{ thing:id }}}}")),
        );
        c["uri"] = json!(format!("tcp://{user}:{password}@{SASL_BROKER}"));
        c["specificConfig"] = json!({"bootstrapServers": SASL_BROKER, "saslMechanism": mechanism});
        c
    };
    let resp = f
        .post_json(
            "/api/2/connections?dry-run=true",
            &connection("ferrule-scram256", "s3cret", "SCRAM-SHA-256"),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", json(resp).await);
    let body = json(
        f.post_json(
            "/api/2/connections?dry-run=true",
            &connection("ferrule-scram512", "wrong", "SCRAM-SHA-512"),
        )
        .await,
    )
    .await;
    assert_eq!(body["status"], 401, "{body}");
    assert_eq!(
        body["error"], "connectivity:connection.unauthorized",
        "{body}"
    );

    let id = format!("kafka-{u}");
    common::create_open(
        &f,
        &id,
        &connection("ferrule-scram512", "s3cret", "scram-sha-512"),
    )
    .await;
    let events = consumer_at(admin, &output);
    let ns = u.replace('-', "_");
    let thing = format!("{ns}:gate");
    let resp = f
        .put_json(
            &format!("/api/2/things/{thing}"),
            &json!({"attributes": {"open": true}}),
        )
        .await;
    assert!(resp.status().is_success());
    let event = next(&events).await;
    assert_eq!(event.key.as_deref(), Some(thing.as_str()));
    assert_eq!(event.body["value"]["attributes"]["open"], true);
}

/// A record whose requested acknowledgement fails with a status worth a redelivery (408: a
/// live message nobody answers) is consumed again: the client restarts and reads from the
/// last committed offset, as Ditto's consumer stream restarts.
#[tokio::test]
async fn a_record_that_needs_redelivery_is_consumed_again() {
    let (_d, f) = common::live_server();
    let u = unique("kafka-redeliver");
    let input = format!("{u}-in");
    topics(&[&input], 1).await;
    let id = format!("kafka-{u}");
    common::create_open(
        &f,
        &id,
        &kafka_connection(
            json!([{"addresses": [input.clone()], "qos": 1,
                    "authorizationContext": ["ditto:inbound"]}]),
            json!([]),
        ),
    )
    .await;
    let ns = u.replace('-', "_");
    let message = json!({"topic": format!("{ns}/x/things/live/messages/ask"),
        "headers": {"correlation-id": "r-1", "timeout": "500ms"},
        "path": "/inbox/messages/ask", "value": "anyone?"});
    produce(&producer(), &input, "x", &[], &message).await;
    let deadline = Instant::now() + WAIT;
    loop {
        if metric(&f, &id, "inbound", "consumed").await >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the record was not consumed again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = f.delete(&format!("/api/2/connections/{id}")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}

/// Dry runs connect to the broker; configurations Ditto's `KafkaValidator` refuses are
/// refused with its messages.
#[tokio::test]
async fn kafka_connections_are_tested_and_validated_as_ditto_does() {
    let (_d, f) = common::live_server();
    let good = kafka_connection(
        json!([{"addresses": ["some-topic"], "authorizationContext": ["ditto:inbound"]}]),
        json!([{"address": "events/{{ thing:id }}", "topics": ["_/_/things/twin/events"],
                "authorizationContext": ["ditto:outbound"]}]),
    );
    let resp = f.post_json("/api/2/connections?dry-run=true", &good).await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", json(resp).await);
    // The example connection of the README, as it is.
    let example: Value = serde_json::from_str(include_str!("../examples/connections/kafka.json"))
        .expect("examples/connections/kafka.json is JSON");
    let resp = f
        .post_json("/api/2/connections?dry-run=true", &example)
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", json(resp).await);

    let closed = common::free_port();
    let mut unreachable = good.clone();
    unreachable["uri"] = json!(format!("tcp://127.0.0.1:{closed}"));
    unreachable["specificConfig"]["bootstrapServers"] = json!(format!("127.0.0.1:{closed}"));
    let body = json(
        f.post_json("/api/2/connections?dry-run=true", &unreachable)
            .await,
    )
    .await;
    assert_eq!(body["error"], "connectivity:connection.failed", "{body}");

    for (mutate, message) in [
        (
            json!({"specificConfig": {"bootstrapServers": "nohost"}}),
            "The provided list of bootstrap servers 'nohost' is not valid",
        ),
        (
            json!({"sources": [{"addresses": ["ditto/{{thing:id}}"],
                                "authorizationContext": ["ditto:inbound"]}]}),
            "The provided topic 'ditto/{{thing:id}}' is not valid",
        ),
        (
            json!({"targets": [{"address": "ditto#notANumber", "topics": ["_/_/things/twin/events"],
                                "authorizationContext": ["ditto:outbound"]}]}),
            "Can not parse partition number from notANumber.",
        ),
        (
            json!({"sources": [{"addresses": ["t"], "qos": 2,
                                "authorizationContext": ["ditto:inbound"]}]}),
            "Invalid 'qos' value for Kafka source",
        ),
    ] {
        let mut bad = good.clone();
        for (k, v) in mutate.as_object().unwrap() {
            bad[k] = v.clone();
        }
        let resp = f.post_json("/api/2/connections", &bad).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let body = json(resp).await;
        assert_eq!(
            body["error"], "connectivity:connection.configuration.invalid",
            "{body}"
        );
        assert!(
            body["message"].as_str().unwrap().contains(message),
            "{body}"
        );
    }
}
