//! Model-based stress test: tasks put, delete, scan, flush, compact, alter and reopen at
//! random (seeded) while an injected clock moves and a TTL expires rows; every scan is checked
//! against an in-memory oracle at its snapshot, and the final state (also after a restart)
//! equals the oracle.
//!
//! TTL: a row is visible while its timestamp is at least `now - ttl`. The clock moves only
//! under the write lock, so a scan and its oracle see the same `now`. The TTL only ever
//! shrinks (an alter), since rows in files dropped as expired cannot come back.
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
use std::sync::atomic::{AtomicI64, Ordering};

use common::*;
use datafusion_expr::{col, lit};
use mito_engine::MitoEngine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store_api::clock::{Clock, ManualClock};
use store_api::config::ReadableSize;
use store_api::engine::RegionEngine;
use store_api::error::ErrorKind;
use store_api::metadata::{ColumnMetadata, SemanticType};
use store_api::region_request::{
    AlterKind, CompactOptions, RegionAlterRequest, RegionCloseRequest, RegionCompactRequest,
    RegionCreateRequest, RegionFlushRequest, RegionOpenRequest, RegionRequest,
};
use store_api::scan::{ScanOrder, ScanRequest, SeriesRowSelector};
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

/// The clock starts here (ms); rows are written up to 6 minutes back and 1 minute ahead.
const START_MS: i64 = 10_000_000;
/// The initial TTL; alters only shrink it, down to `MIN_TTL_S`.
const TTL_S: i64 = 300;
const MIN_TTL_S: i64 = 120;

/// What every task shares.
struct World {
    engine: RwLock<MitoEngine>,
    clock: Arc<ManualClock>,
    /// The region's TTL in seconds.
    ttl_s: AtomicI64,
    /// Alters that succeeded.
    alters: std::sync::atomic::AtomicUsize,
    dir: std::path::PathBuf,
}

impl World {
    /// Rows at or after this timestamp are visible now.
    fn cutoff(&self) -> i64 {
        self.clock.now_millis() - self.ttl_s.load(Ordering::SeqCst) * 1000
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

async fn task(id: usize, seed: u64, world: Arc<World>) -> (State, usize, usize) {
    let engine = &world.engine;
    let dir = &world.dir;
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
                *guard = start_with_clock(dir, config(), world.clock.clone()).await;
                open(&guard, REGION).await;
            }
            continue;
        }
        if dice < 5 {
            // Time passes (rows expire); no request is in flight meanwhile.
            let guard = engine.write().await;
            world.clock.advance(rng.random_range(10..40) * 1000);
            let ttl = world.ttl_s.load(Ordering::SeqCst);
            if ttl > MIN_TTL_S && rng.random_bool(0.3) {
                // The TTL shrinks (an alter); no scan runs meanwhile.
                let next = (ttl - rng.random_range(1..30)).max(MIN_TTL_S);
                let version = guard.region_statistics(REGION).unwrap().schema_version;
                guard
                    .handle_request(
                        REGION,
                        RegionRequest::Alter(RegionAlterRequest {
                            schema_version: version,
                            kind: AlterKind::SetOptions {
                                options: [("ttl".to_string(), format!("{next}s"))].into(),
                            },
                        }),
                    )
                    .await
                    .unwrap();
                world.ttl_s.store(next, Ordering::SeqCst);
                world.alters.fetch_add(1, Ordering::SeqCst);
            }
            continue;
        }
        let guard = engine.read().await;
        let e = &*guard;
        match dice {
            3..=55 => {
                let n = rng.random_range(1..40);
                let mut rows = Vec::new();
                let now_s = world.clock.now_millis() / 1000;
                for _ in 0..n {
                    let h = &hosts[rng.random_range(0..hosts.len())];
                    let t = (now_s + rng.random_range(-360..60)) * 1000;
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
                let now_s = world.clock.now_millis() / 1000;
                let existing: Vec<(String, i64)> = state.keys().cloned().collect();
                let keys: Vec<(String, i64)> = (0..n)
                    .map(|_| {
                        // Mostly rows that exist, sometimes a miss.
                        if !existing.is_empty() && rng.random_bool(0.7) {
                            existing[rng.random_range(0..existing.len())].clone()
                        } else {
                            (
                                hosts[rng.random_range(0..hosts.len())].clone(),
                                (now_s + rng.random_range(-360..60)) * 1000,
                            )
                        }
                    })
                    .collect();
                let refs: Vec<(&str, i64)> = keys.iter().map(|(h, t)| (h.as_str(), *t)).collect();
                delete(e, REGION, &refs).await.unwrap();
                for k in keys {
                    state.remove(&k);
                }
            }
            71..=85 => {
                // Sometimes only some of the task's hosts (a series filter: each source applies
                // it, files on their own columns, memtables and old files in the engine).
                let wanted: Vec<&String> = if rng.random_bool(0.5) {
                    hosts.iter().filter(|_| rng.random_bool(0.6)).collect()
                } else {
                    hosts.iter().collect()
                };
                let by_host = !wanted.is_empty() && rng.random_bool(0.5);
                let mut filters = if by_host {
                    vec![
                        col("host")
                            .in_list(wanted.iter().map(|h| lit(h.as_str())).collect(), false),
                    ]
                } else {
                    Vec::new()
                };
                // Last rows of each series, sometimes after a time bound (the two-pass path
                // takes it) or a field filter (the full merge must apply it first).
                let last_row = rng.random_bool(0.4);
                let now_s = world.clock.now_millis() / 1000;
                let since = (now_s - rng.random_range(0..300)) * 1000;
                let by_time = rng.random_bool(0.3);
                // Sometimes an upper bound too, in the same conjunction (the engine turns
                // time bounds into its time range; files inside it skip the row check).
                let until =
                    (by_time && rng.random_bool(0.5)).then(|| since + rng.random_range(0..200_000));
                if by_time {
                    let ts = |t| {
                        lit(datafusion_common::ScalarValue::TimestampMillisecond(
                            Some(t),
                            None,
                        ))
                    };
                    let mut bound = col("ts").gt_eq(ts(since));
                    if let Some(u) = until {
                        bound = bound.and(col("ts").lt(ts(u)));
                    }
                    filters.push(bound);
                }
                let by_field = rng.random_bool(0.2);
                if by_field {
                    filters.push(col("cpu").is_not_null());
                }
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
                            series_row_selector: last_row.then_some(SeriesRowSelector::LastRow),
                            ..Default::default()
                        },
                    )
                    .await,
                    id,
                );
                if order == ScanOrder::Unordered {
                    got.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
                }
                let mut want = expected(&state, world.cutoff());
                want.retain(|r| {
                    (!by_host || wanted.contains(&&r.0))
                        && (!by_time || r.1 >= since)
                        && until.is_none_or(|u| r.1 < u)
                        && (!by_field || r.2.is_some())
                });
                if last_row {
                    let mut last: BTreeMap<String, Row> = BTreeMap::new();
                    for r in want {
                        last.insert(r.0.clone(), r);
                    }
                    want = last.into_values().collect();
                }
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
                    CompactOptions::StrictWindow {
                        window_seconds: 120,
                    }
                };
                e.handle_request(
                    REGION,
                    RegionRequest::Compact(RegionCompactRequest { options }),
                )
                .await
                .unwrap();
            }
            91..=92 => alter(e, &world, &mut rng).await,
            93..=95 => {
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
                            let want = expected(&old, world.cutoff());
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

/// A random alter: add a nullable field, drop an added one, or change the compaction
/// trigger. Tasks alter concurrently, so one made against a version another just
/// replaced is refused as stale; that is the only error allowed.
async fn alter(e: &MitoEngine, world: &World, rng: &mut StdRng) {
    let stats = e.region_statistics(REGION).unwrap();
    let version = stats.schema_version;
    let kind = match rng.random_range(0..3) {
        0 => {
            // Column ids above every id used so far: 3 + the schema version + a margin per
            // task race (a collision is refused, which is also checked below).
            let id = 100 + u32::try_from(version).unwrap() * 3 + rng.random_range(0..3);
            AlterKind::AddColumns {
                columns: vec![ColumnMetadata::new(
                    id,
                    format!("extra{id}"),
                    arrow_schema::DataType::Int64,
                    SemanticType::Field,
                )],
            }
        }
        1 => {
            let metadata = e.metadata(REGION).await.unwrap();
            let extra: Vec<String> = metadata
                .column_metadatas()
                .iter()
                .filter(|c| c.name.starts_with("extra"))
                .map(|c| c.name.clone())
                .collect();
            if extra.is_empty() {
                return;
            }
            AlterKind::DropColumns {
                names: vec![extra[rng.random_range(0..extra.len())].clone()],
            }
        }
        _ => AlterKind::SetOptions {
            options: [(
                "compaction.twcs.trigger_file_num".to_string(),
                rng.random_range(2..8).to_string(),
            )]
            .into(),
        },
    };
    let result = e
        .handle_request(
            REGION,
            RegionRequest::Alter(RegionAlterRequest {
                schema_version: version,
                kind: kind.clone(),
            }),
        )
        .await;
    if result.is_ok() {
        world.alters.fetch_add(1, Ordering::SeqCst);
    }
    if let Err(err) = result {
        let msg = err.to_string();
        assert!(
            msg.contains("made against schema version")
                || msg.contains("are taken")
                || msg.contains("duplicate column name")
                || msg.contains("cannot drop unknown column"),
            "alter {kind:?} failed: {msg}"
        );
    }
}

fn expected(state: &State, cutoff: i64) -> Vec<Row> {
    let mut rows: Vec<Row> = rows_of_state(state)
        .into_iter()
        .filter(|r| r.1 >= cutoff)
        .collect();
    for r in &mut rows {
        if r.2.map(f64::to_bits) == Some(u64::MAX) {
            r.2 = None;
        }
    }
    rows
}

async fn run(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let engine = start_with_clock(dir.path(), config(), clock.clone()).await;
    let create = RegionCreateRequest {
        options: [
            ("ttl".to_string(), format!("{TTL_S}s")),
            ("compaction.twcs.time_window".to_string(), "1m".to_string()),
        ]
        .into(),
        ..create_request()
    };
    engine
        .handle_request(REGION, RegionRequest::Create(create))
        .await
        .unwrap();
    let world = Arc::new(World {
        engine: RwLock::new(engine),
        clock,
        ttl_s: AtomicI64::new(TTL_S),
        alters: std::sync::atomic::AtomicUsize::new(0),
        dir: dir.path().to_path_buf(),
    });
    let handles: Vec<_> = (0..TASKS)
        .map(|id| tokio::spawn(task(id, seed, world.clone())))
        .collect();
    let mut all = State::new();
    let (mut scans, mut snapshot_scans) = (0, 0);
    for h in handles {
        let (state, s, ss) = h.await.unwrap();
        all.extend(state);
        scans += s;
        snapshot_scans += ss;
    }
    let want = expected(&all, world.cutoff());
    let alters = world.alters.load(Ordering::SeqCst);
    let expired = all.len() - want.len();
    eprintln!(
        "seed {seed}: {scans} scans and {snapshot_scans} snapshot scans matched the oracle; \
         {alters} alters; {expired} of {} rows expired by the TTL ({} s at the end)",
        all.len(),
        world.ttl_s.load(Ordering::SeqCst)
    );
    assert!(
        scans > 0 && snapshot_scans > 0 && alters > 0 && expired > 0,
        "seed {seed}: too few checks"
    );
    let engine = &world.engine;
    let guard = engine.read().await;
    assert!(
        same_rows(&scan_all(&guard, REGION).await, &want),
        "seed {seed}: final state differs"
    );
    let stats = guard.region_statistics(REGION).unwrap();
    assert!(stats.files > 0, "seed {seed}: no flush happened");
    guard.stop().await.unwrap();
    let engine = start_with_clock(dir.path(), config(), world.clock.clone()).await;
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
