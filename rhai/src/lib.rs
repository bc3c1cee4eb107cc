//! The Rhai payload mapper: Ditto's JavaScript mapping contract (spec §6.4) in Rhai syntax.
//!
//! * `incomingScript` defines `fn mapToDittoProtocolMsg(headers, textPayload, bytePayload,
//!   contentType)` returning a Ditto Protocol message (a map), an array of them, or `()`.
//! * `outgoingScript` defines `fn mapFromDittoProtocolMsg(namespace, name, group, channel,
//!   criterion, action, path, headers, value, status, extra)` returning an external message map
//!   `#{headers, textPayload, bytePayload, contentType}`, an array of them, or `()`.
//! * Either script may define the wrapper instead, as in Ditto's JavaScript engine, to get the
//!   whole message: `fn mapToDittoProtocolMsgWrapper(externalMsg)` (a map `#{headers,
//!   textPayload, bytePayload, contentType}`) and `fn mapFromDittoProtocolMsgWrapper(msg)` (the
//!   Ditto Protocol message as a map, with `revision` and `timestamp`); defined, it is called.
//! * An empty script behaves like Ditto's default mapper (Ditto Protocol JSON in and out).
//! * Helpers (the JavaScript `Ditto` object): `ditto_message(namespace, name, group, channel,
//!   criterion, action, path, headers, value[, status, extra])`, `external_message(headers, text,
//!   bytes, content_type)`, `bytes_to_string(blob)` and `string_to_bytes(s)` (latin-1: one char
//!   per byte, as `Ditto.arrayBufferToString` / `Ditto.stringToArrayBuffer`), and byte readers
//!   on blobs: `read_u8`, `read_i8`, `read_{u,i}{16,32}_{be,le}`, `read_i64_{be,le}`,
//!   `read_f{32,64}_{be,le}` (`bytePayload.read_u16_be(0)`; an integer or float, an error when
//!   the bytes are not within the blob).
//!
//! The engine and both compiled scripts are built once and shared (`Send + Sync`); Rhai script
//! functions are pure, so calls from many threads do not interfere. Limits: script size,
//! operations, call depth, string/array/map sizes and a per-call timeout (checked from
//! `on_progress` against a thread-local deadline).

use ferrule_protocol::headers::value_to_header_string;
use ferrule_protocol::{DittoMessage, ExternalMessage, Mapper, ProtocolError};
use rhai::{
    AST, Array, Blob, CallFnOptions, Dynamic, Engine, EvalAltResult, ImmutableString, Map as RMap,
    ParseError, Position, Scope,
};
use serde_json::{Map, Number, Value as Json};
use std::cell::Cell;
use std::time::{Duration, Instant};

const DITTO_CONTENT_TYPE: &str = ferrule_protocol::CONTENT_TYPE;

pub use ferrule_protocol::MAPPER_CONFIG_FAILED as CONFIG_FAILED;
pub use ferrule_protocol::MAPPING_FAILED;

const INCOMING_FN: &str = "mapToDittoProtocolMsg";
const INCOMING_ARITY: usize = 4;
const OUTGOING_FN: &str = "mapFromDittoProtocolMsg";
const OUTGOING_ARITY: usize = 11;
const INCOMING_WRAPPER: &str = "mapToDittoProtocolMsgWrapper";
const OUTGOING_WRAPPER: &str = "mapFromDittoProtocolMsgWrapper";

/// A compiled script and the function a call runs.
struct Script {
    ast: AST,
    source: String,
    /// The script defines the wrapper (one argument: the whole message), which is called.
    wrapped: bool,
}

/// Limits of the Rhai engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RhaiLimits {
    /// Longest incoming or outgoing script, in chars (Ditto's `maxScriptSizeBytes`, 50 000).
    pub max_script_chars: usize,
    /// Rhai operations one mapping call may run (0 = unlimited).
    pub max_operations: u64,
    /// Deepest nesting of function calls (Ditto's `maxScriptStackDepth` is 25).
    pub max_call_levels: usize,
    /// Longest string (bytes) a script may build (0 = unlimited).
    pub max_string_size: usize,
    /// Largest array or blob a script may build (0 = unlimited).
    pub max_array_size: usize,
    /// Largest object map a script may build (0 = unlimited).
    pub max_map_size: usize,
    /// Longest run of one mapping call (`maxScriptExecutionTime`, 500 ms).
    pub timeout: Duration,
}

impl Default for RhaiLimits {
    fn default() -> Self {
        RhaiLimits {
            max_script_chars: 50_000,
            max_operations: 1_000_000,
            max_call_levels: 32,
            max_string_size: 16 << 20,
            max_array_size: 16 << 20,
            max_map_size: 100_000,
            timeout: Duration::from_millis(500),
        }
    }
}

thread_local! {
    /// The deadline of the mapping call running on this thread, if any.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Arms the thread's deadline for the lifetime of the guard.
struct DeadlineGuard;

impl DeadlineGuard {
    fn arm(timeout: Duration) -> DeadlineGuard {
        let at = Instant::now().checked_add(timeout);
        DEADLINE.with(|d| d.set(at));
        DeadlineGuard
    }
}

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(None));
    }
}

/// Value returned from `on_progress` to abort a script that ran out of time.
const TIMEOUT_TOKEN: &str = "ferrule:timeout";

/// The Rhai mapper of one mapping definition.
pub struct RhaiMapper {
    engine: Engine,
    incoming: Option<Script>,
    outgoing: Option<Script>,
    limits: RhaiLimits,
}

impl std::fmt::Debug for RhaiMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RhaiMapper")
            .field("limits", &self.limits)
            .field("incoming", &self.incoming.is_some())
            .field("outgoing", &self.outgoing.is_some())
            .finish_non_exhaustive()
    }
}

fn config_failed(message: impl Into<String>) -> ProtocolError {
    ProtocolError::mapper_config_failed(message, "Rhai")
}

fn mapping_failed(message: impl Into<String>, description: impl Into<String>) -> ProtocolError {
    ProtocolError::mapping_failed(message, description)
}

/// A script option; a missing one (or `null`) is the empty script, which maps its direction as
/// the Ditto mapper does (as a JavaScript mapping definition may leave one out).
fn script_option(options: &Map<String, Json>, key: &str) -> Result<String, ProtocolError> {
    match options.get(key) {
        Some(Json::String(s)) => Ok(s.clone()),
        Some(Json::Null) | None => Ok(String::new()),
        Some(_) => Err(config_failed(format!(
            "The configuration property <{key}> of the mapper of type <Rhai> must be a string."
        ))),
    }
}

/// `message - in line/column #L/C, source: <line>` (the JavaScript engine's style).
fn with_location(message: &str, pos: Position, script: &str) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), c) => {
            let c = c.unwrap_or(0);
            match script.lines().nth(l.saturating_sub(1)) {
                Some(src) => {
                    let src: String = src.trim().chars().take(200).collect();
                    format!("{message} - in line/column #{l}/{c}, source: {src}")
                }
                None => format!("{message} - in line/column #{l}/{c}"),
            }
        }
        _ => message.to_string(),
    }
}

fn parse_error(name: &str, e: &ParseError, script: &str) -> ProtocolError {
    config_failed(with_location(
        &format!("{name}: {}", e.err_type()),
        e.position(),
        script,
    ))
}

fn build_engine(limits: &RhaiLimits) -> Engine {
    let mut engine = Engine::new();
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_map_size);
    // The same nesting limits in debug and release builds.
    engine.set_max_expr_depths(64, 64);
    // Sandbox: no output, no modules from the file system, no `eval`.
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    engine.disable_symbol("eval");
    engine.on_progress(|ops| {
        if ops & 0xff != 0 {
            return None;
        }
        let at = DEADLINE.with(Cell::get)?;
        (Instant::now() >= at).then(|| Dynamic::from(TIMEOUT_TOKEN))
    });
    register_helpers(&mut engine);
    engine
}

#[allow(clippy::too_many_arguments)]
fn ditto_message(
    namespace: Dynamic,
    name: Dynamic,
    group: Dynamic,
    channel: Dynamic,
    criterion: Dynamic,
    action: Dynamic,
    path: Dynamic,
    headers: Dynamic,
    value: Dynamic,
    status: Dynamic,
    extra: Dynamic,
) -> RMap {
    let s = |d: &Dynamic| {
        if d.is_unit() {
            String::new()
        } else {
            d.to_string()
        }
    };
    let mut topic = format!("{}/{}/{}", s(&namespace), s(&name), s(&group));
    let channel = s(&channel);
    if !channel.is_empty() && channel != "none" {
        topic.push('/');
        topic.push_str(&channel);
    }
    topic.push('/');
    topic.push_str(&s(&criterion));
    let action = s(&action);
    if !action.is_empty() {
        topic.push('/');
        topic.push_str(&action);
    }
    let mut m = RMap::new();
    m.insert("topic".into(), topic.into());
    m.insert("path".into(), path);
    m.insert("headers".into(), headers);
    for (k, v) in [("value", value), ("status", status), ("extra", extra)] {
        if !v.is_unit() {
            m.insert(k.into(), v);
        }
    }
    m
}

fn register_helpers(engine: &mut Engine) {
    engine.register_fn(
        "ditto_message",
        |namespace: Dynamic,
         name: Dynamic,
         group: Dynamic,
         channel: Dynamic,
         criterion: Dynamic,
         action: Dynamic,
         path: Dynamic,
         headers: Dynamic,
         value: Dynamic| {
            ditto_message(
                namespace,
                name,
                group,
                channel,
                criterion,
                action,
                path,
                headers,
                value,
                Dynamic::UNIT,
                Dynamic::UNIT,
            )
        },
    );
    engine.register_fn("ditto_message", ditto_message);
    engine.register_fn(
        "external_message",
        |headers: Dynamic, text: Dynamic, bytes: Dynamic, content_type: Dynamic| {
            let mut m = RMap::new();
            m.insert("headers".into(), headers);
            m.insert("textPayload".into(), text);
            m.insert("bytePayload".into(), bytes);
            m.insert("contentType".into(), content_type);
            m
        },
    );
    engine.register_fn("bytes_to_string", |b: Blob| -> String {
        b.iter().map(|&b| b as char).collect()
    });
    engine.register_fn("bytes_to_string", |_: ()| -> String { String::new() });
    engine.register_fn("string_to_bytes", |s: &str| -> Blob {
        s.chars().map(|c| c as u32 as u8).collect()
    });
    register_readers(engine);
}

/// `N` bytes of `blob` at `at`, or a script error naming the reader and the blob's length.
fn bytes_at<const N: usize>(
    blob: &Blob,
    at: i64,
    name: &str,
) -> Result<[u8; N], Box<EvalAltResult>> {
    usize::try_from(at)
        .ok()
        .and_then(|start| blob.get(start..start.checked_add(N)?))
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            format!(
                "{name}({at}): {N} bytes at {at} are not within the blob of {} bytes",
                blob.len()
            )
            .into()
        })
}

/// Byte readers on blobs, `payload.read_u16_be(0)`: every integer width, signed and unsigned,
/// both byte orders, and floats. (Rhai's own `parse_be_int(start, len)` reads `len` bytes into
/// the high end of a 64-bit integer: `00 07` is 1970324836974592, not 7.)
fn register_readers(engine: &mut Engine) {
    macro_rules! readers {
        ($($name:literal => $n:literal, $to:ty, $read:expr;)*) => {$(
            engine.register_fn($name, |b: &mut Blob, at: i64| -> Result<$to, Box<EvalAltResult>> {
                Ok($read(bytes_at::<$n>(b, at, $name)?))
            });
        )*};
    }
    readers! {
        "read_u8" => 1, i64, |b: [u8; 1]| b[0] as i64;
        "read_i8" => 1, i64, |b: [u8; 1]| b[0] as i8 as i64;
        "read_u16_be" => 2, i64, |b| u16::from_be_bytes(b) as i64;
        "read_u16_le" => 2, i64, |b| u16::from_le_bytes(b) as i64;
        "read_i16_be" => 2, i64, |b| i16::from_be_bytes(b) as i64;
        "read_i16_le" => 2, i64, |b| i16::from_le_bytes(b) as i64;
        "read_u32_be" => 4, i64, |b| u32::from_be_bytes(b) as i64;
        "read_u32_le" => 4, i64, |b| u32::from_le_bytes(b) as i64;
        "read_i32_be" => 4, i64, |b| i32::from_be_bytes(b) as i64;
        "read_i32_le" => 4, i64, |b| i32::from_le_bytes(b) as i64;
        "read_i64_be" => 8, i64, i64::from_be_bytes;
        "read_i64_le" => 8, i64, i64::from_le_bytes;
        "read_f32_be" => 4, f64, |b| f32::from_be_bytes(b) as f64;
        "read_f32_le" => 4, f64, |b| f32::from_le_bytes(b) as f64;
        "read_f64_be" => 8, f64, f64::from_be_bytes;
        "read_f64_le" => 8, f64, f64::from_le_bytes;
    }
}

/// Compiles a non-empty script and checks that it defines the entry point (or its wrapper).
fn compile(
    engine: &Engine,
    name: &str,
    script: String,
    (entry, arity): (&str, usize),
    wrapper: &str,
) -> Result<Option<Script>, ProtocolError> {
    if script.trim().is_empty() {
        return Ok(None);
    }
    let ast = engine
        .compile(&script)
        .map_err(|e| parse_error(name, &e, &script))?;
    let defines = |f: &str, n: usize| {
        ast.iter_functions()
            .any(|d| d.name == f && d.params.len() == n)
    };
    let wrapped = defines(wrapper, 1);
    if !wrapped && !defines(entry, arity) {
        return Err(config_failed(format!(
            "The {name} does not define the function <{entry}> with {arity} parameters (or <{wrapper}> with one)."
        )));
    }
    Ok(Some(Script {
        ast,
        source: script,
        wrapped,
    }))
}

impl RhaiMapper {
    /// `options` = the mapping definition's options: `incomingScript` and `outgoingScript` (both
    /// required, either may be `""`). Compiles once; a syntax error is a
    /// `connectivity:message.mapper.config.failed` (400) naming the line and column.
    pub fn new(
        options: &Map<String, Json>,
        limits: RhaiLimits,
    ) -> Result<RhaiMapper, ProtocolError> {
        let incoming = script_option(options, "incomingScript")?;
        let outgoing = script_option(options, "outgoingScript")?;
        let (n_in, n_out) = (incoming.chars().count(), outgoing.chars().count());
        if n_in > limits.max_script_chars || n_out > limits.max_script_chars {
            return Err(config_failed(format!(
                "The script size was bigger than the allowed <{}> bytes: incoming script size was <{n_in}> bytes, outgoing script size was <{n_out}> bytes",
                limits.max_script_chars
            )));
        }
        let engine = build_engine(&limits);
        let incoming = compile(
            &engine,
            "incomingScript",
            incoming,
            (INCOMING_FN, INCOMING_ARITY),
            INCOMING_WRAPPER,
        )?;
        let outgoing = compile(
            &engine,
            "outgoingScript",
            outgoing,
            (OUTGOING_FN, OUTGOING_ARITY),
            OUTGOING_WRAPPER,
        )?;
        Ok(RhaiMapper {
            engine,
            incoming,
            outgoing,
            limits,
        })
    }

    fn call(
        &self,
        script: &Script,
        entry: &str,
        args: Vec<Dynamic>,
        description: &str,
    ) -> Result<Dynamic, ProtocolError> {
        let _guard = DeadlineGuard::arm(self.limits.timeout);
        let mut scope = Scope::new();
        self.engine
            .call_fn_with_options::<Dynamic>(
                CallFnOptions::new(),
                &mut scope,
                &script.ast,
                entry,
                args,
            )
            .map_err(|e| mapping_failed(self.render(&e, &script.source), description))
    }

    fn render(&self, e: &EvalAltResult, script: &str) -> String {
        let inner = e.unwrap_inner();
        let pos = inner.position();
        // Rhai resets the position of limit errors (operations, stack, termination) to the call
        // site, which is the host here: those carry no line/column.
        let text = inner.to_string();
        let suffix = format!(" ({pos})");
        let text = text.strip_suffix(suffix.as_str()).unwrap_or(&text);
        let message = match inner {
            EvalAltResult::ErrorTerminated(token, _)
                if token.clone().into_string().ok().as_deref() == Some(TIMEOUT_TOKEN) =>
            {
                format!(
                    "The Rhai mapping took longer than the allowed {} ms and was aborted (Rhai: {text})",
                    self.limits.timeout.as_millis()
                )
            }
            EvalAltResult::ErrorTooManyOperations(_) => format!(
                "The Rhai mapping ran more than the allowed {} operations and was aborted (Rhai: {text})",
                self.limits.max_operations
            ),
            EvalAltResult::ErrorStackOverflow(_) => format!(
                "The Rhai mapping nested function calls deeper than the allowed {} levels (Rhai: {text})",
                self.limits.max_call_levels
            ),
            _ => format!("Rhai error: {text}"),
        };
        with_location(&message, pos, script)
    }
}

// ---- conversions ----

fn json_to_dynamic(v: &Json) -> Dynamic {
    match v {
        Json::Null => Dynamic::UNIT,
        Json::Bool(b) => (*b).into(),
        Json::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(f64::NAN).into(),
        },
        Json::String(s) => s.clone().into(),
        Json::Array(a) => Dynamic::from_array(a.iter().map(json_to_dynamic).collect()),
        Json::Object(o) => Dynamic::from_map(
            o.iter()
                .map(|(k, v)| (k.as_str().into(), json_to_dynamic(v)))
                .collect(),
        ),
    }
}

/// How deep a script's result may nest (as the Ditto Protocol reader takes JSON).
const MAX_RESULT_DEPTH: usize = 128;

/// A script's value as JSON; a value nested deeper than [`MAX_RESULT_DEPTH`] is refused
/// (`json.invalid`) instead of converted by a recursion without end.
fn dynamic_to_json(d: &Dynamic) -> Result<Json, ProtocolError> {
    to_json(d, 0).ok_or_else(|| {
        ProtocolError::json_invalid(format!(
            "The script's result nests deeper than {MAX_RESULT_DEPTH} levels."
        ))
    })
}

fn to_json(d: &Dynamic, depth: usize) -> Option<Json> {
    if depth > MAX_RESULT_DEPTH {
        return None;
    }
    Some(if d.is_unit() {
        Json::Null
    } else if let Ok(b) = d.as_bool() {
        Json::Bool(b)
    } else if let Ok(i) = d.as_int() {
        Json::from(i)
    } else if let Ok(f) = d.as_float() {
        Number::from_f64(f).map_or(Json::Null, Json::Number)
    } else if d.is_string() || d.is_char() {
        Json::String(d.to_string())
    } else if d.is_array() {
        let a = d.read_lock::<Array>()?;
        Json::Array(
            a.iter()
                .map(|v| to_json(v, depth + 1))
                .collect::<Option<_>>()?,
        )
    } else if d.is_blob() {
        let b = d.read_lock::<Blob>()?;
        Json::Array(b.iter().map(|b| Json::from(*b)).collect())
    } else if d.is_map() {
        let m = d.read_lock::<RMap>()?;
        Json::Object(
            m.iter()
                .map(|(k, v)| Some((k.to_string(), to_json(v, depth + 1)?)))
                .collect::<Option<_>>()?,
        )
    } else {
        Json::String(d.to_string())
    })
}

/// `()` → nothing, an array → its elements (`()` elements skipped), anything else → itself.
fn results(d: Dynamic) -> Vec<Dynamic> {
    if d.is_unit() {
        Vec::new()
    } else if d.is_array() {
        d.into_array()
            .unwrap_or_default()
            .into_iter()
            .filter(|d| !d.is_unit())
            .collect()
    } else {
        vec![d]
    }
}

fn opt_string(s: &Option<String>) -> Dynamic {
    s.as_ref()
        .map_or(Dynamic::UNIT, |s| ImmutableString::from(s.as_str()).into())
}

fn content_type_of(message: &ExternalMessage) -> Option<String> {
    message
        .content_type
        .clone()
        .or_else(|| message.headers.get_str("content-type"))
}

const OUT_DESCRIPTION: &str = "The Ditto Protocol message could not be mapped.";

fn outbound_message(d: Dynamic) -> Result<ExternalMessage, ProtocolError> {
    let Some(mut m) = d.try_cast::<RMap>() else {
        return Err(mapping_failed(
            "The outgoing script must return a map, an array of maps or ()",
            OUT_DESCRIPTION,
        ));
    };
    let mut ext = ExternalMessage::default();
    if let Some(h) = m.remove("headers")
        && let Some(h) = h.try_cast::<RMap>()
    {
        for (k, v) in h {
            if !v.is_unit() {
                ext.headers
                    .insert(k.as_str(), value_to_header_string(&dynamic_to_json(&v)?));
            }
        }
    }
    let bytes = m.remove("bytePayload").unwrap_or_default();
    if bytes.is_blob() {
        ext.bytes = bytes.try_cast::<Blob>();
    } else if bytes.is_array() {
        // An array of byte values.
        let a = bytes.into_array().unwrap_or_default();
        ext.bytes = Some(
            a.iter()
                .map(|v| v.as_int().map(|i| i as u8))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| {
                    mapping_failed("<bytePayload> must be a blob of bytes", OUT_DESCRIPTION)
                })?,
        );
    } else if !bytes.is_unit() {
        return Err(mapping_failed(
            "<bytePayload> must be a blob of bytes",
            OUT_DESCRIPTION,
        ));
    }
    if ext.bytes.is_none() {
        let text = m.remove("textPayload").unwrap_or_default();
        if !text.is_unit() {
            ext.text = Some(text.to_string());
        }
    }
    if ext.text.is_none() && ext.bytes.is_none() {
        return Err(mapping_failed(
            "Neither <bytePayload> nor <textPayload> were defined in the outgoing script",
            OUT_DESCRIPTION,
        ));
    }
    match m.remove("contentType") {
        Some(ct) if !ct.is_unit() => {
            let ct = ct.to_string();
            ext.headers.insert("content-type", ct.clone());
            ext.content_type = Some(ct);
        }
        _ => ext.content_type = ext.headers.get_str("content-type"),
    }
    Ok(ext)
}

impl Mapper for RhaiMapper {
    fn map_inbound(&self, message: &ExternalMessage) -> Result<Vec<DittoMessage>, ProtocolError> {
        let Some(incoming) = &self.incoming else {
            // Ditto's default: the payload is a Ditto Protocol message.
            let text = message.payload_text().ok_or_else(|| {
                ProtocolError::json_invalid(
                    "The payload of the external message is not UTF-8 text.",
                )
            })?;
            return Ok(vec![DittoMessage::from_json_str(text)?]);
        };
        let content_type = content_type_of(message);
        let headers: RMap = message
            .headers
            .iter()
            .map(|(k, v)| (k.into(), value_to_header_string(v).into()))
            .collect();
        let bytes = message
            .bytes
            .as_ref()
            .map_or(Dynamic::UNIT, |b| Dynamic::from_blob(b.clone()));
        let description = format!(
            "The external message with content-type '{}' could not be mapped.",
            content_type.as_deref().unwrap_or("")
        );
        let args = vec![
            Dynamic::from_map(headers),
            opt_string(&message.text),
            bytes,
            opt_string(&content_type),
        ];
        let out = if incoming.wrapped {
            let whole: RMap = ["headers", "textPayload", "bytePayload", "contentType"]
                .into_iter()
                .map(Into::into)
                .zip(args)
                .collect();
            let args = vec![Dynamic::from_map(whole)];
            self.call(incoming, INCOMING_WRAPPER, args, &description)?
        } else {
            self.call(incoming, INCOMING_FN, args, &description)?
        };
        let mut mapped = Vec::new();
        for d in results(out) {
            match dynamic_to_json(&d)? {
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
        let Some(outgoing) = &self.outgoing else {
            let mut ext = ExternalMessage::text(message.to_json_string());
            for (k, v) in message.headers.iter() {
                ext.headers.insert(k, value_to_header_string(v));
            }
            ext.headers.insert("content-type", DITTO_CONTENT_TYPE);
            ext.content_type = Some(DITTO_CONTENT_TYPE.to_string());
            return Ok(vec![ext]);
        };
        if outgoing.wrapped {
            let whole = json_to_dynamic(&Json::Object(message.to_json()));
            let out = self.call(outgoing, OUTGOING_WRAPPER, vec![whole], OUT_DESCRIPTION)?;
            return results(out).into_iter().map(outbound_message).collect();
        }
        // Split the topic as Ditto's outgoing wrapper does.
        let topic = message.topic.to_string();
        let parts: Vec<&str> = topic.split('/').collect();
        let part = |i: usize| {
            parts
                .get(i)
                .map_or(Dynamic::UNIT, |s| ImmutableString::from(*s).into())
        };
        let (channel, criterion, action) = if parts.get(2) == Some(&"things") {
            (part(3), part(4), part(5))
        } else {
            (ImmutableString::from("none").into(), part(3), part(4))
        };
        let headers = serde_json::to_value(&message.headers).unwrap_or_default();
        let args = vec![
            part(0),
            part(1),
            part(2),
            channel,
            criterion,
            action,
            ImmutableString::from(message.path.as_str()).into(),
            json_to_dynamic(&headers),
            message
                .value
                .as_ref()
                .map_or(Dynamic::UNIT, json_to_dynamic),
            message
                .status
                .map_or(Dynamic::UNIT, |s| Dynamic::from_int(s.into())),
            message
                .extra
                .as_ref()
                .map_or(Dynamic::UNIT, json_to_dynamic),
        ];
        let out = self.call(outgoing, OUTGOING_FN, args, OUT_DESCRIPTION)?;
        results(out).into_iter().map(outbound_message).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapper_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RhaiMapper>();
    }

    #[test]
    fn json_round_trip() {
        let v = serde_json::json!({"a": [1, 2.5, "x", null, true], "b": {"c": -3}});
        assert_eq!(dynamic_to_json(&json_to_dynamic(&v)).unwrap(), v);
    }

    #[test]
    fn results_nested_deeper_than_json_takes_are_refused() {
        let nested = |levels: usize| {
            let mut d = Dynamic::from_array(vec![]);
            for _ in 0..levels {
                d = Dynamic::from_array(vec![d]);
            }
            d
        };
        assert!(dynamic_to_json(&nested(MAX_RESULT_DEPTH)).is_ok());
        let e = dynamic_to_json(&nested(1_000)).unwrap_err();
        assert_eq!(e.error, "json.invalid");
        assert!(e.message.contains("deeper than 128 levels"), "{e:?}");
    }
}
