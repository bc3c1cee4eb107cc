//! The hub: where signals meet. Twin events and live signals are routed to the targets of open
//! connections (namespaces, RQL filters, extra fields); signals consumed by sources reach the twin
//! or the live subscribers; acknowledgements are aggregated into settle decisions.

pub mod acks;
pub mod diversion;
pub mod enforcement;
pub mod inbound;
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

pub struct Hub {
    pub twin: TwinService,
    pub router: Arc<Router>,
    pub inbound: Arc<InboundHub>,
    /// The open diversion targets' queues ([`diversion`]).
    pub diversions: diversion::Diversions,
}

impl Hub {
    /// Starts the hub: every durable twin event is dispatched to the routes, in the order the
    /// twin made them durable. The pump takes the next event only when the last one is in the
    /// queues of its routes, so a full route holds the twin back instead of losing events
    /// (up to `stall` per stalled route; see [`routing`]).
    pub fn start(twin: TwinService, mut events: twin::Events, stall: Duration) -> Arc<Hub> {
        let router = Arc::new(Router::new(twin.clone(), stall));
        let hub = Arc::new(Hub {
            twin: twin.clone(),
            router: router.clone(),
            inbound: Arc::new(InboundHub::new(twin.clone(), router.clone())),
            diversions: diversion::Diversions::default(),
        });
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                router.dispatch(event).await;
            }
        });
        hub
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
