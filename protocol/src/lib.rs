//! The Ditto Protocol: topics, headers, field selectors and the message envelope, exactly as
//! Eclipse Ditto writes them in JSON; and the external messages brokers carry. One definition,
//! used by the Ferrule host and by the mapper SDK.
//!
//! The reader takes hostile input: values and header values nest at most 128 levels
//! (serde_json's limit), a `path` has at most [`MAX_PATH_DEPTH`] segments, `fields` must be a
//! field selector of at most [`fields::MAX_DEPTH`] levels, and error messages quote at most 200
//! characters of what they refuse.

pub mod error;
pub mod external;
pub mod fields;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzz;
pub mod headers;
mod json;
pub mod mapper;
pub mod message;
mod read;
pub mod topic;
pub mod wire;

pub use error::{MAPPER_CONFIG_FAILED, MAPPING_FAILED, ProtocolError};
pub use external::ExternalMessage;
pub use fields::FieldSelector;
pub use headers::Headers;
pub use mapper::Mapper;
pub use message::{CONTENT_TYPE, DittoMessage, MAX_PATH_DEPTH};
pub use topic::{Channel, Criterion, Group, Topic};
