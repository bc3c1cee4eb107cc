//! Ditto's field selectors (`?fields=id,_revision,sources` or `?fields=a/b,c(d,e)`) for the REST
//! API: [`ferrule_protocol::FieldSelector`] (one linear pass, at most
//! [`ferrule_protocol::fields::MAX_DEPTH`] levels) with its error as the API's [`DittoError`].

use crate::error::DittoError;
use serde_json::{Map, Value};

/// A tree of selected member names; an empty subtree selects the whole member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(ferrule_protocol::FieldSelector);

impl FieldSelector {
    /// Parses `raw`; a malformed or too deep selector is 400 `json.fieldselector.invalid`.
    pub fn parse(raw: &str) -> Result<FieldSelector, DittoError> {
        ferrule_protocol::FieldSelector::parse(raw)
            .map(FieldSelector)
            .map_err(|e| {
                DittoError::new(axum::http::StatusCode::BAD_REQUEST, e.error, e.message)
                    .with_description("Give comma separated JSON pointers, e.g. 'id,sources,specificConfig/clientId' or 'credentials(type)'.")
            })
    }

    /// Whether exactly the member `name` (and nothing else) is selected.
    pub fn is_only(&self, name: &str) -> bool {
        self.0.is_only(name)
    }

    pub fn selects(&self, name: &str) -> bool {
        self.0.selects(name)
    }

    /// The selected part of `object`, in the object's own member order.
    pub fn apply(&self, object: &Map<String, Value>) -> Map<String, Value> {
        self.0.apply(object)
    }
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
            let e = FieldSelector::parse(bad).unwrap_err();
            assert_eq!(e.error, "json.fieldselector.invalid", "{bad}");
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        }
        assert!(FieldSelector::parse("id").unwrap().is_only("id"));
        assert!(!FieldSelector::parse("id,name").unwrap().is_only("id"));
    }

    /// Issue 16: `?fields=` nested 5,000 levels deep (15,000 characters) and a 30,000-character
    /// selector that took quadratic time aborted the process. 100,000 levels and 1 MB, on a
    /// 2 MiB stack (a tokio worker's): refused, or selected correctly.
    #[test]
    fn deep_and_huge_selectors_are_refused_or_selected_on_a_small_stack() {
        let (deep, huge) = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let deep = format!("{}id{}", "a(".repeat(100_000), ")".repeat(100_000));
                let deep = FieldSelector::parse(&deep).unwrap_err();
                let huge = format!("{}id", "x,".repeat(500_000));
                let doc = json!({"id": "c1", "x": 1, "y": 2});
                let huge = FieldSelector::parse(&huge)
                    .unwrap()
                    .apply(doc.as_object().unwrap());
                (deep, huge)
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert_eq!(deep.error, "json.fieldselector.invalid");
        assert!(
            deep.message.contains("deeper than 128 levels"),
            "{}",
            deep.message
        );
        assert_eq!(Value::Object(huge), json!({"id": "c1", "x": 1}));
    }
}
