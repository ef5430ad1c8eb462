//! Queries cannot take the process down: deep expressions are balanced or refused, a query
//! over the memory limit spills or fails with an error, a query past its timeout stops.
//! Queries run on a runtime's worker threads (2 MiB stacks), as a server runs them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

use std::sync::Arc;
use std::time::Duration;

use common::ingest_text;
use datafusion::arrow::util::display::array_value_to_string;
use frontend::ingest::IngestOptions;
use frontend::{Instance, InstanceOptions};
use store_api::config::ReadableSize;

mod common;

/// An instance holding `m`: `rows` rows over 10 series, each with a 100-byte note.
async fn instance(dir: &std::path::Path, options: InstanceOptions, rows: usize) -> Arc<Instance> {
    let instance = Instance::open(dir, options).await.unwrap();
    let note = "n".repeat(100);
    let mut text = String::new();
    for i in 0..rows {
        text.push_str(&format!("m,s=s{} v={i}i,note=\"{note}{i}\" {i}\n", i % 10));
    }
    let report = ingest_text(&instance, &text, &IngestOptions::default()).await;
    assert_eq!(report.rows_written, rows as u64);
    Arc::new(instance)
}

/// Closes the instance once the test's queries (each holding a clone) are done.
async fn close(instance: Arc<Instance>) {
    Arc::into_inner(instance)
        .unwrap()
        .close(false)
        .await
        .unwrap();
}

/// Runs `sql` on a worker thread; the first column of the first row, or the error.
async fn first(instance: &Arc<Instance>, sql: String) -> Result<String, String> {
    let instance = instance.clone();
    tokio::spawn(async move {
        let (_, batches) = frontend::query::query(&instance, &sql)
            .await
            .map_err(|e| e.to_string())?;
        let b = batches.iter().find(|b| b.num_rows() > 0).unwrap();
        Ok(array_value_to_string(b.column(0), 0).unwrap())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_expressions_are_balanced_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let instance = instance(dir.path(), InstanceOptions::default(), 1000).await;

    // 10,000 terms: a stack overflow before; now an error naming the limit.
    let e = first(&instance, format!("SELECT {}", vec!["1"; 10_000].join("+")))
        .await
        .unwrap_err();
    assert!(e.contains("levels deep"), "{e}");
    // Just under the limit still runs.
    let sum = first(&instance, format!("SELECT {}", vec!["1"; 120].join("+"))).await;
    assert_eq!(sum.unwrap(), "120");

    // Generated filters: 4,000 ORs and 10,000 ANDs are answered.
    let or: Vec<String> = (0..4000).map(|i| format!("v = {}", i * 3)).collect();
    let sql = format!("SELECT count(*) FROM m WHERE {}", or.join(" OR "));
    assert_eq!(first(&instance, sql).await.unwrap(), "334");
    let and: Vec<String> = (0..10_000).map(|i| format!("v <> {}", i * 2)).collect();
    let sql = format!("SELECT count(*) FROM m WHERE {}", and.join(" AND "));
    assert_eq!(first(&instance, sql).await.unwrap(), "500");
    close(instance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_the_memory_limit_fails_with_an_error_and_the_next_one_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = InstanceOptions::default();
    options.query.memory_limit = ReadableSize::mib(12);
    let instance = instance(dir.path(), options, 150_000).await;
    // A join's build side cannot spill: over the limit the query fails, the process stays.
    let e = first(
        &instance,
        "SELECT count(*) FROM m a JOIN m b ON a.note = b.note".into(),
    )
    .await
    .unwrap_err();
    assert!(e.contains("Resources exhausted"), "{e}");
    // A sort can: it spills to temporary files and answers.
    let sorted = first(
        &instance,
        "SELECT max(r) FROM (SELECT row_number() OVER (ORDER BY note DESC) AS r FROM m)".into(),
    )
    .await;
    assert_eq!(sorted.unwrap(), "150000");
    let (_, batches) = frontend::query::query(
        &instance,
        "EXPLAIN ANALYZE SELECT max(r) FROM (SELECT row_number() OVER (ORDER BY note DESC) AS r FROM m)",
    )
    .await
    .unwrap();
    let plan: String = batches
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(|r| array_value_to_string(b.column(1), r).unwrap()))
        .collect();
    let spilled = plan
        .split("spill_count=")
        .skip(1)
        .any(|rest| !rest.starts_with('0'));
    assert!(spilled, "the sort did not spill: {plan}");
    assert_eq!(
        first(&instance, "SELECT count(*) FROM m".into())
            .await
            .unwrap(),
        "150000"
    );
    close(instance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_timeout_stops_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = InstanceOptions::default();
    options.query.timeout = Some(Duration::from_millis(200));
    let instance = instance(dir.path(), options, 20_000).await;
    // 8 * 10^12 rows: this cannot finish within the timeout on any machine.
    let e = first(&instance, "SELECT count(*) FROM m a, m b, m c".into())
        .await
        .unwrap_err();
    assert!(e.contains("timeout"), "{e}");
    assert_eq!(
        first(&instance, "SELECT count(*) FROM m".into())
            .await
            .unwrap(),
        "20000"
    );
    close(instance).await;
}
