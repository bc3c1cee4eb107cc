//! `fn:format('{field1}#{field2}')` (Ditto's `PipelineFunctionFormat`, since Ditto 3.9): formats each input
//! value, which should be a JSON object, with a Mustache-like template:
//! `{field}`, `{/json/pointer}`, sections `{#array}...{/array}`, `{.}` for primitive array elements inside a
//! section and `\{` / `\}` for literal braces. Arrays of primitives outside sections expand to several results.

use serde_json::{Map, Value};

use crate::MAX_RESOLVED_VALUES;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Static(String),
    Field(String),
    Section(String, Vec<Part>),
}

/// Parses the template; `None` for an unclosed section (Ditto throws `IllegalArgumentException`).
pub(crate) fn parse_template(template: &str) -> Option<Vec<Part>> {
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
                    parse_template(&template[body_start..closing])?,
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

/// `(?<!\\)\{#([^}]+)}` from `from`: (start, name start, name end).
fn find_section_open(template: &str, from: usize) -> Option<(usize, usize, usize)> {
    let b = template.as_bytes();
    let mut i = from;
    while i + 1 < b.len() {
        if b[i] == b'{' && b[i + 1] == b'#' && (i == 0 || b[i - 1] != b'\\') {
            let name_start = i + 2;
            let name_end = name_start + b[name_start..].iter().take_while(|&&c| c != b'}').count();
            if name_end > name_start && name_end < b.len() {
                return Some((i, name_start, name_end));
            }
        }
        i += 1;
    }
    None
}

fn find_closing_tag(template: &str, from: usize, name: &str) -> Option<usize> {
    let open_tag = format!("{{#{name}}}");
    let close_tag = format!("{{/{name}}}");
    let mut depth = 1;
    let mut pos = from;
    while pos < template.len() {
        let next_close = pos + template[pos..].find(&close_tag)?;
        match template[pos..].find(&open_tag).map(|i| pos + i) {
            Some(next_open) if next_open < next_close => {
                depth += 1;
                pos = next_open + open_tag.len();
            }
            _ => {
                depth -= 1;
                if depth == 0 {
                    return Some(next_close);
                }
                pos = next_close + close_tag.len();
            }
        }
    }
    None
}

/// Static text and `(?<!\\)\{(?!#)(?!/[^/}]+})([^}]+)}` field references.
fn parse_flat(fragment: &str) -> Vec<Part> {
    let b = fragment.as_bytes();
    let mut parts = Vec::new();
    let mut last_end = 0;
    let mut i = 0;
    while i < b.len() {
        if let Some(end) = field_at(b, i) {
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

/// A field reference starting at `i`: the index after its closing brace.
fn field_at(b: &[u8], i: usize) -> Option<usize> {
    if b[i] != b'{' || (i > 0 && b[i - 1] == b'\\') || b.get(i + 1) == Some(&b'#') {
        return None;
    }
    if b.get(i + 1) == Some(&b'/') {
        // a section closing tag {/name} (one segment) is not a field
        let run = b[i + 2..]
            .iter()
            .take_while(|&&c| c != b'/' && c != b'}')
            .count();
        if run > 0 && b.get(i + 2 + run) == Some(&b'}') {
            return None;
        }
    }
    let len = b[i + 1..].iter().take_while(|&&c| c != b'}').count();
    (len > 0 && i + 1 + len < b.len()).then_some(i + len + 2)
}

fn unescape(text: &str) -> String {
    text.replace("\\{", "{").replace("\\}", "}")
}

/// Applies the template to each input value; inputs that are not JSON objects are skipped.
/// `None` if the results would exceed [`MAX_RESOLVED_VALUES`](crate::MAX_RESOLVED_VALUES).
pub(crate) fn format_values(values: &[String], parts: &[Part]) -> Option<Vec<String>> {
    let mut results = Vec::new();
    for value in values {
        if let Ok(Value::Object(object)) = serde_json::from_str::<Value>(value) {
            results.extend(format_object(&object, parts)?);
            if results.len() > MAX_RESOLVED_VALUES {
                return None;
            }
        }
    }
    Some(results)
}

fn format_object(object: &Map<String, Value>, parts: &[Part]) -> Option<Vec<String>> {
    cartesian(
        parts
            .iter()
            .map(|part| resolve_part(object, part))
            .collect::<Option<_>>()?,
    )
}

fn cartesian(parts: Vec<Vec<String>>) -> Option<Vec<String>> {
    let mut results = vec![String::new()];
    for values in parts {
        if results.len().saturating_mul(values.len()) > MAX_RESOLVED_VALUES {
            return None;
        }
        let mut next = Vec::with_capacity(results.len() * values.len());
        for prefix in &results {
            for value in &values {
                next.push(format!("{prefix}{value}"));
            }
        }
        results = next;
    }
    Some(results)
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
                    if results.len() > MAX_RESOLVED_VALUES {
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
        primitive => cartesian(
            inner
                .iter()
                .map(|part| match part {
                    Part::Field(reference) if reference == "." => vec![to_text(primitive)],
                    Part::Static(text) => vec![text.clone()],
                    _ => vec![String::new()],
                })
                .collect(),
        ),
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
