//! The embedded store: one redb file (`ferrule.redb`) in the data directory.
//!
//! redb commits are copy-on-write with a checksummed commit slot, and every commit here is
//! fsynced (`Durability::Immediate`), so a crash at any point leaves the last committed state.

use super::encryption::{ENCRYPTED_POINTERS, FieldCipher, KEY_SETTING, Key, OLD_KEY_SETTING};
use super::{
    ConnectionStore, Expected, StoreError, StoreFuture, ThingChange, ThingStore, check_expected,
};
use crate::model::StoredConnection;
use crate::twin::StoredThing;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard};

const CONNECTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("connections");
const THINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("things");

pub const FILE_NAME: &str = "ferrule.redb";

pub struct RedbStore {
    path: PathBuf,
    /// The open database; `None` after an I/O failure until it is opened again. Operations hold
    /// the read lock; closing and reopening take the write lock, so the file is never open twice.
    db: Arc<RwLock<Option<Database>>>,
    /// Encrypts credentials of written connections and decrypts them when read.
    cipher: Option<Arc<FieldCipher>>,
}

fn storage(e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(e.to_string())
}

fn open_database(path: &Path) -> Result<Database, StoreError> {
    let db = Database::create(path).map_err(|e| {
        StoreError::Storage(format!("cannot open the database {}: {e}", path.display()))
    })?;
    let txn = db.begin_write().map_err(storage)?;
    txn.open_table(CONNECTIONS).map_err(storage)?;
    txn.open_table(THINGS).map_err(storage)?;
    txn.commit().map_err(storage)?;
    Ok(db)
}

impl RedbStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        let path = dir.join(FILE_NAME);
        let db = open_database(&path)?;
        Ok(RedbStore {
            path,
            db: Arc::new(RwLock::new(Some(db))),
            cipher: None,
        })
    }

    /// Connections are written with their credentials encrypted (when the cipher `encrypts`) and
    /// read with them decrypted.
    pub fn with_cipher(mut self, cipher: Option<FieldCipher>) -> RedbStore {
        self.cipher = cipher.map(Arc::new);
        self
    }

    /// Runs `f` on the database in a blocking task. After a storage failure (a full disk, a
    /// read-only file system) redb refuses every later operation until the database is opened
    /// again, so the failed database is closed and the next operation reopens it (redb repairs
    /// an interrupted commit on open): the store works again as soon as the disk does, without
    /// a restart.
    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let (db, path) = (self.db.clone(), self.path.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let result = {
                    let guard = opened(&db, &path)?;
                    f(guard.as_ref().expect("opened() holds an open database"))
                };
                if let Err(StoreError::Storage(e)) = &result {
                    tracing::warn!(error = %e, "the database is closed and reopened on its next use");
                    write_lock(&db).take();
                }
                result
            })
            .await
            .map_err(|e| StoreError::Storage(format!("storage task failed: {e}")))?
        })
    }
}

fn write_lock(db: &RwLock<Option<Database>>) -> std::sync::RwLockWriteGuard<'_, Option<Database>> {
    db.write().unwrap_or_else(|e| e.into_inner())
}

/// A read guard on the open database, opening it first when an earlier failure closed it.
fn opened<'a>(
    db: &'a RwLock<Option<Database>>,
    path: &Path,
) -> Result<RwLockReadGuard<'a, Option<Database>>, StoreError> {
    loop {
        let guard = db.read().unwrap_or_else(|e| e.into_inner());
        if guard.is_some() {
            return Ok(guard);
        }
        drop(guard);
        let mut slot = write_lock(db);
        if slot.is_none() {
            *slot = Some(open_database(path)?);
            tracing::info!(path = %path.display(), "the database is open again");
        }
    }
}

/// The stored bytes of a connection record: its JSON, with the configured credentials encrypted
/// and the pointers encrypted listed in `encryptedPointers`.
pub(crate) fn encode_connection(
    record: &StoredConnection,
    cipher: Option<&FieldCipher>,
) -> Result<Vec<u8>, StoreError> {
    let Some(cipher) = cipher.filter(|c| c.encrypts()) else {
        return serde_json::to_vec(record).map_err(storage);
    };
    let mut value = serde_json::to_value(record).map_err(storage)?;
    let pointers = cipher
        .encrypt_connection(&mut value["connection"])
        .map_err(|e| StoreError::Encryption(format!("connection '{}': {e}", record.id())))?;
    if !pointers.is_empty() {
        value[ENCRYPTED_POINTERS] = pointers.into();
    }
    serde_json::to_vec(&value).map_err(storage)
}

/// How a stored record's credentials were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// As the configuration writes them.
    AsConfigured,
    /// In plaintext, where the cipher would encrypt them.
    Plaintext,
    /// Encrypted with `old_symmetrical_key`.
    OldKey,
}

/// A stored connection record, its encrypted fields decrypted. Encrypted fields without a key
/// (or with another key) are an error that names the setting: ciphertext is never handed on.
pub(crate) fn decode_connection(
    key: &str,
    bytes: &[u8],
    cipher: Option<&FieldCipher>,
) -> Result<(StoredConnection, Found), StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("connection '{key}': {e}"));
    let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(corrupt)?;
    let encrypted: Vec<String> = match value
        .as_object_mut()
        .and_then(|o| o.remove(ENCRYPTED_POINTERS))
    {
        Some(list) => serde_json::from_value(list).map_err(corrupt)?,
        None => Vec::new(),
    };
    let mut found = Found::AsConfigured;
    match cipher {
        _ if encrypted.is_empty() => {
            if let Some(c) = cipher.filter(|c| c.encrypts()) {
                let mut probe = value["connection"].clone();
                if c.encrypt_connection(&mut probe)
                    .is_ok_and(|done| !done.is_empty())
                {
                    found = Found::Plaintext;
                }
            }
        }
        None => {
            return Err(StoreError::Encryption(format!(
                "connection '{key}' is stored with encrypted fields ({}) and no key is \
                 configured: set {KEY_SETTING} to the key they were encrypted with",
                encrypted.join(", ")
            )));
        }
        Some(c) => {
            let used = c
                .decrypt_connection(key, &mut value["connection"], &encrypted)
                .map_err(|e| StoreError::Encryption(e.to_string()))?;
            if used == Key::Old {
                found = Found::OldKey;
            }
        }
    }
    let record = serde_json::from_value(value).map_err(corrupt)?;
    Ok((record, found))
}

/// The revision of a stored connection, read without decrypting it.
fn stored_revision(table: &redb::Table<&str, &[u8]>, id: &str) -> Result<Option<u64>, StoreError> {
    #[derive(serde::Deserialize)]
    struct Revision {
        revision: u64,
    }
    match table.get(id).map_err(storage)? {
        Some(v) => serde_json::from_slice::<Revision>(v.value())
            .map(|r| Some(r.revision))
            .map_err(|e| StoreError::Corrupt(format!("connection '{id}': {e}"))),
        None => Ok(None),
    }
}

impl ConnectionStore for RedbStore {
    fn load_all(&self) -> StoreFuture<'_, Vec<StoredConnection>> {
        let cipher = self.cipher.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let table = txn.open_table(CONNECTIONS).map_err(storage)?;
            let mut out = Vec::new();
            let mut plaintext = 0usize;
            let mut old_key = Vec::new();
            for entry in table.iter().map_err(storage)? {
                let (key, value) = entry.map_err(storage)?;
                let (record, found) =
                    decode_connection(key.value(), value.value(), cipher.as_deref())?;
                match found {
                    Found::AsConfigured => {}
                    Found::Plaintext => plaintext += 1,
                    Found::OldKey => old_key.push(out.len()),
                }
                out.push(record);
            }
            drop(table);
            drop(txn);
            if !old_key.is_empty() {
                // Changing keys: what the old key decrypted is written again as configured
                // now, all in one transaction (all or nothing), before anything else runs.
                let rewritten: Vec<&StoredConnection> = old_key.iter().map(|&i| &out[i]).collect();
                let encrypts = cipher.as_deref().is_some_and(FieldCipher::encrypts);
                let txn = db.begin_write().map_err(storage)?;
                {
                    let mut table = txn.open_table(CONNECTIONS).map_err(storage)?;
                    for record in &rewritten {
                        let bytes = encode_connection(record, cipher.as_deref())?;
                        table
                            .insert(record.id(), bytes.as_slice())
                            .map_err(storage)?;
                    }
                }
                txn.commit().map_err(storage)?;
                tracing::info!(
                    connections = rewritten.len(),
                    "stored connections encrypted with {OLD_KEY_SETTING} were written again {}; \
                     the old key can now be removed",
                    if encrypts {
                        "encrypted with the current key"
                    } else {
                        "in plaintext ([encryption] enabled = false)"
                    }
                );
            }
            if plaintext > 0 {
                tracing::info!(
                    connections = plaintext,
                    "stored connections hold credentials written before encryption was enabled; \
                     each is encrypted when it is next written"
                );
            }
            Ok(out)
        })
    }

    fn load(&self, id: String) -> StoreFuture<'_, Option<StoredConnection>> {
        let cipher = self.cipher.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let table = txn.open_table(CONNECTIONS).map_err(storage)?;
            match table.get(id.as_str()).map_err(storage)? {
                Some(v) => Ok(Some(
                    decode_connection(&id, v.value(), cipher.as_deref())?.0,
                )),
                None => Ok(None),
            }
        })
    }

    fn put(&self, record: StoredConnection, expected: Expected) -> StoreFuture<'_, ()> {
        let cipher = self.cipher.clone();
        self.blocking(move |db| {
            let bytes = encode_connection(&record, cipher.as_deref())?;
            let txn = db.begin_write().map_err(storage)?;
            {
                let mut table = txn.open_table(CONNECTIONS).map_err(storage)?;
                let stored = stored_revision(&table, record.id())?;
                check_expected(record.id(), stored, expected)?;
                table
                    .insert(record.id(), bytes.as_slice())
                    .map_err(storage)?;
            }
            txn.commit().map_err(storage)
        })
    }

    fn delete(&self, id: String, revision: u64) -> StoreFuture<'_, bool> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage)?;
            let existed = {
                let mut table = txn.open_table(CONNECTIONS).map_err(storage)?;
                match stored_revision(&table, &id)? {
                    None => false,
                    Some(r) if r == revision => {
                        table.remove(id.as_str()).map_err(storage)?.is_some()
                    }
                    Some(_) => return Err(StoreError::Conflict(id)),
                }
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

    fn load_thing(&self, id: String) -> StoreFuture<'_, Option<StoredThing>> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let table = txn.open_table(THINGS).map_err(storage)?;
            match table.get(id.as_str()).map_err(storage)? {
                Some(v) => serde_json::from_slice(v.value())
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt(format!("thing '{id}': {e}"))),
                None => Ok(None),
            }
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
            store.put(record("a", 1), Expected::Absent).await.unwrap();
            store.put(record("b", 1), Expected::Absent).await.unwrap();
            store
                .put(record("a", 2), Expected::Revision(1))
                .await
                .unwrap();
            assert!(matches!(
                store.put(record("a", 3), Expected::Revision(1)).await,
                Err(StoreError::Conflict(_))
            ));
            assert!(matches!(
                store.put(record("b", 2), Expected::Absent).await,
                Err(StoreError::Conflict(_))
            ));
            assert!(matches!(
                store.delete("b".into(), 7).await,
                Err(StoreError::Conflict(_))
            ));
            assert!(store.delete("b".into(), 1).await.unwrap());
            assert!(!store.delete("b".into(), 1).await.unwrap());
            assert_eq!(store.load("a".into()).await.unwrap().unwrap().revision, 2);
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

    /// The old key with encryption disabled (Ditto's way out of encryption): the start writes
    /// what the old key decrypts back in plaintext, so no key is needed afterwards.
    #[tokio::test]
    async fn the_old_key_with_encryption_disabled_writes_plaintext_back_at_start() {
        use crate::store::EncryptionConfig;
        use base64::Engine;
        let key = |b: u8| Some(base64::engine::general_purpose::STANDARD.encode([b; 32]));
        let cipher = |config: EncryptionConfig| FieldCipher::from_config(&config).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut secret = record("s", 1);
        secret.connection.uri = "tcp://u:Passw0rd-x@localhost:1883".into();
        {
            let store =
                RedbStore::open(dir.path())
                    .unwrap()
                    .with_cipher(cipher(EncryptionConfig {
                        enabled: true,
                        symmetrical_key: key(1),
                        ..Default::default()
                    }));
            store.put(secret.clone(), Expected::Absent).await.unwrap();
        }
        let file = || std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        let holds = |bytes: &[u8]| bytes.windows(10).any(|w| w == b"Passw0rd-x");
        assert!(!holds(&file()));
        {
            let store =
                RedbStore::open(dir.path())
                    .unwrap()
                    .with_cipher(cipher(EncryptionConfig {
                        enabled: false,
                        symmetrical_key: key(2),
                        old_symmetrical_key: key(1),
                        ..Default::default()
                    }));
            let all = store.load_all().await.unwrap();
            assert_eq!(all[0].connection.uri, secret.connection.uri);
        }
        assert!(holds(&file()), "written back in plaintext");
        let all = RedbStore::open(dir.path())
            .unwrap()
            .load_all()
            .await
            .unwrap();
        assert_eq!(
            all[0].connection.uri, secret.connection.uri,
            "no key needed"
        );
    }

    #[test]
    fn a_second_process_cannot_open_the_same_store() {
        let dir = tempfile::tempdir().unwrap();
        let _first = RedbStore::open(dir.path()).unwrap();
        let second = RedbStore::open(dir.path());
        assert!(second.is_err());
    }
}
