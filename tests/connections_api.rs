//! The connection API of the real binary, endpoint by endpoint, error by error.

mod common;

use common::{Ferrule, amqp_connection, json, mqtt_connection, start};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

type Mutation = Box<dyn Fn(&mut Value)>;

fn server() -> (tempfile::TempDir, Ferrule) {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path());
    (dir, f)
}

async fn assert_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body = json(resp).await;
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(body["description"].is_string(), "{body}");
    body
}

#[tokio::test]
async fn create_retrieve_and_defaults() {
    let (_d, f) = server();
    let resp = f.post_json("/api/2/connections", &amqp_connection()).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["etag"], "\"rev:1\"");
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let created = json(resp).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/2/connections/{id}"));
    // Ditto's defaults and the reply target migration are materialised.
    assert_eq!(created["clientCount"], 1);
    assert_eq!(created["failoverEnabled"], true);
    assert_eq!(created["validateCertificates"], true);
    assert_eq!(created["processorPoolSize"], 1);
    assert_eq!(created["tags"], json!([]));
    assert_eq!(created["sources"][0]["consumerCount"], 1);
    assert_eq!(
        created["sources"][0]["replyTarget"]["address"],
        "{{header:reply-to}}"
    );
    assert_eq!(
        created["sources"][0]["headerMapping"]["reply-to"],
        "{{header:reply-to}}"
    );
    assert_eq!(created["targets"][0]["headerMapping"], json!({}));
    assert!(created.get("_revision").is_none());

    let resp = f.get(&location).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["etag"], "\"rev:1\"");
    assert_eq!(json(resp).await, created);

    let selected = json(
        f.get(&format!("{location}?fields=id,_revision,_created,sources"))
            .await,
    )
    .await;
    assert_eq!(selected["id"], id);
    assert_eq!(selected["_revision"], 1);
    assert!(selected["_created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(selected["sources"], created["sources"]);
    assert!(selected.get("uri").is_none());
    assert!(selected.get("_modified").is_none());
}

#[tokio::test]
async fn every_field_round_trips() {
    let (_d, f) = server();
    let full = json!({
        "name": "everything",
        "connectionType": "amqp-10",
        "connectionStatus": "closed",
        "uri": "amqps://user:p%40ss@broker.example:5671",
        "sources": [{
            "addresses": ["telemetry/a", "telemetry/b"],
            "consumerCount": 2,
            "authorizationContext": ["ditto:inbound", "nginx:ditto"],
            "enforcement": {"input": "{{ header:device_id }}", "filters": ["{{ thing:id }}"]},
            "acknowledgementRequests": {"includes": ["{{connection:id}}:custom"], "filter": "fn:filter(header:qos,'ne','0')"},
            "declaredAcks": ["{{connection:id}}:custom"],
            "headerMapping": {"device": "{{ header:device_id }}"},
            "payloadMapping": ["js", "Ditto"],
            "replyTarget": {"address": "replies/{{ header:device_id }}", "headerMapping": {"x": "y"},
                            "expectedResponseTypes": ["response", "error", "nack"], "enabled": true}
        }],
        "targets": [{
            "address": "queue://events",
            "topics": ["_/_/things/twin/events?namespaces=org.acme&filter=gt(attributes/counter,42)",
                       "_/_/things/live/messages", "_/_/connections/announcements"],
            "authorizationContext": ["ditto:outbound"],
            "issuedAcknowledgementLabel": "{{connection:id}}:delivered",
            "headerMapping": {"subject": "{{ topic:subject }}"},
            "payloadMapping": ["js"]
        }],
        "clientCount": 1,
        "failoverEnabled": false,
        "validateCertificates": false,
        "processorPoolSize": 3,
        "specificConfig": {"amqp.idleTimeout": "120000"},
        "mappingDefinitions": {"js": {"mappingEngine": "JavaScript",
            "options": {"incomingScript": "function mapToDittoProtocolMsg() { return null; }", "outgoingScript": ""},
            "incomingConditions": {"c": "fn:filter(header:a,'eq','b')"}}},
        "tags": ["prod", "eu"],
        "ca": common::TEST_CLIENT_CERT,
        "credentials": {"type": "client-cert", "cert": common::TEST_CLIENT_CERT, "key": common::TEST_CLIENT_KEY},
        "sshTunnel": {"enabled": false, "uri": "ssh://ssh.example:22",
                      "credentials": {"type": "password", "username": "u", "password": "p"},
                      "validateHost": true, "knownHosts": ["MD5:e0:3a"]}
    });
    let resp = f.put_json("/api/2/connections/full-1", &full).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let got = json(f.get("/api/2/connections/full-1").await).await;
    let mut expected = full.clone();
    expected["id"] = json!("full-1");
    assert_eq!(got, expected, "GET must return exactly what was stored");
}

/// Issue 19 points 6 and 7: certificates are read at create (Ditto's
/// `validateFormatOfCertificates`), and credentials must suit the connection type (Ditto's
/// `CredentialsValidationVisitor`); nothing is stored for a refused connection.
#[tokio::test]
async fn certificates_and_credentials_are_checked_at_create() {
    let (_d, f) = server();
    let secure = || {
        let mut c = mqtt_connection();
        c["uri"] = json!("ssl://127.0.0.1:8883");
        c
    };
    let not_base64 = "-----BEGIN CERTIFICATE-----\nnot base64 !!!\n-----END CERTIFICATE-----\n";
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"type": "client-cert", "cert": not_base64, "key": common::TEST_CLIENT_KEY}),
            "client certificate",
        ),
        (
            json!({"type": "client-cert", "cert": common::TEST_CLIENT_CERT, "key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}),
            "failed to parse private key",
        ),
        (
            json!({"type": "client-cert", "cert": "no PEM at all", "key": common::TEST_CLIENT_KEY}),
            "holds no PEM certificate",
        ),
    ];
    for (credentials, says) in cases {
        let mut c = secure();
        c["credentials"] = credentials;
        let body = assert_error(
            f.put_json("/api/2/connections/bad-pem", &c).await,
            400,
            "connectivity:connection.configuration.invalid",
        )
        .await;
        assert!(body["message"].as_str().unwrap().contains(says), "{body}");
    }
    let mut c = secure();
    c["ca"] = json!(not_base64);
    let body = assert_error(
        f.put_json("/api/2/connections/bad-pem", &c).await,
        400,
        "connectivity:connection.configuration.invalid",
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("trusted certificate"),
        "{body}"
    );

    let mut c = mqtt_connection();
    c["credentials"] = json!({"type": "hmac", "algorithm": "aws4-hmac-sha256",
                              "parameters": {"region": "r", "service": "s", "accessKey": "a", "secretKey": "k"}});
    let body = assert_error(
        f.put_json("/api/2/connections/bad-credentials", &c).await,
        400,
        "connectivity:connection.configuration.invalid",
    )
    .await;
    assert_eq!(
        body["message"],
        "HMAC credentials are not supported for the connection type."
    );
    c["credentials"] = json!({"type": "oauth-client-credentials", "tokenEndpoint": "https://idp.example/token",
                              "clientId": "c", "clientSecret": "s", "requestedScopes": "ditto"});
    let body = assert_error(
        f.put_json("/api/2/connections/bad-credentials", &c).await,
        400,
        "connectivity:connection.configuration.invalid",
    )
    .await;
    assert_eq!(
        body["message"],
        "OAuth client credentials are only supported for HTTP connection type."
    );
    assert_eq!(
        json(f.get("/api/2/connections?ids-only=true").await).await,
        json!([])
    );

    // A real client certificate and key are taken.
    let mut c = secure();
    c["credentials"] = json!({"type": "client-cert", "cert": common::TEST_CLIENT_CERT,
                              "key": common::TEST_CLIENT_KEY});
    let resp = f.put_json("/api/2/connections/good-pem", &c).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn create_rules() {
    let (_d, f) = server();
    let mut with_id = mqtt_connection();
    with_id["id"] = json!("mine");
    let body = assert_error(
        f.post_json("/api/2/connections", &with_id).await,
        400,
        "connectivity:id.notsettable",
    )
    .await;
    assert_eq!(
        body["message"],
        "It is not allowed to provide an explicit ID for a connection."
    );

    // AMQP 0.9.1 targets are `exchange/routingKey`.
    let mut no_key = amqp_connection();
    no_key["targets"][0]["address"] = json!("exchange-without-key");
    let body = assert_error(
        f.post_json("/api/2/connections", &no_key).await,
        400,
        "connectivity:connection.configuration.invalid",
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("exchange-without-key"),
        "{body}"
    );

    let mut no_status = mqtt_connection();
    no_status
        .as_object_mut()
        .unwrap()
        .remove("connectionStatus");
    let created = json(f.post_json("/api/2/connections", &no_status).await).await;
    assert_eq!(created["connectionStatus"], "unknown");
}

#[tokio::test]
async fn dry_run_validates_and_persists_nothing() {
    let (_d, f) = server();
    let mut with_id = mqtt_connection();
    with_id["id"] = json!("ignored");
    let resp = f
        .post_json("/api/2/connections?dry-run=true", &with_id)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = json(resp).await;
    assert!(body["connectionId"].as_str().unwrap().ends_with("-dry-run"));
    assert_eq!(
        json(f.get("/api/2/connections?ids-only=true").await).await,
        json!([])
    );

    let mut bad = mqtt_connection();
    bad["uri"] = json!("amqp://127.0.0.1:5672");
    let body = assert_error(
        f.post_json("/api/2/connections?dry-run=true", &bad).await,
        400,
        "connectivity:connection.uri.invalid",
    )
    .await;
    assert_eq!(
        body["message"],
        "The URI scheme 'amqp' is not valid for MQTT 3.1.1."
    );
}

#[tokio::test]
async fn modify_upsert_and_conditions() {
    let (_d, f) = server();
    let path = "/api/2/connections/my-conn";
    let resp = f.put_json(path, &mqtt_connection()).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["location"], path);
    assert_eq!(json(resp).await["id"], "my-conn");

    let mut changed = mqtt_connection();
    changed["name"] = json!("renamed");
    changed["id"] = json!("my-conn");
    let resp = f.put_json(path, &changed).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(resp.headers()["etag"], "\"rev:2\"");
    assert_eq!(resp.text().await.unwrap(), "");
    let got = json(f.get(&format!("{path}?fields=name,_revision")).await).await;
    assert_eq!(got, json!({"name": "renamed", "_revision": 2}));

    let mut other_id = mqtt_connection();
    other_id["id"] = json!("other");
    assert_error(
        f.put_json(path, &other_id).await,
        400,
        "connectivity:id.notsettable",
    )
    .await;

    let mut new_type = amqp_connection();
    new_type["id"] = json!("my-conn");
    let body = assert_error(
        f.put_json(path, &new_type).await,
        400,
        "connectivity:connection.configuration.invalid",
    )
    .await;
    assert_eq!(
        body["message"],
        "ConnectionType <mqtt> of existing connection <my-conn> cannot be changed!"
    );

    // If-Match with a stale tag fails; with the current tag succeeds.
    let put_if = |header: &'static str, value: &'static str| {
        f.req(Method::PUT, path)
            .header(header, value)
            .json(&mqtt_connection())
            .send()
    };
    let body = assert_error(
        put_if("if-match", "\"rev:1\"").await.unwrap(),
        412,
        "connectivity:precondition.failed",
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("actual entity-tag: '\"rev:2\"'")
    );
    assert_eq!(
        put_if("if-match", "\"rev:2\"").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_error(
        put_if("if-none-match", "*").await.unwrap(),
        412,
        "connectivity:precondition.failed",
    )
    .await;
    // If-None-Match: * creates only.
    let resp = f
        .req(Method::PUT, "/api/2/connections/fresh")
        .header("if-none-match", "*")
        .json(&mqtt_connection())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    // If-Match on a connection that does not exist fails.
    let resp = f
        .req(Method::PUT, "/api/2/connections/absent")
        .header("if-match", "*")
        .json(&mqtt_connection())
        .send()
        .await
        .unwrap();
    assert_error(resp, 412, "connectivity:precondition.failed").await;
    assert_eq!(
        f.get("/api/2/connections/absent").await.status(),
        StatusCode::NOT_FOUND
    );

    // A read with a matching If-None-Match is not modified.
    let resp = f
        .req(Method::GET, path)
        .header("if-none-match", "\"rev:3\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(resp.headers()["etag"], "\"rev:3\"");
    let resp = f
        .req(Method::GET, path)
        .header("if-match", "\"rev:1\"")
        .send()
        .await
        .unwrap();
    assert_error(resp, 412, "connectivity:precondition.failed").await;
}

#[tokio::test]
async fn list_ids_only_fields_and_delete() {
    let (_d, f) = server();
    for id in ["b-conn", "a-conn", "c-conn"] {
        assert_eq!(
            f.put_json(&format!("/api/2/connections/{id}"), &mqtt_connection())
                .await
                .status(),
            201
        );
    }
    assert_eq!(
        json(f.get("/api/2/connections?ids-only=true").await).await,
        json!(["a-conn", "b-conn", "c-conn"])
    );
    assert_eq!(
        json(f.get("/api/2/connections?fields=id").await).await,
        json!(["a-conn", "b-conn", "c-conn"])
    );
    let all = json(f.get("/api/2/connections").await).await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert_eq!(all[0], json(f.get("/api/2/connections/a-conn").await).await);
    let some = json(f.get("/api/2/connections?fields=id,_revision").await).await;
    assert_eq!(some[1], json!({"id": "b-conn", "_revision": 1}));

    let resp = f.delete("/api/2/connections/b-conn").await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_error(
        f.get("/api/2/connections/b-conn").await,
        404,
        "connectivity:connection.notfound",
    )
    .await;
    assert_error(
        f.delete("/api/2/connections/b-conn").await,
        404,
        "connectivity:connection.notfound",
    )
    .await;
    for sub in ["status", "metrics", "logs"] {
        assert_error(
            f.get(&format!("/api/2/connections/b-conn/{sub}")).await,
            404,
            "connectivity:connection.notfound",
        )
        .await;
    }
    assert_error(
        f.command("b-conn", "connectivity.commands:openConnection")
            .await,
        404,
        "connectivity:connection.notfound",
    )
    .await;
    assert_eq!(
        json(f.get("/api/2/connections?ids-only=true").await).await,
        json!(["a-conn", "c-conn"])
    );
    // The same id can be created again.
    assert_eq!(
        f.put_json("/api/2/connections/b-conn", &mqtt_connection())
            .await
            .status(),
        201
    );
    let resp = f
        .req(Method::DELETE, "/api/2/connections/b-conn")
        .header("if-match", "\"rev:9\"")
        .send()
        .await
        .unwrap();
    assert_error(resp, 412, "connectivity:precondition.failed").await;
}

#[tokio::test]
async fn list_limit() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::start_with_config(dir.path(), "[http]\nconnections_retrieve_limit = 2\n");
    for id in ["x1", "x2", "x3"] {
        f.put_json(&format!("/api/2/connections/{id}"), &mqtt_connection())
            .await;
    }
    assert_error(
        f.get("/api/2/connections").await,
        400,
        "connectivity:connections.amount.illegal",
    )
    .await;
    assert_eq!(
        json(f.get("/api/2/connections?ids-only=true").await).await,
        json!(["x1", "x2", "x3"])
    );
}

#[tokio::test]
async fn status_metrics_and_logs_shapes() {
    let (_d, f) = server();
    f.put_json("/api/2/connections/shapes", &amqp_connection())
        .await;
    let status = json(f.get("/api/2/connections/shapes/status").await).await;
    assert_eq!(
        status["type"],
        "connectivity.responses:retrieveConnectionStatus"
    );
    assert_eq!(status["status"], 200);
    assert_eq!(status["connectionId"], "shapes");
    assert_eq!(status["connectionStatus"], "closed");
    assert_eq!(status["liveStatus"], "closed");
    for list in [
        "clientStatus",
        "sourceStatus",
        "targetStatus",
        "sshTunnelStatus",
    ] {
        assert_eq!(status[list], json!([]), "{list}");
    }

    let metrics = json(f.get("/api/2/connections/shapes/metrics").await).await;
    assert_eq!(
        metrics["type"],
        "connectivity.responses:retrieveConnectionMetrics"
    );
    assert_eq!(metrics["status"], 200);
    assert_eq!(metrics["containsFailures"], false);
    let zero = json!({"PT1M": 0, "PT1H": 0, "PT24H": 0, "lastMessageAt": null});
    for t in ["consumed", "mapped", "dropped", "enforced"] {
        assert_eq!(
            metrics["connectionMetrics"]["inbound"][t]["success"], zero,
            "{t}"
        );
        assert_eq!(
            metrics["connectionMetrics"]["inbound"][t]["failure"], zero,
            "{t}"
        );
        assert_eq!(
            metrics["sourceMetrics"]["addressMetrics"]["telemetry"][t]["success"],
            zero
        );
    }
    for t in ["dispatched", "filtered", "mapped", "dropped", "published"] {
        assert_eq!(
            metrics["connectionMetrics"]["outbound"][t]["failure"], zero,
            "{t}"
        );
        assert_eq!(
            metrics["targetMetrics"]["addressMetrics"]["events/twin"][t]["success"],
            zero
        );
    }
    assert_eq!(
        metrics["targetMetrics"]["addressMetrics"]["_responses"]["published"]["success"],
        zero
    );

    let before = chrono::Utc::now();
    let logs = json(f.get("/api/2/connections/shapes/logs").await).await;
    assert_eq!(logs["connectionId"], "shapes");
    assert_eq!(logs["connectionLogs"], json!([]));
    assert!(logs.get("type").is_none());
    let until: chrono::DateTime<chrono::Utc> =
        logs["enabledUntil"].as_str().unwrap().parse().unwrap();
    let hours = (until - before).num_minutes() as f64 / 60.0;
    assert!(
        (23.9..=24.1).contains(&hours),
        "enabledUntil is {hours} h from now"
    );
    assert!(logs["enabledSince"].is_string());
}

#[tokio::test]
async fn commands() {
    let (_d, f) = server();
    f.put_json("/api/2/connections/cmd", &mqtt_connection())
        .await;
    let resp = f
        .command("cmd", "connectivity.commands:openConnection")
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        json(resp).await,
        json!({"type": "connectivity.responses:openConnection", "status": 200, "connectionId": "cmd"})
    );
    let got = json(
        f.get("/api/2/connections/cmd?fields=connectionStatus,_revision")
            .await,
    )
    .await;
    assert_eq!(got, json!({"connectionStatus": "open", "_revision": 2}));
    let status = json(f.get("/api/2/connections/cmd/status").await).await;
    assert_eq!(status["connectionStatus"], "open");
    assert_eq!(status["clientStatus"].as_array().unwrap().len(), 1);
    // The connection really opens (Mosquitto runs on 127.0.0.1:1883).
    let status = common::wait_for_live_status(&f, "cmd", "open").await;
    assert_eq!(status["clientStatus"][0]["status"], "open");
    assert_eq!(status["sourceStatus"][0]["address"], "devices/+/telemetry");
    assert!(status["connectedSince"].is_string());

    assert_eq!(
        f.command("cmd", "connectivity.commands:closeConnection\n")
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        json(f.get("/api/2/connections/cmd").await).await["connectionStatus"],
        "closed"
    );
    let status = json(f.get("/api/2/connections/cmd/status").await).await;
    assert_eq!(status["liveStatus"], "closed");

    for c in [
        "resetConnectionMetrics",
        "enableConnectionLogs",
        "resetConnectionLogs",
    ] {
        let resp = f
            .command("cmd", &format!("connectivity.commands:{c}"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "{c}");
        assert_eq!(
            json(resp).await["type"],
            format!("connectivity.responses:{c}")
        );
    }
    let body = assert_error(
        f.command("cmd", "connectivity.commands:foo").await,
        400,
        "connectivity:command.invalid",
    )
    .await;
    assert_eq!(
        body["message"],
        "The command <connectivity.commands:foo> is invalid or unknown."
    );
    let resp = f
        .req(Method::POST, "/api/2/connections/cmd/command")
        .header("content-type", "application/json")
        .body("\"connectivity.commands:openConnection\"")
        .send()
        .await
        .unwrap();
    assert_error(resp, 415, "general:mediatype.unsupported").await;
    // Nothing changed by the refused requests.
    assert_eq!(
        json(f.get("/api/2/connections/cmd?fields=_revision").await).await["_revision"],
        3
    );
}

#[tokio::test]
async fn invalid_input_gets_ditto_errors() {
    let (_d, f) = server();
    let raw = |body: &'static str| {
        f.req(Method::POST, "/api/2/connections")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_error(raw("{not json").await.unwrap(), 400, "json.invalid").await;
    assert_error(raw("[1,2]").await.unwrap(), 400, "json.invalid").await;
    assert_error(
        raw(&*"[".repeat(100_000).leak()).await.unwrap(),
        400,
        "json.invalid",
    )
    .await;
    let resp = f
        .req(Method::POST, "/api/2/connections")
        .header("content-type", "application/json")
        .body(vec![0xff, 0xfe, 0x7b])
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, "json.invalid").await;
    let resp = f
        .req(Method::POST, "/api/2/connections")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=b")
        .send()
        .await
        .unwrap();
    assert_error(resp, 415, "general:mediatype.unsupported").await;

    let cases: Vec<(Mutation, &str, &str)> = vec![
        (
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("connectionType");
            }),
            "json.field.missing",
            "JSON did not include required </connectionType> field!",
        ),
        (
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("uri");
            }),
            "json.field.missing",
            "JSON did not include required </uri> field!",
        ),
        (
            Box::new(|v| {
                v["sources"] = json!([]);
                v["targets"] = json!([]);
            }),
            "connectivity:connection.configuration.invalid",
            "Either a source or a target must be specified in the configuration of a connection!",
        ),
        (
            Box::new(|v| {
                v["sources"][0]["authorizationContext"] = json!([]);
            }),
            "connectivity:connection.configuration.invalid",
            "The Sources [devices/+/telemetry] and Targets [] are missing an authorization context.",
        ),
        (
            Box::new(|v| {
                v["uri"] = json!("http://127.0.0.1:1883");
            }),
            "connectivity:connection.uri.invalid",
            "The URI scheme 'http' is not valid for MQTT 3.1.1.",
        ),
        (
            Box::new(|v| {
                v["sources"][0].as_object_mut().unwrap().remove("qos");
            }),
            "connectivity:connection.configuration.invalid",
            "MQTT Source <Source of index 0 of connection '{id}'> must contain QoS value.",
        ),
        (
            Box::new(|v| {
                v["clientCount"] = json!(2);
            }),
            "connectivity:connection.configuration.invalid",
            "Client count limited to 1 for MQTT 3.1.1 connections.",
        ),
        (
            Box::new(|v| {
                v["sources"][0]["consumerCount"] = json!(3);
            }),
            "connectivity:connection.configuration.invalid",
            "Consumer count limited to 1 for MQTT 3.1.1 connections.",
        ),
        (
            Box::new(|v| {
                v["targets"][0]["headerMapping"] = json!({"content-type": "x"});
            }),
            "connectivity:connection.configuration.invalid",
            "The header 'content-type' is not allowed in MQTT 3.1.1 target header mapping.",
        ),
        (
            Box::new(|v| {
                v["targets"][0]["topics"] = json!(["_/_/things/twin/nope"]);
            }),
            "connectivity:topic.invalid",
            "The topic '_/_/things/twin/nope' could not be parsed.",
        ),
        (
            Box::new(|v| {
                v["connectionType"] = json!("mqtt-5");
                v["clientCount"] = json!(2);
                v["targets"][0]["topics"] = json!(["_/_/connections/announcements"]);
            }),
            "connectivity:connection.configuration.invalid",
            "Connection announcements (topic _/_/connections/announcements) can only be used with client count 1.",
        ),
        (
            Box::new(|v| {
                v["sources"][0]["declaredAcks"] = json!(["someone-else:ack"]);
            }),
            "acknowledgement:label.invalid",
            "Acknowledgement label <someone-else:ack> is invalid.",
        ),
        (
            Box::new(|v| {
                v["targets"][0]["issuedAcknowledgementLabel"] = json!("nope");
            }),
            "acknowledgement:label.invalid",
            "Acknowledgement label <nope> is invalid.",
        ),
        (
            Box::new(|v| {
                v["sources"][0]["payloadMapping"] = json!(["undefined-mapper"]);
            }),
            "connectivity:connection.configuration.invalid",
            "The mapper <undefined-mapper> could not be loaded.",
        ),
        (
            Box::new(|v| {
                v["uri"] = json!("tcp://");
            }),
            "connectivity:connection.uri.invalid",
            "",
        ),
        (
            Box::new(|v| {
                v["targets"][0]["topics"] =
                    json!(["_/_/things/twin/events?filter=gt(attributes/counter"]);
            }),
            "rql.expression.invalid",
            "",
        ),
        (
            Box::new(|v| {
                v["specificConfig"] = json!({"keepAlive": "soon"});
            }),
            "connectivity:connection.configuration.invalid",
            "Invalid value 'soon' for configuration 'keepAlive' in connection '{id}'.",
        ),
        (
            Box::new(|v| {
                v["specificConfig"] = json!({"lastWillTopic": "wills/#"});
            }),
            "connectivity:connection.configuration.invalid",
            "",
        ),
    ];
    for (i, (mutate, code, message)) in cases.iter().enumerate() {
        let mut v = mqtt_connection();
        mutate(&mut v);
        for (method, path) in [
            (Method::POST, "/api/2/connections?dry-run=true".to_string()),
            (Method::PUT, format!("/api/2/connections/case-{i}")),
        ] {
            let resp = f.req(method.clone(), &path).json(&v).send().await.unwrap();
            let body = assert_error(resp, 400, code).await;
            if !message.is_empty() && method == Method::PUT {
                assert_eq!(
                    body["message"],
                    message.replace("{id}", &format!("case-{i}")),
                    "case {i}"
                );
            }
        }
    }
    // None of the refused connections was stored.
    assert_eq!(
        json(f.get("/api/2/connections?ids-only=true").await).await,
        json!([])
    );

    let body = assert_error(
        f.get("/api/2/connections/bad%20id").await,
        400,
        "connectivity:connection.id.invalid",
    )
    .await;
    assert_eq!(body["message"], "The Connection ID 'bad id' is not valid.");
    assert_error(
        f.put_json(
            &format!("/api/2/connections/{}", "x".repeat(101)),
            &mqtt_connection(),
        )
        .await,
        400,
        "connectivity:connection.id.invalid",
    )
    .await;
    assert_error(
        f.get("/api/2/connections?fields=a(b").await,
        400,
        "json.fieldselector.invalid",
    )
    .await;
}

#[tokio::test]
async fn oversized_bodies_unknown_routes_and_methods() {
    let (_d, f) = server();
    let mut big = mqtt_connection();
    big["name"] = json!("x".repeat(1024 * 1024 + 1));
    assert_error(
        f.post_json("/api/2/connections", &big).await,
        413,
        "gateway:request.entity.toolarge",
    )
    .await;
    // Without a Content-Length (chunked), the limit holds too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..1100).map(|_| Ok(vec![b' '; 1024])).collect();
    let resp = f
        .req(Method::PUT, "/api/2/connections/chunked")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
        .send()
        .await
        .unwrap();
    assert_error(resp, 413, "gateway:request.entity.toolarge").await;

    assert_error(
        f.get("/api/2/nothing-here").await,
        404,
        "gateway:route.notfound",
    )
    .await;
    assert_error(
        f.get("/api/2/connections/x/unknown").await,
        404,
        "gateway:route.notfound",
    )
    .await;
    let resp = f
        .req(Method::PATCH, "/api/2/connections/x")
        .send()
        .await
        .unwrap();
    assert_error(resp, 405, "gateway:method.notallowed").await;
    let resp = f
        .req(Method::DELETE, "/api/2/connections")
        .send()
        .await
        .unwrap();
    assert_error(resp, 405, "gateway:method.notallowed").await;

    let health = reqwest::get(f.url("/health")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(json(health).await, json!({"status": "UP"}));
}

fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + Sync + 'static {
    futures_util::stream::iter(chunks)
}

#[tokio::test]
async fn concurrent_writers_lose_no_update() {
    let (_d, f) = server();
    let f = std::sync::Arc::new(f);
    let mut tasks = Vec::new();
    for n in 0..20 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut v = mqtt_connection();
            v["name"] = json!(format!("writer-{n}"));
            f.put_json("/api/2/connections/contended", &v)
                .await
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 204).count(),
        19,
        "{statuses:?}"
    );
    let got = json(
        f.get("/api/2/connections/contended?fields=_revision,name")
            .await,
    )
    .await;
    assert_eq!(got["_revision"], 20);

    // Writers that all read revision 20 race with If-Match: exactly one wins.
    let mut tasks = Vec::new();
    for n in 0..10 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut v = mqtt_connection();
            v["name"] = json!(format!("conditional-{n}"));
            f.req(Method::PUT, "/api/2/connections/contended")
                .header("if-match", "\"rev:20\"")
                .json(&v)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            204 => won += 1,
            412 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(won, 1);
    let got = json(
        f.get("/api/2/connections/contended?fields=_revision,name")
            .await,
    )
    .await;
    assert_eq!(got["_revision"], 21);
    assert!(got["name"].as_str().unwrap().starts_with("conditional-"));
}

#[tokio::test]
async fn example_connections_are_valid() {
    let (_d, f) = server();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/connections");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let mut v: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            // Validation only: stored closed, nothing connects.
            v["connectionStatus"] = json!("closed");
            let resp = f
                .put_json(&format!("/api/2/connections/example-{seen}"), &v)
                .await;
            assert_eq!(
                resp.status(),
                StatusCode::CREATED,
                "{}: {}",
                path.display(),
                resp.text().await.unwrap()
            );
            seen += 1;
        }
    }
    assert!(seen >= 3, "examples/connections holds {seen} connections");
}

#[tokio::test]
async fn logging_expires_and_is_enabled_again_by_command() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::start_with_config(dir.path(), "[logs]\nlog_duration_secs = 1\n");
    f.put_json("/api/2/connections/expiring", &mqtt_connection())
        .await;
    let logs = json(f.get("/api/2/connections/expiring/logs").await).await;
    assert!(
        logs["enabledUntil"].is_string(),
        "enabled on create: {logs}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let logs = json(f.get("/api/2/connections/expiring/logs").await).await;
    assert_eq!(logs["enabledSince"], Value::Null, "expired: {logs}");
    assert_eq!(logs["enabledUntil"], Value::Null, "expired: {logs}");

    let before = chrono::Utc::now();
    let resp = f
        .command("expiring", "connectivity.commands:enableConnectionLogs")
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let logs = json(f.get("/api/2/connections/expiring/logs").await).await;
    let since: chrono::DateTime<chrono::Utc> =
        logs["enabledSince"].as_str().unwrap().parse().unwrap();
    let until: chrono::DateTime<chrono::Utc> =
        logs["enabledUntil"].as_str().unwrap().parse().unwrap();
    assert!(
        since >= before - chrono::Duration::milliseconds(5),
        "{logs}"
    );
    let window = (until - since).num_milliseconds();
    assert!(
        (900..=1200).contains(&window),
        "enabled for the configured second: {window} ms"
    );
}

/// The JavaScript limits come from the service's configuration (`[javascript]`, or Ditto's
/// variables): a script longer than the configured size is refused at create.
#[tokio::test]
async fn javascript_limits_come_from_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let options = common::Options {
        env: vec![
            (
                "CONNECTIVITY_MESSAGE_MAPPING_JS_MAX_SCRIPT_SIZE_BYTES".into(),
                "100".into(),
            ),
            (
                "CONNECTIVITY_MESSAGE_MAPPING_JS_MAX_EXECUTION_TIME".into(),
                "250ms".into(),
            ),
        ],
        ..Default::default()
    };
    let f = common::try_start(dir.path(), options).unwrap_or_else(|(code, err)| {
        panic!("ferrule exited with {code}: {err}");
    });
    let with_script = |script: &str| {
        let mut c = amqp_connection();
        c["mappingDefinitions"] = json!({"js": {"mappingEngine": "JavaScript",
            "options": {"incomingScript": script, "outgoingScript": ""}}});
        c["sources"][0]["payloadMapping"] = json!(["js"]);
        c
    };
    let short = "function mapToDittoProtocolMsg() { return null; }";
    let resp = f
        .put_json("/api/2/connections/js-short", &with_script(short))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let long = format!("{short} // {}", "x".repeat(80));
    let resp = f
        .put_json("/api/2/connections/js-long", &with_script(&long))
        .await;
    let error = assert_error(resp, 400, "connectivity:connection.configuration.invalid").await;
    assert!(
        error["description"]
            .as_str()
            .unwrap()
            .contains("bigger than the allowed <100> bytes"),
        "{error}"
    );
}

/// Issue 19 point 13: Ditto's host validation (`blocked-hostnames`, `blocked-subnets`,
/// `blocked-host-regex`, `allowed-hostnames`), here from Ditto's environment variables.
#[tokio::test]
async fn blocked_hosts_are_refused_at_create_and_allowed_ones_taken() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::try_start(
        dir.path(),
        common::Options {
            env: vec![
                (
                    "CONNECTIVITY_CONNECTION_BLOCKED_HOSTNAMES".into(),
                    "localhost".into(),
                ),
                (
                    "CONNECTIVITY_CONNECTION_BLOCKED_HOST_REGEX".into(),
                    r".*\.internal".into(),
                ),
                (
                    "CONNECTIVITY_CONNECTION_ALLOWED_HOSTNAMES".into(),
                    "127.0.0.2".into(),
                ),
            ],
            ..Default::default()
        },
    )
    .unwrap_or_else(|(code, err)| panic!("ferrule exited with {code}: {err}"));
    let mut c = mqtt_connection();
    c["uri"] = json!("tcp://127.0.0.1:1883");
    for path in [
        "/api/2/connections/blocked",
        "/api/2/connections?dry-run=true",
    ] {
        let resp = if path.contains("dry-run") {
            f.post_json(path, &c).await
        } else {
            f.put_json(path, &c).await
        };
        let body = assert_error(resp, 400, "connectivity:connection.configuration.invalid").await;
        assert_eq!(
            body["message"],
            "The configured host '127.0.0.1' may not be used for the connection because the hostname resolved to a loopback address (127.0.0.1)."
        );
    }
    c["uri"] = json!("tcp://broker.internal:1883");
    let body = assert_error(
        f.put_json("/api/2/connections/blocked", &c).await,
        400,
        "connectivity:connection.configuration.invalid",
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .ends_with("because the host is blocked."),
        "{body}"
    );
    assert_eq!(
        json(f.get("/api/2/connections?ids-only=true").await).await,
        json!([])
    );
    c["uri"] = json!("tcp://127.0.0.2:1883");
    let resp = f.put_json("/api/2/connections/allowed", &c).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}

/// Ditto's `timeout` (query parameter or header) on the connection routes: refused when it is
/// no duration or over a minute; a command that does not answer in time is answered with 408
/// (a dry run against a broker that accepts TCP and never answers); `timeout=0` answers 202 and
/// the command is carried out, while an error still comes back.
#[tokio::test]
async fn the_timeout_parameter_bounds_the_wait_for_an_answer() {
    let (_d, f) = server();
    let body = assert_error(
        f.get("/api/2/connections?timeout=soon").await,
        400,
        "timeout.invalid",
    )
    .await;
    assert_eq!(body["description"], "Please choose a valid timeout.");
    let body = assert_error(
        f.req(Method::GET, "/api/2/connections")
            .header("timeout", "2m")
            .send()
            .await
            .unwrap(),
        400,
        "gateway:timeout.invalid",
    )
    .await;
    assert_eq!(
        body["message"],
        "The timeout <120000ms> is not inside its allowed bounds <0ms - 60000ms>"
    );
    assert_eq!(
        f.get("/api/2/connections?timeout=10s").await.status(),
        StatusCode::OK
    );

    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mut c = mqtt_connection();
    c["uri"] = json!(format!("tcp://127.0.0.1:{port}"));
    let started = std::time::Instant::now();
    let body = assert_error(
        f.post_json("/api/2/connections?dry-run=true&timeout=500ms", &c)
            .await,
        408,
        "command.timeout",
    )
    .await;
    assert_eq!(
        body["message"],
        "The Command reached the specified timeout of 500ms."
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "answered after {:?}, not when the timeout ran out",
        started.elapsed()
    );
    held.abort();

    let resp = f
        .put_json(
            "/api/2/connections/fire-and-forget?timeout=0",
            &mqtt_connection(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(resp.text().await.unwrap(), "");
    let stored = json(f.get("/api/2/connections/fire-and-forget").await).await;
    assert_eq!(stored["id"], "fire-and-forget", "{stored}");
    let mut bad = mqtt_connection();
    bad["uri"] = json!("amqp://127.0.0.1:5672");
    assert_error(
        f.put_json("/api/2/connections/not-created?timeout=0", &bad)
            .await,
        400,
        "connectivity:connection.uri.invalid",
    )
    .await;
}
