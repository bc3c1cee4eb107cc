//! The HTTP API: the connection and things routes, authentication, request bodies and the JSON
//! answers for unknown routes.

pub mod auth;
pub mod connections;
pub mod mappers;
pub mod things;

use crate::connections::ConnectionService;
use crate::error::DittoError;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

/// What every handler shares.
pub struct AppState {
    pub connections: ConnectionService,
    pub hub: Arc<crate::hub::Hub>,
    pub mappers: Arc<crate::mappers::MapperRegistry>,
    pub max_body_bytes: usize,
    pub connections_retrieve_limit: usize,
}

pub fn router(state: Arc<AppState>, auth: Arc<auth::DevopsAuth>) -> Router {
    let api = connections::routes()
        .merge(things::routes())
        .merge(mappers::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            auth,
            auth::require_devops,
        ))
        .with_state(state);
    Router::new()
        .route("/health", get(health))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn health() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"UP"}"#,
    )
        .into_response()
}

async fn not_found(request: Request) -> Response {
    DittoError::route_not_found(request.uri().path()).into_response()
}

async fn method_not_allowed(request: Request) -> Response {
    DittoError::method_not_allowed(request.method().as_str()).into_response()
}

/// The media type of a request without its parameters, lower case.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// Reads a request body up to `limit` bytes; larger bodies are answered with 413.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, DittoError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(DittoError::payload_too_large(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            DittoError::payload_too_large(limit)
        } else {
            DittoError::json_invalid(format!("The request body could not be read: {e}"))
        }
    })
}
