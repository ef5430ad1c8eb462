//! Helpers shared by the frontend's integration tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::panic,
    reason = "each test file uses a different subset; tests assert by panicking"
)]

use std::sync::Arc;

use frontend::Instance;
use frontend::ingest::{IngestOptions, IngestReport, Input, ingest};
use store_api::clock::SystemClock;

/// Ingests line-protocol `text` into `instance` with `options`; the report.
pub async fn ingest_text(instance: &Instance, text: &str, options: &IngestOptions) -> IngestReport {
    ingest(
        instance,
        Input::Bytes(bytes::Bytes::copy_from_slice(text.as_bytes())),
        options,
        Arc::new(SystemClock),
        None,
    )
    .await
    .unwrap()
}

/// The rows of `sql`'s result in the result's order, values joined by commas.
pub async fn rows(instance: &Instance, sql: &str) -> Vec<String> {
    let (_, batches) = frontend::query::query(instance, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            let values: Vec<String> = b
                .columns()
                .iter()
                .map(|c| datafusion::arrow::util::display::array_value_to_string(c, r).unwrap())
                .collect();
            out.push(values.join(","));
        }
    }
    out
}
