mod common;

use chrono::{DateTime, Utc};
use common::*;
use ferrule_placeholders::{
    CONNECTION_PLACEHOLDERS, MapResolver, Resolution, Template, evaluate_condition,
    resolve_expression,
};
use proptest::prelude::*;

fn at(text: &str) -> MapResolver {
    MapResolver::builder()
        .now(
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc),
        )
        .build()
}

#[test]
fn time_with_offsets_and_truncation() {
    let r = at("2024-05-16T13:47:25.123Z");
    let cases = [
        ("time:now", "2024-05-16T13:47:25.123Z"),
        ("time:now+1h", "2024-05-16T14:47:25.123Z"),
        ("time:now-30m", "2024-05-16T13:17:25.123Z"),
        ("time:now-2d", "2024-05-14T13:47:25.123Z"),
        ("time:now-45s", "2024-05-16T13:46:40.123Z"),
        ("time:now[h]", "2024-05-16T13:00:00Z"),
        ("time:now[d]", "2024-05-16T00:00:00Z"),
        ("time:now[w]", "2024-05-13T00:00:00Z"),
        ("time:now[mo]", "2024-05-01T00:00:00Z"),
        ("time:now[y]", "2024-01-01T00:00:00Z"),
        ("time:now-2d[d]", "2024-05-14T00:00:00Z"),
        ("time:now+4h[m]", "2024-05-16T17:47:00Z"),
        ("time:now_epoch_millis", "1715867245123"),
        ("time:now_epoch_millis[s]", "1715867245000"),
        ("time:now_epoch_millis-1s", "1715867244123"),
        ("time:now_epoch_millis+1d[d]", "1715904000000"),
    ];
    for (placeholder, expected) in cases {
        let template = format!("{{{{ {placeholder} }}}}");
        assert_eq!(
            resolve(&template, &r),
            resolved(&[expected]),
            "{placeholder}"
        );
    }
    assert_eq!(
        resolve(
            "events/{{ time:now[d] | fn:substring-before('T') }}/{{ thing:id | fn:default('none') }}",
            &r
        ),
        resolved(&["events/2024-05-16/none"])
    );
    // invalid time names resolve to nothing (validation rejects them)
    assert_eq!(resolve("{{ time:tomorrow }}", &r), Resolution::Unresolved);
    assert_eq!(
        resolve("{{ time:tomorrow | fn:default('x') }}", &r),
        resolved(&["x"])
    );
}

#[test]
fn time_in_a_condition() {
    let r = at("2024-05-16T13:47:25.123Z");
    assert!(evaluate_condition("fn:filter(time:now[y],'like','2024-*')", &r).unwrap());
    assert!(!evaluate_condition("fn:filter(time:now[y],'like','2023-*')", &r).unwrap());
}

const SYNTAX: &str = "[{}|:(),'\"$ a-z\\\\fn\\-\\[\\]\\+\\*\\?]{0,48}";

fn fragments() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("{{".to_string()),
            Just("}}".to_string()),
            Just("${".to_string()),
            Just("fn:".to_string()),
            Just("header:a".to_string()),
            Just("thing:id".to_string()),
            Just("time:now".to_string()),
            Just(" | ".to_string()),
            Just("fn:default(".to_string()),
            Just("fn:filter(".to_string()),
            Just("fn:split(' ')".to_string()),
            Just("fn:delete()".to_string()),
            Just("'eq'".to_string()),
            Just(",".to_string()),
            Just(")".to_string()),
            Just("'".to_string()),
            Just("\\".to_string()),
            "[a-zé:|(){}',\"]{1,3}",
        ],
        0..16,
    )
    .prop_map(|parts| parts.concat())
}

fn exercise(text: &str) {
    let r = builder().header("a", "x y").build();
    if let Ok(template) = Template::parse(text) {
        let resolution = template.resolve(&r);
        if let Resolution::Resolved(values) = &resolution {
            assert!(!values.is_empty());
        }
        if template.is_literal() {
            assert_eq!(resolution, Resolution::Resolved(vec![text.to_string()]));
        }
        let _ = template.validate(CONNECTION_PLACEHOLDERS);
        let _ = template.placeholders();
    }
    let _ = evaluate_condition(text, &r);
    let _ = resolve_expression(text, &r);
}

proptest! {
    #[test]
    fn no_panic_on_arbitrary_syntax(text in SYNTAX) {
        exercise(&text);
    }

    #[test]
    fn no_panic_on_fragments(text in fragments()) {
        exercise(&text);
    }

    #[test]
    fn no_panic_on_any_string(text in any::<String>()) {
        exercise(&text);
    }

    #[test]
    fn text_without_expressions_is_literal(text in "[^{$]*") {
        let template = Template::parse(&text).unwrap();
        prop_assert!(template.is_literal());
        prop_assert_eq!(template.resolve(&MapResolver::new()), Resolution::Resolved(vec![text.clone()]));
    }

    #[test]
    fn spacing_does_not_matter(before in "[ \t]{0,3}", after in "[ \t]{0,3}", around_pipe in "[ \t]{0,3}") {
        let r = builder().build();
        let template = format!("{{{{{before}thing:name{around_pipe}|{around_pipe}fn:upper(){after}}}}}");
        prop_assert_eq!(resolve(&template, &r), resolved(&["DEVICE-1"]));
    }

    #[test]
    fn header_values_round_trip_through_encodings(value in any::<String>()) {
        let r = MapResolver::builder().header("v", value.clone()).build();
        prop_assert_eq!(resolve("{{ header:v | fn:url-encode() | fn:url-decode() }}", &r), Resolution::Resolved(vec![value.clone()]));
        prop_assert_eq!(resolve("{{ header:v | fn:base64-encode() | fn:base64-decode() }}", &r), Resolution::Resolved(vec![value.clone()]));
        prop_assert_eq!(resolve("{{ header:v | fn:lower() }}", &r), Resolution::Resolved(vec![value.to_lowercase()]));
    }
}
