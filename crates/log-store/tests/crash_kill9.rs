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
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use log_store::{LocalLogStore, WalConfig};
use store_api::logstore::Entry;

const CHILD_ENV: &str = "MITO_WAL_CRASH_CHILD_DIR";
const REGIONS: u32 = 4;
const ROUNDS: u64 = 20;

fn child_payload_len(entry_id: u64) -> usize {
    64 + (entry_id as usize * 37) % 2000
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
    rt.block_on(async move {
        let store = std::sync::Arc::new(LocalLogStore::open(WalConfig::new(dir)).await.unwrap());
        for n in 0..REGIONS {
            let store = store.clone();
            tokio::spawn(async move {
                let r = region(n);
                let mut id = store_api::logstore::LogStore::last_entry_id(&*store, r).unwrap_or(0);
                loop {
                    id += 1;
                    let e = Entry {
                        region_id: r,
                        entry_id: id,
                        data: payload(r, id, child_payload_len(id)),
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
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut acked: HashMap<u32, u64> = HashMap::new();
    let mut total_acks = 0usize;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut parts = line.split_whitespace();
                if parts.next() == Some("ack") {
                    let n: u32 = parts.next().unwrap().parse().unwrap();
                    let id: u64 = parts.next().unwrap().parse().unwrap();
                    acks.push((n, id));
                }
            }
            acks
        });
        // A spread of kill moments, fixed per round so a failure can be rerun.
        std::thread::sleep(Duration::from_millis(150 + (round * 97) % 400));
        child.kill().unwrap();
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        total_acks += acks.len();
        for (n, id) in acks {
            let a = acked.entry(n).or_insert(0);
            *a = (*a).max(id);
        }

        rt.block_on(async {
            let store = LocalLogStore::open(WalConfig::new(dir.path()))
                .await
                .unwrap();
            for n in 0..REGIONS {
                let r = region(n);
                let got = read_all(&store, r, 0).await;
                let want_at_least = acked.get(&n).copied().unwrap_or(0);
                assert!(
                    got.len() as u64 >= want_at_least,
                    "round {round}: region {r} has {} entries, {want_at_least} were acknowledged",
                    got.len()
                );
                for (i, e) in got.iter().enumerate() {
                    assert_eq!(e.entry_id, i as u64 + 1, "round {round}: gap in region {r}");
                    assert_eq!(
                        e.data,
                        payload(r, e.entry_id, child_payload_len(e.entry_id))
                    );
                }
                // What survived unacknowledged counts as acknowledged from now on: the next
                // child continues after it.
                acked.insert(n, got.len() as u64);
            }
            store.close().await.unwrap();
        });
    }
    eprintln!("{ROUNDS} kills, {total_acks} acknowledged appends checked");
    assert!(total_acks > 0, "the child never acknowledged anything");
}
