//! The cluster's store of record: connections in PostgreSQL, written conditionally on their
//! revision, with a notification to every instance in the same transaction.

use super::ClusterConfig;
use crate::mappers::MapperMeta;
use crate::mappers::shared::{SharedModules, StoredModule};
use crate::model::StoredConnection;
use crate::store::redb_store::{decode_connection, encode_connection};
use crate::store::{
    ConnectionStore, Expected, FieldCipher, LoggedEvent, StoreError, StoreFuture, ThingChange,
    ThingStore,
};
use crate::twin::StoredThing;
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use std::sync::Arc;
use std::time::Duration;

/// The schema, created or migrated at start (sqlx's migrator: applied once, recorded in
/// `_sqlx_migrations`, serialised between instances by an advisory lock).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The channel that carries the id of every changed connection.
pub const CONNECTIONS_CHANNEL: &str = "ferrule_connections";
/// The channel that carries the id of every changed mapper module.
pub const MODULES_CHANNEL: &str = "ferrule_modules";

/// How often every connection is read again, whatever the notifications said.
const RESYNC: Duration = Duration::from_secs(30);

fn storage(e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(e.to_string())
}

/// A failed statement of a conditional write: a deadlock or serialization failure means another
/// instance wrote the same rows at the same time (a conflict: read again and retry).
fn raced(e: sqlx::Error) -> StoreError {
    let code = e
        .as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.to_string());
    match code.as_deref() {
        Some("40P01") | Some("40001") => StoreError::Conflict(e.to_string()),
        _ => storage(e),
    }
}

/// Opens a pool on the cluster's database and migrates its schema. The instance's sessions
/// are named `ferrule:<node_id>` (`application_name`), so peers see in `pg_stat_activity`
/// whether it is still connected.
///
/// A session that sits in an open transaction for `lease_ttl_ms` is ended by PostgreSQL
/// (`idle_in_transaction_session_timeout`): an instance whose network went silent between
/// a transaction's first statement and its commit would otherwise hold that transaction's row
/// locks until the server noticed the dead connection (hours of TCP keepalive), and every other
/// instance's write to those things would wait for them and fail on `statement_timeout`. The
/// silent instance has stopped its clients by then (its leases end after the same time).
pub async fn connect(config: &ClusterConfig) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = config
        .postgres_url
        .parse()
        .map_err(|e| anyhow::anyhow!("[cluster] postgres_url is not valid: {e}"))?;
    let options = options
        .application_name(&format!("ferrule:{}", config.node_id))
        .options([
            ("statement_timeout", "10s".to_string()),
            (
                "idle_in_transaction_session_timeout",
                format!("{}ms", config.lease_ttl_ms.max(1)),
            ),
        ])
        .disable_statement_logging();
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(None)
        .connect_with(options)
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot connect to PostgreSQL ([cluster] postgres_url): {e}")
        })?;
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| anyhow::anyhow!("the cluster schema cannot be migrated: {e}"))?;
    Ok(pool)
}

pub struct PgStore {
    pool: PgPool,
    cipher: Option<Arc<FieldCipher>>,
}

impl PgStore {
    pub fn new(pool: PgPool, cipher: Option<FieldCipher>) -> PgStore {
        PgStore {
            pool,
            cipher: cipher.map(Arc::new),
        }
    }

    fn decode(&self, id: &str, doc: &str) -> Result<StoredConnection, StoreError> {
        Ok(decode_connection(id, doc.as_bytes(), self.cipher.as_deref())?.0)
    }
}

impl ConnectionStore for PgStore {
    fn load_all(&self) -> StoreFuture<'_, Vec<StoredConnection>> {
        Box::pin(async move {
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT id, doc FROM connections ORDER BY id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(storage)?;
            rows.iter().map(|(id, doc)| self.decode(id, doc)).collect()
        })
    }

    fn load(&self, id: String) -> StoreFuture<'_, Option<StoredConnection>> {
        Box::pin(async move {
            let row: Option<(String,)> =
                sqlx::query_as("SELECT doc FROM connections WHERE id = $1")
                    .bind(&id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(storage)?;
            row.map(|(doc,)| self.decode(&id, &doc)).transpose()
        })
    }

    fn put(&self, record: StoredConnection, expected: Expected) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let bytes = encode_connection(&record, self.cipher.as_deref())?;
            let doc = String::from_utf8(bytes).map_err(storage)?;
            let revision = record.revision as i64;
            let mut tx = self.pool.begin().await.map_err(storage)?;
            let written = match expected {
                Expected::Absent => sqlx::query(
                    "INSERT INTO connections (id, revision, doc) VALUES ($1, $2, $3) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(record.id())
                .bind(revision)
                .bind(&doc),
                Expected::Revision(old) => sqlx::query(
                    "UPDATE connections SET revision = $2, doc = $3 WHERE id = $1 AND revision = $4",
                )
                .bind(record.id())
                .bind(revision)
                .bind(&doc)
                .bind(old as i64),
            }
            .execute(&mut *tx)
            .await
            .map_err(storage)?
            .rows_affected();
            if written == 0 {
                return Err(StoreError::Conflict(record.id().to_string()));
            }
            notify(&mut tx, record.id()).await?;
            tx.commit().await.map_err(storage)
        })
    }

    fn delete(&self, id: String, revision: u64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(storage)?;
            let deleted = sqlx::query("DELETE FROM connections WHERE id = $1 AND revision = $2")
                .bind(&id)
                .bind(revision as i64)
                .execute(&mut *tx)
                .await
                .map_err(storage)?
                .rows_affected();
            if deleted == 0 {
                let stored: Option<(i64,)> =
                    sqlx::query_as("SELECT revision FROM connections WHERE id = $1")
                        .bind(&id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(storage)?;
                return match stored {
                    None => Ok(false),
                    Some(_) => Err(StoreError::Conflict(id)),
                };
            }
            notify(&mut tx, &id).await?;
            tx.commit().await.map_err(storage)?;
            Ok(true)
        })
    }
}

fn change_id(c: &ThingChange) -> &str {
    match c {
        ThingChange::Put(t) => t.id(),
        ThingChange::Delete(id) => id,
    }
}

fn thing_from(id: &str, doc: &str) -> Result<StoredThing, StoreError> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(format!("thing '{id}': {e}")))
}

impl ThingStore for PgStore {
    fn load_things(&self) -> StoreFuture<'_, Vec<StoredThing>> {
        Box::pin(async move {
            let rows: Vec<(String, String)> = sqlx::query_as("SELECT id, doc FROM things")
                .fetch_all(&self.pool)
                .await
                .map_err(storage)?;
            rows.iter().map(|(id, doc)| thing_from(id, doc)).collect()
        })
    }

    fn load_thing(&self, id: String) -> StoreFuture<'_, Option<StoredThing>> {
        Box::pin(async move {
            let row: Option<(String,)> = sqlx::query_as("SELECT doc FROM things WHERE id = $1")
                .bind(&id)
                .fetch_optional(&self.pool)
                .await
                .map_err(storage)?;
            row.map(|(doc,)| thing_from(&id, &doc)).transpose()
        })
    }

    fn write_things(&self, changes: Vec<ThingChange>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(storage)?;
            for change in changes {
                match change {
                    ThingChange::Put(t) => {
                        let doc = serde_json::to_string(&*t).map_err(storage)?;
                        sqlx::query(
                            "INSERT INTO things (id, revision, doc) VALUES ($1, $2, $3) \
                             ON CONFLICT (id) DO UPDATE SET revision = $2, doc = $3",
                        )
                        .bind(t.id())
                        .bind(t.revision as i64)
                        .bind(doc)
                        .execute(&mut *tx)
                        .await
                        .map_err(storage)?;
                    }
                    ThingChange::Delete(id) => {
                        sqlx::query("DELETE FROM things WHERE id = $1")
                            .bind(id)
                            .execute(&mut *tx)
                            .await
                            .map_err(storage)?;
                    }
                }
            }
            tx.commit().await.map_err(storage)
        })
    }

    /// The event log every instance reads ([`super::events`]).
    fn keeps_events(&self) -> bool {
        true
    }

    /// All of the batch in one statement (`ferrule_write_batch`, one round trip), each write
    /// conditional on the revision it was based on; the first thing another instance changed
    /// meanwhile fails all of it. The batch's events go into the log in the same statement, in
    /// the order given.
    fn write_things_checked(
        &self,
        mut changes: Vec<(ThingChange, Option<u64>)>,
        events: Vec<LoggedEvent>,
    ) -> StoreFuture<'_, ()> {
        // Rows are written (and locked) in the order of their ids: two instances writing the
        // same things never wait for each other in a cycle. A delete of a thing that was not
        // there writes nothing.
        changes.retain(|c| !matches!(c, (ThingChange::Delete(_), None)));
        changes.sort_by(|a, b| change_id(&a.0).cmp(change_id(&b.0)));
        Box::pin(async move {
            if changes.is_empty() {
                return Ok(());
            }
            let n = changes.len();
            let (mut ids, mut revisions, mut docs, mut bases) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for (change, before) in &changes {
                ids.push(change_id(change));
                bases.push(before.map(|b| b as i64));
                match change {
                    ThingChange::Put(t) => {
                        revisions.push(t.revision as i64);
                        docs.push(Some(serde_json::to_string(&**t).map_err(storage)?));
                    }
                    ThingChange::Delete(_) => {
                        revisions.push(0);
                        docs.push(None);
                    }
                }
            }
            let (mut event_things, mut event_revisions, mut event_bodies) = (
                Vec::with_capacity(events.len()),
                Vec::with_capacity(events.len()),
                Vec::with_capacity(events.len()),
            );
            for event in events {
                event_things.push(event.thing);
                event_revisions.push(event.revision.map(|r| r as i64));
                event_bodies.push(event.json);
            }
            sqlx::query("SELECT ferrule_write_batch($1, $2, $3, $4, $5, $6, $7)")
                .bind(ids)
                .bind(revisions)
                .bind(docs)
                .bind(bases)
                .bind(event_things)
                .bind(event_revisions)
                .bind(event_bodies)
                .execute(&self.pool)
                .await
                .map_err(raced)?;
            Ok(())
        })
    }
}

fn module_from(meta: &str, bytes: Vec<u8>) -> Result<StoredModule, StoreError> {
    let meta: MapperMeta = serde_json::from_str(meta)
        .map_err(|e| StoreError::Corrupt(format!("mapper module metadata: {e}")))?;
    Ok((meta, bytes))
}

impl SharedModules for PgStore {
    fn load_all_modules(&self) -> StoreFuture<'_, Vec<StoredModule>> {
        Box::pin(async move {
            let rows: Vec<(String, Vec<u8>)> =
                sqlx::query_as("SELECT meta, bytes FROM modules ORDER BY id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(storage)?;
            rows.into_iter()
                .map(|(meta, bytes)| module_from(&meta, bytes))
                .collect()
        })
    }

    fn load_module(&self, id: String) -> StoreFuture<'_, Option<StoredModule>> {
        Box::pin(async move {
            let row: Option<(String, Vec<u8>)> =
                sqlx::query_as("SELECT meta, bytes FROM modules WHERE id = $1")
                    .bind(&id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(storage)?;
            row.map(|(meta, bytes)| module_from(&meta, bytes))
                .transpose()
        })
    }

    fn put_module(
        &self,
        meta: MapperMeta,
        bytes: Vec<u8>,
        expected: Option<u64>,
    ) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let json = serde_json::to_string(&meta).map_err(storage)?;
            let mut tx = self.pool.begin().await.map_err(storage)?;
            let written = match expected {
                None => sqlx::query(
                    "INSERT INTO modules (id, version, meta, bytes) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(&meta.id)
                .bind(meta.version as i64)
                .bind(&json)
                .bind(&bytes),
                Some(old) => sqlx::query(
                    "UPDATE modules SET version = $2, meta = $3, bytes = $4 \
                     WHERE id = $1 AND version = $5",
                )
                .bind(&meta.id)
                .bind(meta.version as i64)
                .bind(&json)
                .bind(&bytes)
                .bind(old as i64),
            }
            .execute(&mut *tx)
            .await
            .map_err(storage)?
            .rows_affected();
            if written == 0 {
                return Err(StoreError::Conflict(meta.id));
            }
            let kept = crate::mappers::versions::version_meta(&meta);
            sqlx::query(
                "INSERT INTO module_versions (id, version, meta, bytes) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id, version) DO NOTHING",
            )
            .bind(&meta.id)
            .bind(meta.version as i64)
            .bind(serde_json::to_string(&kept).map_err(storage)?)
            .bind(&bytes)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
            notify_on(&mut tx, MODULES_CHANNEL, &meta.id).await?;
            tx.commit().await.map_err(storage)
        })
    }

    fn delete_module(&self, id: String, version: u64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(storage)?;
            let deleted = sqlx::query("DELETE FROM modules WHERE id = $1 AND version = $2")
                .bind(&id)
                .bind(version as i64)
                .execute(&mut *tx)
                .await
                .map_err(storage)?
                .rows_affected();
            if deleted == 0 {
                return Err(StoreError::Conflict(id));
            }
            sqlx::query("DELETE FROM module_versions WHERE id = $1")
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
            notify_on(&mut tx, MODULES_CHANNEL, &id).await?;
            tx.commit().await.map_err(storage)
        })
    }

    fn load_versions(&self, id: String) -> StoreFuture<'_, Vec<MapperMeta>> {
        Box::pin(async move {
            let rows: Vec<(String,)> =
                sqlx::query_as("SELECT meta FROM module_versions WHERE id = $1 ORDER BY version")
                    .bind(&id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(storage)?;
            rows.into_iter()
                .map(|(meta,)| module_from(&meta, Vec::new()).map(|(m, _)| m))
                .collect()
        })
    }

    fn load_version(&self, id: String, version: u64) -> StoreFuture<'_, Option<Vec<u8>>> {
        Box::pin(async move {
            let row: Option<(Vec<u8>,)> =
                sqlx::query_as("SELECT bytes FROM module_versions WHERE id = $1 AND version = $2")
                    .bind(&id)
                    .bind(version as i64)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(storage)?;
            Ok(row.map(|(bytes,)| bytes))
        })
    }

    fn delete_versions(&self, id: String, versions: Vec<u64>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let numbers: Vec<i64> = versions.iter().map(|n| *n as i64).collect();
            let mut tx = self.pool.begin().await.map_err(storage)?;
            // The current version stays, whatever another instance made current meanwhile.
            sqlx::query(
                "DELETE FROM module_versions WHERE id = $1 AND version = ANY($2) \
                 AND version <> COALESCE((SELECT version FROM modules WHERE id = $1), 0)",
            )
            .bind(&id)
            .bind(&numbers)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
            notify_on(&mut tx, MODULES_CHANNEL, &id).await?;
            tx.commit().await.map_err(storage)
        })
    }
}

/// Tells every instance, at commit, that connection `id` changed.
async fn notify(tx: &mut sqlx::PgConnection, id: &str) -> Result<(), StoreError> {
    notify_on(tx, CONNECTIONS_CHANNEL, id).await
}

/// Tells every instance, at commit, that `id` on `channel` changed.
async fn notify_on(tx: &mut sqlx::PgConnection, channel: &str, id: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(id)
        .execute(tx)
        .await
        .map_err(storage)?;
    Ok(())
}

/// Keeps this instance's connections and mapper modules as the database holds them: every
/// notification makes the instance read that one again; after a lost listener connection, and
/// every 30 s, all of them are read again (notifications sent meanwhile are lost).
pub async fn follow_changes(pool: PgPool, state: Arc<crate::api::AppState>) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for connection changes; trying again in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener
            .listen_all([CONNECTIONS_CHANNEL, MODULES_CHANNEL])
            .await
        {
            tracing::warn!(error = %e, "cannot listen for connection changes; trying again in 1 s");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        resync(&state).await;
        let mut every = tokio::time::interval(RESYNC);
        every.tick().await;
        loop {
            tokio::select! {
                received = listener.try_recv() => match received {
                    Ok(Some(n)) if n.channel() == MODULES_CHANNEL => {
                        if let Err(e) = state.mappers.sync(n.payload()).await {
                            tracing::warn!(mapper = n.payload(), error = %e.message, "a changed mapper module cannot be read");
                        }
                    }
                    Ok(Some(n)) => {
                        if let Err(e) = state.connections.sync(n.payload()).await {
                            tracing::warn!(connection = n.payload(), error = %e, "a changed connection cannot be read");
                        }
                    }
                    // The connection was lost (and is made again on the next call):
                    // what changed meanwhile was not notified.
                    Ok(None) => resync(&state).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for changes failed");
                        break;
                    }
                },
                _ = every.tick() => resync(&state).await,
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn resync(state: &crate::api::AppState) {
    if let Err(e) = state.mappers.sync_all().await {
        tracing::warn!(error = %e.message, "the mapper modules cannot be read again");
    }
    if let Err(e) = state.connections.sync_all().await {
        tracing::warn!(error = %e, "the connections cannot be read again");
    }
}
