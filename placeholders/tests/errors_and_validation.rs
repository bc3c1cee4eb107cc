mod common;

use common::*;
use ferrule_placeholders::{
    CODE_FUNCTION_SIGNATURE_INVALID, CODE_FUNCTION_TOO_COMPLEX, CODE_FUNCTION_UNKNOWN,
    CODE_UNRESOLVED, CONNECTION_PLACEHOLDERS, MAX_PIPELINE_FUNCTIONS, PlaceholderError, Template,
};

#[test]
fn error_codes_are_dittos() {
    assert_eq!(CODE_UNRESOLVED, "placeholder:unresolved");
    assert_eq!(CODE_FUNCTION_UNKNOWN, "placeholder:function.unknown");
    assert_eq!(
        CODE_FUNCTION_SIGNATURE_INVALID,
        "placeholder:function.signature.invalid"
    );
    assert_eq!(
        CODE_FUNCTION_TOO_COMPLEX,
        "placeholder:function.too.complex"
    );
    assert_eq!(MAX_PIPELINE_FUNCTIONS, 10);
}

#[test]
fn unknown_functions() {
    let error = parse_error("{{ thing:id | fn:unknown() }}");
    assert_eq!(error.code, CODE_FUNCTION_UNKNOWN);
    assert_eq!(error.message, "The function <fn:unknown()> is not known.");
    assert_eq!(
        error.description,
        "Ensure to only use supported functions. Check if you maybe just forgot to use parentheses for a function \
         with empty parameters."
    );
    assert_eq!(error.to_string(), error.message);
    // parentheses are part of the name check
    assert_eq!(
        parse_error("{{ thing:id | fn:upper }}").message,
        "The function <fn:upper> is not known."
    );
    assert_eq!(
        parse_error("{{ thing:id | fn:upper () }}").code,
        CODE_FUNCTION_UNKNOWN
    );
    assert_eq!(
        parse_error("{{ thing:id | fn:UPPER() }}").code,
        CODE_FUNCTION_UNKNOWN
    );
    // a placeholder after the first stage is not a function
    assert_eq!(
        parse_error("{{ thing:id | header:a }}").message,
        "The function <header:a> is not known."
    );
    // an empty stage made of spaces
    assert_eq!(
        parse_error("{{ thing:id | }}").message,
        "The function <> is not known."
    );
    // unknown functions in parameters
    assert_eq!(
        parse_error("{{ fn:default(fn:nope()) }}").message,
        "The function <fn:nope()> is not known."
    );
}

#[test]
fn wrong_signatures() {
    let error = parse_error("{{ thing:id | fn:upper('x') }}");
    assert_eq!(error.code, CODE_FUNCTION_SIGNATURE_INVALID);
    assert_eq!(
        error.message,
        "The function signature <fn:upper('x')> could not be parsed."
    );
    assert_eq!(
        error.description,
        "Ensure to conform to the function's signature: <fn:upper()>"
    );

    let error = parse_error("{{ thing:id | fn:substring-before() }}");
    assert_eq!(
        error.message,
        "The function signature <fn:substring-before()> could not be parsed."
    );
    assert_eq!(
        error.description,
        "Ensure to conform to the function's signature: <fn:substring-before(String givenString /* Specifies the \
         string to use in order to determine the substring before the first occurrence of that given string */)>"
    );

    let error = parse_error("{{ thing:id | fn:replace('a') }}");
    assert_eq!(
        error.description,
        "Ensure to conform to the function's signature: <fn:replace(String from /* Specifies the string to search \
         for and replace */ , String to /* Specifies the replace string to be inserted for all matching 'from' \
         strings */)>"
    );

    for template in [
        "{{ thing:id | fn:substring-before(header:x) }}",
        "{{ thing:id | fn:substring-after(':',':') }}",
        "{{ thing:id | fn:default('a','b') }}",
        "{{ thing:id | fn:default() }}",
        "{{ thing:id | fn:default(unquoted) }}",
        "{{ thing:id | fn:default(thing-json:a) }}",
        "{{ thing:id | fn:split(' ', ' ') }}",
        "{{ thing:id | fn:join() }}",
        "{{ thing:id | fn:lower(thing:id) }}",
        "{{ thing:id | fn:delete('x') }}",
        "{{ thing:id | fn:trim( 'x' ) }}",
        "{{ thing:id | fn:url-encode(x) }}",
        "{{ thing:id | fn:base64-decode(()) }}",
        "{{ fn:filter('eq') }}",
        "{{ fn:filter('a','b','c','d') }}",
        "{{ fn:filter(header:a 'eq' 'b') }}",
        "{{ thing:id | fn:format('{#a}x') }}",
        "{{ thing:id | fn:upper() trailing }}",
    ] {
        assert_eq!(
            parse_error(template).code,
            CODE_FUNCTION_SIGNATURE_INVALID,
            "{template}"
        );
    }
}

#[test]
fn pipeline_length_is_limited() {
    let ten = format!("{{{{ thing:id{} }}}}", " | fn:lower()".repeat(10));
    Template::parse(&ten).unwrap();
    let eleven = format!("{{{{ thing:id{} }}}}", " | fn:lower()".repeat(11));
    let error = parse_error(&eleven);
    assert_eq!(error.code, CODE_FUNCTION_TOO_COMPLEX);
    assert_eq!(
        error.message,
        "The placeholder functions are not accepted as they are too complex."
    );
    assert_eq!(
        error.description,
        "Please reduce the complexity (e.g. amount of chained functions below the maximum of '10') of the functions."
    );
    // Ditto counts stages: a pipeline of functions only may have 11
    let functions_only = format!("{{{{ fn:default('a'){} }}}}", " | fn:lower()".repeat(10));
    Template::parse(&functions_only).unwrap();
    let too_many = format!("{{{{ fn:default('a'){} }}}}", " | fn:lower()".repeat(11));
    assert_eq!(parse_error(&too_many).code, CODE_FUNCTION_TOO_COMPLEX);
    // very deep nesting of parameters
    let nested = format!(
        "{{{{ {}'x'{} }}}}",
        "fn:default(".repeat(40),
        ")".repeat(40)
    );
    assert_eq!(parse_error(&nested).code, CODE_FUNCTION_TOO_COMPLEX);
}

#[test]
fn malformed_expressions_are_unresolved_placeholders() {
    let error = parse_error("{{ foo }}");
    assert_eq!(error.code, CODE_UNRESOLVED);
    assert_eq!(
        error.message,
        "The placeholder 'foo' could not be resolved."
    );
    assert_eq!(
        error.description,
        "Some placeholders could not be resolved. Check the spelling of the placeholder and make sure all required \
         headers are set."
    );
    assert_eq!(
        parse_error("{{}}").message,
        "The placeholder '' could not be resolved."
    );
    assert_eq!(
        parse_error("{{ thing:id |}}").message,
        "The placeholder 'thing:id |' could not be resolved."
    );
    assert_eq!(parse_error("{{ | thing:id }}").code, CODE_UNRESOLVED);
    assert_eq!(
        parse_error("{{ thing:id || fn:upper() }}").code,
        CODE_UNRESOLVED
    );
    assert_eq!(
        parse_error("{{ header:x | fn:default('a) }}").code,
        CODE_UNRESOLVED
    );
    // the first error in the template wins
    assert_eq!(
        parse_error("{{ foo }}{{ thing:id | fn:nope() }}").code,
        CODE_UNRESOLVED
    );
}

fn validate(template: &str, allowed: &[&str]) -> Result<(), PlaceholderError> {
    Template::parse(template).unwrap().validate(allowed)
}

#[test]
fn validation_checks_prefixes_and_names() {
    validate(
        "a/{{ thing:id }}/{{ header:x | fn:default(topic:action-subject) }}",
        CONNECTION_PLACEHOLDERS,
    )
    .unwrap();
    validate(
        "{{ time:now-2d[d] }} {{ time:now_epoch_millis[h] }} {{ time:now+4h }}",
        CONNECTION_PLACEHOLDERS,
    )
    .unwrap();
    validate("literal", &[]).unwrap();
    validate("{{ fn:delete() }}", &[]).unwrap();

    let error = validate("{{ foo:bar }}", CONNECTION_PLACEHOLDERS).unwrap_err();
    assert_eq!(error.code, CODE_UNRESOLVED);
    assert_eq!(
        error.message,
        "The placeholder 'foo:bar' could not be resolved."
    );

    for (template, placeholder) in [
        ("{{ thing:foo }}", "thing:foo"),
        ("{{ thing:ID }}", "thing:ID"),
        ("{{ entity:x }}", "entity:x"),
        ("{{ policy:label }}", "policy:label"),
        ("{{ feature:name }}", "feature:name"),
        ("{{ connection:name }}", "connection:name"),
        ("{{ topic:entityId }}", "topic:entityId"),
        ("{{ resource:id }}", "resource:id"),
        ("{{ request:subject }}", "request:subject"),
        ("{{ source:topic }}", "source:topic"),
        ("{{ time:later }}", "time:later"),
        ("{{ time:now+1y }}", "time:now+1y"),
        ("{{ time:now[x] }}", "time:now[x]"),
        ("{{ header: }}", "header:"),
        ("{{ thing :id }}", "thing :id"),
        ("{{ header:a | fn:default(jwt:sub) }}", "jwt:sub"),
        (
            "{{ fn:filter(header:a,'eq',policy:label) }}",
            "policy:label",
        ),
    ] {
        let error = validate(template, CONNECTION_PLACEHOLDERS).expect_err(template);
        assert_eq!(
            error.message,
            format!("The placeholder '{placeholder}' could not be resolved."),
            "{template}"
        );
    }
    // only the allowed prefixes
    assert!(validate("{{ thing:id }}", &["header"]).is_err());
    validate("{{ header:x }}", &["header"]).unwrap();
    // unknown but allowed prefixes accept any name
    validate("{{ jwt:extra/roles }}", &["jwt"]).unwrap();
}

#[test]
fn other_error_constructors() {
    let unknown = PlaceholderError::unknown_placeholder("foo:bar", &["thing:id", "header:*"]);
    assert_eq!(unknown.code, "placeholder:placeholder.notresolvable");
    assert_eq!(unknown.message, "The placeholder 'foo:bar' is unknown.");
    assert_eq!(
        unknown.description,
        "Please use one of the supported placeholders: 'thing:id', 'header:*'."
    );
    let input = PlaceholderError::not_resolvable_input("{{ a");
    assert_eq!(
        input.message,
        "The input contains not resolvable placeholders: '{{ a'."
    );
}
