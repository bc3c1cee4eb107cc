//! Kafka, as Ditto's Kafka 2.x binding (`connectivity-protocol-bindings-kafka2`), on librdkafka
//! (the `rdkafka` crate, built with its bundled librdkafka).
//!
//! - **URI and `specificConfig`.** `tcp://` or `ssl://[user:password@]host:port`; the
//!   bootstrap servers are the URI's host and port plus `bootstrapServers` (required,
//!   `host:port[,host:port]`). With a user and password the client authenticates with SASL
//!   (`saslMechanism`: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`). `ssl://` is TLS (OpenSSL in
//!   librdkafka): the connection's `ca` (else the system's certificate authorities), its
//!   client certificate, `validateCertificates` (also the host name check). `groupId`
//!   (default: the connection id; `{{ connection:id }}` is resolved) and `consumerOffsetReset`
//!   (`earliest`, `latest`; the client's default is `latest`) apply to sources.
//! - **Sources.** Each address is a topic. Each source runs `consumerCount` consumers in one
//!   consumer group; Kafka spreads the topics' partitions over them (and over the consumers of
//!   every client). A record's headers become the message's headers, with `kafka.topic`,
//!   `kafka.key` (when it has one) and `kafka.timestamp`.
//! - **Settlement.** `qos` 1: a record's offset is committed once the host settled it and every
//!   record before it in its partition (offsets are stored as they become contiguous, and
//!   committed every second and when the consumer closes). A record to be redelivered ends
//!   the client (`Restarting because of rejected message.`): the host connects again after 1 s
//!   and the consumers resume at the last committed offsets, as Ditto restarts its consumer
//!   stream. `qos` 0 (Ditto's default): the offset is committed on receipt, at most once.
//!   Unsettled records per consumer are bounded by `max_in_flight`.
//! - **Targets.** `topic`, `topic/key` or `topic#partition` (the key is looked for first), after
//!   the host resolved the placeholders. The message's headers go as record headers, with
//!   `ditto-connection-id`. A publish is confirmed when the broker acknowledged the record
//!   (`acks=all`; the idempotent producer keeps the order of a partition's records).

use crate::uri::BrokerUri;
use crate::{
    BoxFuture, BrokerClient, ClientConfig, ClientEvent, Confirmation, Connected, Delivery,
    ErrorKind, Publish, Settle, Settler, SourceSpec, TransportError, decided,
};
use ferrule_protocol::headers::value_to_header_string;
use ferrule_protocol::{ExternalMessage, Headers};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig as KafkaConfig;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The header every published record carries.
pub const CONNECTION_ID_HEADER: &str = "ditto-connection-id";
/// How long the host waits before it connects again after a record asked for redelivery.
const REDELIVERY_DELAY: Duration = Duration::from_secs(1);
/// Ditto's producer `delivery.timeout.ms` / `request.timeout.ms`.
const DELIVERY_TIMEOUT_MS: &str = "10000";

fn misconfigured(message: impl Into<String>) -> TransportError {
    TransportError::new(ErrorKind::Misconfigured, message)
}

/// What a Kafka client is configured with.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    bootstrap: String,
    group_id: String,
    offset_reset: Option<String>,
    /// With SASL: the mechanism, user and password.
    sasl: Option<(String, String, String)>,
    /// With TLS (`ssl://`).
    tls: Option<Tls>,
}

/// The TLS of a Kafka client.
#[derive(Debug, Clone, PartialEq)]
struct Tls {
    /// The trusted certificates (PEM); `None`: the system's.
    ca: Option<String>,
    /// The client certificate and its key (PEM).
    client: Option<(String, String)>,
    /// Whether the broker's certificate and name are checked.
    verify: bool,
}

const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-512", "SCRAM-SHA-256"];

/// Ditto's `BOOTSTRAP_SERVERS_PATTERN`: `host:port` separated by commas (blanks allowed).
fn bootstrap_servers_valid(servers: &str) -> bool {
    let trimmed = servers.trim();
    if trimmed.is_empty() || trimmed.starts_with(',') || trimmed.ends_with(',') {
        return false;
    }
    trimmed.split(',').all(|server| {
        let server = server.trim();
        let Some((host, port)) = server.rsplit_once(':') else {
            return false;
        };
        !host.is_empty()
            && host
                .split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    })
}

fn settings(config: &ClientConfig) -> Result<Settings, TransportError> {
    let uri = BrokerUri::parse(&config.uri)?;
    let specific = &config.specific_config;
    let servers = specific.get("bootstrapServers");
    if !servers.is_some_and(|s| bootstrap_servers_valid(s)) {
        return Err(misconfigured(format!(
            "The provided list of bootstrap servers '{}' is not valid",
            servers.map_or("null", String::as_str)
        )));
    }
    let mut bootstrap = vec![uri.authority()];
    for server in servers.into_iter().flat_map(|s| s.split(',')) {
        let server = server.trim().to_string();
        if !bootstrap.contains(&server) {
            bootstrap.push(server);
        }
    }
    let sasl = match (&uri.username, &uri.password) {
        (Some(user), Some(password)) => {
            let given = specific
                .get("saslMechanism")
                .map_or("PLAIN".to_string(), |m| m.trim().to_ascii_uppercase());
            if !SASL_MECHANISMS.contains(&given.as_str()) {
                return Err(misconfigured(format!(
                    "The connection configuration contains an invalid value for SASL mechanisms: \
                     {}. Allowed mechanisms are: <[{}]>",
                    specific.get("saslMechanism").map_or("", String::as_str),
                    SASL_MECHANISMS.join(", ")
                )));
            }
            Some((given, user.clone(), password.clone()))
        }
        _ => None,
    };
    let has_sources = !config.sources.is_empty();
    let group_id = match specific.get("groupId") {
        Some(g) if has_sources => {
            let resolved = resolve_connection_id(g, &config.connection_id);
            let valid = !resolved.is_empty()
                && resolved
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !valid {
                return Err(misconfigured(
                    "The connection configuration contains an invalid value for the consumer \
                     group ID. Allowed Characters are: <[a-zA-Z0-9\\._\\-]>",
                ));
            }
            resolved
        }
        _ => config.connection_id.clone(),
    };
    let offset_reset = match specific.get("consumerOffsetReset") {
        Some(r) if has_sources => {
            let r = r.trim().to_ascii_lowercase();
            if r != "earliest" && r != "latest" {
                return Err(misconfigured(
                    "The connection configuration contains an invalid value for the consumer \
                     offset reset. Allowed values are: <[earliest, latest]>",
                ));
            }
            Some(r)
        }
        _ => None,
    };
    let tls = uri.secure.then(|| Tls {
        ca: config.ca.clone().filter(|c| !c.trim().is_empty()),
        client: config.client_cert.clone(),
        verify: config.validate_certificates,
    });
    Ok(Settings {
        bootstrap: bootstrap.join(","),
        group_id,
        offset_reset,
        sasl,
        tls,
    })
}

/// `text` with every `{{ ... }}` replaced by what `with` makes of its trimmed inside (`None`:
/// the placeholder stays as it is).
fn substitute(text: &str, with: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        let placeholder = &rest[start..start + end + 2];
        match with(rest[start + 2..start + end].trim()) {
            Some(value) => out.push_str(&value),
            None => out.push_str(placeholder),
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

/// `{{ connection:id }}` (blanks allowed) replaced by the connection's id.
fn resolve_connection_id(template: &str, connection_id: &str) -> String {
    substitute(template, |inner| {
        (inner == "connection:id").then(|| connection_id.to_string())
    })
}

/// Kafka's `Topic.validate`.
fn topic_error(topic: &str) -> Option<String> {
    if topic.is_empty() {
        return Some("Topic name is illegal, it can't be empty".into());
    }
    if topic == "." || topic == ".." {
        return Some("Topic name cannot be \".\" or \"..\"".into());
    }
    if topic.len() > 249 {
        return Some(format!(
            "Topic name is illegal, it can't be longer than 249 characters, topic name: {topic}"
        ));
    }
    let legal = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    (!topic.bytes().all(legal)).then(|| {
        format!(
            "Topic name is invalid: '{topic}' contains one or more characters other than ASCII \
             alphanumerics, '.', '_' and '-'"
        )
    })
}

fn check_topic(topic: &str, shown: &str) -> Result<(), TransportError> {
    if topic.is_empty() {
        return Err(misconfigured(
            "The provided topic in your target address may not be empty.",
        ));
    }
    match topic_error(topic) {
        Some(e) => Err(misconfigured(format!(
            "The provided topic '{shown}' is not valid: {e}"
        ))),
        None => Ok(()),
    }
}

/// Where a record goes: the topic, and a key or a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Destination {
    Topic(String),
    Keyed(String, String),
    Partition(String, i32),
}

/// Ditto's `KafkaPublishTarget`: `topic/key` (split at the first `/`), else `topic#partition`,
/// else the topic.
fn destination(address: &str) -> Result<Destination, TransportError> {
    let empty = |what: &str| {
        misconfigured(format!(
            "The provided {what} in your target address may not be empty."
        ))
    };
    if let Some(i) = address.find('/').filter(|i| *i > 0) {
        let (topic, key) = (&address[..i], &address[i + 1..]);
        if key.is_empty() {
            return Err(empty("key"));
        }
        return Ok(Destination::Keyed(topic.into(), key.into()));
    }
    if let Some(i) = address.find('#').filter(|i| *i > 0) {
        let (topic, partition) = (&address[..i], &address[i + 1..]);
        if partition.is_empty() {
            return Err(empty("partition"));
        }
        let partition = partition.parse::<i32>().map_err(|_| {
            misconfigured(format!("Can not parse partition number from {partition}."))
        })?;
        return Ok(Destination::Partition(topic.into(), partition));
    }
    if address.is_empty() {
        return Err(empty("topic"));
    }
    Ok(Destination::Topic(address.into()))
}

/// A target address as the host will resolve it: every placeholder stands for a valid value
/// (Ditto's validator puts in a UUID, and 3 for a partition).
fn check_target_address(address: &str) -> Result<(), TransportError> {
    let concrete = substitute(address, |_| Some("3".into()));
    let topic = match destination(&concrete)? {
        Destination::Topic(t) | Destination::Keyed(t, _) | Destination::Partition(t, _) => t,
    };
    let shown = address.split(['/', '#']).next().unwrap_or(address);
    check_topic(&topic, shown)
}

/// What can be checked of a Kafka connection without a broker (Ditto's `KafkaValidator`).
pub fn check_config(config: &ClientConfig) -> Result<(), TransportError> {
    settings(config)?;
    for source in &config.sources {
        for address in &source.addresses {
            check_topic(address, address)?;
        }
        if let Some(qos) = source.qos.filter(|q| *q > 1) {
            return Err(misconfigured(format!(
                "Invalid 'qos' value for Kafka source, supported are: <0> or <1>. Configured \
                 'qos' value was: <{qos}>"
            )));
        }
    }
    for target in &config.targets {
        check_target_address(&target.address)?;
    }
    Ok(())
}

/// Tells the host when every broker is gone, and keeps the last error librdkafka reported
/// (a failed TLS handshake, a refused login) for the message of a failed connect.
struct Context {
    events: mpsc::Sender<ClientEvent>,
    last_error: LastError,
}

type LastError = Arc<std::sync::Mutex<Option<String>>>;

impl Context {
    fn new(events: &mpsc::Sender<ClientEvent>, last_error: &LastError) -> Context {
        Context {
            events: events.clone(),
            last_error: last_error.clone(),
        }
    }
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        let all_down = error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown);
        if !all_down {
            // What went wrong with a broker (a failed TLS handshake, a refused login), not the
            // summary that follows it.
            *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_string());
        }
        if all_down {
            let _ = self
                .events
                .try_send(ClientEvent::Disconnected(TransportError::new(
                    ErrorKind::Closed,
                    format!("Broker may not be available: {reason}"),
                )));
        }
    }
}

impl ConsumerContext for Context {}

fn base_config(settings: &Settings, client_id: String) -> KafkaConfig {
    let mut c = KafkaConfig::new();
    c.set("bootstrap.servers", &settings.bootstrap)
        .set("client.id", client_id)
        // Loopback brokers are reached over IPv4 whatever `localhost` resolves to first.
        .set("broker.address.family", "v4")
        .set("socket.keepalive.enable", "true");
    let protocol = match (&settings.sasl, &settings.tls) {
        (Some(_), Some(_)) => "SASL_SSL",
        (Some(_), None) => "SASL_PLAINTEXT",
        (None, Some(_)) => "SSL",
        (None, None) => "PLAINTEXT",
    };
    c.set("security.protocol", protocol);
    if let Some((mechanism, user, password)) = &settings.sasl {
        c.set("sasl.mechanisms", mechanism)
            .set("sasl.username", user)
            .set("sasl.password", password);
    }
    if let Some(Tls { ca, client, verify }) = &settings.tls {
        match ca {
            Some(pem) => c.set("ssl.ca.pem", pem),
            // OpenSSL's default places and the usual paths of the system's authorities.
            None => c.set("ssl.ca.location", "probe"),
        };
        if let Some((cert, key)) = client {
            c.set("ssl.certificate.pem", cert).set("ssl.key.pem", key);
        }
        c.set("enable.ssl.certificate.verification", verify.to_string())
            .set(
                "ssl.endpoint.identification.algorithm",
                if *verify { "https" } else { "none" },
            );
    }
    c
}

fn kafka_error(e: &KafkaError, what: &str) -> TransportError {
    let kind = match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed,
        ) => ErrorKind::Unauthorized,
        Some(
            RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::RequestTimedOut,
        ) => ErrorKind::Unreachable,
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            ErrorKind::Misconfigured
        }
        _ => ErrorKind::Other,
    };
    TransportError::new(kind, format!("{what}: {e}"))
}

struct KafkaClient {
    producer: Option<FutureProducer<Context>>,
    connection_id: String,
    consumers: Vec<(Arc<StreamConsumer<Context>>, JoinHandle<()>)>,
}

impl BrokerClient for KafkaClient {
    fn publish(&self, publish: Publish) -> Confirmation {
        let Some(producer) = &self.producer else {
            return decided(Err(TransportError::new(
                ErrorKind::Closed,
                "the connection has no targets",
            )));
        };
        let destination = match destination(&publish.address) {
            Ok(d) => d,
            Err(e) => return decided(Err(TransportError::new(ErrorKind::Rejected, e.message))),
        };
        let message = &publish.message;
        let mut headers = OwnedHeaders::new();
        let mut has_content_type = false;
        for (name, value) in message.headers.iter() {
            has_content_type |= name.eq_ignore_ascii_case("content-type");
            let value = value_to_header_string(value);
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        if !has_content_type && let Some(ct) = &message.content_type {
            headers = headers.insert(Header {
                key: "content-type",
                value: Some(ct.as_bytes()),
            });
        }
        headers = headers.insert(Header {
            key: CONNECTION_ID_HEADER,
            value: Some(self.connection_id.as_bytes()),
        });
        let payload = message.payload();
        let (topic, key, partition) = match &destination {
            Destination::Topic(t) => (t.as_str(), None, None),
            Destination::Keyed(t, k) => (t.as_str(), Some(k.as_str()), None),
            Destination::Partition(t, p) => (t.as_str(), None, Some(*p)),
        };
        let mut record = FutureRecord::<str, [u8]>::to(topic)
            .payload(payload)
            .headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        match producer.send_result(record) {
            Ok(delivery) => Box::pin(async move {
                match delivery.await {
                    Ok(Ok(_)) => Ok(None),
                    Ok(Err((e, _))) => Err(TransportError::new(
                        ErrorKind::Rejected,
                        format!("Kafka did not take the record: {e}"),
                    )),
                    Err(_) => Err(TransportError::new(
                        ErrorKind::Closed,
                        "the Kafka producer was closed",
                    )),
                }
            }),
            Err((e, _)) => decided(Err(TransportError::new(
                ErrorKind::Rejected,
                format!("Kafka did not take the record: {e}"),
            ))),
        }
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let KafkaClient {
                producer,
                consumers,
                ..
            } = *self;
            for (_, task) in &consumers {
                task.abort();
            }
            // librdkafka closes synchronously: consumers commit their stored offsets and leave
            // their group, the producer delivers what it holds (up to 5 s).
            let _ = tokio::task::spawn_blocking(move || {
                if let Some(p) = &producer {
                    let _ = p.flush(Duration::from_secs(5));
                }
                for (consumer, _) in consumers {
                    consumer.unsubscribe();
                    drop(consumer);
                }
                drop(producer);
            })
            .await;
        })
    }
}

/// Offsets consumed and not yet stored, per partition: `true` once settled.
#[derive(Default)]
struct Unsettled(HashMap<(String, i32), BTreeMap<i64, bool>>);

impl Unsettled {
    fn consumed(&mut self, topic: &str, partition: i32, offset: i64) {
        self.0
            .entry((topic.to_string(), partition))
            .or_default()
            .insert(offset, false);
    }

    /// Marks an offset settled; the offset to store when the partition's settled prefix grew
    /// (the next offset to read).
    fn settled(&mut self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let offsets = self.0.get_mut(&(topic.to_string(), partition))?;
        if let Some(done) = offsets.get_mut(&offset) {
            *done = true;
        }
        let mut next = None;
        while let Some(entry) = offsets.first_entry() {
            if !*entry.get() {
                break;
            }
            next = Some(*entry.key() + 1);
            entry.remove();
        }
        next
    }
}

type Settled = BoxFuture<'static, (String, i32, i64, Settle)>;

/// One consumer's loop: records become deliveries while fewer than `max_in_flight` are
/// unsettled; settled offsets are stored as they become contiguous.
async fn consume(
    consumer: Arc<StreamConsumer<Context>>,
    source: SourceSpec,
    max_in_flight: usize,
    deliveries: mpsc::Sender<Delivery>,
    events: mpsc::Sender<ClientEvent>,
) {
    let mut unsettled = Unsettled::default();
    let mut settling: FuturesUnordered<Settled> = FuturesUnordered::new();
    loop {
        tokio::select! {
            Some((topic, partition, offset, settle)) = settling.next(), if !settling.is_empty() => {
                match settle {
                    Settle::Accept | Settle::Reject => {
                        if let Some(next) = unsettled.settled(&topic, partition, offset) {
                            // When the partition went to another consumer of the group, this
                            // fails and that consumer reads from the last committed offset: at
                            // least once.
                            let _ = consumer.store_offset(&topic, partition, next - 1);
                        }
                    }
                    Settle::Redeliver => {
                        let mut e = TransportError::new(
                            ErrorKind::Other,
                            "Restarting because of rejected message.",
                        );
                        e.retry_after = Some(REDELIVERY_DELAY);
                        let _ = events.send(ClientEvent::Disconnected(e)).await;
                        return;
                    }
                    Settle::Keep => {}
                }
            }
            received = consumer.recv(), if settling.len() < max_in_flight => {
                // Errors of the broker connection reach the context; librdkafka goes on.
                let Ok(m) = received else { continue };
                let (topic, partition, offset) = (m.topic().to_string(), m.partition(), m.offset());
                let mut headers = Headers::new();
                if let Some(hs) = m.headers() {
                    for h in hs.iter() {
                        headers.insert(h.key, String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned());
                    }
                }
                headers.insert("kafka.topic", topic.clone());
                if let Some(key) = m.key() {
                    headers.insert("kafka.key", String::from_utf8_lossy(key).into_owned());
                }
                if let Some(ts) = m.timestamp().to_millis() {
                    headers.insert("kafka.timestamp", ts.to_string());
                }
                let payload = m.payload().unwrap_or_default().to_vec();
                let content_type = headers.get_str("content-type");
                let message = ExternalMessage {
                    headers,
                    text: String::from_utf8(payload.clone()).ok(),
                    bytes: Some(payload),
                    content_type,
                };
                drop(m);
                let (settler, settled) = Settler::new();
                unsettled.consumed(&topic, partition, offset);
                if source.at_least_once {
                    let t = topic.clone();
                    settling.push(Box::pin(async move {
                        (t, partition, offset, settled.await.unwrap_or(Settle::Redeliver))
                    }));
                } else {
                    // At most once: stored now, whatever the host decides.
                    settling.push(Box::pin(std::future::ready((
                        topic.clone(),
                        partition,
                        offset,
                        Settle::Accept,
                    ))));
                }
                let delivery = Delivery {
                    source: source.index,
                    address: topic,
                    message,
                    unreadable: None,
                    settler,
                };
                if deliveries.send(delivery).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Checks that a broker answers within `timeout` (librdkafka connects lazily).
async fn reach(
    producer: &FutureProducer<Context>,
    last_error: &LastError,
    timeout: Duration,
    shown: &str,
) -> Result<(), TransportError> {
    let producer = producer.clone();
    let last_error = last_error.clone();
    let shown = shown.to_string();
    tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(None, timeout)
            .map(|_| ())
            .map_err(|e| {
                let mut error = kafka_error(&e, &format!("Kafka at {shown} did not answer"));
                let last = last_error.lock();
                if let Some(reason) = last.unwrap_or_else(|e| e.into_inner()).as_ref() {
                    error.message = format!("{} ({reason})", error.message);
                    if reason.contains("SASL authentication error") {
                        error.kind = ErrorKind::Unauthorized;
                    }
                }
                error
            })
    })
    .await
    .unwrap_or_else(|e| Err(TransportError::new(ErrorKind::Other, e.to_string())))
}

pub fn connect(config: ClientConfig) -> BoxFuture<'static, Result<Connected, TransportError>> {
    Box::pin(async move {
        let settings = settings(&config)?;
        let (events_tx, events) = mpsc::channel(8);
        let last_error = LastError::default();
        let client_id = format!("{}-{}", config.connection_id, config.client_index);
        let mut producer_config = base_config(&settings, format!("{client_id}-producer"));
        producer_config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("delivery.timeout.ms", DELIVERY_TIMEOUT_MS)
            .set("request.timeout.ms", DELIVERY_TIMEOUT_MS);
        let producer: FutureProducer<Context> = producer_config
            .create_with_context(Context::new(&events_tx, &last_error))
            .map_err(|e| misconfigured(format!("the Kafka client cannot be created: {e}")))?;
        reach(
            &producer,
            &last_error,
            config.connect_timeout,
            &settings.bootstrap,
        )
        .await?;
        let max_in_flight = usize::from(config.max_in_flight.max(1));
        let consumer_total: usize = config
            .sources
            .iter()
            .map(|s| s.consumer_count.max(1) as usize)
            .sum();
        let (deliveries_tx, deliveries) =
            mpsc::channel((max_in_flight * consumer_total.max(1)).max(1));
        let mut consumers = Vec::new();
        if !config.dry_run {
            for source in &config.sources {
                for n in 0..source.consumer_count.max(1) {
                    let mut c = base_config(
                        &settings,
                        format!("{client_id}-consumer-{}-{n}", source.index),
                    );
                    c.set("group.id", &settings.group_id)
                        .set("enable.auto.commit", "true")
                        .set("enable.auto.offset.store", "false")
                        .set("auto.commit.interval.ms", "1000")
                        .set("session.timeout.ms", "10000")
                        .set("heartbeat.interval.ms", "3000");
                    if let Some(reset) = &settings.offset_reset {
                        c.set("auto.offset.reset", reset);
                    }
                    let consumer: StreamConsumer<Context> = c
                        .create_with_context(Context::new(&events_tx, &last_error))
                        .map_err(|e| {
                            misconfigured(format!("the Kafka consumer cannot be created: {e}"))
                        })?;
                    let topics: Vec<&str> = source.addresses.iter().map(String::as_str).collect();
                    consumer
                        .subscribe(&topics)
                        .map_err(|e| kafka_error(&e, "subscribing failed"))?;
                    let consumer = Arc::new(consumer);
                    let task = tokio::spawn(consume(
                        consumer.clone(),
                        source.clone(),
                        max_in_flight,
                        deliveries_tx.clone(),
                        events_tx.clone(),
                    ));
                    consumers.push((consumer, task));
                }
            }
        }
        let producer = (!config.targets.is_empty()).then_some(producer);
        Ok(Connected {
            client: Box::new(KafkaClient {
                producer,
                connection_id: config.connection_id.clone(),
                consumers,
            }),
            deliveries,
            events,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Protocol, TargetSpec};

    fn config(uri: &str, specific: &[(&str, &str)]) -> ClientConfig {
        ClientConfig {
            connection_id: "kafka-conn".into(),
            sources: vec![SourceSpec {
                index: 0,
                addresses: vec!["telemetry".into()],
                qos: Some(1),
                consumer_count: 1,
                at_least_once: true,
            }],
            ..ClientConfig::for_test(Protocol::Kafka, uri, specific)
        }
    }

    #[test]
    fn bootstrap_servers_are_checked_and_merged_with_the_uri() {
        let s = settings(&config(
            "tcp://127.0.0.1:9092",
            &[("bootstrapServers", "127.0.0.1:9092, kafka-2.local:9093")],
        ))
        .unwrap();
        assert_eq!(s.bootstrap, "127.0.0.1:9092,kafka-2.local:9093");
        assert_eq!(s.group_id, "kafka-conn");
        for bad in ["", ",a:1", "a:1,", "a", "a:0", "a:99999", "a b:1"] {
            let e = settings(&config("tcp://h:9092", &[("bootstrapServers", bad)])).unwrap_err();
            assert_eq!(
                e.message,
                format!("The provided list of bootstrap servers '{bad}' is not valid")
            );
        }
        let e = settings(&config("tcp://h:9092", &[])).unwrap_err();
        assert!(e.message.contains("'null'"), "{}", e.message);
    }

    #[test]
    fn group_id_offset_reset_and_sasl_are_read_as_ditto_reads_them() {
        let base = [("bootstrapServers", "h:9092")];
        let with = |extra: &[(&str, &str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            settings(&config("tcp://user:secret@h:9092", &all))
        };
        let s = with(&[
            ("groupId", "{{ connection:id }}-readers"),
            ("consumerOffsetReset", "Earliest"),
        ])
        .unwrap();
        assert_eq!(s.group_id, "kafka-conn-readers");
        assert_eq!(s.offset_reset.as_deref(), Some("earliest"));
        assert_eq!(
            s.sasl,
            Some(("PLAIN".into(), "user".into(), "secret".into()))
        );
        assert!(
            with(&[("groupId", "a/b")])
                .unwrap_err()
                .message
                .contains("consumer group ID")
        );
        assert!(
            with(&[("consumerOffsetReset", "newest")])
                .unwrap_err()
                .message
                .contains("<[earliest, latest]>")
        );
        assert!(
            with(&[("saslMechanism", "GSSAPI")])
                .unwrap_err()
                .message
                .contains("invalid value for SASL mechanisms: GSSAPI")
        );
        let mut tls = config("ssl://h:9093", &base);
        tls.ca = Some("-----BEGIN CERTIFICATE-----".into());
        let s = settings(&tls).unwrap();
        assert_eq!(
            s.tls,
            Some(Tls {
                ca: Some("-----BEGIN CERTIFICATE-----".into()),
                client: None,
                verify: true
            })
        );
        assert_eq!(s.sasl, None);
        let s = with(&[("saslMechanism", "scram-sha-512")]).unwrap();
        assert_eq!(s.sasl.unwrap().0, "SCRAM-SHA-512");
    }

    #[test]
    fn sources_and_targets_are_checked_as_ditto_checks_them() {
        let mut c = config("tcp://h:9092", &[("bootstrapServers", "h:9092")]);
        check_config(&c).unwrap();
        c.sources[0].addresses = vec!["ditto/{{thing:id}}".into()];
        assert!(check_config(&c).unwrap_err().message.starts_with(
            "The provided topic 'ditto/{{thing:id}}' is not valid: Topic name is invalid"
        ));
        c.sources[0].addresses = vec!["events".into()];
        c.sources[0].qos = Some(2);
        assert_eq!(
            check_config(&c).unwrap_err().message,
            "Invalid 'qos' value for Kafka source, supported are: <0> or <1>. Configured 'qos' \
             value was: <2>"
        );
        c.sources[0].qos = Some(0);
        for ok in [
            "events",
            "ditto/{{thing:id}}",
            "{{thing:namespace}}/{{thing:name}}",
            "events#{{topic:full}}",
            "events#2",
            "ditto/{{header:x}}",
        ] {
            c.targets = vec![TargetSpec {
                index: 0,
                address: ok.into(),
                qos: None,
            }];
            assert!(check_config(&c).is_ok(), "{ok}");
        }
        for (bad, message) in [
            (
                "",
                "The provided topic in your target address may not be empty.",
            ),
            (
                "events/",
                "The provided key in your target address may not be empty.",
            ),
            (
                "ditto#",
                "The provided partition in your target address may not be empty.",
            ),
            (
                "ditto#notANumber",
                "Can not parse partition number from notANumber.",
            ),
        ] {
            c.targets = vec![TargetSpec {
                index: 0,
                address: bad.into(),
                qos: None,
            }];
            assert_eq!(check_config(&c).unwrap_err().message, message, "{bad}");
        }
    }

    #[test]
    fn destinations_take_the_key_first() {
        assert_eq!(
            destination("t/k#1/x").unwrap(),
            Destination::Keyed("t".into(), "k#1/x".into())
        );
        assert_eq!(
            destination("t#4").unwrap(),
            Destination::Partition("t".into(), 4)
        );
        assert_eq!(destination("t").unwrap(), Destination::Topic("t".into()));
        assert_eq!(
            destination("/t").unwrap(),
            Destination::Topic("/t".into()),
            "a separator at the start is part of the topic (and fails as one)"
        );
    }

    #[test]
    fn offsets_are_stored_as_their_settled_prefix_grows() {
        let mut u = Unsettled::default();
        for o in 10..15 {
            u.consumed("t", 0, o);
        }
        u.consumed("t", 1, 3);
        assert_eq!(u.settled("t", 0, 12), None, "10 and 11 are unsettled");
        assert_eq!(u.settled("t", 0, 10), Some(11));
        assert_eq!(u.settled("t", 0, 11), Some(13));
        assert_eq!(u.settled("t", 1, 3), Some(4));
        assert_eq!(u.settled("t", 0, 14), None);
        assert_eq!(u.settled("t", 0, 13), Some(15));
    }
}
