//! Between the host's model and the records of the WIT world: the generated records are moved
//! field by field into `ferrule_protocol::wire`, which holds the rules of the boundary (shared
//! with the mapper SDK, so a mapper's native tests see what the host does).

use crate::bindings;
use ferrule_protocol::{DittoMessage, ExternalMessage, ProtocolError, wire};

pub fn external_to_wit(m: &ExternalMessage) -> bindings::ExternalMessage {
    let w = wire::ExternalMessage::from(m);
    bindings::ExternalMessage {
        headers: w.headers,
        text_payload: w.text_payload,
        bytes_payload: w.bytes_payload,
        content_type: w.content_type,
    }
}

pub fn external_from_wit(m: bindings::ExternalMessage) -> ExternalMessage {
    ExternalMessage::from(wire::ExternalMessage {
        headers: m.headers,
        text_payload: m.text_payload,
        bytes_payload: m.bytes_payload,
        content_type: m.content_type,
    })
}

pub fn ditto_to_wit(m: &DittoMessage) -> bindings::DittoMessage {
    let w = wire::DittoMessage::from(m);
    bindings::DittoMessage {
        topic: w.topic,
        headers: w.headers,
        path: w.path,
        value: w.value,
        status: w.status,
        extra: w.extra,
        revision: w.revision,
        timestamp: w.timestamp,
        fields: w.fields,
    }
}

pub fn ditto_from_wit(m: bindings::DittoMessage) -> Result<DittoMessage, ProtocolError> {
    DittoMessage::try_from(wire::DittoMessage {
        topic: m.topic,
        headers: m.headers,
        path: m.path,
        value: m.value,
        status: m.status,
        extra: m.extra,
        revision: m.revision,
        timestamp: m.timestamp,
        fields: m.fields,
    })
}
