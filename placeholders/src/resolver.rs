//! A map-backed [`Resolver`] for tests and simple callers.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::Resolver;

/// A [`Resolver`] backed by a map from `"prefix:name"` to values. Header names are case-insensitive.
/// The clock for `time:` placeholders can be fixed with [`MapResolverBuilder::now`].
///
/// ```
/// use ferrule_placeholders::{MapResolver, Resolution, Template};
///
/// let resolver = MapResolver::builder()
///     .thing_id("org.eclipse.ditto:device-1")
///     .header("Correlation-Id", "c-1")
///     .build();
/// let template = Template::parse("telemetry/{{ thing:namespace }}/{{ header:correlation-id }}").unwrap();
/// assert_eq!(
///     template.resolve(&resolver),
///     Resolution::Resolved(vec!["telemetry/org.eclipse.ditto/c-1".to_string()])
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapResolver {
    values: HashMap<String, Vec<String>>,
    now: Option<DateTime<Utc>>,
}

fn key(prefix: &str, name: &str) -> String {
    if prefix == "header" {
        format!("header:{}", name.to_lowercase())
    } else {
        format!("{prefix}:{name}")
    }
}

/// Splits `"prefix:name"` at the first colon; a key without colon is a prefix with empty name.
fn split_key(key: &str) -> (&str, &str) {
    key.split_once(':').unwrap_or((key, ""))
}

impl MapResolver {
    /// An empty resolver: every placeholder is unresolved, `time:` uses the system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder.
    pub fn builder() -> MapResolverBuilder {
        MapResolverBuilder::default()
    }

    /// Sets the values of `"prefix:name"`.
    pub fn insert(&mut self, placeholder: &str, values: Vec<String>) {
        let (prefix, name) = split_key(placeholder);
        self.values.insert(key(prefix, name), values);
    }
}

impl Resolver for MapResolver {
    fn resolve(&self, prefix: &str, name: &str) -> Option<Vec<String>> {
        self.values.get(&key(prefix, name)).cloned()
    }

    fn now(&self) -> DateTime<Utc> {
        self.now.unwrap_or_else(Utc::now)
    }
}

/// Builds a [`MapResolver`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct MapResolverBuilder {
    resolver: MapResolver,
}

impl MapResolverBuilder {
    /// `"prefix:name"` resolves to one value.
    pub fn value(self, placeholder: &str, value: impl Into<String>) -> Self {
        self.values(placeholder, [value.into()])
    }

    /// `"prefix:name"` resolves to several values (like a JSON array claim or an array header).
    pub fn values<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        placeholder: &str,
        values: I,
    ) -> Self {
        self.resolver
            .insert(placeholder, values.into_iter().map(Into::into).collect());
        self
    }

    /// A header (name case-insensitive).
    pub fn header(self, name: &str, value: impl Into<String>) -> Self {
        self.values(&format!("header:{name}"), [value.into()])
    }

    /// `thing:id|namespace|name` and `entity:id|namespace|name` from a thing ID `namespace:name`.
    pub fn thing_id(self, thing_id: &str) -> Self {
        self.entity_ids("thing", thing_id)
            .entity_ids("entity", thing_id)
    }

    /// `policy:id|namespace|name` from a policy ID `namespace:name`.
    pub fn policy_id(self, policy_id: &str) -> Self {
        self.entity_ids("policy", policy_id)
    }

    fn entity_ids(self, prefix: &str, id: &str) -> Self {
        let (namespace, name) = id.split_once(':').unwrap_or(("", id));
        self.value(&format!("{prefix}:id"), id)
            .value(&format!("{prefix}:namespace"), namespace)
            .value(&format!("{prefix}:name"), name)
    }

    /// Fixes the clock used for `time:` placeholders.
    pub fn now(mut self, now: DateTime<Utc>) -> Self {
        self.resolver.now = Some(now);
        self
    }

    /// The resolver.
    pub fn build(self) -> MapResolver {
        self.resolver
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_case_insensitive() {
        let resolver = MapResolver::builder()
            .header("Content-Type", "a")
            .value("HEADER:X", "b")
            .build();
        assert_eq!(
            resolver.resolve("header", "content-type"),
            Some(vec!["a".to_string()])
        );
        assert_eq!(
            resolver.resolve("header", "CONTENT-TYPE"),
            Some(vec!["a".to_string()])
        );
        // only the prefix "header" is special; prefixes are case-sensitive
        assert_eq!(resolver.resolve("HEADER", "X"), Some(vec!["b".to_string()]));
        assert_eq!(resolver.resolve("header", "x"), None);
    }

    #[test]
    fn entity_ids() {
        let resolver = MapResolver::builder()
            .thing_id("org.eclipse:dev:1")
            .policy_id("p:q")
            .build();
        assert_eq!(
            resolver.resolve("thing", "namespace"),
            Some(vec!["org.eclipse".to_string()])
        );
        assert_eq!(
            resolver.resolve("thing", "name"),
            Some(vec!["dev:1".to_string()])
        );
        assert_eq!(
            resolver.resolve("entity", "id"),
            Some(vec!["org.eclipse:dev:1".to_string()])
        );
        assert_eq!(
            resolver.resolve("policy", "name"),
            Some(vec!["q".to_string()])
        );
        assert_eq!(resolver.resolve("feature", "id"), None);
    }
}
