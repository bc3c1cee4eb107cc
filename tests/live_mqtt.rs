//! Live MQTT connections of the real binary against the real Mosquitto (127.0.0.1:1883):
//! device → twin → events, reply targets, dry-run, announcements, recovery, metrics and logs.

mod common;

use common::{Ferrule, Proxy, json, wait_for_live_status};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn unique(test: &str) -> String {
    common::unique(test, '-')
}

fn server() -> (tempfile::TempDir, Ferrule) {
    common::live_server()
}

/// An independent MQTT 5 client: publishes, and collects what arrives on `filter`.
async fn mqtt5(
    id: &str,
    filter: Option<&str>,
) -> (
    rumqttc::v5::AsyncClient,
    mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Publish>,
) {
    let mut o = rumqttc::v5::MqttOptions::new(id, "127.0.0.1", 1883);
    o.set_clean_start(true);
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(o, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready = Some(ready_tx);
    if let Some(f) = filter {
        client
            .subscribe(f, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
            .await
            .unwrap();
    }
    let want_suback = filter.is_some();
    tokio::spawn(async move {
        use rumqttc::v5::{Event, mqttbytes::v5::Packet};
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) if !want_suback => {
                    ready.take().map(|r| r.send(()));
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    ready.take().map(|r| r.send(()));
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(p);
                }
                Ok(_) => {}
                Err(e) => panic!("the test's MQTT client failed: {e}"),
            }
        }
    });
    timeout(WAIT, ready_rx)
        .await
        .expect("the test's MQTT client could not connect to 127.0.0.1:1883")
        .unwrap();
    (client, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Publish>) -> Value {
    let p = timeout(WAIT, rx.recv())
        .await
        .expect("nothing arrived in time")
        .unwrap();
    serde_json::from_slice(&p.payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&p.payload).into()))
}

async fn publish(client: &rumqttc::v5::AsyncClient, topic: &str, payload: Value) {
    client
        .publish(
            topic,
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            payload.to_string(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_device_changes_its_twin_and_the_event_is_published() {
    let (_d, f) = server();
    let u = unique("twin");
    let connection = json!({
        "connectionType": "mqtt",
        "connectionStatus": "open",
        "uri": "tcp://127.0.0.1:1883",
        "sources": [{"addresses": [format!("ferrule-e2e/{u}/devices/+")], "qos": 1,
                     "authorizationContext": ["ditto:inbound"]}],
        "targets": [{"address": format!("ferrule-e2e/{u}/events/{{{{ thing:name }}}}"),
                     "topics": ["_/_/things/twin/events"], "qos": 1,
                     "authorizationContext": ["ditto:outbound"]}]
    });
    let resp = f
        .put_json("/api/2/connections/device-conn", &connection)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    wait_for_live_status(&f, "device-conn", "open").await;
    let (device, mut events) = mqtt5(
        &format!("{u}-device"),
        Some(&format!("ferrule-e2e/{u}/events/#")),
    )
    .await;

    let thing = format!("org.e2e:{u}");
    publish(&device, &format!("ferrule-e2e/{u}/devices/d1"), json!({
        "topic": format!("org.e2e/{u}/things/twin/commands/create"),
        "headers": {"correlation-id": "create-1"},
        "path": "/",
        "value": {"attributes": {"location": "kitchen"}, "features": {"temp": {"properties": {"value": 20}}}}
    }))
    .await;
    let event = next(&mut events).await;
    assert_eq!(
        event["topic"],
        format!("org.e2e/{u}/things/twin/events/created")
    );
    assert_eq!(event["value"]["attributes"]["location"], "kitchen");
    assert_eq!(event["headers"]["correlation-id"], "create-1");
    assert!(
        event["headers"].get("ditto-auth-context").is_none(),
        "internal headers stay inside"
    );

    publish(
        &device,
        &format!("ferrule-e2e/{u}/devices/d1"),
        json!({
            "topic": format!("org.e2e/{u}/things/twin/commands/modify"),
            "path": "/features/temp/properties/value", "value": 23.5
        }),
    )
    .await;
    let event = next(&mut events).await;
    assert_eq!(
        event["topic"],
        format!("org.e2e/{u}/things/twin/events/modified")
    );
    assert_eq!(event["value"], 23.5);
    assert_eq!(event["revision"], 2);
    let twin = json(
        f.get(&format!(
            "/api/2/things/{thing}/features/temp/properties/value"
        ))
        .await,
    )
    .await;
    assert_eq!(twin, json!(23.5));

    // A change over HTTP produces the same event.
    let resp = f
        .put_json(
            &format!("/api/2/things/{thing}/attributes/location"),
            &json!("hall"),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let event = next(&mut events).await;
    assert_eq!(event["path"], "/attributes/location");
    assert_eq!(event["value"], "hall");

    // Plain JSON that is not Ditto Protocol: a mapping failure in metrics and logs, nothing else.
    publish(
        &device,
        &format!("ferrule-e2e/{u}/devices/d1"),
        json!({"thingId": "fan:octopus", "Value": 0}),
    )
    .await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let m = json(f.get("/api/2/connections/device-conn/metrics").await).await;
        if m["connectionMetrics"]["inbound"]["mapped"]["failure"]["PT1M"] == 1 {
            assert_eq!(
                m["connectionMetrics"]["inbound"]["consumed"]["success"]["PT1M"],
                3
            );
            assert_eq!(
                m["connectionMetrics"]["inbound"]["mapped"]["success"]["PT1M"],
                2
            );
            assert_eq!(
                m["connectionMetrics"]["outbound"]["published"]["success"]["PT1M"],
                3
            );
            assert_eq!(m["containsFailures"], true);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "metrics: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = json(f.get("/api/2/connections/device-conn/logs").await).await;
    let entries = logs["connectionLogs"].as_array().unwrap();
    // As in Ditto, the entry shows the message's headers and payload: often the only clue.
    assert!(
        entries.iter().any(|e| e["level"] == "failure"
            && e["type"] == "mapped"
            && e["message"].as_str().is_some_and(|m| {
                m.contains("JSON did not include required </topic> field!")
                    && m.contains(&format!("mqtt.topic=ferrule-e2e/{u}/devices/d1"))
                    && m.ends_with(r#" - Message payload: {"thingId":"fan:octopus","Value":0}"#)
            })),
        "{logs}"
    );
    // Success entries of every stage a message passed (issue 19 point 11: only failures and
    // target publishes were logged), sampled at most one per 10 ms of each kind.
    for (category, kind) in [
        ("source", "consumed"),
        ("source", "mapped"),
        ("target", "dispatched"),
        ("target", "filtered"),
        ("target", "mapped"),
        ("target", "published"),
    ] {
        assert!(
            entries
                .iter()
                .any(|e| e["category"] == category && e["type"] == kind && e["level"] == "success"),
            "no {category} {kind} success: {logs}"
        );
    }

    // Closing and opening the connection keeps its metrics; only resetConnectionMetrics
    // zeroes them.
    for command in ["closeConnection", "openConnection"] {
        let resp = f
            .command("device-conn", &format!("connectivity.commands:{command}"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "{command}");
    }
    wait_for_live_status(&f, "device-conn", "open").await;
    let consumed =
        |m: &Value| m["connectionMetrics"]["inbound"]["consumed"]["success"]["PT1M"].clone();
    let m = json(f.get("/api/2/connections/device-conn/metrics").await).await;
    assert_eq!(consumed(&m), 3, "after close and open: {m}");
    assert_eq!(
        m["sourceMetrics"]["addressMetrics"][format!("ferrule-e2e/{u}/devices/+")]["consumed"]["success"]
            ["PT1M"],
        3,
        "{m}"
    );
    let resp = f
        .command(
            "device-conn",
            "connectivity.commands:resetConnectionMetrics",
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let m = json(f.get("/api/2/connections/device-conn/metrics").await).await;
    assert_eq!(consumed(&m), 0, "after the reset: {m}");
    assert_eq!(m["containsFailures"], false);
}

#[tokio::test]
async fn responses_go_to_the_reply_target() {
    let (_d, f) = server();
    let u = unique("reply");
    let connection = json!({
        "connectionType": "mqtt-5",
        "connectionStatus": "open",
        "uri": "tcp://127.0.0.1:1883",
        "sources": [{"addresses": [format!("ferrule-e2e/{u}/commands")], "qos": 1,
                     "authorizationContext": ["ditto:inbound"],
                     // Placeholders of the consumed message and of the signal mapped from it.
                     "headerMapping": {"x-thing": "{{ thing:id }}", "x-action": "{{ topic:action }}",
                                       "x-from": "{{ header:mqtt.topic }}"},
                     "replyTarget": {"address": format!("ferrule-e2e/{u}/replies/{{{{ header:correlation-id }}}}"),
                                     "expectedResponseTypes": ["response", "error"]}}]
    });
    assert_eq!(
        f.put_json("/api/2/connections/reply-conn", &connection)
            .await
            .status(),
        StatusCode::CREATED
    );
    wait_for_live_status(&f, "reply-conn", "open").await;
    let (device, mut replies) = mqtt5(
        &format!("{u}-d"),
        Some(&format!("ferrule-e2e/{u}/replies/#")),
    )
    .await;
    publish(
        &device,
        &format!("ferrule-e2e/{u}/commands"),
        json!({
            "topic": format!("org.e2e/{u}/things/twin/commands/create"),
            "headers": {"correlation-id": "r-1"}, "path": "/", "value": {}
        }),
    )
    .await;
    let response = next(&mut replies).await;
    assert_eq!(response["status"], 201);
    assert_eq!(
        response["topic"],
        format!("org.e2e/{u}/things/twin/commands/create")
    );
    // Internal headers (the authorization context) stay inside Ferrule.
    let headers = response["headers"].as_object().unwrap();
    assert_eq!(headers["correlation-id"], "r-1");
    assert_eq!(headers["x-thing"], format!("org.e2e:{u}"), "{response}");
    assert_eq!(headers["x-action"], "create", "{response}");
    assert_eq!(
        headers["x-from"],
        format!("ferrule-e2e/{u}/commands"),
        "{response}"
    );
    assert!(
        !headers.keys().any(|k| k.starts_with("ditto-")),
        "{response}"
    );
    publish(
        &device,
        &format!("ferrule-e2e/{u}/commands"),
        json!({
            "topic": format!("org.e2e/{u}/things/twin/commands/retrieve"),
            "headers": {"correlation-id": "r-2"}, "path": "/features/none"
        }),
    )
    .await;
    let error = next(&mut replies).await;
    assert_eq!(error["status"], 404);
    assert_eq!(error["value"]["error"], "things:feature.notfound");
    assert_eq!(error["topic"], format!("org.e2e/{u}/things/twin/errors"));
}

#[tokio::test]
async fn dry_run_connects_or_says_why_not() {
    let (_d, f) = server();
    let u = unique("dry");
    let mut c = json!({
        "connectionType": "mqtt", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "sources": [{"addresses": [format!("ferrule-e2e/{u}/#")], "qos": 0, "authorizationContext": ["a"]}]
    });
    let resp = f.post_json("/api/2/connections?dry-run=true", &c).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // keepAlive as Ditto's MQTT binding pages write it (a duration), and the MQTT 5 values
    // rumqttc's MQTT 5 client does not take (its setter panicked under 5 s, 0 included).
    for (protocol, keep_alive) in [
        ("mqtt", "60s"),
        ("mqtt-5", "1m"),
        ("mqtt-5", "0"),
        ("mqtt-5", "2"),
        ("mqtt", "0"),
    ] {
        let mut k = c.clone();
        k["connectionType"] = json!(protocol);
        k["specificConfig"] = json!({"keepAlive": keep_alive});
        let resp = f.post_json("/api/2/connections?dry-run=true", &k).await;
        let status = resp.status();
        assert_eq!(
            status,
            StatusCode::OK,
            "{protocol} {keep_alive}: {}",
            json(resp).await
        );
    }
    let mut k = c.clone();
    k["specificConfig"] = json!({"keepAlive": "19h"});
    let resp = f.post_json("/api/2/connections?dry-run=true", &k).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        json(resp).await["error"],
        "connectivity:connection.configuration.invalid"
    );
    // Nothing listens on port 1 of this machine: connecting is refused.
    let port = 1;
    c["uri"] = json!(format!("tcp://127.0.0.1:{port}"));
    let started = std::time::Instant::now();
    let resp = f.post_json("/api/2/connections?dry-run=true", &c).await;
    let status = resp.status().as_u16();
    let body = json(resp).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"], "connectivity:connection.failed");
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{port}")),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        json(f.get("/api/2/connections?ids-only=true").await).await,
        json!([])
    );
}

#[tokio::test]
async fn announcements_on_open_and_close() {
    let (_d, f) = server();
    let u = unique("announce");
    let (_watcher, mut seen) = mqtt5(
        &format!("{u}-w"),
        Some(&format!("ferrule-e2e/{u}/announcements")),
    )
    .await;
    let connection = json!({
        "connectionType": "mqtt", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "targets": [{"address": format!("ferrule-e2e/{u}/announcements"), "qos": 1,
                     "topics": ["_/_/connections/announcements"], "authorizationContext": ["a"]}]
    });
    assert_eq!(
        f.put_json("/api/2/connections/ann-conn", &connection)
            .await
            .status(),
        StatusCode::CREATED
    );
    let opened = next(&mut seen).await;
    assert_eq!(
        opened["topic"],
        "_/ann-conn/connections/announcements/opened"
    );
    assert!(opened["value"]["openedAt"].is_string());
    let resp = f
        .command("ann-conn", "connectivity.commands:closeConnection")
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let closed = next(&mut seen).await;
    assert_eq!(
        closed["topic"],
        "_/ann-conn/connections/announcements/closed"
    );
    assert!(closed["value"]["closedAt"].is_string());
}

#[tokio::test]
async fn a_lost_broker_connection_recovers_by_itself() {
    let (_d, f) = server();
    let u = unique("recover");
    let proxy = Proxy::start(0, 1883).await;
    let connection = json!({
        "connectionType": "mqtt", "connectionStatus": "open",
        "uri": format!("tcp://127.0.0.1:{}", proxy.port),
        "sources": [{"addresses": [format!("ferrule-e2e/{u}/in")], "qos": 1, "authorizationContext": ["a"]}],
        "targets": [{"address": format!("ferrule-e2e/{u}/out"), "qos": 1,
                     "topics": ["_/_/things/twin/events"], "authorizationContext": ["a"]}]
    });
    assert_eq!(
        f.put_json("/api/2/connections/rec-conn", &connection)
            .await
            .status(),
        StatusCode::CREATED
    );
    wait_for_live_status(&f, "rec-conn", "open").await;

    let port = proxy.cut();
    let failed = wait_for_live_status(&f, "rec-conn", "failed").await;
    assert_eq!(failed["recoveryStatus"], "ongoing");
    assert!(
        failed["clientStatus"][0]["statusDetails"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );

    let _proxy = Proxy::start(port, 1883).await;
    let recovered = wait_for_live_status(&f, "rec-conn", "open").await;
    assert_eq!(recovered["recoveryStatus"], "succeeded");

    // And it works again.
    let (device, mut out) = mqtt5(&format!("{u}-d"), Some(&format!("ferrule-e2e/{u}/out"))).await;
    publish(
        &device,
        &format!("ferrule-e2e/{u}/in"),
        json!({
            "topic": format!("org.e2e/{u}/things/twin/commands/create"), "path": "/", "value": {}
        }),
    )
    .await;
    assert_eq!(
        next(&mut out).await["topic"],
        format!("org.e2e/{u}/things/twin/events/created")
    );
    common::assert_connection_failure_logged(&f, "rec-conn").await;
}

#[tokio::test]
async fn sigterm_closes_connections_gracefully() {
    let (_d, mut f) = server();
    let u = unique("sigterm");
    let (_watcher, mut seen) = mqtt5(
        &format!("{u}-w"),
        Some(&format!("ferrule-e2e/{u}/announcements")),
    )
    .await;
    let connection = json!({
        "connectionType": "mqtt", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "targets": [{"address": format!("ferrule-e2e/{u}/announcements"), "qos": 1,
                     "topics": ["_/_/connections/announcements"], "authorizationContext": ["a"]}]
    });
    assert_eq!(
        f.put_json("/api/2/connections/term-conn", &connection)
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        next(&mut seen).await["topic"],
        "_/term-conn/connections/announcements/opened"
    );
    let started = std::time::Instant::now();
    assert!(f.stop().success(), "a clean exit on SIGTERM");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        next(&mut seen).await["topic"],
        "_/term-conn/connections/announcements/closed"
    );
}

#[tokio::test]
async fn a_normalized_target_publishes_the_changed_part_of_the_thing() {
    let (_d, f) = server();
    let u = unique("normalized");
    let connection = json!({
        "connectionType": "mqtt", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "sources": [{"addresses": [format!("ferrule-e2e/{u}/in")], "qos": 1, "authorizationContext": ["a"]}],
        "targets": [{"address": format!("ferrule-e2e/{u}/normalized"), "qos": 1,
                     "topics": ["_/_/things/twin/events"], "authorizationContext": ["a"],
                     "payloadMapping": ["Normalized"]}]
    });
    assert_eq!(
        f.put_json("/api/2/connections/norm-conn", &connection)
            .await
            .status(),
        StatusCode::CREATED
    );
    wait_for_live_status(&f, "norm-conn", "open").await;
    let (device, mut out) = mqtt5(
        &format!("{u}-d"),
        Some(&format!("ferrule-e2e/{u}/normalized")),
    )
    .await;
    for (action, path, value) in [
        (
            "create",
            "/",
            json!({"attributes": {"a": 1}, "features": {"temp": {"properties": {"value": 0}}}}),
        ),
        ("modify", "/features/temp/properties/value", json!(7)),
    ] {
        publish(&device, &format!("ferrule-e2e/{u}/in"), json!({
            "topic": format!("org.e2e/{u}/things/twin/commands/{action}"), "path": path, "value": value
        }))
        .await;
    }
    let created = next(&mut out).await;
    assert_eq!(created["thingId"], format!("org.e2e:{u}"));
    assert_eq!(created["attributes"], json!({"a": 1}));
    assert_eq!(created["_revision"], 1);
    let modified = next(&mut out).await;
    assert_eq!(
        modified["features"],
        json!({"temp": {"properties": {"value": 7}}})
    );
    assert_eq!(modified["_revision"], 2);
    assert_eq!(
        modified["_context"]["topic"],
        format!("org.e2e/{u}/things/twin/events/modified")
    );
}

#[tokio::test]
async fn binary_telemetry_through_a_javascript_mapper_updates_the_twin() {
    let (_d, f) = server();
    let u = unique("e6");
    // Example E6 of Ditto's JavaScript mapping documentation.
    let script = r#"
function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    if (contentType !== "application/octet-stream") { return null; }
    var view = new DataView(bytePayload);
    var value = {
        temperature: { properties: { value: view.getInt16(0) / 100.0 } },
        pressure: { properties: { value: view.getInt16(2) } },
        humidity: { properties: { value: view.getUint8(4) } }
    };
    return Ditto.buildDittoProtocolMsg("org.eclipse.ditto", headers["device_id"], "things", "twin",
        "commands", "modify", "/features", headers, value);
}"#;
    let connection = json!({
        "connectionType": "mqtt-5", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "mappingDefinitions": {"binary": {"mappingEngine": "JavaScript",
            "options": {"incomingScript": script, "outgoingScript": ""}}},
        "sources": [{"addresses": [format!("ferrule-e2e/{u}/telemetry")], "qos": 1,
                     "authorizationContext": ["ditto:inbound"], "payloadMapping": ["binary"]}]
    });
    let resp = f.put_json("/api/2/connections/e6-conn", &connection).await;
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
    wait_for_live_status(&f, "e6-conn", "open").await;
    let thing = format!("/api/2/things/org.eclipse.ditto:{u}");
    assert_eq!(
        f.put_json(&thing, &json!({})).await.status(),
        StatusCode::CREATED
    );

    let (device, _) = mqtt5(&format!("{u}-dev"), None).await;
    let mut props = rumqttc::v5::mqttbytes::v5::PublishProperties {
        content_type: Some("application/octet-stream".into()),
        ..Default::default()
    };
    props.user_properties.push(("device_id".into(), u.clone()));
    device
        .publish_with_properties(
            format!("ferrule-e2e/{u}/telemetry"),
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            vec![0x09u8, 0xEF, 0x03, 0xF7, 0x2A],
            props,
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let features = json(f.get(&format!("{thing}/features")).await).await;
        if features.get("temperature").is_some() {
            assert_eq!(
                features,
                json!({"temperature": {"properties": {"value": 25.43}},
                       "pressure": {"properties": {"value": 1015}},
                       "humidity": {"properties": {"value": 42}}})
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the twin was not updated: {features}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A script with a syntax error is refused at create, naming line and column.
    let mut broken = connection.clone();
    broken["mappingDefinitions"]["binary"]["options"]["incomingScript"] =
        json!("function mapToDittoProtocolMsg() {\n  return ;;( \n}");
    let resp = f.put_json("/api/2/connections/e6-broken", &broken).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = json(resp).await;
    assert_eq!(
        body["error"],
        "connectivity:connection.configuration.invalid"
    );
    let description = body["description"].as_str().unwrap();
    assert!(
        description.contains("SyntaxError") && description.contains("line/column #3/1"),
        "{body}"
    );
}

/// Deliveries through a script mapper are mapped in batches of what has arrived (one hand-off
/// to a processor per batch), and so are the signals routed to a target with a script mapper:
/// a burst keeps its order and every message is mapped, applied and published exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_through_a_script_mapper_keeps_its_order() {
    let (_d, f) = server();
    let u = unique("burst");
    let script = r#"
function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    var d = JSON.parse(textPayload);
    return Ditto.buildDittoProtocolMsg("org.burst", d.thing, "things", "twin", "commands",
        "modify", "/attributes/n", headers, d.n);
}
function mapFromDittoProtocolMsg(namespace, name, group, channel, criterion, action, path, dittoHeaders, value, status, extra) {
    return Ditto.buildExternalMsg({}, JSON.stringify({"path": path, "value": value, "by": "js"}),
        null, "application/json");
}"#;
    let connection = json!({
        "connectionType": "mqtt-5", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "mappingDefinitions": {"js": {"mappingEngine": "JavaScript",
            "options": {"incomingScript": script, "outgoingScript": script}}},
        "sources": [{"addresses": [format!("ferrule-e2e/{u}/telemetry")], "qos": 1,
                     "authorizationContext": ["ditto:inbound"], "payloadMapping": ["js"]}],
        "targets": [{"address": format!("ferrule-e2e/{u}/events"),
                     "topics": ["_/_/things/twin/events"], "qos": 1,
                     "authorizationContext": ["ditto:outbound"], "payloadMapping": ["js"]}]
    });
    let resp = f
        .put_json("/api/2/connections/burst-conn", &connection)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    wait_for_live_status(&f, "burst-conn", "open").await;
    assert_eq!(
        f.put_json(&format!("/api/2/things/org.burst:{u}"), &json!({}))
            .await
            .status(),
        StatusCode::CREATED
    );
    let (device, mut events) = mqtt5(
        &format!("{u}-device"),
        Some(&format!("ferrule-e2e/{u}/events")),
    )
    .await;
    const N: u64 = 500;
    for n in 0..N {
        publish(
            &device,
            &format!("ferrule-e2e/{u}/telemetry"),
            json!({"thing": u, "n": n}),
        )
        .await;
    }
    let mut seen = Vec::new();
    while seen.len() < N as usize {
        let event = next(&mut events).await;
        assert_eq!(event["by"], "js", "{event}");
        if event["path"] != "/attributes/n" {
            continue; // the thing's `created` event, when it came after the subscription
        }
        seen.push(event["value"].as_u64().unwrap());
    }
    assert_eq!(seen, (0..N).collect::<Vec<_>>(), "in order, each once");
    let thing = json(f.get(&format!("/api/2/things/org.burst:{u}")).await).await;
    assert_eq!(thing["attributes"]["n"], N - 1);
    let metrics = json(f.get("/api/2/connections/burst-conn/metrics").await).await;
    assert_eq!(
        metrics["connectionMetrics"]["inbound"]["mapped"]["success"]["PT1M"], N,
        "{metrics}"
    );
}

/// A persistent session's backlog (MQTT 3.1.1, `cleanSession=false`) arrives all at once when
/// the connection opens. Each message requests the twin's and the target's acknowledgements:
/// every one must be applied, its event published by the target, and the message acknowledged
/// to the broker at once (an event routed before the target's route existed used to be lost, its
/// acknowledgement waited for the 60 s timeout, and the broker sent nothing new meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_sessions_backlog_is_published_when_the_connection_opens() {
    let (_d, f) = server();
    let u = unique("backlog");
    let id = "backlog-conn";
    let telemetry = format!("ferrule-e2e/{u}/telemetry");
    let connection = json!({
        "connectionType": "mqtt", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "specificConfig": {"clientId": format!("ferrule-{u}"), "cleanSession": "false"},
        "sources": [{"addresses": [telemetry.clone()], "qos": 1,
                     "authorizationContext": ["ditto:inbound"],
                     "acknowledgementRequests": {"includes": ["twin-persisted", format!("{id}:published")]}}],
        "targets": [{"address": format!("ferrule-e2e/{u}/events"), "qos": 1,
                     "topics": ["_/_/things/twin/events"],
                     "issuedAcknowledgementLabel": "{{connection:id}}:published",
                     "authorizationContext": ["ditto:outbound"]}]
    });
    let resp = f
        .put_json(&format!("/api/2/connections/{id}"), &connection)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    wait_for_live_status(&f, id, "open").await;
    assert_eq!(
        f.put_json(&format!("/api/2/things/org.backlog:{u}"), &json!({}))
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        f.command(id, "connectivity.commands:closeConnection")
            .await
            .status(),
        StatusCode::OK
    );
    wait_for_live_status(&f, id, "closed").await;

    // While the connection is closed, the broker queues the messages in Ferrule's session.
    let (device, mut events) = mqtt5(
        &format!("{u}-device"),
        Some(&format!("ferrule-e2e/{u}/events")),
    )
    .await;
    const N: u64 = 300;
    for n in 0..N {
        let command = json!({
            "topic": format!("org.backlog/{u}/things/twin/commands/modify"),
            "path": "/attributes/n", "value": n
        });
        publish(&device, &telemetry, command).await;
    }
    assert_eq!(
        f.command(id, "connectivity.commands:openConnection")
            .await
            .status(),
        StatusCode::OK
    );

    let mut seen = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while (seen.len() as u64) < N {
        let event = timeout(deadline - tokio::time::Instant::now(), events.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} of {N} events arrived within 20 s; missing from {:?}",
                    seen.len(),
                    (0..N).find(|n| !seen.contains(n))
                )
            })
            .unwrap();
        let event: Value = serde_json::from_slice(&event.payload).unwrap();
        if event["path"] == "/attributes/n" {
            seen.insert(event["value"].as_u64().unwrap());
        }
    }
    // Every message was acknowledged to the broker as a success.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = json(f.get(&format!("/api/2/connections/{id}/metrics")).await).await;
        let acked = &metrics["connectionMetrics"]["inbound"]["acknowledged"];
        if acked["success"]["PT1M"] == N {
            assert_eq!(acked["failure"]["PT1M"], 0, "{metrics}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A target that declares an acknowledgement label answers it for every signal it was given:
/// a weak acknowledgement (200, `ditto-weak-ack`) when its filter passed the signal over or its
/// mapper dropped it, so the source settles at once instead of waiting for the timeout and
/// redelivering (Ditto's weak acks); 400 when its mapper failed, which a redelivery would repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_answer_requested_acknowledgements_they_do_not_publish() {
    let (_d, f) = server();
    let u = unique("weak");
    let id = "weak-conn";
    let js = |script: &str| {
        json!({"mappingEngine": "JavaScript", "options": {"incomingScript": "function mapToDittoProtocolMsg() { return null; }", "outgoingScript": format!(
            "function mapFromDittoProtocolMsg(namespace, name, group, channel, criterion, action, path, dittoHeaders, value, status, extra) {{ {script} }}")}})
    };
    let target = |name: &str, topic: &str, mapping: Option<&str>| {
        let mut t = json!({"address": format!("ferrule-e2e/{u}/out/{name}"), "topics": [topic], "qos": 1,
                           "authorizationContext": ["ditto:outbound"],
                           "issuedAcknowledgementLabel": format!("{{{{connection:id}}}}:{name}")});
        if let Some(m) = mapping {
            t["payloadMapping"] = json!([m]);
        }
        t
    };
    let connection = json!({
        "connectionType": "mqtt-5", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "mappingDefinitions": {"drop": js("return null;"), "fail": js("throw new Error('no');")},
        "sources": [{"addresses": [format!("ferrule-e2e/{u}/commands")], "qos": 1,
                     "authorizationContext": ["ditto:inbound"],
                     "replyTarget": {"address": format!("ferrule-e2e/{u}/replies"),
                                     "expectedResponseTypes": ["response", "error", "nack"]}}],
        "targets": [
            target("filtered", "_/_/things/twin/events?filter=eq(attributes/pass,true)", None),
            target("dropped", "_/_/things/twin/events", Some("drop")),
            target("failed", "_/_/things/twin/events", Some("fail"))
        ]
    });
    let resp = f
        .put_json(&format!("/api/2/connections/{id}"), &connection)
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
    wait_for_live_status(&f, id, "open").await;
    assert_eq!(
        f.put_json(&format!("/api/2/things/org.weak:{u}"), &json!({}))
            .await
            .status(),
        StatusCode::CREATED
    );
    let (device, mut replies) =
        mqtt5(&format!("{u}-d"), Some(&format!("ferrule-e2e/{u}/replies"))).await;
    let modify = |correlation: &str, acks: Value| {
        json!({
            "topic": format!("org.weak/{u}/things/twin/commands/modify"),
            "headers": {"correlation-id": correlation, "requested-acks": acks},
            "path": "/attributes/pass", "value": false
        })
    };

    // Filtered out by one target, dropped by the other's mapper: both answer with weak acks, so
    // the twin's response comes at once and no negative acknowledgement follows.
    let started = std::time::Instant::now();
    publish(
        &device,
        &format!("ferrule-e2e/{u}/commands"),
        modify(
            "w-1",
            json!([
                "twin-persisted",
                format!("{id}:filtered"),
                format!("{id}:dropped")
            ]),
        ),
    )
    .await;
    let response = next(&mut replies).await;
    assert_eq!(response["status"], 201, "{response}");
    assert_eq!(response["headers"]["correlation-id"], "w-1");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not after the ack timeout"
    );

    // The failing mapper answers 400: the response, then the negative acknowledgement.
    publish(
        &device,
        &format!("ferrule-e2e/{u}/commands"),
        modify("w-2", json!([format!("{id}:failed")])),
    )
    .await;
    let response = next(&mut replies).await;
    assert_eq!(response["status"], 204, "{response}");
    let nack = next(&mut replies).await;
    assert_eq!(
        nack["topic"],
        format!("org.weak/{u}/things/twin/acks/{id}:failed"),
        "{nack}"
    );
    assert_eq!(nack["status"], 400, "{nack}");
    assert_eq!(
        nack["value"]["error"], "connectivity:message.mapping.failed",
        "{nack}"
    );
    assert_eq!(nack["headers"]["correlation-id"], "w-2");

    // Both were settled: the source counts one acknowledged, one not.
    let metrics = json(f.get(&format!("/api/2/connections/{id}/metrics")).await).await;
    let acked = &metrics["connectionMetrics"]["inbound"]["acknowledged"];
    assert_eq!(acked["success"]["PT1M"], 1, "{metrics}");
    assert_eq!(acked["failure"]["PT1M"], 1, "{metrics}");
    // Each target counts the acknowledgements it issued: weak ones as successes, the failing
    // mapper's as failures.
    let issued = |name: &str, outcome: &str| {
        metrics["targetMetrics"]["addressMetrics"][format!("ferrule-e2e/{u}/out/{name}")]
            ["acknowledged"][outcome]["PT1M"]
            .as_u64()
            .unwrap()
    };
    for name in ["filtered", "dropped"] {
        assert!(issued(name, "success") >= 2, "{name}: {metrics}");
        assert_eq!(issued(name, "failure"), 0, "{name}: {metrics}");
    }
    assert!(issued("failed", "failure") >= 2, "{metrics}");
    assert_eq!(issued("failed", "success"), 0, "{metrics}");
}

/// Creates connection `id` (its reply target publishes to `ferrule-e2e/<u>/replies`), waits until
/// it is open, and returns a device client subscribed to the replies.
async fn open_with_replies(
    f: &Ferrule,
    id: &str,
    connection: &Value,
    u: &str,
) -> (
    rumqttc::v5::AsyncClient,
    mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Publish>,
) {
    let resp = f
        .put_json(&format!("/api/2/connections/{id}"), connection)
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
    wait_for_live_status(f, id, "open").await;
    mqtt5(&format!("{u}-d"), Some(&format!("ferrule-e2e/{u}/replies"))).await
}

/// The next reply is a 400 error `code` for the message with `correlation`.
async fn next_error(
    replies: &mut mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Publish>,
    correlation: &str,
    code: &str,
) {
    let error = next(replies).await;
    assert_eq!(error["headers"]["correlation-id"], correlation, "{error}");
    assert_eq!(error["status"], 400, "{error}");
    assert_eq!(error["value"]["error"], code, "{error}");
}

/// A device acknowledges through a source only the labels the source declares (`declaredAcks`):
/// a declared label completes the command that requested it; another is answered with
/// `acknowledgement:label.not.declared` and taken by nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_send_only_the_acknowledgements_they_declare() {
    let (_d, f) = server();
    let u = unique("declared");
    let id = format!("{u}-conn");
    let connection = json!({
        "connectionType": "mqtt-5", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "sources": [{"addresses": [format!("ferrule-e2e/{u}/in")], "qos": 1,
                     "authorizationContext": ["ditto:inbound"],
                     "declaredAcks": ["{{connection:id}}:done"],
                     "replyTarget": {"address": format!("ferrule-e2e/{u}/replies"),
                                     "expectedResponseTypes": ["response", "error", "nack"]}}]
    });
    let (device, mut replies) = open_with_replies(&f, &id, &connection, &u).await;
    let inbox = format!("ferrule-e2e/{u}/in");
    let ack = |label: &str, correlation: &str| {
        json!({"topic": format!("org.declared/{u}/things/twin/acks/{label}"),
               "headers": {"correlation-id": correlation}, "path": "/", "value": "ok", "status": 200})
    };

    // A command that requests the declared label waits for the device's acknowledgement.
    publish(
        &device,
        &inbox,
        json!({"topic": format!("org.declared/{u}/things/twin/commands/create"),
               "headers": {"correlation-id": "d-1", "timeout": "20s",
                           "requested-acks": ["twin-persisted", format!("{id}:done")]},
               "path": "/", "value": {}}),
    )
    .await;
    publish(&device, &inbox, ack(&format!("{id}:done"), "d-1")).await;
    let response = next(&mut replies).await;
    assert_eq!(response["headers"]["correlation-id"], "d-1", "{response}");
    assert_eq!(response["status"], 201, "{response}");

    // An undeclared label is refused.
    publish(&device, &inbox, ack(&format!("{id}:other"), "d-2")).await;
    next_error(&mut replies, "d-2", "acknowledgement:label.not.declared").await;
    let logs = json(f.get(&format!("/api/2/connections/{id}/logs")).await).await;
    assert!(
        logs["connectionLogs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["level"] == "failure"
                && e["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("<{id}:other>"))),
        "{logs}"
    );
}

/// A source's enforcement refuses a signal for another thing than the message's origin allows:
/// the error goes to the reply target, the logs and the `enforced` metric, and the thing is not
/// touched; a signal that passes goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforcement_refuses_signals_for_other_things() {
    let (_d, f) = server();
    let u = unique("enforce");
    let id = format!("{u}-conn");
    let connection = json!({
        "connectionType": "mqtt-5", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "sources": [{"addresses": [format!("ferrule-e2e/{u}/things/+")], "qos": 1,
                     "authorizationContext": ["ditto:inbound"],
                     "enforcement": {"input": "{{ source:address }}",
                                     "filters": [format!("ferrule-e2e/{u}/things/{{{{ thing:name }}}}")]},
                     "replyTarget": {"address": format!("ferrule-e2e/{u}/replies"),
                                     "expectedResponseTypes": ["response", "error"]}}]
    });
    let (device, mut replies) = open_with_replies(&f, &id, &connection, &u).await;
    let create = |name: &str, correlation: &str| {
        json!({"topic": format!("org.enforce/{name}/things/twin/commands/create"),
               "headers": {"correlation-id": correlation}, "path": "/", "value": {}})
    };
    let good = format!("ferrule-e2e/{u}/things/good-{u}");
    publish(&device, &good, create(&format!("good-{u}"), "e-1")).await;
    let response = next(&mut replies).await;
    assert_eq!(response["status"], 201, "{response}");
    publish(&device, &good, create(&format!("other-{u}"), "e-2")).await;
    next_error(
        &mut replies,
        "e-2",
        "connectivity:connection.id.enforcement.failed",
    )
    .await;
    assert_eq!(
        f.get(&format!("/api/2/things/org.enforce:other-{u}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let metrics = json(f.get(&format!("/api/2/connections/{id}/metrics")).await).await;
    let enforced = &metrics["connectionMetrics"]["inbound"]["enforced"];
    assert_eq!(enforced["success"]["PT1M"], 1, "{metrics}");
    assert_eq!(enforced["failure"]["PT1M"], 1, "{metrics}");
    let logs = json(f.get(&format!("/api/2/connections/{id}/logs")).await).await;
    assert!(
        logs["connectionLogs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "enforced" && e["level"] == "failure"),
        "{logs}"
    );
}

/// Response diversion (Ditto's `ResponseDiversionInterceptor`): the responses to the commands a
/// diversion source consumes are published by the diversion target's target instead of the
/// source's reply target; a response type the command did not ask to divert still goes to the
/// reply target; a source the target does not authorize has its responses dropped, and its
/// connection logs say why.
#[tokio::test]
async fn responses_are_diverted_to_another_connection() {
    let (_d, f) = server();
    let u = unique("divert");
    let hook = format!("divert-hook-{u}");
    let source = format!("divert-src-{u}");
    let rogue = format!("divert-rogue-{u}");
    let target_connection = json!({
        "connectionType": "mqtt-5", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "targets": [{"address": format!("ferrule-e2e/{u}/diverted/{{{{ thing:name }}}}"),
                     "topics": [], "qos": 1, "authorizationContext": ["ditto:outbound"]}],
        "specificConfig": {"is-diversion-target": "true",
                           "authorized-connections-as-sources": source.clone()}
    });
    let source_connection = |from: &str| {
        json!({
            "connectionType": "mqtt-5", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
            "sources": [{"addresses": [format!("ferrule-e2e/{u}/{from}/commands")], "qos": 1,
                         "authorizationContext": ["ditto:inbound"],
                         "headerMapping": {"correlation-id": "{{ header:correlation-id }}",
                                           "divert-response-to-connection": hook.clone(),
                                           "divert-expected-response-types": "response"},
                         "replyTarget": {"address": format!("ferrule-e2e/{u}/replies"),
                                         "expectedResponseTypes": ["response", "error"]}}],
            "specificConfig": {"is-diversion-source": "true"}
        })
    };
    for (id, body) in [
        (&hook, target_connection),
        (&source, source_connection("src")),
        (&rogue, source_connection("rogue")),
    ] {
        let resp = f.put_json(&format!("/api/2/connections/{id}"), &body).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{id}");
        wait_for_live_status(&f, id, "open").await;
    }
    let (_w1, mut diverted) = mqtt5(
        &format!("{u}-w"),
        Some(&format!("ferrule-e2e/{u}/diverted/#")),
    )
    .await;
    let (device, mut replies) =
        mqtt5(&format!("{u}-d"), Some(&format!("ferrule-e2e/{u}/replies"))).await;
    let create = |name: &str, correlation: &str| {
        json!({"topic": format!("org.e2e/{name}/things/twin/commands/create"),
               "headers": {"correlation-id": correlation}, "path": "/", "value": {}})
    };
    let src = format!("ferrule-e2e/{u}/src/commands");
    publish(&device, &src, create(&format!("{u}-a"), "d-1")).await;
    let response = next(&mut diverted).await;
    assert_eq!(response["status"], 201, "{response}");
    assert_eq!(response["headers"]["correlation-id"], "d-1", "{response}");
    assert_eq!(
        response["headers"]["diverted-response-from-connection"],
        source.as_str(),
        "{response}"
    );
    // Errors are not among the diverted types: the reply target has it, and nothing before it
    // (the created response was diverted only).
    publish(
        &device,
        &src,
        json!({"topic": format!("org.e2e/{u}-a/things/twin/commands/retrieve"),
               "headers": {"correlation-id": "d-2"}, "path": "/features/none"}),
    )
    .await;
    let error = next(&mut replies).await;
    assert_eq!(error["status"], 404, "{error}");
    assert_eq!(error["headers"]["correlation-id"], "d-2", "{error}");

    // The rogue source is not authorized: its response is dropped, and its logs say so.
    publish(
        &device,
        &format!("ferrule-e2e/{u}/rogue/commands"),
        create(&format!("{u}-b"), "r-1"),
    )
    .await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let logs = json(f.get(&format!("/api/2/connections/{rogue}/logs")).await).await;
        let dropped = logs["connectionLogs"].as_array().unwrap().iter().any(|e| {
            e["level"] == "failure"
                && e["category"] == "response"
                && e["message"]
                    .as_str()
                    .unwrap()
                    .contains("authorized-connections-as-sources")
        });
        if dropped {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    publish(&device, &src, create(&format!("{u}-c"), "d-3")).await;
    let response = next(&mut diverted).await;
    assert_eq!(
        response["headers"]["correlation-id"], "d-3",
        "the rogue's response was not diverted: {response}"
    );
    assert!(
        timeout(Duration::from_millis(300), replies.recv())
            .await
            .is_err(),
        "diverted responses do not also go to the reply target"
    );
}
