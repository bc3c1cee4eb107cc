//! Routing fan-out: one twin event dispatched to 100 targets, each with a namespace list and an
//! RQL filter (half pass, half do not), and to 100 targets without filters.
//!
//! `cargo bench -p ferrule-host --bench routing` (release build; ~10 s).

use ferrule_host::hub::routing::{CompiledTopic, Route, Router};
use ferrule_host::store::MemoryStore;
use ferrule_host::twin::TwinService;
use ferrule_protocol::{DittoMessage, Topic};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const RUN: Duration = Duration::from_secs(4);

async fn scenario(name: &str, topics: impl Fn(usize) -> String) {
    let twin = TwinService::start(Arc::new(MemoryStore::default()))
        .await
        .unwrap();
    let router = Router::new(twin.clone(), Duration::from_secs(5));
    let mut receivers = Vec::new();
    for i in 0..100 {
        let (tx, rx) = mpsc::channel(1 << 16);
        router.add(Route {
            connection_id: format!("c{i}"),
            target: 0,
            topics: vec![CompiledTopic::compile(&topics(i)).unwrap()],
            sink: tx,
            on_skip: None,
            on_stall: None,
            partition: None,
            lossy: false,
            ledger: None,
        });
        receivers.push(rx);
    }
    let mut event = DittoMessage::new(
        Topic::parse("org.acme/sensor-1/things/twin/events/modified").unwrap(),
        "/features/temp/properties/value",
    );
    event.value = Some(json!(42));
    event.revision = Some(7);
    let event = Arc::new(event);
    let start = Instant::now();
    let (mut events, mut delivered) = (0u64, 0u64);
    while start.elapsed() < RUN {
        for _ in 0..1000 {
            let report = router.dispatch(event.clone()).await;
            delivered += report.delivered as u64;
            events += 1;
        }
        for rx in &mut receivers {
            while rx.try_recv().is_ok() {}
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:<52} {:>9.0} events/s {:>10.0} deliveries/s",
        events as f64 / secs,
        delivered as f64 / secs
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        scenario("100 targets, no filter", |_| "_/_/things/twin/events".to_string()).await;
        scenario("100 targets, namespaces + RQL filter (50 pass)", |i| {
            let op = if i % 2 == 0 { "gt" } else { "lt" };
            format!(
                "_/_/things/twin/events?namespaces=org.acme,org.other&filter=and({op}(features/temp/properties/value,40),eq(topic:action,'modified'))"
            )
        })
        .await;
    });
}
