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
    let sink: LogSink = Arc::new(move |level, line| {
        seen.lock()
            .unwrap()
            .push(json!({"level": level_name(level), "message": line}));
    });
    let direction = match trial {
        Trial::Inbound(_) => "inbound",
        Trial::Outbound(_) => "outbound",
    };
    let error_json = |e: ferrule_protocol::ProtocolError| json!({"status": e.status, "error": e.error, "message": e.message, "description": e.description});
    let mapper = Definition::parse(&options, engine)
        .map_err(|reason| {
            ferrule_protocol::ProtocolError::mapper_config_failed(reason, "WebAssembly")
        })
        .and_then(|d| WasmMapper::new(engine, slot, d, Some(sink)));
    let mut answer = json!({"direction": direction});
    let mapper = match mapper {
        Ok(m) => m,
        Err(e) => {
            answer["error"] = error_json(e);
            answer["logs"] = Value::Array(logs.lock().unwrap().clone());
            return answer;
        }
    };
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
    match result {
        Ok(outputs) => answer["outputs"] = Value::Array(outputs),
        Err(e) => answer["error"] = error_json(e),
    }
    answer["logs"] = Value::Array(logs.lock().unwrap().clone());
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
    let direction = match trial {
        Trial::Inbound(_) => "inbound",
        Trial::Outbound(_) => "outbound",
    };
    let error_json = |e: ferrule_protocol::ProtocolError| json!({"status": e.status, "error": e.error, "message": e.message, "description": e.description});
    if engine == "WebAssembly"
        && let Some(registry) = &context.wasm
        && let Some(id) = options.get("module").and_then(Value::as_str)
        && let Some(entry) = registry.get(id)
    {
        // A slot of its own: trials do not count in the module's figures.
        let slot = ModuleSlot::new(entry.slot.current().module.clone(), 0);
        let id = id.to_string();
        return Ok(run(registry.engine(), &id, slot, options, trial));
    }
    let mut answer = json!({"direction": direction, "logs": []});
    let mapper = match crate::mapping::pipeline::build_engine(engine, &options, context) {
        Ok(m) => m,
        Err(reason) => {
            // The reason says what to check already.
            answer["error"] = json!({"status": 400,
                "error": ferrule_protocol::MAPPER_CONFIG_FAILED, "message": reason});
            return Ok(answer);
        }
    };
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
    match result {
        Ok(outputs) => answer["outputs"] = Value::Array(outputs),
        Err(e) => answer["error"] = error_json(e),
    }
    answer["durationMicros"] = json!((micros * 10.0).round() / 10.0);
    Ok(answer)
}

/// `ferrule mapper test`: the module from a file, the options as JSON text, the message from a
/// file. Errors before the mapper runs (unreadable files, a refused module) are `Err`.
pub fn run_files(
    module: &std::path::Path,
    options: &str,
    inbound: Option<&std::path::Path>,
    outbound: Option<&std::path::Path>,
) -> Result<Value, String> {
    let bytes =
        std::fs::read(module).map_err(|e| format!("cannot read {}: {e}", module.display()))?;
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
    let engine = WasmEngine::new(ferrule_wasm::Ceilings::default())
        .map_err(|e| format!("{}: {}", e.message, e.description))?;
    let compiled = engine
        .compile(&bytes)
        .map_err(|e| format!("{} {}", e.message, e.description))?;
    let id = module
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("module")
        .to_string();
    Ok(run(
        &engine,
        &id,
        ModuleSlot::new(compiled, 1),
        options,
        &trial,
    ))
}
