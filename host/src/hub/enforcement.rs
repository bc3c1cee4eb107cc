//! Source enforcement (spec §1.2): the resolved `input` of a consumed message must equal one of
//! the `filters` resolved against the signal it was mapped to, or the signal is refused.

use crate::model::connection::Enforcement as EnforcementConfig;
use ferrule_placeholders::{PlaceholderError, Resolution, Resolver, Template};
use ferrule_protocol::ProtocolError;

#[derive(Debug, Clone)]
pub struct Enforcement {
    input: Template,
    filters: Vec<Template>,
}

pub fn enforcement_failed(entity_id: &str) -> ProtocolError {
    ProtocolError::new(
        400,
        "connectivity:connection.id.enforcement.failed",
        format!(
            "The configured filters could not be matched against the given target with ID '{entity_id}'."
        ),
        "Either modify the configured filters or the target of the message.",
    )
}

impl Enforcement {
    pub fn compile(config: &EnforcementConfig) -> Result<Enforcement, PlaceholderError> {
        Ok(Enforcement {
            input: Template::parse(&config.input)?,
            filters: config
                .filters
                .iter()
                .map(|f| Template::parse(f))
                .collect::<Result<_, _>>()?,
        })
    }

    /// `external` resolves the input (headers, source address); `signal` resolves the filters
    /// (`thing:*`, `entity:*`). An input that does not resolve fails.
    pub fn check(
        &self,
        external: &dyn Resolver,
        signal: &dyn Resolver,
        entity_id: &str,
    ) -> Result<(), ProtocolError> {
        let Resolution::Resolved(inputs) = self.input.resolve(external) else {
            return Err(enforcement_failed(entity_id));
        };
        let matched = self.filters.iter().any(|f| match f.resolve(signal) {
            Resolution::Resolved(values) => values.iter().any(|v| inputs.contains(v)),
            _ => false,
        });
        if matched {
            Ok(())
        } else {
            Err(enforcement_failed(entity_id))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::resolve::{ExternalResolver, SignalResolver};
    use ferrule_protocol::{DittoMessage, Headers, Topic};
    use indexmap::IndexSet;

    fn enforcement(input: &str, filters: &[&str]) -> Enforcement {
        Enforcement::compile(&EnforcementConfig {
            input: input.into(),
            filters: filters
                .iter()
                .map(|s| s.to_string())
                .collect::<IndexSet<_>>(),
        })
        .unwrap()
    }

    #[test]
    fn input_must_match_a_filter() {
        let signal = DittoMessage::new(
            Topic::parse("org.acme/sensor-1/things/twin/commands/modify").unwrap(),
            "/attributes/a",
        );
        let mut headers = Headers::new();
        headers.insert("device_id", "org.acme:sensor-1");
        let external = ExternalResolver {
            headers: &headers,
            source_address: "devices/sensor-1",
            connection_id: "c",
            subject: None,
        };
        let sig = SignalResolver::outbound(&signal, "c");
        assert!(
            enforcement("{{ header:device_id }}", &["{{ thing:id }}"])
                .check(&external, &sig, "org.acme:sensor-1")
                .is_ok()
        );
        assert!(
            enforcement("{{ source:address }}", &["devices/{{ thing:name }}"])
                .check(&external, &sig, "x")
                .is_ok()
        );
        assert!(
            enforcement(
                "{{ source:address }}",
                &["other/{{ thing:name }}", "devices/{{ thing:name }}"]
            )
            .check(&external, &sig, "x")
            .is_ok()
        );
        let e = enforcement("{{ source:address }}", &["devices/{{ thing:namespace }}"])
            .check(&external, &sig, "org.acme:sensor-1")
            .unwrap_err();
        assert_eq!(e.error, "connectivity:connection.id.enforcement.failed");
        assert_eq!(e.status, 400);
        assert!(e.message.contains("'org.acme:sensor-1'"));
        let missing = enforcement("{{ header:absent }}", &["{{ thing:id }}"]);
        assert!(missing.check(&external, &sig, "x").is_err());
    }
}
