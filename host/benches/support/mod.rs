//! What the benches that drive the real binary through Mosquitto share (`mqtt_pipeline`,
//! `load`, `backlog`): rumqttc clients on 127.0.0.1:1883 (or the port of a [`Mosquitto`] of the
//! bench's own), the `ferrule` process with its REST API, and readings from `/proc` (CPU time,
//! peak RSS, load average).

// Each bench uses a part of this module.
#![allow(dead_code)]

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub const DEVOPS_PASSWORD: &str = "bench";

pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A rumqttc client (MQTT 3.1.1, clean session) on 127.0.0.1:1883 whose event loop runs in a
/// task of its own and hands every incoming PUBLISH to `on_publish`; subscribed to `subscribe`
/// (with one QoS for all filters). Returns once the broker acknowledged the subscription (or
/// the connection, without one), with the event loop's task (aborting it closes the connection).
pub async fn connect(
    id: &str,
    subscribe: &[String],
    qos: QoS,
    mut on_publish: impl FnMut(Publish) + Send + 'static,
) -> (AsyncClient, JoinHandle<()>) {
    connect_with(ClientOptions::DEFAULT, id, subscribe, qos, move |e| {
        if let Event::Incoming(Packet::Publish(p)) = e {
            on_publish(p)
        }
    })
    .await
}

/// Where a bench client connects and how many of its QoS 1 publishes may wait for their PUBACK.
#[derive(Clone, Copy, Debug)]
pub struct ClientOptions {
    /// The broker's port on 127.0.0.1.
    pub port: u16,
    /// The client's outgoing in-flight window; `None` keeps rumqttc's default (100).
    pub inflight: Option<u16>,
}

impl ClientOptions {
    /// The system's Mosquitto on 127.0.0.1:1883, rumqttc's default window.
    pub const DEFAULT: ClientOptions = ClientOptions {
        port: 1883,
        inflight: None,
    };
}

/// [`connect`] to the broker of `options`, handing every event of the event loop (incoming
/// packets and outgoing notices alike, once the client is ready) to `on_event`.
pub async fn connect_with(
    options: ClientOptions,
    id: &str,
    subscribe: &[String],
    qos: QoS,
    mut on_event: impl FnMut(Event) + Send + 'static,
) -> (AsyncClient, JoinHandle<()>) {
    let mut o = MqttOptions::new(id, "127.0.0.1", options.port);
    o.set_clean_session(true)
        .set_max_packet_size(1 << 20, 1 << 20);
    if let Some(n) = options.inflight {
        o.set_inflight(n);
    }
    let (c, mut l) = AsyncClient::new(o, 10_000);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready = Some(ready_tx);
    if !subscribe.is_empty() {
        let filters = subscribe
            .iter()
            .map(|f| rumqttc::SubscribeFilter::new(f.clone(), qos));
        c.subscribe_many(filters).await.unwrap();
    }
    let wait_suback = !subscribe.is_empty();
    let task = tokio::spawn(async move {
        loop {
            match l.poll().await {
                Ok(e) => {
                    match &e {
                        Event::Incoming(Packet::ConnAck(_)) if !wait_suback => {
                            ready.take().map(|r| r.send(()));
                        }
                        Event::Incoming(Packet::SubAck(_)) => {
                            ready.take().map(|r| r.send(()));
                        }
                        _ => {}
                    }
                    on_event(e);
                }
                Err(e) => {
                    eprintln!("bench client error: {e}");
                    return;
                }
            }
        }
    });
    ready_rx
        .await
        .unwrap_or_else(|_| panic!("Mosquitto on 127.0.0.1:{} must be reachable", options.port));
    (c, task)
}

/// [`connect`] at QoS 0 with the payloads of what arrives in a channel.
pub async fn client(
    id: &str,
    subscribe: Option<&str>,
) -> (AsyncClient, mpsc::UnboundedReceiver<bytes::Bytes>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let filters: Vec<String> = subscribe.map(str::to_string).into_iter().collect();
    let (c, _) = connect(id, &filters, QoS::AtMostOnce, move |p| {
        let _ = tx.send(p.payload);
    })
    .await;
    (c, rx)
}

/// The fields of `/proc/PID/stat` after the command name (which is in parentheses and may hold
/// spaces); `pid` "self" is this process.
fn stat_fields(pid: &str) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

fn cpu_of(pid: &str) -> f64 {
    let fields = stat_fields(pid);
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line: indices 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// User + system CPU seconds of process `pid` so far (from /proc/PID/stat, in clock ticks).
pub fn cpu_seconds(pid: u32) -> f64 {
    cpu_of(&pid.to_string())
}

/// CPU seconds of thread `tid` of this process so far: its time on a CPU from
/// `/proc/self/task/TID/schedstat`, in nanoseconds (clock ticks are too coarse for one thread).
pub fn thread_cpu_seconds(tid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}

/// User + system CPU seconds of this process so far.
pub fn own_cpu_seconds() -> f64 {
    cpu_of("self")
}

/// CPU seconds the whole machine's processes used so far, over all cores (user, nice and system
/// of the `cpu` line of /proc/stat, in clock ticks; interrupts, which /proc/PID/stat does not
/// charge to a process, and time stolen by the hypervisor are left out).
pub fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().unwrap_or(0.0))
        .collect();
    [0, 1, 2]
        .iter()
        .map(|&i| ticks.get(i).copied().unwrap_or(0.0))
        .sum::<f64>()
        / 100.0
}

/// Peak resident set size (VmHWM of /proc/PID/status) in kB.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The process id of the Mosquitto on port 1883 (its `pid_file`), if it can be told.
pub fn mosquitto_pid() -> Option<u32> {
    std::fs::read_to_string("/run/mosquitto/mosquitto.pid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The element at quantile `p` of `sorted` (nearest rank below).
pub fn quantile(sorted: &[u64], p: f64) -> Option<u64> {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied()
}

/// The `ferrule` binary the benches start: `$FERRULE_BENCH_BIN` when set (a copy kept aside,
/// so that a run measures one build while the tree is rebuilt, or to compare two builds), else
/// the release binary cargo built with the bench.
pub fn ferrule_binary() -> std::path::PathBuf {
    std::env::var_os("FERRULE_BENCH_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_ferrule").into())
}

/// The release `ferrule` binary serving on a free loopback port with a fresh data directory and
/// the devops password [`DEVOPS_PASSWORD`]; killed when dropped.
pub struct Ferrule {
    child: Child,
    pub base: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Ferrule {
    pub fn start() -> Ferrule {
        Ferrule::start_with(&[])
    }

    /// [`Ferrule::start`] with more environment variables (e.g. `FERRULE_CLUSTER__NODE_ID`).
    pub fn start_with(env: &[(&str, String)]) -> Ferrule {
        Ferrule::start_binary(&ferrule_binary(), env)
    }

    /// [`Ferrule::start_with`] another `ferrule` binary.
    pub fn start_binary(binary: &std::path::Path, env: &[(&str, String)]) -> Ferrule {
        Ferrule::start_wrapped(&[], binary, env)
    }

    /// [`Ferrule::start_binary`] under a wrapper command (e.g. `valgrind --tool=callgrind`)
    /// that runs the binary in its own process.
    pub fn start_wrapped(
        wrapper: &[String],
        binary: &std::path::Path,
        env: &[(&str, String)],
    ) -> Ferrule {
        let dir = tempfile::tempdir().unwrap();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let mut child = command
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("FERRULE_DEVOPS_PASSWORD", DEVOPS_PASSWORD)
            .env("FERRULE_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("ferrule: listening on ")
            .unwrap_or_else(|| panic!("ferrule did not start: {line:?}"))
            .to_string();
        // Whatever else it prints is read and dropped, so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Ferrule {
            child,
            base,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth("devops", Some(DEVOPS_PASSWORD))
    }

    /// PUTs `body` at `path`; panics unless the answer is a success.
    pub async fn put(&self, path: &str, body: &Value) {
        let r = self
            .request(reqwest::Method::PUT, path)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert!(
            status.is_success(),
            "PUT {path}: {status} {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Waits until connection `id` is open (at most `limit`).
    pub async fn wait_open(&self, id: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let s: Value = self
                .request(
                    reqwest::Method::GET,
                    &format!("/api/2/connections/{id}/status"),
                )
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if s["liveStatus"] == "open" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "connection {id} did not open: {s}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Ferrule {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (bound once and released, so another process may take it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Mosquitto of the bench's own: `mosquitto -c` with `listener PORT 127.0.0.1`, anonymous
/// clients, no persistence, and the caller's `config` lines, on a free port; killed when
/// dropped. Its log goes to `mosquitto.log` in its temporary directory (kept only while it runs).
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts it and waits (at most 10 s) until it accepts connections.
    pub fn start(config: &str) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let file = dir.path().join("mosquitto.conf");
        std::fs::write(
            &file,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 log_dest file {}\n{config}\n",
                dir.path().join("mosquitto.log").display()
            ),
        )
        .unwrap();
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (the broker) must be installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "mosquitto exited ({status}): {}",
                    std::fs::read_to_string(dir.path().join("mosquitto.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto { child, port, dir }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
