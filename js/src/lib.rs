//! The JavaScript payload mapper (spec §6.4) on QuickJS (rquickjs): Ditto's `Ditto` helper object,
//! the default `mapToDittoProtocolMsg*` / `mapFromDittoProtocolMsg*` functions, the user's
//! `incomingScript` / `outgoingScript` on top, and limits on script size, time, memory and stack.
//!
//! One QuickJS runtime and context per mapper, built once; calls are serialised by a `Mutex`
//! (rquickjs' `parallel` feature makes the runtime `Send`; the mutex makes the mapper `Sync`).
//! A call that runs out of time, memory or stack leaves the context rebuilt for the next message.

use ferrule_protocol::headers::value_to_header_string;
use ferrule_protocol::{DittoMessage, ExternalMessage, Mapper, ProtocolError};
use rquickjs::context::EvalOptions;
use rquickjs::{Context, Ctx, Function, Runtime, Value};
use serde_json::{Map, Value as Json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DITTO_SCOPE: &str = include_str!("ditto-scope.js");
const BYTEBUFFER_SHIM: &str = include_str!("bytebuffer-shim.js");
const LONG_SHIM: &str = include_str!("long-shim.js");
const GLUE: &str = include_str!("glue.js");
const DITTO_CONTENT_TYPE: &str = ferrule_protocol::CONTENT_TYPE;

pub use ferrule_protocol::MAPPER_CONFIG_FAILED as CONFIG_FAILED;
pub use ferrule_protocol::MAPPING_FAILED;

/// Limits of the JavaScript engine (Ditto's `ditto.connectivity.mapping.javascript`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsLimits {
    /// Longest incoming or outgoing script, in chars (`maxScriptSizeBytes`, 50 000).
    pub max_script_chars: usize,
    /// Longest run of one mapping call (`maxScriptExecutionTime`, 500 ms).
    pub timeout: Duration,
    /// Memory of one mapper's JavaScript heap.
    pub memory_bytes: usize,
    /// Native stack one call may use (QuickJS' recursion limit).
    pub max_stack_bytes: usize,
}

impl Default for JsLimits {
    fn default() -> Self {
        JsLimits {
            max_script_chars: 50_000,
            timeout: Duration::from_millis(500),
            memory_bytes: 64 << 20,
            max_stack_bytes: 256 << 10,
        }
    }
}

/// Which script a location in an error refers to.
#[derive(Clone)]
struct Scripts {
    incoming: String,
    outgoing: String,
    load_bytebuffer: bool,
    load_long: bool,
}

/// The QuickJS runtime and context of one mapper.
struct Engine {
    // Field order: the context goes before its runtime.
    ctx: Context,
    _rt: Runtime,
}

/// A deadline shared with the interrupt handler: nanoseconds since `base`, `u64::MAX` = none.
struct Deadline {
    base: Instant,
    at: AtomicU64,
}

impl Deadline {
    fn arm(&self, timeout: Duration) {
        let at = (self.base.elapsed() + timeout).as_nanos();
        self.at
            .store(u64::try_from(at).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
    fn disarm(&self) {
        self.at.store(u64::MAX, Ordering::Relaxed);
    }
    fn passed(&self) -> bool {
        let at = self.at.load(Ordering::Relaxed);
        at != u64::MAX && self.base.elapsed().as_nanos() >= u128::from(at)
    }
}

/// The JavaScript mapper of one mapping definition.
pub struct JsMapper {
    scripts: Scripts,
    limits: JsLimits,
    deadline: Arc<Deadline>,
    engine: Mutex<Engine>,
}

impl std::fmt::Debug for JsMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsMapper")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn config_failed(message: impl Into<String>) -> ProtocolError {
    ProtocolError::mapper_config_failed(message, "JavaScript")
}

fn mapping_failed(message: impl Into<String>, description: impl Into<String>) -> ProtocolError {
    ProtocolError::mapping_failed(message, description)
}

fn bool_option(options: &Map<String, Json>, key: &str) -> bool {
    match options.get(key) {
        Some(Json::Bool(b)) => *b,
        Some(Json::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// A script option; a missing one (or `null`) is the empty script, which maps that direction as
/// the Ditto mapper does (Ditto's `JavaScriptMessageMapperConfiguration` reads both as optional).
fn script_option(options: &Map<String, Json>, key: &str) -> Result<String, ProtocolError> {
    match options.get(key) {
        Some(Json::String(s)) => Ok(s.clone()),
        Some(Json::Null) | None => Ok(String::new()),
        Some(_) => Err(config_failed(format!(
            "The configuration property <{key}> of the mapper of type <JavaScript> must be a string."
        ))),
    }
}

impl JsMapper {
    /// `options` = the mapping definition's options: `incomingScript`, `outgoingScript` (each may
    /// be `""` or left out: that direction maps as the Ditto mapper), `loadBytebufferJS`,
    /// `loadLongJS`. Compiles once; a syntax error is a
    /// `connectivity:message.mapper.config.failed` (400) naming the line and column.
    pub fn new(options: &Map<String, Json>, limits: JsLimits) -> Result<JsMapper, ProtocolError> {
        let scripts = Scripts {
            incoming: script_option(options, "incomingScript")?,
            outgoing: script_option(options, "outgoingScript")?,
            load_bytebuffer: bool_option(options, "loadBytebufferJS"),
            load_long: bool_option(options, "loadLongJS"),
        };
        let (n_in, n_out) = (
            scripts.incoming.chars().count(),
            scripts.outgoing.chars().count(),
        );
        if n_in > limits.max_script_chars || n_out > limits.max_script_chars {
            return Err(config_failed(format!(
                "The script size was bigger than the allowed <{}> bytes: incoming script size was <{n_in}> bytes, outgoing script size was <{n_out}> bytes",
                limits.max_script_chars
            )));
        }
        let deadline = Arc::new(Deadline {
            base: Instant::now(),
            at: AtomicU64::new(u64::MAX),
        });
        let engine = Engine::new(&scripts, &limits, &deadline)?;
        Ok(JsMapper {
            scripts,
            limits,
            deadline,
            engine: Mutex::new(engine),
        })
    }

    /// Runs `f` in the context with the deadline armed; rebuilds the context after a timeout or
    /// an exhausted memory or stack.
    fn call(
        &self,
        what: &str,
        f: impl FnOnce(&Ctx<'_>) -> rquickjs::Result<String>,
    ) -> Result<String, ProtocolError> {
        let mut engine = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        self.deadline.arm(self.limits.timeout);
        let result = engine.ctx.with(|ctx| match f(&ctx) {
            Ok(s) => Ok(s),
            Err(e) => Err(js_error(&ctx, e, &self.scripts)),
        });
        let timed_out = self.deadline.passed();
        self.deadline.disarm();
        let mut failure = match result {
            Ok(s) => return Ok(s),
            Err(failure) => failure,
        };
        if timed_out {
            failure.message = format!(
                "The JavaScript mapping took longer than the allowed {} ms and was aborted",
                self.limits.timeout.as_millis()
            );
        }
        if timed_out || failure.exhausted {
            // The script's state may be half-way through anything: start afresh.
            *engine = Engine::new(&self.scripts, &self.limits, &self.deadline)?;
        }
        Err(mapping_failed(failure.render(), what))
    }
}

/// A JavaScript error: its text, where it happened, and whether a limit was hit.
struct JsFailure {
    message: String,
    location: Option<(String, u32, u32)>,
    exhausted: bool,
    source_line: Option<String>,
}

impl JsFailure {
    fn render(&self) -> String {
        match (&self.location, &self.source_line) {
            (Some((_, l, c)), Some(src)) => {
                format!("{} - in line/column #{l}/{c}, source: {src}", self.message)
            }
            (Some((_, l, c)), None) => format!("{} - in line/column #{l}/{c}", self.message),
            _ => self.message.clone(),
        }
    }
}

/// The first `file:line:col` of a QuickJS stack trace that points into a user script, else the first.
fn stack_location(stack: &str) -> Option<(String, u32, u32)> {
    let mut first = None;
    for frame in stack.lines() {
        let frame = frame.trim().trim_start_matches("at ");
        let loc = match (frame.rfind('('), frame.ends_with(')')) {
            (Some(i), true) => &frame[i + 1..frame.len() - 1],
            _ => frame,
        };
        let mut parts = loc.rsplitn(3, ':');
        let (Some(c), Some(l), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(l), Ok(c)) = (l.parse::<u32>(), c.parse::<u32>()) else {
            continue;
        };
        let found = (file.to_string(), l, c);
        if file == "incomingScript" || file == "outgoingScript" {
            return Some(found);
        }
        first.get_or_insert(found);
    }
    first
}

fn js_error(ctx: &Ctx<'_>, e: rquickjs::Error, scripts: &Scripts) -> JsFailure {
    let mut failure = JsFailure {
        message: e.to_string(),
        location: None,
        exhausted: false,
        source_line: None,
    };
    if matches!(e, rquickjs::Error::Exception) {
        let v: Value = ctx.catch();
        if let Some(obj) = v.as_object() {
            let get = |k: &str| obj.get::<_, Option<String>>(k).ok().flatten();
            let name = get("name").unwrap_or_else(|| "Error".into());
            let message = get("message").unwrap_or_default();
            failure.message = format!("{name}: {message}");
            failure.location = get("stack").as_deref().and_then(stack_location);
            // QuickJS-NG's SyntaxError carries the location in lineNumber/columnNumber too.
            if failure.location.is_none()
                && let (Some(l), Some(c)) = (
                    obj.get::<_, Option<u32>>("lineNumber").ok().flatten(),
                    obj.get::<_, Option<u32>>("columnNumber").ok().flatten(),
                )
            {
                failure.location = Some((get("fileName").unwrap_or_default(), l, c));
            }
        } else if let Ok(Some(s)) = v
            .get::<Option<rquickjs::Coerced<String>>>()
            .map(|o| o.map(|c| c.0))
        {
            failure.message = s;
        }
    }
    let lower = failure.message.to_ascii_lowercase();
    failure.exhausted = lower.contains("out of memory")
        || lower.contains("stack overflow")
        || lower.contains("call stack")
        || lower.contains("interrupted")
        || matches!(e, rquickjs::Error::Allocation);
    if let Some((file, l, _)) = &failure.location {
        let source = match file.as_str() {
            "incomingScript" => Some(&scripts.incoming),
            "outgoingScript" => Some(&scripts.outgoing),
            _ => None,
        };
        failure.source_line = source
            .and_then(|s| s.lines().nth((*l as usize).saturating_sub(1)))
            .map(|s| s.trim().chars().take(200).collect());
    }
    failure
}

impl Engine {
    fn new(
        scripts: &Scripts,
        limits: &JsLimits,
        deadline: &Arc<Deadline>,
    ) -> Result<Engine, ProtocolError> {
        let internal = |e: rquickjs::Error| {
            config_failed(format!("The JavaScript engine could not be started: {e}"))
        };
        let rt = Runtime::new().map_err(internal)?;
        rt.set_memory_limit(limits.memory_bytes);
        rt.set_max_stack_size(limits.max_stack_bytes);
        let d = deadline.clone();
        rt.set_interrupt_handler(Some(Box::new(move || d.passed())));
        let ctx = Context::full(&rt).map_err(internal)?;
        deadline.arm(limits.timeout);
        let result = ctx.with(|ctx| {
            let mut sources: Vec<(&str, &str)> = vec![("ditto-scope.js", DITTO_SCOPE)];
            if scripts.load_long {
                sources.push(("long.js", LONG_SHIM));
            }
            if scripts.load_bytebuffer {
                sources.push(("bytebuffer.js", BYTEBUFFER_SHIM));
            }
            sources.push(("incomingScript", &scripts.incoming));
            sources.push(("outgoingScript", &scripts.outgoing));
            sources.push(("ferrule-glue.js", GLUE));
            for (file, source) in sources {
                let mut opts = EvalOptions::default();
                opts.global = true;
                opts.strict = false;
                opts.filename = Some(file.to_string());
                if let Err(e) = ctx.eval_with_options::<(), _>(source, opts) {
                    return Err(js_error(&ctx, e, scripts));
                }
            }
            Ok(())
        });
        let timed_out = deadline.passed();
        deadline.disarm();
        match result {
            Ok(()) => Ok(Engine { ctx, _rt: rt }),
            Err(f) if timed_out => Err(config_failed(format!(
                "The JavaScript mapping scripts took longer than the allowed {} ms to load: {}",
                limits.timeout.as_millis(),
                f.render()
            ))),
            Err(f) => Err(config_failed(f.render())),
        }
    }
}

fn parse_json_array(text: &str) -> Result<Vec<Json>, ProtocolError> {
    match serde_json::from_str(text) {
        Ok(Json::Array(a)) => Ok(a),
        Ok(other) => Ok(vec![other]),
        Err(e) => Err(ProtocolError::json_invalid(format!(
            "The mapping result is not valid JSON: {e}"
        ))),
    }
}

fn latin1_to_bytes(s: &str) -> Vec<u8> {
    s.chars().map(|c| c as u32 as u8).collect()
}

fn content_type_of(message: &ExternalMessage) -> Option<String> {
    message
        .content_type
        .clone()
        .or_else(|| message.headers.get_str("content-type"))
}

impl Mapper for JsMapper {
    fn map_inbound(&self, message: &ExternalMessage) -> Result<Vec<DittoMessage>, ProtocolError> {
        if self.scripts.incoming.is_empty() {
            // Ditto's default: the payload is a Ditto Protocol message.
            let text = message.payload_text().ok_or_else(|| {
                ProtocolError::json_invalid(
                    "The payload of the external message is not UTF-8 text.",
                )
            })?;
            return Ok(vec![DittoMessage::from_json_str(text)?]);
        }
        let content_type = content_type_of(message);
        let headers: Map<String, Json> = message
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), Json::String(value_to_header_string(v))))
            .collect();
        let headers = Json::Object(headers).to_string();
        let description = format!(
            "The external message with content-type '{}' could not be mapped.",
            content_type.as_deref().unwrap_or("")
        );
        let out = self.call(&description, |ctx| {
            let f: Function = ctx.globals().get("__ferrule_in")?;
            // The bytes arrive as an ArrayBuffer copied in one go (a latin-1 string turned
            // into one in JavaScript cost ~50 µs per KiB).
            let bytes = match &message.bytes {
                Some(b) => Some(rquickjs::ArrayBuffer::new_copy(ctx.clone(), &b[..])?),
                None => None,
            };
            f.call((headers, message.text.clone(), bytes, content_type.clone()))
        })?;
        let mut mapped = Vec::new();
        for v in parse_json_array(&out)? {
            match v {
                Json::Null => {}
                Json::Object(m) => mapped.push(DittoMessage::from_json(m)?),
                other => {
                    return Err(ProtocolError::json_invalid(format!(
                        "<{other}> is not a valid JSON object!"
                    )));
                }
            }
        }
        Ok(mapped)
    }

    fn map_outbound(&self, message: &DittoMessage) -> Result<Vec<ExternalMessage>, ProtocolError> {
        if self.scripts.outgoing.is_empty() {
            let mut ext = ExternalMessage::text(message.to_json_string());
            for (k, v) in message.headers.iter() {
                ext.headers.insert(k, value_to_header_string(v));
            }
            ext.headers.insert("content-type", DITTO_CONTENT_TYPE);
            ext.content_type = Some(DITTO_CONTENT_TYPE.to_string());
            return Ok(vec![ext]);
        }
        let json = message.to_json_string();
        let out = self.call("The Ditto Protocol message could not be mapped.", |ctx| {
            let f: Function = ctx.globals().get("__ferrule_out")?;
            f.call((json,))
        })?;
        let mut mapped = Vec::new();
        for v in parse_json_array(&out)? {
            let Json::Object(mut m) = v else { continue };
            let mut ext = ExternalMessage::default();
            if let Some(Json::Object(h)) = m.remove("headers") {
                for (k, v) in h {
                    ext.headers.insert(k, value_to_header_string(&v));
                }
            }
            ext.text = match m.remove("text") {
                Some(Json::String(s)) => Some(s),
                _ => None,
            };
            ext.bytes = match m.remove("bytes") {
                Some(Json::String(s)) => Some(latin1_to_bytes(&s)),
                _ => None,
            };
            if ext.text.is_none() && ext.bytes.is_none() {
                return Err(mapping_failed(
                    "Neither <bytePayload> nor <textPayload> were defined in the outgoing script",
                    "The Ditto Protocol message could not be mapped.",
                ));
            }
            if let Some(Json::String(ct)) = m.remove("contentType") {
                ext.headers.insert("content-type", ct.clone());
                ext.content_type = Some(ct);
            } else {
                ext.content_type = ext.headers.get_str("content-type");
            }
            mapped.push(ext);
        }
        Ok(mapped)
    }
}
