//! K-way merge of sorted batch streams, deduplicated: the read path of scans over memtables
//! and SST files, and of compaction.
//!
//! ```text
//!  source 0: [k1 t1 s9][k1 t2 s9][k3 t1 s9] ...  ─┐
//!  source 1: [k1 t1 s4][k2 t5 s4] ...             ├─► rows in (key, ts, seq desc) order,
//!  source 2: ...                                  ─┘   gathered in chunks of ~batch_rows
//!                                                       (a chunk never splits a (key, ts) run)
//!                                                   ─► dedup(mode) ─► output batches
//! ```
//!
//! Every source yields batches in the same read schema (`compat::read_schema`): user columns,
//! then `__primary_key` (u32 dictionary of binary), `__sequence`, `__op_type`. Each source is
//! sorted by (key, ts, seq desc) across its batches. The merge takes runs of rows from one
//! source while they sort before every other source's next row, so sources that do not
//! overlap cost one comparison per batch boundary, not one per row.

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt8Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, BinaryArray, DictionaryArray, RecordBatch, UInt32Array};
use arrow_buffer::ScalarBuffer;
use arrow_schema::{ArrowError, SchemaRef};
use futures::stream::{BoxStream, StreamExt};
use std::cmp::Ordering;

use crate::{DedupOptions, OpType, Selection, SortedRows, dedup};

/// A batch in a read schema with its sort columns (`__primary_key`, the time index,
/// `__sequence`) resolved for fast comparison by (key, ts, seq desc). Also used by the SST
/// writer to check the order of what it is given.
#[derive(Debug, Clone)]
pub struct SortedBatch {
    batch: RecordBatch,
    keys: DictionaryArray<UInt32Type>,
    key_values: BinaryArray,
    ts: ScalarBuffer<i64>,
    seq: ScalarBuffer<u64>,
    row: usize,
}

impl SortedBatch {
    fn new(batch: RecordBatch, layout: &Layout) -> Result<Self, ArrowError> {
        Self::try_new(batch, layout.ts)
    }

    /// Resolves the sort columns of a batch in a read schema (the internal columns last)
    /// whose time index is column `time_index`.
    pub fn try_new(batch: RecordBatch, time_index: usize) -> Result<Self, ArrowError> {
        let bad = |what: &str| ArrowError::InvalidArgumentError(format!("sorted batch: {what}"));
        let n = batch.num_columns();
        if n < 4 || time_index >= n - 3 {
            return Err(bad("fewer columns than a read schema has"));
        }
        let keys = batch
            .column(n - 3)
            .as_dictionary_opt::<UInt32Type>()
            .ok_or_else(|| bad("__primary_key is not a u32 dictionary"))?
            .clone();
        let key_values = keys
            .values()
            .as_binary_opt::<i32>()
            .ok_or_else(|| bad("__primary_key values are not binary"))?
            .clone();
        let ts = crate::i64_values(batch.column(time_index))
            .ok_or_else(|| bad("time index is not a 64-bit primitive with its whole buffer"))?;
        let seq = batch
            .column(n - 2)
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| bad("__sequence is not u64"))?
            .values()
            .clone();
        if ts.len() != batch.num_rows() || seq.len() != batch.num_rows() {
            return Err(bad("column lengths differ"));
        }
        Ok(Self {
            batch,
            keys,
            key_values,
            ts,
            seq,
            row: 0,
        })
    }

    /// The batch.
    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }

    /// Rows in the batch.
    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// The encoded primary key of `row` (empty for a null or dangling key).
    pub fn key(&self, row: usize) -> &[u8] {
        let Some(k) = self.keys.keys().values().get(row).map(|k| *k as usize) else {
            return &[];
        };
        if k < self.key_values.len() && self.keys.is_valid(row) {
            self.key_values.value(k)
        } else {
            &[]
        }
    }

    /// Whether rows `a` and `b` have the same key (the dictionary indices decide when equal).
    pub fn same_key(&self, a: usize, b: usize) -> bool {
        let keys = self.keys.keys().values();
        match (keys.get(a), keys.get(b)) {
            (Some(x), Some(y)) if x == y && self.keys.is_valid(a) == self.keys.is_valid(b) => true,
            _ => self.key(a) == self.key(b),
        }
    }

    /// The timestamp of `row`.
    pub fn ts(&self, row: usize) -> Option<i64> {
        self.ts.get(row).copied()
    }

    /// The sequence of `row`.
    pub fn seq(&self, row: usize) -> Option<u64> {
        self.seq.get(row).copied()
    }

    fn remaining(&self) -> usize {
        self.batch.num_rows() - self.row
    }

    /// Compares row `a` of `self` with row `b` of `other` by (key, ts, seq desc).
    pub fn cmp_rows(&self, a: usize, other: &SortedBatch, b: usize) -> Ordering {
        self.key(a)
            .cmp(other.key(b))
            .then_with(|| self.ts.get(a).cmp(&other.ts.get(b)))
            .then_with(|| other.seq.get(b).cmp(&self.seq.get(a)))
    }

    /// Whether row `a` of `self` and row `b` of `other` have the same key and timestamp.
    pub fn same_key_ts(&self, a: usize, other: &SortedBatch, b: usize) -> bool {
        self.ts.get(a) == other.ts.get(b) && self.key(a) == other.key(b)
    }
}

/// Where the sort columns are in the read schema.
#[derive(Debug, Clone)]
struct Layout {
    ts: usize,
    op: usize,
    fields: Vec<usize>,
}

/// How to merge.
#[derive(Debug, Clone)]
pub struct MergeOptions {
    /// The schema of every input and output batch.
    pub schema: SchemaRef,
    /// Position of the time index in the schema.
    pub time_index: usize,
    /// Positions of the field columns (filled by `last_non_null`).
    pub fields: Vec<usize>,
    /// Dedup rules.
    pub dedup: DedupOptions,
    /// Rows per output batch (a batch may exceed it to keep a (key, ts) run whole).
    pub batch_rows: usize,
}

/// A boxed stream of batches.
pub type BatchStream<E> = BoxStream<'static, Result<RecordBatch, E>>;

struct Source<E> {
    stream: BatchStream<E>,
    cursor: Option<SortedBatch>,
    done: bool,
}

/// Where chunk rows come from: (index into `batches`, row).
struct Chunk {
    batches: Vec<SortedBatch>,
    rows: Vec<(usize, usize)>,
    /// Index in `batches` of each source's current batch, if already added.
    slot: Vec<Option<usize>>,
}

struct State<E> {
    sources: Vec<Source<E>>,
    layout: Layout,
    options: MergeOptions,
    failed: bool,
}

/// Merges `sources` into one sorted, deduplicated stream. Errors of a source, and inputs that
/// break the schema, end the stream with an error; `E` converts from [`ArrowError`].
pub fn merge<E>(sources: Vec<BatchStream<E>>, options: MergeOptions) -> BatchStream<E>
where
    E: From<ArrowError> + Send + 'static,
{
    let n = options.schema.fields().len();
    let layout = Layout {
        ts: options.time_index,
        op: n.saturating_sub(1),
        fields: options.fields.clone(),
    };
    let state = State {
        sources: sources
            .into_iter()
            .map(|stream| Source {
                stream,
                cursor: None,
                done: false,
            })
            .collect(),
        layout,
        options,
        failed: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        if state.failed {
            return None;
        }
        loop {
            match state.next_chunk().await {
                Ok(Some(batch)) if batch.num_rows() == 0 => continue,
                Ok(Some(batch)) => return Some((Ok(batch), state)),
                Ok(None) => return None,
                Err(e) => {
                    state.failed = true;
                    return Some((Err(e), state));
                }
            }
        }
    })
    .boxed()
}

impl<E: From<ArrowError> + Send + 'static> State<E> {
    /// Makes sure source `i` has a row to look at, unless it is exhausted.
    async fn fill(&mut self, i: usize) -> Result<(), E> {
        let layout = self.layout.clone();
        let schema = self.options.schema.clone();
        let Some(src) = self.sources.get_mut(i) else {
            return Ok(());
        };
        while !src.done && src.cursor.as_ref().is_none_or(|c| c.remaining() == 0) {
            match src.stream.next().await {
                None => {
                    src.done = true;
                    src.cursor = None;
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(batch)) => {
                    if batch.schema().fields() != schema.fields() {
                        return Err(E::from(ArrowError::SchemaError(format!(
                            "merge input of schema {:?}, expected {:?}",
                            batch.schema(),
                            schema
                        ))));
                    }
                    if batch.num_rows() > 0 {
                        src.cursor = Some(SortedBatch::new(batch, &layout)?);
                    }
                }
            }
        }
        Ok(())
    }

    /// The source holding the smallest next row, and the runner-up.
    fn smallest(&self) -> (Option<usize>, Option<usize>) {
        let mut best: Option<usize> = None;
        let mut second: Option<usize> = None;
        for (i, s) in self.sources.iter().enumerate() {
            let Some(c) = s.cursor.as_ref().filter(|c| c.remaining() > 0) else {
                continue;
            };
            let beats = |j: Option<usize>| {
                j.and_then(|j| self.sources.get(j)?.cursor.as_ref())
                    .is_none_or(|o| c.cmp_rows(c.row, o, o.row) == Ordering::Less)
            };
            if beats(best) {
                second = best;
                best = Some(i);
            } else if beats(second) {
                second = Some(i);
            }
        }
        (best, second)
    }

    async fn next_chunk(&mut self) -> Result<Option<RecordBatch>, E> {
        for i in 0..self.sources.len() {
            self.fill(i).await?;
        }
        let mut chunk = Chunk {
            batches: Vec::new(),
            rows: Vec::new(),
            slot: vec![None; self.sources.len()],
        };
        let target = self.options.batch_rows.max(1);
        loop {
            let (best, second) = self.smallest();
            let Some(b) = best else { break };
            if chunk.rows.len() >= target && !self.continues_last_run(&chunk, b) {
                break;
            }
            // Take rows from `b` while they sort before the runner-up's next row.
            let taken = {
                let Some(cur) = self.sources.get(b).and_then(|s| s.cursor.as_ref()) else {
                    break;
                };
                let other = second.and_then(|j| self.sources.get(j)?.cursor.as_ref());
                let end = cur.batch.num_rows();
                let mut r = cur.row;
                let limit = end.min(cur.row + target.saturating_sub(chunk.rows.len()).max(1));
                while r < limit {
                    if let Some(o) = other
                        && cur.cmp_rows(r, o, o.row) != Ordering::Less
                    {
                        break;
                    }
                    r += 1;
                }
                // At least one row: `b` sorted first.
                r.max(cur.row + 1) - cur.row
            };
            let slot = match chunk.slot.get(b).copied().flatten() {
                Some(s) => s,
                None => {
                    let Some(cur) = self.sources.get(b).and_then(|s| s.cursor.as_ref()) else {
                        break;
                    };
                    chunk.batches.push(cur.clone());
                    let s = chunk.batches.len() - 1;
                    if let Some(x) = chunk.slot.get_mut(b) {
                        *x = Some(s);
                    }
                    s
                }
            };
            let Some(cur) = self.sources.get_mut(b).and_then(|s| s.cursor.as_mut()) else {
                break;
            };
            chunk
                .rows
                .extend((cur.row..cur.row + taken).map(|r| (slot, r)));
            cur.row += taken;
            if cur.remaining() == 0 {
                if let Some(x) = chunk.slot.get_mut(b) {
                    *x = None;
                }
                self.fill(b).await?;
            }
        }
        if chunk.rows.is_empty() {
            return Ok(None);
        }
        self.build(chunk).map(Some).map_err(E::from)
    }

    /// Whether the next row of source `b` has the (key, ts) of the chunk's last row.
    fn continues_last_run(&self, chunk: &Chunk, b: usize) -> bool {
        let (Some(&(slot, row)), Some(cur)) = (
            chunk.rows.last(),
            self.sources.get(b).and_then(|s| s.cursor.as_ref()),
        ) else {
            return false;
        };
        chunk
            .batches
            .get(slot)
            .is_some_and(|last| last.same_key_ts(row, cur, cur.row))
    }

    /// Gathers the chunk's rows, dedups them and applies the selection.
    fn build(&self, chunk: Chunk) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = (0..self.options.schema.fields().len())
            .map(|c| {
                let arrays: Vec<&dyn Array> = chunk
                    .batches
                    .iter()
                    .map(|b| b.batch.column(c).as_ref())
                    .collect();
                arrow_select::interleave::interleave(&arrays, &chunk.rows)
            })
            .collect::<Result<_, _>>()?;
        let merged = RecordBatch::try_new(self.options.schema.clone(), columns)?;
        if self.options.dedup.append_mode && self.options.dedup.keep_deletes {
            return Ok(merged);
        }
        let rows = MergedRows::new(&merged, &self.layout)?;
        let selection = dedup(&rows, self.options.dedup);
        apply_selection(&merged, &selection, &self.layout.fields)
    }
}

/// The merged chunk as [`SortedRows`].
struct MergedRows<'a> {
    cursor: SortedBatch,
    ops: &'a [u8],
    fields: Vec<&'a ArrayRef>,
}

impl<'a> MergedRows<'a> {
    fn new(batch: &'a RecordBatch, layout: &Layout) -> Result<Self, ArrowError> {
        let ops = batch
            .column(layout.op)
            .as_primitive_opt::<UInt8Type>()
            .ok_or_else(|| ArrowError::InvalidArgumentError("__op_type is not u8".into()))?
            .values();
        let fields = layout
            .fields
            .iter()
            .filter_map(|f| batch.columns().get(*f))
            .collect();
        Ok(Self {
            cursor: SortedBatch::new(batch.clone(), layout)?,
            ops,
            fields,
        })
    }
}

impl SortedRows for MergedRows<'_> {
    fn num_rows(&self) -> usize {
        self.ops.len()
    }

    fn same_key_ts(&self, a: usize, b: usize) -> bool {
        self.cursor.same_key_ts(a, &self.cursor, b)
    }

    fn op(&self, i: usize) -> OpType {
        OpType::from_u8(self.ops.get(i).copied().unwrap_or(1))
    }

    fn num_fields(&self) -> usize {
        self.fields.len()
    }

    fn field_is_null(&self, i: usize, f: usize) -> bool {
        self.fields.get(f).is_none_or(|a| a.is_null(i))
    }
}

/// Builds the rows a [`Selection`] keeps; with per-field sources (`last_non_null`), each field
/// column takes its values from the rows the selection names.
pub fn apply_selection(
    batch: &RecordBatch,
    selection: &Selection,
    fields: &[usize],
) -> Result<RecordBatch, ArrowError> {
    let to_u32 = |i: usize| {
        u32::try_from(i).map_err(|_| ArrowError::ComputeError("row index past u32".into()))
    };
    if selection.rows.len() == batch.num_rows() && selection.fields.is_empty() {
        // Nothing dropped: the selection is the identity (rows are taken in order).
        return Ok(batch.clone());
    }
    let rows = UInt32Array::from(
        selection
            .rows
            .iter()
            .map(|r| to_u32(*r))
            .collect::<Result<Vec<_>, _>>()?,
    );
    let mut columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| arrow_select::take::take(c.as_ref(), &rows, None))
        .collect::<Result<_, _>>()?;
    for (f, col) in fields.iter().zip(&selection.fields) {
        let idx = UInt32Array::from(
            col.iter()
                .map(|r| r.map(to_u32).transpose())
                .collect::<Result<Vec<_>, _>>()?,
        );
        if let (Some(slot), Some(src)) = (columns.get_mut(*f), batch.columns().get(*f)) {
            *slot = arrow_select::take::take(src.as_ref(), &idx, None)?;
        }
    }
    RecordBatch::try_new(batch.schema(), columns)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::types::Int32Type;
    use arrow_array::{Int32Array, TimestampMillisecondArray, UInt8Array, UInt64Array};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};
    use proptest::prelude::*;

    use super::*;
    use crate::MergeMode;
    use crate::compat::dictionary;

    /// (key, ts, seq, op, fields) of one row.
    type Row = (u8, i64, u64, OpType, [Option<i32>; 2]);

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int32, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("b", DataType::Int32, true),
            Field::new("__primary_key", dictionary(DataType::Binary), false),
            Field::new("__sequence", DataType::UInt64, false),
            Field::new("__op_type", DataType::UInt8, false),
        ]))
    }

    fn batch(rows: &[Row]) -> RecordBatch {
        let keys: Vec<Vec<u8>> = rows.iter().map(|r| vec![b'k', r.0]).collect();
        let values = BinaryArray::from_iter_values(keys.iter());
        let idx = UInt32Array::from_iter_values(0..u32::try_from(rows.len()).unwrap_or(0));
        let pk = DictionaryArray::<UInt32Type>::try_new(idx, Arc::new(values)).unwrap();
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int32Array::from(
                    rows.iter().map(|r| r.4[0]).collect::<Vec<_>>(),
                )),
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Int32Array::from(
                    rows.iter().map(|r| r.4[1]).collect::<Vec<_>>(),
                )),
                Arc::new(pk),
                Arc::new(UInt64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
                Arc::new(UInt8Array::from(
                    rows.iter().map(|r| r.3.as_u8()).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn sort(rows: &mut [Row]) {
        rows.sort_by(|a, b| {
            (a.0, a.1, std::cmp::Reverse(a.2)).cmp(&(b.0, b.1, std::cmp::Reverse(b.2)))
        });
    }

    /// The expected output: every row sorted together, deduplicated by the same rules.
    fn oracle(rows: &[Row], options: DedupOptions) -> Vec<(u8, i64, u8, [Option<i32>; 2])> {
        let mut all = rows.to_vec();
        sort(&mut all);
        let b = batch(&all);
        let layout = Layout {
            ts: 1,
            op: 5,
            fields: vec![0, 2],
        };
        let sel = dedup(&MergedRows::new(&b, &layout).unwrap(), options);
        let out = apply_selection(&b, &sel, &layout.fields).unwrap();
        rows_of(&out)
    }

    fn rows_of(b: &RecordBatch) -> Vec<(u8, i64, u8, [Option<i32>; 2])> {
        let a = b.column(0).as_primitive::<Int32Type>();
        let ts = b.column(1).to_data();
        let ts = ts.buffer::<i64>(0);
        let bb = b.column(2).as_primitive::<Int32Type>();
        let pk = b.column(3).as_dictionary::<UInt32Type>();
        let pkv = pk.values().as_binary::<i32>();
        let op = b.column(5).as_primitive::<UInt8Type>();
        (0..b.num_rows())
            .map(|i| {
                let key = pkv.value(pk.keys().value(i) as usize)[1];
                (
                    key,
                    ts[i],
                    op.value(i),
                    [
                        a.is_valid(i).then(|| a.value(i)),
                        bb.is_valid(i).then(|| bb.value(i)),
                    ],
                )
            })
            .collect()
    }

    fn run(
        sources: Vec<Vec<RecordBatch>>,
        options: DedupOptions,
        batch_rows: usize,
    ) -> Vec<RecordBatch> {
        let streams: Vec<BatchStream<ArrowError>> = sources
            .into_iter()
            .map(|bs| futures::stream::iter(bs.into_iter().map(Ok)).boxed())
            .collect();
        let merged = merge(
            streams,
            MergeOptions {
                schema: schema(),
                time_index: 1,
                fields: vec![0, 2],
                dedup: options,
                batch_rows,
            },
        );
        futures::executor::block_on(merged.collect::<Vec<_>>())
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    fn row() -> impl Strategy<Value = (u8, i64, bool, [Option<i32>; 2])> {
        (
            0u8..4,
            0i64..6,
            prop::bool::weighted(0.2),
            [prop::option::of(0i32..9), prop::option::of(0i32..9)],
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn merge_matches_sorting_everything(
            raw in prop::collection::vec((row(), 0usize..4), 0..80),
            cuts in prop::collection::vec(1usize..7, 1..20),
            batch_rows in 1usize..12,
            mode in prop::sample::select(vec![MergeMode::LastRow, MergeMode::LastNonNull]),
            append in any::<bool>(),
            keep_deletes in any::<bool>(),
        ) {
            let options = DedupOptions { merge_mode: mode, append_mode: append, keep_deletes };
            let rows: Vec<Row> = raw
                .iter()
                .enumerate()
                .map(|(i, ((k, t, del, f), _))| {
                    let op = if *del { OpType::Delete } else { OpType::Put };
                    (*k, *t, i as u64 + 1, op, *f)
                })
                .collect();
            // Split into 4 sources, each sorted, cut into batches of varying size.
            let mut sources: Vec<Vec<RecordBatch>> = Vec::new();
            for s in 0..4 {
                let mut mine: Vec<Row> = rows.iter().zip(&raw).filter(|(_, (_, src))| *src == s).map(|(r, _)| *r).collect();
                sort(&mut mine);
                let mut batches = Vec::new();
                let mut at = 0;
                let mut c = cuts.iter().cycle();
                while at < mine.len() {
                    let n = (*c.next().unwrap_or(&1)).min(mine.len() - at);
                    batches.push(batch(&mine[at..at + n]));
                    at += n;
                }
                sources.push(batches);
            }
            let out = run(sources, options, batch_rows);
            let got: Vec<_> = out.iter().flat_map(rows_of).collect();
            let want = oracle(&rows, options);
            if append {
                // Duplicates keep their relative order only up to equal (key, ts, seq): compare sorted.
                let mut g = got.clone();
                let mut w = want.clone();
                g.sort();
                w.sort();
                prop_assert_eq!(g, w);
            } else {
                prop_assert_eq!(got, want);
            }
            prop_assert!(out.iter().all(|b| b.num_rows() > 0));
        }
    }

    #[test]
    fn source_errors_end_the_stream() {
        let good =
            futures::stream::iter(vec![Ok(batch(&[(1, 1, 1, OpType::Put, [None, None])]))]).boxed();
        let bad: BatchStream<ArrowError> =
            futures::stream::iter(vec![Err(ArrowError::ComputeError("disk".into()))]).boxed();
        let merged = merge(
            vec![good, bad],
            MergeOptions {
                schema: schema(),
                time_index: 1,
                fields: vec![0, 2],
                dedup: DedupOptions::default(),
                batch_rows: 8,
            },
        );
        let out = futures::executor::block_on(merged.collect::<Vec<_>>());
        assert_eq!(out.len(), 1);
        assert!(out[0].is_err());
    }
}
