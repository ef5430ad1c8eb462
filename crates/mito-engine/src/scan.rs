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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt8Type, UInt64Type};
use arrow_array::{ArrowPrimitiveType, RecordBatch};
use arrow_schema::SchemaRef;
use datafusion_common::DFSchema;
use datafusion_expr::Expr;
use futures::{StreamExt, TryStreamExt};
use mito_memtable::{Memtable, MemtableRead};
use mito_read::last_row::LastRows;
use mito_read::merge::{MergeOptions, SortedBatch, merge};
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
    /// The part of the source read, if not all of it (see [`split_overlapping`]).
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
    // the selection; a field filter must apply before it, to merged rows (full merge).
    let fast_range = (last_row && plan.tag_filters_only).then_some(plan.time_range);
    let mut fast: Option<Vec<RecordBatch>> = None;
    let sources = match fast_range {
        Some(range) => {
            match last_rows_fast(
                sources,
                &plan,
                ctx,
                &region_dir,
                &metadata,
                &merge_options,
                range,
            )
            .await?
            {
                Ok(batches) => {
                    fast = Some(batches);
                    Vec::new()
                }
                Err(all) => all,
            }
        }
        None => sources,
    };
    let fast_path = fast.is_some();
    let merged: Stream = if let Some(batches) = fast {
        futures::stream::iter(batches.into_iter().map(Ok)).boxed()
    } else if req.order == ScanOrder::Unordered && !last_row {
        let groups = split_overlapping(sources);
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
        last_rows_stream(filtered, merge_options.time_index)
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
        exact,
        series_in_prune,
        tag_filters_only,
        snapshot,
    })
}

impl Plan {
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

/// The last row of each series, reading sources newest first and, of each file, only the
/// rows that can still be a series' last (see `SstReader::last_rows`); the candidates are
/// merged (dedup, merge mode) and the last of each key kept. Gives the sources back when the
/// answer needs the full merge: a file holds rows above the snapshot, or a winning row is a
/// delete (the visible last row is then an older one this path skipped).
async fn last_rows_fast(
    mut sources: Vec<Source>,
    plan: &Plan,
    ctx: &ScanContext,
    region_dir: &Arc<str>,
    metadata: &store_api::metadata::RegionMetadataRef,
    options: &MergeOptions,
    range: Option<TimeRange>,
) -> Result<std::result::Result<Vec<RecordBatch>, Vec<Source>>> {
    let region_id = plan.region_id;
    if sources.iter().any(|s| match &s.kind {
        SourceKind::File(f) => f.meta().max_sequence > plan.snapshot,
        SourceKind::Memtable(_) => false,
    }) {
        return Ok(Err(sources));
    }
    sources.sort_by_key(|s| std::cmp::Reverse(s.span.max));
    let mut newer: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut candidates: Vec<Stream> = Vec::with_capacity(sources.len());
    for s in &sources {
        let mut batches = Vec::new();
        match &s.kind {
            SourceKind::Memtable(m) => {
                let req = MemtableRead {
                    projection: Some(plan.read_ids.clone()),
                    time_range: range,
                    sequence: Some(plan.snapshot),
                    partition: None,
                    keep_deletes: true,
                    batch_rows: ctx.batch_rows,
                };
                let mut last = LastRows::new(options.time_index);
                for b in m.read(&req).context(MemtableSnafu { region_id })? {
                    batches.extend(last.push(b.context(MemtableSnafu { region_id })?)?);
                }
                batches.extend(last.finish());
            }
            SourceKind::File(f) => {
                let reader = ctx
                    .cache
                    .reader(&ctx.op, region_dir, f.meta(), metadata)
                    .await?;
                let req = SstReadRequest {
                    projection: Some(plan.read_ids.clone()),
                    time_range: range,
                    filters: plan.prune_filters.clone(),
                    batch_rows: ctx.batch_rows,
                };
                batches = reader
                    .last_rows(&req, &newer)
                    .await
                    .context(SstSnafu { region_id })?
                    .try_collect()
                    .await
                    .context(SstSnafu { region_id })?;
            }
        }
        for b in &batches {
            let sorted = SortedBatch::try_new(b.clone(), options.time_index)?;
            for i in 0..sorted.num_rows() {
                let ts = sorted.ts(i).unwrap_or(i64::MIN);
                newer
                    .entry(sorted.key(i).to_vec())
                    .and_modify(|t| *t = (*t).max(ts))
                    .or_insert(ts);
            }
        }
        candidates.push(futures::stream::iter(batches.into_iter().map(Ok)).boxed());
    }
    let mut merge_options = options.clone();
    merge_options.dedup.keep_deletes = true;
    let mut merged = merge(candidates, merge_options);
    let mut last = LastRows::new(options.time_index);
    let mut out = Vec::new();
    while let Some(b) = merged.next().await {
        out.extend(last.push(b?)?);
    }
    out.extend(last.finish());
    let op_col = options.schema.fields().len().saturating_sub(1);
    for b in &out {
        if let Some(ops) = b.column(op_col).as_primitive_opt::<UInt8Type>()
            && ops.values().iter().any(|op| *op == OpType::Delete.as_u8())
        {
            return Ok(Err(sources));
        }
    }
    Ok(Ok(out))
}

/// Keeps the last row of each key of a stream sorted by (key, ts).
fn last_rows_stream(input: Stream, time_index: usize) -> Stream {
    futures::stream::unfold(
        (input, LastRows::new(time_index), false),
        |(mut input, mut last, done)| async move {
            if done {
                return None;
            }
            loop {
                match input.next().await {
                    Some(Ok(b)) => match last.push(b) {
                        Ok(Some(out)) => return Some((Ok(out), (input, last, false))),
                        Ok(None) => {}
                        Err(e) => return Some((Err(e.into()), (input, last, true))),
                    },
                    Some(Err(e)) => return Some((Err(e), (input, last, true))),
                    None => return last.finish().map(|b| (Ok(b), (input, last, true))),
                }
            }
        },
    )
    .boxed()
}

/// The pieces an unordered scan reads, each merged on its own (a piece of one source is
/// read as is): see [`split_spans`].
fn split_overlapping(sources: Vec<Source>) -> Vec<Vec<Source>> {
    let spans: Vec<TimeSpan> = sources.iter().map(|s| s.span).collect();
    split_spans(&spans)
        .into_iter()
        .map(|piece| {
            piece
                .into_iter()
                .filter_map(|(i, part)| {
                    let s = sources.get(i)?;
                    Some(match part {
                        None => s.clone(),
                        Some(part) => Source {
                            range: Some(TimeRange::of_span(part)),
                            ..s.clone()
                        },
                    })
                })
                .collect()
        })
        .collect()
}

/// Sources read together (merged if more than one): each with the stretch of its span read
/// (`None`: all of it).
type Piece = Vec<(usize, Option<TimeSpan>)>;

/// How to read sources of the time spans `spans`: pieces of (source, the part of its span
/// read, `None` for all of it). Where two or more spans overlap, the sources covering that
/// stretch, restricted to it, form one piece (rows of one key can only meet there, so only
/// there is a merge needed); everywhere else each source is a piece alone, restricted to the
/// time it covers by itself. Two files that share only the edge of their spans (the flushes
/// of concurrent writers do) are so read almost wholly without a merge, not merged row by
/// row over their whole spans.
fn split_spans(spans: &[TimeSpan]) -> Vec<Piece> {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| spans.get(i).map(|s| (s.min, s.max)));
    let span = |i: usize| spans.get(i).copied();
    // Where at least two spans meet, as disjoint sorted stretches.
    let mut shared: Vec<TimeSpan> = Vec::new();
    for (k, &a) in order.iter().enumerate() {
        let Some(a) = span(a) else { continue };
        for b in order.iter().skip(k + 1).filter_map(|&b| span(b)) {
            if b.min > a.max {
                break;
            }
            shared.extend(a.intersect(b));
        }
    }
    shared.sort_unstable_by_key(|s| (s.min, s.max));
    let mut zones: Vec<TimeSpan> = Vec::new();
    for s in shared {
        match zones.last_mut() {
            Some(last) if s.min <= last.max.saturating_add(1) => *last = last.union(s),
            _ => zones.push(s),
        }
    }
    let mut pieces: Vec<Piece> = zones
        .iter()
        .map(|zone| {
            order
                .iter()
                .filter_map(|&i| Some((i, span(i)?.intersect(*zone)?)))
                .map(|(i, part)| (i, Some(part)))
                .collect()
        })
        .collect();
    for &i in &order {
        let Some(whole) = span(i) else { continue };
        // The span minus the zones.
        let mut at = Some(whole.min);
        for zone in zones.iter().filter(|z| z.overlaps(whole)) {
            let Some(from) = at else { break };
            if zone.min > from {
                pieces.push(vec![(i, Some(TimeSpan::new(from, zone.min - 1)))]);
            }
            // None: the zone runs to the last timestamp there is.
            at = zone.max.checked_add(1).map(|next| next.max(from));
        }
        if let Some(at) = at
            && at <= whole.max
        {
            pieces.push(vec![(
                i,
                (at != whole.min).then_some(TimeSpan::new(at, whole.max)),
            )]);
        }
    }
    pieces
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use store_api::time::TimeSpan;

    /// A piece with its stretches as `(min, max)` pairs.
    type Pairs = Vec<(usize, Option<(i64, i64)>)>;

    /// [`super::split_spans`] over `(min, max)` pairs, its pieces as pairs too.
    fn split_spans(spans: &[(i64, i64)]) -> Vec<Pairs> {
        let spans: Vec<TimeSpan> = spans.iter().map(|(a, b)| TimeSpan::new(*a, *b)).collect();
        super::split_spans(&spans)
            .into_iter()
            .map(|p| {
                p.into_iter()
                    .map(|(i, part)| (i, part.map(|s| (s.min, s.max))))
                    .collect()
            })
            .collect()
    }

    /// Every timestamp of every span is read exactly once from its source; where spans
    /// overlap, one piece holds every source covering it (so the merge sees every version of
    /// a key); a piece of one source covers time no other span covers.
    fn check(spans: &[(i64, i64)]) {
        let pieces = split_spans(spans);
        let parts = |i: usize, t: i64| {
            pieces
                .iter()
                .enumerate()
                .filter(|(_, p)| {
                    p.iter()
                        .any(|(j, part)| *j == i && part.is_none_or(|(lo, hi)| lo <= t && t <= hi))
                })
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        let lo = spans.iter().map(|s| s.0).min().unwrap_or(0);
        let hi = spans.iter().map(|s| s.1).max().unwrap_or(0);
        for t in lo..=hi {
            let covering: Vec<usize> = (0..spans.len())
                .filter(|&i| spans[i].0 <= t && t <= spans[i].1)
                .collect();
            let mut piece = None;
            for &i in &covering {
                let found = parts(i, t);
                assert_eq!(
                    found.len(),
                    1,
                    "{spans:?}: source {i} at {t}: pieces {found:?}"
                );
                // All sources covering t read it in the same piece.
                assert!(piece.is_none_or(|p| p == found[0]), "{spans:?} at {t}");
                piece = Some(found[0]);
            }
            if let Some(p) = piece {
                assert_eq!(pieces[p].len() > 1, covering.len() > 1, "{spans:?} at {t}");
            }
        }
        for p in &pieces {
            for (i, part) in p {
                if let Some((lo, hi)) = part {
                    assert!(
                        lo <= hi && spans[*i].0 <= *lo && *hi <= spans[*i].1,
                        "{spans:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn overlapping_spans_are_merged_only_where_they_overlap() {
        // Files sharing an edge, as two writers' flushes do: one tiny merged piece.
        let pieces = split_spans(&[(0, 100), (100, 200), (201, 300), (290, 310)]);
        let merged: Vec<_> = pieces.iter().filter(|p| p.len() > 1).collect();
        assert_eq!(merged.len(), 2, "{pieces:?}");
        assert!(merged.iter().all(|p| {
            p.iter()
                .all(|(_, part)| part.is_some_and(|(lo, hi)| hi - lo <= 10))
        }));
        check(&[(0, 100), (100, 200), (201, 300), (290, 310)]);
        check(&[(0, 10), (0, 10), (5, 5), (3, 20)]);
        check(&[(0, 0)]);
        check(&[]);
        check(&[(5, 9), (0, 3)]);
        // A source that does not overlap is read whole.
        assert_eq!(split_spans(&[(0, 10)]), vec![vec![(0, None)]]);
        // Spans reaching the last timestamp there is.
        let pieces = split_spans(&[(i64::MAX - 5, i64::MAX), (i64::MAX - 1, i64::MAX)]);
        assert_eq!(pieces.len(), 2, "{pieces:?}");
    }

    proptest::proptest! {
        #[test]
        fn split_spans_reads_every_row_once_and_merges_every_overlap(
            spans in proptest::collection::vec((0i64..60, 0i64..20), 0..7)
        ) {
            let spans: Vec<(i64, i64)> = spans.into_iter().map(|(a, w)| (a, a + w)).collect();
            check(&spans);
        }
    }
}
