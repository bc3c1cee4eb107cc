//! Ditto's `PipelineElement`: what flows through a pipeline of functions.

/// `PipelineElementResolved` (never empty), `PipelineElementUnresolved` or `PipelineElementDeleted`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Element {
    Resolved(Vec<String>),
    Unresolved,
    Deleted,
}

impl Element {
    /// `PipelineElement.resolved(values)`: an empty collection is unresolved.
    pub(crate) fn resolved(values: Vec<String>) -> Element {
        if values.is_empty() {
            Element::Unresolved
        } else {
            Element::Resolved(values)
        }
    }

    pub(crate) fn single(value: impl Into<String>) -> Element {
        Element::Resolved(vec![value.into()])
    }

    /// `PipelineElement.toStream()`: the resolved values, nothing for unresolved or deleted.
    pub(crate) fn values(&self) -> &[String] {
        match self {
            Element::Resolved(values) => values,
            _ => &[],
        }
    }

    /// `PipelineElement.findFirst()`.
    pub(crate) fn first(&self) -> Option<&str> {
        self.values().first().map(String::as_str)
    }

    /// `PipelineElement.concat`: deleted wins, unresolved is neutral.
    pub(crate) fn concat(self, other: Element) -> Element {
        match (self, other) {
            (Element::Deleted, _) | (_, Element::Deleted) => Element::Deleted,
            (Element::Unresolved, other) => other,
            (resolved, Element::Unresolved) => resolved,
            (Element::Resolved(mut values), Element::Resolved(more)) => {
                values.extend(more);
                Element::Resolved(values)
            }
        }
    }

    /// `PipelineElement.onResolved`: each resolved value is processed, the results are concatenated.
    pub(crate) fn on_resolved(self, mut processor: impl FnMut(&str) -> Element) -> Element {
        match self {
            Element::Resolved(values) => values
                .iter()
                .map(|value| processor(value))
                .fold(Element::Unresolved, Element::concat),
            other => other,
        }
    }

    /// `PipelineElement.map`.
    pub(crate) fn map(self, mut mapper: impl FnMut(&str) -> String) -> Element {
        self.on_resolved(|value| Element::single(mapper(value)))
    }

    /// `PipelineElement.onUnresolved`.
    pub(crate) fn on_unresolved(self, next: impl FnOnce() -> Element) -> Element {
        match self {
            Element::Unresolved => next(),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Element::{self, *};

    fn r(values: &[&str]) -> Element {
        Resolved(values.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn resolved_of_nothing_is_unresolved() {
        assert_eq!(Element::resolved(vec![]), Unresolved);
        assert_eq!(Element::resolved(vec![String::new()]), r(&[""]));
    }

    #[test]
    fn concat_lattice() {
        assert_eq!(r(&["a"]).concat(r(&["b"])), r(&["a", "b"]));
        assert_eq!(r(&["a"]).concat(Unresolved), r(&["a"]));
        assert_eq!(Unresolved.concat(r(&["b"])), r(&["b"]));
        assert_eq!(r(&["a"]).concat(Deleted), Deleted);
        assert_eq!(Deleted.concat(r(&["a"])), Deleted);
        assert_eq!(Unresolved.concat(Unresolved), Unresolved);
    }

    #[test]
    fn on_resolved_processes_each_value() {
        let out = r(&["a", "bb", "c"]).on_resolved(|v| {
            if v.len() == 1 {
                Element::single(v.to_uppercase())
            } else {
                Unresolved
            }
        });
        assert_eq!(out, r(&["A", "C"]));
        assert_eq!(Unresolved.map(|v| v.to_string()), Unresolved);
        assert_eq!(Deleted.map(|v| v.to_string()), Deleted);
        assert_eq!(Deleted.on_unresolved(|| r(&["x"])), Deleted);
        assert_eq!(Unresolved.on_unresolved(|| r(&["x"])), r(&["x"]));
    }
}
