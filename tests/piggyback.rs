//! Ditto's legacy DevOps piggyback form (`POST /devops/piggyback/connectivity`, spec §2.4) on
//! the real binary: every command it carries, checked against what the REST API then shows, and
//! its errors. The connection test reaches Mosquitto on 1883.

mod common;

use common::{Ferrule, json, mqtt_connection, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PATH: &str = "/devops/piggyback/connectivity?timeout=10s";

fn envelope(command: Value) -> Value {
    json!({
        "targetActorSelection": "/system/sharding/connection",
        "headers": {"aggregate": false, "is-group-topic": false, "ditto-sudo": true},
        "piggybackCommand": command,
    })
}

async fn send(f: &Ferrule, command: Value) -> reqwest::Response {
    f.post_json(PATH, &envelope(command)).await
}

/// A command answered with `status`; its response object (none for 204).
async fn ok(f: &Ferrule, command: Value, status: u16) -> Value {
    let kind = command["type"].as_str().unwrap().to_string();
    let resp = send(f, command).await;
    assert_eq!(resp.status().as_u16(), status, "{kind}");
    if status == 204 {
        assert_eq!(resp.text().await.unwrap(), "", "{kind}: 204 has no body");
        return Value::Null;
    }
    let body = json(resp).await;
    assert_eq!(
        body["type"],
        kind.replace(".commands:", ".responses:"),
        "{body}"
    );
    assert_eq!(body["status"], status, "{body}");
    body
}

async fn error(f: &Ferrule, body: Value, status: u16, code: &str) -> Value {
    let resp = f.post_json(PATH, &body).await;
    assert_eq!(resp.status().as_u16(), status, "{body}");
    let e = json(resp).await;
    assert_eq!(e["status"], status, "{e}");
    assert_eq!(e["error"], code, "{e}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    assert!(e["description"].is_string(), "{e}");
    e
}

fn with_id(id: &str) -> Value {
    let mut c = mqtt_connection();
    c["id"] = json!(id);
    c["tags"] = json!(["plant-7", "line-2"]);
    c
}

#[tokio::test]
async fn every_connection_command_through_the_piggyback_form() {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path());

    // Create with an explicit id: 201 and the connection; a second create is a conflict.
    let created = ok(
        &f,
        json!({"type": "connectivity.commands:createConnection", "connection": with_id("pb-1")}),
        201,
    )
    .await;
    assert_eq!(created["connectionId"], "pb-1");
    assert_eq!(created["connection"]["id"], "pb-1");
    assert_eq!(created["connection"]["uri"], "tcp://127.0.0.1:1883");
    let rest = json(f.get("/api/2/connections/pb-1").await).await;
    assert_eq!(
        rest, created["connection"],
        "the REST API shows what was created"
    );
    let e = error(
        &f,
        envelope(json!({"type": "connectivity.commands:createConnection", "connection": with_id("pb-1")})),
        409,
        "connectivity:connection.conflict",
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("'pb-1'"), "{e}");

    // Retrieve, modify (204, then seen by REST), tags and ids.
    let got = ok(
        &f,
        json!({"type": "connectivity.commands:retrieveConnection", "connectionId": "pb-1"}),
        200,
    )
    .await;
    assert_eq!(got["connection"], rest);
    let mut changed = with_id("pb-1");
    changed["name"] = json!("renamed");
    ok(
        &f,
        json!({"type": "connectivity.commands:modifyConnection", "connection": changed}),
        204,
    )
    .await;
    let resp = f.get("/api/2/connections/pb-1").await;
    assert_eq!(resp.headers()["etag"], "\"rev:2\"");
    assert_eq!(json(resp).await["name"], "renamed");
    error(
        &f,
        envelope(json!({"type": "connectivity.commands:modifyConnection", "connection": with_id("pb-none")})),
        404,
        "connectivity:connection.notfound",
    )
    .await;
    assert_eq!(
        f.get("/api/2/connections/pb-none").await.status(),
        StatusCode::NOT_FOUND,
        "a modify of a missing id creates nothing"
    );
    let mut other = with_id("pb-2");
    other["tags"] = json!(["line-2"]);
    ok(
        &f,
        json!({"type": "connectivity.commands:createConnection", "connection": other}),
        201,
    )
    .await;
    let ids = ok(
        &f,
        json!({"type": "connectivity.commands:retrieveAllConnectionIds"}),
        200,
    )
    .await;
    let mut all: Vec<String> = serde_json::from_value(ids["connectionIds"].clone()).unwrap();
    all.sort();
    assert_eq!(all, ["pb-1", "pb-2"]);
    let tagged = ok(
        &f,
        json!({"type": "connectivity.sudo.commands:sudoRetrieveConnectionIdsByTag", "tag": "plant-7"}),
        200,
    )
    .await;
    assert_eq!(
        tagged["type"],
        "connectivity.sudo.responses:sudoRetrieveConnectionIdsByTag"
    );
    assert_eq!(tagged["connectionIds"], json!(["pb-1"]));
    let tags = ok(
        &f,
        json!({"type": "connectivity.sudo.commands:sudoRetrieveConnectionTags", "connectionId": "pb-1"}),
        200,
    )
    .await;
    assert_eq!(tags["tags"], json!(["plant-7", "line-2"]));

    // Open, status, close; metrics and logs, their resets.
    ok(
        &f,
        json!({"type": "connectivity.commands:openConnection", "connectionId": "pb-1"}),
        200,
    )
    .await;
    let rest = json(f.get("/api/2/connections/pb-1").await).await;
    assert_eq!(rest["connectionStatus"], "open");
    common::wait_for_live_status(&f, "pb-1", "open").await;
    let status = ok(
        &f,
        json!({"type": "connectivity.commands:retrieveConnectionStatus", "connectionId": "pb-1"}),
        200,
    )
    .await;
    assert_eq!(status["connectionId"], "pb-1");
    assert_eq!(status["connectionStatus"], "open");
    assert_eq!(status["liveStatus"], "open", "{status}");
    assert!(status["clientStatus"].is_array(), "{status}");
    let metrics = ok(
        &f,
        json!({"type": "connectivity.commands:retrieveConnectionMetrics", "connectionId": "pb-1"}),
        200,
    )
    .await;
    assert!(metrics["connectionMetrics"].is_object(), "{metrics}");
    assert!(metrics["sourceMetrics"].is_object(), "{metrics}");
    let logs = ok(
        &f,
        json!({"type": "connectivity.commands:retrieveConnectionLogs", "connectionId": "pb-1"}),
        200,
    )
    .await;
    assert!(
        !logs["connectionLogs"].as_array().unwrap().is_empty(),
        "opening was logged: {logs}"
    );
    assert!(logs["enabledUntil"].is_string(), "{logs}");
    for kind in [
        "resetConnectionMetrics",
        "enableConnectionLogs",
        "resetConnectionLogs",
    ] {
        let body = ok(
            &f,
            json!({"type": format!("connectivity.commands:{kind}"), "connectionId": "pb-1"}),
            200,
        )
        .await;
        assert_eq!(body["connectionId"], "pb-1");
    }
    let logs = json(f.get("/api/2/connections/pb-1/logs").await).await;
    assert_eq!(logs["connectionLogs"], json!([]), "the logs were reset");
    ok(
        &f,
        json!({"type": "connectivity.commands:closeConnection", "connectionId": "pb-1"}),
        200,
    )
    .await;
    let rest = json(f.get("/api/2/connections/pb-1").await).await;
    assert_eq!(rest["connectionStatus"], "closed");

    // Test a connection: ok against Mosquitto, nothing stored; an id in use is a conflict.
    let tested = ok(
        &f,
        json!({"type": "connectivity.commands:testConnection", "connection": with_id("pb-test")}),
        200,
    )
    .await;
    assert_eq!(tested["connectionId"], "pb-test");
    assert_eq!(tested["testResult"], "ok");
    assert_eq!(
        f.get("/api/2/connections/pb-test").await.status(),
        StatusCode::NOT_FOUND
    );
    error(
        &f,
        envelope(
            json!({"type": "connectivity.commands:testConnection", "connection": with_id("pb-2")}),
        ),
        409,
        "connectivity:connection.conflict",
    )
    .await;

    // Delete: 204, gone from REST; then every command on it is 404.
    ok(
        &f,
        json!({"type": "connectivity.commands:deleteConnection", "connectionId": "pb-1"}),
        204,
    )
    .await;
    assert_eq!(
        f.get("/api/2/connections/pb-1").await.status(),
        StatusCode::NOT_FOUND
    );
    error(
        &f,
        envelope(json!({"type": "connectivity.commands:retrieveConnectionStatus", "connectionId": "pb-1"})),
        404,
        "connectivity:connection.notfound",
    )
    .await;
}

#[tokio::test]
async fn bad_piggyback_requests_get_ditto_errors() {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path());
    // Without credentials.
    let resp = reqwest::Client::new()
        .post(f.url(PATH))
        .json(&envelope(
            json!({"type": "connectivity.commands:retrieveAllConnectionIds"}),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // No piggybackCommand, one that is not an object, no type, missing payload members: each
    // error names what is wrong.
    for (body, code, names) in [
        (
            json!({"targetActorSelection": "/system/sharding/connection"}),
            "json.field.missing",
            "/piggybackCommand",
        ),
        (
            json!({"piggybackCommand": "retrieve"}),
            "devops:piggyback.invalid",
            "piggybackCommand",
        ),
        (
            envelope(json!({"connectionId": "x"})),
            "json.field.missing",
            "/piggybackCommand/type",
        ),
        (
            envelope(json!({"type": "connectivity.commands:retrieveConnection"})),
            "json.field.missing",
            "/piggybackCommand/connectionId",
        ),
        (
            envelope(json!({"type": "connectivity.commands:createConnection",
                             "connection": mqtt_connection()})),
            "json.field.missing",
            "/piggybackCommand/connection/id",
        ),
    ] {
        let e = error(&f, body, 400, code).await;
        assert!(e["message"].as_str().unwrap().contains(names), "{e}");
    }
    // An invalid connection is refused as the REST API refuses it, and nothing is stored.
    let mut bad = with_id("pb-bad");
    bad["uri"] = json!("amqp://127.0.0.1:5672");
    error(
        &f,
        envelope(json!({"type": "connectivity.commands:createConnection", "connection": bad})),
        400,
        "connectivity:connection.uri.invalid",
    )
    .await;
    assert_eq!(
        json(f.get("/api/2/connections?ids-only=true").await).await,
        json!([])
    );
    // Unknown command types list the supported ones; migrateEncryption says what to do instead.
    for (kind, says) in [
        ("frobnicate", "connectivity.commands:createConnection"),
        ("migrateEncryption", "old_symmetrical_key"),
    ] {
        let command = json!({"type": format!("connectivity.commands:{kind}"), "dryRun": true});
        let e = error(&f, envelope(command), 400, "connectivity:command.invalid").await;
        assert!(e["description"].as_str().unwrap().contains(says), "{e}");
    }
    // Not JSON.
    let resp = f
        .req(reqwest::Method::POST, PATH)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(resp).await["error"], "json.invalid");
}
