//! A mapping definition of engine `WebAssembly`: the module it names, its options and limits,
//! and its warm instances. Implements the host's [`Mapper`] trait.

use crate::bindings::{self, Level};
use crate::convert;
use crate::engine::{CompiledModule, EPOCH_TICK, WasmEngine};
use crate::sandbox::State;
use crate::stats::{MapperStats, Outcome};
use ferrule_protocol::{DittoMessage, ExternalMessage, Headers, Mapper, ProtocolError};
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use wasmtime::Store;

/// The option naming the uploaded module.
pub const OPTION_MODULE: &str = "module";
/// The option setting the deadline of one call, in milliseconds.
pub const OPTION_TIMEOUT: &str = "timeoutMs";
/// The option setting an instance's memory cap, in MiB.
pub const OPTION_MEMORY: &str = "memoryLimitMiB";

/// Receives what a mapper writes with the `log` import, with the correlation id of the message
/// it was mapping (`None` while configuring, or when the message has none).
pub type LogSink = Arc<dyn Fn(Level, &str, Option<&str>) + Send + Sync>;

/// Limits of one mapping definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WasmLimits {
    pub timeout: Duration,
    pub memory: usize,
}

impl Default for WasmLimits {
    fn default() -> Self {
        WasmLimits {
            timeout: Duration::from_millis(100),
            memory: 64 << 20,
        }
    }
}

/// A mapping definition's options, split into what the host uses and what reaches the module's
/// `configure`.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub module: String,
    pub limits: WasmLimits,
    /// The options without `module`, `timeoutMs` and `memoryLimitMiB`, as JSON text.
    pub options: String,
}

fn positive(options: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match options.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| {
                format!("The option <{key}> must be a positive whole number, not <{v}>.")
            }),
    }
}

impl Definition {
    /// Reads a definition's options; limits above the host's ceilings are refused.
    pub fn parse(options: &Map<String, Value>, engine: &WasmEngine) -> Result<Definition, String> {
        let module = match options.get(OPTION_MODULE) {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            _ => {
                return Err(format!(
                    "The option <{OPTION_MODULE}> must name an uploaded mapper module (PUT /api/2/mappers/{{mapperId}})."
                ));
            }
        };
        let ceilings = engine.ceilings();
        let mut limits = WasmLimits::default();
        if let Some(ms) = positive(options, OPTION_TIMEOUT)? {
            limits.timeout = Duration::from_millis(ms);
        }
        if limits.timeout > ceilings.max_timeout {
            return Err(format!(
                "The option <{OPTION_TIMEOUT}> may be at most {} on this host.",
                ceilings.max_timeout.as_millis()
            ));
        }
        if let Some(mib) = positive(options, OPTION_MEMORY)? {
            limits.memory = usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        }
        if limits.memory > ceilings.max_memory {
            return Err(format!(
                "The option <{OPTION_MEMORY}> may be at most {} on this host.",
                ceilings.max_memory >> 20
            ));
        }
        let mut rest = options.clone();
        for key in [OPTION_MODULE, OPTION_TIMEOUT, OPTION_MEMORY] {
            rest.remove(key);
        }
        Ok(Definition {
            module,
            limits,
            options: Value::Object(rest).to_string(),
        })
    }
}

/// One version of an uploaded module.
#[derive(Debug)]
pub struct Version {
    pub number: u64,
    pub module: CompiledModule,
}

/// Where the connections that use a module find its current version; replacing it swaps the
/// module under them: calls in flight finish on the old version, later calls use the new one.
#[derive(Debug)]
pub struct ModuleSlot {
    current: RwLock<Arc<Version>>,
    pub stats: Arc<MapperStats>,
}

impl ModuleSlot {
    pub fn new(module: CompiledModule, number: u64) -> Arc<ModuleSlot> {
        ModuleSlot::sharing(module, number, Arc::default())
    }

    /// A slot that counts its calls in `stats` (a pinned version counts in its module's).
    pub fn sharing(
        module: CompiledModule,
        number: u64,
        stats: Arc<MapperStats>,
    ) -> Arc<ModuleSlot> {
        Arc::new(ModuleSlot {
            current: RwLock::new(Arc::new(Version { number, module })),
            stats,
        })
    }

    pub fn current(&self) -> Arc<Version> {
        self.current.read().unwrap().clone()
    }

    pub fn replace(&self, module: CompiledModule, number: u64) {
        *self.current.write().unwrap() = Arc::new(Version { number, module });
    }
}

struct Warm {
    store: Store<State>,
    bindings: bindings::Mapper,
    version: u64,
}

/// A mapping definition of engine `WebAssembly`, ready to map.
pub struct WasmMapper {
    engine: WasmEngine,
    slot: Arc<ModuleSlot>,
    definition: Definition,
    idle: Mutex<Vec<Warm>>,
    sink: Option<LogSink>,
}

impl std::fmt::Debug for WasmMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmMapper")
            .field("definition", &self.definition)
            .finish_non_exhaustive()
    }
}

/// The deadline in epoch ticks (at least one whole timeout, rounded up, plus one tick).
fn ticks(timeout: Duration) -> u64 {
    (timeout.as_nanos() / EPOCH_TICK.as_nanos()) as u64 + 2
}

impl WasmMapper {
    /// A mapper of `slot`'s module with `definition`; starts and configures one instance, so a
    /// module that refuses its options is refused here (create, modify, dry-run).
    pub fn new(
        engine: &WasmEngine,
        slot: Arc<ModuleSlot>,
        definition: Definition,
        sink: Option<LogSink>,
    ) -> Result<WasmMapper, ProtocolError> {
        let mapper = WasmMapper {
            engine: engine.clone(),
            slot,
            definition,
            idle: Mutex::new(Vec::new()),
            sink,
        };
        let version = mapper.slot.current();
        let warm = mapper.start(&version)?;
        mapper.idle.lock().unwrap().push(warm);
        Ok(mapper)
    }

    pub fn stats(&self) -> &MapperStats {
        &self.slot.stats
    }

    /// A new instance of `version`, configured with the definition's options. Every failure is
    /// a `connectivity:message.mapper.config.failed`: the module refused the options, or
    /// trapped or timed out starting or configuring (callers must not treat a message whose
    /// instance could not start as handled).
    fn start(&self, version: &Version) -> Result<Warm, ProtocolError> {
        self.start_instance(version).map_err(|mut e| {
            e.error = ferrule_protocol::MAPPER_CONFIG_FAILED.to_string();
            e
        })
    }

    fn start_instance(&self, version: &Version) -> Result<Warm, ProtocolError> {
        let limits = self.definition.limits;
        let mut store = Store::new(self.engine.engine(), State::new(limits.memory));
        store.limiter(|state| &mut state.limiter);
        let _busy = self.engine.busy();
        store.set_epoch_deadline(ticks(limits.timeout));
        self.slot.stats.instance_started();
        let bindings = version
            .module
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.failure(&mut store, e, "starting"))?;
        store.set_epoch_deadline(ticks(limits.timeout));
        let configured = bindings
            .ferrule_mapper_mapping()
            .call_configure(&mut store, &self.definition.options);
        self.flush_logs(&mut store, None);
        match configured {
            Ok(Ok(())) => Ok(Warm {
                store,
                bindings,
                version: version.number,
            }),
            Ok(Err(e)) => Err(ProtocolError::mapping_failed(
                format!(
                    "The mapper <{}> refused its options: {}",
                    self.definition.module, e.message
                ),
                e.description.unwrap_or_else(|| {
                    "Check the options of the WebAssembly mapping definition.".to_string()
                }),
            )),
            Err(e) => Err(self.failure(&mut store, e, "configuring")),
        }
    }

    /// Hands the call's log lines to the sink; `headers`: those of the message mapped.
    fn flush_logs(&self, store: &mut Store<State>, headers: Option<&Headers>) {
        let state = store.data_mut();
        if state.logs.is_empty() && state.logs_dropped == 0 {
            return;
        }
        let logs = std::mem::take(&mut state.logs);
        let dropped = std::mem::take(&mut state.logs_dropped);
        match &self.sink {
            Some(sink) => {
                let correlation = headers.and_then(Headers::correlation_id);
                for (level, line) in &logs {
                    sink(*level, line, correlation.as_deref());
                }
                if dropped > 0 {
                    sink(
                        Level::Warn,
                        &format!("{dropped} more log lines of this call were dropped"),
                        correlation.as_deref(),
                    );
                }
            }
            None => {
                for (level, line) in &logs {
                    tracing::debug!(module = %self.definition.module, ?level, "{line}");
                }
            }
        }
    }

    /// Describes a trap: a timeout, memory exhaustion or another trap (with what the module
    /// wrote to stderr, where a panic message lands).
    fn failure(&self, store: &mut Store<State>, e: wasmtime::Error, doing: &str) -> ProtocolError {
        self.describe(store, &e, doing).1
    }

    fn describe(
        &self,
        store: &mut Store<State>,
        e: &wasmtime::Error,
        doing: &str,
    ) -> (Outcome, ProtocolError) {
        let module = &self.definition.module;
        let limits = self.definition.limits;
        if matches!(
            e.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::Interrupt)
        ) {
            return (
                Outcome::Timeout,
                ProtocolError::mapping_failed(
                    format!(
                        "The mapper <{module}> did not finish {doing} within {} ms.",
                        limits.timeout.as_millis()
                    ),
                    format!("Make the mapper faster or raise its option <{OPTION_TIMEOUT}>."),
                ),
            );
        }
        let state = store.data_mut();
        if state.limiter.memory_refused {
            return (
                Outcome::OutOfMemory,
                ProtocolError::mapping_failed(
                    format!(
                        "The mapper <{module}> ran out of memory {doing} (limit {} MiB).",
                        limits.memory >> 20
                    ),
                    format!(
                        "Make the mapper use less memory or raise its option <{OPTION_MEMORY}>."
                    ),
                ),
            );
        }
        let stderr = state.stderr.take();
        let trap = e.downcast_ref::<wasmtime::Trap>();
        if let Some(kind @ (wasmtime::Trap::StackOverflow | wasmtime::Trap::MemoryOutOfBounds)) =
            trap
        {
            // A mapper compiled from Rust keeps its stack in linear memory below its data: a
            // recursion too deep for it ends as an access out of bounds, rarely as wasmtime's
            // stack overflow. The backtrace adds nothing for the author; the first lines of
            // what it wrote to stderr may.
            let what = if *kind == wasmtime::Trap::StackOverflow {
                "overflowed its stack"
            } else {
                "overflowed its stack or accessed memory out of bounds"
            };
            let mut description = format!(
                "{kind}. A recursion too deep for the mapper's stack ends like this: make it iterative \
                 or give the component a larger stack (for Rust: \
                 -C link-arg=-zstack-size=BYTES)."
            );
            let stderr: String = stderr.lines().take(5).collect::<Vec<_>>().join("\n");
            if !stderr.is_empty() {
                description = format!("{stderr}\n{description}");
            }
            return (
                Outcome::Trap,
                ProtocolError::mapping_failed(
                    format!("The mapper <{module}> {what} {doing}."),
                    description,
                ),
            );
        }
        let mut description = format!("{e:#}");
        if !stderr.is_empty() {
            description = format!("{stderr}\n{description}");
        }
        (
            Outcome::Trap,
            ProtocolError::mapping_failed(
                format!("The mapper <{module}> trapped {doing}."),
                description,
            ),
        )
    }

    /// Runs `call` on a warm instance of the current version; a trap or timeout discards the
    /// instance, any other outcome returns it to the pool.
    fn call<T>(
        &self,
        headers: &Headers,
        call: impl FnOnce(
            &bindings::Mapper,
            &mut Store<State>,
        ) -> wasmtime::Result<Result<T, bindings::MappingError>>,
    ) -> Result<T, ProtocolError> {
        let version = self.slot.current();
        let mut warm = loop {
            let idle = self.idle.lock().unwrap().pop();
            match idle {
                Some(w) if w.version == version.number => break w,
                Some(_old_version) => continue,
                None => {
                    let started = Instant::now();
                    match self.start(&version) {
                        Ok(w) => break w,
                        Err(e) => {
                            let stats = &self.slot.stats;
                            stats.record(Outcome::Configuration, started.elapsed());
                            return Err(e);
                        }
                    }
                }
            }
        };
        let started = Instant::now();
        let busy = self.engine.busy();
        warm.store
            .set_epoch_deadline(ticks(self.definition.limits.timeout));
        let result = call(&warm.bindings, &mut warm.store);
        drop(busy);
        let elapsed = started.elapsed();
        self.flush_logs(&mut warm.store, Some(headers));
        let stats = &self.slot.stats;
        match result {
            Ok(Ok(value)) => {
                stats.record(Outcome::Succeeded, elapsed);
                self.keep(warm);
                Ok(value)
            }
            Ok(Err(e)) => {
                stats.record(Outcome::GuestError, elapsed);
                self.keep(warm);
                Err(ProtocolError::mapping_failed(
                    e.message,
                    e.description.unwrap_or_else(|| {
                        format!(
                            "The mapper <{}> could not map the message.",
                            self.definition.module
                        )
                    }),
                ))
            }
            Err(trap) => {
                let (outcome, error) = self.describe(&mut warm.store, &trap, "mapping");
                stats.record(outcome, elapsed);
                Err(error)
            }
        }
    }
}

impl WasmMapper {
    /// Returns an instance to the pool after a call, or retires it when its memory has grown
    /// past three quarters of the cap: a guest that leaks (componentize-py's CPython keeps
    /// ~0.6 KB per call) is replaced by a fresh instance before a call fails for memory.
    fn keep(&self, warm: Warm) {
        let limiter = &warm.store.data().limiter;
        if limiter.memory_size > limiter.memory_limit / 4 * 3 {
            self.slot.stats.instance_retired();
            tracing::debug!(module = %self.definition.module, memory = limiter.memory_size, "instance retired");
            return;
        }
        self.idle.lock().unwrap().push(warm);
    }
}

impl Mapper for WasmMapper {
    fn map_inbound(&self, message: &ExternalMessage) -> Result<Vec<DittoMessage>, ProtocolError> {
        let input = convert::external_to_wit(message);
        let outputs = self.call(&message.headers, |bindings, store| {
            bindings
                .ferrule_mapper_mapping()
                .call_map_inbound(store, &input)
        })?;
        outputs.into_iter().map(convert::ditto_from_wit).collect()
    }

    fn map_outbound(&self, message: &DittoMessage) -> Result<Vec<ExternalMessage>, ProtocolError> {
        let input = convert::ditto_to_wit(message);
        let outputs = self.call(&message.headers, |bindings, store| {
            bindings
                .ferrule_mapper_mapping()
                .call_map_outbound(store, &input)
        })?;
        Ok(outputs
            .into_iter()
            .map(convert::external_from_wit)
            .collect())
    }
}
