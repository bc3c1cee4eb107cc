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
