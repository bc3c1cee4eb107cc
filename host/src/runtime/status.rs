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
