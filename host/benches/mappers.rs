//! Mappings per second on one core: the Ditto mapper on a ~200-byte Ditto Protocol message, and
//! the same JSON reshape (a device JSON → one twin modify) in JavaScript and in Rhai.
//!
//! `cargo bench -p ferrule-host --bench mappers` (release build; ~10 s; single-threaded).

use ferrule_host::mapping::Mapper;
use ferrule_host::mapping::ditto::DittoMapper;
use ferrule_protocol::ExternalMessage;
use serde_json::json;
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(3);

fn measure(name: &str, mapper: &dyn Mapper, message: &ExternalMessage) -> f64 {
    // Warm up, and check the mapper works on this message.
    let out = mapper.map_inbound(message).expect("the mapping works");
    assert_eq!(out.len(), 1);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        for _ in 0..1000 {
            let out = mapper.map_inbound(message).unwrap();
            std::hint::black_box(out);
        }
        n += 1000;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    println!("{name:<44} {rate:>10.0} maps/s  {:>7.2} µs/map", 1e6 / rate);
    rate
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
}
