//! A source's or target's `payloadMapping`: the mappers it names, each with its conditions,
//! applied independently to the same message; their outputs are concatenated (spec §6.1).

use super::ditto::DittoMapper;
use super::{Mapper, MappingContext};
use crate::error::DittoError;
use crate::model::Connection;
use crate::monitoring::metrics::Direction;
use crate::monitoring::prometheus::MapperCalls;
use ferrule_placeholders::Resolver;
use ferrule_protocol::{DittoMessage, ExternalMessage, ProtocolError};
use std::sync::Arc;
use std::time::Instant;

/// Outputs of one mapper call at most (Ditto's `max-mapped-inbound-messages`/`-outbound-`).
pub const MAX_OUTPUTS: usize = 10;

struct Entry {
    id: String,
    mapper: Arc<dyn Mapper>,
    /// A script engine: a call may take up to its time limit.
    script: bool,
    incoming_conditions: Vec<String>,
    outgoing_conditions: Vec<String>,
    /// Prometheus call counts and durations of this mapper (when installed).
    calls: Option<MapperCalls>,
}

impl Entry {
    /// Calls the mapper, limits its outputs and records the call.
    fn call<T>(
        &self,
        direction: Direction,
        map: impl FnOnce() -> Result<Vec<T>, ProtocolError>,
    ) -> Mapped<T> {
        let started = self.calls.as_ref().map(|_| Instant::now());
        let result = limit(&self.id, map());
        if let (Some(calls), Some(started)) = (&self.calls, started) {
            calls.observe(direction, result.is_ok(), started.elapsed());
        }
        Mapped {
            mapper: self.id.clone(),
            result,
        }
    }
}

/// What one mapper made of one message.
#[derive(Debug)]
pub struct Mapped<T> {
    pub mapper: String,
    /// `Ok(empty)`: the mapper dropped the message.
    pub result: Result<Vec<T>, ProtocolError>,
}

pub struct Pipeline {
    entries: Vec<Entry>,
}

/// Why an engine refused its options: the error's message and description.
fn reason(e: ProtocolError) -> String {
    match e.description {
        Some(d) if e.message.ends_with(['.', '!', '?']) => format!("{} {d}", e.message),
        Some(d) => format!("{}. {d}", e.message),
        None => e.message,
    }
}

/// A mapper of an engine with its options (also for trials, `mappers::trial`).
pub(crate) fn build_engine(
    engine: &str,
    options: &serde_json::Map<String, serde_json::Value>,
    context: &MappingContext,
) -> Result<Arc<dyn Mapper>, String> {
    match engine {
        "Ditto" => Ok(Arc::new(DittoMapper)),
        "Normalized" => Ok(Arc::new(super::normalized::NormalizedMapper::new(options)?)),
        "RawMessage" => Ok(Arc::new(super::raw::RawMessageMapper::new(options)?)),
        "CloudEvents" => Ok(Arc::new(super::cloudevents::CloudEventsMapper)),
        "ConnectionStatus" => Ok(Arc::new(
            super::inbound_builtins::ConnectionStatusMapper::new(options)?,
        )),
        "ImplicitThingCreation" => Ok(Arc::new(
            super::inbound_builtins::ImplicitThingCreationMapper::new(options)?,
        )),
        "UpdateTwinWithLiveResponse" => Ok(Arc::new(
            super::inbound_builtins::UpdateTwinWithLiveResponseMapper::new(options)?,
        )),
        "Rhai" => ferrule_rhai::RhaiMapper::new(options, ferrule_rhai::RhaiLimits::default())
            .map(|m| Arc::new(m) as Arc<dyn Mapper>)
            .map_err(reason),
        "JavaScript" => ferrule_js::JsMapper::new(options, context.javascript.limits())
            .map(|m| Arc::new(m) as Arc<dyn Mapper>)
            .map_err(reason),
        "WebAssembly" => {
            let Some(registry) = &context.wasm else {
                return Err("The mapping engine <WebAssembly> is not available here.".into());
            };
            let definition = ferrule_wasm::Definition::parse(options, registry.engine())?;
            let slot = registry.resolve(&definition.module)?;
            ferrule_wasm::WasmMapper::new(
                registry.engine(),
                slot,
                definition,
                context.log_sink.clone(),
            )
            .map(|m| Arc::new(m) as Arc<dyn Mapper>)
            .map_err(reason)
        }
        other => Err(format!(
            "The mapping engine <{other}> is not available in this version of Ferrule yet."
        )),
    }
}

impl Pipeline {
    /// The pipeline of a `payloadMapping` list of `connection` (empty: the Ditto mapper).
    pub fn build(
        connection: &Connection,
        payload_mapping: &[String],
        context: &MappingContext,
    ) -> Result<Pipeline, DittoError> {
        let ids: Vec<String> = if payload_mapping.is_empty() {
            vec!["Ditto".to_string()]
        } else {
            payload_mapping.to_vec()
        };
        let mut entries = Vec::with_capacity(ids.len());
        for id in ids {
            let (engine, options, incoming, outgoing) =
                match connection.mapping_definitions.get(&id) {
                    Some(d) => (
                        d.mapping_engine.as_str(),
                        d.options.clone(),
                        d.incoming_conditions.values().cloned().collect(),
                        d.outgoing_conditions.values().cloned().collect(),
                    ),
                    None => (id.as_str(), serde_json::Map::new(), Vec::new(), Vec::new()),
                };
            let mapper = build_engine(engine, &options, context).map_err(|reason| {
                DittoError::configuration_invalid(format!("The mapper <{id}> could not be loaded."))
                    .with_description(reason)
            })?;
            entries.push(Entry {
                id: id.clone(),
                mapper,
                script: matches!(engine, "JavaScript" | "Rhai" | "WebAssembly"),
                incoming_conditions: incoming,
                outgoing_conditions: outgoing,
                calls: crate::monitoring::prometheus::global().map(|m| m.mapper(engine)),
            });
        }
        Ok(Pipeline { entries })
    }

    /// Whether a mapper of this pipeline runs a script, whose calls may take milliseconds:
    /// callers on an async runtime run such pipelines where blocking is allowed.
    pub fn runs_scripts(&self) -> bool {
        self.entries.iter().any(|e| e.script)
    }

    pub fn map_inbound(
        &self,
        message: &ExternalMessage,
        resolver: &dyn Resolver,
    ) -> Vec<Mapped<DittoMessage>> {
        self.entries
            .iter()
            .filter(|e| conditions_hold(&e.incoming_conditions, resolver))
            .map(|e| e.call(Direction::Inbound, || e.mapper.map_inbound(message)))
            .collect()
    }

    pub fn map_outbound(
        &self,
        message: &DittoMessage,
        resolver: &dyn Resolver,
    ) -> Vec<Mapped<ExternalMessage>> {
        self.entries
            .iter()
            .filter(|e| conditions_hold(&e.outgoing_conditions, resolver))
            .map(|e| e.call(Direction::Outbound, || e.mapper.map_outbound(message)))
            .collect()
    }
}

fn conditions_hold(conditions: &[String], resolver: &dyn Resolver) -> bool {
    conditions
        .iter()
        .all(|c| ferrule_placeholders::evaluate_condition(c, resolver).unwrap_or(false))
}

fn limit<T>(id: &str, result: Result<Vec<T>, ProtocolError>) -> Result<Vec<T>, ProtocolError> {
    match result {
        Ok(v) if v.len() > MAX_OUTPUTS => Err(ProtocolError::new(
            400,
            "connectivity:message.mapping.failed",
            format!(
                "The mapper <{id}> produced {} messages; at most {MAX_OUTPUTS} are allowed.",
                v.len()
            ),
            "Make the mapper return fewer messages for one input.",
        )),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse::connection_from_object;
    use ferrule_placeholders::MapResolver;
    use serde_json::json;

    fn connection(extra: serde_json::Value) -> Connection {
        let mut v = json!({"id": "c", "connectionType": "mqtt-5", "connectionStatus": "open",
            "uri": "tcp://h:1883", "targets": [{"address": "t", "topics": ["_/_/things/twin/events"],
            "qos": 0, "authorizationContext": ["a"]}]});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        connection_from_object(v.as_object().unwrap().clone()).unwrap()
    }

    const MODIFY: &str =
        r#"{"topic":"a/b/things/twin/commands/modify","path":"/attributes/x","value":1}"#;

    #[test]
    fn empty_means_ditto_and_several_mappers_concatenate() {
        let c = connection(
            json!({"mappingDefinitions": {"d2": {"mappingEngine": "Ditto", "options": {}}}}),
        );
        let r = MapResolver::builder().build();
        let single = Pipeline::build(&c, &[], &MappingContext::default()).unwrap();
        let out = single.map_inbound(&ExternalMessage::text(MODIFY), &r);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].mapper, "Ditto");
        let double = Pipeline::build(
            &c,
            &["Ditto".into(), "d2".into()],
            &MappingContext::default(),
        )
        .unwrap();
        let out = double.map_inbound(&ExternalMessage::text(MODIFY), &r);
        assert_eq!(
            out.iter()
                .map(|m| m.result.as_ref().unwrap().len())
                .sum::<usize>(),
            2
        );
        let bad = double.map_inbound(&ExternalMessage::text("{}"), &r);
        assert!(bad.iter().all(|m| m.result.is_err()));
    }

    #[test]
    fn conditions_select_mappers() {
        let c = connection(
            json!({"mappingDefinitions": {"cond": {"mappingEngine": "Ditto", "options": {},
            "incomingConditions": {"x": "fn:filter(header:incoming-mapping-required,'eq','true')"}}}}),
        );
        let p = Pipeline::build(&c, &["cond".into()], &MappingContext::default()).unwrap();
        let yes = MapResolver::builder()
            .header("incoming-mapping-required", "true")
            .build();
        let no = MapResolver::builder()
            .header("incoming-mapping-required", "false")
            .build();
        assert_eq!(p.map_inbound(&ExternalMessage::text(MODIFY), &yes).len(), 1);
        assert_eq!(p.map_inbound(&ExternalMessage::text(MODIFY), &no).len(), 0);
    }

    #[test]
    fn engines_not_built_yet_and_broken_scripts_are_refused_with_a_reason() {
        let c = connection(
            json!({"mappingDefinitions": {"wasm": {"mappingEngine": "WebAssembly",
            "options": {"module": "m"}}}}),
        );
        let e = Pipeline::build(&c, &["wasm".into()], &MappingContext::default())
            .err()
            .unwrap();
        assert_eq!(e.message, "The mapper <wasm> could not be loaded.");
        assert!(
            e.description
                .unwrap()
                .contains("<WebAssembly> is not available here")
        );
        let c = connection(
            json!({"mappingDefinitions": {"rhai": {"mappingEngine": "Rhai",
            "options": {"incomingScript": "fn mapToDittoProtocolMsg(h, t, b, c) {\n let x = ;\n}", "outgoingScript": ""}}}}),
        );
        let e = Pipeline::build(&c, &["rhai".into()], &MappingContext::default())
            .err()
            .unwrap();
        assert!(
            e.description.unwrap().contains("line/column #2/"),
            "names line and column"
        );
        let c = connection(
            json!({"mappingDefinitions": {"js": {"mappingEngine": "JavaScript",
            "options": {"incomingScript": "function mapToDittoProtocolMsg() {\n return ;;( }", "outgoingScript": ""}}}}),
        );
        let e = Pipeline::build(&c, &["js".into()], &MappingContext::default())
            .err()
            .unwrap();
        assert!(
            e.description.unwrap().contains("line/column #2/"),
            "names line and column"
        );
    }

    #[test]
    fn javascript_maps_inbound() {
        let c = connection(
            json!({"mappingDefinitions": {"js": {"mappingEngine": "JavaScript",
            "options": {"incomingScript": "function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {\n  var v = JSON.parse(textPayload);\n  return Ditto.buildDittoProtocolMsg('org.acme', headers['device'], 'things', 'twin', 'commands', 'modify', '/attributes/temp', headers, v.t);\n}",
                        "outgoingScript": ""}}}}),
        );
        let p = Pipeline::build(&c, &["js".into()], &MappingContext::default()).unwrap();
        let mut m = ExternalMessage::text(r#"{"t": 21.5}"#);
        m.headers.insert("device", "d1");
        let r = MapResolver::builder().build();
        let out = p.map_inbound(&m, &r);
        let msg = &out[0].result.as_ref().unwrap()[0];
        assert_eq!(
            msg.topic.to_string(),
            "org.acme/d1/things/twin/commands/modify"
        );
        assert_eq!(msg.value, Some(json!(21.5)));
    }
}
