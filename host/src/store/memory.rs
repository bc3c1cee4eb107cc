//! A store that keeps everything in memory: nothing survives the process. For benchmarks of the
//! layers above the disk, and for tests.

use super::{ConnectionStore, StoreFuture, ThingChange, ThingStore};
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

    fn put(&self, record: StoredConnection) -> StoreFuture<'_, ()> {
        lock(&self.connections).insert(record.id().to_string(), record);
        Box::pin(async { Ok(()) })
    }

    fn delete(&self, id: String) -> StoreFuture<'_, bool> {
        let existed = lock(&self.connections).remove(&id).is_some();
        Box::pin(async move { Ok(existed) })
    }
}

impl ThingStore for MemoryStore {
    fn load_things(&self) -> StoreFuture<'_, Vec<StoredThing>> {
        let all = lock(&self.things).values().cloned().collect();
        Box::pin(async move { Ok(all) })
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
