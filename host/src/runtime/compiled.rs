//! A connection's sources and targets prepared once when it starts: mapping pipelines, header
//! mappings, addresses, enforcement, reply targets.

use crate::error::DittoError;
use crate::hub::acks::resolve_label;
use crate::hub::enforcement::Enforcement;
use crate::hub::resolve::HeaderTemplates;
use crate::mapping::MappingContext;
use crate::mapping::pipeline::Pipeline;
use crate::model::Connection;
use crate::model::connection::{
    AcknowledgementRequests, ConnectionType, HeaderMapping, ResponseType,
};
use ferrule_placeholders::Template;
use indexmap::IndexSet;
use std::sync::Arc;

pub struct CompiledReply {
    pub address: Template,
    pub headers: HeaderTemplates,
    pub expected: IndexSet<ResponseType>,
}

pub struct CompiledSource {
    pub addresses: Vec<String>,
    pub pipeline: Arc<Pipeline>,
    pub header_mapping: HeaderTemplates,
    pub enforcement: Option<Enforcement>,
    pub reply: Option<CompiledReply>,
    pub subjects: Vec<Template>,
    pub ack_requests: Option<AcknowledgementRequests>,
    /// The labels of the acknowledgements this source may send (`declaredAcks`, resolved).
    pub declared_acks: IndexSet<String>,
}

pub struct CompiledTarget {
    pub address: Template,
    pub raw_address: String,
    pub headers: HeaderTemplates,
    pub pipeline: Arc<Pipeline>,
    /// The label acknowledged when the broker confirms a publish, `{{connection:id}}` resolved.
    pub issued_ack: Option<String>,
}

pub struct Compiled {
    pub sources: Vec<CompiledSource>,
    pub targets: Vec<CompiledTarget>,
    /// Response diversion (`specificConfig`).
    pub diversion: crate::hub::diversion::Settings,
}

fn placeholder_error(e: ferrule_placeholders::PlaceholderError) -> DittoError {
    DittoError::configuration_invalid(e.message).with_description(e.description)
}

fn templates(mapping: &HeaderMapping) -> Result<HeaderTemplates, DittoError> {
    HeaderTemplates::compile(mapping).map_err(placeholder_error)
}

/// Ditto's default header mapping of a target without one, for the types that have headers
/// (`ImmutableTarget.DEFAULT_HEADER_MAPPING`).
fn target_header_mapping(connection: &Connection, mapping: &HeaderMapping) -> HeaderMapping {
    let with_headers = matches!(
        connection.connection_type,
        ConnectionType::Amqp091
            | ConnectionType::Amqp10
            | ConnectionType::Mqtt5
            | ConnectionType::Kafka
    );
    if mapping.is_empty() && with_headers {
        [
            ("correlation-id", "{{header:correlation-id}}"),
            ("reply-to", "{{header:reply-to}}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    } else {
        mapping.clone()
    }
}

impl Compiled {
    pub fn build(
        connection: &Connection,
        context: &MappingContext,
    ) -> Result<Compiled, DittoError> {
        let mut sources = Vec::new();
        for s in &connection.sources {
            let reply = match &s.reply_target {
                Some(r) if r.enabled => match &r.address {
                    Some(address) => Some(CompiledReply {
                        address: Template::parse(address).map_err(placeholder_error)?,
                        headers: templates(&r.header_mapping)?,
                        expected: r.expected_response_types.clone(),
                    }),
                    None => None,
                },
                _ => None,
            };
            sources.push(CompiledSource {
                addresses: s.addresses.iter().cloned().collect(),
                pipeline: Arc::new(Pipeline::build(connection, &s.payload_mapping, context)?),
                header_mapping: templates(&s.header_mapping)?,
                enforcement: s
                    .enforcement
                    .as_ref()
                    .map(Enforcement::compile)
                    .transpose()
                    .map_err(placeholder_error)?,
                reply,
                subjects: s
                    .authorization_context
                    .iter()
                    .map(|a| Template::parse(a))
                    .collect::<Result<_, _>>()
                    .map_err(placeholder_error)?,
                ack_requests: s.acknowledgement_requests.clone(),
                declared_acks: s
                    .declared_acks
                    .iter()
                    .map(|l| resolve_label(l, &connection.id))
                    .collect(),
            });
        }
        let mut targets = Vec::new();
        for t in &connection.targets {
            targets.push(CompiledTarget {
                address: Template::parse(&t.address).map_err(placeholder_error)?,
                raw_address: t.address.clone(),
                headers: templates(&target_header_mapping(connection, &t.header_mapping))?,
                pipeline: Arc::new(Pipeline::build(connection, &t.payload_mapping, context)?),
                issued_ack: t
                    .issued_acknowledgement_label
                    .as_ref()
                    .map(|l| resolve_label(l, &connection.id)),
            });
        }
        Ok(Compiled {
            sources,
            targets,
            diversion: crate::hub::diversion::Settings::of(&connection.specific_config),
        })
    }
}
