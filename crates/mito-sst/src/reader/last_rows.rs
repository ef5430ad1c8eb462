//! The last row of each series in a time range, in two passes (keys, then the chosen rows).

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{Array, RecordBatch};
use futures::StreamExt;
use futures::stream::BoxStream;
use parquet::arrow::arrow_reader::RowSelection;
use store_api::metadata::PRIMARY_KEY_COLUMN;
use store_api::scan::TimeRange;

use crate::error::{CorruptedSnafu, Result};

use super::{ReadPlan, SstReadRequest, SstReader};

impl SstReader {
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
        let span = self.meta.time_range;
        let cut = req.time_range.filter(|r| !r.covers(span));
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
                max: span.max,
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

/// A run of one key in the first pass of `SstReader::last_rows`: the key (current form) and
/// its last row in range with that row's time.
pub(super) type Run = (Vec<u8>, Option<(usize, i64)>);

/// One batch of the first pass of `SstReader::last_rows`: dictionary indices of the keys,
/// the dictionary, and the timestamps when the range cuts the file.
pub(super) struct KeyRuns<'a> {
    pub(super) keys: &'a [u32],
    pub(super) values: &'a arrow_array::BinaryArray,
    pub(super) suffix: &'a [u8],
    pub(super) ts: Option<&'a [i64]>,
    pub(super) cut: Option<&'a TimeRange>,
    /// The file's latest time (the bound of every row when the range holds the file).
    pub(super) max: i64,
    /// Position of the batch's first row in the planned row groups.
    pub(super) base: usize,
}

impl KeyRuns<'_> {
    /// Continues `open` with this batch; hands every run that ends to `done`.
    pub(super) fn scan(
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
