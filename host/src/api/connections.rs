//! `/api/2/connections`: Ditto's connection management API (spec §2).

use super::{AppState, Handlers, Path, Verb, media_type, no_handler, on, read_body};
use crate::cluster::bus::Ask;
use crate::conditions::{PreconditionFailure, Preconditions};
use crate::connections::{Command, Entry, Upserted, lock};
use crate::error::DittoError;
use crate::model::FieldSelector;
use crate::model::parse::parse_object;
use crate::model::validate::is_valid_connection_id;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

type AppResult = Result<Response, DittoError>;
type St = State<Arc<AppState>>;

pub(super) fn collection(verb: Verb) -> Handlers {
    match verb {
        Verb::Get => on(verb, list),
        Verb::Post => on(verb, create),
        other => no_handler(other),
    }
}

pub(super) fn item(verb: Verb) -> Handlers {
    match verb {
        Verb::Get => on(verb, retrieve),
        Verb::Put => on(verb, modify),
        Verb::Delete => on(verb, remove),
        other => no_handler(other),
    }
}

pub(super) fn status_route(verb: Verb) -> Handlers {
    match verb {
        Verb::Get => on(verb, status),
        other => no_handler(other),
    }
}

pub(super) fn metrics_route(verb: Verb) -> Handlers {
    match verb {
        Verb::Get => on(verb, metrics),
        other => no_handler(other),
    }
}

pub(super) fn logs_route(verb: Verb) -> Handlers {
    match verb {
        Verb::Get => on(verb, logs),
        other => no_handler(other),
    }
}

pub(super) fn command_route(verb: Verb) -> Handlers {
    match verb {
        Verb::Post => on(verb, command),
        other => no_handler(other),
    }
}

pub(super) fn query(raw: Option<String>) -> HashMap<String, String> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

pub(super) fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params
        .get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn selector(params: &HashMap<String, String>) -> Result<Option<FieldSelector>, DittoError> {
    params
        .get("fields")
        .map(|f| FieldSelector::parse(f))
        .transpose()
}

fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.into(),
    )
        .into_response()
}

fn json_value(status: StatusCode, value: &Value) -> Response {
    json_response(status, serde_json::to_vec(value).unwrap_or_default())
}

fn with_etag(mut response: Response, entry: &Entry) -> Response {
    if let Ok(v) = HeaderValue::from_str(&entry.record.etag()) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

fn with_location(mut response: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("/api/2/connections/{id}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

fn check_id(id: &str) -> Result<(), DittoError> {
    if is_valid_connection_id(id) {
        Ok(())
    } else {
        Err(DittoError::connection_id_invalid(id))
    }
}

const JSON_TYPES: [&str; 2] = ["application/json", "application/octet-stream"];

/// Reads a JSON object body: `application/json` (or `+json`, `application/octet-stream`, or no
/// content type at all, as Ditto accepts), at most `max_body_bytes`.
pub(crate) async fn json_object(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Map<String, Value>, DittoError> {
    if let Some(mt) = media_type(headers)
        && !JSON_TYPES.contains(&mt.as_str())
        && !mt.ends_with("+json")
    {
        return Err(DittoError::media_type_unsupported(Some(&mt), &JSON_TYPES));
    }
    let bytes = read_body(headers, body, state.max_body_bytes, state.body_read_timeout).await?;
    parse_object(&bytes)
}

async fn list(State(state): St, RawQuery(raw): RawQuery) -> AppResult {
    let params = query(raw);
    let selector = selector(&params)?;
    let entries = state.connections.list();
    if flag(&params, "ids-only") || selector.as_ref().is_some_and(|s| s.is_only("id")) {
        let ids: Vec<&str> = entries.iter().map(|e| e.record.id()).collect();
        return Ok(json_value(StatusCode::OK, &json!(ids)));
    }
    if entries.len() > state.connections_retrieve_limit {
        return Err(DittoError::connections_amount_illegal(
            entries.len(),
            state.connections_retrieve_limit,
        ));
    }
    if let Some(selector) = selector {
        let all: Vec<Value> = entries
            .iter()
            .map(|e| Value::Object(e.record.to_json(Some(&selector))))
            .collect();
        return Ok(json_value(StatusCode::OK, &Value::Array(all)));
    }
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.body.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&e.body);
    }
    out.push(b']');
    Ok(json_response(StatusCode::OK, out))
}

async fn create(
    State(state): St,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let params = query(raw);
    let object = json_object(&state, &headers, body).await?;
    if flag(&params, "dry-run") {
        let id = state.connections.dry_run(object).await?;
        return Ok(json_value(
            StatusCode::OK,
            &json!({
                "type": "connectivity.responses:testConnection",
                "status": 200,
                "connectionId": id,
                "testResult": "ok",
            }),
        ));
    }
    Preconditions::from_headers(&headers)
        .check(None, false)
        .map_err(PreconditionFailure::into_error)?;
    let entry = state.connections.create(object).await?;
    let response = json_response(StatusCode::CREATED, entry.body.clone());
    Ok(with_location(
        with_etag(response, &entry),
        entry.record.id(),
    ))
}

async fn retrieve(
    State(state): St,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> AppResult {
    check_id(&id)?;
    let params = query(raw);
    let selector = selector(&params)?;
    let entry = state.connections.require(&id)?;
    match Preconditions::from_headers(&headers).check(Some(&entry.record.etag()), true) {
        Ok(()) => {}
        Err(PreconditionFailure::NotModified(_)) => {
            return Ok(with_etag(StatusCode::NOT_MODIFIED.into_response(), &entry));
        }
        Err(failure) => return Err(failure.into_error()),
    }
    let response = match selector {
        Some(s) => json_value(
            StatusCode::OK,
            &Value::Object(entry.record.to_json(Some(&s))),
        ),
        None => json_response(StatusCode::OK, entry.body.clone()),
    };
    Ok(with_etag(response, &entry))
}

async fn modify(
    State(state): St,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    check_id(&id)?;
    let object = json_object(&state, &headers, body).await?;
    let preconditions = Preconditions::from_headers(&headers);
    Ok(
        match state.connections.put(&id, object, &preconditions).await? {
            Upserted::Created(entry) => with_location(
                with_etag(
                    json_response(StatusCode::CREATED, entry.body.clone()),
                    &entry,
                ),
                &id,
            ),
            Upserted::Modified(entry) => with_etag(StatusCode::NO_CONTENT.into_response(), &entry),
        },
    )
}

async fn remove(State(state): St, Path(id): Path<String>, headers: HeaderMap) -> AppResult {
    check_id(&id)?;
    state
        .connections
        .delete(&id, &Preconditions::from_headers(&headers))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn status(State(state): St, Path(id): Path<String>) -> AppResult {
    check_id(&id)?;
    Ok(json_value(StatusCode::OK, &status_body(&state, &id).await?))
}

/// The answer of `retrieveConnectionStatus` (REST and piggyback). In a cluster, the clients of
/// every instance are in it.
pub(crate) async fn status_body(state: &AppState, id: &str) -> Result<Value, DittoError> {
    let entry = state.connections.require(id)?;
    let c = &entry.record.connection;
    let mut body = Map::new();
    body.insert(
        "type".into(),
        json!("connectivity.responses:retrieveConnectionStatus"),
    );
    body.insert("status".into(), json!(200));
    body.insert("connectionId".into(), json!(id));
    body.insert(
        "connectionStatus".into(),
        json!(c.connection_status.as_str()),
    );
    let local = state.connections.live_status(id).await.to_json();
    match &state.cluster {
        Some(cluster) => body.extend(cluster.status(id, local).await),
        None => body.extend(local),
    }
    Ok(Value::Object(body))
}

async fn metrics(State(state): St, Path(id): Path<String>) -> AppResult {
    check_id(&id)?;
    Ok(json_value(
        StatusCode::OK,
        &metrics_body(&state, &id).await?,
    ))
}

/// This instance's metrics of a connection.
pub(crate) fn local_metrics(state: &AppState, id: &str) -> Result<Value, DittoError> {
    let entry = state.connections.require(id)?;
    Ok(Value::Object(entry.metrics.to_json(Utc::now())))
}

/// The answer of `retrieveConnectionMetrics` (REST and piggyback): in a cluster, the counts of
/// every instance added up.
pub(crate) async fn metrics_body(state: &AppState, id: &str) -> Result<Value, DittoError> {
    let mut metrics = local_metrics(state, id)?;
    if let Some(cluster) = &state.cluster {
        for more in cluster.ask(Ask::Metrics, id).await {
            crate::cluster::bus::merge_metrics(&mut metrics, &more);
        }
    }
    let mut body = Map::new();
    body.insert(
        "type".into(),
        json!("connectivity.responses:retrieveConnectionMetrics"),
    );
    body.insert("status".into(), json!(200));
    body.insert("connectionId".into(), json!(id));
    if let Value::Object(m) = metrics {
        body.extend(m);
    }
    Ok(Value::Object(body))
}

async fn logs(State(state): St, Path(id): Path<String>) -> AppResult {
    check_id(&id)?;
    Ok(json_value(StatusCode::OK, &logs_body(&state, &id).await?))
}

/// This instance's logs of a connection.
pub(crate) fn local_logs(state: &AppState, id: &str) -> Result<Value, DittoError> {
    let entry = state.connections.require(id)?;
    Ok(lock(&entry.logs).retrieve(id, Utc::now()))
}

/// The answer of `retrieveConnectionLogs` (REST and piggyback): in a cluster, the entries of
/// every instance, ordered by time.
pub(crate) async fn logs_body(state: &AppState, id: &str) -> Result<Value, DittoError> {
    let mut logs = local_logs(state, id)?;
    if let Some(cluster) = &state.cluster {
        for more in cluster.ask(Ask::Logs, id).await {
            crate::cluster::bus::merge_logs(&mut logs, &more);
        }
    }
    Ok(logs)
}

/// Runs a connection command; in a cluster, the commands on metrics and logs reach every
/// instance.
pub(crate) async fn run_command(
    state: &AppState,
    id: &str,
    command: Command,
) -> Result<(), DittoError> {
    state.connections.command(id, command).await?;
    let ask = match command {
        Command::ResetMetrics => Ask::ResetMetrics,
        Command::EnableLogs => Ask::EnableLogs,
        Command::ResetLogs => Ask::ResetLogs,
        Command::Open | Command::Close => return Ok(()),
    };
    if let Some(cluster) = &state.cluster {
        cluster.ask(ask, id).await;
    }
    Ok(())
}

/// What this instance answers another one's question about a connection (cluster mode).
pub(crate) async fn answer(state: &AppState, ask: Ask, id: &str) -> Value {
    let local = match ask {
        Ask::Status => {
            if state.connections.get(id).is_none() {
                return Value::Null;
            }
            Ok(Value::Object(
                state.connections.live_status(id).await.to_json(),
            ))
        }
        Ask::Metrics => local_metrics(state, id),
        Ask::Logs => local_logs(state, id),
        Ask::ResetMetrics => state
            .connections
            .command(id, Command::ResetMetrics)
            .await
            .map(|_| Value::Bool(true)),
        Ask::EnableLogs => state
            .connections
            .command(id, Command::EnableLogs)
            .await
            .map(|_| Value::Bool(true)),
        Ask::ResetLogs => state
            .connections
            .command(id, Command::ResetLogs)
            .await
            .map(|_| Value::Bool(true)),
    };
    local.unwrap_or(Value::Null)
}

async fn command(
    State(state): St,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    check_id(&id)?;
    if let Some(mt) = media_type(&headers)
        && mt != "text/plain"
    {
        return Err(DittoError::media_type_unsupported(
            Some(&mt),
            &["text/plain"],
        ));
    }
    let bytes: Bytes = read_body(
        &headers,
        body,
        state.max_body_bytes,
        state.body_read_timeout,
    )
    .await?;
    let text = String::from_utf8_lossy(&bytes);
    let command = Command::parse(&text)?;
    run_command(&state, &id, command).await?;
    Ok(json_value(
        StatusCode::OK,
        &json!({"type": command.response_type(), "status": 200, "connectionId": id}),
    ))
}
