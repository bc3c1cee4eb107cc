//! Reading payloads: JSON text into `serde_json`, bytes through a [`ByteReader`] or a
//! [`Scalar`] type named in options (`"i16le"`, `"f32be"`, …). Every failure is a
//! [`MappingError`] that says what was expected and where.

use crate::error::MappingError;
use ferrule_protocol::ExternalMessage;
use serde_json::{Map, Value};

/// The payload as UTF-8 text (the text payload, else bytes that are UTF-8).
pub fn text(message: &ExternalMessage) -> Result<&str, MappingError> {
    message.payload_text().ok_or_else(|| {
        MappingError::invalid_payload(if message.text.is_none() && message.bytes.is_none() {
            "The message has no payload.".to_string()
        } else {
            "The payload is not UTF-8 text.".to_string()
        })
    })
}

/// The payload parsed as JSON.
pub fn json(message: &ExternalMessage) -> Result<Value, MappingError> {
    let text = text(message)?;
    serde_json::from_str(text)
        .map_err(|e| MappingError::invalid_payload(format!("The payload is not valid JSON: {e}")))
}

/// The payload parsed as a JSON object.
pub fn json_object(message: &ExternalMessage) -> Result<Map<String, Value>, MappingError> {
    match json(message)? {
        Value::Object(map) => Ok(map),
        other => Err(MappingError::invalid_payload(format!(
            "The payload is JSON but not an object: it starts with <{}>.",
            truncate(&other.to_string(), 40)
        ))),
    }
}

/// The payload as bytes (the bytes payload, else the text's UTF-8 bytes).
pub fn bytes(message: &ExternalMessage) -> &[u8] {
    message.payload()
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn too_short(len: usize, offset: usize, needed: usize, what: &str) -> MappingError {
    MappingError::invalid_payload(format!(
        "The payload is too short: {what} needs {needed} byte(s) at offset {offset}, but the payload has {len} byte(s)."
    ))
}

/// Reads numbers from a byte payload, front to back, or at given offsets.
///
/// ```
/// use ferrule_mapper_sdk::payload::ByteReader;
/// let mut r = ByteReader::new(&[0x01, 0x2c, 0xff, 0xfe]);
/// assert_eq!(r.u16_be()?, 300);
/// assert_eq!(r.i16_be()?, -2);
/// assert!(r.u8().is_err()); // nothing left: a clear error, not a panic
/// # Ok::<(), ferrule_mapper_sdk::MappingError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ByteReader<'a> {
    bytes: &'a [u8],
    position: usize,
}

macro_rules! readers {
    ($($name:ident $name_at:ident: $t:ty = $from:ident;)*) => {
        $(
            #[doc = concat!("Reads a `", stringify!($t), "` (`", stringify!($from), "`) and advances.")]
            pub fn $name(&mut self) -> Result<$t, MappingError> {
                let v = self.$name_at(self.position)?;
                self.position += std::mem::size_of::<$t>();
                Ok(v)
            }

            #[doc = concat!("Reads a `", stringify!($t), "` (`", stringify!($from), "`) at `offset`; the position stays.")]
            pub fn $name_at(&self, offset: usize) -> Result<$t, MappingError> {
                const N: usize = std::mem::size_of::<$t>();
                let b = self.slice_at(offset, N, stringify!($t))?;
                Ok(<$t>::$from(b.try_into().expect("N bytes")))
            }
        )*
    };
}

impl<'a> ByteReader<'a> {
    pub fn new(bytes: &'a [u8]) -> ByteReader<'a> {
        ByteReader { bytes, position: 0 }
    }

    /// The reader over a message's payload ([`bytes`]).
    pub fn of(message: &'a ExternalMessage) -> ByteReader<'a> {
        ByteReader::new(message.payload())
    }

    pub fn position(&self) -> usize {
        self.position
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Bytes left after the position.
    pub fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.position)
    }

    /// Moves the position to `offset` (it may be the end).
    pub fn seek(&mut self, offset: usize) -> Result<(), MappingError> {
        if offset > self.bytes.len() {
            return Err(too_short(self.bytes.len(), offset, 0, "seeking"));
        }
        self.position = offset;
        Ok(())
    }

    pub fn skip(&mut self, n: usize) -> Result<(), MappingError> {
        self.slice_at(self.position, n, "skipping")?;
        self.position += n;
        Ok(())
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], MappingError> {
        let s = self.slice_at(self.position, n, "a byte string")?;
        self.position += n;
        Ok(s)
    }

    fn slice_at(&self, offset: usize, n: usize, what: &str) -> Result<&'a [u8], MappingError> {
        offset
            .checked_add(n)
            .and_then(|end| self.bytes.get(offset..end))
            .ok_or_else(|| too_short(self.bytes.len(), offset, n, what))
    }

    readers! {
        u8 u8_at: u8 = from_le_bytes;
        i8 i8_at: i8 = from_le_bytes;
        u16_le u16_le_at: u16 = from_le_bytes;
        u16_be u16_be_at: u16 = from_be_bytes;
        i16_le i16_le_at: i16 = from_le_bytes;
        i16_be i16_be_at: i16 = from_be_bytes;
        u32_le u32_le_at: u32 = from_le_bytes;
        u32_be u32_be_at: u32 = from_be_bytes;
        i32_le i32_le_at: i32 = from_le_bytes;
        i32_be i32_be_at: i32 = from_be_bytes;
        u64_le u64_le_at: u64 = from_le_bytes;
        u64_be u64_be_at: u64 = from_be_bytes;
        i64_le i64_le_at: i64 = from_le_bytes;
        i64_be i64_be_at: i64 = from_be_bytes;
        f32_le f32_le_at: f32 = from_le_bytes;
        f32_be f32_be_at: f32 = from_be_bytes;
        f64_le f64_le_at: f64 = from_le_bytes;
        f64_be f64_be_at: f64 = from_be_bytes;
    }
}

/// A number type named in options: `u8`, `i8`, `bool` (one byte, non-zero is true), and
/// `u16`/`i16`/`u32`/`i32`/`u64`/`i64`/`f32`/`f64` each with `le` or `be` (`i16le`, `f32be`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scalar {
    Bool,
    U8,
    I8,
    U16(Endian),
    I16(Endian),
    U32(Endian),
    I32(Endian),
    U64(Endian),
    I64(Endian),
    F32(Endian),
    F64(Endian),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endian {
    Little,
    Big,
}

/// A value read with a [`Scalar`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

impl Number {
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Bool(b) => f64::from(u8::from(b)),
            Number::Unsigned(u) => u as f64,
            Number::Signed(i) => i as f64,
            Number::Float(f) => f,
        }
    }

    /// As JSON: booleans and integers as they are, floats as numbers (NaN and infinities, which
    /// JSON cannot carry, as `null`).
    pub fn to_json(self) -> Value {
        match self {
            Number::Bool(b) => Value::Bool(b),
            Number::Unsigned(u) => Value::from(u),
            Number::Signed(i) => Value::from(i),
            Number::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        }
    }
}

impl Scalar {
    /// Parses a type name (see the type's docs); the error lists the names.
    pub fn parse(name: &str) -> Result<Scalar, MappingError> {
        let lower = name.to_ascii_lowercase();
        let simple = match lower.as_str() {
            "bool" => Some(Scalar::Bool),
            "u8" => Some(Scalar::U8),
            "i8" => Some(Scalar::I8),
            _ => None,
        };
        if let Some(s) = simple {
            return Ok(s);
        }
        let (base, endian) = if let Some(b) = lower.strip_suffix("le") {
            (b, Endian::Little)
        } else if let Some(b) = lower.strip_suffix("be") {
            (b, Endian::Big)
        } else {
            ("", Endian::Little)
        };
        Ok(match base {
            "u16" => Scalar::U16(endian),
            "i16" => Scalar::I16(endian),
            "u32" => Scalar::U32(endian),
            "i32" => Scalar::I32(endian),
            "u64" => Scalar::U64(endian),
            "i64" => Scalar::I64(endian),
            "f32" => Scalar::F32(endian),
            "f64" => Scalar::F64(endian),
            _ => {
                return Err(MappingError::invalid_options(format!(
                    "Unknown number type <{name}>: use bool, u8, i8, or u16/i16/u32/i32/u64/i64/f32/f64 followed by le or be (e.g. i16le)."
                )));
            }
        })
    }

    /// Its size in bytes.
    pub fn size(self) -> usize {
        match self {
            Scalar::Bool | Scalar::U8 | Scalar::I8 => 1,
            Scalar::U16(_) | Scalar::I16(_) => 2,
            Scalar::U32(_) | Scalar::I32(_) | Scalar::F32(_) => 4,
            Scalar::U64(_) | Scalar::I64(_) | Scalar::F64(_) => 8,
        }
    }

    /// Reads the value at `offset` of `reader`.
    pub fn read_at(self, reader: &ByteReader<'_>, offset: usize) -> Result<Number, MappingError> {
        use Endian::{Big, Little};
        Ok(match self {
            Scalar::Bool => Number::Bool(reader.u8_at(offset)? != 0),
            Scalar::U8 => Number::Unsigned(reader.u8_at(offset)?.into()),
            Scalar::I8 => Number::Signed(reader.i8_at(offset)?.into()),
            Scalar::U16(Little) => Number::Unsigned(reader.u16_le_at(offset)?.into()),
            Scalar::U16(Big) => Number::Unsigned(reader.u16_be_at(offset)?.into()),
            Scalar::I16(Little) => Number::Signed(reader.i16_le_at(offset)?.into()),
            Scalar::I16(Big) => Number::Signed(reader.i16_be_at(offset)?.into()),
            Scalar::U32(Little) => Number::Unsigned(reader.u32_le_at(offset)?.into()),
            Scalar::U32(Big) => Number::Unsigned(reader.u32_be_at(offset)?.into()),
            Scalar::I32(Little) => Number::Signed(reader.i32_le_at(offset)?.into()),
            Scalar::I32(Big) => Number::Signed(reader.i32_be_at(offset)?.into()),
            Scalar::U64(Little) => Number::Unsigned(reader.u64_le_at(offset)?),
            Scalar::U64(Big) => Number::Unsigned(reader.u64_be_at(offset)?),
            Scalar::I64(Little) => Number::Signed(reader.i64_le_at(offset)?),
            Scalar::I64(Big) => Number::Signed(reader.i64_be_at(offset)?),
            Scalar::F32(Little) => Number::Float(widen(reader.f32_le_at(offset)?)),
            Scalar::F32(Big) => Number::Float(widen(reader.f32_be_at(offset)?)),
            Scalar::F64(Little) => Number::Float(reader.f64_le_at(offset)?),
            Scalar::F64(Big) => Number::Float(reader.f64_be_at(offset)?),
        })
    }
}

/// An `f32` as the `f64` of the decimal it prints as: `1.1f32` becomes `1.1`, not
/// `1.100000023841858`.
pub fn widen(f: f32) -> f64 {
    f.to_string().parse().unwrap_or(f64::from(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_payloads() {
        assert_eq!(
            json(&ExternalMessage::text(r#"{"a":1}"#)).unwrap(),
            json!({"a": 1})
        );
        assert_eq!(
            json_object(&ExternalMessage::bytes(br#"{"a":1}"#.to_vec())).unwrap()["a"],
            1
        );
        let e = json_object(&ExternalMessage::text("[1,2]")).unwrap_err();
        assert!(e.message.contains("not an object"), "{e}");
        let e = json(&ExternalMessage::text("{")).unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{e}");
        let e = json(&ExternalMessage::default()).unwrap_err();
        assert!(e.message.contains("no payload"), "{e}");
        let e = text(&ExternalMessage::bytes(vec![0xc3])).unwrap_err();
        assert!(e.message.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn byte_reader() {
        let data = [
            0x34, 0x12, // u16le 0x1234
            0xff, 0xfe, // i16be -2
            0x00, 0x00, 0x80, 0x3f, // f32le 1.0
            0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18, // f64be pi
            0x80, // i8 -128
        ];
        let mut r = ByteReader::new(&data);
        assert_eq!(r.u16_le().unwrap(), 0x1234);
        assert_eq!(r.i16_be().unwrap(), -2);
        assert_eq!(r.f32_le().unwrap(), 1.0);
        assert_eq!(r.f64_be().unwrap(), std::f64::consts::PI);
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.i8().unwrap(), -128);
        assert_eq!(r.remaining(), 0);
        let e = r.u16_le().unwrap_err();
        assert_eq!(
            e.message,
            "The payload is too short: u16 needs 2 byte(s) at offset 17, but the payload has 17 byte(s)."
        );
        assert_eq!(r.u32_be_at(0).unwrap(), 0x3412_fffe);
        assert_eq!(
            r.i32_le_at(0).unwrap(),
            i32::from_le_bytes([0x34, 0x12, 0xff, 0xfe])
        );
        assert!(r.u64_le_at(10).is_err());
        assert!(r.u8_at(usize::MAX).is_err());
        r.seek(2).unwrap();
        assert_eq!(r.take(2).unwrap(), &[0xff, 0xfe]);
        r.skip(4).unwrap();
        assert!(r.skip(100).is_err());
        assert!(r.seek(18).is_err());
    }

    #[test]
    fn scalars() {
        let data = [0x2c, 0x01, 0x01, 0x2c, 0xff];
        let r = ByteReader::new(&data);
        assert_eq!(
            Scalar::parse("u16le").unwrap().read_at(&r, 0).unwrap(),
            Number::Unsigned(300)
        );
        assert_eq!(
            Scalar::parse("U16BE").unwrap().read_at(&r, 2).unwrap(),
            Number::Unsigned(300)
        );
        assert_eq!(
            Scalar::parse("i8").unwrap().read_at(&r, 4).unwrap(),
            Number::Signed(-1)
        );
        assert_eq!(
            Scalar::parse("bool").unwrap().read_at(&r, 4).unwrap(),
            Number::Bool(true)
        );
        assert_eq!(Scalar::parse("f64be").unwrap().size(), 8);
        assert!(Scalar::parse("i16").is_err());
        assert!(Scalar::parse("u24le").is_err());
        assert_eq!(Number::Float(f64::NAN).to_json(), Value::Null);
        let f = 1.1f32.to_le_bytes();
        assert_eq!(
            Scalar::parse("f32le")
                .unwrap()
                .read_at(&ByteReader::new(&f), 0)
                .unwrap(),
            Number::Float(1.1)
        );
        assert_eq!(Number::Signed(-3).to_json(), json!(-3));
        assert_eq!(Number::Bool(true).as_f64(), 1.0);
    }
}
