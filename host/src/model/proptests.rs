//! Property tests: the connection parser and validator never panic, and what they accept is a
//! fixed point (parsing the stored form again gives the same connection).

use super::parse::{connection_from_object, parse_object};
use super::validate::{ValidationLimits, validate};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (0u8..4).prop_map(Value::from),
        "[a-z{}:/_#+ -]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "mqtt",
            "mqtt-5",
            "amqp-091",
            "amqp-10",
            "kafka",
            "open",
            "closed",
            "tcp://localhost:1883",
            "amqp://u:p@h:5672/v",
            "_/_/things/twin/events",
            "_/_/connections/announcements",
            "{{connection:id}}:ack",
            "Ditto",
            "JavaScript",
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "id",
        "name",
        "connectionType",
        "connectionStatus",
        "uri",
        "sources",
        "targets",
        "clientCount",
        "addresses",
        "topics",
        "address",
        "qos",
        "authorizationContext",
        "headerMapping",
        "payloadMapping",
        "replyTarget",
        "mappingDefinitions",
        "mappingEngine",
        "options",
        "specificConfig",
        "tags",
        "ca",
        "credentials",
        "sshTunnel",
        "enabled",
        "type",
        "declaredAcks",
        "issuedAcknowledgementLabel",
        "enforcement",
        "input",
        "filters",
        "consumerCount",
        "processorPoolSize",
        "mappingContext",
        "acknowledgementRequests",
        "includes",
    ])
    .prop_map(String::from)
}

fn valid() -> Value {
    json!({
        "id": "p", "connectionType": "mqtt-5", "connectionStatus": "open",
        "uri": "tcp://localhost:1883",
        "sources": [{"addresses": ["a/+"], "qos": 1, "authorizationContext": ["s"]}],
        "targets": [{"address": "t", "topics": ["_/_/things/twin/events"], "qos": 0,
                     "authorizationContext": ["s"]}]
    })
}

/// A valid connection with one member replaced by arbitrary JSON, at any depth.
fn mutated() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec![
            "/connectionType",
            "/uri",
            "/clientCount",
            "/sources",
            "/targets",
            "/sources/0",
            "/sources/0/addresses",
            "/sources/0/qos",
            "/targets/0/topics",
            "/targets/0/address",
            "/targets/0/headerMapping",
            "/sources/0/replyTarget",
            "/mappingDefinitions",
            "/specificConfig",
            "/tags",
            "/credentials",
            "/sshTunnel",
            "/mappingContext",
            "/sources/0/payloadMapping",
            "/sources/0/declaredAcks",
            "/sources/0/enforcement",
        ]),
        any_json(),
    )
        .prop_map(|(pointer, replacement)| {
            let mut v = valid();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let target = if parent.is_empty() {
                Some(&mut v)
            } else {
                v.pointer_mut(parent)
            };
            match target {
                Some(Value::Object(m)) => {
                    m.insert(key.to_string(), replacement);
                }
                Some(Value::Array(a)) => {
                    if let Ok(i) = key.parse::<usize>()
                        && i < a.len()
                    {
                        a[i] = replacement;
                    }
                }
                _ => {}
            }
            v
        })
}

fn check(v: Value) {
    let Value::Object(obj) = v else { return };
    let limits = ValidationLimits::default();
    let Ok(mut c) = connection_from_object(obj) else {
        return;
    };
    if validate(&mut c, &limits).is_err() {
        return;
    }
    // Accepted: the stored form parses and validates to the same connection.
    let Value::Object(stored) = serde_json::to_value(&c).unwrap() else {
        panic!()
    };
    let mut again = connection_from_object(stored).expect("the stored form parses");
    validate(&mut again, &limits).expect("the stored form validates");
    assert_eq!(again, c);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_json_never_panics(v in any_json()) {
        check(v);
    }

    #[test]
    fn mutated_connections_never_panic(v in mutated()) {
        check(v);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(obj) = parse_object(&bytes) {
            check(Value::Object(obj));
        }
    }
}

#[test]
fn the_base_connection_is_valid() {
    let Value::Object(obj) = valid() else {
        unreachable!()
    };
    let mut c = connection_from_object(obj).unwrap();
    validate(&mut c, &ValidationLimits::default()).unwrap();
}
