//! Persistence of connections and things behind two traits.
//!
//! The embedded default is [`redb_store::RedbStore`], one file in the data directory, holding
//! both. [`memory::MemoryStore`] keeps everything in memory (benchmarks, tests). Another engine
//! (PostgreSQL, for several Ferrule instances) implements the same traits.

pub mod encryption;
pub mod memory;
pub mod redb_store;

use crate::model::StoredConnection;
use crate::twin::StoredThing;
use std::future::Future;
use std::pin::Pin;

pub use encryption::{EncryptionConfig, FieldCipher};
pub use memory::MemoryStore;
pub use redb_store::RedbStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("a stored record could not be read: {0}")]
    Corrupt(String),
    /// Encrypted credentials without the right key, or an encryption failure.
    #[error("{0}")]
    Encryption(String),
    /// A conditional write found another revision than it expected: someone else (another
    /// instance of a cluster) changed the record meanwhile. Nothing was written.
    #[error("'{0}' was changed by another writer")]
    Conflict(String),
}

/// What a conditional connection write expects to find in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// No record with this id (a create).
    Absent,
    /// The record at this revision (a modify).
    Revision(u64),
}

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Durable connection records. Every write is atomic and durable when its future completes:
/// after a crash the store holds either the old or the new record, never a torn one. Writes are
/// conditional on the revision the writer read ([`StoreError::Conflict`] when another writer
/// came first), so writers in several processes sharing one store have one winner.
pub trait ConnectionStore: Send + Sync + 'static {
    fn load_all(&self) -> StoreFuture<'_, Vec<StoredConnection>>;
    /// The record with this id, if any.
    fn load(&self, id: String) -> StoreFuture<'_, Option<StoredConnection>>;
    /// Inserts or replaces the record with the same id, if the store holds what `expected` says.
    fn put(&self, record: StoredConnection, expected: Expected) -> StoreFuture<'_, ()>;
    /// Removes the record at `revision`; `false` when there was none.
    fn delete(&self, id: String, revision: u64) -> StoreFuture<'_, bool>;
}

/// Whether a stored revision (`None`: no record) is what a write expects.
pub fn check_expected(id: &str, stored: Option<u64>, expected: Expected) -> Result<(), StoreError> {
    match (stored, expected) {
        (None, Expected::Absent) => Ok(()),
        (Some(r), Expected::Revision(e)) if r == e => Ok(()),
        _ => Err(StoreError::Conflict(id.to_string())),
    }
}

/// One change of a thing, as written by the twin.
#[derive(Debug, Clone, PartialEq)]
pub enum ThingChange {
    Put(std::sync::Arc<StoredThing>),
    Delete(String),
}

/// Durable things. `write_things` applies all its changes in one atomic, durable transaction:
/// the twin batches concurrent commands into one call (group commit).
pub trait ThingStore: Send + Sync + 'static {
    fn load_things(&self) -> StoreFuture<'_, Vec<StoredThing>>;
    /// One thing as stored now (another instance sharing the store may have changed it).
    fn load_thing(&self, id: String) -> StoreFuture<'_, Option<StoredThing>>;
    fn write_things(&self, changes: Vec<ThingChange>) -> StoreFuture<'_, ()>;
    /// [`ThingStore::write_things`], each change paired with the revision the writer based it
    /// on (`None`: no thing). A store shared by several instances applies the whole batch only
    /// when every thing is still at that revision, else nothing and [`StoreError::Conflict`]
    /// naming a thing. A store with one writer has nothing to check. A store that keeps events
    /// ([`ThingStore::keeps_events`]) writes the batch's `events` with its changes, atomically;
    /// another ignores them.
    fn write_things_checked(
        &self,
        changes: Vec<(ThingChange, Option<u64>)>,
        events: Vec<LoggedEvent>,
    ) -> StoreFuture<'_, ()> {
        let _ = events;
        self.write_things(changes.into_iter().map(|(c, _)| c).collect())
    }

    /// Whether the twin's events are written with its changes, into a log every instance
    /// sharing the store reads (the cluster's PostgreSQL). The twin builds them only then.
    fn keeps_events(&self) -> bool {
        false
    }
}

/// A twin event as a store that keeps events writes it, with the change it tells of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    pub thing: String,
    /// The thing's revision after the change, when the event names one.
    pub revision: Option<u64>,
    /// The event as written for brokers (Ditto Protocol JSON).
    pub json: String,
}
