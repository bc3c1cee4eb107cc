//! Ditto's error JSON: every failure a client sees is one of these.
//!
//! `{"status": 404, "error": "connectivity:connection.notfound", "message": "...", "description": "..."}`

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::borrow::Cow;

/// An error as Eclipse Ditto reports it (a `DittoRuntimeException` as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DittoError {
    #[serde(serialize_with = "serialize_status")]
    pub status: StatusCode,
    pub error: Cow<'static, str>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
}

fn serialize_status<S: serde::Serializer>(status: &StatusCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u16(status.as_u16())
}

impl std::fmt::Display for DittoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.error,
            self.status.as_u16(),
            self.message
        )?;
        if let Some(d) = &self.description {
            write!(f, " {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DittoError {}

impl DittoError {
    pub fn new(
        status: StatusCode,
        error: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        DittoError {
            status,
            error: error.into(),
            message: message.into(),
            description: None,
            href: None,
        }
    }

    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    // ---- JSON -------------------------------------------------------------------------------

    pub fn json_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "json.invalid", message)
            .with_description("Check if the JSON was valid (e.g. on https://jsonlint.com) and if it was in required format.")
    }

    /// `pointer` is a JSON pointer such as `/connectionType` or `/sources/0/address`.
    pub fn json_field_missing(pointer: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "json.field.missing",
            format!("JSON did not include required <{pointer}> field!"),
        )
        .with_description("Check if all required JSON fields were set.")
    }

    // ---- connections ------------------------------------------------------------------------

    pub fn connection_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "connectivity:connection.notfound",
            format!("The Connection with ID '{id}' could not be found or requester had insufficient permissions to access it."),
        )
        .with_description(
            "Check if the ID of your requested Connection was correct and you have sufficient permissions.",
        )
    }

    /// Creating an id that exists (piggyback `createConnection`; PUT upserts instead).
    pub fn connection_conflict(id: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "connectivity:connection.conflict",
            format!("The Connection with ID '{id}' was already created."),
        )
        .with_description("Choose another ID, or modify or delete the existing Connection.")
    }

    pub fn connection_id_invalid(id: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "connectivity:connection.id.invalid",
            format!("The Connection ID '{id}' is not valid."),
        )
        .with_description("It must be conform to the regular expression: <[a-zA-Z0-9-_:]{1,100}>.")
    }

    pub fn id_not_settable() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "connectivity:id.notsettable",
            "It is not allowed to provide an explicit ID for a connection.",
        )
        .with_description("Remove the ID from the connection as it will be generated.")
    }

    pub fn id_mismatch(path_id: &str, body_id: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "connectivity:id.notsettable",
            format!(
                "The Connection ID '{body_id}' in the body does not match the ID '{path_id}' in the path."
            ),
        )
        .with_description("Either omit the ID from the body or use the same ID as in the path.")
    }

    pub fn configuration_invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "connectivity:connection.configuration.invalid",
            message,
        )
        .with_description(
            "Make sure all required properties are set and valid in the configuration.",
        )
    }

    pub fn uri_invalid(uri: &str, reason: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "connectivity:connection.uri.invalid",
            format!("The Connection URI '{}' has an invalid format: {reason}.", redact_uri(uri)),
        )
        .with_description(
            "The accepted format is {protocol}://{username}:{password}@{hostname}:{port}/{path}; URL-encode username and password (e.g. %40 for '@').",
        )
    }

    /// `hint` says what is wrong; Ditto's message names the whole topic string.
    pub fn topic_invalid(topic: &str, hint: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "connectivity:topic.invalid",
            format!("The topic '{topic}' could not be parsed."),
        )
        .with_description(format!(
            "'{hint}' - check if the format is the expected one."
        ))
    }

    /// Ditto's `things:field.selection.invalid` (`InvalidThingFieldSelectionException`):
    /// `extraFields` that name something other than a thing's fields.
    pub fn field_selection_invalid(selection: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "things:field.selection.invalid",
            format!("Thing field selection <{selection}> was not valid."),
        )
        .with_description(
            "Please provide a comma separated List of valid Thing fields. Make sure that you did not use a space after a comma. Valid Fields are: [thingId, policyId, definition, _namespace, _revision, _created, _modified, _metadata(/[^,]+)?, _policy, _context, _context(/[^,]+)?, features(/[^,]+)?, attributes(/[^,]+)?]",
        )
    }

    pub fn ack_label_invalid(label: &str, connection_id: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "acknowledgement:label.invalid",
            format!("Acknowledgement label <{label}> is invalid."),
        )
        .with_description(format!(
            "Declared acknowledgement labels of a connection must have the form <connectionId>:<alphanumeric-suffix>, here '{connection_id}:<suffix>' or '{{{{connection:id}}}}:<suffix>', 3 to 100 characters of [a-zA-Z0-9-_:]."
        ))
    }

    pub fn ack_label_not_unique() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "acknowledgement:label.not.unique",
            "An issued acknowledgement label may only be used for one target of the connection.",
        )
        .with_description(
            "Please choose unique suffixes for your configured issued acknowledgement labels.",
        )
    }

    pub fn command_invalid(command: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "connectivity:command.invalid",
            format!("The command <{command}> is invalid or unknown."),
        )
        .with_description(
            "Choose from one of the valid commands, e.g. <connectivity.commands:openConnection>.",
        )
    }

    pub fn connections_amount_illegal(count: usize, limit: usize) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "connectivity:connections.amount.illegal",
            format!("The amount of requested connections ({count}) exceeds the limit of '{limit}'."),
        )
        .with_description(
            "Please request less connections: retrieve the IDs with '?ids-only=true', then the connections one by one.",
        )
    }

    pub fn precondition_failed(header_name: &str, header_value: &str, actual: &str) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "connectivity:precondition.failed",
            format!("The comparison of precondition header '{header_name}' for the requested connection resource evaluated to false. Header value: '{header_value}', actual entity-tag: '{actual}'."),
        )
        .with_description("The comparison of the provided precondition header with the current ETag value of the requested connection resource evaluated to false. Check the value of your conditional header value.")
    }

    // ---- HTTP layer -------------------------------------------------------------------------

    /// `supplied`: whether the request carried credentials at all.
    pub fn unauthorized(supplied: bool) -> Self {
        let message = if supplied {
            "The supplied authentication is invalid."
        } else {
            "The resource requires authentication, which was not supplied with the request."
        };
        Self::new(
            StatusCode::UNAUTHORIZED,
            "gateway:authentication.failed",
            message,
        )
        .with_description(
            "Check if your credentials were correct: HTTP Basic authentication as user 'devops'.",
        )
    }

    pub fn route_not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "gateway:route.notfound",
            format!("The requested resource <{path}> could not be found."),
        )
        .with_description(
            "Check the path of your request; the connection API lives under /api/2/connections.",
        )
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "gateway:method.notallowed",
            format!("The provided HTTP method '{method}' is not allowed on this resource."),
        )
        .with_description("Check if you used the correct resource and method combination.")
    }

    pub fn media_type_unsupported(actual: Option<&str>, allowed: &[&str]) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "general:mediatype.unsupported",
            format!(
                "The Media-Type <{}> is not supported for this resource.",
                actual.unwrap_or("none")
            ),
        )
        .with_description(format!(
            "Allowed Media-Types are: <[{}]>.",
            allowed.join(", ")
        ))
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "gateway:request.entity.toolarge",
            format!("The size of the request body exceeds the limit of {limit} bytes."),
        )
        .with_description("Send a smaller request body.")
    }

    pub fn body_timeout(within: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "gateway:request.timeout",
            format!(
                "The request body did not arrive within {} ms.",
                within.as_millis()
            ),
        )
        .with_description(
            "Send the whole body without long pauses; the server's limit is [http] \
             body_read_timeout_ms.",
        )
    }

    /// A `timeout` that is no duration (Ditto's `TimeoutInvalidException`).
    pub fn timeout_unreadable(value: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "timeout.invalid",
            format!("The timeout <{value}> is not a duration such as 10s, 250ms or 1m."),
        )
        .with_description("Please choose a valid timeout.")
    }

    /// A `timeout` over the maximum (Ditto's `GatewayTimeoutInvalidException`).
    pub fn timeout_out_of_bounds(timeout: std::time::Duration, max: std::time::Duration) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "gateway:timeout.invalid",
            format!(
                "The timeout <{}ms> is not inside its allowed bounds <0ms - {}ms>",
                timeout.as_millis(),
                max.as_millis()
            ),
        )
        .with_description("Choose a timeout inside the bounds.")
    }

    /// A command that did not answer within its `timeout` (Ditto's `CommandTimeoutException`).
    pub fn command_timeout(timeout: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "command.timeout",
            format!(
                "The Command reached the specified timeout of {}ms.",
                timeout.as_millis()
            ),
        )
        .with_description("Try increasing the command timeout.")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "connectivity:internalerror",
            message,
        )
        .with_description("An internal error occurred; the server log has the details.")
    }
}

/// The URI without its password, for messages and logs.
pub fn redact_uri(uri: &str) -> String {
    if let Some(scheme_end) = uri.find("://") {
        let rest = &uri[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}://{}:***@{}",
                    &uri[..scheme_end],
                    &userinfo[..colon],
                    &rest[at + 1..]
                );
            }
        }
    }
    uri.to_string()
}

impl IntoResponse for DittoError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"DITTO-DEVOPS\", charset=\"UTF-8\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_the_ditto_members() {
        let e = DittoError::connection_not_found("my-conn");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["status"], 404);
        assert_eq!(v["error"], "connectivity:connection.notfound");
        assert!(v["message"].as_str().unwrap().contains("'my-conn'"));
        assert!(v["description"].is_string());
        assert!(v.get("href").is_none());
    }

    #[test]
    fn uri_password_is_redacted() {
        assert_eq!(
            redact_uri("amqp://user:secret@host:5672/vhost"),
            "amqp://user:***@host:5672/vhost"
        );
        assert_eq!(redact_uri("tcp://host:1883"), "tcp://host:1883");
        assert_eq!(redact_uri("tcp://user@host:1883"), "tcp://user@host:1883");
    }
}
