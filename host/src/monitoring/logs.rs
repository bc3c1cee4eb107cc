//! Connection logs (spec §3.3): bounded ring buffers of success and failure entries per
//! category, type and address, a byte budget over all of them, and the enabled window.

use crate::model::record::timestamp;
use chrono::{DateTime, Duration, Utc};
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Source,
    Target,
    Response,
    Connection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Success,
    Failure,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub correlation_id: String,
    #[serde(serialize_with = "ser_time")]
    pub timestamp: DateTime<Utc>,
    pub category: Category,
    /// `consumed`, `dispatched`, `filtered`, `mapped`, `dropped`, `enforced`, `published`,
    /// `acknowledged`, `throttled` or `other`.
    #[serde(rename = "type")]
    pub log_type: &'static str,
    pub level: Level,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
}

fn ser_time<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&timestamp(t))
}

impl LogEntry {
    fn size(&self) -> usize {
        self.correlation_id.len()
            + self.message.len()
            + self.address.as_ref().map_or(0, String::len)
            + self.entity_id.as_ref().map_or(0, String::len)
            + 64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, rename_all = "snake_case", deny_unknown_fields)]
pub struct LogLimits {
    pub success_capacity: usize,
    pub failure_capacity: usize,
    pub max_log_size_bytes: usize,
    /// How long logging stays enabled after create, open, enable or retrieval.
    pub log_duration_secs: i64,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            success_capacity: 10,
            failure_capacity: 10,
            max_log_size_bytes: 250_000,
            log_duration_secs: 24 * 3600,
        }
    }
}

type BufferKey = (Category, &'static str, Level, Option<String>);

pub struct ConnectionLogs {
    limits: LogLimits,
    enabled_since: Option<DateTime<Utc>>,
    enabled_until: Option<DateTime<Utc>>,
    buffers: IndexMap<BufferKey, VecDeque<LogEntry>>,
    bytes: usize,
    /// Where every entry is also published (Fluentd), with the connection id.
    publisher: Option<(std::sync::Arc<super::fluentd::FluentPublisher>, String)>,
    /// When a success entry of (category, type, address) was last taken (see
    /// [`ConnectionLogs::takes_success`]); looked up with a borrowed address ([`SuccessRef`])
    /// and hashed with foldhash, not SipHash: this runs several times per message.
    last_success:
        IndexMap<(Category, &'static str, String), DateTime<Utc>, foldhash::fast::RandomState>,
}

/// Looks up `last_success` keys with a borrowed address, without allocating; hashes as the key
/// does (the fields in order).
#[derive(Hash)]
struct SuccessRef<'a>(Category, &'a str, &'a str);

impl indexmap::Equivalent<(Category, &'static str, String)> for SuccessRef<'_> {
    fn equivalent(&self, key: &(Category, &'static str, String)) -> bool {
        self.0 == key.0 && self.1 == key.1 && self.2 == key.2
    }
}

/// At most one success entry per category, type and address in this time: a connection that
/// moves thousands of messages a second keeps a current sample of its successes (the buffers
/// hold the last 10 of each) without building an entry for every message.
pub const SUCCESS_SAMPLE_MICROS: i64 = 10_000;

impl ConnectionLogs {
    pub fn new(limits: LogLimits) -> ConnectionLogs {
        ConnectionLogs {
            limits,
            enabled_since: None,
            enabled_until: None,
            buffers: IndexMap::new(),
            bytes: 0,
            publisher: None,
            last_success: Default::default(),
        }
    }

    /// Whether a success entry of `category`/`log_type` at `address` would be kept now: logging
    /// is enabled (or entries are published) and none of the same kind was taken within
    /// [`SUCCESS_SAMPLE_MICROS`]. Callers build the entry only then; `true` counts as taken.
    pub fn takes_success(
        &mut self,
        category: Category,
        log_type: &'static str,
        address: &str,
        now: DateTime<Utc>,
    ) -> bool {
        let wanted =
            self.publisher.is_some() || (self.is_enabled(now) && self.limits.success_capacity > 0);
        if !wanted {
            return false;
        }
        let key = SuccessRef(category, log_type, address);
        match self.last_success.get_mut(&key) {
            Some(last) => {
                if (now - *last).num_microseconds().unwrap_or(i64::MAX) < SUCCESS_SAMPLE_MICROS {
                    return false;
                }
                *last = now;
            }
            None => {
                self.last_success
                    .insert((category, log_type, address.to_string()), now);
            }
        }
        true
    }

    /// Also publishes every entry of `connection_id` to `publisher`, whether or not logging is
    /// enabled for the log API.
    pub fn publish_to(
        mut self,
        publisher: Option<std::sync::Arc<super::fluentd::FluentPublisher>>,
        connection_id: &str,
    ) -> ConnectionLogs {
        self.publisher = publisher.map(|p| (p, connection_id.to_string()));
        self
    }

    pub fn is_enabled(&self, now: DateTime<Utc>) -> bool {
        self.enabled_until.is_some_and(|until| until > now)
    }

    /// Enables logging for the configured duration from `now`.
    pub fn enable(&mut self, now: DateTime<Utc>) {
        if !self.is_enabled(now) {
            self.enabled_since = Some(now);
        }
        self.enabled_until = Some(now + Duration::seconds(self.limits.log_duration_secs));
    }

    pub fn disable(&mut self) {
        self.enabled_since = None;
        self.enabled_until = None;
    }

    pub fn clear(&mut self) {
        self.buffers.clear();
        self.bytes = 0;
    }

    /// Adds an entry while logging is enabled; the oldest entries make room.
    pub fn log(&mut self, entry: LogEntry) {
        if let Some((publisher, connection_id)) = &self.publisher {
            publisher.offer(connection_id, &entry);
        }
        if !self.is_enabled(entry.timestamp) {
            return;
        }
        let capacity = match entry.level {
            Level::Success => self.limits.success_capacity,
            Level::Failure => self.limits.failure_capacity,
        };
        if capacity == 0 || entry.size() > self.limits.max_log_size_bytes {
            return;
        }
        self.bytes += entry.size();
        let key = (
            entry.category,
            entry.log_type,
            entry.level,
            entry.address.clone(),
        );
        let buffer = self.buffers.entry(key).or_default();
        buffer.push_back(entry);
        if buffer.len() > capacity
            && let Some(old) = buffer.pop_front()
        {
            self.bytes -= old.size();
        }
        while self.bytes > self.limits.max_log_size_bytes {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .buffers
            .iter()
            .filter_map(|(k, b)| b.front().map(|e| (k.clone(), e.timestamp)))
            .min_by_key(|(_, t)| *t)
            .map(|(k, _)| k);
        if let Some(key) = oldest
            && let Some(old) = self.buffers.get_mut(&key).and_then(VecDeque::pop_front)
        {
            self.bytes -= old.size();
        }
    }

    /// The logs response; retrieving moves the end of an enabled window to now + duration.
    pub fn retrieve(&mut self, connection_id: &str, now: DateTime<Utc>) -> Value {
        if self.is_enabled(now) {
            self.enable(now);
        } else {
            self.disable();
        }
        let mut entries: Vec<&LogEntry> = self.buffers.values().flatten().collect();
        entries.sort_by_key(|e| e.timestamp);
        json!({
            "connectionId": connection_id,
            "connectionLogs": entries,
            "enabledSince": self.enabled_since.as_ref().map(timestamp),
            "enabledUntil": self.enabled_until.as_ref().map(timestamp),
        })
    }
}

/// Where the headers and payload of an external message start in a log entry's message.
pub const MESSAGE_CONTEXT: &str = " - Message headers: [";

/// The most of a payload a log entry shows.
const LOGGED_PAYLOAD_CHARS: usize = 1000;

/// What Ditto appends to a log entry about an external message: ` - Message headers: [k=v, ...]
/// - Message payload: ...` (text up to 1,000 characters; bytes that are not UTF-8 by their size).
pub fn message_context(message: &ferrule_protocol::ExternalMessage) -> String {
    let headers: Vec<String> = message
        .headers
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                ferrule_protocol::headers::value_to_header_string(v)
            )
        })
        .collect();
    let payload = match message.payload_text() {
        Some(text) if text.chars().count() > LOGGED_PAYLOAD_CHARS => {
            let shown: String = text.chars().take(LOGGED_PAYLOAD_CHARS).collect();
            format!("{shown}... ({} bytes in all)", text.len())
        }
        Some(text) => text.to_string(),
        None => format!("<{} bytes, not UTF-8 text>", message.payload().len()),
    };
    format!(
        "{MESSAGE_CONTEXT}{}] - Message payload: {payload}",
        headers.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: DateTime<Utc>, level: Level, message: &str) -> LogEntry {
        LogEntry {
            correlation_id: "<not-provided>".into(),
            timestamp: at,
            category: Category::Source,
            log_type: "consumed",
            level,
            message: message.into(),
            address: Some("q".into()),
            entity_type: None,
            entity_id: None,
        }
    }

    #[test]
    fn entries_are_bounded_and_ordered() {
        let now = Utc::now();
        let mut logs = ConnectionLogs::new(LogLimits::default());
        logs.log(entry(now, Level::Success, "dropped while disabled"));
        logs.enable(now);
        for i in 0..15 {
            logs.log(entry(
                now + Duration::milliseconds(i),
                Level::Success,
                &format!("s{i}"),
            ));
        }
        logs.log(entry(now, Level::Failure, "f"));
        let v = logs.retrieve("c", now);
        let list = v["connectionLogs"].as_array().unwrap();
        assert_eq!(list.len(), 11);
        assert_eq!(list[0]["message"], "f");
        assert_eq!(list[1]["message"], "s5");
        assert_eq!(list[10]["message"], "s14");
        assert_eq!(list[1]["correlationId"], "<not-provided>");
        assert_eq!(list[1]["level"], "success");
        assert_eq!(list[1]["category"], "source");
        assert_eq!(list[1]["type"], "consumed");
        logs.clear();
        assert_eq!(logs.retrieve("c", now)["connectionLogs"], json!([]));
    }

    #[test]
    fn success_entries_are_sampled_per_kind_and_address() {
        let t0 = Utc::now();
        let mut logs = ConnectionLogs::new(LogLimits::default());
        let takes = |logs: &mut ConnectionLogs, kind: &'static str, address: &str, ms: i64| {
            logs.takes_success(
                Category::Source,
                kind,
                address,
                t0 + Duration::milliseconds(ms),
            )
        };
        assert!(!takes(&mut logs, "consumed", "a", 0), "logging is disabled");
        logs.enable(t0);
        assert!(takes(&mut logs, "consumed", "a", 0));
        assert!(
            !takes(&mut logs, "consumed", "a", 5),
            "within the sample time"
        );
        assert!(takes(&mut logs, "mapped", "a", 5), "another type");
        assert!(takes(&mut logs, "consumed", "b", 5), "another address");
        assert!(takes(&mut logs, "consumed", "a", 10));
        let none = LogLimits {
            success_capacity: 0,
            ..LogLimits::default()
        };
        let mut logs = ConnectionLogs::new(none);
        logs.enable(t0);
        assert!(!takes(&mut logs, "consumed", "a", 0), "no success kept");
    }

    #[test]
    fn byte_budget_evicts_oldest() {
        let now = Utc::now();
        let limits = LogLimits {
            max_log_size_bytes: 1000,
            ..LogLimits::default()
        };
        let mut logs = ConnectionLogs::new(limits);
        logs.enable(now);
        for i in 0..10 {
            let mut e = entry(now + Duration::seconds(i), Level::Success, &"x".repeat(200));
            e.log_type = if i % 2 == 0 { "consumed" } else { "mapped" };
            logs.log(e);
        }
        let v = logs.retrieve("c", now);
        let list = v["connectionLogs"].as_array().unwrap();
        assert!(list.len() <= 4, "{}", list.len());
        assert_eq!(
            list.last().unwrap()["timestamp"],
            timestamp(&(now + Duration::seconds(9)))
        );
    }

    #[test]
    fn window_extends_on_retrieval_only_while_enabled() {
        let t0 = Utc::now();
        let mut logs = ConnectionLogs::new(LogLimits::default());
        let v = logs.retrieve("c", t0);
        assert_eq!(v["enabledSince"], Value::Null);
        logs.enable(t0);
        let later = t0 + Duration::hours(2);
        let v = logs.retrieve("c", later);
        assert_eq!(v["enabledSince"], timestamp(&t0));
        assert_eq!(v["enabledUntil"], timestamp(&(later + Duration::hours(24))));
        let v = logs.retrieve("c", later + Duration::hours(25));
        assert_eq!(v["enabledUntil"], Value::Null);
    }

    #[test]
    fn a_message_in_a_log_entry_shows_its_headers_and_payload() {
        let mut m = ferrule_protocol::ExternalMessage::text(r#"{"thingId": "fan:octopus"}"#);
        m.headers.insert("mqtt.qos", "0");
        m.headers.insert("mqtt.topic", "/test/fan01");
        assert_eq!(
            message_context(&m),
            r#" - Message headers: [mqtt.qos=0, mqtt.topic=/test/fan01] - Message payload: {"thingId": "fan:octopus"}"#
        );
        let long = ferrule_protocol::ExternalMessage::text("é".repeat(1500));
        let shown = message_context(&long);
        assert!(shown.ends_with("... (3000 bytes in all)"), "{shown}");
        assert_eq!(shown.matches('é').count(), 1000);
        let binary = ferrule_protocol::ExternalMessage::bytes(vec![0xff, 0x00, 0x01]);
        assert_eq!(
            message_context(&binary),
            " - Message headers: [] - Message payload: <3 bytes, not UTF-8 text>"
        );
    }
}
