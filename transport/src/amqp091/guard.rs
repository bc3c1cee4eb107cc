//! The guard between lapin and the broker (see "Limits" in the module documentation of
//! `amqp091`): it holds the broker's connection, passes lapin's bytes on as they are and the
//! broker's frame by frame, refusing what lapin cannot take safely.

use super::{io_error, misconfigured};
use crate::uri::BrokerUri;
use crate::{ErrorKind, TransportError};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How deep the field tables and arrays of a message's `headers` (and of the broker's server
/// properties) may nest, the outermost table counting as 1. lapin reads field tables with a
/// recursive parser on its I/O thread (2 MiB of stack): 10,000 levels (70 KB, well within a
/// frame) overflowed it and aborted the process, from about 175 levels in a debug build. Real
/// headers nest one or two levels.
pub(super) const MAX_TABLE_DEPTH: usize = 32;

/// The guard between lapin and the broker (see "Limits"). lapin connects to it without TLS on
/// the loopback interface; the guard holds the connection to the broker (TCP, and TLS for
/// `amqps`), passes lapin's bytes on as they are, and the broker's as they come while it checks
/// the header of every frame: a frame larger than `frameMax` ends the connection before lapin
/// reads it. lapin runs each connection on a thread of its own that ends only when its socket
/// fails or reaches its end, and a frame that does not fit its buffer (32 frames of `frameMax`)
/// stops it from reading for good: without the check such a frame left the thread, a socket and
/// the buffer behind forever; with it, dropping the guard (the connect given up, the client
/// closed or dropped) closes lapin's socket and its thread ends.
pub(super) struct Guard {
    pub(super) addr: std::net::SocketAddr,
    /// lapin's side of the connection says its address here: the guard takes no other.
    pub(super) announce: Arc<std::sync::Mutex<Option<oneshot::Sender<std::net::SocketAddr>>>>,
    pub(super) verdict: Arc<Verdict>,
    /// The deliveries whose headers the guard took out, for their consumers.
    pub(super) unreadable: Arc<Unreadable>,
    pub(super) task: AbortOnDrop,
}

/// What the guard found wrong with the broker's connection, for the error lapin's failure
/// becomes (set before the guard closes lapin's connection).
#[derive(Default)]
pub(super) struct Verdict(std::sync::Mutex<Option<TransportError>>);

impl Verdict {
    pub(super) fn set(&self, error: TransportError) {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if v.is_none() {
            *v = Some(error);
        }
    }

    pub(super) fn get(&self) -> Option<TransportError> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Aborts the task when dropped.
pub(super) struct AbortOnDrop(pub(super) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects to the broker (TCP, then TLS with `tls`) and starts the guard.
pub(super) async fn open_guard(
    uri: &BrokerUri,
    tls: Option<Arc<rustls::ClientConfig>>,
    frame_max: u32,
    authority: &str,
) -> Result<Guard, TransportError> {
    let tcp = tokio::net::TcpStream::connect((uri.host.as_str(), uri.port))
        .await
        .map_err(|e| io_error(&e, authority, false))?;
    let _ = tcp.set_nodelay(true);
    let listener = match tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await {
        Ok(l) => l,
        Err(_) => tokio::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0))
            .await
            .map_err(|e| {
                TransportError::new(
                    ErrorKind::Other,
                    format!("the AMQP client cannot listen on the loopback interface: {e}"),
                )
            })?,
    };
    let addr = listener
        .local_addr()
        .map_err(|e| TransportError::new(ErrorKind::Other, format!("the AMQP guard: {e}")))?;
    let (announce, announced) = oneshot::channel();
    let verdict = Arc::new(Verdict::default());
    let unreadable = Arc::new(Unreadable::default());
    let link = Link {
        listener,
        announced,
        frame_max: frame_max as usize,
        verdict: verdict.clone(),
        unreadable: unreadable.clone(),
        authority: authority.to_string(),
    };
    let task = match tls {
        None => tokio::spawn(link.run(tcp, false)),
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(uri.host.clone()).map_err(|e| {
                misconfigured(format!(
                    "'{}' is not a valid host name for TLS: {e}",
                    uri.host
                ))
            })?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| io_error(&e, authority, true))?;
            tokio::spawn(link.run(stream, true))
        }
    };
    Ok(Guard {
        addr,
        announce: Arc::new(std::sync::Mutex::new(Some(announce))),
        verdict,
        unreadable,
        task: AbortOnDrop(task),
    })
}

/// The guard's side of one connection.
struct Link {
    listener: tokio::net::TcpListener,
    announced: oneshot::Receiver<std::net::SocketAddr>,
    frame_max: usize,
    verdict: Arc<Verdict>,
    unreadable: Arc<Unreadable>,
    authority: String,
}

impl Link {
    async fn run<B>(self, broker: B, secure: bool)
    where
        B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(lapin_addr) = self.announced.await else {
            return;
        };
        let lapin = loop {
            match self.listener.accept().await {
                Ok((socket, peer)) if peer == lapin_addr => break socket,
                Ok(_) => continue,
                Err(_) => return,
            }
        };
        drop(self.listener);
        let _ = lapin.set_nodelay(true);
        let authority = self.authority.as_str();
        let verdict = &self.verdict;
        let received = AtomicBool::new(false);
        let broker_failed = |e: std::io::Error| {
            if crate::tls::find_tls_error(&e).is_some()
                || (secure && !received.load(Ordering::SeqCst))
            {
                verdict.set(io_error(&e, authority, secure));
            }
        };
        let (mut from_broker, to_broker) = tokio::io::split(broker);
        let (from_lapin, mut to_lapin) = lapin.into_split();
        let upstream = crate::relay::pass_on(from_lapin, to_broker);
        let downstream = async {
            let mut frames = Frames::new(self.frame_max, self.unreadable.clone());
            let mut buf = vec![0u8; 64 * 1024];
            let mut out = Vec::with_capacity(64 * 1024);
            loop {
                let n = match from_broker.read(&mut buf).await {
                    Ok(0) => {
                        return broker_failed(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    Ok(n) => n,
                    Err(e) => return broker_failed(e),
                };
                received.store(true, Ordering::SeqCst);
                out.clear();
                if let Err(refused) = frames.feed(&buf[..n], &mut out) {
                    return verdict.set(TransportError::new(
                        ErrorKind::Other,
                        format!("{authority} {refused}"),
                    ));
                }
                if to_lapin.write_all(&out).await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            result = upstream => {
                if let Err(e) = result {
                    broker_failed(e);
                }
            }
            () = downstream => {}
        }
    }
}

/// The deliveries (channel, delivery tag) whose `headers` the guard took out, with the reason;
/// the consumer of the channel takes its entries (see [`Frames`]).
#[derive(Default)]
pub(super) struct Unreadable(std::sync::Mutex<HashMap<(u16, u64), String>>);

impl Unreadable {
    fn insert(&self, channel: u16, tag: u64, reason: String) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert((channel, tag), reason);
    }

    /// Why the guard took the headers out of this delivery, if it did.
    pub(super) fn take(&self, channel: u16, tag: u64) -> Option<String> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.is_empty() {
            return None;
        }
        map.remove(&(channel, tag))
    }
}

/// Follows the frames of the broker's byte stream (a protocol header first, if the broker
/// refuses the protocol version). A frame larger than `frame_max` ends the connection. Method
/// and content-header frames are held until whole and read: server properties
/// (`connection.start`) nested deeper than [`MAX_TABLE_DEPTH`] end the connection (a broker
/// that sends them is not one to talk to); a content header whose `headers` table nests deeper,
/// or is malformed, is passed on without its `headers`, and the delivery it belongs to (the
/// `basic.deliver` before it on the channel) is noted in [`Unreadable`] so that its consumer
/// refuses it: the message is dead-lettered and logged instead of stopping the connection or
/// the process. Body and heartbeat frames pass as they come.
struct Frames {
    frame_max: usize,
    /// The header of the next frame (7 bytes; 8 for a protocol header), as far as it came.
    header: Vec<u8>,
    /// What is left of the current passed-on frame's payload and frame-end octet.
    left: usize,
    /// A method or content-header frame being held, as far as it came, and what it still needs.
    held: Vec<u8>,
    need: usize,
    /// The delivery tag of the last `basic.deliver` per channel, until its content header.
    delivering: HashMap<u16, u64>,
    unreadable: Arc<Unreadable>,
}

impl Frames {
    fn new(frame_max: usize, unreadable: Arc<Unreadable>) -> Frames {
        Frames {
            frame_max,
            header: Vec::with_capacity(8),
            left: 0,
            held: Vec::new(),
            need: 0,
            delivering: HashMap::new(),
            unreadable,
        }
    }

    /// Reads `bytes` of the broker's stream and appends to `out` what lapin gets of them.
    fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = self.left.min(bytes.len());
                out.extend_from_slice(&bytes[..n]);
                self.left -= n;
                bytes = &bytes[n..];
                continue;
            }
            if self.need > 0 {
                let n = self.need.min(bytes.len());
                self.held.extend_from_slice(&bytes[..n]);
                self.need -= n;
                bytes = &bytes[n..];
                if self.need == 0 {
                    let frame = std::mem::take(&mut self.held);
                    self.read_frame(frame, out)?;
                }
                continue;
            }
            let need = if self.header.first() == Some(&b'A') {
                8
            } else {
                7
            };
            let n = (need - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.first() == Some(&b'A') {
                if self.header.len() == 8 {
                    out.append(&mut self.header);
                }
                continue;
            }
            if self.header.len() < 7 {
                continue;
            }
            let size = u32::from_be_bytes([
                self.header[3],
                self.header[4],
                self.header[5],
                self.header[6],
            ]) as usize;
            if size + 8 > self.frame_max {
                return Err(format!(
                    "sent a frame of {} bytes, more than the frame-max of {} bytes \
                     (specificConfig '{}')",
                    size + 8,
                    self.frame_max,
                    super::FRAME_MAX
                ));
            }
            if matches!(self.header[0], FRAME_METHOD | FRAME_HEADER) {
                self.held = std::mem::take(&mut self.header);
                self.held.reserve(size + 1);
                self.need = size + 1;
            } else {
                out.append(&mut self.header);
                self.left = size + 1;
            }
            self.header = Vec::with_capacity(8);
        }
        Ok(())
    }

    /// Reads one whole method or content-header frame and appends what lapin gets of it.
    fn read_frame(&mut self, frame: Vec<u8>, out: &mut Vec<u8>) -> Result<(), String> {
        let channel = u16::from_be_bytes([frame[1], frame[2]]);
        let payload = &frame[7..frame.len() - 1];
        if frame[0] == FRAME_METHOD {
            self.delivering.remove(&channel);
            match payload.get(..4) {
                // basic.deliver: consumer-tag, delivery-tag, ...
                Some([0, 60, 0, 60]) => {
                    let tag = short_string_end(payload, 4)
                        .and_then(|at| payload.get(at..at + 8))
                        .map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default()));
                    if let Some(tag) = tag {
                        self.delivering.insert(channel, tag);
                    }
                }
                // connection.start: version-major, version-minor, server-properties, ...
                Some([0, 10, 0, 10]) => {
                    if let Some(table) = long_data(payload, 6)
                        && nesting(table) == Nesting::TooDeep
                    {
                        return Err(format!(
                            "sent server properties nested deeper than {MAX_TABLE_DEPTH} levels"
                        ));
                    }
                }
                _ => {}
            }
            out.extend_from_slice(&frame);
            return Ok(());
        }
        let delivery = self.delivering.remove(&channel);
        match without_bad_headers(payload) {
            None => out.extend_from_slice(&frame),
            Some((payload, reason)) => {
                out.extend_from_slice(&frame[..3]);
                out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                out.extend_from_slice(&payload);
                out.push(FRAME_END);
                if let Some(tag) = delivery {
                    self.unreadable.insert(channel, tag, reason);
                }
            }
        }
        Ok(())
    }
}

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_END: u8 = 0xCE;
/// The `headers` bit of the basic class's property flags (the third property).
const HEADERS_FLAG: u16 = 0x2000;

/// Where the short string at `at` ends.
fn short_string_end(bytes: &[u8], at: usize) -> Option<usize> {
    let end = at + 1 + *bytes.get(at)? as usize;
    (end <= bytes.len()).then_some(end)
}

/// The content of the long data (a 32-bit length, then the bytes) at `at`.
fn long_data(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let len = u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize;
    bytes.get(at + 4..(at + 4).checked_add(len)?)
}

/// A content header's payload without its `headers` property, with the reason, when the
/// headers table nests deeper than [`MAX_TABLE_DEPTH`] or is malformed; `None` when it is fine
/// (or there is none).
fn without_bad_headers(payload: &[u8]) -> Option<(Vec<u8>, String)> {
    // class-id, weight, body-size, property-flags.
    let flags = u16::from_be_bytes(payload.get(12..14)?.try_into().ok()?);
    if flags & HEADERS_FLAG == 0 || flags & 1 != 0 {
        return None;
    }
    let mut at = 14;
    for property in [0x8000, 0x4000] {
        if flags & property != 0 {
            at = short_string_end(payload, at)?;
        }
    }
    let table_end = long_data(payload, at).map(|table| (at + 4 + table.len(), nesting(table)));
    let (end, reason) = match table_end {
        Some((_, Nesting::Within)) => return None,
        Some((end, Nesting::TooDeep)) => (
            end,
            format!("its AMQP headers nest deeper than {MAX_TABLE_DEPTH} levels"),
        ),
        Some((end, Nesting::Malformed)) => (end, "its AMQP headers are malformed".to_string()),
        // The table runs past the frame: everything after the headers' start is cut.
        None => (payload.len(), "its AMQP headers are malformed".to_string()),
    };
    let mut out = Vec::with_capacity(payload.len() - (end - at));
    out.extend_from_slice(&payload[..12]);
    out.extend_from_slice(&(flags & !HEADERS_FLAG).to_be_bytes());
    out.extend_from_slice(&payload[14..at]);
    if end < payload.len() {
        out.extend_from_slice(&payload[end..]);
    } else {
        // Without the properties after the headers too.
        let flags = flags & !HEADERS_FLAG & 0xE000;
        out[12..14].copy_from_slice(&flags.to_be_bytes());
    }
    Some((out, reason))
}

#[derive(Debug, PartialEq, Eq)]
enum Nesting {
    Within,
    TooDeep,
    Malformed,
}

/// How deep the field table `table` (its entries, without its length) nests, read without
/// recursion, with the value types lapin reads (RabbitMQ's: `s` is a short integer).
fn nesting(table: &[u8]) -> Nesting {
    // The containers open around `at`: where each ends, and whether it is a table.
    let mut open: Vec<(usize, bool)> = vec![(table.len(), true)];
    let mut at = 0;
    while let Some(&(end, is_table)) = open.last() {
        if at == end {
            open.pop();
            continue;
        }
        if is_table {
            match short_string_end(&table[..end], at) {
                Some(next) => at = next,
                None => return Nesting::Malformed,
            }
        }
        let Some(&kind) = table[..end].get(at) else {
            return Nesting::Malformed;
        };
        at += 1;
        let size = match kind {
            b't' | b'b' | b'B' => 1,
            b's' | b'U' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'D' => 5,
            b'L' | b'l' | b'd' | b'T' => 8,
            b'V' => 0,
            b'S' | b'x' | b'A' | b'F' => match long_data(&table[..end], at) {
                Some(data) if kind == b'A' || kind == b'F' => {
                    at += 4;
                    open.push((at + data.len(), kind == b'F'));
                    if open.len() > MAX_TABLE_DEPTH {
                        return Nesting::TooDeep;
                    }
                    continue;
                }
                Some(data) => 4 + data.len(),
                None => return Nesting::Malformed,
            },
            _ => return Nesting::Malformed,
        };
        if at + size > end {
            return Nesting::Malformed;
        }
        at += size;
    }
    Nesting::Within
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&channel.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out.push(FRAME_END);
        out
    }

    fn long(bytes: &[u8]) -> Vec<u8> {
        let mut out = (bytes.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(bytes);
        out
    }

    /// `{"k": {"k": … {"s": "v"}}}`, `levels` tables deep (the outermost counting).
    fn nested(levels: usize) -> Vec<u8> {
        let mut table = vec![1, b's', b'S'];
        table.extend(long(b"v"));
        for _ in 1..levels {
            let mut outer = vec![1, b'k', b'F'];
            outer.extend(long(&table));
            table = outer;
        }
        table
    }

    fn deliver(channel: u16, tag: u64) -> Vec<u8> {
        let mut payload = vec![0, 60, 0, 60, 3, b'c', b't', b'g'];
        payload.extend_from_slice(&tag.to_be_bytes());
        payload.extend_from_slice(&[0, 0, 1, b'q']);
        frame(FRAME_METHOD, channel, &payload)
    }

    /// A content header with content-type, `headers` and correlation-id.
    fn content_header(channel: u16, headers: &[u8]) -> Vec<u8> {
        let mut payload = vec![0, 60, 0, 0];
        payload.extend_from_slice(&5u64.to_be_bytes());
        payload.extend_from_slice(&(0x8000u16 | HEADERS_FLAG | 0x0400).to_be_bytes());
        payload.extend_from_slice(&[4, b't', b'e', b'x', b't']);
        payload.extend(long(headers));
        payload.extend_from_slice(&[2, b'c', b'1']);
        frame(FRAME_HEADER, channel, &payload)
    }

    fn feed_in(frames: &mut Frames, stream: &[u8], chunk: usize) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for part in stream.chunks(chunk) {
            frames.feed(part, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn nesting_is_measured_without_recursion() {
        assert_eq!(nesting(&[]), Nesting::Within);
        assert_eq!(nesting(&nested(MAX_TABLE_DEPTH)), Nesting::Within);
        assert_eq!(nesting(&nested(MAX_TABLE_DEPTH + 1)), Nesting::TooDeep);
        assert_eq!(nesting(&nested(5_000)), Nesting::TooDeep);
        // Arrays count as levels too: a table holding arrays of arrays.
        let mut array = vec![b'V'];
        for _ in 0..MAX_TABLE_DEPTH {
            let mut outer = vec![b'A'];
            outer.extend(long(&array));
            array = outer;
        }
        let mut table = vec![1, b'a'];
        table.extend(array);
        assert_eq!(nesting(&table), Nesting::TooDeep);
        // Every scalar type lapin reads.
        let mut flat = Vec::new();
        for (kind, size) in [
            (b't', 1),
            (b'b', 1),
            (b'B', 1),
            (b's', 2),
            (b'U', 2),
            (b'u', 2),
            (b'I', 4),
            (b'i', 4),
            (b'f', 4),
            (b'D', 5),
            (b'L', 8),
            (b'l', 8),
            (b'd', 8),
            (b'T', 8),
            (b'V', 0),
        ] {
            flat.extend_from_slice(&[1, kind, kind]);
            flat.extend(std::iter::repeat_n(7, size));
        }
        flat.extend_from_slice(&[1, b'x', b'x']);
        flat.extend(long(b"bytes"));
        assert_eq!(nesting(&flat), Nesting::Within);
        // An unknown type, a value or a nested length past the end.
        assert_eq!(nesting(&[1, b'k', b'?']), Nesting::Malformed);
        assert_eq!(nesting(&[1, b'k', b'I', 0, 0]), Nesting::Malformed);
        assert_eq!(nesting(&[1, b'k', b'F', 0, 0, 0, 9, 0]), Nesting::Malformed);
        assert_eq!(nesting(&[5, b'k']), Nesting::Malformed);
    }

    #[test]
    fn frames_pass_as_they_are_in_any_chunks() {
        let mut stream = deliver(1, 7);
        stream.extend(content_header(1, &nested(3)));
        stream.extend(frame(3, 1, b"hello"));
        stream.extend(frame(8, 0, b""));
        for chunk in [1, 2, 7, 64, 100_000] {
            let unreadable = Arc::new(Unreadable::default());
            let mut frames = Frames::new(131_072, unreadable.clone());
            assert_eq!(feed_in(&mut frames, &stream, chunk).unwrap(), stream);
            assert_eq!(unreadable.take(1, 7), None);
        }
    }

    #[test]
    fn deep_headers_are_taken_out_and_the_delivery_noted() {
        let mut stream = deliver(3, 42);
        stream.extend(content_header(3, &nested(10_000)));
        stream.extend(frame(3, 3, b"hello"));
        let mut expected = deliver(3, 42);
        let mut payload = vec![0, 60, 0, 0];
        payload.extend_from_slice(&5u64.to_be_bytes());
        payload.extend_from_slice(&(0x8000u16 | 0x0400).to_be_bytes());
        payload.extend_from_slice(&[4, b't', b'e', b'x', b't', 2, b'c', b'1']);
        expected.extend(frame(FRAME_HEADER, 3, &payload));
        expected.extend(frame(3, 3, b"hello"));
        for chunk in [1, 5, 4096] {
            let unreadable = Arc::new(Unreadable::default());
            let mut frames = Frames::new(131_072, unreadable.clone());
            assert_eq!(feed_in(&mut frames, &stream, chunk).unwrap(), expected);
            let reason = unreadable.take(3, 42).expect("the delivery is noted");
            assert!(reason.contains("deeper than 32 levels"), "{reason}");
            assert_eq!(unreadable.take(3, 42), None, "taken once");
        }
        // A malformed table is taken out the same way.
        let mut stream = deliver(2, 1);
        stream.extend(content_header(2, &[1, b'k', b'?']));
        let unreadable = Arc::new(Unreadable::default());
        let mut frames = Frames::new(131_072, unreadable.clone());
        let out = feed_in(&mut frames, &stream, 3).unwrap();
        assert!(out.len() < stream.len());
        assert!(unreadable.take(2, 1).unwrap().contains("malformed"));
    }

    #[test]
    fn deep_server_properties_and_large_frames_end_the_connection() {
        let mut payload = vec![0, 10, 0, 10, 0, 9];
        payload.extend(long(&nested(MAX_TABLE_DEPTH + 1)));
        payload.extend(long(b"PLAIN"));
        payload.extend(long(b"en_US"));
        let mut stream = b"AMQP\x00\x00\x09\x01".to_vec();
        stream.extend(frame(FRAME_METHOD, 0, &payload));
        let mut frames = Frames::new(131_072, Arc::default());
        let e = feed_in(&mut frames, &stream, 10).unwrap_err();
        assert!(e.contains("server properties nested deeper"), "{e}");

        let mut frames = Frames::new(4096, Arc::default());
        let e = feed_in(&mut frames, &frame(3, 1, &[0; 5000]), 100).unwrap_err();
        assert!(e.contains("more than the frame-max of 4096 bytes"), "{e}");
    }
}
