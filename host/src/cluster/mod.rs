//! Cluster mode: several instances of Ferrule share one PostgreSQL database (the store of
//! record of connections, and the leases that say which instance runs which client) and talk
//! over core NATS (status, metrics, logs and commands of the clients each runs). Without a
//! `[cluster]` section none of this runs: `ferrule serve` keeps its embedded store.
//!
//! - [`pg`]: connections and things in PostgreSQL, written conditionally on their revision;
//!   every instance follows the connection changes (LISTEN/NOTIFY, and a full read every 30 s).
//! - [`events`]: the event log: each twin batch writes its events into PostgreSQL with its
//!   things, and every instance reads the log (its twin notes the things others changed; its
//!   routes take the events), so no event depends on NATS.
//! - [`coordinator`]: instances, leases and fencing epochs; where each client runs.
//! - [`placement`]: the placement every instance computes alike.
//! - [`bus`]: the questions instances ask each other.
//! - [`signals`]: acknowledgements, live signals and live responses between instances.
//! - [`twins`]: the commands of a thing are applied by the instance that owns it.

pub mod bus;
pub mod coordinator;
pub mod events;
pub mod nats;
pub mod pg;
pub mod placement;
pub mod signals;
pub mod twins;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// `[cluster]`: present, the instance runs in cluster mode.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Unique per instance; names the instance in a connection's `clientStatus`.
    pub node_id: String,
    /// e.g. `postgres://user:password@127.0.0.1:5432/ferrule`
    pub postgres_url: String,
    /// e.g. `nats://127.0.0.1:4222`
    pub nats_url: String,
    /// How long a lease holds without renewal: an instance that stops responding loses its
    /// clients to the others after this time.
    #[serde(default = "default_lease_ttl_ms")]
    pub lease_ttl_ms: u64,
}

fn default_lease_ttl_ms() -> u64 {
    5_000
}

impl ClusterConfig {
    pub fn check(&self) -> Result<(), String> {
        let id_ok = !self.node_id.is_empty()
            && self.node_id.len() <= 64
            && self
                .node_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !id_ok {
            return Err(format!(
                "[cluster] node_id '{}' must be 1 to 64 letters, digits, '-', '_' or '.'",
                self.node_id
            ));
        }
        if self.lease_ttl_ms < 2_000 {
            return Err(format!(
                "[cluster] lease_ttl_ms is {}: it must be at least 2000 (an instance renews every {} ms)",
                self.lease_ttl_ms,
                coordinator::SCAN.as_millis()
            ));
        }
        Ok(())
    }

    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }
}

/// This instance's part of the cluster.
pub struct Cluster {
    pub coordinator: Arc<coordinator::Coordinator>,
    pub bus: bus::Bus,
}

impl Cluster {
    /// How many other instances were alive at the last scan.
    fn others(&self) -> usize {
        self.coordinator.live_nodes().len().saturating_sub(1)
    }

    /// The answers of the other instances to `ask` about `connection`.
    pub async fn ask(&self, ask: bus::Ask, connection: &str) -> Vec<Value> {
        self.bus.ask(ask, connection, self.others()).await
    }

    /// The status members of `connection` from this instance's `local` part and the others'.
    pub async fn status(&self, connection: &str, local: Map<String, Value>) -> Map<String, Value> {
        let mut parts = vec![local];
        for answer in self.ask(bus::Ask::Status, connection).await {
            if let Value::Object(m) = answer {
                parts.push(m);
            }
        }
        bus::merge_status(parts)
    }
}
