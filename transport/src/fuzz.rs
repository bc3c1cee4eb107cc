//! The body of the `headers` fuzz target (`fuzz/fuzz_targets/headers.rs`), also run over the seed
//! corpus by `cargo test`. Compiled for tests and for `--cfg fuzzing` builds only.
//!
//! Input: the first line is the message's content type (empty: none); the following lines up to
//! an empty line are headers `name=value` (values as a transport gives them: `true`, `[1]` and
//! `{..}` become JSON); the rest is the payload (text when it is UTF-8). The same bytes are also
//! given, whole, to the decoders of what a broker sends: an MQTT 5 packet, an AMQP 0.9.1 content
//! header and headers table, an AMQP 1.0 message.

use crate::{amqp10, amqp091, mqtt::wire};
use bytes::BytesMut;
use ferrule_protocol::headers::{header_value_from_string, value_to_header_string};
use ferrule_protocol::{ExternalMessage, Headers};
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::mqttbytes::{Error as MqttError, QoS};

/// The largest MQTT packet the client reads (`MAX_PACKET` of `mqtt`).
const MQTT_MAX: u32 = 16 * 1024 * 1024;

/// Any bytes: no decoder of broker input panics; for the message the input describes, each
/// protocol's outbound mapping, written to its wire format and read back, gives every header
/// that is not one of the protocol's mapped properties back unchanged, keeps the payload, and a
/// second trip changes nothing more than the first.
pub fn check(data: &[u8]) {
    inbound_bytes(data);
    let message = message(data);
    mqtt5(&message);
    amqp091(&message);
    amqp10(&message);
}

fn message(data: &[u8]) -> ExternalMessage {
    let (head, payload) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n');
    let content_type = lines.next().filter(|c| !c.is_empty()).map(String::from);
    let mut headers = Headers::new();
    for line in lines {
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        headers.insert(k, header_value_from_string(v));
    }
    let (text, bytes) = match std::str::from_utf8(payload) {
        Ok(t) => (Some(t.to_string()), None),
        Err(_) => (None, Some(payload.to_vec())),
    };
    ExternalMessage {
        headers,
        text,
        bytes,
        content_type,
    }
}

/// Headers not among `special` (ASCII case-insensitive), as strings.
fn plain<'a>(h: &'a Headers, special: &[&str]) -> Vec<(&'a str, String)> {
    h.iter()
        .filter(|(k, _)| !special.iter().any(|s| s.eq_ignore_ascii_case(k)))
        .map(|(k, v)| (k, value_to_header_string(v)))
        .collect()
}

fn inbound_bytes(data: &[u8]) {
    // MQTT 5: a PUBLISH (or any packet) as the event loop reads it.
    let mut stream = BytesMut::from(data);
    if let Ok(Packet::Publish(p)) = Packet::read(&mut stream, Some(MQTT_MAX)) {
        let _ = wire::inbound_headers(p.properties);
    }
    // AMQP 0.9.1: basic properties with their headers table.
    if let Ok((_, props)) = lapin::protocol::basic::parse_properties(data) {
        let _ = amqp091::from_properties(&props, b"");
    }
    // AMQP 1.0: a message as a transfer carries it.
    if let Ok(m) = amqp10_decode(data) {
        let _ = amqp10::to_external(m);
    }
}

/// Writes the PUBLISH the client sends and reads it as the broker's copy comes back.
fn mqtt5(message: &ExternalMessage) {
    let payload = message.payload().to_vec();
    let properties = wire::publish_properties(&message.headers, message.content_type.clone());
    // The client refuses what does not fit an MQTT string instead of publishing it.
    if let Err(e) = crate::mqtt::check_lengths("t", Some(&properties)) {
        assert!(
            message
                .headers
                .iter()
                .any(|(k, v)| k.len() > wire::MAX_STRING
                    || value_to_header_string(v).len() > wire::MAX_STRING),
            "{e}"
        );
        return;
    }
    let mut publish = Publish::new("t", QoS::AtLeastOnce, payload.clone(), Some(properties));
    publish.pkid = 1;
    let mut out = BytesMut::new();
    match Packet::Publish(publish).write(&mut out, Some(MQTT_MAX)) {
        Ok(_) => {}
        Err(MqttError::OutgoingPacketTooLarge { .. }) => return,
        Err(e) => panic!("the PUBLISH cannot be written: {e:?}"),
    }
    let written = out.len();
    let read = match Packet::read(&mut out, Some(MQTT_MAX)) {
        Ok(Packet::Publish(p)) => p,
        other => panic!("the PUBLISH written does not read back: {other:?}"),
    };
    assert!(out.is_empty(), "{} of {written} bytes left over", out.len());
    assert_eq!(read.payload.as_ref(), payload.as_slice());
    let (headers, content_type) = wire::inbound_headers(read.properties);
    let received: Headers = headers.into_iter().collect();
    for (k, v) in plain(&message.headers, &wire::SPECIAL_HEADERS) {
        assert_eq!(received.get_str(k), Some(v), "MQTT 5 user property {k:?}");
    }
    for k in ["correlation-id", "reply-to"] {
        assert_eq!(received.get_str(k), message.headers.get_str(k), "{k}");
    }
    let expected = message
        .content_type
        .clone()
        .or_else(|| message.headers.get_str("content-type"));
    assert_eq!(content_type, expected);
}

/// Basic properties written as the content header frame carries them, read back.
fn amqp091_trip(message: &ExternalMessage) -> ExternalMessage {
    let (props, body) = amqp091::to_amqp(message);
    let (bytes, _) =
        cookie_factory::r#gen(lapin::protocol::basic::gen_properties(&props), Vec::new())
            .expect("basic properties can be written");
    let (rest, read) = lapin::protocol::basic::parse_properties(bytes.as_slice())
        .unwrap_or_else(|e| panic!("the basic properties written do not read back: {e:?}"));
    assert!(rest.is_empty(), "{} bytes left over", rest.len());
    assert_eq!(read, props);
    amqp091::from_properties(&read, &body)
}

const AMQP091_PROPERTIES: [&str; 12] = [
    "content-type",
    "content-encoding",
    "correlation-id",
    "reply-to",
    "message-id",
    "app-id",
    "type",
    "timestamp",
    "expiration",
    "priority",
    "delivery-mode",
    "user-id",
];

fn amqp091(message: &ExternalMessage) {
    let once = amqp091_trip(message);
    assert_eq!(once.payload(), message.payload());
    for (k, v) in plain(&message.headers, &AMQP091_PROPERTIES) {
        if k.len() <= 255 {
            assert_eq!(once.headers.get_str(k), Some(v), "AMQP 0.9.1 header {k:?}");
        }
    }
    let twice = amqp091_trip(&once);
    assert_eq!(twice, once, "a second AMQP 0.9.1 trip");
}

fn amqp10_decode(
    bytes: &[u8],
) -> Result<
    fe2o3_amqp::types::messaging::Message<
        fe2o3_amqp::types::messaging::Body<fe2o3_amqp::types::primitives::Value>,
    >,
    serde_amqp::Error,
> {
    use fe2o3_amqp::types::messaging::message::DecodeIntoMessage;
    DecodeIntoMessage::decode_message_from_reader(serde_amqp::read::SliceReader::new(bytes))
}

/// The message encoded as a transfer's payload, decoded as the receiver decodes it.
fn amqp10_trip(message: &ExternalMessage) -> ExternalMessage {
    use fe2o3_amqp::types::messaging::message::__private::Serializable;
    let amqp = amqp10::to_amqp(message);
    let bytes = serde_amqp::to_vec(&Serializable(&amqp)).expect("the message can be encoded");
    let read = amqp10_decode(&bytes)
        .unwrap_or_else(|e| panic!("the message encoded does not decode: {e:?}"));
    assert_eq!(read, amqp);
    amqp10::to_external(read)
}

fn amqp10(message: &ExternalMessage) {
    let once = amqp10_trip(message);
    assert_eq!(once.payload(), message.payload());
    for (k, v) in plain(&message.headers, &amqp10::STANDARD_PROPERTIES) {
        let lower = k.to_ascii_lowercase();
        // A header `amqp.application.property:<k>` writes the same application property.
        let prefixed = format!("{}{k}", amqp10::APPLICATION_PROPERTY_PREFIX);
        if !lower.starts_with(amqp10::APPLICATION_PROPERTY_PREFIX)
            && !lower.starts_with(amqp10::MESSAGE_ANNOTATION_PREFIX)
            && !message.headers.contains(&prefixed)
        {
            assert_eq!(once.headers.get_str(k), Some(v), "AMQP 1.0 header {k:?}");
        }
    }
    let twice = amqp10_trip(&once);
    assert_eq!(twice, once, "a second AMQP 1.0 trip");
}

#[cfg(test)]
#[test]
fn the_seed_corpus_passes() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/headers");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect(dir) {
        let path = entry.unwrap().path();
        eprintln!("{}", path.display());
        check(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n >= 10, "only {n} seed files in {dir}");
}

/// Found with this check: a header longer than 65,535 bytes made rumqttc write a PUBLISH whose
/// property length was cut to 16 bits, which did not read back (a broker would see a malformed
/// packet and close the connection).
#[cfg(test)]
#[test]
fn a_header_longer_than_an_mqtt_string() {
    for header in ["x-long", "correlation-id", "reply-to", "content-type"] {
        let mut data = format!("\n{header}=").into_bytes();
        data.extend(vec![b'a'; 70_000]);
        data.extend(b"\n\n");
        check(&data);
    }
}
