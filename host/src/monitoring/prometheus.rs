//! Prometheus metrics of the whole host, scraped at `GET /metrics` (`prometheus-client`, the
//! official Rust client).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `ferrule_connection_messages_total` | counter | `connection`, `direction`, `type`, `outcome` |
//! | `ferrule_connection_reconnects_total` | counter | `connection` |
//! | `ferrule_connections_open` | gauge | – |
//! | `ferrule_mapper_calls_total` | counter | `engine`, `direction`, `outcome` |
//! | `ferrule_mapper_duration_seconds` | histogram | `engine`, `direction`, `outcome` |
//! | `ferrule_http_requests_total` | counter | `method`, `route`, `status` |
//! | `ferrule_http_request_duration_seconds` | histogram | `method`, `route`, `status` |
//!
//! The host installs one [`Metrics`] per process at start (when `[prometheus] enabled`); the
//! hooks ask [`global`] and do nothing when it is not installed.
//!
//! **The message path stays cheap.** Each connection's [`ConnectionCounters`] resolves the series
//! of a (direction, type, outcome) once, on its first message, and keeps the counter handle in a
//! slot of a fixed array: counting a message is an index computation, one atomic load and one
//! atomic add, with no lock, no hashing and no allocation. Mapper series are cached the same way
//! per mapper of a pipeline ([`MapperCalls`]). A scrape reads the atomics under the families'
//! read locks, which the message path never takes after the first message of a series.

use super::metrics::{Direction, MetricType};
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `[prometheus]` in the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Serve `GET /metrics` and count. When false, nothing is counted and `/metrics` is a 404.
    pub enabled: bool,
    /// Whether `GET /metrics` needs the devops credentials.
    pub require_auth: bool,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            enabled: true,
            require_auth: false,
        }
    }
}

/// The Prometheus text format 0.0.4, answered by default.
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// OpenMetrics 1.0, answered when the scraper's `Accept` asks for it.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The `route` label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

const DIRECTIONS: usize = 2;
/// `MetricType`'s variants; `Other` is its last.
const TYPES: usize = MetricType::Other as usize + 1;
const OUTCOMES: usize = 2;
const MESSAGE_SLOTS: usize = DIRECTIONS * TYPES * OUTCOMES;

fn direction_label(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}

fn outcome_label(success: bool) -> &'static str {
    if success { "success" } else { "failure" }
}

fn message_slot(direction: Direction, metric: MetricType, success: bool) -> usize {
    ((direction as usize) * TYPES + metric as usize) * OUTCOMES + success as usize
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MessageLabels {
    connection: String,
    direction: &'static str,
    metric: &'static str,
    outcome: &'static str,
}

impl EncodeLabelSet for MessageLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        ("connection", self.connection.as_str()).encode(encoder.encode_label())?;
        ("direction", self.direction).encode(encoder.encode_label())?;
        ("type", self.metric).encode(encoder.encode_label())?;
        ("outcome", self.outcome).encode(encoder.encode_label())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ConnectionLabel {
    connection: String,
}

impl EncodeLabelSet for ConnectionLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        ("connection", self.connection.as_str()).encode(encoder.encode_label())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MapperLabels {
    engine: String,
    direction: &'static str,
    outcome: &'static str,
}

impl EncodeLabelSet for MapperLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        ("engine", self.engine.as_str()).encode(encoder.encode_label())?;
        ("direction", self.direction).encode(encoder.encode_label())?;
        ("outcome", self.outcome).encode(encoder.encode_label())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: u16,
}

impl EncodeLabelSet for HttpLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        ("method", self.method).encode(encoder.encode_label())?;
        ("route", self.route.as_str()).encode(encoder.encode_label())?;
        ("status", self.status).encode(encoder.encode_label())
    }
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

/// 10 µs to 5 s: a built-in mapper takes microseconds, a script up to its time limit.
fn mapper_histogram() -> Histogram {
    Histogram::new([
        0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01,
        0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ])
}

/// 0.5 ms to 10 s: reads from memory, writes waiting for an fsync or a broker.
fn http_histogram() -> Histogram {
    Histogram::new([
        0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// The registry and every metric family of the host.
pub struct Metrics {
    registry: Registry,
    messages: Family<MessageLabels, Counter>,
    reconnects: Family<ConnectionLabel, Counter>,
    open_connections: Gauge,
    mapper_calls: Family<MapperLabels, Counter>,
    mapper_duration: HistogramFamily<MapperLabels>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<HttpLabels>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

/// Installs the process's metrics (once; later calls return the same).
pub fn install() -> &'static Metrics {
    GLOBAL.get_or_init(Metrics::new)
}

/// The process's metrics, when installed.
pub fn global() -> Option<&'static Metrics> {
    GLOBAL.get()
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let messages = Family::default();
        registry.register(
            "ferrule_connection_messages",
            "Messages counted by connections (the connection metrics), by direction, metric type and outcome",
            messages.clone(),
        );
        let reconnects = Family::default();
        registry.register(
            "ferrule_connection_reconnects",
            "Reconnect attempts of connections after a failure",
            reconnects.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "ferrule_connections_open",
            "Connections whose live status is open",
            open_connections.clone(),
        );
        let mapper_calls = Family::default();
        registry.register(
            "ferrule_mapper_calls",
            "Payload mapper calls by engine, direction and outcome",
            mapper_calls.clone(),
        );
        let mapper_duration: HistogramFamily<MapperLabels> =
            Family::new_with_constructor(mapper_histogram);
        registry.register_with_unit(
            "ferrule_mapper_duration",
            "Duration of payload mapper calls",
            Unit::Seconds,
            mapper_duration.clone(),
        );
        let http_requests = Family::default();
        registry.register(
            "ferrule_http_requests",
            "HTTP requests by method, matched route and status",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily<HttpLabels> =
            Family::new_with_constructor(http_histogram);
        registry.register_with_unit(
            "ferrule_http_request_duration",
            "Duration of HTTP requests until the response head",
            Unit::Seconds,
            http_duration.clone(),
        );
        Metrics {
            registry,
            messages,
            reconnects,
            open_connections,
            mapper_calls,
            mapper_duration,
            http_requests,
            http_duration,
        }
    }

    /// The message counters of one connection (series are created on first use).
    pub fn connection(&self, connection_id: &str) -> ConnectionCounters {
        ConnectionCounters {
            family: self.messages.clone(),
            connection: connection_id.to_string(),
            slots: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// The reconnect counter of one connection.
    pub fn reconnects(&self, connection_id: &str) -> Counter {
        self.reconnects.get_or_create_owned(&ConnectionLabel {
            connection: connection_id.to_string(),
        })
    }

    /// Removes the series of a deleted connection.
    pub fn forget_connection(&self, connection_id: &str) {
        for direction in [Direction::Inbound, Direction::Outbound] {
            for metric in ALL_TYPES {
                for success in [true, false] {
                    self.messages.remove(&MessageLabels {
                        connection: connection_id.to_string(),
                        direction: direction_label(direction),
                        metric: metric.as_str(),
                        outcome: outcome_label(success),
                    });
                }
            }
        }
        self.reconnects.remove(&ConnectionLabel {
            connection: connection_id.to_string(),
        });
    }

    /// The call counter and histogram of one mapper of a pipeline.
    pub fn mapper(&self, engine: &str) -> MapperCalls {
        MapperCalls {
            calls: self.mapper_calls.clone(),
            duration: self.mapper_duration.clone(),
            engine: engine.to_string(),
            slots: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Counts one HTTP request.
    pub fn observe_http(&self, method: &Method, route: &str, status: u16, elapsed: Duration) {
        let labels = HttpLabels {
            method: method_label(method),
            route: route.to_string(),
            status,
        };
        self.http_requests.get_or_create(&labels).inc();
        self.http_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// The exposition: the Prometheus text format 0.0.4, or OpenMetrics 1.0 with `# EOF`.
    pub fn encode(&self, open_connections: usize, openmetrics: bool) -> String {
        self.open_connections
            .set(i64::try_from(open_connections).unwrap_or(i64::MAX));
        let mut out = String::with_capacity(16 * 1024);
        let encoded = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        if let Err(e) = encoded {
            // Writing into a String does not fail; say so should it ever.
            let _ = writeln!(out, "# encoding failed: {e}");
        }
        out
    }
}

const ALL_TYPES: [MetricType; TYPES] = [
    MetricType::Consumed,
    MetricType::Dispatched,
    MetricType::Filtered,
    MetricType::Mapped,
    MetricType::Dropped,
    MetricType::Enforced,
    MetricType::Published,
    MetricType::Acknowledged,
    MetricType::Throttled,
    MetricType::Other,
];

/// Whether the scraper asked for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The message counters of one connection: one lazily resolved counter handle per
/// (direction, type, outcome).
pub struct ConnectionCounters {
    family: Family<MessageLabels, Counter>,
    connection: String,
    slots: [OnceLock<Counter>; MESSAGE_SLOTS],
}

impl ConnectionCounters {
    /// Counts one message: after the first message of a series, one atomic load and one add.
    pub fn inc(&self, direction: Direction, metric: MetricType, success: bool) {
        self.slots[message_slot(direction, metric, success)]
            .get_or_init(|| {
                self.family.get_or_create_owned(&MessageLabels {
                    connection: self.connection.clone(),
                    direction: direction_label(direction),
                    metric: metric.as_str(),
                    outcome: outcome_label(success),
                })
            })
            .inc();
    }
}

/// The call counter and duration histogram of one mapper, per direction and outcome.
pub struct MapperCalls {
    calls: Family<MapperLabels, Counter>,
    duration: HistogramFamily<MapperLabels>,
    engine: String,
    slots: [OnceLock<(Counter, Histogram)>; DIRECTIONS * OUTCOMES],
}

impl MapperCalls {
    pub fn observe(&self, direction: Direction, success: bool, elapsed: Duration) {
        let (calls, duration) = self.slots[(direction as usize) * OUTCOMES + success as usize]
            .get_or_init(|| {
                let labels = MapperLabels {
                    engine: self.engine.clone(),
                    direction: direction_label(direction),
                    outcome: outcome_label(success),
                };
                (
                    self.calls.get_or_create_owned(&labels),
                    self.duration.get_or_create_owned(&labels),
                )
            });
        calls.inc();
        duration.observe(elapsed.as_secs_f64());
    }
}

/// Middleware: counts every request by method, matched route and status, and its duration.
pub async fn track_http(
    State(metrics): State<&'static Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.observe_http(
        &method,
        route.as_ref().map_or(UNMATCHED_ROUTE, |r| r.as_str()),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn message_slots_are_distinct_and_in_range() {
        let mut seen = std::collections::HashSet::new();
        for d in [Direction::Inbound, Direction::Outbound] {
            for t in ALL_TYPES {
                for s in [true, false] {
                    let i = message_slot(d, t, s);
                    assert!(i < MESSAGE_SLOTS);
                    assert!(seen.insert(i));
                }
            }
        }
        assert_eq!(seen.len(), MESSAGE_SLOTS);
    }

    #[test]
    fn connection_counters_count_by_labels() {
        let m = Metrics::new();
        let c = m.connection("conn-1");
        c.inc(Direction::Inbound, MetricType::Consumed, true);
        c.inc(Direction::Inbound, MetricType::Consumed, true);
        c.inc(Direction::Inbound, MetricType::Mapped, false);
        // A second handle of the same connection (a modified connection) shares the series.
        m.connection("conn-1")
            .inc(Direction::Outbound, MetricType::Published, true);
        m.connection("conn-1")
            .inc(Direction::Inbound, MetricType::Consumed, true);
        let text = m.encode(0, false);
        assert!(text.contains("# TYPE ferrule_connection_messages_total counter"));
        assert_eq!(
            line(
                &text,
                r#"ferrule_connection_messages_total{connection="conn-1",direction="inbound",type="consumed",outcome="success"}"#
            ),
            Some(
                r#"ferrule_connection_messages_total{connection="conn-1",direction="inbound",type="consumed",outcome="success"} 3"#
            )
        );
        assert!(text.contains(
            r#"ferrule_connection_messages_total{connection="conn-1",direction="inbound",type="mapped",outcome="failure"} 1"#
        ));
        assert!(text.contains(
            r#"ferrule_connection_messages_total{connection="conn-1",direction="outbound",type="published",outcome="success"} 1"#
        ));
        // Only series that counted appear.
        assert!(!text.contains(r#"type="dropped""#));
        m.forget_connection("conn-1");
        assert!(!m.encode(0, false).contains("conn-1"));
    }

    #[test]
    fn reconnects_gauge_and_label_escaping() {
        let m = Metrics::new();
        m.reconnects("a\"b").inc();
        m.reconnects("a\"b").inc();
        let text = m.encode(3, false);
        assert!(text.contains(r#"ferrule_connection_reconnects_total{connection="a\"b"} 2"#));
        assert!(text.contains("ferrule_connections_open 3\n"));
    }

    #[test]
    fn mapper_calls_and_histogram() {
        let m = Metrics::new();
        let calls = m.mapper("Ditto");
        calls.observe(Direction::Inbound, true, Duration::from_micros(40));
        calls.observe(Direction::Inbound, true, Duration::from_millis(3));
        calls.observe(Direction::Outbound, false, Duration::from_micros(5));
        let text = m.encode(0, false);
        let labels = r#"engine="Ditto",direction="inbound",outcome="success""#;
        assert!(text.contains(&format!("ferrule_mapper_calls_total{{{labels}}} 2")));
        assert!(text.contains(&format!(
            "ferrule_mapper_duration_seconds_count{{{labels}}} 2"
        )));
        // 40 µs is above 25 µs and within 50 µs; 3 ms within 5 ms.
        for (le, n) in [
            ("2.5e-05", 0),
            ("5e-05", 1),
            ("0.0025", 1),
            ("0.005", 2),
            ("+Inf", 2),
        ] {
            let bucket =
                format!("ferrule_mapper_duration_seconds_bucket{{{labels},le=\"{le}\"}} {n}\n");
            assert!(text.contains(&bucket), "{bucket}");
        }
        assert!(text.contains("# TYPE ferrule_mapper_duration_seconds histogram"));
        assert!(text.contains(
            r#"ferrule_mapper_calls_total{engine="Ditto",direction="outbound",outcome="failure"} 1"#
        ));
    }

    #[test]
    fn http_requests_and_formats() {
        let m = Metrics::new();
        m.observe_http(
            &Method::GET,
            "/api/2/connections/{id}",
            200,
            Duration::from_millis(2),
        );
        m.observe_http(
            &Method::from_bytes(b"BREW").unwrap(),
            "unmatched",
            404,
            Duration::ZERO,
        );
        let text = m.encode(0, false);
        assert!(text.contains(
            r#"ferrule_http_requests_total{method="GET",route="/api/2/connections/{id}",status="200"} 1"#
        ));
        assert!(text.contains(
            r#"ferrule_http_requests_total{method="OTHER",route="unmatched",status="404"} 1"#
        ));
        assert!(text.contains("ferrule_http_request_duration_seconds_sum{"));
        assert!(!text.contains("# EOF"));
        let open = m.encode(0, true);
        assert!(open.ends_with("# EOF\n"));
        assert!(open.contains("# UNIT ferrule_http_request_duration_seconds seconds"));
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(None));
    }

    #[test]
    fn defaults() {
        let c = PrometheusConfig::default();
        assert!(c.enabled && !c.require_auth);
    }
}
