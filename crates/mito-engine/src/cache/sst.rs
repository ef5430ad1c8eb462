//! The caches the engine hands to SST readers (`mito_sst::ChunkCache`, `ColumnCache`): their
//! limits, the column cache's admission policy, their counts.

use std::collections::HashSet;
use std::sync::Mutex;

use arrow_array::{Array, ArrayRef};
use bytes::Bytes;
use mito_sst::{Admission, CacheKey, FileId};

use super::weighted::WeightedCache;

/// A guess of a page cache entry's size (a column chunk of a row group).
const TYPICAL_CHUNK_BYTES: u64 = 256 << 10;
/// A guess of a column cache entry's size (a decoded column of a row group).
const TYPICAL_COLUMN_BYTES: u64 = 64 << 10;
/// Columns the column cache remembers as read once (its admission filter).
const SEEN_COLUMNS: u64 = 200_000;
/// Bytes per row a decoded column is guessed to take, to tell whether a fill fits.
const GUESS_BYTES_PER_ROW: u64 = 8;

/// Verified column-chunk bytes by (file, offset), with a byte limit.
#[derive(Debug)]
pub struct PageCache {
    chunks: WeightedCache<(FileId, u64), Bytes>,
}

impl PageCache {
    /// A cache holding at most about `bytes` bytes of chunks.
    pub fn new(bytes: u64) -> Self {
        Self {
            chunks: WeightedCache::new(bytes, TYPICAL_CHUNK_BYTES, 0.97, |_, b| b.len() as u64),
        }
    }

    /// Hits and misses since the last call.
    pub fn take_counts(&self) -> (u64, u64) {
        self.chunks.take_counts()
    }
}

impl mito_sst::ChunkCache for PageCache {
    fn get(&self, file: FileId, offset: u64) -> Option<Bytes> {
        self.chunks.get(&(file, offset))
    }

    fn insert(&self, file: FileId, offset: u64, chunk: Bytes) {
        self.chunks.insert((file, offset), chunk);
    }
}

/// Decoded columns of whole row groups by (file, row group, slot), with a byte limit.
///
/// Admission: a read of a few rows of a row group decodes only those the first time (as
/// without the cache) and notes the columns; the next read of them decodes only its
/// rows too, and starts a background task that decodes the whole columns and keeps them (a
/// query touching a row group a second time does not wait for 100k rows to decode: under
/// TSBS-style random draws that wait was each query type's p90). A read of most of a row
/// group keeps its columns at once. So a one-off query costs what it did without the
/// cache, and a repeated one is served from it once the background decode is done.
///
/// A background decode starts only while its columns fit: once the cache is full it would
/// push out columns decoded earlier at the same cost, and only reads of most of a row group
/// (which decode it whole anyway) bring columns in. With 24 h of TSBS data (3.3 GB of decoded
/// columns against a 1.5 GiB cache), replacing on the second read made the 8-hour queries
/// 1.7-3x slower than no cache at all, and on the fourth still 2x (docs/decisions.md).
#[derive(Debug)]
pub struct ColumnCache {
    columns: WeightedCache<CacheKey, ArrayRef>,
    /// Columns read partially once, not kept yet (one unit each).
    seen: WeightedCache<CacheKey, ()>,
    /// Background decodes running: their columns, and the tasks (for
    /// [`ColumnCache::settle`]).
    filling: Mutex<Filling>,
    limit: u64,
}

#[derive(Debug, Default)]
struct Filling {
    keys: HashSet<CacheKey>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ColumnCache {
    /// A cache holding at most about `bytes` bytes of decoded columns.
    pub fn new(bytes: u64) -> Self {
        Self {
            // Admission is decided here: what is inserted was asked for before, so new
            // entries get half the room (with quick_cache's default, 97% kept for entries
            // looked up twice, a fill left before the next query over it came).
            columns: WeightedCache::new(bytes, TYPICAL_COLUMN_BYTES, 0.5, |_, a| {
                u64::try_from(a.get_array_memory_size()).unwrap_or(u64::MAX)
            }),
            seen: WeightedCache::new(SEEN_COLUMNS, 1, 0.97, |_, ()| 1),
            filling: Mutex::new(Filling::default()),
            limit: bytes,
        }
    }

    fn filling_state(&self) -> std::sync::MutexGuard<'_, Filling> {
        // Plain sets and handles, each change one step: a poisoned lock is still usable.
        self.filling.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the background decodes started so far (tests, and a caller that wants the
    /// cache in a known state).
    pub async fn settle(&self) {
        let tasks = std::mem::take(&mut self.filling_state().tasks);
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Hits and misses since the last call.
    pub fn take_counts(&self) -> (u64, u64) {
        self.columns.take_counts()
    }

    /// Bytes of the entries held now (at most the limit given to [`ColumnCache::new`]).
    pub fn bytes(&self) -> u64 {
        self.columns.bytes()
    }
}

impl mito_sst::ColumnCache for ColumnCache {
    fn get(&self, key: CacheKey) -> Option<ArrayRef> {
        self.columns.get(&key)
    }

    fn peek(&self, key: &CacheKey) -> Option<ArrayRef> {
        self.columns.peek(key)
    }

    fn insert(&self, key: CacheKey, value: ArrayRef) {
        self.columns.insert(key, value);
    }

    fn admit(&self, keys: &[CacheKey], rows: usize, total: usize) -> Admission {
        if rows.saturating_mul(2) >= total {
            return Admission::Now;
        }
        if !keys.iter().all(|k| self.seen.peek(k).is_some()) {
            for k in keys {
                self.seen.insert(*k, ());
            }
            return Admission::No;
        }
        let fill = (total as u64)
            .saturating_mul(GUESS_BYTES_PER_ROW)
            .saturating_mul(keys.len() as u64);
        let fits = self.columns.bytes().saturating_add(fill) <= self.limit;
        if !fits {
            return Admission::No;
        }
        let mut filling = self.filling_state();
        if keys.iter().any(|k| filling.keys.contains(k)) {
            return Admission::No;
        }
        filling.keys.extend(keys.iter().copied());
        Admission::Background
    }

    fn filling(&self, task: tokio::task::JoinHandle<()>) {
        let mut filling = self.filling_state();
        filling.tasks.retain(|t| !t.is_finished());
        filling.tasks.push(task);
    }

    fn filled(&self, keys: &[CacheKey]) {
        let mut filling = self.filling_state();
        for k in keys {
            filling.keys.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use mito_sst::ColumnCache as _;
    use std::sync::Arc;

    use arrow_array::Int64Array;
    use mito_sst::Slot;

    use super::*;

    #[test]
    fn a_partial_read_is_admitted_on_its_second_time_and_a_big_one_at_once() {
        let c = ColumnCache::new(1 << 30);
        let f = FileId::from_u128(1);
        let keys = [(f, 0, Slot::Column(0)), (f, 0, Slot::Column(1))];
        assert_eq!(c.admit(&keys, 10, 100_000), Admission::No);
        assert_eq!(c.admit(&keys, 10, 100_000), Admission::Background);
        // While their decode runs, nobody else starts it.
        assert_eq!(c.admit(&keys, 10, 100_000), Admission::No);
        c.filled(&keys);
        assert_eq!(c.admit(&keys, 10, 100_000), Admission::Background);
        assert_eq!(c.admit(&keys[..1], 60_000, 100_000), Admission::Now);
    }

    #[test]
    fn a_full_cache_starts_no_background_decode() {
        // Room for two columns of 100k rows, and both held (quick_cache's default hot share
        // would refuse the second).
        let c = ColumnCache::new(2 << 20);
        let f = FileId::from_u128(1);
        for rg in [10, 11] {
            let column = Arc::new(Int64Array::from(vec![0i64; 100_000])) as ArrayRef;
            c.insert((f, rg, Slot::Column(0)), column);
        }
        assert!(c.bytes() > 1_600_000, "kept: {}", c.bytes());
        let other = [(f, 1, Slot::Column(0))];
        for _ in 0..10 {
            assert_eq!(c.admit(&other, 10, 100_000), Admission::No);
        }
        assert_eq!(c.admit(&other, 60_000, 100_000), Admission::Now);
    }
}
