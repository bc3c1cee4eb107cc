//! Results of every shape, errors with their location, and the limits on time, memory, stack and
//! script size.

use ferrule_js::{JsLimits, JsMapper};
use ferrule_protocol::{DittoMessage, ExternalMessage, Headers, Mapper};
use serde_json::{Map, Value, json};
use std::sync::Arc;
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

fn modify(value: Value) -> DittoMessage {
    DittoMessage::from_json(
        json!({"topic":"ns/thing/things/twin/commands/modify","headers":{"correlation-id":"c"},
               "path":"/attributes/a","value":value})
        .as_object()
        .unwrap()
        .clone(),
    )
    .unwrap()
}

const ECHO: &str = r#"
function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
    return Ditto.buildDittoProtocolMsg("ns", "thing", "things", "twin", "commands", "modify",
        "/attributes/a", {"correlation-id": "c"}, textPayload);
}"#;

#[test]
fn array_results_give_one_message_each_in_order() {
    let m = mapper(
        r#"function mapToDittoProtocolMsg(headers, textPayload) {
            return [1, 2, 3].map(function (i) {
                return Ditto.buildDittoProtocolMsg("ns", "t" + i, "things", "twin", "commands", "modify", "/a", {}, i);
            });
        }"#,
        r#"function mapFromDittoProtocolMsg(namespace, name, group, channel, criterion, action, path, dittoHeaders, value) {
            return [Ditto.buildExternalMsg({"n": 1}, "a", null, "text/plain"), null,
                    Ditto.buildExternalMsg({"n": 2}, "b", null, "text/plain")];
        }"#,
    );
    let inb = m.map_inbound(&ExternalMessage::text("x")).unwrap();
    let names: Vec<_> = inb.iter().map(|m| m.topic.name.clone()).collect();
    assert_eq!(names, ["t1", "t2", "t3"]);
    assert_eq!(inb[2].value, Some(json!(3)));
    let out = m.map_outbound(&modify(json!(1))).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].text.as_deref(), Some("b"));
    assert_eq!(out[1].headers.get_str("n").as_deref(), Some("2"));
}

#[test]
fn wrappers_can_be_overridden() {
    let m = mapper(
        r#"function mapToDittoProtocolMsgWrapper(externalMsg) {
            var m = Ditto.buildDittoProtocolMsg("ns", "thing", "things", "twin", "events", "modified", "/a",
                externalMsg.headers, externalMsg.contentType);
            m.revision = 7;
            return m;
        }"#,
        r#"function mapFromDittoProtocolMsgWrapper(msg) {
            return Ditto.buildExternalMsg({}, msg.topic + "@" + msg.revision, null, "text/plain");
        }"#,
    );
    let mut ext = ExternalMessage::text("x");
    ext.content_type = Some("text/plain".into());
    let inb = m.map_inbound(&ext).unwrap();
    assert_eq!(inb[0].revision, Some(7));
    assert_eq!(inb[0].value, Some(json!("text/plain")));
    let mut event = modify(json!(1));
    event.revision = Some(3);
    let out = m.map_outbound(&event).unwrap();
    assert_eq!(
        out[0].text.as_deref(),
        Some("ns/thing/things/twin/commands/modify@3")
    );
}

#[test]
fn inbound_headers_are_strings_and_payloads_are_typed() {
    let m = mapper(
        r#"function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
            var value = {
                headers: headers,
                types: [typeof headers["qos"], typeof textPayload, bytePayload === null, contentType === undefined]
            };
            return Ditto.buildDittoProtocolMsg("ns", "thing", "things", "twin", "commands", "modify", "/a", {}, value);
        }"#,
        "",
    );
    let mut headers = Headers::new();
    headers.insert("Mqtt-QoS", json!(1));
    headers.insert("qos", json!(true));
    headers.insert("list", json!(["a"]));
    let ext = ExternalMessage {
        headers,
        ..ExternalMessage::default()
    };
    let out = m.map_inbound(&ext).unwrap();
    assert_eq!(
        out[0].value,
        Some(
            json!({"headers":{"Mqtt-QoS":"1","qos":"true","list":"[\"a\"]"},
                    "types":["string","undefined",true,true]})
        )
    );
}

#[test]
fn outbound_headers_are_stringified_and_typed_arrays_are_bytes() {
    let m = mapper(
        "",
        r#"function mapFromDittoProtocolMsg(namespace, name, group, channel, criterion, action, path, dittoHeaders, value) {
            var headers = {"n": 42, "b": false, "o": {"x": [1]}, "s": "str", "nothing": null};
            return Ditto.buildExternalMsg(headers, "ignored text", new Uint8Array([0, 255, 128]).subarray(1), "application/octet-stream");
        }"#,
    );
    let out = m.map_outbound(&modify(json!(1))).unwrap();
    let e = &out[0];
    assert_eq!(e.bytes.as_deref(), Some(&[255u8, 128][..]));
    assert_eq!(e.payload(), &[255u8, 128]);
    assert_eq!(e.headers.get("n"), Some(&json!("42")));
    assert_eq!(e.headers.get("b"), Some(&json!("false")));
    assert_eq!(e.headers.get("o"), Some(&json!(r#"{"x":[1]}"#)));
    assert_eq!(e.headers.get("s"), Some(&json!("str")));
    assert!(!e.headers.contains("nothing"));
}

#[test]
fn array_buffer_round_trip_of_all_byte_values() {
    let m = mapper(
        r#"function mapToDittoProtocolMsg(headers, textPayload, bytePayload) {
            var s = Ditto.arrayBufferToString(bytePayload);
            var codes = [];
            for (var i = 0; i < s.length; i++) codes.push(s.charCodeAt(i));
            return Ditto.buildDittoProtocolMsg("ns", "thing", "things", "twin", "commands", "modify", "/a", {},
                {len: bytePayload.byteLength, isAB: bytePayload instanceof ArrayBuffer, sum: codes.reduce(function (a, b) { return a + b; }, 0)});
        }"#,
        r#"function mapFromDittoProtocolMsg(namespace, name, group, channel, criterion, action, path, dittoHeaders, value) {
            var s = "";
            for (var i = 0; i < 256; i++) s += String.fromCharCode(i);
            return Ditto.buildExternalMsg({}, null, Ditto.stringToArrayBuffer(s + "\u0141"), "application/octet-stream");
        }"#,
    );
    let all: Vec<u8> = (0..=255).collect();
    let out = m.map_inbound(&ExternalMessage::bytes(all.clone())).unwrap();
    assert_eq!(
        out[0].value,
        Some(json!({"len":256,"isAB":true,"sum":255*128}))
    );
    let ext = m.map_outbound(&modify(json!(1))).unwrap();
    let mut expected = all;
    expected.push(0x41); // U+0141 truncated to 8 bits
    assert_eq!(ext[0].bytes, Some(expected));
}

#[test]
fn neither_payload_is_a_mapping_failure() {
    let m = mapper(
        "",
        "function mapFromDittoProtocolMsg() { return Ditto.buildExternalMsg({}, undefined, null, 'text/plain'); }",
    );
    let e = m.map_outbound(&modify(json!(1))).unwrap_err();
    assert_eq!(e.error, "connectivity:message.mapping.failed");
    assert_eq!(
        e.message,
        "Neither <bytePayload> nor <textPayload> were defined in the outgoing script"
    );
}

#[test]
fn invalid_ditto_protocol_results_fail_with_ditto_errors() {
    let m = mapper(
        "function mapToDittoProtocolMsg() { return {value: 1}; }",
        "",
    );
    let e = m.map_inbound(&ExternalMessage::text("x")).unwrap_err();
    assert_eq!(e.error, "json.field.missing");
    let m = mapper("function mapToDittoProtocolMsg() { return 42; }", "");
    assert_eq!(
        m.map_inbound(&ExternalMessage::text("x"))
            .unwrap_err()
            .error,
        "json.invalid"
    );
}

#[test]
fn syntax_errors_name_line_and_column() {
    let e = JsMapper::new(
        &options("function mapToDittoProtocolMsg() {\n  var x = ;\n}", ""),
        JsLimits::default(),
    )
    .unwrap_err();
    assert_eq!(e.error, "connectivity:message.mapper.config.failed");
    assert_eq!(e.status, 400);
    assert!(e.message.starts_with("SyntaxError: "), "{}", e.message);
    assert!(e.message.contains(" - in line/column #2/"), "{}", e.message);
    let e = JsMapper::new(&options("", "\n\nfunction (\n"), JsLimits::default()).unwrap_err();
    assert!(e.message.contains(" - in line/column #3/"), "{}", e.message);
}

#[test]
fn runtime_errors_name_line_and_column() {
    let m = mapper(
        "function mapToDittoProtocolMsg(headers) {\n  return headers.nope.deeper;\n}",
        "function mapFromDittoProtocolMsg() {\n\n  throw new Error('boom');\n}",
    );
    let e = m.map_inbound(&ExternalMessage::text("x")).unwrap_err();
    assert_eq!(e.error, "connectivity:message.mapping.failed");
    assert!(e.message.starts_with("TypeError: "), "{}", e.message);
    assert!(e.message.contains(" - in line/column #2/"), "{}", e.message);
    assert!(
        e.message.contains("source: return headers.nope.deeper;"),
        "{}",
        e.message
    );
    let e = m.map_outbound(&modify(json!(1))).unwrap_err();
    assert!(
        e.message.starts_with("Error: boom - in line/column #3/"),
        "{}",
        e.message
    );
    // The mapper still works afterwards.
    assert!(m.map_inbound(&ExternalMessage::text("x")).is_err());
}

#[test]
fn top_level_errors_and_loops_in_scripts_fail_the_configuration() {
    let e = JsMapper::new(&options("undefinedFn();", ""), JsLimits::default()).unwrap_err();
    assert_eq!(e.error, "connectivity:message.mapper.config.failed");
    assert!(e.message.contains("ReferenceError"), "{}", e.message);
    let limits = JsLimits {
        timeout: Duration::from_millis(50),
        ..JsLimits::default()
    };
    let e = JsMapper::new(&options("while (true) {}", ""), limits).unwrap_err();
    assert_eq!(e.error, "connectivity:message.mapper.config.failed");
}

#[test]
fn scripts_over_the_size_limit_are_rejected() {
    let big = format!("var x = 1;{}", " ".repeat(50_000));
    let e = JsMapper::new(&options(&big, ""), JsLimits::default()).unwrap_err();
    assert_eq!(e.error, "connectivity:message.mapper.config.failed");
    assert_eq!(
        e.message,
        "The script size was bigger than the allowed <50000> bytes: incoming script size was <50010> bytes, outgoing script size was <0> bytes"
    );
    let exact = " ".repeat(50_000);
    assert!(JsMapper::new(&options("", &exact), JsLimits::default()).is_ok());
}

#[test]
fn script_options_that_are_no_strings_are_configuration_errors() {
    // A missing script is the Ditto mapping (spec::a_missing_script_maps_its_direction_as_the_
    // ditto_mapper); one that is there must be a string.
    assert!(
        JsMapper::new(
            json!({"incomingScript": ""}).as_object().unwrap(),
            JsLimits::default(),
        )
        .is_ok()
    );
    let e = JsMapper::new(
        json!({"incomingScript": "", "outgoingScript": 7})
            .as_object()
            .unwrap(),
        JsLimits::default(),
    )
    .unwrap_err();
    assert_eq!(e.error, "connectivity:message.mapper.config.failed");
    assert!(e.message.contains("<outgoingScript>"), "{}", e.message);
}

fn bombing(script_body: &str) -> JsMapper {
    let script = format!(
        "function mapToDittoProtocolMsg(headers, textPayload) {{\n  if (textPayload === 'bomb') {{\n{script_body}\n  }}\n  return Ditto.buildDittoProtocolMsg('ns', 'thing', 'things', 'twin', 'commands', 'modify', '/attributes/a', {{'correlation-id': 'c'}}, textPayload);\n}}"
    );
    let limits = JsLimits {
        memory_bytes: 16 << 20,
        timeout: Duration::from_secs(5),
        ..JsLimits::default()
    };
    JsMapper::new(&options(&script, ""), limits).unwrap()
}

#[test]
fn memory_bomb_is_stopped_and_the_next_message_maps() {
    let m = bombing("    var a = []; while (true) { a.push(new Array(100000).fill(1)); }");
    let e = m.map_inbound(&ExternalMessage::text("bomb")).unwrap_err();
    assert_eq!(e.error, "connectivity:message.mapping.failed");
    assert!(
        e.message.to_ascii_lowercase().contains("memory"),
        "{}",
        e.message
    );
    let ok = m.map_inbound(&ExternalMessage::text("fine")).unwrap();
    assert_eq!(ok, vec![modify(json!("fine"))]);
    let m = bombing("    var s = 'x'; while (true) { s = s + s; }");
    assert!(m.map_inbound(&ExternalMessage::text("bomb")).is_err());
    assert!(m.map_inbound(&ExternalMessage::text("fine")).is_ok());
}

#[test]
fn deep_recursion_is_stopped_and_the_next_message_maps() {
    let m = bombing("    function f(n) { return f(n + 1) + 1; }\n    return f(0);");
    let e = m.map_inbound(&ExternalMessage::text("bomb")).unwrap_err();
    assert_eq!(e.error, "connectivity:message.mapping.failed");
    assert!(e.message.contains("stack"), "{}", e.message);
    assert_eq!(
        m.map_inbound(&ExternalMessage::text("fine")).unwrap(),
        vec![modify(json!("fine"))]
    );
}

#[test]
fn infinite_loop_in_outgoing_script_is_stopped() {
    let limits = JsLimits {
        timeout: Duration::from_millis(50),
        ..JsLimits::default()
    };
    let m = JsMapper::new(
        &options(
            ECHO,
            "function mapFromDittoProtocolMsg(n, name, g, c, cr, a, path, h, value) { if (value === 'loop') { for (;;) {} } return null; }",
        ),
        limits,
    )
    .unwrap();
    let start = Instant::now();
    let e = m.map_outbound(&modify(json!("loop"))).unwrap_err();
    assert!(start.elapsed() < Duration::from_millis(500));
    assert_eq!(e.error, "connectivity:message.mapping.failed");
    assert!(m.map_outbound(&modify(json!("x"))).unwrap().is_empty());
    assert_eq!(m.map_inbound(&ExternalMessage::text("y")).unwrap().len(), 1);
}

#[test]
fn catching_the_interrupt_does_not_help() {
    let limits = JsLimits {
        timeout: Duration::from_millis(50),
        ..JsLimits::default()
    };
    let m = JsMapper::new(
        &options(
            "function mapToDittoProtocolMsg() { while (true) { try { while (true) {} } catch (e) {} } }",
            "",
        ),
        limits,
    )
    .unwrap();
    let start = Instant::now();
    assert!(m.map_inbound(&ExternalMessage::text("x")).is_err());
    assert!(start.elapsed() < Duration::from_millis(500));
}

#[test]
fn no_require_no_timers_no_io() {
    let m = mapper(
        r#"function mapToDittoProtocolMsg() {
            var names = ["require", "setTimeout", "setInterval", "fetch", "XMLHttpRequest", "print",
                         "std", "os", "process", "load", "quit", "exit"];
            var present = names.filter(function (n) { return typeof globalThis[n] !== "undefined"; });
            return Ditto.buildDittoProtocolMsg("ns", "thing", "things", "twin", "commands", "modify", "/a", {}, present);
        }"#,
        "",
    );
    let out = m.map_inbound(&ExternalMessage::text("x")).unwrap();
    assert_eq!(out[0].value, Some(json!([])));
}

#[test]
fn one_mapper_is_shared_by_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<JsMapper>();
    let m = Arc::new(mapper(ECHO, ""));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let m = m.clone();
            std::thread::spawn(move || {
                for j in 0..200 {
                    let text = format!("{i}-{j}");
                    let out = m.map_inbound(&ExternalMessage::text(text.clone())).unwrap();
                    assert_eq!(out[0].value, Some(json!(text)));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn state_survives_between_calls_of_one_mapper() {
    let m = mapper(
        r#"var count = 0;
        function mapToDittoProtocolMsg() {
            count++;
            return Ditto.buildDittoProtocolMsg("ns", "thing", "things", "twin", "commands", "modify", "/a", {}, count);
        }"#,
        "",
    );
    m.map_inbound(&ExternalMessage::text("x")).unwrap();
    let out = m.map_inbound(&ExternalMessage::text("x")).unwrap();
    assert_eq!(out[0].value, Some(json!(2)));
}
