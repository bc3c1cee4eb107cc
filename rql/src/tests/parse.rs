//! What the parser accepts and how it reads it.

use crate::{CompareOp, Filter, Node, Value};

fn parse(s: &str) -> Node {
    Filter::parse(s)
        .unwrap_or_else(|e| panic!("{s:?} must parse: {e}"))
        .root()
        .clone()
}

fn compare(op: CompareOp, property: &str, value: Value) -> Node {
    Node::Compare {
        op,
        property: property.to_string(),
        value,
    }
}

fn value_of(s: &str) -> Value {
    match parse(s) {
        Node::Compare { value, .. } => value,
        other => panic!("not a comparison: {other:?}"),
    }
}

#[test]
fn every_comparison_operator() {
    for (name, op) in [
        ("eq", CompareOp::Eq),
        ("ne", CompareOp::Ne),
        ("gt", CompareOp::Gt),
        ("ge", CompareOp::Ge),
        ("lt", CompareOp::Lt),
        ("le", CompareOp::Le),
    ] {
        assert_eq!(
            parse(&format!("{name}(attributes/counter,42)")),
            compare(op, "attributes/counter", Value::Int(42))
        );
    }
    assert_eq!(
        parse("like(attributes/name,'Kit*')"),
        compare(
            CompareOp::Like,
            "attributes/name",
            Value::String("Kit*".into())
        )
    );
    assert_eq!(
        parse("ilike(attributes/name,\"kit?hen\")"),
        compare(
            CompareOp::ILike,
            "attributes/name",
            Value::String("kit?hen".into())
        )
    );
}

#[test]
fn in_exists_empty() {
    assert_eq!(
        parse("in(topic:action,'created','deleted')"),
        Node::In {
            property: "topic:action".into(),
            values: vec![
                Value::String("created".into()),
                Value::String("deleted".into())
            ],
        }
    );
    assert_eq!(
        parse("in(attributes,\"test\",1,true,null)"),
        Node::In {
            property: "attributes".into(),
            values: vec![
                Value::String("test".into()),
                Value::Int(1),
                Value::Bool(true),
                Value::Null
            ],
        }
    );
    assert_eq!(
        parse("exists(features/scanner)"),
        Node::Exists {
            property: "features/scanner".into()
        }
    );
    assert_eq!(
        parse("empty(attributes/tags)"),
        Node::Empty {
            property: "attributes/tags".into()
        }
    );
}

#[test]
fn logical_operators_nest() {
    let node =
        parse("and(eq(username,123),eq(coolness,\"super\"),or(eq(username,854)),not(exists(a)))");
    let Node::And(children) = node else {
        panic!("expected and")
    };
    assert_eq!(children.len(), 4);
    assert_eq!(
        children[2],
        Node::Or(vec![compare(CompareOp::Eq, "username", Value::Int(854))])
    );
    assert_eq!(
        children[3],
        Node::Not(Box::new(Node::Exists {
            property: "a".into()
        }))
    );
}

#[test]
fn numbers() {
    assert_eq!(value_of("eq(a,0)"), Value::Int(0));
    assert_eq!(value_of("eq(a,123)"), Value::Int(123));
    assert_eq!(value_of("eq(a,-123)"), Value::Int(-123));
    assert_eq!(value_of("eq(a,+7)"), Value::Int(7));
    assert_eq!(value_of("eq(a,+0)"), Value::Int(0));
    assert_eq!(value_of("eq(a,9223372036854775807)"), Value::Int(i64::MAX));
    assert_eq!(value_of("eq(a,-9223372036854775808)"), Value::Int(i64::MIN));
    assert_eq!(value_of("eq(a,123.7)"), Value::Double(123.7));
    assert_eq!(value_of("eq(a,-123.7)"), Value::Double(-123.7));
    assert_eq!(value_of("eq(a,0.7)"), Value::Double(0.7));
    assert_eq!(value_of("eq(a,-0.7)"), Value::Double(-0.7));
    assert_eq!(value_of("eq(a,-0.0)"), Value::Double(-0.0));
    assert_eq!(value_of("eq(a,1.0)"), Value::Double(1.0));
}

#[test]
fn keywords() {
    assert_eq!(value_of("eq(a,true)"), Value::Bool(true));
    assert_eq!(value_of("eq(a,false)"), Value::Bool(false));
    assert_eq!(value_of("eq(a,null)"), Value::Null);
    assert_eq!(value_of("eq(a,\"true\")"), Value::String("true".into()));
    assert_eq!(
        value_of("gt(_modified,time:now)"),
        Value::Placeholder("time:now".into())
    );
    assert_eq!(
        value_of("gt(_modified,time:now_epoch_millis )"),
        Value::Placeholder("time:now_epoch_millis".into())
    );
}

#[test]
fn strings_and_escapes() {
    let s = |v: &str| Value::String(v.to_string());
    assert_eq!(value_of(r#"eq(a,"te\"st")"#), s("te\"st"));
    assert_eq!(value_of(r"eq(a,'te\'st')"), s("te'st"));
    assert_eq!(value_of(r#"eq(a,'say "hi"')"#), s("say \"hi\""));
    assert_eq!(value_of(r#"eq(a,"it's")"#), s("it's"));
    assert_eq!(value_of(r#"eq(a,"abc\nyz")"#), s("abc\nyz"));
    assert_eq!(value_of(r"eq(a,'abc\nyz')"), s("abc\nyz"));
    assert_eq!(
        value_of(r#"eq(a,"\\ \/ \b \f \r \t")"#),
        s("\\ / \u{8} \u{c} \r \t")
    );
    assert_eq!(value_of(r#"eq(a,"\u00e4\u00C4")"#), s("äÄ"));
    assert_eq!(value_of(r#"eq(a,"\ud83d\ude00")"#), s("😀"));
    assert_eq!(value_of(r#"eq(a," ")"#), s(" "));
    assert_eq!(value_of("eq(a,'')"), s(""));
    assert_eq!(
        value_of("eq(attributes/complex,\"!#$%&'()*+,/:;=?@[\\\\]{|} äaZ0\")"),
        s("!#$%&'()*+,/:;=?@[\\]{|} äaZ0"),
        "Ditto's testComplexSpecialChars"
    );
}

#[test]
fn properties_are_taken_as_written() {
    let property = |s: &str| match parse(s) {
        Node::Compare { property, .. } | Node::Exists { property } => property,
        other => panic!("{other:?}"),
    };
    assert_eq!(property("eq(/attributes/x,1)"), "/attributes/x");
    assert_eq!(property("eq( attributes/x,1)"), " attributes/x");
    assert_eq!(property("eq(a(b,1)"), "a(b");
    assert_eq!(property("eq(it's,1)"), "it's");
    assert_eq!(property(r"eq(a\/b\u002cc\\d\u0029,1)"), "a/b,c\\d)");
    assert_eq!(property("exists(topic:action)"), "topic:action");
    assert_eq!(property("exists(a )"), "a ");
}

#[test]
fn whitespace_where_ditto_allows_it() {
    // before the expression
    assert!(Filter::parse("  \n\teq(a,1)").is_ok());
    // after values
    assert!(Filter::parse("eq(a,1 )").is_ok());
    assert!(Filter::parse("eq(a,\"x\"\t)").is_ok());
    assert!(
        Filter::parse("in(a,1 ,2 , 3)").is_err(),
        "not after the , before a value"
    );
    assert!(Filter::parse("in(a,1 ,2 )").is_ok());
    // after the , between queries of and/or
    assert!(Filter::parse("and(eq(a,1), eq(b,2),\n  exists(c))").is_ok());
    assert!(Filter::parse("or(eq(a,1),  eq(b,2))").is_ok());
    // nowhere else
    assert!(Filter::parse("eq(a, 1)").is_err());
    assert!(Filter::parse("eq (a,1)").is_err());
    assert!(Filter::parse("and( eq(a,1))").is_err());
    assert!(Filter::parse("and(eq(a,1) ,eq(b,2))").is_err());
    assert!(Filter::parse("not( eq(a,1))").is_err());
    assert!(Filter::parse("eq(a,1) ").is_err());
    assert!(Filter::parse("eq(a,1)\n").is_err());
}

#[test]
fn properties_and_placeholders_are_listed() {
    let filter = Filter::parse(
        "and(in(topic:action,'created','deleted'),eq(/resource:path,'/'),or(gt(attributes/x,time:now),exists(attributes/x),ne(topic:action,time:now)))",
    )
    .unwrap();
    assert_eq!(
        filter.properties(),
        ["topic:action", "resource:path", "attributes/x"]
    );
    assert_eq!(filter.value_placeholders(), ["time:now"]);
}

#[test]
fn ditto_field_names_are_validated_on_request() {
    let known = |p: &str| matches!(p, "topic:action" | "resource:path" | "time:now");
    for ok in [
        "eq(attributes/x,1)",
        "eq(/attributes/x,1)",
        "eq(features/f/properties/p/q,1)",
        "eq(features/f/desiredProperties/p,1)",
        "eq(features/f/definition,'a:b:1')",
        "eq(_metadata/attributes/x,1)",
        "in(thingId,'a:b')",
        "eq(policyId,'a:b')",
        "eq(_namespace,'a')",
        "gt(_revision,1)",
        "gt(_created,'2020')",
        "gt(_modified,time:now)",
        "eq(definition,'a:b:1')",
        "eq(topic:action,'created')",
        "exists(features/f)",
        "exists(features/f/properties)",
        "exists(features/f/desiredProperties)",
        "empty(features/f/properties/p)",
        "not(and(exists(resource:path),like(attributes/a,'*')))",
    ] {
        let filter = Filter::parse(ok).unwrap();
        assert_eq!(filter.validate_thing_fields(&known), Ok(()), "{ok}");
    }
    for (bad, property, position) in [
        ("eq(username,1)", "username", 3),
        ("eq(attributes,1)", "attributes", 3),
        ("eq(features/f,1)", "features/f", 3),
        ("eq(features/f/properties,1)", "features/f/properties", 3),
        ("exists(features/f/other)", "features/f/other", 7),
        (
            "and(eq(attributes/a,1),\n eq(topic:unknown,'x'))",
            "topic:unknown",
            28,
        ),
        ("eq( attributes/x,1)", " attributes/x", 3),
    ] {
        let error = Filter::parse(bad)
            .unwrap()
            .validate_thing_fields(&known)
            .unwrap_err();
        assert_eq!(
            error.message,
            format!("Unknown property name: {property}"),
            "{bad}"
        );
        assert_eq!(error.position, position, "{bad}");
        assert_eq!(error.ditto_message(bad), error.message);
    }
    let error = Filter::parse("and(eq(attributes/a,1),\n eq(topic:unknown,'x'))")
        .unwrap()
        .validate_thing_fields(&known)
        .unwrap_err();
    assert_eq!((error.line, error.column), (2, 5));
}
