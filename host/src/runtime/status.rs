//! The live status of a connection (spec §3.1): what its clients, consumers and publishers are
//! doing, and since when.

use crate::model::record::timestamp;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    Open,
    Closed,
    Failed,
    Misconfigured,
    Unknown,
}

impl Live {
    pub fn as_str(self) -> &'static str {
        match self {
            Live::Open => "open",
            Live::Closed => "closed",
            Live::Failed => "failed",
            Live::Misconfigured => "misconfigured",
            Live::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    Ongoing,
    Succeeded,
    BackOffLimitReached,
    Unknown,
}

impl Recovery {
    pub fn as_str(self) -> &'static str {
        match self {
            Recovery::Ongoing => "ongoing",
            Recovery::Succeeded => "succeeded",
            Recovery::BackOffLimitReached => "backOffLimitReached",
            Recovery::Unknown => "unknown",
        }
    }
}

/// The clients one supervisor runs: their indexes among the connection's `clientCount`, and the
/// name each has in the status (`ferrule-<index + 1>` on a single node; the instance's
/// `node_id` in a cluster, as Ditto names the instance that runs a client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clients {
    pub indexes: Vec<usize>,
    pub names: Vec<String>,
    /// Cluster mode: every client publishes (its share of the things).
    pub all_publish: bool,
}

impl Clients {
    /// Clients `indexes`, named for `node` (cluster mode) or by number.
    pub fn of(indexes: Vec<usize>, node: Option<&str>) -> Clients {
        let names = indexes
            .iter()
            .map(|i| match node {
                Some(n) => n.to_string(),
                None => format!("ferrule-{}", i + 1),
            })
            .collect();
        Clients {
            indexes,
            names,
            all_publish: node.is_some(),
        }
    }

    /// Clients `0..count` of a single node.
    pub fn all(count: usize) -> Clients {
        Clients::of((0..count).collect(), None)
    }

    /// The name of the client that publishes (index 0, or in cluster mode each), when these
    /// clients include it.
    pub fn publisher(&self) -> Option<&str> {
        if self.all_publish {
            return self.names.first().map(String::as_str);
        }
        self.indexes
            .iter()
            .position(|&i| i == 0)
            .map(|p| self.names[p].as_str())
    }
}

/// One client, consumer or publisher.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub client: String,
    pub address: Option<String>,
    pub status: Live,
    pub details: String,
    pub since: DateTime<Utc>,
}

impl Resource {
    fn json(&self, kind: &str, recovery: Option<Recovery>) -> Value {
        let mut v = json!({
            "type": kind,
            "client": self.client,
            "status": self.status.as_str(),
            "statusDetails": self.details,
            "inStateSince": timestamp(&self.since),
        });
        if let Some(a) = &self.address {
            v["address"] = Value::from(a.clone());
        }
        if let Some(r) = recovery {
            v["recoveryStatus"] = Value::from(r.as_str());
        }
        v
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LiveStatus {
    pub live: Live,
    pub recovery: Recovery,
    pub connected_since: Option<DateTime<Utc>>,
    pub clients: Vec<Resource>,
    pub sources: Vec<Resource>,
    pub targets: Vec<Resource>,
}

impl Default for LiveStatus {
    fn default() -> Self {
        LiveStatus::closed()
    }
}

impl LiveStatus {
    /// The status of several supervisors of one connection (the slots this instance runs):
    /// open when every one is open, otherwise the first that is not.
    pub fn merge(parts: Vec<LiveStatus>) -> LiveStatus {
        let mut parts = parts.into_iter();
        let Some(mut all) = parts.next() else {
            return LiveStatus::closed();
        };
        for p in parts {
            if all.live == Live::Open && p.live != Live::Open {
                all.live = p.live;
                all.recovery = p.recovery;
            }
            all.connected_since = match (all.connected_since, p.connected_since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            all.clients.extend(p.clients);
            all.sources.extend(p.sources);
            all.targets.extend(p.targets);
        }
        all
    }

    pub fn closed() -> LiveStatus {
        LiveStatus {
            live: Live::Closed,
            recovery: Recovery::Unknown,
            connected_since: None,
            clients: Vec::new(),
            sources: Vec::new(),
            targets: Vec::new(),
        }
    }

    /// The members of the status response after `type`, `status`, `connectionId` and
    /// `connectionStatus`.
    pub fn to_json(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("liveStatus".into(), Value::from(self.live.as_str()));
        m.insert("recoveryStatus".into(), Value::from(self.recovery.as_str()));
        if let Some(since) = &self.connected_since {
            m.insert("connectedSince".into(), Value::from(timestamp(since)));
        }
        m.insert(
            "clientStatus".into(),
            self.clients
                .iter()
                .map(|r| r.json("client", Some(self.recovery)))
                .collect(),
        );
        m.insert(
            "sourceStatus".into(),
            self.sources
                .iter()
                .map(|r| r.json("source", None))
                .collect(),
        );
        m.insert(
            "targetStatus".into(),
            self.targets
                .iter()
                .map(|r| r.json("target", None))
                .collect(),
        );
        m.insert("sshTunnelStatus".into(), Value::Array(Vec::new()));
        m
    }
}
