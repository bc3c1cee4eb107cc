//! A mapper whose behaviour the message chooses, for the host's tests.
//!
//! Inbound text payload:
//! - a number: `modify` of `/features/<feature>/properties/value` of the thing named by the
//!   `device_id` header, else `<namespace>:<last segment of the mqtt.topic header>` (`feature`
//!   and `namespace` from the options, defaults `sensor` and `test`);
//! - `loop`: never returns; `alloc`: allocates until memory runs out; `trap`: panics;
//!   `recurse`: overflows the stack; `error`: returns a mapping error;
//! - `outputs:N`: N messages; `log:N`: N log lines and one message; `drop`: no output;
//!   `leak:N`: keeps N KiB for the instance's lifetime and maps `0`.
//!
//! Each output carries the header `x-calls`: how many calls this instance has served, which
//! tells whether the host reused or replaced it.

include!("behave.rs");
