//! Ditto's field selectors: the `fields` of a Ditto Protocol message and the `?fields=` of the
//! REST API, e.g. `thingId,attributes(location,serial),features/lamp/properties`.
//!
//! A selector is parsed in one pass over its text, without recursion, into a tree of member
//! names at most [`MAX_DEPTH`] levels deep; deeper is `json.fieldselector.invalid`. The tree's
//! depth bounds every later walk of it ([`FieldSelector::apply`], drop), so no selector can
//! exhaust the stack, and parsing is linear in the text.

use crate::error::ProtocolError;
use indexmap::IndexMap;
use serde_json::{Map, Value};

/// The deepest member a selector may name: pointer segments and parentheses together
/// (`a/b(c)` names `c` at level 3). Deeper than any JSON value the Ditto Protocol reader
/// accepts (serde_json reads at most 128 nested arrays and objects), so nothing selectable is
/// refused.
pub const MAX_DEPTH: usize = 128;

/// The error code of an invalid field selector (Ditto's `JsonFieldSelectorInvalidException`).
pub const FIELD_SELECTOR_INVALID: &str = "json.fieldselector.invalid";

/// How many characters of a refused selector an error message quotes.
const QUOTED_CHARS: usize = 200;

/// A tree of selected member names; an empty subtree selects the whole member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    members: IndexMap<String, FieldSelector>,
}

/// A node while parsing: its members (name → node index) and its level (the root is 0).
struct Node<'a> {
    members: IndexMap<&'a str, usize>,
    level: usize,
}

/// The nodes of a selector being parsed, children always after their parent.
struct Arena<'a> {
    nodes: Vec<Node<'a>>,
}

impl<'a> Arena<'a> {
    /// The node at `pointer` (slash-separated, empty segments skipped) below `from`, made on
    /// the way where missing.
    fn descend(&mut self, from: usize, pointer: &'a str) -> Result<usize, &'static str> {
        let mut node = from;
        for name in pointer.split('/').filter(|s| !s.is_empty()) {
            node = match self.nodes[node].members.get(name) {
                Some(&child) => child,
                None => {
                    let level = self.nodes[node].level + 1;
                    if level > MAX_DEPTH {
                        return Err("it nests deeper than 128 levels");
                    }
                    let child = self.nodes.len();
                    self.nodes.push(Node {
                        members: IndexMap::new(),
                        level,
                    });
                    self.nodes[node].members.insert(name, child);
                    child
                }
            };
        }
        Ok(node)
    }

    /// The tree, built from the last node to the first (each node's children are done then).
    fn into_tree(self) -> FieldSelector {
        let mut done: Vec<Option<FieldSelector>> = Vec::with_capacity(self.nodes.len());
        done.resize_with(self.nodes.len(), || None);
        for (index, node) in self.nodes.into_iter().enumerate().rev() {
            let members = node
                .members
                .into_iter()
                .map(|(name, child)| (name.to_string(), done[child].take().unwrap_or_default()))
                .collect();
            done[index] = Some(FieldSelector { members });
        }
        done.into_iter().next().flatten().unwrap_or_default()
    }
}

impl FieldSelector {
    /// Parses `raw`: comma-separated JSON pointers, each optionally followed by a group
    /// `(…)` of further selectors below it. Whitespace around a field is ignored. Refused with
    /// `json.fieldselector.invalid` (400): unbalanced parentheses, text after a group's `)`,
    /// a selector that selects nothing, one that nests deeper than [`MAX_DEPTH`].
    pub fn parse(raw: &str) -> Result<FieldSelector, ProtocolError> {
        parse_tree(raw).map_err(|reason| invalid(raw, reason))
    }

    /// Whether exactly the member `name` (and nothing else) is selected.
    pub fn is_only(&self, name: &str) -> bool {
        self.members.len() == 1
            && self
                .members
                .get(name)
                .is_some_and(|sub| sub.members.is_empty())
    }

    /// Whether the member `name` is selected (wholly or in part).
    pub fn selects(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }

    /// How many levels the selector nests (`a` is 1, `a/b(c,d)` 3).
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut pending = vec![(self, 0usize)];
        while let Some((node, level)) = pending.pop() {
            deepest = deepest.max(level);
            pending.extend(node.members.values().map(|sub| (sub, level + 1)));
        }
        deepest
    }

    /// The document this selector selects whole: every selected member, `true` at the leaves.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn document(&self) -> Value {
        Value::Object(
            self.members
                .iter()
                .map(|(name, sub)| {
                    let value = if sub.members.is_empty() {
                        Value::Bool(true)
                    } else {
                        sub.document()
                    };
                    (name.clone(), value)
                })
                .collect(),
        )
    }

    /// The selected part of `object`, in the object's own member order. Recurses once per
    /// level of the selector, so at most [`MAX_DEPTH`] deep.
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

/// One pass over `raw` with a stack of the open groups (a node index each).
fn parse_tree(raw: &str) -> Result<FieldSelector, &'static str> {
    let mut arena = Arena {
        nodes: vec![Node {
            members: IndexMap::new(),
            level: 0,
        }],
    };
    let mut groups: Vec<usize> = vec![0];
    // Where the text of the current field starts; `closed` once its group's `)` was read
    // (only whitespace may follow before the next `,` or `)`).
    let mut start = 0;
    let mut closed = false;
    for (i, byte) in raw.bytes().enumerate() {
        if !matches!(byte, b'(' | b')' | b',') {
            continue;
        }
        let text = &raw[start..i];
        let group = *groups.last().expect("the root group stays open");
        if byte == b'(' {
            if closed {
                return Err("a '(' is not closed at the end of its field");
            }
            groups.push(arena.descend(group, text.trim_start())?);
        } else {
            end_field(&mut arena, group, text, closed)?;
            closed = byte == b')';
            if closed {
                if groups.len() == 1 {
                    return Err("a ')' has no matching '('");
                }
                groups.pop();
            }
        }
        start = i + 1;
    }
    end_field(&mut arena, groups[groups.len() - 1], &raw[start..], closed)?;
    if groups.len() > 1 {
        return Err("a '(' is not closed");
    }
    if arena.nodes[0].members.is_empty() {
        return Err("it selects nothing");
    }
    Ok(arena.into_tree())
}

/// The text of a field up to `,` or `)`: a pointer below `group` (nothing when blank), or only
/// whitespace after a group's `)`.
fn end_field<'a>(
    arena: &mut Arena<'a>,
    group: usize,
    text: &'a str,
    closed: bool,
) -> Result<(), &'static str> {
    let text = text.trim();
    if closed {
        if !text.is_empty() {
            return Err("a '(' is not closed at the end of its field");
        }
    } else if !text.is_empty() {
        arena.descend(group, text)?;
    }
    Ok(())
}

/// `json.fieldselector.invalid` quoting at most [`QUOTED_CHARS`] characters of `raw`.
fn invalid(raw: &str, reason: &str) -> ProtocolError {
    ProtocolError::new(
        400,
        FIELD_SELECTOR_INVALID,
        format!(
            "The field selector <{}> is not valid: {reason}.",
            crate::error::excerpt(raw, QUOTED_CHARS)
        ),
        "Give comma separated JSON pointers, e.g. 'thingId,attributes/location' or \
         'features(lamp,sensor)'; check that every '(' has its ')'.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Runs `f` on a thread with a 2 MiB stack, the size of the test harness' and tokio's
    /// worker threads: a recursion that input can drive overflows it.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .expect("thread")
            .join()
            .expect("no panic, no stack overflow")
    }

    fn apply(selector: &str, doc: &Value) -> Value {
        Value::Object(
            FieldSelector::parse(selector)
                .unwrap()
                .apply(doc.as_object().unwrap()),
        )
    }

    #[test]
    fn selects_members_pointers_and_groups_in_document_order() {
        let doc = json!({"id": "x", "name": "n", "a": {"b": 1, "c": 2, "d": {"e": 3, "f": 4}},
                         "list": [1]});
        assert_eq!(apply("name,id", &doc), json!({"id": "x", "name": "n"}));
        assert_eq!(apply("a/b", &doc), json!({"a": {"b": 1}}));
        assert_eq!(apply(" /a//b/ ", &doc), json!({"a": {"b": 1}}));
        assert_eq!(
            apply("a(c,d),list", &doc),
            json!({"a": {"c": 2, "d": {"e": 3, "f": 4}}, "list": [1]})
        );
        assert_eq!(
            apply("a(d(f), b )", &doc),
            json!({"a": {"b": 1, "d": {"f": 4}}})
        );
        assert_eq!(
            apply("a/d(e),a(c)", &doc),
            json!({"a": {"c": 2, "d": {"e": 3}}})
        );
        assert_eq!(apply("(id)", &doc), json!({"id": "x"}));
        assert_eq!(apply("a(),id", &doc), json!({"id": "x", "a": doc["a"]}));
        assert_eq!(apply("missing", &doc), json!({}));
        assert_eq!(apply("list/x", &doc), json!({}));
        assert_eq!(FieldSelector::parse("a/b(c)").unwrap().depth(), 3);
        assert!(FieldSelector::parse("id").unwrap().is_only("id"));
        assert!(!FieldSelector::parse("id,name").unwrap().is_only("id"));
        assert!(!FieldSelector::parse("id(x)").unwrap().is_only("id"));
        assert!(FieldSelector::parse("a/b").unwrap().selects("a"));
    }

    #[test]
    fn bad_selectors_are_refused_naming_the_reason() {
        for (bad, reason) in [
            ("a(b", "a '(' is not closed"),
            ("a)b", "a ')' has no matching '('"),
            ("a(b))", "a ')' has no matching '('"),
            ("a(b)c", "a '(' is not closed at the end of its field"),
            ("a(b)(c)", "a '(' is not closed at the end of its field"),
            (",", "it selects nothing"),
            ("", "it selects nothing"),
            ("()", "it selects nothing"),
        ] {
            let e = FieldSelector::parse(bad).unwrap_err();
            assert_eq!(e.error, FIELD_SELECTOR_INVALID, "{bad}");
            assert_eq!(e.status, 400);
            assert_eq!(
                e.message,
                format!("The field selector <{bad}> is not valid: {reason}.")
            );
        }
    }

    #[test]
    fn the_deepest_selector_is_accepted_and_one_level_more_refused() {
        let nested =
            |levels: usize| format!("{}x{}", "a(".repeat(levels - 1), ")".repeat(levels - 1));
        let deepest = FieldSelector::parse(&nested(MAX_DEPTH)).unwrap();
        assert_eq!(deepest.depth(), MAX_DEPTH);
        let e = FieldSelector::parse(&nested(MAX_DEPTH + 1)).unwrap_err();
        assert!(
            e.message.ends_with("it nests deeper than 128 levels."),
            "{}",
            e.message
        );
        let pointer = vec!["a"; MAX_DEPTH + 1].join("/");
        assert!(FieldSelector::parse(&pointer).is_err());
        assert!(FieldSelector::parse(&pointer[2..]).is_ok());
    }

    /// Issue 16: `a(a(a(…)))` nested 20,000 levels deep (60 KB) in a retrieve overflowed the
    /// stack of the worker that parsed it. 100,000 levels, on a 2 MiB stack: refused.
    #[test]
    fn a_selector_nested_100_000_levels_is_refused_on_a_small_stack() {
        let e = on_small_stack(|| {
            let deep = format!("{}a{}", "a(".repeat(100_000), ")".repeat(100_000));
            FieldSelector::parse(&deep).unwrap_err()
        });
        assert_eq!(e.error, FIELD_SELECTOR_INVALID);
        assert!(
            e.message.contains("deeper than 128 levels"),
            "{}",
            e.message
        );
        assert!(
            e.message.len() < 400,
            "the message quotes an excerpt: {}",
            e.message
        );
        let unclosed = on_small_stack(|| FieldSelector::parse(&"(".repeat(100_000)).unwrap_err());
        assert!(unclosed.message.ends_with("a '(' is not closed."));
        let pointer = on_small_stack(|| FieldSelector::parse(&"a/".repeat(100_000)).unwrap_err());
        assert!(pointer.message.contains("deeper than 128 levels"));
        // Parentheses without pointers nest no member: a flat selection.
        let empty_groups = on_small_stack(|| {
            let s = format!("{}id{}", "(".repeat(100_000), ")".repeat(100_000));
            FieldSelector::parse(&s).unwrap()
        });
        assert!(empty_groups.is_only("id"));
    }

    /// 1 MB selectors parse in one linear pass (the quadratic 30,000-character selector of
    /// issue 16 took seconds before): wide ones select correctly, malformed ones are refused.
    #[test]
    fn one_megabyte_selectors_are_parsed_in_linear_time() {
        let started = std::time::Instant::now();
        let wide: String = (0..150_000).map(|i| format!("f{i},")).collect::<String>();
        assert!(wide.len() > 1_000_000);
        let doc = json!({"f7": 1, "f149999": 2, "g": 3});
        let (selected, nested) = on_small_stack(move || {
            let selected = apply(&wide, &doc);
            // A group of 1 MB below one member, and a long chain of groups side by side.
            let group = format!("a({})", "b,".repeat(500_000));
            let nested = FieldSelector::parse(&group).unwrap();
            let chains = "a(b(c(d))),".repeat(100_000);
            assert!(FieldSelector::parse(&chains).unwrap().selects("a"));
            let quadratic = format!("{}{}", "a(".repeat(15_000), ")".repeat(15_000));
            assert!(FieldSelector::parse(&quadratic).is_err());
            (selected, nested)
        });
        assert_eq!(selected, json!({"f7": 1, "f149999": 2}));
        assert_eq!(nested.depth(), 2);
        // Linear: well under a second even unoptimised on a loaded machine (it took minutes).
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }
}
