//! Reading a memtable: rows sorted by (primary key, timestamp, sequence desc), deduplicated.
//!
//! ```text
//!  snapshot parts (Arc clones) + series keys
//!    -> keep rows visible at the snapshot sequence and inside the time range
//!    -> counting sort by series rank (rows of a series stay in arrival order)
//!    -> per series: sort by (ts, seq desc) unless already in that order
//!    -> mito_read::dedup
//!    -> gather into batches: tags as dictionaries over the batch's series,
//!       fields interleaved from the parts, then __primary_key, __sequence, __op_type
//! ```

use std::sync::Arc;

use arrow_array::{Array, RecordBatch};
use arrow_schema::SchemaRef;
use mito_read::compat;
use mito_read::{DedupOptions, OpType, SortedRows, dedup};
use store_api::scan::TimeRange;
use store_api::{ColumnId, SequenceNumber};

use crate::error::{InvalidBatchSnafu, Result};
use crate::gather::{Gather, RowRef, SortedIndex};
use crate::memtable::{Memtable, read_lock};
use crate::part::Part;
use crate::series::ranks;

/// Default number of rows per output batch.
pub const DEFAULT_BATCH_ROWS: usize = 8192;

/// What to read from a memtable.
#[derive(Debug, Clone)]
pub struct MemtableRead {
    /// Columns to return by id, in this order; `None` for all, in schema order. The internal
    /// columns `__primary_key`, `__sequence` and `__op_type` always follow.
    pub projection: Option<Vec<ColumnId>>,
    /// Only rows in this time range.
    pub time_range: Option<TimeRange>,
    /// Only rows with a sequence at most this (a snapshot); `None` for everything.
    pub sequence: Option<SequenceNumber>,
    /// Only the time partition starting here (see [`Memtable::partition_starts`]).
    pub partition: Option<i64>,
    /// Keep winning tombstones (for flush); a user read drops them.
    pub keep_deletes: bool,
    /// Rows per output batch.
    pub batch_rows: usize,
}

impl Default for MemtableRead {
    fn default() -> Self {
        Self {
            projection: None,
            time_range: None,
            sequence: None,
            partition: None,
            keep_deletes: false,
            batch_rows: DEFAULT_BATCH_ROWS,
        }
    }
}

struct Sorted<'a> {
    parts: &'a [Arc<Part>],
    index: &'a SortedIndex,
    num_fields: usize,
}

impl Sorted<'_> {
    fn part(&self, i: usize) -> Option<(&Part, usize)> {
        let (p, r) = *self.index.rows.get(i)?;
        Some((self.parts.get(p as usize)?.as_ref(), r as usize))
    }
}

impl SortedRows for Sorted<'_> {
    fn num_rows(&self) -> usize {
        self.index.rows.len()
    }

    fn same_key_ts(&self, a: usize, b: usize) -> bool {
        let ix = self.index;
        ix.sid.get(a) == ix.sid.get(b) && ix.ts.get(a) == ix.ts.get(b)
    }

    fn op(&self, i: usize) -> OpType {
        self.part(i).map_or(OpType::Put, |(p, r)| p.op(r))
    }

    fn num_fields(&self) -> usize {
        self.num_fields
    }

    fn field_is_null(&self, i: usize, f: usize) -> bool {
        self.part(i)
            .and_then(|(p, r)| p.field(f).map(|a| a.is_null(r)))
            .unwrap_or(true)
    }
}

/// Sorted, deduplicated batches of a memtable read, built one at a time.
#[derive(Debug)]
pub struct MemtableIter {
    gather: Gather,
    next_chunk: usize,
}

impl MemtableIter {
    /// The schema of every batch.
    pub fn schema(&self) -> &SchemaRef {
        self.gather.schema()
    }
}

impl Iterator for MemtableIter {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        let batch = self.gather.batch(self.next_chunk)?;
        self.next_chunk += 1;
        Some(batch)
    }
}

impl Memtable {
    /// The schema of the batches a read with `projection` returns.
    pub fn read_schema(&self, projection: Option<&[ColumnId]>) -> Result<SchemaRef> {
        let indices = self.projected_indices(projection)?;
        Ok(compat::read_schema(&self.metadata, &indices))
    }

    fn projected_indices(&self, projection: Option<&[ColumnId]>) -> Result<Vec<usize>> {
        compat::projected_indices(&self.metadata, projection).map_err(|id| {
            InvalidBatchSnafu {
                region_id: self.metadata.region_id(),
                reason: format!("projection names unknown column id {id}"),
            }
            .build()
        })
    }

    /// Reads rows sorted by (primary key, timestamp), deduplicated by the region's merge mode.
    pub fn read(&self, req: &MemtableRead) -> Result<MemtableIter> {
        let schema = self.read_schema(req.projection.as_deref())?;
        let columns = self.projected_indices(req.projection.as_deref())?;
        // Merge full levels of the windows read first; a failure leaves the parts as they are,
        // which the read handles the same way. A frozen memtable is read once more (by its
        // flush) and dropped, so merging it would be wasted work.
        let starts: Vec<i64> = if self.is_frozen() {
            Vec::new()
        } else {
            read_lock(&self.partitions)
                .keys()
                .copied()
                .filter(|start| req.partition.is_none_or(|p| p == *start))
                .collect()
        };
        for start in starts {
            if let Err(e) = self.maybe_merge(start) {
                tracing::warn!(region_id = %self.metadata.region_id(), window_start = start, error = %e, "memtable part merge failed; parts left unmerged");
            }
        }
        // Parts first, then keys: keys only grow, so every series in the parts has a key.
        let parts: Vec<Arc<Part>> = {
            let partitions = read_lock(&self.partitions);
            partitions
                .iter()
                .filter(|(start, _)| req.partition.is_none_or(|p| p == **start))
                .filter(|(start, _)| {
                    req.time_range
                        .is_none_or(|r| r.overlaps(self.partition_span(**start)))
                })
                .flat_map(|(_, parts)| parts.iter().cloned())
                .collect()
        };
        let keys = read_lock(&self.series).keys();
        let rank = ranks(&keys);
        let index = sort_rows(&parts, &rank, req);
        let num_fields = self.metadata.field_columns().count();
        let sorted = Sorted {
            parts: &parts,
            index: &index,
            num_fields,
        };
        let options = DedupOptions {
            keep_deletes: req.keep_deletes,
            ..self.options.dedup
        };
        let selection = dedup(&sorted, options);
        let gather = Gather::new(
            self,
            schema,
            columns,
            parts,
            index,
            selection,
            keys,
            req.batch_rows,
        );
        Ok(MemtableIter {
            gather,
            next_chunk: 0,
        })
    }
}

/// The visible rows of `parts`, sorted by (series rank, ts, sequence desc).
pub(crate) fn sort_rows(parts: &[Arc<Part>], rank: &[u32], req: &MemtableRead) -> SortedIndex {
    let visible = |p: &Part, r: usize| {
        req.sequence
            .is_none_or(|s| p.sequence.get(r).is_some_and(|q| *q <= s))
            && req
                .time_range
                .is_none_or(|t| p.ts.get(r).is_some_and(|ts| t.contains(*ts)))
    };
    // Whole parts are usually all visible (or not at all): then no row is checked.
    let coverage = |p: &Part| {
        let Some(span) = p.ts_range else {
            return Coverage::None;
        };
        let seq_all = req.sequence.is_none_or(|s| p.max_sequence <= s);
        let time_all = req.time_range.is_none_or(|t| t.covers(span));
        let time_none = req.time_range.is_some_and(|t| !t.overlaps(span));
        if time_none {
            Coverage::None
        } else if seq_all && time_all {
            Coverage::All
        } else {
            Coverage::Some
        }
    };
    let coverages: Vec<Coverage> = parts.iter().map(|p| coverage(p)).collect();
    let rank_of = |p: &Part, r: usize| {
        p.series
            .get(r)
            .and_then(|s| rank.get(*s as usize))
            .copied()
            .unwrap_or(0) as usize
    };
    // Counting sort by rank: stable, so each series keeps arrival order.
    let mut counts = vec![0usize; rank.len() + 1];
    for (p, cov) in parts.iter().zip(&coverages) {
        match cov {
            Coverage::None => {}
            Coverage::All => {
                for sid in &p.series {
                    if let Some(c) = rank
                        .get(*sid as usize)
                        .and_then(|r| counts.get_mut(*r as usize + 1))
                    {
                        *c += 1;
                    }
                }
            }
            Coverage::Some => {
                for r in 0..p.num_rows() {
                    if visible(p, r)
                        && let Some(c) = counts.get_mut(rank_of(p, r) + 1)
                    {
                        *c += 1;
                    }
                }
            }
        }
    }
    for i in 1..counts.len() {
        let prev = counts.get(i - 1).copied().unwrap_or(0);
        if let Some(c) = counts.get_mut(i) {
            *c += prev;
        }
    }
    let total = counts.last().copied().unwrap_or(0);
    let mut rows = vec![(0u32, 0u32); total];
    let mut next = counts.clone();
    for (pi, (p, cov)) in parts.iter().zip(&coverages).enumerate() {
        if *cov == Coverage::None {
            continue;
        }
        for r in 0..p.num_rows() {
            if (*cov == Coverage::All || visible(p, r))
                && let Some(slot) = next.get_mut(rank_of(p, r))
            {
                if let Some(dst) = rows.get_mut(*slot) {
                    *dst = (pi as u32, r as u32);
                }
                *slot += 1;
            }
        }
    }
    // Dense copies of the sort keys, read once; everything after reads them in order.
    let at = |&(p, r): &RowRef| parts.get(p as usize).map(|x| (x, r as usize));
    let sid: Vec<u32> = rows
        .iter()
        .map(|x| {
            at(x)
                .and_then(|(p, r)| p.series.get(r))
                .copied()
                .unwrap_or(0)
        })
        .collect();
    let mut ts: Vec<i64> = rows
        .iter()
        .map(|x| at(x).and_then(|(p, r)| p.ts.get(r)).copied().unwrap_or(0))
        .collect();
    let mut seq: Vec<u64> = rows
        .iter()
        .map(|x| {
            at(x)
                .and_then(|(p, r)| p.sequence.get(r))
                .copied()
                .unwrap_or(0)
        })
        .collect();
    // Within each series: (ts asc, sequence desc). Arrival order is usually that already.
    for w in counts.windows(2) {
        let (start, end) = (
            w.first().copied().unwrap_or(0),
            w.get(1).copied().unwrap_or(0),
        );
        let (Some(run_ts), Some(run_seq)) = (ts.get(start..end), seq.get(start..end)) else {
            continue;
        };
        let in_order = run_ts
            .windows(2)
            .zip(run_seq.windows(2))
            .all(|(t, q)| (t.first(), q.get(1)) < (t.get(1), q.first()));
        if in_order {
            continue;
        }
        let mut order: Vec<usize> = (0..end - start).collect();
        order.sort_unstable_by_key(|i| {
            (
                run_ts.get(*i).copied(),
                std::cmp::Reverse(run_seq.get(*i).copied()),
            )
        });
        let permute = |v: &[RowRef]| {
            order
                .iter()
                .filter_map(|i| v.get(start + i).copied())
                .collect::<Vec<_>>()
        };
        let new_rows = permute(&rows);
        let new_ts: Vec<i64> = order
            .iter()
            .filter_map(|i| run_ts.get(*i).copied())
            .collect();
        let new_seq: Vec<u64> = order
            .iter()
            .filter_map(|i| run_seq.get(*i).copied())
            .collect();
        for (dst, src) in rows.iter_mut().skip(start).zip(new_rows) {
            *dst = src;
        }
        for (dst, src) in ts.iter_mut().skip(start).zip(new_ts) {
            *dst = src;
        }
        for (dst, src) in seq.iter_mut().skip(start).zip(new_seq) {
            *dst = src;
        }
    }
    SortedIndex { rows, sid, ts, seq }
}

/// How much of a part a read sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coverage {
    None,
    Some,
    All,
}
