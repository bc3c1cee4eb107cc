//! The load suite of issue 8: N rumqttc publishers → Mosquitto → Ferrule (the release binary:
//! a mapper of one engine, a twin modify persisted in redb, the event routed to the connection's
//! target) → Mosquitto → a consumer that checks every message; next to it, in the same run, the
//! raw broker round trip (the same publishers, payloads and consumer through the same broker,
//! no Ferrule).
//!
//! `cargo bench -p ferrule-host --bench load [-- OPTIONS]` (release build; Mosquitto on
//! 127.0.0.1:1883; ~5 minutes for the whole suite, ~1.5 with `--quick`):
//!
//! - `--dim connections,publishers,payload,engine,qos` (default all): the dimensions to run.
//!   Each varies one thing from the base case: 1 connection, 1 publisher, a 1 KiB payload, the
//!   Ditto mapper, QoS 0. Connections 1/10/100 (each its own source topic, target topic and
//!   MQTT client; a publisher spreads its messages over them; the 100 things are shared out
//!   over the connections), publishers 1/4/16, payloads of 100 B (the smallest message: ~120 B),
//!   1 KiB and 64 KiB, engines Ditto/JavaScript/Rhai/WebAssembly, QoS 0/1 end to end.
//! - `--secs S` (default 8) measured seconds per run, after `--warmup W` (default 2);
//!   `--quick` is `--secs 2 --warmup 0.5`.
//! - `--window N` (default 500): messages in flight at most, over all publishers.
//! - `--payload BYTES`, `--connections N`, `--publishers N`: another base case (the rows of a
//!   dimension keep their own value of it).
//! - `--processor-pool N`: the connections' `processorPoolSize` (default: not set, so 1, which
//!   runs one script or WebAssembly mapping at a time per connection).
//! - `--no-relay`: skip the relay runs. By default each raw run is followed by a relay run: the
//!   same publishers and consumer with a relay of the bench's own in between (one rumqttc client
//!   takes what arrives, another publishes it unchanged, on a thread of its own), so Mosquitto
//!   carries each message twice as Ferrule's path does, with no work in between. That is the
//!   ceiling of any relay through this broker on this machine; rows show Ferrule / relay too.
//!
//! Load: closed loop with a bounded in-flight window. A publisher takes a permit from a shared
//! semaphore of N permits before each message; the consumer gives one back for each message
//! seen for the first time. So publishers go as fast as the whole path delivers, never more than
//! N messages are between a publisher and the consumer (no backlog grows in the broker or in
//! Ferrule, and Mosquitto never holds more than N for a client, below its default
//! `max_queued_messages` of 1000), and the
//! rate measured is the sustained throughput at that concurrency. The latency then includes the
//! wait in the window: about N / throughput once the path is saturated (Little's law). If
//! nothing arrives for 1 s while messages are outstanding, those are written off (counted as a
//! stall) and their permits returned, so a lost message cannot stop the run.
//!
//! Every message carries its publisher, a sequence number per publisher, the send time (µs) and
//! padding. The consumer counts, per publisher and sequence number, what arrived once
//! (received), again (duplicates), on the wrong topic or for the wrong thing (misrouted), and
//! unparseable or with the wrong padding or action (corrupt); lost is sent minus received after a
//! drain. Per run: delivered messages/s and p50/p99/max latency over the measured seconds,
//! Ferrule's CPU (user + system from /proc/PID/stat) per message and as % of one core, its peak
//! RSS (VmHWM), Mosquitto's and the bench's own CPU, and the 1-minute load average. The raw run
//! is measured once per (connections, publishers, payload, QoS) and reused by the rows that
//! share them (the engine rows).

mod support;

use futures_util::StreamExt;
use rumqttc::QoS;
use serde::Deserialize;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{
    Ferrule, connect, cpu_seconds, load_average, mosquitto_pid, now_nanos, own_cpu_seconds,
    peak_rss_kb, quantile,
};
use tokio::sync::Semaphore;

/// Things in the twin, shared out over the connections (at least one each).
const THINGS: usize = 100;
const SETUP_LIMIT: Duration = Duration::from_secs(60);
/// Nothing new for this long while messages are outstanding: they are written off.
const STALL: Duration = Duration::from_secs(1);
/// The drain after the publishers stopped ends after this long without progress.
const DRAIN_QUIET: Duration = Duration::from_secs(2);
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Engine {
    Ditto,
    JavaScript,
    Rhai,
    WebAssembly,
}

#[derive(Clone, Copy, Debug)]
struct Case {
    connections: usize,
    publishers: usize,
    payload: usize,
    engine: Engine,
    qos: u8,
}

/// (connections, publishers, payload, QoS): what the raw and relay runs depend on.
type RawKey = (usize, usize, usize, u8);

const BASE: Case = Case {
    connections: 1,
    publishers: 1,
    payload: 1024,
    engine: Engine::Ditto,
    qos: 0,
};

impl Case {
    fn things_per_connection(&self) -> usize {
        (THINGS / self.connections).max(1)
    }

    /// Where message `s` of publisher `p` goes: (connection, thing of that connection).
    fn place(&self, p: usize, s: u64) -> (usize, usize) {
        let g = s as usize * self.publishers + p;
        let c = g % self.connections;
        (c, (g / self.connections) % self.things_per_connection())
    }

    fn qos(&self) -> QoS {
        if self.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        }
    }

    /// What the raw round trip of this case is the same as.
    fn raw_key(&self) -> RawKey {
        (self.connections, self.publishers, self.payload, self.qos)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dim {
    Connections,
    Publishers,
    Payload,
    Engine,
    Qos,
}

const DIMS: [Dim; 5] = [
    Dim::Connections,
    Dim::Publishers,
    Dim::Payload,
    Dim::Engine,
    Dim::Qos,
];

impl Dim {
    fn name(self) -> &'static str {
        match self {
            Dim::Connections => "connections",
            Dim::Publishers => "publishers",
            Dim::Payload => "payload",
            Dim::Engine => "engine",
            Dim::Qos => "qos",
        }
    }

    /// The cases of this dimension: `base` with one thing varied.
    fn cases(self, base: Case) -> Vec<Case> {
        match self {
            Dim::Connections => [1, 10, 100]
                .map(|connections| Case {
                    connections,
                    ..base
                })
                .to_vec(),
            Dim::Publishers => [1, 4, 16]
                .map(|publishers| Case { publishers, ..base })
                .to_vec(),
            Dim::Payload => [100, 1024, 65536]
                .map(|payload| Case { payload, ..base })
                .to_vec(),
            Dim::Engine => [
                Engine::Ditto,
                Engine::JavaScript,
                Engine::Rhai,
                Engine::WebAssembly,
            ]
            .map(|engine| Case { engine, ..base })
            .to_vec(),
            Dim::Qos => [0, 1].map(|qos| Case { qos, ..base }).to_vec(),
        }
    }

    /// The value this dimension varies, for `case`.
    fn label(self, case: &Case) -> String {
        match self {
            Dim::Connections => case.connections.to_string(),
            Dim::Publishers => case.publishers.to_string(),
            Dim::Payload => match case.payload {
                65536 => "64 KiB".into(),
                1024 => "1 KiB".into(),
                n => format!("{n} B"),
            },
            Dim::Engine => format!("{:?}", case.engine),
            Dim::Qos => case.qos.to_string(),
        }
    }
}

struct Options {
    dims: Vec<Dim>,
    /// The base case (`--payload`, `--connections`, `--publishers` change it).
    base: Case,
    /// The connections' `processorPoolSize`, when set.
    pool: Option<usize>,
    secs: f64,
    warmup: f64,
    window: usize,
    relay: bool,
}

/// `cargo bench -p ferrule-host --bench load [-- OPTIONS]`; the module's documentation says what
/// each option does.
#[derive(clap::Parser)]
#[command(name = "cargo bench -p ferrule-host --bench load --")]
struct Args {
    /// The dimensions to run: a comma-separated list of connections, publishers, payload,
    /// engine, qos; or `all`.
    #[arg(long, value_parser = dims, default_value = "all")]
    dim: Dims,
    /// Measured seconds per run.
    #[arg(long, value_parser = positive::<f64>, default_value_t = 8.0)]
    secs: f64,
    /// Warm-up seconds per run.
    #[arg(long, value_parser = positive::<f64>, default_value_t = 2.0)]
    warmup: f64,
    /// Messages in flight at most, over all publishers.
    #[arg(long, value_parser = positive::<usize>, default_value_t = 500)]
    window: usize,
    /// The base case's payload in bytes.
    #[arg(long, value_parser = positive::<usize>)]
    payload: Option<usize>,
    /// The base case's connections.
    #[arg(long, value_parser = positive::<usize>)]
    connections: Option<usize>,
    /// The base case's publishers.
    #[arg(long, value_parser = positive::<usize>)]
    publishers: Option<usize>,
    /// The connections' `processorPoolSize` (default: not set).
    #[arg(long, value_parser = positive::<usize>)]
    processor_pool: Option<usize>,
    /// `--secs 2 --warmup 0.5`.
    #[arg(long)]
    quick: bool,
    /// Skip the relay runs (the broker crossed twice with no work in between).
    #[arg(long)]
    no_relay: bool,
    /// `cargo bench` passes it to every bench binary.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone)]
struct Dims(Vec<Dim>);

fn dims(list: &str) -> Result<Dims, String> {
    if list == "all" {
        return Ok(Dims(DIMS.to_vec()));
    }
    list.split(',')
        .map(|d| {
            DIMS.into_iter()
                .find(|x| x.name() == d)
                .ok_or_else(|| format!("unknown dimension {d}"))
        })
        .collect::<Result<_, _>>()
        .map(Dims)
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(v: &str) -> Result<T, String> {
    v.parse()
        .ok()
        .filter(|n| *n > T::default())
        .ok_or_else(|| format!("{v}: a positive number"))
}

fn options() -> Options {
    let args = <Args as clap::Parser>::parse();
    let mut base = BASE;
    base.payload = args.payload.unwrap_or(base.payload);
    base.connections = args.connections.unwrap_or(base.connections);
    base.publishers = args.publishers.unwrap_or(base.publishers);
    let (secs, warmup) = if args.quick {
        (2.0, 0.5)
    } else {
        (args.secs, args.warmup)
    };
    Options {
        dims: args.dim.0,
        base,
        pool: args.processor_pool,
        secs,
        warmup,
        window: args.window,
        relay: !args.no_relay,
    }
}

/// The messages of one case: a Ditto Protocol modify (the Ditto engine, and the raw round trip)
/// or a device JSON (the script and WebAssembly engines map it into the same modify), padded
/// to the case's payload size.
#[derive(Clone)]
struct Shape {
    device_json: bool,
    pad: Arc<str>,
    /// The size of a typical message.
    size: usize,
}

impl Shape {
    fn new(case: &Case, device_json: bool) -> Shape {
        let mut shape = Shape {
            device_json,
            pad: "".into(),
            size: 0,
        };
        // A message with typical widths: 6-digit sequence numbers, a 16-digit time.
        let (c, t) = (case.connections - 1, case.things_per_connection() - 1);
        let bare = shape.payload(c, t, case.publishers - 1, 100_000, now_nanos() / 1000);
        shape.pad = "x".repeat(case.payload.saturating_sub(bare.len())).into();
        shape.size = bare.len() + shape.pad.len();
        shape
    }

    fn payload(&self, c: usize, thing: usize, p: usize, s: u64, t: u64) -> String {
        let pad = &self.pad;
        if self.device_json {
            format!(
                r#"{{"device":"c{c}:t{thing}","reading":{{"p":{p},"s":{s},"t":{t},"x":"{pad}"}}}}"#
            )
        } else {
            format!(
                r#"{{"topic":"c{c}/t{thing}/things/twin/commands/modify","path":"/attributes/v","value":{{"p":{p},"s":{s},"t":{t},"x":"{pad}"}}}}"#
            )
        }
    }
}

/// What the consumer reads of a message: a Ditto Protocol modify (raw) or the twin event.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    topic: Cow<'a, str>,
    value: Reading<'a>,
}

#[derive(Deserialize)]
struct Reading<'a> {
    p: usize,
    s: u64,
    t: u64,
    #[serde(borrow)]
    x: Cow<'a, str>,
}

#[derive(Default)]
struct Tally {
    measuring: bool,
    /// Per publisher, a bit per sequence number seen.
    seen: Vec<Vec<u64>>,
    received: u64,
    duplicates: u64,
    misrouted: u64,
    corrupt: u64,
    in_window: u64,
    /// Latencies (µs) of the messages received in the measured seconds.
    latencies: Vec<u64>,
    last_progress: Option<Instant>,
}

/// Checks and counts one message that arrived on `topic`.
struct Checker {
    case: Case,
    pad_len: usize,
    /// The twin event (through Ferrule) or the modify itself (raw).
    actions: &'static [&'static str],
}

impl Checker {
    fn check(&self, tally: &mut Tally, topic: &str, payload: &[u8]) -> bool {
        let Ok(m) = serde_json::from_slice::<Message>(payload) else {
            tally.corrupt += 1;
            return false;
        };
        let v = m.value;
        if v.p >= self.case.publishers || v.s >= 1 << 32 {
            tally.corrupt += 1;
            return false;
        }
        let (c, thing) = self.case.place(v.p, v.s);
        let prefix = format!("c{c}/t{thing}/things/twin/");
        let action = m.topic.strip_prefix(&prefix);
        let on_topic = topic.rsplit('/').next() == Some(&c.to_string());
        match action {
            Some(action) if on_topic => {
                if !self.actions.contains(&action) || v.x.len() != self.pad_len {
                    tally.corrupt += 1;
                }
            }
            _ => tally.misrouted += 1,
        }
        let bits = &mut tally.seen[v.p];
        let (word, bit) = ((v.s / 64) as usize, v.s % 64);
        if bits.len() <= word {
            bits.resize(word + 1024, 0);
        }
        if bits[word] & (1 << bit) != 0 {
            tally.duplicates += 1;
            return false;
        }
        bits[word] |= 1 << bit;
        tally.received += 1;
        tally.last_progress = Some(Instant::now());
        if tally.measuring {
            tally.in_window += 1;
            tally
                .latencies
                .push((now_nanos() / 1000).saturating_sub(v.t));
        }
        true
    }
}

/// The figures of one run.
#[derive(Clone, Default)]
struct Measured {
    rate: f64,
    p50: f64,
    p99: f64,
    max: f64,
    sent: u64,
    received: u64,
    lost: u64,
    duplicates: u64,
    misrouted: u64,
    corrupt: u64,
    stalls: u64,
    /// Sequence numbers that never arrived: `p<publisher>: <from>..<to>`.
    missing: Vec<String>,
    /// CPU seconds in the measured seconds: Ferrule's (none for raw), Mosquitto's, the bench's.
    cpu_ferrule: Option<f64>,
    cpu_mosquitto: Option<f64>,
    cpu_bench: f64,
    secs: f64,
    rss_kb: Option<u64>,
    load: f64,
}

impl Measured {
    fn checks(&self) -> String {
        let mut s = format!(
            "sent {} received {} lost {} dup {}",
            self.sent, self.received, self.lost, self.duplicates
        );
        if self.misrouted + self.corrupt > 0 {
            let _ = write!(s, " misrouted {} corrupt {}", self.misrouted, self.corrupt);
        }
        if self.stalls > 0 {
            let _ = write!(s, " stalls {}", self.stalls);
        }
        if !self.missing.is_empty() {
            let n = self.missing.len();
            let shown = self.missing[..n.min(5)].join(", ");
            let _ = write!(
                s,
                "\n           missing: {shown}{}",
                if n > 5 { ", ..." } else { "" }
            );
        }
        s
    }

    fn pct(cpu: Option<f64>, secs: f64) -> String {
        cpu.map(|c| format!("{:.0} %", 100.0 * c / secs))
            .unwrap_or_else(|| "?".into())
    }
}

/// The ranges of sequence numbers below `sent` whose bit is not set.
fn gaps(bits: &[u64], sent: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
    let seen = move |s: u64| {
        bits.get((s / 64) as usize)
            .is_some_and(|w| w & (1 << (s % 64)) != 0)
    };
    let mut s = 0;
    std::iter::from_fn(move || {
        while s < sent && seen(s) {
            s += 1;
        }
        if s >= sent {
            return None;
        }
        let from = s;
        while s < sent && !seen(s) {
            s += 1;
        }
        Some((from, s))
    })
}

fn topics(prefix: &str, kind: &str, case: &Case) -> Vec<String> {
    (0..case.connections)
        .map(|c| format!("{prefix}/{kind}/{c}"))
        .collect()
}

/// Runs publishers to `to` (one topic per connection) and the consumer on `{prefix}/out/+`;
/// `ferrule` is the process to measure, if any.
async fn drive(
    case: &Case,
    options: &Options,
    prefix: &str,
    to: Vec<String>,
    shape: Shape,
    actions: &'static [&'static str],
    ferrule: Option<u32>,
) -> Measured {
    let tally = Arc::new(Mutex::new(Tally {
        seen: vec![Vec::new(); case.publishers],
        ..Tally::default()
    }));
    let window = Arc::new(Semaphore::new(options.window));
    let checker = Checker {
        case: *case,
        pad_len: shape.pad.len(),
        actions,
    };
    let id = now_nanos();
    let (_consumer, consumer_task) = {
        let (tally, window) = (tally.clone(), window.clone());
        connect(
            &format!("load-consumer-{id}"),
            &[format!("{prefix}/out/+")],
            case.qos(),
            move |p| {
                let new = checker.check(&mut tally.lock().unwrap(), &p.topic, &p.payload);
                if new {
                    window.add_permits(1);
                }
            },
        )
        .await
    };
    let to = Arc::new(to);
    let sent = Arc::new(AtomicU64::new(0));
    let mut publishers = Vec::new();
    for p in 0..case.publishers {
        let (client, task) = connect(&format!("load-pub-{id}-{p}"), &[], case.qos(), |_| {}).await;
        let (case, shape, to, window, sent) = (
            *case,
            shape.clone(),
            to.clone(),
            window.clone(),
            sent.clone(),
        );
        publishers.push(tokio::spawn(async move {
            let mut s = 0u64;
            while let Ok(permit) = window.acquire().await {
                permit.forget();
                let (c, thing) = case.place(p, s);
                let payload = shape.payload(c, thing, p, s, now_nanos() / 1000);
                sent.fetch_add(1, Ordering::SeqCst);
                if client
                    .publish(&to[c], case.qos(), false, payload)
                    .await
                    .is_err()
                {
                    sent.fetch_sub(1, Ordering::SeqCst);
                    break;
                }
                s += 1;
            }
            // The client lives on until the drain is over, so that what it holds is sent.
            (client, task, s)
        }));
    }
    // Writes off what is outstanding when nothing arrives for a while.
    let stop = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (tally, window, sent, stop) =
            (tally.clone(), window.clone(), sent.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut written_off, mut stalls) = (0u64, 0u64);
            let started = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut t = tally.lock().unwrap();
                let quiet = t.last_progress.unwrap_or(started).elapsed() > STALL;
                let outstanding = sent
                    .load(Ordering::SeqCst)
                    .saturating_sub(t.received + written_off);
                if quiet && outstanding > 0 {
                    written_off += outstanding;
                    stalls += 1;
                    window.add_permits(outstanding as usize);
                    t.last_progress = Some(Instant::now());
                }
            }
            stalls
        })
    };
    let mosquitto = mosquitto_pid();
    let cpu = || {
        (
            ferrule.map(cpu_seconds),
            mosquitto.map(cpu_seconds),
            own_cpu_seconds(),
        )
    };

    tokio::time::sleep(Duration::from_secs_f64(options.warmup)).await;
    let cpu_before = cpu();
    let t0 = Instant::now();
    tally.lock().unwrap().measuring = true;
    tokio::time::sleep(Duration::from_secs_f64(options.secs)).await;
    let (in_window, mut latencies) = {
        let mut t = tally.lock().unwrap();
        t.measuring = false;
        (t.in_window, std::mem::take(&mut t.latencies))
    };
    let secs = t0.elapsed().as_secs_f64();
    let cpu_after = cpu();
    let load = load_average();

    window.close();
    let mut clients = Vec::new();
    for p in publishers {
        clients.push(p.await.unwrap());
    }
    stop.store(true, Ordering::SeqCst);
    let stalls = watchdog.await.unwrap();
    let sent = sent.load(Ordering::SeqCst);
    // Drain: until everything arrived, or nothing more does.
    let drain = Instant::now();
    let mut last = (0, Instant::now());
    loop {
        let received = tally.lock().unwrap().received;
        if received >= sent || drain.elapsed() > DRAIN_LIMIT {
            break;
        }
        if received != last.0 {
            last = (received, Instant::now());
        } else if last.1.elapsed() > DRAIN_QUIET {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    consumer_task.abort();
    let t = tally.lock().unwrap();
    let mut missing = Vec::new();
    for (p, (_, task, sent)) in clients.into_iter().enumerate() {
        task.abort();
        missing.extend(gaps(&t.seen[p], sent).map(|(a, b)| format!("p{p}: {a}..{b}")));
    }
    latencies.sort_unstable();
    let ms = |us: Option<u64>| us.map(|n| n as f64 / 1e3).unwrap_or(f64::NAN);
    let delta = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
    Measured {
        rate: in_window as f64 / secs,
        p50: ms(quantile(&latencies, 0.5)),
        p99: ms(quantile(&latencies, 0.99)),
        max: ms(latencies.last().copied()),
        sent,
        received: t.received,
        lost: sent.saturating_sub(t.received),
        duplicates: t.duplicates,
        misrouted: t.misrouted,
        corrupt: t.corrupt,
        stalls,
        missing,
        cpu_ferrule: delta(cpu_before.0, cpu_after.0),
        cpu_mosquitto: delta(cpu_before.1, cpu_after.1),
        cpu_bench: cpu_after.2 - cpu_before.2,
        secs,
        rss_kb: None,
        load,
    }
}

/// The broker crossed twice with no work in between: one client takes what arrives on
/// `{prefix}/in/+` and another publishes it unchanged to `{prefix}/out/<same>`, at the case's
/// QoS, on a thread of its own. The best any relay (Ferrule included) could do here: Mosquitto
/// carries each message twice, in and out each time. Dropped when the returned guard is.
async fn relay(prefix: &str, case: &Case) -> Relay {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (prefix, qos, id) = (prefix.to_string(), case.qos(), now_nanos());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (publisher, publisher_task) =
                connect(&format!("load-relay-out-{id}"), &[], qos, |_| {}).await;
            let (tx_async, mut rx_async) = tokio::sync::mpsc::unbounded_channel();
            let (_subscriber, subscriber_task) = connect(
                &format!("load-relay-in-{id}"),
                &[format!("{prefix}/in/+")],
                qos,
                move |p| {
                    let _ = tx_async.send((p.topic, p.payload));
                },
            )
            .await;
            let _ = ready_tx.send(());
            let stop = tokio::task::spawn_blocking(move || {
                let _ = rx.recv();
            });
            tokio::select! {
                _ = async {
                    while let Some((topic, payload)) = rx_async.recv().await {
                        let out = topic.replacen("/in/", "/out/", 1);
                        if publisher.publish_bytes(out, qos, false, payload).await.is_err() {
                            break;
                        }
                    }
                } => {}
                _ = stop => {}
            }
            subscriber_task.abort();
            publisher_task.abort();
        });
    });
    ready_rx.await.expect("the relay connected");
    Relay {
        stop: Some(tx),
        thread: Some(thread),
    }
}

/// Stops the relay when dropped.
struct Relay {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const JS: &str = r#"
function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    var d = JSON.parse(textPayload);
    var id = d.device.split(":");
    return Ditto.buildDittoProtocolMsg(id[0], id[1], "things", "twin", "commands", "modify",
        "/attributes/v", headers, d.reading);
}"#;

const RHAI: &str = r#"
fn mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    let d = parse_json(textPayload);
    let id = d.device.split(":");
    ditto_message(id[0], id[1], "things", "twin", "commands", "modify", "/attributes/v", headers, d.reading)
}"#;

fn mapping(engine: Engine) -> Option<Value> {
    let script = |engine: &str, script: &str| json!({"mappingEngine": engine, "options": {"incomingScript": script, "outgoingScript": ""}});
    Some(match engine {
        Engine::Ditto => return None,
        Engine::JavaScript => script("JavaScript", JS),
        Engine::Rhai => script("Rhai", RHAI),
        Engine::WebAssembly => json!({"mappingEngine": "WebAssembly", "options": {
            "module": "json-reshaper", "thingIdPointer": "/device", "action": "modify",
            "mappings": [{"from": "/reading", "to": "/attributes/v"}]}}),
    })
}

/// A Ferrule with the case's things, mapper module and connections, all open.
async fn set_up(case: &Case, prefix: &str, run: u64, pool: Option<usize>) -> Ferrule {
    let f = Ferrule::start();
    if case.engine == Engine::WebAssembly {
        let r = f
            .request(reqwest::Method::PUT, "/api/2/mappers/json-reshaper")
            .header("content-type", "application/wasm")
            .body(ferrule_test_guests::bytes(
                ferrule_test_guests::JSON_RESHAPER,
            ))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "upload: {}", r.status());
    }
    let things: Vec<String> = (0..case.connections)
        .flat_map(|c| (0..case.things_per_connection()).map(move |t| format!("c{c}:t{t}")))
        .collect();
    futures_util::stream::iter(things.iter())
        .map(|t| {
            let f = &f;
            async move { f.put(&format!("/api/2/things/{t}"), &json!({})).await }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    let (inbound, outbound) = (topics(prefix, "in", case), topics(prefix, "out", case));
    let connections: Vec<(String, Value)> = (0..case.connections)
        .map(|c| {
            let mut conn = json!({
                "connectionType": "mqtt", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
                "specificConfig": {"clientId": format!("load-{run}-{c}"), "cleanSession": "true"},
                "sources": [{"addresses": [inbound[c]], "qos": case.qos, "authorizationContext": ["load"]}],
                "targets": [{"address": outbound[c], "qos": case.qos,
                             "topics": [format!("_/_/things/twin/events?namespaces=c{c}")],
                             "authorizationContext": ["load"]}]
            });
            if let Some(n) = pool {
                conn["processorPoolSize"] = json!(n);
            }
            if let Some(m) = mapping(case.engine) {
                conn["mappingDefinitions"] = json!({"m": m});
                conn["sources"][0]["payloadMapping"] = json!(["m"]);
            }
            (format!("load-{c}"), conn)
        })
        .collect();
    futures_util::stream::iter(connections.iter())
        .map(|(id, conn)| {
            let f = &f;
            async move { f.put(&format!("/api/2/connections/{id}"), conn).await }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    for (id, _) in &connections {
        f.wait_open(id, SETUP_LIMIT).await;
    }
    f
}

/// Ferrule's message counters (`/metrics`), summed over connections and addresses: `inbound
/// consumed 1000, ...`, failures marked.
async fn counters(f: &Ferrule) -> String {
    let Ok(r) = f.request(reqwest::Method::GET, "/metrics").send().await else {
        return "?".into();
    };
    let text = r.text().await.unwrap_or_default();
    let mut sums: Vec<(String, f64)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("ferrule_connection_messages_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let mut key = format!("{} {}", label("direction"), label("type"));
        if label("outcome") != "success" {
            key.push_str(" FAILED");
        }
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        match sums.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v += value,
            None => sums.push((key, value)),
        }
    }
    sums.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Row {
    dim: Dim,
    case: Case,
    size: usize,
    raw: Measured,
    relay: Option<Measured>,
    ferrule: Measured,
}

fn line(name: &str, m: &Measured) -> String {
    let mut s = format!(
        "  {name:<8} {:>8.0} msgs/s  p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  {}",
        m.rate,
        m.p50,
        m.p99,
        m.max,
        m.checks()
    );
    if let Some(cpu) = m.cpu_ferrule {
        let _ = write!(
            s,
            "\n           Ferrule CPU {:.1} µs/msg, {:.0} % of a core; peak RSS {}",
            cpu * 1e6 / (m.rate * m.secs).max(1.0),
            100.0 * cpu / m.secs,
            m.rss_kb
                .map(|kb| format!("{:.0} MB", kb as f64 / 1024.0))
                .unwrap_or_else(|| "?".into()),
        );
    }
    let _ = write!(
        s,
        "\n           Mosquitto CPU {}, bench CPU {}; load average {:.2}",
        Measured::pct(m.cpu_mosquitto, m.secs),
        Measured::pct(Some(m.cpu_bench), m.secs),
        m.load
    );
    s
}

fn table(dim: Dim, rows: &[&Row]) -> String {
    let mut s = format!(
        "| {} | message | raw msgs/s | raw p50 / p99 | relay msgs/s | Ferrule msgs/s | Ferrule / raw | Ferrule / relay | p50 / p99 / max | received / lost / dup | Ferrule CPU per msg | Ferrule CPU | peak RSS | Mosquitto CPU | load |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        dim.name()
    );
    let ms = |v: f64| {
        if v >= 100.0 {
            format!("{v:.0}")
        } else if v >= 10.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.2}")
        }
    };
    for r in rows {
        let (raw, f) = (&r.raw, &r.ferrule);
        let mut checks = format!("{} / {} / {}", f.received, f.lost, f.duplicates);
        if f.misrouted + f.corrupt > 0 {
            let _ = write!(
                checks,
                " (misrouted {}, corrupt {})",
                f.misrouted, f.corrupt
            );
        }
        let _ = writeln!(
            s,
            "| {} | {} B | {:.0} | {} / {} ms | {} | {:.0} | {:.2} | {} | {} / {} / {} ms | {} | {:.1} µs | {} | {:.0} MB | {} | {:.1} |",
            dim.label(&r.case),
            r.size,
            raw.rate,
            ms(raw.p50),
            ms(raw.p99),
            r.relay
                .as_ref()
                .map_or("–".into(), |m| format!("{:.0}", m.rate)),
            f.rate,
            f.rate / raw.rate,
            r.relay
                .as_ref()
                .map_or("–".into(), |m| format!("{:.2}", f.rate / m.rate)),
            ms(f.p50),
            ms(f.p99),
            ms(f.max),
            checks,
            f.cpu_ferrule.unwrap_or(f64::NAN) * 1e6 / (f.rate * f.secs).max(1.0),
            Measured::pct(f.cpu_ferrule, f.secs),
            f.rss_kb.unwrap_or(0) as f64 / 1024.0,
            Measured::pct(f.cpu_mosquitto, f.secs),
            f.load,
        );
    }
    s
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kb: f64 = m.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb / 1024.0 / 1024.0)
        })
        .unwrap_or(f64::NAN);
    format!("{cores} × {model}, {mem:.0} GiB")
}

fn main() {
    let options = options();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    println!(
        "load suite {}: {}; window {} messages, {} s warm-up + {} s measured per run; load average {:.2}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine(),
        options.window,
        options.warmup,
        options.secs,
        load_average()
    );
    let u = now_nanos();
    // Per raw key: the raw round trip and the relay.
    let mut raws: HashMap<RawKey, (Measured, Option<Measured>)> = HashMap::new();
    let mut rows = Vec::new();
    let mut n = 0;
    rt.block_on(async {
        for dim in &options.dims {
            for case in dim.cases(options.base) {
                n += 1;
                println!(
                    "[{}] {} = {}: {} connection(s), {} publisher(s), {} B, {:?}, QoS {}",
                    dim.name(),
                    dim.name(),
                    dim.label(&case),
                    case.connections,
                    case.publishers,
                    case.payload,
                    case.engine,
                    case.qos
                );
                let raw_shape = Shape::new(&case, false);
                let (raw, relayed) = match raws.get(&case.raw_key()) {
                    Some(m) => {
                        println!("  raw      (measured above)");
                        m.clone()
                    }
                    None => {
                        let prefix = format!("load/{u}/{n}/raw");
                        let m = drive(
                            &case,
                            &options,
                            &prefix,
                            topics(&prefix, "out", &case),
                            raw_shape.clone(),
                            &["commands/modify"],
                            None,
                        )
                        .await;
                        println!("{}", line("raw", &m));
                        let relayed = if options.relay {
                            let prefix = format!("load/{u}/{n}/relay");
                            let _relay = relay(&prefix, &case).await;
                            let m = drive(
                                &case,
                                &options,
                                &prefix,
                                topics(&prefix, "in", &case),
                                raw_shape.clone(),
                                &["commands/modify"],
                                None,
                            )
                            .await;
                            println!("{}", line("relay", &m));
                            Some(m)
                        } else {
                            None
                        };
                        raws.insert(case.raw_key(), (m.clone(), relayed.clone()));
                        (m, relayed)
                    }
                };
                let prefix = format!("load/{u}/{n}/ferrule");
                let ferrule = set_up(&case, &prefix, u + n, options.pool).await;
                let shape = Shape::new(&case, case.engine != Engine::Ditto);
                let mut m = drive(
                    &case,
                    &options,
                    &prefix,
                    topics(&prefix, "in", &case),
                    shape.clone(),
                    &["events/modified", "events/created"],
                    Some(ferrule.pid()),
                )
                .await;
                m.rss_kb = peak_rss_kb(ferrule.pid());
                let counted = counters(&ferrule).await;
                drop(ferrule);
                println!("{}", line("ferrule", &m));
                println!("           Ferrule counted: {counted}");
                println!(
                    "  Ferrule / raw: {:.2}  (payload {} B)",
                    m.rate / raw.rate,
                    shape.size
                );
                if let Some(r) = &relayed {
                    println!("  Ferrule / relay: {:.2}", m.rate / r.rate);
                }
                rows.push(Row {
                    dim: *dim,
                    case,
                    size: shape.size,
                    raw,
                    relay: relayed,
                    ferrule: m,
                });
            }
        }
    });
    println!();
    for dim in &options.dims {
        let rows: Vec<&Row> = rows.iter().filter(|r| r.dim == *dim).collect();
        println!("{}", table(*dim, &rows));
    }
    println!(
        "{} runs in {:.0} s; load average at the end {:.2}",
        rows.len(),
        started.elapsed().as_secs_f64(),
        load_average()
    );
}
