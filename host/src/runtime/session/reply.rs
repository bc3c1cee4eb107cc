//! What a target's peer answered (HTTP push: the response to each request), as Ditto turns it
//! into signals (`HttpPublisherActor.toCommandResponseOrAcknowledgement`): the target's issued
//! acknowledgement with the response's status, headers and body; the live response of a live
//! message (any response) or of a live command (a Ditto Protocol response only); and, whatever
//! was asked, an acknowledgement or live response the peer sent as Ditto Protocol.

use crate::hub::acks::{Ack, LIVE_RESPONSE};
use ferrule_protocol::{Channel, Criterion, DittoMessage, Headers};
use ferrule_transport::Reply;
use serde_json::Value;

/// The Ditto Protocol content type.
const DITTO_PROTOCOL: &str = "application/vnd.eclipse.ditto+json";

/// Response headers that describe the HTTP exchange, not the message, and are not carried on.
const HOP_BY_HOP: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

fn media_type(content_type: Option<&str>) -> String {
    content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The body as a JSON value, as Ditto reads it by its content type: JSON types parsed (a body
/// that is no JSON becomes a string), text types as a string, anything else (or no content
/// type) as base64 text of the bytes.
pub(super) fn body_value(reply: &Reply) -> Value {
    let media = media_type(reply.content_type.as_deref());
    let text = || String::from_utf8_lossy(&reply.body).into_owned();
    let is_json = media == "application/json"
        || (media.starts_with("application/")
            && media.ends_with("+json")
            && media != "application/merge-patch+json");
    if is_json {
        return serde_json::from_slice(&reply.body).unwrap_or_else(|_| Value::String(text()));
    }
    let is_text = media.starts_with("text/")
        || media == "application/merge-patch+json"
        || media.ends_with("javascript")
        || media.ends_with("ecmascript");
    if is_text {
        return Value::String(text());
    }
    use base64::Engine;
    Value::String(base64::engine::general_purpose::STANDARD.encode(&reply.body))
}

/// The response's headers as the signal's: the response's own (without those of the HTTP
/// exchange) over `base`, with its content type.
fn merged_headers(base: &Headers, reply: &Reply) -> Headers {
    let mut headers = base.clone();
    for (k, v) in reply.headers.iter() {
        if !HOP_BY_HOP.iter().any(|h| k.eq_ignore_ascii_case(h)) {
            headers.insert(k, v.clone());
        }
    }
    if let Some(ct) = &reply.content_type {
        headers.insert("content-type", ct.as_str());
    }
    headers
}

/// The acknowledgement `label` a target issues with the response `reply` (any status).
pub(super) fn ack(label: &str, reply: &Reply) -> Ack {
    Ack {
        label: label.to_string(),
        status: reply.status,
        headers: merged_headers(&Headers::new(), reply),
        payload: Some(body_value(reply)),
    }
}

/// The body as a Ditto Protocol message, when it says it is one.
fn ditto_protocol(reply: &Reply) -> Option<DittoMessage> {
    if media_type(reply.content_type.as_deref()) != DITTO_PROTOCOL {
        return None;
    }
    let text = std::str::from_utf8(&reply.body).ok()?;
    if !text.trim_start().starts_with('{') {
        return None;
    }
    DittoMessage::from_json_str(text).ok()
}

/// Whether `signal` is a live message or live command whose sender waits for a response.
fn wants_live_response(signal: &DittoMessage) -> bool {
    signal.status.is_none()
        && signal.topic.channel == Some(Channel::Live)
        && matches!(
            signal.topic.criterion,
            Criterion::Messages | Criterion::Commands
        )
        && signal
            .headers
            .get_str("response-required")
            .is_none_or(|r| !r.eq_ignore_ascii_case("false"))
}

/// What the peer's response to `signal` answers.
pub(super) enum Answer {
    /// A live response for the sender of `signal`.
    Response(Box<DittoMessage>),
    /// An acknowledgement the peer sent as Ditto Protocol.
    Ack(Ack),
}

/// The live response or acknowledgement in `reply` to `signal` (`target_label`: the target's
/// issued label, which takes the response as its acknowledgement unless it is `live-response`).
pub(super) fn answer(
    signal: &DittoMessage,
    target_label: Option<&str>,
    reply: &Reply,
) -> Option<Answer> {
    let correlation = signal.headers.correlation_id();
    if let Some(message) = ditto_protocol(reply) {
        if message.topic.criterion == Criterion::Acks {
            let label = message.topic.action.clone()?;
            return Some(Answer::Ack(Ack {
                label,
                status: message.status.unwrap_or(reply.status),
                headers: message.headers,
                payload: message.value,
            }));
        }
        if message.status.is_some() && wants_live_response(signal) {
            // Ditto's round-trip check: the response must answer this signal.
            if message.headers.correlation_id() != correlation
                || message.topic.entity_id() != signal.topic.entity_id()
            {
                return None;
            }
            return Some(Answer::Response(Box::new(message)));
        }
        return None;
    }
    let label_is_live = target_label.is_none_or(|l| l == LIVE_RESPONSE);
    if !label_is_live
        || !wants_live_response(signal)
        || signal.topic.criterion != Criterion::Messages
    {
        return None;
    }
    // A live message's response: the message's topic and path, the response's status,
    // headers and body.
    let mut response = DittoMessage::new(signal.topic.clone(), signal.path.clone());
    let mut headers = merged_headers(&signal.headers, reply);
    crate::hub::inbound::remove_internal(&mut headers);
    response.headers = headers;
    response.status = Some(reply.status);
    if !reply.body.is_empty() {
        response.value = Some(body_value(reply));
    }
    Some(Answer::Response(Box::new(response)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(status: u16, content_type: Option<&str>, body: &[u8]) -> Reply {
        let mut headers = Headers::new();
        headers.insert("x-server", "yes");
        headers.insert("content-length", body.len().to_string());
        Reply {
            status,
            headers,
            content_type: content_type.map(str::to_string),
            body: body.to_vec(),
        }
    }

    fn message(topic: &str, headers: Value) -> DittoMessage {
        DittoMessage::from_json_str(
            &json!({"topic": topic, "path": "/inbox/messages/ask", "headers": headers, "value": 1})
                .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn bodies_are_read_by_their_content_type() {
        let value = |ct: Option<&str>, body: &[u8]| body_value(&reply(200, ct, body));
        assert_eq!(
            value(Some("application/json"), br#"{"a":1}"#),
            json!({"a": 1})
        );
        assert_eq!(
            value(
                Some("application/vnd.org.eclipse.ditto.foobar+json"),
                b"[1]"
            ),
            json!([1])
        );
        assert_eq!(
            value(Some("application/json"), b"not json"),
            json!("not json")
        );
        assert_eq!(
            value(Some("text/plain; charset=UTF-8"), b"hello!"),
            json!("hello!")
        );
        assert_eq!(
            value(Some("application/merge-patch+json"), b"{}"),
            json!("{}")
        );
        assert_eq!(
            value(Some("application/octet-stream"), b"hello!"),
            json!("aGVsbG8h")
        );
        assert_eq!(value(None, b""), json!(""));
    }

    #[test]
    fn an_issued_ack_carries_status_headers_and_body() {
        let a = ack(
            "c:push",
            &reply(418, Some("application/json"), br#"{"tea":true}"#),
        );
        assert_eq!((a.label.as_str(), a.status), ("c:push", 418));
        assert_eq!(a.payload, Some(json!({"tea": true})));
        assert_eq!(a.headers.get_str("x-server").as_deref(), Some("yes"));
        assert_eq!(
            a.headers.get_str("content-type").as_deref(),
            Some("application/json")
        );
        assert!(a.headers.get_str("content-length").is_none());
    }

    #[test]
    fn a_live_message_is_answered_by_any_response() {
        let signal = message(
            "org.x/t/things/live/messages/ask",
            json!({"correlation-id": "c1", "content-type": "text/plain"}),
        );
        let Some(Answer::Response(r)) = answer(
            &signal,
            None,
            &reply(418, Some("application/json"), br#"{"foo":true}"#),
        ) else {
            panic!("no response")
        };
        assert_eq!(r.status, Some(418));
        assert_eq!(r.value, Some(json!({"foo": true})));
        assert_eq!(r.topic.to_string(), "org.x/t/things/live/messages/ask");
        assert_eq!(r.headers.correlation_id().as_deref(), Some("c1"));
        assert_eq!(
            r.headers.get_str("content-type").as_deref(),
            Some("application/json")
        );
        // Not when no response is required, or the target's label is another.
        let quiet = message(
            "org.x/t/things/live/messages/ask",
            json!({"correlation-id": "c1", "response-required": false}),
        );
        assert!(answer(&quiet, None, &reply(200, None, b"")).is_none());
        assert!(answer(&signal, Some("c:push"), &reply(200, None, b"")).is_none());
        assert!(answer(&signal, Some("live-response"), &reply(200, None, b"")).is_some());
    }

    #[test]
    fn a_live_command_takes_only_a_matching_ditto_protocol_response() {
        let signal = DittoMessage::from_json_str(
            &json!({"topic": "org.x/t/things/live/commands/modify", "path": "/attributes/a",
                    "headers": {"correlation-id": "c2"}, "value": 1})
            .to_string(),
        )
        .unwrap();
        assert!(answer(&signal, None, &reply(200, Some("application/json"), b"{}")).is_none());
        let body = |correlation: &str, thing: &str| {
            json!({"topic": format!("org.x/{thing}/things/live/commands/modify"),
                   "path": "/attributes/a", "headers": {"correlation-id": correlation},
                   "status": 204})
            .to_string()
        };
        let ok = reply(200, Some(DITTO_PROTOCOL), body("c2", "t").as_bytes());
        let Some(Answer::Response(r)) = answer(&signal, None, &ok) else {
            panic!("no response")
        };
        assert_eq!(r.status, Some(204));
        let other = reply(200, Some(DITTO_PROTOCOL), body("other", "t").as_bytes());
        assert!(answer(&signal, None, &other).is_none());
        let wrong = reply(200, Some(DITTO_PROTOCOL), body("c2", "u").as_bytes());
        assert!(answer(&signal, None, &wrong).is_none());
    }

    #[test]
    fn a_ditto_protocol_acknowledgement_is_taken_as_one() {
        let signal = message(
            "org.x/t/things/twin/events/modified",
            json!({"correlation-id": "c3"}),
        );
        let body = json!({"topic": "org.x/t/things/twin/acks/custom", "path": "/",
                          "headers": {"correlation-id": "c3"}, "status": 202, "value": "ok"});
        let r = reply(200, Some(DITTO_PROTOCOL), body.to_string().as_bytes());
        let Some(Answer::Ack(a)) = answer(&signal, None, &r) else {
            panic!("no ack")
        };
        assert_eq!((a.label.as_str(), a.status), ("custom", 202));
    }
}
