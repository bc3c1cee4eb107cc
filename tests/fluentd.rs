//! Connection logs reach a Fluentd Forward-protocol receiver (a Python `msgpack` receiver,
//! `tests/fluent_receiver.py`, independent of Ferrule's encoder), including records made while
//! the receiver was down, once it comes back.

mod common;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Receiver {
    child: Child,
    lines: std::sync::Mutex<mpsc::Receiver<Value>>,
}

impl Receiver {
    fn start(port: u16) -> Receiver {
        Receiver::start_with(port, &[])
    }

    /// A receiver that speaks TLS with the test server certificate (for 127.0.0.1 and
    /// localhost, signed by the test CA; see [`common::tls_file`]).
    fn start_tls(port: u16) -> Receiver {
        Receiver::start_with(
            port,
            &[
                "--tls",
                &common::tls_file("server.pem"),
                &common::tls_file("server.key"),
            ],
        )
    }

    fn start_with(port: u16, options: &[&str]) -> Receiver {
        let mut child = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/fluent_receiver.py"
            ))
            .arg(port.to_string())
            .args(options)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the receiver");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel::<Value>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(serde_json::from_str(&line).unwrap());
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the receiver starts (pip package msgpack; scripts/test installs it)");
        assert_eq!(first["listening"], port);
        Receiver {
            child,
            lines: std::sync::Mutex::new(lines),
        }
    }

    /// The next line the receiver prints that satisfies `check`.
    fn wait_for_line(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.lock().unwrap().recv_timeout(left) else {
                break;
            };
            if check(&line) {
                return line;
            }
            seen.push(line);
        }
        panic!("no {what}; seen: {seen:#?}");
    }

    /// The next record whose fields contain `wanted`.
    fn wait_for(&self, wanted: &Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.lock().unwrap().recv_timeout(left) else {
                break;
            };
            let record = &line["record"];
            if wanted.as_object().unwrap().iter().all(|(k, v)| {
                record.get(k).is_some_and(|r| {
                    r == v
                        || v.as_str()
                            .is_some_and(|s| r.as_str().is_some_and(|r| r.contains(s)))
                })
            }) {
                return line;
            }
            seen.push(line);
        }
        panic!("no record with {wanted}; seen: {seen:#?}");
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates an open MQTT connection (source `ferrule-fluent/<id>/+`), which logs as it
/// connects; its id.
async fn open_connection(f: &common::Ferrule, prefix: &str) -> String {
    let id = common::unique(prefix, '-');
    let mut connection = common::mqtt_connection();
    connection["connectionStatus"] = json!("open");
    connection["sources"][0]["addresses"] = json!([format!("ferrule-fluent/{id}/+")]);
    common::create_open(f, &id, &connection).await;
    id
}

#[tokio::test]
async fn connection_logs_reach_fluentd_also_after_it_was_down() {
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let f = common::start_with_config(
        dir.path(),
        &format!(
            "[runtime]\nmin_backoff_ms = 200\nmax_backoff_ms = 1000\n\
             [log_publisher]\nenabled = true\nhost = \"127.0.0.1\"\nport = {port}\n\
             flush_interval_ms = 50\nadditional_log_context = {{ site = \"b1\" }}\n"
        ),
    );
    let id = open_connection(&f, "fluent").await;

    // Fluentd comes up only now: the records made meanwhile were kept and arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let receiver = tokio::task::spawn_blocking(move || Receiver::start(port))
        .await
        .unwrap();
    let receiver = std::sync::Arc::new(receiver);
    let r = receiver.clone();
    let wanted = json!({"connectionId": id, "category": "connection", "message": "Connected"});
    let line = tokio::task::spawn_blocking(move || r.wait_for(&wanted))
        .await
        .unwrap();
    assert_eq!(line["tag"], format!("connection:{id}"));
    assert_eq!(line["time"]["ext"], 0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sec = line["time"]["sec"].as_u64().unwrap();
    assert!(
        sec <= now && now - sec < 120,
        "event time {sec} vs now {now}"
    );
    let record = &line["record"];
    assert_eq!(record["level"], "success");
    assert_eq!(record["site"], "b1", "additional context");
    assert!(
        record["instanceId"]
            .as_str()
            .unwrap()
            .starts_with("ferrule-")
    );
    assert!(
        record.get("correlationId").is_none(),
        "<not-provided> is left out"
    );
    let keys: Vec<&str> = record
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        &keys[..4],
        ["connectionId", "level", "category", "type"],
        "{keys:?}"
    );

    // And what happens now arrives too: a device message that is not Ditto Protocol fails its
    // mapping, a failure record.
    let mut o = rumqttc::MqttOptions::new(format!("{id}-dev"), "127.0.0.1", 1883);
    o.set_clean_session(true);
    let (device, mut eventloop) = rumqttc::AsyncClient::new(o, 10);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    device
        .publish(
            format!("ferrule-fluent/{id}/d1"),
            rumqttc::QoS::AtLeastOnce,
            false,
            r#"{"not": "ditto"}"#,
        )
        .await
        .unwrap();
    let r = receiver.clone();
    let wanted =
        json!({"connectionId": id, "level": "failure", "type": "mapped", "category": "source"});
    let line = tokio::task::spawn_blocking(move || r.wait_for(&wanted))
        .await
        .unwrap();
    assert_eq!(line["record"]["address"], format!("ferrule-fluent/{id}/+"));

    // Fluentd goes away and comes back: what was logged meanwhile arrives (a batch written into
    // the dead connection is not acknowledged, so it is sent again).
    drop(receiver);
    device
        .publish(
            format!("ferrule-fluent/{id}/d2"),
            rumqttc::QoS::AtLeastOnce,
            false,
            r#"{"still": "not ditto"}"#,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let receiver = tokio::task::spawn_blocking(move || Receiver::start(port))
        .await
        .unwrap();
    let wanted = json!({"connectionId": id, "level": "failure", "type": "mapped"});
    tokio::task::spawn_blocking(move || receiver.wait_for(&wanted))
        .await
        .unwrap();
}

/// Fluency's `sslEnabled`: records reach a receiver that speaks TLS, verified against the
/// configured CA; without that CA the certificate is refused (the receiver sees the handshake
/// fail) and nothing is sent in the clear.
#[tokio::test]
async fn connection_logs_reach_fluentd_over_tls() {
    let port = common::free_port();
    let receiver = tokio::task::spawn_blocking(move || Receiver::start_tls(port))
        .await
        .unwrap();
    let receiver = std::sync::Arc::new(receiver);
    let config = |ca: &str| {
        format!(
            "[log_publisher]\nenabled = true\nhost = \"127.0.0.1\"\nport = {port}\n\
             flush_interval_ms = 50\nssl_enabled = true\nmax_retries = 1\n{ca}"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let f = common::start_with_config(
        dir.path(),
        &config(&format!("ca_file = {:?}\n", common::tls_file("ca.pem"))),
    );
    let id = open_connection(&f, "fluent-tls").await;
    let r = receiver.clone();
    let wanted = json!({"connectionId": id, "category": "connection", "message": "Connected"});
    let line = tokio::task::spawn_blocking(move || r.wait_for(&wanted))
        .await
        .unwrap();
    assert_eq!(line["tag"], format!("connection:{id}"));

    // Another instance that does not trust the test CA: the handshake fails.
    let other = tempfile::tempdir().unwrap();
    let g = common::start_with_config(other.path(), &config(""));
    open_connection(&g, "fluent-untrusted").await;
    let r = receiver.clone();
    tokio::task::spawn_blocking(move || {
        r.wait_for_line("failed handshake", |l| l.get("handshake_failed").is_some())
    })
    .await
    .unwrap();
}
