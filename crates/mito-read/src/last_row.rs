//! The last row of each series (primary key) of a stream sorted by (key, ts asc).
//!
//! ```text
//! batch 1: a1 a2 b1 b2 b3 | batch 2: b4 c1 | end
//! out:     a2             |          b4    | c1
//! ```
//!
//! A batch's final row is held back until the next batch shows whether its key goes on.

use arrow_array::{RecordBatch, UInt32Array};
use arrow_schema::ArrowError;
use futures::StreamExt;

use crate::merge::{BatchStream, SortedBatch};

/// Keeps the last row of each key; feed batches in order with [`LastRows::push`], then call
/// [`LastRows::finish`].
#[derive(Debug)]
pub struct LastRows {
    time_index: usize,
    /// The previous batch's final row and its key.
    pending: Option<(Vec<u8>, RecordBatch)>,
}

impl LastRows {
    /// A selector for batches in a read schema whose time index is column `time_index`.
    pub fn new(time_index: usize) -> Self {
        Self {
            time_index,
            pending: None,
        }
    }

    /// The rows of `batch` (and of the batch before) now known to be the last of their key.
    pub fn push(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>, ArrowError> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(None);
        }
        let sorted = SortedBatch::try_new(batch, self.time_index)?;
        let ends: UInt32Array = (1..n)
            .filter(|&i| !sorted.same_key(i - 1, i))
            .map(|i| u32::try_from(i - 1).unwrap_or(u32::MAX))
            .collect();
        let batch = sorted.batch();
        let mut parts = Vec::with_capacity(2);
        if let Some((key, row)) = self.pending.take()
            && key != sorted.key(0)
        {
            parts.push(row);
        }
        if !ends.is_empty() {
            parts.push(arrow_select::take::take_record_batch(batch, &ends)?);
        }
        self.pending = Some((sorted.key(n - 1).to_vec(), batch.slice(n - 1, 1)));
        match parts.len() {
            0 => Ok(None),
            1 => Ok(parts.pop()),
            _ => Ok(Some(arrow_select::concat::concat_batches(
                &batch.schema(),
                &parts,
            )?)),
        }
    }

    /// The last row of the final key, once the input has ended.
    pub fn finish(&mut self) -> Option<RecordBatch> {
        self.pending.take().map(|(_, row)| row)
    }
}

/// Keeps the last row of each key of `input`, a stream sorted by (key, ts asc) whose time
/// index is column `time_index`.
pub fn last_rows_stream<E>(input: BatchStream<E>, time_index: usize) -> BatchStream<E>
where
    E: From<ArrowError> + Send + 'static,
{
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, UInt32Type};
    use arrow_array::{BinaryArray, DictionaryArray, Int64Array, UInt8Array, UInt64Array};
    use arrow_schema::{DataType, Field, Schema};
    use proptest::prelude::*;

    use super::*;
    use crate::compat::dictionary;

    /// (key, ts) rows, sorted, with a value column equal to key * 1000 + ts.
    fn batch(rows: &[(u8, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
            Field::new("__primary_key", dictionary(DataType::Binary), false),
            Field::new("__sequence", DataType::UInt64, false),
            Field::new("__op_type", DataType::UInt8, false),
        ]));
        // Dictionary with one value per row (duplicates included), as concatenations produce.
        let values = BinaryArray::from_iter_values(rows.iter().map(|r| vec![b'k', r.0]));
        let idx = UInt32Array::from_iter_values(0..u32::try_from(rows.len()).unwrap());
        let pk = DictionaryArray::<UInt32Type>::try_new(idx, Arc::new(values)).unwrap();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|r| i64::from(r.0) * 1000 + r.1),
                )),
                Arc::new(pk),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|_| 1))),
                Arc::new(UInt8Array::from_iter_values(rows.iter().map(|_| 1))),
            ],
        )
        .unwrap()
    }

    fn values(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    fn select(rows: &[(u8, i64)], cuts: &[usize]) -> Vec<i64> {
        let mut selector = LastRows::new(0);
        let mut out = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&rows.len())) {
            let end = end.clamp(start, rows.len());
            out.extend(selector.push(batch(&rows[start..end])).unwrap());
            start = end;
        }
        out.extend(selector.finish());
        values(&out)
    }

    #[test]
    fn a_key_running_across_batches_keeps_only_its_last_row() {
        let rows = [(1, 1), (1, 2), (2, 1), (2, 2), (2, 3), (2, 4), (3, 1)];
        assert_eq!(select(&rows, &[5]), [1002, 2004, 3001]);
        assert_eq!(select(&rows, &[1, 2, 3, 4, 5, 6]), [1002, 2004, 3001]);
        assert_eq!(select(&rows, &[]), [1002, 2004, 3001]);
        assert!(select(&[], &[]).is_empty());
    }

    proptest! {
        #[test]
        fn matches_the_greatest_timestamp_of_each_key(
            mut rows in proptest::collection::vec((0u8..6, 0i64..50), 0..60),
            mut cuts in proptest::collection::vec(0usize..60, 0..6),
        ) {
            rows.sort_unstable();
            rows.dedup();
            cuts.sort_unstable();
            let mut expected: BTreeMap<u8, i64> = BTreeMap::new();
            for (k, ts) in &rows {
                expected.insert(*k, i64::from(*k) * 1000 + ts);
            }
            let expected: Vec<i64> = expected.into_values().collect();
            prop_assert_eq!(select(&rows, &cuts), expected);
        }
    }
}
