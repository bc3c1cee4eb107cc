//! The contract of a payload mapper, shared by the host and every mapping engine.

use crate::{DittoMessage, ExternalMessage, ProtocolError};

/// A payload mapper. Built once per connection (per worker), called per message.
pub trait Mapper: Send + Sync {
    /// External message → 0..n Ditto Protocol messages (0: the message is dropped).
    fn map_inbound(&self, message: &ExternalMessage) -> Result<Vec<DittoMessage>, ProtocolError>;
    /// Ditto Protocol message → 0..n external messages.
    fn map_outbound(&self, message: &DittoMessage) -> Result<Vec<ExternalMessage>, ProtocolError>;
}
