//! `POST /devops/piggyback/connectivity`: Ditto's legacy DevOps form of the connection commands
//! (spec §2.4). The body carries a `piggybackCommand` (`type` plus its payload); the answer is
//! the command's response object (`type`, `status`, `connectionId`, payload) with its status, or
//! Ditto's error JSON. Every command is carried out by the same service calls as the REST API
//! under `/api/2/connections`. `targetActorSelection` and `headers` are Ditto's actor routing and
//! are accepted as they come; so is the `timeout` query parameter (a command answers when it is
//! done; a connection test gives up after ~10 s on its own).

use super::connections::{json_object, logs_body, metrics_body, status_body};
use super::{AppState, Handlers, Verb, no_handler, on};
use crate::conditions::Preconditions;
use crate::connections::{Command, Existence, Upserted};
use crate::error::DittoError;
use crate::model::Connection;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub(super) fn route(verb: Verb) -> Handlers {
    match verb {
        Verb::Post => on(verb, piggyback),
        other => no_handler(other),
    }
}

/// What a piggyback command does; every kind is reached from [`COMMANDS`] only, so a kind
/// missing there is never constructed (a dead-code error in the lint run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Modify,
    Retrieve,
    Delete,
    Test,
    /// open, close, the metrics and logs resets, enabling logs: [`Command`]s of the REST API.
    Lifecycle,
    Status,
    Metrics,
    Logs,
    AllIds,
    IdsByTag,
    Tags,
}

/// The command types this endpoint carries out: the one list of them.
const COMMANDS: &[(&str, Kind)] = &[
    ("connectivity.commands:createConnection", Kind::Create),
    ("connectivity.commands:modifyConnection", Kind::Modify),
    ("connectivity.commands:retrieveConnection", Kind::Retrieve),
    ("connectivity.commands:deleteConnection", Kind::Delete),
    ("connectivity.commands:openConnection", Kind::Lifecycle),
    ("connectivity.commands:closeConnection", Kind::Lifecycle),
    ("connectivity.commands:testConnection", Kind::Test),
    (
        "connectivity.commands:retrieveConnectionStatus",
        Kind::Status,
    ),
    (
        "connectivity.commands:retrieveConnectionMetrics",
        Kind::Metrics,
    ),
    (
        "connectivity.commands:resetConnectionMetrics",
        Kind::Lifecycle,
    ),
    (
        "connectivity.commands:enableConnectionLogs",
        Kind::Lifecycle,
    ),
    ("connectivity.commands:retrieveConnectionLogs", Kind::Logs),
    ("connectivity.commands:resetConnectionLogs", Kind::Lifecycle),
    (
        "connectivity.commands:retrieveAllConnectionIds",
        Kind::AllIds,
    ),
    (
        "connectivity.sudo.commands:sudoRetrieveConnectionIdsByTag",
        Kind::IdsByTag,
    ),
    (
        "connectivity.sudo.commands:sudoRetrieveConnectionTags",
        Kind::Tags,
    ),
];

fn invalid(message: impl Into<String>) -> DittoError {
    DittoError::new(StatusCode::BAD_REQUEST, "devops:piggyback.invalid", message).with_description(
        "Send {\"targetActorSelection\": \"/system/sharding/connection\", \"headers\": {}, \
         \"piggybackCommand\": {\"type\": \"connectivity.commands:...\", ...}}.",
    )
}

fn unsupported(kind: &str) -> DittoError {
    let mut e = DittoError::command_invalid(kind);
    e.description = Some(
        if kind.starts_with("connectivity.commands:migrateEncryption") {
            "Ferrule changes the encryption key at start: set [encryption] symmetrical_key to the new \
         key and old_symmetrical_key to the previous one, and restart."
            .to_string()
        } else {
            let types: Vec<&str> = COMMANDS.iter().map(|(t, _)| *t).collect();
            format!("The piggyback commands are: {}.", types.join(", "))
        },
    );
    e
}

/// A string member of the command, required.
fn string<'a>(command: &'a Map<String, Value>, name: &str) -> Result<&'a str, DittoError> {
    match command.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(format!(
            "The member <{name}> of the piggybackCommand must be a string."
        ))),
        None => Err(DittoError::json_field_missing(&format!(
            "/piggybackCommand/{name}"
        ))),
    }
}

/// The `connection` object of a command, with its `id`.
fn connection(command: &Map<String, Value>) -> Result<(String, Map<String, Value>), DittoError> {
    let Some(Value::Object(c)) = command.get("connection") else {
        return Err(match command.get("connection") {
            None => DittoError::json_field_missing("/piggybackCommand/connection"),
            Some(_) => {
                invalid("The member <connection> of the piggybackCommand must be an object.")
            }
        });
    };
    let id = string(c, "id")
        .map_err(|_| DittoError::json_field_missing("/piggybackCommand/connection/id"))?;
    Ok((id.to_string(), c.clone()))
}

/// A command's response: `{"type", "status", "connectionId"?, ...payload}` with that status
/// (204 without a body, as HTTP has it). A payload that is a REST answer with these members
/// already (status, metrics, logs) keeps its values and order.
fn answer(kind: &str, status: StatusCode, id: Option<&str>, payload: Value) -> Response {
    if status == StatusCode::NO_CONTENT {
        return status.into_response();
    }
    let mut body = Map::new();
    body.insert(
        "type".into(),
        json!(kind.replace(".commands:", ".responses:")),
    );
    body.insert("status".into(), json!(status.as_u16()));
    if let Some(id) = id {
        body.insert("connectionId".into(), json!(id));
    }
    if let Value::Object(payload) = payload {
        body.extend(payload);
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Value::Object(body).to_string(),
    )
        .into_response()
}

/// The ids of the connections `keep` selects, as `connectionIds`.
fn connection_ids(kind: &str, state: &AppState, keep: impl Fn(&Connection) -> bool) -> Response {
    let entries = state.connections.list();
    let ids: Vec<&str> = entries
        .iter()
        .filter(|e| keep(&e.record.connection))
        .map(|e| e.record.id())
        .collect();
    answer(kind, StatusCode::OK, None, json!({ "connectionIds": ids }))
}

async fn piggyback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, DittoError> {
    let envelope = json_object(&state, &headers, body).await?;
    if let Some(selection) = envelope.get("targetActorSelection")
        && !selection.is_string()
    {
        return Err(invalid("<targetActorSelection> must be a string."));
    }
    let command = match envelope.get("piggybackCommand") {
        Some(Value::Object(c)) => c,
        Some(_) => return Err(invalid("<piggybackCommand> must be a JSON object.")),
        None => return Err(DittoError::json_field_missing("/piggybackCommand")),
    };
    let kind = string(command, "type")?;
    let service = &state.connections;
    let id = || string(command, "connectionId");
    let Some(&(_, what)) = COMMANDS.iter().find(|(t, _)| *t == kind) else {
        return Err(unsupported(kind));
    };
    match what {
        Kind::Create => {
            let (id, object) = connection(command)?;
            let entry = match service
                .write_by_id(&id, object, &Preconditions::default(), Existence::New)
                .await?
            {
                Upserted::Created(entry) | Upserted::Modified(entry) => entry,
            };
            let connection = Value::Object(entry.record.to_json(None));
            Ok(answer(
                kind,
                StatusCode::CREATED,
                Some(&id),
                json!({ "connection": connection }),
            ))
        }
        Kind::Modify => {
            let (id, object) = connection(command)?;
            service
                .write_by_id(&id, object, &Preconditions::default(), Existence::Existing)
                .await?;
            Ok(answer(kind, StatusCode::NO_CONTENT, Some(&id), json!({})))
        }
        Kind::Retrieve => {
            let id = id()?;
            let entry = service.require(id)?;
            let connection = Value::Object(entry.record.to_json(None));
            Ok(answer(
                kind,
                StatusCode::OK,
                Some(id),
                json!({ "connection": connection }),
            ))
        }
        Kind::Delete => {
            let id = id()?;
            service.delete(id, &Preconditions::default()).await?;
            Ok(answer(kind, StatusCode::NO_CONTENT, Some(id), json!({})))
        }
        Kind::Test => {
            let (id, object) = connection(command)?;
            if service.get(&id).is_some() {
                return Err(DittoError::connection_conflict(&id).with_description(
                    "A connection test needs an ID that is not in use: choose another ID.",
                ));
            }
            service.dry_run(object).await?;
            Ok(answer(
                kind,
                StatusCode::OK,
                Some(&id),
                json!({ "testResult": "ok" }),
            ))
        }
        Kind::Lifecycle => {
            let id = id()?;
            super::connections::run_command(&state, id, Command::parse(kind)?).await?;
            Ok(answer(kind, StatusCode::OK, Some(id), json!({})))
        }
        Kind::Status => {
            let id = id()?;
            Ok(answer(
                kind,
                StatusCode::OK,
                Some(id),
                status_body(&state, id).await?,
            ))
        }
        Kind::Metrics => {
            let id = id()?;
            Ok(answer(
                kind,
                StatusCode::OK,
                Some(id),
                metrics_body(&state, id).await?,
            ))
        }
        Kind::Logs => {
            let id = id()?;
            Ok(answer(
                kind,
                StatusCode::OK,
                Some(id),
                logs_body(&state, id).await?,
            ))
        }
        Kind::AllIds => Ok(connection_ids(kind, &state, |_| true)),
        Kind::IdsByTag => {
            let tag = string(command, "tag")?;
            Ok(connection_ids(kind, &state, |c| c.tags.contains(tag)))
        }
        Kind::Tags => {
            let id = id()?;
            let entry = service.require(id)?;
            let tags: Vec<&String> = entry.record.connection.tags.iter().collect();
            Ok(answer(
                kind,
                StatusCode::OK,
                Some(id),
                json!({ "tags": tags }),
            ))
        }
    }
}
