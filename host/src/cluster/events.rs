//! Twin events across a cluster. Each instance's twin events go to the others over core NATS;
//! an instance that receives another's event reads that thing again (its twin keeps things in
//! memory) and routes the event to the targets it publishes. So a target gets the events of
//! every instance's twin, whichever instance runs it. Like Ditto's, these events are not
//! replayed: an event sent while an instance is cut off from NATS does not reach it.

use super::nats;
use crate::twin::{Events, TwinService};
use ferrule_protocol::DittoMessage;
use futures_util::StreamExt;
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
    let mut remote = nats::subscribe(&client, SUBJECT).await?;
    let to_hub = tx.clone();
    let from = node.clone();
    tokio::spawn(async move {
        while let Some(event) = local.recv().await {
            // The event's JSON as written for brokers; the sender in a header.
            let bytes = event.to_json_string().into_bytes();
            if let Err(e) = nats::publish(&client, SUBJECT.into(), bytes, Some(&from)).await {
                tracing::warn!(error = %e, "a twin event did not reach the other instances");
            }
            if to_hub.send(event).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(message) = remote.next().await {
            if nats::sent_by(&message, &node) {
                continue;
            }
            let Ok(text) = std::str::from_utf8(&message.payload) else {
                continue;
            };
            let Ok(event) = DittoMessage::from_json_str(text) else {
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
