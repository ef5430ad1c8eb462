//! Helpers shared by the log-store integration tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "each test file uses a different subset; tests assert by panicking"
)]

use std::path::Path;

use bytes::Bytes;
use futures::TryStreamExt;
use log_store::{LocalLogStore, WalConfig};
use store_api::logstore::Entry;
use store_api::{EntryId, RegionId};

pub fn region(n: u32) -> RegionId {
    RegionId::new(7, n)
}

/// A payload that names its key, so a mixed-up read is caught.
pub fn payload(region_id: RegionId, entry_id: EntryId, len: usize) -> Bytes {
    let mut v = format!("{}:{}:", region_id.as_u64(), entry_id).into_bytes();
    v.resize(len.max(v.len()), b'x');
    Bytes::from(v)
}

pub fn entry(region_id: RegionId, entry_id: EntryId) -> Entry {
    Entry {
        region_id,
        entry_id,
        data: payload(region_id, entry_id, 32),
    }
}

pub async fn open(dir: &Path) -> LocalLogStore {
    LocalLogStore::open(WalConfig::new(dir)).await.unwrap()
}

pub async fn read_all(store: &LocalLogStore, region_id: RegionId, from: EntryId) -> Vec<Entry> {
    let chunks: Vec<Vec<Entry>> = store
        .read_entries(region_id, from)
        .try_collect()
        .await
        .unwrap();
    chunks.into_iter().flatten().collect()
}

pub fn ids(entries: &[Entry]) -> Vec<EntryId> {
    entries.iter().map(|e| e.entry_id).collect()
}

/// The only segment file in `dir` (panics if there are several).
pub fn only_segment(dir: &Path) -> std::path::PathBuf {
    let segs = segments(dir);
    assert_eq!(segs.len(), 1, "{segs:?}");
    segs.into_iter().next().unwrap()
}

pub fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

/// Appends entries `ids` of region 1, each of `len` bytes, one append each.
pub async fn append_sized(store: &LocalLogStore, ids: std::ops::RangeInclusive<u64>, len: usize) {
    let r = region(1);
    for id in ids {
        let e = Entry {
            region_id: r,
            entry_id: id,
            data: payload(r, id, len),
        };
        store.append(&[e]).await.unwrap();
    }
}
