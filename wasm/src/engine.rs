//! The wasmtime engine of a host: one per process, shared by every WebAssembly mapper. It
//! validates and compiles components, keeps precompiled artifacts on disk, and ticks the epoch
//! that interrupts a call past its deadline (only while a call runs: an idle host is not woken).

use crate::bindings::MapperPre;
use crate::sandbox::State;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances: the granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The package of the world this host implements.
pub const WORLD: &str = "ferrule:mapper/mapper@0.1.0";
const MAPPING_EXPORT: &str = "ferrule:mapper/mapping@";
/// The world's own imports: `host` and the type-only `types`.
const HOST_IMPORT: &str = "ferrule:mapper/";

/// WASI interfaces a mapper may import. They are linked to an empty context: no environment,
/// no arguments, empty stdin, stdout discarded, stderr kept for error reports, no preopened
/// directory (so no file can be opened), and a network that refuses every socket and name
/// lookup. `wasi:filesystem` and `wasi:sockets` are granted on those terms because the
/// toolchains of other languages import them whatever the mapper does (componentize-py's
/// CPython, StarlingMonkey): a mapper that tries to use them gets an error, not a file.
const GRANTED: &[&str] = &[
    "wasi:io/",
    "wasi:cli/",
    "wasi:random/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// Host-wide limits; a mapping definition may ask for less, never for more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceilings {
    /// The longest deadline a mapping definition may set for one call.
    pub max_timeout: Duration,
    /// The most linear memory a mapping definition may give an instance.
    pub max_memory: usize,
    /// Live mapper instances in the whole host at most (slots of the pooling allocator).
    pub max_instances: u32,
    /// What an uploaded module may make the compiler do.
    pub code: crate::budget::CodeLimits,
}

impl Default for Ceilings {
    fn default() -> Self {
        Ceilings {
            max_timeout: Duration::from_secs(5),
            max_memory: 256 << 20,
            max_instances: 1000,
            code: crate::budget::CodeLimits::default(),
        }
    }
}

/// Why a module was refused: what is wrong and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ModuleError {
    pub message: String,
    pub description: String,
    /// The module is valid but asks more of the compiler than the host's limits allow
    /// ([`crate::budget`]): 413 rather than 400.
    pub too_large: bool,
}

impl ModuleError {
    pub(crate) fn new(message: impl Into<String>, description: impl Into<String>) -> ModuleError {
        ModuleError {
            message: message.into(),
            description: description.into(),
            too_large: false,
        }
    }

    pub(crate) fn too_large(
        message: impl Into<String>,
        description: impl Into<String>,
    ) -> ModuleError {
        ModuleError {
            too_large: true,
            ..ModuleError::new(message, description)
        }
    }
}

/// A validated, compiled mapper component, ready to instantiate.
#[derive(Clone)]
pub struct CompiledModule {
    pub(crate) pre: MapperPre<State>,
    component: Component,
    /// Hex SHA-256 of the component's bytes.
    pub sha256: String,
    /// Size of the component's bytes.
    pub size: usize,
    /// The version of `ferrule:mapper` the component was built against.
    pub wit_version: String,
    /// The interfaces the component imports.
    pub imports: Vec<String>,
}

impl std::fmt::Debug for CompiledModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledModule")
            .field("sha256", &self.sha256)
            .field("size", &self.size)
            .field("wit_version", &self.wit_version)
            .finish_non_exhaustive()
    }
}

impl CompiledModule {
    /// The precompiled form, for [`WasmEngine::load`]'s cache.
    pub fn serialize(&self) -> Result<Vec<u8>, ModuleError> {
        self.component
            .serialize()
            .map_err(|e| ModuleError::new("The module could not be serialized.", e.to_string()))
    }
}

struct Inner {
    engine: Engine,
    linker: Linker<State>,
    ceilings: Ceilings,
    /// Identifies the engine's code-generation settings in cache file names.
    compatibility: String,
    pooling: bool,
    ticker: Arc<Ticker>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker.stop.store(true, Ordering::SeqCst);
        drop(self.ticker.lock.lock().unwrap_or_else(|e| e.into_inner()));
        self.ticker.wake.notify_all();
    }
}

/// The epoch ticker's state. The ticker advances the epoch every [`EPOCH_TICK`] while guest
/// code may run (a [`Busy`] guard is alive) and parks after [`IDLE_TICKS`] ticks without any, so
/// an idle host is not woken a thousand times a second. A call only touches the lock when the
/// ticker is parked: under steady load a call costs two atomic additions and a load.
#[derive(Default)]
struct Ticker {
    active: AtomicUsize,
    parked: AtomicBool,
    stop: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

/// Ticks without a call before the ticker parks.
const IDLE_TICKS: u32 = 50;

impl Ticker {
    fn run(&self, engine: &wasmtime::EngineWeak) {
        let mut idle = 0;
        while !self.stop.load(Ordering::SeqCst) {
            if self.active.load(Ordering::SeqCst) > 0 {
                idle = 0;
            } else if idle < IDLE_TICKS {
                idle += 1;
            } else {
                let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
                // Announce the park before the last look at `active`: a caller that increments
                // after that look sees `parked` and wakes the ticker (under the lock).
                self.parked.store(true, Ordering::SeqCst);
                while self.active.load(Ordering::SeqCst) == 0 && !self.stop.load(Ordering::SeqCst) {
                    guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                self.parked.store(false, Ordering::SeqCst);
                idle = 0;
            }
            std::thread::sleep(EPOCH_TICK);
            match engine.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        }
    }
}

/// While alive, the epoch advances (deadlines of guest calls are enforced).
pub(crate) struct Busy<'a>(&'a Ticker);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The engine; cheap to clone.
#[derive(Clone)]
pub struct WasmEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine")
            .field("ceilings", &self.inner.ceilings)
            .field("pooling", &self.inner.pooling)
            .finish_non_exhaustive()
    }
}

fn config(ceilings: &Ceilings, pooling: bool) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    // `FERRULE_WASM_PERFMAP=1`: write /tmp/perf-<pid>.map so `perf report` names the compiled
    // functions of mappers (for profiling a mapper; modules compiled in this process only).
    if std::env::var_os("FERRULE_WASM_PERFMAP").is_some_and(|v| v == "1") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if pooling {
        let n = ceilings.max_instances;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(4))
            .total_memories(n)
            .total_tables(n.saturating_mul(4))
            .max_memory_size(ceilings.max_memory);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

impl WasmEngine {
    /// An engine with the pooling allocator (falling back to allocation on demand where the
    /// machine refuses the pool's address-space reservation) and an epoch ticker thread.
    pub fn new(ceilings: Ceilings) -> Result<WasmEngine, ModuleError> {
        let (engine, pooling) = match Engine::new(&config(&ceilings, true)) {
            Ok(engine) => (engine, true),
            Err(e) => {
                tracing::warn!(error = %e, "the pooling allocator is not available; instances are allocated on demand");
                let engine = Engine::new(&config(&ceilings, false)).map_err(|e| {
                    ModuleError::new("The WebAssembly engine could not start.", e.to_string())
                })?;
                (engine, false)
            }
        };
        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|_| {
                crate::bindings::Mapper::add_to_linker::<State, wasmtime::component::HasSelf<State>>(
                    &mut linker,
                    |state| state,
                )
            })
            .map_err(|e| ModuleError::new("The WebAssembly engine could not start.", e.to_string()))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compatibility = format!("{:016x}", hasher.finish());

        let ticker = Arc::new(Ticker::default());
        let weak = engine.weak();
        let ticking = ticker.clone();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || ticking.run(&weak))
            .map_err(|e| {
                ModuleError::new("The WebAssembly engine could not start.", e.to_string())
            })?;
        Ok(WasmEngine {
            inner: Arc::new(Inner {
                engine,
                linker,
                ceilings,
                compatibility,
                pooling,
                ticker,
            }),
        })
    }

    /// Keeps the epoch advancing while guest code runs: hold the guard over every call into an
    /// instance (instantiation, `configure`, mapping) that has an epoch deadline.
    pub(crate) fn busy(&self) -> Busy<'_> {
        let ticker = &*self.inner.ticker;
        ticker.active.fetch_add(1, Ordering::SeqCst);
        if ticker.parked.load(Ordering::SeqCst) {
            // Taking the lock orders this wake-up after the ticker's last look at `active`.
            drop(ticker.lock.lock().unwrap_or_else(|e| e.into_inner()));
            ticker.wake.notify_one();
        }
        Busy(ticker)
    }

    /// How many guards of [`WasmEngine::busy`] are alive (0 when the ticker sleeps).
    pub fn busy_calls(&self) -> usize {
        self.inner.ticker.active.load(Ordering::SeqCst)
    }

    pub fn ceilings(&self) -> &Ceilings {
        &self.inner.ceilings
    }

    /// Whether instances come from the pooling allocator.
    pub fn pooling(&self) -> bool {
        self.inner.pooling
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Validates `bytes` as a component of the mapper world and compiles it.
    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledModule, ModuleError> {
        check_header(bytes)?;
        crate::budget::check(bytes, &self.inner.ceilings.code)?;
        let component = Component::new(&self.inner.engine, bytes).map_err(|e| {
            ModuleError::new(
                "The module is not a valid WebAssembly component.",
                format!("{e:#}"),
            )
        })?;
        self.check(component, sha256(bytes), bytes.len())
    }

    /// The compiled module of `bytes`, from the precompiled artifact in `cache_dir` when one
    /// made by an engine of the same settings is there; otherwise compiled and the artifact
    /// written (a failed write costs a recompile on the next load, nothing more).
    pub fn load(&self, bytes: &[u8], cache_dir: &Path) -> Result<CompiledModule, ModuleError> {
        let hash = sha256(bytes);
        let file = cache_dir.join(format!("{hash}-{}.cwasm", self.inner.compatibility));
        if file.exists() {
            // Read into memory rather than mapped: a mapped file rewritten under a live module
            // would fault. SAFETY: the file is an artifact this host wrote from the same bytes
            // (named by their hash and the engine's settings) into its own data directory.
            let loaded = std::fs::read(&file)
                .map_err(wasmtime::Error::from)
                .and_then(|artifact| unsafe {
                    Component::deserialize(&self.inner.engine, artifact)
                });
            match loaded {
                Ok(component) => return self.check(component, hash, bytes.len()),
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "a precompiled mapper could not be loaded; compiling it again");
                }
            }
        }
        let module = self.compile(bytes)?;
        if let Err(e) = module.serialize().and_then(|artifact| {
            write_atomically(&file, &artifact)
                .map_err(|e| ModuleError::new("The cache could not be written.", e.to_string()))
        }) {
            tracing::warn!(file = %file.display(), error = %e.description, "a precompiled mapper could not be cached");
        }
        Ok(module)
    }

    /// Checks what `component` imports and exports against the world and prepares it.
    fn check(
        &self,
        component: Component,
        sha256: String,
        size: usize,
    ) -> Result<CompiledModule, ModuleError> {
        let engine = &self.inner.engine;
        let ty = component.component_type();
        let mut imports = Vec::new();
        for (name, _) in ty.imports(engine) {
            let granted =
                name.starts_with(HOST_IMPORT) || GRANTED.iter().any(|p| name.starts_with(p));
            if !granted {
                return Err(ModuleError::new(
                    format!("The module imports <{name}>, which mappers are not given."),
                    "A mapper runs without file system, network or other host access: it may \
                     import ferrule:mapper/host and the WASI 0.2 interfaces wasi:io, wasi:cli, \
                     wasi:random, wasi:clocks, wasi:filesystem (without any directory) and \
                     wasi:sockets (refusing every socket). Remove the code that needs the others \
                     (e.g. an HTTP client).",
                ));
            }
            imports.push(name.to_string());
        }
        let exports: Vec<String> = ty
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let wit_version = exports
            .iter()
            .find_map(|name| name.strip_prefix(MAPPING_EXPORT).map(str::to_string))
            .ok_or_else(|| {
                let names: Vec<&str> = exports.iter().map(String::as_str).collect();
                ModuleError::new(
                    format!("The module does not implement the world <{WORLD}>: it does not export the interface <ferrule:mapper/mapping>."),
                    format!(
                        "It exports [{}]. Build the mapper with ferrule-mapper-sdk (or wit-bindgen \
                         against Ferrule's wit/mapper.wit) so that it exports configure, \
                         map-inbound and map-outbound.",
                        names.join(", ")
                    ),
                )
            })?;
        if !wit_version.starts_with("0.1.") {
            return Err(ModuleError::new(
                format!(
                    "The module was built against ferrule:mapper@{wit_version}; this host implements <{WORLD}>."
                ),
                "Build the mapper against a 0.1.x version of the mapper world.",
            ));
        }
        let instance_pre = self.inner.linker.instantiate_pre(&component).map_err(|e| {
            ModuleError::new(
                "The module's imports do not match what the host provides.",
                format!("{e:#}"),
            )
        })?;
        let pre = MapperPre::new(instance_pre).map_err(|e| {
            ModuleError::new(
                format!("The module does not implement the world <{WORLD}>."),
                format!("{e:#}"),
            )
        })?;
        Ok(CompiledModule {
            pre,
            component,
            sha256,
            size,
            wit_version,
            imports,
        })
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

const MAGIC: &[u8] = b"\0asm";

fn check_header(bytes: &[u8]) -> Result<(), ModuleError> {
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(ModuleError::new(
            "The uploaded bytes are not WebAssembly.",
            "Upload the .wasm file a mapper build produces \
             (cargo build --target wasm32-wasip2 --release).",
        ));
    }
    // Layer 0 is a core module; 1 is a component.
    if bytes[6..8] == [0, 0] {
        return Err(ModuleError::new(
            "The uploaded bytes are a core WebAssembly module, not a component.",
            "Build the mapper for the wasm32-wasip2 target, which produces a component \
             (cargo build --target wasm32-wasip2 --release).",
        ));
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
