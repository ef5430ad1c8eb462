//! Power cuts under the WAL (a `FaultFs` drops or tears what was not synced, and undoes
//! directory entries that were not synced): under `sync` nothing acknowledged is lost; under
//! `periodic` at most what came after the last fsync; and the directory always reopens.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{payload, read_all, region};
use log_store::{Durability, LocalLogStore, WalConfig};
use mito_fs::fault::{Cut, FaultFs};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store_api::config::ReadableSize;
use store_api::logstore::Entry;

fn config(dir: &std::path::Path, durability: Durability) -> WalConfig {
    WalConfig {
        segment_size: ReadableSize::mib(4),
        durability,
        ..WalConfig::new(dir)
    }
}

/// Reopens `dir` on the plain file system; per region, the entries it holds must be ids
/// 1..=k for some k (what survives is a prefix), each with the payload that was written.
async fn surviving(
    dir: &std::path::Path,
    regions: u32,
    lens: &HashMap<(u32, u64), usize>,
) -> Vec<u64> {
    let store = LocalLogStore::open(WalConfig::new(dir)).await.unwrap();
    let mut out = Vec::new();
    for r in 0..regions {
        let entries = read_all(&store, region(r), 1).await;
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(
                e.entry_id,
                i as u64 + 1,
                "region {r}: a hole after a power cut"
            );
            let len = lens[&(r, e.entry_id)];
            assert_eq!(
                e.data,
                payload(region(r), e.entry_id, len),
                "region {r} entry {}",
                e.entry_id
            );
        }
        out.push(entries.len() as u64);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_sync_no_acknowledged_entry_is_lost_at_any_cut() {
    const WRITERS: u32 = 3;
    let mut cut_bytes = 0u64;
    for seed in 0..24u64 {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::new(seed);
        let guard = mito_fs::register(dir.path(), Arc::new(fs.clone()));
        let store = Arc::new(
            LocalLogStore::open(config(dir.path(), Durability::Sync))
                .await
                .unwrap(),
        );
        let mut rng = StdRng::seed_from_u64(seed);
        // Anywhere in the first ~150 calls: inside group writes, fsyncs, segment rolls.
        fs.cut_at(rng.random_range(1..150));
        let mut lens = HashMap::new();
        let mut sizes = Vec::new();
        for r in 0..WRITERS {
            // 1 KiB .. 1.5 MiB entries: several per 4 MiB segment, so cuts hit rolls too.
            let s: Vec<usize> = (0..200)
                .map(|_| rng.random_range(1024..1_536 * 1024))
                .collect();
            for (i, len) in s.iter().enumerate() {
                lens.insert((r, i as u64 + 1), *len);
            }
            sizes.push(s);
        }
        let mut tasks = Vec::new();
        for (r, sizes) in sizes.into_iter().enumerate() {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut acked = 0u64;
                for (i, len) in sizes.into_iter().enumerate() {
                    let id = i as u64 + 1;
                    let entry = Entry {
                        region_id: region(r as u32),
                        entry_id: id,
                        data: payload(region(r as u32), id, len),
                    };
                    if store.append(&[entry]).await.is_err() {
                        return (acked, true);
                    }
                    acked = id;
                }
                (acked, false)
            }));
        }
        let mut acked = Vec::new();
        for t in tasks {
            let (a, failed) = t.await.unwrap();
            assert!(failed, "seed {seed}: the cut never came");
            acked.push(a);
        }
        let report = fs
            .power_cut(if seed % 2 == 0 {
                Cut::Tear
            } else {
                Cut::DropUnsynced
            })
            .await
            .unwrap();
        cut_bytes += report.bytes_lost;
        drop(store);
        drop(guard);
        let kept = surviving(dir.path(), WRITERS, &lens).await;
        for r in 0..WRITERS as usize {
            assert!(
                kept[r] >= acked[r],
                "seed {seed}: region {r} acknowledged {} entries, {} survived",
                acked[r],
                kept[r]
            );
        }
    }
    assert!(cut_bytes > 0, "some cuts fell on unsynced bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_periodic_only_what_followed_the_last_fsync_is_lost() {
    for seed in 0..8u64 {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::new(seed);
        let guard = mito_fs::register(dir.path(), Arc::new(fs.clone()));
        let durability = Durability::Periodic {
            interval: Duration::from_millis(2),
        };
        let store = LocalLogStore::open(config(dir.path(), durability))
            .await
            .unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let want_syncs = fs.stats().syncs + rng.random_range(3..12);
        let mut lens = HashMap::new();
        // (entry id, completed fsyncs when it was acknowledged)
        let mut acks = Vec::new();
        let mut id = 0u64;
        loop {
            id += 1;
            assert!(
                id < 1_000_000,
                "seed {seed}: the periodic fsyncs never came"
            );
            let len = rng.random_range(1024..64 * 1024);
            lens.insert((0, id), len);
            let entry = Entry {
                region_id: region(0),
                entry_id: id,
                data: payload(region(0), id, len),
            };
            if store.append(&[entry]).await.is_err() {
                break;
            }
            acks.push((id, fs.stats().syncs));
            if fs.stats().syncs >= want_syncs && !fs.is_dead() {
                // The next call of any kind (a write, or the ticker's fsync) is the cut.
                fs.cut_at(1);
            }
        }
        let syncs = fs.stats().syncs;
        fs.power_cut(Cut::Tear).await.unwrap();
        drop(store);
        drop(guard);
        let kept = surviving(dir.path(), 1, &lens).await[0];
        // An fsync that completed after one that was under way at the acknowledgement
        // started after it, and covers the entry.
        let covered = acks
            .iter()
            .filter(|(_, s)| s + 2 <= syncs)
            .map(|(id, _)| *id)
            .max();
        assert!(
            covered.is_some(),
            "seed {seed}: no entry was covered by an fsync"
        );
        assert!(
            kept >= covered.unwrap_or(0),
            "seed {seed}: {kept} entries survived, {} were covered by an fsync",
            covered.unwrap_or(0)
        );
    }
}
