//! Model-based stress test: tasks put, delete, scan, flush and reopen at random (seeded); every
//! scan is checked against an in-memory oracle at its snapshot, and the final state (also
//! after a restart) equals the oracle.
//!
//! Each task owns its hosts, so its oracle is exact at any moment between its own requests:
//! a scan of its hosts must equal it, and a snapshot taken right after one of its writes
//! (the committed sequence then) must show exactly its state of that moment later on, or be
//! refused as older than a flush. Reopens (region close + open, or a whole engine restart)
//! take a write lock so that no request is in flight across them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use datafusion_expr::{col, lit};
use mito_engine::MitoEngine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store_api::config::ReadableSize;
use store_api::engine::RegionEngine;
use store_api::error::ErrorKind;
use store_api::region_request::{
    CompactOptions, RegionCloseRequest, RegionCompactRequest, RegionFlushRequest,
    RegionOpenRequest, RegionRequest,
};
use store_api::scan::{ScanOrder, ScanRequest};
use tokio::sync::RwLock;

type State = BTreeMap<(String, i64), Option<u64>>;

const TASKS: usize = 3;
const OPS: usize = 250;

fn config() -> mito_engine::MitoConfig {
    mito_engine::MitoConfig {
        num_workers: 2,
        // Small buffers: flushes happen on their own, often.
        region_write_buffer_size: ReadableSize::kib(48),
        global_write_buffer_size: ReadableSize::mib(1),
        ..mito_engine::MitoConfig::default()
    }
}

fn rows_of_state(state: &State) -> Vec<Row> {
    state
        .iter()
        .map(|((h, t), v)| (h.clone(), *t, v.map(f64::from_bits)))
        .collect()
}

fn own(rows: Vec<Row>, task: usize) -> Vec<Row> {
    let prefix = format!("t{task}-");
    rows.into_iter()
        .filter(|r| r.0.starts_with(&prefix))
        .collect()
}

async fn task(
    id: usize,
    seed: u64,
    engine: Arc<RwLock<MitoEngine>>,
    dir: std::path::PathBuf,
) -> (State, usize, usize) {
    let (mut scans, mut snapshot_scans) = (0, 0);
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64) << 32);
    let mut state = State::new();
    let mut snapshots: Vec<(u64, State)> = Vec::new();
    let hosts: Vec<String> = (0..4).map(|h| format!("t{id}-h{h}")).collect();
    for op in 0..OPS {
        let dice = rng.random_range(0..100);
        if dice < 3 {
            // Reopen: region close + open, or a whole engine restart.
            let mut guard = engine.write().await;
            if rng.random_bool(0.5) {
                let flush = rng.random_bool(0.5);
                guard
                    .handle_request(REGION, RegionRequest::Close(RegionCloseRequest { flush }))
                    .await
                    .unwrap();
                guard
                    .handle_request(REGION, RegionRequest::Open(RegionOpenRequest::default()))
                    .await
                    .unwrap();
            } else {
                guard.stop().await.unwrap();
                *guard = start(&dir, config()).await;
                open(&guard, REGION).await;
            }
            continue;
        }
        let guard = engine.read().await;
        let e = &*guard;
        match dice {
            3..=55 => {
                let n = rng.random_range(1..40);
                let mut rows = Vec::new();
                for _ in 0..n {
                    let h = &hosts[rng.random_range(0..hosts.len())];
                    let t = rng.random_range(0..60) * 1000;
                    let v = match rng.random_range(0..20) {
                        0 => None,
                        1 => Some(f64::NAN),
                        _ => Some(f64::from(rng.random_range(0..1_000_000)) / 8.0),
                    };
                    rows.push((h.as_str(), t, v));
                }
                put(e, REGION, &rows).await.unwrap();
                for (h, t, v) in rows {
                    state.insert((h.to_string(), t), Some(v.map_or(u64::MAX, f64::to_bits)));
                }
            }
            56..=70 => {
                let n = rng.random_range(1..10);
                let keys: Vec<(&str, i64)> = (0..n)
                    .map(|_| {
                        (
                            hosts[rng.random_range(0..hosts.len())].as_str(),
                            rng.random_range(0..60) * 1000,
                        )
                    })
                    .collect();
                delete(e, REGION, &keys).await.unwrap();
                for (h, t) in keys {
                    state.remove(&(h.to_string(), t));
                }
            }
            71..=85 => {
                let filters = if rng.random_bool(0.5) {
                    vec![
                        col("host").in_list(hosts.iter().map(|h| lit(h.as_str())).collect(), false),
                    ]
                } else {
                    Vec::new()
                };
                let order = if rng.random_bool(0.3) {
                    ScanOrder::Unordered
                } else {
                    ScanOrder::SeriesTimeAsc
                };
                let mut got = own(
                    scan(
                        e,
                        REGION,
                        ScanRequest {
                            filters,
                            order,
                            ..Default::default()
                        },
                    )
                    .await,
                    id,
                );
                if order == ScanOrder::Unordered {
                    got.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
                }
                let want = expected(&state);
                assert!(
                    same_rows(&got, &want),
                    "seed {seed} task {id} op {op}: scan differs\n got {got:?}\nwant {want:?}"
                );
                scans += 1;
            }
            86..=88 => {
                e.handle_request(REGION, RegionRequest::Flush(RegionFlushRequest))
                    .await
                    .unwrap();
            }
            89..=90 => {
                // Regular (TWCS) or strict-window compaction; runs after flushes on its own too.
                let options = if rng.random_bool(0.5) {
                    CompactOptions::Regular
                } else {
                    CompactOptions::StrictWindow { window_seconds: 10 }
                };
                e.handle_request(
                    REGION,
                    RegionRequest::Compact(RegionCompactRequest { options }),
                )
                .await
                .unwrap();
            }
            91..=95 => {
                let committed = e.region_statistics(REGION).unwrap().committed_sequence;
                snapshots.push((committed, state.clone()));
            }
            _ => {
                if let Some((seq, old)) = snapshots.pop() {
                    match e
                        .scan(
                            REGION,
                            ScanRequest {
                                snapshot: Some(seq),
                                ..Default::default()
                            },
                        )
                        .await
                    {
                        Ok(stream) => {
                            let batches: Vec<_> =
                                futures::TryStreamExt::try_collect(stream).await.unwrap();
                            let got = own(rows_of(&batches), id);
                            let want = expected(&old);
                            assert!(
                                same_rows(&got, &want),
                                "seed {seed} task {id} op {op}: snapshot {seq} differs"
                            );
                            snapshot_scans += 1;
                        }
                        Err(err) => assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}"),
                    }
                }
            }
        }
    }
    (state, scans, snapshot_scans)
}

fn expected(state: &State) -> Vec<Row> {
    let mut rows = rows_of_state(state);
    for r in &mut rows {
        if r.2.map(f64::to_bits) == Some(u64::MAX) {
            r.2 = None;
        }
    }
    rows
}

async fn run(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), config()).await;
    create(&engine, REGION).await;
    let engine = Arc::new(RwLock::new(engine));
    let handles: Vec<_> = (0..TASKS)
        .map(|id| tokio::spawn(task(id, seed, engine.clone(), dir.path().to_path_buf())))
        .collect();
    let mut all = State::new();
    let (mut scans, mut snapshot_scans) = (0, 0);
    for h in handles {
        let (state, s, ss) = h.await.unwrap();
        all.extend(state);
        scans += s;
        snapshot_scans += ss;
    }
    eprintln!("seed {seed}: {scans} scans and {snapshot_scans} snapshot scans matched the oracle");
    assert!(
        scans > 0 && snapshot_scans > 0,
        "seed {seed}: too few checks"
    );
    let want = expected(&all);
    let guard = engine.read().await;
    assert!(
        same_rows(&scan_all(&guard, REGION).await, &want),
        "seed {seed}: final state differs"
    );
    let stats = guard.region_statistics(REGION).unwrap();
    assert!(stats.files > 0, "seed {seed}: no flush happened");
    guard.stop().await.unwrap();
    let engine = start(dir.path(), config()).await;
    open(&engine, REGION).await;
    assert!(
        same_rows(&scan_all(&engine, REGION).await, &want),
        "seed {seed}: state after restart differs"
    );
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_histories_match_the_oracle() {
    for seed in [1, 2, 3] {
        run(seed).await;
    }
}
