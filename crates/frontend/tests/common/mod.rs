//! Helpers shared by the frontend's integration tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
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
