//! AMQP 0.9.1 (RabbitMQ) client on [lapin] with tokio, following Ditto's `amqp-091` binding.
//!
//! # Connection
//! `amqp://[user[:password]@]host[:port][/vhost]`: the vhost is the URI's URL-decoded path; an
//! empty path means the default vhost `/` (so `/` itself is written `%2F` or left out). Without a
//! user the client logs in as `guest`/`guest` (as the RabbitMQ Java client Ditto uses does).
//! The connection carries the client property `connection_name` =
//! `ferrule:<connectionId>:<clientIndex>` (`...:dry-run` for a connection test), which
//! `rabbitmqctl list_connections client_properties` shows. Failures of [`connect`], all within
//! `connect_timeout`: refused / DNS / network → [`ErrorKind::Unreachable`]; `ACCESS_REFUSED` or a
//! login the broker ends → [`ErrorKind::Unauthorized`]; vhost not allowed / missing, missing
//! queue, bad target address, TLS → [`ErrorKind::Misconfigured`]; the deadline →
//! [`ErrorKind::Timeout`]. Messages name `host:port`, never the password.
//!
//! # Sources (consuming)
//! A source address is the name of a queue that must exist (Ditto never declares queues): a
//! missing queue fails `connect` with `Misconfigured` naming the queue. Each address gets
//! `consumerCount` consumers, each on its own channel with `basic.qos(prefetch = max_in_flight)`
//! (`0` = unlimited), consuming with manual acknowledgement. When the broker cancels a consumer
//! (its queue was deleted) or closes its channel, [`ClientEvent::SourceFailed`] is reported for
//! that address (unless the whole connection is gone, then it is [`ClientEvent::Disconnected`]).
//!
//! Inbound headers: every entry of the message's headers table, as a string (strings as they
//! are, numbers and booleans in decimal/`true`/`false`, timestamps as epoch seconds, byte arrays
//! as UTF-8 (lossy), nested tables and arrays as JSON; `void` entries are left out), then the
//! basic properties, which win over table entries of the same name:
//!
//! | basic property     | header             |
//! |--------------------|--------------------|
//! | `content-type`     | `content-type` (also [`ExternalMessage::content_type`]) |
//! | `content-encoding` | `content-encoding` |
//! | `correlation-id`   | `correlation-id`   |
//! | `reply-to`         | `reply-to`         |
//! | `message-id`       | `message-id`       |
//! | `user-id`          | `user-id`          |
//! | `app-id`           | `app-id`           |
//! | `type`             | `type`             |
//! | `timestamp`        | `timestamp` (epoch seconds) |
//! | `expiration`       | `expiration`       |
//! | `priority`         | `priority`         |
//! | `delivery-mode`    | `delivery-mode` (1 transient, 2 persistent) |
//!
//! (Ditto itself maps only `content-type`, `correlation-id` and `reply-to` plus the table; the
//! others follow the spec's "mapped to headers of the same name".)
//!
//! Inbound payload, as Ditto's `RabbitMQConsumerActor`: `bytes` always; `text` too unless the
//! content type starts with `application/octet-stream`, decoded with the content type's
//! `charset` (ISO-8859-1/latin1 and US-ASCII decoded as Latin-1, anything else as UTF-8); when
//! the bytes are not valid UTF-8 there is no `text` (Ditto would decode lossily).
//!
//! Settlement: an `at_least_once` source acknowledges only on the [`Settler`]'s verdict:
//! [`Settle::Accept`] → `basic.ack`, [`Settle::Redeliver`] (also a dropped settler) →
//! `basic.nack(requeue=true)`, [`Settle::Reject`] → `basic.nack(requeue=false)` (dead-lettered
//! when the queue has a dead-letter exchange). Other sources are acknowledged on receipt, before
//! the delivery is handed to the host, and the verdict is ignored. Unsettled deliveries per
//! consumer are bounded by the prefetch.
//!
//! # Targets (publishing)
//! The address is `exchange/routingKey`, as Ditto's `RabbitMQTarget`: split at `/`, exactly two
//! parts (a trailing `/` is ignored, as Java's `split`), the exchange may be empty (the default
//! exchange: `/queue` routes to queue `queue`), the routing key must not be empty. Anything else
//! (no `/`, more than one `/`, empty routing key) fails with `Misconfigured` (`connect` checks
//! the target addresses without placeholders up front).
//!
//! Outbound headers → basic properties: `content-type` (or [`ExternalMessage::content_type`]),
//! `content-encoding`, `correlation-id`, `reply-to`, `message-id`, `app-id`, `type`,
//! `expiration`, `timestamp` (epoch seconds), `priority` (0–255), `delivery-mode` (1|2). A value
//! that does not fit its property (no number, longer than 255 bytes) goes into the headers table
//! instead. `user-id` stays in the table: RabbitMQ closes the channel when the property differs
//! from the login user. Every other header goes into the headers table as a long string. The
//! body is the bytes if set, else the text.
//!
//! Publishing uses publisher confirms and `mandatory=true` like Ditto: the publish resolves `Ok`
//! on the broker's ack; a nack, or a `basic.return` (no queue bound for the routing key: Ditto
//! answers 503), resolves [`ErrorKind::Rejected`]; so does a missing exchange (the broker closes
//! the channel with 404; the client opens a new publishing channel for the next publish).
//! Publishes are pipelined: each waits for its own confirm only.
//!
//! # Events, dry run, close
//! When the connection is lost (socket error, missed heartbeats, the broker closing it),
//! [`ClientEvent::Disconnected`] is sent once. A dry run connects, passively declares every
//! source queue and the exchange of every target address without placeholders (non-empty names)
//! and consumes nothing; a missing queue or exchange fails with `Misconfigured`. `close` cancels
//! the consumers (waiting briefly for outstanding publisher confirms) and closes the connection
//! with `200 OK`.
//!
//! # TLS
//! `amqps://` (default port 5671): the TLS configuration of [`crate::tls::client_config`]
//! (rustls with *ring*, as MQTT's): the system's root certificates plus the configured `ca`
//! (PEM), a client certificate and PKCS#8 key (PEM) presented when configured, and with
//! `validateCertificates=false` any server certificate accepted. The guard (see "Limits") makes
//! the TLS connection with that configuration (lapin's own TLS setup knows no custom verifier).
//! Bad PEM, and TLS failures (an untrusted or wrong server certificate, a client certificate the
//! broker rejects, TLS to a plain port), fail `connect` with `Misconfigured` naming the reason.
//!
//! # Limits
//! `specificConfig` `frameMax` (bytes, 4,096 to 1,048,576, default 131,072 =
//! [`DEFAULT_FRAME_MAX`], RabbitMQ's own default): the `frame-max` the client offers in
//! `Connection.Tune-Ok`; the broker's lower value wins. lapin keeps a ring buffer of 32 frames of
//! that size for each direction (8 MiB per connection at the default, written as the data goes
//! round), which is why the limit is 1 MiB and not more; without a value of its own lapin took
//! the broker's, and a broker that offered `frame-max` 0 (no limit) made it resize each buffer to
//! 32 × 4 GiB (an allocation failure aborts the process). A value outside the range fails with
//! `Misconfigured` naming the key (also at create, [`check_config`]).
//!
//! lapin runs each connection on a thread of its own ("lapin-io-loop") that ends only when the
//! socket fails or reaches its end: dropping the future of a connect that is given up (the
//! connect timeout, a deleted connection, a dry run that timed out) did not end it, and a broker
//! that accepted and never answered kept a thread, a socket and about 1 MiB per attempt until it
//! closed the socket itself; a frame that declares more than lapin's buffer holds made lapin stop
//! reading for good, so its thread stayed even after the peer went away. So lapin talks to the
//! broker through a guard: Ferrule connects to the broker (TCP, then TLS), lapin connects without
//! TLS to the guard on the loopback interface (the guard takes only the connection that comes
//! from the address lapin's socket reports), and the guard passes lapin's bytes on as they are
//! and the broker's as they come while it reads every frame header: a frame larger than
//! `frameMax` ends the connection ("sent a frame of N bytes, more than the frame-max of M bytes"),
//! before lapin reads it. The guard lives as long as the attempt or the client: dropping it
//! (the connect given up, `close` after its graceful part, a dropped client) closes lapin's
//! socket, lapin reads its end and its thread ends (`tests/hostile.rs` checks threads and
//! descriptors after each hostile case).
//!
//! lapin reads field tables recursively on that thread (2 MiB of stack), so the guard holds
//! each method and content-header frame until it is whole and measures its field tables
//! without recursion: a message whose `headers` nest deeper than 32 levels (tables and arrays,
//! the outermost counting), or are malformed, reaches lapin without its `headers`, and its
//! delivery carries [`Delivery::unreadable`] ("its AMQP headers nest deeper than 32 levels"):
//! the host refuses it (a mapping failure, `basic.nack(requeue=false)`), where lapin's stack
//! overflowed and aborted the process before, and again on every redelivery. Server properties
//! (`connection.start`) nested deeper end the connection.

mod guard;

use crate::specific::parse_size;
use crate::uri::BrokerUri;
use crate::{
    BoxFuture, BrokerClient, ClientConfig, ClientEvent, Connected, Delivery, ErrorKind, Publish,
    Settle, Settler, SourceSpec, TransportError, decided,
};
use ferrule_protocol::{ExternalMessage, Headers};
use futures_util::StreamExt;
use guard::{AbortOnDrop, Guard, Unreadable, Verdict, open_guard};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::tcp::{AMQPUriTcpExt, OwnedTLSConfig};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ConnectionStatus,
    Consumer, Event, ExchangeKind,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Connects an AMQP 0.9.1 client (see the module documentation).
pub fn connect(config: ClientConfig) -> BoxFuture<'static, Result<Connected, TransportError>> {
    Box::pin(async move {
        let uri = BrokerUri::parse(&config.uri)?;
        let authority = uri.authority();
        let timeout = config.connect_timeout;
        match tokio::time::timeout(timeout, connect_within(config, uri)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::new(
                ErrorKind::Timeout,
                format!(
                    "connecting to {authority} did not complete within {} ms",
                    timeout.as_millis()
                ),
            )),
        }
    })
}

fn misconfigured(message: impl Into<String>) -> TransportError {
    TransportError::new(ErrorKind::Misconfigured, message)
}

/// The vhost of a broker URI: its decoded path, `/` when empty.
fn vhost_of(uri: &BrokerUri) -> String {
    if uri.path.is_empty() {
        "/".to_string()
    } else {
        uri.path.clone()
    }
}

fn short(s: &str, what: &str) -> Result<ShortString, TransportError> {
    ShortString::try_new(s)
        .map_err(|_| misconfigured(format!("the {what} '{s}' is longer than 255 bytes")))
}

/// A target address `exchange/routingKey`, as Ditto's `RabbitMQTarget.fromTargetAddress`.
pub fn parse_target_address(address: &str) -> Result<(String, String), TransportError> {
    // Java's String.split drops trailing empty strings.
    let mut parts: Vec<&str> = address.split('/').collect();
    while parts.len() > 1 && parts.last() == Some(&"") {
        parts.pop();
    }
    match parts.as_slice() {
        [exchange, routing_key] if !routing_key.is_empty() => {
            Ok((exchange.to_string(), routing_key.to_string()))
        }
        _ => Err(misconfigured(format!(
            "The target address '{address}' must be specified in the format 'exchange/routingKey'."
        ))),
    }
}

/// Maps an I/O failure of the connection phase (TCP, TLS, the handshake's bytes).
fn io_error(io: &std::io::Error, authority: &str, secure: bool) -> TransportError {
    use std::io::ErrorKind as Io;
    if let Some(tls) = crate::tls::find_tls_error(io) {
        return misconfigured(format!("{authority}: {}", crate::tls::describe(tls)));
    }
    if secure && let Some(e) = crate::tls::closed_after_handshake(authority, io) {
        return e;
    }
    match io.kind() {
        Io::TimedOut => TransportError::new(
            ErrorKind::Timeout,
            format!("connecting to {authority} timed out: {io}"),
        ),
        Io::InvalidData | Io::InvalidInput | Io::PermissionDenied => {
            misconfigured(format!("the TLS connection to {authority} failed: {io}"))
        }
        Io::ConnectionReset | Io::UnexpectedEof | Io::BrokenPipe | Io::ConnectionAborted => {
            TransportError::new(
                ErrorKind::Other,
                format!(
                    "{authority} closed the connection during the AMQP handshake (not an AMQP \
                     0.9.1 broker, or TLS expected?): {io}"
                ),
            )
        }
        _ => TransportError::new(
            ErrorKind::Unreachable,
            format!("{authority} could not be reached: {io}"),
        ),
    }
}

/// Maps a lapin error of the connection phase.
fn connect_error(error: &lapin::Error, ctx: &Ctx) -> TransportError {
    let Ctx { authority, vhost } = ctx;
    match error.kind() {
        // lapin talks to the guard, always without TLS.
        lapin::ErrorKind::IOError(io) => io_error(io, authority, false),
        lapin::ErrorKind::ProtocolError(amqp) => {
            let text = amqp.get_message().as_str();
            match amqp.kind() {
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
                | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)
                    if text.contains("vhost") =>
                {
                    misconfigured(format!(
                        "{authority} does not allow access to vhost '{vhost}': {text}"
                    ))
                }
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => TransportError::new(
                    ErrorKind::Unauthorized,
                    format!("{authority} refused the credentials: {text}"),
                ),
                AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => {
                    misconfigured(format!("{authority} refused vhost '{vhost}': {text}"))
                }
                _ => TransportError::new(
                    ErrorKind::Other,
                    format!("connecting to {authority} failed: {text}"),
                ),
            }
        }
        lapin::ErrorKind::AuthProviderError(e) => TransportError::new(
            ErrorKind::Unauthorized,
            format!("authentication at {authority} failed: {e}"),
        ),
        lapin::ErrorKind::InvalidProtocolVersion(v) => misconfigured(format!(
            "{authority} does not speak AMQP 0.9.1 (it offered {v})"
        )),
        _ => TransportError::new(
            ErrorKind::Other,
            format!("connecting to {authority} failed: {error}"),
        ),
    }
}

/// Maps the error of a declare / consume on a named resource.
fn resource_error(error: &lapin::Error, what: &str, name: &str, ctx: &Ctx) -> TransportError {
    let Ctx { authority, vhost } = ctx;
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => {
            let text = amqp.get_message().as_str();
            match amqp.kind() {
                AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) => misconfigured(format!(
                    "the {what} '{name}' does not exist in vhost '{vhost}' on {authority}"
                )),
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => misconfigured(format!(
                    "the user may not access the {what} '{name}' in vhost '{vhost}' on \
                     {authority}: {text}"
                )),
                AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED) => misconfigured(format!(
                    "the {what} '{name}' in vhost '{vhost}' on {authority} is exclusive to \
                     another connection: {text}"
                )),
                _ => TransportError::new(
                    ErrorKind::Other,
                    format!("using the {what} '{name}' on {authority} failed: {text}"),
                ),
            }
        }
        _ => channel_error(error, authority),
    }
}

/// Maps an error of an operation on an established connection.
fn channel_error(error: &lapin::Error, authority: &str) -> TransportError {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => TransportError::new(
            ErrorKind::Other,
            format!("{authority}: {}", amqp.get_message()),
        ),
        lapin::ErrorKind::MissingHeartbeatError => TransportError::new(
            ErrorKind::Closed,
            format!("{authority} sent no heartbeat: connection lost"),
        ),
        lapin::ErrorKind::IOError(io) => TransportError::new(
            ErrorKind::Closed,
            format!("the connection to {authority} is lost: {io}"),
        ),
        lapin::ErrorKind::InvalidChannelState(..) | lapin::ErrorKind::InvalidConnectionState(_) => {
            TransportError::new(
                ErrorKind::Closed,
                format!("the connection to {authority} is closed"),
            )
        }
        _ => TransportError::new(ErrorKind::Other, format!("{authority}: {error}")),
    }
}

/// The error reported with [`ClientEvent::Disconnected`].
fn disconnect_error(error: Option<&lapin::Error>, authority: &str) -> TransportError {
    let detail = match error.map(|e| e.kind()) {
        Some(lapin::ErrorKind::ProtocolError(amqp)) => format!(
            "{authority} closed the connection: {} {}",
            amqp.get_id(),
            amqp.get_message()
        ),
        Some(lapin::ErrorKind::MissingHeartbeatError) => {
            format!("{authority} sent no heartbeat in time")
        }
        Some(lapin::ErrorKind::IOError(io)) => format!("the connection to {authority} broke: {io}"),
        Some(_) => format!("the connection to {authority} is lost: {}", error.unwrap()),
        None => format!("the connection to {authority} is lost"),
    };
    TransportError::new(ErrorKind::Closed, detail)
}

#[derive(Clone)]
struct Ctx {
    authority: String,
    vhost: String,
}

/// `specificConfig` key of the largest frame (AMQP 0.9.1 `frame-max`, RabbitMQ's `frame_max`)
/// the client accepts, its default (RabbitMQ's) and the values allowed (the protocol's least,
/// and 1 MiB: lapin keeps 32 frames' worth of buffer each way, see "Limits").
pub const FRAME_MAX: &str = "frameMax";
pub const DEFAULT_FRAME_MAX: u32 = 128 * 1024;
pub const FRAME_MAX_RANGE: std::ops::RangeInclusive<u32> = 4096..=1024 * 1024;

/// Checks the `specificConfig` and the target addresses of an AMQP 0.9.1 connection without
/// connecting.
pub fn check_config(config: &ClientConfig) -> Result<(), TransportError> {
    frame_max(config)?;
    config
        .targets
        .iter()
        .filter(|t| !t.address.contains("{{"))
        .try_for_each(|t| parse_target_address(&t.address).map(|_| ()))
}

fn frame_max(config: &ClientConfig) -> Result<u32, TransportError> {
    parse_size(config, FRAME_MAX, DEFAULT_FRAME_MAX, FRAME_MAX_RANGE)
}

async fn connect_within(config: ClientConfig, uri: BrokerUri) -> Result<Connected, TransportError> {
    let ctx = Ctx {
        authority: uri.authority(),
        vhost: vhost_of(&uri),
    };
    if uri.scheme != "amqp" && uri.scheme != "amqps" {
        return Err(misconfigured(format!(
            "The URI scheme '{}' is not valid for AMQP 0.9.1.",
            uri.scheme
        )));
    }
    // The TLS configuration is built (and its PEM checked) before anything is connected.
    let tls = if uri.secure {
        Some(crate::tls::client_config(
            config.ca.as_deref(),
            config
                .client_cert
                .as_ref()
                .map(|(cert, key)| (cert.as_str(), key.as_str())),
            config.validate_certificates,
        )?)
    } else {
        None
    };
    let frame_max = frame_max(&config)?;
    for target in &config.targets {
        if !target.address.contains("{{") {
            parse_target_address(&target.address)?;
        }
    }
    for source in &config.sources {
        for address in &source.addresses {
            short(address, "queue name")?;
        }
    }

    // TCP, then TLS with our rustls configuration (the same as the other transports', see
    // `crate::tls`), held by the guard; lapin talks to the guard.
    let guard = open_guard(&uri, tls, frame_max, &ctx.authority).await?;
    let verdict = guard.verdict.clone();
    let result = connect_through(config, &uri, ctx, frame_max, guard).await;
    // What the guard saw explains a failure better than lapin's view of it.
    result.map_err(|e| verdict.get().unwrap_or(e))
}

async fn connect_through(
    config: ClientConfig,
    uri: &BrokerUri,
    ctx: Ctx,
    frame_max: u32,
    guard: Guard,
) -> Result<Connected, TransportError> {
    let amqp_uri = AMQPUri {
        scheme: AMQPScheme::AMQP,
        authority: AMQPAuthority {
            userinfo: AMQPUserInfo {
                username: uri.username.clone().unwrap_or_else(|| "guest".into()),
                password: uri.password.clone().unwrap_or_else(|| {
                    if uri.username.is_some() {
                        String::new()
                    } else {
                        "guest".into()
                    }
                }),
            },
            host: guard.addr.ip().to_string(),
            port: guard.addr.port(),
        },
        vhost: ctx.vhost.clone(),
        query: AMQPQueryString {
            connection_timeout: Some(config.connect_timeout.as_millis().max(1) as u64),
            frame_max: Some(frame_max),
            ..AMQPQueryString::default()
        },
    };
    let mut name = format!("ferrule:{}:{}", config.connection_id, config.client_index);
    if config.dry_run {
        name.push_str(":dry-run");
    }
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let runtime = lapin::runtime::default_runtime()
        .map_err(|e| TransportError::new(ErrorKind::Other, format!("no tokio runtime: {e}")))?;
    // lapin connects to the guard and tells it the address it connects from. Giving up (an
    // error, the timeout dropping this future) drops the guard, which closes lapin's socket and
    // so ends lapin's I/O loop; the client keeps the guard until it is closed.
    let announce = guard.announce.clone();
    let connection = Connection::connector(
        amqp_uri,
        runtime,
        async move |uri: AMQPUri, runtime| {
            let stream = uri
                .connect_with_config_async(OwnedTLSConfig::default().as_ref(), &runtime)
                .await?;
            if let lapin::tcp::AsyncTcpStream::Plain(socket) = &stream {
                let local = socket.get_ref().local_addr()?;
                let announce = announce.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(announce) = announce {
                    let _ = announce.send(local);
                }
            }
            Ok(stream)
        },
        properties,
    )
    .await
    .map_err(|e| connect_error(&e, &ctx))?;
    // Listen before anything else can fail, so no connection error is missed.
    let lapin_events = connection.events_listener();

    if config.dry_run {
        let result = dry_run(&connection, &config, &ctx).await;
        if let Err(e) = result {
            let _ = connection.close(200, "OK".into()).await;
            return Err(e);
        }
    }

    let (delivery_tx, delivery_rx) = mpsc::channel(delivery_capacity(&config));
    let (event_tx, event_rx) = mpsc::channel(64);
    let closing = Arc::new(AtomicBool::new(false));
    let status = connection.status().clone();

    let mut consumers = Vec::new();
    if !config.dry_run {
        for source in &config.sources {
            for address in &source.addresses {
                for _ in 0..source.consumer_count.max(1) {
                    match open_consumer(&connection, source, address, &config, &ctx).await {
                        Ok(c) => consumers.push((source.clone(), address.clone(), c)),
                        Err(e) => {
                            let _ = connection.close(200, "OK".into()).await;
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    let publisher = open_publisher(&connection, &ctx).await;
    let publisher = match publisher {
        Ok(p) => p,
        Err(e) => {
            let _ = connection.close(200, "OK".into()).await;
            return Err(e);
        }
    };

    let disconnected = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let mut consumer_channels = Vec::new();
    for (source, address, (channel, consumer)) in consumers {
        consumer_channels.push((channel.clone(), consumer.tag()));
        tasks.push(tokio::spawn(run_consumer(ConsumerTask {
            channel: channel.id(),
            unreadable: guard.unreadable.clone(),
            consumer,
            source: source.index,
            at_least_once: source.at_least_once,
            address,
            deliveries: delivery_tx.clone(),
            events: event_tx.clone(),
            closing: closing.clone(),
            disconnected: disconnected.clone(),
            status: status.clone(),
            authority: ctx.authority.clone(),
        })));
    }
    tasks.push(tokio::spawn(watch_connection(
        lapin_events,
        status,
        event_tx,
        closing.clone(),
        disconnected,
        ctx.authority.clone(),
        guard.verdict.clone(),
    )));

    let connection = Arc::new(connection);
    let publisher = Arc::new(tokio::sync::Mutex::new(publisher));
    // Not bounded: `publish` never waits (order by construction); the host bounds the
    // publishes it awaits, and so this queue.
    let (publishes, publish_rx) = mpsc::unbounded_channel();
    let publisher_task = tokio::spawn(
        PublisherTask {
            connection: connection.clone(),
            channel: publisher.clone(),
            closing: closing.clone(),
            authority: ctx.authority.clone(),
        }
        .run(publish_rx),
    );
    Ok(Connected {
        client: Box::new(Amqp091Client {
            connection,
            publisher,
            publishes,
            publisher_task: Some(publisher_task),
            consumer_channels,
            closing,
            tasks,
            authority: ctx.authority,
            guard: guard.task,
        }),
        deliveries: delivery_rx,
        events: event_rx,
    })
}

fn delivery_capacity(config: &ClientConfig) -> usize {
    let consumers: usize = config
        .sources
        .iter()
        .map(|s| s.addresses.len() * s.consumer_count.max(1) as usize)
        .sum();
    (consumers * config.max_in_flight.max(1) as usize).clamp(1, 65_536)
}

async fn dry_run(
    connection: &Connection,
    config: &ClientConfig,
    ctx: &Ctx,
) -> Result<(), TransportError> {
    for source in &config.sources {
        for address in &source.addresses {
            // A failed passive declare closes its channel: one channel per check.
            let channel = connection
                .create_channel()
                .await
                .map_err(|e| channel_error(&e, &ctx.authority))?;
            channel
                .queue_declare(
                    short(address, "queue name")?,
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| resource_error(&e, "queue", address, ctx))?;
            let _ = channel.close(200, "OK".into()).await;
        }
    }
    for target in &config.targets {
        if target.address.contains("{{") {
            continue;
        }
        let (exchange, _) = parse_target_address(&target.address)?;
        if exchange.is_empty() {
            continue;
        }
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| channel_error(&e, &ctx.authority))?;
        channel
            .exchange_declare(
                short(&exchange, "exchange name")?,
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    passive: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| resource_error(&e, "exchange", &exchange, ctx))?;
        let _ = channel.close(200, "OK".into()).await;
    }
    Ok(())
}

async fn open_consumer(
    connection: &Connection,
    source: &SourceSpec,
    address: &str,
    config: &ClientConfig,
    ctx: &Ctx,
) -> Result<(Channel, Consumer), TransportError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| channel_error(&e, &ctx.authority))?;
    channel
        .basic_qos(config.max_in_flight, BasicQosOptions::default())
        .await
        .map_err(|e| channel_error(&e, &ctx.authority))?;
    let consumer = channel
        .basic_consume(
            short(address, "queue name")?,
            ShortString::default(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| {
            let mut err = resource_error(&e, "queue", address, ctx);
            err.message = format!("source {}: {}", source.index, err.message);
            err
        })?;
    Ok((channel, consumer))
}

async fn open_publisher(connection: &Connection, ctx: &Ctx) -> Result<Channel, TransportError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| channel_error(&e, &ctx.authority))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| channel_error(&e, &ctx.authority))?;
    Ok(channel)
}

struct ConsumerTask {
    consumer: Consumer,
    /// The consumer's channel, and the deliveries of the connection whose headers the guard
    /// took out.
    channel: u16,
    unreadable: Arc<Unreadable>,
    source: usize,
    at_least_once: bool,
    address: String,
    deliveries: mpsc::Sender<Delivery>,
    events: mpsc::Sender<ClientEvent>,
    closing: Arc<AtomicBool>,
    disconnected: Arc<AtomicBool>,
    status: ConnectionStatus,
    authority: String,
}

async fn run_consumer(mut task: ConsumerTask) {
    let mut last_error = None;
    while let Some(next) = task.consumer.next().await {
        let delivery = match next {
            Ok(d) => d,
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        let message = to_external(&delivery);
        let unreadable = task.unreadable.take(task.channel, delivery.delivery_tag);
        let acker = delivery.acker;
        let (settler, verdict) = Settler::new();
        if !task.at_least_once {
            let _ = acker.ack(BasicAckOptions::default()).await;
        }
        let sent = task
            .deliveries
            .send(Delivery {
                source: task.source,
                address: task.address.clone(),
                message,
                unreadable,
                settler,
            })
            .await;
        if task.at_least_once {
            tokio::spawn(async move {
                let verdict = verdict.await.unwrap_or(Settle::Redeliver);
                let _ = match verdict {
                    Settle::Accept => acker.ack(BasicAckOptions::default()).await,
                    Settle::Redeliver | Settle::Keep | Settle::Reject => {
                        acker
                            .nack(BasicNackOptions {
                                multiple: false,
                                requeue: verdict != Settle::Reject,
                            })
                            .await
                    }
                };
            });
        }
        if sent.is_err() {
            // The host dropped the deliveries: nothing more to consume for.
            return;
        }
    }
    if task.closing.load(Ordering::SeqCst) {
        return;
    }
    // A lost connection also ends every consumer: that is the watcher's to report.
    tokio::time::sleep(Duration::from_millis(200)).await;
    if task.closing.load(Ordering::SeqCst)
        || task.disconnected.load(Ordering::SeqCst)
        || !task.status.connected()
    {
        return;
    }
    let reason = match &last_error {
        Some(e) => match e.kind() {
            lapin::ErrorKind::ProtocolError(amqp) => {
                format!("{} {}", amqp.get_id(), amqp.get_message())
            }
            _ => e.to_string(),
        },
        None => "the broker cancelled the consumer (queue deleted?)".to_string(),
    };
    let _ = task
        .events
        .send(ClientEvent::SourceFailed {
            source: task.source,
            address: task.address.clone(),
            error: TransportError::new(
                ErrorKind::Closed,
                format!(
                    "consuming from queue '{}' on {} stopped: {reason}",
                    task.address, task.authority
                ),
            ),
        })
        .await;
}

async fn watch_connection(
    lapin_events: impl futures_util::Stream<Item = Event> + Send + 'static,
    status: ConnectionStatus,
    events: mpsc::Sender<ClientEvent>,
    closing: Arc<AtomicBool>,
    disconnected: Arc<AtomicBool>,
    authority: String,
    verdict: Arc<Verdict>,
) {
    let mut lapin_events = std::pin::pin!(lapin_events);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last_error = None;
    loop {
        tokio::select! {
            event = lapin_events.next() => match event {
                Some(Event::Error(e)) => last_error = Some(e),
                Some(_) => continue,
                None => {}
            },
            _ = tick.tick() => {}
        }
        if closing.load(Ordering::SeqCst) {
            return;
        }
        if !status.connected() {
            disconnected.store(true, Ordering::SeqCst);
            // What the guard saw (a frame over `frameMax`) explains it best.
            let error = match verdict.get() {
                Some(e) => TransportError::new(ErrorKind::Closed, e.message),
                None => disconnect_error(last_error.as_ref(), &authority),
            };
            let _ = events.send(ClientEvent::Disconnected(error)).await;
            return;
        }
    }
}

struct Amqp091Client {
    connection: Arc<Connection>,
    /// The publishing channel; the publisher task replaces it when the broker closed it.
    publisher: Arc<tokio::sync::Mutex<Channel>>,
    /// To the publisher task, in call order.
    publishes: mpsc::UnboundedSender<PublishCmd>,
    publisher_task: Option<JoinHandle<()>>,
    consumer_channels: Vec<(Channel, ShortString)>,
    closing: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    authority: String,
    /// The guard between lapin and the broker: dropped with the client (after the close), it
    /// closes lapin's socket, so lapin's I/O loop (a thread) ends even when the broker does not
    /// answer the close.
    guard: AbortOnDrop,
}

type Waiter = oneshot::Sender<Result<(), TransportError>>;

/// One message for the publisher task.
struct PublishCmd {
    exchange: String,
    routing_key: String,
    properties: BasicProperties,
    body: Vec<u8>,
    waiter: Waiter,
}

/// What the publisher task needs of its client.
struct PublisherTask {
    connection: Arc<Connection>,
    channel: Arc<tokio::sync::Mutex<Channel>>,
    closing: Arc<AtomicBool>,
    authority: String,
}

impl PublisherTask {
    /// Publishes what it is given, one message after another in the order given, and waits for
    /// the confirms concurrently. lapin's `basic_publish` queues its frames on the future's
    /// first poll (before it waits for them to be written), and this task polls each publish
    /// once before it takes the next: the broker gets them in the order they were given.
    async fn run(self, mut cmds: mpsc::UnboundedReceiver<PublishCmd>) {
        use futures_util::StreamExt;
        let mut confirming = futures_util::stream::FuturesUnordered::new();
        loop {
            tokio::select! {
                biased;
                Some(()) = confirming.next(), if !confirming.is_empty() => {}
                cmd = cmds.recv() => {
                    let Some(cmd) = cmd else { break };
                    if let Some(pending) = self.start(cmd).await {
                        confirming.push(pending);
                    }
                }
            }
        }
        while confirming.next().await.is_some() {}
    }

    /// Queues one message at the broker; the confirm still to wait for, if any.
    async fn start(&self, cmd: PublishCmd) -> Option<BoxFuture<'static, ()>> {
        let PublishCmd {
            exchange,
            routing_key,
            properties,
            body,
            waiter,
        } = cmd;
        let names = short(&exchange, "exchange name")
            .and_then(|e| Ok((e, short(&routing_key, "routing key")?)));
        let (exchange_name, routing_key_name) = match names {
            Ok(n) => n,
            Err(e) => {
                let _ = waiter.send(Err(e));
                return None;
            }
        };
        let channel = match self.channel().await {
            Ok(c) => c,
            Err(e) => {
                let _ = waiter.send(Err(e));
                return None;
            }
        };
        let authority = self.authority.clone();
        let mut publish = Box::pin(async move {
            let confirm = channel
                .basic_publish(
                    exchange_name,
                    routing_key_name,
                    BasicPublishOptions {
                        mandatory: true,
                        immediate: false,
                    },
                    &body,
                    properties,
                )
                .await
                .map_err(|e| channel_error(&e, &authority))?;
            let target = format!("exchange '{exchange}' routing key '{routing_key}'");
            confirmation(confirm.await, &authority, &target)
        });
        // The first poll queues the frames (see `run`).
        if let std::task::Poll::Ready(result) = futures_util::poll!(&mut publish) {
            let _ = waiter.send(result);
            return None;
        }
        Some(Box::pin(async move {
            let _ = waiter.send(publish.await);
        }))
    }

    /// The publishing channel, opened anew when the broker closed it (e.g. after a publish to
    /// a missing exchange).
    async fn channel(&self) -> Result<Channel, TransportError> {
        let mut channel = self.channel.lock().await;
        if channel.status().connected() {
            return Ok(channel.clone());
        }
        if !self.connection.status().connected() || self.closing.load(Ordering::SeqCst) {
            return Err(TransportError::new(
                ErrorKind::Closed,
                format!("the connection to {} is closed", self.authority),
            ));
        }
        let ctx = Ctx {
            authority: self.authority.clone(),
            vhost: String::new(),
        };
        *channel = open_publisher(&self.connection, &ctx).await?;
        Ok(channel.clone())
    }
}

/// What a publisher confirm means for the message.
fn confirmation(
    confirm: Result<Confirmation, lapin::Error>,
    authority: &str,
    target: &str,
) -> Result<(), TransportError> {
    match confirm {
        Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => Ok(()),
        Ok(Confirmation::Ack(Some(returned))) | Ok(Confirmation::Nack(Some(returned))) => {
            Err(TransportError::new(
                ErrorKind::Rejected,
                format!(
                    "{authority} returned the message for {target}: {} {}",
                    returned.reply_code, returned.reply_text
                ),
            ))
        }
        Ok(Confirmation::Nack(None)) => Err(TransportError::new(
            ErrorKind::Rejected,
            format!("{authority} negatively confirmed the message for {target}"),
        )),
        Err(e) => Err(match e.kind() {
            lapin::ErrorKind::ProtocolError(amqp)
                if matches!(amqp.kind(), AMQPErrorKind::Soft(_)) =>
            {
                TransportError::new(
                    ErrorKind::Rejected,
                    format!(
                        "{authority} refused the message for {target}: {} {}",
                        amqp.get_id(),
                        amqp.get_message()
                    ),
                )
            }
            _ => channel_error(&e, authority),
        }),
    }
}

impl Amqp091Client {
    fn stop_tasks(&mut self) {
        for task in self.tasks.drain(..).chain(self.publisher_task.take()) {
            task.abort();
        }
    }
}

impl BrokerClient for Amqp091Client {
    fn publish(&self, publish: Publish) -> crate::Confirmation {
        let (exchange, routing_key) = match parse_target_address(&publish.address) {
            Ok(parts) => parts,
            Err(e) => return decided(Err(e)),
        };
        let (properties, body) = to_amqp(&publish.message);
        let (waiter, result) = oneshot::channel();
        let closed = {
            let authority = self.authority.clone();
            move || {
                TransportError::new(
                    ErrorKind::Closed,
                    format!("the connection to {authority} is closed"),
                )
            }
        };
        let cmd = PublishCmd {
            exchange,
            routing_key,
            properties,
            body,
            waiter,
        };
        if self.closing.load(Ordering::SeqCst) || self.publishes.send(cmd).is_err() {
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
        self.closing.store(true, Ordering::SeqCst);
        Box::pin(async move {
            // No more publishes: the publisher task ends once the queued ones are confirmed.
            drop(std::mem::replace(
                &mut self.publishes,
                mpsc::unbounded_channel().0,
            ));
            let graceful = async {
                for (channel, tag) in &self.consumer_channels {
                    let _ = channel
                        .basic_cancel(tag.clone(), BasicCancelOptions::default())
                        .await;
                }
                if let Some(task) = self.publisher_task.as_mut() {
                    let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
                }
                for (channel, _) in &self.consumer_channels {
                    let _ = channel.close(200, "OK".into()).await;
                }
                let publisher = self.publisher.lock().await.clone();
                let _ = publisher.close(200, "OK".into()).await;
                let _ = self.connection.close(200, "OK".into()).await;
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), graceful).await;
            self.stop_tasks();
            self.guard.0.abort();
        })
    }
}

impl Drop for Amqp091Client {
    fn drop(&mut self) {
        // Dropped without close: stop the consumers so the connection closes with the last
        // handle on it.
        self.closing.store(true, Ordering::SeqCst);
        self.stop_tasks();
    }
}

/// A headers-table value as a header string.
fn value_to_string(value: &AMQPValue) -> Option<String> {
    Some(match value {
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(v) => v.to_string(),
        AMQPValue::ShortShortUInt(v) => v.to_string(),
        AMQPValue::ShortInt(v) => v.to_string(),
        AMQPValue::ShortUInt(v) => v.to_string(),
        AMQPValue::LongInt(v) => v.to_string(),
        AMQPValue::LongUInt(v) => v.to_string(),
        AMQPValue::LongLongInt(v) => v.to_string(),
        AMQPValue::Float(v) => v.to_string(),
        AMQPValue::Double(v) => v.to_string(),
        AMQPValue::DecimalValue(d) => {
            let digits = d.value.to_string();
            let scale = d.scale as usize;
            if scale == 0 {
                digits
            } else if digits.len() > scale {
                format!(
                    "{}.{}",
                    &digits[..digits.len() - scale],
                    &digits[digits.len() - scale..]
                )
            } else {
                format!("0.{}{digits}", "0".repeat(scale - digits.len()))
            }
        }
        AMQPValue::ShortString(s) => s.as_str().to_string(),
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ByteArray(b) => String::from_utf8_lossy(b.as_slice()).into_owned(),
        AMQPValue::Timestamp(t) => t.to_string(),
        AMQPValue::FieldArray(_) | AMQPValue::FieldTable(_) => value_to_json(value).to_string(),
        AMQPValue::Void => return None,
    })
}

fn value_to_json(value: &AMQPValue) -> serde_json::Value {
    use serde_json::Value;
    match value {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(v) => (*v).into(),
        AMQPValue::ShortShortUInt(v) => (*v).into(),
        AMQPValue::ShortInt(v) => (*v).into(),
        AMQPValue::ShortUInt(v) => (*v).into(),
        AMQPValue::LongInt(v) => (*v).into(),
        AMQPValue::LongUInt(v) => (*v).into(),
        AMQPValue::LongLongInt(v) => (*v).into(),
        AMQPValue::Timestamp(v) => (*v).into(),
        AMQPValue::Float(v) => serde_json::Number::from_f64(*v as f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        AMQPValue::Double(v) => serde_json::Number::from_f64(*v)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(value_to_json).collect()),
        AMQPValue::FieldTable(t) => Value::Object(
            t.inner()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), value_to_json(v)))
                .collect(),
        ),
        AMQPValue::Void => Value::Null,
        other => Value::String(value_to_string(other).unwrap_or_default()),
    }
}

/// The `charset` parameter of a content type, lower-cased.
fn charset(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("charset"))
            .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    })
}

/// The text of an inbound payload (see the module documentation).
pub fn payload_text(content_type: Option<&str>, bytes: &[u8]) -> Option<String> {
    let content_type = content_type.map(str::trim);
    if content_type.is_some_and(|ct| {
        ct.as_bytes()
            .get(..24)
            .is_some_and(|start| start.eq_ignore_ascii_case(b"application/octet-stream"))
    }) {
        return None;
    }
    match content_type.and_then(charset).as_deref() {
        Some("iso-8859-1" | "latin1" | "latin-1" | "us-ascii" | "ascii") => {
            Some(bytes.iter().map(|&b| b as char).collect())
        }
        _ => String::from_utf8(bytes.to_vec()).ok(),
    }
}

fn to_external(delivery: &lapin::message::Delivery) -> ExternalMessage {
    from_properties(&delivery.properties, &delivery.data)
}

/// The external message of a delivery's properties and body.
pub(crate) fn from_properties(props: &BasicProperties, data: &[u8]) -> ExternalMessage {
    let mut headers = Headers::new();
    if let Some(table) = props.headers() {
        for (key, value) in table.inner() {
            if let Some(v) = value_to_string(value) {
                headers.insert(key.as_str(), v);
            }
        }
    }
    let mut set = |key: &str, value: Option<String>| {
        if let Some(v) = value {
            headers.insert(key, v);
        }
    };
    let s = |v: &Option<ShortString>| v.as_ref().map(|v| v.as_str().to_string());
    set("content-type", s(props.content_type()));
    set("content-encoding", s(props.content_encoding()));
    set("correlation-id", s(props.correlation_id()));
    set("reply-to", s(props.reply_to()));
    set("message-id", s(props.message_id()));
    set("user-id", s(props.user_id()));
    set("app-id", s(props.app_id()));
    set("type", s(props.kind()));
    set("timestamp", props.timestamp().map(|t| t.to_string()));
    set("expiration", s(props.expiration()));
    set("priority", props.priority().map(|p| p.to_string()));
    set(
        "delivery-mode",
        props.delivery_mode().map(|m| m.to_string()),
    );
    let content_type = s(props.content_type());
    let text = payload_text(content_type.as_deref(), data);
    ExternalMessage {
        headers,
        text,
        bytes: Some(data.to_vec()),
        content_type,
    }
}

/// Basic properties and body of an outbound message (see the module documentation).
pub fn to_amqp(message: &ExternalMessage) -> (BasicProperties, Vec<u8>) {
    let mut props = BasicProperties::default();
    let mut table = FieldTable::default();
    let mut content_type_set = false;
    for (key, value) in message.headers.iter() {
        let value = ferrule_protocol::headers::value_to_header_string(value);
        let lower = key.to_ascii_lowercase();
        let as_short = || ShortString::try_new(value.clone()).ok();
        let mut taken = true;
        match lower.as_str() {
            "content-type" => match as_short() {
                Some(v) => {
                    props = props.with_content_type(v);
                    content_type_set = true;
                }
                None => taken = false,
            },
            "content-encoding" => match as_short() {
                Some(v) => props = props.with_content_encoding(v),
                None => taken = false,
            },
            "correlation-id" => match as_short() {
                Some(v) => props = props.with_correlation_id(v),
                None => taken = false,
            },
            "reply-to" => match as_short() {
                Some(v) => props = props.with_reply_to(v),
                None => taken = false,
            },
            "message-id" => match as_short() {
                Some(v) => props = props.with_message_id(v),
                None => taken = false,
            },
            "app-id" => match as_short() {
                Some(v) => props = props.with_app_id(v),
                None => taken = false,
            },
            "type" => match as_short() {
                Some(v) => props = props.with_type(v),
                None => taken = false,
            },
            "expiration" => match as_short() {
                Some(v) => props = props.with_expiration(v),
                None => taken = false,
            },
            "timestamp" => match value.trim().parse::<u64>() {
                Ok(v) => props = props.with_timestamp(v),
                Err(_) => taken = false,
            },
            "priority" => match value.trim().parse::<u8>() {
                Ok(v) => props = props.with_priority(v),
                Err(_) => taken = false,
            },
            "delivery-mode" => match value.trim().parse::<u8>() {
                Ok(v @ (1 | 2)) => props = props.with_delivery_mode(v),
                _ => taken = false,
            },
            _ => taken = false,
        }
        if !taken && let Ok(k) = ShortString::try_new(key) {
            table.insert(k, AMQPValue::LongString(LongString::from(value)));
        }
    }
    if !content_type_set
        && let Some(ct) = message.content_type.as_deref()
        && let Ok(v) = ShortString::try_new(ct)
    {
        props = props.with_content_type(v);
    }
    if !table.inner().is_empty() {
        props = props.with_headers(table);
    }
    (props, message.payload().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_addresses_as_ditto() {
        let ok = |a: &str| parse_target_address(a).unwrap();
        assert_eq!(ok("ex/key"), ("ex".into(), "key".into()));
        assert_eq!(ok("/queue"), ("".into(), "queue".into()));
        assert_eq!(ok("ex/key/"), ("ex".into(), "key".into()));
        for bad in ["ex", "ex/", "", "/", "ex/a/b"] {
            assert_eq!(
                parse_target_address(bad).unwrap_err().kind,
                ErrorKind::Misconfigured,
                "{bad}"
            );
        }
    }

    #[test]
    fn payload_text_rules() {
        assert_eq!(payload_text(None, b"hi").as_deref(), Some("hi"));
        assert_eq!(
            payload_text(Some("application/json"), b"{}").as_deref(),
            Some("{}")
        );
        assert_eq!(payload_text(Some("application/octet-stream"), b"hi"), None);
        assert_eq!(payload_text(Some("text/plain"), &[0xff, 0xfe]), None);
        assert_eq!(
            payload_text(Some("text/plain; charset=ISO-8859-1"), &[0x66, 0xe9]).as_deref(),
            Some("fé")
        );
    }

    /// Found by the `headers` fuzz target: a content type whose 24th byte falls inside a
    /// multi-byte character made the consumer panic (a string slice at byte 24).
    #[test]
    fn a_content_type_with_a_character_across_byte_24_is_not_octet_stream() {
        let ct = "textcreatme=ye3sterday\u{fffd}\u{fffd}/plain";
        assert_eq!(payload_text(Some(ct), b"hi").as_deref(), Some("hi"));
        assert_eq!(
            payload_text(Some("application/octet-stre\u{e4}m"), b"hi").as_deref(),
            Some("hi")
        );
        assert_eq!(
            payload_text(Some("APPLICATION/OCTET-STREAM; x=\u{e4}"), b"hi"),
            None
        );
    }

    #[test]
    fn outbound_properties_and_table() {
        let mut m = ExternalMessage::text("x");
        m.headers.insert("content-type", "text/plain");
        m.headers.insert("correlation-id", "c1");
        m.headers.insert("priority", "7");
        m.headers.insert("timestamp", "nope");
        m.headers.insert("user-id", "u");
        m.headers.insert("custom", serde_json::json!(3));
        let (props, body) = to_amqp(&m);
        assert_eq!(body, b"x");
        assert_eq!(
            props.content_type().as_ref().unwrap().as_str(),
            "text/plain"
        );
        assert_eq!(props.correlation_id().as_ref().unwrap().as_str(), "c1");
        assert_eq!(*props.priority(), Some(7));
        assert_eq!(*props.timestamp(), None);
        let table = props.headers().as_ref().unwrap().inner();
        let get = |k: &str| value_to_string(table.get(k).unwrap()).unwrap();
        assert_eq!(get("timestamp"), "nope");
        assert_eq!(get("user-id"), "u");
        assert_eq!(get("custom"), "3");
        assert!(!table.contains_key("content-type"));
    }

    #[test]
    fn table_values_as_strings() {
        assert_eq!(
            value_to_string(&AMQPValue::DecimalValue(lapin::types::DecimalValue {
                scale: 2,
                value: 5
            }))
            .unwrap(),
            "0.05"
        );
        assert_eq!(value_to_string(&AMQPValue::Boolean(true)).unwrap(), "true");
        assert_eq!(value_to_string(&AMQPValue::Void), None);
    }
}
