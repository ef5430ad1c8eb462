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
        let key = (self.meta.file_id, rg, Slot::SeriesRuns);
        let starts = match cache.peek(&key) {
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
                cache.insert(key, starts.clone());
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
}
