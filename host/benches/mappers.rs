//! Mappings per second on one core: the Ditto mapper on a ~200-byte Ditto Protocol message, and
//! the same JSON reshape (a device JSON → one twin modify) in JavaScript and in Rhai; the
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

fn main() {
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
