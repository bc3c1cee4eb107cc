//! The bodies of the `protocol` and `fields` fuzz targets (`fuzz/fuzz_targets/protocol.rs`,
//! `fields.rs`), also run over their seed corpora by `cargo test`. Compiled for tests and for
//! `--cfg fuzzing` builds only.

use crate::fields::{FieldSelector, MAX_DEPTH};
use crate::{DittoMessage, Topic, wire};
use serde_json::Value;

/// Any bytes: the Ditto Protocol parser answers with a message or an error, never a panic; what
/// it accepts writes back to JSON that parses to the same message, both writers agree, the topic
/// round-trips, and crossing the WebAssembly boundary twice changes nothing more than once.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let message = match DittoMessage::from_json_str(text) {
        Ok(m) => m,
        Err(e) => {
            assert!((400..600).contains(&e.status), "{e:?}");
            return;
        }
    };

    // The text writer: parses back to the same message, and is stable.
    let written = message.to_json_string();
    let again = DittoMessage::from_json_str(&written)
        .unwrap_or_else(|e| panic!("the written form {written} does not parse: {e:?}"));
    assert_eq!(again, message, "{written}");
    assert_eq!(again.to_json_string(), written);

    // The tree writer says the same as the text writer.
    let tree: Value = serde_json::from_str(&written).expect("written JSON is JSON");
    assert_eq!(tree, Value::Object(message.to_json()));

    // The topic's string form parses to the same topic.
    let topic = message.topic.to_string();
    assert_eq!(Topic::parse(&topic).as_ref(), Ok(&message.topic), "{topic}");

    // The WebAssembly boundary: what crossed once comes back; a second crossing is the identity.
    let once = DittoMessage::try_from(wire::DittoMessage::from(&message))
        .unwrap_or_else(|e| panic!("{written} does not come back over the wire: {e:?}"));
    assert_eq!(once.topic, message.topic);
    assert_eq!(once.path, message.path);
    assert_eq!(once.value, message.value);
    assert_eq!(once.extra, message.extra);
    assert_eq!(once.headers.len(), message.headers.len());
    let owned = wire::DittoMessage::from(once.clone());
    assert_eq!(owned, wire::DittoMessage::from(&once));
    let twice = DittoMessage::try_from(owned).expect("crossed once, crosses again");
    assert_eq!(twice, once);
}

/// Any text as a field selector (`?fields=`, a message's `fields`, `extraFields`): a selector or
/// `json.fieldselector.invalid` (400) whose message quotes at most an excerpt, never a panic or
/// a deep recursion. An accepted selector nests at most [`MAX_DEPTH`] levels, parses the same
/// again, and applied to the document it describes (every selected member present) selects
/// all of that document; applied to a document without those members, nothing.
pub fn check_fields(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let selector = match FieldSelector::parse(text) {
        Ok(s) => s,
        Err(e) => {
            assert_eq!(e.status, 400, "{e:?}");
            assert_eq!(e.error, crate::fields::FIELD_SELECTOR_INVALID);
            assert!(e.message.len() < 1_000, "{}", e.message);
            return;
        }
    };
    assert!(selector.depth() <= MAX_DEPTH, "{text}");
    assert!(selector.depth() >= 1);
    assert_eq!(FieldSelector::parse(text).as_ref(), Ok(&selector));
    let Value::Object(document) = selector.document() else {
        panic!("a selector's document is an object");
    };
    assert_eq!(selector.apply(&document), document, "{text}");
    let mut other = serde_json::Map::new();
    other.insert("\u{0}not selected".into(), Value::from(1));
    if !selector.selects("\u{0}not selected") {
        assert!(selector.apply(&other).is_empty(), "{text}");
    }
}

#[cfg(test)]
fn run_corpus(target: &str, check: fn(&[u8])) {
    let dir = format!("{}/../fuzz/corpus/{target}", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect(&dir) {
        let path = entry.unwrap().path();
        eprintln!("{}", path.display());
        check(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n >= 10, "only {n} seed files in {dir}");
}

#[cfg(test)]
#[test]
fn the_seed_corpus_passes() {
    run_corpus("protocol", check);
}

#[cfg(test)]
#[test]
fn the_field_selector_seed_corpus_passes() {
    run_corpus("fields", check_fields);
}
