//! Batch streams of a read: through the column cache (whole row groups, cut to the selected
//! rows and kept series) or straight from Parquet, and the row selection helpers.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, RowSelection};
use parquet::arrow::{ProjectionMask, parquet_to_arrow_field_levels};
use snafu::ResultExt;

use crate::error::{ArrowSnafu, CorruptedSnafu, ParquetSnafu, Result};
use store_api::metadata::PRIMARY_KEY_COLUMN;

use super::cache::{Admission, CacheKey, ColumnCache, Slot};
use super::pages::ChunkRowGroup;
use super::verified::VerifiedReader;
use super::{ReadPlan, SstReader, key_filter_error, parquet_error};

impl SstReader {
    /// The rows of `plan` of the file's columns named `names` (file names, as stored), through
    /// the column cache if there is one. With the cache, the series filters of `pre` are
    /// applied here (and taken out of `pre`): whole runs of a series are skipped unread.
    pub(super) fn file_batches(
        &self,
        names: &[String],
        plan: ReadPlan,
        batch_rows: usize,
        pre: &mut mito_read::RowFilters,
        time: Option<TimeCut>,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        Ok(match &self.column_cache {
            Some(cache) => {
                let series = mito_read::RowFilters {
                    series: std::mem::take(&mut pre.series),
                    rows: Vec::new(),
                };
                self.cached_stream(cache.clone(), names, plan, batch_rows, series, time)
            }
            None => {
                let series = std::mem::take(&mut pre.series);
                self.series_first_stream(names, plan, batch_rows, series)?
            }
        })
    }

    /// The rows of `plan` of the columns `names` that pass the series filters `series`, read
    /// in two steps: the primary key and the filters' tag columns first (cheap dictionary
    /// keys), the filters evaluated once per run of a series, and then every column of the
    /// kept rows only. A page-pruned one-host read otherwise decoded, built and filtered
    /// the whole pages of every column (8,192 rows each to keep a few hundred). Without
    /// series filters, one step.
    fn series_first_stream(
        &self,
        names: &[String],
        plan: ReadPlan,
        batch_rows: usize,
        series: Vec<Arc<dyn datafusion_physical_expr::PhysicalExpr>>,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        if series.is_empty() {
            return self.raw_stream(names, plan.row_groups, plan.selection, batch_rows);
        }
        let all = self.roots(names);
        let full = self.arrow.schema().project(&all).context(ArrowSnafu {
            path: self.path.to_string(),
        })?;
        let mut first: Vec<String> = series
            .iter()
            .flat_map(datafusion_physical_expr::utils::collect_columns)
            .map(|c| c.name().to_string())
            .collect();
        first.push(PRIMARY_KEY_COLUMN.to_string());
        first.sort();
        first.dedup();
        let keys = self.raw_stream(
            &first,
            plan.row_groups.clone(),
            plan.selection.clone(),
            1 << 16,
        )?;
        let this = self.clone();
        let names = names.to_vec();
        let full = Arc::new(full);
        Ok(futures::stream::once(async move {
            let mut masks = Vec::new();
            let mut keys = keys;
            while let Some(b) = keys.next().await {
                let b = widen(&full, b?).context(ArrowSnafu {
                    path: this.path.to_string(),
                })?;
                masks.push(series_mask(&b, &series).map_err(|e| key_filter_error(&this.path, e))?);
            }
            let kept = RowSelection::from_filters(&masks);
            let total: usize = masks.iter().map(|m| m.len()).sum();
            let selection = match &plan.selection {
                Some(s) if s.row_count() == total => s.and_then(&kept),
                None if plan.rows == total => kept,
                _ => {
                    return Err(CorruptedSnafu {
                        path: this.path.to_string(),
                        reason: format!("the key columns read {total} rows, not the rows planned"),
                    }
                    .build());
                }
            };
            this.raw_stream(&names, plan.row_groups, Some(selection), batch_rows)
        })
        .try_flatten()
        .boxed())
    }

    /// The rows of `plan` of the file's columns named `names` passing the series filters
    /// `series`, from the column cache (whole row groups decoded on a miss), in batches of at
    /// most `batch_rows`.
    pub(super) fn cached_stream(
        &self,
        cache: Arc<dyn ColumnCache>,
        names: &[String],
        plan: ReadPlan,
        batch_rows: usize,
        series: mito_read::RowFilters,
        time: Option<TimeCut>,
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
                let time = time.clone();
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
                    let admission = if missing.is_empty() {
                        Admission::Now
                    } else {
                        cache.admit(&missing, rows, total)
                    };
                    if admission == Admission::Background {
                        this.fill_in_background(&cache, rg, &roots, &projected, missing);
                    }
                    if admission == Admission::Now {
                        let batch = this
                            .row_group_columns(&*cache, rg, &roots, &projected, columns)
                            .await?;
                        let cut =
                            this.series_ranges(&*cache, rg, &batch, &series.series, &ranges)?;
                        let chosen = cut.as_ref().unwrap_or(&ranges);
                        let in_time = time
                            .as_ref()
                            .and_then(|t| this.time_ranges(&*cache, rg, &batch, t, chosen));
                        let chosen = in_time.as_ref().unwrap_or(chosen);
                        let picked = pick_rows(&batch, chosen, batch_rows).context(ArrowSnafu {
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
                    // A partial read not kept: decode only the selected rows (of the kept
                    // series only, when there are series filters).
                    let names: Vec<String> = projected
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect();
                    let selection =
                        RowSelection::from_consecutive_ranges(ranges.into_iter(), total);
                    let plan = ReadPlan {
                        row_groups: vec![rg],
                        selection: Some(selection),
                        rows,
                    };
                    let mut stream =
                        this.series_first_stream(&names, plan, batch_rows, series.series.clone())?;
                    let mut out = Vec::new();
                    while let Some(b) = stream.next().await {
                        out.push(b?);
                    }
                    Ok(out)
                }
            })
            .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    /// Row group `rg` of the columns `roots` (whose schema is `projected`): `columns`, those
    /// found in the cache, the rest decoded whole now and kept.
    /// Decodes the columns `missing` of row group `rg` whole in a task of its own and keeps
    /// them (see [`Admission::Background`]); without a runtime to run it on, nothing.
    fn fill_in_background(
        &self,
        cache: &Arc<dyn ColumnCache>,
        rg: usize,
        roots: &[usize],
        projected: &SchemaRef,
        missing: Vec<CacheKey>,
    ) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            cache.filled(&missing);
            return;
        };
        let (this, owner, roots, projected) = (
            self.clone(),
            cache.clone(),
            roots.to_vec(),
            projected.clone(),
        );
        let task = runtime.spawn(async move {
            let columns = roots
                .iter()
                .map(|r| owner.peek(&(this.meta.file_id, rg, Slot::Column(*r))))
                .collect();
            if let Err(e) = this
                .row_group_columns(&*owner, rg, &roots, &projected, columns)
                .await
            {
                // The file may be gone (compacted away); reads decode their rows as before.
                tracing::debug!(path = %this.path, rg, error = %e, "background column decode failed");
            }
            owner.filled(&missing);
        });
        cache.filling(task);
    }

    pub(super) async fn row_group_columns(
        &self,
        cache: &dyn ColumnCache,
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
                batches.push(b?);
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
                    cache.insert((file_id, rg, Slot::Column(*r)), a.clone());
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
    /// rows of `selection` (over the concatenation of `row_groups`). One row group at a time:
    /// its projected chunks are read and checked whole, then decoded (see `pages`). A column
    /// whose chunk holds only nulls (its statistics say so) is neither read nor decoded: it
    /// comes back as a null array (a decimal-encoded field's exception column usually is
    /// one, and decoding its null pages was a tenth of a one-host query's CPU).
    pub(super) fn raw_stream(
        &self,
        names: &[String],
        row_groups: Vec<usize>,
        selection: Option<RowSelection>,
        batch_rows: usize,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let roots = self.roots(names);
        let projected = Arc::new(self.arrow.schema().project(&roots).context(ArrowSnafu {
            path: self.path.to_string(),
        })?);
        let rg_rows: Vec<usize> = row_groups
            .iter()
            .map(|rg| {
                self.parquet
                    .row_groups()
                    .get(*rg)
                    .and_then(|m| usize::try_from(m.num_rows()).ok())
                    .unwrap_or(0)
            })
            .collect();
        // Each row group with the rows it reads (`None`: all of them).
        let parts: Vec<(usize, Option<RowSelection>)> = match &selection {
            None => row_groups.into_iter().map(|rg| (rg, None)).collect(),
            Some(sel) => row_groups
                .into_iter()
                .zip(selection_ranges(sel, &rg_rows))
                .zip(&rg_rows)
                .filter(|((_, ranges), _)| !ranges.is_empty())
                .map(|((rg, ranges), rows)| {
                    let sel = RowSelection::from_consecutive_ranges(ranges.into_iter(), *rows);
                    (rg, Some(sel))
                })
                .collect(),
        };
        let this = self.clone();
        Ok(futures::stream::iter(parts)
            .then(move |(rg, sel)| {
                let (this, roots, projected) = (this.clone(), roots.clone(), projected.clone());
                async move {
                    let nulls = this.null_chunks(rg, &roots);
                    let decoded: Vec<usize> = roots
                        .iter()
                        .zip(&nulls)
                        .filter(|(_, null)| !**null)
                        .map(|(r, _)| *r)
                        .collect();
                    let descr = this.parquet.file_metadata().schema_descr_ptr();
                    let mask = ProjectionMask::roots(&descr, decoded);
                    let leaves: Vec<usize> = (0..descr.num_columns())
                        .filter(|i| mask.leaf_included(*i))
                        .collect();
                    let levels = parquet_to_arrow_field_levels(
                        &descr,
                        mask,
                        Some(this.arrow.schema().fields()),
                    )
                    .context(ParquetSnafu {
                        path: this.path.to_string(),
                    })?;
                    let group = this.load_row_group(rg, &leaves).await?;
                    let reader = ParquetRecordBatchReader::try_new_with_row_groups(
                        &levels, &group, batch_rows, sel,
                    )
                    .map_err(|e| parquet_error(&this.path, e))?;
                    let path = this.path.clone();
                    Ok(futures::stream::iter(reader.map(move |b| {
                        let b = b.map_err(|e| decode_error(&path, e))?;
                        with_nulls(&projected, &nulls, b).context(ArrowSnafu {
                            path: path.to_string(),
                        })
                    })))
                }
            })
            .try_flatten()
            .boxed())
    }

    /// For each of `roots` (ascending), whether its chunk in row group `rg` holds only nulls
    /// and is left unread. At least one column is always read (it gives the batches their
    /// rows), and only where the file's columns are flat (root i is leaf i).
    fn null_chunks(&self, rg: usize, roots: &[usize]) -> Vec<bool> {
        let descr = self.parquet.file_metadata().schema_descr();
        let fields = self.arrow.schema().fields();
        let Some(meta) = self.parquet.row_groups().get(rg) else {
            return vec![false; roots.len()];
        };
        let rows = u64::try_from(meta.num_rows()).unwrap_or(0);
        if descr.num_columns() != fields.len() || rows == 0 {
            return vec![false; roots.len()];
        }
        let mut nulls: Vec<bool> = roots
            .iter()
            .map(|r| {
                let nullable = fields.get(*r).is_some_and(|f| f.is_nullable());
                let all_null = meta
                    .columns()
                    .get(*r)
                    .and_then(|c| c.statistics())
                    .and_then(|s| s.null_count_opt())
                    == Some(rows);
                nullable && all_null
            })
            .collect();
        if nulls.iter().all(|n| *n)
            && let Some(first) = nulls.first_mut()
        {
            *first = false;
        }
        nulls
    }

    /// The chunks of the columns `leaves` of row group `rg`, read and checked.
    async fn load_row_group(&self, rg: usize, leaves: &[usize]) -> Result<ChunkRowGroup> {
        let corrupted = |reason: String| {
            CorruptedSnafu {
                path: self.path.to_string(),
                reason,
            }
            .build()
        };
        let meta = self
            .parquet
            .row_groups()
            .get(rg)
            .ok_or_else(|| corrupted(format!("no row group {rg}")))?;
        let mut ranges = Vec::with_capacity(leaves.len());
        for leaf in leaves {
            let column = meta
                .columns()
                .get(*leaf)
                .ok_or_else(|| corrupted(format!("row group {rg} lacks column {leaf}")))?;
            let (start, len) = column.byte_range();
            let end = start.checked_add(len).ok_or_else(|| {
                corrupted(format!("column {leaf} of row group {rg} ends past 2^64"))
            })?;
            ranges.push((rg, *leaf, start..end));
        }
        let mut input = VerifiedReader {
            op: self.op.clone(),
            path: self.path.clone(),
            info: self.info.clone(),
            chunks: HashMap::new(),
            file_id: self.meta.file_id,
            cache: self.chunk_cache.clone(),
        };
        input.load(&ranges).await?;
        let chunks = leaves
            .iter()
            .map(|leaf| {
                input
                    .chunks
                    .remove(&(rg, *leaf))
                    .map(|b| (*leaf, b))
                    .ok_or_else(|| corrupted(format!("column {leaf} of row group {rg} not read")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ChunkRowGroup {
            parquet: self.parquet.clone(),
            rg,
            chunks,
        })
    }
}

/// A decode failure of checked bytes: parquet's own errors mean the pages are not what the
/// writer wrote.
fn decode_error(path: &str, e: arrow_schema::ArrowError) -> crate::error::Error {
    match e {
        arrow_schema::ArrowError::ParquetError(reason) => CorruptedSnafu {
            path: path.to_string(),
            reason,
        }
        .build(),
        other => crate::error::Error::Arrow {
            path: path.to_string(),
            source: other,
            location: snafu::location!(),
        },
    }
}

/// The selected row ranges of each row group of `rg_rows` rows, from a selection over their
/// concatenation (rows past its end are not selected).
pub(super) fn selection_ranges(
    selection: &RowSelection,
    rg_rows: &[usize],
) -> Vec<Vec<Range<usize>>> {
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

/// A read's time range where it cuts a file (the file's rows are not all inside it), with
/// the file's name of the time index.
#[derive(Debug, Clone)]
pub(super) struct TimeCut {
    pub ts_name: String,
    pub range: store_api::scan::TimeRange,
}

/// Ranges averaging fewer rows than this are gathered row by row, not copied as slices.
const GATHER_BELOW: usize = 32;

/// The rows of `ranges` of `batch`, in batches of at most `batch_rows`: zero-copy slices when
/// the ranges are few; when they are many, copies of the slices joined (a run of a series per
/// range) or, where ranges average under `GATHER_BELOW` rows (a scattered selection), one
/// gather.
pub(super) fn pick_rows(
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
    let picked: usize = ranges.iter().map(|r| r.len()).sum();
    if picked >= ranges.len().saturating_mul(GATHER_BELOW) {
        let mut parts: Vec<RecordBatch> = Vec::new();
        let mut filled = 0usize;
        for r in ranges {
            let mut at = r.start;
            while at < r.end {
                let n = (r.end - at).min(batch_rows - filled);
                parts.push(batch.slice(at, n));
                filled += n;
                at += n;
                if filled == batch_rows {
                    out.push(arrow_select::concat::concat_batches(
                        &batch.schema(),
                        &parts,
                    )?);
                    parts.clear();
                    filled = 0;
                }
            }
        }
        if !parts.is_empty() {
            out.push(arrow_select::concat::concat_batches(
                &batch.schema(),
                &parts,
            )?);
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

/// `batch` (the decoded columns) with a null array put in for each column `nulls` marks, in
/// the order of `projected`.
fn with_nulls(
    projected: &SchemaRef,
    nulls: &[bool],
    batch: RecordBatch,
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    if !nulls.iter().any(|n| *n) {
        return Ok(batch);
    }
    let rows = batch.num_rows();
    let mut decoded = batch.columns().iter();
    let columns = projected
        .fields()
        .iter()
        .zip(nulls)
        .map(|(f, null)| {
            if *null {
                Ok(arrow_array::new_null_array(f.data_type(), rows))
            } else {
                decoded.next().cloned().ok_or_else(|| {
                    arrow_schema::ArrowError::SchemaError(format!(
                        "decoded batch lacks column {}",
                        f.name()
                    ))
                })
            }
        })
        .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new_with_options(
        projected.clone(),
        columns,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
}

/// `batch` (some columns of `full`, in its order) laid out as `full`, each column it lacks a
/// `Null`-typed placeholder (no buffers): predicates naming only the columns read evaluate
/// on it by position.
fn widen(
    full: &SchemaRef,
    batch: RecordBatch,
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let rows = batch.num_rows();
    let placeholder = arrow_array::new_null_array(&arrow_schema::DataType::Null, rows);
    let mut fields = Vec::with_capacity(full.fields().len());
    let mut columns = Vec::with_capacity(full.fields().len());
    for f in full.fields() {
        match batch.column_by_name(f.name()) {
            Some(c) => {
                fields.push(f.clone());
                columns.push(c.clone());
            }
            None => {
                fields.push(Arc::new(arrow_schema::Field::new(
                    f.name(),
                    arrow_schema::DataType::Null,
                    true,
                )));
                columns.push(placeholder.clone());
            }
        }
    }
    RecordBatch::try_new_with_options(
        Arc::new(arrow_schema::Schema::new(fields)),
        columns,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
}

/// Which rows of `batch` pass every predicate of `series` (naming only tags): evaluated on
/// the first row of each run of one primary key, or row by row without usable keys. The
/// mask has no NULLs (a NULL answer drops the row, as in a filter).
fn series_mask(
    batch: &RecordBatch,
    series: &[Arc<dyn datafusion_physical_expr::PhysicalExpr>],
) -> std::result::Result<arrow_array::BooleanArray, mito_read::PredicateError> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    let rows = batch.num_rows();
    let keys = batch
        .column_by_name(PRIMARY_KEY_COLUMN)
        .and_then(|c| c.as_dictionary_opt::<arrow_array::types::UInt32Type>())
        .filter(|d| d.keys().null_count() == 0 && u32::try_from(d.len()).is_ok());
    if let Some(keys) = keys {
        let starts = mito_read::run_starts(keys.keys().values());
        let keep = mito_read::keep_runs(batch, series, &starts)?;
        return Ok(mito_read::run_mask(rows, &starts, &keep));
    }
    let mut mask = arrow_buffer::BooleanBuffer::new_set(rows);
    for p in series {
        let b = mito_read::predicate_mask(p, batch)?;
        let passed = match b.nulls() {
            Some(n) => b.values() & n.inner(),
            None => b.values().clone(),
        };
        mask = &mask & &passed;
    }
    Ok(arrow_array::BooleanArray::new(mask, None))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::{ArrayRef, DictionaryArray, Int64Array, RecordBatch};

    use super::pick_rows;

    /// Slices, joined copies and a gather all give the ranges' rows in order, in batches of
    /// at most the batch size.
    #[test]
    fn picked_rows_are_the_ranges_rows_in_order() {
        let n = 1000i64;
        let values: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n));
        let names: Vec<String> = (0..n).map(|i| format!("k{}", i / 100)).collect();
        let keys: DictionaryArray<arrow_array::types::UInt32Type> =
            names.iter().map(String::as_str).collect();
        let batch = RecordBatch::try_from_iter([("v", values), ("k", Arc::new(keys) as ArrayRef)])
            .unwrap_or_else(|e| panic!("{e}"));
        let few = vec![3..40, 100..400];
        let long: Vec<_> = (0..20).map(|i| i * 50..i * 50 + 40).collect();
        let short: Vec<_> = (0..100).map(|i| i * 10..i * 10 + 3).collect();
        for ranges in [few, long, short] {
            for batch_rows in [7, 64, 8192] {
                let out = pick_rows(&batch, &ranges, batch_rows).unwrap_or_else(|e| panic!("{e}"));
                assert!(out.iter().all(|b| b.num_rows() <= batch_rows));
                let got: Vec<i64> = out
                    .iter()
                    .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
                    .collect();
                let want: Vec<i64> = ranges.iter().cloned().flatten().map(|i| i as i64).collect();
                assert_eq!(got, want, "{} ranges, {batch_rows}", ranges.len());
            }
        }
    }
}
