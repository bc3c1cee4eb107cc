//! The connection model: Ditto's connection JSON, its parsing, defaults, validation and views.

pub mod connection;
pub mod fields;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzz;
pub mod parse;
pub mod record;
pub mod topic;
pub mod validate;

pub use connection::{Connection, ConnectionType, ConnectivityStatus};
pub use fields::FieldSelector;
pub use record::StoredConnection;
pub use validate::ValidationLimits;

#[cfg(test)]
mod proptests;
