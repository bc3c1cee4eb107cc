//! Acknowledgements across a cluster. A signal that waits for acknowledgements carries the
//! `node_id` of its instance; a target on another instance that issues one sends it there over
//! core NATS (`ferrule.cluster.acks.<node_id>`), where it settles the waiting signal as a local
//! one would. A lost acknowledgement is a timeout: the message is not settled and its broker
//! delivers it again.

use crate::hub::Hub;
use crate::hub::acks::Ack;
use ferrule_protocol::Headers;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::mpsc;

fn subject(node: &str) -> String {
    format!("ferrule.cluster.acks.{node}")
}

/// Receives the acknowledgements other instances send to this one, and sends this instance's
/// to theirs.
pub async fn relay(client: async_nats::Client, node: &str, hub: &Arc<Hub>) -> anyhow::Result<()> {
    let mut incoming = client
        .subscribe(subject(node))
        .await
        .map_err(|e| anyhow::anyhow!("cannot subscribe to acknowledgements on NATS: {e}"))?;
    let receiver = hub.clone();
    tokio::spawn(async move {
        while let Some(message) = incoming.next().await {
            match parse(&message.payload) {
                Some((id, ack)) => receiver.inbound.acknowledge_here(id, ack),
                None => {
                    tracing::debug!("an acknowledgement from another instance was not readable")
                }
            }
        }
    });
    // One task sends, in the order the acknowledgements were issued.
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Vec<u8>)>();
    tokio::spawn(async move {
        while let Some((node, bytes)) = rx.recv().await {
            if let Err(e) = client.publish(subject(&node), bytes.into()).await {
                tracing::warn!(node = %node, error = %e, "an acknowledgement did not reach its instance");
            }
        }
    });
    hub.inbound.join_cluster(
        node,
        Arc::new(move |node: &str, id: u64, ack: Ack| {
            let body = json!({"id": id, "label": ack.label, "status": ack.status,
                              "headers": ack.headers, "payload": ack.payload});
            let bytes = serde_json::to_vec(&body).expect("JSON serialises");
            let _ = tx.send((node.to_string(), bytes));
        }),
    );
    Ok(())
}

fn parse(payload: &[u8]) -> Option<(u64, Ack)> {
    let Value::Object(mut m) = serde_json::from_slice(payload).ok()? else {
        return None;
    };
    let headers: Headers = serde_json::from_value(m.remove("headers")?).ok()?;
    Some((
        m.get("id")?.as_u64()?,
        Ack {
            label: m.get("label")?.as_str()?.to_string(),
            status: u16::try_from(m.get("status")?.as_u64()?).ok()?,
            headers,
            payload: m.remove("payload").filter(|p| !p.is_null()),
        },
    ))
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
            headers: headers.clone(),
            payload: Some(json!({"error": "x"})),
        };
        let body = json!({"id": 7, "label": ack.label, "status": ack.status,
                          "headers": ack.headers, "payload": ack.payload});
        let (id, back) = parse(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!((id, back), (7, ack));
        assert!(parse(b"{}").is_none());
    }
}
