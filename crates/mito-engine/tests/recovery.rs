//! What open does with a damaged data directory: a lost newest manifest delta, a missing SST,
//! a hole in the WAL. It refuses (naming what is missing) wherever acknowledged rows may be
//! gone, and never deletes the only copy of them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use store_api::engine::RegionEngine;
use store_api::error::ErrorKind;
use store_api::region_request::{RegionFlushRequest, RegionOpenRequest, RegionRequest};

fn region_path(dir: &Path) -> PathBuf {
    dir.join("data/regions/1/1")
}

fn files_in(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.to_string_lossy().ends_with(ext));
    v.sort();
    v
}

fn ssts(dir: &Path) -> Vec<PathBuf> {
    files_in(&region_path(dir).join("data"), ".parquet")
}

fn deltas(dir: &Path) -> Vec<PathBuf> {
    files_in(&region_path(dir).join("manifest"), ".json")
}

async fn flush(engine: &mito_engine::MitoEngine) {
    engine
        .handle_request(REGION, RegionRequest::Flush(RegionFlushRequest))
        .await
        .unwrap();
}

async fn try_open(dir: &Path) -> Result<mito_engine::MitoEngine, store_api::error::BoxedError> {
    let engine = start(dir, small_config()).await;
    match engine
        .handle_request(REGION, RegionRequest::Open(RegionOpenRequest::default()))
        .await
    {
        Ok(_) => Ok(engine),
        Err(e) => {
            engine.stop().await.unwrap();
            Err(e)
        }
    }
}

/// Creates the region and writes two rows that only the WAL holds; returns the engine.
async fn written_not_flushed(dir: &Path) -> mito_engine::MitoEngine {
    let engine = start(dir, small_config()).await;
    create(&engine, REGION).await;
    put(&engine, REGION, &[("a", 1, Some(1.0)), ("b", 2, Some(2.0))])
        .await
        .unwrap();
    engine
}

/// Opens the engine over `dir` with `wal`, which must fail as `Corrupted` naming `needle`.
async fn open_fails_corrupted(dir: &Path, wal: log_store::WalConfig, needle: &str) {
    let err = mito_engine::MitoEngine::open_local(dir, small_config(), wal)
        .await
        .unwrap_err();
    assert_eq!(
        store_api::error::ErrorExt::kind(&err),
        ErrorKind::Corrupted,
        "{err}"
    );
    assert!(err.to_string().contains(needle), "{err}");
}

/// Rows written, then flushed: the flush's delta is the newest manifest file.
async fn written_and_flushed(dir: &Path) -> Vec<Row> {
    let engine = start(dir, small_config()).await;
    create(&engine, REGION).await;
    put(&engine, REGION, &[("a", 1, Some(1.0)), ("b", 2, Some(2.0))])
        .await
        .unwrap();
    flush(&engine).await;
    put(&engine, REGION, &[("c", 3, Some(3.0))]).await.unwrap();
    flush(&engine).await;
    let rows = scan_all(&engine, REGION).await;
    engine.stop().await.unwrap();
    rows
}

/// The newest delta (a flush edit) deleted after its WAL entries were purged: the SST it
/// named is the only copy of those rows. Open refuses naming it and deletes nothing; with the
/// delta back, every row is there.
#[tokio::test]
async fn a_lost_newest_delta_is_detected_and_its_file_kept() {
    let dir = tempfile::tempdir().unwrap();
    let rows = written_and_flushed(dir.path()).await;
    assert_eq!(rows.len(), 3);
    let newest = deltas(dir.path()).pop().unwrap();
    let saved = std::fs::read(&newest).unwrap();
    std::fs::remove_file(&newest).unwrap();
    let before = ssts(dir.path());

    for _ in 0..2 {
        let err = match try_open(dir.path()).await {
            Ok(_) => panic!("opened with a lost delta"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
        let text = err.to_string();
        assert!(text.contains("newest delta is missing"), "{text}");
        assert!(text.contains(".parquet"), "{text}");
        assert_eq!(ssts(dir.path()), before, "no file deleted");
    }

    std::fs::write(&newest, saved).unwrap();
    let engine = try_open(dir.path()).await.unwrap();
    assert!(same_rows(&scan_all(&engine, REGION).await, &rows));
}

/// A file the manifest names is gone: the open fails naming it.
#[tokio::test]
async fn a_missing_sst_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    written_and_flushed(dir.path()).await;
    let gone = ssts(dir.path()).pop().unwrap();
    std::fs::remove_file(&gone).unwrap();
    let err = match try_open(dir.path()).await {
        Ok(_) => panic!("opened with a missing SST"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    let name = gone.file_name().unwrap().to_string_lossy().to_string();
    assert!(err.to_string().contains(&name), "{err}");
}

/// An orphan whose rows are all in the WAL (a flush killed before its edit) is deleted at
/// open, and the rows come back from the WAL.
#[tokio::test]
async fn an_orphan_covered_by_the_wal_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let rows = written_and_flushed(dir.path()).await;
    // Write more rows (in the WAL only), and plant a copy of an SST under a new id: its rows
    // are old, so it holds nothing the region lacks.
    let engine = try_open(dir.path()).await.unwrap();
    put(&engine, REGION, &[("d", 4, Some(4.0))]).await.unwrap();
    // Stop without flushing: the row stays in the WAL.
    engine.stop().await.unwrap();
    let sst = ssts(dir.path()).pop().unwrap();
    let planted = sst.with_file_name("01234567-89ab-cdef-0123-456789abcdef.parquet");
    std::fs::copy(&sst, &planted).unwrap();
    let engine = try_open(dir.path()).await.unwrap();
    assert!(!planted.exists(), "redundant orphan deleted");
    let mut want = rows.clone();
    want.push(("d".to_string(), 4, Some(4.0)));
    assert!(same_rows(&scan_all(&engine, REGION).await, &want));
}

/// Entries missing between the flushed one and later ones (a WAL segment deleted): the open
/// fails naming the missing entries.
#[tokio::test]
async fn a_hole_in_the_wal_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config();
    config.num_workers = 1;
    let wal = log_store::WalConfig {
        segment_size: store_api::config::ReadableSize::mib(1),
        ..log_store::WalConfig::default()
    };
    let engine = mito_engine::MitoEngine::open_local(dir.path(), config.clone(), wal.clone())
        .await
        .unwrap();
    create(&engine, REGION).await;
    // ~300 KiB per put: a few segments.
    for i in 0..12i64 {
        let rows: Vec<(String, i64, Option<f64>)> = (0..10_000)
            .map(|j| (format!("host-{j:05}"), i * 100_000 + j, Some(j as f64)))
            .collect();
        let refs: Vec<(&str, i64, Option<f64>)> =
            rows.iter().map(|(h, t, v)| (h.as_str(), *t, *v)).collect();
        put(&engine, REGION, &refs).await.unwrap();
    }
    engine.stop().await.unwrap();
    let segments = files_in(&dir.path().join("wal"), ".wal");
    assert!(segments.len() >= 3, "{segments:?}");
    std::fs::remove_file(&segments[1]).unwrap();
    // The WAL's segment list names the missing file before any region opens.
    let name = segments[1].file_name().unwrap().to_str().unwrap();
    open_fails_corrupted(dir.path(), wal.clone(), name).await;
    // Without the list (a directory written before it existed), the region's open still
    // finds the hole in its entry ids.
    std::fs::remove_file(dir.path().join("wal/SEGMENTS")).unwrap();
    let engine = mito_engine::MitoEngine::open_local(dir.path(), config, wal)
        .await
        .unwrap();
    let err = engine
        .handle_request(REGION, RegionRequest::Open(RegionOpenRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(err.to_string().contains("is missing entries"), "{err}");
}

/// The newest WAL segment deleted, so no later entry shows a hole: the engine's open fails
/// naming the file (the log store's segment list), before any region is opened, and the
/// rows it held are not silently dropped.
#[tokio::test]
async fn a_deleted_newest_wal_segment_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    written_not_flushed(dir.path()).await.stop().await.unwrap();
    let segments = files_in(&dir.path().join("wal"), ".wal");
    let newest = segments.last().unwrap();
    std::fs::remove_file(newest).unwrap();
    let name = newest.file_name().unwrap().to_str().unwrap();
    open_fails_corrupted(dir.path(), log_store::WalConfig::default(), name).await;
}

/// The whole WAL directory gone, or emptied, while regions exist: refused, naming it; once
/// the user creates it with an empty lock file (accepting the loss), the region opens as of
/// its last flush.
#[tokio::test]
async fn a_missing_or_emptied_wal_directory_with_regions_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let flushed = written_and_flushed(dir.path()).await;
    let wal_dir = dir.path().join("wal");
    let emptied = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        let to = emptied.path().join(p.file_name().unwrap());
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&p)
            .arg(&to)
            .status()
            .unwrap();
    }
    for f in std::fs::read_dir(emptied.path().join("wal")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let err = mito_engine::MitoEngine::open_local(
        emptied.path(),
        small_config(),
        log_store::WalConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("emptied"), "{err}");
    std::fs::remove_dir_all(&wal_dir).unwrap();
    for read_only in [false, true] {
        let wal = log_store::WalConfig {
            read_only,
            ..log_store::WalConfig::default()
        };
        open_fails_corrupted(dir.path(), wal, "WAL directory").await;
        assert!(!wal_dir.exists(), "the failed open changed nothing");
    }
    std::fs::create_dir(&wal_dir).unwrap();
    std::fs::write(wal_dir.join("LOCK"), b"").unwrap();
    let engine = try_open(dir.path()).await.unwrap();
    assert!(same_rows(&scan_all(&engine, REGION).await, &flushed));
}

/// Staged writes left by a killed flush or compaction are removed at open.
#[tokio::test]
async fn staging_leftovers_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let rows = written_and_flushed(dir.path()).await;
    let staging = dir.path().join("data/.staging");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("left-by-a-kill.tmp"), vec![7u8; 4096]).unwrap();
    let engine = try_open(dir.path()).await.unwrap();
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
    assert!(same_rows(&scan_all(&engine, REGION).await, &rows));
}

/// Rows only in the WAL (the run that wrote them stopped before any flush) are flushed by the
/// next writable open, so a log left by killed runs is not replayed, and does not grow, at
/// every open after it.
#[tokio::test]
async fn a_writable_open_flushes_what_the_wal_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = written_not_flushed(dir.path()).await;
    let rows = scan_all(&engine, REGION).await;
    engine.stop().await.unwrap();
    assert!(ssts(dir.path()).is_empty());

    let engine = try_open(dir.path()).await.unwrap();
    assert_eq!(scan_all(&engine, REGION).await, rows);
    // The flush runs in the background; stopping waits for running flushes.
    engine.stop().await.unwrap();
    assert_eq!(ssts(dir.path()).len(), 1);
    // The next open replays nothing, and flushes nothing new.
    let engine = try_open(dir.path()).await.unwrap();
    assert_eq!(scan_all(&engine, REGION).await, rows);
    engine.stop().await.unwrap();
    assert_eq!(ssts(dir.path()).len(), 1);
}
