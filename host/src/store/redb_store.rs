//! The embedded store: one redb file (`ferrule.redb`) in the data directory.
//!
//! redb commits are copy-on-write with a checksummed commit slot, and every commit here is
//! fsynced (`Durability::Immediate`), so a crash at any point leaves the last committed state.

use super::{ConnectionStore, StoreError, StoreFuture, ThingChange, ThingStore};
use crate::model::StoredConnection;
use crate::twin::StoredThing;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;

const CONNECTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("connections");
const THINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("things");

pub const FILE_NAME: &str = "ferrule.redb";

pub struct RedbStore {
    db: Arc<Database>,
}

fn storage(e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(e.to_string())
}

impl RedbStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| {
            StoreError::Storage(format!("cannot open the database {}: {e}", path.display()))
        })?;
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(CONNECTIONS).map_err(storage)?;
        txn.open_table(THINGS).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(RedbStore { db: Arc::new(db) })
    }

    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let db = self.db.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&db))
                .await
                .map_err(|e| StoreError::Storage(format!("storage task failed: {e}")))?
        })
    }
}

impl ConnectionStore for RedbStore {
    fn load_all(&self) -> StoreFuture<'_, Vec<StoredConnection>> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(storage)?;
            let table = txn.open_table(CONNECTIONS).map_err(storage)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(storage)? {
                let (key, value) = entry.map_err(storage)?;
                let record: StoredConnection =
                    serde_json::from_slice(value.value()).map_err(|e| {
                        StoreError::Corrupt(format!("connection '{}': {e}", key.value()))
                    })?;
                out.push(record);
            }
            Ok(out)
        })
    }

    fn put(&self, record: StoredConnection) -> StoreFuture<'_, ()> {
        self.blocking(move |db| {
            let bytes = serde_json::to_vec(&record).map_err(storage)?;
            let txn = db.begin_write().map_err(storage)?;
            {
                let mut table = txn.open_table(CONNECTIONS).map_err(storage)?;
                table
                    .insert(record.id(), bytes.as_slice())
                    .map_err(storage)?;
            }
            txn.commit().map_err(storage)
        })
    }

    fn delete(&self, id: String) -> StoreFuture<'_, bool> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage)?;
            let existed = {
                let mut table = txn.open_table(CONNECTIONS).map_err(storage)?;
                table.remove(id.as_str()).map_err(storage)?.is_some()
            };
            txn.commit().map_err(storage)?;
            Ok(existed)
        })
    }
}

impl ThingStore for RedbStore {
    fn load_things(&self) -> StoreFuture<'_, Vec<StoredThing>> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(storage)?;
            let table = txn.open_table(THINGS).map_err(storage)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(storage)? {
                let (key, value) = entry.map_err(storage)?;
                let thing: StoredThing = serde_json::from_slice(value.value())
                    .map_err(|e| StoreError::Corrupt(format!("thing '{}': {e}", key.value())))?;
                out.push(thing);
            }
            Ok(out)
        })
    }

    fn write_things(&self, changes: Vec<ThingChange>) -> StoreFuture<'_, ()> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage)?;
            {
                let mut table = txn.open_table(THINGS).map_err(storage)?;
                for change in &changes {
                    match change {
                        ThingChange::Put(thing) => {
                            let bytes = serde_json::to_vec(&**thing).map_err(storage)?;
                            table
                                .insert(thing.id(), bytes.as_slice())
                                .map_err(storage)?;
                        }
                        ThingChange::Delete(id) => {
                            table.remove(id.as_str()).map_err(storage)?;
                        }
                    }
                }
            }
            txn.commit().map_err(storage)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse::connection_from_object;
    use chrono::Utc;
    use serde_json::json;

    fn record(id: &str, revision: u64) -> StoredConnection {
        let v = json!({"id": id, "connectionType": "mqtt", "connectionStatus": "closed",
                       "uri": "tcp://localhost:1883",
                       "targets": [{"address": "t", "topics": ["_/_/things/twin/events"], "qos": 0,
                                    "authorizationContext": ["a"]}]});
        let now = Utc::now();
        StoredConnection {
            connection: connection_from_object(v.as_object().unwrap().clone()).unwrap(),
            revision,
            created: now,
            modified: now,
        }
    }

    #[tokio::test]
    async fn put_load_delete_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RedbStore::open(dir.path()).unwrap();
            store.put(record("a", 1)).await.unwrap();
            store.put(record("b", 1)).await.unwrap();
            store.put(record("a", 2)).await.unwrap();
            assert!(store.delete("b".into()).await.unwrap());
            assert!(!store.delete("b".into()).await.unwrap());
        }
        let store = RedbStore::open(dir.path()).unwrap();
        let all = store.load_all().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0], record_with_time(&all[0], "a", 2));
    }

    fn record_with_time(actual: &StoredConnection, id: &str, revision: u64) -> StoredConnection {
        let mut r = record(id, revision);
        r.created = actual.created;
        r.modified = actual.modified;
        r
    }

    #[test]
    fn a_second_process_cannot_open_the_same_store() {
        let dir = tempfile::tempdir().unwrap();
        let _first = RedbStore::open(dir.path()).unwrap();
        let second = RedbStore::open(dir.path());
        assert!(second.is_err());
    }
}
