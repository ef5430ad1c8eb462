//! Scan requests and the stream of batches a scan returns.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use arrow_array::RecordBatch;
use arrow_schema::{SchemaRef, TimeUnit};
use datafusion_expr::utils::split_conjunction;
use datafusion_expr::{BinaryExpr, Expr, Operator};
use futures::Stream;
use futures::stream::BoxStream;

use crate::error::BoxedError;
use crate::time::TimeSpan;
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

    /// The range holding exactly the timestamps of `span` (unbounded above when it reaches
    /// `i64::MAX`).
    pub fn of_span(span: TimeSpan) -> Self {
        Self {
            start: Some(span.min),
            end: span.max.checked_add(1),
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

    /// Whether the inclusive span shares a timestamp with the range.
    pub fn overlaps(&self, span: TimeSpan) -> bool {
        let TimeSpan { min, max } = span;
        min <= max && self.start.is_none_or(|s| max >= s) && self.end.is_none_or(|e| min < e)
    }

    /// Whether every timestamp of the inclusive span is inside the range.
    pub fn covers(&self, span: TimeSpan) -> bool {
        self.contains(span.min) && self.contains(span.max)
    }

    /// The timestamps inside both ranges.
    pub fn intersect(self, other: TimeRange) -> TimeRange {
        let tighter = |a: Option<i64>, b: Option<i64>, pick: fn(i64, i64) -> i64| match (a, b) {
            (Some(a), Some(b)) => Some(pick(a, b)),
            (a, b) => a.or(b),
        };
        TimeRange {
            start: tighter(self.start, other.start, i64::max),
            end: tighter(self.end, other.end, i64::min),
        }
    }
}

impl TimeRange {
    /// The conjuncts of `filters` split in two: the range those that exactly bound the time
    /// index column `name` (values in `unit`, see [`time_bound`]) put on it, `None` when none
    /// does, and the other conjuncts, which may narrow the rows further.
    pub fn split_bounds(
        filters: &[Expr],
        name: &str,
        unit: TimeUnit,
    ) -> (Option<TimeRange>, Vec<Expr>) {
        let mut range: Option<TimeRange> = None;
        let mut rest = Vec::new();
        for f in filters {
            for conjunct in split_conjunction(f) {
                match time_bound(conjunct, name, unit) {
                    Some((start, end)) => {
                        range = Some(
                            range
                                .unwrap_or_default()
                                .intersect(TimeRange { start, end }),
                        );
                    }
                    None => rest.push(conjunct.clone()),
                }
            }
        }
        (range, rest)
    }
}

/// The `[start, end)` bounds `e` puts on the time index column `name`, when `e` is exactly a
/// comparison of that column with a timestamp literal in `unit` (`=`, `<`, `<=`, `>`, `>=`,
/// either side) or a `BETWEEN` of two: then `e` holds for a row if and only if its timestamp
/// is inside the bounds.
pub fn time_bound(e: &Expr, name: &str, unit: TimeUnit) -> Option<(Option<i64>, Option<i64>)> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, t) = if is_column(left, name) {
                (*op, timestamp_literal(right, unit)?)
            } else if is_column(right, name) {
                (op.swap()?, timestamp_literal(left, unit)?)
            } else {
                return None;
            };
            match op {
                Operator::Eq => Some((Some(t), Some(t.checked_add(1)?))),
                Operator::Gt => Some((Some(t.checked_add(1)?), None)),
                Operator::GtEq => Some((Some(t), None)),
                Operator::Lt => Some((None, Some(t))),
                Operator::LtEq => Some((None, Some(t.checked_add(1)?))),
                _ => None,
            }
        }
        Expr::Between(b) if !b.negated && is_column(&b.expr, name) => Some((
            Some(timestamp_literal(&b.low, unit)?),
            Some(timestamp_literal(&b.high, unit)?.checked_add(1)?),
        )),
        _ => None,
    }
}

/// A timestamp literal in `unit`.
fn timestamp_literal(e: &Expr, unit: TimeUnit) -> Option<i64> {
    use datafusion_common::ScalarValue;
    let Expr::Literal(v, _) = e else {
        return None;
    };
    match (v, unit) {
        (ScalarValue::TimestampSecond(Some(t), None), TimeUnit::Second)
        | (ScalarValue::TimestampMillisecond(Some(t), None), TimeUnit::Millisecond)
        | (ScalarValue::TimestampMicrosecond(Some(t), None), TimeUnit::Microsecond)
        | (ScalarValue::TimestampNanosecond(Some(t), None), TimeUnit::Nanosecond) => Some(*t),
        _ => None,
    }
}

fn is_column(e: &Expr, name: &str) -> bool {
    matches!(e, Expr::Column(c) if c.name == name)
}

/// Rows a scan keeps of each series (primary key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesRowSelector {
    /// Only the visible row with the greatest timestamp that passes the filters (in an
    /// append-mode region two rows may tie; one of them is returned).
    LastRow,
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
    /// Keep only some rows of each series (applied after the filters); `None` keeps all.
    pub series_row_selector: Option<SeriesRowSelector>,
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
        assert!(r.overlaps(TimeSpan::new(0, 10)));
        assert!(!r.overlaps(TimeSpan::new(0, 9)));
        assert!(r.overlaps(TimeSpan::new(19, 30)));
        assert!(!r.overlaps(TimeSpan::new(20, 30)));
        assert!(!r.overlaps(TimeSpan::new(15, 14)));
        assert!(
            TimeRange {
                start: None,
                end: Some(0)
            }
            .overlaps(TimeSpan::new(i64::MIN, -1))
        );
    }

    #[test]
    fn time_bounds_split_from_other_conjuncts() {
        use datafusion_common::ScalarValue;
        use datafusion_expr::{col, lit};
        let ts = |t| lit(ScalarValue::TimestampMillisecond(Some(t), None));
        let host = col("h").eq(lit("a"));
        let filters = vec![
            col("ts").gt_eq(ts(5)).and(host.clone()),
            col("ts").lt(ts(10)),
            // Not exactly a bound: stays a filter.
            col("ts").not_eq(ts(7)),
        ];
        let (range, rest) = TimeRange::split_bounds(&filters, "ts", TimeUnit::Millisecond);
        assert_eq!(range, Some(TimeRange::new(5, 10)));
        assert_eq!(rest, vec![host, col("ts").not_eq(ts(7))]);
        // Another unit's literal is no bound of this column.
        let (range, rest) = TimeRange::split_bounds(&filters[1..2], "ts", TimeUnit::Second);
        assert_eq!((range, rest.len()), (None, 1));
        assert_eq!(
            TimeRange::new(0, 8).intersect(TimeRange {
                start: Some(3),
                end: None
            }),
            TimeRange::new(3, 8)
        );
    }
}
