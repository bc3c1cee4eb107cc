//! The records of `wit/mapper.wit` (interface `types`) as plain Rust structs and the conversion
//! rules at the boundary: [`ferrule_protocol::wire`], shared with the host, so a mapper's
//! native tests ([`crate::testing::Harness`] runs every message through both directions) see
//! what the host will see. The rules:
//!
//! - Ditto header values that are JSON strings cross as the string itself, other JSON values
//!   (booleans, arrays, objects, numbers) as their JSON text. Coming back, a header value
//!   `true`/`false`, or one that starts with `[` or `{` and is valid JSON, becomes that JSON
//!   value; every other value stays a string (so a correlation id `"42"` stays a string).
//! - External message headers are strings on both sides.
//! - `value` and `extra` cross as JSON text; `topic` as its string form.
//! - `metadata` is not in the WIT record: it is dropped.

/// `record mapping-error`: the SDK's own error type.
pub use crate::error::MappingError;
pub use ferrule_protocol::wire::{DittoMessage, ExternalMessage, Headers};

/// A Ditto header value from its string form (see the module docs).
pub use ferrule_protocol::headers::header_value_from_string as header_value_from_wire;
