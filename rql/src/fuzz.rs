//! The body of the `rql` fuzz target (`fuzz/fuzz_targets/rql.rs`), also run over the seed corpus
//! by `cargo test`. Compiled for tests and for `--cfg fuzzing` builds only.
//!
//! Input: UTF-8 text. The first line is the filter; the rest, when it is JSON, is the document it
//! is evaluated against (otherwise a thing with attributes and a feature).

use crate::{Filter, Node};
use serde_json::{Value, json};

fn placeholder(name: &str) -> Option<Value> {
    match name {
        "topic:action" => Some(json!("modified")),
        "topic:channel" => Some(json!("twin")),
        "resource:path" => Some(json!("/attributes/counter")),
        "time:now" => Some(json!("2024-05-16T13:47:25.123Z")),
        "header:qos" => Some(json!(1)),
        "header:flags" => Some(json!([1, 2])),
        _ => None,
    }
}

/// Any text: the parser answers with a filter or an error (whose Ditto message can be written),
/// never a panic. An accepted filter's canonical text parses to the same filter and is stable;
/// evaluating never panics, the re-parsed filter decides the same, `not(f)` decides the opposite
/// and `and(f,f)`, `or(f,f)` the same.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (expression, rest) = text.split_once('\n').unwrap_or((text, ""));
    let filter = match Filter::parse(expression) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.ditto_message(expression);
            return;
        }
    };
    let canonical = filter.to_string();
    let again = Filter::parse(&canonical)
        .unwrap_or_else(|e| panic!("{canonical} (from {expression}) does not parse: {e}"));
    assert_eq!(again, filter, "{expression} -> {canonical}");
    assert_eq!(again.to_string(), canonical, "the canonical text is stable");

    let _ = filter.properties();
    let _ = filter.value_placeholders();
    let _ = filter.validate_thing_fields(&|p| p.contains(':'));

    let doc = serde_json::from_str::<Value>(rest).unwrap_or_else(|_| {
        json!({
            "thingId": "org.acme:sensor-1",
            "policyId": "org.acme:sensor-1",
            "attributes": {"counter": 42, "name": "abc", "tags": ["a", "b"], "on": true,
                           "nothing": null, "empty": "", "ratio": 0.5},
            "features": {"env": {"properties": {"t": 21.5, "unit": "C"}}},
            "_revision": 7,
            "_modified": "2024-05-16T13:00:00Z"
        })
    });
    for ph in [&placeholder as &dyn Fn(&str) -> Option<Value>, &|_| None] {
        let decision = filter.matches(&doc, ph);
        assert_eq!(again.matches(&doc, ph), decision, "{canonical}");
        let root = filter.root().clone();
        let not = Filter::from(Node::Not(Box::new(root.clone())));
        assert_eq!(not.matches(&doc, ph), !decision, "not({canonical})");
        let and = Filter::from(Node::And(vec![root.clone(), root.clone()]));
        assert_eq!(and.matches(&doc, ph), decision, "and({canonical},..)");
        let or = Filter::from(Node::Or(vec![root.clone(), root]));
        assert_eq!(or.matches(&doc, ph), decision, "or({canonical},..)");
    }
}

#[cfg(test)]
#[test]
fn the_seed_corpus_passes() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/rql");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect(dir) {
        let path = entry.unwrap().path();
        eprintln!("{}", path.display());
        check(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n >= 10, "only {n} seed files in {dir}");
}
