//! WebAssembly payload mappers: components of the `ferrule:mapper` world (`../wit/mapper.wit`)
//! run by wasmtime in a sandbox.
//!
//! - [`WasmEngine`]: one per host; validates and compiles components ([`WasmEngine::compile`]),
//!   keeps their precompiled artifacts on disk ([`WasmEngine::load`]), instantiates from the
//!   pooling allocator and ticks the epoch that ends a call at its deadline.
//! - [`ModuleSlot`]: the current version of an uploaded module; replacing it hot-swaps the
//!   module under the connections that use it. Holds the module's [`MapperStats`].
//! - [`WasmMapper`]: a mapping definition (`{"mappingEngine": "WebAssembly", "options":
//!   {"module": ..., "timeoutMs": ..., "memoryLimitMiB": ...}}`); keeps warm instances, one per
//!   concurrent caller, and replaces an instance after a trap, timeout or memory exhaustion.
//!
//! - [`budget`]: what an upload may make the compiler do (functions, the largest function, all
//!   code), checked before compiling.
//!
//! A mapper gets no file system, network, environment or arguments: its WASI imports are
//! linked to an empty context (no preopened directory, every socket and name lookup refused),
//! and a component that imports anything else (`wasi:http`, say) is refused when it is
//! compiled.

mod bindings;
pub mod budget;
mod convert;
mod engine;
mod mapper;
mod sandbox;
mod stats;

pub use bindings::Level;
pub use budget::CodeLimits;
pub use engine::{Ceilings, CompiledModule, EPOCH_TICK, ModuleError, WORLD, WasmEngine, sha256};
pub use mapper::{
    Definition, LogSink, ModuleSlot, OPTION_MEMORY, OPTION_MODULE, OPTION_TIMEOUT, Version,
    WasmLimits, WasmMapper,
};
pub use sandbox::MAX_LOG_LINES;
pub use stats::{MapperStats, Outcome};
