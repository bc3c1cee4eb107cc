//! Errors in Ditto's terms: an HTTP status, an error code, a message and a description.

use serde::{Deserialize, Serialize};

/// A Ditto error (`DittoRuntimeException` as JSON), independent of any HTTP library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolError {
    pub status: u16,
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl ProtocolError {
    pub fn new(status: u16, error: &str, message: impl Into<String>, description: &str) -> Self {
        ProtocolError {
            status,
            error: error.to_string(),
            message: message.into(),
            description: Some(description.to_string()),
        }
    }

    pub fn json_invalid(message: impl Into<String>) -> Self {
        Self::new(
            400,
            "json.invalid",
            message,
            "Check if the JSON was valid (e.g. on https://jsonlint.com) and if it was in required format.",
        )
    }

    pub fn json_field_missing(pointer: &str) -> Self {
        Self::new(
            400,
            "json.field.missing",
            format!("JSON did not include required <{pointer}> field!"),
            "Check if all required JSON fields were set.",
        )
    }

    pub fn unknown_topic_path(path: &str) -> Self {
        Self::new(
            400,
            "things.protocol.adapter:unknown.topicpath",
            format!("The topic path '{path}' is not supported."),
            "Check if the topic path is correct.",
        )
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.error, self.status, self.message)
    }
}

impl std::error::Error for ProtocolError {}
