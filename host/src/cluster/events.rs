//! Twin events across a cluster. Each instance's twin events go to the others over core NATS,
//! with the thing, its revision and the event's partition key in headers. An instance that
//! receives another's event marks the thing stale from the headers (its twin reads the thing
//! again before its next command on it) and reads the event itself only when a route here may
//! take it ([`Router::may_take_twin_event`]: a watcher, or a target of twin events whose client
//! slot publishes that partition); every other instance drops it unread. So a target gets the
//! events of every instance's twin, whichever instance runs it, and an instance parses only the
//! events it routes. The decision is made by the receiver from its own routes at that moment, so
//! a client slot that moved takes the events from its first route on. Like Ditto's, these events
//! are not replayed: an event sent while an instance is cut off from NATS does not reach it.

use super::nats;
use crate::hub::routing::{Router, partition_of};
use crate::twin::{Events, TwinService};
use ferrule_protocol::DittoMessage;
use futures_util::StreamExt;
use std::sync::{Arc, OnceLock};
use tokio::sync::mpsc;

const SUBJECT: &str = "ferrule.cluster.events";
/// The headers an event travels with, besides its sender.
const THING: &str = "Ferrule-Thing";
const REVISION: &str = "Ferrule-Revision";
const KEY: &str = "Ferrule-Key";

/// Puts the relay between the twin's `local` events and the hub: what it returns carries this
/// instance's events and the others'. `router` is the hub's, once it exists (until then every
/// event is read).
pub async fn relay(
    client: async_nats::Client,
    node: String,
    twin: TwinService,
    mut local: Events,
    router: Arc<OnceLock<Arc<Router>>>,
) -> anyhow::Result<Events> {
    let (tx, events) = mpsc::channel(crate::twin::service::EVENT_QUEUE);
    let mut remote = nats::subscribe(&client, SUBJECT).await?;
    let to_hub = tx.clone();
    let from = node.clone();
    tokio::spawn(async move {
        while let Some(event) = local.recv().await {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(nats::FROM, from.as_str());
            headers.insert(THING, event.topic.entity_id().as_str());
            if let Some(revision) = event.revision {
                headers.insert(REVISION, revision.to_string().as_str());
            }
            headers.insert(KEY, partition_of(&event).to_string().as_str());
            // The event's JSON as written for brokers.
            let bytes = event.to_json_string().into_bytes();
            if let Err(e) = client
                .publish_with_headers(SUBJECT, headers, bytes.into())
                .await
            {
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
            let header = |name: &str| {
                message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_string())
            };
            let revision = header(REVISION).and_then(|r| r.parse().ok());
            let thing = header(THING);
            let marked = thing.is_some();
            if let Some(thing) = thing {
                twin.refresh(thing, revision.unwrap_or(u64::MAX));
            }
            let key = header(KEY).and_then(|k| k.parse::<u64>().ok());
            if let (Some(key), Some(router)) = (key, router.get())
                && !router.may_take_twin_event(key)
            {
                continue;
            }
            let Ok(text) = std::str::from_utf8(&message.payload) else {
                continue;
            };
            let Ok(event) = DittoMessage::from_json_str(text) else {
                continue;
            };
            if !marked {
                let thing = event.topic.entity_id();
                twin.refresh(thing, event.revision.unwrap_or(u64::MAX));
            }
            if tx.send(Arc::new(event)).await.is_err() {
                return;
            }
        }
    });
    Ok(events)
}
