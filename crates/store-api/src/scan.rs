//! Scan requests and the stream of batches a scan returns.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use datafusion_expr::Expr;
use futures::Stream;
use futures::stream::BoxStream;

use crate::error::BoxedError;
use crate::{ColumnId, SequenceNumber};

/// A half-open time range `[start, end)` in the unit of the region's time index.
/// `None` bounds are unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TimeRange {
    /// Inclusive lower bound.
    pub start: Option<i64>,
    /// Exclusive upper bound.
    pub end: Option<i64>,
}

impl TimeRange {
    /// `[start, end)`.
    pub fn new(start: i64, end: i64) -> Self {
        Self {
            start: Some(start),
            end: Some(end),
        }
    }

    /// Whether `ts` is inside the range.
    pub fn contains(&self, ts: i64) -> bool {
        self.start.is_none_or(|s| ts >= s) && self.end.is_none_or(|e| ts < e)
    }

    /// Whether the range holds no timestamp at all.
    pub fn is_empty(&self) -> bool {
        matches!((self.start, self.end), (Some(s), Some(e)) if s >= e)
    }

    /// Whether the inclusive span `[min, max]` shares a timestamp with the range.
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        min <= max && self.start.is_none_or(|s| max >= s) && self.end.is_none_or(|e| min < e)
    }
}

/// The order a scan returns rows in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ScanOrder {
    /// Any order; lets the engine skip merging disjoint sources.
    Unordered,
    /// By primary key, then timestamp ascending.
    #[default]
    SeriesTimeAsc,
    /// By primary key, then timestamp descending (latest point of each series first).
    SeriesTimeDesc,
}

/// What to read from a region.
#[derive(Debug, Clone, Default)]
pub struct ScanRequest {
    /// Columns to return, by id, in this order; `None` returns every column in schema order.
    pub projection: Option<Vec<ColumnId>>,
    /// Predicates over user columns, ANDed; the engine uses them to prune files, row groups
    /// and pages, and applies them exactly to the rows it returns.
    pub filters: Vec<Expr>,
    /// Only rows whose time index is in this range.
    pub time_range: Option<TimeRange>,
    /// Stop after this many rows.
    pub limit: Option<usize>,
    /// Order of the returned rows.
    pub order: ScanOrder,
    /// Read as of this sequence (inclusive); `None` reads everything committed when the scan
    /// starts. Either way the scan sees one consistent snapshot.
    pub snapshot: Option<SequenceNumber>,
}

/// The rows a scan returns: a schema and a stream of batches in that schema.
pub struct BatchStream {
    schema: SchemaRef,
    inner: BoxStream<'static, Result<RecordBatch, BoxedError>>,
}

impl BatchStream {
    /// Wraps a stream whose batches all have `schema`.
    pub fn new(
        schema: SchemaRef,
        inner: impl Stream<Item = Result<RecordBatch, BoxedError>> + Send + 'static,
    ) -> Self {
        Self {
            schema,
            inner: Box::pin(inner),
        }
    }

    /// The schema of every batch.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

impl fmt::Debug for BatchStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchStream")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Stream for BatchStream {
    type Item = Result<RecordBatch, BoxedError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_range_is_half_open() {
        let r = TimeRange::new(10, 20);
        assert!(r.contains(10));
        assert!(r.contains(19));
        assert!(!r.contains(20));
        assert!(!r.contains(9));
        assert!(!r.is_empty());
        assert!(TimeRange::new(5, 5).is_empty());
        assert!(TimeRange::default().contains(i64::MIN));
        assert!(TimeRange::default().contains(i64::MAX));
    }

    #[test]
    fn time_range_overlap_with_inclusive_spans() {
        let r = TimeRange::new(10, 20);
        assert!(r.overlaps(0, 10));
        assert!(!r.overlaps(0, 9));
        assert!(r.overlaps(19, 30));
        assert!(!r.overlaps(20, 30));
        assert!(!r.overlaps(15, 14));
        assert!(
            TimeRange {
                start: None,
                end: Some(0)
            }
            .overlaps(i64::MIN, -1)
        );
    }
}
