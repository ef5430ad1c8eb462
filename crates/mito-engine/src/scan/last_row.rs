//! The last row of each series (`SeriesRowSelector::LastRow`), the engine's part: which
//! sources to read and how. The pieces elsewhere: the frontend's `LastRowPushdown` asks for
//! it (`frontend/src/query/last_row.rs`), `mito_read::last_row` keeps the last row of each
//! key of a sorted stream, and `SstReader::last_rows` reads of one file only the rows that
//! can still be a series' last (`mito-sst/src/reader/last_rows.rs`).
//!
//! With a filter on fields (`latitude IS NOT NULL`), a series' last row may fail it and
//! its answer be an older row: `last_rows_filtered` takes the last rows, keeps those that
//! pass, and searches backwards in time, window by window, for the series left.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt8Type;
use arrow_array::{BooleanArray, RecordBatch};
use futures::{StreamExt, TryStreamExt};
use mito_memtable::MemtableRead;
use mito_read::OpType;
use mito_read::last_row::{LastRows, last_rows_stream};
use mito_read::merge::{MergeOptions, SortedBatch, merge};
use mito_sst::SstReadRequest;
use snafu::ResultExt;
use store_api::scan::TimeRange;

use super::{Plan, ScanContext, Source, SourceKind, Stream, combine, open_source};
use crate::error::{MemtableSnafu, Result, SstSnafu};

/// The first backwards window spans this fraction of the data's time (or the stretch the
/// pending series' last rows lie in, if wider); each next window is twice as wide.
const FIRST_WINDOW_OF_SPAN: i64 = 256;

/// The last row of each series that passes the scan's filters: `last_rows_fast` when they
/// name only tags (they keep or drop whole series, so they may apply after the selection),
/// else `last_rows_filtered`. Gives the sources back where the answer needs the full merge.
pub(super) async fn last_rows(
    sources: Vec<Source>,
    plan: &Arc<Plan>,
    ctx: &ScanContext,
    region_dir: &Arc<str>,
    metadata: &store_api::metadata::RegionMetadataRef,
    options: &MergeOptions,
) -> Result<std::result::Result<Vec<RecordBatch>, Vec<Source>>> {
    if plan.tag_filters_only {
        return last_rows_fast(sources, plan, ctx, region_dir, metadata, options).await;
    }
    last_rows_filtered(sources, plan, ctx, region_dir, metadata, options).await
}

/// The last row of each series that passes the scan's filters, some of which name fields.
///
/// ```text
/// last rows (last_rows_fast)  -> series filters -> row filters pass: answers
///                                                 fail: pending series
/// pending: windows [lo, hi] going back from their latest timestamp, each read by the full
///          merge of the sources meeting it, row filters, the last passing row of each
///          pending series -> answers, until none is pending or the data ends
/// ```
///
/// Exact: a series' rows newer than its last row do not exist, and a window's merge sees
/// every version of each (key, timestamp) inside it, so the newest passing row of the
/// newest window holding one is the answer. The windows are disjoint, so the worst case
/// (a series with no passing row) reads the data once, plus the first pass. Gives the
/// sources back where `last_rows_fast` does.
async fn last_rows_filtered(
    sources: Vec<Source>,
    plan: &Arc<Plan>,
    ctx: &ScanContext,
    region_dir: &Arc<str>,
    metadata: &store_api::metadata::RegionMetadataRef,
    options: &MergeOptions,
) -> Result<std::result::Result<Vec<RecordBatch>, Vec<Source>>> {
    let last = last_rows_fast(sources.clone(), plan, ctx, region_dir, metadata, options).await?;
    let candidates = match last {
        Ok(batches) => batches,
        Err(sources) => return Ok(Err(sources)),
    };
    // Series in scope, with their last row's timestamp; those whose last row passes are done.
    let mut pending: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut found = Vec::new();
    for b in candidates {
        let b = plan.filter_series(b)?;
        let sorted = SortedBatch::try_new(b, options.time_index)?;
        for i in 0..sorted.num_rows() {
            pending.insert(sorted.key(i).to_vec(), sorted.ts(i).unwrap_or(i64::MIN));
        }
        let passed = plan.filter_rows(sorted.batch().clone())?;
        forget_found(&passed, options.time_index, &mut pending)?;
        found.push(passed);
    }
    let floor = sources
        .iter()
        .map(|s| s.span.min)
        .min()
        .unwrap_or(i64::MAX)
        .max(plan.time_range.and_then(|r| r.start).unwrap_or(i64::MIN));
    let (Some(mut hi), Some(oldest)) = (
        pending.values().copied().max(),
        pending.values().copied().min(),
    ) else {
        return Ok(Ok(sort_by_key(found, options.time_index)?));
    };
    let mut width = (hi.saturating_sub(floor) / FIRST_WINDOW_OF_SPAN)
        .max(hi.saturating_sub(oldest))
        .max(1);
    while !pending.is_empty() && hi >= floor {
        let lo = hi.saturating_sub(width - 1).max(floor);
        let window = TimeRange {
            start: Some(lo),
            end: hi.checked_add(1),
        };
        let streams: Vec<Stream> = sources
            .iter()
            .filter(|s| window.overlaps(s.span))
            .map(|s| {
                let mut s = s.clone();
                s.range = Some(s.range.map_or(window, |r| r.intersect(window)));
                open_source(
                    s,
                    plan.clone(),
                    ctx.clone(),
                    region_dir.clone(),
                    metadata.clone(),
                )
            })
            .collect();
        let mut merged = combine(streams, options);
        let mut last = LastRows::new(options.time_index);
        let mut out = Vec::new();
        while let Some(b) = merged.next().await {
            let b = plan.filter_rows(b?)?;
            let b = keep_pending(b, options.time_index, &pending)?;
            out.extend(last.push(b)?);
        }
        out.extend(last.finish());
        for b in out {
            forget_found(&b, options.time_index, &mut pending)?;
            found.push(b);
        }
        hi = lo.saturating_sub(1);
        width = width.saturating_mul(2);
        if lo == i64::MIN {
            break;
        }
    }
    Ok(Ok(sort_by_key(found, options.time_index)?))
}

/// Removes the keys of `batch`'s rows from `pending`.
fn forget_found(
    batch: &RecordBatch,
    time_index: usize,
    pending: &mut HashMap<Vec<u8>, i64>,
) -> Result<()> {
    if batch.num_rows() == 0 {
        return Ok(());
    }
    let sorted = SortedBatch::try_new(batch.clone(), time_index)?;
    for i in 0..sorted.num_rows() {
        pending.remove(sorted.key(i));
    }
    Ok(())
}

/// The rows of `batch` whose key is pending.
fn keep_pending(
    batch: RecordBatch,
    time_index: usize,
    pending: &HashMap<Vec<u8>, i64>,
) -> Result<RecordBatch> {
    if batch.num_rows() == 0 {
        return Ok(batch);
    }
    let sorted = SortedBatch::try_new(batch, time_index)?;
    let keep: BooleanArray = (0..sorted.num_rows())
        .map(|i| Some(pending.contains_key(sorted.key(i))))
        .collect();
    Ok(arrow_select::filter::filter_record_batch(
        sorted.batch(),
        &keep,
    )?)
}

/// One row per key, from several batches, as one batch in key order.
fn sort_by_key(batches: Vec<RecordBatch>, time_index: usize) -> Result<Vec<RecordBatch>> {
    let batches: Vec<SortedBatch> = batches
        .into_iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| SortedBatch::try_new(b, time_index))
        .collect::<std::result::Result<_, _>>()?;
    let mut rows: Vec<(&[u8], (usize, usize))> = batches
        .iter()
        .enumerate()
        .flat_map(|(b, s)| (0..s.num_rows()).map(move |r| (s.key(r), (b, r))))
        .collect();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let at: Vec<(usize, usize)> = rows.into_iter().map(|(_, at)| at).collect();
    let refs: Vec<&RecordBatch> = batches.iter().map(SortedBatch::batch).collect();
    Ok(vec![arrow_select::interleave::interleave_record_batch(
        &refs, &at,
    )?])
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
                    time_range: plan.time_range,
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
                    time_range: plan.time_range,
                    filters: plan.prune_filters.clone(),
                    batch_rows: ctx.batch_rows,
                    pruner: Some(plan.pruner(metadata)),
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
    let merged = merge(candidates, merge_options);
    let out: Vec<RecordBatch> = last_rows_stream(merged, options.time_index)
        .try_collect()
        .await?;
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
