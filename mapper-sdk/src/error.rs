//! [`MappingError`]: why a mapping failed, as the WIT record `mapping-error` carries it.

use ferrule_protocol::ProtocolError;

/// Why a mapping (or the configuration of a mapper) failed.
///
/// `message` tells what went wrong, `description` what to do about it; both reach the
/// connection logs and the error response (`connectivity:message.mapping.failed`). An error
/// from [`Mapper::new`](crate::Mapper::new) makes the connection's configuration invalid (the
/// host answers 400 with it).
///
/// The struct has exactly the fields of the WIT record, so the guest bindings use it as is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MappingError {
    pub message: String,
    pub description: Option<String>,
}

impl MappingError {
    /// An error with a message and no description.
    pub fn new(message: impl Into<String>) -> MappingError {
        MappingError {
            message: message.into(),
            description: None,
        }
    }

    /// Adds (or replaces) the description: what the user can do about it.
    pub fn with_description(mut self, description: impl Into<String>) -> MappingError {
        self.description = Some(description.into());
        self
    }

    /// The mapping definition's options are not what the mapper needs.
    pub fn invalid_options(message: impl Into<String>) -> MappingError {
        MappingError::new(message)
            .with_description("Check the options of the WebAssembly mapping definition.")
    }

    /// The payload of a message is not what the mapper expects.
    pub fn invalid_payload(message: impl Into<String>) -> MappingError {
        MappingError::new(message).with_description(
            "Check that the device sends the payload the mapper's options describe.",
        )
    }

    /// A header the mapper needs is missing.
    pub fn missing_header(name: &str) -> MappingError {
        MappingError::new(format!("The message has no header '{name}'."))
            .with_description(format!("Send the header '{name}' with every message."))
    }
}

impl std::fmt::Display for MappingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(d) = &self.description {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for MappingError {}

impl From<ProtocolError> for MappingError {
    fn from(e: ProtocolError) -> MappingError {
        MappingError {
            message: e.message,
            description: e.description,
        }
    }
}

impl From<serde_json::Error> for MappingError {
    fn from(e: serde_json::Error) -> MappingError {
        MappingError::new(format!("Invalid JSON: {e}"))
            .with_description("Check if the JSON was valid and in the required format.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_and_conversions() {
        let e = MappingError::new("boom").with_description("fix it");
        assert_eq!(e.to_string(), "boom (fix it)");
        assert_eq!(MappingError::new("x").to_string(), "x");
        let p = ProtocolError::json_field_missing("/topic");
        let m: MappingError = p.clone().into();
        assert_eq!(m.message, p.message);
        assert_eq!(m.description, p.description);
        let j: MappingError = serde_json::from_str::<serde_json::Value>("{")
            .unwrap_err()
            .into();
        assert!(j.message.starts_with("Invalid JSON: "), "{}", j.message);
        assert!(
            MappingError::missing_header("device_id")
                .message
                .contains("device_id")
        );
    }
}
