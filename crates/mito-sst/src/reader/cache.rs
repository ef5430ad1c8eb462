//! The SST reader's caches: verified column-chunk bytes and decoded row-group columns.

use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::{Array, ArrayRef};
use bytes::Bytes;

use crate::file::FileId;

/// Verified column-chunk bytes shared by reads, keyed by (file, chunk offset), with a byte
/// limit. A chunk enters only after its checksum matched, so a hit skips the read and the
/// check. Hits and misses are counted for the owner's metrics.
#[derive(Debug)]
pub struct ChunkCache {
    cache: moka::sync::Cache<(FileId, u64), Bytes>,
    counts: HitCounts,
}

impl ChunkCache {
    /// A cache holding at most about `bytes` bytes of chunks.
    pub fn new(bytes: u64) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(bytes)
                .weigher(|_: &(FileId, u64), b: &Bytes| u32::try_from(b.len()).unwrap_or(u32::MAX))
                .build(),
            counts: HitCounts::default(),
        }
    }

    pub(super) fn get(&self, file: FileId, offset: u64) -> Option<Bytes> {
        let hit = self.cache.get(&(file, offset));
        self.counts.count(hit.is_some());
        hit
    }

    pub(super) fn insert(&self, file: FileId, offset: u64, chunk: Bytes) {
        self.cache.insert((file, offset), chunk);
    }

    /// Hits and misses since the last call.
    pub fn take_counts(&self) -> (u64, u64) {
        self.counts.take()
    }
}

/// A column cache entry: a file's row group and what of it.
pub(super) type CacheKey = (FileId, usize, Slot);

/// What a column cache entry holds of a row group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Slot {
    /// The decoded column at this position of the file's schema.
    Column(usize),
    /// The first row of each run of equal primary-key dictionary keys (a `UInt32Array`).
    SeriesRuns,
    /// Which of those runs the series filters of one compilation of key filters keep (a
    /// `BooleanArray`, one value per run; see `KeyFilters`).
    KeptRuns(u64),
}

/// Columns the column cache remembers as read once (its admission filter).
pub(super) const SEEN_COLUMNS: usize = 200_000;

/// Decoded columns (as the file stores them, before float decoding and schema adaption) of
/// whole row groups, keyed by (file, row group, column), with a byte limit. A read whose
/// columns are all here decodes nothing: it slices or gathers the selected rows.
///
/// Admission: a read of a few rows of a row group decodes only those the first time (as
/// without the cache) and notes the columns; the next read of them decodes only its rows
/// too, and starts a background task that decodes the whole columns and keeps them (a
/// query touching a row group a second time does not wait for 100k rows to decode: under
/// TSBS-style random draws that wait was each query type's p90). A read of most of a row
/// group keeps its columns at once. So a one-off query costs what it did without the
/// cache, and a repeated one is served from it once the background decode is done.
///
/// It also keeps, per row group, where the runs of one series start (for tag filters, see
/// `SstReader::series_ranges`).
#[derive(Debug)]
pub struct ColumnCache {
    pub(super) cache: quick_cache::sync::Cache<CacheKey, ArrayRef, ArrayBytes>,
    /// Columns read partially once, not kept yet.
    seen: quick_cache::sync::Cache<CacheKey, ()>,
    counts: HitCounts,
    /// Background decodes running (see [`Admission::Background`]): their columns, and the
    /// tasks (for [`ColumnCache::settle`]).
    filling: std::sync::Mutex<Filling>,
}

#[derive(Debug, Default)]
struct Filling {
    keys: std::collections::HashSet<CacheKey>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What a read of part of a row group does with the columns the cache lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// Decode them whole now and keep them (the read wants most of the row group).
    Now,
    /// Decode the read's rows now; decode the whole columns in the background and keep
    /// them (the second read of them).
    Background,
    /// Decode the read's rows only (the first read of them, or a decode of them is already
    /// running).
    No,
}

/// A column cache entry weighs its array's memory (at least 1: weightless entries would
/// never be evicted).
#[derive(Debug, Clone, Copy)]
pub(super) struct ArrayBytes;

impl quick_cache::Weighter<CacheKey, ArrayRef> for ArrayBytes {
    fn weight(&self, _: &CacheKey, a: &ArrayRef) -> u64 {
        u64::try_from(a.get_array_memory_size())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// A guess of a column cache entry's size, for the cache's table: a column of a row group.
pub(super) const TYPICAL_COLUMN_BYTES: u64 = 64 << 10;

impl ColumnCache {
    /// A cache holding at most about `bytes` bytes of decoded columns.
    pub fn new(bytes: u64) -> Self {
        let items = usize::try_from(bytes / TYPICAL_COLUMN_BYTES)
            .unwrap_or(usize::MAX)
            .max(1024);
        Self {
            cache: quick_cache::sync::Cache::with_weighter(items, bytes.max(1), ArrayBytes),
            seen: quick_cache::sync::Cache::new(SEEN_COLUMNS),
            counts: HitCounts::default(),
            filling: std::sync::Mutex::new(Filling::default()),
        }
    }

    /// What a read of `rows` of the `total` rows of a row group does with the missing
    /// columns `keys` (a first read notes them as seen). `Background` reserves them: until
    /// [`ColumnCache::filled`] no other read starts their decode.
    pub(super) fn admit(&self, keys: &[CacheKey], rows: usize, total: usize) -> Admission {
        if rows.saturating_mul(2) >= total {
            return Admission::Now;
        }
        if keys.iter().all(|k| self.seen.contains_key(k)) {
            let mut filling = self.filling.lock().unwrap_or_else(|p| p.into_inner());
            if keys.iter().any(|k| filling.keys.contains(k)) {
                return Admission::No;
            }
            filling.keys.extend(keys.iter().copied());
            return Admission::Background;
        }
        for k in keys {
            self.seen.insert(*k, ());
        }
        Admission::No
    }

    /// Keeps `task`, a background decode (see [`Admission::Background`]), for
    /// [`ColumnCache::settle`].
    pub(super) fn filling(&self, task: tokio::task::JoinHandle<()>) {
        let mut filling = self.filling.lock().unwrap_or_else(|p| p.into_inner());
        filling.tasks.retain(|t| !t.is_finished());
        filling.tasks.push(task);
    }

    /// The background decode of `keys` ended (kept or failed): they may be admitted again.
    pub(super) fn filled(&self, keys: &[CacheKey]) {
        let mut filling = self.filling.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            filling.keys.remove(k);
        }
    }

    /// Waits for the background decodes started so far (tests, and a caller that wants the
    /// cache in a known state).
    pub async fn settle(&self) {
        let tasks =
            std::mem::take(&mut self.filling.lock().unwrap_or_else(|p| p.into_inner()).tasks);
        for t in tasks {
            let _ = t.await;
        }
    }

    pub(super) fn get(&self, key: CacheKey) -> Option<ArrayRef> {
        let hit = self.cache.get(&key);
        self.counts.count(hit.is_some());
        hit
    }

    /// Hits and misses since the last call.
    pub fn take_counts(&self) -> (u64, u64) {
        self.counts.take()
    }

    /// Bytes of the entries held now (at most the limit given to [`ColumnCache::new`]).
    pub fn bytes(&self) -> u64 {
        self.cache.weight()
    }
}

/// Hits and misses of a cache, counted without a lock and read (and reset) by the owner's
/// metrics.
#[derive(Debug, Default)]
struct HitCounts {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl HitCounts {
    fn count(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Hits and misses since the last call.
    fn take(&self) -> (u64, u64) {
        (
            self.hits.swap(0, Ordering::Relaxed),
            self.misses.swap(0, Ordering::Relaxed),
        )
    }
}
