mod common;

use common::*;
use ferrule_placeholders::{
    CONNECTION_PLACEHOLDERS, MapResolver, Resolution, evaluate_condition, resolve_expression,
    validate_condition,
};

fn headers(pairs: &[(&str, &str)]) -> MapResolver {
    pairs
        .iter()
        .fold(MapResolver::builder(), |b, (k, v)| b.header(k, *v))
        .build()
}

fn condition(expression: &str, resolver: &MapResolver) -> bool {
    evaluate_condition(expression, resolver).unwrap_or_else(|e| panic!("{expression}: {e:?}"))
}

#[test]
fn eq_and_ne() {
    let expression = "fn:filter(header:response-required,'eq','true')";
    assert!(condition(
        expression,
        &headers(&[("response-required", "true")])
    ));
    assert!(!condition(
        expression,
        &headers(&[("response-required", "false")])
    ));
    assert!(!condition(expression, &headers(&[])));

    let qos = "fn:filter(header:qos,'ne','0')";
    assert!(condition(qos, &headers(&[("qos", "1")])));
    assert!(!condition(qos, &headers(&[("qos", "0")])));
    // an absent header compares as "" and "" != "0"
    assert!(condition(qos, &headers(&[])));
    // double quotes and spaces
    assert!(condition(
        "fn:filter( header:qos , \"ne\" , \"0\" )",
        &headers(&[("qos", "2")])
    ));
    // a placeholder as compared value
    assert!(condition(
        "fn:filter(header:a,'eq',header:b)",
        &headers(&[("a", "x"), ("b", "x")])
    ));
    assert!(!condition(
        "fn:filter(header:a,'eq',header:b)",
        &headers(&[("a", "x"), ("b", "y")])
    ));
}

#[test]
fn exists() {
    let exists = "fn:filter(header:response-required,'exists')";
    assert!(condition(exists, &headers(&[("response-required", "x")])));
    assert!(!condition(exists, &headers(&[])));
    assert!(!condition(exists, &headers(&[("response-required", "")])));

    let not_exists = "fn:filter(header:response-required,'exists','false')";
    assert!(condition(not_exists, &headers(&[])));
    assert!(!condition(
        not_exists,
        &headers(&[("response-required", "x")])
    ));
    assert!(condition(
        "fn:filter(header:a,'exists','true')",
        &headers(&[("a", "x")])
    ));
}

#[test]
fn like_with_wildcards_and_alternatives() {
    let expression = "fn:filter(header:a,'like','allowlist1|foo*|?ar')";
    assert!(condition(expression, &headers(&[("a", "allowlist1")])));
    assert!(condition(expression, &headers(&[("a", "foobar")])));
    assert!(condition(expression, &headers(&[("a", "foo")])));
    assert!(condition(expression, &headers(&[("a", "bar")])));
    assert!(!condition(expression, &headers(&[("a", "baar")])));
    assert!(!condition(expression, &headers(&[("a", "allowlist")])));
    assert!(!condition(expression, &headers(&[])));
}

#[test]
fn two_parameter_form_filters_the_previous_element() {
    let r = headers(&[("a", "foobar"), ("list", "x y z")]);
    assert_eq!(
        resolve("{{ header:a | fn:filter('like','foo*') }}", &r),
        resolved(&["foobar"])
    );
    assert_eq!(
        resolve("{{ header:a | fn:filter('eq','other') }}", &r),
        Resolution::Unresolved
    );
    assert_eq!(
        resolve("{{ header:a | fn:filter('ne','other') }}", &r),
        resolved(&["foobar"])
    );
    assert_eq!(
        resolve("{{ header:a | fn:filter('exists','true') }}", &r),
        resolved(&["foobar"])
    );
    assert_eq!(
        resolve(
            "{{ header:list | fn:split(' ') | fn:filter('ne','y') }}",
            &r
        ),
        resolved(&["x", "z"])
    );
    assert_eq!(
        resolve(
            "{{ header:list | fn:split(' ') | fn:filter('like','x|z') | fn:join(',') }}",
            &r
        ),
        resolved(&["x,z"])
    );
    // filtered out, then a default
    assert_eq!(
        resolve(
            "{{ header:a | fn:filter('eq','other') | fn:default('d') }}",
            &r
        ),
        resolved(&["d"])
    );
}

#[test]
fn three_parameter_form_keeps_or_drops_the_previous_element() {
    let r = headers(&[("a", "v"), ("flag", "on")]);
    assert_eq!(
        resolve("{{ header:a | fn:filter(header:flag,'eq','on') }}", &r),
        resolved(&["v"])
    );
    assert_eq!(
        resolve("{{ header:a | fn:filter(header:flag,'eq','off') }}", &r),
        Resolution::Unresolved
    );
    // with unresolved input the filter stays unresolved, deleted stays deleted
    assert_eq!(
        resolve("{{ fn:filter(header:flag,'eq','on') }}", &r),
        Resolution::Unresolved
    );
    assert_eq!(
        resolve("{{ fn:delete() | fn:filter(header:flag,'eq','off') }}", &r),
        Resolution::Deleted
    );
    // conditional header mapping: drop the header unless the flag is set
    assert_eq!(
        resolve(
            "{{ header:a | fn:filter(header:flag,'eq','off') | fn:default(fn:delete()) }}",
            &r
        ),
        Resolution::Deleted
    );
}

#[test]
fn unknown_rql_functions_filter_everything_out() {
    let r = headers(&[("a", "1")]);
    assert!(!condition("fn:filter(header:a,'gt','0')", &r));
    assert_eq!(
        resolve("{{ header:a | fn:filter('gt','0') }}", &r),
        Resolution::Unresolved
    );
    // Ditto fails at runtime when the RQL function parameter does not resolve; unresolved here
    assert_eq!(
        resolve(
            "{{ header:a | fn:filter(header:a,header:missing,'1') }}",
            &r
        ),
        Resolution::Unresolved
    );
}

#[test]
fn conditions_pass_when_the_pipeline_resolves() {
    let r = headers(&[("a", "1")]);
    assert!(condition("fn:default('x')", &r));
    assert!(condition("fn:upper()", &r));
    assert!(!condition("fn:delete()", &r));
    assert!(!condition(
        "fn:filter(header:a,'eq','1') | fn:filter(header:a,'eq','2')",
        &r
    ));
    assert!(condition(
        "fn:filter(header:a,'eq','1') | fn:filter(header:a,'ne','2')",
        &r
    ));
}

#[test]
fn condition_errors_and_validation() {
    let r = headers(&[]);
    let unknown = evaluate_condition("fn:nope()", &r).unwrap_err();
    assert_eq!(unknown.code, "placeholder:function.unknown");
    assert_eq!(unknown.message, "The function <fn:nope()> is not known.");
    let not_a_function = evaluate_condition("header:a", &r).unwrap_err();
    assert_eq!(
        not_a_function.message,
        "The function <header:a> is not known."
    );
    let signature = evaluate_condition("fn:filter('eq')", &r).unwrap_err();
    assert_eq!(signature.code, "placeholder:function.signature.invalid");

    validate_condition("fn:filter(header:qos,'ne','0')", CONNECTION_PLACEHOLDERS).unwrap();
    let invalid =
        validate_condition("fn:filter(jwt:sub,'eq','x')", CONNECTION_PLACEHOLDERS).unwrap_err();
    assert_eq!(invalid.code, "placeholder:unresolved");
    assert_eq!(
        invalid.message,
        "The placeholder 'jwt:sub' could not be resolved."
    );
}

#[test]
fn acknowledgement_request_filter_like_ditto() {
    // Ditto's RequestedAcksFilter resolves "fn:default('<requested-acks>')|<filter>"
    let filter = "fn:filter(header:qos,'ne','0')";
    let full = format!("fn:default('[\"twin-persisted\"]')|{filter}");
    let qos0 = headers(&[("qos", "0")]);
    let qos1 = headers(&[("qos", "1")]);
    assert_eq!(
        resolve_expression(&full, &qos0).unwrap(),
        Resolution::Unresolved
    );
    assert_eq!(
        resolve_expression(&full, &qos1).unwrap(),
        resolved(&["[\"twin-persisted\"]"])
    );
    // without a default the filter alone is never resolved
    assert_eq!(
        resolve_expression(filter, &qos1).unwrap(),
        Resolution::Unresolved
    );
    assert_eq!(
        resolve_expression("header:qos | fn:default('0')", &headers(&[])).unwrap(),
        resolved(&["0"])
    );
    assert_eq!(
        resolve_expression("fn:nope()", &qos1).unwrap_err().code,
        "placeholder:function.unknown"
    );
}
