//! A part: rows of one time partition, kept as Arrow arrays.
//!
//! A write makes one part per window it touches (level 0), keeping the write's field columns
//! as they came (shared, not copied) when the whole write falls in one window. Parts of a
//! window are merged in tiers (see `merge.rs`) into parts whose rows are in series order
//! (level 1 and up), so that reads gather from few, sequential sources.

use arrow_array::ArrayRef;
use arrow_buffer::ScalarBuffer;
use mito_read::OpType;
use store_api::SequenceNumber;
use store_api::time::TimeSpan;

use crate::series::SeriesId;

/// The op of each row of a part.
#[derive(Debug)]
pub(crate) enum Ops {
    /// Every row has this op (a part made by one write).
    Same(OpType),
    /// One op byte per row (a merged part).
    PerRow(Vec<u8>),
}

/// Rows of one time partition.
#[derive(Debug)]
pub(crate) struct Part {
    /// Series of each row.
    pub(crate) series: Vec<SeriesId>,
    /// Time index of each row.
    pub(crate) ts: ScalarBuffer<i64>,
    /// Sequence of each row.
    pub(crate) sequence: Vec<SequenceNumber>,
    /// Put or delete of each row.
    pub(crate) ops: Ops,
    /// One entry per region field column, in metadata order; `None` when no row of the part
    /// carries the column (all null).
    pub(crate) fields: Vec<Option<ArrayRef>>,
    /// Bytes held by this part.
    pub(crate) bytes: usize,
    /// Smallest and largest timestamp (`None` for a part without rows).
    pub(crate) ts_range: Option<TimeSpan>,
    /// Largest sequence.
    pub(crate) max_sequence: SequenceNumber,
    /// 0 for a part made by a write; n + 1 for a part merged from parts of level n.
    pub(crate) level: u8,
}

impl Part {
    pub(crate) fn new(
        series: Vec<SeriesId>,
        ts: ScalarBuffer<i64>,
        sequence: Vec<SequenceNumber>,
        ops: Ops,
        fields: Vec<Option<ArrayRef>>,
        level: u8,
    ) -> Self {
        let ops_bytes = match &ops {
            Ops::Same(_) => 0,
            Ops::PerRow(v) => v.capacity(),
        };
        let bytes = series.capacity() * 4
            + ts.inner().capacity()
            + sequence.capacity() * 8
            + ops_bytes
            + fields
                .iter()
                .flatten()
                .map(|f| f.get_array_memory_size())
                .sum::<usize>();
        let ts_range = TimeSpan::of(&ts);
        let max_sequence = sequence.iter().copied().max().unwrap_or(0);
        Self {
            series,
            ts,
            sequence,
            ops,
            fields,
            bytes,
            ts_range,
            max_sequence,
            level,
        }
    }

    pub(crate) fn num_rows(&self) -> usize {
        self.series.len()
    }

    /// Field column `f`, if this part carries it.
    pub(crate) fn field(&self, f: usize) -> Option<&ArrayRef> {
        self.fields.get(f).and_then(Option::as_ref)
    }

    /// The op of row `r`.
    pub(crate) fn op(&self, r: usize) -> OpType {
        match &self.ops {
            Ops::Same(op) => *op,
            Ops::PerRow(v) => OpType::from_u8(v.get(r).copied().unwrap_or(OpType::Put.as_u8())),
        }
    }
}

/// Sources to gather field `f` from with `interleave`: each part's column (or `null`, a
/// one-row all-null array, where the part lacks it), then `null` itself at index
/// `parts.len()` for rows that have no value at all.
pub(crate) fn field_sources<'a>(
    parts: &'a [std::sync::Arc<Part>],
    f: usize,
    null: &'a dyn arrow_array::Array,
) -> Vec<&'a dyn arrow_array::Array> {
    let mut sources: Vec<&dyn arrow_array::Array> = parts
        .iter()
        .map(|p| p.field(f).map_or(null, |a| a.as_ref()))
        .collect();
    sources.push(null);
    sources
}
