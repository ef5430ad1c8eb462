//! The time index as numbers: a timestamp column's values as `i64` in its own unit.

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_buffer::ScalarBuffer;
use arrow_schema::{DataType, TimeUnit};

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
    fn every_unit_gives_its_own_values_and_other_types_none() {
        let s: ArrayRef = Arc::new(TimestampSecondArray::from(vec![1, -2]));
        let ms: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![3]));
        assert_eq!(timestamp_values(&s).map(|v| v.to_vec()), Some(vec![1, -2]));
        assert_eq!(timestamp_values(&ms).map(|v| v.to_vec()), Some(vec![3]));
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        assert!(timestamp_values(&ints).is_none());
    }
}
