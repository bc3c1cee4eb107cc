//! `like` / `ilike` wildcard matching with the semantics of Ditto's regex translation
//! (`rql/query/src/main/java/org/eclipse/ditto/rql/query/LikeHelper.java`): `*` becomes `.*`,
//! `?` becomes `.`, everything else is quoted, and the whole value must match
//! (`Pattern.matcher(..).matches()`).
//!
//! Java's `.` does not match line terminators (`\n`, `\r`, `\u0085`, `\u2028`, `\u2029`), and
//! `Pattern.CASE_INSENSITIVE` (used for `ilike`) without `UNICODE_CASE` folds US-ASCII only.

fn is_line_terminator(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// Whether the whole `text` matches the wildcard `pattern`.
pub(crate) fn like_matches(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let same = |p: char, t: char| {
        if case_insensitive {
            p.eq_ignore_ascii_case(&t)
        } else {
            p == t
        }
    };
    // Iterative wildcard matching with single-star backtracking: O(|pattern| * |text|).
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some('?') if !is_line_terminator(text[t]) => {
                p += 1;
                t += 1;
                continue;
            }
            Some(&c) if c != '?' && same(c, text[t]) => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        // Mismatch: let the last star eat one more character, if it may.
        match star {
            Some((star_p, star_t)) if !is_line_terminator(text[star_t]) => {
                star = Some((star_p, star_t + 1));
                p = star_p + 1;
                t = star_t + 1;
            }
            _ => return false,
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::like_matches;

    #[test]
    fn wildcards() {
        assert!(like_matches("abc", "abc", false));
        assert!(!like_matches("abc", "abcd", false));
        assert!(like_matches("a*", "abcd", false));
        assert!(like_matches("*d", "abcd", false));
        assert!(like_matches("*b*", "abcd", false));
        assert!(like_matches("a**d", "abcd", false));
        assert!(like_matches("*", "", false));
        assert!(!like_matches("?", "", false));
        assert!(like_matches("a?c", "abc", false));
        assert!(!like_matches("a?c", "ac", false));
        assert!(like_matches("*a*a*a*", "xaxaxax", false));
        assert!(!like_matches("*a*a*a*a*", "xaxaxax", false));
        assert!(
            like_matches("a.c", "a.c", false),
            "regex characters are literal"
        );
        assert!(!like_matches("a.c", "abc", false));
        assert!(like_matches("[x]+", "[x]+", false));
    }

    #[test]
    fn line_terminators_are_not_matched_by_wildcards() {
        assert!(!like_matches("a*b", "a\nb", false));
        assert!(!like_matches("a?b", "a\rb", false));
        assert!(like_matches("a\nb", "a\nb", false));
    }

    #[test]
    fn case_insensitivity_is_ascii_only() {
        assert!(like_matches("HeLLo*", "hello world", true));
        assert!(!like_matches("HeLLo*", "hello world", false));
        assert!(!like_matches("ä", "Ä", true));
    }
}
