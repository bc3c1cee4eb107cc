//! `fn:filter` (Ditto's `PipelineFunctionFilter`) and its RQL functions `eq`, `ne`, `like`, `exists`
//! (`org.eclipse.ditto.placeholders.filter`).

use crate::element::Element;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilterOp {
    Eq,
    Ne,
    Like,
    Exists,
}

impl FilterOp {
    /// `FilterFunctions.fromName`: exact, case-sensitive names.
    pub(crate) fn from_name(name: &str) -> Option<FilterOp> {
        match name {
            "eq" => Some(FilterOp::Eq),
            "ne" => Some(FilterOp::Ne),
            "like" => Some(FilterOp::Like),
            "exists" => Some(FilterOp::Exists),
            _ => None,
        }
    }

    /// The function applied to one parameter: only `exists` accepts it (value is not empty).
    fn apply1(self, value: &str) -> bool {
        match self {
            FilterOp::Exists => !value.is_empty(),
            _ => false,
        }
    }

    /// The function applied to two parameters.
    fn apply2(self, value: &str, compared: &str) -> bool {
        match self {
            FilterOp::Eq => value == compared,
            FilterOp::Ne => value != compared,
            FilterOp::Like => like(value, compared),
            // Boolean.parseBoolean: only "true" (any case) is true.
            FilterOp::Exists => compared.eq_ignore_ascii_case("true") != value.is_empty(),
        }
    }
}

/// The most steps a `like` may take: the pattern's length times the value's (in characters). Beyond it the
/// value does not match, so a message cannot hold a worker for seconds with a long value and pattern.
pub(crate) const MAX_LIKE_STEPS: usize = 1 << 24;

/// Ditto's `LikeFunction`: the whole value must match the pattern, where `*` is any run of characters, `?` one
/// character (neither matches a line terminator, like Java's `.`) and `|` separates alternatives. False when the
/// match would take more than [`MAX_LIKE_STEPS`].
pub(crate) fn like(value: &str, pattern: &str) -> bool {
    let value: Vec<char> = value.chars().collect();
    if pattern.chars().count().saturating_mul(value.len().max(1)) > MAX_LIKE_STEPS {
        return false;
    }
    pattern
        .split('|')
        .any(|alternative| glob(&value, &alternative.chars().collect::<Vec<_>>()))
}

fn is_line_terminator(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn glob(text: &[char], pattern: &[char]) -> bool {
    // matches[j]: the text prefix processed so far matches pattern[..j]
    let mut matches = vec![false; pattern.len() + 1];
    let mut next = vec![false; pattern.len() + 1];
    matches[0] = true;
    for j in 1..=pattern.len() {
        matches[j] = matches[j - 1] && pattern[j - 1] == '*';
    }
    for &c in text {
        next[0] = false;
        for j in 1..=pattern.len() {
            next[j] = match pattern[j - 1] {
                '*' => next[j - 1] || (matches[j] && !is_line_terminator(c)),
                '?' => matches[j - 1] && !is_line_terminator(c),
                p => matches[j - 1] && p == c,
            };
        }
        std::mem::swap(&mut matches, &mut next);
    }
    matches[pattern.len()]
}

struct Parameters {
    /// `None`: the filter applies to the previous pipeline element.
    filter_values: Option<Vec<String>>,
    rql: Option<FilterOp>,
    compared_values: Option<Vec<String>>,
}

/// Applies `fn:filter` with its 2 or 3 evaluated parameters to the input element.
pub(crate) fn apply(input: Element, params: &[Element]) -> Element {
    let Some(parameters) = parameters(params) else {
        // Ditto throws PlaceholderFunctionSignatureInvalidException when the RQL function parameter of the
        // 3-parameter form does not resolve; there is no error at resolution time here.
        return Element::Unresolved;
    };
    let keep_any = should_keep_any_value(&parameters);
    let filter_previous = parameters.filter_values.is_none();
    input.on_resolved(|value| {
        if filter_previous {
            let keep = parameters
                .rql
                .is_some_and(|rql| match &parameters.compared_values {
                    Some(compared) => compared.iter().any(|c| rql.apply2(value, c)),
                    None => rql.apply1(value),
                });
            if keep {
                Element::single(value)
            } else {
                Element::Unresolved
            }
        } else if keep_any {
            Element::single(value)
        } else {
            Element::Unresolved
        }
    })
}

fn parameters(params: &[Element]) -> Option<Parameters> {
    let values = |e: &Element| e.values().to_vec();
    match params {
        [first, second] => {
            if second.first() == Some("exists") {
                // fn:filter(filterValue, 'exists')
                Some(Parameters {
                    filter_values: Some(values(first)),
                    rql: Some(FilterOp::Exists),
                    compared_values: None,
                })
            } else {
                // fn:filter('rqlFunction', comparedValue): applied to the previous element
                Some(Parameters {
                    filter_values: None,
                    rql: first.first().and_then(FilterOp::from_name),
                    compared_values: Some(values(second)),
                })
            }
        }
        [first, second, third, ..] => Some(Parameters {
            filter_values: Some(values(first)),
            rql: FilterOp::from_name(second.first()?),
            compared_values: Some(values(third)),
        }),
        _ => None,
    }
}

/// `PipelineFunctionFilter.applyRqlFunction`/`applyFilter` for the forms with an explicit filter value.
fn should_keep_any_value(parameters: &Parameters) -> bool {
    let Some(rql) = parameters.rql else {
        return false;
    };
    let filter_values: &[String] = parameters.filter_values.as_deref().unwrap_or(&[]);
    match &parameters.compared_values {
        Some(compared) if !filter_values.is_empty() && !compared.is_empty() => filter_values
            .iter()
            .any(|f| compared.iter().any(|c| rql.apply2(f, c))),
        Some(compared) if compared.is_empty() && filter_values.is_empty() => rql.apply2("", ""),
        Some(compared) if filter_values.is_empty() => compared.iter().any(|c| rql.apply2("", c)),
        Some(_) => filter_values.iter().any(|f| rql.apply2(f, "")),
        None => filter_values.iter().any(|f| rql.apply1(f)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns() {
        assert!(like("moderator", "*moderator"));
        assert!(like("super-moderator", "*moderator"));
        assert!(!like("moderators", "*moderator"));
        assert!(like("abc", "a?c"));
        assert!(!like("abbc", "a?c"));
        assert!(like("abc", "a*"));
        assert!(like("a", "a*"));
        assert!(like("foobar", "allowlist1|foobar|include"));
        assert!(!like("foo", "allowlist1|foobar|include"));
        assert!(like("", "x|"));
        assert!(like("a.b", "a.b"));
        assert!(!like("axb", "a.b"));
        assert!(!like("a\nb", "a*b"));
        assert!(!like("a\nb", "a?b"));
        assert!(like("[x](y)+", "[x](y)+"));
    }

    #[test]
    fn like_cases_of_dittos_filter_test() {
        for (value, pattern, expected) in [
            ("x", "y", false),
            ("x", "x", true),
            ("x", "*", true),
            ("x", "?", true),
            ("x", "x|y", true),
            ("x", "y|z", false),
            ("x", "y|z|x", true),
            ("x", "||", false),
            ("x", "y|*", true),
            ("x", "?|z", true),
            ("*y", "xy", false),
            ("xy", "*y", true),
            ("1234567", "*2?7", false),
            ("1234567", "*5?7", true),
            ("1234567", "1?4*", false),
            ("1234567", "1?3*", true),
            ("1234567", "*?1?3?*", false),
            ("1234567", "*?3?5?*", true),
            ("", "", true),
        ] {
            assert_eq!(like(value, pattern), expected, "{value} like {pattern}");
        }
    }

    #[test]
    fn ops() {
        assert!(FilterOp::Eq.apply2("a", "a"));
        assert!(!FilterOp::Eq.apply1("a"));
        assert!(FilterOp::Ne.apply2("a", "b"));
        assert!(FilterOp::Exists.apply1("a"));
        assert!(!FilterOp::Exists.apply1(""));
        assert!(FilterOp::Exists.apply2("a", "TRUE"));
        assert!(FilterOp::Exists.apply2("", "false"));
        assert!(FilterOp::Exists.apply2("", "anything"));
        assert_eq!(FilterOp::from_name("EQ"), None);
    }
}
