//! `GET /metrics` of the real binary: message counters of a live MQTT connection against the real
//! Mosquitto (127.0.0.1:1883), the Ditto mapper's calls and histogram, HTTP request counts,
//! open connections, reconnects, and the `[prometheus]` settings.

mod common;

use common::{Proxy, wait_for_live_status};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn unique(test: &str) -> String {
    common::unique(test, '-')
}

/// An MQTT 5 client that only publishes, connected when returned.
async fn device(id: &str) -> rumqttc::v5::AsyncClient {
    let mut o = rumqttc::v5::MqttOptions::new(id, "127.0.0.1", 1883);
    o.set_clean_start(true);
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(o, 100);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready = Some(ready_tx);
    tokio::spawn(async move {
        use rumqttc::v5::{Event, mqttbytes::v5::Packet};
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    ready.take().map(|r| r.send(()));
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
    client
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

/// `GET /metrics` without credentials: status, content type, body.
async fn scrape(f: &common::Ferrule) -> (StatusCode, String, String) {
    let resp = reqwest::get(f.url("/metrics")).await.unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, resp.text().await.unwrap())
}

/// The value of one series (`name{labels}`) in an exposition.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// Scrapes until every series has its expected value (at most `WAIT`); returns the last text.
async fn scrape_until(f: &common::Ferrule, expected: &[(String, f64)]) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, _, text) = scrape(f).await;
        assert_eq!(status, StatusCode::OK);
        let missing: Vec<String> = expected
            .iter()
            .filter(|(series, v)| value(&text, series) != Some(*v))
            .map(|(series, v)| format!("{series} {v} (is {:?})", value(&text, series)))
            .collect();
        if missing.is_empty() {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not scraped: {missing:#?}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn messages(connection: &str, direction: &str, kind: &str, outcome: &str) -> String {
    format!(
        r#"ferrule_connection_messages_total{{connection="{connection}",direction="{direction}",type="{kind}",outcome="{outcome}"}}"#
    )
}

#[tokio::test]
async fn messages_mappers_and_http_requests_are_scraped_without_credentials() {
    let (_d, f) = common::live_server();
    let u = unique("prom");
    let id = format!("prom-{u}");
    let thing = format!("org.prom:{u}");

    let resp = f
        .put_json(
            &format!("/api/2/things/{thing}"),
            &json!({"features": {"temp": {"properties": {"value": 0}}}}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
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
        .put_json(&format!("/api/2/connections/{id}"), &connection)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    wait_for_live_status(&f, &id, "open").await;

    let device = device(&format!("{u}-device")).await;
    for v in 1..=3 {
        publish(
            &device,
            &format!("ferrule-e2e/{u}/devices/d1"),
            json!({
                "topic": format!("org.prom/{u}/things/twin/commands/modify"),
                "path": "/features/temp/properties/value", "value": v
            }),
        )
        .await;
    }
    // Not Ditto Protocol: the Ditto mapper fails it.
    publish(
        &device,
        &format!("ferrule-e2e/{u}/devices/d1"),
        json!({"thingId": "fan:octopus"}),
    )
    .await;

    let ditto = |direction: &str, outcome: &str| {
        format!(r#"{{engine="Ditto",direction="{direction}",outcome="{outcome}"}}"#)
    };
    let text = scrape_until(
        &f,
        &[
            (messages(&id, "inbound", "consumed", "success"), 4.0),
            (messages(&id, "inbound", "mapped", "success"), 3.0),
            (messages(&id, "inbound", "mapped", "failure"), 1.0),
            (messages(&id, "outbound", "published", "success"), 3.0),
            (
                format!("ferrule_mapper_calls_total{}", ditto("inbound", "success")),
                3.0,
            ),
            (
                format!("ferrule_mapper_calls_total{}", ditto("inbound", "failure")),
                1.0,
            ),
            (
                format!("ferrule_mapper_calls_total{}", ditto("outbound", "success")),
                3.0,
            ),
            (
                format!(
                    "ferrule_mapper_duration_seconds_count{}",
                    ditto("inbound", "success")
                ),
                3.0,
            ),
            ("ferrule_connections_open".to_string(), 1.0),
            (
                format!(r#"ferrule_connection_reconnects_total{{connection="{id}"}}"#),
                0.0,
            ),
            (
                r#"ferrule_http_requests_total{method="PUT",route="/api/2/connections/{id}",status="201"}"#
                    .to_string(),
                1.0,
            ),
            (
                r#"ferrule_http_requests_total{method="PUT",route="/api/2/things/{id}",status="201"}"#
                    .to_string(),
                1.0,
            ),
        ],
    )
    .await;
    assert!(text.contains("# TYPE ferrule_mapper_duration_seconds histogram"));
    let inf_bucket = r#"ferrule_mapper_duration_seconds_bucket{engine="Ditto",direction="inbound",outcome="success",le="+Inf"}"#;
    assert_eq!(value(&text, inf_bucket), Some(3.0), "{text}");
    assert!(
        value(
            &text,
            r#"ferrule_mapper_duration_seconds_sum{engine="Ditto",direction="inbound",outcome="success"}"#
        )
        .is_some_and(|s| s > 0.0)
    );
    // The status polls of wait_for_live_status were counted under their route template.
    assert!(
        value(
            &text,
            r#"ferrule_http_requests_total{method="GET",route="/api/2/connections/{id}/status",status="200"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(text.contains(
        r#"ferrule_http_request_duration_seconds_count{method="PUT",route="/api/2/connections/{id}",status="201"} 1"#
    ));

    let (_, content_type, _) = scrape(&f).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let open = reqwest::Client::new()
        .get(f.url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        open.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(open.text().await.unwrap().ends_with("# EOF\n"));

    // Unmatched routes are one series, not one per path.
    let resp = reqwest::get(f.url(&format!("/nowhere/{u}"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    scrape_until(
        &f,
        &[(
            r#"ferrule_http_requests_total{method="GET",route="unmatched",status="404"}"#
                .to_string(),
            1.0,
        )],
    )
    .await;

    // A deleted connection's series go away.
    assert_eq!(
        f.delete(&format!("/api/2/connections/{id}")).await.status(),
        StatusCode::NO_CONTENT
    );
    let text = scrape_until(&f, &[("ferrule_connections_open".to_string(), 0.0)]).await;
    assert!(!text.contains(&format!(r#"connection="{id}""#)), "{text}");
}

#[tokio::test]
async fn reconnects_and_open_connections_follow_the_broker() {
    let (_d, f) = common::live_server();
    let u = unique("prom-rec");
    let id = format!("prom-{u}");
    let proxy = Proxy::start(0, 1883).await;
    let connection = json!({
        "connectionType": "mqtt", "connectionStatus": "open",
        "uri": format!("tcp://127.0.0.1:{}", proxy.port),
        "sources": [{"addresses": [format!("ferrule-e2e/{u}/in")], "qos": 1,
                     "authorizationContext": ["a"]}]
    });
    let resp = f
        .put_json(&format!("/api/2/connections/{id}"), &connection)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    wait_for_live_status(&f, &id, "open").await;
    let reconnects = format!(r#"ferrule_connection_reconnects_total{{connection="{id}"}}"#);
    scrape_until(
        &f,
        &[
            ("ferrule_connections_open".to_string(), 1.0),
            (reconnects.clone(), 0.0),
        ],
    )
    .await;

    let port = proxy.cut();
    wait_for_live_status(&f, &id, "failed").await;
    let (_, _, text) = scrape(&f).await;
    assert_eq!(value(&text, "ferrule_connections_open"), Some(0.0));

    let _proxy = Proxy::start(port, 1883).await;
    wait_for_live_status(&f, &id, "open").await;
    let text = scrape_until(&f, &[("ferrule_connections_open".to_string(), 1.0)]).await;
    assert!(
        value(&text, &reconnects).is_some_and(|n| n >= 1.0),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_need_credentials_when_configured_and_vanish_when_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::start_with_config(dir.path(), "[prometheus]\nrequire_auth = true\n");
    let (status, _, _) = scrape(&f).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let resp = f.get("/metrics").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.text().await.unwrap().contains(
            r#"ferrule_http_requests_total{method="GET",route="/metrics",status="401"} 1"#
        )
    );
    drop(f);

    let dir = tempfile::tempdir().unwrap();
    let f = common::start_with_config(dir.path(), "[prometheus]\nenabled = false\n");
    let (status, _, _) = scrape(&f).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(f.get("/health").await.status(), StatusCode::OK);
}
