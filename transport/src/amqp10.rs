//! AMQP 1.0 client (fe2o3-amqp), as Ditto's `amqp-10` connections use it.
//!
//! # Connection
//! `amqp://[user:password@]host[:port]`: SASL PLAIN with the URI's user and password, SASL
//! ANONYMOUS without them. `amqps://` (default port 5671) is TLS from the first byte (as on
//! RabbitMQ's TLS listener; not the AMQP 1.0 TLS upgrade), with the configuration of
//! [`crate::tls::client_config`] (rustls with *ring*, as the other transports: `ca`, client
//! certificate, `validateCertificates`); the handshake is made here with tokio-rustls and
//! fe2o3-amqp gets the TLS stream (its own TLS feature would pull the aws-lc provider).
//! Failures: TCP errors → `Unreachable`, SASL outcome other than ok → `Unauthorized`, more than
//! `connect_timeout` → `Timeout`, a refused source or target address, bad PEM or a TLS failure
//! (untrusted server certificate, rejected client certificate, TLS to a plain port) →
//! `Misconfigured`. Messages name `host:port`, never the password.
//!
//! Every link gets a session of its own: RabbitMQ's AMQP 1.0 plugin ends the whole session when
//! it refuses an attach, so one bad address cannot take other links down with it. One more
//! session is kept idle as a watchdog: when it ends, the connection is gone.
//!
//! # Sources
//! Every address of every source gets `consumerCount` receiver links (sender settle mode
//! unsettled, receiver settle mode first, manual credit). The credit is `max_in_flight`; once it
//! is used up the client grants `max_in_flight` minus the deliveries still unsettled, so a
//! receiver never holds more than `max_in_flight` unsettled deliveries. (Credit is granted only
//! when none is left: RabbitMQ 3.x miscounts a flow that crosses transfers in flight, and
//! fe2o3-amqp fails a link that receives more than it granted.)
//!
//! Settlement (`at_least_once`): [`Settle::Accept`] → `accepted`, [`Settle::Redeliver`] (also a
//! dropped settler) → `modified` with `delivery-failed=true` as Ditto sends it (the broker
//! delivers the message again and counts the failed delivery), [`Settle::Reject`] → `rejected`.
//! Without `at_least_once` a message is accepted on receipt. RabbitMQ before 4.0 gets `released`
//! for "redeliver" instead: its AMQP 1.0 plugin does not know `modified` and ends the session with
//! `invalid-field` ("Unrecognised state"); `released` makes it requeue the message, which is what
//! the host asks for (its delivery count is not incremented). The broker is told by its `open`
//! (connection properties `product` `RabbitMQ` and a `version` below 4). fe2o3-amqp does not
//! expose the peer's `open`, so the client keeps a copy of the first 4 KiB it reads from the
//! connection (protocol headers, SASL frames, `open`) and decodes the `open` there with
//! fe2o3-amqp's own frame codec. A RabbitMQ without a readable version, and an `open` that cannot
//! be read, get `released` too. Settlements the host made before `close` are still sent;
//! unsettled deliveries go back to the queue when the link closes.
//!
//! # Message mapping (both directions)
//! * Properties ↔ headers of the same name: `message-id`, `user-id`, `to`, `subject`,
//!   `reply-to`, `correlation-id`, `content-type`, `absolute-expiry-time`, `creation-time`,
//!   `group-id`, `group-sequence`, `reply-to-group-id`. Timestamps are milliseconds since the
//!   epoch as decimal text, `user-id` is UTF-8 text, ids are strings (numeric, UUID and binary ids
//!   read as their text form).
//! * Application properties ↔ headers. An application property named like one of the standard
//!   properties above is read as `amqp.application.property:<name>`; outbound that prefix writes
//!   application property `<name>`, so such names survive a round trip. Every other outbound
//!   header becomes a (string-valued) application property, also a standard name whose value
//!   does not fit its property (a non-numeric `creation-time`).
//! * Message annotations ↔ headers `amqp.message.annotation:<name>` (symbol keys, string values
//!   outbound; inbound values as text).
//! * Values as text: strings and symbols as they are, numbers and booleans in decimal, UUIDs in
//!   the 8-4-4-4-12 form, timestamps as milliseconds, binary as UTF-8 (lossy); `null` values
//!   are left out.
//!
//! Body, inbound (what Qpid JMS, and so Ditto, makes of it):
//! * `amqp-value` string → `text` (a JMS TextMessage);
//! * `amqp-value` binary → `bytes`;
//! * `data` sections → `bytes` (concatenated), and also `text` when the content type is
//!   text-like (`text/*`, `application/json`, `*+json`, `application/xml`, `*+xml`,
//!   `application/javascript`) and the bytes are UTF-8;
//! * any other `amqp-value` (number, boolean, ...) → `text` in the value-as-text form above;
//! * `amqp-sequence` and no body → no payload.
//!
//! The external message's `content_type` is the `content-type` property.
//!
//! Body, outbound (as Ditto's publisher builds JMS messages): `bytes` (they win over text) → one
//! `data` section (a BytesMessage); else `text` → `amqp-value` string (a TextMessage); neither
//! → an `amqp-value` null. The `content-type` property is the header `content-type`, else the
//! message's `content_type`.
//!
//! # Target addresses
//! As Ditto does (a JMS destination per address): `queue://NAME` → link address `NAME` with
//! target capability `queue`, `topic://NAME` → `NAME` with capability `topic`, anything else
//! as it is with capability `queue`. RabbitMQ (3.x) reads a bare `NAME` as its queue `NAME`
//! (default exchange), so to publish to an exchange write its own address syntax:
//! `/exchange/X/KEY`, `/topic/KEY`, `/queue/NAME`, `/amq/queue/NAME` pass through unchanged.
//!
//! One sender link per distinct address, attached on first use and cached; a link that fails
//! is dropped from the cache and attached again on the next publish. Publishes are pipelined
//! (batchable transfers; the outcome is awaited by the publishing future only): `accepted` →
//! `Ok`, `rejected`/`released`/`modified` → [`ErrorKind::Rejected`], a refused attach →
//! `Rejected` naming the address, a lost link or connection → [`ErrorKind::Closed`].
//!
//! # Events
//! Loss of the connection (or of the watchdog session) → one [`ClientEvent::Disconnected`].
//! A receiver link detached by the peer (closing or not), or its session ended while the
//! connection lives → one [`ClientEvent::SourceFailed`] for its source and address, with the
//! peer's error condition and description when the detach carries them; the other links go on.
//! Nothing is reported after `close`.
//!
//! # Dry run
//! Connects, attaches (and closes) a receiver per source address and a sender per target
//! address without `{{` placeholders, each on its own session, consumes nothing.
//!
//! # Limits
//! `specificConfig` `amqp.maxFrameSize` (Qpid JMS's option, so Ditto's: bytes, 512 to 64 MiB,
//! default 1 MiB = [`DEFAULT_MAX_FRAME_SIZE`], Qpid JMS's default): the `max-frame-size` of the
//! client's `open`, which fe2o3-amqp's frame reader enforces too (before the `open` it allows
//! 512 bytes). `amqp.idleTimeout` and it are checked at create ([`check_config`]); a bad value is
//! `Misconfigured` naming the key.
//!
//! fe2o3-amqp decodes frames and messages with serde_amqp, which allocates what a size in the
//! data declares before it reads the bytes (5 bytes made it allocate 3.9 GiB: zero pages, so no
//! resident memory, but an abort where the address space or overcommit is limited). So the
//! client reads the connection through a check (`Checked`): it hands fe2o3-amqp the peer's
//! protocol headers and frames only when they are whole and
//! * a frame is at most `amqp.maxFrameSize` bytes (refused from its header alone);
//! * every value of its performative (SASL frames included) declares no more bytes, and no more
//!   list, map or array items, than the bytes that hold it (checked to 64 levels of nesting);
//! * the message of a transfer passes the same check when it is whole: in its frame (the usual
//!   case: RabbitMQ splits only messages larger than its frame size), or, for a delivery in
//!   several frames, from a copy of its parts kept until the last one, which is handed on only
//!   when the whole passed (fe2o3-amqp decodes the reassembled message then). The copy is at
//!   most 128 MiB (RabbitMQ's maximum message size); a larger message ends the connection. An
//!   aborted delivery's copy is dropped.
//!
//! What the check refuses ends the connection with `Other` naming what came ("sent a frame of N
//! bytes, more than the max-frame-size", "a value declares N bytes where M are left").

use crate::specific::{parse_num, parse_size};
use crate::uri::BrokerUri;
use crate::{
    BoxFuture, BrokerClient, ClientConfig, ClientEvent, Connected, Delivery, ErrorKind, Publish,
    Settle, Settler, SourceSpec, TransportError, decided,
};
use fe2o3_amqp::connection::{ConnectionHandle, OpenError};
use fe2o3_amqp::frames::amqp::{Frame as AmqpFrame, FrameBody};
use fe2o3_amqp::link::delivery::{DeliveryFut, DeliveryInfo};
use fe2o3_amqp::link::{CreditMode, LinkStateError, RecvError, SendError};
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::transport::Transport;
use fe2o3_amqp::types::definitions::{ReceiverSettleMode, SenderSettleMode};
use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{
    AmqpValue, ApplicationProperties, Body, Data, Message, MessageAnnotations, MessageId, Modified,
    Outcome, Properties, Source, Target,
};
use fe2o3_amqp::types::performatives::Open;
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Symbol, Timestamp, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use ferrule_protocol::ExternalMessage;
use ferrule_protocol::headers::Headers;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch};

/// Header prefix that forces an application property.
pub const APPLICATION_PROPERTY_PREFIX: &str = "amqp.application.property:";
/// Header prefix of message annotations.
pub const MESSAGE_ANNOTATION_PREFIX: &str = "amqp.message.annotation:";

pub(crate) const STANDARD_PROPERTIES: [&str; 12] = [
    "message-id",
    "user-id",
    "to",
    "subject",
    "reply-to",
    "correlation-id",
    "content-type",
    "absolute-expiry-time",
    "creation-time",
    "group-id",
    "group-sequence",
    "reply-to-group-id",
];

/// How long link and session teardown may take on close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long attaching a sender lazily (on publish) may take.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);

type Conn = Arc<tokio::sync::Mutex<ConnectionHandle<()>>>;
type PendingOutcome = DeliveryFut<Result<Outcome, SendError>>;

pub fn connect(config: ClientConfig) -> BoxFuture<'static, Result<Connected, TransportError>> {
    Box::pin(async move {
        let uri = BrokerUri::parse(&config.uri)?;
        let limit = config.connect_timeout;
        match tokio::time::timeout(limit, connect_inner(config, uri.clone())).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::new(
                ErrorKind::Timeout,
                format!(
                    "connecting to {} timed out after {} ms",
                    uri.authority(),
                    limit.as_millis()
                ),
            )),
        }
    })
}

/// Qpid JMS's `amqp.idleTimeout` (the AMQP 1.0 client of Ditto), in `specificConfig`.
const IDLE_TIMEOUT: &str = "amqp.idleTimeout";
/// Its default in Qpid JMS: a peer silent this long (heartbeats included) is gone.
const DEFAULT_IDLE_TIMEOUT_MS: u32 = 60_000;

/// The local idle time-out of the connection in milliseconds: the peer has to send something
/// (an empty frame at least) within it, so a peer that vanished without closing the TCP
/// connection is noticed and the connection reconnects; `0` turns it off.
fn idle_timeout(config: &ClientConfig) -> Result<Option<u32>, TransportError> {
    let ms = parse_num::<u32>(config, IDLE_TIMEOUT)?.unwrap_or(DEFAULT_IDLE_TIMEOUT_MS);
    Ok((ms > 0).then_some(ms))
}

/// Qpid JMS's `amqp.maxFrameSize` (the AMQP 1.0 client of Ditto), in `specificConfig`: the
/// `max-frame-size` of the client's `open`, which fe2o3-amqp's frame reader also enforces (a
/// larger frame ends the connection before it is buffered). Its default is Qpid JMS's; the
/// values allowed go from the protocol's least to 64 MiB.
pub const MAX_FRAME_SIZE: &str = "amqp.maxFrameSize";
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 1024 * 1024;
pub const FRAME_SIZES: std::ops::RangeInclusive<u32> = 512..=64 * 1024 * 1024;

fn max_frame_size(config: &ClientConfig) -> Result<u32, TransportError> {
    parse_size(config, MAX_FRAME_SIZE, DEFAULT_MAX_FRAME_SIZE, FRAME_SIZES)
}

/// Checks the `specificConfig` of an AMQP 1.0 connection without connecting.
pub fn check_config(config: &ClientConfig) -> Result<(), TransportError> {
    max_frame_size(config)?;
    idle_timeout(config).map(|_| ())
}

fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

async fn connect_inner(config: ClientConfig, uri: BrokerUri) -> Result<Connected, TransportError> {
    let authority = uri.authority();
    if uri.scheme != "amqp" && uri.scheme != "amqps" {
        return Err(TransportError::new(
            ErrorKind::Misconfigured,
            format!("The URI scheme '{}' is not valid for AMQP 1.0.", uri.scheme),
        ));
    }
    let max_frame_size = max_frame_size(&config)?;
    // TLS is set up here (fe2o3-amqp's own TLS brings another crypto provider and no custom
    // verifier): the same rustls configuration as the other transports', see `crate::tls`.
    let tls = if uri.secure {
        let config = crate::tls::client_config(
            config.ca.as_deref(),
            config
                .client_cert
                .as_ref()
                .map(|(cert, key)| (cert.as_str(), key.as_str())),
            config.validate_certificates,
        )?;
        let name = ServerName::try_from(uri.host.clone()).map_err(|e| {
            TransportError::new(
                ErrorKind::Misconfigured,
                format!("'{}' is not a valid host name for TLS: {e}", uri.host),
            )
        })?;
        Some((tokio_rustls::TlsConnector::from(config), name))
    } else {
        None
    };
    let stream = tokio::net::TcpStream::connect((uri.host.as_str(), uri.port))
        .await
        .map_err(|e| {
            TransportError::new(
                ErrorKind::Unreachable,
                format!("could not connect to {authority}: {e}"),
            )
        })?;
    let _ = stream.set_nodelay(true);
    let profile = match (&uri.username, &uri.password) {
        (Some(user), password) => SaslProfile::Plain {
            username: user.clone(),
            password: password.clone().unwrap_or_default(),
        },
        (None, _) => SaslProfile::Anonymous,
    };
    let container_id = if config.dry_run {
        format!(
            "{}-{}-test-{}",
            config.connection_id,
            config.client_index,
            unique()
        )
    } else {
        format!("{}-{}", config.connection_id, config.client_index)
    };
    // `amqp`: the stream is used as it is (with TLS already, for `amqps`).
    let builder = Connection::builder()
        .container_id(container_id)
        .hostname(uri.host.as_str())
        .scheme("amqp")
        .max_frame_size(max_frame_size)
        .sasl_profile(profile);
    let builder = match idle_timeout(&config)? {
        Some(ms) => builder.idle_time_out(ms),
        None => builder,
    };
    // The peer's `open` is read from a copy of the first bytes (fe2o3-amqp keeps it to itself).
    let first_bytes = Arc::new(Mutex::new(Vec::new()));
    let connection = match tls {
        Some((connector, name)) => {
            let stream = connector
                .connect(name, stream)
                .await
                .map_err(|e| tls_error(&e, &authority))?;
            builder
                .open_with_stream(Recorded::new(
                    Checked::new(stream, max_frame_size),
                    first_bytes.clone(),
                ))
                .await
        }
        None => {
            builder
                .open_with_stream(Recorded::new(
                    Checked::new(stream, max_frame_size),
                    first_bytes.clone(),
                ))
                .await
        }
    }
    .map_err(|e| open_error(e, &authority, uri.secure))?;
    let first_bytes = std::mem::take(&mut *first_bytes.lock().unwrap());
    let modified_redelivery = understands_modified(remote_open(&first_bytes).await.as_ref());
    let conn: Conn = Arc::new(tokio::sync::Mutex::new(connection));

    let (events_tx, events_rx) = mpsc::channel(64);
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        authority: authority.clone(),
        conn: conn.clone(),
        events: events_tx,
        disconnected: AtomicBool::new(false),
        closing: AtomicBool::new(false),
        senders: Mutex::new(HashMap::new()),
        link_prefix: format!("{}-{}", config.connection_id, config.client_index),
        modified_redelivery,
    });

    if config.dry_run {
        let result = dry_run(&config, &shared).await;
        let client = Client {
            shared: shared.clone(),
            stop: stop_tx,
            tasks: Mutex::new(Vec::new()),
            watchdog: Mutex::new(None),
        };
        if let Err(e) = result {
            Box::new(client).close().await;
            return Err(e);
        }
        let (_deliveries_tx, deliveries) = mpsc::channel(1);
        return Ok(Connected {
            client: Box::new(client),
            deliveries,
            events: events_rx,
        });
    }

    // The watchdog session: ends when the connection does.
    let watchdog_session = begin(&shared).await?;
    let client = Client {
        shared: shared.clone(),
        stop: stop_tx,
        tasks: Mutex::new(Vec::new()),
        watchdog: Mutex::new(None),
    };

    let consumers: usize = config
        .sources
        .iter()
        .map(|s| s.addresses.len() * s.consumer_count.max(1) as usize)
        .sum();
    let credit = u32::from(config.max_in_flight.max(1));
    let (deliveries_tx, deliveries) =
        mpsc::channel((consumers.max(1) * credit as usize).clamp(1, 1 << 20));
    let mut receivers = Vec::new();
    for source in &config.sources {
        for address in &source.addresses {
            for n in 0..source.consumer_count.max(1) {
                match attach_receiver(&shared, source, address, n, credit).await {
                    Ok(r) => receivers.push((source.clone(), address.clone(), r)),
                    Err(e) => {
                        drop(receivers);
                        drop(watchdog_session);
                        Box::new(client).close().await;
                        return Err(e);
                    }
                }
            }
        }
    }
    {
        let mut tasks = client.tasks.lock().unwrap();
        for (source, address, (session, receiver)) in receivers {
            tasks.push(tokio::spawn(run_receiver(ReceiverTask {
                session,
                receiver,
                source: source.index,
                address,
                at_least_once: source.at_least_once,
                credit,
                deliveries: deliveries_tx.clone(),
                shared: shared.clone(),
                stop: stop_rx.clone(),
            })));
        }
    }
    let (watchdog_stop_tx, watchdog_stop_rx) = oneshot::channel();
    let watchdog = tokio::spawn(run_watchdog(
        watchdog_session,
        shared.clone(),
        watchdog_stop_rx,
    ));
    *client.watchdog.lock().unwrap() = Some((watchdog_stop_tx, watchdog));
    Ok(Connected {
        client: Box::new(client),
        deliveries,
        events: events_rx,
    })
}

/// A failed TLS handshake: `Misconfigured` with the reason when it is a TLS failure, else as a
/// failed connection.
fn tls_error(e: &std::io::Error, authority: &str) -> TransportError {
    match crate::tls::find_tls_error(e) {
        Some(tls) => TransportError::new(
            ErrorKind::Misconfigured,
            format!("{authority}: {}", crate::tls::describe(tls)),
        ),
        None => TransportError::new(
            ErrorKind::Unreachable,
            format!("the TLS handshake with {authority} failed: {e}"),
        ),
    }
}

fn open_error(e: OpenError, authority: &str, secure: bool) -> TransportError {
    // A TLS failure after the TLS handshake (TLS 1.3: the broker rejects the client certificate).
    if let OpenError::Io(io) = &e {
        if crate::tls::find_tls_error(io).is_some() {
            return tls_error(io, authority);
        }
        if secure && let Some(e) = crate::tls::closed_after_handshake(authority, io) {
            return e;
        }
    }
    match e {
        OpenError::SaslError { code, .. } => TransportError::new(
            ErrorKind::Unauthorized,
            format!("{authority} refused the credentials (SASL outcome {code:?})"),
        ),
        // What `Checked` refused, or fe2o3-amqp's frame reader (a frame too large).
        OpenError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            let message = match e.get_ref().and_then(|r| r.downcast_ref::<Refused>()) {
                Some(refused) => format!("{authority} {refused}"),
                None => format!("{authority} sent what AMQP 1.0 does not allow: {e}"),
            };
            TransportError::new(ErrorKind::Other, message)
        }
        OpenError::Io(e) => TransportError::new(
            ErrorKind::Unreachable,
            format!("connection to {authority} failed: {e}"),
        ),
        OpenError::ProtocolHeaderMismatch(_) => TransportError::new(
            ErrorKind::Misconfigured,
            format!("{authority} does not speak AMQP 1.0"),
        ),
        OpenError::RemoteClosedWithError(err) => {
            let kind = if format!("{:?}", err.condition).contains("Unauthorized") {
                ErrorKind::Unauthorized
            } else {
                ErrorKind::Other
            };
            TransportError::new(
                kind,
                format!("{authority} closed the connection: {}", describe(&err)),
            )
        }
        other => TransportError::new(
            ErrorKind::Other,
            format!("opening the AMQP 1.0 connection to {authority} failed: {other}"),
        ),
    }
}

/// How many of the first bytes a connection reads are kept: the peer's protocol headers, SASL
/// frames and `open`, each frame at most 512 bytes (the maximum before `open` is exchanged).
const RECORDED_BYTES: usize = 4096;

/// A stream that keeps a copy of the first [`RECORDED_BYTES`] it reads.
#[derive(Debug)]
struct Recorded<S> {
    inner: S,
    copy: Arc<Mutex<Vec<u8>>>,
    left: usize,
}

impl<S> Recorded<S> {
    fn new(inner: S, copy: Arc<Mutex<Vec<u8>>>) -> Self {
        Recorded {
            inner,
            copy,
            left: RECORDED_BYTES,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.left > 0 && matches!(result, Poll::Ready(Ok(()))) {
            let read = &buf.filled()[before..];
            let n = read.len().min(this.left);
            this.copy.lock().unwrap().extend_from_slice(&read[..n]);
            this.left -= n;
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Why [`Checked`] ends a connection (in the `InvalidData` error fe2o3-amqp then fails with).
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The deepest nesting of encoded values [`walk`] follows (performatives nest 4 levels, message
/// sections a few more).
const MAX_DEPTH: usize = 64;

/// The width of a value's size (and count) fields by its format code's category (AMQP 1.0
/// 1.2: the high nibble of a primitive format code says how its value is encoded).
#[derive(Clone, Copy)]
enum Width {
    Fixed(usize),
    /// vbin, str, sym: a size of 1 or 4 bytes, then that many bytes.
    Variable(usize),
    /// list, map: size and count of 1 or 4 bytes each, then the items.
    Compound(usize),
    /// array: size and count, one element constructor, then the elements.
    Array(usize),
}

fn width(code: u8) -> Result<Width, String> {
    Ok(match code >> 4 {
        0x4 => Width::Fixed(0),
        0x5 => Width::Fixed(1),
        0x6 => Width::Fixed(2),
        0x7 => Width::Fixed(4),
        0x8 => Width::Fixed(8),
        0x9 => Width::Fixed(16),
        0xa => Width::Variable(1),
        0xb => Width::Variable(4),
        0xc => Width::Compound(1),
        0xd => Width::Compound(4),
        0xe => Width::Array(1),
        0xf => Width::Array(4),
        _ => return Err(format!("the format code 0x{code:02x} is not AMQP 1.0's")),
    })
}

/// Reads a size or count field of 1 or 4 bytes.
fn field(bytes: &[u8], at: usize, n: usize) -> Result<usize, String> {
    let b = bytes
        .get(at..at + n)
        .ok_or_else(|| "a value ends inside its size".to_string())?;
    Ok(if n == 1 {
        b[0] as usize
    } else {
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
    })
}

/// Checks a declared size against the bytes that hold it: serde_amqp allocates what a size
/// declares before it reads the bytes (up to 4 GiB for 5 bytes of input).
fn fits(size: usize, available: usize) -> Result<(), String> {
    if size > available {
        return Err(format!(
            "a value declares {size} bytes where {available} are left"
        ));
    }
    Ok(())
}

/// The length of one encoded value (constructor and data) at the start of `bytes`, checking
/// that every size and count inside it fits in the bytes that hold it.
fn walk(bytes: &[u8], depth: usize) -> Result<usize, String> {
    if depth > MAX_DEPTH {
        return Err(format!("values nest deeper than {MAX_DEPTH} levels"));
    }
    let code = *bytes
        .first()
        .ok_or_else(|| "a value is missing".to_string())?;
    if code == 0x00 {
        // A described value: the descriptor, then the value.
        let descriptor = walk(&bytes[1..], depth + 1)?;
        let value = walk(&bytes[1 + descriptor..], depth + 1)?;
        return Ok(1 + descriptor + value);
    }
    Ok(1 + walk_data(width(code)?, &bytes[1..], depth)?)
}

/// The length of a value's data (after its constructor) of the given width.
fn walk_data(kind: Width, bytes: &[u8], depth: usize) -> Result<usize, String> {
    match kind {
        Width::Fixed(n) => {
            fits(n, bytes.len())?;
            Ok(n)
        }
        Width::Variable(n) => {
            let size = field(bytes, 0, n)?;
            fits(size, bytes.len() - n)?;
            Ok(n + size)
        }
        Width::Compound(n) => {
            let size = field(bytes, 0, n)?;
            fits(size, bytes.len() - n)?;
            if size < n {
                return Err("a list or map is shorter than its count".into());
            }
            let count = field(bytes, n, n)?;
            let items = &bytes[2 * n..n + size];
            fits(count, items.len())?;
            let mut at = 0;
            for _ in 0..count {
                at += walk(&items[at..], depth + 1)?;
            }
            Ok(n + size)
        }
        Width::Array(n) => {
            let size = field(bytes, 0, n)?;
            fits(size, bytes.len() - n)?;
            if size < n {
                return Err("an array is shorter than its count".into());
            }
            let count = field(bytes, n, n)?;
            let body = &bytes[2 * n..n + size];
            // The element constructor: a format code, or a descriptor and a format code.
            let mut at = 0;
            if body.first() == Some(&0x00) {
                at += 1 + walk(&body[1..], depth + 1)?;
            }
            let code = *body
                .get(at)
                .ok_or_else(|| "an array has no element constructor".to_string())?;
            at += 1;
            let element = width(code)?;
            fits(count, body.len() - at)?;
            if let Width::Fixed(w) = element {
                fits(count.saturating_mul(w), body.len() - at)?;
                return Ok(n + size);
            }
            for _ in 0..count {
                at += walk_data(element, &body[at..], depth + 1)?;
            }
            Ok(n + size)
        }
    }
}

/// The fields of a `transfer` the check needs: its handle, whether more frames follow
/// (`more`), and whether the delivery is `aborted`, from the performative's list (`None` when
/// it is not a transfer).
fn transfer_fields(performative: &[u8]) -> Option<(u32, bool, bool)> {
    // `00 53 14`: described by the small ulong 0x14 (0x0000000000000014, amqp:transfer:list).
    let list = match performative {
        [0x00, 0x53, 0x14, rest @ ..] => rest,
        [0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x14, rest @ ..] => rest,
        _ => return None,
    };
    let (count, mut items) = match list.first()? {
        0x45 => (0, &list[1..]),
        0xc0 => (*list.get(2)? as usize, list.get(3..)?),
        0xd0 => (
            u32::from_be_bytes(list.get(5..9)?.try_into().ok()?) as usize,
            list.get(9..)?,
        ),
        _ => return None,
    };
    let mut handle = 0;
    let (mut more, mut aborted) = (false, false);
    for i in 0..count.min(10) {
        let len = walk(items, 0).ok()?;
        let item = &items[..len];
        let flag = match item {
            [0x41] | [0x56, 1] => Some(true),
            _ => None,
        };
        match i {
            0 => {
                handle = match item {
                    [0x43] => 0,
                    [0x52, h] => *h as u32,
                    [0x70, a, b, c, d] => u32::from_be_bytes([*a, *b, *c, *d]),
                    _ => return None,
                }
            }
            5 => more = flag.unwrap_or(false),
            9 => aborted = flag.unwrap_or(false),
            _ => {}
        }
        items = &items[len..];
    }
    Some((handle, more && !aborted, aborted))
}

/// The largest message the check copies to read it whole when it comes in several frames:
/// RabbitMQ's own maximum message size (`max_message_size`, 128 MiB). A larger one ends the
/// connection.
const MAX_SPLIT_MESSAGE: usize = 128 << 20;

/// The checks of one connection's incoming frames (see [`Checked`]).
#[derive(Debug)]
struct FrameCheck {
    max_frame_size: usize,
    /// The first 8 bytes went on (the peer's protocol header, checked by fe2o3-amqp, so a
    /// peer that is no AMQP 1.0 peer is told as such).
    started: bool,
    /// Links (channel, handle) with a delivery whose frames are still coming, with a copy of
    /// its message so far (checked whole when its last frame comes).
    partial: std::collections::HashMap<(u16, u32), Vec<u8>>,
}

impl FrameCheck {
    /// How long the unit (protocol header or frame) at the start of `buf` is, once it is whole
    /// and passed the checks; `None` while more bytes are needed.
    fn next(&mut self, buf: &[u8]) -> Result<Option<usize>, String> {
        if buf.len() < 8 {
            return Ok(None);
        }
        if buf.starts_with(b"AMQP") || !self.started {
            self.started = true;
            return Ok(Some(8));
        }
        let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if size > self.max_frame_size {
            return Err(format!(
                "sent a frame of {size} bytes, more than the max-frame-size of {} bytes \
                 (specificConfig '{MAX_FRAME_SIZE}')",
                self.max_frame_size
            ));
        }
        let doff = buf[4] as usize * 4;
        if size < 8 || doff < 8 || doff > size {
            return Err(format!(
                "sent a malformed frame (size {size}, data offset {doff})"
            ));
        }
        if buf.len() < size {
            return Ok(None);
        }
        let body = &buf[doff..size];
        if body.is_empty() {
            return Ok(Some(size));
        }
        let malformed = |why: String| format!("sent a malformed frame: {why}");
        let performative = walk(body, 0).map_err(malformed)?;
        let payload = &body[performative..];
        // The message of a transfer, checked when it is whole: in this frame, or, when it came
        // in several frames, from a copy of its parts held until the last one (which is handed
        // on only when the whole passed: fe2o3-amqp decodes the reassembled message then).
        if buf[5] == 0
            && let Some((handle, more, aborted)) = transfer_fields(&body[..performative])
        {
            let link = (u16::from_be_bytes([buf[6], buf[7]]), handle);
            if aborted {
                self.partial.remove(&link);
                return Ok(Some(size));
            }
            let parts = self.partial.remove(&link);
            if more {
                let mut parts = parts.unwrap_or_default();
                if parts.len() + payload.len() > MAX_SPLIT_MESSAGE {
                    return Err(format!(
                        "sent a message of more than {MAX_SPLIT_MESSAGE} bytes in several frames"
                    ));
                }
                parts.extend_from_slice(payload);
                self.partial.insert(link, parts);
                return Ok(Some(size));
            }
            let whole = match parts {
                Some(mut parts) => {
                    parts.extend_from_slice(payload);
                    std::borrow::Cow::Owned(parts)
                }
                None => std::borrow::Cow::Borrowed(payload),
            };
            let mut at = 0;
            while at < whole.len() {
                at += walk(&whole[at..], 0)
                    .map_err(|why| format!("sent a malformed message: {why}"))?;
            }
        }
        Ok(Some(size))
    }
}

/// The stream fe2o3-amqp reads through: it hands on protocol headers and frames only when they
/// are whole and passed [`FrameCheck`]: a frame larger than `amqp.maxFrameSize`, and a frame
/// or a message (whole in one frame) with a value whose declared size is larger than the bytes
/// that hold it, end the connection with [`Refused`] before fe2o3-amqp and serde_amqp see it
/// (serde_amqp allocates what a size declares before it reads the bytes).
#[derive(Debug)]
struct Checked<S> {
    inner: S,
    check: FrameCheck,
    /// Bytes read; those before `start` are handed on.
    buf: Vec<u8>,
    start: usize,
    /// How many bytes from `start` on passed the check.
    ready: usize,
    refused: Option<String>,
}

impl<S> Checked<S> {
    fn new(inner: S, max_frame_size: u32) -> Self {
        Checked {
            inner,
            check: FrameCheck {
                max_frame_size: max_frame_size as usize,
                started: false,
                partial: Default::default(),
            },
            buf: Vec::new(),
            start: 0,
            ready: 0,
            refused: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Checked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.ready > 0 {
                let n = this.ready.min(out.remaining());
                out.put_slice(&this.buf[this.start..this.start + n]);
                this.start += n;
                this.ready -= n;
                if this.start == this.buf.len() {
                    this.buf.clear();
                    this.start = 0;
                } else if this.start > 64 * 1024 && this.start > this.buf.len() / 2 {
                    this.buf.drain(..this.start);
                    this.start = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(why) = &this.refused {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    Refused(why.clone()),
                )));
            }
            match this.check.next(&this.buf[this.start..]) {
                Ok(Some(n)) => {
                    this.ready = n;
                    continue;
                }
                Ok(None) => {}
                Err(why) => {
                    this.refused = Some(why);
                    continue;
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // The end: what is left of a frame is not handed on.
                Poll::Ready(Ok(())) if read.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => this.buf.extend_from_slice(read.filled()),
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Checked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The peer's `open` performative in the first bytes read from it: protocol headers (`AMQP`,
/// protocol id, version) and the SASL frames are skipped, the frame after the AMQP header is
/// decoded with fe2o3-amqp's own frame codec.
async fn remote_open(bytes: &[u8]) -> Option<Open> {
    let frame_size = |rest: &[u8]| -> Option<usize> {
        Some(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize)
    };
    let mut rest = bytes;
    loop {
        if rest.starts_with(b"AMQP") {
            let amqp = rest.get(4) == Some(&0);
            rest = rest.get(8..)?;
            if amqp {
                break;
            }
        } else {
            rest = rest.get(frame_size(rest)?.max(8)..)?;
        }
    }
    let frame = rest.get(..frame_size(rest)?)?.to_vec();
    let mut transport =
        Transport::<_, AmqpFrame>::bind(std::io::Cursor::new(frame), RECORDED_BYTES, None);
    match transport.next().await?.ok()?.into_body() {
        FrameBody::Open(open) => Some(open),
        _ => None,
    }
}

/// Whether the peer takes `modified` as an outcome: every peer but RabbitMQ before 4.0 (its
/// `open` says `product: RabbitMQ`, `version: 3.x`), whose AMQP 1.0 plugin ends the session on
/// it. A RabbitMQ without a readable version, and a peer whose `open` could not be read, are
/// taken as not knowing it.
fn understands_modified(open: Option<&Open>) -> bool {
    let Some(open) = open else {
        return false;
    };
    let property = |name: &str| {
        open.properties
            .as_ref()
            .and_then(|p| p.get(&Symbol::from(name)))
            .and_then(value_text)
    };
    if !property("product").is_some_and(|p| p.eq_ignore_ascii_case("RabbitMQ")) {
        return true;
    }
    let major = property("version").and_then(|v| {
        v.split('.')
            .next()
            .and_then(|major| major.trim().parse::<u32>().ok())
    });
    major.is_some_and(|major| major >= 4)
}

fn describe(err: &fe2o3_amqp::types::definitions::Error) -> String {
    match &err.description {
        Some(d) => format!("{:?}: {d}", err.condition),
        None => format!("{:?}", err.condition),
    }
}

struct Shared {
    authority: String,
    conn: Conn,
    events: mpsc::Sender<ClientEvent>,
    disconnected: AtomicBool,
    closing: AtomicBool,
    /// address → request channel of its sender task
    senders: Mutex<HashMap<String, mpsc::UnboundedSender<SendRequest>>>,
    link_prefix: String,
    /// "redeliver" is settled as `modified` (else as `released`), see [`understands_modified`]
    modified_redelivery: bool,
}

impl Shared {
    fn disconnected(&self, message: String) {
        if self.closing.load(Ordering::SeqCst) || self.disconnected.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self
            .events
            .try_send(ClientEvent::Disconnected(TransportError::new(
                ErrorKind::Closed,
                message,
            )));
    }

    fn source_failed(&self, source: usize, address: &str, message: String) {
        if self.closing.load(Ordering::SeqCst) || self.disconnected.load(Ordering::SeqCst) {
            return;
        }
        let _ = self.events.try_send(ClientEvent::SourceFailed {
            source,
            address: address.to_string(),
            error: TransportError::new(ErrorKind::Other, message),
        });
    }
}

async fn begin(shared: &Shared) -> Result<SessionHandle<()>, TransportError> {
    let mut conn = shared.conn.lock().await;
    Session::builder().begin(&mut conn).await.map_err(|e| {
        TransportError::new(
            ErrorKind::Closed,
            format!("could not begin a session on {}: {e}", shared.authority),
        )
    })
}

async fn attach_receiver(
    shared: &Shared,
    source: &SourceSpec,
    address: &str,
    n: u32,
    credit: u32,
) -> Result<(SessionHandle<()>, Receiver), TransportError> {
    let mut session = begin(shared).await?;
    let name = format!(
        "{}-source{}-{}-{n}-{}",
        shared.link_prefix,
        source.index,
        address,
        unique()
    );
    let attached = Receiver::builder()
        .name(name)
        .source(Source::builder().address(address.to_string()).build())
        .sender_settle_mode(SenderSettleMode::Unsettled)
        .receiver_settle_mode(ReceiverSettleMode::First)
        .credit_mode(CreditMode::Manual)
        .auto_accept(false)
        .attach(&mut session)
        .await;
    match attached {
        Ok(mut receiver) => {
            if credit > 0 {
                receiver.set_credit(credit).await.map_err(|e| {
                    TransportError::new(
                        ErrorKind::Closed,
                        format!("could not grant credit on source address '{address}': {e}"),
                    )
                })?;
            }
            Ok((session, receiver))
        }
        Err(e) => {
            let _ = tokio::time::timeout(Duration::from_secs(1), session.end()).await;
            Err(TransportError::new(
                ErrorKind::Misconfigured,
                format!(
                    "the source address '{address}' could not be attached on {}: {e}",
                    shared.authority
                ),
            ))
        }
    }
}

fn target_terminus(address: &str) -> (String, Target) {
    let (name, capability) = if let Some(rest) = address.strip_prefix("topic://") {
        (rest, "topic")
    } else if let Some(rest) = address.strip_prefix("queue://") {
        (rest, "queue")
    } else {
        (address, "queue")
    };
    let target = Target::builder()
        .address(name.to_string())
        .capabilities(vec![Symbol::from(capability)])
        .build();
    (name.to_string(), target)
}

async fn attach_sender(
    shared: &Shared,
    address: &str,
) -> Result<(SessionHandle<()>, Sender), TransportError> {
    let mut session = begin(shared).await?;
    let (name, target) = target_terminus(address);
    let attached = Sender::builder()
        .name(format!("{}-target-{name}-{}", shared.link_prefix, unique()))
        .target(target)
        .sender_settle_mode(SenderSettleMode::Unsettled)
        .receiver_settle_mode(ReceiverSettleMode::First)
        .attach(&mut session)
        .await;
    match attached {
        Ok(sender) => Ok((session, sender)),
        Err(e) => {
            let _ = tokio::time::timeout(Duration::from_secs(1), session.end()).await;
            Err(TransportError::new(
                ErrorKind::Misconfigured,
                format!(
                    "the target address '{address}' could not be attached on {}: {e}",
                    shared.authority
                ),
            ))
        }
    }
}

/// How long a dry run waits for each link it attached, and its session, to be taken down. The
/// attach has answered what the dry run asks; a broker that never answers the detach must not
/// turn that answer into a time-out of the whole connect. RabbitMQ 3.10's AMQP 1.0 plugin does
/// that now and then: the session process of a consumer detached right after its attach can
/// crash (`function_clause` on a `basic.cancel`), and the detach is never answered.
const DRY_RUN_TEARDOWN: Duration = Duration::from_secs(1);

async fn dry_run(config: &ClientConfig, shared: &Shared) -> Result<(), TransportError> {
    for source in &config.sources {
        for address in &source.addresses {
            let (mut session, receiver) = attach_receiver(shared, source, address, 0, 0).await?;
            let _ = tokio::time::timeout(DRY_RUN_TEARDOWN, async {
                let _ = receiver.close().await;
                let _ = session.end().await;
            })
            .await;
        }
    }
    for target in &config.targets {
        if target.address.contains("{{") {
            continue;
        }
        let (mut session, sender) = attach_sender(shared, &target.address).await?;
        let _ = tokio::time::timeout(DRY_RUN_TEARDOWN, async {
            let _ = sender.close().await;
            let _ = session.end().await;
        })
        .await;
    }
    Ok(())
}

async fn run_watchdog(
    mut session: SessionHandle<()>,
    shared: Arc<Shared>,
    stop: oneshot::Receiver<()>,
) {
    tokio::select! {
        _ = stop => {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.end()).await;
        }
        result = session.on_end() => {
            let why = match result {
                Ok(()) => "the session ended".to_string(),
                Err(e) => e.to_string(),
            };
            shared.disconnected(format!("the connection to {} was lost: {why}", shared.authority));
        }
    }
}

struct ReceiverTask {
    session: SessionHandle<()>,
    receiver: Receiver,
    source: usize,
    address: String,
    at_least_once: bool,
    credit: u32,
    deliveries: mpsc::Sender<Delivery>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
}

fn recv_error_is_connection_loss(e: &RecvError) -> bool {
    matches!(
        e,
        RecvError::LinkStateError(LinkStateError::SessionStopped(
            fe2o3_amqp::link::SessionStopReason::ConnectionStopped(_)
        ))
    )
}

async fn run_receiver(task: ReceiverTask) {
    let ReceiverTask {
        mut session,
        mut receiver,
        source,
        address,
        at_least_once,
        credit,
        deliveries,
        shared,
        mut stop,
    } = task;
    // The settlers' verdicts, as they come.
    let mut pending = FuturesUnordered::new();
    let mut unsettled: u32 = 0;
    let mut credit_left: u32 = credit;
    let mut failed = false;
    loop {
        tokio::select! {
            biased;
            Some((info, settle)) = pending.next(), if !pending.is_empty() => {
                unsettled = unsettled.saturating_sub(1);
                if let Err(e) = settle_one(&receiver, info, settle, shared.modified_redelivery).await {
                    shared.source_failed(source, &address, format!("settling a message on '{address}' failed: {e}"));
                    failed = true;
                    break;
                }
            }
            received = receiver.recv::<Body<Value>>() => match received {
                Ok(delivery) => {
                    credit_left = credit_left.saturating_sub(1);
                    let info = DeliveryInfo::from(&delivery);
                    let message = to_external(delivery.into_message());
                    let (settler, settled) = Settler::new();
                    if at_least_once {
                        unsettled += 1;
                        pending.push(async move {
                            (info, settled.await.unwrap_or(Settle::Redeliver))
                        });
                    } else if let Err(e) = receiver.accept(info).await {
                        shared.source_failed(source, &address, format!("accepting a message on '{address}' failed: {e}"));
                        failed = true;
                        break;
                    }
                    let delivery = Delivery {
                        source,
                        address: address.clone(),
                        message,
                        unreadable: None,
                        settler,
                    };
                    if deliveries.send(delivery).await.is_err() {
                        // The host is gone; stop consuming.
                        break;
                    }
                }
                Err(e) => {
                    if recv_error_is_connection_loss(&e) {
                        shared.disconnected(format!("the connection to {} was lost: {e}", shared.authority));
                    } else {
                        let why = match &e {
                            RecvError::LinkStateError(
                                LinkStateError::RemoteDetachedWithError(err)
                                | LinkStateError::RemoteClosedWithError(err),
                            ) => format!("{} detached it: {}", shared.authority, describe(err)),
                            RecvError::LinkStateError(
                                LinkStateError::RemoteDetached | LinkStateError::RemoteClosed,
                            ) => format!("{} detached it", shared.authority),
                            other => other.to_string(),
                        };
                        shared.source_failed(source, &address, format!("the source address '{address}' stopped: {why}"));
                    }
                    failed = true;
                    break;
                }
            },
            _ = stop.changed() => {
                // Settlements the host made before closing still count.
                while let Some(Some((info, settle))) = pending.next().now_or_never() {
                    let _ = settle_one(&receiver, info, settle, shared.modified_redelivery).await;
                }
                break;
            }
        }
        // Top up the credit, only once it is used up: RabbitMQ 3.x does not reconcile a flow that
        // crosses transfers in flight with the link's delivery count, and fe2o3-amqp fails the
        // link when more transfers arrive than it granted. Unsettled plus outstanding never
        // exceeds `credit`.
        let wanted = credit.saturating_sub(unsettled);
        if credit_left == 0 && wanted > 0 {
            if receiver.set_credit(wanted).await.is_err() {
                shared.source_failed(
                    source,
                    &address,
                    format!("granting credit on '{address}' failed"),
                );
                failed = true;
                break;
            }
            credit_left = wanted;
        }
    }
    if !failed {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, receiver.close()).await;
    } else {
        drop(receiver);
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.end()).await;
}

/// Settles one delivery (see the module doc).
async fn settle_one(
    receiver: &Receiver,
    info: DeliveryInfo,
    settle: Settle,
    modified: bool,
) -> Result<(), fe2o3_amqp::link::DispositionError> {
    match settle {
        Settle::Accept => receiver.accept(info).await,
        Settle::Redeliver | Settle::Keep if modified => {
            let modified = Modified {
                delivery_failed: Some(true),
                undeliverable_here: None,
                message_annotations: None,
            };
            receiver.modify(info, modified).await
        }
        Settle::Redeliver | Settle::Keep => receiver.release(info).await,
        Settle::Reject => receiver.reject(info, None).await,
    }
}

struct SendRequest {
    message: Message<Body<Value>>,
    reply: oneshot::Sender<Result<PendingOutcome, TransportError>>,
}

async fn run_sender(
    shared: Arc<Shared>,
    address: String,
    requests_tx: mpsc::WeakUnboundedSender<SendRequest>,
    mut requests: mpsc::UnboundedReceiver<SendRequest>,
) {
    let attached = tokio::time::timeout(ATTACH_TIMEOUT, attach_sender(&shared, &address)).await;
    let remove_self = |shared: &Shared| {
        let mut senders = shared.senders.lock().unwrap();
        if senders.get(&address).is_some_and(|tx| {
            requests_tx
                .upgrade()
                .is_some_and(|own| tx.same_channel(&own))
        }) {
            senders.remove(&address);
        }
    };
    let (mut session, mut sender) = match attached {
        Ok(Ok(pair)) => pair,
        other => {
            let error = match other {
                Ok(Err(e)) => TransportError::new(ErrorKind::Rejected, e.message),
                _ => TransportError::new(
                    ErrorKind::Timeout,
                    format!("attaching the target address '{address}' timed out"),
                ),
            };
            remove_self(&shared);
            requests.close();
            while let Some(request) = requests.recv().await {
                let _ = request.reply.send(Err(error.clone()));
            }
            return;
        }
    };
    let mut failed = false;
    while let Some(request) = requests.recv().await {
        match sender.send_batchable(request.message).await {
            Ok(fut) => {
                let _ = request.reply.send(Ok(fut));
            }
            Err(e) => {
                let _ = request.reply.send(Err(send_error(&address, e)));
                failed = true;
                break;
            }
        }
    }
    remove_self(&shared);
    requests.close();
    while let Some(request) = requests.recv().await {
        let _ = request.reply.send(Err(TransportError::new(
            ErrorKind::Closed,
            format!("the sender link to '{address}' is closed"),
        )));
    }
    if !failed {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sender.close()).await;
    } else {
        drop(sender);
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.end()).await;
}

fn send_error(address: &str, e: SendError) -> TransportError {
    let kind = match &e {
        SendError::LinkStateError(_) | SendError::Detached(_) => ErrorKind::Closed,
        SendError::MessageSizeExceeded(_) | SendError::MessageEncodeError => ErrorKind::Rejected,
        _ => ErrorKind::Other,
    };
    TransportError::new(kind, format!("sending to '{address}' failed: {e}"))
}

struct Client {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    watchdog: Mutex<Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>>,
}

impl Client {
    fn sender_for(&self, address: &str) -> mpsc::UnboundedSender<SendRequest> {
        let mut senders = self.shared.senders.lock().unwrap();
        if let Some(tx) = senders.get(address)
            && !tx.is_closed()
        {
            return tx.clone();
        }
        // Not bounded: `publish` never waits (order by construction); the host bounds the
        // publishes it awaits, and so this queue.
        let (tx, rx) = mpsc::unbounded_channel();
        senders.insert(address.to_string(), tx.clone());
        let handle = tokio::spawn(run_sender(
            self.shared.clone(),
            address.to_string(),
            tx.downgrade(),
            rx,
        ));
        self.tasks.lock().unwrap().push(handle);
        tx
    }
}

impl BrokerClient for Client {
    fn publish(&self, publish: Publish) -> crate::Confirmation {
        if self.shared.closing.load(Ordering::SeqCst) {
            return decided(Err(TransportError::new(
                ErrorKind::Closed,
                "the client is closed",
            )));
        }
        let address = publish.address.clone();
        let message = to_amqp(&publish.message);
        let (reply_tx, reply_rx) = oneshot::channel();
        let tx = self.sender_for(&address);
        let closed = {
            let address = address.clone();
            move || {
                TransportError::new(
                    ErrorKind::Closed,
                    format!("the sender link to '{address}' is closed"),
                )
            }
        };
        if tx
            .send(SendRequest {
                message,
                reply: reply_tx,
            })
            .is_err()
        {
            return decided(Err(closed()));
        }
        let shared = self.shared.clone();
        Box::pin(async move {
            let outcome = reply_rx.await.map_err(|_| closed())??;
            match outcome.await {
                Ok(Outcome::Accepted(_)) => Ok(None),
                Ok(Outcome::Rejected(r)) => Err(TransportError::new(
                    ErrorKind::Rejected,
                    format!(
                        "'{address}' rejected the message{}",
                        r.error
                            .as_ref()
                            .map(|e| format!(": {}", describe(e)))
                            .unwrap_or_default()
                    ),
                )),
                Ok(Outcome::Released(_)) => Err(TransportError::new(
                    ErrorKind::Rejected,
                    format!("'{address}' released the message"),
                )),
                Ok(Outcome::Modified(_)) => Err(TransportError::new(
                    ErrorKind::Rejected,
                    format!("'{address}' did not accept the message (modified)"),
                )),
                #[allow(unreachable_patterns)]
                Ok(other) => Err(TransportError::new(
                    ErrorKind::Rejected,
                    format!("'{address}' did not accept the message: {other:?}"),
                )),
                Err(e) => {
                    // The link is broken: attach a new one next time.
                    let mut senders = shared.senders.lock().unwrap();
                    if senders.get(&address).is_some_and(|t| t.same_channel(&tx)) {
                        senders.remove(&address);
                    }
                    Err(send_error(&address, e))
                }
            }
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            self.shared.closing.store(true, Ordering::SeqCst);
            let _ = self.stop.send(true);
            self.shared.senders.lock().unwrap().clear();
            let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock().unwrap());
            for task in tasks {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, task).await;
            }
            let watchdog = self.watchdog.lock().unwrap().take();
            if let Some((stop, task)) = watchdog {
                let _ = stop.send(());
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, task).await;
            }
            // Bounded as a whole: the connection's lock may be held by a task stuck on a dead
            // connection.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                let mut conn = self.shared.conn.lock().await;
                let _ = conn.close().await;
            })
            .await;
        })
    }
}

// ------------------------------------------------------------------------------------------
// Message mapping

fn is_text_content_type(content_type: &str) -> bool {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    ct.starts_with("text/")
        || ct == "application/json"
        || ct.ends_with("+json")
        || ct == "application/xml"
        || ct.ends_with("+xml")
        || ct == "application/javascript"
}

fn uuid_text(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// An AMQP value as header text; `None` for null.
fn value_text(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(v) => v.to_string(),
        Value::Ubyte(v) => v.to_string(),
        Value::Ushort(v) => v.to_string(),
        Value::Uint(v) => v.to_string(),
        Value::Ulong(v) => v.to_string(),
        Value::Byte(v) => v.to_string(),
        Value::Short(v) => v.to_string(),
        Value::Int(v) => v.to_string(),
        Value::Long(v) => v.to_string(),
        Value::Float(v) => v.0.to_string(),
        Value::Double(v) => v.0.to_string(),
        Value::Char(v) => v.to_string(),
        Value::Timestamp(v) => v.milliseconds().to_string(),
        Value::Uuid(v) => uuid_text(v.as_inner()),
        Value::Binary(v) => String::from_utf8_lossy(v).into_owned(),
        Value::String(v) => v.clone(),
        Value::Symbol(v) => v.0.clone(),
        other => format!("{other:?}"),
    })
}

fn message_id_text(id: &MessageId) -> String {
    match id {
        MessageId::Ulong(v) => v.to_string(),
        MessageId::Uuid(v) => uuid_text(v.as_inner()),
        MessageId::Binary(v) => String::from_utf8_lossy(v).into_owned(),
        MessageId::String(v) => v.clone(),
    }
}

fn annotation_key(key: &OwnedKey) -> String {
    match key {
        OwnedKey::Symbol(s) => s.0.clone(),
        OwnedKey::Ulong(v) => v.to_string(),
    }
}

/// An AMQP message as the host sees it (see the module doc for the rules).
pub fn to_external(message: Message<Body<Value>>) -> ExternalMessage {
    let mut headers = Headers::new();
    let mut content_type = None;
    if let Some(p) = &message.properties {
        let mut put = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                headers.insert(name, v);
            }
        };
        put("message-id", p.message_id.as_ref().map(message_id_text));
        put(
            "user-id",
            p.user_id
                .as_ref()
                .map(|u| String::from_utf8_lossy(u).into_owned()),
        );
        put("to", p.to.clone());
        put("subject", p.subject.clone());
        put("reply-to", p.reply_to.clone());
        put(
            "correlation-id",
            p.correlation_id.as_ref().map(message_id_text),
        );
        put("content-type", p.content_type.as_ref().map(|s| s.0.clone()));
        put(
            "absolute-expiry-time",
            p.absolute_expiry_time
                .as_ref()
                .map(|t| t.milliseconds().to_string()),
        );
        put(
            "creation-time",
            p.creation_time
                .as_ref()
                .map(|t| t.milliseconds().to_string()),
        );
        put("group-id", p.group_id.clone());
        put("group-sequence", p.group_sequence.map(|s| s.to_string()));
        put("reply-to-group-id", p.reply_to_group_id.clone());
        content_type = p.content_type.as_ref().map(|s| s.0.clone());
    }
    if let Some(ApplicationProperties(props)) = &message.application_properties {
        for (name, value) in props.iter() {
            if let Some(v) = value_text(&Value::from(value.clone())) {
                if STANDARD_PROPERTIES.contains(&name.to_ascii_lowercase().as_str()) {
                    headers.insert(format!("{APPLICATION_PROPERTY_PREFIX}{name}"), v);
                } else {
                    headers.insert(name.clone(), v);
                }
            }
        }
    }
    if let Some(MessageAnnotations(annotations)) = &message.message_annotations {
        for (key, value) in annotations.iter() {
            if let Some(v) = value_text(value) {
                headers.insert(
                    format!("{MESSAGE_ANNOTATION_PREFIX}{}", annotation_key(key)),
                    v,
                );
            }
        }
    }
    let (text, bytes) = match message.body {
        Body::Value(AmqpValue(Value::String(s))) => (Some(s), None),
        Body::Value(AmqpValue(Value::Binary(b))) => (None, Some(b.into_vec())),
        Body::Value(AmqpValue(v)) => (value_text(&v), None),
        Body::Data(batch) => {
            let mut bytes = Vec::new();
            for Data(chunk) in batch.into_iter() {
                bytes.extend_from_slice(&chunk);
            }
            let text = content_type
                .as_deref()
                .filter(|ct| is_text_content_type(ct))
                .and_then(|_| String::from_utf8(bytes.clone()).ok());
            (text, Some(bytes))
        }
        _ => (None, None),
    };
    ExternalMessage {
        headers,
        text,
        bytes,
        content_type,
    }
}

/// The AMQP message to publish for an external message (see the module doc for the rules).
pub fn to_amqp(external: &ExternalMessage) -> Message<Body<Value>> {
    let mut properties = Properties::default();
    let mut has_properties = false;
    let mut application = ApplicationProperties::default();
    let mut annotations = MessageAnnotations::default();
    let mut content_type_header = None;
    for (key, value) in external.headers.iter() {
        let value = ferrule_protocol::headers::value_to_header_string(value);
        let lower = key.to_ascii_lowercase();
        if lower.starts_with(APPLICATION_PROPERTY_PREFIX) {
            let name = &key[APPLICATION_PROPERTY_PREFIX.len()..];
            application
                .0
                .insert(name.to_string(), SimpleValue::String(value));
            continue;
        }
        if lower.starts_with(MESSAGE_ANNOTATION_PREFIX) {
            let name = &key[MESSAGE_ANNOTATION_PREFIX.len()..];
            annotations
                .0
                .insert(OwnedKey::Symbol(Symbol::from(name)), Value::String(value));
            continue;
        }
        let mut set = true;
        match lower.as_str() {
            "message-id" => properties.message_id = Some(MessageId::String(value.clone())),
            "user-id" => properties.user_id = Some(Binary::from(value.clone().into_bytes())),
            "to" => properties.to = Some(value.clone()),
            "subject" => properties.subject = Some(value.clone()),
            "reply-to" => properties.reply_to = Some(value.clone()),
            "correlation-id" => properties.correlation_id = Some(MessageId::String(value.clone())),
            "content-type" => content_type_header = Some(value.clone()),
            "absolute-expiry-time" => match value.trim().parse::<i64>() {
                Ok(ms) => properties.absolute_expiry_time = Some(Timestamp::from_milliseconds(ms)),
                Err(_) => set = false,
            },
            "creation-time" => match value.trim().parse::<i64>() {
                Ok(ms) => properties.creation_time = Some(Timestamp::from_milliseconds(ms)),
                Err(_) => set = false,
            },
            "group-id" => properties.group_id = Some(value.clone()),
            "group-sequence" => match value.trim().parse::<u32>() {
                Ok(n) => properties.group_sequence = Some(n),
                Err(_) => set = false,
            },
            "reply-to-group-id" => properties.reply_to_group_id = Some(value.clone()),
            _ => set = false,
        }
        if set {
            has_properties = true;
        } else {
            // Not a standard property (or one whose value does not fit it).
            application
                .0
                .insert(key.to_string(), SimpleValue::String(value));
        }
    }
    if let Some(ct) = content_type_header.or_else(|| external.content_type.clone()) {
        properties.content_type = Some(Symbol::from(ct));
        has_properties = true;
    }
    let body = match (&external.bytes, &external.text) {
        (Some(bytes), _) => Body::from(Data(Binary::from(bytes.clone()))),
        (None, Some(text)) => Body::Value(AmqpValue(Value::String(text.clone()))),
        (None, None) => Body::Value(AmqpValue(Value::Null)),
    };
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: (!annotations.0.is_empty()).then_some(annotations),
        properties: has_properties.then_some(properties),
        application_properties: (!application.0.is_empty()).then_some(application),
        body,
        footer: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An AMQP frame (type 0) on channel 0 with this body.
    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = ((8 + body.len()) as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&[2, 0, 0, 0]);
        f.extend_from_slice(body);
        f
    }

    fn checks(bytes: &[u8]) -> Result<Option<usize>, String> {
        FrameCheck {
            max_frame_size: 1024 * 1024,
            started: true,
            partial: Default::default(),
        }
        .next(bytes)
    }

    /// What fe2o3-amqp writes passes the check: performatives and messages with every kind of
    /// value (lists, maps, arrays of symbols, binary, strings, described values).
    #[test]
    fn the_frame_check_passes_what_fe2o3_writes() {
        use fe2o3_amqp::types::messaging::message::__private::Serializable;
        let open = Open {
            container_id: "c".into(),
            hostname: Some("h".into()),
            max_frame_size: 65536.into(),
            channel_max: 10.into(),
            idle_time_out: Some(1000),
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: Some(vec![Symbol::from("a"), Symbol::from("bb")].into()),
            desired_capabilities: None,
            properties: None,
        };
        let body = serde_amqp::to_vec(&open).unwrap();
        let f = frame(&body);
        assert_eq!(checks(&f), Ok(Some(f.len())));
        assert_eq!(checks(&f[..f.len() - 1]), Ok(None));
        let mut external = ExternalMessage::text("{\"a\":[1,2,3]}");
        external.headers.insert("correlation-id", "c-1");
        external.headers.insert("custom", "x".repeat(300));
        external
            .headers
            .insert("amqp.message.annotation:x-opt-a", "b");
        let message = serde_amqp::to_vec(&Serializable(&to_amqp(&external))).unwrap();
        // A transfer (handle 0, more false) with the message as its payload.
        let mut body = vec![
            0x00, 0x53, 0x14, 0xc0, 0x07, 0x04, 0x43, 0x43, 0xa0, 0x01, 0x00, 0x43,
        ];
        body.extend_from_slice(&message);
        let f = frame(&body);
        assert_eq!(checks(&f), Ok(Some(f.len())));
    }

    #[test]
    fn the_frame_check_refuses_declared_sizes_beyond_the_frame() {
        // sasl-mechanisms whose symbol declares 4 GiB: serde_amqp would allocate them.
        let body = [
            0x00, 0x53, 0x40, 0xd0, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x01, 0xb3, 0xff,
            0xff, 0xff, 0xff,
        ];
        let e = checks(&frame(&body)).unwrap_err();
        assert!(e.contains("declares 4294967295 bytes"), "{e}");
        // A list that counts more items than it holds bytes.
        let e = checks(&frame(&[0x00, 0x53, 0x10, 0xc0, 0x01, 0xff])).unwrap_err();
        assert!(e.contains("declares 255"), "{e}");
        // An array of str32 whose element declares more than the array holds.
        let body = [
            0x00, 0x53, 0x10, 0xe0, 0x07, 0x01, 0xb1, 0x00, 0x00, 0x10, 0x00, 0x41,
        ];
        assert!(checks(&frame(&body)).is_err());
        // Too deep.
        let mut body = vec![0x00, 0x53, 0x10];
        for _ in 0..100 {
            body.extend_from_slice(&[0x00, 0x53, 0x00]);
        }
        body.push(0x40);
        let e = checks(&frame(&body)).unwrap_err();
        assert!(e.contains("deeper"), "{e}");
        // A whole message in a transfer whose binary declares 4 GiB.
        let mut body = vec![
            0x00, 0x53, 0x14, 0xc0, 0x07, 0x04, 0x43, 0x43, 0xa0, 0x01, 0x00, 0x43,
        ];
        body.extend_from_slice(&[0x00, 0x53, 0x75, 0xb0, 0xff, 0xff, 0xff, 0xff, 0x00]);
        let e = checks(&frame(&body)).unwrap_err();
        assert!(e.contains("malformed message"), "{e}");
        // More than the maximum frame size, refused from the header alone.
        let e = checks(&[0x7f, 0xff, 0xff, 0xff, 2, 0, 0, 0]).unwrap_err();
        assert!(e.contains(MAX_FRAME_SIZE), "{e}");
    }

    /// A message in several frames is checked whole when its last frame comes; an aborted
    /// one is dropped unchecked.
    #[test]
    fn a_delivery_in_several_frames_is_checked_whole() {
        let check = || FrameCheck {
            max_frame_size: 1024,
            started: true,
            partial: Default::default(),
        };
        // A transfer of handle 3 with `more` = true, then its data section's first part: a
        // binary of 4 bytes (`b0 00 00 00 04`), 2 of them here.
        let first = |declared: u8| {
            let mut f = vec![
                0x00, 0x53, 0x14, 0xc0, 0x0a, 0x06, 0x52, 0x03, 0x43, 0xa0, 0x01, 0x00, 0x43, 0x40,
                0x41,
            ];
            f.extend_from_slice(&[
                0x00, 0x53, 0x75, 0xb0, 0x00, 0x00, 0x00, declared, 0xab, 0xcd,
            ]);
            frame(&f)
        };
        // Handle 3, `more` absent: the last 2 bytes.
        let last = frame(&[
            0x00, 0x53, 0x14, 0xc0, 0x04, 0x02, 0x52, 0x03, 0x40, 0xab, 0xcd,
        ]);
        let mut ok = check();
        let f = first(4);
        assert_eq!(ok.next(&f), Ok(Some(f.len())));
        assert_eq!(ok.partial.len(), 1);
        assert_eq!(ok.next(&last), Ok(Some(last.len())));
        assert!(ok.partial.is_empty());
        // The same parts with a binary that declares 4 GiB - 1: refused at the last frame,
        // before fe2o3-amqp decodes the message.
        let mut bad = check();
        let f = first(0xff);
        let mut f = f.clone();
        let at = f.len() - 6;
        f[at..at + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(bad.next(&f), Ok(Some(f.len())));
        let e = bad.next(&last).unwrap_err();
        assert!(e.contains("malformed message"), "{e}");
        // Aborted (field 9 true): dropped without a check.
        let mut aborted = check();
        let f = first(0xff);
        assert_eq!(aborted.next(&f), Ok(Some(f.len())));
        let abort = frame(&[
            0x00, 0x53, 0x14, 0xc0, 0x0c, 0x0a, 0x52, 0x03, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40,
            0x40, 0x40, 0x41,
        ]);
        assert_eq!(aborted.next(&abort), Ok(Some(abort.len())));
        assert!(aborted.partial.is_empty());
    }

    #[test]
    fn round_trip_headers_and_bodies() {
        let mut external = ExternalMessage::text("{\"a\":1}");
        external.headers.insert("correlation-id", "c-1");
        external.headers.insert("Reply-To", "/queue/replies");
        external.headers.insert("content-type", "application/json");
        external.headers.insert("creation-time", "1700000000000");
        external.headers.insert("group-sequence", "7");
        external.headers.insert("custom", "x");
        external
            .headers
            .insert("amqp.application.property:subject", "forced");
        external
            .headers
            .insert("amqp.message.annotation:x-opt-a", "b");
        let amqp = to_amqp(&external);
        let p = amqp.properties.clone().unwrap();
        assert_eq!(p.correlation_id, Some(MessageId::String("c-1".into())));
        assert_eq!(p.reply_to.as_deref(), Some("/queue/replies"));
        assert_eq!(p.group_sequence, Some(7));
        assert_eq!(p.subject, None);
        let app = amqp.application_properties.clone().unwrap();
        assert_eq!(app.0.get("custom"), Some(&SimpleValue::String("x".into())));
        assert_eq!(
            app.0.get("subject"),
            Some(&SimpleValue::String("forced".into()))
        );
        let back = to_external(amqp);
        assert_eq!(back.text.as_deref(), Some("{\"a\":1}"));
        assert_eq!(back.bytes, None);
        assert_eq!(back.content_type.as_deref(), Some("application/json"));
        assert_eq!(back.headers.get_str("correlation-id").unwrap(), "c-1");
        assert_eq!(
            back.headers.get_str("creation-time").unwrap(),
            "1700000000000"
        );
        assert_eq!(back.headers.get_str("custom").unwrap(), "x");
        assert_eq!(back.headers.get_str("subject"), None);
        assert_eq!(
            back.headers
                .get_str("amqp.application.property:subject")
                .unwrap(),
            "forced"
        );
        assert_eq!(
            back.headers
                .get_str("amqp.message.annotation:x-opt-a")
                .unwrap(),
            "b"
        );

        let mut bytes = ExternalMessage::bytes(vec![0xff, 0x00]);
        bytes.content_type = Some("application/octet-stream".into());
        let back = to_external(to_amqp(&bytes));
        assert_eq!(back.bytes, Some(vec![0xff, 0x00]));
        assert_eq!(back.text, None);

        let mut json_bytes = ExternalMessage::bytes(b"{}".to_vec());
        json_bytes.content_type = Some("application/vnd.eclipse.ditto+json".into());
        let back = to_external(to_amqp(&json_bytes));
        assert_eq!(back.bytes, Some(b"{}".to_vec()));
        assert_eq!(back.text.as_deref(), Some("{}"));
    }

    #[test]
    fn modified_for_every_peer_but_rabbitmq_3() {
        let open = |properties: &[(&str, &str)]| Open {
            container_id: "peer".into(),
            hostname: None,
            max_frame_size: Default::default(),
            channel_max: Default::default(),
            idle_time_out: None,
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: Some(
                properties
                    .iter()
                    .map(|(k, v)| (Symbol::from(*k), Value::String(v.to_string())))
                    .collect(),
            ),
        };
        let rabbitmq = |version: &str| open(&[("product", "RabbitMQ"), ("version", version)]);
        assert!(!understands_modified(Some(&rabbitmq("3.10.8"))));
        assert!(!understands_modified(Some(&rabbitmq("3.13.7"))));
        assert!(!understands_modified(Some(&rabbitmq("unknown"))));
        assert!(!understands_modified(Some(&open(&[(
            "product", "RabbitMQ"
        )]))));
        assert!(understands_modified(Some(&rabbitmq("4.0.5"))));
        assert!(understands_modified(Some(&rabbitmq("4.1.0"))));
        assert!(understands_modified(Some(&open(&[
            ("product", "apache-activemq-artemis"),
            ("version", "2.31.2")
        ]))));
        assert!(understands_modified(Some(&open(&[]))));
        assert!(!understands_modified(None));
    }

    #[test]
    fn target_addresses() {
        assert_eq!(target_terminus("queue://q").0, "q");
        assert_eq!(target_terminus("topic://t").0, "t");
        assert_eq!(target_terminus("/exchange/x/k").0, "/exchange/x/k");
        assert_eq!(target_terminus("plain").0, "plain");
    }
}
