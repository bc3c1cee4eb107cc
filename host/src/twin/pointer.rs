//! JSON pointers over `serde_json::Value`, and JSON merge patch (RFC 7396).

use serde_json::{Map, Value};

/// The segments of a pointer such as `/a/b~1c` (`~1` is `/`, `~0` is `~`); empty segments are
/// dropped, so `/`, `` and `//` all point at the root.
pub fn segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.contains('~') {
                s.replace("~1", "/").replace("~0", "~")
            } else {
                s.to_string()
            }
        })
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
///
/// Iterative: one frame per nested object of the patch lives on the heap, not the stack, so a
/// patch of any depth merges. (Whatever is built is still dropped recursively by serde_json;
/// the callers bound the depth of what they keep.)
pub fn merge(target: &mut Value, patch: &Value) {
    /// An object of the patch being merged into `target`, taken out of its parent meanwhile.
    struct Frame<'p> {
        target: Map<String, Value>,
        members: serde_json::map::Iter<'p>,
        /// The member of the parent frame's target this one goes back to.
        key: &'p str,
    }
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    let mut stack = vec![Frame {
        target: take_object(target),
        members: patch.iter(),
        key: "",
    }];
    while let Some(frame) = stack.last_mut() {
        match frame.members.next() {
            Some((key, Value::Null)) => {
                frame.target.shift_remove(key);
            }
            Some((key, Value::Object(inner))) => {
                // The member stays where it is (as null) until its merged value comes back.
                let slot = frame.target.entry(key.clone()).or_insert(Value::Null);
                let target = take_object(slot);
                stack.push(Frame {
                    target,
                    members: inner.iter(),
                    key,
                });
            }
            Some((key, value)) => {
                frame.target.insert(key.clone(), value.clone());
            }
            None => {
                let done = stack.pop().expect("the frame just looked at");
                match stack.last_mut() {
                    Some(parent) => {
                        if let Some(slot) = parent.target.get_mut(done.key) {
                            *slot = Value::Object(done.target);
                        }
                    }
                    None => *target = Value::Object(done.target),
                }
            }
        }
    }
}

/// The object `v` holds, taken out of it (an empty one for anything else, which a merge
/// replaces).
fn take_object(v: &mut Value) -> Map<String, Value> {
    match std::mem::take(v) {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Drops `value` without recursion: serde_json's own drop recurses once per level, so a value
/// nested far deeper than the stored limit (built by a hostile path or patch before it was
/// refused) would overflow the stack on its way out.
pub fn dismantle(value: Value) {
    let mut pending = vec![value];
    while let Some(v) = pending.pop() {
        match v {
            Value::Array(items) => pending.extend(items),
            Value::Object(members) => pending.extend(members.into_iter().map(|(_, v)| v)),
            _ => {}
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

    /// Runs `f` on a thread with a 2 MiB stack, a tokio worker's: a recursion that input can
    /// drive overflows it.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .expect("thread")
            .join()
            .expect("no panic, no stack overflow")
    }

    /// `{"a":{"a":…{"a":leaf}}}` `levels` deep, built without recursion.
    fn nested(levels: usize, leaf: Value) -> Value {
        let mut v = leaf;
        for _ in 0..levels {
            let mut m = Map::new();
            m.insert("a".into(), v);
            v = Value::Object(m);
        }
        v
    }

    /// Issue 16: pointers and merge patches 100,000 levels deep (a path of 100,000 segments,
    /// a patch nested as deep as nothing serde reads, yet a mapper or a path could build it) are
    /// followed, merged and dropped on a 2 MiB stack.
    #[test]
    fn pointers_and_patches_100_000_levels_deep_on_a_small_stack() {
        let (found, removed, leaf) = on_small_stack(|| {
            let path = segments(&"/a".repeat(100_000));
            let mut doc = json!({});
            set(&mut doc, &path, json!(1));
            let found = get(&doc, &path).cloned();
            let removed = remove(&mut doc, &path);
            let mut merged = json!({"a": {"b": 2}});
            let patch = nested(100_000, json!({"c": null, "d": 4}));
            merge(&mut merged, &patch);
            dismantle(patch);
            let leaf = get(&merged, &vec!["a".to_string(); 100_000]).cloned();
            assert_eq!(merged["a"]["b"], 2);
            dismantle(merged);
            dismantle(without_nulls(&doc));
            dismantle(doc);
            (found, removed, leaf)
        });
        assert_eq!(found, Some(json!(1)));
        assert_eq!(removed, Some(json!(1)));
        assert_eq!(leaf, Some(json!({"d": 4})));
    }

    /// 1 MB pointers and patches: one long segment, 300,000 segments, 100,000 members.
    #[test]
    fn one_megabyte_pointers_and_patches() {
        on_small_stack(|| {
            let long = "s".repeat(1_000_000);
            assert_eq!(segments(&format!("/{long}~1")), [format!("{long}/")]);
            let many = "/~0".repeat(350_000);
            assert_eq!(segments(&many).len(), 350_000);
            let wide: Map<String, Value> = (0..100_000)
                .map(|i| {
                    (
                        format!("m{i}"),
                        if i % 2 == 0 { json!(i) } else { json!(null) },
                    )
                })
                .collect();
            let mut target = json!({"m1": "gone", "keep": true});
            merge(&mut target, &Value::Object(wide));
            let object = target.as_object().unwrap();
            assert_eq!(object.len(), 50_001);
            assert_eq!(object["keep"], true);
            assert!(!object.contains_key("m1"));
        });
    }

    #[test]
    fn merge_keeps_member_order_and_replaces_non_objects() {
        let mut t = json!({"x": 1, "a": {"p": 1, "q": 2}, "z": 3});
        merge(
            &mut t,
            &json!({"a": {"p": null, "r": {"s": 1}}, "x": {"y": 1}}),
        );
        assert_eq!(
            t,
            json!({"x": {"y": 1}, "a": {"q": 2, "r": {"s": 1}}, "z": 3})
        );
        let keys: Vec<&String> = t.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["x", "a", "z"]);
        let mut scalar = json!(5);
        merge(&mut scalar, &json!({"a": {}}));
        assert_eq!(scalar, json!({"a": {}}));
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
