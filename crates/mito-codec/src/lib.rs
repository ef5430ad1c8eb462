//! The primary-key codec: one encoding of tag tuples for the whole engine (memtable, SST,
//! scan).
//!
//! ```text
//!  tag values (in primary-key order)  --encode-->  bytes whose byte order = tuple order
//!  ("host_1", null, 42i32)                          01 68 6f 73 74 5f 31 00 00 | 00 | 01 80 00 00 2a
//!                                      <--decode--
//! ```
//!
//! Element layout (each element is self-delimiting, so concatenation keeps tuple order):
//!
//! | value | bytes |
//! |---|---|
//! | null | `00` (sorts before every value) |
//! | string | `01`, the UTF-8 bytes with each `00` written as `00 FF`, then `00 00` |
//! | signed int of width w | `01`, w bytes big-endian with the sign bit flipped |
//! | unsigned int of width w | `01`, w bytes big-endian |
//!
//! Decoding checks every byte: a truncated key, a bad marker, an unknown escape, invalid
//! UTF-8 or trailing bytes are errors with the offset, never a panic.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use snafu::{Snafu, ensure};
use store_api::error::{ErrorExt, ErrorKind};
use store_api::metadata::{RegionMetadata, Value};

const NULL: u8 = 0x00;
const NOT_NULL: u8 = 0x01;
const ESCAPE: u8 = 0x00;
const ESCAPED_ZERO: u8 = 0xFF;
const TERMINATOR: u8 = 0x00;

/// Errors of the codec.
#[derive(Debug, Snafu, PartialEq, Eq)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    /// The bytes are not a key of this codec's types.
    #[snafu(display("Invalid primary key at byte {offset}: {reason}"))]
    Decode { offset: usize, reason: &'static str },

    /// A value does not match the codec's type at that position.
    #[snafu(display("Primary key value {position} does not match type {expected}"))]
    TypeMismatch { position: usize, expected: String },

    /// A tag type the codec cannot encode.
    #[snafu(display("Unsupported primary key type {data_type}"))]
    UnsupportedType { data_type: String },
}

impl ErrorExt for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Decode { .. } => ErrorKind::Corrupted,
            Error::TypeMismatch { .. } | Error::UnsupportedType { .. } => {
                ErrorKind::InvalidArgument
            }
        }
    }
}

/// Result of the codec.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The type of one key element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// UTF-8 string.
    String,
    /// Signed integer of 1, 2, 4 or 8 bytes.
    Int(u8),
    /// Unsigned integer of 1, 2, 4 or 8 bytes.
    UInt(u8),
}

impl KeyType {
    /// The key type of an Arrow tag type.
    pub fn from_arrow(t: &DataType) -> Result<Self> {
        Ok(match t {
            DataType::Utf8 => KeyType::String,
            DataType::Int8 => KeyType::Int(1),
            DataType::Int16 => KeyType::Int(2),
            DataType::Int32 => KeyType::Int(4),
            DataType::Int64 => KeyType::Int(8),
            DataType::UInt8 => KeyType::UInt(1),
            DataType::UInt16 => KeyType::UInt(2),
            DataType::UInt32 => KeyType::UInt(4),
            DataType::UInt64 => KeyType::UInt(8),
            other => {
                return UnsupportedTypeSnafu {
                    data_type: other.to_string(),
                }
                .fail();
            }
        })
    }
}

/// One element of a key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyValue {
    /// Null (sorts first).
    Null,
    /// A string.
    String(String),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
}

/// Encodes and decodes keys of fixed element types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryKeyCodec {
    types: Vec<KeyType>,
}

impl PrimaryKeyCodec {
    /// A codec for these element types.
    pub fn new(types: Vec<KeyType>) -> Self {
        Self { types }
    }

    /// The codec of a region's primary key (its tag columns in key order).
    pub fn from_metadata(metadata: &RegionMetadata) -> Result<Self> {
        let types = metadata
            .primary_key_columns()
            .map(|c| KeyType::from_arrow(&c.data_type))
            .collect::<Result<_>>()?;
        Ok(Self::new(types))
    }

    /// What keys written under `old` lack under `current`: the encoding of the default of
    /// every tag `current` appended to the primary key since (empty if none). Elements are
    /// self-delimiting, so `old_key + suffix` is the key the row has under `current`, and the
    /// order of old keys is kept. `Err` if `current`'s key does not extend `old`'s.
    pub fn appended_key_suffix(old: &RegionMetadata, current: &RegionMetadata) -> Result<Vec<u8>> {
        let (old_key, new_key) = (old.primary_key(), current.primary_key());
        let Some(added) = new_key.strip_prefix(old_key) else {
            return TypeMismatchSnafu {
                position: 0usize,
                expected: format!("a primary key extending {old_key:?}, got {new_key:?}"),
            }
            .fail();
        };
        let mut types = Vec::with_capacity(added.len());
        let mut values = Vec::with_capacity(added.len());
        for (position, id) in added.iter().enumerate() {
            let mismatch = || {
                TypeMismatchSnafu {
                    position,
                    expected: format!("a tag column with id {id}"),
                }
                .build()
            };
            let c = current.column_by_id(*id).ok_or_else(mismatch)?;
            let t = KeyType::from_arrow(&c.data_type)?;
            let v = match (&c.default, t) {
                (None | Some(Value::Null), _) => KeyValue::Null,
                (Some(Value::String(s)), KeyType::String) => KeyValue::String(s.clone()),
                (Some(Value::Int(i)), KeyType::Int(_)) => KeyValue::Int(*i),
                (Some(Value::UInt(u)), KeyType::UInt(_)) => KeyValue::UInt(*u),
                (Some(Value::Int(i)), KeyType::UInt(_)) => {
                    KeyValue::UInt(u64::try_from(*i).map_err(|_| mismatch())?)
                }
                (Some(Value::UInt(u)), KeyType::Int(_)) => {
                    KeyValue::Int(i64::try_from(*u).map_err(|_| mismatch())?)
                }
                _ => return Err(mismatch()),
            };
            types.push(t);
            values.push(v);
        }
        let mut out = Vec::new();
        Self::new(types).encode(&values, &mut out)?;
        Ok(out)
    }

    /// The element types.
    pub fn types(&self) -> &[KeyType] {
        &self.types
    }

    /// Appends the encoding of `values` to `out`.
    pub fn encode(&self, values: &[KeyValue], out: &mut Vec<u8>) -> Result<()> {
        ensure!(
            values.len() == self.types.len(),
            TypeMismatchSnafu {
                position: values.len().min(self.types.len()),
                expected: format!("{} values", self.types.len())
            }
        );
        for (position, (t, v)) in self.types.iter().zip(values).enumerate() {
            match (t, v) {
                (_, KeyValue::Null) => out.push(NULL),
                (KeyType::String, KeyValue::String(s)) => encode_str(s, out),
                (KeyType::Int(w), KeyValue::Int(i)) if fits_signed(*i, *w) => {
                    encode_int(*i, *w, out)
                }
                (KeyType::UInt(w), KeyValue::UInt(u)) if fits_unsigned(*u, *w) => {
                    encode_uint(*u, *w, out)
                }
                _ => {
                    return TypeMismatchSnafu {
                        position,
                        expected: format!("{t:?}"),
                    }
                    .fail();
                }
            }
        }
        Ok(())
    }

    /// Appends the key of row `row` of the tag `columns` (in key order) to `out`.
    /// The columns must have this codec's types; a column of another type or too short is an error.
    pub fn encode_row(&self, columns: &[ArrayRef], row: usize, out: &mut Vec<u8>) -> Result<()> {
        for (position, (t, col)) in self.types.iter().zip(columns).enumerate() {
            if row >= col.len() {
                return TypeMismatchSnafu {
                    position,
                    expected: format!("a row {row}"),
                }
                .fail();
            }
            if col.is_null(row) {
                out.push(NULL);
                continue;
            }
            let mismatch = || {
                TypeMismatchSnafu {
                    position,
                    expected: format!("{t:?}"),
                }
                .build()
            };
            match (t, col.data_type()) {
                (KeyType::String, DataType::Utf8) => {
                    encode_str(col.as_string::<i32>().value(row), out)
                }
                (KeyType::Int(1), DataType::Int8) => {
                    encode_int(col.as_primitive::<Int8Type>().value(row).into(), 1, out)
                }
                (KeyType::Int(2), DataType::Int16) => {
                    encode_int(col.as_primitive::<Int16Type>().value(row).into(), 2, out)
                }
                (KeyType::Int(4), DataType::Int32) => {
                    encode_int(col.as_primitive::<Int32Type>().value(row).into(), 4, out)
                }
                (KeyType::Int(8), DataType::Int64) => {
                    encode_int(col.as_primitive::<Int64Type>().value(row), 8, out)
                }
                (KeyType::UInt(1), DataType::UInt8) => {
                    encode_uint(col.as_primitive::<UInt8Type>().value(row).into(), 1, out)
                }
                (KeyType::UInt(2), DataType::UInt16) => {
                    encode_uint(col.as_primitive::<UInt16Type>().value(row).into(), 2, out)
                }
                (KeyType::UInt(4), DataType::UInt32) => {
                    encode_uint(col.as_primitive::<UInt32Type>().value(row).into(), 4, out)
                }
                (KeyType::UInt(8), DataType::UInt64) => {
                    encode_uint(col.as_primitive::<UInt64Type>().value(row), 8, out)
                }
                _ => return Err(mismatch()),
            }
        }
        ensure!(
            columns.len() == self.types.len(),
            TypeMismatchSnafu {
                position: columns.len().min(self.types.len()),
                expected: format!("{} columns", self.types.len())
            }
        );
        Ok(())
    }

    /// Decodes a whole key.
    pub fn decode(&self, bytes: &[u8]) -> Result<Vec<KeyValue>> {
        let mut values = Vec::with_capacity(self.types.len());
        let mut pos = 0;
        for t in &self.types {
            let (v, next) = decode_one(*t, bytes, pos)?;
            values.push(v);
            pos = next;
        }
        ensure!(
            pos == bytes.len(),
            DecodeSnafu {
                offset: pos,
                reason: "trailing bytes after the last element"
            }
        );
        Ok(values)
    }
}

fn fits_signed(v: i64, width: u8) -> bool {
    match width {
        1 => i8::try_from(v).is_ok(),
        2 => i16::try_from(v).is_ok(),
        4 => i32::try_from(v).is_ok(),
        8 => true,
        _ => false,
    }
}

fn fits_unsigned(v: u64, width: u8) -> bool {
    match width {
        1 => u8::try_from(v).is_ok(),
        2 => u16::try_from(v).is_ok(),
        4 => u32::try_from(v).is_ok(),
        8 => true,
        _ => false,
    }
}

fn encode_str(s: &str, out: &mut Vec<u8>) {
    out.push(NOT_NULL);
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    for (i, chunk) in bytes.split(|b| *b == 0).enumerate() {
        if i > 0 {
            out.extend_from_slice(&[ESCAPE, ESCAPED_ZERO]);
        }
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&[ESCAPE, TERMINATOR]);
}

fn encode_int(v: i64, width: u8, out: &mut Vec<u8>) {
    out.push(NOT_NULL);
    let w = usize::from(width);
    // Flip the sign bit of the w-byte two's complement value: negative numbers sort first.
    let shifted = (v as u64) ^ (1u64 << (w * 8 - 1));
    out.extend(shifted.to_be_bytes().iter().skip(8 - w));
}

fn encode_uint(v: u64, width: u8, out: &mut Vec<u8>) {
    out.push(NOT_NULL);
    let w = usize::from(width);
    out.extend(v.to_be_bytes().iter().skip(8 - w));
}

fn decode_one(t: KeyType, bytes: &[u8], pos: usize) -> Result<(KeyValue, usize)> {
    let truncated = |offset| {
        DecodeSnafu {
            offset,
            reason: "key ends inside an element",
        }
        .build()
    };
    let marker = *bytes.get(pos).ok_or_else(|| truncated(pos))?;
    match marker {
        NULL => return Ok((KeyValue::Null, pos + 1)),
        NOT_NULL => {}
        _ => {
            return DecodeSnafu {
                offset: pos,
                reason: "bad null marker",
            }
            .fail();
        }
    }
    let start = pos + 1;
    match t {
        KeyType::String => {
            let mut s = Vec::new();
            let mut i = start;
            loop {
                let b = *bytes.get(i).ok_or_else(|| truncated(i))?;
                if b != ESCAPE {
                    s.push(b);
                    i += 1;
                    continue;
                }
                match bytes.get(i + 1) {
                    Some(&TERMINATOR) => break,
                    Some(&ESCAPED_ZERO) => s.push(0),
                    Some(_) => {
                        return DecodeSnafu {
                            offset: i + 1,
                            reason: "bad escape in string",
                        }
                        .fail();
                    }
                    None => return Err(truncated(i + 1)),
                }
                i += 2;
            }
            let s = String::from_utf8(s).map_err(|_| {
                DecodeSnafu {
                    offset: start,
                    reason: "string is not UTF-8",
                }
                .build()
            })?;
            Ok((KeyValue::String(s), i + 2))
        }
        KeyType::Int(w) | KeyType::UInt(w) => {
            let w = usize::from(w);
            if !matches!(w, 1 | 2 | 4 | 8) {
                return DecodeSnafu {
                    offset: pos,
                    reason: "bad integer width",
                }
                .fail();
            }
            let raw = bytes
                .get(start..start + w)
                .ok_or_else(|| truncated(bytes.len()))?;
            let mut buf = [0u8; 8];
            for (dst, src) in buf.iter_mut().skip(8 - w).zip(raw) {
                *dst = *src;
            }
            let u = u64::from_be_bytes(buf);
            let v = match t {
                KeyType::Int(_) => {
                    // Undo the sign flip, then sign-extend from w bytes.
                    let bits = (w * 8) as u32;
                    let x = u ^ (1u64 << (bits - 1));
                    let shift = 64 - bits;
                    KeyValue::Int(((x << shift) as i64) >> shift)
                }
                _ => KeyValue::UInt(u),
            };
            Ok((v, start + w))
        }
    }
}

/// The fuzz target's body (kept here so a normal test replays the corpus): decoding arbitrary
/// bytes never panics, and whatever decodes re-encodes to exactly the same bytes.
#[doc(hidden)]
#[expect(
    clippy::panic,
    reason = "a fuzz body reports a broken invariant by panicking"
)]
pub fn fuzz_decode(data: &[u8]) {
    let Some((&selector, key)) = data.split_first() else {
        return;
    };
    let all = [
        KeyType::String,
        KeyType::Int(1),
        KeyType::Int(2),
        KeyType::Int(4),
        KeyType::Int(8),
        KeyType::UInt(1),
        KeyType::UInt(2),
        KeyType::UInt(4),
        KeyType::UInt(8),
    ];
    // The first byte picks up to three element types.
    let n = usize::from(selector % 4);
    let types: Vec<KeyType> = (0..n)
        .filter_map(|i| {
            all.get((usize::from(selector / 4) + i * 5) % all.len())
                .copied()
        })
        .collect();
    let codec = PrimaryKeyCodec::new(types);
    if let Ok(values) = codec.decode(key) {
        let mut out = Vec::new();
        if codec.encode(&values, &mut out).is_err() || out != key {
            panic!("decoded {values:?} does not re-encode to the same bytes");
        }
    }
}

#[cfg(test)]
mod tests;
