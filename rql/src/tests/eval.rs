//! Evaluation against a thing, with the semantic decisions of the crate documentation.

use serde_json::{Value as Json, json};

use crate::Filter;

fn thing() -> Json {
    json!({
        "thingId": "org.eclipse.ditto:thing-1",
        "policyId": "org.eclipse.ditto:policy-1",
        "_revision": 7,
        "_modified": "2024-01-02T03:04:05Z",
        "attributes": {
            "counter": 42,
            "temperature": 21.5,
            "name": "Kitchen Sensor",
            "flag": true,
            "off": false,
            "nothing": null,
            "tags": ["a", "b"],
            "location": {"city": "Berlin", "floor": 2},
            "numstr": "42.0",
            "text": "true",
            "big": 18446744073709551615u64,
            "negative": -3,
            "empty_s": "",
            "empty_a": [],
            "empty_o": {},
            "multiline": "first\nsecond",
            "unicode": "Ärger",
            "slash/key": "escaped",
        },
        "features": {
            "thermo": {"properties": {"value": 23.0, "unit": "°C"}, "definition": ["a:b:1"]}
        }
    })
}

fn placeholders(name: &str) -> Option<Json> {
    match name {
        "topic:action" => Some(json!("created")),
        "resource:path" => Some(json!("/attributes/counter")),
        "topic:channel" => Some(json!("twin")),
        "time:now" => Some(json!("2024-06-01T00:00:00Z")),
        "header:number" => Some(json!(5)),
        "header:nothing" => Some(Json::Null),
        _ => None,
    }
}

fn eval_on(doc: &Json, expression: &str) -> bool {
    let filter = Filter::parse(expression).unwrap_or_else(|e| panic!("{expression}: {e}"));
    filter.matches(doc, &placeholders)
}

fn eval(expression: &str) -> bool {
    eval_on(&thing(), expression)
}

#[track_caller]
fn all_true(expressions: &[&str]) {
    for e in expressions {
        assert!(eval(e), "{e} must match");
    }
}

#[track_caller]
fn all_false(expressions: &[&str]) {
    for e in expressions {
        assert!(!eval(e), "{e} must not match");
    }
}

#[test]
fn eq_and_ne() {
    all_true(&[
        "eq(attributes/counter,42)",
        "eq(attributes/name,'Kitchen Sensor')",
        "eq(attributes/location/city,\"Berlin\")",
        "eq(thingId,'org.eclipse.ditto:thing-1')",
        "eq(/thingId,'org.eclipse.ditto:thing-1')",
        "eq(_revision,7)",
        "eq(attributes/flag,true)",
        "eq(attributes/off,false)",
        "eq(features/thermo/properties/value,23)",
        "ne(attributes/counter,43)",
        "ne(attributes/name,'kitchen sensor')",
        "ne(attributes/flag,false)",
    ]);
    all_false(&[
        "eq(attributes/counter,43)",
        "eq(attributes/name,'kitchen sensor')",
        "eq(attributes/flag,false)",
        "ne(attributes/counter,42)",
        "ne(attributes/location/city,'Berlin')",
    ]);
}

#[test]
fn ordering_operators() {
    all_true(&[
        "gt(attributes/counter,41)",
        "ge(attributes/counter,42)",
        "lt(attributes/counter,43)",
        "le(attributes/counter,42)",
        "gt(attributes/temperature,21)",
        "lt(attributes/temperature,21.6)",
        "gt(attributes/negative,-4)",
        "gt(attributes/name,'Kitchen')",
        "lt(attributes/name,'kitchen')",
        "gt(_modified,'2024-01-01')",
        "lt(_modified,time:now)",
        "gt(attributes/flag,false)",
        "ge(attributes/off,false)",
        "gt(attributes/big,9223372036854775807)",
    ]);
    all_false(&[
        "gt(attributes/counter,42)",
        "ge(attributes/counter,43)",
        "lt(attributes/counter,42)",
        "le(attributes/counter,41)",
        "gt(attributes/temperature,21.5)",
        "lt(attributes/name,'Kitchen')",
        "gt(_modified,time:now)",
        "lt(attributes/flag,true)",
    ]);
}

#[test]
fn numbers_compare_by_value_across_int_and_decimal() {
    all_true(&[
        "eq(attributes/counter,42.0)",
        "eq(features/thermo/properties/value,23.0)",
        "eq(features/thermo/properties/value,23)",
        "in(attributes/counter,1,42.00)",
        "eq(attributes/temperature,21.50)",
    ]);
    let doc = json!({"attributes": {"x": 0.1, "y": 1e21, "z": -0.0}});
    assert!(eval_on(&doc, "eq(attributes/x,0.1)"));
    assert!(eval_on(&doc, "gt(attributes/y,100000000000000000000.0)"));
    assert!(eval_on(&doc, "eq(attributes/z,0)"));
}

#[test]
fn strings_and_numbers_meet_as_numbers_when_the_string_is_numeric() {
    all_true(&[
        "eq(attributes/counter,'42')",
        "eq(attributes/counter,\"4.2E1\")",
        "eq(attributes/numstr,42)",
        "gt(attributes/numstr,41.9)",
        "lt(attributes/counter,'100')", // as numbers; as text "42" > "100"
    ]);
    all_false(&["eq(attributes/counter,' 42')", "eq(attributes/numstr,'42')"]);
}

#[test]
fn other_type_mismatches_compare_java_string_forms() {
    all_true(&[
        "eq(attributes/text,true)",
        "eq(attributes/flag,'true')",
        // "Kitchen Sensor" vs "5": 'K' > '5'
        "gt(attributes/name,5)",
        "ne(attributes/counter,true)",
    ]);
    all_false(&["lt(attributes/name,5)", "eq(attributes/flag,1)"]);
}

#[test]
fn null_semantics() {
    all_true(&[
        "eq(attributes/nothing,null)",
        "ne(attributes/counter,null)",
        "ne(attributes/missing,null)",
        "ne(attributes/nothing,1)",
        "exists(attributes/nothing)",
    ]);
    all_false(&[
        "eq(attributes/counter,null)",
        "eq(attributes/missing,null)",
        "ne(attributes/nothing,null)",
        "eq(attributes/nothing,'null')",
        "gt(attributes/nothing,null)",
        "ge(attributes/counter,null)",
        "lt(attributes/nothing,1)",
        "in(attributes/nothing,null)",
        "in(attributes/counter,null)",
    ]);
    assert!(eval("in(attributes/counter,null,42)"));
}

#[test]
fn missing_properties() {
    all_false(&[
        "eq(attributes/missing,1)",
        "gt(attributes/missing,1)",
        "ge(attributes/missing,1)",
        "lt(attributes/missing,1)",
        "le(attributes/missing,1)",
        "in(attributes/missing,1,2)",
        "like(attributes/missing,'*')",
        "ilike(attributes/missing,'*')",
        "exists(attributes/missing)",
        "exists(attributes/location/city/deeper)",
        "eq(attributes/counter/x,1)",
    ]);
    all_true(&[
        "ne(attributes/missing,1)",
        "not(exists(attributes/missing))",
        "empty(attributes/missing)",
    ]);
}

#[test]
fn arrays_and_objects_never_match_a_comparison() {
    all_false(&[
        "eq(attributes/tags,'a')",
        "in(attributes/tags,'a','b')",
        "gt(attributes/tags,'a')",
        "like(attributes/tags,'*')",
        "eq(attributes/tags/0,'a')",
        "eq(attributes/location,'Berlin')",
        "eq(attributes/empty_a,null)",
        "eq(features/thermo/definition,'a:b:1')",
    ]);
    all_true(&[
        "ne(attributes/tags,'a')",
        "ne(attributes/location,1)",
        "exists(attributes/tags)",
        "exists(attributes/location)",
    ]);
}

#[test]
fn in_operator() {
    all_true(&[
        "in(attributes/counter,1,2,42)",
        "in(attributes/name,'x','Kitchen Sensor')",
        "in(attributes/flag,false,true)",
        "in(topic:action,'created','deleted')",
    ]);
    all_false(&[
        "in(attributes/counter,1,2,3)",
        "in(topic:action,'modified','deleted')",
    ]);
}

#[test]
fn like_and_ilike() {
    all_true(&[
        "like(attributes/name,'Kitchen*')",
        "like(attributes/name,'*Sensor')",
        "like(attributes/name,'*chen*')",
        "like(attributes/name,'Kitchen?Sensor')",
        "like(attributes/name,'K?tch?n S*r')",
        "like(attributes/name,'*')",
        "like(attributes/name,'Kitchen Sensor')",
        "like(attributes/empty_s,'*')",
        "ilike(attributes/name,'kitchen*')",
        "ilike(attributes/name,'KITCHEN SENSOR')",
        "like(attributes/multiline,'first\\nsecond')",
        "like(features/thermo/properties/unit,'?C')",
        "like(resource:path,'/attributes/*')",
    ]);
    all_false(&[
        "like(attributes/name,'kitchen*')",
        "like(attributes/name,'Kitchen')",
        "like(attributes/name,'Kitchen?')",
        "like(attributes/name,'?Kitchen Sensor')",
        "like(attributes/empty_s,'?')",
        "ilike(attributes/name,'bathroom*')",
        "ilike(attributes/unicode,'ärger')",
        "like(attributes/multiline,'first*')",
        "like(attributes/counter,'42')",
        "like(attributes/flag,'true')",
        "like(attributes/nothing,'*')",
    ]);
}

#[test]
fn exists_and_empty() {
    all_true(&[
        "exists(thingId)",
        "exists(attributes/counter)",
        "exists(features/thermo)",
        "exists(features/thermo/properties)",
        "exists(topic:action)",
        "exists(resource:path)",
        "empty(attributes/nothing)",
        "empty(attributes/empty_s)",
        "empty(attributes/empty_a)",
        "empty(attributes/empty_o)",
        "empty(header:nothing)",
        "not(empty(attributes/tags))",
    ]);
    all_false(&[
        "exists(features/other)",
        "exists(feature:id)",
        "empty(attributes/tags)",
        "empty(attributes/location)",
        "empty(attributes/counter)",
        "empty(attributes/off)",
        "empty(attributes/name)",
        "empty(topic:channel)",
    ]);
}

#[test]
fn logical_operators() {
    all_true(&[
        "and(eq(attributes/counter,42),eq(attributes/flag,true))",
        "and(eq(attributes/counter,42))",
        "or(eq(attributes/counter,1),eq(attributes/flag,true))",
        "or(eq(attributes/counter,42))",
        "not(eq(attributes/counter,1))",
        "not(not(eq(attributes/counter,42)))",
        "and(or(eq(attributes/counter,1),gt(attributes/counter,40)),not(and(exists(a),exists(b))))",
    ]);
    all_false(&[
        "and(eq(attributes/counter,42),eq(attributes/flag,false))",
        "or(eq(attributes/counter,1),eq(attributes/flag,false))",
        "not(eq(attributes/counter,42))",
        "not(not(eq(attributes/counter,1)))",
        "or(and(eq(attributes/counter,42),not(exists(thingId))),lt(attributes/counter,0))",
    ]);
}

#[test]
fn placeholders_as_properties() {
    let doc = json!({"thingId": "a:b"});
    all_true(&[
        "and(in(topic:action,'created','deleted'),eq(resource:path,'/attributes/counter'))",
        "eq(topic:channel,'twin')",
        "eq(header:number,5)",
    ]);
    assert!(eval_on(&doc, "eq(topic:action,'created')"));
    assert!(!eval_on(&doc, "eq(topic:action,'deleted')"));
    // unknown placeholders resolve to nothing: like a missing property
    assert!(!eval_on(&doc, "eq(feature:id,'x')"));
    assert!(eval_on(&doc, "ne(feature:id,'x')"));
    // a property without ':' never asks the callback
    let asked = std::cell::Cell::new(false);
    let filter = Filter::parse("eq(attributes/x,1)").unwrap();
    assert!(!filter.matches(&doc, &|_| {
        asked.set(true);
        Some(json!(1))
    }));
    assert!(!asked.get());
}

#[test]
fn the_document_wins_over_the_placeholder() {
    // Ditto's getThingField looks into the thing first.
    let doc = json!({"topic:action": "from the document"});
    assert!(eval_on(&doc, "eq(topic:action,'from the document')"));
    assert!(!eval_on(&doc, "eq(topic:action,'created')"));
}

#[test]
fn value_placeholders() {
    let doc = json!({"_modified": "2024-05-01T00:00:00Z", "attributes": {"n": null}});
    assert!(eval_on(&doc, "lt(_modified,time:now)"));
    assert!(!eval_on(&doc, "ge(_modified,time:now)"));
    // an unresolvable value placeholder is null
    assert!(eval_on(&doc, "eq(attributes/n,time:unknown)"));
    assert!(!eval_on(&doc, "eq(_modified,time:unknown)"));
    assert!(eval_on(&doc, "ne(_modified,time:unknown)"));
}

#[test]
fn paths() {
    let doc = json!({"a": {"b/c": 1, "d~e": 2, "": 3}});
    assert!(eval_on(&doc, "eq(a/b~1c,1)"));
    assert!(eval_on(&doc, "eq(a/d~0e,2)"));
    assert!(
        eval_on(&doc, "exists(a//b~1c)"),
        "empty segments are skipped"
    );
    assert!(!eval_on(&doc, "eq(a/b/c,1)"));
    assert!(!eval_on(&json!([1, 2]), "eq(0,1)"));
    assert!(!eval_on(&json!("text"), "exists(a)"));
}

#[test]
fn strings_compare_by_utf16_code_units() {
    // U+FF61 sorts before U+1F600 in code point (and UTF-8) order but after it in UTF-16
    // (U+1F600 is the surrogate pair D83D DE00), and Java compares UTF-16.
    let doc = json!({"s": "\u{FF61}"});
    assert!(eval_on(&doc, "gt(s,\"\\ud83d\\ude00\")"));
}
