//! The JavaScript mapper against the spec's example scripts (§6.4, E1–E11) and its limits.

use ferrule_js::{JsLimits, JsMapper};
use ferrule_protocol::{DittoMessage, ExternalMessage, Headers, Mapper};
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};

fn options(incoming: &str, outgoing: &str) -> Map<String, Value> {
    json!({"incomingScript": incoming, "outgoingScript": outgoing})
        .as_object()
        .unwrap()
        .clone()
}

fn mapper(incoming: &str, outgoing: &str) -> JsMapper {
    JsMapper::new(&options(incoming, outgoing), JsLimits::default()).unwrap()
}

fn limits_ms(ms: u64) -> JsLimits {
    JsLimits {
        timeout: Duration::from_millis(ms),
        ..JsLimits::default()
    }
}

fn external(headers: &[(&str, &str)], text: Option<&str>, bytes: Option<&[u8]>) -> ExternalMessage {
    let headers: Headers = headers.iter().map(|(k, v)| (*k, *v)).collect();
    ExternalMessage {
        content_type: headers.get_str("content-type"),
        headers,
        text: text.map(String::from),
        bytes: bytes.map(<[u8]>::to_vec),
    }
}

fn json_of(m: &DittoMessage) -> Value {
    Value::Object(m.to_json())
}

fn ditto(v: Value) -> DittoMessage {
    DittoMessage::from_json(v.as_object().unwrap().clone()).unwrap()
}

const E1: &str = r#"
function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    var namespace = "org.eclipse.ditto";
    var name = "fancy-car-11";
    var group = "things";
    var channel = "twin";
    var criterion = "commands";
    var action = "modify";
    var path = "/attributes/foo";
    var dittoHeaders = {"correlation-id": headers["correlation-id"]};
    var value = textPayload;
    return Ditto.buildDittoProtocolMsg(namespace, name, group, channel, criterion, action, path, dittoHeaders, value);
}"#;

fn e1_expected() -> Value {
    json!({"topic":"org.eclipse.ditto/fancy-car-11/things/twin/commands/modify",
           "headers":{"correlation-id":"X"},"path":"/attributes/foo","value":"hello!"})
}

#[test]
fn e1_plain_text_inbound() {
    let m = mapper(E1, "");
    let out = m
        .map_inbound(&external(
            &[("correlation-id", "X"), ("content-type", "text/plain")],
            Some("hello!"),
            None,
        ))
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(json_of(&out[0]), e1_expected());
}

#[test]
fn e2_binary_inbound() {
    let script = E1.replace(
        "var value = textPayload;",
        "var value = Ditto.arrayBufferToString(bytePayload);",
    );
    let m = mapper(&script, "");
    let out = m
        .map_inbound(&external(
            &[
                ("correlation-id", "X"),
                ("content-type", "application/octet-stream"),
            ],
            None,
            Some(b"hello!"),
        ))
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(json_of(&out[0]), e1_expected());
}

#[test]
fn e3_bytebuffer_inbound() {
    let script = r#"
function intFromBytes(bytes) {
    return parseInt(Ditto.asByteBuffer(bytes).toHex(), 16);
}
function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    var n = intFromBytes(bytePayload);
    var value = { a: n & 0b1111, b: (n >>> 4) & 0b1111, c: 99 };
    return Ditto.buildDittoProtocolMsg("org.eclipse.ditto", "fancy-car-11", "things", "twin",
        "commands", "modify", "/attributes/foo", {"correlation-id": headers["correlation-id"]}, value);
}"#;
    let mut opts = options(script, "");
    opts.insert("loadBytebufferJS".into(), json!("true"));
    let m = JsMapper::new(&opts, JsLimits::default()).unwrap();
    let out = m
        .map_inbound(&external(
            &[
                ("correlation-id", "X"),
                ("content-type", "application/octet-stream"),
            ],
            None,
            Some(&[0x27, 0x40, 0x8B]),
        ))
        .unwrap();
    assert_eq!(out[0].value, Some(json!({"a":11,"b":8,"c":99})));
}

fn create_thing(id_name: &str) -> DittoMessage {
    ditto(json!({
        "topic": format!("org.eclipse.ditto/{id_name}/things/twin/commands/create"),
        "headers": {"correlation-id": "cid", "requested-acks": ["foo"]},
        "path": "/",
        "value": {"thingId": format!("org.eclipse.ditto:{id_name}")}
    }))
}

#[test]
fn e4_plain_text_outbound_with_header_stringification() {
    let script = r#"
function mapFromDittoProtocolMsg(namespace, name, group, channel, criterion, action, path, dittoHeaders, value, status, extra) {
    var headers = {"correlation-id": dittoHeaders["correlation-id"], "requested-acks": dittoHeaders["requested-acks"]};
    return Ditto.buildExternalMsg(headers, "Thing ID was: " + namespace + ":" + name, null, "text/plain");
}"#;
    let m = mapper("", script);
    let out = m.map_outbound(&create_thing("foo-bar-plain")).unwrap();
    assert_eq!(out.len(), 1);
    let e = &out[0];
    assert_eq!(
        e.text.as_deref(),
        Some("Thing ID was: org.eclipse.ditto:foo-bar-plain")
    );
    assert_eq!(e.bytes, None);
    assert_eq!(e.content_type.as_deref(), Some("text/plain"));
    assert_eq!(
        e.headers.get_str("content-type").as_deref(),
        Some("text/plain")
    );
    assert_eq!(e.headers.get_str("correlation-id").as_deref(), Some("cid"));
    assert_eq!(e.headers.get("requested-acks"), Some(&json!(r#"["foo"]"#)));
}

#[test]
fn e5_binary_outbound() {
    let script = r#"
function mapFromDittoProtocolMsg(namespace, name, group, channel, criterion, action, path, dittoHeaders, value, status, extra) {
    return Ditto.buildExternalMsg({}, null, Ditto.stringToArrayBuffer(namespace + ":" + name), "application/octet-stream");
}"#;
    let m = mapper("", script);
    let out = m.map_outbound(&create_thing("foo-bar-binary")).unwrap();
    assert_eq!(
        out[0].bytes.as_deref(),
        Some(&b"org.eclipse.ditto:foo-bar-binary"[..])
    );
    assert_eq!(out[0].text, None);
    assert_eq!(
        out[0].content_type.as_deref(),
        Some("application/octet-stream")
    );
}

#[test]
fn e6_binary_telemetry_with_dataview() {
    let script = r#"
function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    if (contentType !== "application/octet-stream") { return null; }
    var view = new DataView(bytePayload);
    var value = {
        temperature: { properties: { value: view.getInt16(0) / 100.0 } },
        pressure: { properties: { value: view.getInt16(2) } },
        humidity: { properties: { value: view.getUint8(4) } }
    };
    return Ditto.buildDittoProtocolMsg("org.eclipse.ditto", headers["device_id"], "things", "twin",
        "commands", "modify", "/features", headers, value);
}"#;
    let m = mapper(script, "");
    let out = m
        .map_inbound(&external(
            &[
                ("content-type", "application/octet-stream"),
                ("device_id", "sensor1"),
            ],
            None,
            Some(&[0x09, 0xEF, 0x03, 0xF7, 0x2A]),
        ))
        .unwrap();
    assert_eq!(
        out[0].topic.to_string(),
        "org.eclipse.ditto/sensor1/things/twin/commands/modify"
    );
    assert_eq!(out[0].path, "/features");
    assert_eq!(
        out[0].value,
        Some(
            json!({"temperature":{"properties":{"value":25.43}},"pressure":{"properties":{"value":1015}},
                    "humidity":{"properties":{"value":42}}})
        )
    );
}

#[test]
fn e7_json_telemetry_and_drop_of_other_content_types() {
    let script = r#"
function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    if (contentType !== "application/json") { return null; }
    var json = JSON.parse(textPayload);
    var value = {
        temperature: { properties: { value: parseFloat(json.temp.split(" ")[0]) } },
        pressure: { properties: { value: json.pres.value } },
        humidity: { properties: { value: json.hum } }
    };
    return Ditto.buildDittoProtocolMsg("org.eclipse.ditto", "sensor2", "things", "twin",
        "commands", "modify", "/features", headers, value);
}"#;
    let m = mapper(script, "");
    let text = r#"{"temp":"23.42 °C","hum":78,"pres":{"value":760,"unit":"mmHg"}}"#;
    let out = m
        .map_inbound(&external(
            &[("content-type", "application/json")],
            Some(text),
            None,
        ))
        .unwrap();
    assert_eq!(
        out[0].value,
        Some(
            json!({"temperature":{"properties":{"value":23.42}},"pressure":{"properties":{"value":760}},
                    "humidity":{"properties":{"value":78}}})
        )
    );
    assert_eq!(
        out[0].headers.get_str("content-type").as_deref(),
        Some("application/json")
    );
    let dropped = m
        .map_inbound(&external(
            &[("content-type", "text/plain")],
            Some(text),
            None,
        ))
        .unwrap();
    assert!(dropped.is_empty());
}

#[test]
fn e8_null_results_drop() {
    let m = mapper(
        "function mapToDittoProtocolMsg(){ return null; }",
        "function mapFromDittoProtocolMsg(){ return null; }",
    );
    assert!(
        m.map_inbound(&ExternalMessage::text("x"))
            .unwrap()
            .is_empty()
    );
    assert!(m.map_outbound(&create_thing("t")).unwrap().is_empty());
    let m = mapper(
        "function mapToDittoProtocolMsg(){ return undefined; }",
        "function mapFromDittoProtocolMsg(){ }",
    );
    assert!(
        m.map_inbound(&ExternalMessage::text("x"))
            .unwrap()
            .is_empty()
    );
    assert!(m.map_outbound(&create_thing("t")).unwrap().is_empty());
}

#[test]
fn e9_empty_scripts_behave_like_the_ditto_mapper() {
    let m = mapper("", "");
    let msg = create_thing("e9");
    let out = m.map_outbound(&msg).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].content_type.as_deref(),
        Some("application/vnd.eclipse.ditto+json")
    );
    assert_eq!(
        out[0].headers.get_str("content-type").as_deref(),
        Some("application/vnd.eclipse.ditto+json")
    );
    assert_eq!(
        out[0].headers.get_str("requested-acks").as_deref(),
        Some(r#"["foo"]"#)
    );
    let back = m
        .map_inbound(&ExternalMessage::text(out[0].text.clone().unwrap()))
        .unwrap();
    assert_eq!(back, vec![msg.clone()]);
    let bytes = m
        .map_inbound(&ExternalMessage::bytes(msg.to_json_string()))
        .unwrap();
    assert_eq!(bytes, vec![msg]);
    let e = m
        .map_inbound(&ExternalMessage::text(r#"{"thingId":"a:b"}"#))
        .unwrap_err();
    assert_eq!(e.error, "json.field.missing");
}

/// A definition with one script only (as several of Ditto's blog connections have): the other
/// direction maps as the Ditto mapper, as in Ditto, where both options are optional.
#[test]
fn a_missing_script_maps_its_direction_as_the_ditto_mapper() {
    let incoming = r#"function mapToDittoProtocolMsg(headers, textPayload) {
        return Ditto.buildDittoProtocolMsg("org.one", "way", "things", "twin", "commands",
            "modify", "/attributes/t", headers, JSON.parse(textPayload).t);
    }"#;
    let only_in = json!({"incomingScript": incoming});
    let m = JsMapper::new(only_in.as_object().unwrap(), JsLimits::default()).unwrap();
    let mapped = m
        .map_inbound(&ExternalMessage::text(r#"{"t": 21}"#))
        .unwrap();
    assert_eq!(mapped[0].value, Some(json!(21)));
    let out = m.map_outbound(&create_thing("one")).unwrap();
    assert_eq!(
        out[0].content_type.as_deref(),
        Some("application/vnd.eclipse.ditto+json")
    );
    let only_out = json!({"outgoingScript": null});
    let m = JsMapper::new(only_out.as_object().unwrap(), JsLimits::default()).unwrap();
    let msg = create_thing("two");
    let back = m
        .map_inbound(&ExternalMessage::text(msg.to_json_string()))
        .unwrap();
    assert_eq!(back, vec![msg]);
    let wrong = json!({"incomingScript": 42});
    let e = JsMapper::new(wrong.as_object().unwrap(), JsLimits::default()).unwrap_err();
    assert!(e.message.contains("must be a string"), "{e:?}");
}

#[test]
fn default_js_functions_when_a_script_defines_nothing_relevant() {
    // A non-empty script that overrides nothing: Ditto's default JS skeleton applies.
    let m = mapper("var unused = 1;", "var unused2 = 2;");
    let msg = create_thing("skeleton");
    let text = msg.to_json_string();
    let ditto_ct = [("content-type", "application/vnd.eclipse.ditto+json")];
    assert_eq!(
        m.map_inbound(&external(&ditto_ct, Some(&text), None))
            .unwrap(),
        vec![msg.clone()]
    );
    let octet = [("content-type", "application/octet-stream")];
    assert_eq!(
        m.map_inbound(&external(&octet, None, Some(text.as_bytes())))
            .unwrap(),
        vec![msg.clone()]
    );
    assert!(
        m.map_inbound(&external(&octet, None, Some(b"not json")))
            .unwrap()
            .is_empty()
    );
    assert!(
        m.map_inbound(&external(
            &[("content-type", "text/plain")],
            Some(&text),
            None
        ))
        .unwrap()
        .is_empty()
    );
    let out = m.map_outbound(&msg).unwrap();
    assert_eq!(
        out[0].content_type.as_deref(),
        Some("application/vnd.eclipse.ditto+json")
    );
    let parsed: Value = serde_json::from_str(out[0].text.as_deref().unwrap()).unwrap();
    assert_eq!(parsed, json_of(&msg));
    assert_eq!(
        out[0].headers.get_str("correlation-id").as_deref(),
        Some("cid")
    );
}

#[test]
fn e10_connection_announcement_default_outgoing_and_channel_none() {
    let announcement = ditto(json!({
        "topic": "_/foo-bar-connection/connections/announcements/opened",
        "headers": {"correlation-id": "ann-1"},
        "path": "/",
        "value": {"openedAt": "2024-01-01T00:00:00Z"}
    }));
    let m = mapper("", "var x = 0;");
    let out = m.map_outbound(&announcement).unwrap();
    assert_eq!(
        out[0].content_type.as_deref(),
        Some("application/vnd.eclipse.ditto+json")
    );
    let parsed: Value = serde_json::from_str(out[0].text.as_deref().unwrap()).unwrap();
    assert_eq!(parsed, json_of(&announcement));
    assert_eq!(
        out[0].headers.get_str("correlation-id").as_deref(),
        Some("ann-1")
    );
    let m = mapper(
        "",
        r#"function mapFromDittoProtocolMsg(namespace, name, group, channel, criterion, action) {
            return Ditto.buildExternalMsg({}, [namespace, name, group, channel, criterion, action].join("|"), null, "text/plain");
        }"#,
    );
    let out = m.map_outbound(&announcement).unwrap();
    assert_eq!(
        out[0].text.as_deref(),
        Some("_|foo-bar-connection|connections|none|announcements|opened")
    );
}

#[test]
fn e11_infinite_loop_is_stopped_and_the_next_message_maps() {
    let script = r#"
function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    if (textPayload === "loop") {
        while (true) {}
    }
    return Ditto.buildDittoProtocolMsg("ns", "n", "things", "twin", "commands", "modify", "/attributes/a", {}, textPayload);
}"#;
    let m = JsMapper::new(&options(script, ""), limits_ms(100)).unwrap();
    let start = Instant::now();
    let e = m.map_inbound(&ExternalMessage::text("loop")).unwrap_err();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_millis(1000),
        "{took:?}"
    );
    assert_eq!(e.error, "connectivity:message.mapping.failed");
    assert_eq!(e.status, 400);
    assert!(e.message.contains("100 ms"), "{}", e.message);
    let ok = m.map_inbound(&ExternalMessage::text("fine")).unwrap();
    assert_eq!(ok[0].value, Some(json!("fine")));
}

#[test]
fn bytebuffer_subset() {
    let script = r#"
function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    var bb = Ditto.asByteBuffer(bytePayload);
    var value = {
        hex: bb.toHex(), utf8: bb.toString("utf8"), u8: bb.readUint8(), i16: bb.readInt16(),
        rest: bb.remaining(), b64: bb.toBase64(0, 4), le: Ditto.asByteBuffer(bytePayload).LE().readUint16(1)
    };
    return Ditto.buildDittoProtocolMsg("ns", "n", "things", "twin", "commands", "modify", "/a", {}, value);
}"#;
    let mut opts = options(script, "");
    opts.insert("loadBytebufferJS".into(), json!(true));
    let m = JsMapper::new(&opts, JsLimits::default()).unwrap();
    let out = m
        .map_inbound(&ExternalMessage::bytes("hé!".as_bytes()))
        .unwrap();
    // "hé!" = 68 c3 a9 21
    assert_eq!(
        out[0].value,
        Some(
            json!({"hex":"68c3a921","utf8":"hé!","u8":0x68,"i16":-15447,"rest":1,"b64":"aMOpIQ==","le":0xa9c3})
        )
    );
}

#[test]
fn long_subset() {
    let script = r#"
function mapToDittoProtocolMsg(headers, textPayload) {
    var Long = dcodeIO.Long;
    var a = Long.fromString(textPayload);
    var value = {
        s: a.add(1).toString(), hex: Long.fromString("ff", true, 16).shiftLeft(56).toString(16),
        neg: Long.fromNumber(-5).multiply(Long.fromInt(3)).toNumber(),
        hi: Long.fromBits(1, 2).getHighBits(), lt: a.lessThan(Long.MAX_VALUE),
        wrap: Long.MAX_VALUE.add(Long.ONE).equals(Long.MIN_VALUE)
    };
    return Ditto.buildDittoProtocolMsg("ns", "n", "things", "twin", "commands", "modify", "/a", {}, value);
}"#;
    let mut opts = options(script, "");
    opts.insert("loadLongJS".into(), json!(true));
    let m = JsMapper::new(&opts, JsLimits::default()).unwrap();
    let out = m
        .map_inbound(&ExternalMessage::text("9007199254740993"))
        .unwrap();
    assert_eq!(
        out[0].value,
        Some(
            json!({"s":"9007199254740994","hex":"ff00000000000000","neg":-15,"hi":2,"lt":true,"wrap":true})
        )
    );
    // Without the option there is no dcodeIO.
    let m = mapper(script, "");
    let e = m.map_inbound(&ExternalMessage::text("1")).unwrap_err();
    assert!(
        e.message.contains("dcodeIO is not defined"),
        "{}",
        e.message
    );
}
