//! What the cluster's NATS users share: subscribing, sending in order, and the header that says
//! which instance sent a broadcast (so an instance skips its own).

use async_nats::{Client, HeaderMap, Subscriber};
use tokio::sync::mpsc;

/// The header with the `node_id` of the instance that sent a message.
pub const FROM: &str = "Ferrule-From";

pub async fn subscribe(client: &Client, subject: impl Into<String>) -> anyhow::Result<Subscriber> {
    let subject = subject.into();
    client
        .subscribe(subject.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot subscribe to {subject} on NATS: {e}"))
}

/// A message to send: subject, payload, and the sender's node for broadcasts.
pub type Outgoing = (String, Vec<u8>, Option<String>);

/// One task sends what it is given, in the order it was given (NATS keeps the order of one
/// connection): `what` names it in the log when sending fails.
pub fn sender(client: Client, what: &'static str) -> mpsc::UnboundedSender<Outgoing> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
    tokio::spawn(async move {
        while let Some((subject, bytes, from)) = rx.recv().await {
            if let Err(e) = publish(&client, subject, bytes, from.as_deref()).await {
                tracing::warn!(error = %e, "{what} did not reach the other instances");
            }
        }
    });
    tx
}

/// Publishes `bytes`, marked as sent by `from` when given.
pub async fn publish(
    client: &Client,
    subject: String,
    bytes: Vec<u8>,
    from: Option<&str>,
) -> Result<(), async_nats::PublishError> {
    match from {
        Some(node) => {
            let mut headers = HeaderMap::new();
            headers.insert(FROM, node);
            client
                .publish_with_headers(subject, headers, bytes.into())
                .await
        }
        None => client.publish(subject, bytes.into()).await,
    }
}

/// Whether a broadcast came from `node` itself.
pub fn sent_by(message: &async_nats::Message, node: &str) -> bool {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(FROM))
        .is_some_and(|v| v.as_str() == node)
}
