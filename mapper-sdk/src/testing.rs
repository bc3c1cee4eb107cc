//! A native test harness: run a [`Mapper`] in plain `cargo test`, the way the host runs the
//! component, without building WebAssembly.
//!
//! ```
//! use ferrule_mapper_sdk::prelude::*;
//! use ferrule_mapper_sdk::testing::Harness;
//! use serde_json::{Map, Value, json};
//!
//! struct Counter;
//! impl Mapper for Counter {
//!     fn new(_: &Map<String, Value>) -> Result<Self, MappingError> { Ok(Counter) }
//!     fn map_inbound(&self, m: &ExternalMessage) -> Result<Vec<DittoMessage>, MappingError> {
//!         log::info(format!("{} bytes", m.payload().len()));
//!         let thing = ThingId::parse("org.acme:counter")?;
//!         Ok(vec![thing.modify_attribute("count", json!(m.payload().len())).build()])
//!     }
//! }
//!
//! let mut h = Harness::<Counter>::new(json!({}))?;
//! let out = h.inbound(ExternalMessage::bytes(vec![1, 2, 3]))?;
//! assert_eq!(out[0].value, Some(json!(3)));
//! assert!(h.logged("3 bytes"));
//! # Ok::<(), MappingError>(())
//! ```
//!
//! What the harness does like the host:
//! - `configure` gets the options as JSON object text, without `module`;
//! - every message crosses the WIT records both ways (header values become strings, `value`
//!   and `extra` JSON text, `metadata` is dropped — see [`crate::wire`]), so a test sees what
//!   the host will see;
//! - more than [`MAX_OUTPUTS`] messages from one call is an error;
//! - log lines are collected (assert with [`Harness::logs`] / [`Harness::logged`]).

use crate::error::MappingError;
use crate::log::Level;
use crate::mapper::Mapper;
use crate::runtime::Runtime;
use crate::wire;
use ferrule_protocol::{DittoMessage, ExternalMessage};
use serde_json::Value;
use std::borrow::Borrow;
use std::marker::PhantomData;

/// The most messages one call may return (the host's limit).
pub const MAX_OUTPUTS: usize = 10;

/// One captured log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: Level,
    pub message: String,
}

/// The options of a `WebAssembly` mapping definition that the host reads and never passes to
/// `configure` (`ferrule_wasm::Definition`).
pub const HOST_OPTIONS: [&str; 3] = ["module", "timeoutMs", "memoryLimitMiB"];

/// A configured mapper, called the way the host calls the component.
pub struct Harness<M: Mapper> {
    runtime: Runtime,
    logs: Vec<LogLine>,
    _mapper: PhantomData<M>,
}

impl<M: Mapper> Harness<M> {
    /// Configures the mapper with `options` (a JSON object; the options the host keeps for
    /// itself, `module`, `timeoutMs` and `memoryLimitMiB`, are removed as the host removes
    /// them, so a mapper that denies unknown fields sees the same options here as there). The
    /// error is the one `configure` returns to the host.
    pub fn new(options: Value) -> Result<Harness<M>, MappingError> {
        let options = match options {
            Value::Object(mut map) => {
                for host_option in HOST_OPTIONS {
                    map.remove(host_option);
                }
                Value::Object(map)
            }
            other => other,
        };
        let mut h = Harness {
            runtime: Runtime::default(),
            logs: Vec::new(),
            _mapper: PhantomData,
        };
        let text = options.to_string();
        let (result, lines) = capture_logs(|| h.runtime.configure::<M>(&text));
        h.record(lines);
        result.map(|()| h)
    }

    /// Maps an external message inbound: 0..n Ditto Protocol messages.
    pub fn inbound(
        &mut self,
        message: impl Borrow<ExternalMessage>,
    ) -> Result<Vec<DittoMessage>, MappingError> {
        let wire_in = wire::ExternalMessage::from(message.borrow());
        let (result, lines) = capture_logs(|| self.runtime.map_inbound(wire_in));
        self.record(lines);
        let out = result?;
        check_count(out.len())?;
        out.into_iter()
            .map(|m| DittoMessage::try_from(m).map_err(MappingError::from))
            .collect()
    }

    /// Maps a Ditto Protocol message outbound: 0..n external messages.
    pub fn outbound(
        &mut self,
        message: impl Borrow<DittoMessage>,
    ) -> Result<Vec<ExternalMessage>, MappingError> {
        let wire_in = wire::DittoMessage::from(message.borrow());
        let (result, lines) = capture_logs(|| self.runtime.map_outbound(wire_in));
        self.record(lines);
        let out = result?;
        check_count(out.len())?;
        Ok(out.into_iter().map(ExternalMessage::from).collect())
    }

    /// Every line logged since the harness was made (or since [`Harness::take_logs`]).
    pub fn logs(&self) -> &[LogLine] {
        &self.logs
    }

    /// Returns the logged lines and forgets them.
    pub fn take_logs(&mut self) -> Vec<LogLine> {
        std::mem::take(&mut self.logs)
    }

    /// Whether some logged line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.logs.iter().any(|l| l.message.contains(needle))
    }

    fn record(&mut self, lines: Vec<(Level, String)>) {
        self.logs.extend(
            lines
                .into_iter()
                .map(|(level, message)| LogLine { level, message }),
        );
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, Vec<(Level, String)>) {
    crate::log::backend::capture(f)
}

#[cfg(target_arch = "wasm32")]
fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, Vec<(Level, String)>) {
    (f(), Vec::new())
}

fn check_count(n: usize) -> Result<(), MappingError> {
    if n > MAX_OUTPUTS {
        return Err(MappingError::new(format!(
            "The mapper returned {n} messages; the host accepts at most {MAX_OUTPUTS} per call."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;
    use serde_json::{Map, json};

    struct Fanout {
        n: usize,
    }

    impl Mapper for Fanout {
        fn new(options: &Map<String, Value>) -> Result<Self, MappingError> {
            crate::log::debug(format!("options {}", Value::Object(options.clone())));
            let n = options
                .get("n")
                .and_then(Value::as_u64)
                .ok_or_else(|| MappingError::invalid_options("n must be a number"))?;
            Ok(Fanout { n: n as usize })
        }

        fn map_inbound(
            &self,
            message: &ExternalMessage,
        ) -> Result<Vec<DittoMessage>, MappingError> {
            crate::log::warn("fanning out");
            let thing = ThingId::parse("a:b")?;
            let mut m = thing
                .modify_attribute("x", json!(message.text))
                .header("flag", true)
                .build();
            m.metadata = Some(json!({"lost": true}));
            Ok(vec![m; self.n])
        }
    }

    #[test]
    fn harness_calls_like_the_host() {
        let e = Harness::<Fanout>::new(json!({"module": "m"}))
            .err()
            .unwrap();
        assert_eq!(e.message, "n must be a number");
        let mut h = Harness::<Fanout>::new(
            json!({"module": "m", "timeoutMs": 50, "memoryLimitMiB": 8, "n": 2}),
        )
        .unwrap();
        assert_eq!(
            h.logs(),
            &[LogLine {
                level: Level::Debug,
                message: r#"options {"n":2}"#.into()
            }]
        );
        let out = h.inbound(ExternalMessage::text("hi")).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].value, Some(json!("hi")));
        assert_eq!(out[0].headers.get("flag"), Some(&json!(true)));
        assert_eq!(out[0].metadata, None, "metadata does not cross");
        assert!(h.logged("fanning out"));
        assert_eq!(h.take_logs().len(), 2);
        assert!(h.logs().is_empty());

        let mut h = Harness::<Fanout>::new(json!({"n": 11})).unwrap();
        let e = h.inbound(ExternalMessage::text("hi")).unwrap_err();
        assert!(e.message.contains("at most 10"), "{e}");

        // Default outbound through the harness.
        let msg = ThingId::parse("a:b")
            .unwrap()
            .modify_attribute("x", json!(1))
            .build();
        let out = h.outbound(&msg).unwrap();
        assert_eq!(out[0].content_type.as_deref(), Some(crate::CONTENT_TYPE));
    }
}
