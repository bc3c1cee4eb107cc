#![allow(dead_code)]

use chrono::{DateTime, Utc};
use ferrule_placeholders::{
    MapResolver, MapResolverBuilder, PlaceholderError, Resolution, Template,
};

/// 2024-05-16T13:47:25.123Z, a Thursday.
pub fn fixed_now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-05-16T13:47:25.123Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A resolver like one for an outbound twin event of thing `org.eclipse.ditto:device-1`.
pub fn builder() -> MapResolverBuilder {
    MapResolver::builder()
        .thing_id("org.eclipse.ditto:device-1")
        .policy_id("org.eclipse.ditto:policy-1")
        .value("feature:id", "lamp")
        .value("connection:id", "conn-1")
        .value("thing-json:attributes/location", "kitchen")
        .value(
            "topic:full",
            "org.eclipse.ditto/device-1/things/twin/events/modified",
        )
        .value("topic:namespace", "org.eclipse.ditto")
        .value("topic:entityName", "device-1")
        .value("topic:group", "things")
        .value("topic:channel", "twin")
        .value("topic:criterion", "events")
        .value("topic:action", "modified")
        .value("topic:action-subject", "modified")
        .value("resource:type", "thing")
        .value("resource:path", "/features/lamp")
        .value("request:subjectId", "integration:solution:connection")
        .value("source:address", "telemetry/#")
        .header("Correlation-Id", "corr-1")
        .header("device-id", "org.eclipse.ditto:device-1")
        .header("content-type", "application/json")
        .now(fixed_now())
}

pub fn resolver() -> MapResolver {
    builder().build()
}

pub fn resolve(template: &str, resolver: &MapResolver) -> Resolution {
    Template::parse(template)
        .unwrap_or_else(|e| panic!("{template}: {e:?}"))
        .resolve(resolver)
}

pub fn resolved(values: &[&str]) -> Resolution {
    Resolution::Resolved(values.iter().map(|s| s.to_string()).collect())
}

pub fn parse_error(template: &str) -> PlaceholderError {
    Template::parse(template).expect_err(template)
}
