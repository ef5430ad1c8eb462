//! Flush: memtables to SSTs and one manifest edit; a failed commit leaves no file behind.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampSecondArray};
use arrow_schema::TimeUnit;
use futures::TryStreamExt;
use mito_engine::flush::{FlushJob, flush};
use mito_manifest::{ManifestOptions, RegionManifestManager};
use mito_memtable::{Memtable, MemtableOptions, MemtableRead};
use mito_read::OpType;
use mito_sst::{SstReadRequest, SstReader, WriteOptions};
use opendal::Operator;
use store_api::RegionId;
use store_api::error::ErrorExt;
use store_api::metadata::RegionMetadataRef;

const DIR: &str = "data/1/1_0000000001/";

fn metadata() -> RegionMetadataRef {
    test_util::metadata::host_ts_v(RegionId::new(1, 1), TimeUnit::Second)
}

/// Rows over 3 hourly windows, with a delete.
fn memtable(meta: &RegionMetadataRef) -> Arc<Memtable> {
    let m = Memtable::new(
        meta.clone(),
        MemtableOptions {
            time_window: Duration::from_secs(3600),
            ..MemtableOptions::default()
        },
    )
    .unwrap();
    let hosts: Vec<&str> = (0..30).map(|i| ["a", "b", "c"][i % 3]).collect();
    let ts: Vec<i64> = (0..30).map(|i: i64| i * 400).collect();
    let v: Vec<f64> = (0..30u8).map(f64::from).collect();
    let batch = RecordBatch::try_from_iter(vec![
        ("host", Arc::new(StringArray::from(hosts)) as ArrayRef),
        ("ts", Arc::new(TimestampSecondArray::from(ts)) as ArrayRef),
        ("v", Arc::new(Float64Array::from(v)) as ArrayRef),
    ])
    .unwrap();
    m.write(&batch, 1, OpType::Put).unwrap();
    let del = RecordBatch::try_from_iter(vec![
        ("host", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
        (
            "ts",
            Arc::new(TimestampSecondArray::from(vec![0])) as ArrayRef,
        ),
    ])
    .unwrap();
    m.write(&del, 31, OpType::Delete).unwrap();
    m.freeze();
    Arc::new(m)
}

async fn setup(op: &Operator, meta: &RegionMetadataRef) -> RegionManifestManager {
    RegionManifestManager::create(
        op.clone(),
        DIR,
        meta.as_ref().clone(),
        ManifestOptions::default(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn flush_writes_sparse_windows_to_one_file_and_commits_once() {
    let op = mito_sst::store::memory_operator();
    let meta = metadata();
    let mt = memtable(&meta);
    let mut manifest = setup(&op, &meta).await;
    let out = flush(
        FlushJob {
            op: op.clone(),
            region_dir: DIR,
            metadata: meta.clone(),
            memtables: std::slice::from_ref(&mt),
            flushed_entry_id: 7,
            flushed_sequence: 31,
            write_options: WriteOptions::default(),
            exclude: None,
            remove: Vec::new(),
        },
        &mut manifest,
    )
    .await
    .unwrap();
    // 30 rows 400 s apart span 12,000 s: windows starting at 0, 3600, 7200, 10800, each far
    // sparser than SPARSE_WINDOW_ROWS, so they share one file (dense windows get a file
    // each: `flush.rs`'s unit tests).
    assert_eq!(out.files.len(), 1);
    assert_eq!(
        (out.files[0].time_range.min, out.files[0].time_range.max),
        (0, 29 * 400)
    );
    assert_eq!(out.manifest_version, 2);
    let state = manifest.manifest();
    assert_eq!(state.files.len(), 1);
    assert_eq!((state.flushed_entry_id, state.flushed_sequence), (7, 31));
    // The files hold exactly what the memtable holds, tombstone included.
    let mut rows = 0;
    for f in &out.files {
        let r = SstReader::open(op.clone(), DIR, f.clone(), meta.clone())
            .await
            .unwrap();
        let batches: Vec<RecordBatch> = r
            .read(&SstReadRequest::default())
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        rows += batches.iter().map(RecordBatch::num_rows).sum::<usize>();
    }
    let want: usize = mt
        .read(&MemtableRead {
            keep_deletes: true,
            ..MemtableRead::default()
        })
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(rows, want);
    assert_eq!(rows, 30, "the delete replaced the put at (a, 0)");
}

#[tokio::test]
async fn a_failed_commit_deletes_the_files() {
    let op = mito_sst::store::memory_operator();
    let meta = metadata();
    let mt = memtable(&meta);
    let mut manifest = setup(&op, &meta).await;
    // Another writer took version 2: the edit cannot commit.
    op.write(&format!("{DIR}manifest/{:020}.json", 2), b"x".to_vec())
        .await
        .unwrap();
    let err = flush(
        FlushJob {
            op: op.clone(),
            region_dir: DIR,
            metadata: meta.clone(),
            memtables: std::slice::from_ref(&mt),
            flushed_entry_id: 7,
            flushed_sequence: 31,
            write_options: WriteOptions::default(),
            exclude: None,
            remove: Vec::new(),
        },
        &mut manifest,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("region"), "{err}");
    let _ = err.kind();
    let left = op.list(&format!("{DIR}data/")).await.unwrap();
    assert!(
        left.iter().all(|e| !e.name().ends_with(".parquet")),
        "{left:?}"
    );
    assert!(manifest.manifest().files.is_empty());
}
