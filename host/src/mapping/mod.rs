//! Payload mapping (spec §6): mappers turn external messages into Ditto Protocol messages and
//! back; a source's or target's `payloadMapping` is a pipeline of them.
//!
//! Built today: `Ditto`, `Normalized`, `RawMessage`, `ConnectionStatus`, `ImplicitThingCreation`,
//! `UpdateTwinWithLiveResponse`, `CloudEvents` and `JavaScript` (the `ferrule-js` crate). The other engines (JavaScript, Rhai, WebAssembly and the
//! remaining built-ins) are recognised by the catalogue and refused at connection start with a
//! clear reason until they land.

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
