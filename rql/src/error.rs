//! The error of parsing (or validating) an RQL expression.

/// A place in the expression: 0-based character index, 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Location {
    pub position: usize,
    pub line: usize,
    pub column: usize,
}

impl Location {
    pub(crate) fn of(input: &[char], position: usize) -> Location {
        let position = position.min(input.len());
        let before = &input[..position];
        let line = before.iter().filter(|c| **c == '\n').count() + 1;
        let line_start = before.iter().rposition(|c| *c == '\n').map_or(0, |i| i + 1);
        Location {
            position,
            line,
            column: position - line_start + 1,
        }
    }
}

/// The locations of ascending character `positions` in `input`, in one pass over it (a
/// location each from [`Location::of`] would scan the input once per position).
pub(crate) fn locations(input: &[char], positions: &[usize]) -> Vec<Location> {
    let mut out = Vec::with_capacity(positions.len());
    let (mut line, mut line_start, mut scanned) = (1, 0, 0);
    for &position in positions {
        let position = position.min(input.len());
        for (i, c) in input.iter().enumerate().take(position).skip(scanned) {
            if *c == '\n' {
                line += 1;
                line_start = i + 1;
            }
        }
        scanned = scanned.max(position);
        out.push(Location {
            position,
            line,
            column: position - line_start + 1,
        });
    }
    out
}

/// How many characters of the offending line a message shows on each side of the problem.
const SHOWN_AROUND: usize = 100;

/// The part of `line` a message shows around the character at `at`, and where `at` is in it:
/// the whole line when it is short, else [`SHOWN_AROUND`] characters on each side with `...`
/// where it is cut (so an error in a 1 MB expression does not quote all of it).
fn window(line: &str, at: usize) -> (std::borrow::Cow<'_, str>, usize) {
    let length = line.chars().count();
    if length <= 2 * SHOWN_AROUND {
        return (std::borrow::Cow::Borrowed(line), at);
    }
    let from = at.saturating_sub(SHOWN_AROUND);
    let to = (at + SHOWN_AROUND).min(length);
    let mut shown: String = line.chars().skip(from).take(to - from).collect();
    let mut caret = at - from;
    if from > 0 {
        shown.insert_str(0, "...");
        caret += 3;
    }
    if to < length {
        shown.push_str("...");
    }
    (std::borrow::Cow::Owned(shown), caret)
}

/// At most [`SHOWN_AROUND`] characters of `text` for a message, `...` where it is cut.
pub(crate) fn quoted(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(SHOWN_AROUND) {
        None => std::borrow::Cow::Borrowed(text),
        Some((cut, _)) => std::borrow::Cow::Owned(format!("{}...", &text[..cut])),
    }
}

/// What kind of problem an [`RqlError`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RqlErrorKind {
    /// The text is not valid RQL syntax (Ditto: a `ParserException` of the parboiled parser, whose
    /// message names the input, the expectation and the line/column).
    Syntax,
    /// The text is valid syntax but not a valid filter, e.g. `like` with a non-string value or an
    /// unknown property name (Ditto: an `IllegalArgumentException` while creating the criteria,
    /// whose message is passed on as it is, without a position).
    Semantic,
}

/// An invalid RQL expression.
///
/// The host maps it to Ditto's error `rql.expression.invalid` (HTTP 400), built like Ditto's
/// `InvalidRqlExpressionException` (`base/model/src/main/java/org/eclipse/ditto/base/model/exceptions/InvalidRqlExpressionException.java`):
///
/// * `error`: [`RqlError::ERROR_CODE`] = `rql.expression.invalid`
/// * `status`: [`RqlError::HTTP_STATUS`] = 400
/// * `message`: [`RqlError::ditto_message`]; Ditto's `QueryFilterCriteriaFactory` replaces the
///   default message [`RqlError::DITTO_DEFAULT_MESSAGE`] (`The given RQL expression was invalid`)
///   by the parser's message, which parboiled2 formats as
///   `Invalid input '<char>', expected <what> (line <l>, column <c>):\n<input line>\n<caret>`
///   (or `Unexpected end of input, expected <what> ...`).
/// * `description`: [`RqlError::ditto_description`] = `Ensure that all opening parentheses have
///   also closing ones and that the RQL expression is valid.`
///
/// `position` is the 0-based index of the offending *character* (not byte) in the expression;
/// `line` and `column` are 1-based, lines are separated by `\n`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (line {line}, column {column})")]
pub struct RqlError {
    /// What is wrong and what was expected, without the position.
    pub message: String,
    /// 0-based character index of the problem.
    pub position: usize,
    /// 1-based line of the problem.
    pub line: usize,
    /// 1-based column (in characters) of the problem.
    pub column: usize,
    /// Syntax or semantic problem.
    pub kind: RqlErrorKind,
}

impl RqlError {
    /// Ditto's error code of `InvalidRqlExpressionException`.
    pub const ERROR_CODE: &'static str = "rql.expression.invalid";
    /// Ditto's HTTP status of `InvalidRqlExpressionException` (Bad Request).
    pub const HTTP_STATUS: u16 = 400;
    /// Ditto's default message of `InvalidRqlExpressionException` (used when no detail is known).
    pub const DITTO_DEFAULT_MESSAGE: &'static str = "The given RQL expression was invalid";
    /// Ditto's description of `InvalidRqlExpressionException`.
    pub const DITTO_DESCRIPTION: &'static str = "Ensure that all opening parentheses have also closing ones and that the RQL expression is valid.";

    pub(crate) fn new(
        input: &[char],
        position: usize,
        message: String,
        kind: RqlErrorKind,
    ) -> Self {
        Self::at(Location::of(input, position), message, kind)
    }

    pub(crate) fn at(location: Location, message: String, kind: RqlErrorKind) -> Self {
        RqlError {
            message,
            position: location.position,
            line: location.line,
            column: location.column,
            kind,
        }
    }

    /// The message as Ditto puts it into the `message` field of `rql.expression.invalid`.
    ///
    /// For syntax errors it imitates parboiled2's `formatError` (used by Ditto's
    /// `RqlPredicateParser`): the problem, the line and column, the offending input line and a
    /// caret under the offending character. Semantic errors carry their plain message, as in Ditto.
    pub fn ditto_message(&self, expression: &str) -> String {
        match self.kind {
            RqlErrorKind::Semantic => self.message.clone(),
            RqlErrorKind::Syntax => {
                let line_text = expression.split('\n').nth(self.line - 1).unwrap_or("");
                let (shown, caret_at) = window(line_text, self.column - 1);
                format!(
                    "{} (line {}, column {}):\n{}\n{}^",
                    self.message,
                    self.line,
                    self.column,
                    shown,
                    " ".repeat(caret_at)
                )
            }
        }
    }

    /// The `description` of Ditto's `rql.expression.invalid`.
    pub fn ditto_description() -> &'static str {
        Self::DITTO_DESCRIPTION
    }
}
