//! Reads an SST file: verifies its bytes, prunes, decodes and adapts batches to the region's
//! current schema.

mod adapt;
mod cache;
mod last_rows;
mod page_header;
mod pages;
mod series;
mod stream;
mod verified;

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use datafusion_expr::Expr;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use mito_read::compat;
use opendal::Operator;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, RowSelection};
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use snafu::{ResultExt, ensure};
use store_api::ColumnId;
use store_api::metadata::{OP_TYPE_COLUMN, PRIMARY_KEY_COLUMN, RegionMetadataRef, SEQUENCE_COLUMN};
use store_api::scan::TimeRange;

use crate::error::{
    CorruptedSnafu, Error, FilterFailedSnafu, InvalidReadSnafu, ParquetSnafu, Result,
    SchemaMismatchSnafu,
};
use crate::file::{FileMeta, sst_path};
use crate::format::{SST_INFO_KEY, SstInfo, exception_column, file_schema};
pub use crate::pruning::Pruner;
use crate::pruning::{FileStats, StatsMemo};

use adapt::Adapter;
pub use cache::{Admission, CacheKey, ChunkCache, ColumnCache, Slot};
pub use pages::fuzz_pages;
use verified::TailFetch;

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
    /// The pruning predicates of `filters` (`Pruner::new(current schema, &filters)`), built
    /// once by a caller that reads many files with the same filters; `None`: the read builds
    /// them.
    pub pruner: Option<Arc<Pruner>>,
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
            pruner: None,
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
    chunk_cache: Option<Arc<dyn ChunkCache>>,
    column_cache: Option<Arc<dyn ColumnCache>>,
    /// Statistics arrays pruning took from the footer, kept for the next read.
    stats: Arc<StatsMemo>,
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
            stats: Arc::default(),
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
    pub fn set_column_cache(&mut self, cache: Arc<dyn ColumnCache>) {
        self.column_cache = Some(cache);
    }

    /// Shares verified column chunks with other reads through `cache`.
    pub fn set_chunk_cache(&mut self, cache: Arc<dyn ChunkCache>) {
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

    /// The row groups and rows a request reads after pruning.
    pub fn plan(&self, req: &SstReadRequest) -> ReadPlan {
        self.prune(req)
    }

    fn prune(&self, req: &SstReadRequest) -> ReadPlan {
        let mut row_groups: Vec<usize> = (0..self.parquet.num_row_groups()).collect();
        if let Some(range) = &req.time_range
            && (range.is_empty() || !range.overlaps(self.meta.time_range))
        {
            return ReadPlan {
                row_groups: Vec::new(),
                selection: None,
                rows: 0,
            };
        }
        let built;
        let pruner = match &req.pruner {
            Some(p) => p.as_ref(),
            None => {
                built = Pruner::new(self.current.schema(), &req.filters);
                &built
            }
        };
        let stats = FileStats {
            parquet: &self.parquet,
            file_schema: self.arrow.schema(),
            info: &self.info,
            current: &self.current,
            memo: &self.stats,
        };
        // A range wholly covering the file prunes nothing.
        let time = req
            .time_range
            .as_ref()
            .filter(|r| !r.covers(self.meta.time_range));
        if let Some(range) = time {
            row_groups = stats.time_row_groups(range, row_groups);
        }
        let selection = if pruner.is_empty() && time.is_none() {
            None
        } else {
            row_groups = pruner.row_groups(&stats, row_groups);
            pruner.pages(&stats, &row_groups, time)
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
        let (mut pre, exact) = self.key_filters(&req.filters, &names);
        // A file wholly inside the range needs no per-row check.
        let time_range = req.time_range.filter(|r| !r.covers(self.meta.time_range));
        let time = time_range.map(|range| stream::TimeCut {
            ts_name: ts_name.clone(),
            range,
        });
        let stream = self.file_batches(&names, plan, req.batch_rows.max(1), &mut pre, time)?;
        let adapt = Adapter {
            pre,
            path: self.path.clone(),
            info: self.info.clone(),
            current: self.current.clone(),
            indices,
            out_schema,
            ts_name,
            time_range,
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
