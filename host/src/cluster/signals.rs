//! Signals between the instances of a cluster, over core NATS; none of it is durable (a lost
//! one is a timeout: the message is not settled and its broker delivers it again).
//!
//! - Acknowledgements: a signal that waits for acknowledgements carries its instance's
//!   `node_id`; a target on another instance that issues one sends it there
//!   (`ferrule.cluster.acks.<node_id>`).
//! - Live signals: a live command, message or event consumed on one instance is routed there and
//!   sent to every other instance (`ferrule.cluster.live`), which routes it to the targets it
//!   runs.
//! - Live responses and device acknowledgements that no signal on the receiving instance waits
//!   for go to every other instance (`ferrule.cluster.unclaimed`); the one where the signal
//!   waits takes it.

use super::nats;
use crate::hub::Hub;
use crate::hub::acks::Ack;
use crate::hub::inbound::{ClusterLink, Unclaimed};
use ferrule_protocol::{DittoMessage, Headers};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use std::sync::Arc;

const LIVE: &str = "ferrule.cluster.live";
const UNCLAIMED: &str = "ferrule.cluster.unclaimed";

fn acks_of(node: &str) -> String {
    format!("ferrule.cluster.acks.{node}")
}

fn ack_json(ack: &Ack) -> Value {
    json!({"label": ack.label, "status": ack.status, "headers": ack.headers,
           "payload": ack.payload})
}

fn ack_from(m: &mut Map<String, Value>) -> Option<Ack> {
    let headers: Headers = serde_json::from_value(m.remove("headers")?).ok()?;
    Some(Ack {
        label: m.get("label")?.as_str()?.to_string(),
        status: u16::try_from(m.get("status")?.as_u64()?).ok()?,
        headers,
        payload: m.remove("payload").filter(|p| !p.is_null()),
    })
}

fn object(payload: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(payload).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Links this instance's hub to the others: receives what they send it and sends them what is
/// theirs.
pub async fn relay(client: async_nats::Client, node: &str, hub: &Arc<Hub>) -> anyhow::Result<()> {
    let mut acks = nats::subscribe(&client, acks_of(node)).await?;
    let mut live = nats::subscribe(&client, LIVE).await?;
    let mut unclaimed = nats::subscribe(&client, UNCLAIMED).await?;
    let me = node.to_string();

    let h = hub.clone();
    tokio::spawn(async move {
        while let Some(message) = acks.next().await {
            for frame in nats::frames(&message.payload) {
                let Some(mut m) = object(frame) else {
                    continue;
                };
                if let (Some(id), Some(ack)) =
                    (m.get("id").and_then(Value::as_u64), ack_from(&mut m))
                {
                    h.inbound.acknowledge_here(id, ack);
                }
            }
        }
    });
    let h = hub.clone();
    tokio::spawn(async move {
        while let Some(message) = live.next().await {
            for frame in nats::frames(&message.payload) {
                if let Ok(text) = std::str::from_utf8(frame)
                    && let Ok(signal) = DittoMessage::from_json_str(text)
                {
                    h.router.dispatch(Arc::new(signal)).await;
                }
            }
        }
    });
    let h = hub.clone();
    tokio::spawn(async move {
        while let Some(message) = unclaimed.next().await {
            for frame in nats::frames(&message.payload) {
                unclaimed_here(&h, frame);
            }
        }
    });

    // One task sends, in the order the signals were handed over.
    let send = nats::sender(client, "a signal");
    let (s1, s2, s3) = (send.clone(), send.clone(), send);
    let json = |body: Value| serde_json::to_vec(&body).expect("JSON serialises");
    hub.inbound.join_cluster(ClusterLink {
        node: me,
        ack: Arc::new(move |node: &str, id: u64, ack: Ack| {
            let mut body = ack_json(&ack);
            body["id"] = json!(id);
            let _ = s1.send((acks_of(node), json(body)));
        }),
        live: Arc::new(move |signal: &DittoMessage| {
            let bytes = signal.to_json_string().into_bytes();
            let _ = s2.send((LIVE.to_string(), bytes));
        }),
        unclaimed: Arc::new(move |correlation: &str, what: Unclaimed| {
            let mut body = json!({"correlation": correlation});
            match what {
                Unclaimed::Response(r) => body["response"] = Value::Object(r.to_json()),
                Unclaimed::Ack(a) => body["ack"] = ack_json(&a),
            }
            let _ = s3.send((UNCLAIMED.to_string(), json(body)));
        }),
    });
    Ok(())
}

/// A live response or device acknowledgement another instance had no signal for: taken by the
/// signal waiting here, if one does.
fn unclaimed_here(h: &Hub, frame: &[u8]) {
    let Some(mut m) = object(frame) else {
        return;
    };
    let Some(correlation) = m
        .get("correlation")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return;
    };
    match m.remove("response") {
        Some(Value::Object(r)) => {
            if let Ok(response) = DittoMessage::from_json(r) {
                let _ = h.inbound.respond_here(&correlation, response);
            }
        }
        _ => {
            if let Some(Value::Object(mut a)) = m.remove("ack")
                && let Some(ack) = ack_from(&mut a)
            {
                let _ = h.inbound.acknowledge_correlated_here(&correlation, ack);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acknowledgement_reads_back_as_sent() {
        let mut headers = Headers::new();
        headers.insert("ditto-weak-ack", true);
        let ack = Ack {
            label: "c:published".into(),
            status: 503,
            headers,
            payload: Some(json!({"error": "x"})),
        };
        let Value::Object(mut m) = ack_json(&ack) else {
            unreachable!()
        };
        assert_eq!(ack_from(&mut m), Some(ack));
        assert!(ack_from(&mut Map::new()).is_none());
    }
}
