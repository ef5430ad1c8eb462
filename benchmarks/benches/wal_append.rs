//! WAL append throughput: appends/s (and so MB/s) for 1 KiB and 64 KiB entries with 1, 4 and
//! 16 concurrent appenders, in `sync` and `periodic` durability; beside it, the disk's raw
//! fsync rate (4 KiB write + fdatasync in a loop) on the same filesystem in the same run.
//!
//! `cargo bench -p benchmarks --bench wal_append`; the temp dir is on `$TMPDIR` (default /tmp).
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a benchmark measures wall time and stops on any error"
)]

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use log_store::{Durability, LocalLogStore, WalConfig};
use store_api::RegionId;
use store_api::logstore::Entry;

const SIZES: [(usize, &str); 2] = [(1024, "1KiB"), (64 * 1024, "64KiB")];
const APPENDERS: [u64; 3] = [1, 4, 16];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `iters` appends spread over `appenders` concurrent tasks, each with its own region.
async fn run_appends(
    store: &Arc<LocalLogStore>,
    next: &Arc<Vec<AtomicU64>>,
    data: &Bytes,
    appenders: u64,
    iters: u64,
) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for a in 0..appenders {
        let n = iters / appenders + u64::from(a < iters % appenders);
        let (store, next, data) = (store.clone(), next.clone(), data.clone());
        tasks.push(tokio::spawn(async move {
            let region_id = RegionId::new(1, a as u32);
            for _ in 0..n {
                let entry_id = next[a as usize].fetch_add(1, Ordering::Relaxed);
                let e = Entry {
                    region_id,
                    entry_id,
                    data: data.clone(),
                };
                store.append(&[e]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn bench_wal(c: &mut Criterion) {
    let rt = runtime();
    let modes = [
        ("sync", Durability::Sync),
        (
            "periodic_1s",
            Durability::Periodic {
                interval: Duration::from_secs(1),
            },
        ),
    ];
    for (mode_name, durability) in modes {
        let mut group = c.benchmark_group(format!("wal_append/{mode_name}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        for (size, size_name) in SIZES {
            group.throughput(Throughput::Elements(1));
            for appenders in APPENDERS {
                let dir = tempfile::tempdir().unwrap();
                let mut config = WalConfig::new(dir.path());
                config.durability = durability;
                let store = Arc::new(rt.block_on(LocalLogStore::open(config)).unwrap());
                let next = Arc::new(
                    (0..appenders)
                        .map(|_| AtomicU64::new(1))
                        .collect::<Vec<_>>(),
                );
                let data = Bytes::from(vec![0x5a; size]);
                group.bench_function(
                    BenchmarkId::new(size_name, format!("{appenders}_appenders")),
                    |b| {
                        b.iter_custom(|iters| {
                            rt.block_on(async {
                                let elapsed =
                                    run_appends(&store, &next, &data, appenders, iters).await;
                                // Keep the disk from filling: everything written is obsolete.
                                for a in 0..appenders {
                                    store
                                        .mark_obsolete(RegionId::new(1, a as u32), u64::MAX)
                                        .await
                                        .unwrap();
                                }
                                elapsed
                            })
                        });
                    },
                );
                rt.block_on(store.close()).unwrap();
            }
        }
        group.finish();
    }
}

/// The physical limit: 4 KiB appended then fdatasync, in a loop, on the same filesystem.
fn bench_fsync_floor(c: &mut Criterion) {
    let mut group = c.benchmark_group("fsync_floor");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(dir.path().join("floor")).unwrap();
    let block = vec![0x5au8; 4096];
    group.bench_function("4KiB_append_fdatasync", |b| {
        b.iter(|| {
            file.write_all(&block).unwrap();
            file.sync_data().unwrap();
        });
    });
    group.finish();
}

criterion_group!(benches, bench_fsync_floor, bench_wal);
criterion_main!(benches);
