//! Acknowledgements (spec §10): which labels a signal requests, the aggregation of the acks that
//! come back, the timeout, and the settle decision for the consumed message.

use ferrule_protocol::{Channel, Criterion, DittoMessage, Headers, ProtocolError, Topic};
use indexmap::{IndexMap, IndexSet};
use serde_json::{Map, Value, json};
use std::time::Duration;

pub const TWIN_PERSISTED: &str = "twin-persisted";
pub const LIVE_RESPONSE: &str = "live-response";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One acknowledgement of a label.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub label: String,
    pub status: u16,
    pub headers: Headers,
    pub payload: Option<Value>,
}

impl Ack {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The ack that stands for a label that did not answer in time.
    pub fn timed_out(label: &str, timeout: Duration) -> Ack {
        Ack {
            label: label.to_string(),
            status: 408,
            headers: Headers::new(),
            payload: Some(json!({
                "status": 408,
                "error": "acknowledgement:request.timeout",
                "message": format!(
                    "The acknowledgement request reached the specified timeout of {}ms.",
                    timeout.as_millis()
                ),
                "description": "Try increasing the timeout and make sure that the requested acknowledgement is sent back in time.",
            })),
        }
    }
}

/// `timeout` header values: `42s`, `250ms`, `1m`, or plain seconds.
pub fn parse_timeout(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (number, scale_ms) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000)
    } else {
        (t, 1000)
    };
    number
        .trim()
        .parse::<u64>()
        .ok()
        .map(|n| Duration::from_millis(n.saturating_mul(scale_ms)))
}

/// The labels of a `requested-acks` header: a JSON array of strings (Ditto) or a comma list.
pub fn requested_acks(headers: &Headers) -> Option<IndexSet<String>> {
    let value = headers.get("requested-acks")?;
    let labels = match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Value::String(s) => match serde_json::from_str::<Vec<String>>(s) {
            Ok(list) => list.into_iter().collect(),
            Err(_) => s
                .split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
        },
        _ => IndexSet::new(),
    };
    Some(labels)
}

/// The labels a consumed message requests, Ditto's way (`InboundDispatchingSink`,
/// `RequestedAcksFilter`, the `AbstractCommandAckRequestSetter`s):
/// - the source's `acknowledgementRequests.includes` are added to the signal's own
///   `requested-acks` header, unless that header is there and empty (the sender asked for
///   none); the source's `filter` (an `fn:filter` condition over the message's headers) can
///   turn them all off; `{{connection:id}}` is resolved;
/// - a live command or message also requests `live-response` when a response is required: always
///   when it requests nothing else, alongside other labels when it requests some; never when
///   `response-required` is false; and never `twin-persisted`, which a live signal cannot get;
/// - a twin command never requests `live-response`.
///
/// Without any label, the message is settled at once.
pub fn requested_labels(
    requests: Option<&crate::model::connection::AcknowledgementRequests>,
    signal: &DittoMessage,
    connection_id: &str,
    resolver: &dyn ferrule_placeholders::Resolver,
) -> IndexSet<String> {
    let from_header = requested_acks(&signal.headers);
    let explicitly_none = from_header.as_ref().is_some_and(IndexSet::is_empty);
    let mut declared = from_header.is_some();
    let mut labels = from_header.unwrap_or_default();
    if let Some(requests) = requests {
        if let Some(filter) = &requests.filter
            && !ferrule_placeholders::evaluate_condition(filter, resolver).unwrap_or(false)
        {
            return IndexSet::new();
        }
        if !explicitly_none && !requests.includes.is_empty() {
            labels.extend(requests.includes.iter().cloned());
            declared = true;
        }
    }
    let mut labels: IndexSet<String> = labels
        .into_iter()
        .map(|l| resolve_label(&l, connection_id))
        .collect();
    let topic = &signal.topic;
    let commanded = signal.status.is_none()
        && matches!(topic.criterion, Criterion::Commands | Criterion::Messages);
    match topic.channel {
        Some(Channel::Live) if commanded => {
            // Ditto decides on the implicit label before it filters out the labels a live
            // signal cannot get.
            let required = response_required(&signal.headers);
            if required && (!declared || !labels.is_empty()) {
                labels.insert(LIVE_RESPONSE.to_string());
            } else if !required {
                labels.shift_remove(LIVE_RESPONSE);
            }
            labels.shift_remove(TWIN_PERSISTED);
        }
        Some(Channel::Twin) if commanded => {
            labels.shift_remove(LIVE_RESPONSE);
        }
        _ => {}
    }
    labels
}

/// Ditto's `response-required` header: as it says, and when it is absent, true unless the
/// `timeout` is 0 (`AbstractCommandAckRequestSetter`).
pub fn response_required(headers: &Headers) -> bool {
    match headers.get_str("response-required") {
        Some(v) => v != "false",
        None => !headers
            .get_str("timeout")
            .and_then(|t| parse_timeout(&t))
            .is_some_and(|t| t.is_zero()),
    }
}

/// Ditto's answer to an acknowledgement a source sent without declaring its label.
pub fn label_not_declared(label: &str) -> ProtocolError {
    ProtocolError::new(
        400,
        "acknowledgement:label.not.declared",
        format!("Cannot send acknowledgement with label <{label}>, which is not declared."),
        "A connection source sends acknowledgements only of the labels in its <declaredAcks>: \
         add the label there.",
    )
}

/// An acknowledgement label with its `{{connection:id}}` prefix resolved (Ditto resolves it when
/// the connection is loaded); any other label as it is.
pub fn resolve_label(label: &str, connection_id: &str) -> String {
    match label.split_once("}}:") {
        Some((p, rest)) if p.trim_start_matches("{{").trim() == "connection:id" => {
            format!("{connection_id}:{rest}")
        }
        _ => label.to_string(),
    }
}

/// Collects the acks of one signal until every requested label answered.
#[derive(Debug, Clone)]
pub struct AckAggregator {
    requested: IndexSet<String>,
    received: IndexMap<String, Ack>,
}

/// What the transport does with the consumed message once the acks are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Positive settlement: ack, PUBACK, accepted.
    Accept,
    /// Negative, and the broker should deliver it again (408, 424, 5xx).
    Redeliver,
    /// Negative, without redelivery (other 4xx).
    Reject,
}

/// The outcome of all requested acks.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregated {
    /// One ack → its status; all successful → 200; otherwise 424.
    pub status: u16,
    pub acks: Vec<Ack>,
}

impl AckAggregator {
    pub fn new(requested: IndexSet<String>) -> AckAggregator {
        AckAggregator {
            requested,
            received: IndexMap::new(),
        }
    }

    /// Records an ack; acks of labels that were not requested, and repeated ones, are ignored.
    /// Returns whether every requested label has answered.
    pub fn add(&mut self, ack: Ack) -> bool {
        if self.requested.contains(&ack.label) && !self.received.contains_key(&ack.label) {
            self.received.insert(ack.label.clone(), ack);
        }
        self.is_complete()
    }

    pub fn requested(&self) -> &IndexSet<String> {
        &self.requested
    }

    pub fn is_complete(&self) -> bool {
        self.received.len() == self.requested.len()
    }

    /// The aggregate now; labels that did not answer count as timed out.
    pub fn finish(self, timeout: Duration) -> Aggregated {
        let mut received = self.received;
        let acks: Vec<Ack> = self
            .requested
            .iter()
            .map(|label| {
                received
                    .shift_remove(label)
                    .unwrap_or_else(|| Ack::timed_out(label, timeout))
            })
            .collect();
        let status = match acks.as_slice() {
            [single] => single.status,
            all if all.iter().all(Ack::is_success) => 200,
            _ => 424,
        };
        Aggregated { status, acks }
    }
}

impl Aggregated {
    pub fn is_success(&self) -> bool {
        self.acks.iter().all(Ack::is_success)
    }

    pub fn settle(&self) -> Settle {
        if self.is_success() {
            Settle::Accept
        } else if self
            .acks
            .iter()
            .any(|a| !a.is_success() && (a.status == 408 || a.status == 424 || a.status >= 500))
        {
            Settle::Redeliver
        } else {
            Settle::Reject
        }
    }

    /// The Ditto Protocol message of the aggregate, answering `signal_topic`'s thing.
    pub fn to_message(&self, thing_topic: &Topic, headers: &Headers) -> DittoMessage {
        let (ns, name) = (&thing_topic.namespace, &thing_topic.name);
        if let [single] = self.acks.as_slice() {
            let mut m = DittoMessage::new(
                Topic::twin(ns, name, Criterion::Acks, Some(&single.label)),
                "/",
            );
            m.topic.channel = thing_topic.channel;
            m.headers = headers.clone();
            m.status = Some(single.status);
            m.value = single.payload.clone();
            return m;
        }
        let mut value = Map::new();
        for ack in &self.acks {
            let mut entry = Map::new();
            entry.insert("status".into(), Value::from(ack.status));
            if let Some(p) = &ack.payload {
                entry.insert("payload".into(), p.clone());
            }
            entry.insert(
                "headers".into(),
                serde_json::to_value(&ack.headers).unwrap_or_default(),
            );
            value.insert(ack.label.clone(), Value::Object(entry));
        }
        let mut m = DittoMessage::new(Topic::twin(ns, name, Criterion::Acks, None), "/");
        m.topic.channel = thing_topic.channel;
        m.headers = headers.clone();
        m.status = Some(self.status);
        m.value = Some(Value::Object(value));
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(label: &str, status: u16) -> Ack {
        Ack {
            label: label.into(),
            status,
            headers: Headers::new(),
            payload: None,
        }
    }

    fn labels(l: &[&str]) -> IndexSet<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn aggregation_rules() {
        let mut a = AckAggregator::new(labels(&[TWIN_PERSISTED]));
        assert!(a.add(ack(TWIN_PERSISTED, 204)));
        let agg = a.finish(DEFAULT_TIMEOUT);
        assert_eq!(agg.status, 204, "a single ack gives its own status");
        assert_eq!(agg.settle(), Settle::Accept);

        let mut a = AckAggregator::new(labels(&[TWIN_PERSISTED, "c:x"]));
        assert!(!a.add(ack(TWIN_PERSISTED, 204)));
        assert!(!a.add(ack("unrequested", 500)));
        assert!(
            !a.add(ack(TWIN_PERSISTED, 500)),
            "a repeated label is ignored"
        );
        assert!(a.add(ack("c:x", 201)));
        let agg = a.finish(DEFAULT_TIMEOUT);
        assert_eq!(agg.status, 200);
        assert!(agg.is_success());

        let mut a = AckAggregator::new(labels(&[TWIN_PERSISTED, "c:x"]));
        a.add(ack(TWIN_PERSISTED, 204));
        let agg = a.finish(Duration::from_millis(250));
        assert_eq!(agg.status, 424);
        assert_eq!(agg.acks[1].status, 408);
        assert_eq!(
            agg.acks[1].payload.as_ref().unwrap()["message"],
            "The acknowledgement request reached the specified timeout of 250ms."
        );
        assert_eq!(agg.settle(), Settle::Redeliver);
    }

    #[test]
    fn settle_decisions() {
        let settle = |statuses: &[u16]| {
            let names: Vec<String> = (0..statuses.len()).map(|i| format!("l{i}")).collect();
            let mut a = AckAggregator::new(names.iter().cloned().collect());
            for (n, s) in names.iter().zip(statuses) {
                a.add(ack(n, *s));
            }
            a.finish(DEFAULT_TIMEOUT).settle()
        };
        assert_eq!(settle(&[200, 204]), Settle::Accept);
        assert_eq!(settle(&[503]), Settle::Redeliver);
        assert_eq!(settle(&[424]), Settle::Redeliver);
        assert_eq!(settle(&[400]), Settle::Reject);
        assert_eq!(settle(&[404, 200]), Settle::Reject);
        assert_eq!(settle(&[404, 500]), Settle::Redeliver);
    }

    #[test]
    fn headers_and_timeouts() {
        assert_eq!(parse_timeout("42s"), Some(Duration::from_secs(42)));
        assert_eq!(parse_timeout("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_timeout("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_timeout("soon"), None);
        let mut h = Headers::new();
        h.insert("requested-acks", json!(["twin-persisted", "c:x"]));
        assert_eq!(requested_acks(&h), Some(labels(&["twin-persisted", "c:x"])));
        h.insert("requested-acks", "[\"a\"]");
        assert_eq!(requested_acks(&h), Some(labels(&["a"])));
        h.insert("requested-acks", "a, b");
        assert_eq!(requested_acks(&h), Some(labels(&["a", "b"])));
        assert_eq!(requested_acks(&Headers::new()), None);
    }

    /// A signal of `topic` with `headers`.
    fn signal(topic: &str, headers: Value) -> DittoMessage {
        DittoMessage::from_json_str(
            &json!({"topic": topic, "path": "/", "headers": headers}).to_string(),
        )
        .unwrap()
    }

    const TWIN: &str = "org.acme/t/things/twin/commands/modify";
    const LIVE: &str = "org.acme/t/things/live/messages/ask";

    #[test]
    fn requested_labels_from_source_and_headers() {
        use crate::model::connection::AcknowledgementRequests;
        let requests = AcknowledgementRequests {
            includes: labels(&["{{connection:id}}:custom", "twin-persisted"]),
            filter: Some("fn:filter(header:mqtt.qos,'ne','0')".into()),
        };
        let s = signal(TWIN, json!({"mqtt.qos": "1"}));
        let r = ferrule_placeholders::MapResolver::builder()
            .header("mqtt.qos", "1")
            .build();
        assert_eq!(
            requested_labels(Some(&requests), &s, "conn", &r),
            labels(&["conn:custom", "twin-persisted"])
        );
        let qos0 = ferrule_placeholders::MapResolver::builder()
            .header("mqtt.qos", "0")
            .build();
        assert!(requested_labels(Some(&requests), &s, "conn", &qos0).is_empty());
        let s = signal(TWIN, json!({"requested-acks": ["conn:mine"]}));
        let no_filter = AcknowledgementRequests {
            includes: labels(&["twin-persisted"]),
            filter: None,
        };
        assert_eq!(
            requested_labels(Some(&no_filter), &s, "conn", &r),
            labels(&["conn:mine", "twin-persisted"])
        );
        assert_eq!(
            requested_labels(None, &signal(TWIN, json!({})), "conn", &r),
            IndexSet::new()
        );
        // The sender asked for none: the source adds none.
        let s = signal(TWIN, json!({"requested-acks": []}));
        assert!(requested_labels(Some(&no_filter), &s, "conn", &r).is_empty());
        // A twin command cannot be answered by a live response.
        let s = signal(
            TWIN,
            json!({"requested-acks": ["live-response", "twin-persisted"]}),
        );
        assert_eq!(
            requested_labels(None, &s, "conn", &r),
            labels(&["twin-persisted"])
        );
    }

    /// Ditto's `MessageCommandAckRequestSetter` / `ThingLiveCommandAckRequestSetter`: a live
    /// command or message waits for its response unless it says it needs none.
    #[test]
    fn live_signals_request_their_response_as_ditto_does() {
        use crate::model::connection::AcknowledgementRequests;
        let r = ferrule_placeholders::MapResolver::builder().build();
        let requested = |headers: Value, includes: &[&str]| {
            let requests = AcknowledgementRequests {
                includes: labels(includes),
                filter: None,
            };
            requested_labels(Some(&requests), &signal(LIVE, headers), "conn", &r)
        };
        assert_eq!(requested(json!({}), &[]), labels(&["live-response"]));
        assert_eq!(
            requested(json!({"timeout": "10s"}), &[]),
            labels(&["live-response"])
        );
        assert_eq!(
            requested(json!({"response-required": false}), &[]),
            IndexSet::new()
        );
        assert_eq!(requested(json!({"timeout": "0"}), &[]), IndexSet::new());
        assert_eq!(
            requested(json!({"requested-acks": []}), &[]),
            IndexSet::new()
        );
        assert_eq!(
            requested(json!({}), &["conn:seen"]),
            labels(&["conn:seen", "live-response"])
        );
        assert_eq!(
            requested(
                json!({"requested-acks": ["live-response", "conn:seen"], "response-required": false}),
                &[]
            ),
            labels(&["conn:seen"])
        );
        assert_eq!(
            requested(json!({"requested-acks": ["twin-persisted"]}), &[]),
            labels(&["live-response"]),
            "a live signal is never persisted"
        );
        // A live response or event requests nothing of its own.
        let response = DittoMessage::from_json_str(
            &json!({"topic": LIVE, "path": "/", "status": 200, "headers": {}}).to_string(),
        )
        .unwrap();
        assert!(requested_labels(None, &response, "conn", &r).is_empty());
        let event = signal("org.acme/t/things/live/events/modified", json!({}));
        assert!(requested_labels(None, &event, "conn", &r).is_empty());
    }

    #[test]
    fn messages_match_the_spec() {
        let topic = Topic::parse("org.eclipse.ditto/thing-1/things/twin/commands/modify").unwrap();
        let mut h = Headers::new();
        h.insert("correlation-id", "c-1");
        let mut a = AckAggregator::new(labels(&["twin-persisted", "my-conn:my-ack"]));
        a.add(ack("twin-persisted", 204));
        let m = a.finish(Duration::from_secs(1)).to_message(&topic, &h);
        assert_eq!(
            m.topic.to_string(),
            "org.eclipse.ditto/thing-1/things/twin/acks"
        );
        assert_eq!(m.status, Some(424));
        let v = m.value.unwrap();
        assert_eq!(v["twin-persisted"]["status"], 204);
        assert_eq!(v["my-conn:my-ack"]["status"], 408);
        let mut a = AckAggregator::new(labels(&["my-conn:my-ack"]));
        a.add(Ack {
            payload: Some(json!({"outcome": "green"})),
            ..ack("my-conn:my-ack", 200)
        });
        let m = a.finish(DEFAULT_TIMEOUT).to_message(&topic, &h);
        assert_eq!(
            m.topic.to_string(),
            "org.eclipse.ditto/thing-1/things/twin/acks/my-conn:my-ack"
        );
        assert_eq!(m.value, Some(json!({"outcome": "green"})));
        assert_eq!(m.status, Some(200));
    }
}
