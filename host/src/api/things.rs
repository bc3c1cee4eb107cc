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

/// `GET /api/2/things`: server-sent events of twin changes (`Accept: text/event-stream`,
/// [`super::watch`]), the things of `ids`, or a page of things in id order.
pub(super) fn things_route(verb: Verb) -> Handlers {
    match verb {
        Verb::Get => on(verb, things),
        other => super::no_handler(other),
    }
}

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

/// How many things a `GET /api/2/things` without `ids` lists by default, and at most
/// (`option=size(n)`), as Ditto's search pages.
const DEFAULT_PAGE: usize = 25;
const MAX_PAGE: usize = 200;

async fn things(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if wants_events(&headers) {
        let request = super::watch::WatchRequest::from_query(query.as_deref());
        return super::watch::watch(&state.hub.router, &request)
            .unwrap_or_else(|e| e.into_response());
    }
    match list(&state, query.as_deref()) {
        Ok(things) => (
            [(header::CONTENT_TYPE, "application/json")],
            Value::Array(things).to_string(),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Whether the request asks for server-sent events (`Accept: text/event-stream`).
fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"))
}

/// The things of `ids` that exist, in the order asked (Ditto's `RetrieveThings`), or without
/// `ids` the first things in id order of the `namespaces` given, `option=size(n)` of them.
fn list(state: &AppState, query: Option<&str>) -> Result<Vec<Value>, DittoError> {
    let mut ids = Vec::new();
    let mut namespaces = Vec::new();
    let mut fields = None;
    let mut size = DEFAULT_PAGE;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let list = || crate::model::topic::comma_list(&value).map(String::from);
        match name.as_ref() {
            "ids" => ids.extend(list()),
            "namespaces" => namespaces.extend(list()),
            "fields" => {
                crate::model::fields::FieldSelector::parse(&value)?;
                fields = Some(value.into_owned());
            }
            "option" => size = page_size(&value)?,
            _ => {}
        }
    }
    if ids.is_empty() {
        ids = state.hub.twin.ids(&namespaces, size);
    }
    Ok(ids
        .into_iter()
        .filter_map(|thing_id| {
            let response = state.hub.twin.read(&TwinCommand {
                thing_id,
                action: Action::Retrieve,
                path: "/".into(),
                value: None,
                headers: Headers::new(),
                fields: fields.clone(),
            });
            (response.status == Some(200))
                .then_some(response.value)
                .flatten()
        })
        .collect())
}

/// `size(n)` of Ditto's search `option` (other options are not supported here).
fn page_size(option: &str) -> Result<usize, DittoError> {
    let invalid = || {
        DittoError::new(
            StatusCode::BAD_REQUEST,
            "thing-search:option.invalid",
            format!("The option <{option}> is invalid."),
        )
        .with_description(format!(
            "Listing things takes only the option size(n), 1 <= n <= {MAX_PAGE}."
        ))
    };
    let n = option
        .trim()
        .strip_prefix("size(")
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(invalid)?;
    if (1..=MAX_PAGE).contains(&n) {
        Ok(n)
    } else {
        Err(invalid())
    }
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
    if method == Method::GET && wants_events(&headers) {
        // Ditto's server-sent events of one thing, or of one path of it.
        let mut request = super::watch::WatchRequest::from_query(query.as_deref());
        request.ids = vec![id];
        request.pointer = (!path.is_empty()).then(|| format!("/{path}"));
        return super::watch::watch(&state.hub.router, &request)
            .unwrap_or_else(|e| e.into_response());
    }
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
