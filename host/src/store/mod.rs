//! Persistence of connections behind one trait.
//!
//! The embedded default is [`redb_store::RedbStore`], one file in the data directory. Another
//! engine (PostgreSQL, for several Ferrule instances) implements the same trait.

pub mod redb_store;

use crate::model::StoredConnection;
use std::future::Future;
use std::pin::Pin;

pub use redb_store::RedbStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("a stored record could not be read: {0}")]
    Corrupt(String),
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
