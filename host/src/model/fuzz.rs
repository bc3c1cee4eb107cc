//! The body of the `connection` fuzz target (`fuzz/fuzz_targets/connection.rs`), also run over
//! the seed corpus by `cargo test`. Compiled for tests and for `--cfg fuzzing` builds only.

use super::parse::{MAX_JSON_DEPTH, connection_from_object, json_depth, parse_object};
use super::validate::{ValidationLimits, validate};
use super::{Connection, StoredConnection};
use chrono::DateTime;
use serde_json::Value;

fn parse_and_validate(
    object: serde_json::Map<String, Value>,
) -> Result<Connection, crate::error::DittoError> {
    let mut connection = connection_from_object(object)?;
    validate(&mut connection, &ValidationLimits::default())?;
    Ok(connection)
}

/// Any bytes as the body of `PUT /api/2/connections/fuzz`: the body parser, the connection
/// parser and the validator answer with a connection or a 4xx Ditto error, never a panic. What
/// they accept is stored as a record that reads back equal (as at the next start), and its JSON
/// (what the API returns) parses and validates to the same connection.
pub fn check(data: &[u8]) {
    let mut object = match parse_object(data) {
        Ok(o) => o,
        Err(e) => {
            assert_eq!(e.status, 400, "{e:?}");
            return;
        }
    };
    // As PUT does once it compared a string `id` with the path's.
    if !matches!(object.get("id"), Some(Value::String(_))) {
        object.insert("id".into(), Value::from("fuzz"));
    }
    let connection = match parse_and_validate(object) {
        Ok(c) => c,
        Err(e) => {
            assert!(e.status.is_client_error(), "{e:?}");
            return;
        }
    };

    let record = StoredConnection {
        connection,
        revision: 1,
        created: DateTime::from_timestamp(1_715_867_245, 0).unwrap(),
        modified: DateTime::from_timestamp(1_715_867_245, 0).unwrap(),
    };
    let bytes = serde_json::to_vec(&record).expect("a record serialises");
    let read: StoredConnection = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("the stored record does not read back: {e}"));
    assert_eq!(read, record);

    let json = record.to_json(None);
    assert!(json_depth(&Value::Object(json.clone())) <= MAX_JSON_DEPTH);
    let text = serde_json::to_vec(&json).unwrap();
    let again = parse_object(&text)
        .and_then(parse_and_validate)
        .unwrap_or_else(|e| panic!("the returned JSON is refused: {e:?}"));
    assert_eq!(again, record.connection);
}

#[cfg(test)]
#[test]
fn the_seed_corpus_passes() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/connection");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect(dir) {
        let path = entry.unwrap().path();
        eprintln!("{}", path.display());
        check(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n >= 10, "only {n} seed files in {dir}");
}
