//! The cluster bench of issue 18: throughput from 1 to 4 instances under the same CPU quota,
//! against the embedded mode under that quota, and failover times over repeated `kill -9`.
//!
//! `cargo bench -p ferrule-host --bench cluster [-- OPTIONS]` (release build; needs `psql` and a
//! PostgreSQL on 127.0.0.1:5432 where user `postgres` (password `postgres`, as `scripts/brokers`
//! sets it up) may create databases, `nats-server`,
//! `mosquitto`, and a writable cgroup v1 `cpu` controller at /sys/fs/cgroup/cpu for the quota):
//!
//! - `--instances 1,2,3,4` (default): the cluster sizes measured.
//! - `--messages N` (default 20000), `--things T` (default 1000): message k modifies thing
//!   `bench:t<k mod T>`.
//! - `--quota Q` (default 0.25): each Ferrule process may use Q of one core
//!   (`cpu.cfs_quota_us`); 0 leaves them uncapped.
//! - `--kills K` (default 10): failover runs; 0 skips them.
//! - `--skip-throughput`.
//! - `--perf DIR`: `perf record -e cpu-clock --call-graph dwarf` of every Ferrule process over
//!   the measured window of each throughput run, into `DIR/<run>-<instance>.data`.
//!
//! Throughput: every run gets a database of its own, one NATS server and one Mosquitto (no queue
//! limits) for the whole bench. One MQTT 5 connection with `clientCount` = instances: a shared
//! subscription at QoS 1 with the Ditto mapper and `twin-persisted` requested, the `modified`
//! events to a QoS 1 target (each client publishes the events of its share of the things). One
//! rumqttc client publishes the N messages as fast as it can (in-flight 1,000), one subscriber
//! counts the events; msgs/s = events / (last event − first publish). CPU of the Ferrule
//! processes, of every `postgres` process and of `nats-server` from /proc.
//!
//! Failover: three uncapped instances, a connection with one client (persistent session,
//! `twin-persisted` and the target's acknowledgement requested), a device sending ~500 msgs/s;
//! K times: `kill -9` of the instance that runs the client, then the time until the client is
//! open on another instance (status polled every 100 ms on a survivor) and until the first event
//! of a message sent after the kill arrives; the killed instance is started again.

mod support;

use rumqttc::{Event, Packet, QoS};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{ClientOptions, Ferrule, Mosquitto, connect_with, cpu_seconds, free_port};

struct Options {
    instances: Vec<usize>,
    messages: u64,
    things: u64,
    quota: f64,
    kills: usize,
    throughput: bool,
    perf: Option<std::path::PathBuf>,
}

fn options() -> Options {
    let mut o = Options {
        instances: vec![1, 2, 3, 4],
        messages: 20_000,
        things: 1000,
        quota: 0.25,
        kills: 10,
        throughput: true,
        perf: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--instances" => {
                o.instances = value().split(',').map(|n| n.parse().unwrap()).collect();
                i += 1;
            }
            "--messages" => {
                o.messages = value().parse().unwrap();
                i += 1;
            }
            "--things" => {
                o.things = value().parse().unwrap();
                i += 1;
            }
            "--quota" => {
                o.quota = value().parse().unwrap();
                i += 1;
            }
            "--kills" => {
                o.kills = value().parse().unwrap();
                i += 1;
            }
            "--skip-throughput" => o.throughput = false,
            "--perf" => {
                o.perf = Some(value().into());
                i += 1;
            }
            _ => {} // cargo bench passes --bench
        }
        i += 1;
    }
    o
}

/// A database of the bench's own, dropped at the end.
struct Database(String);

fn psql(sql: &str) {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            sql,
        ])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Database {
    fn create(name: &str) -> Database {
        let name = format!("ferrule_bench_{}_{name}", std::process::id());
        psql(&format!("CREATE DATABASE {name}"));
        Database(name)
    }
    fn url(&self) -> String {
        format!("postgres://postgres:postgres@127.0.0.1:5432/{}", self.0)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
    }
}

struct Nats {
    child: Child,
    url: String,
}

impl Nats {
    fn start() -> Nats {
        let port = free_port();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server runs");
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(20));
        }
        Nats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cgroup (v1 `cpu`) that caps its processes at `quota` of one core.
struct Quota(std::path::PathBuf);

impl Quota {
    fn new(name: &str, quota: f64) -> Option<Quota> {
        if quota <= 0.0 {
            return None;
        }
        let dir = std::path::PathBuf::from(format!(
            "/sys/fs/cgroup/cpu/ferrule-bench-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("a cgroup can be made under /sys/fs/cgroup/cpu");
        std::fs::write(dir.join("cpu.cfs_period_us"), "100000").unwrap();
        std::fs::write(
            dir.join("cpu.cfs_quota_us"),
            format!("{}", (quota * 100_000.0) as u64),
        )
        .unwrap();
        Some(Quota(dir))
    }
    fn add(&self, pid: u32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for Quota {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// CPU seconds of every process named `name` so far.
fn cpu_of_all(name: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .map(cpu_seconds)
        .sum()
}

fn cluster_env(node: &str, db: &Database, nats: &Nats) -> Vec<(&'static str, String)> {
    vec![
        ("FERRULE_CLUSTER__NODE_ID", node.to_string()),
        ("FERRULE_CLUSTER__POSTGRES_URL", db.url()),
        ("FERRULE_CLUSTER__NATS_URL", nats.url.clone()),
    ]
}

async fn status(f: &Ferrule, id: &str) -> Value {
    f.request(
        reqwest::Method::GET,
        &format!("/api/2/connections/{id}/status"),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap_or(Value::Null)
}

fn clients(status: &Value) -> Vec<String> {
    status["clientStatus"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["client"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_clients(f: &Ferrule, id: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(f, id).await;
        if s["liveStatus"] == "open" && clients(&s).len() == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id} did not open {n} clients: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn modify(thing: u64, seq: u64) -> String {
    json!({"topic": format!("bench/t{thing}/things/twin/commands/modify"), "path": "/",
           "value": {"attributes": {"seq": seq}}})
    .to_string()
}

struct Measured {
    rate: f64,
    received: u64,
    ferrule_cpu: f64,
    postgres_cpu: f64,
    nats_cpu: f64,
    secs: f64,
}

/// One throughput run: `instances` in cluster mode (or one embedded when `None` is given for
/// the cluster's engines).
async fn throughput(
    o: &Options,
    mosquitto: &Mosquitto,
    nats: Option<&Nats>,
    instances: usize,
    run: &str,
) -> Measured {
    let db = nats.map(|_| Database::create(run));
    let mut quotas = Vec::new();
    let mut nodes = Vec::new();
    for i in 0..instances {
        let env = match (&db, nats) {
            (Some(db), Some(nats)) => cluster_env(&format!("{run}-{i}"), db, nats),
            _ => Vec::new(),
        };
        let f = Ferrule::start_with(&env);
        if let Some(q) = Quota::new(&format!("{run}-{i}"), o.quota) {
            q.add(f.pid());
            quotas.push(q);
        }
        nodes.push(f);
    }
    let id = format!("bench-{run}");
    let (input, output) = (format!("bench/{run}/in"), format!("bench/{run}/out"));
    nodes[0]
        .put(
            &format!("/api/2/connections/{id}"),
            &json!({
                "connectionType": "mqtt-5", "connectionStatus": "open",
                "uri": format!("tcp://127.0.0.1:{}", mosquitto.port),
                "clientCount": instances,
                "sources": [{"addresses": [format!("$share/{run}/{input}")], "qos": 1,
                             "authorizationContext": ["bench"],
                             "acknowledgementRequests": {"includes": ["twin-persisted"]}}],
                "targets": [{"address": output, "qos": 1, "topics": ["_/_/things/twin/events"],
                             "authorizationContext": ["bench"]}]
            }),
        )
        .await;
    wait_clients(&nodes[0], &id, instances).await;

    let received = Arc::new(AtomicU64::new(0));
    let last = Arc::new(Mutex::new(Instant::now()));
    let probe = o.messages + 1_000_000;
    let (r, l) = (received.clone(), last.clone());
    let (_sub, _sub_task) = connect_with(
        ClientOptions {
            port: mosquitto.port,
            inflight: None,
        },
        &format!("{run}-sub"),
        std::slice::from_ref(&output),
        QoS::AtLeastOnce,
        move |e| {
            if let Event::Incoming(Packet::Publish(p)) = e {
                let v: Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                if v["value"]["attributes"]["seq"].as_u64() != Some(probe) {
                    r.fetch_add(1, Ordering::SeqCst);
                }
                *l.lock().unwrap() = Instant::now();
            }
        },
    )
    .await;
    let (publisher, _pub_task) = connect_with(
        ClientOptions {
            port: mosquitto.port,
            inflight: Some(1000),
        },
        &format!("{run}-pub"),
        &[],
        QoS::AtLeastOnce,
        |_| {},
    )
    .await;
    // A probe first, until the whole path carries it.
    let probe_sent = Instant::now();
    loop {
        publisher
            .publish(&input, QoS::AtLeastOnce, false, modify(o.things, probe))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        if *last.lock().unwrap() > probe_sent {
            break;
        }
        assert!(
            probe_sent.elapsed() < Duration::from_secs(60),
            "the path carries nothing"
        );
    }
    let cpu = |nodes: &[Ferrule]| nodes.iter().map(|f| cpu_seconds(f.pid())).sum::<f64>();
    let (f0, p0, n0) = (
        cpu(&nodes),
        cpu_of_all("postgres"),
        nats.map_or(0.0, |n| cpu_seconds(n.child.id())),
    );
    let perf: Vec<Child> = match &o.perf {
        Some(dir) => {
            std::fs::create_dir_all(dir).expect("the perf directory can be made");
            let perf = nodes
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    Command::new("perf")
                        .args(["record", "-e", "cpu-clock", "-F", "999", "--call-graph"])
                        .args(["dwarf", "-p", &f.pid().to_string(), "-o"])
                        .arg(dir.join(format!("{run}-{i}.data")))
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .expect("perf runs")
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(500)).await;
            perf
        }
        None => Vec::new(),
    };
    let started = Instant::now();
    for seq in 0..o.messages {
        publisher
            .publish(&input, QoS::AtLeastOnce, false, modify(seq % o.things, seq))
            .await
            .unwrap();
    }
    let mut quiet_since = (Instant::now(), 0);
    while received.load(Ordering::SeqCst) < o.messages {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = received.load(Ordering::SeqCst);
        if now != quiet_since.1 {
            quiet_since = (Instant::now(), now);
        } else if quiet_since.0.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
    let secs = last.lock().unwrap().duration_since(started).as_secs_f64();
    let got = received.load(Ordering::SeqCst);
    for mut p in perf {
        signal_interrupt(p.id());
        let _ = p.wait();
    }
    Measured {
        rate: got as f64 / secs,
        received: got,
        ferrule_cpu: cpu(&nodes) - f0,
        postgres_cpu: cpu_of_all("postgres") - p0,
        nats_cpu: nats.map_or(0.0, |n| cpu_seconds(n.child.id())) - n0,
        secs,
    }
}

fn signal_interrupt(pid: u32) {
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
}

/// Failover: `kills` times kill -9 of the instance running the one client.
async fn failover(o: &Options, mosquitto: &Mosquitto, nats: &Nats) -> (Vec<u64>, Vec<u64>) {
    let db = Database::create("failover");
    let start = |i: usize| Ferrule::start_with(&cluster_env(&format!("f{i}"), &db, nats));
    let mut nodes: Vec<Option<Ferrule>> = (0..3).map(|i| Some(start(i))).collect();
    let id = "failover";
    let first = nodes[0].as_ref().unwrap();
    first
        .put(
            &format!("/api/2/connections/{id}"),
            &json!({
                "connectionType": "mqtt", "connectionStatus": "open",
                "uri": format!("tcp://127.0.0.1:{}", mosquitto.port),
                "specificConfig": {"clientId": "bench-failover", "cleanSession": "false"},
                "sources": [{"addresses": ["bench/failover/in"], "qos": 1,
                             "authorizationContext": ["bench"],
                             "acknowledgementRequests": {"includes": ["twin-persisted", "{{connection:id}}:published"]}}],
                "targets": [{"address": "bench/failover/out", "qos": 1,
                             "topics": ["_/_/things/twin/events"],
                             "issuedAcknowledgementLabel": "{{connection:id}}:published",
                             "authorizationContext": ["bench"]}]
            }),
        )
        .await;
    wait_clients(first, id, 1).await;
    // seq → when it was sent; the kill; the first event of a message sent after it.
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let first_after: Arc<Mutex<Option<Instant>>> = Arc::default();
    let (s, k, fa) = (sent.clone(), killed_at.clone(), first_after.clone());
    let (_sub, _t) = connect_with(
        ClientOptions {
            port: mosquitto.port,
            inflight: None,
        },
        "failover-sub",
        &["bench/failover/out".to_string()],
        QoS::AtLeastOnce,
        move |e| {
            if let Event::Incoming(Packet::Publish(p)) = e {
                let v: Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                let Some(seq) = v["value"]["attributes"]["seq"].as_u64() else {
                    return;
                };
                let sent_at = s.lock().unwrap().get(&seq).copied();
                if let (Some(killed), Some(at)) = (*k.lock().unwrap(), sent_at)
                    && at > killed
                {
                    fa.lock().unwrap().get_or_insert_with(Instant::now);
                }
            }
        },
    )
    .await;
    let (publisher, _pt) = connect_with(
        ClientOptions {
            port: mosquitto.port,
            inflight: Some(1000),
        },
        "failover-pub",
        &[],
        QoS::AtLeastOnce,
        |_| {},
    )
    .await;
    let s = sent.clone();
    let device = tokio::spawn(async move {
        let mut seq = 0u64;
        loop {
            s.lock().unwrap().insert(seq, Instant::now());
            publisher
                .publish(
                    "bench/failover/in",
                    QoS::AtLeastOnce,
                    false,
                    modify(seq % 100, seq),
                )
                .await
                .unwrap();
            seq += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let (mut takeovers, mut resumes) = (Vec::new(), Vec::new());
    for round in 0..o.kills {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let any = nodes.iter().flatten().next().unwrap();
        let owner = loop {
            let s = status(any, id).await;
            let c = clients(&s);
            if s["liveStatus"] == "open" && c.len() == 1 {
                break c[0].clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let victim: usize = owner.trim_start_matches('f').parse().unwrap();
        let survivor = (victim + 1) % 3;
        *first_after.lock().unwrap() = None;
        let killed = Instant::now();
        *killed_at.lock().unwrap() = Some(killed);
        drop(nodes[victim].take()); // SIGKILL
        let taken = loop {
            let s = status(nodes[survivor].as_ref().unwrap(), id).await;
            let c = clients(&s);
            if s["liveStatus"] == "open" && c.len() == 1 && c[0] != owner {
                break killed.elapsed();
            }
            assert!(
                killed.elapsed() < Duration::from_secs(60),
                "no takeover: {s}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let resumed = loop {
            if let Some(at) = *first_after.lock().unwrap() {
                break at.duration_since(killed);
            }
            assert!(
                killed.elapsed() < Duration::from_secs(60),
                "events did not resume"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        println!(
            "kill {round}: {owner} → open elsewhere after {} ms, events again after {} ms",
            taken.as_millis(),
            resumed.as_millis()
        );
        takeovers.push(taken.as_millis() as u64);
        resumes.push(resumed.as_millis() as u64);
        nodes[victim] = Some(start(victim));
    }
    device.abort();
    (takeovers, resumes)
}

fn main() {
    let o = options();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mosquitto = Mosquitto::start(
            "max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 0",
        );
        let nats = Nats::start();
        if o.throughput {
            println!(
                "| mode | instances | msgs/s | / 1 instance | / embedded | events | seconds | Ferrule CPU | Ferrule µs/msg | PostgreSQL CPU | NATS CPU |"
            );
            println!("|---|---|---|---|---|---|---|---|---|---|---|");
            let embedded = throughput(&o, &mosquitto, None, 1, "embedded").await;
            let row = |mode: &str, n: usize, m: &Measured, one: f64, embedded: f64| {
                println!(
                    "| {mode} | {n} | {:.0} | {:.2} | {:.2} | {} | {:.1} | {:.0} % | {:.1} | {:.0} % | {:.0} % |",
                    m.rate,
                    m.rate / one,
                    m.rate / embedded,
                    m.received,
                    m.secs,
                    100.0 * m.ferrule_cpu / m.secs,
                    1e6 * m.ferrule_cpu / m.received.max(1) as f64,
                    100.0 * m.postgres_cpu / m.secs,
                    100.0 * m.nats_cpu / m.secs
                );
            };
            row("embedded", 1, &embedded, embedded.rate, embedded.rate);
            let mut one = None;
            for &n in &o.instances {
                let m = throughput(&o, &mosquitto, Some(&nats), n, &format!("c{n}")).await;
                let base = *one.get_or_insert(m.rate);
                row("cluster", n, &m, base, embedded.rate);
            }
        }
        if o.kills > 0 {
            let (mut t, mut r) = failover(&o, &mosquitto, &nats).await;
            t.sort();
            r.sort();
            println!(
                "failover over {} kills: open elsewhere median {} ms, max {} ms; events again median {} ms, max {} ms",
                t.len(),
                t[t.len() / 2],
                t[t.len() - 1],
                r[r.len() / 2],
                r[r.len() - 1]
            );
        }
    });
}
