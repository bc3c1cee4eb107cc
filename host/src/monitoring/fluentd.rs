//! Connection logs published to Fluentd / Fluent Bit (spec §5): every connection log entry of a
//! configured level becomes a record `[tag, EventTime, {connectionId, level, category, type,
//! correlationId, address, entityType, entityId, message, instanceId, ...additional context}]`
//! sent in the Forward protocol (MessagePack over TCP, `[tag, [[time, record], ...], {"chunk":
//! id}]` per tag and flush); the receiver's `{"ack": id}` confirms each chunk (Fluentd's
//! `require_ack_response`, Fluent Bit's `Require_ack_response`), so nothing written into a
//! connection that died unnoticed is lost.
//!
//! Message processing never waits for Fluentd: records go into a bounded queue (a full queue
//! drops the record and counts it); one task takes them in batches, connects with exponential
//! backoff, and keeps a batch while the receiver is away, until its retries run out (the batch
//! is then dropped and counted). Drops are reported in the service log.

use super::logs::{Category, Level, LogEntry, MESSAGE_CONTEXT};
use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// `[log_publisher]` in the configuration file; the `CONNECTIVITY_LOGGER_PUBLISHER_*`
/// environment variables of Ditto set the same keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublisherConfig {
    pub enabled: bool,
    /// The levels published: `success`, `failure`.
    pub log_levels: Vec<String>,
    /// The Fluentd tag; default `connection:<connection-id>`.
    pub log_tag: Option<String>,
    /// Publish the headers and payload of external messages that entries carry (Ditto's
    /// `logHeadersAndPayload`); off by default, so they stay in the log API.
    pub log_headers_and_payload: bool,
    pub host: String,
    pub port: u16,
    /// Key/values appended to every record.
    pub additional_log_context: IndexMap<String, String>,
    /// Records waiting for Fluentd at most; beyond that records are dropped.
    pub buffer_records: usize,
    /// How long records may wait to be sent with others.
    pub flush_interval_ms: u64,
    /// Connection attempts for one batch before it is dropped (400 ms, doubling, up to 30 s).
    pub max_retries: u32,
    /// Send a chunk id with every message and wait for the receiver's ack (Fluentd's
    /// `in_forward` answers it); without acks a batch written into a connection that died
    /// unnoticed is lost.
    pub require_ack: bool,
    /// TLS to the receiver (Fluency's `sslEnabled`; Fluentd's `<transport tls>`), verified
    /// against the system's certificate authorities and `ca_file`.
    pub ssl_enabled: bool,
    /// A PEM file of further certificate authorities to trust for TLS (a private CA).
    pub ca_file: Option<String>,
    /// How long connecting (and the TLS handshake) may take (Fluency's `connectionTimeout`).
    pub connection_timeout_ms: u64,
    /// How long the receiver may take to acknowledge a chunk (Fluency's `readTimeout`).
    pub read_timeout_ms: u64,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        PublisherConfig {
            enabled: false,
            log_levels: vec!["success".into(), "failure".into()],
            log_tag: None,
            log_headers_and_payload: false,
            host: "localhost".into(),
            port: 24224,
            additional_log_context: IndexMap::new(),
            buffer_records: 10_000,
            flush_interval_ms: 600,
            max_retries: 7,
            require_ack: true,
            ssl_enabled: false,
            ca_file: None,
            connection_timeout_ms: 5000,
            read_timeout_ms: 5000,
        }
    }
}

/// Ditto's environment variables and the keys they set.
pub const ENV: &[(&str, &str)] = &[
    ("CONNECTIVITY_LOGGER_PUBLISHER_ENABLED", "enabled"),
    ("CONNECTIVITY_LOGGER_PUBLISHER_LOG_LEVELS", "log_levels"),
    ("CONNECTIVITY_LOGGER_PUBLISHER_LOG_TAG", "log_tag"),
    (
        "CONNECTIVITY_LOGGER_PUBLISHER_LOG_HEADERS_AND_PAYLOAD",
        "log_headers_and_payload",
    ),
    ("CONNECTIVITY_LOGGER_PUBLISHER_FLUENCY_HOST", "host"),
    ("CONNECTIVITY_LOGGER_PUBLISHER_FLUENCY_PORT", "port"),
    (
        "CONNECTIVITY_LOGGER_PUBLISHER_FLUENCY_SSL_ENABLED",
        "ssl_enabled",
    ),
    (
        "CONNECTIVITY_LOGGER_PUBLISHER_FLUENCY_CONNECTION_TIMEOUT",
        "connection_timeout_ms",
    ),
    (
        "CONNECTIVITY_LOGGER_PUBLISHER_FLUENCY_READ_TIMEOUT",
        "read_timeout_ms",
    ),
];

/// What the sending task connects with.
struct Endpoint {
    host: String,
    port: u16,
    /// With TLS: the connector and the name the certificate must carry.
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    connect_timeout: Duration,
    read_timeout: Duration,
}

impl Endpoint {
    fn of(config: &PublisherConfig) -> Result<Endpoint, String> {
        let tls = if config.ssl_enabled {
            let ca =
                match &config.ca_file {
                    Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                        format!("[log_publisher] ca_file {path} cannot be read: {e}")
                    })?),
                    None => None,
                };
            let client = ferrule_transport::tls::client_config(ca.as_deref(), None, true)
                .map_err(|e| format!("[log_publisher] TLS: {}", e.message))?;
            let name = rustls::pki_types::ServerName::try_from(config.host.clone())
                .map_err(|e| format!("[log_publisher] host {} for TLS: {e}", config.host))?;
            Some((tokio_rustls::TlsConnector::from(client), name))
        } else {
            None
        };
        Ok(Endpoint {
            host: config.host.clone(),
            port: config.port,
            tls,
            connect_timeout: Duration::from_millis(config.connection_timeout_ms.max(10)),
            read_timeout: Duration::from_millis(config.read_timeout_ms.max(10)),
        })
    }

    /// A connection to the receiver: TCP, and TLS when configured, within the connect timeout.
    async fn connect(&self) -> std::io::Result<Box<dyn Io>> {
        let within =
            |e: tokio::time::error::Elapsed| std::io::Error::new(std::io::ErrorKind::TimedOut, e);
        let tcp = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(within)??;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some((connector, name)) => {
                let tls = tokio::time::timeout(
                    self.connect_timeout,
                    connector.connect(name.clone(), tcp),
                )
                .await
                .map_err(within)??;
                Ok(Box::new(tls))
            }
        }
    }
}

/// A connection to the receiver, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

struct Record {
    tag: String,
    time: DateTime<Utc>,
    fields: Vec<(&'static str, String)>,
}

/// The publisher: cheap to share; `offer` never waits.
pub struct FluentPublisher {
    config: PublisherConfig,
    instance_id: String,
    queue: mpsc::Sender<Record>,
    dropped: Arc<AtomicU64>,
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Success => "success",
        Level::Failure => "failure",
    }
}

fn category_name(category: Category) -> &'static str {
    match category {
        Category::Source => "source",
        Category::Target => "target",
        Category::Response => "response",
        Category::Connection => "connection",
    }
}

impl FluentPublisher {
    /// Starts the sending task on the current runtime; a TLS configuration that cannot be
    /// used (an unreadable `ca_file`, a host that is no TLS server name) is refused.
    pub fn start(config: PublisherConfig) -> Result<Arc<FluentPublisher>, String> {
        let endpoint = Endpoint::of(&config)?;
        let (queue, rx) = mpsc::channel(config.buffer_records.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(send_loop(config.clone(), endpoint, rx, dropped.clone()));
        Ok(Arc::new(FluentPublisher {
            config,
            instance_id: format!("ferrule-{}", std::process::id()),
            queue,
            dropped,
        }))
    }

    /// Records dropped so far (queue full, or the receiver away longer than the retries).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues `entry` of `connection_id` when its level is published.
    pub fn offer(&self, connection_id: &str, entry: &LogEntry) {
        let Some(record) = self.record(connection_id, entry) else {
            return;
        };
        if self.queue.try_send(record).is_err() {
            count_drop(&self.dropped, 1);
        }
    }

    /// The record of `entry`, or `None` when its level is not published.
    fn record(&self, connection_id: &str, entry: &LogEntry) -> Option<Record> {
        let level = level_name(entry.level);
        if !self.config.log_levels.iter().any(|l| l == level) {
            return None;
        }
        let mut fields: Vec<(&'static str, String)> = vec![
            ("connectionId", connection_id.to_string()),
            ("level", level.to_string()),
            ("category", category_name(entry.category).to_string()),
            ("type", entry.log_type.to_string()),
        ];
        if entry.correlation_id != "<not-provided>" {
            fields.push(("correlationId", entry.correlation_id.clone()));
        }
        for (key, value) in [
            ("address", &entry.address),
            ("entityType", &entry.entity_type),
            ("entityId", &entry.entity_id),
        ] {
            if let Some(v) = value {
                fields.push((key, v.clone()));
            }
        }
        let message = match entry.message.find(MESSAGE_CONTEXT) {
            Some(at) if !self.config.log_headers_and_payload => &entry.message[..at],
            _ => entry.message.as_str(),
        };
        fields.push(("message", message.to_string()));
        fields.push(("instanceId", self.instance_id.clone()));
        let tag = self
            .config
            .log_tag
            .clone()
            .unwrap_or_else(|| format!("connection:{connection_id}"));
        Some(Record {
            tag,
            time: entry.timestamp,
            fields,
        })
    }
}

fn count_drop(dropped: &AtomicU64, n: u64) {
    let before = dropped.fetch_add(n, Ordering::Relaxed);
    // Reported at the first drop and at every further thousand.
    if before == 0 || (before + n) / 1000 > before / 1000 {
        tracing::warn!(
            dropped = before + n,
            "connection log records for Fluentd were dropped (the receiver is away or slow)"
        );
    }
}

/// The Forward-mode messages of a batch: one `[tag, [[EventTime, record], ...], {"chunk": id}]`
/// per tag; the receiver acknowledges each chunk id (`{"ack": id}`), so a batch written into a
/// connection that died is sent again rather than lost.
fn encode(
    batch: &[Record],
    context: &IndexMap<String, String>,
    chunk: Option<u64>,
) -> Vec<(Option<String>, Vec<u8>)> {
    let mut by_tag: IndexMap<&str, Vec<&Record>> = IndexMap::new();
    for r in batch {
        by_tag.entry(r.tag.as_str()).or_default().push(r);
    }
    let mut messages = Vec::new();
    for (n, (tag, records)) in by_tag.into_iter().enumerate() {
        let mut out = Vec::new();
        let id = chunk.map(|c| format!("ferrule-{}-{c}-{n}", std::process::id()));
        rmp::encode::write_array_len(&mut out, if id.is_some() { 3 } else { 2 })
            .expect("writing to a Vec");
        rmp::encode::write_str(&mut out, tag).expect("writing to a Vec");
        rmp::encode::write_array_len(&mut out, records.len() as u32).expect("writing to a Vec");
        for r in records {
            rmp::encode::write_array_len(&mut out, 2).expect("writing to a Vec");
            // EventTime: ext type 0, seconds and nanoseconds as big-endian u32.
            rmp::encode::write_ext_meta(&mut out, 8, 0).expect("writing to a Vec");
            out.extend_from_slice(&(r.time.timestamp() as u32).to_be_bytes());
            out.extend_from_slice(&r.time.timestamp_subsec_nanos().to_be_bytes());
            rmp::encode::write_map_len(&mut out, (r.fields.len() + context.len()) as u32)
                .expect("writing to a Vec");
            for (k, v) in r
                .fields
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .chain(context.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            {
                rmp::encode::write_str(&mut out, k).expect("writing to a Vec");
                rmp::encode::write_str(&mut out, v).expect("writing to a Vec");
            }
        }
        if let Some(id) = &id {
            rmp::encode::write_map_len(&mut out, 1).expect("writing to a Vec");
            rmp::encode::write_str(&mut out, "chunk").expect("writing to a Vec");
            rmp::encode::write_str(&mut out, id).expect("writing to a Vec");
        }
        messages.push((id, out));
    }
    messages
}

/// Reads one `{"ack": id}` answer and checks it names `id`.
async fn read_ack(stream: &mut Box<dyn Io>, id: &str) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_ack(&buf) {
            Some(acked) if acked == id => return Ok(()),
            Some(other) => {
                return Err(std::io::Error::other(format!(
                    "Fluentd acknowledged {other}, not {id}"
                )));
            }
            None if buf.len() > 4096 => {
                return Err(std::io::Error::other(
                    "Fluentd answered something other than an ack",
                ));
            }
            None => continue,
        }
    }
}

/// The chunk id of an `{"ack": id}` answer; `None` while `buf` holds no complete one.
fn parse_ack(buf: &[u8]) -> Option<String> {
    let mut cursor = buf;
    let len = rmp::decode::read_map_len(&mut cursor).ok()?;
    let mut acked = None;
    for _ in 0..len {
        let mut key = [0u8; 16];
        let key = rmp::decode::read_str(&mut cursor, &mut key)
            .ok()?
            .to_string();
        let mut value = vec![0u8; 256];
        let value = rmp::decode::read_str(&mut cursor, &mut value)
            .ok()?
            .to_string();
        if key == "ack" {
            acked = Some(value);
        }
    }
    acked
}

/// Writes every message and waits for its ack, each within `read_timeout`.
async fn deliver(
    stream: &mut Box<dyn Io>,
    messages: &[(Option<String>, Vec<u8>)],
    read_timeout: Duration,
) -> std::io::Result<()> {
    for (id, bytes) in messages {
        stream.write_all(bytes).await?;
        if let Some(id) = id {
            tokio::time::timeout(read_timeout, read_ack(stream, id))
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        }
    }
    stream.flush().await
}

const BATCH: usize = 1000;

async fn send_loop(
    config: PublisherConfig,
    endpoint: Endpoint,
    mut rx: mpsc::Receiver<Record>,
    dropped: Arc<AtomicU64>,
) {
    let flush = Duration::from_millis(config.flush_interval_ms.max(1));
    let mut stream: Option<Box<dyn Io>> = None;
    let mut batch = Vec::with_capacity(BATCH);
    let mut chunk = 0u64;
    loop {
        let Some(first) = rx.recv().await else { return };
        batch.push(first);
        let deadline = Instant::now() + flush;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some(r)) => batch.push(r),
                Ok(None) | Err(_) => break,
            }
        }
        chunk += 1;
        let messages = encode(
            &batch,
            &config.additional_log_context,
            config.require_ack.then_some(chunk),
        );
        let mut backoff = Duration::from_millis(400);
        let mut sent = false;
        for attempt in 0..=config.max_retries {
            if stream.is_none() {
                match endpoint.connect().await {
                    Ok(s) => stream = Some(s),
                    Err(e) => tracing::debug!(
                        attempt,
                        error = %e,
                        "Fluentd at {}:{} is not reachable",
                        config.host,
                        config.port
                    ),
                }
            }
            if let Some(s) = stream.as_mut() {
                match deliver(s, &messages, endpoint.read_timeout).await {
                    Ok(()) => {
                        sent = true;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "writing to Fluentd failed");
                        stream = None;
                        continue;
                    }
                }
            }
            if attempt < config.max_retries {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        if !sent {
            count_drop(&dropped, batch.len() as u64);
        }
        batch.clear();
    }
}

/// The body of the `fluentd` fuzz target (`fuzz/fuzz_targets/fluentd.rs`), also run over the
/// seed corpus by `cargo test`. Compiled for tests and for `--cfg fuzzing` builds only.
///
/// Input: UTF-8 text (lossy). Line 1: the chunk number (empty or not a number: no acks).
/// Line 2: the additional log context, `key=value` entries separated by tabs. Every further line
/// is a record: tag, epoch seconds, nanoseconds, then the values of the record's fields (named
/// `connectionId`, `level`, ... in this order), separated by tabs.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzz {
    use super::{Record, encode, parse_ack};
    use chrono::DateTime;
    use indexmap::IndexMap;

    const FIELDS: [&str; 10] = [
        "connectionId",
        "level",
        "category",
        "type",
        "correlationId",
        "address",
        "entityType",
        "entityId",
        "message",
        "instanceId",
    ];

    fn read_str<'a>(cursor: &mut &'a [u8]) -> &'a str {
        let len = rmp::decode::read_str_len(cursor).expect("a string") as usize;
        assert!(
            cursor.len() >= len,
            "a string of {len} bytes, {} left",
            cursor.len()
        );
        let (s, rest) = cursor.split_at(len);
        *cursor = rest;
        std::str::from_utf8(s).expect("UTF-8")
    }

    fn read_u32(cursor: &mut &[u8]) -> u32 {
        let (b, rest) = cursor.split_first_chunk::<4>().expect("4 bytes");
        *cursor = rest;
        u32::from_be_bytes(*b)
    }

    /// Any input: the encoder writes, per tag in order of first appearance, one Forward-mode
    /// message that a MessagePack reader takes apart into exactly the tag, the records (EventTime
    /// and every field and context entry, in order) and the chunk id, with nothing left over; the
    /// chunk id's `{"ack": id}` reads back as that id; the ack reader takes any bytes.
    pub fn check(data: &[u8]) {
        let _ = parse_ack(data);
        let text = String::from_utf8_lossy(data);
        let mut lines = text.split('\n');
        let chunk = lines.next().and_then(|l| l.trim().parse::<u64>().ok());
        let mut context = IndexMap::new();
        for entry in lines
            .next()
            .unwrap_or("")
            .split('\t')
            .filter(|e| !e.is_empty())
        {
            let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
            context.insert(k.to_string(), v.to_string());
        }
        let mut batch = Vec::new();
        for line in lines {
            let mut parts = line.split('\t');
            let tag = parts.next().unwrap_or("").to_string();
            // EventTime holds seconds as an unsigned 32-bit number: the clock's range until 2106.
            let secs = parts
                .next()
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0);
            let nanos = parts
                .next()
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(0);
            let time = DateTime::from_timestamp(
                secs.rem_euclid(i64::from(u32::MAX) + 1),
                nanos % 1_000_000_000,
            )
            .expect("within EventTime's range");
            let fields = FIELDS
                .iter()
                .copied()
                .zip(parts.map(String::from))
                .collect();
            batch.push(Record { tag, time, fields });
        }

        let messages = encode(&batch, &context, chunk);
        let mut tags: Vec<&str> = Vec::new();
        for r in &batch {
            if !tags.contains(&r.tag.as_str()) {
                tags.push(&r.tag);
            }
        }
        assert_eq!(messages.len(), tags.len());
        let mut ids = Vec::new();
        for ((id, bytes), tag) in messages.iter().zip(tags) {
            assert_eq!(id.is_some(), chunk.is_some());
            let mut cursor = bytes.as_slice();
            let len = rmp::decode::read_array_len(&mut cursor).expect("the message array");
            assert_eq!(len, if chunk.is_some() { 3 } else { 2 });
            assert_eq!(read_str(&mut cursor), tag);
            let records: Vec<&Record> = batch.iter().filter(|r| r.tag == tag).collect();
            let n = rmp::decode::read_array_len(&mut cursor).expect("the entries") as usize;
            assert_eq!(n, records.len());
            for r in records {
                assert_eq!(rmp::decode::read_array_len(&mut cursor).ok(), Some(2));
                let meta = rmp::decode::read_ext_meta(&mut cursor).expect("EventTime");
                assert_eq!((meta.typeid, meta.size), (0, 8));
                assert_eq!(i64::from(read_u32(&mut cursor)), r.time.timestamp());
                assert_eq!(read_u32(&mut cursor), r.time.timestamp_subsec_nanos());
                let n = rmp::decode::read_map_len(&mut cursor).expect("the record") as usize;
                assert_eq!(n, r.fields.len() + context.len());
                let expected = r
                    .fields
                    .iter()
                    .map(|(k, v)| (*k, v.as_str()))
                    .chain(context.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                for (k, v) in expected {
                    assert_eq!(read_str(&mut cursor), k);
                    assert_eq!(read_str(&mut cursor), v);
                }
            }
            if let Some(id) = id {
                assert_eq!(rmp::decode::read_map_len(&mut cursor).ok(), Some(1));
                assert_eq!(read_str(&mut cursor), "chunk");
                assert_eq!(read_str(&mut cursor), id);
                let mut ack = Vec::new();
                rmp::encode::write_map_len(&mut ack, 1).unwrap();
                rmp::encode::write_str(&mut ack, "ack").unwrap();
                rmp::encode::write_str(&mut ack, id).unwrap();
                assert_eq!(parse_ack(&ack).as_ref(), Some(id));
                ids.push(id.clone());
            }
            assert!(cursor.is_empty(), "{} bytes left over", cursor.len());
        }
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count, "chunk ids are unique");
    }

    #[cfg(test)]
    #[test]
    fn the_seed_corpus_passes() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/fluentd");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect(dir) {
            let path = entry.unwrap().path();
            eprintln!("{}", path.display());
            check(&std::fs::read(&path).unwrap());
            n += 1;
        }
        assert!(n >= 10, "only {n} seed files in {dir}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(level: Level) -> LogEntry {
        LogEntry {
            correlation_id: "c-1".into(),
            timestamp: DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap(),
            category: Category::Source,
            log_type: "consumed",
            level,
            message: "Message was consumed.".into(),
            address: Some("devices/+".into()),
            entity_type: None,
            entity_id: None,
        }
    }

    #[test]
    fn records_are_forward_mode_with_event_time_the_fields_in_order_and_a_chunk_id() {
        let record = Record {
            tag: "connection:c".into(),
            time: entry(Level::Success).timestamp,
            fields: vec![("connectionId", "c".into()), ("level", "success".into())],
        };
        let mut context = IndexMap::new();
        context.insert("site".to_string(), "b1".to_string());
        let messages = encode(&[record], &context, Some(7));
        assert_eq!(messages.len(), 1);
        let (id, bytes) = &messages[0];
        let id = id.as_ref().unwrap();
        assert_eq!(id, &format!("ferrule-{}-7-0", std::process::id()));
        let mut expected = vec![0x93, 0xac];
        expected.extend_from_slice(b"connection:c");
        expected.push(0x91); // one entry
        expected.push(0x92);
        expected.extend_from_slice(&[0xd7, 0x00]); // fixext 8, type 0
        expected.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        expected.extend_from_slice(&123_456_789u32.to_be_bytes());
        expected.push(0x83); // map of 3
        for s in ["connectionId", "c", "level", "success", "site", "b1"] {
            expected.push(0xa0 | s.len() as u8);
            expected.extend_from_slice(s.as_bytes());
        }
        expected.push(0x81);
        for s in ["chunk", id.as_str()] {
            expected.push(0xa0 | s.len() as u8);
            expected.extend_from_slice(s.as_bytes());
        }
        assert_eq!(bytes, &expected);
    }

    #[tokio::test]
    async fn only_configured_levels_are_queued_and_a_full_queue_drops() {
        let publisher = FluentPublisher::start(PublisherConfig {
            log_levels: vec!["failure".into()],
            buffer_records: 1,
            port: 1, // nothing listens: the sender keeps retrying its first batch
            max_retries: 100,
            ..PublisherConfig::default()
        })
        .unwrap();
        publisher.offer("c", &entry(Level::Success));
        assert_eq!(publisher.dropped(), 0, "success is not published");
        for _ in 0..5 {
            publisher.offer("c", &entry(Level::Failure));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(publisher.dropped() >= 3, "{}", publisher.dropped());
    }

    #[tokio::test]
    async fn headers_and_payload_are_published_only_when_configured() {
        let mut failure = entry(Level::Failure);
        failure.message = format!(
            "Got exception <json.invalid>.{}",
            crate::monitoring::logs::message_context(&ferrule_protocol::ExternalMessage::text(
                "secret"
            ))
        );
        let message = |config: PublisherConfig| {
            let record = FluentPublisher::start(config)
                .unwrap()
                .record("c", &failure)
                .unwrap();
            record
                .fields
                .into_iter()
                .find(|(k, _)| *k == "message")
                .unwrap()
                .1
        };
        assert_eq!(
            message(PublisherConfig::default()),
            "Got exception <json.invalid>."
        );
        assert_eq!(
            message(PublisherConfig {
                log_headers_and_payload: true,
                ..PublisherConfig::default()
            }),
            failure.message
        );
        assert!(failure.message.ends_with("Message payload: secret"));
    }
}

#[cfg(test)]
mod timeout_tests {
    use super::*;

    /// A receiver that takes TCP connections and reads, and never answers.
    async fn mute_receiver() -> (u16, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut buf = [0u8; 1024];
                    while socket.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                });
            }
        });
        (port, task)
    }

    fn config(port: u16) -> PublisherConfig {
        PublisherConfig {
            host: "127.0.0.1".into(),
            port,
            connection_timeout_ms: 200,
            read_timeout_ms: 200,
            ..PublisherConfig::default()
        }
    }

    #[tokio::test]
    async fn an_unacknowledged_chunk_fails_after_the_read_timeout() {
        let (port, task) = mute_receiver().await;
        let endpoint = Endpoint::of(&config(port)).unwrap();
        let mut stream = endpoint.connect().await.unwrap();
        let messages = vec![(Some("chunk-1".to_string()), vec![0x90])];
        let started = Instant::now();
        let e = deliver(&mut stream, &messages, endpoint.read_timeout)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        task.abort();
    }

    #[tokio::test]
    async fn a_tls_handshake_that_gets_no_answer_fails_after_the_connection_timeout() {
        let (port, task) = mute_receiver().await;
        let endpoint = Endpoint::of(&PublisherConfig {
            ssl_enabled: true,
            ..config(port)
        })
        .unwrap();
        let e = match endpoint.connect().await {
            Ok(_) => panic!("a receiver that does not speak TLS was taken"),
            Err(e) => e,
        };
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        task.abort();
    }

    #[test]
    fn an_unreadable_ca_file_is_refused_at_start() {
        let e = Endpoint::of(&PublisherConfig {
            ssl_enabled: true,
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..PublisherConfig::default()
        })
        .err()
        .unwrap();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
