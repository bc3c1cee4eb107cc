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
    /// The limits of JavaScript mappers (`[javascript]`).
    pub javascript: JavaScriptConfig,
}

/// `[javascript]`: the limits of every JavaScript mapper (Ditto's
/// `ditto.connectivity.mapping.javascript`; its `CONNECTIVITY_MESSAGE_MAPPING_JS_*` variables
/// set the first two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, rename_all = "snake_case", deny_unknown_fields)]
pub struct JavaScriptConfig {
    /// The longest incoming or outgoing script, in characters (`maxScriptSizeBytes`).
    pub max_script_size_bytes: usize,
    /// The longest run of one mapping call (`maxScriptExecutionTime`).
    pub max_script_execution_time_ms: u64,
    /// The memory of one mapper's JavaScript heap.
    pub max_memory_mib: usize,
    /// The native stack one call may use (Ditto counts 25 frames instead).
    pub max_stack_bytes: usize,
}

impl Default for JavaScriptConfig {
    fn default() -> Self {
        let d = ferrule_js::JsLimits::default();
        JavaScriptConfig {
            max_script_size_bytes: d.max_script_chars,
            max_script_execution_time_ms: d.timeout.as_millis() as u64,
            max_memory_mib: d.memory_bytes >> 20,
            max_stack_bytes: d.max_stack_bytes,
        }
    }
}

impl JavaScriptConfig {
    pub fn limits(&self) -> ferrule_js::JsLimits {
        ferrule_js::JsLimits {
            max_script_chars: self.max_script_size_bytes,
            timeout: std::time::Duration::from_millis(self.max_script_execution_time_ms),
            memory_bytes: self.max_memory_mib << 20,
            max_stack_bytes: self.max_stack_bytes,
        }
    }
}

/// Ditto's variables of the JavaScript limits and the keys of `[javascript]` they set.
pub const JAVASCRIPT_ENV: &[(&str, &str)] = &[
    (
        "CONNECTIVITY_MESSAGE_MAPPING_JS_MAX_SCRIPT_SIZE_BYTES",
        "max_script_size_bytes",
    ),
    (
        "CONNECTIVITY_MESSAGE_MAPPING_JS_MAX_EXECUTION_TIME",
        "max_script_execution_time_ms",
    ),
];

impl MappingContext {
    pub fn with_log_sink(&self, sink: ferrule_wasm::LogSink) -> MappingContext {
        MappingContext {
            wasm: self.wasm.clone(),
            log_sink: Some(sink),
            javascript: self.javascript,
        }
    }
}
