//! Durability on a synced ack, with a real process killed by SIGKILL.
//!
//! The test binary re-executes itself as a child (`crash_child`) that appends from four tasks
//! with `sync` durability and prints each acknowledged (region, entry id). The parent kills it
//! at varying moments, reopens the WAL and checks that every acknowledged entry is there, with
//! the right bytes, and that each region's entries are a gap-free prefix.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use log_store::{LocalLogStore, WalConfig};
use store_api::logstore::Entry;

const CHILD_ENV: &str = "MITO_WAL_CRASH_CHILD_DIR";
/// Set (to anything) for a child that appends entries of the sizes the engine really writes:
/// every fourth one 1 to 4 MiB (a default 8,192-row batch is about 1.5 MiB).
const LARGE_ENV: &str = "MITO_WAL_CRASH_CHILD_LARGE";
/// The last entry id the parent saw per region (comma-separated, region 0 first): the log
/// forgets the ids of purged entries, so the child continues after these.
const LAST_ENV: &str = "MITO_WAL_CRASH_CHILD_LAST";
const REGIONS: u32 = 4;
const ROUNDS: u64 = 20;

fn child_payload_len(entry_id: u64, large: bool) -> usize {
    if large && entry_id.is_multiple_of(4) {
        (1 << 20) + (entry_id as usize * 7919 * 4099) % (3 << 20)
    } else {
        64 + (entry_id as usize * 37) % 2000
    }
}

/// The store the child and the parent open: small segments, so that purging after each
/// round keeps what the parent re-reads small.
fn config(dir: &std::path::Path) -> WalConfig {
    let mut config = WalConfig::new(dir);
    config.segment_size = store_api::config::ReadableSize::mib(8);
    config
}

/// The child: appends until killed. Does nothing in a normal test run.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let large = std::env::var(LARGE_ENV).is_ok();
    let last_seen: Vec<u64> = std::env::var(LAST_ENV)
        .unwrap_or_default()
        .split(',')
        .filter_map(|v| v.parse().ok())
        .collect();
    rt.block_on(async move {
        let store = std::sync::Arc::new(
            LocalLogStore::open(config(std::path::Path::new(&dir)))
                .await
                .unwrap(),
        );
        for n in 0..REGIONS {
            let store = store.clone();
            let seen = last_seen.get(n as usize).copied().unwrap_or(0);
            tokio::spawn(async move {
                let r = region(n);
                let mut id = store_api::logstore::LogStore::last_entry_id(&*store, r)
                    .unwrap_or(0)
                    .max(seen);
                loop {
                    id += 1;
                    let e = Entry {
                        region_id: r,
                        entry_id: id,
                        data: payload(r, id, child_payload_len(id, large)),
                    };
                    store.append(&[e]).await.unwrap();
                    println!("ack {n} {id}");
                }
            });
        }
        // Runs until the parent kills the process.
        std::future::pending::<()>().await;
    });
}

#[test]
fn kill9_loses_no_acknowledged_entry() {
    kill_loop(false, ROUNDS);
}

/// The same with megabyte entries: a kill lands inside a large `write()` most rounds, leaving
/// a torn record of up to 4 MiB at the tail, which must be cut, never called corruption.
#[test]
fn kill9_with_megabyte_entries_always_reopens() {
    kill_loop(true, ROUNDS);
}

fn kill_loop(large: bool, rounds: u64) {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut acked: HashMap<u32, u64> = HashMap::new();
    // The last entry per region checked (and made obsolete) after the previous round.
    let mut checked: HashMap<u32, u64> = HashMap::new();
    let mut total_acks = 0usize;
    let mut torn = 0usize;
    for round in 0..rounds {
        let mut command = test_util::child_test("crash_child");
        command.env(CHILD_ENV, dir.path());
        if large {
            command.env(LARGE_ENV, "1");
        }
        let last: Vec<String> = (0..REGIONS)
            .map(|n| acked.get(&n).copied().unwrap_or(0).to_string())
            .collect();
        command.env(LAST_ENV, last.join(","));
        // A spread of kill moments, fixed per round so a failure can be rerun.
        let killed =
            test_util::kill_after(command, Duration::from_millis(150 + (round * 97) % 400));
        let mut acks = Vec::new();
        for line in &killed.lines {
            let mut parts = line.split_whitespace();
            if parts.next() == Some("ack") {
                let n: u32 = parts.next().unwrap().parse().unwrap();
                let id: u64 = parts.next().unwrap().parse().unwrap();
                acks.push((n, id));
            }
        }
        total_acks += acks.len();
        for (n, id) in acks {
            let a = acked.entry(n).or_insert(0);
            *a = (*a).max(id);
        }

        let last_segment = segments(dir.path()).pop();
        let len_before = last_segment
            .as_ref()
            .map(|p| std::fs::metadata(p).unwrap().len());
        rt.block_on(async {
            let store = LocalLogStore::open(config(dir.path()))
                .await
                .unwrap_or_else(|e| panic!("round {round}: the WAL does not reopen: {e}"));
            for n in 0..REGIONS {
                let r = region(n);
                let got = read_all(&store, r, 0).await;
                let want_at_least = acked.get(&n).copied().unwrap_or(0);
                let before = checked.get(&n).copied().unwrap_or(0);
                let last = got.last().map_or(before, |e| e.entry_id);
                assert!(
                    last >= want_at_least,
                    "round {round}: region {r} ends at entry {last}, {want_at_least} were acknowledged"
                );
                // What is left (purged segments aside) is a gap-free run up to the last entry.
                let first = got.first().map_or(0, |e| e.entry_id);
                for (i, e) in got.iter().enumerate() {
                    assert_eq!(e.entry_id, first + i as u64, "round {round}: gap in region {r}");
                    assert_eq!(
                        e.data,
                        payload(r, e.entry_id, child_payload_len(e.entry_id, large))
                    );
                }
                // What survived unacknowledged counts as acknowledged from now on: the next
                // child continues after it.
                acked.insert(n, last);
                checked.insert(n, last);
                store.mark_obsolete(r, last).await.unwrap();
            }
            let len_after = last_segment
                .as_ref()
                .map(|p| std::fs::metadata(p).unwrap().len());
            if len_after != len_before {
                torn += 1;
            }
            store.close().await.unwrap();
        });
    }
    eprintln!(
        "{rounds} kills, {torn} torn tails cut, {total_acks} acknowledged appends checked \
         (large: {large})"
    );
    assert!(total_acks > 0, "the child never acknowledged anything");
}
