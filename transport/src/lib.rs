//! Broker clients behind one interface: MQTT 3.1.1 and 5 (`mqtt`), AMQP 0.9.1 (`amqp091`),
//! AMQP 1.0 (`amqp10`), HTTP push (`http`) and Kafka (`kafka`).
//!
//! A transport knows brokers and nothing of Ditto: it connects with a [`ClientConfig`],
//! consumes from the sources' addresses and hands every message to the host as a [`Delivery`]
//! whose [`Settler`] the host settles once the message was handled (at least once), publishes
//! [`Publish`]es and reports, on its event channel, when the connection to the broker is lost.
//! Reconnecting, mapping, routing and metrics are the host's.

pub mod amqp091;
pub mod amqp10;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod kafka;
pub mod mqtt;
mod relay;
mod specific;
pub mod tls;
pub mod uri;

use ferrule_protocol::ExternalMessage;
use indexmap::IndexMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Mqtt3,
    Mqtt5,
    Amqp091,
    Amqp10,
    HttpPush,
    Kafka,
}

/// What a client needs to know of its connection.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connection_id: String,
    /// 0-based index of this client among the connection's `clientCount` clients.
    pub client_index: usize,
    pub protocol: Protocol,
    /// `scheme://[user[:password]@]host[:port][/path]`; user and password URL-encoded.
    pub uri: String,
    pub validate_certificates: bool,
    /// Trusted server certificates (PEM), in addition to the system's.
    pub ca: Option<String>,
    /// Client certificate and PKCS#8 key (PEM), from `credentials` of type `client-cert`.
    pub client_cert: Option<(String, String)>,
    /// The connection's `credentials` as given (HTTP push reads `hmac` and OAuth ones).
    pub credentials: Option<serde_json::Value>,
    /// The connection's `specificConfig`.
    pub specific_config: IndexMap<String, String>,
    pub sources: Vec<SourceSpec>,
    pub targets: Vec<TargetSpec>,
    /// How long `connect` may take before it fails with [`ErrorKind::Timeout`].
    pub connect_timeout: Duration,
    /// Messages in flight (delivered, not settled) per consumer at most: the broker's prefetch,
    /// MQTT receive maximum / inflight, AMQP 1.0 link credit.
    pub max_in_flight: u16,
    /// A connection test: check that sources and targets can be used (subscribe, declare,
    /// attach), consume nothing, use a client id of its own, then the host closes the client.
    pub dry_run: bool,
}

#[cfg(test)]
impl ClientConfig {
    /// A configuration for unit tests: `protocol` at `uri` with these `specificConfig`
    /// entries, connection `conn`, client 0, no sources or targets.
    pub(crate) fn for_test(
        protocol: Protocol,
        uri: &str,
        specific: &[(&str, &str)],
    ) -> ClientConfig {
        ClientConfig {
            connection_id: "conn".into(),
            client_index: 0,
            protocol,
            uri: uri.into(),
            validate_certificates: true,
            ca: None,
            client_cert: None,
            credentials: None,
            specific_config: specific
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            sources: vec![],
            targets: vec![],
            connect_timeout: Duration::from_secs(1),
            max_in_flight: 10,
            dry_run: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// The index of the source in the connection.
    pub index: usize,
    pub addresses: Vec<String>,
    /// MQTT: the maximum QoS to subscribe with.
    pub qos: Option<u8>,
    pub consumer_count: u32,
    /// `true`: a message is acknowledged to the broker only when its [`Settler`] says so.
    /// `false`: it is acknowledged on receipt (at most once) and the settler's verdict is ignored.
    pub at_least_once: bool,
}

#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub index: usize,
    /// The address as configured; it may hold placeholders (resolved per message by the host).
    pub address: String,
    /// MQTT: the QoS to publish with.
    pub qos: Option<u8>,
}

/// How the host settles a consumed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// ack / PUBACK / accepted.
    Accept,
    /// Negative, the broker should deliver it again: AMQP 0.9.1 nack(requeue), AMQP 1.0
    /// modified(delivery-failed) (released for RabbitMQ before 4.0), MQTT: with
    /// `reconnectForRedelivery` no PUBACK and a reconnect, without it a PUBACK as Ditto sends
    /// (MQTT has no negative acknowledgement).
    Redeliver,
    /// Negative, no redelivery: AMQP 0.9.1 nack(requeue=false), AMQP 1.0 rejected, MQTT PUBACK.
    Reject,
    /// Not handled, and the host is closing the session: the broker is to deliver it again on
    /// the next connection. AMQP as [`Settle::Redeliver`]; MQTT never acknowledges it, so a
    /// session that is kept (`cleanSession` false) gets it again when the client reconnects.
    Keep,
}

/// Settles one delivery. Dropping it unsettled counts as [`Settle::Redeliver`].
#[derive(Debug)]
pub struct Settler(Option<oneshot::Sender<Settle>>);

impl Settler {
    /// A settler and the receiver the transport waits on.
    pub fn new() -> (Settler, oneshot::Receiver<Settle>) {
        let (tx, rx) = oneshot::channel();
        (Settler(Some(tx)), rx)
    }

    pub fn settle(mut self, settle: Settle) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(settle);
        }
    }
}

impl Drop for Settler {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(Settle::Redeliver);
        }
    }
}

/// One consumed message.
#[derive(Debug)]
pub struct Delivery {
    /// The index of the source it was consumed for.
    pub source: usize,
    /// The address it arrived on (queue, link address, the MQTT topic it was published to).
    pub address: String,
    pub message: ExternalMessage,
    /// Why the client could not read the message as it was sent (AMQP 0.9.1 headers nested
    /// too deep, or malformed): `message` lacks what could not be read, and the host refuses
    /// the delivery (a mapping failure in the logs, settled without redelivery).
    pub unreadable: Option<String>,
    pub settler: Settler,
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Publish {
    pub target: usize,
    /// The resolved address (exchange/routingKey, link address, MQTT topic).
    pub address: String,
    pub message: ExternalMessage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Host not found, connection refused, network unreachable.
    Unreachable,
    /// The broker refused the credentials.
    Unauthorized,
    /// Bad TLS, certificate, address or configuration: the user must change something.
    Misconfigured,
    Timeout,
    /// The broker refused a published message (nack, rejected, failed PUBACK).
    Rejected,
    /// The connection is closed or lost.
    Closed,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    pub kind: ErrorKind,
    /// What happened, for status details and logs; never contains a password.
    pub message: String,
    /// For a [`ClientEvent::Disconnected`] the client asked for (MQTT's reconnect for
    /// redelivery): how long the host waits before it connects again, instead of its backoff.
    pub retry_after: Option<std::time::Duration>,
}

impl TransportError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> TransportError {
        TransportError {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// What a client reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// The connection to the broker is lost; the client is dead and the host reconnects.
    Disconnected(TransportError),
    /// One source address stopped consuming (e.g. its queue was deleted); the rest runs on.
    SourceFailed {
        source: usize,
        address: String,
        error: TransportError,
    },
}

/// What the peer answered to a published message, where the protocol has answers (an HTTP
/// response, whatever its status).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub headers: ferrule_protocol::Headers,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// A publish's confirmation: resolves when the broker confirmed the message (publisher confirm,
/// PUBACK for QoS ≥ 1, accepted outcome), at once where the protocol has no confirmation (MQTT
/// QoS 0: once it was written), or with the error that kept it from being sent or accepted.
/// HTTP push confirms with the server's [`Reply`]; the brokers with `None`.
pub type Confirmation = BoxFuture<'static, Result<Option<Reply>, TransportError>>;

/// A running client.
pub trait BrokerClient: Send + Sync {
    /// Queues one message to publish and returns its [`Confirmation`]. The call never waits:
    /// when it returns the message has its place in the client's queue, so messages are sent in
    /// the order of the calls, whatever becomes of the confirmations (order by construction; a
    /// future that still had to be polled to take its place could be overtaken under tokio's
    /// cooperative budget). The queue itself is not bounded: callers bound how many
    /// confirmations they await at once, and so the messages queued.
    fn publish(&self, publish: Publish) -> Confirmation;

    /// Closes the connection gracefully (pending publishes are given a short time to finish).
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A confirmation that is already decided (a message refused before it was queued).
pub fn decided(result: Result<Option<Reply>, TransportError>) -> Confirmation {
    Box::pin(std::future::ready(result))
}

/// A connected client with its streams.
pub struct Connected {
    pub client: Box<dyn BrokerClient>,
    /// Consumed messages of all sources; bounded by `max_in_flight` per consumer.
    pub deliveries: mpsc::Receiver<Delivery>,
    pub events: mpsc::Receiver<ClientEvent>,
}

/// Checks what can be checked of a configuration without a broker (Ditto's per-protocol
/// validation at create and modify): `specificConfig` values (also the maximum packet / frame
/// size of each protocol), AMQP 0.9.1 target addresses without placeholders.
pub fn check_config(config: &ClientConfig) -> Result<(), TransportError> {
    // Trusted certificates and a client certificate are read as the TLS configuration would
    // read them (Ditto builds its SSL context at create: `validateFormatOfCertificates`).
    let ca = config.ca.as_deref().filter(|c| !c.trim().is_empty());
    if ca.is_some() || config.client_cert.is_some() {
        let client_cert = config.client_cert.as_ref();
        tls::client_config(
            ca,
            client_cert.map(|(cert, key)| (cert.as_str(), key.as_str())),
            config.validate_certificates,
        )?;
    }
    match config.protocol {
        Protocol::Mqtt3 | Protocol::Mqtt5 => mqtt::check_config(config),
        Protocol::Amqp091 => amqp091::check_config(config),
        Protocol::Amqp10 => amqp10::check_config(config),
        Protocol::HttpPush => http::check_config(config),
        Protocol::Kafka => kafka::check_config(config),
    }
}

/// Connects a client of the configured protocol.
pub fn connect(config: ClientConfig) -> BoxFuture<'static, Result<Connected, TransportError>> {
    match config.protocol {
        Protocol::Mqtt3 | Protocol::Mqtt5 => mqtt::connect(config),
        Protocol::Amqp091 => amqp091::connect(config),
        Protocol::Amqp10 => amqp10::connect(config),
        Protocol::HttpPush => http::connect(config),
        Protocol::Kafka => kafka::connect(config),
    }
}
