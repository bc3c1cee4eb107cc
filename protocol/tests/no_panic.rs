//! The Ditto Protocol parser answers any input with a message or a Ditto error, never a panic,
//! and what it accepts writes back to JSON that parses to the same message.

use ferrule_protocol::DittoMessage;
use proptest::prelude::*;

fn topic() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z._/:-]{0,40}",
        prop::sample::select(vec![
            "ns/n/things/twin/commands/modify",
            "ns/n/things/live/messages/a/b",
            "_/c/connections/announcements/opened",
            "ns/n/things/twin/acks",
            "ns/n/policies/commands/create",
            "ns/n/things/twin/errors",
            "ns/n/things/twin/events/merged",
        ])
        .prop_map(String::from),
    ]
}

fn member() -> impl Strategy<Value = (String, serde_json::Value)> {
    (
        prop::sample::select(vec![
            "topic",
            "headers",
            "path",
            "value",
            "status",
            "extra",
            "revision",
            "timestamp",
            "fields",
            "metadata",
            "other",
        ]),
        prop_oneof![
            topic().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            (100u16..600).prop_map(serde_json::Value::from),
            Just(serde_json::json!({"correlation-id": "c", "Response-Required": false})),
            Just(serde_json::Value::Null),
            Just(serde_json::json!([1, "a"])),
            Just(serde_json::json!({"a": {"b": [null, 1.5]}})),
            Just(serde_json::json!("")),
            Just(serde_json::json!("/attributes/a")),
            Just(serde_json::json!(true)),
        ],
    )
        .prop_map(|(k, v)| (k.to_string(), v))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn any_text_parses_or_errors(text in ".{0,200}") {
        let _ = DittoMessage::from_json_str(&text);
    }

    #[test]
    fn accepted_messages_round_trip(members in prop::collection::vec(member(), 0..8)) {
        let obj: serde_json::Map<String, serde_json::Value> = members.into_iter().collect();
        let text = serde_json::Value::Object(obj).to_string();
        if let Ok(m) = DittoMessage::from_json_str(&text) {
            let again = DittoMessage::from_json_str(&m.to_json_string()).unwrap();
            prop_assert_eq!(again, m);
        }
    }

    /// Read from text straight into the envelope, or from the JSON object the text holds: the
    /// same message or the same error, also with a member given twice (the last one counts).
    #[test]
    fn text_and_object_read_alike(members in prop::collection::vec(member(), 0..8)) {
        let text = format!(
            "{{{}}}",
            members
                .iter()
                .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k.as_str())))
                .collect::<Vec<_>>()
                .join(",")
        );
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).unwrap();
        prop_assert_eq!(
            DittoMessage::from_json_str(&text),
            DittoMessage::from_json(object),
            "{}", text
        );
    }
}

#[test]
fn text_that_is_not_an_object_is_refused_with_what_it_holds() {
    for (text, quoted) in [
        ("5", "<5>"),
        ("[1, {\"topic\": 2}]", "<[1,{\"topic\":2}]>"),
        ("\"x\"", "<\"x\">"),
        ("null", "<null>"),
        ("true", "<true>"),
    ] {
        let e = DittoMessage::from_json_str(text).unwrap_err();
        assert_eq!(e.error, "json.invalid");
        assert_eq!(
            e.message,
            format!("{quoted} is not a valid JSON object!"),
            "{text}"
        );
    }
    let e = DittoMessage::from_json_str("{\"topic\": 1,").unwrap_err();
    assert!(
        e.message.starts_with("Failed to parse JSON string"),
        "{}",
        e.message
    );
}
