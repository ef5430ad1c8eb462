//! A flush whose manifest commit fails (failpoint `mito-flush-commit`): the error reaches the
//! caller, the rows stay readable and in the WAL, the SSTs it wrote are deleted, and the next
//! flush succeeds; a restart finds every row.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use futures::TryStreamExt;
use log_store::WalConfig;
use mito_engine::{MitoConfig, MitoEngine};
use store_api::RegionId;
use store_api::engine::RegionEngine;
use store_api::error::ErrorKind;
use store_api::region_request::{
    RegionFlushRequest, RegionOpenRequest, RegionPutRequest, RegionRequest,
};
use store_api::scan::ScanRequest;

const REGION: RegionId = RegionId::new(3, 1);

fn create() -> RegionRequest {
    RegionRequest::Create(test_util::metadata::host_ts_cpu_create())
}

fn rows(n: i64) -> RecordBatch {
    let host: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..n).map(|i| format!("h{}", i % 7)),
    ));
    let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from_iter_values(0..n));
    let cpu: ArrayRef = Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64)));
    RecordBatch::try_from_iter([("host", host), ("ts", ts), ("cpu", cpu)]).unwrap()
}

async fn count(engine: &MitoEngine) -> usize {
    let batches: Vec<RecordBatch> = engine
        .scan(REGION, ScanRequest::default())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn parquet_files(dir: &std::path::Path) -> usize {
    let data = dir.join("data/regions/3/1/data");
    std::fs::read_dir(data).map_or(0, |rd| {
        rd.flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
            .count()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_flush_commit_loses_nothing_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let start = || MitoEngine::open_local(dir.path(), MitoConfig::default(), WalConfig::default());
    let engine = start().await.unwrap();
    engine.handle_request(REGION, create()).await.unwrap();
    let put = |n| RegionRequest::Put(RegionPutRequest { rows: rows(n) });
    engine.handle_request(REGION, put(5000)).await.unwrap();

    fail::cfg("mito-flush-commit", "return").unwrap();
    let err = engine
        .handle_request(REGION, RegionRequest::Flush(RegionFlushRequest))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StorageFailure, "{err}");
    assert!(err.to_string().contains("mito-flush-commit"), "{err}");
    assert_eq!(count(&engine).await, 5000);
    assert_eq!(parquet_files(dir.path()), 0, "the failed flush left files");
    assert_eq!(engine.region_statistics(REGION).unwrap().files, 0);

    // Writes go on; the next flush writes everything.
    fail::remove("mito-flush-commit");
    engine.handle_request(REGION, put(6000)).await.unwrap();
    engine
        .handle_request(REGION, RegionRequest::Flush(RegionFlushRequest))
        .await
        .unwrap();
    assert_eq!(count(&engine).await, 6000);
    assert!(parquet_files(dir.path()) >= 1);

    // And after the failure had been reported, a crash-free restart still has every row.
    engine.stop().await.unwrap();
    let engine = start().await.unwrap();
    engine
        .handle_request(REGION, RegionRequest::Open(RegionOpenRequest::default()))
        .await
        .unwrap();
    assert_eq!(count(&engine).await, 6000);
    engine.stop().await.unwrap();
}
