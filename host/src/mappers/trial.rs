//! Trying a module before using it: one inbound or outbound message through a fresh instance,
//! with the outputs, the error, the log lines and the time it took. Nothing is published.
//! Serves `POST /api/2/mappers/{id}/test` and `ferrule mapper test`.

use base64::Engine as _;
use ferrule_protocol::{DittoMessage, ExternalMessage, Headers, Mapper};
use ferrule_wasm::{Definition, Level, LogSink, ModuleSlot, WasmEngine, WasmMapper};
use serde_json::{Map, Value, json};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The message to try.
#[derive(Debug, Clone)]
pub enum Trial {
    Inbound(ExternalMessage),
    Outbound(Box<DittoMessage>),
}

/// An external message from JSON: `{"headers": {..}, "textPayload": "..", "bytePayload":
/// "<base64>", "contentType": ".."}`.
pub fn external_from_json(v: &Value) -> Result<ExternalMessage, String> {
    let o = v
        .as_object()
        .ok_or("The inbound message must be a JSON object.")?;
    let mut headers = Headers::new();
    if let Some(h) = o.get("headers") {
        let h = h.as_object().ok_or("<headers> must be a JSON object.")?;
        for (k, v) in h {
            headers.insert(k.clone(), v.clone());
        }
    }
    let text = match o.get("textPayload") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let bytes = match o.get("bytePayload") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("<bytePayload> is not base64: {e}"))?,
        ),
        Some(_) => return Err("<bytePayload> must be a base64 string.".into()),
    };
    let content_type = o
        .get("contentType")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| headers.get_str("content-type"));
    Ok(ExternalMessage {
        headers,
        text,
        bytes,
        content_type,
    })
}

pub fn external_to_json(m: &ExternalMessage) -> Value {
    let headers: Map<String, Value> = m
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let mut o = Map::new();
    o.insert("headers".into(), Value::Object(headers));
    if let Some(t) = &m.text {
        o.insert("textPayload".into(), t.clone().into());
    }
    if let Some(b) = &m.bytes {
        o.insert(
            "bytePayload".into(),
            base64::engine::general_purpose::STANDARD.encode(b).into(),
        );
    }
    if let Some(c) = &m.content_type {
        o.insert("contentType".into(), c.clone().into());
    }
    Value::Object(o)
}

/// Reads `{"options": {..}, "inbound": {..}}` or `{"options": {..}, "outbound": {Ditto
/// Protocol message}}`.
pub fn parse_request(v: &Value) -> Result<(Map<String, Value>, Trial), String> {
    let o = v.as_object().ok_or("The request must be a JSON object.")?;
    let options = match o.get("options") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err("<options> must be a JSON object.".into()),
    };
    let trial = match (o.get("inbound"), o.get("outbound")) {
        (Some(i), None) => Trial::Inbound(external_from_json(i)?),
        (None, Some(Value::Object(m))) => Trial::Outbound(Box::new(
            DittoMessage::from_json(m.clone())
                .map_err(|e| format!("<outbound> is not a Ditto Protocol message: {}", e.message))?,
        )),
        (None, Some(_)) => return Err("<outbound> must be a Ditto Protocol message object.".into()),
        _ => return Err("Give exactly one of <inbound> (an external message) or <outbound> (a Ditto Protocol message).".into()),
    };
    Ok((options, trial))
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// Runs `trial` through a fresh instance of `slot`'s module configured with `options`
/// (`module` is set to `module_id`). The answer: `direction`, `outputs` or `error`, `logs`,
/// `durationMicros` (the mapping call, without starting the instance).
pub fn run(
    engine: &WasmEngine,
    module_id: &str,
    slot: Arc<ModuleSlot>,
    mut options: Map<String, Value>,
    trial: &Trial,
) -> Value {
    options.insert("module".into(), module_id.into());
    let logs: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = logs.clone();
    let sink: LogSink = Arc::new(move |level, line, _| {
        seen.lock()
            .unwrap()
            .push(json!({"level": level_name(level), "message": line}));
    });
    let mapper = Definition::parse(&options, engine)
        .map_err(|reason| {
            ferrule_protocol::ProtocolError::mapper_config_failed(reason, "WebAssembly")
        })
        .and_then(|d| WasmMapper::new(engine, slot, d, Some(sink)));
    let mut answer = match mapper {
        Ok(mapper) => answer_of(&mapper, trial),
        Err(e) => {
            let mut answer = json!({"direction": direction(trial)});
            answer["error"] = error_json(&e);
            answer
        }
    };
    answer["logs"] = Value::Array(logs.lock().unwrap().clone());
    answer
}

fn direction(trial: &Trial) -> &'static str {
    match trial {
        Trial::Inbound(_) => "inbound",
        Trial::Outbound(_) => "outbound",
    }
}

fn error_json(e: &ferrule_protocol::ProtocolError) -> Value {
    json!({"status": e.status, "error": e.error, "message": e.message, "description": e.description})
}

/// Maps `trial` once with `mapper`: `direction`, `outputs` or `error`, `durationMicros` (the
/// mapping call alone).
fn answer_of(mapper: &dyn Mapper, trial: &Trial) -> Value {
    let started = Instant::now();
    let result = match trial {
        Trial::Inbound(m) => mapper.map_inbound(m).map(|out| {
            out.iter()
                .map(|d| Value::Object(d.to_json()))
                .collect::<Vec<_>>()
        }),
        Trial::Outbound(d) => mapper
            .map_outbound(d)
            .map(|out| out.iter().map(external_to_json).collect::<Vec<_>>()),
    };
    let micros = started.elapsed().as_secs_f64() * 1e6;
    let mut answer = json!({"direction": direction(trial)});
    match result {
        Ok(outputs) => answer["outputs"] = Value::Array(outputs),
        Err(e) => answer["error"] = error_json(&e),
    }
    answer["durationMicros"] = json!((micros * 10.0).round() / 10.0);
    answer
}

/// Runs `trial` through a mapper built from a mapping definition (`{"mappingEngine": ..,
/// "options": {..}}`, any engine) as a connection would build it; WebAssembly definitions go
/// through [`run`], with the module's log lines. The answer has the shape of [`run`]'s;
/// `Err` is a request that is no mapping definition.
pub fn run_definition(
    definition: &Value,
    trial: &Trial,
    context: &crate::mapping::MappingContext,
) -> Result<Value, String> {
    let d = definition
        .as_object()
        .ok_or("<mappingDefinition> must be a JSON object.")?;
    let engine = d
        .get("mappingEngine")
        .and_then(Value::as_str)
        .ok_or("<mappingDefinition> needs a <mappingEngine> string.")?;
    let options = match d.get("options") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err("<mappingDefinition/options> must be a JSON object.".into()),
    };
    if engine == "WebAssembly"
        && let Some(registry) = &context.wasm
        && let Some(id) = options.get("module").and_then(Value::as_str)
        && let Ok(named) = registry.resolve(id)
    {
        // A slot of its own: trials do not count in the module's figures.
        let slot = ModuleSlot::new(named.current().module.clone(), 0);
        let id = id.to_string();
        return Ok(run(registry.engine(), &id, slot, options, trial));
    }
    let mut answer = match crate::mapping::pipeline::build_engine(engine, &options, context) {
        Ok(mapper) => answer_of(mapper.as_ref(), trial),
        Err(reason) => {
            // The reason says what to check already.
            json!({"direction": direction(trial), "error": {"status": 400,
                "error": ferrule_protocol::MAPPER_CONFIG_FAILED, "message": reason}})
        }
    };
    answer["logs"] = json!([]);
    Ok(answer)
}

/// What `ferrule mapper test` runs: a module file (compiled once) or a mapping definition.
pub enum Subject {
    Module {
        engine: WasmEngine,
        id: String,
        slot: Arc<ModuleSlot>,
    },
    Definition(Value),
}

impl Subject {
    /// A module file, or a mapping definition file (`{"mappingEngine": .., "options": {..}}`);
    /// a module is compiled within `ceilings` (the host's `[mappers]`).
    pub fn load(
        module: Option<&std::path::Path>,
        definition: Option<&std::path::Path>,
        ceilings: ferrule_wasm::Ceilings,
    ) -> Result<Subject, String> {
        match (module, definition) {
            (Some(module), None) => {
                let bytes = std::fs::read(module)
                    .map_err(|e| format!("cannot read {}: {e}", module.display()))?;
                let engine = WasmEngine::new(ceilings)
                    .map_err(|e| format!("{}: {}", e.message, e.description))?;
                let compiled = engine
                    .compile(&bytes)
                    .map_err(|e| format!("{} {}", e.message, e.description))?;
                let id = module
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("module")
                    .to_string();
                Ok(Subject::Module {
                    engine,
                    id,
                    slot: ModuleSlot::new(compiled, 1),
                })
            }
            (None, Some(file)) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                let definition: Value = serde_json::from_str(&text)
                    .map_err(|e| format!("{} is not JSON: {e}", file.display()))?;
                Ok(Subject::Definition(definition))
            }
            _ => Err("give one of --module FILE or --definition FILE".into()),
        }
    }

    /// One message through a fresh mapper (with `options` for a module), as [`run`] answers.
    pub fn run(&self, options: &Map<String, Value>, trial: &Trial) -> Result<Value, String> {
        match self {
            Subject::Module { engine, id, slot } => {
                Ok(run(engine, id, slot.clone(), options.clone(), trial))
            }
            Subject::Definition(definition) => {
                let context = crate::mapping::MappingContext::default();
                run_definition(definition, trial, &context)
            }
        }
    }
}

/// `ferrule mapper test`: the module (or definition) from a file, the options as JSON text, the
/// message from a file. Errors before the mapper runs (unreadable files, a refused module) are
/// `Err`.
pub fn run_files(
    subject: &Subject,
    options: &str,
    inbound: Option<&std::path::Path>,
    outbound: Option<&std::path::Path>,
) -> Result<Value, String> {
    let options: Value =
        serde_json::from_str(options).map_err(|e| format!("--options is not JSON: {e}"))?;
    let (file, key) = match (inbound, outbound) {
        (Some(f), None) => (f, "inbound"),
        (None, Some(f)) => (f, "outbound"),
        _ => return Err("give one of --inbound FILE or --outbound FILE".into()),
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let message: Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", file.display()))?;
    let (options, trial) = parse_request(&json!({"options": options, key: message}))?;
    subject.run(&options, &trial)
}

/// Whether `actual` has everything `expected` says: objects by their expected members (others
/// may be there), arrays element by element with the same length, anything else equal.
pub fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|got| matches(v, got))),
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(e, a)| matches(e, a))
        }
        (Value::Number(e), Value::Number(a)) => e.as_f64() == a.as_f64(),
        _ => expected == actual,
    }
}

/// Runs a file of cases, one JSON object a line (blank lines and lines starting with `#` are
/// skipped): `{"name": .., "options": {..}, "inbound": {..} | "outbound": {..}, "expect": [..] |
/// "expectError": ".."}`. `expect` lists the outputs (each matched by [`matches`]),
/// `expectError` is text the error's code, message or description contains. The report has a
/// line per case, with what was expected and what came for a failed one; the count of failed
/// cases is returned with it.
pub fn run_cases(
    subject: &Subject,
    default_options: &str,
    cases: &str,
) -> Result<(String, usize), String> {
    let default_options: Value =
        serde_json::from_str(default_options).map_err(|e| format!("--options is not JSON: {e}"))?;
    let mut report = String::new();
    let (mut passed, mut failed) = (0, 0);
    for (n, line) in cases.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let case: Value =
            serde_json::from_str(line).map_err(|e| format!("case on line {}: {e}", n + 1))?;
        let name = case["name"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("line {}", n + 1));
        let mut request = json!({"options": case.get("options").unwrap_or(&default_options)});
        for key in ["inbound", "outbound"] {
            if let Some(m) = case.get(key) {
                request[key] = m.clone();
            }
        }
        let (options, trial) = parse_request(&request).map_err(|e| format!("case {name}: {e}"))?;
        let answer = subject.run(&options, &trial)?;
        let verdict = match (case.get("expect"), case.get("expectError")) {
            (Some(expect), None) => match answer.get("outputs") {
                Some(outputs) if matches(expect, outputs) => Ok(()),
                _ => Err(expect.clone()),
            },
            (None, Some(Value::String(text))) => {
                let error = &answer["error"];
                let found = ["error", "message", "description"]
                    .iter()
                    .any(|k| error[k].as_str().is_some_and(|s| s.contains(text.as_str())));
                if found {
                    Ok(())
                } else {
                    Err(json!({"error containing": text}))
                }
            }
            _ => return Err(format!("case {name}: give one of expect or expectError")),
        };
        match verdict {
            Ok(()) => {
                passed += 1;
                report.push_str(&format!("ok      {name}\n"));
            }
            Err(expected) => {
                failed += 1;
                let got = answer
                    .get("outputs")
                    .cloned()
                    .map(|o| json!({"outputs": o}))
                    .unwrap_or_else(|| json!({"error": answer["error"]}));
                report.push_str(&format!(
                    "FAILED  {name}\n  expected: {expected}\n  got:      {got}\n"
                ));
            }
        }
    }
    report.push_str(&format!("{passed} passed, {failed} failed\n"));
    Ok((report, failed))
}
