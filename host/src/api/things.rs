//! `/api/2/things/{thingId}[/<path>]`: operator access to the twin, as Ditto's things API
//! answers it. Every request becomes the twin command a connection would send, so it produces
//! the same events.

use super::{AppState, Handlers, Path, Verb, media_type, on, read_body};
use crate::error::DittoError;
use crate::twin::{Action, TwinCommand};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferrule_protocol::Headers;
use serde_json::Value;
use std::sync::Arc;

/// Every method of the things API has one handler, which maps the method to a twin command.
pub(super) fn thing_route(verb: Verb) -> Handlers {
    on(verb, thing)
}

pub(super) fn thing_path_route(verb: Verb) -> Handlers {
    on(verb, thing_path)
}

async fn thing(
    state: State<Arc<AppState>>,
    Path(id): Path<String>,
    method: Method,
    query: RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(state, id, String::new(), method, query, headers, body).await
}

async fn thing_path(
    state: State<Arc<AppState>>,
    Path((id, path)): Path<(String, String)>,
    method: Method,
    query: RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(state, id, path, method, query, headers, body).await
}

/// Ditto headers from the HTTP request: correlation id (generated when absent) and the
/// conditional headers.
fn ditto_headers(headers: &HeaderMap) -> Headers {
    let mut out = Headers::new();
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let correlation = get("correlation-id")
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    out.insert("correlation-id", correlation);
    for name in ["if-match", "if-none-match"] {
        if let Some(v) = get(name) {
            out.insert(name, v);
        }
    }
    out
}

async fn handle(
    State(state): State<Arc<AppState>>,
    id: String,
    path: String,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match command(&state, id, path, method, query, &headers, body).await {
        Ok(cmd) => respond(&state, cmd).await,
        Err(e) => e.into_response(),
    }
}

async fn command(
    state: &AppState,
    id: String,
    path: String,
    method: Method,
    query: Option<String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<TwinCommand, DittoError> {
    let action = match method {
        Method::GET => Action::Retrieve,
        Method::PUT => Action::Modify,
        Method::PATCH => Action::Merge,
        Method::DELETE => Action::Delete,
        other => return Err(DittoError::method_not_allowed(other.as_str())),
    };
    let value = match action {
        Action::Modify | Action::Merge => {
            let mt = media_type(headers);
            let allowed: &[&str] = if action == Action::Merge {
                &["application/merge-patch+json"]
            } else {
                &["application/json"]
            };
            if let Some(mt) = mt.as_deref()
                && !allowed.contains(&mt)
                && !(action == Action::Modify && mt.ends_with("+json"))
            {
                return Err(DittoError::media_type_unsupported(Some(mt), allowed));
            }
            if action == Action::Merge && mt.is_none() {
                return Err(DittoError::media_type_unsupported(None, allowed));
            }
            let bytes =
                read_body(headers, body, state.max_body_bytes, state.body_read_timeout).await?;
            let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
                DittoError::json_invalid(format!("Failed to parse JSON string! {e}"))
            })?;
            Some(value)
        }
        _ => None,
    };
    let fields = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "fields")
        .map(|(_, v)| v.into_owned());
    Ok(TwinCommand {
        thing_id: id,
        action,
        path: format!("/{path}"),
        value,
        headers: ditto_headers(headers),
        fields,
    })
}

async fn respond(state: &AppState, cmd: TwinCommand) -> Response {
    let id = cmd.thing_id.clone();
    let whole_thing = cmd.path == "/";
    let response = state.hub.twin.execute(cmd).await;
    let status = StatusCode::from_u16(response.status.unwrap_or(500))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = if status == StatusCode::NOT_MODIFIED {
        status.into_response()
    } else {
        match &response.value {
            Some(v) => (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                v.to_string(),
            )
                .into_response(),
            None => status.into_response(),
        }
    };
    let h = out.headers_mut();
    for name in ["etag", "correlation-id"] {
        if let Some(v) = response.headers.get_str(name)
            && let Ok(v) = HeaderValue::from_str(&v)
        {
            h.insert(name, v);
        }
    }
    if status == StatusCode::CREATED
        && whole_thing
        && let Ok(v) = HeaderValue::from_str(&format!("/api/2/things/{id}"))
    {
        h.insert(header::LOCATION, v);
    }
    out
}
