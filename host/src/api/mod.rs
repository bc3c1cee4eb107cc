//! The HTTP API: the connection and things routes, authentication, request bodies, the JSON
//! answers for unknown routes, and `GET /metrics` with the HTTP request metrics.

pub mod auth;
pub mod connections;
pub mod mappers;
pub mod things;

use crate::connections::ConnectionService;
use crate::error::DittoError;
use crate::monitoring::prometheus::{self, PrometheusConfig};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
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

pub fn router(
    state: Arc<AppState>,
    auth: Arc<auth::DevopsAuth>,
    metrics: PrometheusConfig,
) -> Router {
    let api = connections::routes()
        .merge(things::routes())
        .merge(mappers::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            auth::require_devops,
        ))
        .with_state(state.clone());
    let mut router = Router::new()
        .route("/health", get(health))
        .route(OPENAPI_PATH, get(openapi));
    let installed = prometheus::global().filter(|_| metrics.enabled);
    if installed.is_some() {
        let mut scrape = Router::new().route("/metrics", get(scrape_metrics));
        if metrics.require_auth {
            scrape = scrape.route_layer(axum::middleware::from_fn_with_state(
                auth,
                auth::require_devops,
            ));
        }
        router = router.merge(scrape.with_state(state));
    }
    let router = router
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    match installed {
        Some(m) => router.layer(axum::middleware::from_fn_with_state(
            m,
            prometheus::track_http,
        )),
        None => router,
    }
}

/// `GET /metrics`: the Prometheus exposition. Encoding runs on a blocking thread, away from the
/// workers that process messages.
async fn scrape_metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let Some(metrics) = prometheus::global() else {
        return DittoError::route_not_found("/metrics").into_response();
    };
    let open = state.connections.open_count().await;
    let openmetrics =
        prometheus::wants_openmetrics(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    match tokio::task::spawn_blocking(move || metrics.encode(open, openmetrics)).await {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                if openmetrics {
                    prometheus::OPENMETRICS_CONTENT_TYPE
                } else {
                    prometheus::TEXT_CONTENT_TYPE
                },
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            DittoError::internal(format!("The metrics could not be encoded: {e}")).into_response()
        }
    }
}

/// Where the OpenAPI document of the whole HTTP API is served (without credentials).
pub const OPENAPI_PATH: &str = "/api/2/openapi.json";
/// The OpenAPI 3.1 document; `tests/openapi.rs` checks it against the routes.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
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
