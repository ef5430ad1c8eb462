//! Power cuts at every kind of moment of an engine's life: a `FaultFs` under the WAL, the
//! SSTs and the manifests drops (or tears) what was not synced and undoes directory entries
//! that were not synced, at a random call of a workload that writes, deletes, flushes,
//! checkpoints the manifest, alters the schema and compacts. After each cut the directory
//! opens, every acknowledged row is there with its value, no acknowledged delete is undone,
//! no row appears that was never written, and none appears twice.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use arrow_schema::DataType;
use common::{REGION, delete, put, scan_all, small_config, start};
use mito_engine::{MitoConfig, MitoEngine};
use mito_fs::fault::{Cut, CutReport, FaultFs};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store_api::engine::RegionEngine;
use store_api::metadata::{ColumnMetadata, SemanticType};
use store_api::region_request::{
    AlterKind, RegionAlterRequest, RegionCompactRequest, RegionFlushRequest, RegionRequest,
};

type Key = (String, i64);

/// What the workload was told.
#[derive(Default, Debug)]
struct Acks {
    /// Rows whose put was acknowledged, with their value.
    rows: BTreeMap<Key, f64>,
    /// Every row a put was attempted for, with its value.
    attempted: BTreeMap<Key, f64>,
    /// Keys whose delete was acknowledged.
    deleted: BTreeSet<Key>,
    /// Whether the added column's alter was acknowledged.
    altered: bool,
}

fn config() -> MitoConfig {
    MitoConfig {
        // A checkpoint every few manifest versions, so cuts fall inside checkpoints too.
        manifest_checkpoint_distance: 3,
        ..small_config()
    }
}

/// Writes 10 rounds of 300 rows (fresh keys each), deleting some, flushing every other
/// round, adding a column after round 4 and compacting after rounds 5 and 9. Stops at the
/// first failed request (the file system is gone).
async fn workload(engine: &MitoEngine, acks: &mut Acks) {
    if engine
        .handle_request(REGION, RegionRequest::Create(common::create_request()))
        .await
        .is_err()
    {
        return;
    }
    for round in 0..10i64 {
        let rows: Vec<(String, i64, f64)> = (0..300)
            .map(|i| {
                let host = format!("h{}", i % 7);
                let ts = round * 100_000 + i * 10;
                (host, ts, (round * 1000 + i) as f64)
            })
            .collect();
        for (h, ts, v) in &rows {
            acks.attempted.insert((h.clone(), *ts), *v);
        }
        let refs: Vec<(&str, i64, Option<f64>)> = rows
            .iter()
            .map(|(h, t, v)| (h.as_str(), *t, Some(*v)))
            .collect();
        if put(engine, REGION, &refs).await.is_err() {
            return;
        }
        for (h, ts, v) in &rows {
            acks.rows.insert((h.clone(), *ts), *v);
        }
        // Delete a few rows of the previous round.
        if round > 0 {
            let keys: Vec<(String, i64)> = (0..300)
                .step_by(37)
                .map(|i| (format!("h{}", i % 7), (round - 1) * 100_000 + i * 10))
                .collect();
            let refs: Vec<(&str, i64)> = keys.iter().map(|(h, t)| (h.as_str(), *t)).collect();
            if delete(engine, REGION, &refs).await.is_err() {
                return;
            }
            acks.deleted.extend(keys);
        }
        if round % 2 == 1
            && engine
                .handle_request(REGION, RegionRequest::Flush(RegionFlushRequest))
                .await
                .is_err()
        {
            return;
        }
        if round == 4 {
            let schema_version = engine.region_statistics(REGION).unwrap().schema_version;
            let alter = RegionAlterRequest {
                schema_version,
                kind: AlterKind::AddColumns {
                    columns: vec![ColumnMetadata::new(
                        3,
                        "mem",
                        DataType::Float64,
                        SemanticType::Field,
                    )],
                },
            };
            if engine
                .handle_request(REGION, RegionRequest::Alter(alter))
                .await
                .is_err()
            {
                return;
            }
            acks.altered = true;
        }
        if (round == 5 || round == 9)
            && engine
                .handle_request(
                    REGION,
                    RegionRequest::Compact(RegionCompactRequest::default()),
                )
                .await
                .is_err()
        {
            return;
        }
    }
}

/// Runs the workload over `dir` through `fs`, with the file system stopping at call
/// `cut_at` and the cut applied as `cut` (none: a clean stop). Returns what was
/// acknowledged, the calls the file system saw, and what the cut undid.
async fn run(dir: &Path, fs: &FaultFs, cut_at: Option<(u64, Cut)>) -> (Acks, u64, CutReport) {
    let guard = mito_fs::register(dir, Arc::new(fs.clone()));
    let engine = start(dir, config()).await;
    if let Some((n, _)) = cut_at {
        fs.cut_at(n);
    }
    let mut acks = Acks::default();
    workload(&engine, &mut acks).await;
    let calls = fs.stats().calls;
    let mut report = CutReport::default();
    if let Some((_, cut)) = cut_at {
        report = fs.power_cut(cut).await.unwrap();
        // The engine finds its file system gone: stopping fails, but returns.
        engine.stop().await.ok();
    } else {
        engine.stop().await.unwrap();
    }
    drop(engine);
    drop(guard);
    (acks, calls, report)
}

/// Opens `dir` on the plain file system and checks it against `acks`.
async fn check(dir: &Path, acks: &Acks, what: &str) {
    let engine = start(dir, config()).await;
    if acks.attempted.is_empty() {
        // The create may or may not have landed; either way the directory opened.
        engine.stop().await.unwrap();
        return;
    }
    let opened = engine
        .handle_request(
            REGION,
            RegionRequest::Open(store_api::region_request::RegionOpenRequest::default()),
        )
        .await;
    if let Err(e) = &opened {
        panic!("{what}: the region does not open after the cut: {e}");
    }
    let rows = scan_all(&engine, REGION).await;
    let mut seen = BTreeSet::new();
    for (host, ts, v) in &rows {
        let key = (host.clone(), *ts);
        assert!(seen.insert(key.clone()), "{what}: {key:?} appears twice");
        let Some(written) = acks.attempted.get(&key) else {
            panic!("{what}: {key:?} was never written");
        };
        assert_eq!(Some(*written), *v, "{what}: {key:?} has the wrong value");
        assert!(
            !acks.deleted.contains(&key),
            "{what}: deleted {key:?} is back"
        );
    }
    for key in acks.rows.keys() {
        if !acks.deleted.contains(key) {
            assert!(seen.contains(key), "{what}: acknowledged {key:?} is lost");
        }
    }
    let schema = engine.region_statistics(REGION).unwrap().schema_version;
    if acks.altered {
        assert!(schema > 0, "{what}: the acknowledged alter was undone");
    }
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_opens_with_every_acknowledged_row_after_a_cut_anywhere() {
    // A run without a cut: the workload's number of calls, and the oracle on a clean stop.
    let dir = tempfile::tempdir().unwrap();
    let (acks, total, _) = run(dir.path(), &FaultFs::new(0), None).await;
    assert_eq!(acks.rows.len(), 3000);
    check(dir.path(), &acks, "no cut").await;

    let seed = std::env::var("MITO_POWER_CUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    let cuts: u64 = std::env::var("MITO_POWER_CUTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut lost_bytes = 0;
    let mut undone = 0;
    for i in 0..cuts {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::new(rng.random());
        let at = rng.random_range(1..=total);
        let mode = if i % 2 == 0 {
            Cut::Tear
        } else {
            Cut::DropUnsynced
        };
        let (acks, _, report) = run(dir.path(), &fs, Some((at, mode))).await;
        lost_bytes += report.bytes_lost;
        undone += report.entries_undone;
        let what = format!("cut {i} at call {at} of {total} ({mode:?}, seed {seed})");
        check(dir.path(), &acks, &what).await;
    }
    eprintln!(
        "{cuts} power cuts over {total} calls (seed {seed}): {lost_bytes} unsynced bytes lost, \
         {undone} directory entries undone"
    );
}
