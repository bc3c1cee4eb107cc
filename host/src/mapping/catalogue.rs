//! The catalogue of mapping engines a connection may name: connection validation checks every
//! `mappingEngine` and every `payloadMapping` reference against it.

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
