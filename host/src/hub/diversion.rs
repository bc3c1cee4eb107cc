//! Response diversion (Ditto's `ResponseDiversionInterceptor`): the responses to the commands a
//! *diversion source* consumed are published by another connection, a *diversion target*,
//! instead of (or, with `preserve-normal-response-via-source`, besides) the source's reply
//! target.
//!
//! - A source connection has `specificConfig."is-diversion-source": "true"`; its commands carry
//!   the header `divert-response-to-connection` (from a source header mapping or a mapper) and,
//!   optionally, `divert-expected-response-types` (`response`, `error`, `nack`; default
//!   `response,error`). A response whose command carried them is diverted with the header
//!   `diverted-response-from-connection`; a response diverted once is never diverted again.
//! - A target connection has `"is-diversion-target": "true"`, targets without topics, and
//!   `authorized-connections-as-sources` (connection ids, comma separated): a response from any
//!   other connection is dropped. Its only target takes every diverted response; with several,
//!   the target at the index of the source that consumed the command does.
//! - Each open diversion target registers its targets' queues here; a diverted response enters
//!   such a queue as any routed signal does, so the target maps, header-maps, publishes, counts
//!   and logs it as its own.

use super::routing::Routed;
use crate::model::connection::ResponseType;
use crate::model::topic::comma_list;
use ferrule_protocol::DittoMessage;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

pub const DIVERT_TO: &str = "divert-response-to-connection";
pub const DIVERT_TYPES: &str = "divert-expected-response-types";
pub const DIVERTED_FROM: &str = "diverted-response-from-connection";
pub const IS_SOURCE: &str = "is-diversion-source";
pub const IS_TARGET: &str = "is-diversion-target";
pub const PRESERVE: &str = "preserve-normal-response-via-source";
pub const AUTHORIZED: &str = "authorized-connections-as-sources";

/// How long a diverted response waits for room in the target's queue.
const OFFER: Duration = Duration::from_secs(5);

/// A connection's response diversion settings, from its `specificConfig` (values are `true` when
/// they say so, ignoring case, as Java's `Boolean.parseBoolean` reads them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub is_source: bool,
    pub preserve: bool,
    /// `Some` for a diversion target: the connections it takes responses from.
    pub target_of: Option<HashSet<String>>,
}

impl Settings {
    pub fn of(specific: &indexmap::IndexMap<String, String>) -> Settings {
        let flag = |key: &str| {
            specific
                .get(key)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        };
        Settings {
            is_source: flag(IS_SOURCE),
            preserve: flag(PRESERVE),
            target_of: flag(IS_TARGET).then(|| {
                specific
                    .get(AUTHORIZED)
                    .map(|a| comma_list(a).map(str::to_string).collect())
                    .unwrap_or_default()
            }),
        }
    }
}

/// A response type's name in `divert-expected-response-types`.
pub fn response_type(name: &str) -> Option<ResponseType> {
    match name {
        "response" => Some(ResponseType::Response),
        "error" => Some(ResponseType::Error),
        "nack" => Some(ResponseType::Nack),
        _ => None,
    }
}

/// The connection a response is to be diverted to: the one its command named, when the response
/// was not diverted before and is of a type the command asked to divert.
pub fn destination(response: &DittoMessage) -> Option<String> {
    let headers = &response.headers;
    if headers.contains(DIVERTED_FROM) {
        return None;
    }
    let to = headers.get_str(DIVERT_TO)?.trim().to_string();
    if to.is_empty() {
        return None;
    }
    let expected: HashSet<ResponseType> = match headers.get_str(DIVERT_TYPES) {
        Some(types) if !types.trim().is_empty() => {
            comma_list(&types).filter_map(response_type).collect()
        }
        _ => [ResponseType::Response, ResponseType::Error].into(),
    };
    let kind = super::inbound::response_type(response);
    (expected.is_empty() || expected.contains(&kind)).then_some(to)
}

/// What became of a diverted response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diverted {
    /// In the queue of the diversion target's target at this index.
    Queued(usize),
    /// No diversion target of that id is open here.
    NotOpen,
    /// The diversion target does not list the source in `authorized-connections-as-sources`.
    NotAuthorized,
    /// The diversion target has several targets and none at the source's index.
    NoTarget,
    /// The target's queue had no room in time.
    Full,
    /// A connection does not divert to itself.
    ToItself,
}

struct Registration {
    id: u64,
    authorized: HashSet<String>,
    sinks: Vec<mpsc::Sender<Routed>>,
}

/// The open diversion targets, by connection id.
#[derive(Default)]
pub struct Diversions {
    targets: RwLock<HashMap<String, Vec<Arc<Registration>>>>,
    next: AtomicU64,
}

impl Diversions {
    /// Registers the target queues of an open diversion target; the id removes them.
    pub fn register(
        &self,
        connection_id: &str,
        authorized: HashSet<String>,
        sinks: Vec<mpsc::Sender<Routed>>,
    ) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.targets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(connection_id.to_string())
            .or_default()
            .push(Arc::new(Registration {
                id,
                authorized,
                sinks,
            }));
        id
    }

    pub fn remove(&self, connection_id: &str, id: u64) {
        let mut targets = self.targets.write().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = targets.get_mut(connection_id) {
            list.retain(|r| r.id != id);
            if list.is_empty() {
                targets.remove(connection_id);
            }
        }
    }

    /// Diverts `response` (a response to a command that source `source_index` of connection
    /// `from` consumed) to connection `to`.
    pub async fn divert(
        &self,
        from: &str,
        to: &str,
        source_index: usize,
        mut response: DittoMessage,
    ) -> Diverted {
        if from == to {
            return Diverted::ToItself;
        }
        let registration = self
            .targets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(to)
            .and_then(|list| list.first().cloned());
        let Some(registration) = registration else {
            return Diverted::NotOpen;
        };
        if !registration.authorized.contains(from) {
            return Diverted::NotAuthorized;
        }
        let index = if registration.sinks.len() == 1 {
            0
        } else {
            source_index
        };
        let Some(sink) = registration.sinks.get(index) else {
            return Diverted::NoTarget;
        };
        response
            .headers
            .insert(DIVERTED_FROM, serde_json::Value::from(from));
        let routed = Routed {
            signal: Arc::new(response),
            extra: None,
            hold: None,
        };
        match tokio::time::timeout(OFFER, sink.send(routed)).await {
            Ok(Ok(())) => Diverted::Queued(index),
            Ok(Err(_)) => Diverted::NotOpen,
            Err(_) => Diverted::Full,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn response(headers: serde_json::Value, status: u16) -> DittoMessage {
        DittoMessage::from_json_str(
            &json!({"topic": "org.acme/t/things/twin/commands/modify", "path": "/",
                "status": status, "headers": headers})
            .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn responses_are_diverted_by_their_commands_headers() {
        let to = json!({DIVERT_TO: "webhook"});
        assert_eq!(
            destination(&response(to.clone(), 204)).as_deref(),
            Some("webhook")
        );
        assert_eq!(
            destination(&response(to.clone(), 404)).as_deref(),
            Some("webhook")
        );
        assert_eq!(destination(&response(json!({}), 204)), None);
        let errors_only = json!({DIVERT_TO: "webhook", DIVERT_TYPES: "error"});
        assert_eq!(destination(&response(errors_only.clone(), 204)), None);
        assert!(destination(&response(errors_only, 400)).is_some());
        let again = json!({DIVERT_TO: "webhook", DIVERTED_FROM: "devices"});
        assert_eq!(
            destination(&response(again, 204)),
            None,
            "diverted once only"
        );
    }

    #[test]
    fn settings_come_from_the_specific_config() {
        let specific: indexmap::IndexMap<String, String> = [
            (IS_TARGET.to_string(), "TRUE".to_string()),
            (AUTHORIZED.to_string(), " a, b ,,".to_string()),
        ]
        .into();
        let s = Settings::of(&specific);
        assert!(!s.is_source);
        assert_eq!(s.target_of, Some(["a".to_string(), "b".to_string()].into()));
        assert_eq!(Settings::of(&Default::default()), Settings::default());
    }

    #[tokio::test]
    async fn a_diversion_reaches_the_authorized_targets_queue_only() {
        let d = Diversions::default();
        let r = response(json!({DIVERT_TO: "hook"}), 204);
        assert_eq!(
            d.divert("dev", "hook", 0, r.clone()).await,
            Diverted::NotOpen
        );
        let (tx0, mut rx0) = mpsc::channel(1);
        let (tx1, mut rx1) = mpsc::channel(1);
        let id = d.register("hook", ["dev".to_string()].into(), vec![tx0, tx1]);
        assert_eq!(
            d.divert("other", "hook", 0, r.clone()).await,
            Diverted::NotAuthorized
        );
        assert_eq!(
            d.divert("dev", "hook", 1, r.clone()).await,
            Diverted::Queued(1)
        );
        let got = rx1.recv().await.unwrap();
        assert_eq!(
            got.signal.headers.get_str(DIVERTED_FROM).as_deref(),
            Some("dev")
        );
        assert!(rx0.try_recv().is_err());
        assert_eq!(
            d.divert("dev", "hook", 2, r.clone()).await,
            Diverted::NoTarget
        );
        assert_eq!(
            d.divert("hook", "hook", 0, r.clone()).await,
            Diverted::ToItself
        );
        d.remove("hook", id);
        assert_eq!(d.divert("dev", "hook", 0, r).await, Diverted::NotOpen);
    }
}
