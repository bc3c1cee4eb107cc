//! The hub: where signals meet. Twin events and live signals are routed to the targets of open
//! connections (namespaces, RQL filters, extra fields); signals consumed by sources reach the twin
//! or the live subscribers; acknowledgements are aggregated into settle decisions.

pub mod acks;
pub mod enforcement;
pub mod inbound;
pub mod resolve;
pub mod routing;

#[cfg(test)]
mod tests;

use crate::model::record::timestamp;
use crate::twin::TwinService;
use ferrule_protocol::{Criterion, DittoMessage, Group, Topic};
use inbound::InboundHub;
use routing::Router;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

pub struct Hub {
    pub twin: TwinService,
    pub router: Arc<Router>,
    pub inbound: Arc<InboundHub>,
}

impl Hub {
    /// Starts the hub: every durable twin event is dispatched to the routes.
    pub fn start(twin: TwinService) -> Arc<Hub> {
        let router = Arc::new(Router::default());
        let hub = Arc::new(Hub {
            twin: twin.clone(),
            router: router.clone(),
            inbound: Arc::new(InboundHub::new(twin.clone(), router.clone())),
        });
        let mut events = twin.subscribe();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        router.dispatch(event, &twin).await;
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(
                            events = n,
                            "routing fell behind the twin; events were not routed"
                        );
                    }
                    Err(RecvError::Closed) => break,
                }
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
        self.router.dispatch(Arc::new(m), &self.twin).await;
    }
}
