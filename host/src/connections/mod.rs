//! The connection service: the one place where connections are created, changed, deleted and
//! commanded. It validates, persists through the [`ConnectionStore`], and keeps the live view
//! (the current record, its serialised JSON, metrics and logs) that reads are answered from.
//!
//! Writes are serialised by one async lock, held across the check of preconditions, the durable
//! write and the update of the live view, so concurrent writers to one id never lose or tear an
//! update and a reader sees either the old or the new revision. Writes to the store are
//! conditional on the revision they were based on: when another process sharing the store (an
//! instance of a cluster) wrote first, the record is read again and the write is checked once
//! more against it (an `If-Match` on the old revision then fails with 412). Changes made by other
//! processes reach this one through [`ConnectionService::sync`].

use crate::conditions::{PreconditionFailure, Preconditions};
use crate::error::DittoError;
use crate::model::parse::connection_from_object;
use crate::model::validate::validate;
use crate::model::{ConnectivityStatus, StoredConnection, ValidationLimits};
use crate::monitoring::logs::{ConnectionLogs, LogLimits};
use crate::monitoring::metrics::ConnectionMetrics;
use crate::runtime::Runtime;
use crate::store::{ConnectionStore, Expected, StoreError};
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

/// How often a write is tried again after another process changed the record meanwhile.
const CONFLICT_TRIES: usize = 5;

/// A store write's result: `Ok(None)` when another writer came first (read again and retry).
fn written<T>(id: &str, result: Result<T, StoreError>) -> Result<Option<T>, DittoError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(store_error(id)(e)),
    }
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
        let id = connection.id.clone();
        self.insert_new(connection)
            .await?
            .ok_or_else(|| DittoError::connection_conflict(&id))
    }

    /// Stores a new connection at revision 1, with logging enabled; `None` when the store holds
    /// one with this id already (written by another process). The caller holds `write`.
    async fn insert_new(
        &self,
        connection: crate::model::Connection,
    ) -> Result<Option<Arc<Entry>>, DittoError> {
        let now = Utc::now();
        let record = StoredConnection {
            connection,
            revision: 1,
            created: now,
            modified: now,
        };
        let put = self.store.put(record.clone(), Expected::Absent).await;
        if written(record.id(), put)?.is_none() {
            return Ok(None);
        }
        let logs = self.new_logs(record.id(), true, now);
        tracing::info!(connection = record.id(), "connection created");
        Ok(Some(self.activate(Entry::new(record, logs)).await))
    }

    /// The logs of a connection new to this instance, enabled from `now` when `enabled`.
    fn new_logs(&self, id: &str, enabled: bool, now: chrono::DateTime<Utc>) -> ConnectionLogs {
        let mut logs =
            ConnectionLogs::new(self.log_limits).publish_to(self.log_publisher.clone(), id);
        if enabled {
            logs.enable(now);
        }
        logs
    }

    /// Makes the live view of `id` what the store holds (another process may have changed it)
    /// and the runtime follow. The caller holds `write`.
    async fn refresh(&self, id: &str) -> Result<(), StoreError> {
        let stored = self.store.load(id.to_string()).await?;
        self.follow(id, stored).await;
        Ok(())
    }

    /// Takes over `stored` as the record of `id` when it differs from the live view.
    async fn follow(&self, id: &str, stored: Option<StoredConnection>) {
        let now = Utc::now();
        match (stored, self.get(id)) {
            (Some(record), Some(old)) if record.revision != old.record.revision => {
                if record.connection.connection_status == ConnectivityStatus::Open {
                    lock(&old.logs).enable(now);
                }
                tracing::info!(
                    connection = id,
                    revision = record.revision,
                    "connection changed elsewhere"
                );
                self.activate(old.next(record)).await;
            }
            (Some(record), None) => {
                let open = record.connection.connection_status == ConnectivityStatus::Open;
                let logs = self.new_logs(id, open, now);
                tracing::info!(connection = id, "connection created elsewhere");
                self.activate(Entry::new(record, logs)).await;
            }
            (None, Some(_)) => {
                tracing::info!(connection = id, "connection deleted elsewhere");
                self.forget(id).await;
            }
            _ => {}
        }
    }

    /// Reads one connection again from the store (another process changed it).
    pub async fn sync(&self, id: &str) -> Result<(), StoreError> {
        let _guard = self.write.lock().await;
        self.refresh(id).await
    }

    /// Reads every connection again from the store: what another process changed is taken
    /// over, what it deleted is stopped.
    pub async fn sync_all(&self) -> Result<(), StoreError> {
        let _guard = self.write.lock().await;
        let stored = self.store.load_all().await?;
        let mut gone: std::collections::HashSet<String> = self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for record in stored {
            let id = record.id().to_string();
            gone.remove(&id);
            self.follow(&id, Some(record)).await;
        }
        for id in gone {
            self.follow(&id, None).await;
        }
        Ok(())
    }

    /// Removes a connection from the live view and stops it. The caller holds `write`.
    async fn forget(&self, id: &str) {
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        self.runtime.stop(id).await;
        if let Some(m) = crate::monitoring::prometheus::global() {
            m.forget_connection(id);
        }
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
        for _ in 0..CONFLICT_TRIES {
            let result = self
                .write_checked(id, connection.clone(), preconditions, existence)
                .await?;
            match result {
                Some(upserted) => return Ok(upserted),
                None => self.refresh(id).await.map_err(store_error(id))?,
            }
        }
        Err(store_error(id)(StoreError::Conflict(id.to_string())))
    }

    /// One try of a write by id against the live view; `None` when the store had changed
    /// meanwhile. The caller holds `write`.
    async fn write_checked(
        &self,
        id: &str,
        connection: crate::model::Connection,
        preconditions: &Preconditions,
        existence: Existence,
    ) -> Result<Option<Upserted>, DittoError> {
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
                let put = self
                    .store
                    .put(record.clone(), Expected::Revision(old.record.revision))
                    .await;
                if written(id, put)?.is_none() {
                    return Ok(None);
                }
                if record.connection.connection_status == ConnectivityStatus::Open {
                    lock(&old.logs).enable(now);
                }
                tracing::info!(
                    connection = id,
                    revision = record.revision,
                    "connection modified"
                );
                Ok(Some(Upserted::Modified(
                    self.activate(old.next(record)).await,
                )))
            }
            None => Ok(self.insert_new(connection).await?.map(Upserted::Created)),
        }
    }

    pub async fn delete(&self, id: &str, preconditions: &Preconditions) -> Result<(), DittoError> {
        let _guard = self.write.lock().await;
        for _ in 0..CONFLICT_TRIES {
            let existing = self.require(id)?;
            preconditions
                .check(Some(&existing.record.etag()), false)
                .map_err(PreconditionFailure::into_error)?;
            let deleted = self
                .store
                .delete(id.to_string(), existing.record.revision)
                .await;
            match written(id, deleted)? {
                Some(_) => {
                    self.forget(id).await;
                    tracing::info!(connection = id, "connection deleted");
                    return Ok(());
                }
                None => self.refresh(id).await.map_err(store_error(id))?,
            }
        }
        Err(store_error(id)(StoreError::Conflict(id.to_string())))
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
                let mut tries = 0;
                let (old, record, now) = loop {
                    let old = self.require(id)?;
                    let now = Utc::now();
                    let mut record = old.record.clone();
                    record.connection.connection_status = status;
                    record.revision += 1;
                    record.modified = now;
                    let put = self
                        .store
                        .put(record.clone(), Expected::Revision(old.record.revision))
                        .await;
                    if written(id, put)?.is_some() {
                        break (old, record, now);
                    }
                    tries += 1;
                    if tries == CONFLICT_TRIES {
                        return Err(store_error(id)(StoreError::Conflict(id.to_string())));
                    }
                    self.refresh(id).await.map_err(store_error(id))?;
                };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use axum::http::HeaderMap;
    use serde_json::json;

    /// A service on `store`, as one instance of a cluster sharing it.
    async fn instance(store: Arc<MemoryStore>) -> ConnectionService {
        let (twin, events) =
            crate::twin::TwinService::start_with_events(Arc::new(MemoryStore::default()))
                .await
                .unwrap();
        let hub = crate::hub::Hub::start(twin, events, std::time::Duration::from_secs(5));
        let runtime = Runtime::new(
            hub,
            Default::default(),
            ValidationLimits::default(),
            Default::default(),
            Default::default(),
        );
        ConnectionService::load(
            store,
            ValidationLimits::default(),
            LogLimits::default(),
            runtime,
            None,
        )
        .await
        .unwrap()
    }

    fn body(name: &str) -> Map<String, Value> {
        json!({"name": name, "connectionType": "mqtt", "connectionStatus": "closed",
               "uri": "tcp://127.0.0.1:1883",
               "sources": [{"addresses": ["a/b"], "qos": 1, "authorizationContext": ["x"]}]})
        .as_object()
        .unwrap()
        .clone()
    }

    fn if_match(etag: &str) -> Preconditions {
        let mut h = HeaderMap::new();
        h.insert("if-match", etag.parse().unwrap());
        Preconditions::from_headers(&h)
    }

    #[tokio::test]
    async fn writers_sharing_a_store_have_one_winner_per_revision() {
        let store = Arc::new(MemoryStore::default());
        let (a, b) = (instance(store.clone()).await, instance(store.clone()).await);
        a.put("c", body("first"), &Preconditions::default())
            .await
            .ok()
            .unwrap();
        b.sync("c").await.unwrap();
        assert_eq!(b.require("c").unwrap().record.revision, 1);

        // A changes it; B, not told yet, writes on the revision it saw: 412, nothing written.
        a.put("c", body("by-a"), &if_match("\"rev:1\""))
            .await
            .ok()
            .unwrap();
        let stale = b.put("c", body("by-b"), &if_match("\"rev:1\"")).await;
        let e = stale.err().expect("the stale write fails");
        assert_eq!(e.status.as_u16(), 412, "{e:?}");
        assert_eq!(
            b.require("c").unwrap().record.revision,
            2,
            "B read it again"
        );
        assert_eq!(
            b.require("c").unwrap().record.connection.name.as_deref(),
            Some("by-a")
        );

        // Without a precondition, B's write goes on top of A's.
        a.put("c", body("by-a-again"), &Preconditions::default())
            .await
            .ok()
            .unwrap();
        b.put("c", body("by-b"), &Preconditions::default())
            .await
            .ok()
            .unwrap();
        let stored = store.load("c".into()).await.unwrap().unwrap();
        assert_eq!(
            (stored.revision, stored.connection.name.as_deref()),
            (4, Some("by-b"))
        );

        // A create of an id another writer created meanwhile is a conflict (409).
        b.put("d", body("b"), &Preconditions::default())
            .await
            .ok()
            .unwrap();
        let e = a
            .write_by_id("d", body("a"), &Preconditions::default(), Existence::New)
            .await
            .err()
            .unwrap();
        assert_eq!(e.status.as_u16(), 409);

        // A delete on a stale revision reads again and deletes what is there; the other
        // instance follows.
        a.delete("c", &Preconditions::default()).await.unwrap();
        assert!(store.load("c".into()).await.unwrap().is_none());
        b.sync_all().await.unwrap();
        assert!(b.get("c").is_none());
        assert!(b.get("d").is_some() && a.get("d").is_some());
    }
}
