//! Hand-written equivalents of the regular expressions Ditto uses:
//!
//! * `Placeholders.pattern()` (base/model): `\{\{\s*+(?<p>((}[^}]|[^}])*+))\s*+\}\}` or the legacy
//!   `\$\{(?<l>[^}]*+)\}`;
//! * `ImmutableExpressionResolver.PIPE_PATTERN`: stages separated by `|` outside single or double quotes;
//! * `PipelineFunctionParameterResolverFactory`: `(` parameters `)` where a parameter is a quoted constant or
//!   (for some functions) a placeholder `\w+:[^,\s]+` followed by ignored `[^,)]*+`.
//!
//! All quantifiers in those patterns are possessive, so the scanners below never give characters back, except
//! where Ditto's patterns backtrack (the placeholder parameter).

/// A piece of a template: literal text or the content of a `{{ ... }}` / `${...}` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawSegment<'a> {
    Literal(&'a str),
    Expression(&'a str),
}

/// Java's `\s`: `[ \t\n\x0B\f\r]`.
pub(crate) fn is_java_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// Java's `\w` (without UNICODE_CHARACTER_CLASS): `[a-zA-Z_0-9]`.
fn is_java_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Java's `String.trim()`: removes all characters `<= ' '` at both ends.
pub(crate) fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

/// Splits a template into literal text and expressions, left to right like `Matcher.find()`.
///
/// Linear in the text: a `{{` (or `${`) that finds no end means no end follows at all (the scan
/// stops only at the first `}}`, or `}`, after it), so later ones are not tried.
pub(crate) fn scan_template(text: &str) -> Vec<RawSegment<'_>> {
    let b = text.as_bytes();
    let mut segments = Vec::new();
    let mut literal_start = 0;
    let mut i = 0;
    let (mut double_ends, mut legacy_ends) = (true, true);
    while i < b.len() {
        let matched = if double_ends && b[i] == b'{' && b.get(i + 1) == Some(&b'{') {
            let matched = match_double_braces(b, i);
            double_ends = matched.is_some();
            matched
        } else if legacy_ends && b[i] == b'$' && b.get(i + 1) == Some(&b'{') {
            let matched = match_legacy(b, i);
            legacy_ends = matched.is_some();
            matched
        } else {
            None
        };
        if let Some((group_start, group_end, end)) = matched {
            if literal_start < i {
                segments.push(RawSegment::Literal(&text[literal_start..i]));
            }
            segments.push(RawSegment::Expression(&text[group_start..group_end]));
            i = end;
            literal_start = end;
        } else {
            i += 1;
        }
    }
    if literal_start < b.len() {
        segments.push(RawSegment::Literal(&text[literal_start..]));
    }
    segments
}

/// `\{\{\s*+((}[^}]|[^}])*+)\s*+\}\}` at `start`: (group start, group end, match end).
fn match_double_braces(b: &[u8], start: usize) -> Option<(usize, usize, usize)> {
    let mut j = start + 2;
    while j < b.len() && is_java_space(b[j]) {
        j += 1;
    }
    let group_start = j;
    while j < b.len() {
        if b[j] != b'}' {
            j += 1;
        } else if j + 1 < b.len() && b[j + 1] != b'}' {
            j += 2;
        } else {
            break;
        }
    }
    // The group is possessive and swallows trailing spaces, so `\s*+` matches nothing here.
    if j + 1 < b.len() && b[j] == b'}' && b[j + 1] == b'}' {
        Some((group_start, j, j + 2))
    } else {
        None
    }
}

/// `\$\{([^}]*+)\}` at `start`.
fn match_legacy(b: &[u8], start: usize) -> Option<(usize, usize, usize)> {
    let group_start = start + 2;
    let mut j = group_start;
    while j < b.len() && b[j] != b'}' {
        j += 1;
    }
    (j < b.len()).then_some((group_start, j, j + 1))
}

/// Scans a quoted string starting at the opening quote `b[start]`: content `(?:\\q|[^q])*+` then `q`.
/// Returns the index after the closing quote.
fn scan_quoted(b: &[u8], start: usize) -> Option<usize> {
    let quote = b[start];
    let mut j = start + 1;
    while j < b.len() {
        if b[j] == b'\\' && b.get(j + 1) == Some(&quote) {
            j += 2;
        } else if b[j] == quote {
            return Some(j + 1);
        } else {
            j += 1;
        }
    }
    None
}

/// Splits a pipeline expression into its stages (untrimmed), or `None` if it does not match `PIPE_PATTERN`
/// (empty stage, unclosed quote).
pub(crate) fn split_stages(expression: &str) -> Option<Vec<&str>> {
    let b = expression.as_bytes();
    let mut stages = Vec::new();
    let mut stage_start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'|' => {
                if i == stage_start {
                    return None;
                }
                stages.push(&expression[stage_start..i]);
                stage_start = i + 1;
                i += 1;
            }
            b'\'' | b'"' => i = scan_quoted(b, i)?,
            _ => i += 1,
        }
    }
    if stage_start == b.len() {
        return None;
    }
    stages.push(&expression[stage_start..]);
    Some(stages)
}

/// A parameter as written: the content of a quoted constant (not unescaped, like Ditto) or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawParam<'a> {
    Constant(&'a str),
    Placeholder(&'a str),
}

/// `\(\s*+\)`
pub(crate) fn match_empty_params(params: &str) -> bool {
    let b = params.as_bytes();
    b.len() >= 2
        && b[0] == b'('
        && b[b.len() - 1] == b')'
        && b[1..b.len() - 1].iter().all(|&c| is_java_space(c))
}

/// Matches `(` P0 `,` P1 ... `)` with `required` mandatory and `optional` further parameters, like Ditto's
/// `ParameterResolver` pattern with `Matcher.matches()`.
pub(crate) fn match_params(
    params: &str,
    required: usize,
    optional: usize,
    allow_placeholders: bool,
) -> Option<Vec<RawParam<'_>>> {
    let b = params.as_bytes();
    if b.first() != Some(&b'(') || required == 0 {
        return None;
    }
    let matcher = ParamMatcher {
        text: params,
        required,
        total: required + optional,
        allow_placeholders,
    };
    let mut out = matcher.param(1, 0)?;
    out.reverse();
    Some(out)
}

struct ParamMatcher<'a> {
    text: &'a str,
    required: usize,
    total: usize,
    allow_placeholders: bool,
}

impl<'a> ParamMatcher<'a> {
    /// Matches parameter `index` at `pos` and everything after it; returns the parameters in reverse order.
    fn param(&self, pos: usize, index: usize) -> Option<Vec<RawParam<'a>>> {
        let b = self.text.as_bytes();
        let mut p = pos;
        while p < b.len() && is_java_space(b[p]) {
            p += 1;
        }
        if p < b.len() && (b[p] == b'\'' || b[p] == b'"') {
            let end_quote = scan_quoted(b, p)?;
            let content = &self.text[p + 1..end_quote - 1];
            let mut e = end_quote;
            while e < b.len() && is_java_space(b[e]) {
                e += 1;
            }
            let mut rest = self.continuation(e, index)?;
            rest.push(RawParam::Constant(content));
            return Some(rest);
        }
        if !self.allow_placeholders {
            return None;
        }
        // \w+:
        let word_start = p;
        while p < b.len() && is_java_word(b[p]) {
            p += 1;
        }
        if p == word_start || b.get(p) != Some(&b':') {
            return None;
        }
        let name_start = p + 1;
        // [^,\s]+ (greedy, may backtrack)
        let mut run_end = name_start;
        while run_end < b.len() && b[run_end] != b',' && !is_java_space(b[run_end]) {
            run_end += 1;
        }
        if run_end == name_start {
            return None;
        }
        // `stop`: the first `,` or `)` at or after `e`, kept while `e` moves back (one pass,
        // where scanning forward from every `e` would be quadratic in a long parameter).
        let mut stop = run_end;
        while stop < b.len() && b[stop] != b',' && b[stop] != b')' {
            stop += 1;
        }
        let mut last_stop = usize::MAX;
        let mut e = run_end;
        while e > name_start {
            if e < b.len() && (b[e] == b',' || b[e] == b')') {
                stop = e;
            }
            if self.text.is_char_boundary(e) {
                // [^,)]*+ then the next parameter or the closing parenthesis
                if stop != last_stop {
                    last_stop = stop;
                    if let Some(mut rest) = self.continuation(stop, index) {
                        rest.push(RawParam::Placeholder(&self.text[word_start..e]));
                        return Some(rest);
                    }
                }
            }
            e -= 1;
        }
        None
    }

    /// After parameter `index` ended at `pos`: either `,` and the next parameter, or `)` at the very end.
    fn continuation(&self, pos: usize, index: usize) -> Option<Vec<RawParam<'a>>> {
        let b = self.text.as_bytes();
        match b.get(pos) {
            Some(b',') if index + 1 < self.total => self.param(pos + 1, index + 1),
            Some(b')') if pos + 1 == b.len() && index + 1 >= self.required => Some(Vec::new()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> RawSegment<'_> {
        RawSegment::Literal(s)
    }
    fn expr(s: &str) -> RawSegment<'_> {
        RawSegment::Expression(s)
    }

    #[test]
    fn template_scanning() {
        assert_eq!(scan_template(""), vec![]);
        assert_eq!(scan_template("abc"), vec![lit("abc")]);
        assert_eq!(
            scan_template("a/{{ thing:id }}/b{{x}}"),
            vec![lit("a/"), expr("thing:id "), lit("/b"), expr("x")]
        );
        assert_eq!(scan_template("{{ a }}}"), vec![expr("a "), lit("}")]);
        assert_eq!(scan_template("{{ a }x}}"), vec![expr("a }x")]);
        assert_eq!(scan_template("{{ a }"), vec![lit("{{ a }")]);
        assert_eq!(scan_template("{{{ a }}"), vec![expr("{ a ")]);
        assert_eq!(
            scan_template("${thing:id}!"),
            vec![expr("thing:id"), lit("!")]
        );
        assert_eq!(scan_template("$share/{{}}"), vec![lit("$share/"), expr("")]);
    }

    #[test]
    fn stage_splitting() {
        assert_eq!(split_stages("a | b"), Some(vec!["a ", " b"]));
        assert_eq!(
            split_stages("a | fn:x('|')"),
            Some(vec!["a ", " fn:x('|')"])
        );
        assert_eq!(
            split_stages("a | fn:x(\"'|\")"),
            Some(vec!["a ", " fn:x(\"'|\")"])
        );
        assert_eq!(
            split_stages("a | fn:x('\\'|')"),
            Some(vec!["a ", " fn:x('\\'|')"])
        );
        assert_eq!(split_stages(""), None);
        assert_eq!(split_stages("a |"), None);
        assert_eq!(split_stages("a || b"), None);
        assert_eq!(split_stages("a | fn:x('"), None);
        assert_eq!(split_stages("a | fn:x('\\')"), None);
    }

    #[test]
    fn parameters() {
        use RawParam::*;
        assert!(match_empty_params("()"));
        assert!(match_empty_params("(  )"));
        assert!(!match_empty_params("('')"));
        assert_eq!(
            match_params("(':')", 1, 0, false),
            Some(vec![Constant(":")])
        );
        assert_eq!(
            match_params("( \"x\" )", 1, 0, false),
            Some(vec![Constant("x")])
        );
        assert_eq!(match_params("(thing:id)", 1, 0, false), None);
        assert_eq!(
            match_params("(thing:id)", 1, 0, true),
            Some(vec![Placeholder("thing:id")])
        );
        assert_eq!(
            match_params("(fn:delete())", 1, 0, true),
            Some(vec![Placeholder("fn:delete()")])
        );
        assert_eq!(
            match_params("( header:a junk)", 1, 0, true),
            Some(vec![Placeholder("header:a")])
        );
        assert_eq!(
            match_params("(header:a,'eq','b')", 2, 1, true),
            Some(vec![Placeholder("header:a"), Constant("eq"), Constant("b")])
        );
        assert_eq!(
            match_params("('eq','b')", 2, 1, true),
            Some(vec![Constant("eq"), Constant("b")])
        );
        assert_eq!(match_params("('eq')", 2, 1, true), None);
        assert_eq!(match_params("('a','b','c','d')", 2, 1, true), None);
        assert_eq!(
            match_params("('a,)', \"b\")", 2, 1, true),
            Some(vec![Constant("a,)"), Constant("b")])
        );
        assert_eq!(match_params("(thing-json:a)", 1, 0, true), None);
        assert_eq!(match_params("()", 1, 0, true), None);
        assert_eq!(match_params("('x') ", 1, 0, true), None);
        assert_eq!(
            match_params("(a:ä))", 1, 0, true),
            Some(vec![Placeholder("a:ä)")])
        );
        assert_eq!(
            match_params("(a:ä)", 1, 0, true),
            Some(vec![Placeholder("a:ä")])
        );
    }
}
