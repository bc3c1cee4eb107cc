//! The mapper of the top-level README: `{"device": "s1", "fahrenheit": 70.7}` → a `modify` of
//! `/features/temperature/properties/value` in Celsius. `cargo run --example celsius` runs it
//! once through the native harness.

use ferrule_mapper_sdk::payload;
use ferrule_mapper_sdk::prelude::*;
use ferrule_mapper_sdk::serde_json::{Map, Value, json};
use ferrule_mapper_sdk::testing::Harness;

struct Celsius {
    namespace: String,
}

impl Mapper for Celsius {
    fn new(options: &Map<String, Value>) -> Result<Self, MappingError> {
        let namespace = options.get("namespace").and_then(Value::as_str);
        Ok(Celsius {
            namespace: namespace.unwrap_or("org.acme").to_string(),
        })
    }

    fn map_inbound(&self, msg: &ExternalMessage) -> Result<Vec<DittoMessage>, MappingError> {
        let reading = payload::json(msg)?;
        let device = reading["device"]
            .as_str()
            .ok_or_else(|| MappingError::invalid_payload("The payload has no <device>."))?;
        let fahrenheit = reading["fahrenheit"]
            .as_f64()
            .ok_or_else(|| MappingError::invalid_payload("The payload has no <fahrenheit>."))?;
        let celsius = ((fahrenheit - 32.0) / 1.8 * 100.0).round() / 100.0;
        let thing = ThingId::new(&self.namespace, device)?;
        Ok(vec![
            thing
                .modify_feature_property("temperature", "value", json!(celsius))
                .correlation_id_from(&msg.headers)
                .build(),
        ])
    }
}

ferrule_mapper_sdk::export!(Celsius);

fn main() -> Result<(), MappingError> {
    let mut harness = Harness::<Celsius>::new(json!({"namespace": "org.acme"}))?;
    let out = harness.inbound(ExternalMessage::text(
        r#"{"device":"s1","fahrenheit":70.7}"#,
    ))?;
    assert_eq!(out[0].value, Some(json!(21.5)));
    println!("{}", out[0].to_json_string());
    Ok(())
}
