//! The canonical text parses back to an equal filter; no input makes the crate panic.

use proptest::prelude::*;
use serde_json::json;

use crate::{CompareOp, Filter, Node, Value};

#[track_caller]
fn round_trip(expression: &str) -> String {
    let filter = Filter::parse(expression).unwrap_or_else(|e| panic!("{expression}: {e}"));
    let text = filter.to_string();
    let again = Filter::parse(&text).unwrap_or_else(|e| panic!("{text} (from {expression}): {e}"));
    assert_eq!(again, filter, "{expression} -> {text}");
    assert_eq!(again.to_string(), text, "the canonical text is stable");
    text
}

#[test]
fn canonical_text() {
    for (input, canonical) in [
        ("eq(attributes/counter,42)", "eq(attributes/counter,42)"),
        (
            "  and(eq(a,1),  or(ne(b,'x'),\n exists(c)))",
            "and(eq(a,1),or(ne(b,\"x\"),exists(c)))",
        ),
        (
            "in(topic:action,'created','deleted' )",
            "in(topic:action,\"created\",\"deleted\")",
        ),
        ("eq(a,1.0)", "eq(a,1.0)"),
        ("eq(a,-0.0)", "eq(a,-0.0)"),
        ("eq(a,+5)", "eq(a,5)"),
        ("eq(a,123.4500)", "eq(a,123.45)"),
        ("eq(a,'it\\'s \"x\"')", "eq(a,\"it's \\\"x\\\"\")"),
        ("eq(a,\"\\n\\t\\u0001\\/\")", "eq(a,\"\\n\\t\\u0001/\")"),
        ("like(a,'*x?')", "like(a,\"*x?\")"),
        ("ilike(a,'*x?')", "ilike(a,\"*x?\")"),
        ("gt(_modified,time:now )", "gt(_modified,time:now)"),
        (
            "eq(a\\u002cb\\u0029c\\\\d\\\"e,null)",
            "eq(a\\u002cb\\u0029c\\\\d\\\"e,null)",
        ),
        ("eq( a(b ,true)", "eq( a(b ,true)"),
        ("empty(/attributes/x)", "empty(/attributes/x)"),
        ("not(not(exists(x)))", "not(not(exists(x)))"),
    ] {
        assert_eq!(round_trip(input), canonical);
    }
    for extreme in [
        "eq(a,9223372036854775807)",
        "eq(a,-9223372036854775808)",
        "eq(a,0.1)",
        "eq(a,1.7976931348623157)",
    ] {
        round_trip(extreme);
    }
    // f64 extremes, printed without exponent
    for d in [
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        5e-324,
        1e21,
        123456789.125,
    ] {
        let filter = Filter::from(Node::Compare {
            op: CompareOp::Eq,
            property: "a".into(),
            value: Value::Double(d),
        });
        assert_eq!(Filter::parse(&filter.to_string()).unwrap(), filter, "{d}");
    }
}

fn property() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z_][a-zA-Z0-9_]{0,8}(/[a-zA-Z0-9_]{1,8}){0,3}",
        "(topic|resource|feature):[a-z]{1,8}",
        // anything: escapes, whitespace, quotes, parentheses, non-ASCII
        "[a-z/:,)(\"'\\\\ \\n\\t\u{e4}\u{1F600}~*?]{1,10}",
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let double = prop::num::f64::POSITIVE
        | prop::num::f64::NEGATIVE
        | prop::num::f64::NORMAL
        | prop::num::f64::SUBNORMAL
        | prop::num::f64::ZERO;
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        double.prop_map(Value::Double),
        any::<String>().prop_map(Value::String),
        "time:[a-z_]{1,10}".prop_map(Value::Placeholder),
    ]
}

fn compare_op() -> impl Strategy<Value = CompareOp> {
    prop_oneof![
        Just(CompareOp::Eq),
        Just(CompareOp::Ne),
        Just(CompareOp::Gt),
        Just(CompareOp::Ge),
        Just(CompareOp::Lt),
        Just(CompareOp::Le),
    ]
}

fn leaf() -> impl Strategy<Value = Node> {
    prop_oneof![
        (compare_op(), property(), value()).prop_map(|(op, property, value)| Node::Compare {
            op,
            property,
            value
        }),
        (any::<bool>(), property(), any::<String>()).prop_map(
            |(insensitive, property, pattern)| {
                Node::Compare {
                    op: if insensitive {
                        CompareOp::ILike
                    } else {
                        CompareOp::Like
                    },
                    property,
                    value: Value::String(pattern),
                }
            }
        ),
        (property(), prop::collection::vec(value(), 1..4))
            .prop_map(|(property, values)| Node::In { property, values }),
        property().prop_map(|property| Node::Exists { property }),
        property().prop_map(|property| Node::Empty { property }),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    leaf().prop_recursive(5, 40, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(Node::And),
            prop::collection::vec(inner.clone(), 1..4).prop_map(Node::Or),
            inner.prop_map(|n| Node::Not(Box::new(n))),
        ]
    })
}

fn rqlish() -> impl Strategy<Value = String> {
    "[a-z()'\",\\\\/: 0-9.+\\-*?_\\n\u{e4}]{0,80}"
}

/// Valid expressions with a few characters inserted, deleted or replaced.
fn mutated() -> impl Strategy<Value = String> {
    (
        node(),
        prop::collection::vec(
            (any::<prop::sample::Index>(), 0u8..3, "[()',\" \\\\a0.-]"),
            1..4,
        ),
    )
        .prop_map(|(node, edits)| {
            let mut chars: Vec<char> = node.to_string().chars().collect();
            for (index, kind, replacement) in edits {
                let c = replacement.chars().next().unwrap_or('x');
                if chars.is_empty() {
                    chars.push(c);
                    continue;
                }
                let i = index.index(chars.len());
                match kind {
                    0 => chars.insert(i, c),
                    1 => {
                        chars.remove(i);
                    }
                    _ => chars[i] = c,
                }
            }
            chars.into_iter().collect()
        })
}

fn sample_doc() -> serde_json::Value {
    json!({
        "thingId": "a:b",
        "attributes": {"a": 1, "b": "x", "c": [1], "d": {"e": null}, "f": 1.5, "g": true},
        "a": "text", "topic:action": 3
    })
}

fn check_no_panic(input: &str) {
    if let Ok(filter) = Filter::parse(input) {
        let doc = sample_doc();
        let _ = filter.matches(&doc, &|name| Some(json!(name)));
        let _ = filter.matches(&doc, &|_| None);
        let _ = filter.properties();
        let _ = filter.validate_thing_fields(&|_| true);
        let text = filter.to_string();
        assert_eq!(
            Filter::parse(&text).as_ref(),
            Ok(&filter),
            "{input:?} -> {text:?}"
        );
    } else if let Err(e) = Filter::parse(input) {
        assert!(e.position <= input.chars().count());
        let _ = e.ditto_message(input);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn display_parses_back_to_an_equal_filter(node in node()) {
        let filter = Filter::from(node);
        let text = filter.to_string();
        let parsed = Filter::parse(&text);
        prop_assert_eq!(parsed.as_ref(), Ok(&filter), "{}", text);
        let doc = sample_doc();
        let _ = filter.matches(&doc, &|name| Some(json!(name)));
    }

    #[test]
    fn no_panic_on_rql_like_strings(input in rqlish()) {
        check_no_panic(&input);
    }

    #[test]
    fn no_panic_on_mutated_expressions(input in mutated()) {
        check_no_panic(&input);
    }

    #[test]
    fn no_panic_on_any_string(input in any::<String>()) {
        check_no_panic(&input);
    }
}
