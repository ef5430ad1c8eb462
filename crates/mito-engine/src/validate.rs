//! Validation of write requests before anything reaches the WAL.
//!
//! A put must name only known columns, each with the exact type of the region's schema; every
//! tag may be missing only if nullable (it is then null), the time index must be present with
//! no nulls, and a missing field takes its default (or null). A delete carries the tags and the
//! time index only. The output is a batch in schema order that the memtable accepts without
//! further checks, so that nothing can fail between the WAL append and the memtable insert.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema};
use mito_read::OpType;
use store_api::metadata::{RegionMetadata, SemanticType};

/// Why a write was refused (the caller adds the region id).
pub type Reason = String;

/// Checks `batch` against `metadata` and returns it in schema order (puts: every column;
/// deletes: tags and time index).
pub fn normalize(
    metadata: &RegionMetadata,
    batch: &RecordBatch,
    op: OpType,
) -> Result<RecordBatch, Reason> {
    let what = match op {
        OpType::Put => "put",
        OpType::Delete => "delete",
    };
    if batch.num_rows() == 0 {
        return Err(format!("empty {what}: the batch has no rows"));
    }
    let schema = batch.schema();
    let mut seen = HashSet::new();
    for f in schema.fields() {
        if !seen.insert(f.name().as_str()) {
            return Err(format!("column '{}' appears twice", f.name()));
        }
        let Some(c) = metadata.column_by_name(f.name()) else {
            return Err(format!(
                "unknown column '{}': not in the region's schema (version {}); was it dropped, or is the writer's schema stale?",
                f.name(),
                metadata.schema_version()
            ));
        };
        if op == OpType::Delete && c.semantic_type == SemanticType::Field {
            return Err(format!(
                "a delete takes the tags and the time index only, not field '{}'",
                c.name
            ));
        }
    }
    let rows = batch.num_rows();
    let mut fields = Vec::with_capacity(metadata.column_metadatas().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.capacity());
    for c in metadata.column_metadatas() {
        if op == OpType::Delete && c.semantic_type == SemanticType::Field {
            continue;
        }
        let column = match batch.column_by_name(&c.name) {
            Some(col) => {
                if col.data_type() != &c.data_type {
                    return Err(format!(
                        "column '{}' has type {}, the region stores {}",
                        c.name,
                        col.data_type(),
                        c.data_type
                    ));
                }
                if !c.nullable && col.null_count() > 0 {
                    let what = if c.semantic_type == SemanticType::Timestamp {
                        "the time index"
                    } else {
                        "a non-nullable column"
                    };
                    return Err(format!(
                        "column '{}' is {what} but has {} null(s)",
                        c.name,
                        col.null_count()
                    ));
                }
                col.clone()
            }
            None => match c.semantic_type {
                SemanticType::Timestamp => {
                    return Err(format!("the time index column '{}' is missing", c.name));
                }
                SemanticType::Tag if !c.nullable => {
                    return Err(format!("the non-nullable tag '{}' is missing", c.name));
                }
                SemanticType::Tag | SemanticType::Field => {
                    if !c.nullable && c.default.is_none() {
                        return Err(format!(
                            "the non-nullable field '{}' without a default is missing",
                            c.name
                        ));
                    }
                    // Defaults come in the read type (tags as dictionaries): unpack to the
                    // write type.
                    mito_read::compat::default_array(c, rows)
                        .and_then(|a| arrow_cast::cast(&a, &c.data_type))
                        .map_err(|e| format!("default of column '{}': {e}", c.name))?
                }
            },
        };
        fields.push(Field::new(&c.name, c.data_type.clone(), c.nullable));
        columns.push(column);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| format!("cannot assemble the batch: {e}"))
}

/// The columns of `batch` the region still has (by name).
pub fn known_columns(
    metadata: &RegionMetadata,
    batch: &RecordBatch,
) -> Result<RecordBatch, Reason> {
    let keep: Vec<usize> = batch
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| metadata.column_by_name(f.name()).is_some())
        .map(|(i, _)| i)
        .collect();
    batch.project(&keep).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use arrow_array::{Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
    use arrow_schema::{DataType, TimeUnit};
    use store_api::RegionId;
    use store_api::metadata::{ColumnMetadata, Value};

    use super::*;

    fn metadata() -> RegionMetadata {
        let mut b = test_util::metadata::builder(
            RegionId::new(1, 1),
            0,
            &[("host", DataType::Utf8)],
            ("ts", TimeUnit::Millisecond),
            &[("cpu", DataType::Float64)],
        );
        b.push_column(
            ColumnMetadata::new(3, "n", DataType::Int64, SemanticType::Field)
                .with_nullable(false)
                .with_default(Value::Int(7)),
        )
        .primary_key(vec![0]);
        b.build().unwrap()
    }

    fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(cols).unwrap()
    }

    fn ts(v: Vec<Option<i64>>) -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from(v))
    }

    #[test]
    fn fills_defaults_and_orders_columns() {
        let m = metadata();
        let b = batch(vec![
            ("cpu", Arc::new(Float64Array::from(vec![f64::NAN]))),
            ("ts", ts(vec![Some(i64::MIN)])),
        ]);
        let out = normalize(&m, &b, OpType::Put).unwrap();
        assert_eq!(out.num_columns(), 4);
        assert!(out.column(0).is_null(0));
        let n = out.column(3).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(n.value(0), 7);
    }

    #[test]
    fn refuses_bad_input_with_reasons() {
        let m = metadata();
        let cases: Vec<(RecordBatch, OpType, &str)> = vec![
            (batch(vec![("ts", ts(vec![]))]), OpType::Put, "empty"),
            (
                batch(vec![("cpu", Arc::new(Float64Array::from(vec![1.0])))]),
                OpType::Put,
                "time index column 'ts' is missing",
            ),
            (batch(vec![("ts", ts(vec![None]))]), OpType::Put, "null"),
            (
                batch(vec![
                    ("ts", ts(vec![Some(1)])),
                    ("mem", Arc::new(Float64Array::from(vec![1.0]))),
                ]),
                OpType::Put,
                "unknown column 'mem'",
            ),
            (
                batch(vec![
                    ("ts", ts(vec![Some(1)])),
                    ("cpu", Arc::new(StringArray::from(vec!["x"]))),
                ]),
                OpType::Put,
                "type Utf8",
            ),
            (
                batch(vec![
                    ("ts", ts(vec![Some(1)])),
                    ("cpu", Arc::new(Float64Array::from(vec![1.0]))),
                ]),
                OpType::Delete,
                "not field 'cpu'",
            ),
        ];
        for (b, op, want) in cases {
            let err = normalize(&m, &b, op).unwrap_err();
            assert!(err.contains(want), "{err} lacks {want}");
        }
    }
}
