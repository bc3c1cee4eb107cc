//! JSON pointers over `serde_json::Value`, and JSON merge patch (RFC 7396).

use serde_json::{Map, Value};

/// The segments of a pointer such as `/a/b~1c` (`~1` is `/`, `~0` is `~`); empty segments are
/// dropped, so `/`, `` and `//` all point at the root.
pub fn segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

pub fn get<'a>(root: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(root, |v, key| v.as_object().and_then(|m| m.get(key)))
}

/// Sets the value at `path`, creating objects on the way (a non-object on the way is replaced).
pub fn set(root: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        *root = value;
        return;
    };
    let mut node = root;
    for key in parents {
        node = object(node)
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    object(node).insert(last.clone(), value);
}

fn object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().expect("made an object above")
}

/// Removes the value at `path`; `None` when there was none. Removing the root is not done here.
pub fn remove(root: &mut Value, path: &[String]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    let mut node = root;
    for key in parents {
        node = node.as_object_mut()?.get_mut(key)?;
    }
    node.as_object_mut()?.shift_remove(last)
}

/// JSON merge patch: objects merge member by member, `null` removes, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    let target = object(target);
    for (key, value) in patch {
        if value.is_null() {
            target.shift_remove(key);
        } else {
            merge(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// A patch with its `null` members removed: what merging it into nothing gives.
pub fn without_nulls(patch: &Value) -> Value {
    let mut out = Value::Null;
    merge(&mut out, patch);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers() {
        assert_eq!(segments("/a/b~1c/~0d"), ["a", "b/c", "~d"]);
        assert!(segments("/").is_empty());
        let mut v = json!({"a": {"b": 1}});
        assert_eq!(get(&v, &segments("/a/b")), Some(&json!(1)));
        assert_eq!(get(&v, &segments("/a/x")), None);
        set(&mut v, &segments("/x/y/z"), json!(true));
        assert_eq!(v["x"]["y"]["z"], true);
        set(&mut v, &segments("/a/b/c"), json!(2));
        assert_eq!(v["a"]["b"], json!({"c": 2}));
        assert_eq!(remove(&mut v, &segments("/a/b/c")), Some(json!(2)));
        assert_eq!(remove(&mut v, &segments("/a/b/c")), None);
        assert_eq!(remove(&mut v, &segments("/nope/deeper")), None);
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        // The examples of RFC 7396, appendix A.
        for (target, patch, result) in [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ] {
            let mut t = target.clone();
            merge(&mut t, &patch);
            assert_eq!(t, result, "{target} + {patch}");
        }
    }
}
