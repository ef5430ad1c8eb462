//! `SEGMENTS`: the list of the segment files a WAL directory must hold.
//!
//! Segment files alone cannot show that one is missing: a deleted newest segment leaves a
//! directory that looks like one whose log simply ended earlier. The list names every
//! segment that may hold entries not yet obsolete, and the id the next segment gets, so
//! opening a directory can tell "never written" from "lost".
//!
//! Layout (little-endian), `28 + 8 * count` bytes:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `MITO-WSL` |
//! | 8 | 2 | format version (1) |
//! | 10 | 2 | flags; must be 0 |
//! | 12 | 4 | `count`: number of live segments |
//! | 16 | 8 | `next_id`: the id the next created segment gets; every live id is below it |
//! | 24 | 8 * count | live segment ids, strictly increasing |
//! | 24 + 8 * count | 4 | crc32c of every byte before it |
//!
//! The file is replaced whole (`mito_fs::replace`: temporary file, fsync, rename, directory
//! fsync). The rules that keep it true (`docs/wal.md`): a segment is created before it is
//! listed, and listed before any record is written to it; a segment leaves the list before
//! its file is deleted. So at open a listed segment that is missing was lost, an unlisted one
//! below `next_id` is a purge a crash interrupted, and an unlisted one at or above `next_id`
//! was created just before a crash and holds no record.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use snafu::ResultExt;

use crate::error::{IoSnafu, Result, corrupted};

/// The list's file name inside the WAL directory.
pub const LIST_FILE: &str = "SEGMENTS";
/// Magic bytes opening the list.
pub const LIST_MAGIC: [u8; 8] = *b"MITO-WSL";
/// The format version written.
pub const LIST_VERSION: u16 = 1;
/// Bytes before the ids.
const FIXED_LEN: usize = 24;
/// Bytes of the trailing checksum.
const CRC_LEN: usize = 4;

/// What the list says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentList {
    /// The id the next created segment gets; ids are never reused.
    pub next_id: u64,
    /// The segments that may hold entries not yet obsolete: each must exist.
    pub live: BTreeSet<u64>,
}

/// Why list bytes did not decode; `offset` is where the problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListError {
    /// Byte offset of the problem.
    pub offset: usize,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for ListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at byte {})", self.reason, self.offset)
    }
}

fn list_error(offset: usize, reason: impl Into<String>) -> ListError {
    ListError {
        offset,
        reason: reason.into(),
    }
}

/// Encodes `list`.
pub fn encode_list(list: &SegmentList) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED_LEN + 8 * list.live.len() + CRC_LEN);
    out.extend_from_slice(&LIST_MAGIC);
    out.extend_from_slice(&LIST_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    // A store holds far fewer than 2^32 segments (each is at least 1 MiB).
    out.extend_from_slice(
        &u32::try_from(list.live.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&list.next_id.to_le_bytes());
    for id in &list.live {
        out.extend_from_slice(&id.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// `N` bytes at `at`, or an error naming the offset (the length is checked before any field
/// is read, so this only fires on a decoder bug).
fn bytes_at<const N: usize>(b: &[u8], at: usize) -> Result<[u8; N], ListError> {
    b.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| list_error(at, "cut short"))
}

fn le_u16(b: &[u8], at: usize) -> Result<u16, ListError> {
    bytes_at(b, at).map(u16::from_le_bytes)
}

fn le_u32(b: &[u8], at: usize) -> Result<u32, ListError> {
    bytes_at(b, at).map(u32::from_le_bytes)
}

fn le_u64(b: &[u8], at: usize) -> Result<u64, ListError> {
    bytes_at(b, at).map(u64::from_le_bytes)
}

/// Decodes list bytes, checking magic, version, flags, length, checksum and the id rules.
/// Never allocates more than the bytes given.
pub fn decode_list(buf: &[u8]) -> Result<SegmentList, ListError> {
    if buf.len() < FIXED_LEN + CRC_LEN {
        return Err(list_error(
            buf.len(),
            format!("{} bytes, shorter than the smallest list", buf.len()),
        ));
    }
    if buf.get(..8) != Some(&LIST_MAGIC[..]) {
        return Err(list_error(0, "bad magic: not a WAL segment list"));
    }
    let version = le_u16(buf, 8)?;
    if version != LIST_VERSION {
        return Err(list_error(8, format!("unsupported version {version}")));
    }
    let flags = le_u16(buf, 10)?;
    if flags != 0 {
        return Err(list_error(10, format!("unknown flags {flags:#06x}")));
    }
    let count = u64::from(le_u32(buf, 12)?);
    let expected = FIXED_LEN as u64 + 8 * count + CRC_LEN as u64;
    if buf.len() as u64 != expected {
        return Err(list_error(
            12,
            format!(
                "{count} ids need {expected} bytes, the file has {}",
                buf.len()
            ),
        ));
    }
    let body = buf.len() - CRC_LEN;
    let stored = le_u32(buf, body)?;
    let actual = crc32c::crc32c(
        buf.get(..body)
            .ok_or_else(|| list_error(body, "cut short"))?,
    );
    if stored != actual {
        return Err(list_error(
            body,
            format!("checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"),
        ));
    }
    let next_id = le_u64(buf, 16)?;
    let mut live = BTreeSet::new();
    let mut previous = None;
    for at in (FIXED_LEN..body).step_by(8) {
        let id = le_u64(buf, at)?;
        if previous.is_some_and(|p| id <= p) {
            return Err(list_error(at, "segment ids not strictly increasing"));
        }
        if id >= next_id {
            return Err(list_error(
                at,
                format!("segment {id} is not below next_id {next_id}"),
            ));
        }
        previous = Some(id);
        live.insert(id);
    }
    Ok(SegmentList { next_id, live })
}

/// Reads the list of `dir`; `None` when there is none (a new directory, or one written
/// before the list existed).
pub(crate) fn read_list(dir: &Path) -> Result<Option<SegmentList>> {
    let path = dir.join(LIST_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(source).context(IoSnafu {
                path,
                op: "read segment list",
            });
        }
    };
    decode_list(&bytes)
        .map(Some)
        .map_err(|e| corrupted(&path, e.offset, e.reason))
}

/// The list of a writable store: what it says, kept equal to the file by writing the file
/// before any change is relied on.
#[derive(Debug)]
pub(crate) struct ListFile {
    fs: Arc<dyn mito_fs::Fs>,
    dir: PathBuf,
    list: SegmentList,
}

impl ListFile {
    /// A list believed to be on disk as `list` (call [`ListFile::store`] if it is not).
    pub(crate) fn new(fs: Arc<dyn mito_fs::Fs>, dir: PathBuf, list: SegmentList) -> Self {
        Self { fs, dir, list }
    }

    /// What the list says.
    pub(crate) fn list(&self) -> &SegmentList {
        &self.list
    }

    /// Writes the list as it stands.
    pub(crate) fn store(&self) -> Result<()> {
        let write = || -> std::io::Result<()> {
            fail::fail_point!("wal-list", |_| Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "failpoint wal-list"
            )));
            mito_fs::replace(&*self.fs, &self.dir, LIST_FILE, &encode_list(&self.list))
        };
        write().context(IoSnafu {
            path: self.dir.join(LIST_FILE),
            op: "write segment list",
        })
    }

    /// Lists segment `id`, just created and not yet written to. On failure the list is
    /// unchanged.
    pub(crate) fn add(&mut self, id: u64) -> Result<()> {
        let before = self.list.clone();
        self.list.live.insert(id);
        self.list.next_id = self.list.next_id.max(id.saturating_add(1));
        self.store().inspect_err(|_| self.list = before)
    }

    /// Unlists `ids` before their files are deleted. On failure the list is unchanged (and
    /// the files must stay).
    pub(crate) fn remove(&mut self, ids: &[u64]) -> Result<()> {
        if !ids.iter().any(|id| self.list.live.contains(id)) {
            return Ok(());
        }
        let before = self.list.clone();
        for id in ids {
            self.list.live.remove(id);
        }
        self.store().inspect_err(|_| self.list = before)
    }
}

/// The fuzz target's body (`fuzz/fuzz_targets/wal_list.rs`): arbitrary bytes either fail to
/// decode or decode into a list that keeps its rules and re-encodes to the same bytes.
#[doc(hidden)]
#[expect(
    clippy::panic,
    reason = "a fuzz body reports a broken invariant by panicking"
)]
pub fn fuzz_decode_list(data: &[u8]) {
    let Ok(list) = decode_list(data) else {
        return;
    };
    if list.live.iter().any(|id| *id >= list.next_id) {
        panic!("a live id at or above next_id decoded: {list:?}");
    }
    if encode_list(&list) != data {
        panic!("a decoded list does not re-encode to its bytes");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    fn list(next_id: u64, live: &[u64]) -> SegmentList {
        SegmentList {
            next_id,
            live: live.iter().copied().collect(),
        }
    }

    /// The bytes of `list(8, &[3, 7])`, frozen: the checksum was computed by a bit-at-a-time
    /// crc32c in Python, independently of the Rust encoder. A change here is a format change.
    const FROZEN: &str = "4d49544f2d57534c010000000200000008000000000000000300000000000000\
                          070000000000000094bf6117";

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    #[test]
    fn frozen_list_decodes() {
        let bytes = hex(FROZEN);
        assert_eq!(decode_list(&bytes).unwrap(), list(8, &[3, 7]));
        assert_eq!(encode_list(&list(8, &[3, 7])), bytes);
    }

    #[test]
    fn lists_round_trip() {
        for l in [
            list(0, &[]),
            list(1, &[]),
            list(2, &[1]),
            list(u64::MAX, &[0, 5, 9]),
        ] {
            assert_eq!(decode_list(&encode_list(&l)).unwrap(), l);
        }
    }

    #[test]
    fn every_cut_and_every_bit_flip_is_refused() {
        let bytes = encode_list(&list(10, &[2, 4, 9]));
        for len in 0..bytes.len() {
            assert!(decode_list(&bytes[..len]).is_err(), "cut at {len}");
        }
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_list(&b).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn broken_rules_are_refused_even_with_a_good_checksum() {
        let reseal = |mut b: Vec<u8>| {
            let body = b.len() - CRC_LEN;
            let crc = crc32c::crc32c(&b[..body]);
            b[body..].copy_from_slice(&crc.to_le_bytes());
            b
        };
        // An id at next_id.
        let mut b = encode_list(&list(10, &[2, 4]));
        b[16..24].copy_from_slice(&4u64.to_le_bytes());
        assert!(
            decode_list(&reseal(b))
                .unwrap_err()
                .reason
                .contains("below next_id")
        );
        // Ids out of order.
        let mut b = encode_list(&list(10, &[2, 4]));
        b[24..32].copy_from_slice(&5u64.to_le_bytes());
        assert!(
            decode_list(&reseal(b))
                .unwrap_err()
                .reason
                .contains("increasing")
        );
        // A count that does not fit the length.
        let mut b = encode_list(&list(10, &[2, 4]));
        b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_list(&reseal(b)).unwrap_err().reason.contains("need"));
        // Unknown version and flags.
        let mut b = encode_list(&list(10, &[2]));
        b[8] = 2;
        assert!(
            decode_list(&reseal(b))
                .unwrap_err()
                .reason
                .contains("version")
        );
        let mut b = encode_list(&list(10, &[2]));
        b[10] = 1;
        assert!(
            decode_list(&reseal(b))
                .unwrap_err()
                .reason
                .contains("flags")
        );
    }

    #[test]
    fn a_failed_store_leaves_the_list_unchanged() {
        #[derive(Debug)]
        struct Full;
        impl mito_fs::Fs for Full {
            fn create_dir_all(&self, _: &Path) -> std::io::Result<()> {
                Ok(())
            }
            fn create(&self, _: &Path) -> std::io::Result<Box<dyn mito_fs::FsFile>> {
                Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "full"))
            }
            fn open_append(&self, _: &Path) -> std::io::Result<Box<dyn mito_fs::FsFile>> {
                Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "full"))
            }
            fn rename(&self, _: &Path, _: &Path) -> std::io::Result<()> {
                Ok(())
            }
            fn remove_file(&self, _: &Path) -> std::io::Result<()> {
                Ok(())
            }
            fn sync_dir(&self, _: &Path) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut f = ListFile::new(Arc::new(Full), PathBuf::from("/nowhere"), list(3, &[1, 2]));
        assert!(f.add(3).is_err());
        assert!(f.remove(&[1]).is_err());
        assert_eq!(f.list(), &list(3, &[1, 2]));
        // Removing ids the list does not hold writes nothing, so it cannot fail.
        f.remove(&[7]).unwrap();
    }

    /// Replays the checked-in cargo-fuzz corpus (see `fuzz/`) as a normal test.
    #[test]
    fn fuzz_corpus_replays() {
        test_util::replay_corpus("wal_list", 3, |bytes| {
            fuzz_decode_list(bytes);
            Ok(())
        });
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..96)) {
            fuzz_decode_list(&bytes);
        }

        #[test]
        fn arbitrary_lists_round_trip(next_id in 1u64.., ids in proptest::collection::btree_set(proptest::num::u64::ANY, 0..16)) {
            let live = ids.into_iter().map(|id| id % next_id).collect();
            let l = SegmentList { next_id, live };
            let bytes = encode_list(&l);
            proptest::prop_assert_eq!(decode_list(&bytes).unwrap(), l);
            fuzz_decode_list(&bytes);
        }
    }
}
