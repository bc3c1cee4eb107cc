//! The scripts of `rhai/README.md` (the Rhai page) run as written, and the wrappers it
//! documents get the whole message.

use ferrule_protocol::{DittoMessage, ExternalMessage, Headers, Mapper};
use ferrule_rhai::{RhaiLimits, RhaiMapper};
use serde_json::{Map, Value, json};

const README: &str = include_str!("../README.md");

/// The `rhai` code block of the README that defines `function` with a body (not a signature).
fn example(function: &str) -> String {
    let blocks: Vec<&str> = README
        .split("```rhai\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.contains(&format!("fn {function}(")) && !b.contains("{ ... }"))
        .filter(|b| !b.contains("// ...\n}"))
        .collect();
    assert_eq!(blocks.len(), 1, "one example of {function}: {blocks:?}");
    blocks[0].to_string()
}

fn mapper(incoming: &str, outgoing: &str) -> RhaiMapper {
    let options: Map<String, Value> =
        json!({"incomingScript": incoming, "outgoingScript": outgoing})
            .as_object()
            .unwrap()
            .clone();
    RhaiMapper::new(&options, RhaiLimits::default()).unwrap()
}

fn bytes(payload: &[u8]) -> ExternalMessage {
    let headers: Headers = [("device_id", "7")].into_iter().collect();
    ExternalMessage {
        content_type: None,
        headers,
        text: None,
        bytes: Some(payload.to_vec()),
    }
}

#[test]
fn the_binary_telemetry_example_decodes_its_frame() {
    let m = mapper(&example("mapToDittoProtocolMsg"), "");
    // 00 07 | ff 38 | 41 b4 00 00: device 7, -2.00 degrees, 22.5 % humidity.
    let out = m
        .map_inbound(&bytes(&[0x00, 0x07, 0xff, 0x38, 0x41, 0xb4, 0x00, 0x00]))
        .unwrap();
    assert_eq!(out.len(), 1);
    let msg = Value::Object(out[0].to_json());
    assert_eq!(
        msg["topic"],
        "org.acme/sensor-7/things/twin/commands/modify"
    );
    assert_eq!(msg["path"], "/features/env/properties");
    assert_eq!(msg["value"], json!({"temperature": -2.0, "humidity": 22.5}));
    // Too short, or no bytes: dropped.
    assert!(m.map_inbound(&bytes(&[0, 7])).unwrap().is_empty());
    let text = ExternalMessage::text("hello");
    assert!(m.map_inbound(&text).unwrap().is_empty());
}

#[test]
fn the_outbound_wrapper_example_publishes_the_revision() {
    let m = mapper("", &example("mapFromDittoProtocolMsgWrapper"));
    let event = DittoMessage::from_json(
        json!({
            "topic": "org.acme/sensor-7/things/twin/events/modified",
            "headers": {"correlation-id": "c"},
            "path": "/features/env/properties/temperature",
            "value": 21.5,
            "revision": 42,
            "timestamp": "2026-12-07T10:00:00Z"
        })
        .as_object()
        .unwrap()
        .clone(),
    )
    .unwrap();
    let out = m.map_outbound(&event).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].headers.get_str("x-revision").as_deref(), Some("42"));
    assert_eq!(out[0].content_type.as_deref(), Some("application/json"));
    let body: Value = serde_json::from_str(out[0].text.as_deref().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"thing": "sensor-7", "revision": 42, "value": 21.5})
    );
}

#[test]
fn the_inbound_wrapper_gets_the_whole_external_message() {
    let script = r#"
fn mapToDittoProtocolMsgWrapper(msg) {
    ditto_message("org.acme", msg.headers.device_id, "things", "twin", "commands", "modify",
        "/attributes/seen", #{}, #{ text: msg.textPayload, bytes: msg.bytePayload.len(),
        contentType: msg.contentType })
}"#;
    let m = mapper(script, "");
    let mut message = bytes(&[1, 2, 3]);
    message.content_type = Some("application/octet-stream".into());
    let out = m.map_inbound(&message).unwrap();
    let msg = Value::Object(out[0].to_json());
    assert_eq!(msg["topic"], "org.acme/7/things/twin/commands/modify");
    assert_eq!(
        msg["value"],
        json!({"text": null, "bytes": 3, "contentType": "application/octet-stream"})
    );
}

#[test]
fn a_script_without_the_function_or_its_wrapper_is_refused_naming_both() {
    let options: Map<String, Value> = json!({"incomingScript": "fn other(x) { x }"})
        .as_object()
        .unwrap()
        .clone();
    let e = RhaiMapper::new(&options, RhaiLimits::default()).unwrap_err();
    assert!(
        e.message
            .contains("<mapToDittoProtocolMsg> with 4 parameters")
            && e.message
                .contains("<mapToDittoProtocolMsgWrapper> with one"),
        "{e:?}"
    );
}
