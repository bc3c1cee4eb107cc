//! What a mapper instance lives in: its store state (an empty WASI context, the log import,
//! a memory limiter that remembers a refusal, a bounded capture of stderr).

use crate::bindings::{self, Level};
use bytes::Bytes;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Log lines a mapper may write per call; more are counted, not kept.
pub const MAX_LOG_LINES: usize = 100;
/// Bytes of a log line at most.
const MAX_LOG_LINE: usize = 2048;
/// The tail of stderr kept per instance (a panic message lands there).
const STDERR_TAIL: usize = 2048;

pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: Limiter,
    pub logs: Vec<(Level, String)>,
    pub logs_dropped: usize,
    pub stderr: Capture,
}

impl State {
    /// A state with no file system, no network, no environment, no arguments, empty stdin,
    /// stdout discarded and the tail of stderr kept.
    pub fn new(memory_limit: usize) -> State {
        let stderr = Capture::default();
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        State {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_limit,
                memory_refused: false,
                memory_size: 0,
            },
            logs: Vec::new(),
            logs_dropped: 0,
            stderr,
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::ferrule::mapper::host::Host for State {
    fn log(&mut self, level: Level, mut message: String) {
        if self.logs.len() >= MAX_LOG_LINES {
            self.logs_dropped += 1;
            return;
        }
        if message.len() > MAX_LOG_LINE {
            let mut end = MAX_LOG_LINE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        self.logs.push((level, message));
    }
}

impl bindings::ferrule::mapper::types::Host for State {}

/// Caps the linear memory of an instance and remembers a refused growth, which tells a trap
/// caused by running out of memory from other traps.
pub struct Limiter {
    pub memory_limit: usize,
    pub memory_refused: bool,
    /// The largest linear memory granted so far (of any of the instance's memories).
    pub memory_size: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_limit && maximum.is_none_or(|m| desired <= m);
        if allowed {
            self.memory_size = self.memory_size.max(desired);
        } else {
            self.memory_refused = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000 && maximum.is_none_or(|m| desired <= m))
    }
}

/// The last bytes written to a stream; never full, never failing, so a chatty guest cannot
/// trap itself through stderr.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<VecDeque<u8>>>);

impl Capture {
    fn push(&self, bytes: &[u8]) {
        let mut tail = self.0.lock().unwrap();
        let bytes = &bytes[bytes.len().saturating_sub(STDERR_TAIL)..];
        let overflow = (tail.len() + bytes.len()).saturating_sub(STDERR_TAIL);
        tail.drain(..overflow);
        tail.extend(bytes);
    }

    /// What was written since the last take, as text.
    pub fn take(&self) -> String {
        let bytes: Vec<u8> = self.0.lock().unwrap().drain(..).collect();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
