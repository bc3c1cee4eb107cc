//! Uploaded WebAssembly mapper modules: stored in the data directory (`mappers/<id>.wasm` and
//! `<id>.json`), compiled once at upload, precompiled artifacts cached in `cache/wasm/`, and
//! handed to the connections that name them in a `WebAssembly` mapping definition.

use crate::error::DittoError;
use crate::model::Connection;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use ferrule_wasm::{Ceilings, CompiledModule, ModuleError, ModuleSlot, WasmEngine};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub mod trial;

/// The host-wide limits of WebAssembly mappers (`[mappers]` in the configuration file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MapperConfig {
    /// Uploads above this size are answered with 413.
    pub max_module_bytes: usize,
    /// The longest deadline (`timeoutMs`) a mapping definition may set for one call.
    pub max_timeout_ms: u64,
    /// The largest memory cap (`memoryLimitMiB`) a mapping definition may set per instance.
    pub max_memory_mib: usize,
    /// Live mapper instances in the whole host at most.
    pub max_instances: u32,
}

impl Default for MapperConfig {
    fn default() -> Self {
        MapperConfig {
            max_module_bytes: 16 << 20,
            max_timeout_ms: 5_000,
            max_memory_mib: 256,
            max_instances: 1000,
        }
    }
}

impl MapperConfig {
    pub fn ceilings(&self) -> Ceilings {
        Ceilings {
            max_timeout: std::time::Duration::from_millis(self.max_timeout_ms),
            max_memory: self.max_memory_mib << 20,
            max_instances: self.max_instances,
        }
    }
}

/// What the API shows of a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MapperMeta {
    pub id: String,
    /// 1 for the first upload, +1 per replacement.
    pub version: u64,
    pub sha256: String,
    pub size: usize,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    /// The version of the `ferrule:mapper` world the module was built against.
    pub wit_version: String,
    pub imports: Vec<String>,
}

#[derive(Clone)]
pub struct Entry {
    pub meta: MapperMeta,
    pub slot: Arc<ModuleSlot>,
}

pub struct MapperRegistry {
    engine: WasmEngine,
    /// `None`: modules live in memory only (tests).
    dir: Option<PathBuf>,
    entries: RwLock<BTreeMap<String, Entry>>,
    /// Uploads and deletes one at a time, so a replacement never races another.
    writes: tokio::sync::Mutex<()>,
    pub config: MapperConfig,
}

impl std::fmt::Debug for MapperRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapperRegistry")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

pub const MAPPERS_DIR: &str = "mappers";
pub const CACHE_DIR: &str = "cache/wasm";

/// Ids as Ditto's entity names: 1–100 characters of letters, digits, `-`, `_`, `.`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub fn not_found(id: &str) -> DittoError {
    DittoError::new(
        StatusCode::NOT_FOUND,
        "mappers:mapper.notfound",
        format!("The mapper with ID '{id}' could not be found."),
    )
    .with_description(
        "Check if the ID of your requested mapper was correct; GET /api/2/mappers lists them.",
    )
}

fn id_invalid(id: &str) -> DittoError {
    DittoError::new(
        StatusCode::BAD_REQUEST,
        "mappers:mapper.id.invalid",
        format!("The mapper ID '{id}' is not valid."),
    )
    .with_description("A mapper ID is 1 to 100 characters of letters, digits, '-', '_' and '.', not starting with '.'.")
}

pub fn module_invalid(e: ModuleError) -> DittoError {
    DittoError::new(StatusCode::BAD_REQUEST, "mappers:module.invalid", e.message)
        .with_description(e.description)
}

fn storage(e: std::io::Error) -> DittoError {
    tracing::error!(error = %e, "a mapper module could not be stored");
    DittoError::internal(format!("The mapper module could not be stored: {e}"))
}

/// The ids of the modules `connection` names in its `WebAssembly` mapping definitions.
pub fn modules_of(connection: &Connection) -> impl Iterator<Item = &str> {
    connection
        .mapping_definitions
        .values()
        .filter(|d| d.mapping_engine == "WebAssembly")
        .filter_map(|d| d.options.get("module").and_then(|m| m.as_str()))
}

fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl MapperRegistry {
    /// A registry over `data_dir` (or in memory when `None`), loading the stored modules from
    /// their precompiled artifacts where those fit this engine.
    pub fn open(data_dir: Option<&Path>, config: MapperConfig) -> anyhow::Result<MapperRegistry> {
        let engine = WasmEngine::new(config.ceilings())
            .map_err(|e| anyhow::anyhow!("{}: {}", e.message, e.description))?;
        let registry = MapperRegistry {
            engine,
            dir: data_dir.map(|d| d.join(MAPPERS_DIR)),
            entries: RwLock::new(BTreeMap::new()),
            writes: tokio::sync::Mutex::new(()),
            config,
        };
        if let Some(dir) = &registry.dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("{} cannot be created: {e}", dir.display()))?;
            registry.load_all(dir)?;
        }
        Ok(registry)
    }

    pub fn engine(&self) -> &WasmEngine {
        &self.engine
    }

    fn cache_dir(&self) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .and_then(|d| d.parent())
            .map(|d| d.join(CACHE_DIR))
    }

    fn load_all(&self, dir: &Path) -> anyhow::Result<()> {
        let cache = self.cache_dir().expect("a stored registry has a cache dir");
        let mut entries = self.entries.write().unwrap();
        for file in std::fs::read_dir(dir)? {
            let path = file?.path();
            if path.extension().is_none_or(|e| e != "wasm") {
                continue;
            }
            let Some(id) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            let bytes = std::fs::read(&path)?;
            let module = match self.engine.load(&bytes, &cache) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(mapper = %id, error = %e.description, "a stored mapper module does not load; it is skipped");
                    continue;
                }
            };
            let now = Utc::now();
            let mut meta = std::fs::read(path.with_extension("json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<MapperMeta>(&b).ok())
                .unwrap_or_else(|| MapperMeta {
                    id: id.clone(),
                    version: 1,
                    sha256: module.sha256.clone(),
                    size: module.size,
                    created: now,
                    modified: now,
                    wit_version: module.wit_version.clone(),
                    imports: module.imports.clone(),
                });
            if meta.sha256 != module.sha256 {
                // The module was replaced and the process stopped before the metadata was.
                meta.version += 1;
                meta.sha256 = module.sha256.clone();
                meta.size = module.size;
                meta.modified = now;
            }
            let slot = ModuleSlot::new(module, meta.version);
            entries.insert(id, Entry { meta, slot });
        }
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<Entry> {
        self.entries.read().unwrap().get(id).cloned()
    }

    pub fn list(&self) -> Vec<Entry> {
        self.entries.read().unwrap().values().cloned().collect()
    }

    /// The stored bytes of a module.
    pub fn module_bytes(&self, id: &str) -> Result<Vec<u8>, DittoError> {
        self.get(id).ok_or_else(|| not_found(id))?;
        match &self.dir {
            Some(dir) => std::fs::read(dir.join(format!("{id}.wasm"))).map_err(storage),
            None => Err(DittoError::internal("This registry keeps no module bytes.")),
        }
    }

    /// Validates and compiles `bytes` (on a blocking thread), stores them and makes them the
    /// current version of `id`; connections that use `id` switch to it for their next message.
    /// `Ok(true)`: a new module.
    pub async fn put(
        self: &Arc<Self>,
        id: &str,
        bytes: Vec<u8>,
    ) -> Result<(bool, MapperMeta), DittoError> {
        if !valid_id(id) {
            return Err(id_invalid(id));
        }
        let _write = self.writes.lock().await;
        let this = self.clone();
        let (module, bytes) = tokio::task::spawn_blocking(move || {
            let module = match this.cache_dir() {
                Some(cache) => this.engine.load(&bytes, &cache),
                None => this.engine.compile(&bytes),
            };
            (module, bytes)
        })
        .await
        .map_err(|e| DittoError::internal(format!("Compiling the module failed: {e}")))?;
        let module: CompiledModule = module.map_err(module_invalid)?;
        let previous = self.get(id);
        let now = Utc::now();
        let meta = MapperMeta {
            id: id.to_string(),
            version: previous.as_ref().map_or(1, |p| p.meta.version + 1),
            sha256: module.sha256.clone(),
            size: module.size,
            created: previous.as_ref().map_or(now, |p| p.meta.created),
            modified: now,
            wit_version: module.wit_version.clone(),
            imports: module.imports.clone(),
        };
        if let Some(dir) = &self.dir {
            write_durably(&dir.join(format!("{id}.wasm")), &bytes).map_err(storage)?;
            let json = serde_json::to_vec_pretty(&meta).expect("metadata serialises");
            write_durably(&dir.join(format!("{id}.json")), &json).map_err(storage)?;
        }
        let mut entries = self.entries.write().unwrap();
        match entries.get_mut(id) {
            Some(entry) => {
                entry.slot.replace(module, meta.version);
                entry.meta = meta.clone();
            }
            None => {
                let slot = ModuleSlot::new(module, meta.version);
                entries.insert(
                    id.to_string(),
                    Entry {
                        meta: meta.clone(),
                        slot,
                    },
                );
            }
        }
        Ok((previous.is_none(), meta))
    }

    /// Removes a module; `users` are the connections that name it (409 when there are any).
    pub async fn delete(&self, id: &str, users: &[String]) -> Result<(), DittoError> {
        let _write = self.writes.lock().await;
        if self.get(id).is_none() {
            return Err(not_found(id));
        }
        if !users.is_empty() {
            return Err(DittoError::new(
                StatusCode::CONFLICT,
                "mappers:mapper.inuse",
                format!("The mapper with ID '{id}' is used by connections and cannot be deleted."),
            )
            .with_description(format!(
                "Remove it from the mapping definitions of the connections [{}] first.",
                users.join(", ")
            )));
        }
        if let Some(dir) = &self.dir {
            for ext in ["wasm", "json"] {
                match std::fs::remove_file(dir.join(format!("{id}.{ext}"))) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(storage(e)),
                }
            }
        }
        self.entries.write().unwrap().remove(id);
        Ok(())
    }
}
