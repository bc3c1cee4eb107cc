//! Eclipse Ditto's RQL filter language, as used in the `filter` of connection target topics
//! (`_/_/things/twin/events?filter=gt(attributes/counter,42)`), in event subscriptions and in
//! conditional requests: parser, canonical printer and in-memory evaluation against a thing's JSON.
//!
//! ```
//! use ferrule_rql::Filter;
//! use serde_json::json;
//!
//! let filter = Filter::parse("and(in(topic:action,'created','deleted'),gt(attributes/counter,42))").unwrap();
//! let thing = json!({"thingId": "org.eclipse:t1", "attributes": {"counter": 43}});
//! let placeholders = |name: &str| (name == "topic:action").then(|| json!("created"));
//! assert!(filter.matches(&thing, &placeholders));
//! assert_eq!(filter.properties(), ["topic:action", "attributes/counter"]);
//! assert_eq!(Filter::parse(&filter.to_string()).unwrap(), filter);
//! ```
//!
//! All file names below are in the repository `eclipse-ditto/ditto`.
//!
//! # Syntax (source: `rql/parser/src/main/scala/org/eclipse/ditto/rql/parser/internal/RqlPredicateParser.scala`, `RqlParserBase.scala`, test `rql/parser/src/test/java/org/eclipse/ditto/rql/parser/RqlPredicateParserTest.java`)
//!
//! * Queries: `eq|ne|gt|ge|lt|le|like|ilike(property,value)`, `in(property,value,...)` (at least
//!   one value), `exists(property)`, `empty(property)`, `and(query,...)` and `or(query,...)` (at
//!   least one query), `not(query)` (exactly one). Operator names are lower case only.
//! * Values: `"..."` and `'...'` strings with the escapes `\"` (double quotes only), `\'` (single
//!   quotes only), `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\uXXXX`; integers
//!   `[+-]?(0|[1-9][0-9]*)` (64-bit, `-0` and leading zeros rejected); decimals
//!   `[+-]?(0|[1-9][0-9]*)\.[0-9]+` (no exponent, no `.5`, no `5.`); `true`, `false`, `null`;
//!   the placeholder `time:<name>` (e.g. `time:now`, resolved through the placeholder callback).
//!   `like`/`ilike` only accept a string value (Ditto: `CriteriaFactoryImpl.like`, message
//!   `In the like predicate only string values are allowed.`).
//! * Properties: every character except `,` `)` `"` and `\`, plus the backslash escapes above
//!   (except `\'`). Properties are taken as written, *including* whitespace: `eq( a,1)` reads
//!   the property `" a"`. An empty property is rejected here (Ditto rejects it one step later
//!   with `Unknown property name: `). A leading `/` is allowed and ignored
//!   (`ThingsFieldExpressionFactoryImpl.stripLeadingSlash`).
//! * Whitespace (space, `\n`, `\r`, `\t`, form feed) is allowed only where Ditto's grammar allows
//!   it: before the whole expression, after each value (before `,` or `)`), and after the `,`
//!   between the queries of `and`/`or`. It is **not** allowed after the `,` before a value
//!   (`eq(a, 1)` is invalid, as `RqlPredicateParserTest.invalidNumber` shows), nor after `(`,
//!   nor before `(`, nor after the closing `)` (no trailing whitespace).
//! * Deviations: a `\uD8xx` escape must be followed by its low surrogate (Rust strings cannot hold
//!   lone surrogates); a `time:` placeholder name ends at whitespace and cannot contain escapes
//!   (Ditto would take `time:now x` as the name `now x`, which resolves to nothing); nesting is
//!   limited to [`MAX_DEPTH`] levels; decimals that overflow a double are rejected (Ditto would
//!   fail while evaluating).
//!
//! # Evaluation (source: `rql/query/src/main/java/org/eclipse/ditto/rql/query/things/ThingPredicatePredicateVisitor.java`, `ThingPredicateVisitor.java`, `ExistsThingPredicateVisitor.java`, `FilterThingPredicateVisitor.java`)
//!
//! Ditto's connectivity filters outbound signals with exactly these classes (`ThingPredicateVisitor.apply(criteria,
//! topicPathPlaceholderResolver, resourcePlaceholderResolver, timePlaceholderResolver)`), so their
//! semantics are followed:
//!
//! * **Field lookup** (`getThingField`): the property (without leading `/`) is a path through
//!   JSON objects of the document; arrays are not indexed into. Only when the document has
//!   nothing there and the property contains `:` is the placeholder callback asked. A placeholder
//!   that resolves behaves like a document field with that JSON value.
//! * **Type mapping** (`mapJsonValueToJava`): strings, booleans, numbers and `null` take part in
//!   comparisons; **arrays and objects never match** any comparison ("filtering arrays is not
//!   supported"): `eq(attributes/tags,"a")` is false for `"tags":["a","b"]`, and so is `in`,
//!   `gt`..., while `ne` is true. (Ditto's search index, MongoDB, matches array elements; the
//!   in-memory filter of signals does not.)
//! * **Numbers** (`compare`, `asNumber`): integers and decimals are compared as exact
//!   `BigDecimal`s, so `eq(x,42)` matches `42` and `42.0`, and `0.1` equals `0.1`.
//! * **Strings** are compared lexicographically by UTF-16 code units (`String.compareTo`).
//!   A string and a number are compared as numbers when the string parses as a Java
//!   `BigDecimal` (`eq(attributes/n,"42")` matches `42`, `eq(attributes/s,42)` matches `"42.0"`).
//! * **Booleans**: `false < true`.
//! * **Other type mismatches** fall back to comparing the Java string forms
//!   (`eq(attributes/flag,"true")` matches `true`; `gt(attributes/name,5)` compares `"abc"` with
//!   `"5"`).
//! * **`null`**: `eq(x,null)` is true only when `x` is JSON `null`; `ne(x,null)` is true otherwise
//!   (also when `x` is missing); `gt`/`ge`/`lt`/`le` are false whenever either side is `null`;
//!   `in` never matches a `null` field, and a `null` inside the `in` list never matches (Ditto
//!   throws a `NullPointerException` there).
//! * **Missing properties**: every comparison, `in`, `like` and `ilike` is false, except `ne`,
//!   which is true (`visitNe` is the negation of `visitEq`): `ne(attributes/x,1)` matches a
//!   thing without `x`.
//! * **`like` / `ilike`** (`LikeHelper.java`, `visitLike`, `visitILike`): only on JSON strings
//!   (false for numbers, booleans, null, arrays, objects); `*` matches any run and `?` exactly one
//!   character, except line terminators (Java's `.`); the whole string must match; `ilike`
//!   ignores US-ASCII case only (`Pattern.CASE_INSENSITIVE`).
//! * **`exists`**: true when the document has the path (a JSON `null` counts) or a placeholder
//!   property resolves.
//! * **`empty`** (Ditto docs `basic-rql`, issue eclipse-ditto/ditto#2377): true when the property
//!   is missing, `null`, `""`, `[]` or `{}`.
//! * **`not(q)`** is `nor(q)`: the plain negation of `q`.
//! * **Value placeholders** (`time:now`, `resolveValue`): resolved through the callback; one that
//!   does not resolve (or resolves to null/array/object) is `null`.
//!
//! Ditto also rejects property names it cannot map to a thing field (`Unknown property name: X`);
//! [`Filter::validate_thing_fields`] does that check for hosts that want it.

mod ast;
mod error;
mod eval;
mod fields;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzz;
mod like;
mod number;
mod parser;

use std::fmt::{self, Display, Formatter};

pub use ast::{CompareOp, Node, Value};
pub use error::{RqlError, RqlErrorKind};
pub use fields::SIMPLE_THING_FIELDS;
pub use parser::MAX_DEPTH;

/// A parsed RQL filter.
///
/// Two filters are equal when their trees are equal (the positions of the source text are not
/// compared).
#[derive(Debug, Clone)]
pub struct Filter {
    root: Node,
    /// Where the properties are in the parsed text, in pre-order (empty for filters built from
    /// a node).
    property_locations: Vec<error::Location>,
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root
    }
}

impl From<Node> for Filter {
    fn from(root: Node) -> Self {
        Filter {
            root,
            property_locations: Vec::new(),
        }
    }
}

impl Filter {
    /// Parses an RQL expression. Errors carry a message a user can act on: the position and
    /// what was expected there.
    pub fn parse(expression: &str) -> Result<Filter, RqlError> {
        let parsed = parser::parse(expression)?;
        Ok(Filter {
            root: parsed.root,
            property_locations: parsed.property_locations,
        })
    }

    /// The root of the filter tree.
    pub fn root(&self) -> &Node {
        &self.root
    }

    /// Evaluates the filter against a JSON document (a thing, e.g.
    /// `{"thingId":..,"attributes":{..},"features":{..}}`).
    ///
    /// `placeholder` resolves property names that contain `:` and are not found in the document
    /// (e.g. `topic:action`, `resource:path`) and value placeholders (e.g. `time:now`); it
    /// returns `None` when the name is unknown or cannot be resolved. See the crate documentation
    /// for the semantics.
    pub fn matches(
        &self,
        doc: &serde_json::Value,
        placeholder: &dyn Fn(&str) -> Option<serde_json::Value>,
    ) -> bool {
        eval::evaluate(&self.root, doc, placeholder)
    }

    /// Every property name the filter reads, without a leading `/`, each once, in the order of
    /// first appearance.
    pub fn properties(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        self.root.for_each_property(&mut |p| {
            let p = eval::normalize(p);
            if seen.insert(p) {
                out.push(p);
            }
        });
        out
    }

    /// Every value placeholder (e.g. `time:now`), each once, in the order of first appearance.
    pub fn value_placeholders(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        self.root.for_each_value(&mut |v| {
            if let Value::Placeholder(p) = v
                && seen.insert(p.as_str())
            {
                out.push(p);
            }
        });
        out
    }

    /// Ditto's check that every property can be mapped to a thing field
    /// (`ThingsFieldExpressionFactoryImpl`): `attributes/...`, `features/<id>/properties/...`,
    /// `features/<id>/desiredProperties/...`, `features/<id>/definition`, `_metadata/...`, the
    /// fields in [`SIMPLE_THING_FIELDS`], or a placeholder for which `is_placeholder` is true
    /// (e.g. `topic:action`). `exists` and `empty` also accept `features/<id>`,
    /// `features/<id>/properties` and `features/<id>/desiredProperties`.
    ///
    /// The error has Ditto's message `Unknown property name: <property>`.
    pub fn validate_thing_fields(
        &self,
        is_placeholder: &dyn Fn(&str) -> bool,
    ) -> Result<(), RqlError> {
        let mut index = 0;
        let mut failure: Option<(usize, String)> = None;
        check_fields(&self.root, is_placeholder, &mut index, &mut failure);
        match failure {
            None => Ok(()),
            Some((index, property)) => {
                let location =
                    self.property_locations
                        .get(index)
                        .copied()
                        .unwrap_or(error::Location {
                            position: 0,
                            line: 1,
                            column: 1,
                        });
                Err(RqlError::at(
                    location,
                    format!("Unknown property name: {}", error::quoted(&property)),
                    RqlErrorKind::Semantic,
                ))
            }
        }
    }
}

fn check_fields(
    node: &Node,
    is_placeholder: &dyn Fn(&str) -> bool,
    index: &mut usize,
    failure: &mut Option<(usize, String)>,
) {
    if failure.is_some() {
        return;
    }
    let mut check = |property: &str, exists: bool| {
        let p = eval::normalize(property);
        let ok = if exists {
            fields::is_exists_field(p, is_placeholder)
        } else {
            fields::is_filter_field(p, is_placeholder)
        };
        if !ok {
            *failure = Some((*index, p.to_string()));
        }
        *index += 1;
    };
    match node {
        Node::Compare { property, .. } | Node::In { property, .. } => check(property, false),
        Node::Exists { property } | Node::Empty { property } => check(property, true),
        Node::And(children) | Node::Or(children) => {
            for child in children {
                check_fields(child, is_placeholder, index, failure);
            }
        }
        Node::Not(child) => check_fields(child, is_placeholder, index, failure),
    }
}

impl Display for Filter {
    /// The canonical RQL text: no whitespace, strings in double quotes; it parses back to an equal
    /// filter.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)
    }
}

#[cfg(test)]
mod tests;
