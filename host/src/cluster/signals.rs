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

use crate::hub::Hub;
use crate::hub::acks::Ack;
use crate::hub::inbound::{ClusterLink, Unclaimed};
use ferrule_protocol::{DittoMessage, Headers};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use tokio::sync::mpsc;

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
    let subscribe = |subject: String| {
        let client = client.clone();
        async move {
            client
                .subscribe(subject)
                .await
                .map_err(|e| anyhow::anyhow!("cannot subscribe on NATS: {e}"))
        }
    };
    let mut acks = subscribe(acks_of(node)).await?;
    let mut live = subscribe(LIVE.to_string()).await?;
    let mut unclaimed = subscribe(UNCLAIMED.to_string()).await?;
    let me = node.to_string();

    let h = hub.clone();
    tokio::spawn(async move {
        while let Some(message) = acks.next().await {
            let Some(mut m) = object(&message.payload) else {
                continue;
            };
            if let (Some(id), Some(ack)) = (m.get("id").and_then(Value::as_u64), ack_from(&mut m)) {
                h.inbound.acknowledge_here(id, ack);
            }
        }
    });
    let (h, from_me) = (hub.clone(), me.clone());
    tokio::spawn(async move {
        while let Some(message) = live.next().await {
            let Some(mut m) = object(&message.payload) else {
                continue;
            };
            if m.get("from").and_then(Value::as_str) == Some(from_me.as_str()) {
                continue;
            }
            if let Some(Value::Object(signal)) = m.remove("signal")
                && let Ok(signal) = DittoMessage::from_json(signal)
            {
                h.router.dispatch(Arc::new(signal)).await;
            }
        }
    });
    let (h, from_me) = (hub.clone(), me.clone());
    tokio::spawn(async move {
        while let Some(message) = unclaimed.next().await {
            let Some(mut m) = object(&message.payload) else {
                continue;
            };
            if m.get("from").and_then(Value::as_str) == Some(from_me.as_str()) {
                continue;
            }
            let Some(correlation) = m
                .get("correlation")
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                continue;
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
    });

    // One task sends, in the order the signals were handed over.
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Vec<u8>)>();
    tokio::spawn(async move {
        while let Some((subject, bytes)) = rx.recv().await {
            if let Err(e) = client.publish(subject, bytes.into()).await {
                tracing::warn!(error = %e, "a signal did not reach the other instances");
            }
        }
    });
    let send = move |subject: String, body: Value| {
        let bytes = serde_json::to_vec(&body).expect("JSON serialises");
        let _ = tx.send((subject, bytes));
    };
    let (s1, s2, s3) = (send.clone(), send.clone(), send);
    let (m1, m2) = (me.clone(), me.clone());
    hub.inbound.join_cluster(ClusterLink {
        node: me,
        ack: Arc::new(move |node: &str, id: u64, ack: Ack| {
            let mut body = ack_json(&ack);
            body["id"] = json!(id);
            s1(acks_of(node), body);
        }),
        live: Arc::new(move |signal: &DittoMessage| {
            s2(
                LIVE.to_string(),
                json!({"from": m1, "signal": signal.to_json()}),
            );
        }),
        unclaimed: Arc::new(move |correlation: &str, what: Unclaimed| {
            let mut body = json!({"from": m2, "correlation": correlation});
            match what {
                Unclaimed::Response(r) => body["response"] = Value::Object(r.to_json()),
                Unclaimed::Ack(a) => body["ack"] = ack_json(&a),
            }
            s3(UNCLAIMED.to_string(), body);
        }),
    });
    Ok(())
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
