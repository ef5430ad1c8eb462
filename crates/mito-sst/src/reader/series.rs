//! Key filters on the file's own columns and the series runs they keep (evaluated once per
//! run of one series; where the runs start is remembered per row group in the column cache).

use std::ops::Range;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use datafusion_common::DFSchema;
use datafusion_expr::Expr;
use store_api::metadata::PRIMARY_KEY_COLUMN;

use crate::error::Result;

use super::cache::{ColumnCache, Slot};
use super::{SstReader, key_filter_error};

impl SstReader {
    /// before floats are decoded: those whose every column the file stores under the same
    /// name and id as the current schema (a column's type never changes). They name only tags
    /// and the time index (the caller passes no others), which every version of a row shares,
    /// so applying them before dedup is exact.
    ///
    /// Returned in two: those naming only tags (the same across a run of one series, see
    /// [`mito_read::filter_series`]), then the rest; and the positions in `filters` of those
    /// returned.
    pub(super) fn key_filters(
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

    /// Where the series runs of row group `rg` (all of whose read columns are `batch`) start,
    /// as a `UInt32` array: found once per row group and kept in the cache. `None` when the
    /// batch has no primary key column of `UInt32` dictionary keys without NULLs.
    pub(super) fn run_starts(
        &self,
        cache: &dyn ColumnCache,
        rg: usize,
        batch: &RecordBatch,
    ) -> Option<ArrayRef> {
        let key = (self.meta.file_id, rg, Slot::SeriesRuns);
        if let Some(starts) = cache.peek(&key) {
            return Some(starts);
        }
        let keys = batch
            .column_by_name(PRIMARY_KEY_COLUMN)
            .and_then(|c| c.as_dictionary_opt::<UInt32Type>())
            .filter(|d| d.keys().null_count() == 0 && u32::try_from(d.len()).is_ok())
            .map(|d| d.keys().values().clone())?;
        let starts: ArrayRef =
            Arc::new(arrow_array::UInt32Array::from(mito_read::run_starts(&keys)));
        cache.insert(key, starts.clone());
        Some(starts)
    }

    /// `ranges` of row group `rg` (all of whose read columns are `batch`) cut to the runs of
    /// the series passing `predicates`, which name only tags: evaluated on the first row of
    /// each run the ranges touch. The runs' starts are found once per row group and kept in
    /// the cache. `None` when there are no predicates or the batch has no primary key column
    /// of `UInt32` dictionary keys without NULLs (then the caller filters row by row).
    pub(super) fn series_ranges(
        &self,
        cache: &dyn ColumnCache,
        rg: usize,
        batch: &RecordBatch,
        predicates: &[Arc<dyn datafusion_physical_expr::PhysicalExpr>],
        ranges: &[Range<usize>],
    ) -> Result<Option<Vec<Range<usize>>>> {
        if predicates.is_empty() {
            return Ok(None);
        }
        let Some(starts) = self.run_starts(cache, rg, batch) else {
            return Ok(None);
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
        // Which of the runs the ranges touch pass.
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
        let mut out: Vec<Range<usize>> = Vec::new();
        for r in ranges {
            for j in runs_of(r) {
                if !kept.get(j).copied().unwrap_or(false) {
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

    /// `ranges` of row group `rg` (all of whose read columns are `batch`) narrowed to the
    /// rows inside `time`'s range, found by binary search in each series run; `None` when
    /// the batch lacks the runs or a 64-bit time index (the adapter then filters row by
    /// row, as it does anyway).
    pub(super) fn time_ranges(
        &self,
        cache: &dyn ColumnCache,
        rg: usize,
        batch: &RecordBatch,
        time: &super::stream::TimeCut,
        ranges: &[Range<usize>],
    ) -> Option<Vec<Range<usize>>> {
        let ts = mito_read::i64_values(batch.column_by_name(&time.ts_name)?)?;
        let starts = self.run_starts(cache, rg, batch)?;
        let starts = starts.as_primitive_opt::<UInt32Type>()?;
        Some(narrow_to_time(ranges, starts.values(), &ts, time.range))
    }
}

/// `ranges` of a row group narrowed to the rows whose timestamp (`ts`, one per row) lies in
/// `range`: each range is split at the series runs (`starts`), inside which timestamps
/// ascend, and each piece cut by binary search. Adjacent pieces are joined.
pub(super) fn narrow_to_time(
    ranges: &[Range<usize>],
    starts: &[u32],
    ts: &[i64],
    range: store_api::scan::TimeRange,
) -> Vec<Range<usize>> {
    let rows = ts.len();
    let end = |j: usize| starts.get(j + 1).map_or(rows, |s| *s as usize);
    let mut out: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        let r = r.start.min(rows)..r.end.min(rows);
        let mut j = starts.partition_point(|s| (*s as usize) <= r.start).max(1) - 1;
        let mut at = r.start;
        while at < r.end {
            let stop = end(j).min(r.end).max(at + 1);
            let piece = ts.get(at..stop).unwrap_or_default();
            let lo = at + range.start.map_or(0, |s| piece.partition_point(|t| *t < s));
            let hi = at
                + range
                    .end
                    .map_or(piece.len(), |e| piece.partition_point(|t| *t < e));
            if lo < hi {
                match out.last_mut() {
                    Some(last) if last.end == lo => last.end = hi,
                    _ => out.push(lo..hi),
                }
            }
            at = stop;
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, reason = "tests")]
    use super::narrow_to_time;
    use store_api::scan::TimeRange;

    /// Narrowed ranges hold exactly the rows of the ranges inside the time range.
    #[test]
    fn narrowing_keeps_exactly_the_rows_in_the_range() {
        // Three runs (0..5, 5..9, 9..14), timestamps ascending inside each.
        let starts = [0u32, 5, 9];
        let ts = [1i64, 3, 5, 7, 9, 2, 4, 6, 8, 5, 5, 6, 10, 11];
        let ranges = [0..3, 4..12, 13..14];
        for range in [
            TimeRange::new(4, 8),
            TimeRange::new(0, 100),
            TimeRange::new(5, 6),
            TimeRange::new(50, 60),
            TimeRange {
                start: None,
                end: Some(6),
            },
            TimeRange {
                start: Some(6),
                end: None,
            },
        ] {
            let got: Vec<usize> = narrow_to_time(&ranges, &starts, &ts, range)
                .into_iter()
                .flatten()
                .collect();
            let want: Vec<usize> = ranges
                .iter()
                .cloned()
                .flatten()
                .filter(|i| range.contains(ts[*i]))
                .collect();
            assert_eq!(got, want, "{range:?}");
        }
    }
}
