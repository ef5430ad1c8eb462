//! The time index as numbers: a timestamp column's values as `i64` in its own unit, and the
//! inclusive span `[min, max]` of a set of them ([`TimeSpan`]: of a file, a memtable, a
//! batch). A query's half-open bounds are [`crate::scan::TimeRange`].

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_buffer::ScalarBuffer;
use arrow_schema::{DataType, TimeUnit};
use serde::{Deserialize, Serialize};

/// An inclusive span of timestamps `[min, max]` in the unit of the region's time index; never
/// empty (`min <= max` when built by [`TimeSpan::of`] or [`TimeSpan::point`]). Serialized as
/// `{"min": .., "max": ..}` (frozen in the manifest's file records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeSpan {
    /// The smallest timestamp.
    pub min: i64,
    /// The largest timestamp.
    pub max: i64,
}

impl TimeSpan {
    /// `[min, max]`.
    pub fn new(min: i64, max: i64) -> Self {
        Self { min, max }
    }

    /// The span of one timestamp.
    pub fn point(ts: i64) -> Self {
        Self { min: ts, max: ts }
    }

    /// The span of `values`; `None` when there are none.
    pub fn of(values: &[i64]) -> Option<Self> {
        let first = *values.first()?;
        Some(values.iter().fold(Self::point(first), |s, v| s.with(*v)))
    }

    /// This span grown to hold `ts`.
    pub fn with(self, ts: i64) -> Self {
        Self {
            min: self.min.min(ts),
            max: self.max.max(ts),
        }
    }

    /// The smallest span holding both.
    pub fn union(self, other: TimeSpan) -> Self {
        Self {
            min: self.min.min(other.min),
            max: self.max.max(other.max),
        }
    }

    /// The timestamps in both spans, if any.
    pub fn intersect(self, other: TimeSpan) -> Option<Self> {
        self.overlaps(other).then(|| Self {
            min: self.min.max(other.min),
            max: self.max.min(other.max),
        })
    }

    /// Whether the two spans share a timestamp.
    pub fn overlaps(&self, other: TimeSpan) -> bool {
        self.min <= other.max && other.min <= self.max
    }

    /// How many timestamps the span holds (saturating at `i64::MAX`).
    pub fn width(&self) -> i64 {
        self.max.saturating_sub(self.min).saturating_add(1)
    }

    /// Whether `ts` is inside the span.
    pub fn contains(&self, ts: i64) -> bool {
        self.min <= ts && ts <= self.max
    }
}

/// The values of a timestamp array of any unit, as `i64` in that unit (nulls keep whatever
/// their slot holds); `None` if `array` is not a timestamp array. No copy.
pub fn timestamp_values(array: &dyn Array) -> Option<&ScalarBuffer<i64>> {
    Some(match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => {
            array.as_primitive::<TimestampSecondType>().values()
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            array.as_primitive::<TimestampMillisecondType>().values()
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            array.as_primitive::<TimestampMicrosecondType>().values()
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            array.as_primitive::<TimestampNanosecondType>().values()
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, TimestampMillisecondArray, TimestampSecondArray};

    use super::*;

    #[test]
    fn spans_grow_join_and_overlap_inclusively() {
        assert_eq!(TimeSpan::of(&[]), None);
        assert_eq!(TimeSpan::of(&[5, -3, 9]), Some(TimeSpan::new(-3, 9)));
        let a = TimeSpan::new(0, 10);
        assert!(a.overlaps(TimeSpan::new(10, 20)), "shared edge");
        assert!(!a.overlaps(TimeSpan::new(11, 20)));
        assert!(a.overlaps(TimeSpan::point(0)) && a.contains(10) && !a.contains(11));
        assert_eq!(a.union(TimeSpan::new(-5, 3)), TimeSpan::new(-5, 10));
        assert_eq!(a.with(42), TimeSpan::new(0, 42));
        assert_eq!(
            (a.width(), TimeSpan::new(i64::MIN, i64::MAX).width()),
            (11, i64::MAX)
        );
        assert_eq!(
            a.intersect(TimeSpan::new(5, 50)),
            Some(TimeSpan::new(5, 10))
        );
        assert_eq!(a.intersect(TimeSpan::new(11, 50)), None);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"min":0,"max":10}"#);
    }

    #[test]
    fn every_unit_gives_its_own_values_and_other_types_none() {
        let s: ArrayRef = Arc::new(TimestampSecondArray::from(vec![1, -2]));
        let ms: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![3]));
        assert_eq!(timestamp_values(&s).map(|v| v.to_vec()), Some(vec![1, -2]));
        assert_eq!(timestamp_values(&ms).map(|v| v.to_vec()), Some(vec![3]));
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        assert!(timestamp_values(&ints).is_none());
    }
}
