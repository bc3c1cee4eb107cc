//! Twin events across a cluster. Each instance's twin events go to the others over core NATS;
//! an instance that receives another's event reads that thing again (its twin keeps things in
//! memory) and routes the event to the targets it publishes. So a target gets the events of
//! every instance's twin, whichever instance runs it. Like Ditto's, these events are not
//! replayed: an event sent while an instance is cut off from NATS does not reach it.

use crate::twin::{Events, TwinService};
use ferrule_protocol::DittoMessage;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::mpsc;

const SUBJECT: &str = "ferrule.cluster.events";

/// Puts the relay between the twin's `local` events and the hub: what it returns carries this
/// instance's events and the others'.
pub async fn relay(
    client: async_nats::Client,
    node: String,
    twin: TwinService,
    mut local: Events,
) -> anyhow::Result<Events> {
    let (tx, events) = mpsc::channel(crate::twin::service::EVENT_QUEUE);
    let mut remote = client
        .subscribe(SUBJECT)
        .await
        .map_err(|e| anyhow::anyhow!("cannot subscribe to the cluster's events on NATS: {e}"))?;
    let to_hub = tx.clone();
    let from = node.clone();
    tokio::spawn(async move {
        while let Some(event) = local.recv().await {
            let body = json!({"from": from, "event": event.to_json()});
            let bytes = serde_json::to_vec(&body).expect("JSON serialises");
            if let Err(e) = client.publish(SUBJECT, bytes.into()).await {
                tracing::warn!(error = %e, "a twin event did not reach the other instances");
            }
            if to_hub.send(event).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(message) = remote.next().await {
            let Ok(Value::Object(mut body)) = serde_json::from_slice(&message.payload) else {
                continue;
            };
            if body.get("from").and_then(Value::as_str) == Some(node.as_str()) {
                continue;
            }
            let Some(Value::Object(event)) = body.remove("event") else {
                continue;
            };
            let Ok(event) = DittoMessage::from_json(event) else {
                continue;
            };
            let thing = format!("{}:{}", event.topic.namespace, event.topic.name);
            twin.refresh(thing, event.revision.unwrap_or(u64::MAX));
            if tx.send(Arc::new(event)).await.is_err() {
                return;
            }
        }
    });
    Ok(events)
}
