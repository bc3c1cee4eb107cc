//! JSON text on the message path.

/// The JSON text of `value`, written into a buffer of `capacity` bytes to start with (instead of
/// `serde_json::to_string`'s empty one, which grows by doubling from 8 bytes) and directly, not
/// through `fmt` as `Value::to_string` does.
pub fn to_string_sized<T: serde::Serialize + ?Sized>(value: &T, capacity: usize) -> String {
    let mut buf = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut buf, value).expect("serialising a JSON value cannot fail");

    String::from_utf8(buf).expect("serde_json writes UTF-8")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn same_text_as_serde_json() {
        for v in [
            json!(null),
            json!("a\"b\u{e9}"),
            json!({"b": [1, 2.5], "a": {}}),
        ] {
            assert_eq!(super::to_string_sized(&v, 4), v.to_string());
        }
    }
}
