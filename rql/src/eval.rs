//! In-memory evaluation against a JSON document, following Ditto's `ThingPredicateVisitor`,
//! `ThingPredicatePredicateVisitor` and `ExistsThingPredicateVisitor`
//! (`rql/query/src/main/java/org/eclipse/ditto/rql/query/things/`).

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value as Json;

use crate::ast::{CompareOp, Node, Value};
use crate::like::like_matches;
use crate::number::Decimal;

/// The placeholder callback of [`crate::Filter::matches`].
pub(crate) type Resolver<'r> = &'r dyn Fn(&str) -> Option<Json>;

/// Strips one leading `/` (Ditto's `ThingsFieldExpressionFactoryImpl.stripLeadingSlash`).
pub(crate) fn normalize(property: &str) -> &str {
    property.strip_prefix('/').unwrap_or(property)
}

/// Looks a slash-separated path up in `doc`, through objects only (Ditto's
/// `JsonObject.getValue(JsonPointer)` does not index into arrays). Empty segments are skipped;
/// `~1` and `~0` are decoded as in RFC 6901.
pub(crate) fn lookup<'a>(doc: &'a Json, path: &str) -> Option<&'a Json> {
    let mut current = doc;
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let key: Cow<'_, str> = if segment.contains('~') {
            Cow::Owned(segment.replace("~1", "/").replace("~0", "~"))
        } else {
            Cow::Borrowed(segment)
        };
        current = current.as_object()?.get(key.as_ref())?;
    }
    Some(current)
}

/// `getThingField`: the document first; when that has nothing and the property has a `:`, the
/// placeholder callback.
fn field<'a>(doc: &'a Json, property: &str, resolve: Resolver<'_>) -> Option<Cow<'a, Json>> {
    let property = normalize(property);
    if let Some(found) = lookup(doc, property) {
        return Some(Cow::Borrowed(found));
    }
    if property.contains(':') {
        resolve(property).map(Cow::Owned)
    } else {
        None
    }
}

/// A value as Ditto's visitor sees it after `mapJsonValueToJava` / for a literal.
#[derive(Debug)]
enum Java<'a> {
    /// JSON `null` (Ditto's `NULL_LITERAL`, not `Comparable`).
    NullLiteral,
    Str(Cow<'a, str>),
    Bool(bool),
    Num(Decimal),
}

/// `mapJsonValueToJava`: arrays and objects are "not supported" and give nothing.
fn json_to_java(json: &Json) -> Option<Java<'_>> {
    Some(match json {
        Json::Null => Java::NullLiteral,
        Json::Bool(b) => Java::Bool(*b),
        Json::String(s) => Java::Str(Cow::Borrowed(s)),
        Json::Number(n) => Java::Num(number_to_decimal(n)),
        Json::Array(_) | Json::Object(_) => return None,
    })
}

/// Ditto reads JSON integers as `int`/`long` and everything else as `double`.
fn number_to_decimal(n: &serde_json::Number) -> Decimal {
    if let Some(i) = n.as_i64() {
        Decimal::from_i64(i)
    } else if let Some(u) = n.as_u64() {
        Decimal::from_u64(u)
    } else {
        Decimal::from_f64(n.as_f64().unwrap_or(0.0))
    }
}

/// A literal as a Java object; `None` is Java's `null` (the `null` literal, or a placeholder that
/// did not resolve: `resolveValue` returns `null` then).
fn literal_to_java<'v>(value: &'v Value, resolve: Resolver<'_>) -> Option<Java<'v>> {
    match value {
        Value::Null => None,
        Value::Bool(b) => Some(Java::Bool(*b)),
        Value::Int(i) => Some(Java::Num(Decimal::from_i64(*i))),
        Value::Double(d) => Some(Java::Num(Decimal::from_f64(*d))),
        Value::String(s) => Some(Java::Str(Cow::Borrowed(s))),
        Value::Placeholder(name) => match resolve(name)? {
            Json::String(s) => Some(Java::Str(Cow::Owned(s))),
            Json::Bool(b) => Some(Java::Bool(b)),
            Json::Number(n) => Some(Java::Num(number_to_decimal(&n))),
            Json::Null | Json::Array(_) | Json::Object(_) => None,
        },
    }
}

/// Java's `String.compareTo`: UTF-16 code unit order.
fn java_string_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn java_to_string<'a>(j: &'a Java<'_>) -> Cow<'a, str> {
    match j {
        Java::NullLiteral => Cow::Borrowed("null"),
        Java::Str(s) => Cow::Borrowed(s.as_ref()),
        Java::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Java::Num(d) => Cow::Borrowed(d.java_string()),
    }
}

/// `ThingPredicatePredicateVisitor.compare(value, obj)`: the ordering of `obj` (the field)
/// relative to `value` (the literal).
fn compare(value: &Java<'_>, obj: &Java<'_>) -> Ordering {
    match (value, obj) {
        (Java::Str(v), Java::Num(o)) => {
            if let Some(v) = Decimal::parse_java(v) {
                return o.compare(&v);
            }
        }
        (Java::Num(v), Java::Str(o)) => {
            if let Some(o) = Decimal::parse_java(o) {
                return o.compare(v);
            }
        }
        _ => {}
    }
    match (value, obj) {
        (Java::Num(v), Java::Num(o)) => o.compare(v),
        (Java::Str(v), Java::Str(o)) => java_string_cmp(o, v),
        (Java::Bool(v), Java::Bool(o)) => o.cmp(v),
        // "as a fallback, for different types, compare by their string representation"
        _ => java_string_cmp(&java_to_string(obj), &java_to_string(value)),
    }
}

/// `visitEq` (and, negated, `visitNe`).
fn equals(obj: Option<&Java<'_>>, value: Option<&Java<'_>>) -> bool {
    match (obj, value) {
        (None, _) => false,
        (Some(Java::NullLiteral), None) => true,
        (Some(Java::NullLiteral), Some(_)) | (Some(_), None) => false,
        (Some(obj), Some(value)) => compare(value, obj) == Ordering::Equal,
    }
}

/// `visitGt` / `visitGe` / `visitLt` / `visitLe`: both sides must be `Comparable`.
fn ordered(obj: Option<&Java<'_>>, value: Option<&Java<'_>>, accept: fn(Ordering) -> bool) -> bool {
    match (obj, value) {
        (Some(Java::NullLiteral) | None, _) | (_, None) => false,
        (Some(obj), Some(value)) => accept(compare(value, obj)),
    }
}

pub(crate) fn evaluate(node: &Node, doc: &Json, resolve: Resolver<'_>) -> bool {
    match node {
        Node::And(children) => children.iter().all(|c| evaluate(c, doc, resolve)),
        Node::Or(children) => children.iter().any(|c| evaluate(c, doc, resolve)),
        // Ditto turns not(q) into nor([q]).
        Node::Not(child) => !evaluate(child, doc, resolve),
        Node::Exists { property } => field(doc, property, resolve).is_some(),
        Node::Empty { property } => match field(doc, property, resolve).as_deref() {
            None | Some(Json::Null) => true,
            Some(Json::String(s)) => s.is_empty(),
            Some(Json::Array(a)) => a.is_empty(),
            Some(Json::Object(o)) => o.is_empty(),
            Some(Json::Bool(_) | Json::Number(_)) => false,
        },
        Node::In { property, values } => {
            let found = field(doc, property, resolve);
            let Some(obj) = found.as_deref().and_then(json_to_java) else {
                return false;
            };
            if matches!(obj, Java::NullLiteral) {
                return false; // not Comparable
            }
            values.iter().any(|v| {
                // Ditto throws a NullPointerException on a null value that is reached;
                // here it simply never matches.
                literal_to_java(v, resolve).is_some_and(|v| compare(&v, &obj) == Ordering::Equal)
            })
        }
        Node::Compare {
            op: op @ (CompareOp::Like | CompareOp::ILike),
            property,
            value,
        } => {
            let Value::String(pattern) = value else {
                return false; // rejected by the parser
            };
            let found = field(doc, property, resolve);
            match found.as_deref() {
                Some(Json::String(s)) => like_matches(pattern, s, *op == CompareOp::ILike),
                _ => false,
            }
        }
        Node::Compare {
            op,
            property,
            value,
        } => {
            let found = field(doc, property, resolve);
            let obj = found.as_deref().and_then(json_to_java);
            let value = literal_to_java(value, resolve);
            let (obj, value) = (obj.as_ref(), value.as_ref());
            match op {
                CompareOp::Eq => equals(obj, value),
                CompareOp::Ne => !equals(obj, value),
                CompareOp::Gt => ordered(obj, value, Ordering::is_gt),
                CompareOp::Ge => ordered(obj, value, Ordering::is_ge),
                CompareOp::Lt => ordered(obj, value, Ordering::is_lt),
                CompareOp::Le => ordered(obj, value, Ordering::is_le),
                CompareOp::Like | CompareOp::ILike => unreachable!("handled above"),
            }
        }
    }
}
