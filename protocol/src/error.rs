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

/// The error code of a message a mapper could not map.
pub const MAPPING_FAILED: &str = "connectivity:message.mapping.failed";
/// The error code of a mapper whose options are wrong.
pub const MAPPER_CONFIG_FAILED: &str = "connectivity:message.mapper.config.failed";

impl ProtocolError {
    /// A message a mapper could not map: what went wrong and what to do about it.
    pub fn mapping_failed(message: impl Into<String>, description: impl Into<String>) -> Self {
        ProtocolError {
            status: 400,
            error: MAPPING_FAILED.to_string(),
            message: message.into(),
            description: Some(description.into()),
        }
    }

    /// A mapper whose options are wrong; `engine` names it in the description.
    pub fn mapper_config_failed(message: impl Into<String>, engine: &str) -> Self {
        ProtocolError {
            status: 400,
            error: MAPPER_CONFIG_FAILED.to_string(),
            message: message.into(),
            description: Some(format!(
                "Check the configuration (options) of the {engine} mapping."
            )),
        }
    }

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

/// At most `max_chars` characters of `text`; a longer text is cut there and says how long it
/// was, so an error about a huge input stays small.
pub(crate) fn excerpt(text: &str, max_chars: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => std::borrow::Cow::Borrowed(text),
        Some((cut, _)) => std::borrow::Cow::Owned(format!(
            "{}... ({} characters)",
            &text[..cut],
            text.chars().count()
        )),
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.error, self.status, self.message)
    }
}

impl std::error::Error for ProtocolError {}
