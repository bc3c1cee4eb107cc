//! End to end through a real broker: MQTT device → Mosquitto → Ferrule (Ditto mapper, twin
//! modify persisted in redb, event routed) → Mosquitto → consumer, against the raw broker round
//! trip with the same client library (rumqttc) and no Ferrule in between.
//!
//! `cargo bench -p ferrule-host --bench mqtt_pipeline [-- SECONDS]` (release build; Mosquitto on
//! 127.0.0.1:1883). A paced publisher offers ~200-byte messages at QoS 0 at 5k, 10k, 20k, 25k,
//! 30k and 40k messages/s for SECONDS (default 3) each; a subscriber counts what arrives (on one
//! topic for all rates: a backlog left by one rate arrives in the next). Each line: offered
//! and delivered rate, the share lost, p50/p99/max latency; first the raw broker round trip, then
//! the same through Ferrule, with Ferrule's CPU time per delivered message (a figure that holds
//! better than the rates when other work shares the cores).

mod support;

use rumqttc::QoS;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Ferrule, client, cpu_seconds, now_nanos, peak_rss_kb, quantile};

const THINGS: usize = 100;
const LIMIT: Duration = Duration::from_secs(30);

struct Report {
    rate: usize,
    sent: usize,
    received: usize,
    secs: f64,
    latencies: Vec<u64>,
}

impl Report {
    fn print(&mut self, name: &str) {
        self.latencies.sort_unstable();
        let ms = |n: u64| n as f64 / 1e6;
        let pct = |p: f64| quantile(&self.latencies, p).map(ms).unwrap_or(f64::NAN);
        println!(
            "{name:<10} offered {:>6}/s  delivered {:>6.0}/s  lost {:>5.1} %   p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms",
            self.rate,
            self.received as f64 / self.secs,
            100.0 * (self.sent - self.received) as f64 / self.sent as f64,
            pct(0.5),
            pct(0.99),
            self.latencies.last().map(|n| ms(*n)).unwrap_or(f64::NAN),
        );
    }
}

/// Publishes `n` payloads on `to` and collects what arrives on the subscription; `stamp` gives
/// the send time (ns) carried in each received payload.
async fn run(
    n: usize,
    rate: usize,
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
            // Paced: `rate` messages per second, sent in 1 ms ticks.
            let per_tick = (rate / 1000).max(1);
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let mut i = 0;
            while i < n {
                tick.tick().await;
                for _ in 0..per_tick.min(n - i) {
                    p.publish(&to, QoS::AtMostOnce, false, payload(i, now_nanos()))
                        .await
                        .unwrap();
                    i += 1;
                }
            }
        })
    };
    let mut latencies = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + LIMIT;
    while latencies.len() < n {
        let wait = if sender.is_finished() {
            Duration::from_secs(1)
        } else {
            LIMIT
        };
        match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(bytes)) => {
                if let Some(t) = stamp(&bytes) {
                    latencies.push(now_nanos().saturating_sub(t));
                }
            }
            _ => break,
        }
        if tokio::time::Instant::now() > deadline {
            break;
        }
    }
    let _ = sender.await;
    let secs = start.elapsed().as_secs_f64();
    Report {
        rate,
        sent: n,
        received: latencies.len(),
        secs,
        latencies,
    }
}

fn main() {
    let seconds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let rates = [5_000, 10_000, 20_000, 25_000, 30_000, 40_000];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let u = now_nanos();
        // Raw: the same ~200-byte JSON through Mosquitto, no Ferrule.
        for rate in rates {
            let raw_topic = format!("bench/{u}/raw/{rate}");
            run(
                rate * seconds,
                rate,
                &raw_topic,
                &raw_topic,
                |i, t| format!("{{\"i\":{i},\"t\":{t},\"pad\":\"{}\"}}", "x".repeat(150)),
                |b| serde_json::from_slice::<Value>(b).ok()?["t"].as_u64(),
                "raw",
            )
            .await
            .print("raw");
        }

        // Ferrule.
        let ferrule = Ferrule::start();
        let (inbound, outbound) = (format!("bench/{u}/in"), format!("bench/{u}/out"));
        let conn = json!({
            "connectionType": "mqtt", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
            "sources": [{"addresses": [inbound.clone()], "qos": 0, "authorizationContext": ["a"]}],
            "targets": [{"address": outbound.clone(), "qos": 0, "topics": ["_/_/things/twin/events"],
                         "authorizationContext": ["a"]}]
        });
        ferrule.put("/api/2/connections/bench", &conn).await;
        for t in 0..THINGS {
            ferrule
                .put(&format!("/api/2/things/org.bench:t{t}"), &json!({"features": {"f": {"properties": {"v": 0}}}}))
                .await;
        }
        ferrule.wait_open("bench", LIMIT).await;
        for rate in rates {
            let cpu_before = cpu_seconds(ferrule.pid());
            let mut report = run(
                rate * seconds,
                rate,
                &inbound,
                &outbound,
                |i, t| json!({"topic": format!("org.bench/t{}/things/twin/commands/modify", i % THINGS),
                              "path": "/features/f/properties/v", "value": {"i": i, "t": t}}).to_string(),
                |b| serde_json::from_slice::<Value>(b).ok()?["value"]["t"].as_u64(),
                "ferrule",
            )
            .await;
            report.print("ferrule");
            let cpu = cpu_seconds(ferrule.pid()) - cpu_before;
            println!(
                "           Ferrule's CPU time: {:.2} s, {:.1} µs per delivered message",
                cpu,
                cpu * 1e6 / report.received.max(1) as f64
            );
        }
        let rss = peak_rss_kb(ferrule.pid()).map(|kb| kb.to_string()).unwrap_or_default();
        println!("peak RSS of ferrule: {rss} kB");
        drop(ferrule);
    });
}
