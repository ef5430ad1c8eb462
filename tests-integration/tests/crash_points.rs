//! The process dies at a crash point (a failpoint whose panic aborts the child process, so
//! nothing is cleaned up and no destructor runs): after a compaction wrote its outputs but
//! before its manifest edit, after the edit but before the inputs are deleted, and in the
//! middle of a manifest checkpoint (before the pointer moves, before old files are purged).
//! At each, a reopen must see exactly the rows written, reference only files that exist,
//! leave no unreferenced SST behind, and compact and reopen again cleanly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMillisecondType};
use arrow_array::{
    Array, ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::DataType;
use futures::TryStreamExt;
use log_store::{Durability, WalConfig};
use mito_engine::{MitoConfig, MitoEngine};
use store_api::RegionId;
use store_api::engine::RegionEngine;
use store_api::region_request::{
    CompactOptions, RegionCompactRequest, RegionCreateRequest, RegionDeleteRequest,
    RegionFlushRequest, RegionOpenRequest, RegionPutRequest, RegionRequest,
};
use store_api::scan::ScanRequest;

const REGION: RegionId = RegionId::new(9, 1);
const CHILD_ENV: &str = "MITO_CRASH_POINT";
const HOUR: i64 = 3_600_000;
/// Flushes (each one file) before the crash point is armed.
const ROUNDS: i64 = 6;

type State = BTreeMap<(String, i64), f64>;

fn config() -> MitoConfig {
    MitoConfig {
        num_workers: 1,
        // A checkpoint every 4 manifest versions, so the checkpoint points are reached.
        manifest_checkpoint_distance: 4,
        ..MitoConfig::default()
    }
}

async fn start(dir: &Path) -> MitoEngine {
    let wal = WalConfig {
        durability: Durability::Sync,
        ..WalConfig::default()
    };
    MitoEngine::open_local(dir, config(), wal).await.unwrap()
}

/// Round `r`'s puts: 3 hosts x 2 hours, overlapping earlier rounds' keys.
fn puts(r: i64) -> Vec<(String, i64, f64)> {
    let mut rows = Vec::new();
    for h in 0..3 {
        for hour in [r % 3, r % 3 + 1] {
            rows.push((format!("h{h}"), hour * HOUR + h, (r * 10 + h) as f64));
        }
    }
    rows
}

/// Round `r`'s deletes (odd rounds delete one row of the round before).
fn deletes(r: i64) -> Vec<(String, i64)> {
    if r % 2 == 1 {
        vec![("h1".to_string(), ((r - 1) % 3) * HOUR + 1)]
    } else {
        Vec::new()
    }
}

/// The rows after rounds `0..rounds`.
fn expected(rounds: i64) -> State {
    let mut state = State::new();
    for r in 0..rounds {
        for (h, t, v) in puts(r) {
            state.insert((h, t), v);
        }
        for k in deletes(r) {
            state.remove(&k);
        }
    }
    state
}

async fn run_rounds(engine: &MitoEngine) {
    for r in 0..ROUNDS {
        let rows = puts(r);
        let host: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|x| &x.0)));
        let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from_iter_values(
            rows.iter().map(|x| x.1),
        ));
        let cpu: ArrayRef = Arc::new(Float64Array::from_iter_values(rows.iter().map(|x| x.2)));
        let batch = RecordBatch::try_from_iter([("host", host), ("ts", ts), ("cpu", cpu)]).unwrap();
        engine
            .handle_request(REGION, RegionRequest::Put(RegionPutRequest { rows: batch }))
            .await
            .unwrap();
        let keys = deletes(r);
        if !keys.is_empty() {
            let host: ArrayRef = Arc::new(StringArray::from_iter_values(keys.iter().map(|x| &x.0)));
            let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from_iter_values(
                keys.iter().map(|x| x.1),
            ));
            let batch = RecordBatch::try_from_iter([("host", host), ("ts", ts)]).unwrap();
            engine
                .handle_request(
                    REGION,
                    RegionRequest::Delete(RegionDeleteRequest { keys: batch }),
                )
                .await
                .unwrap();
        }
        // Acknowledged: the parent expects this round's rows whatever happens next.
        println!("written {r}");
        engine
            .handle_request(REGION, RegionRequest::Flush(RegionFlushRequest))
            .await
            .unwrap();
    }
}

async fn compact(engine: &MitoEngine) {
    engine
        .handle_request(
            REGION,
            RegionRequest::Compact(RegionCompactRequest {
                options: CompactOptions::StrictWindow {
                    window_seconds: 86_400,
                },
            }),
        )
        .await
        .unwrap();
}

async fn scan(engine: &MitoEngine) -> State {
    let batches: Vec<RecordBatch> = engine
        .scan(REGION, ScanRequest::default())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut out = State::new();
    for b in &batches {
        let host = arrow_cast::cast(b.column_by_name("host").unwrap(), &DataType::Utf8).unwrap();
        let host = host.as_string::<i32>();
        let ts = b
            .column_by_name("ts")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        let cpu = b
            .column_by_name("cpu")
            .unwrap()
            .as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            assert!(!cpu.is_null(i));
            out.insert((host.value(i).to_string(), ts.value(i)), cpu.value(i));
        }
    }
    out
}

fn sst_files(dir: &Path) -> usize {
    let data = dir.join("data/regions/9/1/data");
    std::fs::read_dir(data)
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
            })
            .count()
        })
        .unwrap_or(0)
}

/// The child: builds the region, arms the crash point, and runs into it.
#[test]
fn crash_point_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, point) = spec.split_once('|').unwrap();
    // Die where the failpoint fires: no unwinding, no destructor, no cleanup.
    std::panic::set_hook(Box::new(|_| std::process::abort()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let engine = start(Path::new(dir)).await;
        let create = RegionCreateRequest {
            // No automatic compaction: the test decides when it runs.
            options: [(
                "compaction.twcs.trigger_file_num".to_string(),
                "64".to_string(),
            )]
            .into(),
            ..test_util::metadata::host_ts_cpu_create()
        };
        engine
            .handle_request(REGION, RegionRequest::Create(create))
            .await
            .unwrap();
        if point.starts_with("mito-manifest-checkpoint") {
            fail::cfg(point, "panic").unwrap();
            run_rounds(&engine).await;
        } else {
            run_rounds(&engine).await;
            fail::cfg(point, "panic").unwrap();
            compact(&engine).await;
        }
        println!("crash point {point} was not reached");
    });
}

fn crash_at(point: &str) {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(&exe)
        .args([
            "--exact",
            "crash_point_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{}|{point}", dir.path().display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the child did not die at {point}");
    // The harness may print "test crash_point_child ... " before the first line.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rounds = stdout
        .lines()
        .filter_map(|l| l.find("written ").map(|i| &l[i + 8..]))
        .map(|r| r.trim().parse::<i64>().unwrap() + 1)
        .max()
        .unwrap_or(0);
    assert!(
        rounds > 0,
        "the child wrote nothing before dying at {point}"
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let want = expected(rounds);
        let on_disk = sst_files(dir.path());
        let engine = start(dir.path()).await;
        engine
            .handle_request(REGION, RegionRequest::Open(RegionOpenRequest::default()))
            .await
            .unwrap();
        // The checkpoint points die during a flush's edit: its rows are replayed from the WAL.
        assert_eq!(scan(&engine).await, want, "after a crash at {point}");
        let stats = engine.region_statistics(REGION).unwrap();
        assert_eq!(
            stats.files,
            sst_files(dir.path()),
            "after a crash at {point}, open left unreferenced SSTs (or lost referenced ones)"
        );
        if point.starts_with("mito-compaction") {
            // The crash left orphans (outputs, or removed inputs) that open deleted.
            assert!(
                on_disk > stats.files,
                "{on_disk} files, {} live",
                stats.files
            );
        }
        engine
            .handle_request(REGION, RegionRequest::Flush(RegionFlushRequest))
            .await
            .unwrap();
        compact(&engine).await;
        assert_eq!(
            scan(&engine).await,
            want,
            "compacted after a crash at {point}"
        );
        engine.stop().await.unwrap();

        let engine = start(dir.path()).await;
        engine
            .handle_request(REGION, RegionRequest::Open(RegionOpenRequest::default()))
            .await
            .unwrap();
        assert_eq!(
            scan(&engine).await,
            want,
            "reopened after a crash at {point}"
        );
        let stats = engine.region_statistics(REGION).unwrap();
        assert_eq!(stats.files, 1);
        // Removed inputs are deleted in the background once unused; the count settles.
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
        while sst_files(dir.path()) != 1 {
            tick.tick().await;
        }
        engine.stop().await.unwrap();
    });
}

#[test]
fn crash_after_compaction_outputs_before_the_edit() {
    crash_at("mito-compaction-before-commit");
}

#[test]
fn crash_after_the_compaction_edit_before_inputs_are_deleted() {
    crash_at("mito-compaction-after-commit");
}

#[test]
fn crash_in_a_checkpoint_before_the_pointer_moves() {
    crash_at("mito-manifest-checkpoint-before-pointer");
}

#[test]
fn crash_in_a_checkpoint_before_old_files_are_purged() {
    crash_at("mito-manifest-checkpoint-before-purge");
}
