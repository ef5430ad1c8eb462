//! The engine's WAL payload: one write request (put or delete) per log entry.
//!
//! ```text
//!  offset  size  field
//!  0       4     magic "MWE\x01" (the last byte is the format version)
//!  4       1     op type (0 delete, 1 put)
//!  5       8     first sequence (u64 LE): row i has sequence first + i
//!  13      8     schema version the rows were validated against (u64 LE)
//!  21      4     rows (u32 LE)
//!  25      4     CRC32C of bytes 0..25 followed by the body (u32 LE)
//!  29      ..    body: the columns (below)
//! ```
//!
//! Body, every length checked against the bytes left before anything is allocated:
//!
//! ```text
//!  u16 columns, then per column:
//!    u16 name length, name (UTF-8)
//!    u8  type (index into TYPES, frozen)
//!    u8  1 if a validity bitmap follows (ceil(rows/8) bytes, LSB first), else 0
//!    data: fixed width -> rows * width bytes LE; bool -> ceil(rows/8) bytes;
//!          string/binary -> (rows + 1) u32 offsets from 0, then the value bytes
//! ```
//!
//! The log store checksums whole records too; the CRC makes the payload check itself wherever
//! it travels (replication, a copied segment), and is what the fuzz target's "valid header"
//! mode gets past to reach the column decoder. The body is our own rather than Arrow IPC:
//! arrow-ipc 59 panics on some crafted schema messages and allocates whatever a crafted
//! buffer length asks for; this format has only the engine's supported types, copies
//! buffers as they are, and builds arrays through `ArrayData::try_new`, which validates
//! offsets, UTF-8 and lengths.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_buffer::Buffer;
use arrow_data::ArrayData;
use arrow_schema::{ArrowError, DataType, Field, Schema, TimeUnit};
use mito_read::OpType;
use store_api::SequenceNumber;

/// Magic plus format version.
pub const MAGIC: [u8; 4] = *b"MWE\x01";
/// Bytes before the body.
pub const HEADER_LEN: usize = 29;

/// One decoded entry.
#[derive(Debug, Clone, PartialEq)]
pub struct WalEntry {
    /// Put or delete.
    pub op: OpType,
    /// Sequence of the first row.
    pub first_sequence: SequenceNumber,
    /// Schema version the rows were validated against.
    pub schema_version: u64,
    /// The rows, as validated (columns by name).
    pub batch: RecordBatch,
}

/// An entry's body encoded ahead of its header: the expensive part of encoding, done in the
/// requester's task so that the region worker only fills in the header.
#[derive(Debug)]
pub struct EncodedBody {
    /// `HEADER_LEN` bytes of room, then the body.
    buf: Vec<u8>,
    body_crc: u32,
    rows: u32,
}

impl EncodedBody {
    /// Bytes of the whole entry once sealed.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the buffer is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// The column types a body can hold, by their frozen tag (the index).
const TYPES: [DataType; 15] = [
    DataType::Boolean,
    DataType::Int8,
    DataType::Int16,
    DataType::Int32,
    DataType::Int64,
    DataType::UInt8,
    DataType::UInt16,
    DataType::UInt32,
    DataType::UInt64,
    DataType::Float32,
    DataType::Float64,
    DataType::Utf8,
    DataType::Binary,
    DataType::Timestamp(TimeUnit::Second, None),
    DataType::Timestamp(TimeUnit::Millisecond, None),
];

/// Tags past [`TYPES`] (kept separate so that the array above stays a plain list).
const MORE_TYPES: [DataType; 2] = [
    DataType::Timestamp(TimeUnit::Microsecond, None),
    DataType::Timestamp(TimeUnit::Nanosecond, None),
];

fn type_tag(t: &DataType) -> Option<u8> {
    TYPES
        .iter()
        .chain(MORE_TYPES.iter())
        .position(|x| x == t)
        .and_then(|i| u8::try_from(i).ok())
}

fn type_of(tag: u8) -> Option<&'static DataType> {
    TYPES.iter().chain(MORE_TYPES.iter()).nth(usize::from(tag))
}

fn bitmap_len(rows: usize) -> usize {
    rows.div_ceil(8)
}

fn unsupported(what: String) -> ArrowError {
    ArrowError::InvalidArgumentError(what)
}

/// Appends one column.
fn encode_column(name: &str, array: &dyn Array, out: &mut Vec<u8>) -> Result<(), ArrowError> {
    let name_len = u16::try_from(name.len())
        .map_err(|_| unsupported(format!("column name of {} bytes", name.len())))?;
    let tag = type_tag(array.data_type())
        .ok_or_else(|| unsupported(format!("column '{name}' has type {}", array.data_type())))?;
    out.extend_from_slice(&name_len.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(tag);
    match array.nulls().filter(|n| n.null_count() > 0) {
        Some(nulls) => {
            out.push(1);
            out.extend_from_slice(
                nulls
                    .inner()
                    .sliced()
                    .as_slice()
                    .get(..bitmap_len(array.len()))
                    .ok_or_else(|| unsupported("a null bitmap shorter than the array".into()))?,
            );
        }
        None => out.push(0),
    }
    match array.data_type() {
        DataType::Boolean => {
            let values = array.as_boolean().values().sliced();
            out.extend_from_slice(
                values
                    .as_slice()
                    .get(..bitmap_len(array.len()))
                    .ok_or_else(|| unsupported("booleans shorter than the array".into()))?,
            );
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            put_offsets(a.value_offsets(), a.values().as_slice(), out)?;
        }
        DataType::Binary => {
            let a = array.as_binary::<i32>();
            put_offsets(a.value_offsets(), a.values().as_slice(), out)?;
        }
        t => {
            let width = t
                .primitive_width()
                .ok_or_else(|| unsupported(format!("type {t}")))?;
            let data = array.to_data();
            let buffer = data
                .buffers()
                .first()
                .ok_or_else(|| unsupported("no values".into()))?;
            let from = data.offset() * width;
            let bytes = buffer
                .as_slice()
                .get(from..from + array.len() * width)
                .ok_or_else(|| unsupported("values shorter than the array".into()))?;
            out.extend_from_slice(bytes);
        }
    }
    Ok(())
}

/// Offsets rebased to start at 0, then the bytes they cover.
fn put_offsets(offsets: &[i32], values: &[u8], out: &mut Vec<u8>) -> Result<(), ArrowError> {
    let first = offsets.first().copied().unwrap_or(0);
    let last = offsets.last().copied().unwrap_or(0);
    for o in offsets {
        let rebased =
            u32::try_from(o - first).map_err(|_| unsupported("offsets that decrease".into()))?;
        out.extend_from_slice(&rebased.to_le_bytes());
    }
    let bytes = usize::try_from(first)
        .ok()
        .zip(usize::try_from(last).ok())
        .and_then(|(a, b)| values.get(a..b))
        .ok_or_else(|| unsupported("offsets outside the values".into()))?;
    out.extend_from_slice(bytes);
    Ok(())
}

/// Encodes the rows of an entry.
pub fn encode_body(batch: &RecordBatch) -> Result<EncodedBody, ArrowError> {
    let rows = u32::try_from(batch.num_rows())
        .map_err(|_| unsupported("more than u32::MAX rows".into()))?;
    let columns = u16::try_from(batch.num_columns())
        .map_err(|_| unsupported("more than u16::MAX columns".into()))?;
    let mut buf = Vec::with_capacity(HEADER_LEN + 2 + batch.get_array_memory_size());
    buf.resize(HEADER_LEN, 0);
    buf.extend_from_slice(&columns.to_le_bytes());
    let schema = batch.schema();
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        encode_column(field.name(), array.as_ref(), &mut buf)?;
    }
    let body_crc = crc32c::crc32c(buf.get(HEADER_LEN..).unwrap_or_default());
    Ok(EncodedBody {
        buf,
        body_crc,
        rows,
    })
}

/// Completes an entry: writes the header (op, sequence, schema version) and the checksum.
pub fn seal(
    body: EncodedBody,
    op: OpType,
    first_sequence: SequenceNumber,
    schema_version: u64,
) -> Vec<u8> {
    let EncodedBody {
        mut buf,
        body_crc,
        rows,
    } = body;
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&MAGIC);
    header[4] = op.as_u8();
    header[5..13].copy_from_slice(&first_sequence.to_le_bytes());
    header[13..21].copy_from_slice(&schema_version.to_le_bytes());
    header[21..25].copy_from_slice(&rows.to_le_bytes());
    let body_len = buf.len().saturating_sub(HEADER_LEN);
    let crc = crc32c::crc32c_combine(crc32c::crc32c(&header[..25]), body_crc, body_len);
    header[25..29].copy_from_slice(&crc.to_le_bytes());
    if let Some(slot) = buf.get_mut(..HEADER_LEN) {
        slot.copy_from_slice(&header);
    }
    buf
}

/// Encodes an entry.
pub fn encode(entry: &WalEntry) -> Result<Vec<u8>, ArrowError> {
    Ok(seal(
        encode_body(&entry.batch)?,
        entry.op,
        entry.first_sequence,
        entry.schema_version,
    ))
}

/// CRC32C of the header fields (bytes 0..25) and the body.
fn checksum(data: &[u8]) -> u32 {
    let head = crc32c::crc32c(data.get(..25).unwrap_or_default());
    crc32c::crc32c_append(head, data.get(HEADER_LEN..).unwrap_or_default())
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// Decodes an entry; every failure is a reason string (the caller adds region and entry id).
pub fn decode(data: &[u8]) -> Result<WalEntry, String> {
    if data.len() < HEADER_LEN {
        return Err(format!(
            "{} bytes, shorter than the {HEADER_LEN}-byte header",
            data.len()
        ));
    }
    let magic = data.get(..4).unwrap_or_default();
    if magic.get(..3) != MAGIC.get(..3) {
        return Err(format!("bad magic {magic:02x?}"));
    }
    if magic.get(3) != MAGIC.get(3) {
        return Err(format!(
            "format version {:?} is not supported (this build reads {})",
            magic.get(3),
            MAGIC[3]
        ));
    }
    let op = match data.get(4) {
        Some(0) => OpType::Delete,
        Some(1) => OpType::Put,
        other => return Err(format!("bad op type {other:?}")),
    };
    let header = |at| u64_at(data, at).ok_or_else(|| "short header".to_string());
    let first_sequence = header(5)?;
    let schema_version = header(13)?;
    let rows = u32_at(data, 21).ok_or("short header")?;
    let crc = u32_at(data, 25).ok_or("short header")?;
    let body = data.get(HEADER_LEN..).unwrap_or_default();
    let actual = checksum(data);
    if actual != crc {
        return Err(format!("checksum {actual:08x} != stored {crc:08x}"));
    }
    let batch = decode_body(body, rows as usize)?;
    if first_sequence.checked_add(u64::from(rows)).is_none() {
        return Err(format!("sequence {first_sequence} + {rows} rows overflows"));
    }
    Ok(WalEntry {
        op,
        first_sequence,
        schema_version,
        batch,
    })
}

/// Reads a body of `rows` rows.
fn decode_body(body: &[u8], rows: usize) -> Result<RecordBatch, String> {
    let mut r = Reader { data: body, at: 0 };
    let columns = usize::from(u16::from_le_bytes(r.array::<2>("column count")?));
    let mut fields = Vec::with_capacity(columns.min(1024));
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.min(1024));
    for c in 0..columns {
        let name_len = usize::from(u16::from_le_bytes(r.array::<2>("name length")?));
        let name = std::str::from_utf8(r.take(name_len, "name")?)
            .map_err(|_| format!("column {c}: name is not UTF-8"))?
            .to_string();
        let [tag] = r.array::<1>("type")?;
        let data_type =
            type_of(tag).ok_or_else(|| format!("column '{name}': unknown type tag {tag}"))?;
        let [has_nulls] = r.array::<1>("null flag")?;
        let nulls = match has_nulls {
            0 => None,
            1 => Some(Buffer::from(r.take(bitmap_len(rows), "validity bitmap")?)),
            other => return Err(format!("column '{name}': bad null flag {other}")),
        };
        let buffers = match data_type {
            DataType::Boolean => vec![Buffer::from(r.take(bitmap_len(rows), "values")?)],
            DataType::Utf8 | DataType::Binary => {
                let n = rows
                    .checked_add(1)
                    .and_then(|n| n.checked_mul(4))
                    .ok_or("too many rows")?;
                let offsets = r.take(n, "offsets")?;
                let last = offsets
                    .get(n.saturating_sub(4)..)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map_or(0, u32::from_le_bytes);
                let values = r.take(last as usize, "string values")?;
                vec![Buffer::from(offsets), Buffer::from(values)]
            }
            t => {
                let width = t
                    .primitive_width()
                    .ok_or_else(|| format!("column '{name}': type {t}"))?;
                let n = rows.checked_mul(width).ok_or("too many rows")?;
                vec![Buffer::from(r.take(n, "values")?)]
            }
        };
        let data = ArrayData::try_new(data_type.clone(), rows, nulls, 0, buffers, Vec::new())
            .map_err(|e| format!("column '{name}': {e}"))?;
        let nullable = data.null_count() > 0;
        arrays.push(arrow_array::make_array(data));
        fields.push(Field::new(name, data_type.clone(), nullable));
    }
    if r.at != body.len() {
        return Err(format!("{} bytes after the last column", body.len() - r.at));
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
        .map_err(|e| format!("batch: {e}"))
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .ok_or_else(|| format!("{what}: length overflow"))?;
        let bytes = self.data.get(self.at..end).ok_or_else(|| {
            format!(
                "{what}: needs {n} bytes at {}, the body has {}",
                self.at,
                self.data.len()
            )
        })?;
        self.at = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        self.take(N, what)
            .and_then(|b| <[u8; N]>::try_from(b).map_err(|_| format!("{what}: short")))
    }
}

/// Fuzz entry point: `data` decoded as a whole payload, and (to get past the CRC) as the body
/// of a payload with a correct header. Must never panic.
pub fn fuzz_decode(data: &[u8]) {
    let _ = decode(data);
    let mut framed = Vec::with_capacity(HEADER_LEN + data.len());
    framed.extend_from_slice(&MAGIC);
    framed.push(1);
    framed.extend_from_slice(&0u64.to_le_bytes());
    framed.extend_from_slice(&0u64.to_le_bytes());
    // The row count comes from the input too (its first two bytes), bounded.
    let rows = u32::from(data.first().copied().unwrap_or(0))
        | (u32::from(data.get(1).copied().unwrap_or(0)) << 8);
    let data = data.get(2..).unwrap_or_default();
    framed.extend_from_slice(&rows.to_le_bytes());
    framed.extend_from_slice(&[0; 4]);
    framed.extend_from_slice(data);
    let crc = checksum(&framed);
    if let Some(slot) = framed.get_mut(25..29) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
    if let Ok(e) = decode(&framed) {
        // A decoded batch encodes again to a body that decodes to the same batch.
        let again = encode(&e)
            .map_err(|e| e.to_string())
            .and_then(|b| decode(&b));
        assert_eq!(
            again.map(|d| d.batch),
            Ok(e.batch),
            "re-encoding changed the batch"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Array, Float64Array, StringArray, TimestampMillisecondArray};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};

    use super::*;

    fn entry() -> WalEntry {
        let schema = Arc::new(Schema::new(vec![
            Field::new("host", DataType::Utf8, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("cpu", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
                Arc::new(TimestampMillisecondArray::from(vec![i64::MIN, 0, i64::MAX])),
                Arc::new(Float64Array::from(vec![Some(f64::NAN), Some(-0.0), None])),
            ],
        )
        .unwrap();
        WalEntry {
            op: OpType::Put,
            first_sequence: 42,
            schema_version: 3,
            batch,
        }
    }

    #[test]
    fn round_trip_is_exact() {
        let e = entry();
        let bytes = encode(&e).unwrap();
        let d = decode(&bytes).unwrap();
        assert_eq!(d.op, OpType::Put);
        assert_eq!(d.first_sequence, 42);
        assert_eq!(d.schema_version, 3);
        assert_eq!(d.batch.schema(), e.batch.schema());
        let f = d
            .batch
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert!(f.value(0).is_nan());
        assert_eq!(f.value(1).to_bits(), (-0.0f64).to_bits());
        assert!(f.is_null(2));
        assert_eq!(d.batch.column(0), e.batch.column(0));
        assert_eq!(d.batch.column(1), e.batch.column(1));
        let mut del = e.clone();
        del.op = OpType::Delete;
        assert_eq!(decode(&encode(&del).unwrap()).unwrap().op, OpType::Delete);
    }

    #[test]
    fn every_supported_type_round_trips_with_nulls_and_slices() {
        use arrow_array::{
            BinaryArray, BooleanArray, Float32Array, Int8Array, Int16Array, Int32Array, Int64Array,
            TimestampMicrosecondArray, TimestampNanosecondArray, TimestampSecondArray, UInt8Array,
            UInt16Array, UInt32Array, UInt64Array,
        };
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(BooleanArray::from(vec![
                Some(true),
                None,
                Some(false),
                Some(true),
                None,
                Some(true),
                Some(false),
                Some(true),
                Some(true),
                None,
            ])),
            Arc::new(Int8Array::from(vec![
                Some(i8::MIN),
                None,
                Some(1),
                Some(2),
                Some(3),
                Some(4),
                Some(5),
                Some(6),
                Some(7),
                Some(i8::MAX),
            ])),
            Arc::new(Int16Array::from_iter_values([
                i16::MIN,
                1,
                2,
                3,
                4,
                5,
                6,
                7,
                8,
                i16::MAX,
            ])),
            Arc::new(Int32Array::from_iter_values([
                i32::MIN,
                1,
                2,
                3,
                4,
                5,
                6,
                7,
                8,
                i32::MAX,
            ])),
            Arc::new(Int64Array::from(vec![
                Some(i64::MIN),
                None,
                None,
                Some(3),
                Some(4),
                Some(5),
                Some(6),
                Some(7),
                Some(8),
                Some(i64::MAX),
            ])),
            Arc::new(UInt8Array::from_iter_values([
                0,
                1,
                2,
                3,
                4,
                5,
                6,
                7,
                8,
                u8::MAX,
            ])),
            Arc::new(UInt16Array::from_iter_values([
                0,
                1,
                2,
                3,
                4,
                5,
                6,
                7,
                8,
                u16::MAX,
            ])),
            Arc::new(UInt32Array::from_iter_values([
                0,
                1,
                2,
                3,
                4,
                5,
                6,
                7,
                8,
                u32::MAX,
            ])),
            Arc::new(UInt64Array::from_iter_values([
                0,
                1,
                2,
                3,
                4,
                5,
                6,
                7,
                8,
                u64::MAX,
            ])),
            Arc::new(Float32Array::from(vec![
                Some(f32::NAN),
                Some(-0.0),
                None,
                Some(f32::INFINITY),
                Some(1.5),
                Some(2.0),
                Some(3.0),
                Some(4.0),
                Some(5.0),
                Some(f32::MIN),
            ])),
            Arc::new(Float64Array::from(vec![
                Some(f64::NAN),
                Some(-0.0),
                None,
                Some(f64::NEG_INFINITY),
                Some(1.5),
                Some(2.0),
                Some(3.0),
                Some(4.0),
                Some(5.0),
                Some(f64::MAX),
            ])),
            Arc::new(StringArray::from(vec![
                Some(""),
                None,
                Some("é"),
                Some("ab"),
                Some("c"),
                Some("d"),
                Some("e"),
                Some("f"),
                Some("g"),
                Some("héllo"),
            ])),
            Arc::new(BinaryArray::from(vec![
                Some(&b""[..]),
                None,
                Some(&[0xff, 0][..]),
                Some(b"a"),
                Some(b"b"),
                Some(b"c"),
                Some(b"d"),
                Some(b"e"),
                Some(b"f"),
                Some(b"g"),
            ])),
            Arc::new(TimestampSecondArray::from_iter_values(0..10)),
            Arc::new(TimestampMillisecondArray::from_iter_values(0..10)),
            Arc::new(TimestampMicrosecondArray::from_iter_values(0..10)),
            Arc::new(TimestampNanosecondArray::from_iter_values(
                (0..10).map(|i| i64::MAX - i),
            )),
        ];
        let fields: Vec<Field> = arrays
            .iter()
            .enumerate()
            .map(|(i, a)| Field::new(format!("c{i}"), a.data_type().clone(), true))
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap();
        for (offset, len) in [(0, 10), (3, 5), (1, 9), (7, 1), (9, 1)] {
            let slice = batch.slice(offset, len);
            let e = WalEntry {
                op: OpType::Put,
                first_sequence: 1,
                schema_version: 0,
                batch: slice.clone(),
            };
            let d = decode(&encode(&e).unwrap()).unwrap();
            assert_eq!(d.batch.num_rows(), len);
            for (got, want) in d.batch.columns().iter().zip(slice.columns()) {
                assert_eq!(got.to_data().len(), want.len());
                // Bitwise equality (NaN and -0.0 included) through the display of each value.
                for row in 0..len {
                    assert_eq!(got.is_null(row), want.is_null(row));
                    let fmt =
                        |a: &ArrayRef| arrow_cast::display::array_value_to_string(a, row).unwrap();
                    assert_eq!(
                        fmt(got),
                        fmt(want),
                        "offset {offset} row {row} of {}",
                        want.data_type()
                    );
                }
            }
        }
    }

    #[test]
    fn every_bit_flip_and_truncation_is_refused() {
        let bytes = encode(&entry()).unwrap();
        for i in 0..bytes.len() {
            for bit in [0u8, 3, 7] {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(decode(&b).is_err(), "flip at byte {i} bit {bit} decoded");
            }
        }
        for len in 0..bytes.len() {
            assert!(
                decode(&bytes[..len]).is_err(),
                "truncation to {len} decoded"
            );
        }
    }

    #[test]
    fn future_versions_are_named() {
        let mut bytes = encode(&entry()).unwrap();
        bytes[3] = 2;
        assert!(decode(&bytes).unwrap_err().contains("format version"));
    }

    /// Writes the seed corpus of the `wal_entry` fuzz target (`MITO_BLESS=1`) and replays
    /// the checked-in corpus as a normal test.
    #[test]
    fn fuzz_corpus_replays() {
        let dir = test_util::corpus_dir("wal_entry");
        if std::env::var("MITO_BLESS").is_ok() {
            std::fs::create_dir_all(&dir).unwrap();
            let bytes = encode(&entry()).unwrap();
            std::fs::write(dir.join("entry_v1"), &bytes).unwrap();
            let mut body = vec![3, 0];
            body.extend_from_slice(&bytes[HEADER_LEN..]);
            std::fs::write(dir.join("body_v1"), body).unwrap();
        }
        test_util::replay_corpus("wal_entry", 2, |bytes| {
            fuzz_decode(bytes);
            Ok(())
        });
    }

    #[test]
    fn fuzz_entry_survives_garbage() {
        let bytes = encode(&entry()).unwrap();
        fuzz_decode(&bytes);
        fuzz_decode(&bytes[HEADER_LEN..]);
        fuzz_decode(&bytes[HEADER_LEN..bytes.len() / 2]);
        fuzz_decode(b"");
        fuzz_decode(&[0xff; 64]);
    }
}
