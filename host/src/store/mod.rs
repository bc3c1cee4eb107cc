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
}

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Durable connection records. Every write is atomic and durable when its future completes:
/// after a crash the store holds either the old or the new record, never a torn one.
pub trait ConnectionStore: Send + Sync + 'static {
    fn load_all(&self) -> StoreFuture<'_, Vec<StoredConnection>>;
    /// Inserts or replaces the record with the same id.
    fn put(&self, record: StoredConnection) -> StoreFuture<'_, ()>;
    /// Removes the record; `false` when there was none.
    fn delete(&self, id: String) -> StoreFuture<'_, bool>;
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
    fn write_things(&self, changes: Vec<ThingChange>) -> StoreFuture<'_, ()>;
}
