//! What the cluster's NATS users share: subscribing, and sending in batches, in order.
//!
//! Every instance connects with `no_echo`: NATS never hands an instance what it published
//! itself, so a broadcast (events, live signals) costs its sender nothing to receive.
//!
//! What goes through [`sender`] travels in batches: the payloads handed over while the previous
//! batch was being sent go out as one NATS message per subject, each payload framed by its
//! length ([`frames`] reads them back). Under load one NATS message carries many commands,
//! responses, events or acknowledgements, so the cost of a NATS message (a publish, a parse
//! and a wake-up on every receiver) is paid per batch, not per message.

use async_nats::{Client, Subscriber};
use tokio::sync::mpsc;

/// Payloads in one NATS message at most.
const BATCH: usize = 512;
/// Bytes in one NATS message at most, below NATS's default `max_payload` (1 MiB); a payload
/// larger than this goes alone.
const BATCH_BYTES: usize = 512 * 1024;

pub async fn subscribe(client: &Client, subject: impl Into<String>) -> anyhow::Result<Subscriber> {
    let subject = subject.into();
    client
        .subscribe(subject.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot subscribe to {subject} on NATS: {e}"))
}

/// A payload to send, and its subject.
pub type Outgoing = (String, Vec<u8>);

/// One task sends what it is given, in the order it was given (NATS keeps the order of one
/// connection, and a batch keeps the order of its payloads): `what` names it in the log when
/// sending fails.
pub fn sender(client: Client, what: &'static str) -> mpsc::UnboundedSender<Outgoing> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
    tokio::spawn(async move {
        let mut taken = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut taken, BATCH).await > 0 {
            publish(&client, taken.drain(..), what).await;
        }
    });
    tx
}

/// Publishes `payloads` in order, as [`batches`]: `what` names them in the log when sending
/// fails.
pub async fn publish(client: &Client, payloads: impl Iterator<Item = Outgoing>, what: &str) {
    for (subject, bytes) in batches(payloads) {
        if let Err(e) = client.publish(subject, bytes.into()).await {
            tracing::warn!(error = %e, "{what} did not reach the other instances");
        }
    }
}

/// The payloads framed into NATS messages: one per subject (in the order each subject first
/// came), a new one when [`BATCH_BYTES`] would be passed.
fn batches(payloads: impl Iterator<Item = Outgoing>) -> Vec<Outgoing> {
    // Which batch each payload goes into (the last one of its subject while it has room), then
    // each batch written at its size.
    let mut heads: Vec<(String, usize)> = Vec::new(); // subject, bytes
    let mut placed: Vec<(usize, Vec<u8>)> = Vec::new();
    for (subject, bytes) in payloads {
        let size = 4 + bytes.len();
        let i = match heads.iter().rposition(|(s, _)| *s == subject) {
            Some(i) if heads[i].1 + size <= BATCH_BYTES => i,
            _ => {
                heads.push((subject, 0));
                heads.len() - 1
            }
        };
        heads[i].1 += size;
        placed.push((i, bytes));
    }
    let mut out: Vec<Outgoing> = heads
        .into_iter()
        .map(|(subject, size)| (subject, Vec::with_capacity(size)))
        .collect();
    for (i, bytes) in placed {
        frame(&mut out[i].1, &bytes);
    }
    out
}

/// Appends `payload` to a batch: its length (4 bytes, big-endian), then its bytes.
pub fn frame(batch: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("a payload is smaller than 4 GiB");
    batch.extend_from_slice(&len.to_be_bytes());
    batch.extend_from_slice(payload);
}

/// The payloads of a batch, in order; a truncated last frame is not returned.
pub fn frames(batch: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = batch;
    std::iter::from_fn(move || {
        let (len, after) = rest.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        if after.len() < len {
            rest = &[];
            return None;
        }
        let (payload, after) = after.split_at(len);
        rest = after;
        Some(payload)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(subject: &str, payload: &[u8]) -> Outgoing {
        (subject.to_string(), payload.to_vec())
    }

    fn read(batch: &[u8]) -> Vec<Vec<u8>> {
        frames(batch).map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn payloads_of_one_subject_go_in_one_message_in_order() {
        let sent = batches(
            [
                out("a", b"1"),
                out("b", b"x"),
                out("a", b""),
                out("a", b"{\"three\":3}"),
                out("b", b"y"),
            ]
            .into_iter(),
        );
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].0, "a");
        assert_eq!(
            read(&sent[0].1),
            [b"1".to_vec(), vec![], b"{\"three\":3}".to_vec()]
        );
        assert_eq!(sent[1].0, "b");
        assert_eq!(read(&sent[1].1), [b"x".to_vec(), b"y".to_vec()]);
    }

    #[test]
    fn a_batch_stays_below_its_size_and_keeps_the_order_across_messages() {
        let big = vec![7u8; BATCH_BYTES / 3];
        let sent = batches((0..7).map(|i| {
            let mut p = big.clone();
            p[0] = i;
            out("a", &p)
        }));
        assert!(
            sent.iter().all(|(_, b)| b.len() <= BATCH_BYTES),
            "{}",
            sent.len()
        );
        let firsts: Vec<u8> = sent
            .iter()
            .flat_map(|(_, b)| read(b))
            .map(|p| p[0])
            .collect();
        assert_eq!(firsts, [0, 1, 2, 3, 4, 5, 6]);
        // Larger than a batch: alone.
        let huge = batches([out("a", b"1"), out("a", &vec![0; BATCH_BYTES + 1])].into_iter());
        assert_eq!(huge.len(), 2);
    }

    #[test]
    fn a_truncated_batch_gives_its_whole_frames_only() {
        let mut batch = Vec::new();
        frame(&mut batch, b"one");
        frame(&mut batch, b"two");
        assert_eq!(read(&batch[..batch.len() - 1]), [b"one".to_vec()]);
        assert_eq!(read(&batch[..2]), Vec::<Vec<u8>>::new());
        assert_eq!(read(&[]), Vec::<Vec<u8>>::new());
    }
}
