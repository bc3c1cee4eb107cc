//! The embedded twin: things, the twin commands on them, and their events.

pub mod engine;
pub mod errors;
pub mod pointer;
pub mod service;

#[cfg(test)]
mod engine_tests;

pub use engine::{Action, Outcome, StoredThing, TwinCommand, apply};
pub use service::{Events, TwinService};
