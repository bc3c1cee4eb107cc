//! Modules kept once for a whole cluster (PostgreSQL): every instance compiles them and keeps
//! its own copy in its data directory, which is then a cache of the database.

use super::MapperMeta;
use crate::store::StoreFuture;

/// A module as the cluster stores it.
pub type StoredModule = (MapperMeta, Vec<u8>);

pub trait SharedModules: Send + Sync + 'static {
    fn load_all_modules(&self) -> StoreFuture<'_, Vec<StoredModule>>;
    fn load_module(&self, id: String) -> StoreFuture<'_, Option<StoredModule>>;
    /// Stores a module if the stored version is `expected` (`None`: no module), else
    /// [`crate::store::StoreError::Conflict`]; every instance is told. A version not kept yet
    /// is kept too (with its upload time as `created`).
    fn put_module(
        &self,
        meta: MapperMeta,
        bytes: Vec<u8>,
        expected: Option<u64>,
    ) -> StoreFuture<'_, ()>;
    /// Removes the module at `version` and its kept versions; every instance is told.
    fn delete_module(&self, id: String, version: u64) -> StoreFuture<'_, ()>;
    /// The metadata of the kept versions of a module.
    fn load_versions(&self, id: String) -> StoreFuture<'_, Vec<MapperMeta>>;
    /// The bytes of a kept version.
    fn load_version(&self, id: String, version: u64) -> StoreFuture<'_, Option<Vec<u8>>>;
    /// Drops kept versions; every instance is told.
    fn delete_versions(&self, id: String, versions: Vec<u64>) -> StoreFuture<'_, ()>;
}
