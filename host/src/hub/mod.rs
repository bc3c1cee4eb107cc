//! The hub: where signals meet. Twin events and live signals are routed to the targets of open
//! connections (namespaces, RQL filters, extra fields); signals consumed by sources reach the twin
//! or the live subscribers; acknowledgements are aggregated into settle decisions.

pub mod acks;
pub mod diversion;
pub mod enforcement;
pub mod inbound;
pub mod ledger;
pub mod resolve;
pub mod routing;

#[cfg(test)]
mod tests;

use crate::model::record::timestamp;
use crate::twin::{self, TwinService};
use ferrule_protocol::{Criterion, DittoMessage, Group, Topic};
use inbound::InboundHub;
use routing::Router;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub struct Hub {
    pub twin: TwinService,
    pub router: Arc<Router>,
    pub inbound: Arc<InboundHub>,
    /// The open diversion targets' queues ([`diversion`]).
    pub diversions: diversion::Diversions,
}

/// Cluster mode: what the event relay hands the hub's pump, in the order of the event log.
pub enum Feed {
    /// An event of the log, with its sequence number.
    Logged(Arc<DittoMessage>, i64),
    /// Every event of the log up to this number has been handed over (or was not for here).
    ReadTo(i64),
    /// Events of the log for the routes of one ledger only (its replay); with `true` the replay
    /// is complete and those routes take the log's events from then on.
    Replay(Arc<ledger::Ledger>, Vec<(Arc<DittoMessage>, i64)>, bool),
}

impl Hub {
    /// Starts the hub: every durable twin event is dispatched to the routes, in the order the
    /// twin made them durable. The pump takes the next event only when the last one is in the
    /// queues of its routes, so a full route holds the twin back instead of losing events
    /// (up to `stall` per stalled route; see [`routing`]).
    pub fn start(twin: TwinService, mut events: twin::Events, stall: Duration) -> Arc<Hub> {
        let hub = Hub::new(twin, stall);
        let router = hub.router.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                router.dispatch(event).await;
            }
        });
        hub
    }

    /// Cluster mode: [`Hub::start`] with the events of the log (`cluster::events`), whose
    /// routes keep ledgers ([`ledger`]).
    pub fn start_from_log(
        twin: TwinService,
        mut feed: mpsc::Receiver<Feed>,
        stall: Duration,
    ) -> Arc<Hub> {
        let hub = Hub::new(twin, stall);
        let router = hub.router.clone();
        tokio::spawn(async move {
            while let Some(item) = feed.recv().await {
                match item {
                    Feed::Logged(event, seq) => {
                        router.dispatch_logged(event, Some(seq), None).await;
                    }
                    Feed::ReadTo(seq) => router.dispatched_to(seq),
                    Feed::Replay(ledger, events, complete) => {
                        for (event, seq) in events {
                            router
                                .dispatch_logged(event, Some(seq), Some(&ledger))
                                .await;
                        }
                        if complete {
                            ledger.activate();
                        }
                    }
                }
            }
        });
        hub
    }

    fn new(twin: TwinService, stall: Duration) -> Arc<Hub> {
        let router = Arc::new(Router::new(twin.clone(), stall));
        Arc::new(Hub {
            twin: twin.clone(),
            router: router.clone(),
            inbound: Arc::new(InboundHub::new(twin, router)),
            diversions: diversion::Diversions::default(),
        })
    }

    /// Publishes `_/<connectionId>/connections/announcements/opened|closed` to the connection's
    /// targets that subscribed to `_/_/connections/announcements`.
    pub async fn announce(&self, connection_id: &str, opened: bool) {
        let (name, field) = if opened {
            ("opened", "openedAt")
        } else {
            ("closed", "closedAt")
        };
        let mut m = DittoMessage::new(
            Topic {
                namespace: "_".into(),
                name: connection_id.into(),
                group: Group::Connections,
                channel: None,
                criterion: Criterion::Announcements,
                action: Some(name.into()),
            },
            "/",
        );
        m.headers.insert("content-type", "application/json");
        m.value = Some(json!({ field: timestamp(&chrono::Utc::now()) }));
        self.router.dispatch(Arc::new(m)).await;
    }
}
