//! The `Ditto` mapper: the payload is a Ditto Protocol message in JSON.

use super::Mapper;
use ferrule_protocol::{CONTENT_TYPE, DittoMessage, ExternalMessage, ProtocolError};

pub struct DittoMapper;

impl Mapper for DittoMapper {
    fn map_inbound(&self, message: &ExternalMessage) -> Result<Vec<DittoMessage>, ProtocolError> {
        let text = message.payload_text().ok_or_else(|| {
            ProtocolError::json_invalid(
                "The payload is not UTF-8 text, so it is not Ditto Protocol JSON.",
            )
        })?;
        Ok(vec![DittoMessage::from_json_str(text)?])
    }

    fn map_outbound(&self, message: &DittoMessage) -> Result<Vec<ExternalMessage>, ProtocolError> {
        let mut out = ExternalMessage::text(message.to_json_string());
        out.content_type = Some(CONTENT_TYPE.to_string());
        out.headers.insert("content-type", CONTENT_TYPE);
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_the_users_most_common_mistake() {
        let json = r#"{"topic":"org.acme/t/things/twin/commands/modify","headers":{"correlation-id":"c"},"path":"/attributes/a","value":1}"#;
        let inbound = DittoMapper
            .map_inbound(&ExternalMessage::text(json))
            .unwrap();
        assert_eq!(inbound.len(), 1);
        let outbound = DittoMapper.map_outbound(&inbound[0]).unwrap();
        assert_eq!(outbound[0].content_type.as_deref(), Some(CONTENT_TYPE));
        assert_eq!(
            DittoMessage::from_json_str(outbound[0].text.as_deref().unwrap()).unwrap(),
            inbound[0]
        );
        // Bytes work too when they are UTF-8 JSON.
        assert!(
            DittoMapper
                .map_inbound(&ExternalMessage::bytes(json.as_bytes().to_vec()))
                .is_ok()
        );
        // Plain JSON without a topic: Ditto's "JSON did not include required </topic> field!".
        let e = DittoMapper
            .map_inbound(&ExternalMessage::text(
                r#"{"thingId": "fan:octopus", "Value": 0}"#,
            ))
            .unwrap_err();
        assert_eq!(e.error, "json.field.missing");
        assert_eq!(e.message, "JSON did not include required </topic> field!");
    }
}
