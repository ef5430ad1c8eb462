//! The schema every read path returns, and columns a source lacks filled in.
//!
//! A read of a region returns its columns (projected, in region order; tags dictionary-encoded)
//! followed by the internal columns `__primary_key`, `__sequence` and `__op_type`. Memtables
//! and SST files written before an `ALTER` lack the columns added since: those are filled with
//! the column's default, else nulls.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, Int8Array, Int16Array,
    Int32Array, Int64Array, StringArray, TimestampMicrosecondArray, TimestampMillisecondArray,
    TimestampNanosecondArray, TimestampSecondArray, UInt8Array, UInt16Array, UInt32Array,
    UInt64Array, new_null_array,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use store_api::ColumnId;
use store_api::metadata::{ColumnMetadata, SemanticType, Value};
use store_api::metadata::{OP_TYPE_COLUMN, PRIMARY_KEY_COLUMN, RegionMetadata, SEQUENCE_COLUMN};

/// The type tag columns are read as: a dictionary with `u32` keys.
pub fn dictionary(value: DataType) -> DataType {
    DataType::Dictionary(Box::new(DataType::UInt32), Box::new(value))
}

/// The indices (into `metadata.column_metadatas()`) a projection of column ids reads, in the
/// projection's order; `None` reads every column. `Err` carries an unknown id.
pub fn projected_indices(
    metadata: &RegionMetadata,
    projection: Option<&[ColumnId]>,
) -> Result<Vec<usize>, ColumnId> {
    match projection {
        None => Ok((0..metadata.column_metadatas().len()).collect()),
        Some(ids) => ids
            .iter()
            .map(|id| metadata.column_index_by_id(*id).ok_or(*id))
            .collect(),
    }
}

/// The Arrow field a column is read as.
pub fn read_field(column: &ColumnMetadata) -> Field {
    let data_type = match column.semantic_type {
        SemanticType::Tag => dictionary(column.data_type.clone()),
        SemanticType::Field | SemanticType::Timestamp => column.data_type.clone(),
    };
    Field::new(column.name.clone(), data_type, column.nullable)
}

/// The three internal columns every read returns after the user columns.
pub fn internal_fields() -> [Field; 3] {
    [
        Field::new(PRIMARY_KEY_COLUMN, dictionary(DataType::Binary), false),
        Field::new(SEQUENCE_COLUMN, DataType::UInt64, false),
        Field::new(OP_TYPE_COLUMN, DataType::UInt8, false),
    ]
}

/// The schema of a read of the columns at `indices`.
pub fn read_schema(metadata: &RegionMetadata, indices: &[usize]) -> SchemaRef {
    let mut fields: Vec<Field> = indices
        .iter()
        .filter_map(|i| metadata.column_metadatas().get(*i))
        .map(read_field)
        .collect();
    fields.extend(internal_fields());
    Arc::new(Schema::new(fields))
}

/// `len` copies of the column's default (nulls if it has none), in the column's read type.
pub fn default_array(column: &ColumnMetadata, len: usize) -> Result<ArrayRef, ArrowError> {
    let target = read_field(column).data_type().clone();
    let value = match &column.default {
        None | Some(Value::Null) => return Ok(new_null_array(&target, len)),
        Some(v) => v,
    };
    let bad = || {
        ArrowError::InvalidArgumentError(format!(
            "default {value:?} of column {} does not fit its type {}",
            column.name, column.data_type
        ))
    };
    macro_rules! ints {
        ($array:ty, $native:ty) => {{
            let v: $native = match value {
                Value::Int(i) => <$native>::try_from(*i).map_err(|_| bad())?,
                Value::UInt(u) => <$native>::try_from(*u).map_err(|_| bad())?,
                _ => return Err(bad()),
            };
            Arc::new(<$array>::from(vec![v; len])) as ArrayRef
        }};
    }
    let plain: ArrayRef = match (&column.data_type, value) {
        (DataType::Boolean, Value::Bool(b)) => Arc::new(BooleanArray::from(vec![*b; len])),
        (DataType::Int8, _) => ints!(Int8Array, i8),
        (DataType::Int16, _) => ints!(Int16Array, i16),
        (DataType::Int32, _) => ints!(Int32Array, i32),
        (DataType::Int64, _) => ints!(Int64Array, i64),
        (DataType::UInt8, _) => ints!(UInt8Array, u8),
        (DataType::UInt16, _) => ints!(UInt16Array, u16),
        (DataType::UInt32, _) => ints!(UInt32Array, u32),
        (DataType::UInt64, _) => ints!(UInt64Array, u64),
        (DataType::Timestamp(TimeUnit::Second, _), _) => ints!(TimestampSecondArray, i64),
        (DataType::Timestamp(TimeUnit::Millisecond, _), _) => {
            ints!(TimestampMillisecondArray, i64)
        }
        (DataType::Timestamp(TimeUnit::Microsecond, _), _) => {
            ints!(TimestampMicrosecondArray, i64)
        }
        (DataType::Timestamp(TimeUnit::Nanosecond, _), _) => {
            ints!(TimestampNanosecondArray, i64)
        }
        // The metadata checks that a float default fits f32 before it is stored.
        #[expect(
            clippy::cast_possible_truncation,
            reason = "range checked by the metadata"
        )]
        (DataType::Float32, Value::Float(f)) => Arc::new(Float32Array::from(vec![*f as f32; len])),
        (DataType::Float64, Value::Float(f)) => Arc::new(Float64Array::from(vec![*f; len])),
        (DataType::Utf8, Value::String(s)) => Arc::new(StringArray::from_iter_values(
            std::iter::repeat_n(s.as_str(), len),
        )),
        (DataType::Binary, Value::Binary(b)) => Arc::new(BinaryArray::from_iter_values(
            std::iter::repeat_n(b.as_slice(), len),
        )),
        _ => return Err(bad()),
    };
    if target == column.data_type {
        return Ok(plain);
    }
    arrow_cast_dictionary(&plain, &target)
}

/// Wraps a plain array of `n` equal values into a `u32`-keyed dictionary of one value.
fn arrow_cast_dictionary(values: &ArrayRef, target: &DataType) -> Result<ArrayRef, ArrowError> {
    use arrow_array::{Array, DictionaryArray, types::UInt32Type};
    let len = values.len();
    let one = values.slice(0, len.min(1));
    let keys = UInt32Array::from(vec![0u32; len]);
    let dict = DictionaryArray::<UInt32Type>::try_new(keys, one)?;
    if dict.data_type() != target {
        return Err(ArrowError::InvalidArgumentError(format!(
            "cannot read a default as {target}"
        )));
    }
    Ok(Arc::new(dict))
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::UInt32Type;
    use store_api::RegionId;

    use super::*;

    fn metadata() -> RegionMetadata {
        let mut b = test_util::metadata::builder(
            RegionId::new(1, 1),
            1,
            &[("host", DataType::Utf8)],
            ("ts", TimeUnit::Millisecond),
            &[],
        );
        b.push_column(
            ColumnMetadata::new(3, "v", DataType::Float64, SemanticType::Field)
                .with_default(Value::Float(1.5)),
        );
        b.build().unwrap()
    }

    #[test]
    fn read_schema_puts_internal_columns_last() {
        let m = metadata();
        let idx = projected_indices(&m, Some(&[3, 1])).unwrap();
        let schema = read_schema(&m, &idx);
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "v",
                "host",
                PRIMARY_KEY_COLUMN,
                SEQUENCE_COLUMN,
                OP_TYPE_COLUMN
            ]
        );
        assert_eq!(schema.field(1).data_type(), &dictionary(DataType::Utf8));
        assert_eq!(projected_indices(&m, Some(&[9])), Err(9));
    }

    #[test]
    fn defaults_fill_in_the_read_type() {
        let m = metadata();
        let v = default_array(m.column_by_id(3).unwrap(), 3).unwrap();
        assert_eq!(
            v.as_primitive::<arrow_array::types::Float64Type>().values(),
            &[1.5; 3]
        );
        let host = default_array(m.column_by_id(1).unwrap(), 2).unwrap();
        assert_eq!(host.null_count(), 2);
        let mut tag = m.column_by_id(1).unwrap().clone();
        tag.default = Some(Value::String("a".into()));
        let a = default_array(&tag, 4).unwrap();
        let dict = a.as_dictionary::<UInt32Type>();
        assert_eq!(dict.len(), 4);
        assert_eq!(dict.values().as_string::<i32>().value(0), "a");
        tag.default = Some(Value::Int(3));
        assert!(default_array(&tag, 1).is_err());
        assert!(default_array(&tag, 0).is_err());
    }
}
