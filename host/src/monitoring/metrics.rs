//! Connection metrics (spec §3.2): per address and direction, per metric type, success and
//! failure counts over the last minute, hour and day.

use super::prometheus::ConnectionCounters;
use super::window::{WindowCounter, WindowCounts};
use crate::model::record::timestamp;
use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde_json::{Map, Value, json};
use std::sync::{Arc, RwLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Consumed,
    Dispatched,
    Filtered,
    Mapped,
    Dropped,
    Enforced,
    Published,
    Acknowledged,
    Throttled,
    /// A failure that fits no other type; Ditto counts an outbound mapper's exception here.
    Other,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Consumed => "consumed",
            MetricType::Dispatched => "dispatched",
            MetricType::Filtered => "filtered",
            MetricType::Mapped => "mapped",
            MetricType::Dropped => "dropped",
            MetricType::Enforced => "enforced",
            MetricType::Published => "published",
            MetricType::Acknowledged => "acknowledged",
            MetricType::Throttled => "throttled",
            MetricType::Other => "other",
        }
    }
}

/// The metric types reported for each direction, in Ditto's order.
pub const INBOUND: [MetricType; 7] = [
    MetricType::Consumed,
    MetricType::Mapped,
    MetricType::Dropped,
    MetricType::Enforced,
    MetricType::Acknowledged,
    MetricType::Throttled,
    MetricType::Other,
];
pub const OUTBOUND: [MetricType; 7] = [
    MetricType::Dispatched,
    MetricType::Filtered,
    MetricType::Mapped,
    MetricType::Dropped,
    MetricType::Published,
    MetricType::Acknowledged,
    MetricType::Other,
];
/// The pseudo-address of responses published through reply targets.
pub const RESPONSES: &str = "_responses";
const RESPONSE_TYPES: [MetricType; 5] = [
    MetricType::Dispatched,
    MetricType::Mapped,
    MetricType::Dropped,
    MetricType::Published,
    MetricType::Other,
];

/// Looks up `(Direction, String)` keys with a borrowed address, without allocating.
#[derive(Hash)]
struct KeyRef<'a>(Direction, &'a str);

impl indexmap::Equivalent<(Direction, String)> for KeyRef<'_> {
    fn equivalent(&self, key: &(Direction, String)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

/// Success and failure counters of one metric type at one address.
#[derive(Default)]
struct Pair {
    success: WindowCounter,
    failure: WindowCounter,
}

/// The counters of one address: one pair per metric type of its direction, in Ditto's order.
/// Found by a scan of at most 7 types: no hashing per count.
struct AddressCounters {
    types: &'static [MetricType],
    pairs: Box<[Pair]>,
}

impl AddressCounters {
    fn get(&self, metric: MetricType) -> Option<&Pair> {
        let i = self.types.iter().position(|t| *t == metric)?;
        self.pairs.get(i)
    }

    fn iter(&self) -> impl Iterator<Item = (&MetricType, &Pair)> {
        self.types.iter().zip(self.pairs.iter())
    }

    fn values(&self) -> impl Iterator<Item = &Pair> {
        self.pairs.iter()
    }
}

/// Addresses hashed with foldhash: they come from the connection's configuration, and SipHash
/// cost more than the rest of a count.
type Addresses = IndexMap<(Direction, String), Arc<AddressCounters>, foldhash::fast::RandomState>;

/// All counters of one connection. Addresses are registered from the connection's sources and
/// targets; counting at an unknown address registers it.
#[derive(Default)]
pub struct ConnectionMetrics {
    addresses: RwLock<Addresses>,
    /// The connection's Prometheus counters, when Prometheus metrics are installed.
    prometheus: Option<ConnectionCounters>,
}

fn counters_for(types: &'static [MetricType]) -> Arc<AddressCounters> {
    Arc::new(AddressCounters {
        types,
        pairs: types.iter().map(|_| Pair::default()).collect(),
    })
}

impl ConnectionMetrics {
    pub fn new(
        source_addresses: impl IntoIterator<Item = String>,
        target_addresses: impl IntoIterator<Item = String>,
    ) -> ConnectionMetrics {
        let mut map = Addresses::default();
        for a in source_addresses {
            map.insert((Direction::Inbound, a), counters_for(&INBOUND));
        }
        for a in target_addresses {
            map.insert((Direction::Outbound, a), counters_for(&OUTBOUND));
        }
        map.insert(
            (Direction::Outbound, RESPONSES.to_string()),
            counters_for(&RESPONSE_TYPES),
        );
        ConnectionMetrics {
            addresses: RwLock::new(map),
            prometheus: None,
        }
    }

    /// Counters for a new configuration of the same connection (modified, opened, closed): an
    /// address it keeps goes on with what was counted there, as only `resetConnectionMetrics`
    /// zeroes a connection's metrics; a new address starts at 0, a dropped one is gone.
    pub fn continuing(
        previous: &ConnectionMetrics,
        source_addresses: impl IntoIterator<Item = String>,
        target_addresses: impl IntoIterator<Item = String>,
    ) -> ConnectionMetrics {
        let mut next = ConnectionMetrics::new(source_addresses, target_addresses);
        let old = previous.addresses.read().unwrap_or_else(|e| e.into_inner());
        for (key, counters) in next
            .addresses
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
        {
            if let Some(kept) = old.get(key) {
                *counters = kept.clone();
            }
        }
        drop(old);
        next
    }

    /// Also counts every recorded message in the process's Prometheus counters of
    /// `connection_id` (when installed).
    pub fn exported_as(mut self, connection_id: &str) -> ConnectionMetrics {
        self.prometheus = super::prometheus::global().map(|m| m.connection(connection_id));
        self
    }

    pub fn record(
        &self,
        direction: Direction,
        address: &str,
        metric: MetricType,
        success: bool,
        at: DateTime<Utc>,
    ) {
        let existing = self
            .addresses
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&KeyRef(direction, address))
            .cloned();
        let counters = existing.unwrap_or_else(|| {
            let types: &'static [MetricType] = match direction {
                Direction::Inbound => &INBOUND,
                Direction::Outbound => &OUTBOUND,
            };
            self.addresses
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .entry((direction, address.to_string()))
                .or_insert_with(|| counters_for(types))
                .clone()
        });
        if let Some(pair) = counters.get(metric) {
            let counter = if success {
                &pair.success
            } else {
                &pair.failure
            };
            counter.record(at);
            if let Some(p) = &self.prometheus {
                p.inc(direction, metric, success);
            }
        }
    }

    pub fn reset(&self) {
        for counters in self
            .addresses
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            for pair in counters.values() {
                pair.success.reset();
                pair.failure.reset();
            }
        }
    }

    /// The `connectionMetrics`, `sourceMetrics`, `targetMetrics` and `containsFailures` members.
    pub fn to_json(&self, now: DateTime<Utc>) -> Map<String, Value> {
        let addresses = self.addresses.read().unwrap_or_else(|e| e.into_inner());
        let mut totals: IndexMap<(Direction, MetricType), [WindowCounts; 2]> = IndexMap::new();
        for t in INBOUND {
            totals.insert((Direction::Inbound, t), Default::default());
        }
        for t in OUTBOUND {
            totals.insert((Direction::Outbound, t), Default::default());
        }
        let mut contains_failures = false;
        let mut source_metrics = Map::new();
        let mut target_metrics = Map::new();
        for ((direction, address), counters) in addresses.iter() {
            let mut per_type = Map::new();
            for (metric, pair) in counters.iter() {
                let success = pair.success.counts(now);
                let failure = pair.failure.counts(now);
                contains_failures |= failure.last_day > 0;
                if let Some(total) = totals.get_mut(&(*direction, *metric)) {
                    total[0].add(&success);
                    total[1].add(&failure);
                }
                per_type.insert(metric.as_str().into(), pair_json(&success, &failure));
            }
            let into = match direction {
                Direction::Inbound => &mut source_metrics,
                Direction::Outbound => &mut target_metrics,
            };
            into.insert(address.clone(), Value::Object(per_type));
        }
        let direction_json = |d: Direction| {
            let mut m = Map::new();
            for ((dir, metric), [s, f]) in &totals {
                if *dir == d {
                    m.insert(metric.as_str().into(), pair_json(s, f));
                }
            }
            Value::Object(m)
        };
        let mut out = Map::new();
        out.insert("containsFailures".into(), Value::Bool(contains_failures));
        out.insert(
            "connectionMetrics".into(),
            json!({"inbound": direction_json(Direction::Inbound),
                   "outbound": direction_json(Direction::Outbound)}),
        );
        out.insert(
            "sourceMetrics".into(),
            json!({"addressMetrics": source_metrics}),
        );
        out.insert(
            "targetMetrics".into(),
            json!({"addressMetrics": target_metrics}),
        );
        out
    }
}

fn bucket(c: &WindowCounts) -> Value {
    json!({
        "PT1M": c.last_minute,
        "PT1H": c.last_hour,
        "PT24H": c.last_day,
        "lastMessageAt": c.last_at.as_ref().map(timestamp),
    })
}

fn pair_json(success: &WindowCounts, failure: &WindowCounts) -> Value {
    json!({"success": bucket(success), "failure": bucket(failure)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_counts_and_reset() {
        let m = ConnectionMetrics::new(["q1".to_string()], ["ex/key".to_string()]);
        let now = Utc::now();
        let zero = m.to_json(now);
        assert_eq!(zero["containsFailures"], false);
        assert_eq!(
            zero["connectionMetrics"]["inbound"]["consumed"]["success"],
            json!({"PT1M": 0, "PT1H": 0, "PT24H": 0, "lastMessageAt": null})
        );
        assert!(zero["connectionMetrics"]["outbound"]["published"]["failure"].is_object());
        assert!(zero["sourceMetrics"]["addressMetrics"]["q1"]["enforced"].is_object());
        assert!(zero["targetMetrics"]["addressMetrics"]["ex/key"]["filtered"].is_object());
        assert!(zero["targetMetrics"]["addressMetrics"]["_responses"]["published"].is_object());

        m.record(Direction::Inbound, "q1", MetricType::Consumed, true, now);
        m.record(Direction::Inbound, "q2", MetricType::Consumed, true, now);
        m.record(
            Direction::Outbound,
            "ex/key",
            MetricType::Published,
            false,
            now,
        );
        let v = m.to_json(now);
        assert_eq!(
            v["connectionMetrics"]["inbound"]["consumed"]["success"]["PT1M"],
            2
        );
        assert_eq!(
            v["sourceMetrics"]["addressMetrics"]["q2"]["consumed"]["success"]["PT24H"],
            1
        );
        assert_eq!(v["containsFailures"], true);
        assert_eq!(
            v["connectionMetrics"]["outbound"]["published"]["failure"]["lastMessageAt"],
            timestamp(&now)
        );
        // A new configuration keeps the counts of the addresses it keeps.
        let next = ConnectionMetrics::continuing(&m, ["q2".to_string()], ["other".to_string()]);
        let v = next.to_json(now);
        assert_eq!(
            v["sourceMetrics"]["addressMetrics"]["q2"]["consumed"]["success"]["PT24H"],
            1
        );
        assert!(
            v["sourceMetrics"]["addressMetrics"]["q1"].is_null(),
            "dropped"
        );
        assert_eq!(
            v["targetMetrics"]["addressMetrics"]["other"]["published"]["failure"]["PT24H"], 0,
            "new"
        );
        assert_eq!(
            v["connectionMetrics"]["inbound"]["consumed"]["success"]["PT1M"],
            1
        );
        m.reset();
        assert_eq!(m.to_json(now), {
            let fresh = ConnectionMetrics::new(["q1".to_string()], ["ex/key".to_string()]);
            fresh.record(Direction::Inbound, "q2", MetricType::Consumed, true, now);
            fresh.reset();
            fresh.to_json(now)
        });
    }
}
