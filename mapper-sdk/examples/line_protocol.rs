// Twin events → InfluxDB line protocol: an outbound mapper.
//
// `org.acme/s1/things/twin/events/modified` at `/features/env/properties` with
// `{"temperature": 21.5, "humidity": 40}` becomes the text
// `twin,thing=org.acme:s1 features.env.properties.temperature=21.5,features.env.properties.humidity=40,revision=7i`
// with content type `text/plain`. Other messages (commands, responses, live messages, events
// without a value such as `deleted`) publish nothing.

use ferrule_mapper_sdk::prelude::*;
use ferrule_mapper_sdk::serde_json::{Map, Value};

struct LineProtocol {
    measurement: String,
}

/// The numbers and booleans under `value`, as `dotted.path=value` fields.
fn fields(path: &str, value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                fields(&format!("{path}/{key}"), member, out);
            }
        }
        Value::Number(n) => out.push(format!("{}={n}", key_of(path))),
        Value::Bool(b) => out.push(format!("{}={b}", key_of(path))),
        _ => {} // strings, arrays and null are left out
    }
}

fn key_of(path: &str) -> String {
    path.trim_matches('/').replace('/', ".")
}

impl Mapper for LineProtocol {
    fn new(options: &Map<String, Value>) -> Result<Self, MappingError> {
        let measurement = match options.get("measurement") {
            None => "twin",
            Some(Value::String(m)) if !m.is_empty() && !m.contains([' ', ',']) => m,
            Some(other) => {
                return Err(MappingError::invalid_options(format!(
                    "<measurement> must be a word without spaces or commas, not {other}"
                )));
            }
        };
        Ok(LineProtocol {
            measurement: measurement.to_string(),
        })
    }

    // map_inbound: the SDK default (the payload is a Ditto Protocol message).

    fn map_outbound(&self, msg: &DittoMessage) -> Result<Vec<ExternalMessage>, MappingError> {
        if msg.topic.criterion != Criterion::Events {
            return Ok(vec![]);
        }
        let mut out = Vec::new();
        if let Some(value) = &msg.value {
            fields(&msg.path, value, &mut out);
        }
        if out.is_empty() {
            return Ok(vec![]);
        }
        if let Some(revision) = msg.revision {
            out.push(format!("revision={revision}i"));
        }
        let thing = format!("{}:{}", msg.topic.namespace, msg.topic.name);
        let line = format!("{},thing={thing} {}", self.measurement, out.join(","));
        log::debug(format!("{} fields of {thing}", out.len()));
        let mut external = ExternalMessage::text(line);
        external.content_type = Some("text/plain".into());
        external.headers.insert("content-type", "text/plain");
        external.headers.insert("thing-id", thing);
        Ok(vec![external])
    }
}

ferrule_mapper_sdk::export!(LineProtocol);

#[cfg(test)]
mod tests {
    use super::*;
    use ferrule_mapper_sdk::serde_json::json;
    use ferrule_mapper_sdk::testing::Harness;

    fn harness() -> Harness<LineProtocol> {
        Harness::new(json!({"measurement": "sensors"})).unwrap()
    }

    #[test]
    fn an_event_becomes_one_line() -> Result<(), MappingError> {
        let thing = ThingId::new("org.acme", "s1")?;
        let event = thing
            .event(EventAction::Modified, "/features/env/properties")
            .value(json!({"temperature": 21.5, "humidity": 40, "unit": "C"}))
            .revision(7)
            .build();
        let out = harness().outbound(&event)?;
        assert_eq!(
            out[0].text.as_deref(),
            Some(
                "sensors,thing=org.acme:s1 features.env.properties.temperature=21.5,\
                 features.env.properties.humidity=40,revision=7i"
            )
        );
        assert_eq!(out[0].content_type.as_deref(), Some("text/plain"));
        assert_eq!(
            out[0].headers.get_str("thing-id").as_deref(),
            Some("org.acme:s1")
        );
        Ok(())
    }

    #[test]
    fn commands_and_events_without_values_publish_nothing() -> Result<(), MappingError> {
        let thing = ThingId::new("org.acme", "s1")?;
        let mut h = harness();
        let command = thing.modify_attribute("/x", json!(1)).build();
        assert!(h.outbound(&command)?.is_empty());
        let deleted = thing.event(EventAction::Deleted, "/").build();
        assert!(h.outbound(&deleted)?.is_empty());
        Ok(())
    }

    #[test]
    fn a_measurement_with_a_space_is_refused() {
        let e = Harness::<LineProtocol>::new(json!({"measurement": "a b"}))
            .err()
            .unwrap();
        assert!(e.message.contains("<measurement>"), "{e:?}");
    }
}
