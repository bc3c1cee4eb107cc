//! Per-module figures: calls, failures by kind, time per call. Lock-free counters shared by
//! every connection that uses the module.

use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct MapperStats {
    calls: AtomicU64,
    succeeded: AtomicU64,
    guest_errors: AtomicU64,
    traps: AtomicU64,
    timeouts: AtomicU64,
    out_of_memory: AtomicU64,
    configuration: AtomicU64,
    nanos: AtomicU64,
    max_nanos: AtomicU64,
    instances: AtomicU64,
    retired: AtomicU64,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// The mapper returned a mapping error.
    GuestError,
    Trap,
    Timeout,
    OutOfMemory,
    /// An instance could not be started for the call: the module refused the definition's
    /// options in `configure`, or trapped or timed out there.
    Configuration,
}

impl MapperStats {
    pub fn record(&self, outcome: Outcome, elapsed: Duration) {
        self.calls.fetch_add(1, Relaxed);
        let counter = match outcome {
            Outcome::Succeeded => &self.succeeded,
            Outcome::GuestError => &self.guest_errors,
            Outcome::Trap => &self.traps,
            Outcome::Timeout => &self.timeouts,
            Outcome::OutOfMemory => &self.out_of_memory,
            Outcome::Configuration => &self.configuration,
        };
        counter.fetch_add(1, Relaxed);
        let nanos = elapsed.as_nanos().min(u64::MAX as u128) as u64;
        self.nanos.fetch_add(nanos, Relaxed);
        self.max_nanos.fetch_max(nanos, Relaxed);
    }

    pub fn instance_started(&self) {
        self.instances.fetch_add(1, Relaxed);
    }

    pub fn instance_retired(&self) {
        self.retired.fetch_add(1, Relaxed);
    }

    /// Instances retired after a call because their memory had grown past three quarters of
    /// the cap (a guest that leaks is replaced before a call fails for memory).
    pub fn retired(&self) -> u64 {
        self.retired.load(Relaxed)
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Relaxed)
    }

    pub fn count(&self, outcome: Outcome) -> u64 {
        match outcome {
            Outcome::Succeeded => &self.succeeded,
            Outcome::GuestError => &self.guest_errors,
            Outcome::Trap => &self.traps,
            Outcome::Timeout => &self.timeouts,
            Outcome::OutOfMemory => &self.out_of_memory,
            Outcome::Configuration => &self.configuration,
        }
        .load(Relaxed)
    }

    /// Instances started (the first of each worker, and one after each trap or timeout).
    pub fn instances(&self) -> u64 {
        self.instances.load(Relaxed)
    }

    /// The figures as JSON: `calls`, `succeeded`, `failures` by kind, `instancesStarted`,
    /// `instancesRetired`, `meanCallMicros`, `maxCallMicros`.
    pub fn to_json(&self) -> Value {
        let calls = self.calls();
        let nanos = self.nanos.load(Relaxed);
        json!({
            "calls": calls,
            "succeeded": self.count(Outcome::Succeeded),
            "failures": {
                "guestError": self.count(Outcome::GuestError),
                "trap": self.count(Outcome::Trap),
                "timeout": self.count(Outcome::Timeout),
                "memory": self.count(Outcome::OutOfMemory),
                "configuration": self.count(Outcome::Configuration),
            },
            "instancesStarted": self.instances(),
            "instancesRetired": self.retired(),
            "meanCallMicros": if calls == 0 { 0.0 } else { nanos as f64 / calls as f64 / 1000.0 },
            "maxCallMicros": self.max_nanos.load(Relaxed) as f64 / 1000.0,
        })
    }
}
