//! Reading a mapper's options (the mapping definition's `options`, without `module`).
//!
//! ```
//! use ferrule_mapper_sdk::options;
//! use serde::Deserialize;
//! use serde_json::json;
//!
//! #[derive(Debug, Deserialize)]
//! #[serde(rename_all = "camelCase", deny_unknown_fields)]
//! struct Options {
//!     namespace: String,
//!     #[serde(default)]
//!     thing_id_header: Option<String>,
//! }
//!
//! let o: Options = options::parse(json!({"namespace": "org.acme"}).as_object().unwrap())?;
//! assert_eq!(o.namespace, "org.acme");
//! let e = options::parse::<Options>(json!({"namespce": "x"}).as_object().unwrap()).unwrap_err();
//! assert!(e.message.starts_with("Invalid options: unknown field `namespce`"));
//! # Ok::<(), ferrule_mapper_sdk::MappingError>(())
//! ```

use crate::error::MappingError;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Deserializes the options into `T`; an error names the field and what was wrong.
pub fn parse<T: DeserializeOwned>(options: &Map<String, Value>) -> Result<T, MappingError> {
    serde_json::from_value(Value::Object(options.clone()))
        .map_err(|e| MappingError::invalid_options(format!("Invalid options: {e}")))
}
