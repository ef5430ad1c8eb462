//! Reads an SST file: verifies its bytes, prunes, decodes and adapts batches to the region's
//! current schema.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt32Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_buffer::BooleanBuffer;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use datafusion_common::DFSchema;
use datafusion_expr::Expr;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use mito_read::compat;
use opendal::Operator;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, RowSelection};
use parquet::arrow::async_reader::{
    AsyncFileReader, MetadataFetch, ParquetRecordBatchStream, ParquetRecordBatchStreamBuilder,
};
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use snafu::{ResultExt, ensure};
use store_api::ColumnId;
use store_api::metadata::{OP_TYPE_COLUMN, PRIMARY_KEY_COLUMN, RegionMetadataRef, SEQUENCE_COLUMN};
use store_api::scan::TimeRange;

use crate::error::{
    ArrowSnafu, CorruptedSnafu, Error, FilterFailedSnafu, InvalidReadSnafu, ParquetSnafu, Result,
    SchemaMismatchSnafu,
};
use crate::file::{FileId, FileMeta, sst_path};
use crate::format::{SST_INFO_KEY, SstInfo, decode_floats, exception_column, file_schema};
use crate::pruning::{FileStats, Pruner, time_range_exprs};

/// What to read from an SST.
#[derive(Debug, Clone)]
pub struct SstReadRequest {
    /// Columns by id, in this order; `None` for all. The internal columns always follow.
    pub projection: Option<Vec<ColumnId>>,
    /// Only rows in this range (applied exactly, not only for pruning).
    pub time_range: Option<TimeRange>,
    /// Filters over the current schema, used to prune row groups and pages. Rows that do not
    /// match may still be returned: a filter on a field may only be applied after dedup.
    pub filters: Vec<Expr>,
    /// Rows per batch.
    pub batch_rows: usize,
}

/// The rows of an [`SstReader::read_exact`].
pub struct SstRead {
    /// The rows, as [`SstReader::read`] returns them.
    pub stream: BoxStream<'static, Result<RecordBatch>>,
    /// Positions in the request's `filters` of those every row of `stream` passes.
    pub exact: Vec<usize>,
}

impl std::fmt::Debug for SstRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SstRead")
            .field("exact", &self.exact)
            .finish_non_exhaustive()
    }
}

impl Default for SstReadRequest {
    fn default() -> Self {
        Self {
            projection: None,
            time_range: None,
            filters: Vec::new(),
            batch_rows: 8192,
        }
    }
}

/// What pruning left of a file for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadPlan {
    /// Row groups to read.
    pub row_groups: Vec<usize>,
    /// Rows to read inside them, if pages were pruned.
    pub selection: Option<RowSelection>,
    /// Rows that will be decoded.
    pub rows: usize,
}

/// An opened SST: its checked footer and metadata, ready for any number of reads.
#[derive(Clone)]
pub struct SstReader {
    op: Operator,
    path: Arc<str>,
    meta: FileMeta,
    info: Arc<SstInfo>,
    parquet: Arc<ParquetMetaData>,
    arrow: ArrowReaderMetadata,
    current: RegionMetadataRef,
    /// Appended to every key: the defaults of tags added to the key since the file was
    /// written.
    key_suffix: Arc<[u8]>,
    chunk_cache: Option<Arc<ChunkCache>>,
    column_cache: Option<Arc<ColumnCache>>,
    /// Plans of recent requests, by time range and filters (see [`SstReader::plan`]).
    plans: Arc<Recent<PlanKey, ReadPlan>>,
    /// Key filters of recent requests, compiled, by projection and filters (see
    /// `SstReader::key_filters`).
    key_filters: Arc<Recent<KeyFiltersKey, KeyFilters>>,
}

/// What a read plan is a function of.
type PlanKey = (Option<TimeRange>, Vec<Expr>);
/// What a read's key filters are a function of.
type KeyFiltersKey = (Option<Vec<ColumnId>>, Vec<Expr>);
/// Compiled key filters, their positions in the request's filters, and an id of this
/// compilation (process-wide unique), under which the column cache keeps which runs of a row
/// group their series filters keep.
type KeyFilters = (mito_read::RowFilters, Vec<usize>, u64);

/// The id of the next compilation of key filters.
static NEXT_KEY_FILTERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Read plans (and compiled key filters) an [`SstReader`] remembers.
const KEPT_PLANS: usize = 8;

/// The values of the last [`KEPT_PLANS`] keys looked up, newest first. Keys are compared
/// whole (structurally equal filters, equal keys).
#[derive(Debug)]
struct Recent<K, V> {
    entries: std::sync::Mutex<std::collections::VecDeque<(K, V)>>,
}

impl<K, V> Default for Recent<K, V> {
    fn default() -> Self {
        Self {
            entries: std::sync::Mutex::default(),
        }
    }
}

impl<K: Clone, V: Clone> Recent<K, V> {
    /// The value of the key `is_key` accepts (`key` is that key), remembered or made by
    /// `make` (and remembered).
    fn get_or(
        &self,
        is_key: impl Fn(&K) -> bool,
        key: impl FnOnce() -> K,
        make: impl FnOnce() -> V,
    ) -> V {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(i) = entries.iter().position(|(k, _)| is_key(k))
            && let Some(hit) = entries.remove(i)
        {
            let value = hit.1.clone();
            entries.push_front(hit);
            return value;
        }
        let value = make();
        if let Ok(mut entries) = self.entries.lock() {
            entries.push_front((key(), value.clone()));
            entries.truncate(KEPT_PLANS);
        }
        value
    }
}

/// Verified column-chunk bytes shared by reads, keyed by (file, chunk offset), with a byte
/// limit. A chunk enters only after its checksum matched, so a hit skips the read and the
/// check. Hits and misses are counted for the owner's metrics.
#[derive(Debug)]
pub struct ChunkCache {
    cache: moka::sync::Cache<(FileId, u64), Bytes>,
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

impl ChunkCache {
    /// A cache holding at most about `bytes` bytes of chunks.
    pub fn new(bytes: u64) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(bytes)
                .weigher(|_: &(FileId, u64), b: &Bytes| u32::try_from(b.len()).unwrap_or(u32::MAX))
                .build(),
            hits: std::sync::atomic::AtomicU64::new(0),
            misses: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn get(&self, file: FileId, offset: u64) -> Option<Bytes> {
        let hit = self.cache.get(&(file, offset));
        let counter = if hit.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        hit
    }

    fn insert(&self, file: FileId, offset: u64, chunk: Bytes) {
        self.cache.insert((file, offset), chunk);
    }

    /// Hits and misses since the last call.
    pub fn take_counts(&self) -> (u64, u64) {
        (
            self.hits.swap(0, std::sync::atomic::Ordering::Relaxed),
            self.misses.swap(0, std::sync::atomic::Ordering::Relaxed),
        )
    }
}

/// A column cache entry: a file's row group and what of it.
type CacheKey = (FileId, usize, Slot);

/// What a column cache entry holds of a row group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Slot {
    /// The decoded column at this position of the file's schema.
    Column(usize),
    /// The first row of each run of equal primary-key dictionary keys (a `UInt32Array`).
    SeriesRuns,
    /// Which of those runs the series filters of one compilation of key filters keep (a
    /// `BooleanArray`, one value per run; see `KeyFilters`).
    KeptRuns(u64),
}

/// Columns the column cache remembers as read once (its admission filter).
const SEEN_COLUMNS: usize = 200_000;

/// Decoded columns (as the file stores them, before float decoding and schema adaption) of
/// whole row groups, keyed by (file, row group, column), with a byte limit. A read whose
/// columns are all here decodes nothing: it slices or gathers the selected rows.
///
/// Admission: a read of a few rows of a row group decodes only those the first time (as
/// without the cache) and notes the columns; the next read of them decodes the whole
/// columns and keeps them. A read of most of a row group keeps its columns at once. So a
/// one-off query costs what it did without the cache, and a repeated one decodes once.
///
/// It also keeps, per row group, where the runs of one series start (for tag filters, see
/// `SstReader::series_ranges`).
#[derive(Debug)]
pub struct ColumnCache {
    cache: quick_cache::sync::Cache<CacheKey, ArrayRef, ArrayBytes>,
    /// Columns read partially once, not kept yet.
    seen: quick_cache::sync::Cache<CacheKey, ()>,
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

/// A column cache entry weighs its array's memory (at least 1: weightless entries would
/// never be evicted).
#[derive(Debug, Clone, Copy)]
struct ArrayBytes;

impl quick_cache::Weighter<CacheKey, ArrayRef> for ArrayBytes {
    fn weight(&self, _: &CacheKey, a: &ArrayRef) -> u64 {
        u64::try_from(a.get_array_memory_size())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// A guess of a column cache entry's size, for the cache's table: a column of a row group.
const TYPICAL_COLUMN_BYTES: u64 = 64 << 10;

impl ColumnCache {
    /// A cache holding at most about `bytes` bytes of decoded columns.
    pub fn new(bytes: u64) -> Self {
        let items = usize::try_from(bytes / TYPICAL_COLUMN_BYTES)
            .unwrap_or(usize::MAX)
            .max(1024);
        Self {
            cache: quick_cache::sync::Cache::with_weighter(items, bytes.max(1), ArrayBytes),
            seen: quick_cache::sync::Cache::new(SEEN_COLUMNS),
            hits: std::sync::atomic::AtomicU64::new(0),
            misses: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether a read of `rows` of the `total` rows of a row group should decode the missing
    /// columns `keys` whole and keep them (else it notes them as seen).
    fn admit(&self, keys: &[CacheKey], rows: usize, total: usize) -> bool {
        if rows.saturating_mul(2) >= total || keys.iter().all(|k| self.seen.contains_key(k)) {
            return true;
        }
        for k in keys {
            self.seen.insert(*k, ());
        }
        false
    }

    fn get(&self, key: CacheKey) -> Option<ArrayRef> {
        let hit = self.cache.get(&key);
        let counter = if hit.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        hit
    }

    /// Hits and misses since the last call.
    pub fn take_counts(&self) -> (u64, u64) {
        (
            self.hits.swap(0, std::sync::atomic::Ordering::Relaxed),
            self.misses.swap(0, std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Bytes of the entries held now (at most the limit given to [`ColumnCache::new`]).
    pub fn bytes(&self) -> u64 {
        self.cache.weight()
    }
}

impl std::fmt::Debug for SstReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SstReader")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SstReader {
    /// Opens the file `meta` describes, reading it in the region's `current` schema. Reads and
    /// checks the page indexes and footer (one ranged read).
    pub async fn open(
        op: Operator,
        region_dir: &str,
        meta: FileMeta,
        current: RegionMetadataRef,
    ) -> Result<Self> {
        let path: Arc<str> = sst_path(region_dir, meta.file_id).into();
        let corrupted = |reason: String| {
            CorruptedSnafu {
                path: path.to_string(),
                reason,
            }
            .build()
        };
        if meta.region_id != current.region_id() {
            return SchemaMismatchSnafu {
                path: path.to_string(),
                region_id: current.region_id(),
                reason: format!("the manifest records it for region {}", meta.region_id),
            }
            .fail();
        }
        if meta.tail_offset >= meta.file_size || meta.file_size < 12 {
            return Err(corrupted(format!(
                "file meta has tail offset {} and size {}",
                meta.tail_offset, meta.file_size
            )));
        }
        let tail = op
            .read_with(&path)
            .range(meta.tail_offset..meta.file_size)
            .await
            .map_err(|e| read_error(&path, Some(meta.file_size), e))?
            .to_bytes();
        let expected_len = meta.file_size - meta.tail_offset;
        if tail.len() as u64 != expected_len {
            return Err(corrupted(format!(
                "file is shorter than its {} bytes (read {} of the {expected_len} tail bytes)",
                meta.file_size,
                tail.len()
            )));
        }
        let crc = crc32c::crc32c(&tail);
        if crc != meta.tail_checksum {
            return Err(corrupted(format!(
                "footer checksum {crc:#010x} differs from {:#010x} in the manifest",
                meta.tail_checksum
            )));
        }
        let fetch = TailFetch {
            offset: meta.tail_offset,
            bytes: tail,
        };
        let parquet = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .load_and_finish(fetch, meta.file_size)
            .await
            .context(ParquetSnafu {
                path: path.to_string(),
            })?;
        let info_json = parquet
            .file_metadata()
            .key_value_metadata()
            .and_then(|kvs| kvs.iter().find(|kv| kv.key == SST_INFO_KEY))
            .and_then(|kv| kv.value.clone())
            .ok_or_else(|| corrupted(format!("footer lacks {SST_INFO_KEY}")))?;
        let info = SstInfo::from_json(&info_json).map_err(corrupted)?;
        Self::check(&path, &meta, &info, &parquet, &current)?;
        let parquet = Arc::new(parquet);
        let arrow = ArrowReaderMetadata::try_new(
            parquet.clone(),
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
        )
        .context(ParquetSnafu {
            path: path.to_string(),
        })?;
        let expected = file_schema(&info.region_metadata, &info.floats);
        if arrow.schema().fields() != expected.fields() {
            return Err(corrupted(format!(
                "stored schema {:?} is not the one its metadata implies {expected:?}",
                arrow.schema()
            )));
        }
        let key_suffix =
            mito_codec::PrimaryKeyCodec::appended_key_suffix(&info.region_metadata, &current)
                .map_err(|e| {
                    SchemaMismatchSnafu {
                        path: path.to_string(),
                        region_id: current.region_id(),
                        reason: format!("the file's primary key cannot be read as today's: {e}"),
                    }
                    .build()
                })?;
        Ok(Self {
            op,
            path,
            meta,
            info: Arc::new(info),
            parquet,
            arrow,
            current,
            key_suffix: key_suffix.into(),
            chunk_cache: None,
            column_cache: None,
            plans: Arc::default(),
            key_filters: Arc::default(),
        })
    }

    fn check(
        path: &str,
        meta: &FileMeta,
        info: &SstInfo,
        parquet: &ParquetMetaData,
        current: &RegionMetadataRef,
    ) -> Result<()> {
        let mismatch = |reason: String| {
            SchemaMismatchSnafu {
                path: path.to_string(),
                region_id: current.region_id(),
                reason,
            }
            .build()
        };
        if info.region_metadata.region_id() != current.region_id() {
            return Err(mismatch(format!(
                "written for region {}",
                info.region_metadata.region_id()
            )));
        }
        for c in current.column_metadatas() {
            if let Some(old) = info.region_metadata.column_by_id(c.column_id)
                && (old.data_type != c.data_type || old.semantic_type != c.semantic_type)
            {
                return Err(mismatch(format!(
                    "column id {} is {} {} in the file but {} {} now",
                    c.column_id, old.semantic_type, old.data_type, c.semantic_type, c.data_type
                )));
            }
        }
        let rows: i64 = parquet.row_groups().iter().map(|rg| rg.num_rows()).sum();
        let shape_ok = info.chunk_checksums.len() == parquet.num_row_groups()
            && parquet
                .row_groups()
                .iter()
                .zip(&info.chunk_checksums)
                .all(|(rg, crcs)| rg.num_columns() == crcs.len())
            && u64::try_from(rows).ok() == Some(meta.num_rows)
            && parquet.num_row_groups() as u64 == meta.num_row_groups;
        ensure!(
            shape_ok,
            CorruptedSnafu {
                path,
                reason: format!(
                    "footer describes {} row groups and {rows} rows; the manifest says {} and {}",
                    parquet.num_row_groups(),
                    meta.num_row_groups,
                    meta.num_rows
                ),
            }
        );
        for rg in parquet.row_groups() {
            for c in rg.columns() {
                let (start, len) = c.byte_range();
                ensure!(
                    start
                        .checked_add(len)
                        .is_some_and(|end| end <= meta.tail_offset),
                    CorruptedSnafu {
                        path,
                        reason: format!("column chunk {start}+{len} overlaps the footer"),
                    }
                );
            }
        }
        Ok(())
    }

    /// Keeps the decoded columns of the row groups it reads in `cache`, and reads from it.
    pub fn set_column_cache(&mut self, cache: Arc<ColumnCache>) {
        self.column_cache = Some(cache);
    }

    /// Shares verified column chunks with other reads through `cache`.
    pub fn set_chunk_cache(&mut self, cache: Arc<ChunkCache>) {
        self.chunk_cache = Some(cache);
    }

    /// The file's metadata from the manifest.
    pub fn file_meta(&self) -> &FileMeta {
        &self.meta
    }

    /// The file's own metadata (format version, region metadata, encodings).
    pub fn info(&self) -> &SstInfo {
        &self.info
    }

    /// The decoded Parquet footer.
    pub fn parquet_metadata(&self) -> &Arc<ParquetMetaData> {
        &self.parquet
    }

    /// The schema of a read with `projection` (the region's current schema).
    pub fn read_schema(&self, projection: Option<&[ColumnId]>) -> Result<SchemaRef> {
        let indices = self.indices(projection)?;
        Ok(compat::read_schema(&self.current, &indices))
    }

    fn indices(&self, projection: Option<&[ColumnId]>) -> Result<Vec<usize>> {
        compat::projected_indices(&self.current, projection).map_err(|id| {
            InvalidReadSnafu {
                path: self.path.to_string(),
                reason: format!("projection names unknown column id {id}"),
            }
            .build()
        })
    }

    /// The row groups and rows a request reads after pruning. A plan is a function of the
    /// request's filters and time range (the file and its reader's schema are fixed), so the
    /// last few are remembered: a repeated query (a dashboard's) skips building and
    /// evaluating the pruning predicates, a third of a one-host query's CPU.
    pub fn plan(&self, req: &SstReadRequest) -> ReadPlan {
        self.plans.get_or(
            |(range, filters)| *range == req.time_range && *filters == req.filters,
            || (req.time_range, req.filters.clone()),
            || self.prune(req),
        )
    }

    fn prune(&self, req: &SstReadRequest) -> ReadPlan {
        let all: Vec<usize> = (0..self.parquet.num_row_groups()).collect();
        let mut filters = req.filters.clone();
        if let Some(range) = &req.time_range {
            if range.is_empty()
                || !range.overlaps(self.meta.time_range.min, self.meta.time_range.max)
            {
                return ReadPlan {
                    row_groups: Vec::new(),
                    selection: None,
                    rows: 0,
                };
            }
            filters.extend(time_range_exprs(&self.current, range));
        }
        let pruner = Pruner::new(self.current.schema(), &filters);
        let stats = FileStats {
            parquet: &self.parquet,
            file_schema: self.arrow.schema(),
            info: &self.info,
            current: &self.current,
        };
        let (row_groups, selection) = if pruner.is_empty() {
            (all, None)
        } else {
            let rgs = pruner.row_groups(&stats, all);
            let sel = pruner.pages(&stats, &rgs);
            (rgs, sel)
        };
        let rows = match &selection {
            Some(s) => s.row_count(),
            None => row_groups
                .iter()
                .map(|rg| usize::try_from(self.parquet.row_group(*rg).num_rows()).unwrap_or(0))
                .sum(),
        };
        ReadPlan {
            row_groups,
            selection,
            rows,
        }
    }

    /// Reads the rows a request selects, as batches in the current schema (projected columns,
    /// then `__primary_key`, `__sequence`, `__op_type`), in (key, ts, sequence desc) order.
    pub async fn read(
        &self,
        req: &SstReadRequest,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        Ok(self.read_exact(req).await?.stream)
    }

    /// [`SstReader::read`], also telling which of the request's filters every returned row
    /// passes (those the file could evaluate on its own columns; see `key_filters`).
    pub async fn read_exact(&self, req: &SstReadRequest) -> Result<SstRead> {
        let plan = self.plan(req);
        self.read_plan(req, plan)
    }

    /// Reads the rows of `plan` (row groups and a selection over them) for `req`.
    fn read_plan(&self, req: &SstReadRequest, plan: ReadPlan) -> Result<SstRead> {
        let indices = self.indices(req.projection.as_deref())?;
        let out_schema = compat::read_schema(&self.current, &indices);
        if plan.row_groups.is_empty() || plan.rows == 0 {
            return Ok(SstRead {
                stream: futures::stream::empty().boxed(),
                exact: (0..req.filters.len()).collect(),
            });
        }
        // File columns to read: the projected ones the file has, the time index (for the
        // time range), exception columns of decoded floats, and the internal columns.
        let file_meta = &self.info.region_metadata;
        let mut names: Vec<String> = Vec::new();
        for i in &indices {
            let Some(c) = self.current.column_metadatas().get(*i) else {
                continue;
            };
            if let Some(old) = file_meta.column_by_id(c.column_id) {
                names.push(old.name.clone());
                if self.info.float_encoding(c.column_id).is_some() {
                    names.push(exception_column(c.column_id));
                }
            }
        }
        let ts_name = file_meta.time_index_column().name.clone();
        names.push(ts_name.clone());
        names.extend([PRIMARY_KEY_COLUMN, SEQUENCE_COLUMN, OP_TYPE_COLUMN].map(String::from));
        // Compiled once per distinct filters and projection (the columns read follow from it).
        let (mut pre, exact, filters_id) = self.key_filters.get_or(
            |(projection, filters)| *projection == req.projection && *filters == req.filters,
            || (req.projection.clone(), req.filters.clone()),
            || {
                let (pre, exact) = self.key_filters(&req.filters, &names);
                let id = NEXT_KEY_FILTERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (pre, exact, id)
            },
        );
        let stream = self.file_batches(
            &names,
            plan,
            req.batch_rows.max(1),
            &mut pre,
            Some(filters_id),
        )?;
        let adapt = Adapter {
            pre,
            path: self.path.clone(),
            info: self.info.clone(),
            current: self.current.clone(),
            indices,
            out_schema,
            ts_name,
            // A file wholly inside the range needs no per-row check.
            time_range: req
                .time_range
                .filter(|r| !r.covers(self.meta.time_range.min, self.meta.time_range.max)),
            key_suffix: self.key_suffix.clone(),
            layout: std::sync::OnceLock::new(),
        };
        let stream = stream
            .and_then(move |batch| futures::future::ready(adapt.adapt(&batch)))
            .try_filter(|b| futures::future::ready(b.num_rows() > 0))
            .boxed();
        Ok(SstRead { stream, exact })
    }

    /// Positions in the file's schema of the columns named `names` (file names), in schema
    /// order: the order of the columns of every batch read with them.
    fn roots(&self, names: &[String]) -> Vec<usize> {
        self.arrow
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| names.iter().any(|n| n == f.name()))
            .map(|(i, _)| i)
            .collect()
    }

    /// The filters of a read that can run on the file's own batches of columns `names`,
    /// before floats are decoded: those whose every column the file stores under the same
    /// name and id as the current schema (a column's type never changes). They name only tags
    /// and the time index (the caller passes no others), which every version of a row shares,
    /// so applying them before dedup is exact.
    ///
    /// Returned in two: those naming only tags (the same across a run of one series, see
    /// [`mito_read::filter_series`]), then the rest; and the positions in `filters` of those
    /// returned.
    fn key_filters(
        &self,
        filters: &[Expr],
        names: &[String],
    ) -> (mito_read::RowFilters, Vec<usize>) {
        let mut out = mito_read::RowFilters::default();
        let mut taken = Vec::new();
        if filters.is_empty() {
            return (out, taken);
        }
        let schema = self.arrow.schema();
        let roots = self.roots(names);
        let Ok(projected) = schema.project(&roots) else {
            return (out, taken);
        };
        let Ok(df_schema) = DFSchema::try_from(projected.clone()) else {
            return (out, taken);
        };
        let file_meta = &self.info.region_metadata;
        for (i, f) in filters.iter().enumerate() {
            let columns = f.column_refs();
            let readable = columns.iter().all(|c| {
                projected.field_with_name(&c.name).is_ok()
                    && match (
                        file_meta.column_by_name(&c.name),
                        self.current.column_by_name(&c.name),
                    ) {
                        (Some(file), Some(now)) => file.column_id == now.column_id,
                        _ => false,
                    }
            });
            if !readable {
                continue;
            }
            let Ok(predicate) = mito_read::physical_predicate(f, &df_schema) else {
                continue;
            };
            out.push(f, predicate, file_meta);
            taken.push(i);
        }
        (out, taken)
    }

    /// The rows of `plan` of the file's columns named `names` (file names, as stored), through
    /// the column cache if there is one. With the cache, the series filters of `pre` are
    /// applied here (and taken out of `pre`): whole runs of a series are skipped unread.
    fn file_batches(
        &self,
        names: &[String],
        plan: ReadPlan,
        batch_rows: usize,
        pre: &mut mito_read::RowFilters,
        filters_id: Option<u64>,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        Ok(match &self.column_cache {
            Some(cache) => {
                let series = mito_read::RowFilters {
                    series: std::mem::take(&mut pre.series),
                    rows: Vec::new(),
                };
                self.cached_stream(cache.clone(), names, plan, batch_rows, series, filters_id)
            }
            None => {
                let path = self.path.clone();
                self.raw_stream(names, plan.row_groups, plan.selection, batch_rows)?
                    .map_err(move |e| parquet_error(&path, e))
                    .boxed()
            }
        })
    }

    /// The rows of `plan` of the file's columns named `names` passing the series filters
    /// `series`, from the column cache (whole row groups decoded on a miss), in batches of at
    /// most `batch_rows`.
    fn cached_stream(
        &self,
        cache: Arc<ColumnCache>,
        names: &[String],
        plan: ReadPlan,
        batch_rows: usize,
        series: mito_read::RowFilters,
        filters_id: Option<u64>,
    ) -> BoxStream<'static, Result<RecordBatch>> {
        let schema = self.arrow.schema().clone();
        let roots = self.roots(names);
        let projected = match schema.project(&roots) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                let err = Err(e).context(ArrowSnafu {
                    path: self.path.to_string(),
                });
                return futures::stream::once(futures::future::ready(err)).boxed();
            }
        };
        let rg_rows: Vec<usize> = plan
            .row_groups
            .iter()
            .map(|rg| usize::try_from(self.parquet.row_group(*rg).num_rows()).unwrap_or(0))
            .collect();
        let ranges = match &plan.selection {
            Some(sel) => selection_ranges(sel, &rg_rows),
            None => rg_rows
                .iter()
                .map(|n| std::iter::once(0..*n).collect())
                .collect(),
        };
        let this = self.clone();
        futures::stream::iter(plan.row_groups.into_iter().zip(ranges))
            .filter(|(_, r)| futures::future::ready(!r.is_empty()))
            .then(move |(rg, ranges)| {
                let this = this.clone();
                let cache = cache.clone();
                let roots = roots.clone();
                let projected = projected.clone();
                let series = series.clone();
                async move {
                    let file_id = this.meta.file_id;
                    let total = usize::try_from(this.parquet.row_group(rg).num_rows()).unwrap_or(0);
                    let rows: usize = ranges.iter().map(|r| r.len()).sum();
                    let columns: Vec<Option<ArrayRef>> = roots
                        .iter()
                        .map(|r| cache.get((file_id, rg, Slot::Column(*r))))
                        .collect();
                    let missing: Vec<CacheKey> = roots
                        .iter()
                        .zip(&columns)
                        .filter(|(_, c)| c.is_none())
                        .map(|(r, _)| (file_id, rg, Slot::Column(*r)))
                        .collect();
                    if missing.is_empty() || cache.admit(&missing, rows, total) {
                        let batch = this
                            .row_group_columns(&cache, rg, &roots, &projected, columns)
                            .await?;
                        let cut = this.series_ranges(
                            &cache,
                            rg,
                            &batch,
                            &series.series,
                            &ranges,
                            filters_id,
                        )?;
                        let picked = pick_rows(&batch, cut.as_ref().unwrap_or(&ranges), batch_rows)
                            .context(ArrowSnafu {
                                path: this.path.to_string(),
                            })?;
                        if cut.is_some() {
                            return Ok(picked);
                        }
                        return picked
                            .into_iter()
                            .map(|b| series.apply(b).map_err(|e| key_filter_error(&this.path, e)))
                            .collect();
                    }
                    // A first partial read: decode only the selected rows.
                    let names: Vec<String> = projected
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect();
                    let selection =
                        RowSelection::from_consecutive_ranges(ranges.into_iter(), total);
                    let mut stream =
                        this.raw_stream(&names, vec![rg], Some(selection), batch_rows)?;
                    let mut out = Vec::new();
                    while let Some(b) = stream.next().await {
                        let b = b.map_err(|e| parquet_error(&this.path, e))?;
                        out.push(
                            series
                                .apply(b)
                                .map_err(|e| key_filter_error(&this.path, e))?,
                        );
                    }
                    Ok(out)
                }
            })
            .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    /// `ranges` of row group `rg` (all of whose read columns are `batch`) cut to the runs of
    /// the series passing `predicates`, which name only tags: evaluated on the first row of
    /// each run the ranges touch. The runs' starts are found once per row group and kept in
    /// the cache. `None` when there are no predicates or the batch has no primary key column
    /// of `UInt32` dictionary keys without NULLs (then the caller filters row by row).
    fn series_ranges(
        &self,
        cache: &ColumnCache,
        rg: usize,
        batch: &RecordBatch,
        predicates: &[Arc<dyn datafusion_physical_expr::PhysicalExpr>],
        ranges: &[Range<usize>],
        filters_id: Option<u64>,
    ) -> Result<Option<Vec<Range<usize>>>> {
        if predicates.is_empty() {
            return Ok(None);
        }
        let key = (self.meta.file_id, rg, Slot::SeriesRuns);
        let starts = match cache.cache.get(&key) {
            Some(starts) => starts,
            None => {
                let Some(keys) = batch
                    .column_by_name(PRIMARY_KEY_COLUMN)
                    .and_then(|c| c.as_dictionary_opt::<UInt32Type>())
                    .filter(|d| d.keys().null_count() == 0 && u32::try_from(d.len()).is_ok())
                    .map(|d| d.keys().values().clone())
                else {
                    return Ok(None);
                };
                let starts: ArrayRef =
                    Arc::new(arrow_array::UInt32Array::from(mito_read::run_starts(&keys)));
                cache.cache.insert(key, starts.clone());
                starts
            }
        };
        let Some(starts) = starts.as_primitive_opt::<UInt32Type>() else {
            return Ok(None);
        };
        let starts = starts.values();
        let rows = batch.num_rows();
        // Run `j` covers rows starts[j]..end(j).
        let end = |j: usize| starts.get(j + 1).map_or(rows, |s| *s as usize);
        let first_run = |row: usize| starts.partition_point(|s| (*s as usize) <= row).max(1) - 1;
        // The runs each range touches, in order (ranges are sorted and disjoint).
        let runs_of = |r: &Range<usize>| {
            let r = r.start.min(rows)..r.end.min(rows);
            (first_run(r.start)..starts.len())
                .take_while(move |j| starts.get(*j).is_some_and(|s| (*s as usize) < r.end))
        };
        let keep_runs = |at: &[u32]| {
            mito_read::keep_runs(batch, predicates, at).map_err(|e| key_filter_error(&self.path, e))
        };
        // Which runs pass: with a compilation id, of every run of the row group, kept in the
        // cache for the next read with the same filters; without, of the runs touched only.
        let remembered = filters_id.map(|id| (self.meta.file_id, rg, Slot::KeptRuns(id)));
        let known = remembered
            .and_then(|key| cache.cache.get(&key))
            .and_then(|k| k.as_boolean_opt().map(|k| k.values().clone()))
            .filter(|k| k.len() == starts.len());
        let touched_only = || -> Result<BooleanBuffer> {
            let mut touched: Vec<usize> = Vec::new();
            for j in ranges.iter().flat_map(runs_of) {
                if touched.last() != Some(&j) {
                    touched.push(j);
                }
            }
            let at: Vec<u32> = touched
                .iter()
                .filter_map(|j| starts.get(*j).copied())
                .collect();
            let mut kept = vec![false; starts.len()];
            for (j, k) in touched.iter().zip(keep_runs(&at)?) {
                if let Some(slot) = kept.get_mut(*j) {
                    *slot = k;
                }
            }
            Ok(BooleanBuffer::from(kept))
        };
        let kept = match (known, remembered) {
            (Some(kept), _) => kept,
            // A filter failing on a run the read does not touch fails nothing: it is then
            // evaluated on the touched runs only, and not remembered.
            (None, Some(key)) => match keep_runs(starts) {
                Ok(kept) => {
                    let kept = BooleanBuffer::from(kept);
                    cache.cache.insert(
                        key,
                        Arc::new(arrow_array::BooleanArray::new(kept.clone(), None)),
                    );
                    kept
                }
                Err(_) => touched_only()?,
            },
            (None, None) => touched_only()?,
        };
        let mut out: Vec<Range<usize>> = Vec::new();
        for r in ranges {
            for j in runs_of(r) {
                if j >= kept.len() || !kept.value(j) {
                    continue;
                }
                let start = starts.get(j).map_or(rows, |s| *s as usize);
                let cut = start.max(r.start)..end(j).min(r.end);
                match out.last_mut() {
                    Some(last) if last.end == cut.start => last.end = cut.end,
                    _ => out.push(cut),
                }
            }
        }
        Ok(Some(out))
    }

    /// Row group `rg` of the columns `roots` (whose schema is `projected`): `columns`, those
    /// found in the cache, the rest decoded whole now and kept.
    async fn row_group_columns(
        &self,
        cache: &ColumnCache,
        rg: usize,
        roots: &[usize],
        projected: &SchemaRef,
        mut columns: Vec<Option<ArrayRef>>,
    ) -> Result<RecordBatch> {
        let file_id = self.meta.file_id;
        let missing: Vec<String> = roots
            .iter()
            .zip(&columns)
            .filter(|(_, c)| c.is_none())
            .filter_map(|(r, _)| {
                self.arrow
                    .schema()
                    .fields()
                    .get(*r)
                    .map(|f| f.name().clone())
            })
            .collect();
        if !missing.is_empty() {
            let rows = usize::try_from(self.parquet.row_group(rg).num_rows()).unwrap_or(0);
            let mut stream = self.raw_stream(&missing, vec![rg], None, rows.max(1))?;
            let mut batches = Vec::new();
            while let Some(b) = stream.next().await {
                batches.push(b.map_err(|e| parquet_error(&self.path, e))?);
            }
            let decoded = if batches.len() == 1 {
                batches.swap_remove(0)
            } else {
                let missing_roots: Vec<usize> = roots
                    .iter()
                    .zip(&columns)
                    .filter(|(_, c)| c.is_none())
                    .map(|(r, _)| *r)
                    .collect();
                self.arrow
                    .schema()
                    .project(&missing_roots)
                    .and_then(|schema| {
                        arrow_select::concat::concat_batches(&Arc::new(schema), &batches)
                    })
                    .context(ArrowSnafu {
                        path: self.path.to_string(),
                    })?
            };
            let mut fresh = decoded.columns().iter();
            for (r, c) in roots.iter().zip(columns.iter_mut()) {
                if c.is_none() {
                    let a = fresh.next().cloned().ok_or_else(|| {
                        CorruptedSnafu {
                            path: self.path.to_string(),
                            reason: format!("row group {rg} lacks a column it lists"),
                        }
                        .build()
                    })?;
                    cache
                        .cache
                        .insert((file_id, rg, Slot::Column(*r)), a.clone());
                    *c = Some(a);
                }
            }
        }
        RecordBatch::try_new(projected.clone(), columns.into_iter().flatten().collect()).context(
            ArrowSnafu {
                path: self.path.to_string(),
            },
        )
    }

    /// The file's columns named `names` (file names), undecoded, from `row_groups` and the
    /// rows of `selection`.
    fn raw_stream(
        &self,
        names: &[String],
        row_groups: Vec<usize>,
        selection: Option<RowSelection>,
        batch_rows: usize,
    ) -> Result<ParquetRecordBatchStream<VerifiedReader>> {
        let roots = self.roots(names);
        let mask = ProjectionMask::roots(self.parquet.file_metadata().schema_descr(), roots);
        let input = VerifiedReader {
            op: self.op.clone(),
            path: self.path.clone(),
            parquet: self.parquet.clone(),
            info: self.info.clone(),
            chunks: HashMap::new(),
            file_id: self.meta.file_id,
            cache: self.chunk_cache.clone(),
        };
        let mut builder =
            ParquetRecordBatchStreamBuilder::new_with_metadata(input, self.arrow.clone())
                .with_projection(mask)
                .with_row_groups(row_groups)
                .with_batch_size(batch_rows);
        if let Some(sel) = selection {
            builder = builder.with_row_selection(sel);
        }
        builder.build().context(ParquetSnafu {
            path: self.path.to_string(),
        })
    }

    /// Reads, of each series the request selects, the file's last row in the time range,
    /// unless `newer` (keys in the current form) holds for it a timestamp past every row the
    /// file could offer. Two passes: the keys (and timestamps, when the range cuts the file)
    /// locate the rows, then only those rows of the requested columns are decoded.
    pub async fn last_rows(
        &self,
        req: &SstReadRequest,
        newer: &HashMap<Vec<u8>, i64>,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let plan = self.plan(req);
        if plan.row_groups.is_empty() || plan.rows == 0 {
            return Ok(futures::stream::empty().boxed());
        }
        let corrupted = |reason: String| {
            CorruptedSnafu {
                path: self.path.to_string(),
                reason,
            }
            .build()
        };
        let (min, max) = (self.meta.time_range.min, self.meta.time_range.max);
        let cut = req
            .time_range
            .filter(|r| !(r.contains(min) && r.contains(max)));
        let ts_name = self.info.region_metadata.time_index_column().name.clone();
        let mut names = vec![PRIMARY_KEY_COLUMN.to_string()];
        if cut.is_some() {
            names.push(ts_name.clone());
        }
        let total: usize = plan
            .row_groups
            .iter()
            .map(|rg| usize::try_from(self.parquet.row_group(*rg).num_rows()).unwrap_or(0))
            .sum();
        let whole = ReadPlan {
            row_groups: plan.row_groups.clone(),
            selection: None,
            rows: total,
        };
        let mut stream = self.file_batches(
            &names,
            whole,
            65_536,
            &mut mito_read::RowFilters::default(),
            None,
        )?;
        // The open run: its key (current form) and its last row in range with that row's
        // time (the file's latest time when the range holds the whole file).
        let mut run: Option<Run> = None;
        let mut chosen: Vec<usize> = Vec::new();
        let offer = |run: Option<Run>, chosen: &mut Vec<usize>| {
            if let Some((key, Some((row, ts)))) = run
                && newer.get(&key).is_none_or(|t| *t <= ts)
            {
                chosen.push(row);
            }
        };
        let mut base = 0usize;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let keys = batch
                .column_by_name(PRIMARY_KEY_COLUMN)
                .and_then(|a| a.as_dictionary_opt::<UInt32Type>())
                .ok_or_else(|| corrupted("key column is not a dictionary".to_string()))?;
            let values = keys
                .values()
                .as_binary_opt::<i32>()
                .ok_or_else(|| corrupted("key values are not binary".to_string()))?;
            let ts = match cut {
                Some(_) => Some(
                    batch
                        .column_by_name(&ts_name)
                        .and_then(mito_read::i64_values)
                        .ok_or_else(|| corrupted("time index of unexpected layout".to_string()))?,
                ),
                None => None,
            };
            let runs = KeyRuns {
                keys: keys.keys().values(),
                values,
                suffix: &self.key_suffix,
                ts: ts.as_deref(),
                cut: cut.as_ref(),
                max,
                base,
            };
            runs.scan(&mut run, &mut |r| offer(Some(r), &mut chosen))
                .map_err(corrupted)?;
            base += batch.num_rows();
        }
        offer(run.take(), &mut chosen);
        if chosen.is_empty() || base != total {
            if base != total {
                return Err(corrupted(format!(
                    "{base} keys read where the row groups hold {total} rows"
                )));
            }
            return Ok(futures::stream::empty().boxed());
        }
        let mut selection =
            RowSelection::from_consecutive_ranges(chosen.iter().map(|r| *r..*r + 1), total);
        if let Some(pages) = &plan.selection {
            selection = selection.intersection(pages);
        }
        let rows = selection.row_count();
        Ok(self
            .read_plan(
                req,
                ReadPlan {
                    row_groups: plan.row_groups,
                    selection: Some(selection),
                    rows,
                },
            )?
            .stream)
    }
}

/// The selected row ranges of each row group of `rg_rows` rows, from a selection over their
/// concatenation (rows past its end are not selected).
fn selection_ranges(selection: &RowSelection, rg_rows: &[usize]) -> Vec<Vec<Range<usize>>> {
    let mut out: Vec<Vec<Range<usize>>> = rg_rows.iter().map(|_| Vec::new()).collect();
    let mut starts = Vec::with_capacity(rg_rows.len());
    let mut total = 0usize;
    for n in rg_rows {
        starts.push(total);
        total += n;
    }
    let mut pos = 0usize;
    for s in selection.iter() {
        let end = pos.saturating_add(s.row_count).min(total);
        if !s.skip {
            // Split [pos, end) at row group boundaries.
            let mut at = pos;
            while at < end {
                let g = starts.partition_point(|s| *s <= at).saturating_sub(1);
                let (Some(start), Some(rows), Some(ranges)) =
                    (starts.get(g), rg_rows.get(g), out.get_mut(g))
                else {
                    break;
                };
                let stop = end.min(start + rows);
                if stop <= at {
                    break;
                }
                ranges.push(at - start..stop - start);
                at = stop;
            }
        }
        pos = end;
    }
    out
}

/// The rows of `ranges` of `batch`, in batches of at most `batch_rows`: zero-copy slices when
/// the ranges are few, one gather when they are many (a scattered selection).
fn pick_rows(
    batch: &RecordBatch,
    ranges: &[Range<usize>],
    batch_rows: usize,
) -> std::result::Result<Vec<RecordBatch>, arrow_schema::ArrowError> {
    let rows = batch.num_rows();
    let ranges: Vec<Range<usize>> = ranges
        .iter()
        .map(|r| r.start.min(rows)..r.end.min(rows))
        .filter(|r| !r.is_empty())
        .collect();
    let mut out = Vec::new();
    if ranges.len() <= 16 {
        for r in ranges {
            let mut at = r.start;
            while at < r.end {
                let n = (r.end - at).min(batch_rows);
                out.push(batch.slice(at, n));
                at += n;
            }
        }
        return Ok(out);
    }
    let indices: Vec<u32> = ranges
        .iter()
        .flat_map(|r| r.clone())
        .filter_map(|i| u32::try_from(i).ok())
        .collect();
    for chunk in indices.chunks(batch_rows) {
        let idx = arrow_array::UInt32Array::from(chunk.to_vec());
        out.push(arrow_select::take::take_record_batch(batch, &idx)?);
    }
    Ok(out)
}

/// A run of one key in the first pass of `SstReader::last_rows`: the key (current form) and
/// its last row in range with that row's time.
type Run = (Vec<u8>, Option<(usize, i64)>);

/// One batch of the first pass of `SstReader::last_rows`: dictionary indices of the keys,
/// the dictionary, and the timestamps when the range cuts the file.
struct KeyRuns<'a> {
    keys: &'a [u32],
    values: &'a arrow_array::BinaryArray,
    suffix: &'a [u8],
    ts: Option<&'a [i64]>,
    cut: Option<&'a TimeRange>,
    /// The file's latest time (the bound of every row when the range holds the file).
    max: i64,
    /// Position of the batch's first row in the planned row groups.
    base: usize,
}

impl KeyRuns<'_> {
    /// Continues `open` with this batch; hands every run that ends to `done`.
    fn scan(
        &self,
        open: &mut Option<Run>,
        done: &mut dyn FnMut(Run),
    ) -> std::result::Result<(), String> {
        let n = self.keys.len();
        let mut i = 0;
        while let Some(&k) = self.keys.get(i) {
            // Rows [i, j) share a dictionary index, hence a key.
            let j = self
                .keys
                .get(i..)
                .and_then(|rest| rest.iter().position(|x| *x != k))
                .map_or(n, |p| i + p);
            let index = usize::try_from(k).unwrap_or(usize::MAX);
            if index >= self.values.len() {
                return Err(format!("key index {index} past the dictionary"));
            }
            let value = self.values.value(index);
            let same = open.as_ref().is_some_and(|(key, _)| {
                key.len() == value.len() + self.suffix.len()
                    && key.starts_with(value)
                    && key.ends_with(self.suffix)
            });
            if !same {
                if let Some(r) = open.take() {
                    done(r);
                }
                let mut key = Vec::with_capacity(value.len() + self.suffix.len());
                key.extend_from_slice(value);
                key.extend_from_slice(self.suffix);
                *open = Some((key, None));
            }
            let last = match (self.ts, self.cut) {
                (Some(ts), Some(range)) => (i..j)
                    .rev()
                    .find_map(|r| ts.get(r).filter(|t| range.contains(**t)).map(|t| (r, *t))),
                _ => Some((j - 1, self.max)),
            };
            if let (Some((r, t)), Some((_, slot))) = (last, open.as_mut()) {
                *slot = Some((self.base + r, t));
            }
            i = j;
        }
        Ok(())
    }
}

/// A failed read of `path`: a range past the file's end means the file is shorter than its
/// recorded `size` or its own footer says (cut short, or replaced): damage, not a request
/// error.
fn read_error(path: &str, size: Option<u64>, e: opendal::Error) -> Error {
    if e.kind() == opendal::ErrorKind::RangeNotSatisfied {
        let recorded = size.map_or_else(
            || "its footer records".to_string(),
            |n| format!("the {n} bytes recorded for it"),
        );
        return CorruptedSnafu {
            path: path.to_string(),
            reason: format!("the file is shorter than {recorded} (cut short?): {e}"),
        }
        .build();
    }
    Error::ObjectStore {
        path: path.to_string(),
        source: e,
        location: snafu::location!(),
    }
}

/// Our own errors travel through the Parquet reader as `External`: take them back out.
fn parquet_error(path: &str, e: ParquetError) -> Error {
    match e {
        ParquetError::External(inner) => match inner.downcast::<Error>() {
            Ok(ours) => *ours,
            Err(other) => Error::Parquet {
                path: path.to_string(),
                source: ParquetError::External(other),
                location: snafu::location!(),
            },
        },
        other => Error::Parquet {
            path: path.to_string(),
            source: other,
            location: snafu::location!(),
        },
    }
}

/// Turns file batches into batches of the current schema.
/// A key filter's failure on a batch of the file at `path`.
fn key_filter_error(path: &str, e: mito_read::PredicateError) -> Error {
    let invalid = |reason: String| {
        InvalidReadSnafu {
            path: path.to_string(),
            reason,
        }
        .build()
    };
    let failed = |filter: String, reason: String| {
        FilterFailedSnafu {
            path: path.to_string(),
            filter,
            reason,
        }
        .build()
    };
    match e {
        mito_read::PredicateError::Evaluate { predicate, source } => failed(
            predicate,
            mito_read::PredicateError::evaluation_reason(&source),
        ),
        mito_read::PredicateError::NotBoolean { predicate, .. } => {
            invalid(format!("filter {predicate} is not a predicate"))
        }
        mito_read::PredicateError::Arrow(source) => Error::Arrow {
            path: path.to_string(),
            source,
            location: snafu::location!(),
        },
    }
}

struct Adapter {
    /// Key filters applied to the file's batch first (see `SstReader::key_filters`).
    pre: mito_read::RowFilters,
    path: Arc<str>,
    info: Arc<SstInfo>,
    current: RegionMetadataRef,
    indices: Vec<usize>,
    out_schema: SchemaRef,
    ts_name: String,
    time_range: Option<TimeRange>,
    key_suffix: Arc<[u8]>,
    /// Made from the first batch (every batch of a read has the same schema).
    layout: std::sync::OnceLock<Layout>,
}

impl Adapter {
    fn adapt(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let corrupted = |reason: String| {
            CorruptedSnafu {
                path: self.path.to_string(),
                reason,
            }
            .build()
        };
        let filtered;
        let batch = if self.pre.is_empty() {
            batch
        } else {
            filtered = self
                .pre
                .apply(batch.clone())
                .map_err(|e| key_filter_error(&self.path, e))?;
            &filtered
        };
        let schema = batch.schema();
        let fresh;
        let layout = match self.layout.get() {
            Some(l) if Arc::ptr_eq(&l.input, &schema) || *l.input == *schema => l,
            _ => {
                let l = self.layout_of(&schema)?;
                if self.layout.get().is_none() {
                    self.layout.get_or_init(|| l)
                } else {
                    fresh = l;
                    &fresh
                }
            }
        };
        let rows = batch.num_rows();
        let input = |i: usize| {
            batch
                .columns()
                .get(i)
                .ok_or_else(|| corrupted(format!("no column {i} in a batch read")))
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(layout.columns.len());
        for source in &layout.columns {
            columns.push(match *source {
                Source::Input(i) => input(i)?.clone(),
                Source::Floats {
                    ints,
                    exceptions,
                    scale,
                } => {
                    let ints = input(ints)?
                        .as_primitive_opt::<Int64Type>()
                        .ok_or_else(|| corrupted("a decimal column is not Int64".to_string()))?;
                    let exceptions = input(exceptions)?
                        .as_primitive_opt::<Float64Type>()
                        .ok_or_else(|| {
                            corrupted("an exception column is not Float64".to_string())
                        })?;
                    Arc::new(decode_floats(ints, exceptions, scale).map_err(corrupted)?)
                }
                Source::Default(i) => {
                    let c = self.current.column_metadatas().get(i).ok_or_else(|| {
                        corrupted(format!("no column {i} in the region's schema"))
                    })?;
                    compat::default_array(c, rows).context(ArrowSnafu {
                        path: self.path.to_string(),
                    })?
                }
                Source::Key(i) => extend_keys(input(i)?, &self.key_suffix).map_err(corrupted)?,
            });
        }
        let out = RecordBatch::try_new(self.out_schema.clone(), columns).context(ArrowSnafu {
            path: self.path.to_string(),
        })?;
        let Some(range) = self.time_range else {
            return Ok(out);
        };
        let ts = input(layout.ts)?.to_data();
        if ts.buffers().len() != 1 || ts.len() != rows {
            return Err(corrupted("time index of unexpected layout".to_string()));
        }
        mito_read::keep_rows(out, ts.buffer::<i64>(0), |t| range.contains(t)).context(ArrowSnafu {
            path: self.path.to_string(),
        })
    }

    /// Where the output columns come from in batches of schema `input` (the file's columns
    /// read, by their stored names).
    fn layout_of(&self, input: &SchemaRef) -> Result<Layout> {
        let pos = |name: &str| {
            input.index_of(name).map_err(|_| {
                CorruptedSnafu {
                    path: self.path.to_string(),
                    reason: format!("column {name} not decoded"),
                }
                .build()
            })
        };
        let mut columns = Vec::with_capacity(self.indices.len() + 3);
        for i in &self.indices {
            let Some(c) = self.current.column_metadatas().get(*i) else {
                continue;
            };
            columns.push(match self.info.region_metadata.column_by_id(c.column_id) {
                Some(old) => match self.info.float_encoding(c.column_id) {
                    Some(enc) => Source::Floats {
                        ints: pos(&old.name)?,
                        exceptions: pos(&exception_column(c.column_id))?,
                        scale: enc.scale,
                    },
                    None => Source::Input(pos(&old.name)?),
                },
                None => Source::Default(*i),
            });
        }
        for name in [PRIMARY_KEY_COLUMN, SEQUENCE_COLUMN, OP_TYPE_COLUMN] {
            let p = pos(name)?;
            columns.push(
                if name == PRIMARY_KEY_COLUMN && !self.key_suffix.is_empty() {
                    Source::Key(p)
                } else {
                    Source::Input(p)
                },
            );
        }
        Ok(Layout {
            input: input.clone(),
            columns,
            ts: pos(&self.ts_name)?,
        })
    }
}

/// Where each output column of [`Adapter::adapt`] comes from, for batches of one schema.
#[derive(Debug)]
struct Layout {
    /// The schema of the batches it is for.
    input: SchemaRef,
    columns: Vec<Source>,
    /// The time index's position in the input.
    ts: usize,
}

#[derive(Debug, Clone, Copy)]
enum Source {
    /// The input column at this position, as it is.
    Input(usize),
    /// A decimal-encoded field: the positions of its integers and exceptions, and its scale.
    Floats {
        ints: usize,
        exceptions: usize,
        scale: u8,
    },
    /// A column the file lacks (added later): the default of the region's column `i`.
    Default(usize),
    /// The primary key at this position, extended by the key suffix.
    Key(usize),
}

/// Appends `suffix` to every key of a dictionary-encoded key column (only the dictionary
/// values change; the keys keep their order since every old key gains the same suffix).
fn extend_keys(array: &ArrayRef, suffix: &[u8]) -> std::result::Result<ArrayRef, String> {
    let dict = array
        .as_any()
        .downcast_ref::<arrow_array::DictionaryArray<arrow_array::types::UInt32Type>>()
        .ok_or_else(|| format!("key column of type {}", array.data_type()))?;
    let values = dict
        .values()
        .as_any()
        .downcast_ref::<arrow_array::BinaryArray>()
        .ok_or_else(|| format!("key values of type {}", dict.values().data_type()))?;
    let extended: arrow_array::BinaryArray = values
        .iter()
        .map(|v| {
            v.map(|k| {
                let mut out = Vec::with_capacity(k.len() + suffix.len());
                out.extend_from_slice(k);
                out.extend_from_slice(suffix);
                out
            })
        })
        .collect();
    let out = arrow_array::DictionaryArray::<arrow_array::types::UInt32Type>::try_new(
        dict.keys().clone(),
        Arc::new(extended),
    )
    .map_err(|e| e.to_string())?;
    Ok(Arc::new(out))
}

/// Serves the footer and page index from the checked tail bytes.
struct TailFetch {
    offset: u64,
    bytes: Bytes,
}

impl MetadataFetch for TailFetch {
    fn fetch(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        let slice = range
            .start
            .checked_sub(self.offset)
            .zip(range.end.checked_sub(self.offset))
            .and_then(|(s, e)| {
                let (s, e) = (usize::try_from(s).ok()?, usize::try_from(e).ok()?);
                (s <= e && e <= self.bytes.len()).then(|| self.bytes.slice(s..e))
            });
        let result = slice.ok_or_else(|| {
            ParquetError::General(format!(
                "footer refers to bytes {range:?} outside the checked tail starting at {}",
                self.offset
            ))
        });
        futures::future::ready(result).boxed()
    }
}

/// Reads column chunks whole and checks each against its CRC32C before handing out any of
/// its bytes.
struct VerifiedReader {
    op: Operator,
    path: Arc<str>,
    parquet: Arc<ParquetMetaData>,
    /// Holds the recorded checksum of every column chunk.
    info: Arc<SstInfo>,
    chunks: HashMap<(usize, usize), Bytes>,
    file_id: FileId,
    cache: Option<Arc<ChunkCache>>,
}

impl VerifiedReader {
    fn locate(&self, range: &Range<u64>) -> Option<(usize, usize, u64, u64)> {
        for (rg_idx, rg) in self.parquet.row_groups().iter().enumerate() {
            for (col_idx, col) in rg.columns().iter().enumerate() {
                let (start, len) = col.byte_range();
                let end = start.checked_add(len)?;
                if start <= range.start && range.end <= end {
                    return Some((rg_idx, col_idx, start, end));
                }
            }
        }
        None
    }

    /// Reads and checks every chunk the ranges fall in that is not cached yet; chunks that
    /// lie next to each other in the file (gaps under [`COALESCE_GAP`]) come in one read.
    async fn load(&mut self, ranges: &[Range<u64>]) -> Result<Vec<(usize, usize, u64)>> {
        let corrupted = |reason: String| {
            CorruptedSnafu {
                path: self.path.to_string(),
                reason,
            }
            .build()
        };
        let mut located = Vec::with_capacity(ranges.len());
        let mut missing: Vec<(usize, usize, u64, u64)> = Vec::new();
        for range in ranges {
            let Some((rg, col, start, end)) = self.locate(range) else {
                return Err(corrupted(format!(
                    "read of {range:?} is not inside one column chunk"
                )));
            };
            located.push((rg, col, start));
            if !self.chunks.contains_key(&(rg, col))
                && !missing.iter().any(|m| (m.0, m.1) == (rg, col))
            {
                if let Some(chunk) = self.cache.as_ref().and_then(|c| c.get(self.file_id, start)) {
                    self.chunks.insert((rg, col), chunk);
                } else {
                    missing.push((rg, col, start, end));
                }
            }
        }
        missing.sort_by_key(|m| m.2);
        let mut i = 0;
        while i < missing.len() {
            let Some(first) = missing.get(i) else { break };
            let span_start = first.2;
            let mut span_end = first.3;
            let mut j = i + 1;
            while let Some(next) = missing.get(j) {
                if next.2 > span_end.saturating_add(COALESCE_GAP) {
                    break;
                }
                span_end = span_end.max(next.3);
                j += 1;
            }
            let bytes = self
                .op
                .read_with(&self.path)
                .range(span_start..span_end)
                .await
                .map_err(|e| read_error(&self.path, None, e))?
                .to_bytes();
            if bytes.len() as u64 != span_end - span_start {
                return Err(corrupted(format!(
                    "bytes {span_start}..{span_end} cut short: {} bytes",
                    bytes.len()
                )));
            }
            for (rg, col, start, end) in missing.get(i..j).unwrap_or_default() {
                let from = usize::try_from(start - span_start).unwrap_or(usize::MAX);
                let to = usize::try_from(end - span_start).unwrap_or(usize::MAX);
                let chunk = bytes
                    .get(from..to)
                    .map(|_| bytes.slice(from..to))
                    .ok_or_else(|| corrupted(format!("chunk {start}..{end} outside its read")))?;
                let expected = self
                    .info
                    .chunk_checksums
                    .get(*rg)
                    .and_then(|r| r.get(*col))
                    .copied();
                let crc = crc32c::crc32c(&chunk);
                if expected != Some(crc) {
                    return Err(corrupted(format!(
                        "checksum {crc:#010x} of column chunk {col} of row group {rg} (bytes {start}..{end}) differs from the recorded {expected:#010x?}"
                    )));
                }
                if let Some(cache) = &self.cache {
                    cache.insert(self.file_id, *start, chunk.clone());
                }
                self.chunks.insert((*rg, *col), chunk);
            }
            i = j;
        }
        Ok(located)
    }

    async fn fetch_ranges(&mut self, ranges: Vec<Range<u64>>) -> Result<Vec<Bytes>> {
        let located = self.load(&ranges).await?;
        ranges
            .iter()
            .zip(located)
            .map(|(range, (rg, col, start))| {
                let chunk = self.chunks.get(&(rg, col));
                let from = usize::try_from(range.start - start).unwrap_or(usize::MAX);
                let to = usize::try_from(range.end - start).unwrap_or(usize::MAX);
                chunk
                    .and_then(|c| c.get(from..to).map(|_| c.slice(from..to)))
                    .ok_or_else(|| {
                        CorruptedSnafu {
                            path: self.path.to_string(),
                            reason: format!("range {range:?} outside its chunk"),
                        }
                        .build()
                    })
            })
            .collect()
    }
}

/// Chunks closer than this are read together.
const COALESCE_GAP: u64 = 64 * 1024;

impl AsyncFileReader for VerifiedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            let mut out = self
                .fetch_ranges(vec![range])
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))?;
            out.pop()
                .ok_or_else(|| ParquetError::General("no bytes read".to_string()))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.fetch_ranges(ranges)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        futures::future::ready(Ok(self.parquet.clone())).boxed()
    }
}
