//! One connected run of a connection: its clients, the consumers that feed the hub, and the
//! publishers that take what the hub routes to its targets.
//!
//! - [`inbound`], per consumed message: mapping (the source's pipeline) → source header
//!   mapping → enforcement → declared acknowledgements → requested acknowledgements → the hub →
//!   responses to the reply target → the transport settles the message with the hub's decision
//!   (after the change is durable and the requested acknowledgements are in).
//! - [`outbound`], per routed signal: mapping (the target's pipeline) → target header mapping →
//!   address → publish → the issued acknowledgement, if any.
//! - This module, the lifecycle: connecting the clients, registering the routes before anyone
//!   consumes, watching the clients, closing.
//!
//! The guarantees, each with its unit test in `tests`:
//! - **Order.** Consumed signals reach the hub in arrival order per client; routed signals are
//!   handed to the client in routing order, by a call that cannot wait
//!   ([`ferrule_transport::BrokerClient::publish`]); only the waiting for outcomes and
//!   confirmations overlaps.
//! - **Bounded memory.** At most [`CONCURRENCY`] deliveries per client are being handled and
//!   at most [`CONCURRENCY`] publishes per target await their confirmation; a target's queue
//!   holds [`TARGET_QUEUE`] routed signals.
//! - **Back-pressure.** A full target queue holds the routing back (up to the stall bound,
//!   `hub::routing`), a publisher with [`CONCURRENCY`] unconfirmed publishes takes nothing from
//!   its queue, and a consumer with [`CONCURRENCY`] unsettled deliveries takes no more from its
//!   client, whose broker then keeps the backlog.
//! - **Settlement.** Every delivery is settled once, after it was handled, with the hub's verdict.

mod inbound;
mod outbound;
mod reply;
#[cfg(test)]
mod tests;

use super::compiled::Compiled;
use super::status::{Live, LiveStatus, Resource};
use crate::connections::lock;
use crate::hub::Hub;
use crate::model::Connection;
use crate::monitoring::logs::{Category, ConnectionLogs, Level, LogEntry};
use crate::monitoring::metrics::{ConnectionMetrics, Direction, MetricType};
use chrono::Utc;
use ferrule_transport::{
    BrokerClient, ClientEvent, Confirmation, Connected, ErrorKind, Publish, TransportError,
};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Messages processed at once per client inbound, and publishes awaiting confirmation per
/// target outbound.
pub(crate) const CONCURRENCY: usize = 256;
/// At most this many deliveries (or routed signals) are mapped in one hand-off to a processor.
const MAP_BATCH: usize = 64;
/// Routed signals waiting for one target's publisher at most.
const TARGET_QUEUE: usize = 16_384;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A session's client, until the session closes it.
#[derive(Default)]
pub(crate) struct ClientSlot(RwLock<Option<Box<dyn BrokerClient>>>);

impl ClientSlot {
    pub(crate) fn new(client: Box<dyn BrokerClient>) -> ClientSlot {
        ClientSlot(RwLock::new(Some(client)))
    }

    /// Queues a publish at the client (see [`BrokerClient::publish`]: nothing to wait for).
    pub(crate) fn publish(&self, publish: Publish) -> Confirmation {
        match self.0.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(client) => client.publish(publish),
            None => ferrule_transport::decided(Err(TransportError::new(
                ErrorKind::Closed,
                "the client is closed",
            ))),
        }
    }

    fn take(&self) -> Option<Box<dyn BrokerClient>> {
        self.0.write().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// What the processing of a connection's messages needs.
pub struct Context {
    pub connection: Arc<Connection>,
    pub compiled: Arc<Compiled>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<ConnectionMetrics>,
    pub logs: Arc<Mutex<ConnectionLogs>>,
    pub status: Arc<Mutex<LiveStatus>>,
    pub processor: super::processor::Processor,
    /// Cluster mode, `(client index, clientCount)`: this client publishes the targets' signals
    /// of its share of the things. `None`: client 0 publishes everything.
    pub partition: Option<(usize, usize)>,
    /// Cluster mode: the client slot this supervisor runs, whose cursor its sessions keep.
    pub slot: Option<Arc<crate::hub::ledger::Slot>>,
}

impl Context {
    fn count(&self, direction: Direction, address: &str, metric: MetricType, success: bool) {
        self.metrics
            .record(direction, address, metric, success, Utc::now());
    }

    /// A success entry, sampled ([`ConnectionLogs::takes_success`]): nothing is built unless
    /// the logs take it.
    fn log_success(
        &self,
        category: Category,
        log_type: &'static str,
        address: &str,
        correlation: Option<&str>,
        entity: Option<&str>,
        message: impl FnOnce() -> String,
    ) {
        let now = Utc::now();
        let mut logs = lock(&self.logs);
        if !logs.takes_success(category, log_type, address, now) {
            return;
        }
        logs.log(LogEntry {
            correlation_id: correlation.unwrap_or("<not-provided>").to_string(),
            timestamp: now,
            category,
            log_type,
            level: Level::Success,
            message: message(),
            address: Some(address.to_string()),
            entity_type: entity.map(|_| "thing".to_string()),
            entity_id: entity.map(str::to_string),
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn log(
        &self,
        category: Category,
        log_type: &'static str,
        success: bool,
        address: &str,
        correlation: Option<String>,
        entity: Option<String>,
        message: String,
    ) {
        lock(&self.logs).log(LogEntry {
            correlation_id: correlation.unwrap_or_else(|| "<not-provided>".into()),
            timestamp: Utc::now(),
            category,
            log_type,
            level: if success {
                Level::Success
            } else {
                Level::Failure
            },
            message,
            address: Some(address.to_string()),
            entity_type: entity.as_ref().map(|_| "thing".to_string()),
            entity_id: entity,
        });
    }
}

impl Context {
    /// An outbound mapper's failure (a target's signal or a reply target's response): as
    /// Ditto's `OutboundMappingProcessorActor` does, a failure of type `other` in the metrics
    /// and the logs.
    fn outbound_mapping_failed(
        &self,
        category: Category,
        address: &str,
        correlation: Option<String>,
        entity: Option<String>,
        mapper: &str,
        e: &ferrule_protocol::ProtocolError,
    ) {
        self.count(Direction::Outbound, address, MetricType::Other, false);
        self.log(
            category,
            "other",
            false,
            address,
            correlation,
            entity,
            format!(
                "Got exception <{}> when mapping the signal with mapper <{mapper}>: {}{}",
                e.error,
                e.message,
                e.description
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
        );
    }
}

pub struct Session {
    clients: Vec<Arc<ClientSlot>>,
    tasks: Vec<JoinHandle<()>>,
    publishers: Vec<JoinHandle<()>>,
    routes: Vec<u64>,
    /// Cluster mode: the ledger of this session's routes (`hub::ledger`).
    ledger: Option<Arc<crate::hub::ledger::Ledger>>,
    /// The registrations of this diversion target's queues: `(connection id, id)`.
    diversions: Vec<(String, u64)>,
    hub: Arc<Hub>,
    fail_tx: mpsc::Sender<TransportError>,
    pub failures: mpsc::Receiver<TransportError>,
}

impl Session {
    /// Connects every client and starts consuming and publishing.
    pub async fn start(
        ctx: Arc<Context>,
        configs: Vec<ferrule_transport::ClientConfig>,
    ) -> Result<Session, TransportError> {
        let mut session = Session::new(&ctx);
        for config in configs {
            let index = config.client_index;
            match ferrule_transport::connect(config).await {
                Ok(connected) => session.attach(&ctx, index, connected),
                Err(e) => {
                    session.close().await;
                    return Err(e);
                }
            }
        }
        Ok(session)
    }

    fn new(ctx: &Context) -> Session {
        let (fail_tx, failures) = mpsc::channel(8);
        Session {
            clients: Vec::new(),
            tasks: Vec::new(),
            publishers: Vec::new(),
            routes: Vec::new(),
            ledger: None,
            diversions: Vec::new(),
            hub: ctx.hub.clone(),
            fail_tx,
            failures,
        }
    }

    /// Starts consuming (and, for client 0 or a client with a partition, publishing) with a
    /// connected client.
    fn attach(&mut self, ctx: &Arc<Context>, index: usize, connected: Connected) {
        let client = Arc::new(ClientSlot::new(connected.client));
        self.clients.push(client.clone());
        self.tasks.push(tokio::spawn(watch(
            ctx.clone(),
            connected.events,
            self.fail_tx.clone(),
        )));
        // One client publishes, so a signal is published once whatever the clientCount. Its
        // routes are in place before any client consumes: a persistent session's backlog
        // arrives at once, and an event routed before its target's route existed would be lost,
        // with the acknowledgement its source requested (the broker's redelivery of those
        // messages then waits for the acknowledgement timeout).
        if index == 0 || ctx.partition.is_some() {
            self.start_publishers(ctx, &client, index);
        }
        self.tasks.push(tokio::spawn(inbound::consume(
            ctx.clone(),
            client,
            connected.deliveries,
            self.fail_tx.clone(),
        )));
    }

    /// Registers a route and starts a publisher for each target.
    /// A diversion target also registers the queues for the responses diverted to it.
    /// Cluster mode: the routes share a ledger of the slot's session, which first replays what
    /// the slot's last session left unpublished (`hub::ledger`).
    fn start_publishers(&mut self, ctx: &Arc<Context>, client: &Arc<ClientSlot>, index: usize) {
        let router = &ctx.hub.router;
        let ledger = ctx
            .slot
            .as_ref()
            .map(|slot| slot.next_ledger(index, router.read_to()));
        let mut sinks = Vec::new();
        for t in 0..ctx.connection.targets.len() {
            let (tx, rx) = mpsc::channel(TARGET_QUEUE);
            sinks.push(tx.clone());
            self.routes
                .push(router.add(outbound::route(ctx, t, tx, ledger.clone())));
            self.publishers.push(tokio::spawn(outbound::publish_routed(
                ctx.clone(),
                client.clone(),
                t,
                rx,
            )));
        }
        if let Some(authorized) = &ctx.compiled.diversion.target_of {
            let id = ctx
                .hub
                .diversions
                .register(&ctx.connection.id, authorized.clone(), sinks);
            self.diversions.push((ctx.connection.id.clone(), id));
        }
        if let Some(ledger) = ledger {
            router.request_replay(ledger.clone());
            self.ledger = Some(ledger);
        }
    }

    /// Stops routing to this session's targets: routed signals and diverted responses.
    fn stop_routing(&mut self) {
        if let Some(ledger) = &self.ledger {
            ledger.close();
        }
        for id in self.routes.drain(..) {
            self.hub.router.remove(id);
        }
        for (connection, id) in self.diversions.drain(..) {
            self.hub.diversions.remove(&connection, id);
        }
    }

    /// Stops routing, lets the publishers finish what was routed to them (at most `drain`),
    /// closes the clients and ends the tasks.
    pub async fn close_within(&mut self, drain: std::time::Duration) {
        self.stop_routing();
        let publishers: Vec<_> = self.publishers.drain(..).collect();
        let aborts: Vec<_> = publishers.iter().map(|p| p.abort_handle()).collect();
        if tokio::time::timeout(drain, join_all(publishers))
            .await
            .is_err()
        {
            aborts.iter().for_each(|a| a.abort());
        }
        self.close().await;
    }

    /// Stops routing, ends the tasks and closes the clients at once.
    pub async fn close(&mut self) {
        self.stop_routing();
        for p in self.publishers.drain(..) {
            p.abort();
        }
        for client in self.clients.drain(..) {
            if let Some(c) = client.take() {
                c.close().await;
            }
        }
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

async fn join_all(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

async fn watch(
    ctx: Arc<Context>,
    mut events: mpsc::Receiver<ClientEvent>,
    failures: mpsc::Sender<TransportError>,
) {
    while let Some(event) = events.recv().await {
        match event {
            ClientEvent::Disconnected(e) => {
                let _ = failures.send(e).await;
                return;
            }
            ClientEvent::SourceFailed {
                source,
                address,
                error,
            } => {
                {
                    let mut status = lock(&ctx.status);
                    for r in status
                        .sources
                        .iter_mut()
                        .filter(|r| r.address.as_deref() == Some(address.as_str()))
                    {
                        r.status = Live::Failed;
                        r.details = error.message.clone();
                        r.since = Utc::now();
                    }
                }
                ctx.log(
                    Category::Source,
                    "consumed",
                    false,
                    &address,
                    None,
                    None,
                    format!(
                        "Source {source} stopped consuming from <{address}>: {}",
                        error.message
                    ),
                );
            }
        }
    }
}

/// The status of a connected session's resources.
pub fn open_status(connection: &Connection, clients: &super::status::Clients) -> LiveStatus {
    let now = Utc::now();
    let mut status = LiveStatus {
        live: Live::Open,
        recovery: super::status::Recovery::Succeeded,
        connected_since: Some(now),
        clients: clients
            .names
            .iter()
            .map(|name| Resource {
                client: name.clone(),
                address: None,
                status: Live::Open,
                details: "Connected.".into(),
                since: now,
            })
            .collect(),
        sources: Vec::new(),
        targets: Vec::new(),
    };
    for name in &clients.names {
        for source in &connection.sources {
            for address in &source.addresses {
                for _ in 0..source.consumer_count {
                    status.sources.push(Resource {
                        client: name.clone(),
                        address: Some(address.clone()),
                        status: Live::Open,
                        details: "Consumer started.".into(),
                        since: now,
                    });
                }
            }
        }
    }
    if let Some(publisher) = clients.publisher() {
        for target in &connection.targets {
            status.targets.push(Resource {
                client: publisher.to_string(),
                address: Some(target.address.clone()),
                status: Live::Open,
                details: "Producer started.".into(),
                since: now,
            });
        }
    }
    status
}
