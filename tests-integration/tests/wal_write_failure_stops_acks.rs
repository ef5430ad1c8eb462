//! A failed WAL write or fsync is never retried and then acknowledged: the failed append and
//! every later one get an error until the store is reopened, and reopening recovers every
//! entry acknowledged before the failure (RELIABILITY.md: `fsync_failstop`, `disk_full`).
//!
//! Failpoints are process-global: nextest runs each test in its own process, and
//! `FailScenario` serialises them under `cargo test`.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests assert by panicking"
)]

use std::path::Path;

use bytes::Bytes;
use futures::TryStreamExt;
use log_store::error::Error;
use log_store::{LocalLogStore, WalConfig};
use store_api::RegionId;
use store_api::error::{ErrorExt, ErrorKind};
use store_api::logstore::Entry;

fn entry(id: u64) -> Entry {
    Entry {
        region_id: RegionId::new(9, 1),
        entry_id: id,
        data: Bytes::from(vec![id as u8; 300]),
    }
}

async fn ids(store: &LocalLogStore) -> Vec<u64> {
    let chunks: Vec<Vec<Entry>> = store
        .read_entries(RegionId::new(9, 1), 0)
        .try_collect()
        .await
        .unwrap();
    chunks.into_iter().flatten().map(|e| e.entry_id).collect()
}

async fn open(dir: &Path) -> LocalLogStore {
    LocalLogStore::open(WalConfig::new(dir)).await.unwrap()
}

/// Acknowledges entries 1 and 2, arms failpoint `name` for entry 3, disarms it, tries entry 4;
/// returns the errors of 3 and 4.
async fn fail_after_two_acks(name: &str) -> (tempfile::TempDir, Error, Error) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.append(&[entry(1)]).await.unwrap();
    store.append(&[entry(2)]).await.unwrap();

    fail::cfg(name, "return").unwrap();
    let failed = store.append(&[entry(3)]).await.unwrap_err();
    fail::remove(name);
    // The disk works again, but the store does not pretend it knows what reached it.
    let later = store.append(&[entry(4)]).await.unwrap_err();
    store.close().await.unwrap();
    (dir, failed, later)
}

#[tokio::test]
async fn fsync_failure_stops_acks_until_reopen() {
    let scenario = fail::FailScenario::setup();
    let (dir, failed, later) = fail_after_two_acks("wal-fsync").await;
    assert_eq!(failed.kind(), ErrorKind::StorageFailure);
    assert!(
        failed.to_string().contains("failpoint wal-fsync"),
        "{failed}"
    );
    assert!(matches!(later, Error::Poisoned { .. }), "{later}");
    assert_eq!(later.kind(), ErrorKind::StorageFailure);
    assert!(!later.kind().is_retryable());

    // Reopen: the acknowledged entries are there, and entry 3 (written, then its fsync
    // failed, so its appender got an error) is not: the writer cut it. New appends work again.
    let store = open(dir.path()).await;
    assert_eq!(ids(&store).await, [1, 2]);
    store.append(&[entry(3)]).await.unwrap();
    assert_eq!(ids(&store).await, [1, 2, 3]);
    scenario.teardown();
}

#[tokio::test]
async fn disk_full_mid_write_leaves_no_half_record() {
    let scenario = fail::FailScenario::setup();
    let (dir, failed, later) = fail_after_two_acks("wal-write").await;
    assert!(
        failed.to_string().contains("failpoint wal-write"),
        "{failed}"
    );
    assert_eq!(failed.kind(), ErrorKind::StorageFailure);
    assert!(matches!(later, Error::Poisoned { .. }), "{later}");

    // Half of entry 3's record reached the file; the writer cut it again (were the cut to
    // fail, recovery would drop it as a torn tail). The acknowledged entries stay, and
    // appends after it survive a second reopen.
    let store = open(dir.path()).await;
    assert_eq!(ids(&store).await, [1, 2]);
    store.append(&[entry(3)]).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let store = open(dir.path()).await;
    assert_eq!(ids(&store).await, [1, 2, 3]);
    scenario.teardown();
}

/// The segment list cannot be written when a roll needs a new segment (a full disk): the
/// append that needed it fails, nothing of it is replayed, the acknowledged entries stay, and
/// the directory reopens (the new segment, never listed, holds no record).
#[tokio::test]
async fn a_failed_segment_list_write_at_a_roll_fails_the_append_alone() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig {
        segment_size: store_api::config::ReadableSize::mib(1),
        ..WalConfig::new(dir.path())
    };
    let store = LocalLogStore::open(config.clone()).await.unwrap();
    let big = |id: u64| Entry {
        region_id: RegionId::new(9, 1),
        entry_id: id,
        data: Bytes::from(vec![id as u8; 700 << 10]),
    };
    store.append(&[big(1)]).await.unwrap();
    fail::cfg("wal-list", "return").unwrap();
    // 1.4 MiB do not fit a 1 MiB segment: the roll creates segment 2, and listing it fails.
    let failed = store.append(&[big(2)]).await.unwrap_err();
    fail::remove("wal-list");
    assert!(
        failed.to_string().contains("failpoint wal-list"),
        "{failed}"
    );
    assert_eq!(failed.kind(), ErrorKind::StorageFailure);
    store.close().await.unwrap();
    drop(store);

    let store = LocalLogStore::open(config).await.unwrap();
    assert_eq!(ids(&store).await, [1]);
    store.append(&[big(2)]).await.unwrap();
    store.append(&[big(3)]).await.unwrap();
    assert_eq!(ids(&store).await, [1, 2, 3]);
    scenario.teardown();
}
