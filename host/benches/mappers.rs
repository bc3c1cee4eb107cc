//! Mappings per second on one core: the Ditto mapper on a ~200-byte Ditto Protocol message, and
//! the same JSON reshape (a device JSON → one twin modify) in JavaScript (QuickJS, and a
//! componentize-js component), in Rhai and in Python (a componentize-py component; for the
//! components their size, compile and start are printed too); the
//! `json-reshaper` mapper of `mappers/` as a WebAssembly component through the whole host path
//! (`WasmMapper`: conversions, a warm instance, the epoch deadline) and the same Rust code
//! compiled natively; and on its own, the host building (and dropping) the `serde_json` tree of
//! the component's output value (the second tree, which the native row does not build).
//!
//! `cargo bench -p ferrule-host --bench mappers [-- FILTER]` (release build; ~35 s;
//! single-threaded). With FILTER, only the rows whose name contains it run (e.g. `WebAssembly`;
//! `json-reshaper` runs the component, the native code and their alternating comparison);
//! `FERRULE_WASM_PERFMAP=1` lets `perf record`/`perf report` name the mapper's functions.
//! The bench allocates with mimalloc, as the `ferrule` binary does.
//!
//! First, what compiling an upload costs at the default limits of `[mappers]` (checked before
//! compiling): a component whose one function is as large as `max_function_bytes` allows, and
//! one with `max_code_bytes` of code in 1 KiB functions, and one with `max_functions` functions
//! sharing `max_code_bytes`; time, and the growth of the process's
//! peak RSS (VmHWM) during the compile. These rows run first, in a fresh process, so the peak
//! is the compile's (`-- compile` runs only them).

use ferrule_host::mapping::Mapper;
use ferrule_host::mapping::ditto::DittoMapper;
use ferrule_protocol::ExternalMessage;
use serde_json::json;
use std::time::{Duration, Instant};

/// The `ferrule` binary's allocator, so the host side of each row costs what it costs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RUN: Duration = Duration::from_secs(3);

/// Maps `message` with `mapper` for `run`; returns maps per second.
fn rate(mapper: &dyn Mapper, message: &ExternalMessage, run: Duration) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < run {
        for _ in 0..1000 {
            let out = mapper.map_inbound(message).unwrap();
            std::hint::black_box(out);
        }
        n += 1000;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn selected(name: &str) -> bool {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    name.contains(&filter)
}

fn measure(name: &str, mapper: &dyn Mapper, message: &ExternalMessage) -> f64 {
    if !selected(name) {
        return f64::NAN;
    }
    // Warm up, and check the mapper works on this message.
    let out = mapper.map_inbound(message).expect("the mapping works");
    assert_eq!(out.len(), 1);
    let rate = rate(mapper, message, RUN);
    println!("{name:<44} {rate:>10.0} maps/s  {:>7.2} µs/map", 1e6 / rate);
    rate
}

/// The sandbox's cost as a ratio: the component and the same code native, measured in
/// alternating rounds of one second, so that a slower or faster spell of a shared machine
/// falls on both; prints each round and the medians, and returns the native median in µs.
fn compare(wasm: &dyn Mapper, native: &dyn Mapper, message: &ExternalMessage) -> f64 {
    const ROUNDS: usize = 7;
    let (mut w, mut n, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let wasm_us = 1e6 / rate(wasm, message, Duration::from_secs(1));
        let native_us = 1e6 / rate(native, message, Duration::from_secs(1));
        w.push(wasm_us);
        n.push(native_us);
        ratios.push(wasm_us / native_us);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rounds: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!(
        "WebAssembly / native, {ROUNDS} alternating rounds: {}; median {:.2} µs / {:.2} µs = {:.2}x ({:.0} maps/s)",
        rounds.join(" "),
        median(&mut w),
        median(&mut n),
        median(&mut ratios),
        1e6 / w[ROUNDS / 2]
    );
    n[ROUNDS / 2]
}

/// The part of the component's time that no encoding of the value across the boundary removes:
/// the host builds the value's `serde_json` tree (the twin engine applies it) and drops it.
/// The native row builds its tree once, in the mapper; the component builds one in the guest
/// and the host builds this second one.
fn value_tree(wasm: &dyn Mapper, message: &ExternalMessage, native_us: f64) {
    let out = wasm.map_inbound(message).expect("the mapping works");
    let text = out[0].value.as_ref().expect("a value").to_string();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..1000 {
            let tree: serde_json::Value = serde_json::from_str(&text).unwrap();
            std::hint::black_box(tree);
        }
        n += 1000;
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "host: the output value's tree (parse + drop, {} B): {us:.2} µs = {:.2}x the native row",
        text.len(),
        us / native_us
    );
}

/// A component holding one core module of `functions` functions, each a body of at least
/// `body_bytes` bytes of integer arithmetic on a local (the code Cranelift works hardest on per
/// byte: every group is an instruction to select and a value to allocate).
fn component_with_code(functions: u32, body_bytes: usize) -> Vec<u8> {
    use wasm_encoder::{CodeSection, Function, FunctionSection, Instruction, TypeSection, ValType};
    let mut module = wasm_encoder::Module::new();
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    module.section(&types);
    let mut funcs = FunctionSection::new();
    for _ in 0..functions {
        funcs.function(0);
    }
    module.section(&funcs);
    let mut code = CodeSection::new();
    // local.get 0, i32.const 3, i32.mul, i32.const 7, i32.add, local.set 0: 10 bytes.
    let groups = body_bytes.saturating_sub(4) / 10;
    for _ in 0..functions {
        let mut f = Function::new([]);
        for _ in 0..groups {
            f.instruction(&Instruction::LocalGet(0));
            f.instruction(&Instruction::I32Const(3));
            f.instruction(&Instruction::I32Mul);
            f.instruction(&Instruction::I32Const(7));
            f.instruction(&Instruction::I32Add);
            f.instruction(&Instruction::LocalSet(0));
        }
        f.instruction(&Instruction::LocalGet(0));
        f.instruction(&Instruction::End);
        code.function(&f);
    }
    module.section(&code);
    let mut component = wasm_encoder::Component::new();
    component.section(&wasm_encoder::ModuleSection(&module));
    component.finish()
}

/// The process's peak resident set (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Compiles the largest components the default limits accept; prints time and peak RSS growth.
fn compile_cost() {
    let limits = ferrule_wasm::CodeLimits::default();
    let rows = [
        (
            "compile: one function of max_function_bytes",
            1,
            limits.max_function_bytes as usize,
        ),
        (
            "compile: max_code_bytes in 1 KiB functions",
            (limits.max_code_bytes / 1040) as u32,
            1024,
        ),
        (
            "compile: max_functions functions sharing max_code_bytes",
            limits.max_functions,
            (limits.max_code_bytes / limits.max_functions as u64) as usize - 8,
        ),
    ];
    for (name, functions, body) in rows {
        if !selected(name) {
            continue;
        }
        let component = component_with_code(functions, body);
        let stats = ferrule_wasm::budget::check(&component, &limits).expect("within the limits");
        let engine = ferrule_wasm::WasmEngine::new(ferrule_wasm::Ceilings::default()).unwrap();
        let before = peak_rss_mib();
        let start = Instant::now();
        // Compiled whole; refused afterwards only because it is no mapper (no exports).
        let refused = engine.compile(&component).unwrap_err();
        let took = start.elapsed();
        println!(
            "{name:<52} {:>7} functions, largest {} B, {} B of code: {:>6.2} s, peak RSS +{:.0} MiB ({})",
            stats.functions,
            stats.largest_function_bytes,
            stats.code_bytes,
            took.as_secs_f64(),
            peak_rss_mib() - before,
            refused.message
        );
    }
}

fn main() {
    compile_cost();
    let ditto = ExternalMessage::text(
        json!({"topic": "org.acme/sensor-1/things/twin/commands/modify",
               "headers": {"correlation-id": "c-1", "content-type": "application/json"},
               "path": "/features/environment/properties",
               "value": {"temperature": 21.5, "humidity": 40, "pressure": 1013, "battery": 87}})
        .to_string(),
    );
    let mut device = ExternalMessage::text(
        json!({"device": "sensor-1", "temp": "21.50 °C", "hum": 40, "pres": {"value": 1013, "unit": "hPa"},
               "battery": 87, "firmware": "1.4.2", "ts": 1764072000000u64})
        .to_string(),
    );
    device.headers.insert("content-type", "application/json");
    device.content_type = Some("application/json".into());
    let reshape = r#"
function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    var d = JSON.parse(textPayload);
    var value = {
        temperature: { properties: { value: parseFloat(d.temp.split(" ")[0]) } },
        humidity: { properties: { value: d.hum } },
        pressure: { properties: { value: d.pres.value } },
        battery: { properties: { value: d.battery } }
    };
    return Ditto.buildDittoProtocolMsg("org.acme", d.device, "things", "twin", "commands",
        "modify", "/features", headers, value);
}"#;
    let options = json!({"incomingScript": reshape, "outgoingScript": ""});
    let js = ferrule_js::JsMapper::new(
        options.as_object().unwrap(),
        ferrule_js::JsLimits::default(),
    )
    .expect("the script compiles");
    let rhai_reshape = r#"
fn mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    let d = parse_json(textPayload);
    let value = #{
        temperature: #{ properties: #{ value: parse_float(d.temp.split(" ")[0]) } },
        humidity: #{ properties: #{ value: d.hum } },
        pressure: #{ properties: #{ value: d.pres.value } },
        battery: #{ properties: #{ value: d.battery } }
    };
    ditto_message("org.acme", d.device, "things", "twin", "commands", "modify", "/features", headers, value)
}"#;
    let options = json!({"incomingScript": rhai_reshape, "outgoingScript": ""});
    let rhai = ferrule_rhai::RhaiMapper::new(
        options.as_object().unwrap(),
        ferrule_rhai::RhaiLimits::default(),
    )
    .expect("the Rhai script compiles");
    println!(
        "message sizes: Ditto Protocol {} B, device JSON {} B",
        ditto.payload().len(),
        device.payload().len()
    );
    measure("Ditto (parse Ditto Protocol JSON)", &DittoMapper, &ditto);
    measure("JavaScript (QuickJS, JSON reshape)", &js, &device);
    measure("Rhai (JSON reshape)", &rhai, &device);
    if selected("Python") {
        python_row(&device);
    }
    if selected("JavaScript (componentize-js") {
        javascript_row(&device);
    }

    let reshaper_options = json!({
        "namespace": "org.acme", "thingIdPointer": "/device",
        "mappings": [
            {"from": "/temp", "to": "/features/temperature/properties/value"},
            {"from": "/hum", "to": "/features/humidity/properties/value"},
            {"from": "/pres/value", "to": "/features/pressure/properties/value"},
            {"from": "/battery", "to": "/features/battery/properties/value"}
        ]
    });
    let reshaper_options = reshaper_options.as_object().unwrap();
    let engine = ferrule_wasm::WasmEngine::new(ferrule_wasm::Ceilings::default()).unwrap();
    let module = engine
        .compile(&ferrule_test_guests::bytes(
            ferrule_test_guests::JSON_RESHAPER,
        ))
        .expect("the json-reshaper component compiles");
    let mut with_module = reshaper_options.clone();
    with_module.insert("module".into(), "json-reshaper".into());
    let wasm = ferrule_wasm::WasmMapper::new(
        &engine,
        ferrule_wasm::ModuleSlot::new(module, 1),
        ferrule_wasm::Definition::parse(&with_module, &engine).unwrap(),
        None,
    )
    .expect("the component accepts its options");
    let native = Native(
        <ferrule_mapper_json_reshaper::JsonReshaper as ferrule_mapper_sdk::Mapper>::new(
            reshaper_options,
        )
        .unwrap(),
    );
    let wasm_rate = measure("WebAssembly (json-reshaper component)", &wasm, &device);
    // The host path's own cost: a guest that does almost nothing (no JSON) per call.
    let behave = engine
        .compile(&ferrule_test_guests::bytes(ferrule_test_guests::BEHAVE))
        .unwrap();
    let tiny = ferrule_wasm::WasmMapper::new(
        &engine,
        ferrule_wasm::ModuleSlot::new(behave, 1),
        ferrule_wasm::Definition::parse(json!({"module": "behave"}).as_object().unwrap(), &engine)
            .unwrap(),
        None,
    )
    .unwrap();
    let mut number = ExternalMessage::text("21.5");
    number.headers.insert("device_id", "org.acme:sensor-1");
    measure(
        "WebAssembly (a guest without JSON: host path)",
        &tiny,
        &number,
    );
    let native_rate = measure("native Rust (json-reshaper, same code)", &native, &device);
    if !wasm_rate.is_nan() && !native_rate.is_nan() {
        let native_us = compare(&wasm, &native, &device);
        value_tree(&wasm, &device, native_us);
    }
}

/// The same reshape in Python (`mapper-sdk-py/examples/reshape`), built with componentize-py
/// (which must be installed: `pip install componentize-py==0.17.2`), through the whole host
/// path: its size, the compile at upload, the start of an instance (with `configure`), and the
/// rate of a warm instance.
fn python_row(device: &ExternalMessage) {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("reshape.wasm");
    let sdk = repo.join("mapper-sdk-py");
    let built = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; \
             sys.exit(script())",
        ])
        .arg("-d")
        .arg(repo.join("wit"))
        .args(["-w", "mapper", "componentize", "-p"])
        .arg(&sdk)
        .arg("-p")
        .arg(sdk.join("examples/reshape"))
        .arg("reshape_app")
        .arg("-o")
        .arg(&out)
        .output()
        .expect("python3 runs");
    assert!(
        built.status.success(),
        "componentize-py failed (pip install componentize-py==0.17.2): {}",
        String::from_utf8_lossy(&built.stderr)
    );
    component_row(
        "Python (componentize-py component, JSON reshape)",
        &std::fs::read(&out).unwrap(),
        device,
    );
}

/// The same reshape as a JavaScript component (`mapper-sdk-js/examples/reshape`), built with
/// componentize-js (`npm ci` in `mapper-sdk-js` first): size, compile, start and rate, as for
/// Python.
fn javascript_row(device: &ExternalMessage) {
    let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../mapper-sdk-js");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("reshape.wasm");
    let built = std::process::Command::new("node")
        .arg(sdk.join("build.mjs"))
        .arg(sdk.join("examples/reshape/app.js"))
        .arg(&out)
        .output()
        .expect("node runs");
    assert!(
        built.status.success(),
        "componentize-js failed (npm ci in mapper-sdk-js): {}",
        String::from_utf8_lossy(&built.stderr)
    );
    component_row(
        "JavaScript (componentize-js component, JSON reshape)",
        &std::fs::read(&out).unwrap(),
        device,
    );
}

/// Compiles `bytes` (with room for a language runtime's large functions), starts and
/// configures an instance, prints the three, and measures the map rate of a warm instance.
fn component_row(name: &str, bytes: &[u8], device: &ExternalMessage) {
    let mut ceilings = ferrule_wasm::Ceilings::default();
    ceilings.code.max_function_bytes = 1 << 20;
    let engine = ferrule_wasm::WasmEngine::new(ceilings).unwrap();
    let started = Instant::now();
    let module = engine.compile(bytes).expect("the component compiles");
    let compile = started.elapsed();
    let slot = ferrule_wasm::ModuleSlot::new(module, 1);
    let options = json!({"module": "reshape"});
    let definition =
        ferrule_wasm::Definition::parse(options.as_object().unwrap(), &engine).unwrap();
    let started = Instant::now();
    let mapper = ferrule_wasm::WasmMapper::new(&engine, slot, definition, None)
        .expect("the component configures");
    let start = started.elapsed();
    println!(
        "{name}: {:.1} MB, compiled in {:.2} s, an instance started and configured in {:.1} ms",
        bytes.len() as f64 / 1e6,
        compile.as_secs_f64(),
        start.as_secs_f64() * 1e3
    );
    measure(name, &mapper, device);
}

/// The SDK mapper compiled natively, behind the host's trait.
struct Native(ferrule_mapper_json_reshaper::JsonReshaper);

impl Mapper for Native {
    fn map_inbound(
        &self,
        message: &ExternalMessage,
    ) -> Result<Vec<ferrule_protocol::DittoMessage>, ferrule_protocol::ProtocolError> {
        ferrule_mapper_sdk::Mapper::map_inbound(&self.0, message).map_err(|e| {
            ferrule_protocol::ProtocolError::mapping_failed(
                e.message,
                e.description.unwrap_or_default(),
            )
        })
    }

    fn map_outbound(
        &self,
        _message: &ferrule_protocol::DittoMessage,
    ) -> Result<Vec<ExternalMessage>, ferrule_protocol::ProtocolError> {
        Ok(Vec::new())
    }
}
