//! One face over rumqttc's MQTT 3.1.1 (`rumqttc`) and MQTT 5 (`rumqttc::v5`) clients: what the
//! transport needs of them (subscribe, publish, ack, disconnect, the events of the event loop).

use crate::ErrorKind;
use ferrule_protocol::Headers;
use rumqttc::v5 as r5;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5 as p5;

/// Headers an MQTT 5 publish carries as properties (or the topic, QoS and retain flag), never as
/// user properties.
pub(crate) const SPECIAL_HEADERS: [&str; 7] = [
    "mqtt.topic",
    "mqtt.qos",
    "mqtt.retain",
    "mqtt.message-expiry-interval",
    "correlation-id",
    "reply-to",
    "content-type",
];

fn qos3(q: u8) -> rumqttc::QoS {
    match q {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

fn qos5(q: u8) -> QoS5 {
    match q {
        0 => QoS5::AtMostOnce,
        1 => QoS5::AtLeastOnce,
        _ => QoS5::ExactlyOnce,
    }
}

/// The MQTT 5 properties of an outbound message: `correlation-id` → correlation data,
/// `reply-to` → response topic, `content-type` (`content_type` wins) → content type,
/// `mqtt.message-expiry-interval` → message expiry interval, every other header but the
/// [`SPECIAL_HEADERS`] → a user property.
pub(crate) fn publish_properties(
    h: &Headers,
    content_type: Option<String>,
) -> p5::PublishProperties {
    p5::PublishProperties {
        message_expiry_interval: h
            .get_str("mqtt.message-expiry-interval")
            .and_then(|v| v.trim().parse().ok()),
        response_topic: h.get_str("reply-to"),
        correlation_data: h.get_str("correlation-id").map(|c| c.into_bytes().into()),
        user_properties: h
            .iter()
            .filter(|(k, _)| !SPECIAL_HEADERS.iter().any(|s| s.eq_ignore_ascii_case(k)))
            .map(|(k, _)| (k.to_string(), h.get_str(k).unwrap_or_default()))
            .collect(),
        content_type: content_type.or_else(|| h.get_str("content-type")),
        ..Default::default()
    }
}

/// The headers of a consumed MQTT 5 PUBLISH (user properties, then the mapped properties) and
/// its content type.
pub(crate) fn inbound_headers(
    properties: Option<p5::PublishProperties>,
) -> (Vec<(String, String)>, Option<String>) {
    let mut headers = Vec::new();
    let mut content_type = None;
    if let Some(props) = properties {
        headers.extend(props.user_properties);
        if let Some(c) = props.correlation_data {
            headers.push((
                "correlation-id".into(),
                String::from_utf8_lossy(&c).into_owned(),
            ));
        }
        if let Some(r) = props.response_topic {
            headers.push(("reply-to".into(), r));
        }
        if let Some(c) = props.content_type {
            headers.push(("content-type".into(), c.clone()));
            content_type = Some(c);
        }
        if let Some(e) = props.message_expiry_interval {
            headers.push(("mqtt.message-expiry-interval".into(), e.to_string()));
        }
    }
    (headers, content_type)
}

/// The longest string or binary data an MQTT packet carries (its length is written in 2 bytes).
pub(crate) const MAX_STRING: usize = 65_535;

/// The header whose property is longer than [`MAX_STRING`] bytes, if one is: rumqttc would write
/// its length modulo 2^16, and the broker would read a malformed packet.
pub(crate) fn too_long(properties: &p5::PublishProperties) -> Option<&str> {
    let long = |s: &str| s.len() > MAX_STRING;
    if properties
        .correlation_data
        .as_ref()
        .is_some_and(|c| c.len() > MAX_STRING)
    {
        return Some("correlation-id");
    }
    if properties.response_topic.as_deref().is_some_and(long) {
        return Some("reply-to");
    }
    if properties.content_type.as_deref().is_some_and(long) {
        return Some("content-type");
    }
    properties
        .user_properties
        .iter()
        .find(|(k, v)| long(k) || long(v))
        .map(|(k, _)| k.as_str())
}

/// A message to publish, its topic, QoS and retain flag resolved.
#[derive(Debug)]
pub(super) struct OutPublish {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub payload: Vec<u8>,
    /// MQTT 5: the headers as properties and user properties ([`publish_properties`]).
    pub properties: Option<p5::PublishProperties>,
}

/// What acknowledges one consumed PUBLISH (the packet without its payload).
#[derive(Debug)]
pub(super) enum AckToken {
    V3(Box<rumqttc::Publish>),
    V5(Box<p5::Publish>),
}

/// A consumed PUBLISH.
#[derive(Debug)]
pub(super) struct InPublish {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub payload: Vec<u8>,
    /// MQTT 5 properties as headers (user properties, then the mapped ones).
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub token: AckToken,
}

/// The events of the event loop the transport cares about.
#[derive(Debug)]
pub(super) enum Ev {
    ConnAck,
    /// The rejected filters of one SUBSCRIBE (index into its filters, reason, not authorized).
    SubAck {
        pkid: u16,
        rejected: Vec<(usize, String, bool)>,
    },
    Publish(InPublish),
    /// PUBACK, PUBREC (only when it failed: a successful one is followed by PUBCOMP), PUBCOMP.
    Confirm {
        pkid: u16,
        error: Option<String>,
    },
    OutPublish(u16),
    OutAwaitAck,
    OutSubscribe(u16),
    OutDisconnect,
    Other,
}

/// A failure of the event loop, classified.
#[derive(Debug)]
pub(super) struct LoopError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Clone)]
pub(super) enum Client {
    V3(rumqttc::AsyncClient),
    V5(r5::AsyncClient),
}

pub(super) enum EventLoop {
    V3(Box<rumqttc::EventLoop>),
    V5(Box<r5::EventLoop>),
}

impl Client {
    pub async fn subscribe(&self, filters: &[String], qos: u8) -> Result<(), String> {
        match self {
            Client::V3(c) => c
                .subscribe_many(
                    filters
                        .iter()
                        .map(|f| rumqttc::SubscribeFilter::new(f.clone(), qos3(qos))),
                )
                .await
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .subscribe_many(
                    filters
                        .iter()
                        .map(|f| p5::Filter::new(f.clone(), qos5(qos))),
                )
                .await
                .map_err(|e| e.to_string()),
        }
    }

    pub async fn publish(&self, out: OutPublish) -> Result<(), String> {
        match self {
            Client::V3(c) => c
                .publish(out.topic, qos3(out.qos), out.retain, out.payload)
                .await
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .publish_with_properties(
                    out.topic,
                    qos5(out.qos),
                    out.retain,
                    out.payload,
                    out.properties.unwrap_or_default(),
                )
                .await
                .map_err(|e| e.to_string()),
        }
    }

    pub async fn ack(&self, token: &AckToken) {
        let _ = match (self, token) {
            (Client::V3(c), AckToken::V3(p)) => c.ack(p).await.map_err(|_| ()),
            (Client::V5(c), AckToken::V5(p)) => c.ack(p).await.map_err(|_| ()),
            _ => Ok(()),
        };
    }

    pub async fn disconnect(&self) {
        let _ = match self {
            Client::V3(c) => c.disconnect().await.map_err(|_| ()),
            Client::V5(c) => c.disconnect().await.map_err(|_| ()),
        };
    }
}

impl EventLoop {
    pub async fn poll(&mut self) -> Result<Ev, LoopError> {
        match self {
            EventLoop::V3(l) => l.poll().await.map(ev3).map_err(err3),
            EventLoop::V5(l) => l.poll().await.map(ev5).map_err(err5),
        }
    }
}

fn outgoing(o: rumqttc::Outgoing) -> Ev {
    use rumqttc::Outgoing as O;
    match o {
        O::Publish(pkid) => Ev::OutPublish(pkid),
        O::AwaitAck(_) => Ev::OutAwaitAck,
        O::Subscribe(pkid) => Ev::OutSubscribe(pkid),
        O::Disconnect => Ev::OutDisconnect,
        _ => Ev::Other,
    }
}

fn ev3(e: rumqttc::Event) -> Ev {
    use rumqttc::Packet as P;
    match e {
        rumqttc::Event::Outgoing(o) => outgoing(o),
        rumqttc::Event::Incoming(P::ConnAck(_)) => Ev::ConnAck,
        rumqttc::Event::Incoming(P::SubAck(s)) => Ev::SubAck {
            pkid: s.pkid,
            rejected: s
                .return_codes
                .iter()
                .enumerate()
                .filter(|(_, c)| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                .map(|(i, _)| (i, "Failure".to_string(), false))
                .collect(),
        },
        rumqttc::Event::Incoming(P::Publish(mut p)) => {
            let payload = std::mem::take(&mut p.payload).to_vec();
            Ev::Publish(InPublish {
                topic: p.topic.clone(),
                qos: p.qos as u8,
                retain: p.retain,
                payload,
                headers: Vec::new(),
                content_type: None,
                token: AckToken::V3(Box::new(p)),
            })
        }
        rumqttc::Event::Incoming(P::PubAck(a)) => Ev::Confirm {
            pkid: a.pkid,
            error: None,
        },
        rumqttc::Event::Incoming(P::PubComp(c)) => Ev::Confirm {
            pkid: c.pkid,
            error: None,
        },
        rumqttc::Event::Incoming(_) => Ev::Other,
    }
}

fn ev5(e: r5::Event) -> Ev {
    use p5::Packet as P;
    match e {
        r5::Event::Outgoing(o) => outgoing(o),
        r5::Event::Incoming(P::ConnAck(_)) => Ev::ConnAck,
        r5::Event::Incoming(P::SubAck(s)) => Ev::SubAck {
            pkid: s.pkid,
            rejected: s
                .return_codes
                .iter()
                .enumerate()
                .filter(|(_, c)| !matches!(c, p5::SubscribeReasonCode::Success(_)))
                .map(|(i, c)| {
                    (
                        i,
                        format!("{c:?}"),
                        matches!(c, p5::SubscribeReasonCode::NotAuthorized),
                    )
                })
                .collect(),
        },
        r5::Event::Incoming(P::Publish(mut p)) => {
            let payload = std::mem::take(&mut p.payload).to_vec();
            let (headers, content_type) = inbound_headers(p.properties.take());
            Ev::Publish(InPublish {
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                qos: p.qos as u8,
                retain: p.retain,
                payload,
                headers,
                content_type,
                token: AckToken::V5(Box::new(p)),
            })
        }
        r5::Event::Incoming(P::PubAck(a)) => Ev::Confirm {
            pkid: a.pkid,
            error: match a.reason {
                p5::PubAckReason::Success | p5::PubAckReason::NoMatchingSubscribers => None,
                r => Some(reason(
                    format!("{r:?}"),
                    a.properties.and_then(|p| p.reason_string),
                )),
            },
        },
        r5::Event::Incoming(P::PubRec(a)) => match a.reason {
            p5::PubRecReason::Success | p5::PubRecReason::NoMatchingSubscribers => Ev::Other,
            r => Ev::Confirm {
                pkid: a.pkid,
                error: Some(reason(
                    format!("{r:?}"),
                    a.properties.and_then(|p| p.reason_string),
                )),
            },
        },
        r5::Event::Incoming(P::PubComp(c)) => Ev::Confirm {
            pkid: c.pkid,
            error: match c.reason {
                p5::PubCompReason::Success => None,
                r => Some(format!("{r:?}")),
            },
        },
        r5::Event::Incoming(_) => Ev::Other,
    }
}

fn reason(code: String, text: Option<String>) -> String {
    match text {
        Some(t) => format!("{code}: {t}"),
        None => code,
    }
}

fn io_kind(e: &std::io::Error) -> ErrorKind {
    match e.kind() {
        std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
        _ => ErrorKind::Unreachable,
    }
}

/// A TLS failure anywhere in the error's chain (unknown issuer, a certificate not valid for the
/// host, a client certificate the server requires or rejects, also as an alert after the
/// handshake): `Misconfigured` with the reason. Other TLS setup failures (an invalid host name
/// for TLS, ...) are `Misconfigured` too; plain I/O failures keep their kind.
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<LoopError> {
    crate::tls::classify(e).map(|t| LoopError {
        kind: t.kind,
        message: t.message,
    })
}

fn tls_kind(e: &rumqttc::TlsError) -> ErrorKind {
    match e {
        rumqttc::TlsError::Io(io) => io_kind(io),
        _ => ErrorKind::Misconfigured,
    }
}

fn err3(e: rumqttc::ConnectionError) -> LoopError {
    use rumqttc::ConnectReturnCode as C;
    use rumqttc::ConnectionError as E;
    if let Some(t) = tls_failure(&e) {
        return t;
    }
    let kind = match &e {
        E::Tls(t) => tls_kind(t),
        E::Io(io) => io_kind(io),
        E::NetworkTimeout | E::FlushTimeout => ErrorKind::Timeout,
        E::ConnectionRefused(C::BadUserNamePassword | C::NotAuthorized) => ErrorKind::Unauthorized,
        E::ConnectionRefused(C::RefusedProtocolVersion | C::BadClientId) => {
            ErrorKind::Misconfigured
        }
        E::ConnectionRefused(_) => ErrorKind::Unreachable,
        E::RequestsDone => ErrorKind::Closed,
        _ => ErrorKind::Other,
    };
    LoopError {
        kind,
        message: e.to_string(),
    }
}

fn err5(e: r5::ConnectionError) -> LoopError {
    use p5::ConnectReturnCode as C;
    use r5::ConnectionError as E;
    if let Some(t) = tls_failure(&e) {
        return t;
    }
    // The MQTT 5 reader wraps an I/O failure (e.g. a TLS alert) in a deserialization error
    // that does not expose it as its source.
    if let E::MqttState(r5::StateError::Deserialization(r5::mqttbytes::Error::Io(io))) = &e
        && let Some(t) = tls_failure(io)
    {
        return t;
    }
    let kind = match &e {
        E::Tls(t) => tls_kind(t),
        E::Io(io) => io_kind(io),
        E::Timeout(_) => ErrorKind::Timeout,
        E::ConnectionRefused(
            C::BadUserNamePassword | C::NotAuthorized | C::Banned | C::BadAuthenticationMethod,
        ) => ErrorKind::Unauthorized,
        E::ConnectionRefused(
            C::RefusedProtocolVersion
            | C::BadClientId
            | C::UnsupportedProtocolVersion
            | C::ClientIdentifierNotValid
            | C::MalformedPacket
            | C::ProtocolError
            | C::PacketTooLarge
            | C::TopicNameInvalid
            | C::PayloadFormatInvalid
            | C::RetainNotSupported
            | C::QoSNotSupported,
        ) => ErrorKind::Misconfigured,
        E::ConnectionRefused(_) => ErrorKind::Unreachable,
        E::RequestsDone => ErrorKind::Closed,
        _ => ErrorKind::Other,
    };
    LoopError {
        kind,
        message: e.to_string(),
    }
}

// ---- The guard of MQTT 5 connections -------------------------------------------------------

/// The user property of rumqttc's CONNECT by which the guard knows its client's connection; the
/// guard removes it before the CONNECT goes to the broker.
const GUARD_PROPERTY: &str = "ferrule-guard";

/// How long the guard waits for its client's CONNECT on an accepted local connection.
const GUARD_CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the guard found wrong with the broker's connection, for the driver's error. It is set
/// before the guard closes rumqttc's connection, so the failure rumqttc reports next is
/// explained by it.
#[derive(Default)]
pub(super) struct Verdict(std::sync::Mutex<Option<(ErrorKind, String)>>);

impl Verdict {
    fn set(&self, kind: ErrorKind, message: String) {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if v.is_none() {
            *v = Some((kind, message));
        }
    }

    pub fn take(&self) -> Option<(ErrorKind, String)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// A running guard: rumqttc connects to `addr` (plain TCP on the loopback interface) with the
/// CONNECT user property `(GUARD_PROPERTY, nonce)`.
pub(super) struct Guard {
    pub addr: std::net::SocketAddr,
    pub nonce: String,
    pub verdict: std::sync::Arc<Verdict>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Guard {
    /// The user property rumqttc's CONNECT must carry.
    pub fn property(&self) -> (String, String) {
        (GUARD_PROPERTY.to_string(), self.nonce.clone())
    }
}

/// 128 bits no other process can guess: hashes of the time with the process's random hash keys.
fn nonce() -> String {
    use std::hash::BuildHasher;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let a = std::collections::hash_map::RandomState::new().hash_one(seed);
    let b = std::collections::hash_map::RandomState::new().hash_one(seed ^ u128::from(a));
    format!("{a:016x}{b:016x}")
}

fn io_failure(authority: &str, e: &std::io::Error) -> crate::TransportError {
    crate::TransportError::new(
        io_kind(e),
        format!("The connection to the MQTT broker at {authority} failed: I/O: {e}"),
    )
}

/// Connects to the broker (TCP, then TLS with `tls`) and starts the guard between it and
/// rumqttc's MQTT 5 client (see "Hostile brokers" in the module documentation of `mqtt`).
pub(super) async fn open_guard(
    host: &str,
    port: u16,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    max_packet: usize,
    authority: &str,
) -> Result<Guard, crate::TransportError> {
    use crate::TransportError;
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| io_failure(authority, &e))?;
    let _ = tcp.set_nodelay(true);
    let listener = match tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await {
        Ok(l) => l,
        Err(_) => tokio::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0))
            .await
            .map_err(|e| {
                TransportError::new(
                    ErrorKind::Other,
                    format!("The MQTT client cannot listen on the loopback interface: {e}"),
                )
            })?,
    };
    let addr = listener.local_addr().map_err(|e| {
        TransportError::new(ErrorKind::Other, format!("The MQTT client's guard: {e}"))
    })?;
    let nonce = nonce();
    let verdict = std::sync::Arc::new(Verdict::default());
    let link = Link {
        listener,
        nonce: nonce.clone(),
        max_packet,
        verdict: verdict.clone(),
        authority: authority.to_string(),
    };
    let task = match tls {
        None => tokio::spawn(link.run(tcp, false)),
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
                TransportError::new(
                    ErrorKind::Misconfigured,
                    format!("'{host}' is not a valid host name for TLS: {e}"),
                )
            })?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| match crate::tls::classify(&e) {
                    Some(t) => TransportError::new(
                        t.kind,
                        format!(
                            "The connection to the MQTT broker at {authority} failed: {}",
                            t.message
                        ),
                    ),
                    None => io_failure(authority, &e),
                })?;
            tokio::spawn(link.run(stream, true))
        }
    };
    Ok(Guard {
        addr,
        nonce,
        verdict,
        task,
    })
}

/// The guard's side of one connection.
struct Link {
    listener: tokio::net::TcpListener,
    nonce: String,
    max_packet: usize,
    verdict: std::sync::Arc<Verdict>,
    authority: String,
}

/// Why the guard ends a connection.
#[derive(Debug, PartialEq)]
pub(super) struct Violation {
    pub kind: ErrorKind,
    pub message: String,
}

impl Link {
    async fn run<B>(self, broker: B, secure: bool)
    where
        B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // rumqttc's connection: the first whose CONNECT carries the nonce (another local
        // process that connects first gets nothing).
        let (local, connect) = loop {
            let Ok((mut local, _)) = self.listener.accept().await else {
                return;
            };
            let _ = local.set_nodelay(true);
            let read =
                tokio::time::timeout(GUARD_CONNECT_WAIT, own_connect(&mut local, &self.nonce));
            if let Ok(Some(connect)) = read.await {
                break (local, connect);
            }
        };
        drop(self.listener);
        let authority = self.authority.as_str();
        let verdict = &self.verdict;
        let connacked = std::sync::atomic::AtomicBool::new(false);
        let broker_failed = |e: std::io::Error| {
            if let Some(t) = crate::tls::classify(&e) {
                verdict.set(
                    t.kind,
                    format!(
                        "The connection to the MQTT broker at {authority} failed: {}",
                        t.message
                    ),
                );
            } else if secure
                && !connacked.load(std::sync::atomic::Ordering::SeqCst)
                && let Some(t) = crate::tls::closed_after_handshake(authority, &e)
            {
                verdict.set(t.kind, t.message);
            } else {
                let t = io_failure(authority, &e);
                verdict.set(t.kind, t.message);
            }
        };
        let (mut from_broker, mut to_broker) = tokio::io::split(broker);
        let (from_client, mut to_client) = local.into_split();
        // rumqttc → broker: as it is.
        let upstream = async {
            to_broker.write_all(&connect).await?;
            to_broker.flush().await?;
            crate::relay::pass_on(from_client, to_broker).await
        };
        // broker → rumqttc: whole packets that rumqttc can read, checked.
        let downstream = async {
            let mut inbound = Inbound::new(self.max_packet);
            let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
            loop {
                buf.reserve(64 * 1024);
                match from_broker.read_buf(&mut buf).await {
                    Ok(0) => {
                        if secure && !connacked.load(std::sync::atomic::Ordering::SeqCst) {
                            broker_failed(std::io::ErrorKind::UnexpectedEof.into());
                        }
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => return broker_failed(e),
                }
                let checked = match inbound.check(&buf) {
                    Ok(n) => n,
                    Err(v) => {
                        verdict.set(
                            v.kind,
                            format!("The MQTT broker at {authority} {}", v.message),
                        );
                        return;
                    }
                };
                if inbound.connacks > 0 {
                    connacked.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                if checked > 0 {
                    if to_client.write_all(&buf[..checked]).await.is_err() {
                        return;
                    }
                    buf.drain(..checked);
                }
            }
        };
        tokio::select! {
            result = upstream => {
                if let Err(e) = result {
                    broker_failed(e);
                }
            }
            () = downstream => {}
        }
    }
}

/// Reads the first packet of a local connection: rumqttc's CONNECT when it carries the nonce,
/// which is then returned without it (as the broker gets it).
async fn own_connect(local: &mut tokio::net::TcpStream, nonce: &str) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        if let Some(len) = frame_length(&buf).ok()?
            && buf.len() >= len
        {
            break;
        }
        // rumqttc's CONNECT is smaller (its strings and binary data are 64 KiB at most).
        if buf.len() > 1024 * 1024 || local.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
    }
    let mut stream = From::from(&buf[..]);
    let p5::Packet::Connect(mut connect, will, login) = p5::Packet::read(&mut stream, None).ok()?
    else {
        return None;
    };
    let properties = connect.properties.as_mut()?;
    let at = properties
        .user_properties
        .iter()
        .position(|(k, v)| k == GUARD_PROPERTY && v == nonce)?;
    properties.user_properties.remove(at);
    let mut out = Default::default();
    p5::Packet::Connect(connect, will, login)
        .write(&mut out, None)
        .ok()?;
    Some(out.to_vec())
}

/// The length of the MQTT packet at the start of `buf` (fixed header included), `None` while
/// its fixed header is incomplete.
fn frame_length(buf: &[u8]) -> Result<Option<usize>, Violation> {
    let mut remaining = 0usize;
    for (i, byte) in buf.iter().skip(1).take(4).enumerate() {
        remaining |= ((byte & 0x7f) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some(1 + i + 1 + remaining));
        }
    }
    if buf.len() >= 5 {
        return Err(Violation {
            kind: ErrorKind::Other,
            message: "sent a packet whose remaining length is longer than 4 bytes (a malformed \
                      packet)"
                .into(),
        });
    }
    Ok(None)
}

fn packet_name(byte: u8) -> &'static str {
    match byte >> 4 {
        1 => "CONNECT",
        2 => "CONNACK",
        3 => "PUBLISH",
        4 => "PUBACK",
        5 => "PUBREC",
        6 => "PUBREL",
        7 => "PUBCOMP",
        8 => "SUBSCRIBE",
        9 => "SUBACK",
        10 => "UNSUBSCRIBE",
        11 => "UNSUBACK",
        12 => "PINGREQ",
        13 => "PINGRESP",
        14 => "DISCONNECT",
        15 => "AUTH",
        _ => "reserved (type 0)",
    }
}

/// The guard's check of what the broker sends: every packet is at most the maximum packet size,
/// is read by rumqttc's own MQTT 5 decoder without error on a copy, and at most one is a
/// CONNACK. rumqttc 0.25.1's decoder takes a complete packet that ends inside a variable byte
/// integer (e.g. the property length a 3.1.1-style CONNACK `20 02 00 00` lacks) for an incomplete
/// one: it drops the packet's bytes and asks for more, and its reader then keeps every byte the
/// broker sends (a CONNACK flood grew Ferrule by 250 MB/s).
pub(super) struct Inbound {
    max_packet: usize,
    pub connacks: usize,
}

impl Inbound {
    pub fn new(max_packet: usize) -> Inbound {
        Inbound {
            max_packet,
            connacks: 0,
        }
    }

    /// How many bytes at the start of `buf` are whole packets that passed the check; a
    /// violation ends the connection.
    pub fn check(&mut self, buf: &[u8]) -> Result<usize, Violation> {
        let mut at = 0;
        while let Some(len) = frame_length(&buf[at..])? {
            let name = packet_name(buf[at]);
            if len > self.max_packet {
                return Err(Violation {
                    kind: ErrorKind::Other,
                    message: format!(
                        "sent a {name} packet of {len} bytes, more than the maximum packet size \
                         of {} bytes (specificConfig 'maximumPacketSize')",
                        self.max_packet
                    ),
                });
            }
            if buf.len() - at < len {
                break;
            }
            let packet = &buf[at..at + len];
            self.check_packet(name, packet)?;
            at += len;
        }
        Ok(at)
    }

    fn check_packet(&mut self, name: &str, packet: &[u8]) -> Result<(), Violation> {
        let malformed = |why: String| Violation {
            kind: ErrorKind::Other,
            message: format!(
                "sent a malformed {name} packet ({why}; first bytes {:02x?})",
                &packet[..packet.len().min(8)]
            ),
        };
        let mut stream = From::from(packet);
        match p5::Packet::read(&mut stream, Some(self.max_packet as u32)) {
            Ok(p5::Packet::ConnAck(_)) => {
                self.connacks += 1;
                if self.connacks > 1 {
                    return Err(Violation {
                        kind: ErrorKind::Other,
                        message: "sent a second CONNACK (a protocol error, MQTT-3.2.0-2)".into(),
                    });
                }
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(r5::mqttbytes::Error::InsufficientBytes(_))
                if packet[0] >> 4 == 2 && packet.len() == 4 && self.connacks == 0 =>
            {
                // The CONNACK of MQTT 3.1.1: no properties.
                self.connacks += 1;
                let code = packet[3];
                Err(Violation {
                    kind: if code == 1 {
                        ErrorKind::Misconfigured
                    } else {
                        ErrorKind::Other
                    },
                    message: format!(
                        "answered with an MQTT 3.1.1 CONNACK (return code {code}{}), not an MQTT \
                         5 one: use the protocol 'mqtt' (3.1.1) for this broker",
                        if code == 1 {
                            ": unacceptable protocol version"
                        } else {
                            ""
                        }
                    ),
                })
            }
            Err(r5::mqttbytes::Error::InsufficientBytes(_)) => {
                Err(malformed("it ends inside a field".into()))
            }
            Err(e) => Err(malformed(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_passes_whole_valid_packets_and_keeps_partial_ones() {
        let mut inbound = Inbound::new(1024);
        // CONNACK (MQTT 5, no properties), PINGRESP, half a PUBACK.
        let bytes = [0x20, 0x03, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x40, 0x02];
        assert_eq!(inbound.check(&bytes), Ok(7));
        assert_eq!(inbound.check(&bytes[7..]), Ok(0));
        assert_eq!(inbound.check(&[0x40, 0x02, 0x00, 0x01]), Ok(4));
        assert_eq!(inbound.connacks, 1);
    }

    #[test]
    fn the_guard_refuses_what_rumqttc_would_misread() {
        // A CONNACK without its property length: rumqttc would wait for more forever.
        let e = Inbound::new(1024)
            .check(&[0x20, 0x02, 0x00, 0x00, 0x20, 0x02])
            .unwrap_err();
        assert!(e.message.contains("MQTT 3.1.1 CONNACK"), "{}", e.message);
        let e = Inbound::new(1024)
            .check(&[0x20, 0x02, 0x00, 0x01])
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Misconfigured);
        // A PUBACK whose property length is cut inside its variable byte integer.
        let e = Inbound::new(1024)
            .check(&[0x40, 0x04, 0x00, 0x01, 0x00, 0x80])
            .unwrap_err();
        assert!(e.message.contains("malformed PUBACK"), "{}", e.message);
        // A second CONNACK.
        let e = Inbound::new(1024)
            .check(&[0x20, 0x03, 0x00, 0x00, 0x00, 0x20, 0x03, 0x00, 0x00, 0x00])
            .unwrap_err();
        assert!(e.message.contains("second CONNACK"), "{}", e.message);
        // Too large, known from the fixed header alone.
        let e = Inbound::new(1024)
            .check(&[0x30, 0xff, 0xff, 0xff, 0x7f])
            .unwrap_err();
        assert!(e.message.contains("268435460 bytes"), "{}", e.message);
        assert!(e.message.contains("maximumPacketSize"), "{}", e.message);
        // A remaining length of five bytes.
        let e = Inbound::new(1024)
            .check(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01])
            .unwrap_err();
        assert!(e.message.contains("longer than 4 bytes"), "{}", e.message);
    }
}
