//! `/api/2/mappers`: uploading, listing, reading, trying and deleting WebAssembly mapper
//! modules, and their kept versions (listing, reading, deleting, rolling back).

use super::{AppState, Handlers, Path, Verb, media_type, no_handler, on, read_body};
use crate::error::DittoError;
use crate::mappers::{self, Entry, MapperMeta, trial};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

pub const WASM: &str = "application/wasm";

pub(super) fn collection(verb: Verb) -> Handlers {
    match verb {
        Verb::Get => on(verb, list),
        other => no_handler(other),
    }
}

pub(super) fn item(verb: Verb) -> Handlers {
    match verb {
        Verb::Get => on(verb, retrieve),
        Verb::Put => on(verb, upload),
        Verb::Delete => on(verb, remove),
        other => no_handler(other),
    }
}

pub(super) fn module_route(verb: Verb) -> Handlers {
    match verb {
        Verb::Get => on(verb, module),
        other => no_handler(other),
    }
}

pub(super) fn versions_route(verb: Verb) -> Handlers {
    match verb {
        Verb::Get => on(verb, list_versions),
        other => no_handler(other),
    }
}

pub(super) fn version_route(verb: Verb) -> Handlers {
    match verb {
        Verb::Get => on(verb, retrieve_version),
        Verb::Delete => on(verb, remove_version),
        other => no_handler(other),
    }
}

pub(super) fn version_module_route(verb: Verb) -> Handlers {
    match verb {
        Verb::Get => on(verb, version_module),
        other => no_handler(other),
    }
}

pub(super) fn rollback_route(verb: Verb) -> Handlers {
    match verb {
        Verb::Post => on(verb, rollback),
        other => no_handler(other),
    }
}

pub(super) fn definition_test_route(verb: Verb) -> Handlers {
    match verb {
        Verb::Post => on(verb, definition_test),
        other => no_handler(other),
    }
}

pub(super) fn test_route(verb: Verb) -> Handlers {
    match verb {
        Verb::Post => on(verb, test),
        other => no_handler(other),
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// The `WebAssembly` mapping definitions that name the module `id`: (connection id, options).
fn definitions_using(state: &AppState, id: &str) -> Vec<(String, serde_json::Map<String, Value>)> {
    let mut out = Vec::new();
    for entry in state.connections.list() {
        let connection = &entry.record.connection;
        for options in mappers::definitions_naming(connection, id) {
            out.push((connection.id.clone(), options.clone()));
        }
    }
    out
}

/// The connections with a mapping definition that names the module `id` with a version
/// reference `uses` accepts (`None`: it follows the current version, `Some(n)`: it pins `n`).
fn connections_using(
    state: &AppState,
    id: &str,
    uses: impl Fn(Option<u64>) -> bool,
) -> Vec<String> {
    state
        .connections
        .list()
        .iter()
        .filter(|e| {
            mappers::definitions_naming(&e.record.connection, id)
                .any(|o| uses(mappers::module_ref(o).and_then(|r| r.version)))
        })
        .map(|e| e.record.connection.id.clone())
        .collect()
}

/// Every connection that names the module `id`, following it or pinning a version.
fn users(state: &AppState, id: &str) -> Vec<String> {
    connections_using(state, id, |_| true)
}

/// The connections that pin version `version` of `id`.
fn pinned_by(state: &AppState, id: &str, version: u64) -> Vec<String> {
    connections_using(state, id, |v| v == Some(version))
}

/// A kept version as the API shows it: `created` is its upload time.
fn describe_version(state: &AppState, entry: &Entry, version: &MapperMeta) -> Value {
    let mut v = serde_json::to_value(version).expect("metadata serialises");
    if let Some(o) = v.as_object_mut() {
        o.remove("modified");
        o.remove("latestVersion");
    }
    let current = entry.meta.version;
    v["current"] = json!(version.version == current);
    // The current version is used by the connections that follow the module, too.
    v["usedBy"] = json!(connections_using(state, &entry.meta.id, |v| {
        v.unwrap_or(current) == version.version
    }));
    v
}

/// The `{version}` of a path: a whole number, else 404 as an unknown version.
fn version_number(id: &str, text: &str) -> Result<u64, DittoError> {
    text.parse::<u64>()
        .map_err(|_| mappers::version_not_found(id, text))
}

fn describe(state: &AppState, entry: &Entry) -> Value {
    let mut v = serde_json::to_value(&entry.meta).expect("metadata serialises");
    v["usedBy"] = json!(users(state, &entry.meta.id));
    v["statistics"] = entry.slot.stats.to_json();
    v
}

async fn list(State(state): State<Arc<AppState>>) -> Response {
    let all: Vec<Value> = state
        .mappers
        .list()
        .iter()
        .map(|e| describe(&state, e))
        .collect();
    json_response(StatusCode::OK, &Value::Array(all))
}

async fn retrieve(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.mappers.get(&id) {
        Some(entry) => json_response(StatusCode::OK, &describe(&state, &entry)),
        None => mappers::not_found(&id).into_response(),
    }
}

async fn module(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.mappers.module_bytes(&id, None).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, WASM)], bytes).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/2/mappers/{id}/versions`: the kept versions, newest first.
async fn list_versions(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.mappers.get(&id) {
        Some(entry) => {
            let all: Vec<Value> = entry
                .versions
                .values()
                .rev()
                .map(|v| describe_version(&state, &entry, v))
                .collect();
            json_response(StatusCode::OK, &Value::Array(all))
        }
        None => mappers::not_found(&id).into_response(),
    }
}

async fn retrieve_version(
    State(state): State<Arc<AppState>>,
    Path((id, version)): Path<(String, String)>,
) -> Response {
    let result = (|| {
        let entry = state
            .mappers
            .get(&id)
            .ok_or_else(|| mappers::not_found(&id))?;
        let n = version_number(&id, &version)?;
        let kept = entry
            .versions
            .get(&n)
            .ok_or_else(|| mappers::version_not_found(&id, n))?;
        Ok::<_, DittoError>(describe_version(&state, &entry, kept))
    })();
    match result {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}

async fn version_module(
    State(state): State<Arc<AppState>>,
    Path((id, version)): Path<(String, String)>,
) -> Response {
    let bytes = match version_number(&id, &version) {
        Ok(n) => state.mappers.module_bytes(&id, Some(n)).await,
        Err(e) => Err(e),
    };
    match bytes {
        Ok(bytes) => ([(header::CONTENT_TYPE, WASM)], bytes).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn remove_version(
    State(state): State<Arc<AppState>>,
    Path((id, version)): Path<(String, String)>,
) -> Response {
    let result = async {
        let n = version_number(&id, &version)?;
        let pins = pinned_by(&state, &id, n);
        state.mappers.delete_version(&id, n, &pins).await
    }
    .await;
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/2/mappers/{id}/rollback[?version=N][&force=true]`: a kept version (the newest
/// before the current one without `version`) becomes current; 200 with the module's metadata.
async fn rollback(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = super::connections::query(raw);
    let force = super::connections::flag(&params, "force");
    let result = async {
        let version = params
            .get("version")
            .map(|v| version_number(&id, v))
            .transpose()?;
        let users = definitions_using(&state, &id);
        let meta = state.mappers.rollback(&id, version, users, force).await?;
        tracing::info!(mapper = %id, version = meta.version, "mapper module rolled back");
        Ok::<_, DittoError>(meta)
    }
    .await;
    match result {
        Ok(meta) => {
            let entry = state.mappers.get(&id);
            let body = match &entry {
                Some(entry) if entry.meta == meta => describe(&state, entry),
                _ => serde_json::to_value(&meta).expect("metadata serialises"),
            };
            json_response(StatusCode::OK, &body)
        }
        Err(e) => e.into_response(),
    }
}

async fn upload(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let force = super::connections::flag(&super::connections::query(raw), "force");
    match upload_module(&state, &id, &headers, body, force).await {
        Ok((true, meta)) => {
            let mut response = json_response(
                StatusCode::CREATED,
                &serde_json::to_value(&meta).expect("metadata serialises"),
            );
            if let Ok(location) = HeaderValue::from_str(&format!("/api/2/mappers/{id}")) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Ok((false, _)) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn upload_module(
    state: &Arc<AppState>,
    id: &str,
    headers: &HeaderMap,
    body: Body,
    force: bool,
) -> Result<(bool, MapperMeta), DittoError> {
    let media = media_type(headers);
    if media.as_deref() != Some(WASM) {
        return Err(DittoError::media_type_unsupported(
            media.as_deref(),
            &[WASM],
        ));
    }
    let bytes = read_body(
        headers,
        body,
        state.mappers.config.max_module_bytes,
        state.body_read_timeout,
    )
    .await?;
    let users = definitions_using(state, id);
    let (created, meta) = state.mappers.put(id, bytes.to_vec(), users, force).await?;
    tracing::info!(mapper = %id, version = meta.version, sha256 = %meta.sha256, created, "mapper module stored");
    Ok((created, meta))
}

async fn remove(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let users = users(&state, &id);
    match state.mappers.delete(&id, &users).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/2/mappings/test`: one message through a mapping definition of any engine, as a
/// connection would build it; nothing is published.
async fn definition_test(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let media = media_type(&headers);
        if media.as_deref() != Some("application/json") {
            return Err(DittoError::media_type_unsupported(
                media.as_deref(),
                &["application/json"],
            ));
        }
        let bytes = read_body(
            &headers,
            body,
            state.max_body_bytes,
            state.body_read_timeout,
        )
        .await?;
        let request: Value = serde_json::from_slice(&bytes)
            .map_err(|e| DittoError::json_invalid(format!("The request body is not JSON: {e}")))?;
        let definition = request
            .get("mappingDefinition")
            .cloned()
            .ok_or_else(|| DittoError::json_field_missing("/mappingDefinition"))?;
        let (_, trial) = trial::parse_request(&request).map_err(DittoError::json_invalid)?;
        let context = state.mapping.clone();
        // Scripts compile and run, instances start: on a blocking thread.
        tokio::task::spawn_blocking(move || trial::run_definition(&definition, &trial, &context))
            .await
            .map_err(|e| DittoError::internal(format!("The trial failed: {e}")))?
            .map_err(DittoError::json_invalid)
    }
    .await;
    match result {
        Ok(answer) => json_response(StatusCode::OK, &answer),
        Err(e) => e.into_response(),
    }
}

async fn test(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let entry = state
            .mappers
            .get(&id)
            .ok_or_else(|| mappers::not_found(&id))?;
        let media = media_type(&headers);
        if media.as_deref() != Some("application/json") {
            return Err(DittoError::media_type_unsupported(
                media.as_deref(),
                &["application/json"],
            ));
        }
        let bytes = read_body(
            &headers,
            body,
            state.max_body_bytes,
            state.body_read_timeout,
        )
        .await?;
        let request: Value = serde_json::from_slice(&bytes)
            .map_err(|e| DittoError::json_invalid(format!("The request body is not JSON: {e}")))?;
        let (options, trial) = trial::parse_request(&request).map_err(DittoError::json_invalid)?;
        let engine = state.mappers.engine().clone();
        // A slot of its own: trials do not count in the module's figures.
        let slot = ferrule_wasm::ModuleSlot::new(entry.slot.current().module.clone(), 0);
        tokio::task::spawn_blocking(move || trial::run(&engine, &id, slot, options, &trial))
            .await
            .map_err(|e| DittoError::internal(format!("The trial failed: {e}")))
    }
    .await;
    match result {
        Ok(answer) => json_response(StatusCode::OK, &answer),
        Err(e) => e.into_response(),
    }
}
