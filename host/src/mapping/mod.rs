//! Payload mapping (spec §6): mappers turn external messages into Ditto Protocol messages and
//! back; a source's or target's `payloadMapping` is a pipeline of them.
//!
//! Built today: the `Ditto` mapper. The other engines (JavaScript, Rhai, WebAssembly and the
//! remaining built-ins) are recognised by the catalogue and refused at connection start with a
//! clear reason until they land.

pub mod catalogue;
pub mod ditto;
pub mod pipeline;

pub use catalogue::{ALIASES, ENGINES, is_alias, is_engine};

use ferrule_protocol::{DittoMessage, ExternalMessage, ProtocolError};

/// A payload mapper. Built once per connection (per worker), called per message.
pub trait Mapper: Send + Sync {
    /// External message → 0..n Ditto Protocol messages (0: the message is dropped).
    fn map_inbound(&self, message: &ExternalMessage) -> Result<Vec<DittoMessage>, ProtocolError>;
    /// Ditto Protocol message → 0..n external messages.
    fn map_outbound(&self, message: &DittoMessage) -> Result<Vec<ExternalMessage>, ProtocolError>;
}
