//! What the SST reader asks of the caches it is given: verified column-chunk bytes, and
//! decoded columns of whole row groups with a decision on when to keep them. The keys and
//! the decisions are the format's vocabulary and live here; the caches themselves (limits,
//! eviction, the admission policy, hit and miss counts) are the engine's
//! (`mito_engine::cache`), which hands them to each reader it opens.

use arrow_array::ArrayRef;
use bytes::Bytes;

use crate::file::FileId;

/// Verified column-chunk bytes shared by reads, keyed by (file, chunk offset). A chunk is
/// offered only after its checksum matched, so a hit skips both the read and the check.
pub trait ChunkCache: Send + Sync + std::fmt::Debug {
    /// The chunk at `offset` of `file`, if kept (a lookup the owner counts).
    fn get(&self, file: FileId, offset: u64) -> Option<Bytes>;
    /// Keeps a verified chunk.
    fn insert(&self, file: FileId, offset: u64, chunk: Bytes);
}

/// A column cache entry: a file's row group and what of it.
pub type CacheKey = (FileId, usize, Slot);

/// What a column cache entry holds of a row group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The decoded column at this position of the file's schema.
    Column(usize),
    /// The first row of each run of equal primary-key dictionary keys (a `UInt32Array`).
    SeriesRuns,
}

/// Decoded columns (as the file stores them, before float decoding and schema adaption) of
/// whole row groups, and per row group where the runs of one series start (for tag filters,
/// see `SstReader::series_ranges`). A read whose columns are all here decodes nothing: it
/// slices or gathers the selected rows. Whether a read that misses decodes the whole columns
/// now, in the background, or only its own rows is the cache's call ([`ColumnCache::admit`]).
pub trait ColumnCache: Send + Sync + std::fmt::Debug {
    /// A decoded column, if kept (a lookup the owner counts as a hit or a miss).
    fn get(&self, key: CacheKey) -> Option<ArrayRef>;
    /// An entry, if kept, without counting the lookup (series runs, a background decode's own
    /// check).
    fn peek(&self, key: &CacheKey) -> Option<ArrayRef>;
    /// Keeps an entry.
    fn insert(&self, key: CacheKey, value: ArrayRef);
    /// What a read of `rows` of the `total` rows of a row group does with the missing
    /// columns `keys`. `Background` reserves them: until [`ColumnCache::filled`] no other read
    /// starts their decode.
    fn admit(&self, keys: &[CacheKey], rows: usize, total: usize) -> Admission;
    /// Keeps `task`, a background decode the reader started after `Background`, so the owner
    /// can wait for it.
    fn filling(&self, task: tokio::task::JoinHandle<()>);
    /// The background decode of `keys` ended (kept or failed): they may be admitted again.
    fn filled(&self, keys: &[CacheKey]);
}

/// What a read of part of a row group does with the columns the cache lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Decode them whole now and keep them (the read wants most of the row group).
    Now,
    /// Decode the read's rows now; decode the whole columns in the background and keep
    /// them (the second read of them).
    Background,
    /// Decode the read's rows only (the first read of them, or a decode of them is already
    /// running).
    No,
}
