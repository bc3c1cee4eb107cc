//! Ditto headers: case-insensitive keys that keep the case they were given in.

use indexmap::IndexMap;
use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

/// Header values are JSON values in the Ditto Protocol (`"response-required": false`,
/// `"requested-acks": [...]`); transports carry them as strings ([`Headers::get_str`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Headers {
    /// lower-case key → (key as given, value)
    entries: IndexMap<String, (String, Value)>,
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        let key = key.into();
        self.entries
            .insert(key.to_ascii_lowercase(), (key, value.into()));
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.get(&key.to_ascii_lowercase()).map(|(_, v)| v)
    }

    /// The value as a string: strings as they are, other JSON values as JSON text.
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.get(key).map(value_to_header_string)
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.entries
            .shift_remove(&key.to_ascii_lowercase())
            .map(|(_, v)| v)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(&key.to_ascii_lowercase())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// (key as given, value) in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.values().map(|(k, v)| (k.as_str(), v))
    }

    pub fn correlation_id(&self) -> Option<String> {
        self.get_str("correlation-id")
    }
}

/// A Ditto header value from its string form (a transport header, the WebAssembly boundary):
/// `true`/`false` and valid JSON that starts with `[` or `{` become that JSON value; every
/// other value stays a string (a correlation id `"42"` stays a string). The inverse of
/// [`value_to_header_string`].
pub fn header_value_from_string(s: &str) -> Value {
    match s {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ if s.starts_with('[') || s.starts_with('{') => {
            serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
        }
        _ => Value::String(s.to_string()),
    }
}

pub fn value_to_header_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
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
        let raw = IndexMap::<String, Value>::deserialize(d)?;
        let mut h = Headers::new();
        for (k, v) in raw {
            h.insert(k, v);
        }
        Ok(h)
    }
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
    }
}
