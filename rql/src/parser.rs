//! A hand-written recursive-descent parser that accepts the same language as Ditto's parboiled2
//! grammar (`rql/parser/src/main/scala/org/eclipse/ditto/rql/parser/internal/RqlPredicateParser.scala`
//! and `RqlParserBase.scala`), with messages that say where and what was expected.

use crate::ast::{CompareOp, Node, Value};
use crate::error::{Location, RqlError, RqlErrorKind, locations};

/// Deepest nesting of queries accepted (guards the stack; Ditto has no explicit limit).
pub const MAX_DEPTH: usize = 128;

const OPERATORS: &str = "and, or, not, eq, ne, gt, ge, lt, le, like, ilike, in, exists, empty";
const EXPECTED_QUERY: &str =
    "an RQL operator (and, or, not, eq, ne, gt, ge, lt, le, like, ilike, in, exists, empty)";
const EXPECTED_VALUE: &str =
    "a value (a number, \"string\", 'string', true, false, null or time:<name>)";
const EXPECTED_PROPERTY: &str = "a property (e.g. attributes/location or topic:action)";

/// Ditto's whitespace characters (`WhiteSpaceChar` in `RqlParserBase.scala`).
fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\n' | '\r' | '\t' | '\u{c}')
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    Property,
    Double,
    Single,
}

enum Op {
    Compare(CompareOp),
    In,
    Exists,
    Empty,
    And,
    Or,
    Not,
}

pub(crate) struct Parsed {
    pub root: Node,
    /// Where the properties are, in pre-order (see `Node::for_each_property`).
    pub property_locations: Vec<Location>,
}

pub(crate) fn parse(input: &str) -> Result<Parsed, RqlError> {
    let mut parser = Parser {
        chars: input.chars().collect(),
        pos: 0,
        depth: 0,
        property_positions: Vec::new(),
    };
    parser.skip_ws();
    let root = parser.query()?;
    if parser.pos < parser.chars.len() {
        return Err(parser.expected("end of input"));
    }
    Ok(Parsed {
        root,
        property_locations: locations(&parser.chars, &parser.property_positions),
    })
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
    /// Where each property starts, ascending (made into locations once, at the end).
    property_positions: Vec<usize>,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn starts_with(&self, s: &str) -> bool {
        (self.pos..)
            .zip(s.chars())
            .all(|(i, c)| self.chars.get(i) == Some(&c))
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    fn error_at(&self, position: usize, message: String) -> RqlError {
        RqlError::new(&self.chars, position, message, RqlErrorKind::Syntax)
    }

    /// `Invalid input 'x', expected ...` / `Unexpected end of input, expected ...` at the cursor.
    fn expected(&self, what: &str) -> RqlError {
        let message = match self.peek() {
            None => format!("Unexpected end of input, expected {what}"),
            Some(c) => format!("Invalid input {}, expected {what}", describe(c)),
        };
        self.error_at(self.pos, message)
    }

    fn expect(&mut self, c: char, what: &str) -> Result<(), RqlError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    /// Expects the closing `)`; at a `,` the message explains the arity.
    fn close(&mut self, arity: &str) -> Result<(), RqlError> {
        match self.peek() {
            Some(')') => {
                self.pos += 1;
                Ok(())
            }
            Some(',') => Err(self.expected(&format!("')' ({arity})"))),
            _ => Err(self.expected("')'")),
        }
    }

    fn query(&mut self) -> Result<Node, RqlError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error_at(
                self.pos,
                format!("Expression is nested too deeply (more than {MAX_DEPTH} levels)"),
            ));
        }
        self.depth += 1;
        let result = self.query_inner();
        self.depth -= 1;
        result
    }

    fn query_inner(&mut self) -> Result<Node, RqlError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.expected(EXPECTED_QUERY));
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        let op = match name.as_str() {
            "eq" => Op::Compare(CompareOp::Eq),
            "ne" => Op::Compare(CompareOp::Ne),
            "gt" => Op::Compare(CompareOp::Gt),
            "ge" => Op::Compare(CompareOp::Ge),
            "lt" => Op::Compare(CompareOp::Lt),
            "le" => Op::Compare(CompareOp::Le),
            "like" => Op::Compare(CompareOp::Like),
            "ilike" => Op::Compare(CompareOp::ILike),
            "in" => Op::In,
            "exists" => Op::Exists,
            "empty" => Op::Empty,
            "and" => Op::And,
            "or" => Op::Or,
            "not" => Op::Not,
            _ => {
                return Err(self.error_at(
                    start,
                    format!(
                        "Unknown operator '{}', expected one of: {OPERATORS}",
                        crate::error::quoted(&name)
                    ),
                ));
            }
        };
        self.expect('(', &format!("'(' after '{name}'"))?;
        match op {
            Op::Compare(op) => {
                let property = self.property()?;
                self.expect(
                    ',',
                    &format!("',' and a value ({name} takes a property and a value)"),
                )?;
                let value_start = self.pos;
                let value = self.value()?;
                if matches!(op, CompareOp::Like | CompareOp::ILike)
                    && !matches!(value, Value::String(_))
                {
                    // Ditto: CriteriaFactoryImpl.like/ilike throw IllegalArgumentException.
                    return Err(RqlError::new(
                        &self.chars,
                        value_start,
                        format!("In the {name} predicate only string values are allowed."),
                        RqlErrorKind::Semantic,
                    ));
                }
                self.close(&format!("{name} takes exactly one value"))?;
                Ok(Node::Compare {
                    op,
                    property,
                    value,
                })
            }
            Op::In => {
                let property = self.property()?;
                self.expect(',', "',' and at least one value")?;
                let mut values = vec![self.value()?];
                loop {
                    match self.peek() {
                        Some(',') => {
                            self.pos += 1;
                            values.push(self.value()?);
                        }
                        Some(')') => {
                            self.pos += 1;
                            break;
                        }
                        _ => return Err(self.expected("',' or ')'")),
                    }
                }
                Ok(Node::In { property, values })
            }
            Op::Exists | Op::Empty => {
                let property = self.property()?;
                self.close(&format!("{name} takes exactly one property"))?;
                Ok(if matches!(op, Op::Exists) {
                    Node::Exists { property }
                } else {
                    Node::Empty { property }
                })
            }
            Op::And | Op::Or => {
                let mut children = vec![self.query()?];
                loop {
                    match self.peek() {
                        Some(',') => {
                            self.pos += 1;
                            self.skip_ws();
                            children.push(self.query()?);
                        }
                        Some(')') => {
                            self.pos += 1;
                            break;
                        }
                        _ => return Err(self.expected("',' or ')'")),
                    }
                }
                Ok(if matches!(op, Op::And) {
                    Node::And(children)
                } else {
                    Node::Or(children)
                })
            }
            Op::Not => {
                let child = self.query()?;
                self.close("not takes exactly one query")?;
                Ok(Node::Not(Box::new(child)))
            }
        }
    }

    /// `PropertyLiteral`: any characters but `,` `)` `"` and `\`, or a backslash escape.
    fn property(&mut self) -> Result<String, RqlError> {
        let start = self.pos;
        let mut property = String::new();
        while let Some(c) = self.peek() {
            match c {
                ',' | ')' | '"' => break,
                '\\' => property.push(self.escape(Quoting::Property)?),
                c => {
                    property.push(c);
                    self.pos += 1;
                }
            }
        }
        if property.is_empty() {
            // Ditto's grammar accepts an empty property but then fails with
            // "Unknown property name: " when creating the criteria.
            return Err(self.expected(EXPECTED_PROPERTY));
        }
        self.property_positions.push(start);
        Ok(property)
    }

    /// A backslash escape (`EscapedChar` / `SingleQuoteEscapedChar`); the cursor is on `\`.
    fn escape(&mut self, quoting: Quoting) -> Result<char, RqlError> {
        let start = self.pos;
        self.pos += 1;
        let Some(c) = self.peek() else {
            return Err(self.expected("an escaped character after '\\'"));
        };
        let escaped = match c {
            '\\' => '\\',
            '/' => '/',
            '"' if quoting != Quoting::Single => '"',
            '\'' if quoting == Quoting::Single => '\'',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                self.pos += 1;
                let high = self.hex4()?;
                if (0xD800..0xDC00).contains(&high) {
                    if self.peek() == Some('\\') && self.peek_at(1) == Some('u') {
                        self.pos += 2;
                        let low = self.hex4()?;
                        if (0xDC00..0xE000).contains(&low) {
                            let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                            return char::from_u32(code).ok_or_else(|| self.lone_surrogate(start));
                        }
                    }
                    return Err(self.lone_surrogate(start));
                }
                return char::from_u32(high).ok_or_else(|| self.lone_surrogate(start));
            }
            _ => {
                let valid = match quoting {
                    Quoting::Single => "\\' \\\\ \\/ \\b \\f \\n \\r \\t or \\uXXXX",
                    _ => "\\\" \\\\ \\/ \\b \\f \\n \\r \\t or \\uXXXX",
                };
                return Err(self.error_at(
                    start,
                    format!("Invalid escape sequence '\\{c}', expected one of {valid}"),
                ));
            }
        };
        self.pos += 1;
        Ok(escaped)
    }

    fn lone_surrogate(&self, start: usize) -> RqlError {
        self.error_at(
            start,
            "Invalid unicode escape: a surrogate must be part of a \\uD8xx\\uDCxx pair".to_string(),
        )
    }

    fn hex4(&mut self) -> Result<u32, RqlError> {
        let mut code = 0;
        for _ in 0..4 {
            match self.peek().and_then(|c| c.to_digit(16)) {
                Some(d) => {
                    code = code * 16 + d;
                    self.pos += 1;
                }
                None => return Err(self.expected("a hexadecimal digit of a \\uXXXX escape")),
            }
        }
        Ok(code)
    }

    /// `Literal` followed by optional whitespace.
    fn value(&mut self) -> Result<Value, RqlError> {
        let value = match self.peek() {
            Some(q @ ('"' | '\'')) => self.string(q)?,
            Some(c) if c == '-' || c == '+' || c.is_ascii_digit() => self.number()?,
            _ if self.starts_with("time:") => self.placeholder()?,
            _ if self.starts_with("true") => {
                self.pos += 4;
                Value::Bool(true)
            }
            _ if self.starts_with("false") => {
                self.pos += 5;
                Value::Bool(false)
            }
            _ if self.starts_with("null") => {
                self.pos += 4;
                Value::Null
            }
            Some(c) if is_ws(c) => {
                return Err(self.expected(&format!(
                    "{EXPECTED_VALUE}; whitespace is not allowed before a value"
                )));
            }
            _ => return Err(self.expected(EXPECTED_VALUE)),
        };
        self.skip_ws();
        Ok(value)
    }

    fn string(&mut self, quote: char) -> Result<Value, RqlError> {
        let start = self.pos;
        let quoting = if quote == '"' {
            Quoting::Double
        } else {
            Quoting::Single
        };
        self.pos += 1;
        let mut s = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(self.expected(&format!(
                        "{quote} to close the string started at column {}",
                        Location::of(&self.chars, start).column
                    )));
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(Value::String(s));
                }
                Some('\\') => s.push(self.escape(quoting)?),
                Some(c) => {
                    s.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// `DoubleLiteral | LongLiteral`: `[+-]? (0 | [1-9][0-9]*) (. [0-9]+)?`, not `-0`.
    fn number(&mut self) -> Result<Value, RqlError> {
        let start = self.pos;
        if matches!(self.peek(), Some('-' | '+')) {
            self.pos += 1;
        }
        match self.peek() {
            Some('0') => self.pos += 1,
            Some(c) if c.is_ascii_digit() => {
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
            }
            _ => return Err(self.expected("a digit")),
        }
        let is_double =
            self.peek() == Some('.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit());
        if is_double {
            self.pos += 1;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        if is_double {
            match text.parse::<f64>() {
                Ok(d) if d.is_finite() => Ok(Value::Double(d)),
                _ => Err(self.error_at(
                    start,
                    format!("Number out of range: {text} (decimals must fit into a 64-bit double)"),
                )),
            }
        } else if text == "-0" {
            Err(self.error_at(
                start,
                "Invalid number '-0', expected 0 or a number without a leading zero".to_string(),
            ))
        } else {
            text.parse::<i64>().map(Value::Int).map_err(|_| {
                self.error_at(
                    start,
                    format!("Number out of range: {text} (integers must fit into 64 bits)"),
                )
            })
        }
    }

    /// `PlaceholderLiteral`: `time:` followed by a name. Ditto takes every property character up
    /// to `,` or `)` into the name (whitespace too); here the name ends at whitespace as well and
    /// may not contain backslash escapes.
    fn placeholder(&mut self) -> Result<Value, RqlError> {
        let start = self.pos;
        self.pos += "time:".len();
        while self
            .peek()
            .is_some_and(|c| !is_ws(c) && !matches!(c, ',' | ')' | '"' | '\\'))
        {
            self.pos += 1;
        }
        if self.pos == start + "time:".len() {
            return Err(self.expected("a placeholder name after 'time:' (e.g. time:now)"));
        }
        Ok(Value::Placeholder(
            self.chars[start..self.pos].iter().collect(),
        ))
    }
}

/// How parboiled2 shows an offending character.
fn describe(c: char) -> String {
    match c {
        '\n' => "'\\n'".to_string(),
        '\r' => "'\\r'".to_string(),
        '\t' => "'\\t'".to_string(),
        c if c.is_control() => format!("'\\u{:04x}'", c as u32),
        c => format!("'{c}'"),
    }
}
