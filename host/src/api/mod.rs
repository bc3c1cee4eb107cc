//! The HTTP API: the route table ([`ROUTES`]) every route comes from, with who may call it;
//! authentication, request bodies, the JSON answers for unknown routes and undecodable paths, and
//! `GET /metrics` with the HTTP request metrics.

pub mod auth;
pub mod connections;
pub mod mappers;
pub mod piggyback;
pub mod things;
pub mod timeout;
pub mod ui;
pub mod watch;

use crate::connections::ConnectionService;
use crate::error::DittoError;
use crate::monitoring::prometheus::{self, PrometheusConfig};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use std::sync::Arc;

/// What every handler shares.
pub struct AppState {
    pub connections: ConnectionService,
    pub hub: Arc<crate::hub::Hub>,
    pub mappers: Arc<crate::mappers::MapperRegistry>,
    /// What mapping definitions are built with (trials of definitions).
    pub mapping: crate::mapping::MappingContext,
    pub max_body_bytes: usize,
    /// A request body must arrive whole within this time.
    pub body_read_timeout: std::time::Duration,
    pub connections_retrieve_limit: usize,
    /// Cluster mode: status, metrics and logs are gathered from every instance.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// An HTTP method a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Put,
    Post,
    Patch,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Put => "PUT",
            Verb::Post => "POST",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Put => MethodFilter::PUT,
            Verb::Post => MethodFilter::POST,
            Verb::Patch => MethodFilter::PATCH,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials.
    Public,
    /// The `devops` user (HTTP Basic).
    Devops,
    /// `GET /metrics`: public unless `[prometheus] require_auth`; absent when Prometheus is off.
    Metrics,
}

/// The handler of one method of a route.
pub type Handlers = MethodRouter<Arc<AppState>>;

/// One route: its path (axum syntax), the methods it answers, who may call it, and the function
/// that gives the handler of each of those methods.
pub struct Route {
    pub path: &'static str,
    pub methods: &'static [Verb],
    pub access: Access,
    pub handler: fn(Verb) -> Handlers,
}

/// Every route of the service. [`router`] registers exactly these, with exactly these methods,
/// and puts the devops authentication in front of every `Devops` route; `tests/openapi.rs`
/// checks the table against the OpenAPI document and `tests/auth.rs` walks the document.
pub const ROUTES: &[Route] = {
    use Access::{Devops, Metrics, Public};
    use Verb::{Delete, Get, Patch, Post, Put};
    &[
        Route {
            path: "/health",
            methods: &[Get],
            access: Public,
            handler: health_route,
        },
        Route {
            path: OPENAPI_PATH,
            methods: &[Get],
            access: Public,
            handler: openapi_route,
        },
        Route {
            path: METRICS_PATH,
            methods: &[Get],
            access: Metrics,
            handler: metrics_route,
        },
        Route {
            path: "/api/2/connections",
            methods: &[Get, Post],
            access: Devops,
            handler: connections::collection,
        },
        Route {
            path: "/api/2/connections/{id}",
            methods: &[Get, Put, Delete],
            access: Devops,
            handler: connections::item,
        },
        Route {
            path: "/api/2/connections/{id}/status",
            methods: &[Get],
            access: Devops,
            handler: connections::status_route,
        },
        Route {
            path: "/api/2/connections/{id}/metrics",
            methods: &[Get],
            access: Devops,
            handler: connections::metrics_route,
        },
        Route {
            path: "/api/2/connections/{id}/logs",
            methods: &[Get],
            access: Devops,
            handler: connections::logs_route,
        },
        Route {
            path: "/api/2/connections/{id}/command",
            methods: &[Post],
            access: Devops,
            handler: connections::command_route,
        },
        Route {
            path: "/devops/piggyback/connectivity",
            methods: &[Post],
            access: Devops,
            handler: piggyback::route,
        },
        Route {
            path: "/api/2/things",
            methods: &[Get],
            access: Devops,
            handler: things::things_route,
        },
        Route {
            path: "/api/2/things/{id}",
            methods: &[Get, Put, Patch, Delete],
            access: Devops,
            handler: things::thing_route,
        },
        Route {
            path: "/api/2/things/{id}/{*path}",
            methods: &[Get, Put, Patch, Delete],
            access: Devops,
            handler: things::thing_path_route,
        },
        Route {
            path: "/api/2/mappers",
            methods: &[Get],
            access: Devops,
            handler: mappers::collection,
        },
        Route {
            path: "/api/2/mappers/{id}",
            methods: &[Get, Put, Delete],
            access: Devops,
            handler: mappers::item,
        },
        Route {
            path: "/api/2/mappers/{id}/module",
            methods: &[Get],
            access: Devops,
            handler: mappers::module_route,
        },
        Route {
            path: "/api/2/mappers/{id}/versions",
            methods: &[Get],
            access: Devops,
            handler: mappers::versions_route,
        },
        Route {
            path: "/api/2/mappers/{id}/versions/{version}",
            methods: &[Get, Delete],
            access: Devops,
            handler: mappers::version_route,
        },
        Route {
            path: "/api/2/mappers/{id}/versions/{version}/module",
            methods: &[Get],
            access: Devops,
            handler: mappers::version_module_route,
        },
        Route {
            path: "/api/2/mappers/{id}/rollback",
            methods: &[Post],
            access: Devops,
            handler: mappers::rollback_route,
        },
        Route {
            path: "/api/2/mappers/{id}/test",
            methods: &[Post],
            access: Devops,
            handler: mappers::test_route,
        },
        Route {
            path: "/api/2/mappings/test",
            methods: &[Post],
            access: Devops,
            handler: mappers::definition_test_route,
        },
        Route {
            path: "/ui",
            methods: &[Get],
            access: Public,
            handler: ui::root_route,
        },
        Route {
            path: ui::UI_PATH,
            methods: &[Get],
            access: Public,
            handler: ui::index_route,
        },
        Route {
            path: "/ui/app.js",
            methods: &[Get],
            access: Public,
            handler: ui::script_route,
        },
        Route {
            path: "/ui/app.css",
            methods: &[Get],
            access: Public,
            handler: ui::style_route,
        },
    ]
};

/// A route of [`ROUTES`] lists a method its handler function does not have: a programming
/// error, found by the first start.
pub(crate) fn no_handler(verb: Verb) -> ! {
    panic!(
        "ROUTES lists {} for a route without that handler",
        verb.as_str()
    )
}

fn health_route(verb: Verb) -> Handlers {
    match verb {
        Verb::Get => on(verb, health),
        other => no_handler(other),
    }
}

fn openapi_route(verb: Verb) -> Handlers {
    match verb {
        Verb::Get => on(verb, openapi),
        other => no_handler(other),
    }
}

fn metrics_route(verb: Verb) -> Handlers {
    match verb {
        Verb::Get => on(verb, scrape_metrics),
        other => no_handler(other),
    }
}

/// The connection routes, which take Ditto's `timeout` ([`timeout`]).
const CONNECTIONS_PATH: &str = "/api/2/connections";

pub fn router(
    state: Arc<AppState>,
    auth: Arc<auth::DevopsAuth>,
    metrics: PrometheusConfig,
) -> Router {
    let installed = prometheus::global().filter(|_| metrics.enabled);
    let mut router = Router::new();
    for route in ROUTES {
        let access = match route.access {
            Access::Metrics if installed.is_none() => continue,
            Access::Metrics if metrics.require_auth => Access::Devops,
            Access::Metrics => Access::Public,
            access => access,
        };
        let mut handlers = route
            .methods
            .iter()
            .fold(MethodRouter::new(), |all, &verb| {
                all.merge((route.handler)(verb))
            });
        if route.path.starts_with(CONNECTIONS_PATH) {
            handlers = handlers.route_layer(axum::middleware::from_fn(timeout::command_timeout));
        }
        if access == Access::Devops {
            handlers = handlers.route_layer(axum::middleware::from_fn_with_state(
                auth.clone(),
                auth::require_devops,
            ));
        }
        router = router.route(route.path, handlers);
    }
    let router = router
        .with_state(state)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(auth::no_challenge_for_scripts));
    match installed {
        Some(m) => router.layer(axum::middleware::from_fn_with_state(
            m,
            prometheus::track_http,
        )),
        None => router,
    }
}

/// The handler of one method, for the route functions of the API modules.
pub(crate) fn on<H, T>(verb: Verb, handler: H) -> Handlers
where
    H: axum::handler::Handler<T, Arc<AppState>>,
    T: 'static,
{
    axum::routing::on(verb.filter(), handler)
}

/// `GET /metrics`: the Prometheus exposition. Encoding runs on a blocking thread, away from the
/// workers that process messages.
async fn scrape_metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let Some(metrics) = prometheus::global() else {
        return DittoError::route_not_found(METRICS_PATH).into_response();
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

/// Where the Prometheus exposition is served.
pub const METRICS_PATH: &str = "/metrics";
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

/// The path parameters of a request, as `axum::extract::Path`; parameters that do not decode
/// (percent-encoded bytes that are not UTF-8) are Ditto's 404 for the path rather than axum's
/// plain-text rejection.
pub struct Path<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = DittoError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, DittoError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(params)) => Ok(Path(params)),
            Err(e) => Err(DittoError::route_not_found(parts.uri.path())
                .with_description(format!("The path cannot be read: {}", e.body_text()))),
        }
    }
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

/// Reads a request body up to `limit` bytes within `within`; larger bodies are answered with
/// 413, slower ones with 408 (a client trickling its body cannot hold a request forever).
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    within: std::time::Duration,
) -> Result<Bytes, DittoError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(DittoError::payload_too_large(limit));
    }
    let read = tokio::time::timeout(within, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| DittoError::body_timeout(within))?;
    read.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            DittoError::payload_too_large(limit)
        } else {
            DittoError::json_invalid(format!("The request body could not be read: {e}"))
        }
    })
}
