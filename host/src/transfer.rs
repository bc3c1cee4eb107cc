//! `ferrule export` and `ferrule import`: connections, things and mapper modules moved between
//! stores as one JSON document: from the embedded store to a cluster's database, back, or
//! between two of either. The store is the one `ferrule serve` would use with the same
//! configuration: the cluster's database when `[cluster]` is set, else the data directory.
//!
//! Credentials are exported decrypted (the configured `[encryption]` key reads them) and
//! encrypted again on import as the importing configuration says, so the file is written
//! readable by its owner only.

use crate::cluster::pg::{self, PgStore};
use crate::config::Config;
use crate::mappers::MapperMeta;
use crate::mappers::shared::SharedModules;
use crate::model::StoredConnection;
use crate::store::{ConnectionStore, Expected, FieldCipher, RedbStore, ThingChange, ThingStore};
use crate::twin::StoredThing;
use anyhow::Context;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// The version of the document's layout.
pub const FORMAT: u32 = 1;

/// Everything a store holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub format: u32,
    pub connections: Vec<StoredConnection>,
    pub things: Vec<StoredThing>,
    pub modules: Vec<Module>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Module {
    pub meta: MapperMeta,
    /// The component, base64.
    pub bytes: String,
}

/// The store a configuration names.
enum Stores {
    Embedded {
        redb: Arc<RedbStore>,
        modules: std::path::PathBuf,
    },
    Cluster(Arc<PgStore>),
}

impl Stores {
    async fn open(config: &Config) -> anyhow::Result<Stores> {
        let cipher =
            FieldCipher::from_config(&config.encryption).map_err(|e| anyhow::anyhow!("{e}"))?;
        match &config.cluster {
            Some(c) => {
                let pool = pg::connect(c).await?;
                Ok(Stores::Cluster(Arc::new(PgStore::new(pool, cipher))))
            }
            None => {
                std::fs::create_dir_all(&config.data_dir).with_context(|| {
                    format!(
                        "the data directory {} cannot be created",
                        config.data_dir.display()
                    )
                })?;
                let redb = RedbStore::open(&config.data_dir)
                    .context("the store cannot be opened (is `ferrule serve` running on it?)")?
                    .with_cipher(cipher);
                Ok(Stores::Embedded {
                    redb: Arc::new(redb),
                    modules: config.data_dir.join(crate::mappers::MAPPERS_DIR),
                })
            }
        }
    }

    fn connections(&self) -> &dyn ConnectionStore {
        match self {
            Stores::Embedded { redb, .. } => &**redb,
            Stores::Cluster(pg) => &**pg,
        }
    }

    fn things(&self) -> &dyn ThingStore {
        match self {
            Stores::Embedded { redb, .. } => &**redb,
            Stores::Cluster(pg) => &**pg,
        }
    }

    async fn modules(&self) -> anyhow::Result<Vec<(MapperMeta, Vec<u8>)>> {
        match self {
            Stores::Cluster(pg) => Ok(pg.load_all_modules().await?),
            Stores::Embedded { modules, .. } => crate::mappers::read_module_files(modules),
        }
    }

    async fn put_module(&self, meta: MapperMeta, bytes: Vec<u8>) -> anyhow::Result<()> {
        match self {
            Stores::Cluster(pg) => {
                let expected = pg
                    .load_module(meta.id.clone())
                    .await?
                    .map(|(m, _)| m.version);
                Ok(pg.put_module(meta, bytes, expected).await?)
            }
            Stores::Embedded { modules, .. } => {
                std::fs::create_dir_all(modules)?;
                let json = serde_json::to_vec_pretty(&meta)?;
                Ok(crate::mappers::write_module_files(
                    modules, &meta.id, &bytes, &json,
                )?)
            }
        }
    }
}

/// Reads everything the configured store holds.
pub async fn export(config: &Config) -> anyhow::Result<Snapshot> {
    let stores = Stores::open(config).await?;
    let mut connections = stores.connections().load_all().await?;
    connections.sort_by(|a, b| a.id().cmp(b.id()));
    let mut things = stores.things().load_things().await?;
    things.sort_by(|a, b| a.id().cmp(b.id()));
    let modules = stores
        .modules()
        .await?
        .into_iter()
        .map(|(meta, bytes)| Module {
            meta,
            bytes: base64::engine::general_purpose::STANDARD.encode(bytes),
        })
        .collect();
    Ok(Snapshot {
        format: FORMAT,
        connections,
        things,
        modules,
    })
}

/// What an import wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub connections: usize,
    pub things: usize,
    pub modules: usize,
}

/// Writes a snapshot into the configured store: what has the same id is replaced.
pub async fn import(config: &Config, snapshot: Snapshot) -> anyhow::Result<Imported> {
    if snapshot.format != FORMAT {
        anyhow::bail!(
            "the file is of format {}; this Ferrule reads format {FORMAT}",
            snapshot.format
        );
    }
    let stores = Stores::open(config).await?;
    let mut done = Imported::default();
    for module in snapshot.modules {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&module.bytes)
            .with_context(|| format!("module '{}' is not base64", module.meta.id))?;
        stores.put_module(module.meta, bytes).await?;
        done.modules += 1;
    }
    for record in snapshot.connections {
        let expected = match stores.connections().load(record.id().to_string()).await? {
            Some(existing) => Expected::Revision(existing.revision),
            None => Expected::Absent,
        };
        stores.connections().put(record, expected).await?;
        done.connections += 1;
    }
    done.things = snapshot.things.len();
    let changes = snapshot
        .things
        .into_iter()
        .map(|t| ThingChange::Put(Arc::new(t)))
        .collect();
    stores.things().write_things(changes).await?;
    Ok(done)
}

/// Writes `snapshot` to `path`, readable by its owner only (it holds credentials).
pub fn write_file(path: &Path, snapshot: &Snapshot) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    serde_json::to_writer_pretty(&mut f, snapshot)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}

pub fn read_file(path: &Path) -> anyhow::Result<Snapshot> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not an export of Ferrule", path.display()))
}
