//! Reading a Ditto Protocol envelope: its members are read first (from JSON text, straight
//! into the envelope's parts, or from a JSON object), then checked in one order, so both ways
//! give the same message and the same error for the same input.

use crate::error::ProtocolError;
use crate::headers::Headers;
use crate::message::{DittoMessage, check_fields, check_path};
use crate::topic::Topic;
use serde::Deserializer;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// The `headers` member as it was found.
#[derive(Default)]
enum HeadersMember {
    /// Absent or `null`.
    #[default]
    None,
    /// Read from JSON text straight into headers.
    Read(Headers),
    /// An object of a JSON object, to be read into headers.
    Object(Value),
    /// Anything else.
    Invalid,
}

/// The members of an envelope, read but not checked. Each member holds the last value given
/// for it (as a JSON object read from text does); the others are ignored.
#[derive(Default)]
pub(crate) struct Members {
    topic: Option<Value>,
    headers: HeadersMember,
    path: Option<Value>,
    value: Option<Value>,
    status: Option<Value>,
    extra: Option<Value>,
    revision: Option<Value>,
    timestamp: Option<Value>,
    fields: Option<Value>,
    metadata: Option<Value>,
}

impl Members {
    /// The members of a JSON object, taken out of it.
    pub(crate) fn from_map(mut map: Map<String, Value>) -> Members {
        Members {
            topic: map.remove("topic"),
            headers: match map.remove("headers") {
                None | Some(Value::Null) => HeadersMember::None,
                Some(h @ Value::Object(_)) => HeadersMember::Object(h),
                Some(_) => HeadersMember::Invalid,
            },
            path: map.remove("path"),
            value: map.remove("value"),
            status: map.remove("status"),
            extra: map.remove("extra"),
            revision: map.remove("revision"),
            timestamp: map.remove("timestamp"),
            fields: map.remove("fields"),
            metadata: map.remove("metadata"),
        }
    }

    /// The envelope these members make, or the first thing wrong with them.
    pub(crate) fn check(self) -> Result<DittoMessage, ProtocolError> {
        let topic = match self.topic {
            Some(Value::String(t)) => Topic::parse(&t)?,
            Some(_) => return Err(invalid_field("topic", "a string")),
            None => return Err(ProtocolError::json_field_missing("/topic")),
        };
        let headers = match self.headers {
            HeadersMember::None => Headers::new(),
            HeadersMember::Read(h) => h,
            HeadersMember::Object(h) => {
                serde_json::from_value(h).map_err(|_| invalid_field("headers", "an object"))?
            }
            HeadersMember::Invalid => return Err(invalid_field("headers", "an object")),
        };
        let path = match self.path {
            None => "/".to_string(),
            Some(Value::String(p)) if p.is_empty() => "/".to_string(),
            Some(Value::String(p)) if p.starts_with('/') => p,
            Some(Value::String(p)) => format!("/{p}"),
            Some(_) => return Err(invalid_field("path", "a string")),
        };
        check_path(&path)?;
        let status = match self.status {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(
                n.as_u64()
                    .filter(|s| (100..=599).contains(s))
                    .ok_or_else(|| invalid_field("status", "an HTTP status code"))?
                    as u16,
            ),
            Some(_) => return Err(invalid_field("status", "an HTTP status code")),
        };
        let revision = match self.revision {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(
                n.as_u64()
                    .ok_or_else(|| invalid_field("revision", "a number"))?,
            ),
            Some(_) => return Err(invalid_field("revision", "a number")),
        };
        let string = |member: Option<Value>, key: &str| match member {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid_field(key, "a string")),
        };
        let timestamp = string(self.timestamp, "timestamp")?;
        let fields = string(self.fields, "fields")?;
        check_fields(fields.as_deref())?;
        Ok(DittoMessage {
            topic,
            headers,
            path,
            value: self.value,
            status,
            extra: self.extra.filter(|v| !v.is_null()),
            revision,
            timestamp,
            fields,
            metadata: self.metadata.filter(|v| !v.is_null()),
        })
    }
}

fn invalid_field(key: &str, expected: &str) -> ProtocolError {
    ProtocolError::json_invalid(format!("The value of </{key}> must be {expected}."))
}

/// Reads a JSON text: an object's members go straight into [`Members`] (the headers straight
/// into [`Headers`]), with no JSON tree of the whole envelope in between; `None` when the text
/// holds something else. A syntax error is serde_json's; nothing else fails here.
pub(crate) fn from_text(text: &str) -> serde_json::Result<Option<Members>> {
    let mut reader = serde_json::Deserializer::from_str(text);
    let read = (&mut reader).deserialize_any(TextVisitor)?;
    reader.end()?;
    Ok(read)
}

/// A visitor's answer to a value that is neither an object nor `null`: `$answer`, after the
/// value is read to its end.
macro_rules! not_an_object {
    ($answer:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($answer)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($answer)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($answer)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($answer)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($answer)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($answer)
        }
    };
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Option<Members>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    not_an_object!(None);

    fn visit_unit<E: de::Error>(self) -> Result<Option<Members>, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Members>, A::Error> {
        let mut m = Members::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Topic => m.topic = Some(map.next_value()?),
                Key::Headers => m.headers = map.next_value_seed(HeadersSeed)?,
                Key::Path => m.path = Some(map.next_value()?),
                Key::Value => m.value = Some(map.next_value()?),
                Key::Status => m.status = Some(map.next_value()?),
                Key::Extra => m.extra = Some(map.next_value()?),
                Key::Revision => m.revision = Some(map.next_value()?),
                Key::Timestamp => m.timestamp = Some(map.next_value()?),
                Key::Fields => m.fields = Some(map.next_value()?),
                Key::Metadata => m.metadata = Some(map.next_value()?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(m))
    }
}

/// The `headers` member: an object is read into headers, `null` is none, anything else is
/// read to its end and marked invalid (the error is given when the members are checked).
struct HeadersSeed;

impl<'de> DeserializeSeed<'de> for HeadersSeed {
    type Value = HeadersMember;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<HeadersMember, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HeadersSeed {
    type Value = HeadersMember;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    not_an_object!(HeadersMember::Invalid);

    fn visit_unit<E: de::Error>(self) -> Result<HeadersMember, E> {
        Ok(HeadersMember::None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<HeadersMember, A::Error> {
        crate::headers::read_map(map).map(HeadersMember::Read)
    }
}

/// A member's name, matched without copying it.
enum Key {
    Topic,
    Headers,
    Path,
    Value,
    Status,
    Extra,
    Revision,
    Timestamp,
    Fields,
    Metadata,
    Other,
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
                Ok(match name {
                    "topic" => Key::Topic,
                    "headers" => Key::Headers,
                    "path" => Key::Path,
                    "value" => Key::Value,
                    "status" => Key::Status,
                    "extra" => Key::Extra,
                    "revision" => Key::Revision,
                    "timestamp" => Key::Timestamp,
                    "fields" => Key::Fields,
                    "metadata" => Key::Metadata,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}
