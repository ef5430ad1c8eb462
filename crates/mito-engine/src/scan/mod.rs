//! Scans: a snapshot of a region's version read as one sorted, deduplicated stream.
//!
//! ```text
//!  committed sequence + version (one Arc)            snapshot = min(request, committed)
//!   -> sources: memtables and files whose time span meets the range
//!   -> each source produced by its own task (memtable sort / Parquet decode run in
//!      parallel, two batches ahead), rows above the snapshot dropped
//!   -> ordered scan: one k-way merge of every source (dedup + deletes as the memtable)
//!      unordered scan: where time spans overlap, the sources covering that stretch
//!      (restricted to it) merged; the rest of each source read alone, as is; chained
//!   -> exact filters (tag-only ones applied by each source, before the merge), limit,
//!      projection
//! ```
//!
//! Filters reach the SSTs for pruning only when they name tags or the time index: a field
//! predicate could prune the newest version of a row and let an older one through.
//!
//! Modules: `split` (where an unordered scan merges), `last_row` (the last row of each
//! series).

mod last_row;
mod split;

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt8Type, UInt64Type};
use arrow_array::{ArrowPrimitiveType, RecordBatch};
use arrow_schema::SchemaRef;
use datafusion_common::DFSchema;
use datafusion_expr::Expr;
use futures::{StreamExt, TryStreamExt};
use mito_memtable::{Memtable, MemtableRead};
use mito_read::merge::{MergeOptions, merge};
use mito_read::{OpType, PredicateError, compat};
use mito_sst::SstReadRequest;
use opendal::Operator;
use snafu::{OptionExt, ResultExt};
use store_api::error::BoxedError;
use store_api::metadata::{RegionMetadata, SemanticType};
use store_api::scan::{BatchStream, ScanOrder, ScanRequest, SeriesRowSelector, TimeRange};
use store_api::time::TimeSpan;
use store_api::{ColumnId, RegionId, SequenceNumber};
use tokio::sync::mpsc;

use crate::cache::CacheManager;
use crate::error::{
    Error, FilterSnafu, InternalSnafu, InvalidRequestSnafu, MemtableSnafu, Result, SstSnafu,
    UnsupportedSnafu,
};
use crate::metrics::Metrics;
use crate::region::{FileHandle, MitoRegion};

/// Batches a source task produces ahead of the merge.
const PREFETCH: usize = 2;

/// What scans share.
#[derive(Debug, Clone)]
pub(crate) struct ScanContext {
    pub op: Operator,
    pub cache: Arc<CacheManager>,
    pub metrics: Arc<Metrics>,
    pub batch_rows: usize,
    /// Wall-clock time, for the TTL.
    pub clock: store_api::clock::ClockRef,
}

type Stream = mito_read::merge::BatchStream<Error>;

#[derive(Clone)]
enum SourceKind {
    Memtable(Arc<Memtable>),
    File(Arc<FileHandle>),
}

#[derive(Clone)]
struct Source {
    span: TimeSpan,
    kind: SourceKind,
    /// The part of the source read, if not all of it (see `split::split_overlapping`).
    range: Option<TimeRange>,
}

/// What a scan reads, resolved against the region's schema.
struct Plan {
    region_id: RegionId,
    /// Column ids read from the sources, in schema order.
    read_ids: Vec<ColumnId>,
    read_schema: SchemaRef,
    /// Positions in the read schema of the columns returned.
    output: Vec<usize>,
    time_range: Option<TimeRange>,
    /// Filters the SSTs may prune with.
    prune_filters: Vec<Expr>,
    /// Their pruning predicates, built on the first file read and shared by the others.
    pruner: std::sync::OnceLock<Arc<mito_sst::Pruner>>,
    /// Filters applied exactly: the series ones by each source (the files' own when they
    /// apply them, see `series_in_prune`), the row ones to merged rows. A series filter keeps
    /// or drops every version of a key alike, so it may apply before the merge.
    exact: mito_read::RowFilters,
    /// Positions in `prune_filters` of the filters of `exact.series`, in order (`None` if one
    /// is missing there): a file that applies all of them needs no series filter of its own.
    series_in_prune: Option<Vec<usize>>,
    /// Every filter left after the time bounds names only tags.
    tag_filters_only: bool,
    snapshot: SequenceNumber,
}

/// Starts a scan of `region`.
pub(crate) async fn scan(
    region: &MitoRegion,
    req: ScanRequest,
    ctx: &ScanContext,
) -> Result<BatchStream> {
    let build = ctx
        .metrics
        .scan_seconds
        .with_label_values(&["build"])
        .start_timer();
    // Version first, then the committed sequence: every row in the version's files is then
    // at or below the snapshot (a flush only covers committed rows), so files need no
    // sequence filter unless the caller asks for an older snapshot.
    let version = region.version();
    let committed = region.committed();
    let snapshot = req.snapshot.map_or(committed, |s| s.min(committed));
    let metadata = version.metadata.clone();
    let region_id = metadata.region_id();
    // Rows past the TTL are invisible whether or not a compaction has dropped their files.
    let mut req = req;
    if let Some(cutoff) = version
        .options
        .ttl_cutoff(&metadata, ctx.clock.now_millis())
    {
        let mut range = req.time_range.unwrap_or_default();
        range.start = Some(range.start.map_or(cutoff, |s| s.max(cutoff)));
        req.time_range = Some(range);
    }
    if snapshot < version.flushed_sequence {
        return InvalidRequestSnafu {
            region_id,
            reason: format!(
                "snapshot {snapshot} is older than the last flush (sequence {}): versions older than a flush are not kept",
                version.flushed_sequence
            ),
        }
        .fail();
    }
    if req.order == ScanOrder::SeriesTimeDesc {
        return UnsupportedSnafu {
            region_id,
            what: "a scan in descending time order",
        }
        .fail();
    }
    let plan = Arc::new(plan(&metadata, &req, snapshot)?);
    let out_schema = Arc::new(plan.read_schema.project(&plan.output)?);
    if req.limit == Some(0) || plan.time_range.is_some_and(|r| r.is_empty()) {
        return Ok(empty(out_schema));
    }
    let mut sources: Vec<Source> = Vec::new();
    for m in version.memtables() {
        if let Some(span) = m.stats().time_range
            && plan.time_range.is_none_or(|r| r.overlaps(span))
        {
            sources.push(Source {
                span,
                kind: SourceKind::Memtable(m.clone()),
                range: None,
            });
        }
    }
    for f in version.files.values() {
        let span = f.meta().time_range;
        if plan.time_range.is_none_or(|r| r.overlaps(span)) {
            sources.push(Source {
                span,
                kind: SourceKind::File(f.clone()),
                range: None,
            });
        }
    }
    let merge_options = MergeOptions {
        schema: plan.read_schema.clone(),
        time_index: position(
            region_id,
            &plan.read_ids,
            metadata.time_index_column().column_id,
        )?,
        fields: plan
            .read_ids
            .iter()
            .enumerate()
            .filter(|(_, id)| {
                metadata
                    .column_by_id(**id)
                    .is_some_and(|c| c.semantic_type == SemanticType::Field)
            })
            .map(|(i, _)| i)
            .collect(),
        dedup: mito_read::DedupOptions {
            keep_deletes: false,
            ..version.options.dedup()
        },
        batch_rows: ctx.batch_rows,
    };
    let region_dir: Arc<str> = region.region_dir().clone();
    let open = |s: Source| {
        open_source(
            s,
            plan.clone(),
            ctx.clone(),
            region_dir.clone(),
            metadata.clone(),
        )
    };
    let last_row = req.series_row_selector == Some(SeriesRowSelector::LastRow);
    // The two-pass path: a tag filter keeps or drops whole series, so it may apply after
    // the selection; a field filter must apply before it, to merged rows (the last rows
    // first, then backwards from them for the series whose last row fails it).
    let mut fast: Option<Vec<RecordBatch>> = None;
    let sources = if !last_row {
        sources
    } else {
        let found =
            last_row::last_rows(sources, &plan, ctx, &region_dir, &metadata, &merge_options)
                .await?;
        match found {
            Ok(batches) => {
                fast = Some(batches);
                Vec::new()
            }
            Err(all) => all,
        }
    };
    let fast_path = fast.is_some();
    let merged: Stream = if let Some(batches) = fast {
        futures::stream::iter(batches.into_iter().map(Ok)).boxed()
    } else if req.order == ScanOrder::Unordered && !last_row {
        let groups = split::split_overlapping(sources);
        let streams: Vec<Stream> = groups
            .into_iter()
            .map(|g| combine(g.into_iter().map(open).collect(), &merge_options))
            .collect();
        futures::stream::iter(streams).flatten().boxed()
    } else {
        combine(sources.into_iter().map(open).collect(), &merge_options)
    };
    build.observe_duration();
    let total = ctx
        .metrics
        .scan_seconds
        .with_label_values(&["total"])
        .start_timer();
    let metrics = ctx.metrics.clone();
    let cache = ctx.cache.clone();
    let mut remaining = req.limit.unwrap_or(usize::MAX);
    let post = plan.clone();
    // The last-row path's candidates have had no filter; every other source applied the
    // series filters itself.
    let filtered: Stream = if fast_path {
        merged
            .and_then(move |batch| futures::future::ready(post.filter(batch)))
            .boxed()
    } else {
        merged
            .and_then(move |batch| futures::future::ready(post.filter_rows(batch)))
            .boxed()
    };
    let selected = if last_row {
        mito_read::last_row::last_rows_stream(filtered, merge_options.time_index)
    } else {
        filtered
    };
    let post = plan.clone();
    let stream = selected
        .and_then(move |batch| futures::future::ready(post.project(batch)))
        .try_filter(|b| futures::future::ready(b.num_rows() > 0))
        .map_ok(move |b| {
            let take = b.num_rows().min(remaining);
            remaining -= take;
            b.slice(0, take)
        })
        .try_take_while(|b| futures::future::ready(Ok(b.num_rows() > 0)))
        .inspect_ok(move |b| metrics.scan_rows.inc_by(b.num_rows() as u64))
        .map_err(BoxedError::new)
        .chain(
            futures::stream::once(async move {
                // End of the stream: stage timing and cache counters.
                total.observe_duration();
                cache.sync_page_metrics();
                None
            })
            .filter_map(futures::future::ready),
        );
    Ok(BatchStream::new(out_schema, stream))
}

fn empty(schema: SchemaRef) -> BatchStream {
    BatchStream::new(schema, futures::stream::empty())
}

/// Where column `id` is among the columns a scan reads. The plan always reads the columns it
/// asks positions of; a miss is a planning bug, reported rather than answered from column 0.
fn position(region_id: RegionId, ids: &[ColumnId], id: ColumnId) -> Result<usize> {
    ids.iter().position(|c| *c == id).context(InternalSnafu {
        region_id,
        reason: format!("column {id} is not among the columns the scan reads ({ids:?})"),
    })
}

fn plan(metadata: &RegionMetadata, req: &ScanRequest, snapshot: SequenceNumber) -> Result<Plan> {
    let region_id = metadata.region_id();
    let invalid = |reason: String| InvalidRequestSnafu { region_id, reason }.build();
    let output_ids: Vec<ColumnId> = match &req.projection {
        Some(ids) => {
            for id in ids {
                if metadata.column_by_id(*id).is_none() {
                    return Err(invalid(format!("projection names unknown column id {id}")));
                }
            }
            ids.clone()
        }
        None => metadata
            .column_metadatas()
            .iter()
            .map(|c| c.column_id)
            .collect(),
    };
    let mut needed: HashSet<ColumnId> = output_ids.iter().copied().collect();
    let ts = metadata.time_index_column();
    needed.insert(ts.column_id);
    // A conjunct that is exactly a bound on the time index narrows the time range instead of
    // being evaluated: every source applies the range exactly (memtables and files alike,
    // and a file inside it needs no check at all).
    let (bounds, filters) = match &ts.data_type {
        arrow_schema::DataType::Timestamp(unit, _) => {
            TimeRange::split_bounds(&req.filters, &ts.name, *unit)
        }
        _ => (
            None,
            req.filters
                .iter()
                .flat_map(datafusion_expr::utils::split_conjunction)
                .cloned()
                .collect(),
        ),
    };
    let time_range = match (req.time_range, bounds) {
        (Some(r), Some(b)) => Some(r.intersect(b)),
        (r, b) => r.or(b),
    };
    // The last-row path may select before filtering only if every filter keeps or drops
    // whole series (names only tags); time bounds are in the range already.
    let tag_filters_only = filters.iter().all(|f| {
        f.column_refs().iter().all(|c| {
            metadata
                .column_by_name(&c.name)
                .is_some_and(|m| m.semantic_type == SemanticType::Tag)
        })
    });
    let mut prune_filters = Vec::new();
    for filter in &filters {
        let mut key_only = true;
        for col in filter.column_refs() {
            let Some(c) = metadata.column_by_name(&col.name) else {
                return Err(invalid(format!(
                    "filter {filter} names unknown column '{}'",
                    col.name
                )));
            };
            key_only &= c.semantic_type != SemanticType::Field;
            needed.insert(c.column_id);
        }
        if key_only {
            prune_filters.push(filter.clone());
        }
    }
    let read_ids: Vec<ColumnId> = metadata
        .column_metadatas()
        .iter()
        .map(|c| c.column_id)
        .filter(|id| needed.contains(id))
        .collect();
    let indices: Vec<usize> = read_ids
        .iter()
        .filter_map(|id| metadata.column_index_by_id(*id))
        .collect();
    let read_schema = compat::read_schema(metadata, &indices);
    let output = output_ids
        .iter()
        .map(|id| position(region_id, &read_ids, *id))
        .collect::<Result<_>>()?;
    let mut exact = mito_read::RowFilters::default();
    let mut series_in_prune = Some(Vec::new());
    if !filters.is_empty() {
        let df_schema = DFSchema::try_from(read_schema.as_ref().clone())
            .map_err(|e| invalid(format!("schema for filters: {e}")))?;
        for f in &filters {
            let predicate = mito_read::physical_predicate(f, &df_schema)
                .map_err(|e| invalid(format!("filter {f} cannot be evaluated: {e}")))?;
            exact.push(f, predicate, metadata);
            if mito_read::names_only_tags(f, metadata) {
                let at = prune_filters.iter().position(|p| p == f);
                series_in_prune = series_in_prune.zip(at).map(|(mut v, at)| {
                    v.push(at);
                    v
                });
            }
        }
    }
    Ok(Plan {
        region_id,
        read_ids,
        read_schema,
        output,
        time_range,
        prune_filters,
        pruner: std::sync::OnceLock::new(),
        exact,
        series_in_prune,
        tag_filters_only,
        snapshot,
    })
}

impl Plan {
    /// The pruning predicates of `prune_filters` over `metadata`'s schema (the region's at the
    /// scan), built once.
    fn pruner(&self, metadata: &store_api::metadata::RegionMetadata) -> Arc<mito_sst::Pruner> {
        self.pruner
            .get_or_init(|| {
                Arc::new(mito_sst::Pruner::new(
                    metadata.schema(),
                    &self.prune_filters,
                ))
            })
            .clone()
    }

    /// The output columns of one merged, filtered batch.
    fn project(&self, batch: RecordBatch) -> Result<RecordBatch> {
        Ok(batch.project(&self.output)?)
    }

    /// The rows of one merged batch that pass the exact filters.
    fn filter(&self, batch: RecordBatch) -> Result<RecordBatch> {
        self.exact.apply(batch).map_err(|e| self.filter_error(e))
    }

    /// The rows of one batch of a source that pass the series filters.
    fn filter_series(&self, batch: RecordBatch) -> Result<RecordBatch> {
        self.exact
            .apply_series(batch)
            .map_err(|e| self.filter_error(e))
    }

    /// The rows of one merged batch (of sources that applied the series filters) that pass
    /// the row filters.
    fn filter_rows(&self, batch: RecordBatch) -> Result<RecordBatch> {
        self.exact
            .apply_rows(batch)
            .map_err(|e| self.filter_error(e))
    }

    fn filter_error(&self, e: PredicateError) -> Error {
        let failed = |reason: String| {
            FilterSnafu {
                region_id: self.region_id,
                reason,
            }
            .build()
        };
        match e {
            PredicateError::Evaluate { source, .. } => {
                failed(PredicateError::evaluation_reason(&source))
            }
            PredicateError::NotBoolean {
                predicate,
                data_type,
            } => failed(format!("{predicate} is not a predicate (type {data_type})")),
            PredicateError::Arrow(e) => e.into(),
        }
    }
}

/// One stream of a group of sources: merged if several, as is (tombstones dropped) if one.
fn combine(mut streams: Vec<Stream>, options: &MergeOptions) -> Stream {
    match streams.len() {
        0 => futures::stream::empty().boxed(),
        1 => {
            let op_col = options.schema.fields().len().saturating_sub(1);
            streams
                .pop()
                .map(|s| {
                    s.and_then(move |b| futures::future::ready(drop_deletes(b, op_col)))
                        .boxed()
                })
                .unwrap_or_else(|| futures::stream::empty().boxed())
        }
        _ => merge(streams, options.clone()),
    }
}

fn drop_deletes(batch: RecordBatch, op_col: usize) -> Result<RecordBatch> {
    keep_rows::<UInt8Type>(batch, op_col, |op| op != OpType::Delete.as_u8())
}

fn drop_above(batch: RecordBatch, snapshot: SequenceNumber) -> Result<RecordBatch> {
    let seq_col = batch.num_columns().saturating_sub(2);
    keep_rows::<UInt64Type>(batch, seq_col, |seq| seq <= snapshot)
}

/// The rows whose value in internal column `col` passes `keep` (the batch itself if all do).
fn keep_rows<T: ArrowPrimitiveType>(
    batch: RecordBatch,
    col: usize,
    keep: impl Fn(T::Native) -> bool,
) -> Result<RecordBatch> {
    let Some(values) = batch.column(col).as_primitive_opt::<T>().cloned() else {
        return Ok(batch);
    };
    Ok(mito_read::keep_rows(batch, values.values(), keep)?)
}

/// Runs a source in its own task; its batches arrive through a small channel.
fn open_source(
    source: Source,
    plan: Arc<Plan>,
    ctx: ScanContext,
    region_dir: Arc<str>,
    metadata: store_api::metadata::RegionMetadataRef,
) -> Stream {
    let (tx, rx) = mpsc::channel::<Result<RecordBatch>>(PREFETCH);
    let time_range = match (plan.time_range, source.range) {
        (Some(a), Some(b)) => Some(a.intersect(b)),
        (a, b) => a.or(b),
    };
    tokio::spawn(async move {
        let region_id = plan.region_id;
        match source.kind {
            SourceKind::Memtable(m) => {
                let req = MemtableRead {
                    projection: Some(plan.read_ids.clone()),
                    time_range,
                    sequence: Some(plan.snapshot),
                    partition: None,
                    keep_deletes: true,
                    batch_rows: ctx.batch_rows,
                };
                match m.read(&req).context(MemtableSnafu { region_id }) {
                    Ok(iter) => {
                        for b in iter {
                            let b = b
                                .context(MemtableSnafu { region_id })
                                .and_then(|b| plan.filter_series(b));
                            let failed = b.is_err();
                            if tx.send(b).await.is_err() || failed {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                    }
                }
            }
            SourceKind::File(f) => {
                let filter_seq = f.meta().max_sequence > plan.snapshot;
                let reader = match ctx
                    .cache
                    .reader(&ctx.op, &region_dir, f.meta(), &metadata)
                    .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let req = SstReadRequest {
                    projection: Some(plan.read_ids.clone()),
                    time_range,
                    filters: plan.prune_filters.clone(),
                    batch_rows: ctx.batch_rows,
                    pruner: Some(plan.pruner(&metadata)),
                };
                let read = match reader.read_exact(&req).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e).context(SstSnafu { region_id })).await;
                        return;
                    }
                };
                let filter_series = plan
                    .series_in_prune
                    .as_ref()
                    .is_none_or(|at| at.iter().any(|i| !read.exact.contains(i)));
                let mut stream = read.stream;
                while let Some(b) = stream.next().await {
                    let b = b.context(SstSnafu { region_id }).and_then(|b| {
                        let b = if filter_seq {
                            drop_above(b, plan.snapshot)?
                        } else {
                            b
                        };
                        if filter_series {
                            plan.filter_series(b)
                        } else {
                            Ok(b)
                        }
                    });
                    let failed = b.is_err();
                    if tx.send(b).await.is_err() || failed {
                        return;
                    }
                }
                // Keep the file alive until its last batch is out.
                drop(f);
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) }).boxed()
}
