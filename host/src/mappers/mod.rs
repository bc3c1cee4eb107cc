//! Uploaded WebAssembly mapper modules: stored in the data directory (`mappers/<id>.wasm` and
//! `<id>.json`), compiled once at upload, precompiled artifacts cached in `cache/wasm/`, and
//! handed to the connections that name them in a `WebAssembly` mapping definition. Every upload
//! of new bytes is a new version, and the last `keep_versions` are kept ([`versions`]): a
//! definition may pin one, and a rollback makes one current again. In cluster mode the modules
//! are stored once in the database ([`shared`]); each instance follows it, compiles what
//! changed and swaps it into its running connections.

use crate::error::DittoError;
use crate::model::Connection;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use ferrule_wasm::{
    Ceilings, CodeLimits, CompiledModule, Definition, ModuleError, ModuleSlot, WasmEngine,
    WasmMapper,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

pub mod scaffold;
pub mod shared;
pub mod trial;
pub mod versions;
pub mod watch;

use shared::SharedModules;

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
    /// Functions with a body in an uploaded module, at most (checked before compiling).
    pub max_functions: u32,
    /// The largest function body of an uploaded module, in bytes: Cranelift's time and
    /// memory grow faster than linearly with it.
    pub max_function_bytes: u32,
    /// All function bodies of an uploaded module together, in bytes.
    pub max_code_bytes: u64,
    /// How many of a module's newest versions are kept for pinning and rollback (at least 1);
    /// the current version and every pinned one are kept besides.
    pub keep_versions: usize,
}

impl Default for MapperConfig {
    fn default() -> Self {
        MapperConfig {
            max_module_bytes: 16 << 20,
            max_timeout_ms: 5_000,
            max_memory_mib: 256,
            max_instances: 1000,
            max_functions: CodeLimits::default().max_functions,
            max_function_bytes: CodeLimits::default().max_function_bytes,
            max_code_bytes: CodeLimits::default().max_code_bytes,
            keep_versions: 10,
        }
    }
}

impl MapperConfig {
    pub fn ceilings(&self) -> Ceilings {
        Ceilings {
            max_timeout: std::time::Duration::from_millis(self.max_timeout_ms),
            max_memory: self.max_memory_mib << 20,
            max_instances: self.max_instances,
            code: CodeLimits {
                max_functions: self.max_functions,
                max_function_bytes: self.max_function_bytes,
                max_code_bytes: self.max_code_bytes,
            },
        }
    }
}

/// What the API shows of a module (and, with `created` the upload time, of one version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MapperMeta {
    pub id: String,
    /// The current version: 1 for the first upload, the highest so far + 1 for new bytes.
    pub version: u64,
    pub sha256: String,
    pub size: usize,
    /// The first upload of the module.
    pub created: DateTime<Utc>,
    /// The last change of the current version (an upload or a rollback).
    pub modified: DateTime<Utc>,
    /// The version of the `ferrule:mapper` world the module was built against.
    pub wit_version: String,
    pub imports: Vec<String>,
    /// The highest version ever uploaded: version numbers are never given twice, also after
    /// a rollback or a deleted version.
    #[serde(default)]
    pub latest_version: u64,
}

impl MapperMeta {
    /// The number the next upload of new bytes gets.
    fn next_version(&self, kept: &BTreeMap<u64, MapperMeta>) -> u64 {
        let highest = kept.keys().next_back().copied().unwrap_or(0);
        self.latest_version.max(self.version).max(highest) + 1
    }
}

#[derive(Clone)]
pub struct Entry {
    pub meta: MapperMeta,
    /// Follows the current version.
    pub slot: Arc<ModuleSlot>,
    /// The kept versions (the current one among them), `created` their upload times.
    pub versions: BTreeMap<u64, MapperMeta>,
}

pub struct MapperRegistry {
    engine: WasmEngine,
    /// `None`: modules live in memory only (tests).
    dir: Option<PathBuf>,
    entries: RwLock<BTreeMap<String, Entry>>,
    /// The versions that mapping definitions pin, compiled when first named.
    pinned: RwLock<HashMap<(String, u64), Arc<ModuleSlot>>>,
    /// Uploads and deletes one at a time, so a replacement never races another.
    writes: tokio::sync::Mutex<()>,
    pub config: MapperConfig,
    /// Cluster mode: where the modules are stored once for every instance.
    shared: OnceLock<Arc<dyn SharedModules>>,
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

pub fn version_not_found(id: &str, version: impl std::fmt::Display) -> DittoError {
    DittoError::new(
        StatusCode::NOT_FOUND,
        "mappers:version.notfound",
        format!("The mapper with ID '{id}' has no version {version}."),
    )
    .with_description(format!(
        "GET /api/2/mappers/{id}/versions lists the versions that are kept."
    ))
}

fn version_in_use(id: &str, version: u64, why: String) -> DittoError {
    DittoError::new(
        StatusCode::CONFLICT,
        "mappers:version.inuse",
        format!("Version {version} of the mapper with ID '{id}' is in use and cannot be deleted."),
    )
    .with_description(why)
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
    let (status, error) = if e.too_large {
        (StatusCode::PAYLOAD_TOO_LARGE, "mappers:module.toolarge")
    } else {
        (StatusCode::BAD_REQUEST, "mappers:module.invalid")
    };
    DittoError::new(status, error, e.message).with_description(e.description)
}

/// The data directory refused a change (a full disk, a read-only directory): nothing was
/// changed and the client may try again (503, as connections and things answer).
/// The cluster's module store refused a change: another instance changed the module first
/// (409), or the database is not available (503).
fn shared_error(id: &str) -> impl FnOnce(crate::store::StoreError) -> DittoError + '_ {
    move |e| match e {
        crate::store::StoreError::Conflict(_) => DittoError::new(
            StatusCode::CONFLICT,
            "mappers:mapper.conflict",
            format!("The mapper with ID '{id}' was changed on another instance meanwhile."),
        )
        .with_description("Read it again and repeat the change if it is still wanted."),
        e => DittoError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "mappers:mapper.unavailable",
            format!("The mapper with ID '{id}' is not available, please try again later."),
        )
        .with_description(format!("The cluster's module store failed: {e}")),
    }
}

fn storage(e: std::io::Error) -> DittoError {
    tracing::error!(error = %e, "a mapper module could not be stored");
    DittoError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "mappers:mapper.unavailable",
        "The mapper module is not available, please try again later.",
    )
    .with_description(format!(
        "The change was not applied because it could not be persisted ({e})."
    ))
}

/// Configures `module` with each user's options (an instance each, within its deadline):
/// 409 `mappers:module.incompatible` naming the connections whose options it refuses.
fn refusals_of(
    engine: &WasmEngine,
    id: &str,
    module: &CompiledModule,
    users: &[(String, Map<String, Value>)],
) -> Result<(), DittoError> {
    let mut refused: Vec<(String, String)> = Vec::new();
    for (connection, options) in users {
        // Limits above this host's ceilings were refused when the connection was stored.
        let Ok(definition) = Definition::parse(options, engine) else {
            continue;
        };
        let slot = ModuleSlot::new(module.clone(), 0);
        if let Err(e) = WasmMapper::new(engine, slot, definition, None) {
            refused.push((connection.clone(), e.message));
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    let mut names: Vec<&str> = refused.iter().map(|(c, _)| c.as_str()).collect();
    names.dedup();
    let reasons: Vec<String> = refused.iter().map(|(c, e)| format!("{c}: {e}")).collect();
    Err(DittoError::new(
        StatusCode::CONFLICT,
        "mappers:module.incompatible",
        format!(
            "The new version of the mapper '{id}' refuses the options of connections that use it: [{}].",
            names.join(", ")
        ),
    )
    .with_description(format!(
        "{}. Nothing was changed. Change those connections' options first, or upload with \
         ?force=true to replace the module anyway (their messages then fail as configuration \
         errors and stay with the broker until the options or the module are fixed).",
        reasons.join("; ")
    )))
}

/// The options of `connection`'s `WebAssembly` mapping definitions that name the module `id`
/// (following its current version or pinning one).
pub fn definitions_naming<'a>(
    connection: &'a Connection,
    id: &'a str,
) -> impl Iterator<Item = &'a Map<String, Value>> {
    connection
        .mapping_definitions
        .values()
        .filter(|d| d.mapping_engine == "WebAssembly")
        .filter(move |d| module_ref(&d.options).is_some_and(|r| r.id == id))
        .map(|d| &d.options)
}

/// What a `WebAssembly` mapping definition's options name (`None`: no valid `module`).
pub fn module_ref(options: &Map<String, Value>) -> Option<versions::ModuleRef<'_>> {
    options
        .get("module")
        .and_then(Value::as_str)
        .and_then(|m| versions::parse_ref(m).ok())
}

/// The users (connection id, options) that follow the current version.
fn followers(users: &[(String, Map<String, Value>)]) -> Vec<(String, Map<String, Value>)> {
    users
        .iter()
        .filter(|(_, o)| module_ref(o).is_some_and(|r| r.version.is_none()))
        .cloned()
        .collect()
}

/// The versions the users pin.
fn pins(users: &[(String, Map<String, Value>)]) -> BTreeSet<u64> {
    users
        .iter()
        .filter_map(|(_, o)| module_ref(o).and_then(|r| r.version))
        .collect()
}

/// Runs file work (or compiling) on a blocking thread: never on an async worker.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, DittoError> + Send + 'static,
) -> Result<T, DittoError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(DittoError::internal(format!(
            "Storing the module failed: {e}"
        )))
    })
}

/// Writes `bytes` to a temporary file next to `path`, fsynced; `path` is replaced only by
/// [`commit`]. A failure removes the temporary file.
fn write_temporary(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Renames each temporary file over its target, then fsyncs the directory.
fn commit(dir: &Path, files: &[(PathBuf, PathBuf)]) -> std::io::Result<()> {
    for (tmp, path) in files {
        std::fs::rename(tmp, path)?;
    }
    std::fs::File::open(dir)?.sync_all()
}

/// Writes a module's bytes and metadata as `<stem>.wasm` and `<stem>.json` in `dir` (a module's
/// current version, or one kept version): both are written and fsynced as temporary files
/// first, so a failure (a full disk) leaves what was stored as it was and no temporary file
/// behind.
fn store_module(dir: &Path, stem: &str, bytes: &[u8], meta: &[u8]) -> std::io::Result<()> {
    let (wasm, json) = (
        dir.join(format!("{stem}.wasm")),
        dir.join(format!("{stem}.json")),
    );
    let wasm_tmp = write_temporary(&wasm, bytes)?;
    let json_tmp = match write_temporary(&json, meta) {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_file(&wasm_tmp);
            return Err(e);
        }
    };
    commit(dir, &[(wasm_tmp.clone(), wasm), (json_tmp.clone(), json)]).inspect_err(|_| {
        let _ = std::fs::remove_file(&wasm_tmp);
        let _ = std::fs::remove_file(&json_tmp);
    })
}

/// Compiles `bytes` with `engine`, or loads their precompiled artifact from `cache`.
fn compile_in(
    engine: &WasmEngine,
    cache: Option<&Path>,
    bytes: &[u8],
) -> Result<CompiledModule, ModuleError> {
    match cache {
        Some(cache) => engine.load(bytes, cache),
        None => engine.compile(bytes),
    }
}

/// Writes a module's files in a registry directory (`ferrule import` into a data directory).
pub fn write_module_files(dir: &Path, id: &str, bytes: &[u8], meta: &[u8]) -> std::io::Result<()> {
    store_module(dir, id, bytes, meta)
}

/// The modules of a registry directory, with their metadata, without compiling them
/// (`ferrule export` of a data directory). A module without readable metadata is an error.
pub fn read_module_files(dir: &Path) -> anyhow::Result<Vec<(MapperMeta, Vec<u8>)>> {
    let mut out = Vec::new();
    let files = match std::fs::read_dir(dir) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", dir.display())),
    };
    for file in files {
        let path = file?.path();
        if path.extension().is_none_or(|e| e != "wasm") {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        let meta_path = path.with_extension("json");
        let meta: MapperMeta = serde_json::from_slice(&std::fs::read(&meta_path)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", meta_path.display()))?;
        out.push((meta, bytes));
    }
    out.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    Ok(out)
}

/// Removes the precompiled artifacts of the module with `sha256` (of any engine build).
fn remove_artifacts(cache: &Path, sha256: &str) {
    let Ok(files) = std::fs::read_dir(cache) else {
        return;
    };
    let prefix = format!("{sha256}-");
    for file in files.flatten() {
        let name = file.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix)
            && name.ends_with(".cwasm")
            && let Err(e) = std::fs::remove_file(file.path())
        {
            tracing::warn!(file = %file.path().display(), error = %e, "a precompiled mapper could not be removed");
        }
    }
}

impl MapperRegistry {
    /// A registry over `data_dir` (or in memory when `None`), loading the stored modules from
    /// their precompiled artifacts where those fit this engine.
    pub fn open(data_dir: Option<&Path>, config: MapperConfig) -> anyhow::Result<MapperRegistry> {
        anyhow::ensure!(
            config.keep_versions >= 1,
            "[mappers] keep_versions must be at least 1"
        );
        let engine = WasmEngine::new(config.ceilings())
            .map_err(|e| anyhow::anyhow!("{}: {}", e.message, e.description))?;
        let registry = MapperRegistry {
            engine,
            dir: data_dir.map(|d| d.join(MAPPERS_DIR)),
            entries: RwLock::new(BTreeMap::new()),
            pinned: RwLock::new(HashMap::new()),
            writes: tokio::sync::Mutex::new(()),
            config,
            shared: OnceLock::new(),
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
                    latest_version: 1,
                });
            if meta.sha256 != module.sha256 {
                // The module was replaced and the process stopped before the metadata was.
                meta.version += 1;
                meta.sha256 = module.sha256.clone();
                meta.size = module.size;
                meta.modified = now;
            }
            let mut kept = versions::read_metas(dir, &id)?;
            if kept
                .get(&meta.version)
                .is_none_or(|k| k.sha256 != meta.sha256)
            {
                // Stored before versions were kept (the current one is the first kept), or
                // imported over a kept version of the same number (the current one wins).
                let first = versions::version_meta(&meta);
                match versions::write(dir, &first, &bytes) {
                    Ok(()) => {
                        kept.insert(first.version, first);
                    }
                    Err(e) => {
                        tracing::warn!(mapper = %id, error = %e, "the current version cannot be kept")
                    }
                }
            }
            meta.latest_version = meta.next_version(&kept) - 1;
            let slot = ModuleSlot::new(module, meta.version);
            entries.insert(
                id,
                Entry {
                    meta,
                    slot,
                    versions: kept,
                },
            );
        }
        Ok(())
    }

    /// Compiles `bytes`, or loads their precompiled artifact.
    fn compile(&self, bytes: &[u8]) -> Result<CompiledModule, ModuleError> {
        compile_in(&self.engine, self.cache_dir().as_deref(), bytes)
    }

    /// The module a mapping definition's `module` option names: the slot that follows the
    /// current version (`id`, `id@latest`), or that of a pinned version (`id@N`, compiled or
    /// loaded from its precompiled artifact when first named: call it on a blocking thread).
    pub fn resolve(&self, reference: &str) -> Result<Arc<ModuleSlot>, String> {
        let r = versions::parse_ref(reference)?;
        let entry = self.get(r.id).ok_or_else(|| {
            format!(
                "The mapper module <{}> is not uploaded (PUT /api/2/mappers/{}).",
                r.id, r.id
            )
        })?;
        let Some(n) = r.version else {
            return Ok(entry.slot);
        };
        let key = (r.id.to_string(), n);
        if let Some(slot) = self.pinned.read().unwrap().get(&key) {
            return Ok(slot.clone());
        }
        let (Some(dir), true) = (&self.dir, entry.versions.contains_key(&n)) else {
            return Err(format!(
                "The mapper module <{}> has no version {n}: GET /api/2/mappers/{}/versions lists the kept ones.",
                r.id, r.id
            ));
        };
        let bytes = versions::read_bytes(dir, r.id, n).map_err(|e| {
            format!(
                "Version {n} of the mapper module <{}> cannot be read: {e}",
                r.id
            )
        })?;
        let module = self
            .compile(&bytes)
            .map_err(|e| format!("{} {}", e.message, e.description))?;
        let slot = ModuleSlot::sharing(module, n, entry.slot.stats.clone());
        Ok(self
            .pinned
            .write()
            .unwrap()
            .entry(key)
            .or_insert(slot)
            .clone())
    }

    pub fn get(&self, id: &str) -> Option<Entry> {
        self.entries.read().unwrap().get(id).cloned()
    }

    pub fn list(&self) -> Vec<Entry> {
        self.entries.read().unwrap().values().cloned().collect()
    }

    /// The stored bytes of a module's current version, or of a kept version (read on a
    /// blocking thread).
    pub async fn module_bytes(
        &self,
        id: &str,
        version: Option<u64>,
    ) -> Result<Vec<u8>, DittoError> {
        let entry = self.get(id).ok_or_else(|| not_found(id))?;
        if let Some(n) = version
            && !entry.versions.contains_key(&n)
        {
            return Err(version_not_found(id, n));
        }
        let Some(dir) = self.dir.clone() else {
            return Err(DittoError::internal("This registry keeps no module bytes."));
        };
        let key = id.to_string();
        blocking(move || {
            match version {
                Some(n) => versions::read_bytes(&dir, &key, n),
                None => std::fs::read(dir.join(format!("{key}.wasm"))),
            }
            .map_err(storage)
        })
        .await
    }

    /// Validates and compiles `bytes`, stores them and makes them the current version of `id`;
    /// connections that use `id` switch to it for their next message. Compiling and writing
    /// (fsync of up to `max_module_bytes`) run on a blocking thread. `Ok(true)`: a new module.
    ///
    /// A replacement is configured first with the options of every mapping definition that
    /// follows the current version (`users`: connection id and options of every definition
    /// naming the module): when the new version refuses one, nothing changes and the answer is
    /// 409 naming the connections and the reasons, unless `force`. The same bytes again change
    /// nothing (the version stays); the bytes of a kept version make it current again.
    pub async fn put(
        self: &Arc<Self>,
        id: &str,
        bytes: Vec<u8>,
        users: Vec<(String, Map<String, Value>)>,
        force: bool,
    ) -> Result<(bool, MapperMeta), DittoError> {
        if !valid_id(id) {
            return Err(id_invalid(id));
        }
        let _write = self.writes.lock().await;
        let previous = self.get(id);
        if let Some(previous) = &previous {
            let sha256 = ferrule_wasm::sha256(&bytes);
            if previous.meta.sha256 == sha256 {
                return Ok((false, previous.meta.clone()));
            }
            if let Some(kept) = previous.versions.values().find(|v| v.sha256 == sha256) {
                let version = kept.version;
                let meta = self
                    .make_current(id, previous, version, bytes, &users, force)
                    .await?;
                return Ok((false, meta));
            }
        }
        let this = self.clone();
        let (key, earlier) = (id.to_string(), previous.as_ref().map(|p| p.meta.clone()));
        let next = previous
            .as_ref()
            .map_or(1, |p| p.meta.next_version(&p.versions));
        let follow = followers(&users);
        let (module, meta, bytes) = blocking(move || {
            let module = this.compile(&bytes).map_err(module_invalid)?;
            if !force {
                refusals_of(&this.engine, &key, &module, &follow)?;
            }
            let now = Utc::now();
            let meta = MapperMeta {
                id: key.clone(),
                version: next,
                sha256: module.sha256.clone(),
                size: module.size,
                created: earlier.as_ref().map_or(now, |p| p.created),
                modified: now,
                wit_version: module.wit_version.clone(),
                imports: module.imports.clone(),
                latest_version: next,
            };
            Ok((module, meta, bytes))
        })
        .await?;
        if let Some(shared) = self.shared.get() {
            let expected = previous.as_ref().map(|p| p.meta.version);
            shared
                .put_module(meta.clone(), bytes.clone(), expected)
                .await
                .map_err(shared_error(id))?;
        }
        self.install(id, module, meta.clone(), bytes).await?;
        self.prune(id, &users).await;
        Ok((previous.is_none(), meta))
    }

    /// Makes the kept `version` of `id` (its `bytes`) current again, configured first with the
    /// followers' options as an upload is. The caller holds `writes`.
    async fn make_current(
        self: &Arc<Self>,
        id: &str,
        previous: &Entry,
        version: u64,
        bytes: Vec<u8>,
        users: &[(String, Map<String, Value>)],
        force: bool,
    ) -> Result<MapperMeta, DittoError> {
        let kept = previous
            .versions
            .get(&version)
            .cloned()
            .ok_or_else(|| version_not_found(id, version))?;
        let (this, key, follow) = (self.clone(), id.to_string(), followers(users));
        let (module, bytes) = blocking(move || {
            let module = this.compile(&bytes).map_err(module_invalid)?;
            if !force {
                refusals_of(&this.engine, &key, &module, &follow)?;
            }
            Ok((module, bytes))
        })
        .await?;
        let meta = MapperMeta {
            created: previous.meta.created,
            modified: Utc::now(),
            latest_version: previous.meta.next_version(&previous.versions) - 1,
            ..kept
        };
        if let Some(shared) = self.shared.get() {
            shared
                .put_module(meta.clone(), bytes.clone(), Some(previous.meta.version))
                .await
                .map_err(shared_error(id))?;
        }
        self.install(id, module, meta.clone(), bytes).await?;
        Ok(meta)
    }

    /// Rollback: makes the kept `version` of `id` current (`None`: the newest version before
    /// the current one). `users` and `force` as for [`Self::put`].
    pub async fn rollback(
        self: &Arc<Self>,
        id: &str,
        version: Option<u64>,
        users: Vec<(String, Map<String, Value>)>,
        force: bool,
    ) -> Result<MapperMeta, DittoError> {
        let _write = self.writes.lock().await;
        let entry = self.get(id).ok_or_else(|| not_found(id))?;
        let current = entry.meta.version;
        let target = match version {
            Some(n) => n,
            None => entry
                .versions
                .range(..current)
                .next_back()
                .map(|(n, _)| *n)
                .ok_or_else(|| {
                    DittoError::new(
                        StatusCode::NOT_FOUND,
                        "mappers:version.notfound",
                        format!("The mapper with ID '{id}' keeps no version before {current}."),
                    )
                    .with_description(format!(
                        "Name the version to make current with ?version=N; GET /api/2/mappers/{id}/versions lists them."
                    ))
                })?,
        };
        if !entry.versions.contains_key(&target) {
            return Err(version_not_found(id, target));
        }
        if target == current {
            return Ok(entry.meta);
        }
        let bytes = self.module_bytes(id, Some(target)).await?;
        self.make_current(id, &entry, target, bytes, &users, force)
            .await
    }

    /// Stores a compiled module in the data directory, as a kept version too when it is new,
    /// and makes it the current version of `id` (swapped into the connections that follow it).
    async fn install(
        &self,
        id: &str,
        module: CompiledModule,
        meta: MapperMeta,
        bytes: Vec<u8>,
    ) -> Result<(), DittoError> {
        let new_version = self
            .entries
            .read()
            .unwrap()
            .get(id)
            .is_none_or(|e| !e.versions.contains_key(&meta.version));
        let kept = versions::version_meta(&meta);
        if let Some(dir) = self.dir.clone() {
            let (key, json) = (
                id.to_string(),
                serde_json::to_vec_pretty(&meta).expect("metadata serialises"),
            );
            let kept = kept.clone();
            blocking(move || {
                if new_version {
                    versions::write(&dir, &kept, &bytes).map_err(storage)?;
                }
                store_module(&dir, &key, &bytes, &json)
                    .inspect_err(|_| {
                        if new_version {
                            // Not current, so not kept either.
                            let _ = versions::remove(&dir, &key, kept.version);
                            let _ = std::fs::remove_dir(versions::dir_of(&dir, &key));
                        }
                    })
                    .map_err(storage)
            })
            .await?;
        }
        let mut entries = self.entries.write().unwrap();
        match entries.get_mut(id) {
            Some(entry) => {
                entry.slot.replace(module, meta.version);
                entry.versions.entry(meta.version).or_insert(kept);
                entry.meta = meta;
            }
            None => {
                let slot = ModuleSlot::new(module, meta.version);
                let versions = BTreeMap::from([(meta.version, kept)]);
                entries.insert(
                    id.to_string(),
                    Entry {
                        meta,
                        slot,
                        versions,
                    },
                );
            }
        }
        Ok(())
    }

    /// Drops the versions of `id` past `keep_versions` that are neither current nor pinned by
    /// `users`. A failure is logged: the versions stay until the next upload.
    async fn prune(&self, id: &str, users: &[(String, Map<String, Value>)]) {
        let Some(entry) = self.get(id) else {
            return;
        };
        let gone = versions::to_prune(
            &entry.versions,
            self.config.keep_versions,
            entry.meta.version,
            &pins(users),
        );
        if gone.is_empty() {
            return;
        }
        if let Some(shared) = self.shared.get()
            && let Err(e) = shared.delete_versions(id.to_string(), gone.clone()).await
        {
            tracing::warn!(mapper = id, error = %e, "old versions cannot be dropped now");
            return;
        }
        if let Err(e) = self.drop_versions(id, &gone).await {
            tracing::warn!(mapper = id, error = %e.message, "old versions cannot be dropped now");
        }
    }

    /// Deletes the kept `version` of `id`; `pinned_by` are the connections that pin it (409
    /// when there are any, or when it is the current version).
    pub async fn delete_version(
        &self,
        id: &str,
        version: u64,
        pinned_by: &[String],
    ) -> Result<(), DittoError> {
        let _write = self.writes.lock().await;
        let entry = self.get(id).ok_or_else(|| not_found(id))?;
        if !entry.versions.contains_key(&version) {
            return Err(version_not_found(id, version));
        }
        if entry.meta.version == version {
            return Err(version_in_use(
                id,
                version,
                "It is the current version: upload another or roll back to one first.".into(),
            ));
        }
        if !pinned_by.is_empty() {
            return Err(version_in_use(
                id,
                version,
                format!(
                    "The connections [{}] pin it: change their mapping definitions first.",
                    pinned_by.join(", ")
                ),
            ));
        }
        if let Some(shared) = self.shared.get() {
            shared
                .delete_versions(id.to_string(), vec![version])
                .await
                .map_err(shared_error(id))?;
        }
        self.drop_versions(id, &[version]).await
    }

    /// Removes kept versions of `id` here: files, entries, pinned slots, unused artifacts.
    async fn drop_versions(&self, id: &str, gone: &[u64]) -> Result<(), DittoError> {
        if let Some(dir) = self.dir.clone() {
            let (key, gone) = (id.to_string(), gone.to_vec());
            blocking(move || {
                for n in gone {
                    versions::remove(&dir, &key, n).map_err(storage)?;
                }
                Ok(())
            })
            .await?;
        }
        let mut shas = Vec::new();
        if let Some(entry) = self.entries.write().unwrap().get_mut(id) {
            for n in gone {
                shas.extend(entry.versions.remove(n).map(|v| v.sha256));
            }
        }
        self.pinned
            .write()
            .unwrap()
            .retain(|(m, n), _| m != id || !gone.contains(n));
        for sha in shas {
            self.forget_artifacts(sha).await;
        }
        Ok(())
    }

    /// Cluster mode: modules are stored once in `shared`, and this registry follows it.
    pub fn share_through(&self, shared: Arc<dyn SharedModules>) {
        let _ = self.shared.set(shared);
    }

    /// Cluster mode: takes over what the cluster stores for module `id` (another instance
    /// uploaded, replaced or deleted it).
    pub async fn sync(&self, id: &str) -> Result<(), DittoError> {
        let Some(shared) = self.shared.get() else {
            return Ok(());
        };
        let _write = self.writes.lock().await;
        let stored = shared
            .load_module(id.to_string())
            .await
            .map_err(shared_error(id))?;
        self.follow(id, stored).await
    }

    /// Cluster mode: takes over every module the cluster stores, and drops the others.
    pub async fn sync_all(&self) -> Result<(), DittoError> {
        let Some(shared) = self.shared.get() else {
            return Ok(());
        };
        let _write = self.writes.lock().await;
        let stored = shared.load_all_modules().await.map_err(shared_error("*"))?;
        let mut gone: std::collections::BTreeSet<String> =
            self.entries.read().unwrap().keys().cloned().collect();
        for (meta, bytes) in stored {
            let id = meta.id.clone();
            gone.remove(&id);
            self.follow(&id, Some((meta, bytes))).await?;
        }
        for id in gone {
            self.follow(&id, None).await?;
        }
        Ok(())
    }

    /// Makes module `id` what the cluster stores. The caller holds `writes`.
    async fn follow(
        &self,
        id: &str,
        stored: Option<shared::StoredModule>,
    ) -> Result<(), DittoError> {
        match (stored, self.get(id)) {
            (Some((meta, bytes)), local)
                if local.as_ref().is_none_or(|l| {
                    l.meta.sha256 != meta.sha256 || l.meta.version != meta.version
                }) =>
            {
                let (engine, cache) = (self.engine.clone(), self.cache_dir());
                let (module, bytes) = blocking(move || {
                    let module = compile_in(&engine, cache.as_deref(), &bytes);
                    Ok((module.map_err(module_invalid)?, bytes))
                })
                .await?;
                tracing::info!(
                    mapper = id,
                    version = meta.version,
                    "module changed elsewhere"
                );
                self.install(id, module, meta, bytes).await?;
                self.follow_versions(id).await
            }
            (Some(_), _) => self.follow_versions(id).await,
            (None, Some(_)) => {
                tracing::info!(mapper = id, "module deleted elsewhere");
                self.remove_local(id).await
            }
            (None, None) => Ok(()),
        }
    }

    /// Keeps the versions of `id` the cluster keeps (the current one always). The caller
    /// holds `writes`.
    async fn follow_versions(&self, id: &str) -> Result<(), DittoError> {
        let (Some(shared), Some(entry)) = (self.shared.get(), self.get(id)) else {
            return Ok(());
        };
        let stored: BTreeMap<u64, MapperMeta> = shared
            .load_versions(id.to_string())
            .await
            .map_err(shared_error(id))?
            .into_iter()
            .map(|m| (m.version, m))
            .collect();
        let gone: Vec<u64> = entry
            .versions
            .keys()
            .filter(|n| !stored.contains_key(n) && **n != entry.meta.version)
            .copied()
            .collect();
        for (n, meta) in stored {
            if entry.versions.contains_key(&n) {
                continue;
            }
            let Some(bytes) = shared
                .load_version(id.to_string(), n)
                .await
                .map_err(shared_error(id))?
            else {
                continue;
            };
            if let Some(dir) = self.dir.clone() {
                let kept = meta.clone();
                blocking(move || versions::write(&dir, &kept, &bytes).map_err(storage)).await?;
            }
            if let Some(entry) = self.entries.write().unwrap().get_mut(id) {
                entry.versions.insert(n, meta);
            }
        }
        self.drop_versions(id, &gone).await
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
        if let (Some(shared), Some(entry)) = (self.shared.get(), self.get(id)) {
            shared
                .delete_module(id.to_string(), entry.meta.version)
                .await
                .map_err(shared_error(id))?;
        }
        self.remove_local(id).await
    }

    /// Removes a module's files, kept versions and entry here. The caller holds `writes`.
    async fn remove_local(&self, id: &str) -> Result<(), DittoError> {
        if let Some(dir) = self.dir.clone() {
            let key = id.to_string();
            blocking(move || {
                for ext in ["wasm", "json"] {
                    match std::fs::remove_file(dir.join(format!("{key}.{ext}"))) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(storage(e)),
                    }
                }
                versions::remove_all(&dir, &key).map_err(storage)
            })
            .await?;
        }
        let removed = self.entries.write().unwrap().remove(id);
        self.pinned.write().unwrap().retain(|(m, _), _| m != id);
        if let Some(removed) = removed {
            let shas: BTreeSet<String> = removed
                .versions
                .into_values()
                .map(|v| v.sha256)
                .chain([removed.meta.sha256])
                .collect();
            for sha in shas {
                self.forget_artifacts(sha).await;
            }
        }
        Ok(())
    }

    /// Removes the precompiled artifacts of `sha256` unless a kept version still has those
    /// bytes.
    async fn forget_artifacts(&self, sha256: String) {
        let in_use =
            self.entries.read().unwrap().values().any(|e| {
                e.meta.sha256 == sha256 || e.versions.values().any(|v| v.sha256 == sha256)
            });
        if let (false, Some(cache)) = (in_use, self.cache_dir()) {
            let _ = blocking(move || {
                remove_artifacts(&cache, &sha256);
                Ok(())
            })
            .await;
        }
    }
}
