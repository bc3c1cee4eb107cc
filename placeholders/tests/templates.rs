mod common;

use common::*;
use ferrule_placeholders::{CONNECTION_PLACEHOLDERS, MapResolver, Resolution, Resolver, Template};

#[test]
fn each_connection_placeholder_resolves() {
    let r = resolver();
    let cases = [
        ("thing:id", "org.eclipse.ditto:device-1"),
        ("thing:namespace", "org.eclipse.ditto"),
        ("thing:name", "device-1"),
        ("entity:id", "org.eclipse.ditto:device-1"),
        ("entity:namespace", "org.eclipse.ditto"),
        ("entity:name", "device-1"),
        ("policy:id", "org.eclipse.ditto:policy-1"),
        ("policy:namespace", "org.eclipse.ditto"),
        ("policy:name", "policy-1"),
        ("feature:id", "lamp"),
        ("thing-json:attributes/location", "kitchen"),
        ("connection:id", "conn-1"),
        ("header:correlation-id", "corr-1"),
        (
            "topic:full",
            "org.eclipse.ditto/device-1/things/twin/events/modified",
        ),
        ("topic:namespace", "org.eclipse.ditto"),
        ("topic:entityName", "device-1"),
        ("topic:group", "things"),
        ("topic:channel", "twin"),
        ("topic:criterion", "events"),
        ("topic:action", "modified"),
        ("topic:action-subject", "modified"),
        ("resource:type", "thing"),
        ("resource:path", "/features/lamp"),
        ("request:subjectId", "integration:solution:connection"),
        ("source:address", "telemetry/#"),
        ("time:now", "2024-05-16T13:47:25.123Z"),
        ("time:now_epoch_millis", "1715867245123"),
    ];
    for (placeholder, expected) in cases {
        let template = format!("{{{{ {placeholder} }}}}");
        assert_eq!(resolve(&template, &r), resolved(&[expected]), "{template}");
        Template::parse(&template)
            .unwrap()
            .validate(CONNECTION_PLACEHOLDERS)
            .unwrap();
    }
    // topic:subject is not set for a twin event
    assert_eq!(resolve("{{ topic:subject }}", &r), Resolution::Unresolved);
}

#[test]
fn header_names_are_case_insensitive() {
    let r = resolver();
    assert_eq!(
        resolve("{{ header:CORRELATION-ID }}", &r),
        resolved(&["corr-1"])
    );
    assert_eq!(
        resolve("{{ header:Correlation-Id }}", &r),
        resolved(&["corr-1"])
    );
}

#[test]
fn header_names_may_contain_colons() {
    let r = MapResolver::builder()
        .header("header:with:colon", "value:with:colon")
        .build();
    assert_eq!(
        resolve("{{ header:header:with:colon }}", &r),
        resolved(&["value:with:colon"])
    );
    assert_eq!(
        resolve(
            "{{ header:header:with:colon }}:{{header:header:with:colon| fn:substring-before(':') }}",
            &r
        ),
        resolved(&["value:with:colon:value"])
    );
}

#[test]
fn several_expressions_and_literal_text() {
    let r = resolver();
    assert_eq!(
        resolve("telemetry/{{ thing:namespace }}/{{ thing:name }}", &r),
        resolved(&["telemetry/org.eclipse.ditto/device-1"])
    );
    assert_eq!(
        resolve(
            "{{thing:namespace}}{{thing:name}}!{{ header:correlation-id }}",
            &r
        ),
        resolved(&["org.eclipse.dittodevice-1!corr-1"])
    );
    assert_eq!(resolve("", &r), resolved(&[""]));
    assert_eq!(resolve(" ", &r), resolved(&[" "]));
    assert_eq!(
        resolve("no placeholders", &r),
        resolved(&["no placeholders"])
    );
    // braces that do not form an expression stay literal
    assert_eq!(resolve("a {{ b } c }", &r), resolved(&["a {{ b } c }"]));
    assert_eq!(resolve("{{ thing:name }}}", &r), resolved(&["device-1}"]));
}

#[test]
fn spaces_are_optional() {
    let r = resolver();
    let expected = resolved(&["ORG.ECLIPSE.DITTO"]);
    for template in [
        "{{thing:namespace|fn:upper()}}",
        "{{ thing:namespace | fn:upper() }}",
        "{{   thing:namespace   |   fn:upper(  )   }}",
        "{{\tthing:namespace\n|fn:upper()\n}}",
    ] {
        assert_eq!(resolve(template, &r), expected, "{template}");
    }
}

#[test]
fn legacy_dollar_placeholders_are_expressions_like_in_ditto() {
    let r = resolver();
    assert_eq!(
        resolve("${thing:id}/x", &r),
        resolved(&["org.eclipse.ditto:device-1/x"])
    );
    // Ditto's Placeholders.pattern() matches ${...} too; without prefix it is an unresolved placeholder
    assert_eq!(parse_error("a/${thing.id}").code, "placeholder:unresolved");
    assert_eq!(
        resolve("$share/group/topic", &r),
        resolved(&["$share/group/topic"])
    );
}

#[test]
fn unresolved_makes_the_whole_template_unresolved() {
    let r = resolver();
    assert_eq!(resolve("{{ header:missing }}", &r), Resolution::Unresolved);
    assert_eq!(
        resolve("a/{{ header:missing }}/b", &r),
        Resolution::Unresolved
    );
    assert_eq!(
        resolve("{{ thing:id }}/{{ header:missing }}", &r),
        Resolution::Unresolved
    );
    assert_eq!(
        resolve("{{ header:missing }}{{ fn:delete() }}", &r),
        Resolution::Unresolved
    );
    // an unknown placeholder resolves to nothing at runtime (validation rejects it earlier)
    assert_eq!(resolve("{{ unknown:thing }}", &r), Resolution::Unresolved);
}

#[test]
fn deleted_expressions_are_left_out_and_all_deleted_is_deleted() {
    let r = MapResolver::builder()
        .header("header-name", "header-val")
        .build();
    assert_eq!(resolve("{{ fn:delete() }}", &r), Resolution::Deleted);
    assert_eq!(
        resolve("{{ fn:delete() }}{{ fn:delete() }}{{ fn:delete() }}", &r),
        Resolution::Deleted
    );
    assert_eq!(
        resolve("{{ fn:default(fn:delete()) }}", &r),
        Resolution::Deleted
    );
    assert_eq!(
        resolve("{{ header:nonexistent | fn:default(fn:delete()) }}", &r),
        Resolution::Deleted
    );
    assert_eq!(
        resolve("{{ header:header-name | fn:delete() }}", &r),
        Resolution::Deleted
    );
    // Ditto's ExpressionResolverTest.testDeleteIfResolved
    assert_eq!(
        resolve(
            "/{{ fn:delete() }}/{{ header:header-name }}/{{ fn:delete() }}/",
            &r
        ),
        resolved(&["//header-val//"])
    );
    assert_eq!(
        resolve(
            "/{{ header:header-name | fn:delete() }}/{{ header:header-name }}/",
            &r
        ),
        resolved(&["//header-val/"])
    );
    assert_eq!(
        resolve(
            "/{{ fn:delete() | fn:default(header:header-name) }}/{{ header:header-name | fn:delete() }}/",
            &r
        ),
        resolved(&["///"])
    );
}

#[test]
fn several_values_expand_to_several_strings() {
    let r = MapResolver::builder()
        .header("a", "1,2")
        .header("b", "x y")
        .values(
            "jwt:extra/roles",
            ["administrator", "super-moderator", "moderator"],
        )
        .value("jwt:aud", "client-id-0815")
        .build();
    assert_eq!(
        resolve(
            "{{ header:a | fn:split(',') }}-{{ header:b | fn:split(' ') }}",
            &r
        ),
        resolved(&["1-x", "1-y", "2-x", "2-y"])
    );
    assert_eq!(
        resolve("{{ jwt:extra/roles }}", &r),
        resolved(&["administrator", "super-moderator", "moderator"])
    );
    // the example of Ditto's docs
    assert_eq!(
        resolve(
            "{{ jwt:extra/roles | fn:filter('like','*moderator') }}@{{ jwt:aud }}",
            &r
        ),
        resolved(&["super-moderator@client-id-0815", "moderator@client-id-0815"])
    );
    // a resolver returning no values is unresolved
    let empty = MapResolver::builder()
        .values("header:x", Vec::<String>::new())
        .build();
    assert_eq!(resolve("{{ header:x }}", &empty), Resolution::Unresolved);
}

#[test]
fn expansion_is_bounded() {
    let many = (0..90).map(|i| i.to_string()).collect::<Vec<_>>().join(" ");
    let r = MapResolver::builder().header("a", many).build();
    let two = "{{ header:a | fn:split(' ') }}-{{ header:a | fn:split(' ') }}";
    let values = resolve(two, &r);
    assert_eq!(values.values().len(), 8_100);
    assert_eq!(values.values()[0], "0-0");
    assert_eq!(values.values()[8_099], "89-89");
    let three = "{{ header:a | fn:split(' ') }}{{ header:a | fn:split(' ') }}{{ header:a | fn:split(' ') }}";
    assert_eq!(resolve(three, &r), Resolution::Unresolved);
}

#[test]
fn literal_templates() {
    assert!(Template::parse("plain/address").unwrap().is_literal());
    assert!(Template::parse("").unwrap().is_literal());
    assert!(Template::parse("{{ not closed").unwrap().is_literal());
    assert!(!Template::parse("a/{{ thing:id }}").unwrap().is_literal());
    assert!(!Template::parse("{{ fn:delete() }}").unwrap().is_literal());
}

#[test]
fn template_accessors() {
    let template: Template =
        "x/{{ header:a | fn:default(thing:id) }}/{{ fn:filter(header:b,'eq',feature:id) }}"
            .parse()
            .unwrap();
    assert_eq!(
        template.placeholders(),
        ["header:a", "thing:id", "header:b", "feature:id"]
    );
    assert_eq!(template.to_string(), template.as_str());
}

#[test]
fn resolver_can_override_time_and_default_clock_works() {
    struct Fixed;
    impl Resolver for Fixed {
        fn resolve(&self, prefix: &str, name: &str) -> Option<Vec<String>> {
            (prefix == "time" && name == "now").then(|| vec!["frozen".to_string()])
        }
    }
    let template = Template::parse("{{ time:now }}").unwrap();
    assert_eq!(template.resolve(&Fixed), resolved(&["frozen"]));
    let epoch = Template::parse("{{ time:now_epoch_millis }}")
        .unwrap()
        .resolve(&Fixed);
    let millis: i64 = epoch.first().unwrap().parse().unwrap();
    assert!((millis - chrono::Utc::now().timestamp_millis()).abs() < 60_000);
}
