//! The runtime: one supervisor per connection whose desired status is `open`. A supervisor
//! connects the connection's clients, runs a [`session::Session`] until it fails or is stopped,
//! reconnects with exponential backoff (with jitter) while `failoverEnabled`, and keeps the live
//! status that `GET .../status` reports.

pub mod compiled;
pub mod hosts;
pub mod processor;
pub mod session;
pub mod status;

use crate::connections::lock;
use crate::error::DittoError;
use crate::hub::Hub;
use crate::hub::ledger::Slot;
use crate::mapping::MappingContext;
use crate::model::connection::{ConnectionType, Source};
use crate::model::topic::TopicKind;
use crate::model::{Connection, ConnectivityStatus};
use crate::monitoring::logs::{Category, ConnectionLogs, Level, LogEntry};
use crate::monitoring::metrics::ConnectionMetrics;
use axum::http::StatusCode;
use chrono::Utc;
use compiled::Compiled;
use ferrule_transport::{
    ClientConfig, ErrorKind, Protocol, SourceSpec, TargetSpec, TransportError,
};
use session::{Context, Session};
use status::{Clients, Live, LiveStatus, Recovery, Resource};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, rename_all = "snake_case", deny_unknown_fields)]
pub struct RuntimeConfig {
    /// The first wait before reconnecting; it doubles per failed attempt up to `max_backoff_ms`.
    pub min_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Failed attempts in a row after which a connection stops retrying (`backOffLimitReached`).
    pub max_tries: u32,
    pub connect_timeout_ms: u64,
    /// Unsettled messages per consumer at most (prefetch, receive maximum, link credit).
    pub max_in_flight: u16,
    /// How long a graceful close waits for the publishers (the closed announcement).
    pub close_timeout_ms: u64,
    /// A connection's `processorPoolSize` is capped at this (Ditto's `max-pool-size`).
    pub max_processor_pool_size: u32,
    /// How long routing waits for room in one target's queue (back-pressure) before that
    /// target has stalled and what does not fit is dropped for it until its queue is half empty.
    pub target_stall_timeout_ms: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            min_backoff_ms: 5_000,
            max_backoff_ms: 60 * 60 * 1000,
            max_tries: 50,
            connect_timeout_ms: 10_000,
            max_in_flight: 100,
            close_timeout_ms: 3_000,
            max_processor_pool_size: 5,
            target_stall_timeout_ms: 5_000,
        }
    }
}

impl RuntimeConfig {
    /// How many mappings run at once for a connection whose `processorPoolSize` is `requested`.
    pub fn processors(&self, requested: u32) -> u32 {
        requested.min(self.max_processor_pool_size).max(1)
    }
}

/// One supervisor: the clients (slots) it runs of a connection.
struct Running {
    slots: Vec<usize>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    status: Arc<Mutex<LiveStatus>>,
}

/// An open connection in cluster mode, waiting for the coordinator to say which of its clients
/// this instance runs.
#[derive(Clone)]
struct Desired {
    connection: Connection,
    metrics: Arc<ConnectionMetrics>,
    logs: Arc<Mutex<ConnectionLogs>>,
}

pub struct Runtime {
    hub: Arc<Hub>,
    config: RuntimeConfig,
    /// `[limits]`: the transports' size limits for connections that set none.
    limits: crate::model::ValidationLimits,
    /// `[hosts]`: which broker hosts connections may use.
    hosts: hosts::HostRules,
    mapping: MappingContext,
    /// Cluster mode: this instance's `node_id`. A connection's clients then run where the
    /// cluster's coordinator places them ([`Runtime::run_slots`]), not all here.
    node: OnceLock<Arc<str>>,
    /// Cluster mode: the open connections, whichever of their clients run here.
    desired: Mutex<HashMap<String, Desired>>,
    /// Woken when the open connections change (cluster mode: the coordinator places them).
    pub placement_changed: Arc<tokio::sync::Notify>,
    /// Serialises changes of what runs: `apply`, `stop` and `run_slots`.
    changes: tokio::sync::Mutex<()>,
    running: tokio::sync::Mutex<HashMap<String, Vec<Running>>>,
    /// Cluster mode: the client slots taken here, with their cursors (`hub::ledger`), until
    /// the coordinator has saved the last cursor of a slot that left.
    slots: Mutex<HashMap<(String, usize), Arc<Slot>>>,
}

fn protocol(t: ConnectionType) -> Option<Protocol> {
    match t {
        ConnectionType::Mqtt => Some(Protocol::Mqtt3),
        ConnectionType::Mqtt5 => Some(Protocol::Mqtt5),
        ConnectionType::Amqp091 => Some(Protocol::Amqp091),
        ConnectionType::Amqp10 => Some(Protocol::Amqp10),
        ConnectionType::HttpPush => Some(Protocol::HttpPush),
        ConnectionType::Kafka => Some(Protocol::Kafka),
        _ => None,
    }
}

fn source_spec(index: usize, s: &Source) -> SourceSpec {
    SourceSpec {
        index,
        addresses: s.addresses.iter().cloned().collect(),
        qos: s.qos.map(|q| q as u8),
        consumer_count: s.consumer_count,
        // Every message is settled after the hub handled it: nothing is acknowledged to a broker
        // before it is persisted or published.
        at_least_once: true,
    }
}

impl Runtime {
    pub fn new(
        hub: Arc<Hub>,
        config: RuntimeConfig,
        limits: crate::model::ValidationLimits,
        hosts: hosts::HostRules,
        mapping: MappingContext,
    ) -> Arc<Runtime> {
        Arc::new(Runtime {
            hub,
            config,
            limits,
            hosts,
            mapping,
            node: OnceLock::new(),
            desired: Mutex::new(HashMap::new()),
            placement_changed: Arc::new(tokio::sync::Notify::new()),
            changes: tokio::sync::Mutex::new(()),
            running: tokio::sync::Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// Cluster mode, before any connection is applied: clients run only where
    /// [`Runtime::run_slots`] says, and are named `node`.
    pub fn place_by_cluster(&self, node: &str) {
        let _ = self.node.set(Arc::from(node));
    }

    /// Cluster mode: the open connections and their `clientCount`, ordered by id.
    pub fn desired_slots(&self) -> Vec<(String, usize)> {
        let mut all: Vec<(String, usize)> = lock(&self.desired)
            .iter()
            .map(|(id, d)| (id.clone(), d.connection.client_count as usize))
            .collect();
        all.sort();
        all
    }

    /// Cluster mode: runs exactly the clients `slots` of connection `id` here (those whose
    /// leases this instance holds), stopping the others gracefully. Nothing runs for a
    /// connection that is not open.
    pub async fn run_slots(self: &Arc<Self>, id: &str, slots: &BTreeSet<usize>) {
        let _changes = self.changes.lock().await;
        let desired = lock(&self.desired).get(id).cloned();
        let (to_stop, running): (Vec<Running>, BTreeSet<usize>) = {
            let mut all = self.running.lock().await;
            let list = all.entry(id.to_string()).or_default();
            let (keep, stop): (Vec<Running>, Vec<Running>) = list
                .drain(..)
                .partition(|r| desired.is_some() && r.slots.iter().all(|s| slots.contains(s)));
            *list = keep;
            let running = list.iter().flat_map(|r| r.slots.iter().copied()).collect();
            if list.is_empty() {
                all.remove(id);
            }
            (stop, running)
        };
        for r in to_stop {
            stop_running(r).await;
        }
        let Some(d) = desired else { return };
        for &slot in slots.difference(&running) {
            let clients = Clients::of(vec![slot], self.node.get().map(|n| &**n));
            self.start(
                d.connection.clone(),
                d.metrics.clone(),
                d.logs.clone(),
                clients,
            )
            .await;
        }
    }

    /// Cluster mode: this instance took client `index` of connection `id` (of `count`) with
    /// the lease `epoch`; the last owner's cursor was `cursor`. A slot whose supervisor still
    /// runs here (its lease was lost and taken again at once) keeps its own cursor.
    pub fn took_slot(&self, id: &str, index: usize, count: usize, epoch: i64, cursor: Option<i64>) {
        let mut slots = lock(&self.slots);
        let key = (id.to_string(), index);
        if let Some(slot) = slots.get(&key)
            && slot.count == count
            && Arc::strong_count(slot) > 1
        {
            slot.set_epoch(epoch);
            return;
        }
        slots.insert(key, Slot::new(count, epoch, cursor));
    }

    /// Cluster mode: the cursors of the slots taken here: `(connection, index, slot)`.
    pub fn slot_cursors(&self) -> Vec<(String, usize, Arc<Slot>)> {
        lock(&self.slots)
            .iter()
            .map(|((id, index), slot)| (id.clone(), *index, slot.clone()))
            .collect()
    }

    /// Cluster mode: a slot that left this instance, with its last cursor (its client has
    /// stopped).
    pub fn forget_slot(&self, id: &str, index: usize) -> Option<Arc<Slot>> {
        lock(&self.slots).remove(&(id.to_string(), index))
    }

    /// The slot taken here (a supervisor started for a slot this instance did not take, which
    /// the coordinator does not do, keeps a cursor that is never saved). A connection whose
    /// `clientCount` changed shares its things differently: its slots start from nothing.
    fn slot(&self, id: &str, index: usize, count: usize) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        let slot = slots
            .entry((id.to_string(), index))
            .or_insert_with(|| Slot::new(count, 0, None));
        if slot.count != count {
            *slot = Slot::new(count, slot.epoch(), None);
        }
        slot.clone()
    }

    /// Cluster mode: the clients of connection `id` running here.
    pub async fn running_slots(&self, id: &str) -> BTreeSet<usize> {
        self.running
            .lock()
            .await
            .get(id)
            .map(|list| list.iter().flat_map(|r| r.slots.iter().copied()).collect())
            .unwrap_or_default()
    }

    /// The transport configuration of one client of a connection.
    pub fn client_config(
        &self,
        c: &Connection,
        index: usize,
        dry_run: bool,
    ) -> Option<ClientConfig> {
        let client_cert = c.credentials.as_ref().and_then(|cr| {
            if cr.get("type")?.as_str()? != "client-cert" {
                return None;
            }
            Some((
                cr.get("cert")?.as_str()?.to_string(),
                cr.get("key")?.as_str()?.to_string(),
            ))
        });
        let protocol = protocol(c.connection_type)?;
        // The host's size limit where the connection sets none.
        let mut specific_config = c.specific_config.clone();
        if let Some((key, default)) = self.limits.transport_default(protocol) {
            specific_config
                .entry(key.to_string())
                .or_insert_with(|| default.to_string());
        }
        Some(ClientConfig {
            connection_id: c.id.clone(),
            client_index: index,
            protocol,
            uri: c.uri.clone(),
            validate_certificates: c.validate_certificates,
            ca: c.ca.clone(),
            client_cert,
            credentials: c.credentials.clone().map(serde_json::Value::Object),
            specific_config,
            sources: c
                .sources
                .iter()
                .enumerate()
                .map(|(i, s)| source_spec(i, s))
                .collect(),
            targets: c
                .targets
                .iter()
                .enumerate()
                .map(|(i, t)| TargetSpec {
                    index: i,
                    address: t.address.clone(),
                    qos: t.qos.map(|q| q as u8),
                })
                .collect(),
            connect_timeout: Duration::from_millis(self.config.connect_timeout_ms),
            max_in_flight: self.config.max_in_flight,
            dry_run,
        })
    }

    /// Makes the running state match the connection's desired status: (re)starts it when
    /// `open`, stops it gracefully otherwise.
    pub async fn apply(
        self: &Arc<Self>,
        connection: Connection,
        metrics: Arc<ConnectionMetrics>,
        logs: Arc<Mutex<ConnectionLogs>>,
    ) {
        let _changes = self.changes.lock().await;
        let id = connection.id.clone();
        self.stop_all_of(&id).await;
        if connection.connection_status != ConnectivityStatus::Open {
            return;
        }
        if self.node.get().is_some() {
            lock(&self.desired).insert(
                id,
                Desired {
                    connection,
                    metrics,
                    logs,
                },
            );
            self.placement_changed.notify_one();
            return;
        }
        let clients = Clients::all(connection.client_count as usize);
        self.start(connection, metrics, logs, clients).await;
    }

    /// Starts a supervisor for `clients` of a connection.
    async fn start(
        self: &Arc<Self>,
        connection: Connection,
        metrics: Arc<ConnectionMetrics>,
        logs: Arc<Mutex<ConnectionLogs>>,
        clients: Clients,
    ) {
        let id = connection.id.clone();
        // Until the supervisor reports, the connection is connecting: its clients are listed
        // (never an empty clientStatus right after an open).
        let status = Arc::new(Mutex::new(connecting_status(
            &connection,
            &clients,
            Recovery::Unknown,
        )));
        let (stop, stopped) = watch::channel(false);
        let runtime = self.clone();
        let slots = clients.indexes.clone();
        let task = tokio::spawn({
            let status = status.clone();
            async move {
                runtime
                    .supervise(
                        Arc::new(connection),
                        clients,
                        metrics,
                        logs,
                        status,
                        stopped,
                    )
                    .await
            }
        });
        self.running
            .lock()
            .await
            .entry(id)
            .or_default()
            .push(Running {
                slots,
                stop,
                task,
                status,
            });
    }

    /// Stops a running connection gracefully: the closed announcement is published, then the
    /// clients disconnect.
    pub async fn stop(&self, id: &str) {
        let _changes = self.changes.lock().await;
        self.stop_all_of(id).await;
    }

    /// Stops every client of `id` running here; the caller holds `changes`.
    async fn stop_all_of(&self, id: &str) {
        if lock(&self.desired).remove(id).is_some() {
            self.placement_changed.notify_one();
        }
        let running = self.running.lock().await.remove(id);
        for r in running.into_iter().flatten() {
            stop_running(r).await;
        }
    }

    /// Stops every running connection gracefully (on shutdown).
    pub async fn stop_all(&self) {
        let ids: Vec<String> = self.running.lock().await.keys().cloned().collect();
        for id in ids {
            self.stop(&id).await;
        }
    }

    /// How many running connections are open (live status).
    pub async fn open_count(&self) -> usize {
        self.running
            .lock()
            .await
            .values()
            .filter(|list| list.iter().all(|r| lock(&r.status).live == Live::Open))
            .count()
    }

    /// The live status of the clients of `id` running here.
    pub async fn status(&self, id: &str) -> LiveStatus {
        match self.running.lock().await.get(id) {
            Some(list) => LiveStatus::merge(list.iter().map(|r| lock(&r.status).clone()).collect()),
            None => LiveStatus::closed(),
        }
    }

    /// Builds every mapper of a connection (compiles its scripts, starts and configures its
    /// WebAssembly instances) on a blocking thread: that takes up to the mappers' deadlines, and
    /// an async worker must not wait for it (the REST API and the message path run there).
    async fn compile(
        &self,
        connection: &Connection,
        mapping: MappingContext,
    ) -> Result<Compiled, DittoError> {
        let connection = connection.clone();
        tokio::task::spawn_blocking(move || Compiled::build(&connection, &mapping))
            .await
            .unwrap_or_else(|e| {
                Err(DittoError::internal(format!(
                    "Building the connection's mappers failed: {e}"
                )))
            })
    }

    /// What can be checked without connecting (create and modify answer 400 for it): every
    /// mapper is built (scripts compiled), and the transport checks its configuration.
    pub async fn check(&self, connection: &Connection) -> Result<(), DittoError> {
        self.compile(connection, self.mapping.clone()).await?;
        if let Ok(uri) = url::Url::parse(&connection.uri)
            && let Some(host) = uri.host_str()
        {
            self.hosts.check(host).await?;
        }
        let Some(config) = self.client_config(connection, 0, false) else {
            return Ok(());
        };
        ferrule_transport::check_config(&config).map_err(|e| {
            DittoError::configuration_invalid(format!(
                "{} in connection '{}'.",
                e.message, connection.id
            ))
        })
    }

    /// A dry run: connect with the connection's configuration, check its sources and targets,
    /// disconnect. Answers within the connect timeout.
    pub async fn test(&self, connection: &Connection) -> Result<(), DittoError> {
        self.compile(connection, self.mapping.clone()).await?;
        let Some(config) = self.client_config(connection, 0, true) else {
            return Err(DittoError::configuration_invalid(format!(
                "The connection type '{}' is not supported by Ferrule.",
                connection.connection_type.as_str()
            )));
        };
        let timeout = config.connect_timeout + Duration::from_secs(2);
        let result = tokio::time::timeout(timeout, ferrule_transport::connect(config)).await;
        match result {
            Ok(Ok(connected)) => {
                connected.client.close().await;
                Ok(())
            }
            Ok(Err(e)) => Err(test_error(&connection.id, &e)),
            Err(_) => Err(test_error(
                &connection.id,
                &TransportError::new(ErrorKind::Timeout, "the broker did not answer in time"),
            )),
        }
    }

    async fn supervise(
        self: Arc<Self>,
        connection: Arc<Connection>,
        clients: Clients,
        metrics: Arc<ConnectionMetrics>,
        logs: Arc<Mutex<ConnectionLogs>>,
        status: Arc<Mutex<LiveStatus>>,
        mut stopped: watch::Receiver<bool>,
    ) {
        let log = |success: bool, message: String| {
            lock(&logs).log(LogEntry {
                correlation_id: "<not-provided>".into(),
                timestamp: Utc::now(),
                category: Category::Connection,
                log_type: "other",
                level: if success {
                    Level::Success
                } else {
                    Level::Failure
                },
                message,
                address: None,
                entity_type: None,
                entity_id: None,
            });
        };
        let sink_logs = logs.clone();
        let sink: ferrule_wasm::LogSink = Arc::new(move |level, line, correlation| {
            lock(&sink_logs).log(LogEntry {
                correlation_id: correlation.unwrap_or("<not-provided>").into(),
                timestamp: Utc::now(),
                category: Category::Connection,
                log_type: "mapped",
                level: match level {
                    ferrule_wasm::Level::Warn | ferrule_wasm::Level::Error => Level::Failure,
                    _ => Level::Success,
                },
                message: format!("Mapper: {line}"),
                address: None,
                entity_type: None,
                entity_id: None,
            });
        });
        let compiled = match self
            .compile(&connection, self.mapping.with_log_sink(sink))
            .await
        {
            Ok(c) => Arc::new(c),
            Err(e) => {
                let details = format!("{} {}", e.message, e.description.unwrap_or_default());
                *lock(&status) =
                    failed_status(&clients, Live::Misconfigured, Recovery::Unknown, &details);
                log(false, details);
                let _ = stopped.changed().await;
                return;
            }
        };
        let ctx = Arc::new(Context {
            connection: connection.clone(),
            compiled,
            hub: self.hub.clone(),
            metrics,
            logs: logs.clone(),
            status: status.clone(),
            processor: processor::Processor::new(
                self.config.processors(connection.processor_pool_size),
            ),
            // Cluster mode runs one client per supervisor; with several, each publishes its
            // share of the things.
            partition: match (self.node.get(), clients.indexes.as_slice()) {
                (Some(_), [slot]) if connection.client_count > 1 => {
                    Some((*slot, connection.client_count as usize))
                }
                _ => None,
            },
            slot: match (self.node.get(), clients.indexes.as_slice()) {
                (Some(_), [slot]) => {
                    Some(self.slot(&connection.id, *slot, connection.client_count as usize))
                }
                _ => None,
            },
        });
        let announces = connection.targets.iter().any(|t| {
            t.topics
                .iter()
                .any(|raw| raw.starts_with(TopicKind::ConnectionAnnouncements.as_str()))
        });
        let reconnects =
            crate::monitoring::prometheus::global().map(|m| m.reconnects(&connection.id));
        let mut attempt: u32 = 0;
        loop {
            let configs: Vec<ClientConfig> = clients
                .indexes
                .iter()
                .filter_map(|&i| self.client_config(&connection, i, false))
                .collect();
            {
                let mut s = lock(&status);
                *s = connecting_status(&connection, &clients, s.recovery);
            }
            let started = tokio::select! {
                r = Session::start(ctx.clone(), configs) => r,
                _ = stopped.changed() => return,
            };
            // A disconnect the client asked for (MQTT's reconnect for redelivery) is no failure:
            // the connection comes back after the client's delay, whatever the failover.
            let mut redeliver_after = None;
            match started {
                Ok(mut session) => {
                    let recovered = attempt > 0;
                    attempt = 0;
                    let mut s = session::open_status(&connection, &clients);
                    if recovered {
                        s.recovery = Recovery::Succeeded;
                    }
                    *lock(&status) = s;
                    log(
                        true,
                        format!(
                            "Connected to {}.",
                            crate::error::redact_uri(&connection.uri)
                        ),
                    );
                    if announces {
                        self.hub.announce(&connection.id, true).await;
                    }
                    tokio::select! {
                        failure = session.failures.recv() => {
                            let e = failure.unwrap_or_else(|| TransportError::new(ErrorKind::Closed, "the client stopped"));
                            session.close().await;
                            if let Some(delay) = e.retry_after {
                                log(true, format!("{}; reconnecting in {} ms.", e.message, delay.as_millis()));
                                *lock(&status) = connecting_status(&connection, &clients, Recovery::Ongoing);
                                redeliver_after = Some(delay);
                            } else {
                                log(false, format!("Connection lost: {}", e.message));
                                *lock(&status) = failed_status(&clients, Live::Failed, Recovery::Ongoing, &e.message);
                            }
                        }
                        _ = stopped.changed() => {
                            if announces {
                                self.hub.announce(&connection.id, false).await;
                            }
                            session
                                .close_within(Duration::from_millis(self.config.close_timeout_ms))
                                .await;
                            *lock(&status) = LiveStatus::closed();
                            return;
                        }
                    }
                }
                Err(e) => {
                    let live = match e.kind {
                        ErrorKind::Unauthorized
                        | ErrorKind::Misconfigured
                        | ErrorKind::Unreachable => Live::Misconfigured,
                        _ => Live::Failed,
                    };
                    log(false, format!("Connecting failed: {}", e.message));
                    *lock(&status) = failed_status(&clients, live, Recovery::Ongoing, &e.message);
                }
            }
            if let Some(delay) = redeliver_after {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped.changed() => return,
                }
                continue;
            }
            if !connection.failover_enabled {
                lock(&status).recovery = Recovery::Unknown;
                let _ = stopped.changed().await;
                return;
            }
            attempt += 1;
            if attempt > self.config.max_tries {
                lock(&status).recovery = Recovery::BackOffLimitReached;
                let _ = stopped.changed().await;
                return;
            }
            let wait = backoff(&self.config, attempt);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped.changed() => return,
            }
            if let Some(c) = &reconnects {
                c.inc();
            }
        }
    }
}

/// Exponential backoff with ±20 % jitter.
fn backoff(config: &RuntimeConfig, attempt: u32) -> Duration {
    let base = config
        .min_backoff_ms
        .saturating_mul(1u64 << (attempt - 1).min(30))
        .min(config.max_backoff_ms);
    let mut random = [0u8; 2];
    let _ = getrandom::fill(&mut random);
    let jitter = (u16::from_le_bytes(random) as f64 / u16::MAX as f64) * 0.4 + 0.8;
    Duration::from_millis((base as f64 * jitter) as u64)
}

/// Stops one supervisor and waits for it to end.
async fn stop_running(r: Running) {
    let _ = r.stop.send(true);
    let _ = r.task.await;
}

/// The status while the clients connect.
fn connecting_status(connection: &Connection, clients: &Clients, recovery: Recovery) -> LiveStatus {
    failed_status(
        clients,
        Live::Unknown,
        recovery,
        &format!(
            "Connecting to {}.",
            crate::error::redact_uri(&connection.uri)
        ),
    )
}

fn failed_status(clients: &Clients, live: Live, recovery: Recovery, details: &str) -> LiveStatus {
    let now = Utc::now();
    LiveStatus {
        live,
        recovery,
        connected_since: None,
        clients: clients
            .names
            .iter()
            .map(|name| Resource {
                client: name.clone(),
                address: None,
                status: live,
                details: details.to_string(),
                since: now,
            })
            .collect(),
        sources: Vec::new(),
        targets: Vec::new(),
    }
}

/// The error of a failed connection test.
fn test_error(id: &str, e: &TransportError) -> DittoError {
    match e.kind {
        ErrorKind::Unauthorized => DittoError::new(
            StatusCode::UNAUTHORIZED,
            "connectivity:connection.unauthorized",
            format!("The Connection with ID '{id}' could not be established: the broker refused the credentials."),
        )
        .with_description(format!("{} Check the user and password in the connection URI (URL-encoded).", e.message)),
        ErrorKind::Misconfigured => DittoError::configuration_invalid(format!(
            "The Connection with ID '{id}' could not be established: {}",
            e.message
        )),
        _ => DittoError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "connectivity:connection.failed",
            format!("The Connection with ID '{id}' failed to connect."),
        )
        .with_description(format!(
            "{} Check that the broker runs and is reachable at the host and port of the connection URI.",
            e.message
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processor_pools_are_capped_at_the_configured_size() {
        let c = RuntimeConfig::default();
        assert_eq!(c.processors(1), 1);
        assert_eq!(c.processors(5), 5);
        assert_eq!(c.processors(50), 5, "Ditto's max-pool-size");
        let wide = RuntimeConfig {
            max_processor_pool_size: 64,
            ..c
        };
        assert_eq!(wide.processors(50), 50);
    }

    /// Cluster mode: a slot taken from its last owner starts from that owner's cursor; a slot
    /// whose supervisor runs on when its lease is taken again keeps its own; a connection whose
    /// `clientCount` changed starts its slots from nothing.
    #[tokio::test]
    async fn a_slot_keeps_the_cursor_of_its_share_of_the_things() {
        let store = Arc::new(crate::store::MemoryStore::default());
        let (twin, events) = crate::twin::TwinService::start_with_events(store)
            .await
            .unwrap();
        let runtime = Runtime::new(
            Hub::start(twin, events, Duration::from_secs(5)),
            RuntimeConfig::default(),
            Default::default(),
            hosts::HostRules::default(),
            MappingContext::default(),
        );
        runtime.took_slot("c", 1, 3, 7, Some(40));
        let running = runtime.slot("c", 1, 3);
        assert_eq!((running.cursor(), running.epoch()), (Some(40), 7));
        // Lost and taken back at once while its client ran on: its own cursor, the new epoch.
        runtime.took_slot("c", 1, 3, 9, Some(10));
        assert!(Arc::ptr_eq(&running, &runtime.slot("c", 1, 3)));
        assert_eq!((running.cursor(), running.epoch()), (Some(40), 9));
        drop(running);
        // Taken from another owner while nothing ran here: that owner's cursor.
        runtime.took_slot("c", 1, 3, 11, Some(50));
        assert_eq!(runtime.slot("c", 1, 3).cursor(), Some(50));
        // Two clients now: another share of the things.
        let fewer = runtime.slot("c", 1, 2);
        assert_eq!((fewer.count, fewer.cursor()), (2, None));
        assert_eq!(runtime.forget_slot("c", 1).map(|s| s.count), Some(2));
        assert!(runtime.slot_cursors().is_empty());
    }

    #[tokio::test]
    async fn the_hosts_size_limits_apply_where_a_connection_sets_none() {
        let store = Arc::new(crate::store::MemoryStore::default());
        let (twin, events) = crate::twin::TwinService::start_with_events(store)
            .await
            .unwrap();
        let hub = Hub::start(twin, events, Duration::from_secs(5));
        let limits = crate::model::ValidationLimits {
            amqp091_frame_max: 65_536,
            mqtt_maximum_packet_size: 2048,
            ..Default::default()
        };
        let runtime = Runtime::new(
            hub,
            RuntimeConfig::default(),
            limits,
            hosts::HostRules::default(),
            MappingContext::default(),
        );
        let mut c = crate::model::parse::connection_from_object(
            serde_json::json!({
                "id": "c", "connectionType": "amqp-091", "connectionStatus": "closed",
                "uri": "amqp://127.0.0.1:5672", "sources": [{"addresses": ["q"],
                "authorizationContext": ["a"]}]
            })
            .as_object()
            .unwrap()
            .clone(),
        )
        .unwrap();
        let config = runtime.client_config(&c, 0, false).unwrap();
        assert_eq!(config.specific_config["frameMax"], "65536");
        c.specific_config.insert("frameMax".into(), "8192".into());
        let config = runtime.client_config(&c, 0, false).unwrap();
        assert_eq!(
            config.specific_config["frameMax"], "8192",
            "the connection's own wins"
        );
        c.connection_type = ConnectionType::Mqtt5;
        let config = runtime.client_config(&c, 0, false).unwrap();
        assert_eq!(config.specific_config["maximumPacketSize"], "2048");
    }

    #[test]
    fn backoff_grows_with_jitter_up_to_the_maximum() {
        let c = RuntimeConfig {
            min_backoff_ms: 1000,
            max_backoff_ms: 10_000,
            ..Default::default()
        };
        let ms = |a| backoff(&c, a).as_millis() as u64;
        assert!((800..=1200).contains(&ms(1)));
        assert!((1600..=2400).contains(&ms(2)));
        assert!((3200..=4800).contains(&ms(3)));
        assert!((8000..=12_000).contains(&ms(10)));
        assert!((8000..=12_000).contains(&ms(60)));
    }

    #[test]
    fn test_errors_say_what_to_do() {
        let e = test_error(
            "c",
            &TransportError::new(ErrorKind::Unreachable, "connection refused by 127.0.0.1:1"),
        );
        assert_eq!(
            (e.status.as_u16(), e.error.as_ref()),
            (504, "connectivity:connection.failed")
        );
        assert!(e.description.unwrap().contains("127.0.0.1:1"));
        let e = test_error(
            "c",
            &TransportError::new(ErrorKind::Unauthorized, "ACCESS_REFUSED"),
        );
        assert_eq!(
            (e.status.as_u16(), e.error.as_ref()),
            (401, "connectivity:connection.unauthorized")
        );
    }
}
