//! Log lines into the connection's logs (`GET /api/2/connections/{id}/logs`).
//!
//! In a WebAssembly build these call the host's `log` import. Natively (in `cargo test`) they
//! print to stderr and, while a [`Harness`](crate::testing::Harness) call runs, are captured
//! so a test can assert on them with [`Harness::logs`](crate::testing::Harness::logs).
//!
//! The host keeps a few hundred lines per call at most: log per message sparingly.

/// The level of a log line (`enum level` of the WIT interface `host`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Writes a line at `level`.
pub fn log(level: Level, message: impl AsRef<str>) {
    backend::log(level, message.as_ref());
}

pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message);
}

pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message);
}

pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message);
}

pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message);
}

#[cfg(target_arch = "wasm32")]
mod backend {
    use super::Level;
    use crate::__private::bindings::ferrule::mapper::host;

    pub fn log(level: Level, message: &str) {
        let level = match level {
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        };
        host::log(level, message);
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod backend {
    use super::Level;
    use std::cell::RefCell;

    thread_local! {
        /// `Some` while a harness call captures this thread's lines.
        static CAPTURED: RefCell<Option<Vec<(Level, String)>>> = const { RefCell::new(None) };
    }

    pub fn log(level: Level, message: &str) {
        let captured = CAPTURED.with(|c| match c.borrow_mut().as_mut() {
            Some(lines) => {
                lines.push((level, message.to_string()));
                true
            }
            None => false,
        });
        if !captured || std::env::var_os("FERRULE_MAPPER_LOG").is_some() {
            eprintln!("[mapper {}] {message}", level.as_str());
        }
    }

    /// Runs `f` with this thread's log lines captured, and returns them with its result.
    pub fn capture<T>(f: impl FnOnce() -> T) -> (T, Vec<(Level, String)>) {
        let outer = CAPTURED.with(|c| c.borrow_mut().replace(Vec::new()));
        let result = f();
        let lines = CAPTURED.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
        (result, lines.unwrap_or_default())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn lines_are_captured_natively() {
        let ((), lines) = backend::capture(|| {
            info("one");
            warn(format!("two {}", 2));
        });
        assert_eq!(
            lines,
            vec![
                (Level::Info, "one".to_string()),
                (Level::Warn, "two 2".to_string())
            ]
        );
        // Outside a capture, lines only go to stderr.
        debug("not captured");
        let ((), lines) = backend::capture(|| {});
        assert!(lines.is_empty());
    }
}
