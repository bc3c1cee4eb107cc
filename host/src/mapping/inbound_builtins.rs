//! Built-in inbound mappers of spec §6.2: `ConnectionStatus`, `ImplicitThingCreation` and
//! `UpdateTwinWithLiveResponse`.

use super::Mapper;
use super::ditto::DittoMapper;
use crate::model::record::timestamp;
use chrono::{DateTime, Duration, Utc};
use ferrule_placeholders::{Resolution, Resolver, Template};
use ferrule_protocol::{
    Channel, Criterion, DittoMessage, ExternalMessage, Group, Headers, ProtocolError, Topic,
};
use serde_json::{Map, Value, json};

fn failed(message: impl Into<String>, description: &str) -> ProtocolError {
    ProtocolError::new(
        400,
        "connectivity:message.mapping.failed",
        message,
        description,
    )
}

fn outbound_unsupported(name: &str) -> ProtocolError {
    failed(
        format!("The {name} mapper maps incoming messages only."),
        "Use it in the payloadMapping of a source.",
    )
}

/// Placeholders of an inbound message for built-in mapper options: `header:*`, `time:now`.
struct MessageResolver<'a>(&'a Headers);

impl Resolver for MessageResolver<'_> {
    fn resolve(&self, prefix: &str, name: &str) -> Option<Vec<String>> {
        (prefix == "header").then(|| self.0.get_str(name).map(|v| vec![v]))?
    }
}

fn resolve_one(t: &Template, headers: &Headers) -> Option<String> {
    match t.resolve(&MessageResolver(headers)) {
        Resolution::Resolved(v) => v.into_iter().next().filter(|s| !s.is_empty()),
        _ => None,
    }
}

fn twin_command(thing_id: &str, action: &str, path: &str) -> Result<DittoMessage, ProtocolError> {
    let (ns, name) = thing_id.split_once(':').ok_or_else(|| {
        failed(
            format!("The thing ID '{thing_id}' is not namespace:name."),
            "Check the thing ID option of the mapper.",
        )
    })?;
    Ok(DittoMessage::new(
        Topic::twin(ns, name, Criterion::Commands, Some(action)),
        path,
    ))
}

/// `ConnectionStatus`: Hono's `ttd` and `creation-time` headers become the feature
/// `<featureId>` with `status.readySince` / `status.readyUntil`.
pub struct ConnectionStatusMapper {
    thing_id: Template,
    feature_id: String,
}

impl ConnectionStatusMapper {
    pub fn new(options: &Map<String, Value>) -> Result<ConnectionStatusMapper, String> {
        let thing_id = options
            .get("thingId")
            .and_then(Value::as_str)
            .ok_or("The option 'thingId' is required (e.g. \"{{ header:device_id }}\").")?;
        let feature_id = match options.get("featureId") {
            None | Some(Value::Null) => "ConnectionStatus".to_string(),
            Some(Value::String(f)) => f.clone(),
            Some(_) => return Err("The option 'featureId' must be a string.".into()),
        };
        Ok(ConnectionStatusMapper {
            thing_id: Template::parse(thing_id).map_err(|e| e.message)?,
            feature_id,
        })
    }
}

impl Mapper for ConnectionStatusMapper {
    fn map_inbound(&self, m: &ExternalMessage) -> Result<Vec<DittoMessage>, ProtocolError> {
        let (Some(ttd), Some(created)) = (
            m.headers
                .get_str("ttd")
                .and_then(|t| t.trim().parse::<i64>().ok()),
            m.headers
                .get_str("creation-time")
                .and_then(|t| t.trim().parse::<i64>().ok()),
        ) else {
            return Ok(Vec::new());
        };
        let thing_id = resolve_one(&self.thing_id, &m.headers).ok_or_else(|| {
            failed(
                "The thing ID of the ConnectionStatus mapper could not be resolved.",
                "Check the option 'thingId' and the headers of the message.",
            )
        })?;
        let since: DateTime<Utc> = DateTime::from_timestamp_millis(created).ok_or_else(|| {
            failed(
                format!("Invalid creation-time {created}."),
                "Send epoch milliseconds.",
            )
        })?;
        let mut command = if ttd == 0 {
            let mut c = twin_command(
                &thing_id,
                "modify",
                &format!("/features/{}/properties/status/readyUntil", self.feature_id),
            )?;
            c.value = Some(Value::from(timestamp(&since)));
            c
        } else {
            let until = match ttd {
                -1 => "9999-12-31T23:59:59Z".to_string(),
                t if t < -1 => {
                    return Err(failed(
                        format!("Invalid ttd {t}."),
                        "ttd is -1 (unlimited), 0 (disconnected) or a number of seconds.",
                    ));
                }
                t => timestamp(&(since + Duration::seconds(t))),
            };
            let mut c = twin_command(
                &thing_id,
                "modify",
                &format!("/features/{}", self.feature_id),
            )?;
            c.value = Some(json!({
                "definition": ["org.eclipse.ditto:ConnectionStatus:1.0.0"],
                "properties": {"status": {"readySince": timestamp(&since), "readyUntil": until}}
            }));
            c
        };
        command.headers.insert("response-required", false);
        command.headers.insert("requested-acks", json!([]));
        Ok(vec![command])
    }

    fn map_outbound(&self, _: &DittoMessage) -> Result<Vec<ExternalMessage>, ProtocolError> {
        Err(outbound_unsupported("ConnectionStatus"))
    }
}

/// `ImplicitThingCreation`: every message creates the thing of a template (not overwriting an
/// existing one: `If-None-Match: *` by default).
pub struct ImplicitThingCreationMapper {
    thing: Value,
    command_headers: Vec<(String, Template)>,
}

impl ImplicitThingCreationMapper {
    pub fn new(options: &Map<String, Value>) -> Result<ImplicitThingCreationMapper, String> {
        let thing = match options.get("thing") {
            Some(Value::Object(o)) => Value::Object(o.clone()),
            Some(Value::String(s)) => serde_json::from_str(s)
                .map_err(|e| format!("The option 'thing' is not a JSON object: {e}"))?,
            _ => {
                return Err(
                    "The option 'thing' (a thing template with a thingId) is required.".into(),
                );
            }
        };
        if thing.get("thingId").and_then(Value::as_str).is_none() {
            return Err("The thing template needs a 'thingId'.".into());
        }
        let headers = match options.get("commandHeaders") {
            None | Some(Value::Null) => json!({"If-None-Match": "*"}),
            Some(h @ Value::Object(_)) => h.clone(),
            Some(_) => return Err("The option 'commandHeaders' must be an object.".into()),
        };
        let command_headers = headers
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let text = v
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string());
                Template::parse(&text)
                    .map(|t| (k.clone(), t))
                    .map_err(|e| e.message)
            })
            .collect::<Result<_, _>>()?;
        Ok(ImplicitThingCreationMapper {
            thing,
            command_headers,
        })
    }
}

/// Resolves every string of a JSON template; `None` when one does not resolve.
fn resolve_json(v: &Value, headers: &Headers) -> Option<Value> {
    Some(match v {
        Value::String(s) => Value::from(resolve_one(&Template::parse(s).ok()?, headers)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| resolve_json(x, headers))
                .collect::<Option<_>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Some((k.clone(), resolve_json(x, headers)?)))
                .collect::<Option<_>>()?,
        ),
        other => other.clone(),
    })
}

impl Mapper for ImplicitThingCreationMapper {
    fn map_inbound(&self, m: &ExternalMessage) -> Result<Vec<DittoMessage>, ProtocolError> {
        let thing = resolve_json(&self.thing, &m.headers).ok_or_else(|| {
            failed(
                "The thing template of the ImplicitThingCreation mapper could not be resolved.",
                "Every placeholder of the template must resolve from the message's headers.",
            )
        })?;
        let thing_id = thing["thingId"].as_str().unwrap_or_default().to_string();
        let mut command = twin_command(&thing_id, "create", "/")?;
        for (k, t) in &self.command_headers {
            if let Some(v) = resolve_one(t, &m.headers) {
                command.headers.insert(k.clone(), v);
            }
        }
        if let Some(c) = m.headers.correlation_id() {
            command.headers.insert("correlation-id", c);
        }
        command.value = Some(thing);
        Ok(vec![command])
    }

    fn map_outbound(&self, _: &DittoMessage) -> Result<Vec<ExternalMessage>, ProtocolError> {
        Err(outbound_unsupported("ImplicitThingCreation"))
    }
}

/// `UpdateTwinWithLiveResponse`: a live `retrieve` response also merges its value into the twin;
/// the message itself goes on unchanged.
pub struct UpdateTwinWithLiveResponseMapper {
    headers: Value,
}

impl UpdateTwinWithLiveResponseMapper {
    pub fn new(options: &Map<String, Value>) -> Result<UpdateTwinWithLiveResponseMapper, String> {
        let headers = match options.get("dittoHeadersForMerge") {
            None | Some(Value::Null) => json!({"response-required": false, "if-match": "*"}),
            Some(h @ Value::Object(_)) => h.clone(),
            Some(_) => return Err("The option 'dittoHeadersForMerge' must be an object.".into()),
        };
        Ok(UpdateTwinWithLiveResponseMapper { headers })
    }
}

impl Mapper for UpdateTwinWithLiveResponseMapper {
    fn map_inbound(&self, m: &ExternalMessage) -> Result<Vec<DittoMessage>, ProtocolError> {
        let mut out = DittoMapper.map_inbound(m)?;
        let Some(signal) = out.first() else {
            return Ok(out);
        };
        let t = &signal.topic;
        let is_live_retrieve_response = t.group == Group::Things
            && t.channel == Some(Channel::Live)
            && t.criterion == Criterion::Commands
            && t.action.as_deref() == Some("retrieve")
            && signal.status.is_some_and(|s| (200..300).contains(&s));
        if is_live_retrieve_response && let Some(value) = signal.value.clone() {
            let mut merge = DittoMessage::new(
                Topic::twin(&t.namespace, &t.name, Criterion::Commands, Some("merge")),
                signal.path.clone(),
            );
            merge.value = Some(value);
            merge
                .headers
                .insert("content-type", "application/merge-patch+json");
            let resolved = resolve_json(&self.headers, &m.headers).unwrap_or(Value::Null);
            for (k, v) in resolved.as_object().into_iter().flatten() {
                merge.headers.insert(k.clone(), v.clone());
            }
            if let Some(c) = signal.headers.correlation_id() {
                merge.headers.insert("correlation-id", format!("{c}-merge"));
            }
            out.insert(0, merge);
        }
        Ok(out)
    }

    fn map_outbound(&self, _: &DittoMessage) -> Result<Vec<ExternalMessage>, ProtocolError> {
        Err(outbound_unsupported("UpdateTwinWithLiveResponse"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(headers: &[(&str, &str)], text: &str) -> ExternalMessage {
        let mut m = ExternalMessage::text(text);
        for (k, v) in headers {
            m.headers.insert(*k, *v);
        }
        m
    }

    #[test]
    fn connection_status() {
        let mapper = ConnectionStatusMapper::new(
            json!({"thingId": "org.acme:{{ header:device_id }}"})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        let created = "1700000000000";
        let out = mapper
            .map_inbound(&message(
                &[
                    ("device_id", "d1"),
                    ("ttd", "60"),
                    ("creation-time", created),
                ],
                "",
            ))
            .unwrap();
        assert_eq!(
            out[0].topic.to_string(),
            "org.acme/d1/things/twin/commands/modify"
        );
        assert_eq!(out[0].path, "/features/ConnectionStatus");
        let v = out[0].value.as_ref().unwrap();
        assert_eq!(
            v["definition"],
            json!(["org.eclipse.ditto:ConnectionStatus:1.0.0"])
        );
        assert_eq!(
            v["properties"]["status"]["readySince"],
            "2023-11-14T22:13:20.000Z"
        );
        assert_eq!(
            v["properties"]["status"]["readyUntil"],
            "2023-11-14T22:14:20.000Z"
        );
        assert_eq!(out[0].headers.get("requested-acks"), Some(&json!([])));
        let forever = mapper
            .map_inbound(&message(
                &[
                    ("device_id", "d1"),
                    ("ttd", "-1"),
                    ("creation-time", created),
                ],
                "",
            ))
            .unwrap();
        assert_eq!(
            forever[0].value.as_ref().unwrap()["properties"]["status"]["readyUntil"],
            "9999-12-31T23:59:59Z"
        );
        let gone = mapper
            .map_inbound(&message(
                &[
                    ("device_id", "d1"),
                    ("ttd", "0"),
                    ("creation-time", created),
                ],
                "",
            ))
            .unwrap();
        assert_eq!(
            gone[0].path,
            "/features/ConnectionStatus/properties/status/readyUntil"
        );
        assert_eq!(gone[0].value, Some(json!("2023-11-14T22:13:20.000Z")));
        assert!(
            mapper
                .map_inbound(&message(
                    &[
                        ("device_id", "d1"),
                        ("ttd", "-5"),
                        ("creation-time", created)
                    ],
                    ""
                ))
                .is_err()
        );
        assert!(
            mapper
                .map_inbound(&message(&[("device_id", "d1")], ""))
                .unwrap()
                .is_empty()
        );
        assert!(ConnectionStatusMapper::new(&Map::new()).is_err());
    }

    #[test]
    fn implicit_thing_creation() {
        let mapper = ImplicitThingCreationMapper::new(json!({"thing": {
            "thingId": "org.acme:{{ header:device_id }}",
            "attributes": {"createdBy": "gateway", "device": "{{ header:device_id | fn:upper() }}"}
        }}).as_object().unwrap()).unwrap();
        let out = mapper
            .map_inbound(&message(&[("device_id", "d7")], ""))
            .unwrap();
        assert_eq!(
            out[0].topic.to_string(),
            "org.acme/d7/things/twin/commands/create"
        );
        assert_eq!(out[0].value.as_ref().unwrap()["attributes"]["device"], "D7");
        assert_eq!(
            out[0].headers.get_str("if-none-match").as_deref(),
            Some("*")
        );
        assert!(
            mapper.map_inbound(&message(&[], "")).is_err(),
            "the device id is missing"
        );
        assert!(
            ImplicitThingCreationMapper::new(
                json!({"thing": {"attributes": {}}}).as_object().unwrap()
            )
            .is_err()
        );
    }

    #[test]
    fn update_twin_with_live_response() {
        let mapper = UpdateTwinWithLiveResponseMapper::new(&Map::new()).unwrap();
        let response = r#"{"topic":"org.acme/d1/things/live/commands/retrieve","headers":{"correlation-id":"c"},
                           "path":"/features/temp/properties","value":{"value":21},"status":200}"#;
        let out = mapper.map_inbound(&message(&[], response)).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0].topic.to_string(),
            "org.acme/d1/things/twin/commands/merge"
        );
        assert_eq!(out[0].path, "/features/temp/properties");
        assert_eq!(out[0].value, Some(json!({"value": 21})));
        assert_eq!(out[0].headers.get_str("if-match").as_deref(), Some("*"));
        assert_eq!(
            out[1].topic.to_string(),
            "org.acme/d1/things/live/commands/retrieve"
        );
        let command = r#"{"topic":"org.acme/d1/things/twin/commands/modify","path":"/attributes/a","value":1}"#;
        assert_eq!(mapper.map_inbound(&message(&[], command)).unwrap().len(), 1);
    }
}
