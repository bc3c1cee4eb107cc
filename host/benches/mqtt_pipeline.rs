//! End to end through a real broker: MQTT device → Mosquitto → Ferrule (Ditto mapper, twin
//! modify persisted in redb, event routed) → Mosquitto → consumer, against the raw broker round
//! trip with the same client library (rumqttc) and no Ferrule in between.
//!
//! `cargo bench -p ferrule-host --bench mqtt_pipeline [-- MESSAGES]` (release build; Mosquitto on
//! 127.0.0.1:1883; default 50,000 messages of ~200 bytes per run, QoS 0; bounded to ~60 s).
//! Prints messages/s, p50/p99/max latency, lost messages, and the ratio.

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

const THINGS: usize = 100;
const LIMIT: Duration = Duration::from_secs(30);

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

async fn client(
    id: &str,
    subscribe: Option<&str>,
) -> (AsyncClient, mpsc::UnboundedReceiver<bytes::Bytes>) {
    let mut o = MqttOptions::new(id, "127.0.0.1", 1883);
    o.set_clean_session(true)
        .set_max_packet_size(1 << 20, 1 << 20);
    let (c, mut l) = AsyncClient::new(o, 10_000);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready = Some(ready_tx);
    if let Some(t) = subscribe {
        c.subscribe(t, QoS::AtMostOnce).await.unwrap();
    }
    let wait_suback = subscribe.is_some();
    tokio::spawn(async move {
        loop {
            match l.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) if !wait_suback => {
                    ready.take().map(|r| r.send(()));
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    ready.take().map(|r| r.send(()));
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(p.payload);
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("bench client error: {e}");
                    return;
                }
            }
        }
    });
    ready_rx
        .await
        .expect("Mosquitto on 127.0.0.1:1883 must be reachable");
    (c, rx)
}

struct Report {
    sent: usize,
    received: usize,
    secs: f64,
    latencies: Vec<u64>,
}

impl Report {
    fn print(&mut self, name: &str) -> f64 {
        self.latencies.sort_unstable();
        let pct = |p: f64| {
            self.latencies
                .get(
                    ((self.latencies.len() as f64 * p) as usize)
                        .min(self.latencies.len().saturating_sub(1)),
                )
                .map(|n| *n as f64 / 1e6)
                .unwrap_or(f64::NAN)
        };
        let rate = self.received as f64 / self.secs;
        println!(
            "{name:<34} {rate:>9.0} msgs/s   p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>8.2} ms   received {}/{}",
            pct(0.5),
            pct(0.99),
            self.latencies
                .last()
                .map(|n| *n as f64 / 1e6)
                .unwrap_or(f64::NAN),
            self.received,
            self.sent
        );
        rate
    }
}

/// Publishes `n` payloads on `to` and collects what arrives on the subscription; `stamp` gives
/// the send time (ns) carried in each received payload.
async fn run(
    n: usize,
    to: &str,
    sub: &str,
    payload: impl Fn(usize, u64) -> String + Send + 'static,
    stamp: impl Fn(&[u8]) -> Option<u64>,
    tag: &str,
) -> Report {
    let (_s, mut rx) = client(&format!("bench-sub-{tag}-{}", now_nanos()), Some(sub)).await;
    let (p, _) = client(&format!("bench-pub-{tag}-{}", now_nanos()), None).await;
    let start = Instant::now();
    let sender = {
        let to = to.to_string();
        let p = p.clone();
        tokio::spawn(async move {
            for i in 0..n {
                p.publish(&to, QoS::AtMostOnce, false, payload(i, now_nanos()))
                    .await
                    .unwrap();
            }
        })
    };
    let mut latencies = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + LIMIT;
    while latencies.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(bytes)) => {
                if let Some(t) = stamp(&bytes) {
                    latencies.push(now_nanos().saturating_sub(t));
                }
            }
            _ => break,
        }
        // Past the last send, stop waiting 2 s after the last arrival.
        if sender.is_finished() && latencies.len() < n {
            match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
                Ok(Some(bytes)) => {
                    if let Some(t) = stamp(&bytes) {
                        latencies.push(now_nanos().saturating_sub(t));
                    }
                }
                _ => break,
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = sender.await;
    Report {
        sent: n,
        received: latencies.len(),
        secs,
        latencies,
    }
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(50_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let u = now_nanos();
        // Raw: the same 200-byte JSON through Mosquitto, no Ferrule.
        let raw_topic = format!("bench/{u}/raw");
        let mut raw = run(
            n,
            &raw_topic,
            &raw_topic,
            |i, t| format!("{{\"i\":{i},\"t\":{t},\"pad\":\"{}\"}}", "x".repeat(150)),
            |b| serde_json::from_slice::<Value>(b).ok()?["t"].as_u64(),
            "raw",
        )
        .await;
        let raw_rate = raw.print("raw broker round trip");

        // Ferrule.
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrule"))
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("FERRULE_DEVOPS_PASSWORD", "bench")
            .env("FERRULE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let base = line.trim().strip_prefix("ferrule: listening on ").unwrap().to_string();
        let http = reqwest::Client::new();
        let (inbound, outbound) = (format!("bench/{u}/in"), format!("bench/{u}/out"));
        let conn = json!({
            "connectionType": "mqtt", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
            "sources": [{"addresses": [inbound.clone()], "qos": 0, "authorizationContext": ["a"]}],
            "targets": [{"address": outbound.clone(), "qos": 0, "topics": ["_/_/things/twin/events"],
                         "authorizationContext": ["a"]}]
        });
        let r = http.put(format!("{base}/api/2/connections/bench")).basic_auth("devops", Some("bench")).json(&conn).send().await.unwrap();
        assert!(r.status().is_success());
        for t in 0..THINGS {
            let r = http.put(format!("{base}/api/2/things/org.bench:t{t}")).basic_auth("devops", Some("bench"))
                .json(&json!({"features": {"f": {"properties": {"v": 0}}}})).send().await.unwrap();
            assert!(r.status().is_success());
        }
        loop {
            let s: Value = http.get(format!("{base}/api/2/connections/bench/status")).basic_auth("devops", Some("bench")).send().await.unwrap().json().await.unwrap();
            if s["liveStatus"] == "open" { break; }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut through = run(
            n,
            &inbound,
            &outbound,
            |i, t| json!({"topic": format!("org.bench/t{}/things/twin/commands/modify", i % THINGS),
                          "path": "/features/f/properties/v", "value": {"i": i, "t": t}}).to_string(),
            |b| serde_json::from_slice::<Value>(b).ok()?["value"]["t"].as_u64(),
            "ferrule",
        )
        .await;
        let rss = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM")).map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string()))
            .unwrap_or_default();
        let rate = through.print("through Ferrule (twin persisted)");
        println!("ratio: {:.0} % of the raw round trip; peak RSS of ferrule {rss} kB", 100.0 * rate / raw_rate);
        let _ = child.kill();
    });
}
