//! Ditto's field selectors (`?fields=id,_revision,sources` or `?fields=a/b,c(d,e)`).

use crate::error::DittoError;
use indexmap::IndexMap;
use serde_json::{Map, Value};

/// A tree of selected member names; an empty subtree selects the whole member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    members: IndexMap<String, FieldSelector>,
}

impl FieldSelector {
    pub fn parse(raw: &str) -> Result<FieldSelector, DittoError> {
        let mut selector = FieldSelector::default();
        for part in split_top_level(raw).map_err(|e| invalid(raw, e))? {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            selector.add(part).map_err(|e| invalid(raw, e))?;
        }
        if selector.members.is_empty() {
            return Err(invalid(raw, "it selects nothing"));
        }
        Ok(selector)
    }

    fn add(&mut self, part: &str) -> Result<(), &'static str> {
        // `a/b(c,d)`: the pointer `a/b`, then the members `c` and `d` below it.
        let (pointer, nested) = match part.find('(') {
            Some(open) => {
                if !part.ends_with(')') {
                    return Err("a '(' is not closed at the end of its field");
                }
                (&part[..open], Some(&part[open + 1..part.len() - 1]))
            }
            None => (part, None),
        };
        let mut node = self;
        for name in pointer.split('/').filter(|s| !s.is_empty()) {
            node = node.members.entry(name.to_string()).or_default();
        }
        if let Some(inner) = nested {
            for sub in split_top_level(inner)? {
                if !sub.trim().is_empty() {
                    node.add(sub.trim())?;
                }
            }
        }
        Ok(())
    }

    /// Whether exactly the member `name` (and nothing else) is selected.
    pub fn is_only(&self, name: &str) -> bool {
        self.members.len() == 1
            && self
                .members
                .get(name)
                .is_some_and(|sub| sub.members.is_empty())
    }

    pub fn selects(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }

    /// The selected part of `object`, in the object's own member order.
    pub fn apply(&self, object: &Map<String, Value>) -> Map<String, Value> {
        let mut out = Map::new();
        for (key, value) in object {
            let Some(sub) = self.members.get(key) else {
                continue;
            };
            match value {
                Value::Object(inner) if !sub.members.is_empty() => {
                    let selected = sub.apply(inner);
                    if !selected.is_empty() {
                        out.insert(key.clone(), Value::Object(selected));
                    }
                }
                _ if !sub.members.is_empty() => {}
                other => {
                    out.insert(key.clone(), other.clone());
                }
            }
        }
        out
    }
}

fn split_top_level(raw: &str) -> Result<Vec<&str>, &'static str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, ch) in raw.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("a ')' has no matching '('");
                }
            }
            ',' if depth == 0 => {
                parts.push(&raw[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("a '(' is not closed");
    }
    parts.push(&raw[start..]);
    Ok(parts)
}

fn invalid(raw: &str, reason: &str) -> DittoError {
    DittoError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "json.fieldselector.invalid",
        format!("The field selector <{raw}> is not valid: {reason}."),
    )
    .with_description("Give comma separated JSON pointers, e.g. 'id,sources,specificConfig/clientId' or 'credentials(type)'.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_members_pointers_and_groups_in_document_order() {
        let doc = json!({"id": "x", "name": "n", "a": {"b": 1, "c": 2, "d": 3}, "list": [1]});
        let obj = doc.as_object().unwrap();
        let apply = |s: &str| Value::Object(FieldSelector::parse(s).unwrap().apply(obj));
        assert_eq!(apply("name,id"), json!({"id": "x", "name": "n"}));
        assert_eq!(apply("a/b"), json!({"a": {"b": 1}}));
        assert_eq!(
            apply("a(c,d),list"),
            json!({"a": {"c": 2, "d": 3}, "list": [1]})
        );
        assert_eq!(apply("missing"), json!({}));
        assert_eq!(apply("list/x"), json!({}));
    }

    #[test]
    fn bad_selectors_are_rejected() {
        for bad in ["a(b", "a)b", ",", ""] {
            assert_eq!(
                FieldSelector::parse(bad).unwrap_err().error,
                "json.fieldselector.invalid",
                "{bad}"
            );
        }
        assert!(FieldSelector::parse("id").unwrap().is_only("id"));
        assert!(!FieldSelector::parse("id,name").unwrap().is_only("id"));
    }
}
