//! The [`Mapper`] trait: what a mapper author implements.

use crate::error::MappingError;
use ferrule_protocol::{CONTENT_TYPE, DittoMessage, ExternalMessage};
use serde_json::{Map, Value};

/// A WebAssembly payload mapper in plain Rust types.
///
/// The host creates one instance of the component per worker and calls `configure` once with
/// the mapping definition's `options` (without `module`); the SDK then calls [`Mapper::new`] and
/// keeps the value for every later `map-inbound` / `map-outbound` call of that instance.
///
/// Both directions have defaults, the same as Eclipse Ditto's JavaScript mapper when a function
/// is left as it is: the payload *is* a Ditto Protocol message in JSON. So a mapper for sources
/// implements [`map_inbound`](Mapper::map_inbound) only, a mapper for targets
/// [`map_outbound`](Mapper::map_outbound) only.
///
/// Returning an empty `Vec` drops the message; the host accepts at most 10 messages per call.
pub trait Mapper: Sized + 'static {
    /// The `configure` call: builds the mapper from its options (a JSON object). An error makes
    /// the connection's configuration invalid (the host answers 400 with it), so check the
    /// options here rather than on the first message. [`crate::options::parse`] turns them
    /// into a `#[derive(Deserialize)]` struct with a clear error.
    fn new(options: &Map<String, Value>) -> Result<Self, MappingError>;

    /// A message consumed by a source → 0..n Ditto Protocol messages.
    ///
    /// Default: [`ditto_protocol_inbound`], the payload is a Ditto Protocol message in JSON.
    fn map_inbound(&self, message: &ExternalMessage) -> Result<Vec<DittoMessage>, MappingError> {
        ditto_protocol_inbound(message)
    }

    /// A Ditto Protocol message for a target → 0..n external messages to publish.
    ///
    /// Default: [`ditto_protocol_outbound`], the Ditto Protocol message as JSON text with
    /// content type `application/vnd.eclipse.ditto+json`.
    fn map_outbound(&self, message: &DittoMessage) -> Result<Vec<ExternalMessage>, MappingError> {
        ditto_protocol_outbound(message)
    }
}

/// The payload (text, or bytes that are UTF-8) is one Ditto Protocol message in JSON.
pub fn ditto_protocol_inbound(
    message: &ExternalMessage,
) -> Result<Vec<DittoMessage>, MappingError> {
    let text = message.payload_text().ok_or_else(|| {
        MappingError::invalid_payload(
            "The payload is not UTF-8 text, so it is not a Ditto Protocol message in JSON.",
        )
    })?;
    Ok(vec![DittoMessage::from_json_str(text)?])
}

/// The Ditto Protocol message as JSON text, content type `application/vnd.eclipse.ditto+json`
/// (also set as the `content-type` header).
pub fn ditto_protocol_outbound(
    message: &DittoMessage,
) -> Result<Vec<ExternalMessage>, MappingError> {
    let mut out = ExternalMessage::text(message.to_json_string());
    out.content_type = Some(CONTENT_TYPE.to_string());
    out.headers.insert("content-type", CONTENT_TYPE);
    Ok(vec![out])
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Defaults;
    impl Mapper for Defaults {
        fn new(_: &Map<String, Value>) -> Result<Self, MappingError> {
            Ok(Defaults)
        }
    }

    #[test]
    fn defaults_are_the_ditto_protocol() {
        let json = r#"{"topic":"org.acme/t/things/twin/commands/modify","headers":{"correlation-id":"c"},"path":"/attributes/a","value":1}"#;
        let m = Defaults::new(&Map::new()).unwrap();
        let inbound = m.map_inbound(&ExternalMessage::text(json)).unwrap();
        assert_eq!(inbound[0].path, "/attributes/a");
        let outbound = m.map_outbound(&inbound[0]).unwrap();
        assert_eq!(outbound[0].content_type.as_deref(), Some(CONTENT_TYPE));
        assert_eq!(outbound[0].text.as_deref(), Some(json));
        let e = m
            .map_inbound(&ExternalMessage::bytes(vec![0xff]))
            .unwrap_err();
        assert!(e.message.contains("not UTF-8"), "{e}");
    }
}
