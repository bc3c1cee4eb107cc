//! Ditto headers: case-insensitive keys that keep the case they were given in.

use indexmap::IndexMap;
use indexmap::map::MutableKeys;
use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

/// Header values are JSON values in the Ditto Protocol (`"response-required": false`,
/// `"requested-acks": [...]`); transports carry them as strings ([`Headers::get_str`]).
///
/// Keys are compared ASCII case-insensitively and keep the case they were last inserted with.
/// A lookup allocates nothing (the key is hashed and compared case-insensitively in place).
/// Keys are hashed with foldhash, randomly seeded per process: SipHash took more instructions
/// than the rest of a lookup, and a message's headers are few and bounded by its size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Headers {
    entries: IndexMap<Key, Value, foldhash::fast::RandomState>,
}

/// A header key as given; hashed and compared ASCII case-insensitively.
#[derive(Debug, Clone)]
struct Key(String);

/// A borrowed key, hashed like a [`Key`]: what lookups use.
struct CaseFolded<'a>(&'a str);

impl std::hash::Hash for CaseFolded<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Lower-cased in chunks on the stack: one `write` per 32 bytes, not one per byte.
        let mut buf = [0u8; 32];
        for chunk in self.0.as_bytes().chunks(buf.len()) {
            let lower = &mut buf[..chunk.len()];
            lower.copy_from_slice(chunk);
            lower.make_ascii_lowercase();
            state.write(lower);
        }
        state.write_u8(0xff);
    }
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        CaseFolded(&self.0).hash(state)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for Key {}

impl indexmap::Equivalent<Key> for CaseFolded<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.0.eq_ignore_ascii_case(&key.0)
    }
}

fn lookup(key: &str) -> CaseFolded<'_> {
    CaseFolded(key)
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    pub fn with_capacity(n: usize) -> Headers {
        Headers {
            entries: IndexMap::with_capacity_and_hasher(n, Default::default()),
        }
    }

    /// Inserts or replaces (in place, taking the new key's case) the header `key`.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.entries.get_full_mut2(&lookup(&key)) {
            Some((_, k, v)) => {
                k.0 = key;
                *v = value;
            }
            None => {
                self.entries.insert(Key(key), value);
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.get(&lookup(key))
    }

    /// The value as a string: strings as they are, other JSON values as JSON text.
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.get(key).map(value_to_header_string)
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.entries.shift_remove(&lookup(key))
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(&lookup(key))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A copy of the headers whose key `keep` accepts, in their order (one copy: nothing is
    /// copied only to be removed again).
    pub fn filtered(&self, mut keep: impl FnMut(&str) -> bool) -> Headers {
        Headers {
            entries: self
                .entries
                .iter()
                .filter(|(k, _)| keep(&k.0))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Removes the headers whose key `remove` accepts, keeping the order of the others;
    /// whether any was removed.
    pub fn remove_where(&mut self, mut remove: impl FnMut(&str) -> bool) -> bool {
        let before = self.entries.len();
        self.entries.retain(|k, _| !remove(&k.0));
        self.entries.len() != before
    }

    /// (key as given, value) in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.0.as_str(), v))
    }

    pub fn correlation_id(&self) -> Option<String> {
        self.get_str("correlation-id")
    }
}

/// The headers taken apart: (key as given, value) in insertion order.
pub struct IntoIter(indexmap::map::IntoIter<Key, Value>);

impl Iterator for IntoIter {
    type Item = (String, Value);
    fn next(&mut self) -> Option<(String, Value)> {
        self.0.next().map(|(k, v)| (k.0, v))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl IntoIterator for Headers {
    type Item = (String, Value);
    type IntoIter = IntoIter;
    fn into_iter(self) -> IntoIter {
        IntoIter(self.entries.into_iter())
    }
}

/// A Ditto header value from its string form (a transport header, the WebAssembly boundary):
/// `true`/`false` and valid JSON that starts with `[` or `{` become that JSON value; every
/// other value stays a string (a correlation id `"42"` stays a string). The inverse of
/// [`value_to_header_string`].
pub fn header_value_from_string(s: &str) -> Value {
    header_value_from_owned(s.to_string())
}

/// [`header_value_from_string`] that keeps the string it is given instead of copying it.
pub fn header_value_from_owned(s: String) -> Value {
    match s.as_str() {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ if s.starts_with('[') || s.starts_with('{') => {
            serde_json::from_str(&s).unwrap_or(Value::String(s))
        }
        _ => Value::String(s),
    }
}

/// [`value_to_header_string`] that moves a string value instead of copying it.
pub fn value_into_header_string(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => value_to_header_string(&other),
    }
}

pub fn value_to_header_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => crate::json::to_string_sized(other, 32),
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.entries.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Headers, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Headers;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object of headers")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Headers, A::Error> {
                read_map(map)
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Reads a JSON object of headers straight into headers: no intermediate map hashed once more.
pub(crate) fn read_map<'de, A: serde::de::MapAccess<'de>>(mut map: A) -> Result<Headers, A::Error> {
    let mut h = Headers::with_capacity(map.size_hint().unwrap_or(0).min(64));
    while let Some((k, v)) = map.next_entry::<String, Value>()? {
        h.insert(k, v);
    }
    Ok(h)
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Headers {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Headers {
        let mut h = Headers::new();
        for (k, v) in iter {
            h.insert(k, v);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filtered_copies_and_removals_keep_the_order_of_the_rest() {
        let mut h = Headers::new();
        for (k, v) in [
            ("a", "1"),
            ("Ditto-X", "2"),
            ("b", "3"),
            ("ditto-y", "4"),
            ("C", "5"),
        ] {
            h.insert(k, v);
        }
        let internal = |k: &str| k.to_ascii_lowercase().starts_with("ditto-");
        let copy = h.filtered(|k| !internal(k));
        assert_eq!(
            copy.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            ["a", "b", "C"]
        );
        assert_eq!(
            copy.get_str("c").as_deref(),
            Some("5"),
            "still case-insensitive"
        );
        assert_eq!(h.len(), 5, "the original is left as it was");
        assert!(h.remove_where(internal));
        assert_eq!(
            h.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            ["a", "b", "C"]
        );
        assert!(!h.remove_where(internal), "nothing left to remove");
        assert!(h.contains("B"));
    }

    #[test]
    fn keys_are_case_insensitive_and_keep_their_case() {
        let mut h = Headers::new();
        h.insert("Correlation-ID", "c-1");
        h.insert("response-required", false);
        assert_eq!(h.get_str("correlation-id").as_deref(), Some("c-1"));
        assert_eq!(h.get_str("RESPONSE-REQUIRED").as_deref(), Some("false"));
        assert_eq!(
            serde_json::to_value(&h).unwrap(),
            json!({"Correlation-ID": "c-1", "response-required": false})
        );
        h.insert("correlation-id", "c-2");
        assert_eq!(h.len(), 2);
        assert_eq!(serde_json::to_value(&h).unwrap()["correlation-id"], "c-2");
        // Replacing keeps the position; the key takes the new case.
        h.insert("RESPONSE-required", true);
        assert_eq!(
            h.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            ["correlation-id", "RESPONSE-required"]
        );
        assert!(h.contains("Response-Required"));
        assert_eq!(h.remove("response-REQUIRED"), Some(json!(true)));
        assert!(!h.contains("response-required"));
        assert_eq!(h.get("x-unknown"), None);
        // Keys differing beyond ASCII case are different keys.
        h.insert("x-\u{e4}", 1);
        h.insert("X-\u{c4}", 2);
        assert_eq!(h.len(), 3);
    }
}
