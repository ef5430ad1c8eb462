//! Byte layout of a WAL segment file. Pure functions over bytes; no I/O.
//!
//! A segment is a header followed by records. All integers are little-endian.
//!
//! Segment header (24 bytes):
//!
//! | offset | size | field                                      |
//! |-------:|-----:|--------------------------------------------|
//! |      0 |    8 | magic `b"MITO-WAL"`                        |
//! |      8 |    2 | format version (1 or 2; new segments: 2)   |
//! |     10 |    2 | flags; must be 0                           |
//! |     12 |    8 | segment id (equals the file name's number) |
//! |     20 |    4 | crc32c of bytes 0..20                      |
//!
//! Record of version 2 (20-byte header + payload):
//!
//! | offset | size | field                                                          |
//! |-------:|-----:|----------------------------------------------------------------|
//! |      0 |    8 | `position`: the offset of this record in its segment           |
//! |      8 |    4 | `len`: payload length in bytes (16 ..= 1 GiB)                  |
//! |     12 |    4 | crc32c of the payload                                          |
//! |     16 |    4 | crc32c of the segment id (8 bytes) followed by bytes 0..16     |
//! |     20 |    8 | payload: region id (`u64`)                                     |
//! |     28 |    8 | payload: entry id (`u64`)                                      |
//! |     36 | len-16 | payload: entry data (opaque)                                |
//!
//! A record names where it lives (its position, and through the header checksum its
//! segment), so bytes that merely look like a record (inside another record's payload, or
//! copied from elsewhere) never decode as one at a place it was not written. That makes the
//! search for records after damage exact and cheap: one 8-byte compare per offset, with no
//! budget. The payload checksum is computed where the entry is encoded (in the appender's
//! task); the position and header checksum are filled in by the writer, which alone knows
//! where the record lands ([`place_records`]).
//!
//! Record of version 1 (still read, no longer written): `[len u32][crc32c u32][payload]`,
//! the checksum over the 4 `len` bytes and the payload.
//!
//! Decoding never trusts a length beyond the bytes at hand: a record is only read if all of
//! it is in the buffer, and the buffer is a file already read into memory, so no length field
//! can make the decoder allocate.
//!
//! [`scan_segment`] classifies what follows the last good record:
//! - nothing: a clean end;
//! - damage with no decodable record after it: a *torn tail* (an interrupted write: a killed
//!   process, a full disk, a power cut that dropped what was not synced), which recovery
//!   truncates when it ends the last segment, whatever the size of the torn record;
//! - damage followed by a decodable record: *corruption* (bytes that were once complete are
//!   damaged), which recovery reports as an error naming the offset, because dropping it
//!   would silently lose acknowledged entries.

use std::ops::Range;

use store_api::{EntryId, RegionId};

/// Magic bytes opening every segment.
pub const MAGIC: [u8; 8] = *b"MITO-WAL";
/// The format version new segments are written in.
pub const FORMAT_VERSION: u16 = 2;
/// The oldest format version this build reads.
pub const OLDEST_READ_VERSION: u16 = 1;
/// Length of the segment header.
pub const HEADER_LEN: usize = 24;
/// Length of a record header in the current version (position, len, two checksums).
pub const RECORD_HEADER_LEN: usize = 20;
/// Length of a version-1 record header (`len` + `crc`).
pub const RECORD_HEADER_LEN_V1: usize = 8;
/// Length of the fixed part of a payload (region id + entry id).
pub const PAYLOAD_PREFIX_LEN: usize = 16;
/// Largest payload the format allows (1 GiB); stores cap entries lower (`max_entry_size`).
pub const MAX_PAYLOAD_LEN: usize = PAYLOAD_PREFIX_LEN + crate::config::MAX_ENTRY_LEN;
// A frozen property of format version 2 (`docs/wal.md`).
const _: () = assert!(MAX_PAYLOAD_LEN == 1 << 30);

/// Version 1 only: how many payload bytes the search for records after a damaged one may
/// checksum before it gives up and calls the damage corruption. Version-1 records do not
/// name their position, so any bytes that look like a length are a candidate; version 2
/// needs no budget.
const V1_SEARCH_CRC_BUDGET: usize = 256 << 20;

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version found in the file.
    pub version: u16,
    /// The segment's id.
    pub segment_id: u64,
}

/// Encodes a segment header of the current version.
pub fn encode_header(segment_id: u64) -> [u8; HEADER_LEN] {
    encode_header_version(FORMAT_VERSION, segment_id)
}

/// Encodes a segment header of `version` (older versions: for compatibility tests and the
/// fuzz body's re-encoding).
#[doc(hidden)]
pub fn encode_header_version(version: u16, segment_id: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let (version, flags, id) = (
        version.to_le_bytes(),
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
    /// Flags this build does not know (no version defines any).
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
                "unsupported segment format version {version} (this build reads \
                 {OLDEST_READ_VERSION} to {FORMAT_VERSION})"
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
    if !(OLDEST_READ_VERSION..=FORMAT_VERSION).contains(&version) {
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

/// Length of the (current version) record that holds `data_len` bytes of entry data.
pub fn record_len(data_len: usize) -> usize {
    RECORD_HEADER_LEN + PAYLOAD_PREFIX_LEN + data_len
}

/// Appends one record of the current version to `out`, not yet placed: its position and
/// header checksum are zero until [`place_records`] fills them in. The caller keeps
/// `data.len()` within `MAX_PAYLOAD_LEN - 16`.
pub fn encode_record(region_id: RegionId, entry_id: EntryId, data: &[u8], out: &mut Vec<u8>) {
    let len = (PAYLOAD_PREFIX_LEN + data.len()) as u32;
    let region = region_id.as_u64().to_le_bytes();
    let entry = entry_id.to_le_bytes();
    let mut crc = crc32c::crc32c(&region);
    crc = crc32c::crc32c_append(crc, &entry);
    crc = crc32c::crc32c_append(crc, data);
    out.reserve(record_len(data.len()));
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&region);
    out.extend_from_slice(&entry);
    out.extend_from_slice(data);
}

/// The records in a buffer given to [`place_records`] do not fill it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotWholeRecords {
    /// Where the buffer stopped holding whole records.
    pub at: usize,
}

/// Fills in the position and header checksum of the records encoded back to back in `buf`
/// by [`encode_record`], for `buf` written at byte `start` of segment `segment_id`.
pub fn place_records(buf: &mut [u8], segment_id: u64, start: u64) -> Result<(), NotWholeRecords> {
    let mut at = 0usize;
    while at < buf.len() {
        let Some(header) = buf.get_mut(at..at + RECORD_HEADER_LEN) else {
            return Err(NotWholeRecords { at });
        };
        let len = read_u32(header, 8) as usize;
        let position = start + at as u64;
        header
            .get_mut(0..8)
            .ok_or(NotWholeRecords { at })?
            .copy_from_slice(&position.to_le_bytes());
        let crc = header_crc(segment_id, header);
        header
            .get_mut(16..20)
            .ok_or(NotWholeRecords { at })?
            .copy_from_slice(&crc.to_le_bytes());
        at = at
            .checked_add(RECORD_HEADER_LEN + len)
            .filter(|end| *end <= buf.len())
            .ok_or(NotWholeRecords { at })?;
    }
    Ok(())
}

/// The header checksum of a version-2 record: the segment id, then header bytes 0..16.
fn header_crc(segment_id: u64, header: &[u8]) -> u32 {
    let seeded = crc32c::crc32c(&segment_id.to_le_bytes());
    crc32c::crc32c_append(seeded, header.get(..16).unwrap_or_default())
}

/// Appends one version-1 record to `out` (compatibility tests and the fuzz body only).
#[doc(hidden)]
pub fn encode_record_v1(region_id: RegionId, entry_id: EntryId, data: &[u8], out: &mut Vec<u8>) {
    let len = (PAYLOAD_PREFIX_LEN + data.len()) as u32;
    let len_bytes = len.to_le_bytes();
    let region = region_id.as_u64().to_le_bytes();
    let entry = entry_id.to_le_bytes();
    let mut crc = crc32c::crc32c(&len_bytes);
    crc = crc32c::crc32c_append(crc, &region);
    crc = crc32c::crc32c_append(crc, &entry);
    crc = crc32c::crc32c_append(crc, data);
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
    /// The record header's checksum does not match (version 2).
    BadHeader,
    /// The header checksum matches but names another position (version 2): a record that
    /// was not written here.
    Misplaced { position: u64 },
    /// The payload checksum does not match.
    BadChecksum,
}

impl std::fmt::Display for RecordDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordDamage::Truncated => f.write_str("record cut short"),
            RecordDamage::BadLength { len } => write!(f, "impossible record length {len}"),
            RecordDamage::BadHeader => f.write_str("record header checksum mismatch"),
            RecordDamage::Misplaced { position } => {
                write!(f, "record header names offset {position}")
            }
            RecordDamage::BadChecksum => f.write_str("record checksum mismatch"),
        }
    }
}

/// Reads the record starting at `offset` of a segment with header `header`.
pub fn decode_record(
    buf: &[u8],
    offset: usize,
    header: &SegmentHeader,
) -> Result<RecordRef, RecordDamage> {
    if header.version == 1 {
        decode_record_v1(buf, offset)
    } else {
        decode_record_v2(buf, offset, header.segment_id)
    }
}

fn decode_record_v2(buf: &[u8], offset: usize, segment_id: u64) -> Result<RecordRef, RecordDamage> {
    let header_end = offset
        .checked_add(RECORD_HEADER_LEN)
        .ok_or(RecordDamage::Truncated)?;
    let Some(header) = buf.get(offset..header_end) else {
        return Err(RecordDamage::Truncated);
    };
    if header_crc(segment_id, header) != read_u32(header, 16) {
        return Err(RecordDamage::BadHeader);
    }
    let position = read_u64(header, 0);
    if position != offset as u64 {
        return Err(RecordDamage::Misplaced { position });
    }
    let len = read_u32(header, 8);
    let payload = payload_at(buf, header_end, len)?;
    if crc32c::crc32c(payload) != read_u32(header, 12) {
        return Err(RecordDamage::BadChecksum);
    }
    Ok(record_ref(offset, header_end, payload))
}

fn decode_record_v1(buf: &[u8], offset: usize) -> Result<RecordRef, RecordDamage> {
    let header_end = offset
        .checked_add(RECORD_HEADER_LEN_V1)
        .ok_or(RecordDamage::Truncated)?;
    let Some(header) = buf.get(offset..header_end) else {
        return Err(RecordDamage::Truncated);
    };
    let len = read_u32(header, 0);
    let payload = payload_at(buf, header_end, len)?;
    let (len_bytes, _) = header.split_at(4);
    let crc = crc32c::crc32c_append(crc32c::crc32c(len_bytes), payload);
    if crc != read_u32(header, 4) {
        return Err(RecordDamage::BadChecksum);
    }
    Ok(record_ref(offset, header_end, payload))
}

/// The `len` payload bytes at `start`, if `len` is possible and they are all there.
fn payload_at(buf: &[u8], start: usize, len: u32) -> Result<&[u8], RecordDamage> {
    let payload_len = len as usize;
    if !(PAYLOAD_PREFIX_LEN..=MAX_PAYLOAD_LEN).contains(&payload_len) {
        return Err(RecordDamage::BadLength { len });
    }
    let end = start
        .checked_add(payload_len)
        .ok_or(RecordDamage::Truncated)?;
    buf.get(start..end).ok_or(RecordDamage::Truncated)
}

fn record_ref(offset: usize, payload_start: usize, payload: &[u8]) -> RecordRef {
    RecordRef {
        offset,
        region_id: RegionId::from_u64(read_u64(payload, 0)),
        entry_id: read_u64(payload, 8),
        data: payload_start + PAYLOAD_PREFIX_LEN..payload_start + payload.len(),
    }
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
    /// Damage at `offset` followed by a decodable record at `next_valid` (or, in a
    /// version-1 segment only, the search for one ran out of budget: `next_valid: None`):
    /// data that was once complete is damaged.
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
        match decode_record(buf, offset, &header) {
            Ok(record) => {
                offset = record.end();
                records.push(record);
            }
            Err(damage) => {
                let next_valid = if header.version == 1 {
                    find_record_after_v1(buf, offset, damage)
                } else {
                    find_record_after(buf, offset, header.segment_id).map(Some)
                };
                break match next_valid {
                    None => Tail::Torn { offset, damage },
                    Some(next_valid) => Tail::Corrupt {
                        offset,
                        damage,
                        next_valid,
                    },
                };
            }
        }
    };
    Ok(SegmentScan {
        header,
        records,
        valid_end: offset,
        tail,
    })
}

/// The first offset after `damaged` where a version-2 record decodes, searching every
/// offset. Exact, with no budget: a candidate must name its own offset (one 8-byte compare
/// rejects all but a vanishing share of offsets) and pass the header checksum over the
/// segment id before its payload is checksummed, so the cost is one pass over the bytes.
fn find_record_after(buf: &[u8], damaged: usize, segment_id: u64) -> Option<usize> {
    let first = damaged.checked_add(1)?;
    let rest = buf.get(first..)?;
    rest.windows(8)
        .enumerate()
        .filter(|(i, w)| read_u64(w, 0) == (first + i) as u64)
        .map(|(i, _)| first + i)
        .find(|candidate| decode_record_v2(buf, *candidate, segment_id).is_ok())
}

/// Version 1: `None` when no record decodes after the damage (a torn tail), `Some(found)`
/// otherwise, where `found` is `None` if the search ran out of its budget.
fn find_record_after_v1(buf: &[u8], offset: usize, damage: RecordDamage) -> Option<Option<usize>> {
    // Fast path: only the payload is damaged and the length is intact, so the next record
    // starts right after this one.
    if damage == RecordDamage::BadChecksum {
        let len = buf
            .get(offset..offset + 4)
            .map_or(0, |b| read_u32(b, 0) as usize);
        let next = offset + RECORD_HEADER_LEN_V1 + len;
        if next < buf.len() && decode_record_v1(buf, next).is_ok() {
            return Some(Some(next));
        }
    }
    let mut budget = V1_SEARCH_CRC_BUDGET;
    for candidate in offset + 1
        ..buf
            .len()
            .saturating_sub(RECORD_HEADER_LEN_V1 + PAYLOAD_PREFIX_LEN - 1)
    {
        let Some(len_bytes) = buf.get(candidate..candidate + 4) else {
            break;
        };
        let len = read_u32(len_bytes, 0) as usize;
        if len < PAYLOAD_PREFIX_LEN || candidate + RECORD_HEADER_LEN_V1 + len > buf.len() {
            continue;
        }
        if len > budget {
            return Some(None);
        }
        budget -= len;
        if decode_record_v1(buf, candidate).is_ok() {
            return Some(Some(candidate));
        }
    }
    None
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
    let (version, segment_id) = (scan.header.version, scan.header.segment_id);
    let mut reencoded = encode_header_version(version, segment_id).to_vec();
    let mut records = Vec::new();
    for r in &scan.records {
        let Some(entry) = data.get(r.data.clone()) else {
            panic!("record data {:?} outside the buffer", r.data);
        };
        if version == 1 {
            encode_record_v1(r.region_id, r.entry_id, entry, &mut records);
        } else {
            encode_record(r.region_id, r.entry_id, entry, &mut records);
        }
    }
    if version != 1 && place_records(&mut records, segment_id, HEADER_LEN as u64).is_err() {
        panic!("re-encoded records are not whole records");
    }
    reencoded.extend_from_slice(&records);
    if data.get(..scan.valid_end) != Some(&reencoded[..]) {
        panic!("valid prefix does not re-encode byte for byte");
    }
    match scan.tail {
        Tail::Clean => assert_eq!(scan.valid_end, data.len()),
        Tail::Torn { offset, .. } => {
            assert_eq!(offset, scan.valid_end);
            assert!(offset < data.len());
        }
        Tail::Corrupt {
            offset, next_valid, ..
        } => {
            assert_eq!(offset, scan.valid_end);
            assert!(offset < data.len());
            if let Some(next) = next_valid {
                assert!(next > offset);
                assert!(decode_record(data, next, &scan.header).is_ok());
            }
        }
    }
}

#[cfg(test)]
mod tests;
