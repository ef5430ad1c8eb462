//! A part: the rows of one write that fall in one time partition, kept as Arrow arrays.
//!
//! The field columns of the write are kept as they came (shared, not copied) when the whole
//! write falls in one partition; otherwise each partition gets its rows taken out.

use arrow_array::ArrayRef;
use arrow_buffer::ScalarBuffer;
use mito_read::OpType;
use store_api::SequenceNumber;

use crate::series::SeriesId;

/// Rows of one write in one time partition.
#[derive(Debug)]
pub(crate) struct Part {
    /// Series of each row.
    pub(crate) series: Vec<SeriesId>,
    /// Time index of each row.
    pub(crate) ts: ScalarBuffer<i64>,
    /// Sequence of each row.
    pub(crate) sequence: Vec<SequenceNumber>,
    /// Put or delete (one per write).
    pub(crate) op: OpType,
    /// One entry per region field column, in metadata order; `None` when the write did not
    /// carry the column (all null).
    pub(crate) fields: Vec<Option<ArrayRef>>,
    /// Bytes held by this part.
    pub(crate) bytes: usize,
    /// Smallest and largest timestamp.
    pub(crate) ts_range: (i64, i64),
    /// Largest sequence.
    pub(crate) max_sequence: SequenceNumber,
}

impl Part {
    pub(crate) fn num_rows(&self) -> usize {
        self.series.len()
    }
}
