//! The backlog bench of issue 17: one rumqttc publisher sends N messages as fast as it can
//! (in-flight 1,000 at QoS 1) into a Mosquitto of the bench's own with unlimited queues, one
//! subscriber counts what comes out, and the paths in between are put side by side in one run:
//!
//! - `raw`: publisher → Mosquitto → subscriber (one broker hop).
//! - `relay`: a no-op relay client of the bench's own (one rumqttc client subscribes to the input
//!   topic, another republishes each payload unchanged to the output topic, on a thread of its
//!   own): the ceiling of anything that consumes and republishes through the same broker.
//! - `ferrule`: the release `ferrule` binary, one `mqtt` connection: a source at the run's QoS
//!   with the Ditto mapper (the messages are Ditto Protocol `modify` commands of an attribute of
//!   one of `--things` things), the twin change persisted in redb, the `modified` event routed
//!   to a target at the run's QoS (`_/_/things/twin/events`) on the output topic.
//! - `nodered`: Node-RED 4 (`mqtt in` → a `function` node → `mqtt out`, at the run's QoS) doing a
//!   JSON reshape: a device JSON `{"thing", "seq", "temp", "hum"}` into a Ditto Protocol modify of
//!   `/features/env/properties` with `{temperature, humidity, seq}` for thing `bench:thing-i`. It
//!   keeps no twin.
//! - `ferrule-js`: Ferrule with a JavaScript incoming mapper doing that same reshape, the twin
//!   change persisted, the event to the target.
//!
//! `cargo bench -p ferrule-host --bench backlog [-- OPTIONS]` (release build; needs `mosquitto`
//! on the PATH, and Node.js 20+ with npm for `nodered`; `FERRULE_BENCH_BIN=PATH` runs another
//! `ferrule` binary, e.g. a copy kept aside while the tree is rebuilt):
//!
//! - `--messages N` (default 30000): messages per run.
//! - `--passes P` (default 3): every (path, QoS) runs P times, the passes alternated (pass 1 of
//!   every path and QoS, then pass 2, ...); the table keeps the best rate of each and shows
//!   the others, and counts what was lost over all passes.
//! - `--qos 0,1` (default both), `--paths raw,relay,ferrule,nodered,ferrule-js` (default all).
//! - `--things T` (default 10): message k goes to thing k mod T with sequence number k div T.
//! - `--quiet S` (default 10): a run ends when all N arrived, or when nothing arrived for S
//!   seconds (longer than Ferrule's `[runtime] target_stall_timeout_ms`, 5 s, so that a target
//!   that waits that long and goes on is not taken for a loss).
//! - `--processor-pool N`: Ferrule's `processorPoolSize` (default: not set).
//! - `--perf DIR`: after the passes, one more run of each Ferrule path and QoS under
//!   `perf record -e cpu-clock --call-graph dwarf -p PID`, written to
//!   `DIR/backlog-PATH-qosQ.data` (not counted in the table; read it with
//!   `perf report -i FILE --no-children`).
//! - `--callgrind`: after the passes, one more run of each Ferrule path and QoS with Ferrule
//!   under `valgrind --tool=callgrind` (about 50 × slower: use it with `--messages 5000`),
//!   its counters zeroed after the probes and dumped when the last message arrived: the
//!   instructions Ferrule executed per message. Unlike CPU time, this count does not depend on
//!   how fast the machine is at the moment, so changes of a few % can be judged (valgrind runs
//!   the threads one at a time, so the batching differs from a normal run).
//! - `--callgrind-out DIR`: `--callgrind`, and each run's dump is kept in `DIR/PATH-qosQ/`
//!   (emptied first; read it with `callgrind_annotate --inclusive=yes FILE`).
//! - `--node-red DIR` (default `$HOME/.cache/ferrule-bench/node-red`): where Node-RED 4 is
//!   installed (`npm install --prefix DIR node-red@4`, done by the bench when it is missing).
//! - `--max-other PCT`: when other processes (neither the bench, Mosquitto nor the process under
//!   test) used more than PCT % of a core during a run, the run is repeated 15 s later, at most
//!   5 times (the last one is kept). Every run reports that figure.
//! - `--baseline BIN`: another `ferrule` binary (e.g. a build of main kept aside); its
//!   `ferrule` path runs as `ferrule-base` right after each `ferrule` run, so the two builds are
//!   compared in one run, pass by pass, under the same conditions.
//! - `--quick`: `--messages 5000 --passes 1`.
//!
//! Every run gets a Mosquitto of its own on a free port (`max_queued_messages 0`,
//! `max_queued_bytes 0`, `max_inflight_messages 0`: nothing is dropped or held back for a
//! subscriber that lags, see `../shared/FIELD-NOTES.md`), so no run inherits another's backlog.
//! Before the measured messages, probe messages (for one extra thing, ignored by the counts)
//! are sent every 200 ms until one comes out, so every subscription along the path is in place.
//!
//! Per run: msgs/s = messages received / (last receipt − first publish); the publisher's own
//! rate (until its last message was written at QoS 0, or acknowledged at QoS 1: the rest waited
//! in the broker); lost (sent − received), duplicated, out of order (a message of a thing with a
//! lower sequence number than one already received for that thing), misrouted or corrupt; the
//! CPU (user + system, `/proc`) of the process under test (Ferrule, Node-RED, or the relay's
//! thread) per message and as % of one core, its peak RSS (VmHWM), Mosquitto's CPU and peak
//! RSS, the CPU other processes used meanwhile (the machine's busy time from /proc/stat less
//! the bench's, Mosquitto's and the process under test's: on a shared machine, the sign of a
//! disturbed run), and the 1-minute load average before the run. When a Ferrule run lost
//! messages or counted a failure, it also prints Ferrule's message counters (`/metrics`), the
//! connection's status and its failure logs, each message once with its count.

mod support;

use futures_util::StreamExt;
use rumqttc::{Event, Outgoing, Packet, QoS};
use serde::Deserialize;
use serde_json::json;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path as FsPath, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{
    ClientOptions, Ferrule, Mosquitto, connect_with, cpu_seconds, load_average,
    machine_busy_seconds, now_nanos, own_cpu_seconds, peak_rss_kb, thread_cpu_seconds,
};

const SETUP_LIMIT: Duration = Duration::from_secs(60);
/// The path must carry a probe within this long after it was set up.
const PROBE_LIMIT: Duration = Duration::from_secs(60);
const PROBE_EVERY: Duration = Duration::from_millis(200);
/// The publisher's and the relay's outgoing window at QoS 1.
const INFLIGHT: u16 = 1000;
/// `--max-other`: a run is repeated at most this many times, this long after the last.
const RETRIES: usize = 5;
const RETRY_AFTER: Duration = Duration::from_secs(15);
/// The broker's configuration besides its listener: unlimited queues and in-flight windows.
const MOSQUITTO_CONFIG: &str = "max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 0";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    Raw,
    Relay,
    Ferrule,
    NodeRed,
    FerruleJs,
    /// The `ferrule` path run with the `--baseline` binary (same-run A/B of two builds).
    Baseline,
}

const PATHS: [Path; 5] = [
    Path::Raw,
    Path::Relay,
    Path::Ferrule,
    Path::NodeRed,
    Path::FerruleJs,
];

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Raw => "raw",
            Path::Relay => "relay",
            Path::Ferrule => "ferrule",
            Path::NodeRed => "nodered",
            Path::FerruleJs => "ferrule-js",
            Path::Baseline => "ferrule-base",
        }
    }

    /// Whether its messages are the device JSON (reshaped on the way) rather than Ditto
    /// Protocol commands.
    fn device_json(self) -> bool {
        matches!(self, Path::NodeRed | Path::FerruleJs)
    }

    fn is_ferrule(self) -> bool {
        matches!(self, Path::Ferrule | Path::FerruleJs | Path::Baseline)
    }

    /// What arrives at the subscriber: the command itself, or the twin event.
    fn actions(self) -> &'static [&'static str] {
        if self.is_ferrule() {
            &["events/modified", "events/created"]
        } else {
            &["commands/modify"]
        }
    }
}

struct Options {
    messages: u64,
    passes: usize,
    qos: Vec<u8>,
    paths: Vec<Path>,
    things: usize,
    quiet: Duration,
    pool: Option<usize>,
    perf: Option<PathBuf>,
    callgrind: bool,
    callgrind_out: Option<PathBuf>,
    node_red: PathBuf,
    max_other: Option<f64>,
    baseline: Option<PathBuf>,
}

/// `cargo bench -p ferrule-host --bench backlog [-- OPTIONS]`; the module's documentation says
/// what each option does.
#[derive(clap::Parser)]
#[command(name = "cargo bench -p ferrule-host --bench backlog --")]
struct Args {
    /// Messages per run.
    #[arg(long, value_parser = positive::<u64>, default_value_t = 30_000)]
    messages: u64,
    /// Passes (alternated; the best of each path and QoS is kept).
    #[arg(long, value_parser = positive::<usize>, default_value_t = 3)]
    passes: usize,
    /// QoS levels, comma-separated.
    #[arg(long, value_parser = qos_list, default_value = "0,1")]
    qos: QosList,
    /// Paths, comma-separated: raw, relay, ferrule, nodered, ferrule-js; or `all`.
    #[arg(long, value_parser = path_list, default_value = "all")]
    paths: PathList,
    /// Things the messages are spread over.
    #[arg(long, value_parser = positive::<usize>, default_value_t = 10)]
    things: usize,
    /// A run ends after this many seconds without a message.
    #[arg(long, value_parser = positive::<f64>, default_value_t = 10.0)]
    quiet: f64,
    /// Ferrule's `processorPoolSize` (default: not set).
    #[arg(long, value_parser = positive::<usize>)]
    processor_pool: Option<usize>,
    /// Record a `perf` profile of each Ferrule path and QoS into this directory.
    #[arg(long)]
    perf: Option<PathBuf>,
    /// Count the instructions per message of each Ferrule path and QoS under callgrind.
    #[arg(long)]
    callgrind: bool,
    /// `--callgrind`, and keep each run's dump in DIR/PATH-qosQ/ (read it with
    /// `callgrind_annotate --inclusive=yes FILE`).
    #[arg(long, value_name = "DIR")]
    callgrind_out: Option<PathBuf>,
    /// Where Node-RED 4 is (or gets) installed.
    #[arg(long)]
    node_red: Option<PathBuf>,
    /// Repeat a run (up to 5 times, 15 s apart) while other processes used more than this
    /// % of a core during it.
    #[arg(long, value_parser = positive::<f64>)]
    max_other: Option<f64>,
    /// Another `ferrule` binary: its `ferrule` path runs as `ferrule-base` after each
    /// `ferrule` run (passes alternated), an A/B of two builds in one run.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// `--messages 5000 --passes 1`.
    #[arg(long)]
    quick: bool,
    /// `cargo bench` passes it to every bench binary.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone)]
struct QosList(Vec<u8>);

fn qos_list(list: &str) -> Result<QosList, String> {
    list.split(',')
        .map(|q| match q {
            "0" => Ok(0),
            "1" => Ok(1),
            _ => Err(format!("QoS {q}: 0 or 1")),
        })
        .collect::<Result<_, _>>()
        .map(QosList)
}

#[derive(Clone)]
struct PathList(Vec<Path>);

fn path_list(list: &str) -> Result<PathList, String> {
    if list == "all" {
        return Ok(PathList(PATHS.to_vec()));
    }
    list.split(',')
        .map(|p| {
            PATHS
                .into_iter()
                .find(|x| x.name() == p)
                .ok_or_else(|| format!("unknown path {p}"))
        })
        .collect::<Result<_, _>>()
        .map(PathList)
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(v: &str) -> Result<T, String> {
    v.parse()
        .ok()
        .filter(|n| *n > T::default())
        .ok_or_else(|| format!("{v}: a positive number"))
}

fn options() -> Options {
    let args = <Args as clap::Parser>::parse();
    let (messages, passes) = if args.quick {
        (5_000, 1)
    } else {
        (args.messages, args.passes)
    };
    let node_red = args.node_red.unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()))
            .join(".cache/ferrule-bench/node-red")
    });
    let mut paths = args.paths.0;
    if args.baseline.is_some()
        && let Some(i) = paths.iter().position(|p| *p == Path::Ferrule)
    {
        paths.insert(i + 1, Path::Baseline);
    }
    Options {
        messages,
        passes,
        qos: args.qos.0,
        paths,
        things: args.things,
        quiet: Duration::from_secs_f64(args.quiet),
        pool: args.processor_pool,
        perf: args.perf,
        callgrind: args.callgrind || args.callgrind_out.is_some(),
        callgrind_out: args.callgrind_out,
        node_red,
        max_other: args.max_other,
        baseline: args.baseline,
    }
}

fn qos(q: u8) -> QoS {
    if q == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    }
}

/// Message `seq` of thing `thing`: the device JSON, or a Ditto Protocol modify that carries it.
fn payload(device_json: bool, thing: usize, seq: u64) -> String {
    if device_json {
        format!(r#"{{"thing":{thing},"seq":{seq},"temp":21.5,"hum":40}}"#)
    } else {
        format!(
            r#"{{"topic":"bench/thing-{thing}/things/twin/commands/modify","headers":{{}},"path":"/attributes/reading","value":{{"thing":{thing},"seq":{seq},"temp":21.5,"hum":40}}}}"#
        )
    }
}

/// The reshape of `nodered` and `ferrule-js`, in Node-RED's `function` node.
const NODE_RED_FUNCTION: &str = r#"const d = JSON.parse(msg.payload);
msg.payload = {
    topic: "bench/thing-" + d.thing + "/things/twin/commands/modify",
    headers: {},
    path: "/features/env/properties",
    value: { temperature: d.temp, humidity: d.hum, seq: d.seq }
};
return msg;"#;

/// The same reshape as Ferrule's JavaScript incoming mapper (Ditto's JavaScript mapping API).
const FERRULE_SCRIPT: &str = r#"function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    var d = JSON.parse(textPayload);
    return Ditto.buildDittoProtocolMsg("bench", "thing-" + d.thing, "things", "twin", "commands",
        "modify", "/features/env/properties", headers,
        { temperature: d.temp, humidity: d.hum, seq: d.seq });
}"#;

/// What the subscriber reads of a message: the command (raw, relay, Node-RED) or the twin event
/// (Ferrule). The thing comes from the topic, the sequence number from the value.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    topic: Cow<'a, str>,
    value: Reading,
}

#[derive(Deserialize)]
struct Reading {
    seq: u64,
    /// Carried by the Ditto Protocol paths' messages; checked against the topic.
    thing: Option<usize>,
}

/// The subscriber's counts.
struct Tally {
    things: usize,
    /// Messages per thing (the highest sequence number + 1 of the largest).
    per_thing: u64,
    actions: &'static [&'static str],
    probe_seen: bool,
    /// Per thing, a bit per sequence number seen.
    seen: Vec<Vec<u64>>,
    /// Per thing, the highest sequence number received so far.
    highest: Vec<Option<u64>>,
    received: u64,
    duplicates: u64,
    out_of_order: u64,
    misrouted: u64,
    corrupt: u64,
    last: Option<Instant>,
}

impl Tally {
    fn new(things: usize, messages: u64, actions: &'static [&'static str]) -> Tally {
        let per_thing = messages.div_ceil(things as u64);
        Tally {
            things,
            per_thing,
            actions,
            probe_seen: false,
            seen: vec![vec![0; per_thing.div_ceil(64) as usize]; things],
            highest: vec![None; things],
            received: 0,
            duplicates: 0,
            out_of_order: 0,
            misrouted: 0,
            corrupt: 0,
            last: None,
        }
    }

    fn check(&mut self, payload: &[u8]) {
        let Ok(m) = serde_json::from_slice::<Message>(payload) else {
            self.corrupt += 1;
            return;
        };
        let Some((thing, action)) = m
            .topic
            .strip_prefix("bench/thing-")
            .and_then(|rest| rest.split_once("/things/twin/"))
            .and_then(|(t, action)| Some((t.parse::<usize>().ok()?, action)))
        else {
            self.corrupt += 1;
            return;
        };
        if thing == self.things {
            self.probe_seen = true;
            return;
        }
        let seq = m.value.seq;
        if thing > self.things || seq >= self.per_thing {
            self.corrupt += 1;
            return;
        }
        if m.value.thing.is_some_and(|t| t != thing) {
            self.misrouted += 1;
        }
        if !self.actions.contains(&action) {
            self.corrupt += 1;
        }
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        let bits = &mut self.seen[thing][word];
        if *bits & (1 << bit) != 0 {
            self.duplicates += 1;
            return;
        }
        *bits |= 1 << bit;
        let highest = &mut self.highest[thing];
        if highest.is_some_and(|h| seq < h) {
            self.out_of_order += 1;
        } else {
            *highest = Some(seq);
        }
        self.received += 1;
        self.last = Some(Instant::now());
    }

    /// The ranges of sequence numbers of messages sent (`messages` in all) that never arrived:
    /// `thing-<i>: <from>..<to>`.
    fn missing(&self, messages: u64) -> Vec<String> {
        let mut out = Vec::new();
        for (thing, bits) in self.seen.iter().enumerate() {
            let sent = messages / self.things as u64
                + u64::from((thing as u64) < messages % self.things as u64);
            let seen = |s: u64| bits[(s / 64) as usize] & (1 << (s % 64)) != 0;
            let mut s = 0;
            while s < sent {
                if seen(s) {
                    s += 1;
                    continue;
                }
                let from = s;
                while s < sent && !seen(s) {
                    s += 1;
                }
                out.push(format!("thing-{thing}: {from}..{s}"));
            }
        }
        out
    }
}

/// The figures of one run.
#[derive(Clone, Default)]
struct Measured {
    rate: f64,
    /// First publish to last receipt.
    secs: f64,
    /// The publisher's own rate (written at QoS 0, acknowledged at QoS 1).
    publish_rate: Option<f64>,
    sent: u64,
    received: u64,
    lost: u64,
    duplicates: u64,
    out_of_order: u64,
    misrouted: u64,
    corrupt: u64,
    missing: Vec<String>,
    /// CPU seconds of the process under test (Ferrule, Node-RED, the relay's thread), from the
    /// first publish to the end of the run.
    cpu: Option<f64>,
    rss_kb: Option<u64>,
    mosquitto_cpu: f64,
    mosquitto_rss_kb: Option<u64>,
    bench_cpu: f64,
    /// CPU seconds of every other process in the measured window (`window` seconds: first
    /// publish to the end of the run): what else ran on the machine.
    other_cpu: f64,
    window: f64,
    load: f64,
    /// Instructions the process under test executed in the measured window (callgrind).
    instructions: Option<u64>,
    /// Ferrule's message counters, when they show a failure.
    counters: String,
    /// Ferrule's connection status and failure logs, when messages were lost.
    diagnosis: String,
}

impl Measured {
    fn cpu_per_message_us(&self) -> Option<f64> {
        Some(self.cpu? * 1e6 / self.received.max(1) as f64)
    }

    fn pct(cpu: f64, secs: f64) -> String {
        format!("{:.0} %", 100.0 * cpu / secs.max(1e-9))
    }

    fn line(&self, path: Path) -> String {
        let mut s = format!(
            "  {:<10} {:>8.0} msgs/s in {:.2} s; publisher {}; sent {} received {} lost {} dup {} out of order {}",
            path.name(),
            self.rate,
            self.secs,
            self.publish_rate
                .map_or("?".into(), |r| format!("{r:.0} msgs/s")),
            self.sent,
            self.received,
            self.lost,
            self.duplicates,
            self.out_of_order,
        );
        if self.misrouted + self.corrupt > 0 {
            let _ = write!(s, " misrouted {} corrupt {}", self.misrouted, self.corrupt);
        }
        if !self.missing.is_empty() {
            let n = self.missing.len();
            let _ = write!(
                s,
                "\n             missing: {}{}",
                self.missing[..n.min(5)].join(", "),
                if n > 5 { ", ..." } else { "" }
            );
        }
        if let Some(us) = self.cpu_per_message_us() {
            let _ = write!(
                s,
                "\n             {} CPU {us:.1} µs/msg, {}; peak RSS {}",
                path.name(),
                Measured::pct(self.cpu.unwrap_or(0.0), self.secs),
                mb(self.rss_kb)
            );
        }
        let _ = write!(
            s,
            "\n             Mosquitto CPU {}, peak RSS {}; bench CPU {}; other processes {}; load average {:.2}",
            Measured::pct(self.mosquitto_cpu, self.secs),
            mb(self.mosquitto_rss_kb),
            Measured::pct(self.bench_cpu, self.secs),
            Measured::pct(self.other_cpu, self.window),
            self.load
        );
        if !self.counters.is_empty() {
            let _ = write!(s, "\n             Ferrule counted: {}", self.counters);
        }
        if !self.diagnosis.is_empty() {
            let _ = write!(s, "\n             Ferrule said: {}", self.diagnosis);
        }
        s
    }
}

fn mb(kb: Option<u64>) -> String {
    kb.map_or("?".into(), |kb| format!("{:.0} MB", kb as f64 / 1024.0))
}

/// The path under test, stopped when dropped.
enum UnderTest {
    Direct,
    Relay(Relay),
    Ferrule(Ferrule),
    NodeRed(NodeRed),
}

impl UnderTest {
    fn cpu(&self) -> Option<f64> {
        match self {
            UnderTest::Direct => None,
            UnderTest::Relay(r) => Some(thread_cpu_seconds(r.tid)),
            UnderTest::Ferrule(f) => Some(cpu_seconds(f.pid())),
            UnderTest::NodeRed(n) => Some(cpu_seconds(n.child.id())),
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            UnderTest::Ferrule(f) => Some(f.pid()),
            UnderTest::NodeRed(n) => Some(n.child.id()),
            _ => None,
        }
    }
}

/// One client takes what arrives on `input` and another publishes it unchanged to `output`, at
/// `q`, on a thread of its own (one current-thread runtime: both event loops and the forwarding
/// run on it, so its CPU time is the relay's).
async fn relay(port: u16, input: &str, output: &str, q: QoS) -> Relay {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (input, output, id) = (input.to_string(), output.to_string(), now_nanos());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::spawn(move || {
        let tid: u32 = std::fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|p| p.file_name()?.to_str()?.parse().ok())
            .unwrap_or(0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let options = ClientOptions {
                port,
                inflight: Some(INFLIGHT),
            };
            let (publisher, publisher_task) =
                connect_with(options, &format!("relay-out-{id}"), &[], q, |_| {}).await;
            let (tx_async, mut rx_async) = tokio::sync::mpsc::unbounded_channel();
            let (_subscriber, subscriber_task) =
                connect_with(options, &format!("relay-in-{id}"), &[input], q, move |e| {
                    if let Event::Incoming(Packet::Publish(p)) = e {
                        let _ = tx_async.send(p.payload);
                    }
                })
                .await;
            let _ = ready_tx.send(tid);
            let stop = tokio::task::spawn_blocking(move || {
                let _ = rx.recv();
            });
            tokio::select! {
                _ = async {
                    while let Some(payload) = rx_async.recv().await {
                        if publisher.publish_bytes(output.clone(), q, false, payload).await.is_err() {
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
    let tid = ready_rx.await.expect("the relay connected");
    Relay {
        stop: Some(tx),
        thread: Some(thread),
        tid,
    }
}

struct Relay {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The relay thread's id (for its CPU time).
    tid: u32,
}

impl Drop for Relay {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Ferrule with things `bench:thing-0` to `bench:thing-<things>` (the last one for the probes)
/// and one connection `backlog`, open.
async fn ferrule(
    path: Path,
    q: u8,
    port: u16,
    (input, output): (&str, &str),
    options: &Options,
    run: u64,
    wrapper: &[String],
) -> Ferrule {
    let binary = match (&options.baseline, path) {
        (Some(bin), Path::Baseline) => bin.clone(),
        _ => support::ferrule_binary(),
    };
    let f = Ferrule::start_wrapped(wrapper, &binary, &[]);
    futures_util::stream::iter(0..=options.things)
        .map(|t| {
            let f = &f;
            async move {
                f.put(
                    &format!("/api/2/things/bench:thing-{t}"),
                    &json!({"attributes": {"reading": {}}, "features": {"env": {"properties": {}}}}),
                )
                .await
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    let mut conn = json!({
        "connectionType": "mqtt", "connectionStatus": "open",
        "uri": format!("tcp://127.0.0.1:{port}"),
        "specificConfig": {"clientId": format!("backlog-{run}"), "cleanSession": "true"},
        "sources": [{"addresses": [input], "qos": q, "authorizationContext": ["bench"]}],
        "targets": [{"address": output, "qos": q, "topics": ["_/_/things/twin/events"],
                     "authorizationContext": ["bench"]}]
    });
    if path == Path::FerruleJs {
        conn["mappingDefinitions"] = json!({"reshape": {"mappingEngine": "JavaScript",
            "options": {"incomingScript": FERRULE_SCRIPT, "outgoingScript": ""}}});
        conn["sources"][0]["payloadMapping"] = json!(["reshape"]);
    }
    if let Some(n) = options.pool {
        conn["processorPoolSize"] = json!(n);
    }
    f.put("/api/2/connections/backlog", &conn).await;
    f.wait_open("backlog", SETUP_LIMIT).await;
    f
}

/// Ferrule's message counters (`/metrics`) summed over addresses, when any is a failure:
/// `inbound consumed 30001, ..., outbound dropped FAILED 12`.
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

/// Why Ferrule lost messages, as far as it tells: the connection's status (each client, source
/// and target that is not `open`, with its details) and its failure logs, the same messages
/// counted once (at most 5).
async fn diagnose(f: &Ferrule) -> String {
    let get = |path: &'static str| async move {
        let r = f.request(reqwest::Method::GET, path).send().await.ok()?;
        r.json::<serde_json::Value>().await.ok()
    };
    let mut out = Vec::new();
    if let Some(status) = get("/api/2/connections/backlog/status").await {
        out.push(format!("live status {}", status["liveStatus"]));
        for kind in ["clientStatus", "sourceStatus", "targetStatus"] {
            for s in status[kind].as_array().into_iter().flatten() {
                if s["status"] != "open" {
                    out.push(format!("{kind} {} {}", s["status"], s["statusDetails"]));
                }
            }
        }
    }
    if let Some(logs) = get("/api/2/connections/backlog/logs").await {
        let mut seen: Vec<(String, usize)> = Vec::new();
        for e in logs["connectionLogs"].as_array().into_iter().flatten() {
            if e["level"] != "failure" {
                continue;
            }
            let message = e["message"].as_str().unwrap_or_default();
            let message = message
                .split(" - Message headers")
                .next()
                .unwrap_or_default();
            let key = format!("{} {}: {message}", e["category"], e["type"]);
            match seen.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => seen.push((key, 1)),
            }
        }
        for (k, n) in seen.iter().take(5) {
            out.push(format!("{n} × {k}"));
        }
    }
    out.join("\n               ")
}

/// Node-RED 4 running a flow of the bench's own, headless; killed when dropped.
struct NodeRed {
    child: Child,
    /// Its last lines of output, for an error message.
    output: Arc<Mutex<VecDeque<String>>>,
    _dir: tempfile::TempDir,
}

impl NodeRed {
    /// `red.js` in `dir`, installed with npm first when it is missing.
    fn install(dir: &FsPath) -> Result<PathBuf, String> {
        let red = dir.join("node_modules/node-red/red.js");
        if red.exists() {
            return Ok(red);
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        println!("installing Node-RED 4 into {} (npm)", dir.display());
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir)
            .arg("node-red@4")
            .status()
            .map_err(|e| format!("npm: {e}"))?;
        if !status.success() || !red.exists() {
            return Err(format!("npm install node-red@4 failed ({status})"));
        }
        Ok(red)
    }

    fn start(
        red: &FsPath,
        port: u16,
        input: &str,
        output: &str,
        q: u8,
        run: u64,
    ) -> Result<NodeRed, String> {
        let dir = tempfile::tempdir().unwrap();
        let flows = json!([
            {"id": "bench-tab", "type": "tab", "label": "backlog bench"},
            {"id": "bench-broker", "type": "mqtt-broker", "name": "bench", "broker": "127.0.0.1",
             "port": port.to_string(), "clientid": format!("nodered-{run}"), "autoConnect": true,
             "usetls": false, "protocolVersion": "4", "keepalive": "60", "cleansession": true,
             "autoUnsubscribe": true, "birthTopic": "", "closeTopic": "", "willTopic": "",
             "sessionExpiry": ""},
            {"id": "bench-in", "type": "mqtt in", "z": "bench-tab", "name": "", "topic": input,
             "qos": q.to_string(), "datatype": "utf8", "broker": "bench-broker", "nl": false,
             "rap": true, "rh": 0, "inputs": 0, "wires": [["bench-reshape"]]},
            {"id": "bench-reshape", "type": "function", "z": "bench-tab", "name": "reshape",
             "func": NODE_RED_FUNCTION, "outputs": 1, "timeout": 0, "noerr": 0,
             "initialize": "", "finalize": "", "libs": [], "wires": [["bench-out"]]},
            {"id": "bench-out", "type": "mqtt out", "z": "bench-tab", "name": "", "topic": output,
             "qos": q.to_string(), "retain": "false", "respTopic": "", "contentType": "",
             "userProps": "", "correl": "", "expiry": "", "broker": "bench-broker", "wires": []}
        ]);
        std::fs::write(
            dir.path().join("flows.json"),
            serde_json::to_vec_pretty(&flows).unwrap(),
        )
        .unwrap();
        let settings = dir.path().join("settings.js");
        std::fs::write(
            &settings,
            r#"module.exports = {
    flowFile: "flows.json",
    credentialSecret: false,
    httpAdminRoot: false,
    httpNodeRoot: false,
    diagnostics: { enabled: false, ui: false },
    runtimeState: { enabled: false, ui: false },
    telemetry: { enabled: false, updateNotification: false },
    functionExternalModules: false,
    logging: { console: { level: "info", metrics: false, audit: false } }
};
"#,
        )
        .unwrap();
        let mut child = Command::new("node")
            .arg(red)
            .arg("--settings")
            .arg(&settings)
            .arg("--userDir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("node: {e}"))?;
        let output = Arc::new(Mutex::new(VecDeque::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    let mut o = output.lock().unwrap();
                    if o.len() == 20 {
                        o.pop_front();
                    }
                    o.push_back(line);
                }
            });
        }
        Ok(NodeRed {
            child,
            output,
            _dir: dir,
        })
    }

    fn last_output(&self) -> String {
        let o = self.output.lock().unwrap();
        o.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for NodeRed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `perf record` attached to a process; stopped (SIGINT, so it writes its file) by `stop`.
struct Perf {
    child: Child,
}

impl Perf {
    fn start(pid: u32, file: &FsPath) -> Option<Perf> {
        let child = Command::new("perf")
            .args([
                "record",
                "-q",
                "-e",
                "cpu-clock",
                "-F",
                "999",
                "--call-graph",
                "dwarf",
            ])
            .arg("-p")
            .arg(pid.to_string())
            .arg("-o")
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| eprintln!("perf: {e}"))
            .ok()?;
        Some(Perf { child })
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// How a run watches the process under test besides its CPU time.
#[derive(Clone, Copy)]
enum Profile<'a> {
    None,
    /// `perf record` into this file.
    Perf(&'a FsPath),
    /// Ferrule under callgrind, its files in this directory: instructions per message.
    Callgrind(&'a FsPath),
}

/// The instructions callgrind counted since its counters were zeroed: `callgrind_control -d`
/// writes a dump into `dir`, whose `totals:` line has them.
fn callgrind_instructions(pid: u32, dir: &FsPath) -> Option<u64> {
    let status = Command::new("callgrind_control")
        .arg("-d")
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            if let Some(n) = text
                .lines()
                .find_map(|l| l.strip_prefix("totals: "))
                .and_then(|t| t.split_whitespace().next()?.parse().ok())
            {
                return Some(n);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// One run of `path` at QoS `q`: a broker of its own, the path set up, probed, then N messages.
async fn run(
    path: Path,
    q: u8,
    options: &Options,
    run: u64,
    profile: Profile<'_>,
) -> Result<Measured, String> {
    let broker = Mosquitto::start(MOSQUITTO_CONFIG);
    let port = broker.port;
    let (input, output) = (format!("bench/{run}/in"), format!("bench/{run}/out"));
    let under_test = match path {
        Path::Raw => UnderTest::Direct,
        Path::Relay => UnderTest::Relay(relay(port, &input, &output, qos(q)).await),
        Path::Ferrule | Path::FerruleJs | Path::Baseline => {
            let wrapper: Vec<String> = match profile {
                Profile::Callgrind(dir) => vec![
                    "valgrind".into(),
                    "-q".into(),
                    "--tool=callgrind".into(),
                    format!("--callgrind-out-file={}/callgrind.out.%p", dir.display()),
                ],
                _ => Vec::new(),
            };
            let topics = (input.as_str(), output.as_str());
            let f = ferrule(path, q, port, topics, options, run, &wrapper).await;
            UnderTest::Ferrule(f)
        }
        Path::NodeRed => {
            let red = NodeRed::install(&options.node_red)?;
            UnderTest::NodeRed(NodeRed::start(&red, port, &input, &output, q, run)?)
        }
    };
    // Raw: the publisher sends to the subscriber's topic.
    let to = if path == Path::Raw { &output } else { &input };
    let client = ClientOptions {
        port,
        inflight: Some(INFLIGHT),
    };

    let tally = Arc::new(Mutex::new(Tally::new(
        options.things,
        options.messages,
        path.actions(),
    )));
    let (_subscriber, subscriber_task) = {
        let tally = tally.clone();
        connect_with(
            client,
            &format!("bench-sub-{run}"),
            std::slice::from_ref(&output),
            qos(q),
            move |e| {
                if let Event::Incoming(Packet::Publish(p)) = e {
                    tally.lock().unwrap().check(&p.payload);
                }
            },
        )
        .await
    };

    // Probes (for thing `things`, which the counts ignore) until one comes out.
    let (prober, prober_task) =
        connect_with(client, &format!("bench-probe-{run}"), &[], qos(q), |_| {}).await;
    let probed = Instant::now();
    let mut k = 0;
    while !tally.lock().unwrap().probe_seen {
        if probed.elapsed() > PROBE_LIMIT {
            let mut why = format!("no probe came through {} in {PROBE_LIMIT:?}", path.name());
            if let UnderTest::NodeRed(n) = &under_test {
                let _ = write!(why, "; Node-RED said:\n{}", n.last_output());
            }
            return Err(why);
        }
        let probe = payload(path.device_json(), options.things, k);
        prober.publish(to, qos(q), false, probe).await.unwrap();
        k += 1;
        tokio::time::sleep(PROBE_EVERY).await;
    }
    prober_task.abort();

    // The publisher: its N-th message written (QoS 0) or acknowledged (QoS 1) ends its part.
    let target = options.messages;
    let done: Arc<Mutex<(u64, Option<Instant>)>> = Arc::new(Mutex::new((0, None)));
    let (publisher, publisher_task) = {
        let done = done.clone();
        connect_with(client, &format!("bench-pub-{run}"), &[], qos(q), move |e| {
            let counts = match e {
                Event::Outgoing(Outgoing::Publish(_)) => q == 0,
                Event::Incoming(Packet::PubAck(_)) => q == 1,
                _ => false,
            };
            if counts {
                let mut d = done.lock().unwrap();
                d.0 += 1;
                if d.0 == target {
                    d.1 = Some(Instant::now());
                }
            }
        })
        .await
    };
    let perf = match (profile, under_test.pid()) {
        (Profile::Perf(file), Some(pid)) => {
            let p = Perf::start(pid, file);
            tokio::time::sleep(Duration::from_millis(500)).await;
            p
        }
        (Profile::Callgrind(_), Some(pid)) => {
            let zeroed = Command::new("callgrind_control")
                .arg("-z")
                .arg(pid.to_string())
                .stdout(Stdio::null())
                .status();
            if !zeroed.is_ok_and(|s| s.success()) {
                return Err("callgrind_control -z failed".into());
            }
            None
        }
        _ => None,
    };

    let load = load_average();
    let cpu = || {
        (
            under_test.cpu(),
            cpu_seconds(broker.pid()),
            own_cpu_seconds(),
            under_test.pid().map_or(0.0, cpu_seconds),
            machine_busy_seconds(),
            Instant::now(),
        )
    };
    let before = cpu();
    let t0 = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (to, sent, things, device_json) =
            (to.clone(), sent.clone(), options.things, path.device_json());
        tokio::spawn(async move {
            for k in 0..target {
                let (thing, seq) = ((k % things as u64) as usize, k / things as u64);
                if publisher
                    .publish(&to, qos(q), false, payload(device_json, thing, seq))
                    .await
                    .is_err()
                {
                    break;
                }
                sent.store(k + 1, Ordering::SeqCst);
            }
            publisher
        })
    };
    // Until everything arrived, or nothing did for `quiet`.
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let t = tally.lock().unwrap();
        if t.received >= target || t.last.unwrap_or(t0).elapsed() > options.quiet {
            break;
        }
    }
    let after = cpu();
    if let Some(p) = perf {
        p.stop();
    }
    let instructions = match (profile, under_test.pid()) {
        (Profile::Callgrind(dir), Some(pid)) => callgrind_instructions(pid, dir),
        _ => None,
    };
    // The last acknowledgements may come after the last message arrived.
    let wait = Instant::now();
    while done.lock().unwrap().1.is_none() && wait.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A publisher still sending (a stuck path) is stopped.
    sender.abort();
    let publisher = sender.await.ok();
    let sent = sent.load(Ordering::SeqCst);
    let publish_rate = done
        .lock()
        .unwrap()
        .1
        .map(|d| target as f64 / (d - t0).as_secs_f64());
    let mut m = {
        let t = tally.lock().unwrap();
        let secs = t.last.map_or(f64::NAN, |l| (l - t0).as_secs_f64());
        Measured {
            rate: t.received as f64 / secs,
            secs,
            publish_rate,
            sent,
            received: t.received,
            lost: sent.saturating_sub(t.received),
            duplicates: t.duplicates,
            out_of_order: t.out_of_order,
            misrouted: t.misrouted,
            corrupt: t.corrupt,
            missing: t.missing(sent),
            cpu: match (before.0, after.0) {
                (Some(b), Some(a)) => Some(a - b),
                _ => None,
            },
            rss_kb: under_test.pid().and_then(peak_rss_kb),
            mosquitto_cpu: after.1 - before.1,
            mosquitto_rss_kb: peak_rss_kb(broker.pid()),
            bench_cpu: after.2 - before.2,
            other_cpu: ((after.4 - before.4)
                - (after.1 - before.1)
                - (after.2 - before.2)
                - (after.3 - before.3))
                .max(0.0),
            window: (after.5 - before.5).as_secs_f64(),
            load,
            instructions,
            counters: String::new(),
            diagnosis: String::new(),
        }
    };
    if let UnderTest::Ferrule(f) = &under_test {
        let c = counters(f).await;
        if m.lost > 0 || c.contains("FAILED") {
            m.counters = c;
            m.diagnosis = diagnose(f).await;
        }
    }
    drop(publisher);
    publisher_task.abort();
    subscriber_task.abort();
    drop(under_test);
    drop(broker);
    Ok(m)
}

/// The results of one (path, QoS): every pass, or why it was skipped.
struct Row {
    path: Path,
    qos: u8,
    passes: Vec<Measured>,
    skipped: Option<String>,
}

impl Row {
    fn best(&self) -> Option<&Measured> {
        self.passes
            .iter()
            .filter(|m| m.rate.is_finite())
            .max_by(|a, b| a.rate.total_cmp(&b.rate))
    }
}

fn kilo(rate: f64) -> String {
    if rate.is_finite() {
        format!("{:.1}k", rate / 1000.0)
    } else {
        "–".into()
    }
}

fn table(rows: &[Row], options: &Options) -> String {
    let mut s = format!(
        "| path | QoS | msgs/s (best of {}) | each pass | / relay | publisher msgs/s | received / lost / dup / out of order | lost / dup / out of order, all passes | CPU per msg | CPU | peak RSS | Mosquitto CPU | Mosquitto peak RSS | other processes' CPU | load |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        options.passes
    );
    for r in rows {
        let Some(b) = r.best() else {
            let _ = writeln!(
                s,
                "| {} | {} | {} | | | | | | | | | | | | |",
                r.path.name(),
                r.qos,
                r.skipped.as_deref().unwrap_or("no result")
            );
            continue;
        };
        let relay = rows
            .iter()
            .find(|x| x.path == Path::Relay && x.qos == r.qos)
            .and_then(Row::best)
            .map_or("–".into(), |x| format!("{:.2}", b.rate / x.rate));
        let each = r
            .passes
            .iter()
            .map(|m| kilo(m.rate))
            .collect::<Vec<_>>()
            .join(" / ");
        let sum = |f: fn(&Measured) -> u64| r.passes.iter().map(f).sum::<u64>();
        let mut checks = format!(
            "{} / {} / {} / {}",
            b.received, b.lost, b.duplicates, b.out_of_order
        );
        if b.misrouted + b.corrupt > 0 {
            let _ = write!(
                checks,
                " (misrouted {}, corrupt {})",
                b.misrouted, b.corrupt
            );
        }
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} / {} / {} | {} | {} | {} | {} | {} | {} | {:.2} |",
            r.path.name(),
            r.qos,
            b.rate,
            each,
            relay,
            b.publish_rate.map_or("?".into(), |p| format!("{p:.0}")),
            checks,
            sum(|m| m.lost),
            sum(|m| m.duplicates),
            sum(|m| m.out_of_order),
            b.cpu_per_message_us()
                .map_or("–".into(), |us| format!("{us:.1} µs")),
            b.cpu.map_or("–".into(), |c| Measured::pct(c, b.secs)),
            if b.rss_kb.is_some() {
                mb(b.rss_kb)
            } else {
                "–".into()
            },
            Measured::pct(b.mosquitto_cpu, b.secs),
            mb(b.mosquitto_rss_kb),
            Measured::pct(b.other_cpu, b.window),
            b.load,
        );
    }
    s
}

/// Ferrule against the relay and raw, and Ferrule's JavaScript path against Node-RED, per QoS.
fn ratios(rows: &[Row], options: &Options) -> String {
    let best = |p: Path, q: u8| {
        rows.iter()
            .find(|r| r.path == p && r.qos == q)
            .and_then(Row::best)
            .map(|m| m.rate)
    };
    let mut s = String::new();
    for &q in &options.qos {
        let mut parts = Vec::new();
        for (a, b) in [
            (Path::Ferrule, Path::Relay),
            (Path::Ferrule, Path::Raw),
            (Path::Relay, Path::Raw),
            (Path::FerruleJs, Path::NodeRed),
            (Path::FerruleJs, Path::Ferrule),
            (Path::Ferrule, Path::Baseline),
        ] {
            if let (Some(x), Some(y)) = (best(a, q), best(b, q)) {
                parts.push(format!("{} / {} {:.2}", a.name(), b.name(), x / y));
            }
        }
        if !parts.is_empty() {
            let _ = writeln!(s, "QoS {q}: {}", parts.join(", "));
        }
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
    format!("{cores} × {model}")
}

fn main() {
    let options = options();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    println!(
        "backlog bench {}: {}; {} messages per run over {} things, {} pass(es), QoS {:?}; load average {:.2}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine(),
        options.messages,
        options.things,
        options.passes,
        options.qos,
        load_average()
    );
    let bin = support::ferrule_binary();
    let modified = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .map(|t| {
            chrono::DateTime::<chrono::Utc>::from(t)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or_else(|e| e.to_string());
    println!("ferrule binary: {} (modified {modified})", bin.display());
    let mut rows: Vec<Row> = options
        .qos
        .iter()
        .flat_map(|&q| {
            options.paths.iter().map(move |&path| Row {
                path,
                qos: q,
                passes: Vec::new(),
                skipped: None,
            })
        })
        .collect();
    let base = now_nanos() / 1000;
    let mut n = 0;
    let mut instructions: Vec<String> = Vec::new();
    rt.block_on(async {
        for pass in 1..=options.passes {
            for row in rows.iter_mut() {
                if row.skipped.is_some() {
                    continue;
                }
                n += 1;
                println!(
                    "[pass {pass}] {} QoS {}: load average {:.2}",
                    row.path.name(),
                    row.qos,
                    load_average()
                );
                let mut attempt = 0;
                loop {
                    match run(row.path, row.qos, &options, base + n, Profile::None).await {
                        Ok(m) => {
                            println!("{}", m.line(row.path));
                            let other = 100.0 * m.other_cpu / m.window.max(1e-9);
                            if options.max_other.is_some_and(|max| other > max)
                                && attempt < RETRIES
                            {
                                attempt += 1;
                                n += 1;
                                println!(
                                    "  other processes used {other:.0} % of a core: again in {} s (retry {attempt} of {RETRIES})",
                                    RETRY_AFTER.as_secs()
                                );
                                tokio::time::sleep(RETRY_AFTER).await;
                                continue;
                            }
                            row.passes.push(m);
                        }
                        Err(e) => {
                            println!("  skipped: {e}");
                            row.skipped =
                                Some(format!("skipped: {}", e.lines().next().unwrap_or("")));
                        }
                    }
                    break;
                }
            }
        }
        if let Some(dir) = &options.perf {
            std::fs::create_dir_all(dir).unwrap();
            for row in rows.iter().filter(|r| r.path.is_ferrule()) {
                n += 1;
                let file = dir.join(format!("backlog-{}-qos{}.data", row.path.name(), row.qos));
                println!(
                    "[perf] {} QoS {} into {}",
                    row.path.name(),
                    row.qos,
                    file.display()
                );
                match run(row.path, row.qos, &options, base + n, Profile::Perf(&file)).await {
                    Ok(m) => println!("{}", m.line(row.path)),
                    Err(e) => println!("  skipped: {e}"),
                }
            }
        }
        if options.callgrind {
            for row in rows.iter().filter(|r| r.path.is_ferrule()) {
                n += 1;
                let temp = tempfile::tempdir().unwrap();
                let dir = match &options.callgrind_out {
                    Some(out) => {
                        let kept = out.join(format!("{}-qos{}", row.path.name(), row.qos));
                        let _ = std::fs::remove_dir_all(&kept);
                        std::fs::create_dir_all(&kept).unwrap();
                        kept
                    }
                    None => temp.path().to_path_buf(),
                };
                println!("[callgrind] {} QoS {} ({})", row.path.name(), row.qos, dir.display());
                let profile = Profile::Callgrind(&dir);
                match run(row.path, row.qos, &options, base + n, profile).await {
                    Ok(m) => {
                        println!("{}", m.line(row.path));
                        let per = m.instructions.map_or("?".to_string(), |i| {
                            format!("{:.0}", i as f64 / m.received.max(1) as f64)
                        });
                        instructions.push(format!(
                            "| {} | {} | {} | {per} |",
                            row.path.name(),
                            row.qos,
                            m.received
                        ));
                    }
                    Err(e) => println!("  skipped: {e}"),
                }
            }
        }
    });
    println!();
    println!("{}", table(&rows, &options));
    println!("{}", ratios(&rows, &options));
    if !instructions.is_empty() {
        println!("| path | QoS | messages | instructions per message (callgrind) |");
        println!("|---|---|---|---|");
        for line in &instructions {
            println!("{line}");
        }
        println!();
    }
    println!(
        "{n} runs in {:.0} s; load average at the end {:.2}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
}
