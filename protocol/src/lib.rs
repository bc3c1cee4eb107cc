//! The Ditto Protocol: topics, headers and the message envelope, exactly as Eclipse Ditto writes
//! them in JSON; and the external messages brokers carry. One definition, used by the Ferrule host and by the mapper SDK.

pub mod error;
pub mod external;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzz;
pub mod headers;
mod json;
pub mod mapper;
pub mod message;
pub mod topic;
pub mod wire;

pub use error::{MAPPER_CONFIG_FAILED, MAPPING_FAILED, ProtocolError};
pub use external::ExternalMessage;
pub use headers::Headers;
pub use mapper::Mapper;
pub use message::{CONTENT_TYPE, DittoMessage};
pub use topic::{Channel, Criterion, Group, Topic};
