//! A store that keeps everything in memory: nothing survives the process. For benchmarks of the
//! layers above the disk, and for tests.

use super::{ConnectionStore, Expected, StoreFuture, ThingChange, ThingStore, check_expected};
use crate::model::StoredConnection;
use crate::twin::StoredThing;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    connections: Mutex<HashMap<String, StoredConnection>>,
    things: Mutex<HashMap<String, StoredThing>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ConnectionStore for MemoryStore {
    fn load_all(&self) -> StoreFuture<'_, Vec<StoredConnection>> {
        let all = lock(&self.connections).values().cloned().collect();
        Box::pin(async move { Ok(all) })
    }

    fn load(&self, id: String) -> StoreFuture<'_, Option<StoredConnection>> {
        let found = lock(&self.connections).get(&id).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn put(&self, record: StoredConnection, expected: Expected) -> StoreFuture<'_, ()> {
        let mut connections = lock(&self.connections);
        let stored = connections.get(record.id()).map(|r| r.revision);
        let result = check_expected(record.id(), stored, expected);
        if result.is_ok() {
            connections.insert(record.id().to_string(), record);
        }
        Box::pin(async move { result })
    }

    fn delete(&self, id: String, revision: u64) -> StoreFuture<'_, bool> {
        let mut connections = lock(&self.connections);
        let result = match connections.get(&id).map(|r| r.revision) {
            None => Ok(false),
            Some(r) if r == revision => Ok(connections.remove(&id).is_some()),
            Some(_) => Err(super::StoreError::Conflict(id)),
        };
        Box::pin(async move { result })
    }
}

impl ThingStore for MemoryStore {
    fn load_things(&self) -> StoreFuture<'_, Vec<StoredThing>> {
        let all = lock(&self.things).values().cloned().collect();
        Box::pin(async move { Ok(all) })
    }

    fn load_thing(&self, id: String) -> StoreFuture<'_, Option<StoredThing>> {
        let found = lock(&self.things).get(&id).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn write_things(&self, changes: Vec<ThingChange>) -> StoreFuture<'_, ()> {
        let mut things = lock(&self.things);
        for change in changes {
            match change {
                ThingChange::Put(t) => {
                    things.insert(t.id().to_string(), std::sync::Arc::unwrap_or_clone(t));
                }
                ThingChange::Delete(id) => {
                    things.remove(&id);
                }
            }
        }
        Box::pin(async { Ok(()) })
    }
}
