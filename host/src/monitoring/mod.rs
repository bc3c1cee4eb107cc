//! What a connection reports about itself: metrics (sliding counters) and logs (ring buffers).

pub mod logs;
pub mod metrics;
pub mod window;
