//! The connection service: the one place where connections are created, changed, deleted and
//! commanded. It validates, persists through the [`ConnectionStore`], and keeps the live view
//! (the current record, its serialised JSON, metrics and logs) that reads are answered from.
//!
//! Writes are serialised by one async lock, held across the check of preconditions, the durable
//! write and the update of the live view, so concurrent writers to one id never lose or tear an
//! update and a reader sees either the old or the new revision.

use crate::conditions::{PreconditionFailure, Preconditions};
use crate::error::DittoError;
use crate::model::parse::connection_from_object;
use crate::model::validate::validate;
use crate::model::{ConnectivityStatus, StoredConnection, ValidationLimits};
use crate::monitoring::logs::{ConnectionLogs, LogLimits};
use crate::monitoring::metrics::ConnectionMetrics;
use crate::runtime::Runtime;
use crate::store::ConnectionStore;
use bytes::Bytes;
use chrono::Utc;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// One connection as the service holds it.
pub struct Entry {
    pub record: StoredConnection,
    /// The connection JSON without special fields, serialised once per revision.
    pub body: Bytes,
    pub metrics: Arc<ConnectionMetrics>,
    pub logs: Arc<Mutex<ConnectionLogs>>,
}

impl Entry {
    /// The entry of a connection that had none (created, or loaded at start).
    fn new(record: StoredConnection, logs: ConnectionLogs) -> Entry {
        let metrics = ConnectionMetrics::new(sources(&record), targets(&record));
        Entry::with(record, Arc::new(Mutex::new(logs)), metrics)
    }

    /// The entry that replaces this one (a modify, open or close): it goes on with its logs
    /// and with the metrics of the addresses it keeps.
    fn next(&self, record: StoredConnection) -> Entry {
        let metrics =
            ConnectionMetrics::continuing(&self.metrics, sources(&record), targets(&record));
        Entry::with(record, self.logs.clone(), metrics)
    }

    fn with(
        record: StoredConnection,
        logs: Arc<Mutex<ConnectionLogs>>,
        metrics: ConnectionMetrics,
    ) -> Entry {
        let body = Bytes::from(
            serde_json::to_vec(&Value::Object(record.to_json(None)))
                .expect("a connection serialises"),
        );
        let metrics = Arc::new(metrics.exported_as(record.id()));
        Entry {
            record,
            body,
            metrics,
            logs,
        }
    }
}

/// The addresses a connection's metrics are registered for.
fn sources(record: &StoredConnection) -> impl Iterator<Item = String> + '_ {
    let c = &record.connection;
    c.sources.iter().flat_map(|s| s.addresses.iter().cloned())
}

fn targets(record: &StoredConnection) -> impl Iterator<Item = String> + '_ {
    record.connection.targets.iter().map(|t| t.address.clone())
}

/// Whether a write by id may create, may modify, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existence {
    /// PUT: create or modify.
    Any,
    /// Only create: an existing id is a conflict (409).
    New,
    /// Only modify: a missing id is not found (404).
    Existing,
}

/// The result of a PUT.
pub enum Upserted {
    Created(Arc<Entry>),
    Modified(Arc<Entry>),
}

/// The `text/plain` commands of `POST /api/2/connections/{id}/command`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Open,
    Close,
    ResetMetrics,
    EnableLogs,
    ResetLogs,
}

impl Command {
    pub fn parse(text: &str) -> Result<Command, DittoError> {
        match text.trim() {
            "connectivity.commands:openConnection" => Ok(Command::Open),
            "connectivity.commands:closeConnection" => Ok(Command::Close),
            "connectivity.commands:resetConnectionMetrics" => Ok(Command::ResetMetrics),
            "connectivity.commands:enableConnectionLogs" => Ok(Command::EnableLogs),
            "connectivity.commands:resetConnectionLogs" => Ok(Command::ResetLogs),
            other => Err(DittoError::command_invalid(other)),
        }
    }

    /// The `type` of the command's response.
    pub fn response_type(self) -> &'static str {
        match self {
            Command::Open => "connectivity.responses:openConnection",
            Command::Close => "connectivity.responses:closeConnection",
            Command::ResetMetrics => "connectivity.responses:resetConnectionMetrics",
            Command::EnableLogs => "connectivity.responses:enableConnectionLogs",
            Command::ResetLogs => "connectivity.responses:resetConnectionLogs",
        }
    }
}

pub struct ConnectionService {
    store: Arc<dyn ConnectionStore>,
    entries: RwLock<HashMap<String, Arc<Entry>>>,
    write: tokio::sync::Mutex<()>,
    limits: ValidationLimits,
    log_limits: LogLimits,
    runtime: Arc<Runtime>,
    log_publisher: Option<Arc<crate::monitoring::fluentd::FluentPublisher>>,
}

/// The store refused a change (a full disk, a read-only data directory): nothing was applied,
/// and the client may try again (503, as Ditto answers when its persistence is unavailable).
fn store_error(id: &str) -> impl FnOnce(crate::store::StoreError) -> DittoError + '_ {
    move |e| {
        tracing::error!(connection = id, error = %e, "connection store failed");
        DittoError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "connectivity:connection.unavailable",
            format!("The Connection with ID '{id}' is not available, please try again later."),
        )
        .with_description(format!(
            "The change was not applied because it could not be persisted ({e})."
        ))
    }
}

impl ConnectionService {
    /// Loads every stored connection. Logging is enabled for those whose desired status is open,
    /// as opening them does.
    pub async fn load(
        store: Arc<dyn ConnectionStore>,
        limits: ValidationLimits,
        log_limits: LogLimits,
        runtime: Arc<Runtime>,
        log_publisher: Option<Arc<crate::monitoring::fluentd::FluentPublisher>>,
    ) -> Result<ConnectionService, crate::store::StoreError> {
        let now = Utc::now();
        let mut entries = HashMap::new();
        for record in store.load_all().await? {
            let mut logs =
                ConnectionLogs::new(log_limits).publish_to(log_publisher.clone(), record.id());
            if record.connection.connection_status == ConnectivityStatus::Open {
                logs.enable(now);
            }
            let entry = Entry::new(record, logs);
            entries.insert(entry.record.id().to_string(), Arc::new(entry));
        }
        for entry in entries.values() {
            runtime
                .apply(
                    entry.record.connection.clone(),
                    entry.metrics.clone(),
                    entry.logs.clone(),
                )
                .await;
        }
        Ok(ConnectionService {
            store,
            entries: RwLock::new(entries),
            write: tokio::sync::Mutex::new(()),
            limits,
            log_limits,
            runtime,
            log_publisher,
        })
    }

    /// Stops every connection gracefully: closed announcements, in-flight messages settled.
    pub async fn shutdown(&self) {
        self.runtime.stop_all().await;
    }

    /// How many connections are open (live status), for `GET /metrics`.
    pub async fn open_count(&self) -> usize {
        self.runtime.open_count().await
    }

    /// The live status of a connection, from its supervisor.
    pub async fn live_status(&self, id: &str) -> crate::runtime::status::LiveStatus {
        self.runtime.status(id).await
    }

    /// Publishes the entry to readers and makes the runtime follow it. The caller holds `write`,
    /// so the runtime sees the changes of one connection in the order they were stored.
    async fn activate(&self, entry: Entry) -> Arc<Entry> {
        let entry = self.publish(entry);
        self.runtime
            .apply(
                entry.record.connection.clone(),
                entry.metrics.clone(),
                entry.logs.clone(),
            )
            .await;
        entry
    }

    pub fn get(&self, id: &str) -> Option<Arc<Entry>> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    pub fn require(&self, id: &str) -> Result<Arc<Entry>, DittoError> {
        self.get(id)
            .ok_or_else(|| DittoError::connection_not_found(id))
    }

    /// All connections, ordered by id.
    pub fn list(&self) -> Vec<Arc<Entry>> {
        let mut all: Vec<Arc<Entry>> = self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.record.id().cmp(b.record.id()));
        all
    }

    pub fn count(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn publish(&self, entry: Entry) -> Arc<Entry> {
        let entry = Arc::new(entry);
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.record.id().to_string(), entry.clone());
        entry
    }

    /// Parses and validates a connection document whose `id` member is set.
    pub async fn build(
        &self,
        object: Map<String, Value>,
    ) -> Result<crate::model::Connection, DittoError> {
        let mut connection = connection_from_object(object)?;
        validate(&mut connection, &self.limits)?;
        self.runtime.check(&connection).await?;
        Ok(connection)
    }

    /// POST: a new connection with a generated id. A body with an `id` is refused.
    pub async fn create(&self, mut object: Map<String, Value>) -> Result<Arc<Entry>, DittoError> {
        if object.contains_key("id") {
            return Err(DittoError::id_not_settable());
        }
        let id = uuid::Uuid::new_v4().to_string();
        object.insert("id".into(), Value::String(id));
        object
            .entry("connectionStatus")
            .or_insert_with(|| Value::String("unknown".into()));
        let connection = self.build(object).await?;
        let _guard = self.write.lock().await;
        self.insert_new(connection).await
    }

    /// Stores a new connection at revision 1, with logging enabled. The caller holds `write`.
    async fn insert_new(
        &self,
        connection: crate::model::Connection,
    ) -> Result<Arc<Entry>, DittoError> {
        let now = Utc::now();
        let record = StoredConnection {
            connection,
            revision: 1,
            created: now,
            modified: now,
        };
        self.store
            .put(record.clone())
            .await
            .map_err(store_error(record.id()))?;
        let mut logs = ConnectionLogs::new(self.log_limits)
            .publish_to(self.log_publisher.clone(), record.id());
        logs.enable(now);
        tracing::info!(connection = record.id(), "connection created");
        Ok(self.activate(Entry::new(record, logs)).await)
    }

    /// POST with `?dry-run=true`: everything a create checks, then a connection test against the
    /// broker (connect, check sources and targets, disconnect); nothing persisted. Any `id` in
    /// the body is replaced by `<uuid>-dry-run`.
    pub async fn dry_run(&self, mut object: Map<String, Value>) -> Result<String, DittoError> {
        let id = format!("{}-dry-run", uuid::Uuid::new_v4());
        object.insert("id".into(), Value::String(id.clone()));
        object
            .entry("connectionStatus")
            .or_insert_with(|| Value::String("unknown".into()));
        let connection = self.build(object).await?;
        self.runtime.test(&connection).await?;
        Ok(id)
    }

    /// PUT: modifies an existing connection (revision + 1) or creates it (upsert).
    pub async fn put(
        &self,
        id: &str,
        object: Map<String, Value>,
        preconditions: &Preconditions,
    ) -> Result<Upserted, DittoError> {
        self.write_by_id(id, object, preconditions, Existence::Any)
            .await
    }

    /// A write by id that may create, modify or both (`existence`), checked under the write
    /// lock.
    pub async fn write_by_id(
        &self,
        id: &str,
        mut object: Map<String, Value>,
        preconditions: &Preconditions,
        existence: Existence,
    ) -> Result<Upserted, DittoError> {
        if !crate::model::validate::is_valid_connection_id(id) {
            return Err(DittoError::connection_id_invalid(id));
        }
        match object.get("id") {
            Some(Value::String(body_id)) if body_id != id => {
                return Err(DittoError::id_mismatch(id, body_id));
            }
            Some(Value::String(_)) | None => {}
            Some(_) => {
                return Err(DittoError::json_invalid(
                    "The value at </id> is not valid: it must be a string.",
                ));
            }
        }
        object.insert("id".into(), Value::String(id.to_string()));
        let connection = self.build(object).await?;

        let _guard = self.write.lock().await;
        let existing = self.get(id);
        match (existence, &existing) {
            (Existence::New, Some(_)) => return Err(DittoError::connection_conflict(id)),
            (Existence::Existing, None) => return Err(DittoError::connection_not_found(id)),
            _ => {}
        }
        preconditions
            .check(existing.as_ref().map(|e| e.record.etag()).as_deref(), false)
            .map_err(PreconditionFailure::into_error)?;
        let now = Utc::now();
        match existing {
            Some(old) => {
                let old_type = old.record.connection.connection_type;
                if old_type != connection.connection_type {
                    return Err(DittoError::configuration_invalid(format!(
                        "ConnectionType <{}> of existing connection <{id}> cannot be changed!",
                        old_type.as_str()
                    ))
                    .with_description(
                        "Delete the connection and create it again with the other type.",
                    ));
                }
                let record = StoredConnection {
                    connection,
                    revision: old.record.revision + 1,
                    created: old.record.created,
                    modified: now,
                };
                self.store
                    .put(record.clone())
                    .await
                    .map_err(store_error(record.id()))?;
                if record.connection.connection_status == ConnectivityStatus::Open {
                    lock(&old.logs).enable(now);
                }
                tracing::info!(
                    connection = id,
                    revision = record.revision,
                    "connection modified"
                );
                Ok(Upserted::Modified(self.activate(old.next(record)).await))
            }
            None => Ok(Upserted::Created(self.insert_new(connection).await?)),
        }
    }

    pub async fn delete(&self, id: &str, preconditions: &Preconditions) -> Result<(), DittoError> {
        let _guard = self.write.lock().await;
        let existing = self.require(id)?;
        preconditions
            .check(Some(&existing.record.etag()), false)
            .map_err(PreconditionFailure::into_error)?;
        self.store
            .delete(id.to_string())
            .await
            .map_err(store_error(id))?;
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        self.runtime.stop(id).await;
        if let Some(m) = crate::monitoring::prometheus::global() {
            m.forget_connection(id);
        }
        tracing::info!(connection = id, "connection deleted");
        Ok(())
    }

    pub async fn command(&self, id: &str, command: Command) -> Result<(), DittoError> {
        match command {
            Command::Open | Command::Close => {
                let status = if command == Command::Open {
                    ConnectivityStatus::Open
                } else {
                    ConnectivityStatus::Closed
                };
                let _guard = self.write.lock().await;
                let old = self.require(id)?;
                let now = Utc::now();
                let mut record = old.record.clone();
                record.connection.connection_status = status;
                record.revision += 1;
                record.modified = now;
                self.store
                    .put(record.clone())
                    .await
                    .map_err(store_error(record.id()))?;
                if command == Command::Open {
                    lock(&old.logs).enable(now);
                }
                tracing::info!(
                    connection = id,
                    status = status.as_str(),
                    "desired status changed"
                );
                self.activate(old.next(record)).await;
            }
            Command::ResetMetrics => self.require(id)?.metrics.reset(),
            Command::EnableLogs => lock(&self.require(id)?.logs).enable(Utc::now()),
            Command::ResetLogs => lock(&self.require(id)?.logs).clear(),
        }
        Ok(())
    }
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
