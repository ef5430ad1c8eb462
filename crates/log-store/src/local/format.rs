//! Byte layout of a WAL segment file. Pure functions over bytes; no I/O.
//!
//! A segment is a header followed by records. All integers are little-endian.
//!
//! Segment header (24 bytes):
//!
//! | offset | size | field                                     |
//! |-------:|-----:|-------------------------------------------|
//! |      0 |    8 | magic `b"MITO-WAL"`                       |
//! |      8 |    2 | format version (`FORMAT_VERSION` = 1)     |
//! |     10 |    2 | flags; must be 0 in version 1             |
//! |     12 |    8 | segment id (equals the file name's number)|
//! |     20 |    4 | crc32c of bytes 0..20                     |
//!
//! Record (8-byte header + payload):
//!
//! | offset | size | field                                               |
//! |-------:|-----:|-----------------------------------------------------|
//! |      0 |    4 | `len`: payload length in bytes (>= 16)              |
//! |      4 |    4 | crc32c of the 4 `len` bytes followed by the payload |
//! |      8 |    8 | payload: region id (`u64`)                          |
//! |     16 |    8 | payload: entry id (`u64`)                           |
//! |     24 |  len-16 | payload: entry data (opaque)                     |
//!
//! The checksum covers the length, so a damaged length is caught like damaged data.
//!
//! Decoding never trusts a length beyond the bytes at hand: a record is only read if all of
//! it is in the buffer, and the buffer is a file already read into memory, so no length field
//! can make the decoder allocate.
//!
//! [`scan_segment`] classifies what follows the last good record:
//! - nothing: a clean end;
//! - damage with no decodable record after it: a *torn tail* (an interrupted write), which
//!   recovery truncates;
//! - damage followed by a decodable record: *corruption*, which recovery reports as an error
//!   naming the offset, because dropping it would silently lose acknowledged entries.

use std::ops::Range;

use store_api::{EntryId, RegionId};

/// Magic bytes opening every segment.
pub const MAGIC: [u8; 8] = *b"MITO-WAL";
/// Current format version.
pub const FORMAT_VERSION: u16 = 1;
/// Length of the segment header.
pub const HEADER_LEN: usize = 24;
/// Length of a record header (`len` + `crc`).
pub const RECORD_HEADER_LEN: usize = 8;
/// Length of the fixed part of a payload (region id + entry id).
pub const PAYLOAD_PREFIX_LEN: usize = 16;
/// Largest payload the format allows (1 GiB); stores cap entries lower (`max_entry_size`).
pub const MAX_PAYLOAD_LEN: usize = 1 << 30;

/// How many payload bytes the search for records after a damaged one may checksum before it
/// gives up and calls the damage corruption (the safe answer: it refuses rather than drops).
const SEARCH_CRC_BUDGET: usize = 256 << 20;

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version found in the file.
    pub version: u16,
    /// The segment's id.
    pub segment_id: u64,
}

/// Encodes a segment header.
pub fn encode_header(segment_id: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let (version, flags, id) = (
        FORMAT_VERSION.to_le_bytes(),
        0u16.to_le_bytes(),
        segment_id.to_le_bytes(),
    );
    let fields = MAGIC.iter().chain(&version).chain(&flags).chain(&id);
    for (dst, src) in h.iter_mut().zip(fields) {
        *dst = *src;
    }
    let crc = crc32c::crc32c(h.get(..HEADER_LEN - 4).unwrap_or_default());
    for (dst, src) in h.iter_mut().skip(HEADER_LEN - 4).zip(crc.to_le_bytes()) {
        *dst = src;
    }
    h
}

/// Why a header did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than [`HEADER_LEN`] bytes.
    Incomplete { len: usize },
    /// The magic bytes are wrong: not a Mito WAL segment.
    BadMagic,
    /// The header checksum does not match.
    BadChecksum,
    /// A format version this build cannot read.
    UnsupportedVersion { version: u16 },
    /// Flags this build does not know (version 1 defines none).
    UnsupportedFlags { flags: u16 },
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Incomplete { len } => {
                write!(f, "segment header incomplete ({len} of {HEADER_LEN} bytes)")
            }
            HeaderError::BadMagic => f.write_str("not a WAL segment (bad magic)"),
            HeaderError::BadChecksum => f.write_str("segment header checksum mismatch"),
            HeaderError::UnsupportedVersion { version } => write!(
                f,
                "unsupported segment format version {version} (this build reads {FORMAT_VERSION})"
            ),
            HeaderError::UnsupportedFlags { flags } => {
                write!(f, "unsupported segment header flags {flags:#06x}")
            }
        }
    }
}

/// Decodes a segment header from the start of `buf`.
pub fn decode_header(buf: &[u8]) -> Result<SegmentHeader, HeaderError> {
    let Some(h) = buf.get(..HEADER_LEN) else {
        return Err(HeaderError::Incomplete { len: buf.len() });
    };
    if h.get(..8) != Some(&MAGIC[..]) {
        return Err(HeaderError::BadMagic);
    }
    if crc32c::crc32c(h.get(..20).unwrap_or_default()) != read_u32(h, 20) {
        return Err(HeaderError::BadChecksum);
    }
    let version = u16::from_le_bytes([read_u8(h, 8), read_u8(h, 9)]);
    if version != FORMAT_VERSION {
        return Err(HeaderError::UnsupportedVersion { version });
    }
    // Reserved: a later format may give them a meaning this build would get wrong.
    let flags = u16::from_le_bytes([read_u8(h, 10), read_u8(h, 11)]);
    if flags != 0 {
        return Err(HeaderError::UnsupportedFlags { flags });
    }
    Ok(SegmentHeader {
        version,
        segment_id: read_u64(h, 12),
    })
}

/// Length of the record that holds `data_len` bytes of entry data.
pub fn record_len(data_len: usize) -> usize {
    RECORD_HEADER_LEN + PAYLOAD_PREFIX_LEN + data_len
}

/// Appends one record to `out`. The caller keeps `data.len()` within `MAX_PAYLOAD_LEN - 16`.
pub fn encode_record(region_id: RegionId, entry_id: EntryId, data: &[u8], out: &mut Vec<u8>) {
    let len = (PAYLOAD_PREFIX_LEN + data.len()) as u32;
    let len_bytes = len.to_le_bytes();
    let region = region_id.as_u64().to_le_bytes();
    let entry = entry_id.to_le_bytes();
    let mut crc = crc32c::crc32c(&len_bytes);
    crc = crc32c::crc32c_append(crc, &region);
    crc = crc32c::crc32c_append(crc, &entry);
    crc = crc32c::crc32c_append(crc, data);
    out.reserve(record_len(data.len()));
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&region);
    out.extend_from_slice(&entry);
    out.extend_from_slice(data);
}

/// A record found in a buffer: its position and key. `data` indexes the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRef {
    /// Offset of the record header.
    pub offset: usize,
    /// The region.
    pub region_id: RegionId,
    /// The entry id.
    pub entry_id: EntryId,
    /// Range of the entry data in the buffer.
    pub data: Range<usize>,
}

impl RecordRef {
    /// Offset just past the record.
    pub fn end(&self) -> usize {
        self.data.end
    }
}

/// Why no record could be read at an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordDamage {
    /// The record header or payload runs past the end of the buffer.
    Truncated,
    /// The length field is below the minimum or above [`MAX_PAYLOAD_LEN`].
    BadLength { len: u32 },
    /// The checksum does not match.
    BadChecksum,
}

impl std::fmt::Display for RecordDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordDamage::Truncated => f.write_str("record cut short"),
            RecordDamage::BadLength { len } => write!(f, "impossible record length {len}"),
            RecordDamage::BadChecksum => f.write_str("record checksum mismatch"),
        }
    }
}

/// Reads the record starting at `offset`.
pub fn decode_record(buf: &[u8], offset: usize) -> Result<RecordRef, RecordDamage> {
    let header_end = offset
        .checked_add(RECORD_HEADER_LEN)
        .ok_or(RecordDamage::Truncated)?;
    let Some(header) = buf.get(offset..header_end) else {
        return Err(RecordDamage::Truncated);
    };
    let len = read_u32(header, 0);
    let payload_len = len as usize;
    if !(PAYLOAD_PREFIX_LEN..=MAX_PAYLOAD_LEN).contains(&payload_len) {
        return Err(RecordDamage::BadLength { len });
    }
    let end = header_end
        .checked_add(payload_len)
        .ok_or(RecordDamage::Truncated)?;
    let Some(payload) = buf.get(header_end..end) else {
        return Err(RecordDamage::Truncated);
    };
    let (len_bytes, _) = header.split_at(4);
    let crc = crc32c::crc32c_append(crc32c::crc32c(len_bytes), payload);
    if crc != read_u32(header, 4) {
        return Err(RecordDamage::BadChecksum);
    }
    Ok(RecordRef {
        offset,
        region_id: RegionId::from_u64(read_u64(payload, 0)),
        entry_id: read_u64(payload, 8),
        data: header_end + PAYLOAD_PREFIX_LEN..end,
    })
}

/// What follows the last good record of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// The records end exactly at the end of the buffer.
    Clean,
    /// Damage at `offset` with no decodable record after it: an interrupted write.
    Torn {
        /// Where the damage starts (the valid data ends here).
        offset: usize,
        /// What was wrong with the record at `offset`.
        damage: RecordDamage,
    },
    /// Damage at `offset` followed by a decodable record at `next_valid` (or the search for
    /// one ran out of budget, `next_valid: None`): data that was once complete is damaged.
    Corrupt {
        /// Where the damage starts.
        offset: usize,
        /// What was wrong with the record at `offset`.
        damage: RecordDamage,
        /// The first decodable record after the damage, if the search found one.
        next_valid: Option<usize>,
    },
}

/// The records of a segment and what follows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    /// The segment header.
    pub header: SegmentHeader,
    /// Every record before the first damage, in file order.
    pub records: Vec<RecordRef>,
    /// Offset just past the last good record (where appends may continue).
    pub valid_end: usize,
    /// What follows `valid_end`.
    pub tail: Tail,
}

/// Decodes a whole segment held in `buf`.
pub fn scan_segment(buf: &[u8]) -> Result<SegmentScan, HeaderError> {
    let header = decode_header(buf)?;
    let mut records = Vec::new();
    let mut offset = HEADER_LEN;
    let tail = loop {
        if offset == buf.len() {
            break Tail::Clean;
        }
        match decode_record(buf, offset) {
            Ok(record) => {
                offset = record.end();
                records.push(record);
            }
            Err(damage) => break classify_damage(buf, offset, damage),
        }
    };
    Ok(SegmentScan {
        header,
        records,
        valid_end: offset,
        tail,
    })
}

/// Decides whether damage at `offset` is a torn tail or corruption, by looking for any
/// decodable record after it.
fn classify_damage(buf: &[u8], offset: usize, damage: RecordDamage) -> Tail {
    // Fast path: only the payload is damaged and the length is intact, so the next record
    // starts right after this one.
    if damage == RecordDamage::BadChecksum {
        let len = buf
            .get(offset..offset + 4)
            .map_or(0, |b| read_u32(b, 0) as usize);
        let next = offset + RECORD_HEADER_LEN + len;
        if next < buf.len() && decode_record(buf, next).is_ok() {
            return Tail::Corrupt {
                offset,
                damage,
                next_valid: Some(next),
            };
        }
    }
    // Slow path: try every later offset. Cheap in practice: most candidates fail the length
    // check, and a real torn tail is at most one write long.
    let mut budget = SEARCH_CRC_BUDGET;
    for candidate in offset + 1
        ..buf
            .len()
            .saturating_sub(RECORD_HEADER_LEN + PAYLOAD_PREFIX_LEN - 1)
    {
        let Some(len_bytes) = buf.get(candidate..candidate + 4) else {
            break;
        };
        let len = read_u32(len_bytes, 0) as usize;
        if len < PAYLOAD_PREFIX_LEN || candidate + RECORD_HEADER_LEN + len > buf.len() {
            continue;
        }
        if len > budget {
            return Tail::Corrupt {
                offset,
                damage,
                next_valid: None,
            };
        }
        budget -= len;
        if decode_record(buf, candidate).is_ok() {
            return Tail::Corrupt {
                offset,
                damage,
                next_valid: Some(candidate),
            };
        }
    }
    Tail::Torn { offset, damage }
}

fn read_u8(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

/// The fuzz target's body, kept here so a normal test can replay the checked-in corpus.
///
/// Decodes arbitrary bytes as a segment; whatever it finds must re-encode to exactly the bytes
/// it came from, and the classification must be consistent. Panics (as a fuzz failure) if not.
#[doc(hidden)]
#[expect(
    clippy::panic,
    reason = "a fuzz body reports a broken invariant by panicking"
)]
pub fn fuzz_scan_segment(data: &[u8]) {
    let Ok(scan) = scan_segment(data) else {
        return;
    };
    let mut reencoded = encode_header(scan.header.segment_id).to_vec();
    for r in &scan.records {
        let Some(entry) = data.get(r.data.clone()) else {
            panic!("record data {:?} outside the buffer", r.data);
        };
        encode_record(r.region_id, r.entry_id, entry, &mut reencoded);
    }
    if data.get(..scan.valid_end) != Some(&reencoded[..]) {
        panic!("valid prefix does not re-encode byte for byte");
    }
    match scan.tail {
        Tail::Clean => assert_eq!(scan.valid_end, data.len()),
        Tail::Torn { offset, .. } | Tail::Corrupt { offset, .. } => {
            assert_eq!(offset, scan.valid_end);
            assert!(offset < data.len());
        }
    }
}

#[cfg(test)]
mod tests;
