//! Payload mapping: the catalogue of mapping engines a connection may name.
//!
//! The engines themselves (Ditto, JavaScript, Rhai, WebAssembly and the other built-ins) are
//! built here as they land; connection validation already checks every `mappingEngine` and every
//! `payloadMapping` reference against this catalogue.

/// Every `mappingEngine` value a mapping definition may use.
pub const ENGINES: [&str; 10] = [
    "Ditto",
    "JavaScript",
    "Rhai",
    "WebAssembly",
    "Normalized",
    "RawMessage",
    "ConnectionStatus",
    "ImplicitThingCreation",
    "UpdateTwinWithLiveResponse",
    "CloudEvents",
];

/// Engines a source or target may name directly in `payloadMapping`, without a mapping
/// definition, because they need no options (Ditto: `isConfigurationMandatory() == false`).
pub const ALIASES: [&str; 5] = [
    "Ditto",
    "Normalized",
    "RawMessage",
    "CloudEvents",
    "UpdateTwinWithLiveResponse",
];

pub fn is_engine(name: &str) -> bool {
    ENGINES.contains(&name)
}

pub fn is_alias(name: &str) -> bool {
    ALIASES.contains(&name)
}
