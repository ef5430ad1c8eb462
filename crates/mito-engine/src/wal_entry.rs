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
//!  29      ..    body: an Arrow IPC stream (schema + one record batch, LZ4-frame buffers)
//! ```
//!
//! The log store checksums whole records too; the body CRC makes the payload check itself
//! wherever it travels (replication, a copied segment), and is what the fuzz target's
//! "valid header" mode has to get past to reach the IPC decoder.

use std::io::Cursor;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_ipc::CompressionType;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_schema::ArrowError;
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

/// Encodes the rows of an entry (Arrow IPC stream, LZ4-frame buffers).
pub fn encode_body(batch: &RecordBatch) -> Result<EncodedBody, ArrowError> {
    let rows = u32::try_from(batch.num_rows())
        .map_err(|_| ArrowError::InvalidArgumentError("more than u32::MAX rows".into()))?;
    let mut buf = Vec::with_capacity(HEADER_LEN + batch.get_array_memory_size() / 2);
    buf.resize(HEADER_LEN, 0);
    let options =
        IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME))?;
    {
        let mut writer = StreamWriter::try_new_with_options(&mut buf, &batch.schema(), options)?;
        writer.write(batch)?;
        writer.finish()?;
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
    let batch = decode_body(body)?;
    if batch.num_rows() != rows as usize {
        return Err(format!(
            "header says {rows} rows, body holds {}",
            batch.num_rows()
        ));
    }
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

fn decode_body(body: &[u8]) -> Result<RecordBatch, String> {
    // The IPC reader validates flatbuffers and array data; a panic inside it on crafted bytes
    // that passed the CRC would be an arrow bug, so it is contained here rather than allowed
    // to take the engine down during replay.
    let result = std::panic::catch_unwind(|| -> Result<RecordBatch, String> {
        let mut reader =
            StreamReader::try_new(Cursor::new(body), None).map_err(|e| format!("IPC: {e}"))?;
        let batch = match reader.next() {
            Some(b) => b.map_err(|e| format!("IPC batch: {e}"))?,
            None => return Err("IPC stream holds no batch".into()),
        };
        if let Some(extra) = reader.next() {
            return Err(match extra {
                Ok(_) => "IPC stream holds more than one batch".into(),
                Err(e) => format!("IPC trailer: {e}"),
            });
        }
        Ok(batch)
    });
    result.unwrap_or_else(|_| Err("IPC decoder panicked on this body".into()))
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
    let rows = decode_body(data).map_or(0, |b| b.num_rows() as u32);
    framed.extend_from_slice(&rows.to_le_bytes());
    framed.extend_from_slice(&[0; 4]);
    framed.extend_from_slice(data);
    let crc = checksum(&framed);
    if let Some(slot) = framed.get_mut(25..29) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
    if let Ok(e) = decode(&framed) {
        // A decoded batch must be internally consistent.
        let _ = Arc::new(e.batch).num_columns();
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
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/wal_entry");
        if std::env::var("MITO_BLESS").is_ok() {
            std::fs::create_dir_all(&dir).unwrap();
            let bytes = encode(&entry()).unwrap();
            std::fs::write(dir.join("entry_v1"), &bytes).unwrap();
            std::fs::write(dir.join("body_v1"), &bytes[HEADER_LEN..]).unwrap();
        }
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            fuzz_decode(&std::fs::read(e.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n > 0, "empty corpus at {}", dir.display());
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
