//! Printing results: aligned tables, CSV, JSON; and the admin listings as record batches.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use frontend::Instance;
use store_api::metadata::type_name;

use crate::BoxError;
pub use frontend::query::output::{Printer, print};

/// The tables with their exact row counts, files, bytes and schema versions.
pub async fn tables(instance: &Instance) -> Result<(SchemaRef, Vec<RecordBatch>), BoxError> {
    let mut names = Vec::new();
    let mut rows = Vec::new();
    let mut files = Vec::new();
    let mut sst_bytes = Vec::new();
    let mut memtable_bytes = Vec::new();
    let mut versions = Vec::new();
    // One session for every count (it registers every table once).
    let ctx = frontend::query::session(instance).await?;
    for s in instance.summaries().await {
        let counted = ctx
            .sql(&format!(
                "SELECT count(*) FROM \"{}\"",
                s.entry.name.replace('"', "\"\"")
            ))
            .await?
            .collect()
            .await?;
        let count = counted
            .first()
            .and_then(|b| b.columns().first().cloned())
            .and_then(|c| {
                c.as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0);
        names.push(s.entry.name.clone());
        rows.push(u64::try_from(count).unwrap_or(0));
        files.push(s.stats.files as u64);
        sst_bytes.push(s.stats.sst_bytes);
        memtable_bytes.push(s.stats.memtable_bytes);
        versions.push(s.stats.schema_version);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("table", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("files", DataType::UInt64, false),
        Field::new("sst_bytes", DataType::UInt64, false),
        Field::new("memtable_bytes", DataType::UInt64, false),
        Field::new("schema_version", DataType::UInt64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(names)),
        Arc::new(UInt64Array::from(rows)),
        Arc::new(UInt64Array::from(files)),
        Arc::new(UInt64Array::from(sst_bytes)),
        Arc::new(UInt64Array::from(memtable_bytes)),
        Arc::new(UInt64Array::from(versions)),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok((schema, vec![batch]))
}

/// A table's columns: name, type, role, nullability.
pub async fn describe(
    instance: &Instance,
    table: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>), BoxError> {
    let metadata = instance.metadata(table).await?;
    let columns = metadata.column_metadatas();
    let schema = Arc::new(Schema::new(vec![
        Field::new("column", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("nullable", DataType::Boolean, false),
    ]));
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            columns.iter().map(|c| c.name.clone()),
        )),
        Arc::new(StringArray::from_iter_values(
            columns.iter().map(|c| type_name(&c.data_type)),
        )),
        Arc::new(StringArray::from_iter_values(
            columns.iter().map(|c| c.semantic_type.to_string()),
        )),
        Arc::new(BooleanArray::from_iter(
            columns.iter().map(|c| Some(c.nullable)),
        )),
    ];
    Ok((schema.clone(), vec![RecordBatch::try_new(schema, arrays)?]))
}

/// `1.23 GB`-style byte counts.
pub fn bytes(n: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < units.len() {
        v /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{v:.2} {}", units.get(unit).copied().unwrap_or("B")),
    }
}
