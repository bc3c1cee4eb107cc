//! Malformed expressions: each is rejected with the position of the problem and what was
//! expected there.

use crate::{Filter, RqlError, RqlErrorKind};

fn err(input: &str) -> RqlError {
    match Filter::parse(input) {
        Ok(filter) => panic!("{input:?} must not parse, got {filter:?}"),
        Err(e) => e,
    }
}

/// (input, position, a part of the message)
const MALFORMED: &[(&str, usize, &str)] = &[
    ("", 0, "Unexpected end of input, expected an RQL operator"),
    (
        "   ",
        3,
        "Unexpected end of input, expected an RQL operator",
    ),
    (
        "eaq(username,123)",
        0,
        "Unknown operator 'eaq', expected one of: and, or, not",
    ),
    ("EQ(a,1)", 0, "Unknown operator 'EQ'"),
    ("or(ASDF(username,123))", 3, "Unknown operator 'ASDF'"),
    (
        "(username, 123)",
        0,
        "Invalid input '(', expected an RQL operator",
    ),
    ("eq (a,1)", 2, "Invalid input ' ', expected '(' after 'eq'"),
    (
        "eq/(username,1)",
        2,
        "Invalid input '/', expected '(' after 'eq'",
    ),
    (
        "eq(username;\"x\")",
        12,
        "Invalid input '\"', expected ',' and a value",
    ),
    (
        "eq(username,123",
        15,
        "Unexpected end of input, expected ')'",
    ),
    (
        "eq(username, 123)",
        12,
        "Invalid input ' ', expected a value",
    ),
    (
        "eq(username,test)",
        12,
        "Invalid input 't', expected a value",
    ),
    ("eq(username,123())", 15, "Invalid input '(', expected ')'"),
    (
        "eq(username,123.0())",
        17,
        "Invalid input '(', expected ')'",
    ),
    (
        "eq(coolness,\"super\"))",
        20,
        "Invalid input ')', expected end of input",
    ),
    ("eq(a,1)x", 7, "Invalid input 'x', expected end of input"),
    ("eq(a,1) ", 7, "Invalid input ' ', expected end of input"),
    ("eq(a,truex)", 9, "Invalid input 'x', expected ')'"),
    (
        "eq(a,1,2)",
        6,
        "Invalid input ',', expected ')' (eq takes exactly one value)",
    ),
    (
        "eq(a)",
        4,
        "Invalid input ')', expected ',' and a value (eq takes a property and a value)",
    ),
    ("eq(,1)", 3, "Invalid input ',', expected a property"),
    (
        "in(a)",
        4,
        "Invalid input ')', expected ',' and at least one value",
    ),
    ("in(a,1;2)", 6, "Invalid input ';', expected ',' or ')'"),
    (
        "not(eq(a,1),eq(b,2))",
        11,
        "Invalid input ',', expected ')' (not takes exactly one query)",
    ),
    ("and()", 4, "Invalid input ')', expected an RQL operator"),
    (
        "and(eq(a,1), )",
        13,
        "Invalid input ')', expected an RQL operator",
    ),
    (
        "and(   ,eq(a,1))",
        4,
        "Invalid input ' ', expected an RQL operator",
    ),
    (
        "and(eq(a,1)xx,eq(b,2))",
        11,
        "Invalid input 'x', expected ',' or ')'",
    ),
    (
        "and(eq(a,1)",
        11,
        "Unexpected end of input, expected ',' or ')'",
    ),
    (
        "exists(\"features/scanner\")",
        7,
        "Invalid input '\"', expected a property",
    ),
    (
        "exists(features/scanner,\"test\")",
        23,
        "Invalid input ',', expected ')' (exists takes exactly one property)",
    ),
    ("exists()", 7, "Invalid input ')', expected a property"),
    ("eq(username,-0)", 12, "Invalid number '-0'"),
    ("eq(username,0123)", 13, "Invalid input '1', expected ')'"),
    ("eq(username,-0123)", 12, "Invalid number '-0'"),
    ("eq(username,012.7)", 13, "Invalid input '1', expected ')'"),
    (
        "eq(username,12356143287134097863590813406135981332472031847)",
        12,
        "Number out of range",
    ),
    ("eq(username,127.)", 15, "Invalid input '.', expected ')'"),
    ("eq(username,12.7.8)", 16, "Invalid input '.', expected ')'"),
    ("eq(username,.7)", 12, "Invalid input '.', expected a value"),
    (
        "eq(username,-.7)",
        13,
        "Invalid input '.', expected a digit",
    ),
    (
        "eq(username,\"abc\"\")",
        17,
        "Invalid input '\"', expected ')'",
    ),
    (
        "eq(username,\"abc)",
        17,
        "Unexpected end of input, expected \" to close the string started at column 13",
    ),
    (
        "eq(a,'it\\\"s')",
        8,
        "Invalid escape sequence '\\\"', expected one of \\' ",
    ),
    (
        "eq(a,\"it\\'s\")",
        8,
        "Invalid escape sequence '\\'', expected one of \\\" ",
    ),
    ("eq(a\\x,1)", 4, "Invalid escape sequence '\\x'"),
    (
        "eq(a,\"\\u12\")",
        10,
        "Invalid input '\"', expected a hexadecimal digit",
    ),
    ("eq(a,\"\\ud800\")", 6, "Invalid unicode escape"),
    ("eq(a,\"\\udc00\")", 6, "Invalid unicode escape"),
    (
        "eq(a,time:)",
        10,
        "Invalid input ')', expected a placeholder name after 'time:'",
    ),
    ("eq(a,header:x)", 5, "Invalid input 'h', expected a value"),
    (
        "like(width,123)",
        11,
        "In the like predicate only string values are allowed.",
    ),
    (
        "ilike(width,null)",
        12,
        "In the ilike predicate only string values are allowed.",
    ),
    (
        "like(width,time:now)",
        11,
        "In the like predicate only string values are allowed.",
    ),
    (
        "like(width,123*)",
        11,
        "In the like predicate only string values are allowed.",
    ),
];

#[test]
fn malformed_expressions_are_rejected_with_position_and_expectation() {
    assert!(MALFORMED.len() >= 10);
    for (input, position, message) in MALFORMED {
        let e = err(input);
        assert_eq!(e.position, *position, "position for {input:?}: {e}");
        assert!(
            e.message.contains(message),
            "message for {input:?}: {:?} does not contain {message:?}",
            e.message
        );
        assert_eq!(e.line, 1, "{input:?}");
        assert_eq!(e.column, position + 1, "{input:?}");
    }
}

#[test]
fn semantic_and_syntax_errors_are_told_apart() {
    assert_eq!(err("like(a,1)").kind, RqlErrorKind::Semantic);
    assert_eq!(err("like(a,1").kind, RqlErrorKind::Semantic);
    assert_eq!(err("eq(a,1").kind, RqlErrorKind::Syntax);
}

#[test]
fn too_deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}exists(a){}", "not(".repeat(100_000), ")".repeat(100_000));
    let e = err(&deep);
    assert!(e.message.contains("nested too deeply"), "{e}");
    assert_eq!(e.position, 4 * crate::MAX_DEPTH);

    let fine = format!(
        "{}exists(a){}",
        "not(".repeat(crate::MAX_DEPTH - 1),
        ")".repeat(crate::MAX_DEPTH - 1)
    );
    assert!(Filter::parse(&fine).is_ok());
}

#[test]
fn lines_and_columns_count_characters() {
    let e = err("and(eq(a,1),\n    eq(ä,2)x)");
    assert_eq!((e.line, e.column, e.position), (2, 12, 24));
    assert_eq!(
        e.to_string(),
        "Invalid input 'x', expected ',' or ')' (line 2, column 12)"
    );
}

#[test]
fn ditto_message_imitates_parboiled() {
    let input = "eq(attributes/counter, 42)";
    let e = err(input);
    assert_eq!(
        e.ditto_message(input),
        format!(
            "Invalid input ' ', expected a value (a number, \"string\", 'string', true, false, null or time:<name>); whitespace is not allowed before a value (line 1, column 23):\n{input}\n{}^",
            " ".repeat(22)
        )
    );
    assert_eq!(
        RqlError::ditto_description(),
        "Ensure that all opening parentheses have also closing ones and that the RQL expression is valid."
    );
    assert_eq!(RqlError::ERROR_CODE, "rql.expression.invalid");
    assert_eq!(RqlError::HTTP_STATUS, 400);
    assert_eq!(
        RqlError::DITTO_DEFAULT_MESSAGE,
        "The given RQL expression was invalid"
    );

    let input = "and(exists(a),\n  like(b,1))";
    let e = err(input);
    assert_eq!(
        e.ditto_message(input),
        "In the like predicate only string values are allowed."
    );
    assert_eq!((e.line, e.column), (2, 10));
}
