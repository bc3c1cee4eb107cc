//! Payload mapping (spec §6): mappers turn external messages into Ditto Protocol messages and
//! back; a source's or target's `payloadMapping` is a pipeline of them.
//!
//! Engines: the built-ins `Ditto`, `Normalized`, `RawMessage`, `ConnectionStatus`,
//! `ImplicitThingCreation`, `UpdateTwinWithLiveResponse`, `CloudEvents`; `JavaScript`
//! (`ferrule-js`), `Rhai` (`ferrule-rhai`) and `WebAssembly` (`ferrule-wasm`, modules from the
//! [`crate::mappers`] registry).

pub mod catalogue;
pub mod cloudevents;
pub mod ditto;
pub mod inbound_builtins;
pub mod normalized;
pub mod pipeline;
pub mod raw;

pub use catalogue::{ALIASES, ENGINES, is_alias, is_engine};

/// The mapper contract (defined in `ferrule-protocol`, so engines can live in crates of their own).
pub use ferrule_protocol::Mapper;

/// What building a mapper may need beyond its definition: the uploaded WebAssembly modules and
/// where a mapper's own log lines go.
#[derive(Clone, Default)]
pub struct MappingContext {
    pub wasm: Option<std::sync::Arc<crate::mappers::MapperRegistry>>,
    pub log_sink: Option<ferrule_wasm::LogSink>,
}

impl MappingContext {
    pub fn with_log_sink(&self, sink: ferrule_wasm::LogSink) -> MappingContext {
        MappingContext {
            wasm: self.wasm.clone(),
            log_sink: Some(sink),
        }
    }
}
