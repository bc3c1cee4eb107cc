//! The Rhai mapper against the Rhai equivalents of the spec's JavaScript examples (§6.4) and its
//! limits.

use ferrule_protocol::{DittoMessage, ExternalMessage, Headers, Mapper};
use ferrule_rhai::{CONFIG_FAILED, MAPPING_FAILED, RhaiLimits, RhaiMapper};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn options(incoming: &str, outgoing: &str) -> Map<String, Value> {
    json!({"incomingScript": incoming, "outgoingScript": outgoing})
        .as_object()
        .unwrap()
        .clone()
}

fn mapper(incoming: &str, outgoing: &str) -> RhaiMapper {
    RhaiMapper::new(&options(incoming, outgoing), RhaiLimits::default()).unwrap()
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

fn create_thing(id_name: &str) -> DittoMessage {
    ditto(json!({
        "topic": format!("org.eclipse.ditto/{id_name}/things/twin/commands/create"),
        "headers": {"correlation-id": "cid", "requested-acks": ["foo"]},
        "path": "/",
        "value": {"thingId": format!("org.eclipse.ditto:{id_name}")}
    }))
}

const E1: &str = r#"
fn mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    let namespace = "org.eclipse.ditto";
    let name = "fancy-car-11";
    let group = "things";
    let channel = "twin";
    let criterion = "commands";
    let action = "modify";
    let path = "/attributes/foo";
    let dittoHeaders = #{"correlation-id": headers["correlation-id"]};
    let value = textPayload;
    ditto_message(namespace, name, group, channel, criterion, action, path, dittoHeaders, value)
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
        "let value = textPayload;",
        "let value = bytes_to_string(bytePayload);",
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
fn e6_binary_telemetry_decoded_from_bytes() {
    let script = r#"
fn int16(b, i) {
    let v = (b[i] << 8) | b[i + 1];
    if v >= 32768 { v - 65536 } else { v }
}
fn mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    if contentType != "application/octet-stream" { return (); }
    let value = #{
        temperature: #{ properties: #{ value: int16(bytePayload, 0) / 100.0 } },
        pressure: #{ properties: #{ value: int16(bytePayload, 2) } },
        humidity: #{ properties: #{ value: bytePayload[4] } }
    };
    ditto_message("org.eclipse.ditto", headers["device_id"], "things", "twin",
        "commands", "modify", "/features", headers, value)
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
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].topic.to_string(),
        "org.eclipse.ditto/sensor1/things/twin/commands/modify"
    );
    assert_eq!(out[0].path, "/features");
    assert_eq!(
        out[0].value,
        Some(json!({
            "temperature": {"properties": {"value": 25.43}},
            "pressure": {"properties": {"value": 1015}},
            "humidity": {"properties": {"value": 42}}
        }))
    );
    assert_eq!(
        out[0].headers.get_str("device_id").as_deref(),
        Some("sensor1")
    );
    // Another content type: dropped.
    let none = m
        .map_inbound(&external(
            &[("content-type", "text/plain")],
            Some("x"),
            None,
        ))
        .unwrap();
    assert!(none.is_empty());
}

#[test]
fn e4_plain_text_outbound_with_header_stringification() {
    let script = r#"
fn mapFromDittoProtocolMsg(namespace, name, group, channel, criterion, action, path, dittoHeaders, value, status, extra) {
    let headers = #{"correlation-id": dittoHeaders["correlation-id"], "requested-acks": dittoHeaders["requested-acks"]};
    external_message(headers, "Thing ID was: " + namespace + ":" + name, (), "text/plain")
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
fn e5_binary_outbound_and_bytes_win_over_text() {
    let script = r#"
fn mapFromDittoProtocolMsg(namespace, name, group, channel, criterion, action, path, dittoHeaders, value, status, extra) {
    external_message(#{}, "ignored", string_to_bytes(namespace + ":" + name), "application/octet-stream")
}"#;
    let m = mapper("", script);
    let out = m.map_outbound(&create_thing("foo-bar-binary")).unwrap();
    assert_eq!(out.len(), 1);
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
fn outbound_arguments_follow_the_topic_split() {
    let script = r#"
fn mapFromDittoProtocolMsg(namespace, name, group, channel, criterion, action, path, dittoHeaders, value, status, extra) {
    let text = [namespace, name, group, channel, criterion, action, path, value.thingId, status, extra].map(|v| `${v}`);
    let s = "";
    for (v, i) in text { if i > 0 { s += "|"; } s += v; }
    external_message(#{}, s, (), ())
}"#;
    let m = mapper("", script);
    let out = m.map_outbound(&create_thing("t1")).unwrap();
    assert_eq!(
        out[0].text.as_deref(),
        Some("org.eclipse.ditto|t1|things|twin|commands|create|/|org.eclipse.ditto:t1||")
    );
    assert_eq!(out[0].content_type, None);
}

#[test]
fn e8_unit_results_drop() {
    let m = mapper(
        "fn mapToDittoProtocolMsg(h, t, b, c) { () }",
        "fn mapFromDittoProtocolMsg(a, b, c, d, e, f, g, h, i, j, k) { return; }",
    );
    assert!(
        m.map_inbound(&ExternalMessage::text("x"))
            .unwrap()
            .is_empty()
    );
    assert!(m.map_outbound(&create_thing("t")).unwrap().is_empty());
}

#[test]
fn array_results_give_one_message_each_in_order() {
    let incoming = r#"
fn mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    let out = [];
    for (part, i) in textPayload.split(",") {
        out.push(ditto_message("ns", "thing" + i, "things", "twin", "commands", "modify",
            "/attributes/a", #{}, part));
    }
    out.push(());
    out
}"#;
    let outgoing = r#"
fn mapFromDittoProtocolMsg(namespace, name, group, channel, criterion, action, path, dittoHeaders, value, status, extra) {
    [external_message(#{n: 1}, "one", (), ()), (), external_message(#{n: 2}, "two", (), ())]
}"#;
    let m = mapper(incoming, outgoing);
    let out = m.map_inbound(&ExternalMessage::text("a,b,c")).unwrap();
    assert_eq!(out.len(), 3);
    for (i, (msg, v)) in out.iter().zip(["a", "b", "c"]).enumerate() {
        assert_eq!(msg.topic.name, format!("thing{i}"));
        assert_eq!(msg.value, Some(json!(v)));
    }
    let out = m.map_outbound(&create_thing("t")).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].text.as_deref(), Some("one"));
    assert_eq!(out[0].headers.get_str("n").as_deref(), Some("1"));
    assert_eq!(out[1].text.as_deref(), Some("two"));
}

#[test]
fn status_and_extra_and_responses() {
    let incoming = r#"
fn mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    ditto_message("ns", "t", "things", "twin", "commands", "modify", "/", #{}, (), 204, #{x: 1})
}"#;
    let m = mapper(incoming, "");
    let out = m.map_inbound(&ExternalMessage::text("x")).unwrap();
    assert_eq!(out[0].status, Some(204));
    assert_eq!(out[0].extra, Some(json!({"x": 1})));
    assert_eq!(out[0].value, None);
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
        out[0].headers.get_str("correlation-id").as_deref(),
        Some("cid")
    );
    let back = m
        .map_inbound(&ExternalMessage::text(out[0].text.clone().unwrap()))
        .unwrap();
    assert_eq!(back, vec![msg]);
    // Whitespace-only counts as empty.
    let m = mapper("  \n", "\n");
    assert_eq!(m.map_outbound(&create_thing("w")).unwrap().len(), 1);
}

#[test]
fn invalid_results_are_errors() {
    let m = mapper(
        "fn mapToDittoProtocolMsg(h, t, b, c) { #{path: \"/\"} }",
        "fn mapFromDittoProtocolMsg(a, b, c, d, e, f, g, h, i, j, k) { #{headers: #{}} }",
    );
    let e = m.map_inbound(&ExternalMessage::text("x")).unwrap_err();
    assert_eq!(e.error, "json.field.missing");
    let e = m.map_outbound(&create_thing("t")).unwrap_err();
    assert_eq!(e.error, MAPPING_FAILED);
    assert_eq!(
        e.message,
        "Neither <bytePayload> nor <textPayload> were defined in the outgoing script"
    );
    let m = mapper("fn mapToDittoProtocolMsg(h, t, b, c) { 42 }", "");
    let e = m.map_inbound(&ExternalMessage::text("x")).unwrap_err();
    assert_eq!(e.error, "json.invalid");
}

#[test]
fn infinite_loop_is_stopped_by_the_operation_limit_and_the_next_message_maps() {
    let script = r#"
fn mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    if textPayload == "loop" { let i = 0; loop { i += 1; } }
    ditto_message("ns", "t", "things", "twin", "commands", "modify", "/attributes/a", #{}, textPayload)
}"#;
    let limits = RhaiLimits {
        max_operations: 10_000,
        ..RhaiLimits::default()
    };
    let m = RhaiMapper::new(&options(script, ""), limits).unwrap();
    let e = m.map_inbound(&ExternalMessage::text("loop")).unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(e.error, MAPPING_FAILED);
    assert!(e.message.contains("10000 operations"), "{}", e.message);
    assert!(e.message.contains("Too many operations"), "{}", e.message);
    let ok = m.map_inbound(&ExternalMessage::text("fine")).unwrap();
    assert_eq!(ok[0].value, Some(json!("fine")));
}

#[test]
fn infinite_loop_is_stopped_by_the_timeout_and_the_next_message_maps() {
    let script = r#"
fn mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    if textPayload == "loop" { let i = 0; loop { i += 1; } }
    ditto_message("ns", "t", "things", "twin", "commands", "modify", "/attributes/a", #{}, textPayload)
}"#;
    let limits = RhaiLimits {
        max_operations: 0,
        timeout: Duration::from_millis(100),
        ..RhaiLimits::default()
    };
    let m = RhaiMapper::new(&options(script, ""), limits).unwrap();
    let start = Instant::now();
    let e = m.map_inbound(&ExternalMessage::text("loop")).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(e.error, MAPPING_FAILED);
    assert!(
        e.message
            .starts_with("The Rhai mapping took longer than the allowed 100 ms"),
        "{}",
        e.message
    );
    let ok = m.map_inbound(&ExternalMessage::text("fine")).unwrap();
    assert_eq!(ok[0].value, Some(json!("fine")));
}

#[test]
fn deep_recursion_is_stopped() {
    let script = r#"
fn down(n) { down(n + 1) }
fn mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) { down(0) }"#;
    let m = mapper(script, "");
    let e = m.map_inbound(&ExternalMessage::text("x")).unwrap_err();
    assert_eq!(e.error, MAPPING_FAILED);
    assert!(
        e.message.contains("deeper than the allowed 32"),
        "{}",
        e.message
    );
}

#[test]
fn script_too_large_is_refused() {
    let big = format!(
        "fn mapToDittoProtocolMsg(h, t, b, c) {{ () }}\n// {}",
        "x".repeat(50_000)
    );
    let e = RhaiMapper::new(&options(&big, ""), RhaiLimits::default()).unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(e.error, CONFIG_FAILED);
    assert!(
        e.message
            .starts_with("The script size was bigger than the allowed <50000> bytes"),
        "{}",
        e.message
    );
    assert!(e.message.ends_with("outgoing script size was <0> bytes"));
}

#[test]
fn syntax_error_names_line_and_column() {
    let script = "fn mapToDittoProtocolMsg(h, t, b, c) {\n    let x = ;\n}";
    let e = RhaiMapper::new(&options(script, ""), RhaiLimits::default()).unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(e.error, CONFIG_FAILED);
    assert!(e.message.starts_with("incomingScript: "), "{}", e.message);
    assert!(
        e.message
            .contains("- in line/column #2/13, source: let x = ;"),
        "{}",
        e.message
    );
    let e = RhaiMapper::new(&options("", "fn oops( {"), RhaiLimits::default()).unwrap_err();
    assert!(e.message.starts_with("outgoingScript: "), "{}", e.message);
    assert!(e.message.contains("line/column #1/"), "{}", e.message);
}

#[test]
fn runtime_error_names_line_and_column() {
    let script =
        "fn mapToDittoProtocolMsg(h, t, b, c) {\n    let x = 1;\n    x.no_such_method()\n}";
    let m = mapper(script, "");
    let e = m.map_inbound(&ExternalMessage::text("x")).unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(e.error, MAPPING_FAILED);
    assert!(e.message.starts_with("Rhai error: "), "{}", e.message);
    assert!(e.message.contains("line/column #3/"), "{}", e.message);
    assert!(
        e.message.contains("source: x.no_such_method()"),
        "{}",
        e.message
    );
    let throw = mapper(
        "fn mapToDittoProtocolMsg(h, t, b, c) {\n  throw \"bad payload\";\n}",
        "",
    );
    let e = throw.map_inbound(&ExternalMessage::text("x")).unwrap_err();
    assert!(e.message.contains("bad payload"), "{}", e.message);
    assert!(e.message.contains("line/column #2/3"), "{}", e.message);
}

#[test]
fn configuration_errors() {
    // A missing script is the Ditto mapping, as for JavaScript; one that is there is a string.
    assert!(
        RhaiMapper::new(
            json!({"incomingScript": ""}).as_object().unwrap(),
            RhaiLimits::default(),
        )
        .is_ok()
    );
    let e = RhaiMapper::new(
        json!({"incomingScript": "", "outgoingScript": 7})
            .as_object()
            .unwrap(),
        RhaiLimits::default(),
    )
    .unwrap_err();
    assert_eq!(e.error, CONFIG_FAILED);
    assert!(e.message.contains("<outgoingScript>"), "{}", e.message);
    let e = RhaiMapper::new(
        &options("fn somethingElse() { () }", ""),
        RhaiLimits::default(),
    )
    .unwrap_err();
    assert_eq!(e.error, CONFIG_FAILED);
    assert!(
        e.message.contains("<mapToDittoProtocolMsg>"),
        "{}",
        e.message
    );
}

#[test]
fn sandbox_has_no_eval_and_no_file_modules() {
    let e = RhaiMapper::new(
        &options("fn mapToDittoProtocolMsg(h, t, b, c) { eval(\"1\") }", ""),
        RhaiLimits::default(),
    )
    .unwrap_err();
    assert_eq!(e.error, CONFIG_FAILED);
    let m = mapper(
        "import \"/etc/passwd\" as p;\nfn mapToDittoProtocolMsg(h, t, b, c) { () }",
        "",
    );
    let e = m.map_inbound(&ExternalMessage::text("x")).unwrap_err();
    assert_eq!(e.error, MAPPING_FAILED);
}

#[test]
fn one_mapper_serves_many_threads() {
    let m = Arc::new(mapper(E1, ""));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let m = m.clone();
            std::thread::spawn(move || {
                for j in 0..50 {
                    let text = format!("{i}-{j}");
                    let out = m
                        .map_inbound(&external(&[("correlation-id", "X")], Some(&text), None))
                        .unwrap();
                    assert_eq!(out[0].value, Some(json!(text)));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// Issue 20: byte readers for every integer width, signedness and byte order (Rhai's own
/// `parse_be_int(0, 2)` on `00 07` gives 1970324836974592).
#[test]
fn byte_readers_read_every_width_and_byte_order() {
    let script = r#"
fn mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    let b = bytePayload;
    let value = #{
        u8: b.read_u8(0), i8: b.read_i8(2),
        u16be: b.read_u16_be(0), u16le: b.read_u16_le(0),
        i16be: b.read_i16_be(2), i16le: b.read_i16_le(2),
        u32be: b.read_u32_be(0), i32be: b.read_i32_be(2), i32le: b.read_i32_le(2),
        i64be: b.read_i64_be(0), i64le: b.read_i64_le(0),
        f32be: b.read_f32_be(8), f64le: b.read_f64_le(12)
    };
    ditto_message("org.acme", "d", "things", "twin", "commands", "modify", "/attributes/r",
                  #{}, value)
}"#;
    let m = mapper(script, "");
    let mut bytes = vec![0x00, 0x07, 0xff, 0xfe, 0x01, 0x02, 0x03, 0x04];
    bytes.extend(21.5f32.to_be_bytes());
    bytes.extend((-2.25f64).to_le_bytes());
    let out = m.map_inbound(&external(&[], None, Some(&bytes))).unwrap();
    let value = &json_of(&out[0])["value"];
    assert_eq!(value["u8"], 0);
    assert_eq!(value["i8"], -1);
    assert_eq!(value["u16be"], 7);
    assert_eq!(value["u16le"], 0x0700);
    assert_eq!(value["i16be"], -2);
    assert_eq!(value["i16le"], -257);
    assert_eq!(value["u32be"], 0x0007_fffe);
    assert_eq!(value["i32be"], i32::from_be_bytes([0xff, 0xfe, 0x01, 0x02]));
    assert_eq!(value["i32le"], i32::from_le_bytes([0xff, 0xfe, 0x01, 0x02]));
    assert_eq!(
        value["i64be"],
        i64::from_be_bytes(bytes[0..8].try_into().unwrap())
    );
    assert_eq!(
        value["i64le"],
        i64::from_le_bytes(bytes[0..8].try_into().unwrap())
    );
    assert_eq!(value["f32be"], 21.5);
    assert_eq!(value["f64le"], -2.25);

    // Past the end: the mapping fails naming the reader, the offset and the blob's length.
    let short = mapper(
        r#"fn mapToDittoProtocolMsg(h, t, b, c) { b.read_u32_be(6) }"#,
        "",
    );
    let e = short
        .map_inbound(&external(&[], None, Some(&bytes[..8])))
        .unwrap_err();
    assert_eq!(e.error, MAPPING_FAILED);
    assert!(
        format!("{} {:?}", e.message, e.description)
            .contains("read_u32_be(6): 4 bytes at 6 are not within the blob of 8 bytes"),
        "{e:?}"
    );
}
