//! Thing affinity: in a cluster, the commands of a thing are applied by one instance, its owner
//! (a rendezvous hash of the thing id over the live instances), as Ditto's things service
//! shards things. The instance that consumed a command sends it to the owner over core NATS and
//! waits for the response; the owner applies it in the order it arrived. So a thing's changes
//! do not race between instances (no stale copy, no conditional write lost), and consuming
//! scales with the instances. When the owner does not answer within [`TIMEOUT`] (it died, the
//! instances disagree on who is alive), the command is applied where it was consumed: the
//! conditional writes keep that correct. The owner does not apply a command that reaches it
//! after its sender stopped waiting (`until`, by the wall clock), so a command is applied twice
//! only when the clocks of the two instances differ by more than [`MARGIN`] or its answer takes
//! that long to come back.

use super::coordinator::Coordinator;
use super::nats;
use super::placement;
use crate::twin::TwinCommand;
use crate::twin::service::{Affinity, TwinService};
use ferrule_protocol::DittoMessage;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a command waits for its owner before it is applied here.
pub const TIMEOUT: Duration = Duration::from_secs(2);

fn commands_of(node: &str) -> String {
    format!("ferrule.cluster.twin.{node}")
}

fn replies_of(node: &str) -> String {
    format!("ferrule.cluster.twin-replies.{node}")
}

type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<DittoMessage>>>>;

/// What an owner takes of [`TIMEOUT`]: a command that reaches it later than `TIMEOUT - MARGIN`
/// after it was sent (by the wall clocks of the two instances) is left to its sender.
const MARGIN: Duration = Duration::from_millis(500);

/// A command sent to its owner.
#[derive(serde::Serialize)]
struct Forwarded<'a> {
    id: u64,
    from: &'a str,
    /// Milliseconds since the Unix epoch after which the owner no longer applies the command:
    /// its sender has applied it itself by then, or is about to. Without this, commands held
    /// in a NATS client while NATS was down would be applied a second time when it is back.
    until: u64,
    command: &'a TwinCommand,
}

/// A command another instance sent.
#[derive(serde::Deserialize)]
struct Received {
    id: u64,
    from: String,
    until: u64,
    command: TwinCommand,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The command in `frame`, unless it is unreadable or its sender stopped waiting for it
/// before `now` (Unix milliseconds).
fn take(frame: &[u8], now: u64) -> Option<Received> {
    // Read straight into the command, without a JSON tree in between.
    let received: Received = serde_json::from_slice(frame).ok()?;
    if now > received.until {
        tracing::debug!(from = %received.from, "a forwarded command came too late; its sender applies it");
        return None;
    }
    Some(received)
}

pub struct Owners {
    node: String,
    coordinator: Arc<Coordinator>,
    next: AtomicU64,
    waiting: Waiting,
    outgoing: mpsc::UnboundedSender<nats::Outgoing>,
}

impl Affinity for Owners {
    fn owner_elsewhere(&self, thing: &str) -> Option<String> {
        let live = self.coordinator.live_nodes();
        if live.len() < 2 {
            return None;
        }
        let owner = placement::preferred(thing, &live)?;
        (*owner != self.node).then(|| owner.clone())
    }

    fn send(
        &self,
        node: String,
        command: TwinCommand,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<DittoMessage>> + Send>> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        let bytes = serde_json::to_vec(&Forwarded {
            id,
            from: &self.node,
            until: unix_ms() + (TIMEOUT - MARGIN).as_millis() as u64,
            command: &command,
        })
        .expect("JSON serialises");
        let _ = self.outgoing.send((commands_of(&node), bytes));
        let waiting = self.waiting.clone();
        Box::pin(async move {
            let answer = tokio::time::timeout(TIMEOUT, rx).await;
            waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            match answer {
                Ok(Ok(response)) => Some(response),
                _ => {
                    tracing::debug!(owner = %node, "the owner of a thing did not answer; applied here");
                    None
                }
            }
        })
    }
}

/// A response as it goes back: the id of its command (8 bytes, big-endian), then its JSON,
/// written and read without a JSON tree in between.
fn reply(id: u64, response: &DittoMessage) -> Vec<u8> {
    let json = response.to_json_string();
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(json.as_bytes());
    out
}

fn read_reply(frame: &[u8]) -> Option<(u64, DittoMessage)> {
    let (id, json) = frame.split_first_chunk::<8>()?;
    let response = DittoMessage::from_json_str(std::str::from_utf8(json).ok()?).ok()?;
    Some((u64::from_be_bytes(*id), response))
}

/// Applies the commands other instances send this one, and lets this instance's twin send the
/// commands of things others own.
pub async fn serve(
    client: async_nats::Client,
    node: &str,
    coordinator: Arc<Coordinator>,
    twin: &TwinService,
) -> anyhow::Result<()> {
    let mut commands = nats::subscribe(&client, commands_of(node)).await?;
    let mut replies = nats::subscribe(&client, replies_of(node)).await?;
    // One task sends, in order: commands keep the order they were submitted in.
    let outgoing = nats::sender(client, "a twin command or response");
    let waiting: Waiting = Arc::default();
    let w = waiting.clone();
    tokio::spawn(async move {
        while let Some(message) = replies.next().await {
            for frame in nats::frames(&message.payload) {
                let Some((id, response)) = read_reply(frame) else {
                    continue;
                };
                if let Some(tx) = w.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) {
                    let _ = tx.send(response);
                }
            }
        }
    });
    let (here, answers) = (twin.clone(), outgoing.clone());
    tokio::spawn(async move {
        while let Some(message) = commands.next().await {
            // Queued here in arrival order; answered in that order when applied.
            let mut pending = Vec::new();
            let now = unix_ms();
            for frame in nats::frames(&message.payload) {
                let Some(Received {
                    id, from, command, ..
                }) = take(frame, now)
                else {
                    continue;
                };
                pending.push((id, from, here.submit_here(command).await));
            }
            let answers = answers.clone();
            tokio::spawn(async move {
                for (id, from, response) in pending {
                    let bytes = reply(id, &response.await);
                    let _ = answers.send((replies_of(&from), bytes));
                }
            });
        }
    });
    twin.apply_by(Arc::new(Owners {
        node: node.to_string(),
        coordinator,
        next: AtomicU64::new(0),
        waiting,
        outgoing,
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_taken_until_its_sender_stops_waiting() {
        let text = r#"{"topic":"ns/t/things/twin/commands/modify","headers":{"correlation-id":"c"},"path":"/attributes/x","value":1}"#;
        let command = TwinCommand::taking(&mut DittoMessage::from_json_str(text).unwrap())
            .expect("a twin command");
        let sent = 1_800_000_000_000;
        let bytes = serde_json::to_vec(&Forwarded {
            id: 7,
            from: "n1",
            until: sent + (TIMEOUT - MARGIN).as_millis() as u64,
            command: &command,
        })
        .unwrap();
        let taken = take(&bytes, sent + 1_400).expect("in time");
        assert_eq!((taken.id, taken.from.as_str()), (7, "n1"));
        assert_eq!(taken.command, command);
        assert!(
            take(&bytes, sent + 1_501).is_none(),
            "its sender applies it"
        );
        assert!(take(&bytes[..10], sent).is_none(), "unreadable");
    }

    #[test]
    fn a_response_reads_back_with_its_id() {
        let text = r#"{"topic":"ns/t/things/twin/commands/modify","headers":{"correlation-id":"c"},"path":"/attributes/x","status":204}"#;
        let response = DittoMessage::from_json_str(text).unwrap();
        let bytes = reply(u64::MAX - 1, &response);
        assert_eq!(read_reply(&bytes), Some((u64::MAX - 1, response)));
        assert_eq!(read_reply(&bytes[..7]), None);
        assert_eq!(read_reply(&bytes[..20]), None);
    }
}
