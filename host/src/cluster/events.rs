//! Twin events across a cluster. Each instance's twin events go to the others over core NATS,
//! in batches (what the twin made durable while the last batch was sent), each event framed
//! with the thing, its revision and the event's partition key before its JSON. An instance that
//! receives another's event marks the thing stale from that frame (its twin reads the thing
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
/// Events in one NATS message at most.
const BATCH: usize = 256;

/// Puts the relay between the twin's `local` events and the hub: what it returns carries this
/// instance's events and the others'. `router` is the hub's, once it exists (until then every
/// event is read).
pub async fn relay(
    client: async_nats::Client,
    twin: TwinService,
    mut local: Events,
    router: Arc<OnceLock<Arc<Router>>>,
) -> anyhow::Result<Events> {
    let (tx, events) = mpsc::channel(crate::twin::service::EVENT_QUEUE);
    let mut remote = nats::subscribe(&client, SUBJECT).await?;
    let to_hub = tx.clone();
    tokio::spawn(async move {
        let mut taken = Vec::with_capacity(BATCH);
        while local.recv_many(&mut taken, BATCH).await > 0 {
            // Published here, not through a `nats::sender`: the twin waits while NATS does.
            let encoded = taken.iter().map(|e| (SUBJECT.to_string(), encode(e)));
            nats::publish(&client, encoded, "twin events").await;
            for event in taken.drain(..) {
                if to_hub.send(event).await.is_err() {
                    return;
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some(message) = remote.next().await {
            let received: Vec<Received> =
                nats::frames(&message.payload).filter_map(decode).collect();
            // The twin notes the batch's things as changed in one step.
            twin.refresh_all(
                received
                    .iter()
                    .map(|r| (r.thing.to_string(), r.revision))
                    .collect(),
            );
            for received in received {
                if let Some(router) = router.get()
                    && !router.may_take_twin_event(received.key)
                {
                    continue;
                }
                let Ok(event) = DittoMessage::from_json_str(received.json) else {
                    continue;
                };
                if tx.send(Arc::new(event)).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(events)
}

/// An event as it crosses: its partition key and revision (8 bytes each, big-endian; a
/// revision of `u64::MAX` when the event has none), its thing (framed), then its JSON as
/// written for brokers.
fn encode(event: &DittoMessage) -> Vec<u8> {
    let json = event.to_json_string();
    let thing = event.topic.entity_id();
    let mut out = Vec::with_capacity(16 + 4 + thing.len() + json.len());
    out.extend_from_slice(&partition_of(event).to_be_bytes());
    out.extend_from_slice(&event.revision.unwrap_or(u64::MAX).to_be_bytes());
    nats::frame(&mut out, thing.as_bytes());
    out.extend_from_slice(json.as_bytes());
    out
}

struct Received<'a> {
    key: u64,
    revision: u64,
    thing: &'a str,
    json: &'a str,
}

fn decode(frame: &[u8]) -> Option<Received<'_>> {
    let (key, rest) = frame.split_first_chunk::<8>()?;
    let (revision, rest) = rest.split_first_chunk::<8>()?;
    let thing = nats::frames(rest).next()?;
    let json = &rest[4 + thing.len()..];
    Some(Received {
        key: u64::from_be_bytes(*key),
        revision: u64::from_be_bytes(*revision),
        thing: std::str::from_utf8(thing).ok()?,
        json: std::str::from_utf8(json).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_reads_back_with_its_thing_revision_and_key() {
        let text = r#"{"topic":"ns/t-1/things/twin/events/modified","headers":{},"path":"/attributes/x","value":1,"revision":7}"#;
        let event = DittoMessage::from_json_str(text).unwrap();
        let bytes = encode(&event);
        let received = decode(&bytes).unwrap();
        assert_eq!(received.key, partition_of(&event));
        assert_eq!(received.revision, 7);
        assert_eq!(received.thing, "ns:t-1");
        assert_eq!(DittoMessage::from_json_str(received.json).unwrap(), event);
        for cut in 0..20 {
            assert!(decode(&bytes[..cut]).is_none(), "{cut}");
        }
    }
}
