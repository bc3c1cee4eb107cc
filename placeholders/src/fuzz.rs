//! The body of the `placeholders` fuzz target (`fuzz/fuzz_targets/placeholders.rs`), also run over
//! the seed corpus by `cargo test`. Compiled for tests and for `--cfg fuzzing` builds only.
//!
//! Input: UTF-8 text. The first line is the template (also tried as a pipeline expression and as
//! a condition); every further line `prefix:name=value` adds a value the resolver knows (a name
//! given twice has several values), `now=<epoch millis>` sets the clock (kept within 1900..2200).

use crate::{
    CONNECTION_PLACEHOLDERS, MAX_RESOLVED_VALUES, MapResolver, Resolution, Template,
    evaluate_condition, resolve_expression, validate_condition,
};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

const BASE: &[(&str, &str)] = &[
    ("thing:id", "org.acme:sensor-1"),
    ("thing:namespace", "org.acme"),
    ("thing:name", "sensor-1"),
    ("entity:id", "org.acme:sensor-1"),
    ("header:correlation-id", "c-1"),
    ("header:content-type", "application/json"),
    ("topic:action", "modified"),
    ("topic:channel", "twin"),
    ("connection:id", "conn-1"),
    ("source:address", "devices/sensor-1"),
    ("feature:id", "environment"),
    ("resource:path", "/features/environment"),
];

fn resolver(lines: std::str::Lines<'_>) -> MapResolver {
    let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in BASE {
        values.insert(k.to_string(), vec![v.to_string()]);
    }
    // 2024-05-16T13:47:25.123Z
    let mut now_ms: i64 = 1_715_867_245_123;
    let mut given = std::collections::HashSet::new();
    for line in lines {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key == "now" {
            if let Ok(ms) = value.trim().parse::<i64>() {
                // 1900-01-01 .. 2200-01-01
                now_ms = ms.rem_euclid(9_467_280_000_000) - 2_208_988_800_000;
            }
            continue;
        }
        // The first value from the input replaces the base value; later ones add to it.
        let entry = values.entry(key.to_string()).or_default();
        if given.insert(key) {
            entry.clear();
        }
        entry.push(value.to_string());
    }
    let now: DateTime<Utc> = DateTime::from_timestamp_millis(now_ms).expect("within 1900..2200");
    let mut builder = MapResolver::builder().now(now);
    for (k, v) in values {
        builder = builder.values(&k, v);
    }
    builder.build()
}

fn check_resolution(r: &Resolution) {
    if let Resolution::Resolved(values) = r {
        assert!(!values.is_empty(), "resolved to no value");
        assert!(
            values.len() <= MAX_RESOLVED_VALUES,
            "{} values",
            values.len()
        );
    }
}

/// Any text: parsing, validating and resolving a template, an expression and a condition never
/// panic; a parsed template keeps its text and parses again to the same template; a template
/// without expressions resolves to its text; resolving is deterministic and yields between 1 and
/// [`MAX_RESOLVED_VALUES`] values; a condition that validates can be evaluated.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.lines();
    let template = lines.next().unwrap_or("");
    let resolver = resolver(lines);

    match Template::parse(template) {
        Ok(t) => {
            assert_eq!(t.as_str(), template);
            assert_eq!(t.to_string(), template);
            assert_eq!(Template::parse(template).as_ref(), Ok(&t));
            if t.validate(CONNECTION_PLACEHOLDERS).is_ok() {
                for p in t.placeholders() {
                    let prefix = p.split_once(':').map_or(p.as_str(), |(prefix, _)| prefix);
                    assert!(CONNECTION_PLACEHOLDERS.contains(&prefix), "{p} validated");
                }
            }
            let resolved = t.resolve(&resolver);
            check_resolution(&resolved);
            assert_eq!(t.resolve(&resolver), resolved, "resolving is deterministic");
            if t.is_literal() {
                assert_eq!(resolved, Resolution::Resolved(vec![template.to_string()]));
            }
        }
        Err(e) => assert!(e.code.starts_with("placeholder:"), "{e:?}"),
    }

    if let Ok(r) = resolve_expression(template, &resolver) {
        check_resolution(&r);
    }
    let validated = validate_condition(template, CONNECTION_PLACEHOLDERS);
    let evaluated = evaluate_condition(template, &resolver);
    if validated.is_ok() {
        assert!(evaluated.is_ok(), "validated, but {evaluated:?}");
    }
}

#[cfg(test)]
#[test]
fn the_seed_corpus_passes() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/placeholders");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect(dir) {
        let path = entry.unwrap().path();
        eprintln!("{}", path.display());
        check(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n >= 10, "only {n} seed files in {dir}");
}
