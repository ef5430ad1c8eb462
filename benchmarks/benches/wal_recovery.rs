//! WAL recovery time: open a WAL holding 256 MiB of entries (64 KiB each, 16 regions, in
//! 64 MiB segments), as after a crash with nothing flushed. RELIABILITY.md's bound: reopen in
//! at most 10 s for 256 MiB. Also: reading back one region's entries after the open.
//!
//! `cargo bench -p benchmarks --bench wal_recovery`
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    reason = "a benchmark measures wall time and stops on any error"
)]

use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::TryStreamExt;
use log_store::{Durability, LocalLogStore, WalConfig};
use store_api::RegionId;
use store_api::logstore::Entry;

const TOTAL: usize = 256 << 20;
const ENTRY: usize = 64 << 10;
const REGIONS: u32 = 16;

fn bench_recovery(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = WalConfig::new(dir.path());
    // Filling is not what is measured: write without per-append fsync, sync at close.
    config.durability = Durability::Periodic {
        interval: Duration::from_secs(1),
    };
    rt.block_on(async {
        let store = LocalLogStore::open(config.clone()).await.unwrap();
        let data = Bytes::from(vec![0x42u8; ENTRY]);
        for i in 0..(TOTAL / ENTRY) as u64 {
            let region_id = RegionId::new(1, (i % u64::from(REGIONS)) as u32);
            let e = Entry {
                region_id,
                entry_id: i / u64::from(REGIONS) + 1,
                data: data.clone(),
            };
            store.append(&[e]).await.unwrap();
        }
        store.close().await.unwrap();
    });
    let on_disk: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "wal_recovery: {on_disk} bytes in {} files",
        std::fs::read_dir(dir.path()).unwrap().count()
    );

    let mut group = c.benchmark_group("wal_recovery");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes(on_disk));
    group.bench_function("open_256MiB", |b| {
        b.iter(|| {
            rt.block_on(async {
                let store = LocalLogStore::open(config.clone()).await.unwrap();
                store.close().await.unwrap();
            })
        })
    });
    group.throughput(Throughput::Bytes(on_disk / u64::from(REGIONS)));
    group.bench_function("open_and_read_one_region", |b| {
        b.iter(|| {
            rt.block_on(async {
                let store = LocalLogStore::open(config.clone()).await.unwrap();
                let chunks: Vec<Vec<Entry>> = store
                    .read_entries(RegionId::new(1, 3), 0)
                    .try_collect()
                    .await
                    .unwrap();
                assert_eq!(
                    chunks.iter().map(Vec::len).sum::<usize>(),
                    TOTAL / ENTRY / REGIONS as usize
                );
                store.close().await.unwrap();
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench_recovery);
criterion_main!(benches);
