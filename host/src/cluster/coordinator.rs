//! Ownership of client slots in a cluster: leases in PostgreSQL, on the database's clock.
//!
//! Every instance scans every [`SCAN`]:
//! 1. it renews its row in `nodes` and every unexpired lease it owns (one statement each); a
//!    lease that could not be renewed is gone, and its client stops;
//! 2. it reads the live instances and places every open connection's slots over them
//!    ([`super::placement`]); it claims the free slots placed on it at once, and any slot left
//!    free for [`FALLBACK_AFTER`] (its preferred instance is not taking it);
//! 3. it hands a slot placed elsewhere to that instance once the instance has been up for
//!    10 s (one move per connection per [`MOVE_EVERY`]): the client stops first, then the
//!    lease is released;
//! 4. an instance whose database sessions have all gone (`pg_stat_activity`, two scans in a row:
//!    a killed process) has its row and leases expired at once, so its slots move within about
//!    a second instead of the lease time.
//!
//! A claim takes a lease only when it has expired and raises its `epoch` (the fencing token).
//! An instance that could not renew for `lease_ttl_ms - 1 s` (a lost database, a process that
//! was stopped) stops all its clients before anyone else may take their leases.

use super::placement;
use crate::hub::ledger::Slot;
use crate::runtime::Runtime;
use sqlx::PgPool;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often an instance renews and places.
pub const SCAN: Duration = Duration::from_millis(500);
/// A free slot is claimed by any instance after this long, not only by its preferred one.
const FALLBACK_AFTER: f64 = 2.0;
/// At most one slot of a connection moves to another instance per this time.
const MOVE_EVERY: Duration = Duration::from_secs(5);
/// Scans in a row an instance must be missing from `pg_stat_activity` to count as dead.
const MISSING_SCANS: u32 = 2;

pub struct Coordinator {
    pool: PgPool,
    node: String,
    ttl: Duration,
    runtime: Arc<Runtime>,
    /// The live instances at the last scan, shared with every reader (the owner of a thing is
    /// looked up per command).
    live: Mutex<Arc<[String]>>,
    /// Set by [`Coordinator::leave`]: the scans end.
    left: tokio::sync::watch::Sender<bool>,
}

/// What one instance remembers between scans.
#[derive(Default)]
struct State {
    /// Leases held: resource → epoch.
    held: HashMap<String, i64>,
    last_renewal: Option<Instant>,
    /// When a slot of a connection last moved away from here.
    moved_at: HashMap<String, Instant>,
    /// Scans in a row each live instance was missing from `pg_stat_activity`.
    missing: HashMap<String, u32>,
    /// Connections that had slots running here at the last scan.
    running: HashSet<String>,
    /// Slots without a lease row, since when this instance has seen them so (a new connection's
    /// slots are claimed by their preferred instances first, like expired ones).
    absent_since: HashMap<String, Instant>,
}

fn resource(connection: &str, slot: usize) -> String {
    format!("{connection}/{slot}")
}

/// The connection and slot of a lease's resource.
fn slot_of(resource: &str) -> Option<(&str, usize)> {
    let (connection, slot) = resource.rsplit_once('/')?;
    Some((connection, slot.parse().ok()?))
}

fn ttl_ms(ttl: Duration) -> i64 {
    ttl.as_millis() as i64
}

impl Coordinator {
    /// Registers this instance. A row of the same `node_id` that has not expired yet (the
    /// previous process of this instance, just restarted) is waited out, so its leases have
    /// expired before this process claims any.
    pub async fn join(
        pool: PgPool,
        node: String,
        ttl: Duration,
        runtime: Arc<Runtime>,
    ) -> anyhow::Result<Arc<Coordinator>> {
        let deadline = Instant::now() + ttl + Duration::from_secs(2);
        loop {
            let joined: Option<(i32,)> = sqlx::query_as(
                "INSERT INTO nodes (node_id, started_at, expires_at) \
                 VALUES ($1, now(), now() + $2 * interval '1 millisecond') \
                 ON CONFLICT (node_id) DO UPDATE SET started_at = now(), \
                 expires_at = EXCLUDED.expires_at WHERE nodes.expires_at < now() RETURNING 1",
            )
            .bind(&node)
            .bind(ttl_ms(ttl))
            .fetch_optional(&pool)
            .await?;
            if joined.is_some() {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "another instance with [cluster] node_id '{node}' is running: each instance needs its own node_id"
                );
            }
            tracing::info!(node = %node, "waiting for the previous process of this node_id to expire");
            tokio::time::sleep(SCAN).await;
        }
        tracing::info!(node = %node, "joined the cluster");
        Ok(Arc::new(Coordinator {
            pool,
            node,
            ttl,
            runtime,
            live: Mutex::new(Arc::from(Vec::new())),
            left: tokio::sync::watch::channel(false).0,
        }))
    }

    /// The instances alive at the last scan, this one included.
    pub fn live_nodes(&self) -> Arc<[String]> {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Leaves the cluster on a graceful stop (after the clients stopped): this instance's leases
    /// are free at once, so the others take its clients over at their next scan instead of
    /// after the lease time.
    pub async fn leave(&self) {
        self.left.send_replace(true);
        let left = async {
            self.save_cursors(&self.runtime.slot_cursors()).await;
            sqlx::query(
                "UPDATE leases SET expires_at = now() WHERE owner = $1 AND expires_at > now()",
            )
            .bind(&self.node)
            .execute(&self.pool)
            .await?;
            sqlx::query("UPDATE nodes SET expires_at = now() WHERE node_id = $1")
                .bind(&self.node)
                .execute(&self.pool)
                .await
        };
        match left.await {
            Ok(_) => tracing::info!(node = %self.node, "left the cluster"),
            Err(e) => {
                tracing::warn!(error = %e, "leaving the cluster failed; the leases expire by themselves")
            }
        }
    }

    /// Scans until the process ends.
    pub async fn run(self: Arc<Self>) {
        let mut state = State::default();
        let wake = self.runtime.placement_changed.clone();
        let mut left = self.left.subscribe();
        loop {
            if *left.borrow() {
                return;
            }
            let fence = self.ttl.saturating_sub(Duration::from_secs(1));
            // A database that stops answering (a network cut) must not hold the scan past the
            // moment this instance has to stop its clients.
            let deadline = match state.last_renewal {
                Some(t) if !state.held.is_empty() => t + fence,
                _ => Instant::now() + self.ttl,
            };
            match tokio::time::timeout_at(deadline.into(), self.scan(&mut state)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "the cluster scan failed"),
                Err(_) => tracing::warn!(
                    "the cluster scan did not finish in time: the database does not answer"
                ),
            }
            let lapsed = state.last_renewal.is_none_or(|t| t.elapsed() > fence);
            if lapsed && !state.held.is_empty() {
                tracing::warn!(
                    leases = state.held.len(),
                    "the leases could not be renewed in time: every client of this instance stops"
                );
                state.held.clear();
                self.apply(&mut state).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(SCAN) => {}
                _ = wake.notified() => {}
                _ = left.changed() => return,
            }
        }
    }

    async fn scan(&self, state: &mut State) -> Result<(), sqlx::Error> {
        let ttl = ttl_ms(self.ttl);
        // 1. This instance and its leases.
        let alive: Option<(i32,)> = sqlx::query_as(
            "UPDATE nodes SET expires_at = now() + $2 * interval '1 millisecond' \
             WHERE node_id = $1 AND expires_at > now() RETURNING 1",
        )
        .bind(&self.node)
        .bind(ttl)
        .fetch_optional(&self.pool)
        .await?;
        if alive.is_none() {
            if *self.left.borrow() {
                return Ok(());
            }
            // Counted as gone (stopped, cut off): its leases may be others' now.
            tracing::warn!(node = %self.node, "this instance had expired; it joins again");
            state.held.clear();
            self.apply(state).await;
            sqlx::query(
                "INSERT INTO nodes (node_id, started_at, expires_at) \
                 VALUES ($1, now(), now() + $2 * interval '1 millisecond') \
                 ON CONFLICT (node_id) DO UPDATE SET started_at = now(), \
                 expires_at = EXCLUDED.expires_at",
            )
            .bind(&self.node)
            .bind(ttl)
            .execute(&self.pool)
            .await?;
        }
        let renewed: Vec<(String, i64)> = sqlx::query_as(
            "UPDATE leases SET expires_at = now() + $2 * interval '1 millisecond' \
             WHERE owner = $1 AND expires_at > now() RETURNING resource, epoch",
        )
        .bind(&self.node)
        .bind(ttl)
        .fetch_all(&self.pool)
        .await?;
        state.last_renewal = Some(Instant::now());
        let renewed: HashMap<String, i64> = renewed.into_iter().collect();
        for lost in state.held.keys().filter(|r| !renewed.contains_key(*r)) {
            tracing::warn!(slot = %lost, "a lease was lost: its client stops here");
        }
        state.held = renewed;
        self.save_cursors(&self.runtime.slot_cursors()).await;

        // 2. The live instances; killed ones are expired at once.
        let nodes: Vec<(String, bool, bool)> = sqlx::query_as(
            "SELECT node_id, started_at < now() - interval '10 seconds', \
             started_at < now() - interval '3 seconds' \
             FROM nodes WHERE expires_at > now() ORDER BY node_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let connected: HashSet<String> = sqlx::query_as::<_, (String,)>(
            "SELECT DISTINCT substr(application_name, 9) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name LIKE 'ferrule:%'",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|(n,)| n)
        .collect();
        let mut live = Vec::new();
        let mut settled = HashSet::new();
        for (node, is_settled, has_connected) in nodes {
            if node != self.node && has_connected && !connected.contains(&node) {
                let scans = state.missing.entry(node.clone()).or_insert(0);
                *scans += 1;
                tracing::debug!(node = %node, scans = *scans, "an instance has no database session");
                if *scans >= MISSING_SCANS {
                    tracing::warn!(node = %node, "an instance lost all its database sessions: its slots are taken over");
                    sqlx::query("UPDATE nodes SET expires_at = now() WHERE node_id = $1")
                        .bind(&node)
                        .execute(&self.pool)
                        .await?;
                    // Free now: the preferred instances claim them at once, the others only
                    // after FALLBACK_AFTER, so a slot does not land on one and move again.
                    sqlx::query(
                        "UPDATE leases SET expires_at = now() WHERE owner = $1 AND expires_at > now()",
                    )
                    .bind(&node)
                    .execute(&self.pool)
                    .await?;
                    state.missing.remove(&node);
                    continue;
                }
            } else {
                state.missing.remove(&node);
            }
            if is_settled {
                settled.insert(node.clone());
            }
            live.push(node);
        }
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) = Arc::from(live.clone());

        // 3. Placement: claims and moves.
        let desired = self.runtime.desired_slots();
        let resources: Vec<String> = desired
            .iter()
            .flat_map(|(id, n)| (0..*n).map(move |k| resource(id, k)))
            .collect();
        let leases: Vec<(String, String, bool, f64)> = sqlx::query_as(
            "SELECT resource, owner, expires_at > now(), \
             EXTRACT(EPOCH FROM now() - expires_at)::float8 \
             FROM leases WHERE resource = ANY($1)",
        )
        .bind(&resources)
        .fetch_all(&self.pool)
        .await?;
        let leases: HashMap<String, (String, bool, f64)> = leases
            .into_iter()
            .map(|(r, owner, held, free_for)| (r, (owner, held, free_for)))
            .collect();
        let wanted: HashSet<&String> = resources.iter().collect();
        state
            .absent_since
            .retain(|r, _| wanted.contains(r) && !leases.contains_key(r));
        let mut release = Vec::new();
        let mut claim = Vec::new();
        for (id, n) in &desired {
            let owners = placement::assign(id, *n, &live);
            let mut moved = false;
            for (k, preferred) in owners.iter().enumerate() {
                let r = resource(id, k);
                if state.held.contains_key(&r) {
                    let may_move = state
                        .moved_at
                        .get(id)
                        .is_none_or(|t| t.elapsed() >= MOVE_EVERY);
                    if *preferred != self.node && settled.contains(preferred) && may_move && !moved
                    {
                        moved = true;
                        state.moved_at.insert(id.clone(), Instant::now());
                        release.push(r);
                    }
                    continue;
                }
                let free_for = match leases.get(&r) {
                    None => state
                        .absent_since
                        .entry(r.clone())
                        .or_insert_with(Instant::now)
                        .elapsed()
                        .as_secs_f64(),
                    Some((_, true, _)) => continue,
                    Some((_, false, free_for)) => *free_for,
                };
                if *preferred == self.node || free_for >= FALLBACK_AFTER {
                    claim.push(r);
                }
            }
        }
        release.extend(state.held.keys().filter(|r| !wanted.contains(r)).cloned());
        let counts: HashMap<&str, usize> = desired.iter().map(|(id, n)| (&**id, *n)).collect();
        for r in &claim {
            let taken: Option<(i64, Option<i64>, Option<i32>)> = sqlx::query_as(
                "INSERT INTO leases (resource, owner, epoch, expires_at) \
                 VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond') \
                 ON CONFLICT (resource) DO UPDATE SET owner = EXCLUDED.owner, \
                 epoch = leases.epoch + 1, expires_at = EXCLUDED.expires_at \
                 WHERE leases.expires_at < now() RETURNING epoch, cursor, cursor_slots",
            )
            .bind(r)
            .bind(&self.node)
            .bind(ttl)
            .fetch_optional(&self.pool)
            .await?;
            if let Some((epoch, cursor, cursor_slots)) = taken {
                tracing::info!(slot = %r, epoch, cursor, "took a client slot");
                state.held.insert(r.clone(), epoch);
                if let Some((id, k)) = slot_of(r)
                    && let Some(&n) = counts.get(id)
                {
                    // A cursor of another clientCount is of another share of the things.
                    let cursor = cursor.filter(|_| cursor_slots == Some(n as i32));
                    self.runtime.took_slot(id, k, n, epoch, cursor);
                }
            }
        }
        // The clients of released slots stop before their leases are free to take, and their
        // last cursors are saved before.
        for r in &release {
            state.held.remove(r);
        }
        self.apply(state).await;
        // A slot that moves keeps its cursor for its next owner; the slot of a connection that
        // was closed or deleted (or has fewer clients now) loses it: opened again, a
        // connection publishes from then on, not what changed while it was closed.
        let left: Vec<_> = release
            .iter()
            .filter_map(|r| {
                let (id, k) = slot_of(r)?;
                let slot = self.runtime.forget_slot(id, k)?;
                wanted.contains(r).then(|| (id.to_string(), k, slot))
            })
            .collect();
        self.save_cursors(&left).await;
        for r in &release {
            sqlx::query(
                "UPDATE leases SET expires_at = now() - interval '1 hour', \
                 cursor = CASE WHEN $3 THEN cursor END, \
                 cursor_slots = CASE WHEN $3 THEN cursor_slots END, \
                 cursor_at = CASE WHEN $3 THEN cursor_at END \
                 WHERE resource = $1 AND owner = $2",
            )
            .bind(r)
            .bind(&self.node)
            .bind(wanted.contains(r))
            .execute(&self.pool)
            .await?;
            tracing::info!(slot = %r, "released a client slot");
        }
        Ok(())
    }

    /// Saves the cursors of `slots` (`hub::ledger`) where this instance still holds their
    /// leases with the epoch it took them with: a stale owner cannot move a cursor. A cursor
    /// counts as moving (`cursor_at`) when it moved, or when it is up to what this instance
    /// last recorded it had read. A cursor not saved is saved at the next scan, or the next
    /// owner replays from an earlier one.
    async fn save_cursors(&self, slots: &[(String, usize, Arc<Slot>)]) {
        if let Err(e) = self.try_save_cursors(slots).await {
            tracing::warn!(error = %e, "the client slots' cursors could not be saved");
        }
    }

    async fn try_save_cursors(
        &self,
        slots: &[(String, usize, Arc<Slot>)],
    ) -> Result<(), sqlx::Error> {
        let (mut resources, mut epochs, mut cursors, mut counts) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (id, k, slot) in slots {
            if let Some(cursor) = slot.cursor() {
                resources.push(resource(id, *k));
                epochs.push(slot.epoch());
                cursors.push(cursor);
                counts.push(slot.count as i32);
            }
        }
        if resources.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE leases AS l SET cursor = c.cursor, cursor_slots = c.slots, \
             cursor_at = CASE WHEN l.cursor IS DISTINCT FROM c.cursor OR l.cursor_at IS NULL \
               OR c.cursor >= (SELECT read_to FROM event_readers WHERE node_id = $1) \
               THEN now() ELSE l.cursor_at END \
             FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::int[]) \
               AS c(resource, epoch, cursor, slots) \
             WHERE l.resource = c.resource AND l.epoch = c.epoch AND l.owner = $1 \
               AND l.expires_at > now()",
        )
        .bind(&self.node)
        .bind(&resources)
        .bind(&epochs)
        .bind(&cursors)
        .bind(&counts)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes the clients running here those of the leases held.
    async fn apply(&self, state: &mut State) {
        let mut slots: HashMap<String, BTreeSet<usize>> = HashMap::new();
        for r in state.held.keys() {
            if let Some((id, k)) = slot_of(r) {
                slots.entry(id.to_string()).or_default().insert(k);
            }
        }
        let mut ids: HashSet<String> = slots.keys().cloned().collect();
        ids.extend(state.running.drain());
        for id in ids {
            let wanted = slots.remove(&id).unwrap_or_default();
            self.runtime.run_slots(&id, &wanted).await;
            if !wanted.is_empty() {
                state.running.insert(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_name_their_connection_and_index() {
        assert_eq!(slot_of(&resource("a/b", 3)), Some(("a/b", 3)));
        assert_eq!(slot_of("x"), None);
        assert_eq!(slot_of("x/y"), None);
    }
}
