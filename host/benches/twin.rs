//! Twin throughput: modify commands per second through the twin service, in memory and persisted
//! (redb, fsync per transaction, group commit), with 1 and 64 concurrent senders.
//!
//! `cargo bench -p ferrule-host --bench twin` (release build; ~25 s). Each scenario runs for
//! a fixed time and prints commands/s and the mean batch latency seen by a sender.

use ferrule_host::store::{MemoryStore, RedbStore, ThingStore};
use ferrule_host::twin::{Action, TwinCommand, TwinService};
use ferrule_protocol::Headers;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(4);

fn modify(thing: usize, n: u64) -> TwinCommand {
    TwinCommand {
        thing_id: format!("org.bench:thing-{thing}"),
        action: Action::Modify,
        path: "/features/temp/properties/value".into(),
        value: Some(json!(n)),
        headers: Headers::new(),
        fields: None,
    }
}

async fn scenario(name: &str, store: Arc<dyn ThingStore>, senders: usize) {
    let twin = TwinService::start(store).await.unwrap();
    for t in 0..senders {
        let mut create = modify(t, 0);
        create.path = "/".into();
        create.value = Some(json!({"features": {"temp": {"properties": {"value": 0}}}}));
        assert_eq!(twin.execute(create).await.status, Some(201));
    }
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + RUN;
    let mut tasks = Vec::new();
    for t in 0..senders {
        let twin = twin.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < deadline {
                n += 1;
                let r = twin.execute(modify(t, n)).await;
                assert_eq!(r.status, Some(204));
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let start = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let total = done.load(Ordering::Relaxed);
    println!(
        "{name:<40} {:>10.0} modifies/s   mean latency {:>8.1} µs",
        total as f64 / secs,
        secs * 1e6 * senders as f64 / total as f64
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for senders in [1, 64] {
            scenario(
                &format!("in memory, {senders} sender(s)"),
                Arc::new(MemoryStore::default()),
                senders,
            )
            .await;
        }
        for senders in [1, 64] {
            let dir = tempfile::tempdir().unwrap();
            scenario(
                &format!("redb (fsync), {senders} sender(s)"),
                Arc::new(RedbStore::open(dir.path()).unwrap()),
                senders,
            )
            .await;
        }
    });
}
