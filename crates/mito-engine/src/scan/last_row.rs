//! The last row of each series (`SeriesRowSelector::LastRow`), the engine's part: which
//! sources to read and how. The pieces elsewhere: the frontend's `LastRowPushdown` asks for
//! it (`frontend/src/query/last_row.rs`), `mito_read::last_row` keeps the last row of each
//! key of a sorted stream, and `SstReader::last_rows` reads of one file only the rows that
//! can still be a series' last (`mito-sst/src/reader/last_rows.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::UInt8Type;
use futures::{StreamExt, TryStreamExt};
use mito_memtable::MemtableRead;
use mito_read::OpType;
use mito_read::last_row::{LastRows, last_rows_stream};
use mito_read::merge::{MergeOptions, SortedBatch, merge};
use mito_sst::SstReadRequest;
use snafu::ResultExt;
use store_api::scan::TimeRange;

use super::{Plan, ScanContext, Source, SourceKind, Stream};
use crate::error::{MemtableSnafu, Result, SstSnafu};

/// The last row of each series, reading sources newest first and, of each file, only the
/// rows that can still be a series' last (see `SstReader::last_rows`); the candidates are
/// merged (dedup, merge mode) and the last of each key kept. Gives the sources back when the
/// answer needs the full merge: a file holds rows above the snapshot, or a winning row is a
/// delete (the visible last row is then an older one this path skipped).
pub(super) async fn last_rows_fast(
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
