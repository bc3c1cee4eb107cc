//! MQTT 3.1.1 and MQTT 5 clients (rumqttc; `rumqttc::v5` for MQTT 5).
//!
//! # Connecting
//! * URI `tcp://[user[:password]@]host[:port]` (default port 1883) or, with TLS,
//!   `ssl://[user[:password]@]host[:port]` (default port 8883); other schemes fail with
//!   [`ErrorKind::Misconfigured`].
//! * TLS (rustls with the *ring* provider, built by [`crate::tls::client_config`]): the server
//!   certificate must chain to `ca` (PEM, one or more certificates) or to the platform's trusted
//!   roots and be valid for the URI's host (name or IP address); `client_cert` (certificate
//!   chain and PKCS#8 key, PEM) authenticates the client when set; `validate_certificates =
//!   false` accepts any server certificate, as the user asked. Bad PEM, and handshake failures
//!   (unknown issuer, a certificate not valid for the host, expired, a client certificate the
//!   server requires or rejects), fail with [`ErrorKind::Misconfigured`] saying why.
//! * `specificConfig`: `clientId` (default: the connection id; MQTT 5 clients with
//!   `client_index` > 0 get `_<index>` appended; a dry run uses `<clientId>-dry-run-<random>` and a
//!   clean session), `cleanSession` (default `false`; MQTT 5 clean start), `keepAlive` (a
//!   duration as Ditto reads it, `60s`, `1m`, `500ms`, ...; a bare number is seconds, where
//!   Ditto reads milliseconds; whole seconds from 0 to 65,535, default 60; 0 disables it; the
//!   MQTT 5 client takes no value under 5 s, so there 0 is sent as 65,535 and 1–4 as 5), `lastWillTopic`/`lastWillQos`/`lastWillRetain`/`lastWillMessage`,
//!   `reconnectForRedelivery` (default `false`), `reconnectForRedeliveryDelay` (a duration as
//!   `keepAlive`, default 2 s, at least 1 s: how long after such a disconnect the host connects
//!   again, instead of its backoff), MQTT 5: `sessionExpiryInterval` (seconds; default
//!   0 with a clean session, else 60), `separatePublisherClient` (default `false`: one client
//!   consumes and publishes; `true`: a second connection with the client id `publisherId`
//!   (default `<clientId>p`, MQTT 5 clients with `client_index` > 0 `<clientId>p_<index>`) and no
//!   subscriptions and no last will publishes, so a slow consumer never delays publishes; either
//!   connection's loss ends both), `maximumPacketSize` (bytes, 1,024 to 268,435,460, default
//!   4 MiB, [`DEFAULT_MAXIMUM_PACKET_SIZE`]: the largest packet accepted from the broker, the
//!   name of the MQTT 5 property and of HiveMQ's client setting; MQTT 5 announces it in the
//!   CONNECT; a larger packet ends the connection before it is buffered; what Ferrule publishes
//!   may be up to 16 MiB, less when the broker's CONNACK says so). Invalid values fail with
//!   [`ErrorKind::Misconfigured`] naming the key.
//! * Failures within `connect_timeout`: refused / unknown host → `Unreachable`, CONNACK bad user
//!   name or password / not authorized → `Unauthorized`, timeout → `Timeout`, a SUBACK refusing a
//!   source's filter → `Misconfigured` (`Unauthorized` when MQTT 5 says not authorized). Messages
//!   name `host:port`, never the credentials.
//!
//! # Consuming
//! Every address (topic filter) of every source is subscribed with the source's `qos` (default 0).
//! A PUBLISH goes to the first source (in configuration order) with a filter matching its topic
//! (shared subscriptions `$share/<group>/<filter>` match by `<filter>`); `Delivery::address` is the
//! topic. The message carries
//!
//! | header | value |
//! |---|---|
//! | `mqtt.topic` | the topic |
//! | `mqtt.qos` | `0`, `1` or `2` |
//! | `mqtt.retain` | `true` / `false` |
//! | MQTT 5 user properties | as they are (first, so the ones below win) |
//! | `correlation-id` | MQTT 5 correlation data (UTF-8, lossy) |
//! | `reply-to` | MQTT 5 response topic |
//! | `content-type` | MQTT 5 content type (also `ExternalMessage::content_type`) |
//! | `mqtt.message-expiry-interval` | MQTT 5 message expiry interval (seconds) |
//!
//! The payload is always in `bytes`, and also in `text` when it is valid UTF-8 (Ditto's MQTT
//! clients hand bytes to mapping; text saves mappers a decode).
//!
//! # Settlement (manual acks)
//! * QoS 0: nothing to acknowledge.
//! * Sources not `at_least_once`: PUBACK/PUBREC at once, the settler is ignored.
//! * `at_least_once` sources, QoS 1/2: acknowledged when the settler says `Accept` or `Reject`.
//!   `Redeliver` (or a dropped settler): with `reconnectForRedelivery=true` the message is not
//!   acknowledged and the client disconnects (DISCONNECT, the session is kept when `cleanSession`
//!   is false) and reports [`ClientEvent::Disconnected`], so that the broker redelivers once the
//!   host reconnects; without it the message is acknowledged anyway, as Ditto does (an unacked
//!   message would hold one of the broker's in-flight slots until the next reconnect). `Keep`
//!   (the host closes the session): never acknowledged, so the broker sends it again when a
//!   kept session reconnects.
//! * Acks are sent in the order the messages arrived (MQTT-4.6.0-2), whatever the order they are
//!   settled in: a message settled early waits for the ones before it. Acknowledging out of order
//!   made Mosquitto 2.0.11 (whose in-flight quota then goes wrong, its issue 2301, fixed in
//!   2.0.13) send newer messages before older queued ones, so a source saw its topic out of
//!   order.
//! * Memory stays bounded: MQTT 5 announces receive maximum = `max_in_flight`, the deliveries
//!   channel holds [`HANDOFF_FACTOR`] × `max_in_flight` messages; when the host does not take
//!   them the event loop waits, and TCP back-pressure stops the broker (MQTT 3.1.1 has no receive
//!   maximum: the broker's own in-flight limit applies). While the event loop waits for the host
//!   to take a delivery it handles nothing else (no PUBACKs of publishes, no pings). The host may
//!   hold every one of its in-flight deliveries until a publish on this same client is confirmed
//!   (a target's acknowledgement requested by the source), so the event loop must go on reading
//!   those PUBACKs while the broker sends more (after a reconnect Mosquitto sends a persistent
//!   session's whole backlog, up to thousands of messages, at once), or both sides wait for each
//!   other until the acknowledgement timeout. The host holds them whenever its routing waits for
//!   this client's publishes (back-pressure: a target slower than its sources). Mosquitto 2.0
//!   does not keep to its in-flight limit (nor to an MQTT 5 receive maximum) when it sends a
//!   persistent session's backlog: 100,000 queued messages arrived without acknowledgement
//!   (`tests/loopback.rs`). So while publishes of this client wait for confirmation, the event
//!   loop does not wait for the host: what arrives waits in the event loop, at most
//!   [`BACKLOG_BYTES`] (payloads, topics and 512 bytes each), and is handed over in order as
//!   the host takes it; past that it waits for the host again. (A client of its own for the
//!   publishes, `separatePublisherClient`, needs no such room.)
//!
//! # Publishing
//! To `Publish::address` with the target's `qos` (0 when the target is unknown or has none), not
//! retained; headers `mqtt.topic`, `mqtt.qos`, `mqtt.retain` override them per message (an invalid
//! `mqtt.qos` is ignored). MQTT 5: `correlation-id` → correlation data, `reply-to` → response
//! topic, `content-type` (or `ExternalMessage::content_type`, which wins) → content type,
//! `mqtt.message-expiry-interval` → message expiry interval, all other headers → user
//! properties. The future resolves on PUBACK (QoS 1) / PUBCOMP (QoS 2), once written for QoS 0; a
//! failed reason code (MQTT 5) → [`ErrorKind::Rejected`], a lost connection → `Closed`.
//! Publishes are pipelined: at most `max_in_flight` unconfirmed at the broker, as many again
//! queued; further callers wait.
//!
//! # Events
//! When the event loop fails (connection lost, kicked by a client with the same id, ...), the
//! client reports [`ClientEvent::Disconnected`] once and stops; it never reconnects by itself.
//!
//! # Hostile brokers
//! rumqttc 0.25.1's MQTT 5 decoder (`mqttbytes::v5::Packet::read`) cuts a packet out of its
//! read buffer before it decodes it, and takes a packet whose fields end inside a variable byte
//! integer (a property length, a subscription identifier) for an incomplete one: the codec
//! (`Codec::decode`) answers "need more bytes" with the packet's bytes already gone, so its
//! `Framed` reader reads more, decodes the next packet the same way, and keeps everything else
//! it read. A broker that answers CONNECT with an MQTT 3.1.1 CONNACK (`20 02 00 00`, no property
//! length) over and over grew Ferrule by 250 MB/s until the connect timeout. So an MQTT 5 client
//! talks to the broker through a guard (in `wire`): Ferrule connects to the broker itself (TCP,
//! then TLS with the configuration above), rumqttc connects without TLS to the guard on the
//! loopback interface (its CONNECT carries a random user property by which the guard knows it;
//! the guard takes it out before the CONNECT goes on), and the guard passes rumqttc's bytes on
//! as they are and the broker's only as whole packets that
//! * are at most `maximumPacketSize` bytes (refused from the fixed header alone, so a declared
//!   256 MiB packet is never buffered),
//! * rumqttc's own decoder reads without an error from a copy, and
//! * are not a second CONNACK (MQTT-3.2.0-2).
//!
//! Anything else ends the connection with an error that says what the broker sent (an MQTT
//! 3.1.1 CONNACK is named as such: the broker does not speak MQTT 5). The guard holds at most
//! one packet and one read (64 KiB) of the broker's bytes; its task ends with the client (it
//! passes the DISCONNECT of `close` on first). MQTT 3.1.1's decoder has no such field and reads
//! the broker directly; it refuses a packet over `maximumPacketSize` and a second CONNACK
//! itself. Floods of valid packets (PINGRESP, PUBACK, SUBACK) cost CPU, not memory: they end in
//! an error (an unsolicited PUBACK) or the connect timeout (`tests/hostile.rs`).

pub(crate) mod wire;

use crate::specific::{invalid, parse_bool, parse_duration, parse_num, parse_size};
use crate::uri::BrokerUri;
use crate::{
    BoxFuture, BrokerClient, ClientConfig, ClientEvent, Confirmation, Connected, Delivery,
    ErrorKind, Protocol, Publish, Settle, Settler, SourceSpec, TransportError, decided,
};
use ferrule_protocol::{ExternalMessage, Headers};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use wire::{AckToken, Client, Ev, EventLoop, InPublish, OutPublish};

/// The deliveries channel holds this many times `max_in_flight` (see "Settlement").
pub const HANDOFF_FACTOR: usize = 10;

/// While publishes of a client wait for confirmation, at most this many bytes of deliveries
/// wait in its event loop for the host (see "Settlement").
const BACKLOG_BYTES: usize = 64 << 20;
/// What a waiting delivery costs beyond its payload (its headers, topic and bookkeeping).
const DELIVERY_OVERHEAD: usize = 512;

/// Deliveries waiting in the event loop for the host, in order, with what they weigh.
#[derive(Default)]
struct Backlog {
    items: VecDeque<Delivery>,
    bytes: usize,
}

impl Backlog {
    fn weight(d: &Delivery) -> usize {
        let m = &d.message;
        m.bytes.as_ref().map_or(0, Vec::len)
            + m.text.as_ref().map_or(0, String::len)
            + d.address.len()
            + DELIVERY_OVERHEAD
    }

    fn push_back(&mut self, d: Delivery) {
        self.bytes += Backlog::weight(&d);
        self.items.push_back(d);
    }

    fn push_front(&mut self, d: Delivery) {
        self.bytes += Backlog::weight(&d);
        self.items.push_front(d);
    }

    fn pop_front(&mut self) -> Option<Delivery> {
        let d = self.items.pop_front()?;
        self.bytes -= Backlog::weight(&d);
        Some(d)
    }

    fn clear(&mut self) {
        self.items.clear();
        self.bytes = 0;
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Largest packet sent.
const MAX_PACKET: usize = 16 * 1024 * 1024;

/// `specificConfig` key of the largest packet accepted from the broker (HiveMQ's and MQTT 5's
/// name), its default and the values allowed (the largest is MQTT's own limit).
pub const MAXIMUM_PACKET_SIZE: &str = "maximumPacketSize";
pub const DEFAULT_MAXIMUM_PACKET_SIZE: u32 = 4 * 1024 * 1024;
pub const PACKET_SIZES: std::ops::RangeInclusive<u32> = 1024..=268_435_460;

type Waiter = oneshot::Sender<Result<(), TransportError>>;

/// The settings of `specificConfig`, checked.
#[derive(Debug, Clone)]
struct Settings {
    client_id: String,
    clean_session: bool,
    keep_alive: Duration,
    reconnect_for_redelivery: bool,
    /// How long after a disconnect for redelivery the host reconnects.
    redelivery_delay: Duration,
    session_expiry: u32,
    last_will: Option<(String, u8, bool, String)>,
    /// The largest packet accepted from the broker.
    max_packet: u32,
}

/// A short random-looking suffix (time and process id: no dependency for one dry-run id).
fn random_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mixed = (nanos as u64) ^ ((std::process::id() as u64) << 32);
    format!("{:x}", mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16)
}

impl Settings {
    fn parse(config: &ClientConfig) -> Result<Settings, TransportError> {
        let base = base_client_id(config);
        let client_id = if config.dry_run {
            format!("{base}-dry-run-{}", random_suffix())
        } else if config.protocol == Protocol::Mqtt5 && config.client_index > 0 {
            format!("{base}_{}", config.client_index)
        } else {
            base
        };
        let clean_session = config.dry_run || parse_bool(config, "cleanSession")?;
        let keep_alive = keep_alive(config)?;
        let session_expiry = parse_num::<u32>(config, "sessionExpiryInterval")?
            .unwrap_or(if clean_session { 0 } else { 60 });
        let last_will = match config.specific_config.get("lastWillTopic") {
            Some(topic) if !topic.is_empty() => {
                if topic.contains(['+', '#']) {
                    return Err(invalid("lastWillTopic", topic));
                }
                let qos = parse_num::<u8>(config, "lastWillQos")?.unwrap_or(0);
                if qos > 2 {
                    return Err(invalid("lastWillQos", &qos.to_string()));
                }
                let retain = parse_bool(config, "lastWillRetain")?;
                let message = config
                    .specific_config
                    .get("lastWillMessage")
                    .cloned()
                    .unwrap_or_default();
                Some((topic.clone(), qos, retain, message))
            }
            _ => None,
        };
        parse_bool(config, "separatePublisherClient")?;
        let max_packet = parse_size(
            config,
            MAXIMUM_PACKET_SIZE,
            DEFAULT_MAXIMUM_PACKET_SIZE,
            PACKET_SIZES,
        )?;
        Ok(Settings {
            client_id,
            clean_session,
            keep_alive,
            reconnect_for_redelivery: parse_bool(config, "reconnectForRedelivery")?,
            redelivery_delay: redelivery_delay(config)?,
            session_expiry,
            last_will,
            max_packet,
        })
    }
}

/// `specificConfig.reconnectForRedeliveryDelay`: Ditto's default 2 s, at least 1 s
/// (`ReconnectDelay.ofOrLowerBoundary`); a bare number is seconds, as for `keepAlive`.
fn redelivery_delay(config: &ClientConfig) -> Result<Duration, TransportError> {
    let delay = parse_duration(
        config,
        "reconnectForRedeliveryDelay",
        Duration::from_secs(1),
    )?;
    Ok(delay
        .unwrap_or(Duration::from_secs(2))
        .max(Duration::from_secs(1)))
}

/// `specificConfig.keepAlive` for the client (see the module documentation).
fn keep_alive(config: &ClientConfig) -> Result<Duration, TransportError> {
    let secs = match parse_duration(config, "keepAlive", Duration::from_secs(1))? {
        None => 60,
        // Whole seconds, as Ditto's `KeepAliveInterval` takes them.
        Some(d) => d.as_secs(),
    };
    if secs > u16::MAX as u64 {
        let raw = config.specific_config.get("keepAlive").cloned();
        return Err(invalid("keepAlive", &raw.unwrap_or_default()));
    }
    // rumqttc's MQTT 5 client takes no keep-alive under 5 s (its setter panics), not even 0.
    Ok(Duration::from_secs(match config.protocol {
        Protocol::Mqtt5 if secs == 0 => u16::MAX as u64,
        Protocol::Mqtt5 => secs.max(5),
        _ => secs,
    }))
}

/// `specificConfig.clientId`, else the connection id.
fn base_client_id(config: &ClientConfig) -> String {
    config
        .specific_config
        .get("clientId")
        .filter(|c| !c.is_empty())
        .cloned()
        .unwrap_or_else(|| config.connection_id.clone())
}

/// Checks the `specificConfig` of an MQTT connection without connecting.
pub fn check_config(config: &ClientConfig) -> Result<(), TransportError> {
    Settings::parse(config).map(|_| ())
}

/// Whether an MQTT topic filter matches a topic.
fn filter_matches(filter: &str, topic: &str) -> bool {
    let filter = match filter.strip_prefix("$share/") {
        Some(rest) => match rest.split_once('/') {
            Some((_, f)) => f,
            None => return false,
        },
        None => filter.strip_prefix("$queue/").unwrap_or(filter),
    };
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// What the event loop waits for: publish confirmations by packet id, in the order requested.
#[derive(Default)]
struct Pending {
    /// Waiters of publishes handed to rumqttc, in request order, not yet given a packet id.
    fifo: VecDeque<Waiter>,
    /// The publish rumqttc holds back after a packet id collision.
    collided: Option<Waiter>,
    by_pkid: HashMap<u16, Waiter>,
    /// SUBSCRIBEs in request order: (source index, filters).
    subs: VecDeque<(usize, Vec<String>)>,
    subs_by_pkid: HashMap<u16, (usize, Vec<String>)>,
    /// Set when the event loop ended: later publishes fail at once.
    dead: Option<TransportError>,
}

impl Pending {
    fn outstanding(&self) -> usize {
        self.fifo.len() + self.by_pkid.len() + usize::from(self.collided.is_some())
    }
}

struct Shared {
    pending: Mutex<Pending>,
    closing: AtomicBool,
    /// Set when the client disconnects so that the broker redelivers.
    redelivering: AtomicBool,
    authority: String,
    /// MQTT 5: what the guard found wrong with the broker's connection.
    verdict: Option<Arc<wire::Verdict>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

enum AckCmd {
    /// The acknowledgement of the message that arrived `seq`-th (QoS 1 and 2 count); `None`: it
    /// is not acknowledged (the client disconnects for its redelivery).
    Ack(u64, Option<AckToken>),
    DisconnectForRedelivery,
    /// `close`: after the acks of messages settled before it.
    Disconnect(oneshot::Sender<()>),
}

struct PublishCmd {
    out: OutPublish,
    waiter: Waiter,
}

/// Connects an MQTT 3.1.1 or 5 client (see the module documentation).
pub fn connect(config: ClientConfig) -> BoxFuture<'static, Result<Connected, TransportError>> {
    Box::pin(async move {
        let uri = BrokerUri::parse(&config.uri)?;
        let authority = uri.authority();
        let timeout = config.connect_timeout;
        let separate = !config.dry_run && parse_bool(&config, "separatePublisherClient")?;
        let connecting = async move {
            if !separate {
                return connect_inner(config, uri).await;
            }
            let publisher = publisher_config(&config);
            let (consumer, publisher) = tokio::try_join!(
                connect_inner(config, uri.clone()),
                connect_inner(publisher, uri)
            )?;
            Ok(split(consumer, publisher))
        };
        match tokio::time::timeout(timeout, connecting).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::new(
                ErrorKind::Timeout,
                format!("Connecting to the MQTT broker at {authority} timed out after {timeout:?}"),
            )),
        }
    })
}

/// The configuration of the separate publisher: the client id `publisherId` (default
/// `<clientId>p`), no sources, no last will.
fn publisher_config(config: &ClientConfig) -> ClientConfig {
    let mut publisher = config.clone();
    let base = base_client_id(config);
    let id = config
        .specific_config
        .get("publisherId")
        .filter(|c| !c.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("{base}p"));
    let sc = &mut publisher.specific_config;
    sc.insert("clientId".into(), id);
    for key in [
        "lastWillTopic",
        "lastWillQos",
        "lastWillRetain",
        "lastWillMessage",
        "separatePublisherClient",
    ] {
        sc.shift_remove(key);
    }
    publisher.sources.clear();
    publisher
}

/// A consumer and a publisher connection as one client: publishes go to the publisher, events of
/// both are reported, and close closes both.
fn split(consumer: Connected, publisher: Connected) -> Connected {
    let (events_tx, events) = mpsc::channel(4);
    for mut from in [consumer.events, publisher.events] {
        let tx = events_tx.clone();
        tokio::spawn(async move {
            while let Some(event) = from.recv().await {
                if tx.send(event).await.is_err() {
                    break;
                }
            }
        });
    }
    Connected {
        client: Box::new(SplitClient {
            consumer: consumer.client,
            publisher: publisher.client,
        }),
        deliveries: consumer.deliveries,
        events,
    }
}

struct SplitClient {
    consumer: Box<dyn BrokerClient>,
    publisher: Box<dyn BrokerClient>,
}

impl BrokerClient for SplitClient {
    fn publish(&self, publish: Publish) -> Confirmation {
        self.publisher.publish(publish)
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        let SplitClient {
            consumer,
            publisher,
        } = *self;
        Box::pin(async move {
            tokio::join!(publisher.close(), consumer.close());
        })
    }
}

/// The socket options of both MQTT versions' clients. TCP_NODELAY: a publish is written as soon
/// as it is ready instead of waiting for the previous segment's ACK (Nagle), which held each
/// connection's QoS 0 stream to ~10k msgs/s when several connections share the broker.
fn network_options(connection_timeout: Option<u64>) -> rumqttc::NetworkOptions {
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    if let Some(secs) = connection_timeout {
        net.set_connection_timeout(secs);
    }
    net
}

/// Aborts the tasks unless disarmed (the connect future may be dropped by its timeout).
struct TaskGuard(Vec<JoinHandle<()>>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

async fn connect_inner(config: ClientConfig, uri: BrokerUri) -> Result<Connected, TransportError> {
    let authority = uri.authority();
    if uri.scheme != "tcp" && uri.scheme != "ssl" {
        return Err(TransportError::new(
            ErrorKind::Misconfigured,
            format!("The URI scheme '{}' is not supported for MQTT", uri.scheme),
        ));
    }
    let tls = if uri.secure {
        Some(crate::tls::client_config(
            config.ca.as_deref(),
            config
                .client_cert
                .as_ref()
                .map(|(c, k)| (c.as_str(), k.as_str())),
            config.validate_certificates,
        )?)
    } else {
        None
    };
    for s in &config.sources {
        if s.qos.is_some_and(|q| q > 2) {
            return Err(TransportError::new(
                ErrorKind::Misconfigured,
                format!("The QoS of source {} must be 0, 1 or 2", s.index),
            ));
        }
    }
    let settings = Settings::parse(&config)?;
    let max_in_flight = config.max_in_flight.max(1);
    let cap = max_in_flight as usize + 16;
    let conn_timeout = config.connect_timeout.as_secs().max(1) + 1;

    let max_packet = settings.max_packet;
    // MQTT 5's guard; its task goes into the task guard below (no await in between).
    let mut broker_guard = None;
    let (client, eventloop) = match config.protocol {
        Protocol::Mqtt5 => {
            use rumqttc::v5::mqttbytes::v5::LastWill;
            // rumqttc talks to the broker through the guard (see "Hostile brokers").
            let g =
                wire::open_guard(&uri.host, uri.port, tls, max_packet as usize, &authority).await?;
            let mut o = rumqttc::v5::MqttOptions::new(
                settings.client_id.clone(),
                g.addr.ip().to_string(),
                g.addr.port(),
            );
            o.set_user_properties(vec![g.property()]);
            broker_guard = Some(g);
            o.set_clean_start(settings.clean_session)
                .set_keep_alive(settings.keep_alive)
                .set_manual_acks(true)
                .set_connection_timeout(conn_timeout)
                .set_receive_maximum(Some(max_in_flight))
                .set_outgoing_inflight_upper_limit(max_in_flight)
                .set_max_packet_size(Some(max_packet))
                .set_session_expiry_interval(Some(settings.session_expiry).filter(|s| *s > 0));
            if let Some(user) = &uri.username {
                o.set_credentials(user.clone(), uri.password.clone().unwrap_or_default());
            }
            if let Some((topic, qos, retain, message)) = &settings.last_will {
                let qos = rumqttc::v5::mqttbytes::qos(*qos).expect("checked");
                o.set_last_will(LastWill::new(
                    topic.clone(),
                    message.clone().into_bytes(),
                    qos,
                    *retain,
                    None,
                ));
            }
            o.set_network_options(network_options(None));
            let (c, l) = rumqttc::v5::AsyncClient::new(o, cap);
            (Client::V5(c), EventLoop::V5(Box::new(l)))
        }
        _ => {
            let mut o = rumqttc::MqttOptions::new(settings.client_id.clone(), &uri.host, uri.port);
            o.set_clean_session(settings.clean_session)
                .set_keep_alive(settings.keep_alive)
                .set_manual_acks(true)
                .set_inflight(max_in_flight)
                .set_max_packet_size(max_packet as usize, MAX_PACKET);
            if let Some(tls) = tls {
                o.set_transport(rumqttc::Transport::tls_with_config(
                    rumqttc::TlsConfiguration::Rustls(tls),
                ));
            }
            if let Some(user) = &uri.username {
                o.set_credentials(user.clone(), uri.password.clone().unwrap_or_default());
            }
            if let Some((topic, qos, retain, message)) = &settings.last_will {
                let qos = rumqttc::qos(*qos).expect("checked");
                o.set_last_will(rumqttc::LastWill::new(
                    topic.clone(),
                    message.clone(),
                    qos,
                    *retain,
                ));
            }
            let (c, mut l) = rumqttc::AsyncClient::new(o, cap);
            l.set_network_options(network_options(Some(conn_timeout)));
            (Client::V3(c), EventLoop::V3(Box::new(l)))
        }
    };

    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending::default()),
        closing: AtomicBool::new(false),
        redelivering: AtomicBool::new(false),
        authority: authority.clone(),
        verdict: broker_guard.as_ref().map(|g| g.verdict.clone()),
    });
    let subscriptions: Vec<(usize, Vec<String>, u8)> = config
        .sources
        .iter()
        .filter(|s| !s.addresses.is_empty())
        .map(|s| (s.index, s.addresses.clone(), s.qos.unwrap_or(0)))
        .collect();

    let (deliveries_tx, deliveries) = mpsc::channel(max_in_flight as usize * HANDOFF_FACTOR);
    let (events_tx, events) = mpsc::channel(4);
    let (ready_tx, ready_rx) = oneshot::channel();
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    // Not bounded: `publish` never waits (order by construction); the host bounds the
    // publishes it awaits, and so this queue.
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();

    let driver = Driver {
        shared: shared.clone(),
        sources: config.sources.clone(),
        deliveries: deliveries_tx,
        backlog: Backlog::default(),
        events: events_tx,
        ready: Some(ready_tx),
        awaiting_subacks: subscriptions.len(),
        ack_tx: ack_tx.clone(),
        acks: 0,
        reconnect_for_redelivery: settings.reconnect_for_redelivery,
        redelivery_delay: settings.redelivery_delay,
        dry_run: config.dry_run,
    };
    let relay = broker_guard.map(|g| g.task);
    let mut guard = TaskGuard(vec![
        tokio::spawn(driver.run(eventloop)),
        tokio::spawn(acker(client.clone(), ack_rx, shared.clone())),
        tokio::spawn(forwarder(client.clone(), cmd_rx, shared.clone())),
    ]);
    guard.0.extend(relay);

    for (source, filters, qos) in subscriptions {
        shared.lock().subs.push_back((source, filters.clone()));
        if let Err(e) = client.subscribe(&filters, qos).await {
            // The request queue closes when the event loop ended (e.g. the connection was
            // refused): its error says why, not the failed request.
            if let Ok(Err(cause)) = ready_rx.await {
                return Err(cause);
            }
            return Err(TransportError::new(
                ErrorKind::Other,
                format!("Subscribing to {filters:?} at {authority} failed: {e}"),
            ));
        }
    }
    match ready_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(TransportError::new(
                ErrorKind::Other,
                format!("The MQTT client of {authority} ended while connecting"),
            ));
        }
    }
    let tasks = std::mem::take(&mut guard.0);
    Ok(Connected {
        client: Box::new(MqttClient {
            shared,
            cmd_tx,
            ack_tx,
            tasks,
            targets: config.targets.iter().map(|t| (t.index, t.qos)).collect(),
            protocol: config.protocol,
            dry_run: config.dry_run,
        }),
        deliveries,
        events,
    })
}

/// Hands publishes to rumqttc one at a time, noting each one's waiter in request order first.
async fn forwarder(
    client: Client,
    mut cmds: mpsc::UnboundedReceiver<PublishCmd>,
    shared: Arc<Shared>,
) {
    while let Some(PublishCmd { out, waiter }) = cmds.recv().await {
        {
            let mut p = shared.lock();
            if let Some(e) = &p.dead {
                let _ = waiter.send(Err(e.clone()));
                continue;
            }
            p.fifo.push_back(waiter);
        }
        if let Err(e) = client.publish(out).await {
            // Not sent (the event loop is gone, or rumqttc refused it): ours is the newest waiter.
            if let Some(w) = shared.lock().fifo.pop_back() {
                let _ = w.send(Err(TransportError::new(
                    ErrorKind::Closed,
                    format!("Publishing to {} failed: {e}", shared.authority),
                )));
            }
        }
    }
}

/// Sends the acks of settled deliveries in the order the messages arrived (never from the event
/// loop, which must not wait on the request channel it drains). What is settled before an
/// earlier message waits here: at most the broker's in-flight window.
async fn acker(client: Client, mut cmds: mpsc::UnboundedReceiver<AckCmd>, shared: Arc<Shared>) {
    let mut next = 0u64;
    let mut settled: std::collections::BTreeMap<u64, Option<AckToken>> = Default::default();
    while let Some(cmd) = cmds.recv().await {
        match cmd {
            AckCmd::Ack(seq, token) => {
                settled.insert(seq, token);
                while let Some(token) = settled.remove(&next) {
                    next += 1;
                    if let Some(token) = token
                        && !shared.redelivering.load(Ordering::SeqCst)
                    {
                        client.ack(&token).await
                    }
                }
            }
            AckCmd::DisconnectForRedelivery => {
                if !shared.redelivering.swap(true, Ordering::SeqCst) {
                    client.disconnect().await;
                }
            }
            AckCmd::Disconnect(done) => {
                client.disconnect().await;
                let _ = done.send(());
            }
        }
    }
}

struct Driver {
    shared: Arc<Shared>,
    sources: Vec<SourceSpec>,
    deliveries: mpsc::Sender<Delivery>,
    /// Deliveries that did not fit into the channel before `connect` returned.
    backlog: Backlog,
    events: mpsc::Sender<ClientEvent>,
    ready: Option<oneshot::Sender<Result<(), TransportError>>>,
    awaiting_subacks: usize,
    ack_tx: mpsc::UnboundedSender<AckCmd>,
    /// QoS 1 and 2 messages received so far: the place of the next one's acknowledgement.
    acks: u64,
    reconnect_for_redelivery: bool,
    redelivery_delay: Duration,
    dry_run: bool,
}

impl Driver {
    async fn run(mut self, mut eventloop: EventLoop) {
        let end = loop {
            let ev = match eventloop.poll().await {
                Ok(ev) => ev,
                Err(e) => {
                    // What the guard saw explains the failure better than rumqttc can.
                    let guarded = self.shared.verdict.as_ref().and_then(|v| v.take());
                    let (kind, message) = guarded.unwrap_or_else(|| {
                        (
                            e.kind,
                            format!(
                                "The connection to the MQTT broker at {} failed: {}",
                                self.shared.authority, e.message
                            ),
                        )
                    });
                    let kind = if self.ready.is_some() {
                        kind
                    } else {
                        ErrorKind::Closed
                    };
                    break Some(TransportError::new(kind, message));
                }
            };
            match ev {
                Ev::ConnAck => self.check_ready(),
                Ev::OutSubscribe(pkid) => {
                    let mut p = self.shared.lock();
                    if let Some(sub) = p.subs.pop_front() {
                        p.subs_by_pkid.insert(pkid, sub);
                    }
                }
                Ev::SubAck { pkid, rejected } => {
                    let sub = self.shared.lock().subs_by_pkid.remove(&pkid);
                    if let Some((source, filters)) = sub {
                        if let Some((i, reason, unauthorized)) = rejected.into_iter().next() {
                            let filter = filters.get(i).cloned().unwrap_or_default();
                            let kind = if unauthorized {
                                ErrorKind::Unauthorized
                            } else {
                                ErrorKind::Misconfigured
                            };
                            break Some(TransportError::new(
                                kind,
                                format!(
                                    "The MQTT broker at {} refused the subscription of source \
                                     {source} to '{filter}': {reason}",
                                    self.shared.authority
                                ),
                            ));
                        }
                        self.awaiting_subacks = self.awaiting_subacks.saturating_sub(1);
                        self.check_ready();
                    }
                }
                Ev::OutPublish(pkid) => {
                    let waiter = {
                        let mut p = self.shared.lock();
                        let w = p.collided.take().or_else(|| p.fifo.pop_front());
                        match w {
                            Some(w) if pkid != 0 => {
                                p.by_pkid.insert(pkid, w);
                                None
                            }
                            w => w,
                        }
                    };
                    if let Some(w) = waiter {
                        let _ = w.send(Ok(()));
                    }
                }
                Ev::OutAwaitAck => {
                    let mut p = self.shared.lock();
                    p.collided = p.fifo.pop_front();
                }
                Ev::Confirm { pkid, error } => {
                    let waiter = self.shared.lock().by_pkid.remove(&pkid);
                    if let Some(w) = waiter {
                        let _ = w.send(match error {
                            None => Ok(()),
                            Some(reason) => Err(TransportError::new(
                                ErrorKind::Rejected,
                                format!(
                                    "The MQTT broker at {} refused the message: {reason}",
                                    self.shared.authority
                                ),
                            )),
                        });
                    }
                }
                Ev::Publish(p) => self.consume(p).await,
                Ev::OutDisconnect => {
                    break if self.shared.redelivering.load(Ordering::SeqCst)
                        && !self.shared.closing.load(Ordering::SeqCst)
                    {
                        let mut e = TransportError::new(
                            ErrorKind::Closed,
                            format!(
                                "Disconnected from the MQTT broker at {} for the redelivery of \
                                 an unsettled message",
                                self.shared.authority
                            ),
                        );
                        e.retry_after = Some(self.redelivery_delay);
                        Some(e)
                    } else {
                        None
                    };
                }
                Ev::Other => {}
            }
            if self.ready.is_none() && !self.backlog.is_empty() {
                self.hand_over().await;
            }
        };
        drop(eventloop);
        let error = end.clone().unwrap_or_else(|| {
            TransportError::new(
                ErrorKind::Closed,
                format!("The MQTT client of {} is closed", self.shared.authority),
            )
        });
        let waiters: Vec<Waiter> = {
            let mut p = self.shared.lock();
            p.dead = Some(error.clone());
            let mut w: Vec<Waiter> = p.fifo.drain(..).collect();
            w.extend(p.collided.take());
            w.extend(p.by_pkid.drain().map(|(_, w)| w));
            w
        };
        for w in waiters {
            let _ = w.send(Err(error.clone()));
        }
        match self.ready.take() {
            Some(ready) => {
                let _ = ready.send(Err(error));
            }
            None => {
                if end.is_some() && !self.shared.closing.load(Ordering::SeqCst) {
                    let _ = self.events.try_send(ClientEvent::Disconnected(error));
                }
            }
        }
    }

    fn check_ready(&mut self) {
        if self.awaiting_subacks == 0
            && let Some(ready) = self.ready.take()
        {
            let _ = ready.send(Ok(()));
        }
    }

    async fn consume(&mut self, p: InPublish) {
        if self.dry_run {
            return;
        }
        let source = self
            .sources
            .iter()
            .find(|s| s.addresses.iter().any(|f| filter_matches(f, &p.topic)));
        // The place of its acknowledgement among the acknowledgements of this connection.
        let seq = self.acks;
        if p.qos > 0 {
            self.acks += 1;
        }
        let Some(source) = source else {
            // Not ours (e.g. a subscription left in a persistent session): acknowledge, drop.
            if p.qos > 0 {
                let _ = self.ack_tx.send(AckCmd::Ack(seq, Some(p.token)));
            }
            return;
        };
        let mut headers = Headers::with_capacity(p.headers.len() + 3);
        for (k, v) in p.headers {
            headers.insert(k, v);
        }
        headers.insert("mqtt.topic", p.topic.clone());
        // Written without the formatting machinery: this runs for every message.
        let qos = match p.qos {
            0 => "0",
            1 => "1",
            _ => "2",
        };
        headers.insert("mqtt.qos", qos);
        headers.insert("mqtt.retain", if p.retain { "true" } else { "false" });
        let text = String::from_utf8(p.payload.clone()).ok();
        let message = ExternalMessage {
            headers,
            text,
            bytes: Some(p.payload),
            content_type: p.content_type,
        };
        let (settler, settled) = Settler::new();
        if p.qos > 0 {
            if source.at_least_once {
                let ack_tx = self.ack_tx.clone();
                let reconnect = self.reconnect_for_redelivery;
                let token = p.token;
                tokio::spawn(async move {
                    let settle = settled.await.unwrap_or(Settle::Redeliver);
                    if settle == Settle::Redeliver && reconnect {
                        let _ = ack_tx.send(AckCmd::DisconnectForRedelivery);
                        let _ = ack_tx.send(AckCmd::Ack(seq, None));
                    } else if settle == Settle::Keep {
                        let _ = ack_tx.send(AckCmd::Ack(seq, None));
                    } else {
                        let _ = ack_tx.send(AckCmd::Ack(seq, Some(token)));
                    }
                });
            } else {
                let _ = self.ack_tx.send(AckCmd::Ack(seq, Some(p.token)));
            }
        }
        let delivery = Delivery {
            source: source.index,
            address: p.topic,
            message,
            unreadable: None,
            settler,
        };
        if self.backlog.is_empty() {
            match self.deliveries.try_send(delivery) {
                Err(mpsc::error::TrySendError::Full(d)) => self.backlog.push_back(d),
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        } else {
            self.backlog.push_back(delivery);
        }
        if self.ready.is_none() {
            self.hand_over().await;
        }
    }

    /// Hands the waiting deliveries to the host, in order. When the channel is full this waits
    /// for room (bounded memory; TCP back-pressure stops the broker), except while publishes of
    /// this client wait for their confirmation and less than [`BACKLOG_BYTES`] waits here: the
    /// host may hold the deliveries it has until those publishes are confirmed, and
    /// confirmations are read only while this loop reads, so it goes on reading and keeps what
    /// arrives meanwhile.
    async fn hand_over(&mut self) {
        while let Some(d) = self.backlog.pop_front() {
            let d = match self.deliveries.try_send(d) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.backlog.clear();
                    return;
                }
                Err(mpsc::error::TrySendError::Full(d)) => d,
            };
            self.backlog.push_front(d);
            if self.backlog.bytes < BACKLOG_BYTES && self.shared.lock().outstanding() > 0 {
                return;
            }
            // Room, or a publish that needs this loop to read its confirmation: look again
            // every 10 ms.
            match tokio::time::timeout(Duration::from_millis(10), self.deliveries.reserve()).await {
                Ok(Ok(permit)) => {
                    if let Some(d) = self.backlog.pop_front() {
                        permit.send(d);
                    }
                }
                Ok(Err(_)) => {
                    self.backlog.clear();
                    return;
                }
                Err(_) => {}
            }
        }
    }
}

/// Refuses a topic or MQTT 5 property longer than an MQTT string can be, rather than letting the
/// client write a malformed packet (found by the `headers` fuzz target).
pub(crate) fn check_lengths(
    topic: &str,
    properties: Option<&rumqttc::v5::mqttbytes::v5::PublishProperties>,
) -> Result<(), TransportError> {
    let too_long = |what: String| {
        TransportError::new(
            ErrorKind::Rejected,
            format!(
                "The {what} is longer than MQTT allows ({} bytes)",
                wire::MAX_STRING
            ),
        )
    };
    if topic.len() > wire::MAX_STRING {
        return Err(too_long(format!("topic of {} bytes", topic.len())));
    }
    if let Some(header) = properties.and_then(wire::too_long) {
        let name: String = header.chars().take(64).collect();
        return Err(too_long(format!("header '{name}'")));
    }
    Ok(())
}

struct MqttClient {
    shared: Arc<Shared>,
    cmd_tx: mpsc::UnboundedSender<PublishCmd>,
    ack_tx: mpsc::UnboundedSender<AckCmd>,
    /// driver, acker, forwarder and, for MQTT 5, the guard
    tasks: Vec<JoinHandle<()>>,
    targets: HashMap<usize, Option<u8>>,
    protocol: Protocol,
    dry_run: bool,
}

impl MqttClient {
    fn prepare(&self, publish: Publish) -> Result<OutPublish, TransportError> {
        let Publish {
            target,
            address,
            message,
        } = publish;
        let h = &message.headers;
        let topic = h
            .get_str("mqtt.topic")
            .filter(|t| !t.is_empty())
            .unwrap_or(address);
        if topic.is_empty() || topic.contains(['+', '#']) {
            return Err(TransportError::new(
                ErrorKind::Misconfigured,
                format!("'{topic}' is not a valid MQTT topic to publish to"),
            ));
        }
        let qos = h
            .get_str("mqtt.qos")
            .and_then(|q| q.trim().parse::<u8>().ok())
            .filter(|q| *q <= 2)
            .or_else(|| self.targets.get(&target).copied().flatten())
            .unwrap_or(0)
            .min(2);
        let retain = h
            .get_str("mqtt.retain")
            .is_some_and(|r| r.trim().eq_ignore_ascii_case("true"));
        let payload = message.payload().to_vec();
        if payload.len() + topic.len() + 1024 > MAX_PACKET {
            return Err(TransportError::new(
                ErrorKind::Rejected,
                format!(
                    "The message of {} bytes is too large for MQTT (at most {MAX_PACKET})",
                    payload.len()
                ),
            ));
        }
        let properties = match self.protocol {
            Protocol::Mqtt5 => Some(wire::publish_properties(
                &message.headers,
                message.content_type,
            )),
            _ => None,
        };
        check_lengths(&topic, properties.as_ref())?;
        Ok(OutPublish {
            topic,
            qos,
            retain,
            payload,
            properties,
        })
    }
}

impl BrokerClient for MqttClient {
    fn publish(&self, publish: Publish) -> Confirmation {
        if self.dry_run {
            return decided(Err(TransportError::new(
                ErrorKind::Other,
                "A connection test publishes nothing",
            )));
        }
        let out = match self.prepare(publish) {
            Ok(out) => out,
            Err(e) => return decided(Err(e)),
        };
        let authority = self.shared.authority.clone();
        let closed = move || {
            TransportError::new(
                ErrorKind::Closed,
                format!("The MQTT client of {authority} is closed"),
            )
        };
        let (waiter, result) = oneshot::channel();
        if self.cmd_tx.send(PublishCmd { out, waiter }).is_err() {
            return decided(Err(closed()));
        }
        Box::pin(async move {
            result
                .await
                .unwrap_or_else(|_| Err(closed()))
                .map(|()| None)
        })
    }

    fn close(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut tasks = std::mem::take(&mut self.tasks);
            // No more publishes: the forwarder ends once it handed over the queued ones.
            drop(std::mem::replace(
                &mut self.cmd_tx,
                mpsc::unbounded_channel().0,
            ));
            // Pending publishes get a short time to be confirmed.
            let deadline = Instant::now() + Duration::from_secs(1);
            while self.shared.lock().outstanding() > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            self.shared.closing.store(true, Ordering::SeqCst);
            // Settlements the host made just before closing reach the acker first.
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            let (done, disconnected) = oneshot::channel();
            if self.ack_tx.send(AckCmd::Disconnect(done)).is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(1), disconnected).await;
            }
            if let Some(driver) = tasks.first_mut()
                && tokio::time::timeout(Duration::from_secs(2), &mut *driver)
                    .await
                    .is_err()
            {
                driver.abort();
            }
            // The guard passes on what rumqttc wrote last (the DISCONNECT) before it ends.
            if let Some(guard) = tasks.get_mut(3) {
                let _ = tokio::time::timeout(Duration::from_secs(1), &mut *guard).await;
            }
            for t in &tasks {
                t.abort();
            }
        })
    }
}

impl Drop for MqttClient {
    /// A client dropped without `close` ends its tasks (and so its connection) at once.
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (found by the `headers` fuzz target's check): what does not fit an MQTT string
    /// is refused; before, rumqttc wrote its length modulo 2^16 into a malformed packet.
    #[test]
    fn topics_and_headers_longer_than_an_mqtt_string_are_refused() {
        let long = "a".repeat(wire::MAX_STRING + 1);
        let fits = "a".repeat(wire::MAX_STRING);
        assert!(check_lengths(&fits, None).is_ok());
        let e = check_lengths(&long, None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Rejected);
        assert!(e.message.contains("topic of 65536 bytes"), "{}", e.message);
        for (header, value) in [
            ("x-long", long.as_str()),
            ("correlation-id", &long),
            ("reply-to", &long),
            ("content-type", &long),
            (long.as_str(), "v"),
        ] {
            let mut headers = Headers::new();
            headers.insert(header, value);
            let properties = wire::publish_properties(&headers, None);
            let e = check_lengths("t", Some(&properties)).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Rejected, "{header}");
            assert!(e.message.len() < 200, "{}", e.message);
            let mut headers = Headers::new();
            headers.insert(header.chars().take(100).collect::<String>(), "v");
            headers.insert("x-fits", fits.as_str());
            let properties = wire::publish_properties(&headers, None);
            assert!(check_lengths("t", Some(&properties)).is_ok());
        }
    }

    #[test]
    fn topic_filters() {
        assert!(filter_matches("a/b", "a/b"));
        assert!(!filter_matches("a/b", "a/c"));
        assert!(filter_matches("a/+", "a/c"));
        assert!(!filter_matches("a/+", "a/c/d"));
        assert!(filter_matches("a/#", "a"));
        assert!(filter_matches("a/#", "a/c/d"));
        assert!(filter_matches("#", "a/c/d"));
        assert!(!filter_matches("#", "$SYS/x"));
        assert!(!filter_matches("+/x", "$SYS/x"));
        assert!(filter_matches("$SYS/#", "$SYS/x"));
        assert!(filter_matches("$share/g/a/+", "a/b"));
        assert!(filter_matches("a//b", "a//b"));
        assert!(!filter_matches("a/b/c", "a/b"));
    }

    fn config(specific: &[(&str, &str)]) -> ClientConfig {
        ClientConfig {
            client_index: 2,
            ..ClientConfig::for_test(Protocol::Mqtt5, "tcp://h", specific)
        }
    }

    #[test]
    fn settings() {
        let s = Settings::parse(&config(&[])).unwrap();
        assert_eq!(s.client_id, "conn_2");
        assert!(!s.clean_session);
        assert_eq!(s.keep_alive, Duration::from_secs(60));
        assert_eq!(s.session_expiry, 60);
        let s = Settings::parse(&config(&[
            ("clientId", "me"),
            ("cleanSession", "TRUE"),
            ("keepAlive", "5"),
            ("lastWillTopic", "w"),
            ("lastWillQos", "1"),
        ]))
        .unwrap();
        assert_eq!(s.client_id, "me_2");
        assert!(s.clean_session);
        assert_eq!(s.session_expiry, 0);
        assert_eq!(s.last_will, Some(("w".into(), 1, false, String::new())));
        let mut c = config(&[("clientId", "me")]);
        c.dry_run = true;
        let s = Settings::parse(&c).unwrap();
        assert!(s.client_id.starts_with("me-dry-run-"));
        assert!(s.clean_session);
        for (value, secs) in [("60s", 60), ("1.5m", 90), ("1 hour", 3_600), ("500ms", 0)] {
            let mut three = config(&[("keepAlive", value)]);
            three.protocol = Protocol::Mqtt3;
            let s = Settings::parse(&three).unwrap();
            assert_eq!(s.keep_alive, Duration::from_secs(secs), "{value}");
        }
        let five = config(&[("keepAlive", "0")]);
        let s = Settings::parse(&five).unwrap();
        assert_eq!(s.keep_alive, Duration::from_secs(65_535));
        let five = config(&[("keepAlive", "2s")]);
        assert_eq!(
            Settings::parse(&five).unwrap().keep_alive,
            Duration::from_secs(5)
        );
        for bad in ["65536", "19h", "-1", "x"] {
            let e = Settings::parse(&config(&[("keepAlive", bad)])).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Misconfigured, "{bad}");
        }
        // reconnectForRedeliveryDelay: Ditto's default 2 s, at least 1 s.
        let delay = |v: &[(&str, &str)]| Settings::parse(&config(v)).unwrap().redelivery_delay;
        assert_eq!(delay(&[]), Duration::from_secs(2));
        assert_eq!(
            delay(&[("reconnectForRedeliveryDelay", "3s")]),
            Duration::from_secs(3)
        );
        assert_eq!(
            delay(&[("reconnectForRedeliveryDelay", "5")]),
            Duration::from_secs(5)
        );
        assert_eq!(
            delay(&[("reconnectForRedeliveryDelay", "200ms")]),
            Duration::from_secs(1)
        );
        assert!(Settings::parse(&config(&[("reconnectForRedeliveryDelay", "soon")])).is_err());
        let e = Settings::parse(&config(&[("keepAlive", "x")])).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Misconfigured);
        assert!(Settings::parse(&config(&[("lastWillTopic", "a/#")])).is_err());
        assert!(Settings::parse(&config(&[("cleanSession", "yes")])).is_err());
    }
}
