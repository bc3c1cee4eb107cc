//! Placeholders at run time: what `thing:*`, `topic:*`, `header:*`, ... mean for one signal or
//! one inbound message, and the templates of a connection compiled once at connection start.

use crate::twin::pointer;
use ferrule_placeholders::{PlaceholderError, Resolution, Resolver, Template};
use ferrule_protocol::{Criterion, DittoMessage, Group, Headers};
use indexmap::IndexMap;

/// The placeholders of a Ditto Protocol signal (outbound: target addresses and header mappings,
/// target filters; inbound: after mapping, for enforcement filters and source header mappings).
pub struct SignalResolver<'a> {
    pub signal: &'a DittoMessage,
    pub connection_id: &'a str,
    /// Inbound only: the transport headers of the consumed message.
    pub external_headers: Option<&'a Headers>,
    /// Inbound only: the address the message was consumed from.
    pub source_address: Option<&'a str>,
    /// The first authorization subject of the source, for `request:subjectId`.
    pub subject: Option<&'a str>,
}

impl<'a> SignalResolver<'a> {
    pub fn outbound(signal: &'a DittoMessage, connection_id: &'a str) -> SignalResolver<'a> {
        SignalResolver {
            signal,
            connection_id,
            external_headers: None,
            source_address: None,
            subject: None,
        }
    }

    /// One value, for callers that need a single string (RQL placeholders).
    pub fn value(&self, placeholder: &str) -> Option<String> {
        let (prefix, name) = placeholder.split_once(':')?;
        self.resolve(prefix, name)?.into_iter().next()
    }
}

fn one(v: impl Into<String>) -> Option<Vec<String>> {
    Some(vec![v.into()])
}

impl Resolver for SignalResolver<'_> {
    fn resolve(&self, prefix: &str, name: &str) -> Option<Vec<String>> {
        let t = &self.signal.topic;
        let is_thing = t.group == Group::Things;
        match (prefix, name) {
            ("thing", _) if !is_thing => None,
            ("policy", _) if t.group != Group::Policies => None,
            ("thing" | "entity" | "policy", "id") => one(t.entity_id()),
            ("thing" | "entity" | "policy", "namespace") => one(&t.namespace),
            ("thing" | "entity" | "policy", "name") => one(&t.name),
            ("feature", "id") => {
                let segs = pointer::segments(&self.signal.path);
                (segs.first().map(String::as_str) == Some("features"))
                    .then(|| segs.get(1).cloned().map(|f| vec![f]))
                    .flatten()
            }
            ("thing-json", ptr) => {
                let doc = super::routing::signal_thing(self.signal);
                let v = pointer::get(&doc, &pointer::segments(ptr))?;
                one(ferrule_protocol::headers::value_to_header_string(v))
            }
            ("topic", "full") => one(t.to_string()),
            ("topic", "namespace") => one(&t.namespace),
            ("topic", "entityName") => one(&t.name),
            ("topic", "group") => one(t.group.as_str()),
            ("topic", "channel") => t.channel.map(|c| vec![c.as_str().to_string()]),
            ("topic", "criterion") => one(t.criterion.as_str()),
            ("topic", "action") if t.criterion != Criterion::Messages => {
                t.action.clone().map(|a| vec![a])
            }
            ("topic", "subject") if t.criterion == Criterion::Messages => {
                t.action.clone().map(|a| vec![a])
            }
            ("topic", "action-subject") => t.action.clone().map(|a| vec![a]),
            // Ferrule's internal headers are never seen outside, by placeholders neither: a
            // signal resolves as its external view would.
            ("header", h) if crate::hub::inbound::is_internal(h) => None,
            ("header", h) => match self.external_headers {
                Some(external) => external.get_str(h),
                None => self.signal.headers.get_str(h),
            }
            .map(|v| vec![v]),
            ("connection", "id") => one(self.connection_id),
            ("resource", "path") => one(&self.signal.path),
            ("resource", "type") => one(match (t.group, t.criterion) {
                (_, Criterion::Messages) => "message",
                (Group::Things, _) => "thing",
                (Group::Policies, _) => "policy",
                (Group::Connections, _) => "connection",
            }),
            ("source", "address") => self.source_address.map(|a| vec![a.to_string()]),
            ("request", "subjectId") => self.subject.map(|s| vec![s.to_string()]),
            _ => None,
        }
    }
}

/// The placeholders of an inbound external message before it is mapped: its headers, the
/// source address, the connection and the source's first subject.
pub struct ExternalResolver<'a> {
    pub headers: &'a Headers,
    pub source_address: &'a str,
    pub connection_id: &'a str,
    pub subject: Option<&'a str>,
}

impl Resolver for ExternalResolver<'_> {
    fn resolve(&self, prefix: &str, name: &str) -> Option<Vec<String>> {
        match (prefix, name) {
            ("header", h) => self.headers.get_str(h).map(|v| vec![v]),
            ("source", "address") => one(self.source_address),
            ("connection", "id") => one(self.connection_id),
            ("request", "subjectId") => self.subject.map(|s| vec![s.to_string()]),
            _ => None,
        }
    }
}

/// A header mapping compiled once: header name → template.
#[derive(Debug, Clone, Default)]
pub struct HeaderTemplates(Vec<(String, Template)>);

impl HeaderTemplates {
    pub fn compile(
        mapping: &IndexMap<String, String>,
    ) -> Result<HeaderTemplates, PlaceholderError> {
        mapping
            .iter()
            .map(|(k, v)| Ok((k.clone(), Template::parse(v)?)))
            .collect::<Result<Vec<_>, _>>()
            .map(HeaderTemplates)
    }

    /// The mapped headers; a header whose template does not resolve is left out.
    pub fn apply(&self, resolver: &dyn Resolver) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|(k, t)| match t.resolve(resolver) {
                Resolution::Resolved(values) => values.into_iter().next().map(|v| (k.clone(), v)),
                Resolution::Unresolved | Resolution::Deleted => None,
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A target or reply address: `None` when it does not resolve, and the signal is then not
/// published to this target.
pub fn resolve_address(template: &Template, resolver: &dyn Resolver) -> Option<String> {
    match template.resolve(resolver) {
        Resolution::Resolved(values) => values.into_iter().next().filter(|a| !a.is_empty()),
        Resolution::Unresolved | Resolution::Deleted => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrule_protocol::Topic;
    use serde_json::json;

    fn event() -> DittoMessage {
        let mut m = DittoMessage::new(
            Topic::parse("org.acme/sensor-1/things/twin/events/modified").unwrap(),
            "/features/temp/properties/value",
        );
        m.value = Some(json!(21));
        m.headers.insert("Correlation-Id", "c-7");
        m
    }

    #[test]
    fn outbound_placeholders() {
        let e = event();
        let r = SignalResolver::outbound(&e, "conn-1");
        for (p, v) in [
            ("thing:id", "org.acme:sensor-1"),
            ("thing:namespace", "org.acme"),
            ("thing:name", "sensor-1"),
            ("entity:id", "org.acme:sensor-1"),
            ("feature:id", "temp"),
            (
                "topic:full",
                "org.acme/sensor-1/things/twin/events/modified",
            ),
            ("topic:entityName", "sensor-1"),
            ("topic:channel", "twin"),
            ("topic:criterion", "events"),
            ("topic:action", "modified"),
            ("topic:action-subject", "modified"),
            ("header:correlation-id", "c-7"),
            ("connection:id", "conn-1"),
            ("resource:path", "/features/temp/properties/value"),
            ("resource:type", "thing"),
            ("thing-json:features/temp/properties/value", "21"),
        ] {
            assert_eq!(r.value(p).as_deref(), Some(v), "{p}");
        }
        for p in [
            "topic:subject",
            "policy:id",
            "header:nope",
            "source:address",
            "request:subjectId",
        ] {
            assert_eq!(r.value(p), None, "{p}");
        }
    }

    #[test]
    fn internal_headers_are_no_placeholders() {
        let mut e = event();
        e.headers
            .insert("ditto-auth-context", json!(["nginx:devops"]));
        e.headers.insert("ditto-signal-id", "17");
        e.headers.insert("reply-to", "replies/1");
        let r = SignalResolver::outbound(&e, "conn-1");
        assert_eq!(r.value("header:ditto-auth-context"), None);
        assert_eq!(r.value("header:Ditto-Signal-Id"), None);
        assert_eq!(r.value("header:reply-to").as_deref(), Some("replies/1"));
        let t = Template::parse("r/{{ header:ditto-signal-id | fn:default('none') }}").unwrap();
        assert_eq!(resolve_address(&t, &r).as_deref(), Some("r/none"));
    }

    #[test]
    fn addresses_and_header_mappings() {
        let e = event();
        let r = SignalResolver::outbound(&e, "conn-1");
        let t = Template::parse("telemetry/{{ thing:namespace }}/{{ thing:name | fn:upper() }}")
            .unwrap();
        assert_eq!(
            resolve_address(&t, &r).as_deref(),
            Some("telemetry/org.acme/SENSOR-1")
        );
        let t = Template::parse("replies/{{ header:reply-to }}").unwrap();
        assert_eq!(
            resolve_address(&t, &r),
            None,
            "unresolvable: the target is skipped"
        );
        let mapping: IndexMap<String, String> = [
            ("message-id", "{{ header:correlation-id }}"),
            ("reply-to", "{{ header:reply-to }}"),
            ("fixed", "all-replies"),
            ("kind", "{{ header:kind | fn:default('event') }}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let compiled = HeaderTemplates::compile(&mapping).unwrap();
        assert_eq!(
            compiled.apply(&r),
            vec![
                ("message-id".to_string(), "c-7".to_string()),
                ("fixed".to_string(), "all-replies".to_string()),
                ("kind".to_string(), "event".to_string()),
            ]
        );
    }

    #[test]
    fn inbound_placeholders() {
        let mut h = Headers::new();
        h.insert("device_id", "sensor-1");
        let r = ExternalResolver {
            headers: &h,
            source_address: "devices/sensor-1",
            connection_id: "c",
            subject: Some("ditto:inbound"),
        };
        assert_eq!(
            r.resolve("header", "DEVICE_ID"),
            Some(vec!["sensor-1".into()])
        );
        assert_eq!(
            r.resolve("source", "address"),
            Some(vec!["devices/sensor-1".into()])
        );
        assert_eq!(
            r.resolve("request", "subjectId"),
            Some(vec!["ditto:inbound".into()])
        );
        assert_eq!(r.resolve("thing", "id"), None);
    }
}
