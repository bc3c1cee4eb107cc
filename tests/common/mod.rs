//! Starts the real `ferrule` binary on an ephemeral port and talks to it over HTTP.
#![allow(dead_code)]

/// A self-signed client certificate and its PKCS#8 key (P-256, valid until 2126), for
/// connections whose certificates are read at create; no broker trusts it.
pub const TEST_CLIENT_CERT: &str = include_str!("../fixtures/test-client.pem");
pub const TEST_CLIENT_KEY: &str = include_str!("../fixtures/test-client.key");

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub const PASSWORD: &str = "test-devops-password";

pub struct Ferrule {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub password: String,
}

pub struct Options<'a> {
    pub password: Option<&'a str>,
    pub bind: Option<String>,
    pub args: Vec<String>,
    /// Extra environment variables of the process.
    pub env: Vec<(String, String)>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            password: Some(PASSWORD),
            bind: None,
            args: Vec::new(),
            env: Vec::new(),
        }
    }
}

fn collect(
    stream: impl std::io::Read + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
    tx: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Some(tx) = &tx {
                let _ = tx.send(line.clone());
            }
            sink.lock().unwrap().push(line);
        }
    });
}

/// Runs `ferrule serve` with the given data dir and waits for the listening line. Returns the
/// exit status and output instead when the process ends first.
pub fn try_start(data_dir: &Path, options: Options) -> Result<Ferrule, (i32, String)> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrule"));
    cmd.arg("serve")
        .arg("--bind")
        .arg(options.bind.as_deref().unwrap_or("127.0.0.1:0"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(&options.args)
        .env_remove("FERRULE_DEVOPS_PASSWORD")
        .env_remove("FERRULE_CONFIG")
        .env("FERRULE_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = options.password {
        cmd.env("FERRULE_DEVOPS_PASSWORD", p);
    }
    cmd.envs(options.env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd.spawn().expect("the ferrule binary starts");
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    collect(child.stdout.take().unwrap(), stdout.clone(), Some(tx));
    collect(child.stderr.take().unwrap(), stderr.clone(), None);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Some(addr) = line.strip_prefix("ferrule: listening on ") {
                    let password = options.password.map(String::from).unwrap_or_else(|| {
                        std::fs::read_to_string(data_dir.join("devops-password"))
                            .unwrap()
                            .trim()
                            .to_string()
                    });
                    return Ok(Ferrule {
                        child,
                        base: addr.to_string(),
                        data_dir: data_dir.to_path_buf(),
                        stdout,
                        stderr,
                        password,
                    });
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                if let Ok(Some(status)) = child.try_wait() {
                    std::thread::sleep(Duration::from_millis(100));
                    let err = stderr.lock().unwrap().join("\n");
                    return Err((status.code().unwrap_or(-1), err));
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "ferrule did not start in 30 s"
                );
            }
        }
    }
}

pub fn start(data_dir: &Path) -> Ferrule {
    try_start(data_dir, Options::default())
        .unwrap_or_else(|(code, err)| panic!("ferrule exited with {code}: {err}"))
}

/// Starts Ferrule with a config file of the given TOML text; the data dir is `dir/data`.
pub fn start_with_config(dir: &Path, toml: &str) -> Ferrule {
    let cfg = dir.join("ferrule.toml");
    std::fs::write(&cfg, toml).unwrap();
    let options = Options {
        args: vec!["--config".into(), cfg.display().to_string()],
        ..Default::default()
    };
    try_start(&dir.join("data"), options)
        .unwrap_or_else(|(code, err)| panic!("ferrule exited with {code}: {err}"))
}

impl Ferrule {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request with the devops credentials.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, self.url(path))
            .basic_auth("devops", Some(&self.password))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.req(reqwest::Method::GET, path).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.req(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn put_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.req(reqwest::Method::PUT, path)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.req(reqwest::Method::DELETE, path)
            .send()
            .await
            .unwrap()
    }

    pub async fn command(&self, id: &str, command: &str) -> reqwest::Response {
        self.req(
            reqwest::Method::POST,
            &format!("/api/2/connections/{id}/command"),
        )
        .header("content-type", "text/plain")
        .body(command.to_string())
        .send()
        .await
        .unwrap()
    }

    /// A second handle for requests only (the process stays owned by `self`).
    pub fn clone_handle(&self) -> Handle {
        Handle {
            base: self.base.clone(),
            password: self.password.clone(),
        }
    }

    /// The process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to standard output and standard error so far.
    pub fn output(&self) -> String {
        format!(
            "{}\n{}",
            self.stdout.lock().unwrap().join("\n"),
            self.stderr.lock().unwrap().join("\n")
        )
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        unsafe_sigterm(self.child.id());
        self.child.wait().unwrap()
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

impl Drop for Ferrule {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A valid MQTT connection without id.
pub fn mqtt_connection() -> serde_json::Value {
    serde_json::json!({
        "name": "mqtt-devices",
        "connectionType": "mqtt",
        "connectionStatus": "closed",
        "uri": "tcp://127.0.0.1:1883",
        "sources": [{"addresses": ["devices/+/telemetry"], "qos": 1,
                     "authorizationContext": ["ditto:inbound"]}],
        "targets": [{"address": "events/{{ thing:id }}", "topics": ["_/_/things/twin/events"],
                     "qos": 0, "authorizationContext": ["ditto:outbound"]}]
    })
}

/// A valid AMQP 0.9.1 connection without id.
pub fn amqp_connection() -> serde_json::Value {
    serde_json::json!({
        "name": "rabbit",
        "connectionType": "amqp-091",
        "connectionStatus": "closed",
        "uri": "amqp://guest:guest@127.0.0.1:5672/%2f",
        "sources": [{"addresses": ["telemetry"], "authorizationContext": ["ditto:inbound"]}],
        "targets": [{"address": "events/twin", "topics": ["_/_/things/twin/events"],
                     "authorizationContext": ["ditto:outbound"]}]
    })
}

pub async fn json(resp: reqwest::Response) -> serde_json::Value {
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Talks to a running Ferrule without owning the process.
pub struct Handle {
    pub base: String,
    pub password: String,
}

impl Handle {
    /// The status of a PUT, or `None` when the request failed (the server is gone).
    pub async fn try_put(&self, path: &str, body: &serde_json::Value) -> Option<u16> {
        reqwest::Client::new()
            .put(format!("{}{}", self.base, path))
            .basic_auth("devops", Some(&self.password))
            .json(body)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }
}

/// Creates connection `id` (201 expected, else the answer is shown) and waits until it is open.
pub async fn create_open(f: &Ferrule, id: &str, connection: &serde_json::Value) {
    let resp = f
        .put_json(&format!("/api/2/connections/{id}"), connection)
        .await;
    let status = resp.status();
    assert_eq!(
        status,
        reqwest::StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
    wait_for_live_status(f, id, "open").await;
}

/// Polls the status of a connection until its `liveStatus` is `expected` (at most 15 s).
pub async fn wait_for_live_status(f: &Ferrule, id: &str, expected: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let status = json(f.get(&format!("/api/2/connections/{id}/status")).await).await;
        if status["liveStatus"] == expected {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "connection {id} did not reach liveStatus {expected}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP proxy on loopback in front of a broker port, which a test can cut (every connection
/// drops) and start again on the same port.
pub struct Proxy {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on `port` (0: any) and forwards to 127.0.0.1:`broker`.
    pub async fn start(port: u16, broker: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            // Owned by this task: aborting it drops the set, which aborts every connection.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    break;
                };
                conns.spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", broker)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Proxy { port, task }
    }

    /// Drops the listener and every proxied connection; returns the port.
    pub fn cut(self) -> u16 {
        self.task.abort();
        self.port
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port on loopback that nothing listens on (at the moment of the call).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The connection's log holds a failure of category `connection` (a lost or refused broker).
pub async fn assert_connection_failure_logged(f: &Ferrule, id: &str) {
    let logs = json(f.get(&format!("/api/2/connections/{id}/logs")).await).await;
    assert!(
        logs["connectionLogs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["category"] == "connection" && e["level"] == "failure"),
        "the connection log has no connection failure: {logs}"
    );
}

/// A name of its own for one test run: `<test><sep><pid>-<nanos>`.
pub fn unique(test: &str, sep: char) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{test}{sep}{}-{nanos}", std::process::id())
}

/// Ferrule for live tests: reconnects within a second, connects within three.
pub fn live_server() -> (tempfile::TempDir, Ferrule) {
    let dir = tempfile::tempdir().unwrap();
    let f = start_with_config(
        dir.path(),
        "[runtime]\nmin_backoff_ms = 200\nmax_backoff_ms = 1000\nconnect_timeout_ms = 3000\n",
    );
    (dir, f)
}

/// A Mosquitto of the test's own on a free port, keeping its sessions and queues on disk (so a
/// restart keeps what it acknowledged) and queueing without limit for a disconnected client
/// (so the broker drops nothing while Ferrule is away).
pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Mosquitto {
    pub async fn start() -> Mosquitto {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mosquitto.conf"),
            format!(
                "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nmax_queued_messages 0\nautosave_interval 1\n\
                 log_dest none\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let mut broker = Mosquitto {
            port,
            dir,
            child: None,
        };
        broker.run().await;
        broker
    }

    /// Starts (again) the broker process on the same port and directory.
    pub async fn run(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed (scripts/brokers installs it)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the test's Mosquitto did not listen on {}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The broker process (to stop and continue it).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the broker runs").id()
    }

    /// SIGTERM (Mosquitto saves its sessions and queues), and wait for the exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe_sigterm(child.id());
            let _ = child.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `kv` example mapper of `mapper-sdk-py` and `mapper-sdk-js`, uploaded to `f` as
/// `module`, maps a device's MQTT traffic: a connection whose source maps with it (namespace
/// `ns`, feature `env`), 20 messages `t=<i>;h=40` at QoS 1, the twin ends at `expected`
/// (`{"t": 20, "h": 40}` as the language writes numbers), 20 mapped and none failed, and the
/// mapper's log line is in the connection logs.
pub async fn kv_module_maps_mqtt_traffic(
    f: &Ferrule,
    module: &str,
    ns: &str,
    expected: serde_json::Value,
) {
    use serde_json::json;
    let u = unique(ns, '-');
    let thing = format!("{ns}:{u}");
    assert!(
        f.put_json(&format!("/api/2/things/{thing}"), &json!({}))
            .await
            .status()
            .is_success()
    );
    let base = format!("ferrule-{ns}/{u}");
    let connection = json!({
        "connectionType": "mqtt", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "mappingDefinitions": {"kv": {"mappingEngine": "WebAssembly",
            "options": {"module": module, "namespace": ns, "feature": "env"}}},
        "sources": [{"addresses": [format!("{base}/+")], "qos": 1,
                     "authorizationContext": ["ditto:inbound"], "payloadMapping": ["kv"]}]
    });
    let id = format!("{module}-conn");
    assert_eq!(
        f.put_json(&format!("/api/2/connections/{id}"), &connection)
            .await
            .status(),
        reqwest::StatusCode::CREATED
    );
    wait_for_live_status(f, &id, "open").await;
    let mut o = rumqttc::MqttOptions::new(format!("{u}-dev"), "127.0.0.1", 1883);
    o.set_clean_session(true);
    let (dev, mut eventloop) = rumqttc::AsyncClient::new(o, 100);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    for i in 1..=20 {
        dev.publish(
            format!("{base}/{u}"),
            rumqttc::QoS::AtLeastOnce,
            false,
            format!("t={i};h=40"),
        )
        .await
        .unwrap();
    }
    let path = format!("/api/2/things/{thing}/features/env/properties");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resp = f.get(&path).await;
        let got = if resp.status() == reqwest::StatusCode::OK {
            json(resp).await
        } else {
            serde_json::Value::Null
        };
        if got == expected {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{path}: {got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = json(f.get(&format!("/api/2/connections/{id}/metrics")).await).await;
    let mapped = &m["connectionMetrics"]["inbound"]["mapped"];
    assert_eq!(mapped["success"]["PT1M"], 20, "{m}");
    assert_eq!(mapped["failure"]["PT1M"], 0, "{m}");
    let logs = json(f.get(&format!("/api/2/connections/{id}/logs")).await).await;
    assert!(
        logs.to_string()
            .contains(&format!("Mapper: 2 values for {thing}")),
        "the mapper's log lines: {logs}"
    );
}

/// `ferrule mapper test --module MODULE --options OPTIONS --cases CASES [--config CONFIG]`:
/// the report, asserting it passed.
pub fn mapper_test_cases(
    module: &Path,
    options: &str,
    cases: &Path,
    config: Option<&Path>,
) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrule"));
    cmd.args(["mapper", "test", "--module"])
        .arg(module)
        .args(["--options", options, "--cases"])
        .arg(cases)
        .env_remove("FERRULE_CONFIG");
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let out = cmd.output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

/// Runs `program args` in `dir` with `env` set; its stdout and stderr, asserting it succeeded.
pub fn run_ok(dir: &Path, program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{program} cannot run: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?}: {text}");
    text
}

/// `ferrule mapper new NAME --lang LANG --dir DIR`, asserting it succeeded.
pub fn mapper_new(name: &str, lang: &str, dir: &Path) {
    let dir = dir.to_str().expect("a UTF-8 path");
    run_ok(
        Path::new("."),
        env!("CARGO_BIN_EXE_ferrule"),
        &["mapper", "new", name, "--lang", lang, "--dir", dir],
        &[],
    );
}

/// A file of the test CA's directory (`scripts/tls-broker` makes it: `ca.pem`, `server.pem` and
/// `server.key` for localhost and 127.0.0.1, ...), `$FERRULE_TLS_DIR` or
/// `/var/lib/ferrule-test-tls`; panics (the test fails) when it is missing.
pub fn tls_file(name: &str) -> String {
    let dir =
        std::env::var("FERRULE_TLS_DIR").unwrap_or_else(|_| "/var/lib/ferrule-test-tls".into());
    let path = format!("{dir}/{name}");
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: scripts/brokers (scripts/tls-broker) makes the test certificates"
    );
    path
}

/// A reader of a server-sent event stream: the `data` of each event, keep-alive comments skipped.
pub struct Events {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl Events {
    /// The stream of `/api/2/things` with `query`.
    pub async fn open(f: &Ferrule, query: &str) -> Events {
        Events::open_at(f, &format!("/api/2/things{query}")).await
    }

    /// The stream of `path`.
    pub async fn open_at(f: &Ferrule, path: &str) -> Events {
        let resp = f
            .req(reqwest::Method::GET, path)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Events {
            stream: Box::pin(resp.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event's data as JSON; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<serde_json::Value> {
        use futures_util::StreamExt;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if !data.is_empty() {
                    return Some(serde_json::from_str(&data.join("\n")).unwrap());
                }
            }
            let chunk =
                tokio::time::timeout(std::time::Duration::from_secs(20), self.stream.next())
                    .await
                    .expect("an event or the end within 20 s")?
                    .ok()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}
