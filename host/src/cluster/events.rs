//! Twin events across a cluster, through PostgreSQL. A twin batch writes its events into the
//! `events` table in the statement that writes its things (`ferrule_write_batch`): an event is
//! in the log exactly when its change is durable. Every instance reads the log in `seq` order
//! and hands what it reads to its hub, its own events included, so the events of one thing
//! reach every instance's routes in revision order whichever instance's twin made them, and an
//! event does not depend on NATS: NATS only says "read now" (an empty message after each
//! commit), and without it the log is read every [`POLL`].
//!
//! An instance that reads another's event marks the thing stale (its twin reads the thing again
//! before its next command on it) and parses the event only when a route here may take it
//! ([`Router::may_take_twin_event`]: a watcher, or a target of twin events whose client slot
//! publishes that partition).
//!
//! **Sequence numbers commit out of order.** `seq` is taken when a row is inserted, so a
//! transaction that took a lower number may commit after one that took a higher. The reader
//! reads past such a gap and keeps reading the missing numbers ([`Gaps`]) until they appear or
//! [`GAP`] has passed (a transaction that rolled back, or numbers the sequence skipped). Within
//! one thing there is no such gap: a change is written only on top of the revision before it, so
//! its event takes its number after the previous event of that thing was committed.
//!
//! **Client slots replay from their cursor.** Each session of a client slot keeps a ledger
//! of the events its routes took and its targets are done with (`hub::ledger`); the
//! coordinator saves the slot's cursor with its lease. The next session of the slot, here or on
//! the instance that takes the slot over, starts from that cursor: before its routes take the
//! log's events, this reader hands them the slot's events after the cursor that it has handed
//! over already ([`Log::replay`]), in the same queue as the others, so nothing is missed between
//! the two and nothing comes twice from this reader. What the last owner had read but not
//! published, and what was written while the slot moved, so is published.
//!
//! **What is kept.** Each instance records how far it has read (`event_readers`), when it
//! starts and every [`TRIM`]; the log is trimmed below the lowest point of the instances that
//! recorded within [`KEEP_FOR`], and of the client slots whose cursors moved within it.
//! An instance whose targets are slow reads the log later, and the log holds the events
//! meanwhile, in PostgreSQL, not in memory. A slot whose target could not publish for longer
//! no longer holds the log back, and is told so when it replays.

use crate::hub::Feed;
use crate::hub::ledger::Ledger;
use crate::hub::routing::{Router, partition_of_thing};
use crate::twin::{Events, TwinService};
use ferrule_protocol::DittoMessage;
use futures_util::StreamExt;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};

/// An empty message on this subject after each commit of a twin batch: "read the log now".
const WRITTEN: &str = "ferrule.cluster.events.written";
/// How often the log is read when no instance said it wrote (NATS down, a message lost).
const POLL: Duration = Duration::from_millis(50);
/// Events read in one query at most.
const READ: i64 = 2048;
/// How long a missing sequence number is looked for. A twin batch is one statement, which
/// `statement_timeout` (10 s) ends, so a number not committed after this never will be.
const GAP: Duration = Duration::from_secs(30);
/// How often an instance records how far it read, and trims the log.
const TRIM: Duration = Duration::from_secs(2);
/// How long the log is kept for an instance that stopped recording how far it read.
const KEEP_FOR: Duration = Duration::from_secs(60);
/// The log is read at most this often: under load, fewer reads of more events each (every
/// commit of every instance wakes every reader).
const READ_EVERY: Duration = Duration::from_millis(5);

/// Puts the log between the twin's `local` events and the hub: what it returns carries every
/// instance's events, this one's included, in the order of the log, with how far the log was
/// read, and the replays the hub's ledgers ask for. `router` is the hub's, once it exists
/// (until then every event is read).
pub async fn relay(
    pool: PgPool,
    client: async_nats::Client,
    node_id: String,
    twin: TwinService,
    mut local: Events,
    router: Arc<OnceLock<Arc<Router>>>,
) -> anyhow::Result<mpsc::Receiver<Feed>> {
    let (tx, events) = mpsc::channel(crate::twin::service::EVENT_QUEUE);
    let wake = Arc::new(Notify::new());
    let mut written = super::nats::subscribe(&client, WRITTEN).await?;
    let mut log = Log::start(&pool, &node_id).await?;
    let _ = tx.send(Feed::ReadTo(log.gaps.read_to())).await;
    // This instance's commits: its reader reads at once and the others are told. The events
    // themselves are read back from the log; a NATS that does not take the message (down, or
    // slow) holds back neither the twin nor the reader.
    let poke = Arc::new(Notify::new());
    let (w, p) = (wake.clone(), poke.clone());
    tokio::spawn(async move {
        let mut taken = Vec::with_capacity(256);
        while local.recv_many(&mut taken, 256).await > 0 {
            taken.clear();
            w.notify_one();
            p.notify_one();
        }
    });
    tokio::spawn(async move {
        loop {
            poke.notified().await;
            if let Err(e) = client.publish(WRITTEN, bytes::Bytes::new()).await {
                tracing::debug!(error = %e, "the other instances were not told of a commit");
            }
        }
    });
    let w = wake.clone();
    tokio::spawn(async move {
        while written.next().await.is_some() {
            w.notify_one();
        }
    });
    tokio::spawn(async move {
        let mut recorded = Instant::now();
        loop {
            // A commit, a ledger waiting for its replay, or the poll.
            let replay_wanted = async {
                match router.get() {
                    Some(router) => router.replay_wanted.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = replay_wanted => {}
                _ = tokio::time::sleep(POLL) => {}
            }
            tokio::time::sleep(READ_EVERY).await;
            if recorded.elapsed() >= TRIM {
                recorded = Instant::now();
                if let Err(e) = log.record_and_trim(&pool, &node_id).await {
                    tracing::warn!(error = %e, "the event log could not be trimmed");
                }
            }
            if let Some(router) = router.get() {
                for ledger in router.take_replays() {
                    match log.replay(&pool, &ledger, &tx).await {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(e) => {
                            tracing::warn!(error = %e, "a client slot's events could not be replayed; trying again");
                            router.request_replay(ledger);
                        }
                    }
                }
            }
            loop {
                let rows = match log.read(&pool).await {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::warn!(error = %e, "the event log could not be read");
                        break;
                    }
                };
                // More may be waiting: the limit was reached (gap rows come on top of it).
                let full = rows.len() as i64 >= READ;
                if !hand_over(&rows, log.gaps.read_to(), &twin, &router, &tx).await {
                    return;
                }
                if !full {
                    break;
                }
            }
        }
    });
    Ok(events)
}

/// An event as the log holds it.
#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    thing_id: String,
    revision: Option<i64>,
    body: String,
}

/// Notes the rows' things as changed in the twin (in one step), then hands the events a route
/// here may take to the hub, in order, and then that the log is read to `read_to`; `false`
/// once the hub is gone.
async fn hand_over(
    rows: &[Row],
    read_to: i64,
    twin: &TwinService,
    router: &OnceLock<Arc<Router>>,
    tx: &mpsc::Sender<Feed>,
) -> bool {
    if rows.is_empty() {
        return true;
    }
    twin.refresh_all(
        rows.iter()
            .map(|r| {
                (
                    r.thing_id.clone(),
                    r.revision.map_or(u64::MAX, |r| r as u64),
                )
            })
            .collect(),
    );
    for row in rows {
        if let Some(router) = router.get()
            && !router.may_take_twin_event(partition_of_thing(&row.thing_id))
        {
            continue;
        }
        if let Some(event) = row.event()
            && tx.send(Feed::Logged(event, row.seq)).await.is_err()
        {
            return false;
        }
    }
    tx.send(Feed::ReadTo(read_to)).await.is_ok()
}

impl Row {
    fn event(&self) -> Option<Arc<DittoMessage>> {
        match DittoMessage::from_json_str(&self.body) {
            Ok(event) => Some(Arc::new(event)),
            Err(e) => {
                tracing::warn!(seq = self.seq, error = %e, "an event in the log is unreadable");
                None
            }
        }
    }
}

/// Where this instance is in the log.
struct Log {
    gaps: Gaps,
}

impl Log {
    /// From the end of the log: what was written before the instance started is not its to
    /// hand over (its things were just loaded, and it has no routes yet). The instance's place
    /// is recorded at once, so nothing after it is trimmed before it is read.
    async fn start(pool: &PgPool, node_id: &str) -> anyhow::Result<Log> {
        let (last,): (i64,) = sqlx::query_as("SELECT coalesce(max(seq), 0) FROM events")
            .fetch_one(pool)
            .await
            .map_err(|e| anyhow::anyhow!("the event log cannot be read: {e}"))?;
        let log = Log {
            gaps: Gaps::after(last),
        };
        log.record(pool, node_id)
            .await
            .map_err(|e| anyhow::anyhow!("the event log cannot be read: {e}"))?;
        Ok(log)
    }

    /// The next events: those of the gaps that came since, and those after the last one read
    /// (two index scans: with an `OR` PostgreSQL reads the whole table).
    async fn read(&mut self, pool: &PgPool) -> Result<Vec<Row>, sqlx::Error> {
        self.gaps.expire(Instant::now());
        let missing = self.gaps.missing();
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT * FROM ( \
               (SELECT seq, thing_id, revision, body FROM events WHERE seq = ANY($2)) \
               UNION ALL \
               (SELECT seq, thing_id, revision, body FROM events WHERE seq > $1 \
                ORDER BY seq LIMIT $3) \
             ) AS e ORDER BY seq",
        )
        .bind(self.gaps.last)
        .bind(&missing)
        .bind(READ)
        .fetch_all(pool)
        .await?;
        let now = Instant::now();
        for row in &rows {
            self.gaps.note(row.seq, now);
        }
        Ok(rows)
    }

    /// Hands `ledger`'s routes the events of its slot after its cursor that this reader has
    /// handed over already (the others reach them as they are read), then lets them take the
    /// log's events; `false` once the hub is gone. When the log no longer holds every event
    /// after the cursor (it was trimmed past it: no instance ran the slot for [`KEEP_FOR`]),
    /// nothing is replayed, and the logs say so.
    async fn replay(
        &self,
        pool: &PgPool,
        ledger: &Arc<Ledger>,
        tx: &mpsc::Sender<Feed>,
    ) -> Result<bool, sqlx::Error> {
        let (trimmed,): (i64,) = sqlx::query_as("SELECT trimmed_to FROM event_trim")
            .fetch_one(pool)
            .await?;
        // Only ledgers from a cursor wait for a replay (`Router::request_replay`).
        let kept = ledger.from().filter(|from| {
            if trimmed > *from {
                tracing::warn!(
                    cursor = from,
                    trimmed,
                    "a client slot's events after its cursor are no longer kept: they are not published again"
                );
            }
            trimmed <= *from
        });
        let Some(from) = kept else {
            let feed = Feed::Replay(ledger.clone(), Vec::new(), true);
            return Ok(tx.send(feed).await.is_ok());
        };
        let (index, count) = ledger.partition();
        let (mut after, upto) = (from, self.gaps.last);
        let mut replayed = 0;
        loop {
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT seq, thing_id, revision, body FROM events \
                 WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
            )
            .bind(after)
            .bind(upto)
            .bind(READ)
            .fetch_all(pool)
            .await?;
            let complete = (rows.len() as i64) < READ;
            after = rows.last().map_or(upto, |r| r.seq);
            let events: Vec<_> = rows
                .iter()
                .filter(|r| {
                    !self.gaps.missing.contains_key(&r.seq)
                        && partition_of_thing(&r.thing_id) % count as u64 == index as u64
                })
                .filter_map(|r| Some((r.event()?, r.seq)))
                .collect();
            replayed += events.len();
            let feed = Feed::Replay(ledger.clone(), events, complete);
            if tx.send(feed).await.is_err() {
                return Ok(false);
            }
            if complete {
                break;
            }
        }
        tracing::info!(
            cursor = from,
            to = upto,
            events = replayed,
            "replayed a client slot's events after its cursor"
        );
        Ok(true)
    }

    /// Records how far this instance has read.
    async fn record(&self, pool: &PgPool, node_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO event_readers (node_id, read_to, at) VALUES ($1, $2, now()) \
             ON CONFLICT (node_id) DO UPDATE SET read_to = EXCLUDED.read_to, at = now()",
        )
        .bind(node_id)
        .bind(self.gaps.read_to())
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Records how far this instance has read, and trims what every instance that recorded
    /// within [`KEEP_FOR`] has read, and every client slot whose cursor moved within it has
    /// published (an instance that stopped, or a slot whose client cannot publish, holds the
    /// log that long). `event_trim` says how far the log was trimmed.
    async fn record_and_trim(&self, pool: &PgPool, node_id: &str) -> Result<(), sqlx::Error> {
        self.record(pool, node_id).await?;
        sqlx::query(
            "WITH upto AS (SELECT LEAST( \
               (SELECT min(read_to) FROM event_readers \
                WHERE at > now() - $1 * interval '1 millisecond'), \
               (SELECT min(cursor) FROM leases WHERE cursor IS NOT NULL \
                AND cursor_at > now() - $1 * interval '1 millisecond')) AS seq), \
             trimmed AS (DELETE FROM events WHERE seq <= (SELECT seq FROM upto)) \
             UPDATE event_trim SET trimmed_to = (SELECT seq FROM upto) \
             WHERE (SELECT seq FROM upto) > trimmed_to",
        )
        .bind(KEEP_FOR.as_millis() as i64)
        .execute(pool)
        .await?;
        Ok(())
    }
}

/// The sequence numbers read: the last one, and the lower ones not seen yet (a transaction
/// that took them has not committed yet, or never will), each with when it was first missed.
#[derive(Debug)]
struct Gaps {
    last: i64,
    missing: BTreeMap<i64, Instant>,
}

/// Missing numbers kept at most: a jump beyond this (a sequence moved by hand) is not waited for.
const MAX_MISSING: i64 = 100_000;

impl Gaps {
    fn after(last: i64) -> Gaps {
        Gaps {
            last,
            missing: BTreeMap::new(),
        }
    }

    /// `seq` was read.
    fn note(&mut self, seq: i64, now: Instant) {
        if seq <= self.last {
            self.missing.remove(&seq);
            return;
        }
        if seq - self.last <= MAX_MISSING {
            for skipped in self.last + 1..seq {
                self.missing.insert(skipped, now);
            }
        }
        self.last = seq;
    }

    /// Gives up the numbers missed since before `now - GAP`.
    fn expire(&mut self, now: Instant) {
        self.missing
            .retain(|_, since| now.duration_since(*since) < GAP);
    }

    fn missing(&self) -> Vec<i64> {
        self.missing.keys().copied().collect()
    }

    /// Everything up to this number has been read (or given up).
    fn read_to(&self) -> i64 {
        self.missing
            .keys()
            .next()
            .map_or(self.last, |first| first - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_is_read_until_it_fills_or_expires_and_holds_back_only_the_trim_point() {
        let t0 = Instant::now();
        let mut gaps = Gaps::after(10);
        gaps.note(11, t0);
        assert_eq!((gaps.last, gaps.read_to()), (11, 11));
        // 12 and 13 were taken by transactions that have not committed yet.
        gaps.note(14, t0);
        gaps.note(15, t0);
        assert_eq!(gaps.missing(), vec![12, 13]);
        assert_eq!((gaps.last, gaps.read_to()), (15, 11));
        gaps.note(13, t0);
        assert_eq!(gaps.missing(), vec![12]);
        assert_eq!(gaps.read_to(), 11);
        gaps.note(12, t0);
        assert!(gaps.missing().is_empty());
        assert_eq!(gaps.read_to(), 15);
        // 16 never commits: it is given up after GAP, and the trim point moves on.
        gaps.note(17, t0 + Duration::from_secs(1));
        gaps.expire(t0 + GAP);
        assert_eq!(gaps.missing(), vec![16]);
        gaps.expire(t0 + Duration::from_secs(1) + GAP);
        assert!(gaps.missing().is_empty());
        assert_eq!(gaps.read_to(), 17);
        // A jump too large to wait for is not waited for.
        gaps.note(17 + MAX_MISSING + 1, t0);
        assert!(gaps.missing().is_empty());
    }
}
