//! The parsed form of an RQL filter and its canonical text.

use std::fmt::{self, Display, Formatter, Write};

/// The operator of a single comparison `op(property,value)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `eq`
    Eq,
    /// `ne`
    Ne,
    /// `gt`
    Gt,
    /// `ge`
    Ge,
    /// `lt`
    Lt,
    /// `le`
    Le,
    /// `like` (wildcards `*` and `?`, the value is always a [`Value::String`])
    Like,
    /// `ilike` (case-insensitive `like`)
    ILike,
}

impl CompareOp {
    /// The RQL name of the operator.
    pub fn name(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
            CompareOp::Like => "like",
            CompareOp::ILike => "ilike",
        }
    }
}

/// A literal value of an RQL comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An integer literal such as `42` or `-7` (Ditto: `java.lang.Long`).
    Int(i64),
    /// A decimal literal such as `1.5` or `-0.25` (Ditto: `java.lang.Double`); always finite.
    Double(f64),
    /// A quoted string (the text after unescaping).
    String(String),
    /// A placeholder value such as `time:now` (the whole text `prefix:name`); resolved through the
    /// placeholder callback when evaluating. Ditto only accepts the prefix `time:` here.
    Placeholder(String),
}

/// A node of the filter tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `op(property,value)`
    Compare {
        /// The operator.
        op: CompareOp,
        /// The property exactly as written (after unescaping), maybe with a leading `/`.
        property: String,
        /// The value.
        value: Value,
    },
    /// `in(property,value1,value2,...)` with at least one value.
    In {
        /// The property exactly as written (after unescaping).
        property: String,
        /// The values (at least one).
        values: Vec<Value>,
    },
    /// `exists(property)`
    Exists {
        /// The property exactly as written (after unescaping).
        property: String,
    },
    /// `empty(property)`: absent, `null`, `""`, `[]` or `{}`.
    Empty {
        /// The property exactly as written (after unescaping).
        property: String,
    },
    /// `and(q1,q2,...)` with at least one query.
    And(Vec<Node>),
    /// `or(q1,q2,...)` with at least one query.
    Or(Vec<Node>),
    /// `not(q)`
    Not(Box<Node>),
}

impl Node {
    /// Calls `f` with every property (as written) in pre-order, left to right.
    pub(crate) fn for_each_property<'a>(&'a self, f: &mut dyn FnMut(&'a str)) {
        match self {
            Node::Compare { property, .. }
            | Node::In { property, .. }
            | Node::Exists { property }
            | Node::Empty { property } => f(property),
            Node::And(children) | Node::Or(children) => {
                for child in children {
                    child.for_each_property(f);
                }
            }
            Node::Not(child) => child.for_each_property(f),
        }
    }

    /// Calls `f` with every value in pre-order, left to right.
    pub(crate) fn for_each_value<'a>(&'a self, f: &mut dyn FnMut(&'a Value)) {
        match self {
            Node::Compare { value, .. } => f(value),
            Node::In { values, .. } => values.iter().for_each(f),
            Node::Exists { .. } | Node::Empty { .. } => {}
            Node::And(children) | Node::Or(children) => {
                for child in children {
                    child.for_each_value(f);
                }
            }
            Node::Not(child) => child.for_each_value(f),
        }
    }
}

/// Writes a property so that the parser reads it back unchanged: the characters that end a
/// property (`,` `)` `"`) and the backslash are escaped; everything else is written as is.
pub(crate) fn write_property(f: &mut Formatter<'_>, property: &str) -> fmt::Result {
    for c in property.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '"' => f.write_str("\\\"")?,
            ',' => f.write_str("\\u002c")?,
            ')' => f.write_str("\\u0029")?,
            c => f.write_char(c)?,
        }
    }
    Ok(())
}

/// Writes a string value in double quotes with JSON-like escapes.
pub(crate) fn write_string(f: &mut Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\u{8}' => f.write_str("\\b")?,
            '\u{c}' => f.write_str("\\f")?,
            c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

impl Display for Value {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Double(d) => {
                // Rust prints the shortest text that reads back to the same f64, never with an
                // exponent; a decimal point keeps it a decimal literal.
                let text = d.to_string();
                if text.contains('.') {
                    f.write_str(&text)
                } else {
                    write!(f, "{text}.0")
                }
            }
            Value::String(s) => write_string(f, s),
            Value::Placeholder(p) => f.write_str(p),
        }
    }
}

impl Display for Node {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Node::Compare {
                op,
                property,
                value,
            } => {
                write!(f, "{}(", op.name())?;
                write_property(f, property)?;
                write!(f, ",{value})")
            }
            Node::In { property, values } => {
                f.write_str("in(")?;
                write_property(f, property)?;
                for value in values {
                    write!(f, ",{value}")?;
                }
                f.write_char(')')
            }
            Node::Exists { property } => {
                f.write_str("exists(")?;
                write_property(f, property)?;
                f.write_char(')')
            }
            Node::Empty { property } => {
                f.write_str("empty(")?;
                write_property(f, property)?;
                f.write_char(')')
            }
            Node::And(children) | Node::Or(children) => {
                f.write_str(if matches!(self, Node::And(_)) {
                    "and("
                } else {
                    "or("
                })?;
                for (i, child) in children.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{child}")?;
                }
                f.write_char(')')
            }
            Node::Not(child) => write!(f, "not({child})"),
        }
    }
}
