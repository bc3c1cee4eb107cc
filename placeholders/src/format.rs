//! `fn:format('{field1}#{field2}')` (Ditto's `PipelineFunctionFormat`, since Ditto 3.9): formats each input
//! value, which should be a JSON object, with a Mustache-like template:
//! `{field}`, `{/json/pointer}`, sections `{#array}...{/array}`, `{.}` for primitive array elements inside a
//! section and `\{` / `\}` for literal braces. Arrays of primitives outside sections expand to several results.

use serde_json::{Map, Value};

use crate::{product, within_budget};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Static(String),
    Field(String),
    Section(String, Vec<Part>),
}

/// How deeply sections may nest (`{#a}{#b}…{/b}{/a}` is 2); deeper is refused like an unclosed
/// section. Parsing and formatting recurse once per level. Ditto has no limit.
pub(crate) const MAX_SECTION_DEPTH: usize = 16;

/// Parses the template; `None` for an unclosed section (Ditto throws `IllegalArgumentException`)
/// or sections nested deeper than [`MAX_SECTION_DEPTH`]. Each level is one linear pass.
pub(crate) fn parse_template(template: &str) -> Option<Vec<Part>> {
    parse_level(template, 0)
}

fn parse_level(template: &str, depth: usize) -> Option<Vec<Part>> {
    if depth > MAX_SECTION_DEPTH {
        return None;
    }
    let mut parts = Vec::new();
    let mut pos = 0;
    while pos < template.len() {
        match find_section_open(template, pos) {
            Some((open_start, name_start, name_end)) => {
                if open_start > pos {
                    parts.extend(parse_flat(&template[pos..open_start]));
                }
                let name = &template[name_start..name_end];
                let body_start = name_end + 1;
                let closing = find_closing_tag(template, body_start, name)?;
                parts.push(Part::Section(
                    name.to_string(),
                    parse_level(&template[body_start..closing], depth + 1)?,
                ));
                pos = closing + name.len() + 3;
            }
            None => {
                parts.extend(parse_flat(&template[pos..]));
                pos = template.len();
            }
        }
    }
    Some(parts)
}

/// The first index at or after `from` whose byte `is` accepts (`b.len()` if none), remembered
/// in `cache` until `from` passes it: the callers ask with growing `from`, and scanning ahead
/// anew from every position would be quadratic.
fn next_index(b: &[u8], from: usize, cache: &mut Option<usize>, is: fn(u8) -> bool) -> usize {
    match *cache {
        Some(at) if at >= from => at,
        _ => {
            let at = from
                + b[from..]
                    .iter()
                    .position(|&c| is(c))
                    .unwrap_or(b.len() - from);
            *cache = Some(at);
            at
        }
    }
}

/// `(?<!\\)\{#([^}]+)}` from `from`: (start, name start, name end).
fn find_section_open(template: &str, from: usize) -> Option<(usize, usize, usize)> {
    let b = template.as_bytes();
    let mut brace = None;
    let mut i = from;
    while i + 1 < b.len() {
        if b[i] == b'{' && b[i + 1] == b'#' && (i == 0 || b[i - 1] != b'\\') {
            let name_start = i + 2;
            let name_end = next_index(b, name_start, &mut brace, |c| c == b'}');
            if name_end == b.len() {
                // No `}` after this `{#`, so none after a later one either.
                return None;
            }
            if name_end > name_start {
                return Some((i, name_start, name_end));
            }
        }
        i += 1;
    }
    None
}

/// Where the `{/name}` closing the section whose body starts at `from` is, counting nested
/// `{#name}`; each tag is searched for once per occurrence, not once per step.
fn find_closing_tag(template: &str, from: usize, name: &str) -> Option<usize> {
    let open_tag = format!("{{#{name}}}");
    let close_tag = format!("{{/{name}}}");
    let find = |tag: &str, pos: usize| template[pos..].find(tag).map(|i| pos + i);
    let mut depth = 1;
    let mut pos = from;
    let (mut next_close, mut next_open) = (None::<usize>, None::<Option<usize>>);
    while pos < template.len() {
        let close = match next_close {
            Some(at) if at >= pos => at,
            _ => find(&close_tag, pos)?,
        };
        next_close = Some(close);
        let open = match next_open {
            Some(Some(at)) if at >= pos => Some(at),
            Some(None) => None,
            _ => find(&open_tag, pos),
        };
        next_open = Some(open);
        match open {
            Some(open) if open < close => {
                depth += 1;
                pos = open + open_tag.len();
            }
            _ => {
                depth -= 1;
                if depth == 0 {
                    return Some(close);
                }
                pos = close + close_tag.len();
            }
        }
    }
    None
}

/// Static text and `(?<!\\)\{(?!#)(?!/[^/}]+})([^}]+)}` field references.
fn parse_flat(fragment: &str) -> Vec<Part> {
    let b = fragment.as_bytes();
    let mut ahead = Ahead::default();
    let mut parts = Vec::new();
    let mut last_end = 0;
    let mut i = 0;
    while i < b.len() {
        if let Some(end) = field_at(b, i, &mut ahead) {
            if i > last_end {
                parts.push(Part::Static(unescape(&fragment[last_end..i])));
            }
            parts.push(Part::Field(fragment[i + 1..end - 1].to_string()));
            last_end = end;
            i = end;
        } else {
            i += 1;
        }
    }
    if last_end < b.len() {
        parts.push(Part::Static(unescape(&fragment[last_end..])));
    }
    parts
}

/// The next `}`, and the next `/` or `}`, as far as [`field_at`] has looked ahead.
#[derive(Default)]
struct Ahead {
    brace: Option<usize>,
    slash_or_brace: Option<usize>,
}

/// A field reference starting at `i`: the index after its closing brace.
fn field_at(b: &[u8], i: usize, ahead: &mut Ahead) -> Option<usize> {
    if b[i] != b'{' || (i > 0 && b[i - 1] == b'\\') || b.get(i + 1) == Some(&b'#') {
        return None;
    }
    if b.get(i + 1) == Some(&b'/') {
        // a section closing tag {/name} (one segment) is not a field
        let stop = next_index(b, i + 2, &mut ahead.slash_or_brace, |c| {
            c == b'/' || c == b'}'
        });
        if stop > i + 2 && b.get(stop) == Some(&b'}') {
            return None;
        }
    }
    let brace = next_index(b, i + 1, &mut ahead.brace, |c| c == b'}');
    (brace > i + 1 && brace < b.len()).then_some(brace + 1)
}

fn unescape(text: &str) -> String {
    text.replace("\\{", "{").replace("\\}", "}")
}

/// Applies the template to each input value; inputs that are not JSON objects are skipped.
/// `None` if the results would exceed [`MAX_RESOLVED_VALUES`](crate::MAX_RESOLVED_VALUES) strings or
/// [`MAX_RESOLVED_BYTES`](crate::MAX_RESOLVED_BYTES) bytes.
pub(crate) fn format_values(values: &[String], parts: &[Part]) -> Option<Vec<String>> {
    let mut results = Vec::new();
    for value in values {
        if let Ok(Value::Object(object)) = serde_json::from_str::<Value>(value) {
            results.extend(format_object(&object, parts)?);
            if !within_budget(&results) {
                return None;
            }
        }
    }
    Some(results)
}

/// Each part's values are folded into the results as soon as they are made, so a template of many
/// parts never holds more than one part's values beside results within the budgets.
fn format_object(object: &Map<String, Value>, parts: &[Part]) -> Option<Vec<String>> {
    parts.iter().try_fold(vec![String::new()], |results, part| {
        product(results, &resolve_part(object, part)?)
    })
}

fn lookup<'a>(object: &'a Map<String, Value>, reference: &str) -> Option<&'a Value> {
    // Ditto's JsonObject.getValue(CharSequence) reads a key as JSON pointer, so "a/b" is nested too.
    let mut segments = reference.strip_prefix('/').unwrap_or(reference).split('/');
    let first = segments.next()?;
    segments.try_fold(object.get(first)?, |value, segment| {
        value.as_object()?.get(segment)
    })
}

fn to_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn resolve_part(object: &Map<String, Value>, part: &Part) -> Option<Vec<String>> {
    Some(match part {
        Part::Static(text) => vec![text.clone()],
        Part::Field(reference) => match lookup(object, reference) {
            None | Some(Value::Null) => vec![String::new()],
            Some(Value::Array(items)) if items.is_empty() => vec![String::new()],
            Some(Value::Array(items)) => items.iter().map(to_text).collect(),
            Some(value) => vec![to_text(value)],
        },
        Part::Section(name, inner) => match lookup(object, name) {
            None | Some(Value::Null) => vec![String::new()],
            Some(Value::Array(items)) if items.is_empty() => vec![String::new()],
            Some(Value::Array(items)) => {
                let mut results = Vec::new();
                for item in items {
                    results.extend(resolve_element(item, inner)?);
                    if !within_budget(&results) {
                        return None;
                    }
                }
                results
            }
            Some(value) => resolve_element(value, inner)?,
        },
    })
}

fn resolve_element(element: &Value, inner: &[Part]) -> Option<Vec<String>> {
    match element {
        Value::Object(object) => format_object(object, inner),
        primitive => inner.iter().try_fold(vec![String::new()], |results, part| {
            let values = match part {
                Part::Field(reference) if reference == "." => vec![to_text(primitive)],
                Part::Static(text) => vec![text.clone()],
                _ => vec![String::new()],
            };
            product(results, &values)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(input: &str, template: &str) -> Vec<String> {
        format_values(&[input.to_string()], &parse_template(template).unwrap()).unwrap()
    }

    #[test]
    fn fields_and_arrays() {
        let input =
            r#"{"reseller":"io.test","service_provider":"acme","customer":"","roles":["op"]}"#;
        assert_eq!(
            format(input, "{reseller}#{service_provider}#{customer}#{roles}"),
            vec!["io.test#acme##op"]
        );
        let input = r#"{"tenant":"io.test","roles":["op","admin"]}"#;
        assert_eq!(
            format(input, "{tenant}:{roles}"),
            vec!["io.test:op", "io.test:admin"]
        );
        assert_eq!(
            format(r#"{"a":{"b":1.5}}"#, "{/a/b}|{missing}|{a/b}"),
            vec!["1.5||1.5"]
        );
        assert_eq!(format(r#"{"a":null,"n":3}"#, "[{a}]{n}"), vec!["[]3"]);
    }

    #[test]
    fn sections_and_escapes() {
        let input = r#"{"t":"x","items":[{"id":1,"k":"a"},{"id":2,"k":"b"}],"tags":["p","q"]}"#;
        assert_eq!(
            format(input, "{t}/{#items}{id}={k}{/items}"),
            vec!["x/1=a", "x/2=b"]
        );
        assert_eq!(format(input, "{#tags}<{.}>{/tags}"), vec!["<p>", "<q>"]);
        assert_eq!(format(input, "\\{{t}\\}"), vec!["{x}"]);
        assert!(parse_template("{#items}{id}").is_none());
        assert!(
            format_values(
                &["not json".into(), "[1]".into()],
                &parse_template("{a}").unwrap()
            )
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn results_are_bounded() {
        let items = (0..200)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let input = format!(r#"{{"a":[{items}]}}"#);
        assert_eq!(format(&input, "{a}").len(), 200);
        let parts = parse_template("{a}-{a}").unwrap();
        assert_eq!(format_values(&[input], &parts), None);
    }
}
