//! What a connection reports about itself: metrics (sliding counters) and logs (ring buffers);
//! the host's Prometheus metrics.

pub mod fluentd;
pub mod logs;
pub mod metrics;
pub mod prometheus;
pub mod window;
