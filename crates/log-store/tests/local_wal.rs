//! Behaviour of the local WAL on a real directory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use log_store::error::Error;
use log_store::{Durability, LocalLogStore, WalConfig};
use store_api::config::ReadableSize;
use store_api::error::ErrorKind;
use store_api::logstore::{Entry, LogStore};

#[tokio::test]
async fn round_trip_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let (a, b) = (region(1), region(2));
    let resp = store
        .append(&[entry(a, 1), entry(b, 10), entry(a, 2), entry(b, 11)])
        .await
        .unwrap();
    assert_eq!(resp.last_entry_ids[&a], 2);
    assert_eq!(resp.last_entry_ids[&b], 11);
    store.append(&[entry(a, 3)]).await.unwrap();

    let got = read_all(&store, a, 0).await;
    assert_eq!(ids(&got), [1, 2, 3]);
    assert_eq!(got[1], entry(a, 2));
    assert_eq!(ids(&read_all(&store, a, 2).await), [2, 3]);
    assert_eq!(ids(&read_all(&store, b, 0).await), [10, 11]);
    assert!(read_all(&store, region(3), 0).await.is_empty());
    store.close().await.unwrap();

    let store = open(dir.path()).await;
    assert_eq!(store.last_entry_id(a), Some(3));
    assert_eq!(store.last_entry_id(b), Some(11));
    assert_eq!(store.last_entry_id(region(3)), None);
    assert_eq!(
        read_all(&store, a, 0).await,
        [entry(a, 1), entry(a, 2), entry(a, 3)]
    );
    store.append(&[entry(a, 4)]).await.unwrap();
    assert_eq!(ids(&read_all(&store, a, 0).await), [1, 2, 3, 4]);
}

#[tokio::test]
async fn empty_append_and_empty_dir() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("new/nested")).await;
    assert!(store.append(&[]).await.unwrap().last_entry_ids.is_empty());
    assert_eq!(store.segment_ids(), [1]);
}

#[tokio::test]
async fn entry_ids_must_increase_and_bad_requests_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()).await);
    let r = region(1);
    store.append(&[entry(r, 5)]).await.unwrap();

    let err = store.append(&[entry(r, 5)]).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidEntry { entry_id: 5, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("last entry is 5"), "{err}");
    let err = store.append(&[entry(r, 7), entry(r, 6)]).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidEntry { entry_id: 6, .. }),
        "{err}"
    );

    // A bad request racing good ones in the same group fails alone.
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let reg = region(10 + i as u32);
            store.append(&[entry(reg, 1)]).await
        }));
    }
    let bad = store.append(&[entry(r, 1)]).await;
    assert!(bad.is_err());
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // The rejected request left nothing behind.
    assert_eq!(ids(&read_all(&store, r, 0).await), [5]);
    store.append(&[entry(r, 6)]).await.unwrap();
}

#[tokio::test]
async fn oversized_entry_is_rejected_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = WalConfig::new(dir.path());
    config.max_entry_size = ReadableSize::kib(1);
    let store = LocalLogStore::open(config).await.unwrap();
    let r = region(1);
    let big = Entry {
        region_id: r,
        entry_id: 1,
        data: Bytes::from(vec![0u8; 1025]),
    };
    let err = store.append(&[big]).await.unwrap_err();
    assert_eq!(
        store_api::error::ErrorExt::kind(&err),
        ErrorKind::InvalidArgument
    );
    assert!(
        err.to_string()
            .contains("1025 bytes is over max_entry_size"),
        "{err}"
    );
    assert!(err.to_string().contains(&r.to_string()), "{err}");
    store.append(&[entry(r, 1)]).await.unwrap();
}

#[tokio::test]
async fn a_second_store_cannot_open_the_same_dir() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let err = LocalLogStore::open(WalConfig::new(dir.path()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DirLocked { .. }), "{err}");
    store.close().await.unwrap();
    drop(store);
    open(dir.path()).await;
}

#[tokio::test]
async fn dropping_without_close_syncs_and_releases() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.append(&[entry(region(1), 1)]).await.unwrap();
    drop(store);
    let store = open(dir.path()).await;
    assert_eq!(store.last_entry_id(region(1)), Some(1));
}

#[tokio::test]
async fn appends_after_close_fail() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.close().await.unwrap();
    let err = store.append(&[entry(region(1), 1)]).await.unwrap_err();
    assert!(matches!(err, Error::Stopped { .. }), "{err}");
    assert_eq!(store_api::error::ErrorExt::kind(&err), ErrorKind::Cancelled);
    // Closing twice is fine.
    store.close().await.unwrap();
}

#[tokio::test]
async fn periodic_durability_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = WalConfig::new(dir.path());
    config.durability = Durability::Periodic {
        interval: std::time::Duration::from_millis(5),
    };
    let store = LocalLogStore::open(config.clone()).await.unwrap();
    for i in 1..=100 {
        store.append(&[entry(region(1), i)]).await.unwrap();
    }
    store.close().await.unwrap();
    drop(store);
    let store = LocalLogStore::open(config).await.unwrap();
    assert_eq!(
        ids(&read_all(&store, region(1), 0).await),
        (1..=100).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn segments_roll_and_obsolete_ones_are_purged() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = WalConfig::new(dir.path());
    config.segment_size = ReadableSize::mib(1);
    let store = LocalLogStore::open(config.clone()).await.unwrap();
    let (a, b) = (region(1), region(2));
    // 64 KiB entries: a segment holds 15 of them. a writes throughout, b only at first.
    let big = |r, id| Entry {
        region_id: r,
        entry_id: id,
        data: payload(r, id, 64 << 10),
    };
    for id in 1..=40 {
        let mut batch = vec![big(a, id)];
        if id <= 5 {
            batch.push(big(b, id));
        }
        store.append(&batch).await.unwrap();
    }
    let before = store.segment_ids();
    assert!(before.len() >= 3, "{before:?}");
    assert_eq!(segments(dir.path()).len(), before.len());

    // Obsoleting a up to 30 frees the segments holding only a's entries <= 30, but not the
    // first one: b still needs it.
    let first = before[0];
    let purged_a = store.mark_obsolete(a, 30).await.unwrap();
    assert!(!purged_a.is_empty());
    assert!(!purged_a.contains(&first), "{purged_a:?}");
    assert_eq!(store.segment_ids()[0], first);
    // Once b is flushed too, the first segment goes.
    let purged_b = store.mark_obsolete(b, 5).await.unwrap();
    assert!(purged_b.contains(&first), "{purged_b:?}");
    assert_eq!(
        segments(dir.path()).len(),
        before.len() - purged_a.len() - purged_b.len()
    );
    let left = ids(&read_all(&store, a, 31).await);
    assert_eq!(left, (31..=40).collect::<Vec<_>>());
    assert!(read_all(&store, b, 0).await.is_empty());

    // Everything obsolete: all but the active segment go; the log stays usable.
    store.mark_obsolete(a, 40).await.unwrap();
    assert_eq!(store.segment_ids().len(), 1);
    assert_eq!(segments(dir.path()).len(), 1);
    store.append(&[big(a, 41)]).await.unwrap();
    store.close().await.unwrap();
    drop(store);

    let store = LocalLogStore::open(config).await.unwrap();
    assert_eq!(store.last_entry_id(a), Some(41));
    // Obsolete marks live in memory only: the engine reads from its flushed entry id + 1, and
    // the active segment, never purged, still holds older entries.
    assert_eq!(ids(&read_all(&store, a, 41).await), [41]);
    assert!(read_all(&store, a, 0).await.len() > 1);
}

#[tokio::test]
async fn close_removes_a_fully_obsolete_log_and_keeps_a_needed_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = WalConfig::new(dir.path());
    config.segment_size = ReadableSize::mib(1);
    let (a, b) = (region(1), region(2));
    let big = |r, id| Entry {
        region_id: r,
        entry_id: id,
        data: payload(r, id, 64 << 10),
    };
    // Given a log over several segments where b's newest entry is not obsolete.
    let store = LocalLogStore::open(config.clone()).await.unwrap();
    for id in 1..=20 {
        store.append(&[big(a, id), big(b, id)]).await.unwrap();
    }
    store.mark_obsolete(a, 20).await.unwrap();
    store.mark_obsolete(b, 19).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    // Then close keeps it: b's entry 20 is still needed.
    let store = LocalLogStore::open(config.clone()).await.unwrap();
    assert_eq!(ids(&read_all(&store, b, 20).await), [20]);
    // When everything is obsolete at close (marks live in memory: the engine marks each
    // region's flushed entry id again when it opens it), no segment is left on disk.
    store.mark_obsolete(a, 20).await.unwrap();
    store.mark_obsolete(b, 20).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    assert!(segments(dir.path()).is_empty());
    // Then the log opens empty and takes appends.
    let store = LocalLogStore::open(config).await.unwrap();
    assert_eq!(store.last_entry_id(a), None);
    assert!(read_all(&store, a, 0).await.is_empty());
    store.append(&[big(a, 21)]).await.unwrap();
    assert_eq!(ids(&read_all(&store, a, 0).await), [21]);
}

#[tokio::test]
async fn an_entry_larger_than_a_segment_gets_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = WalConfig::new(dir.path());
    config.segment_size = ReadableSize::mib(1);
    let store = LocalLogStore::open(config).await.unwrap();
    let r = region(1);
    store.append(&[entry(r, 1)]).await.unwrap();
    let huge = Entry {
        region_id: r,
        entry_id: 2,
        data: payload(r, 2, 3 << 20),
    };
    store.append(std::slice::from_ref(&huge)).await.unwrap();
    store.append(&[entry(r, 3)]).await.unwrap();
    assert_eq!(store.segment_ids().len(), 3);
    let got = read_all(&store, r, 0).await;
    assert_eq!(got[1], huge);
    assert_eq!(ids(&got), [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_all_land_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = WalConfig::new(dir.path());
    config.segment_size = ReadableSize::mib(1);
    let store = Arc::new(LocalLogStore::open(config.clone()).await.unwrap());
    let mut tasks = Vec::new();
    for t in 0..16u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let r = region(t);
            for id in 1..=100u64 {
                let e = Entry {
                    region_id: r,
                    entry_id: id,
                    data: payload(r, id, 1000 + t as usize),
                };
                store.append(&[e]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let check = |store: Arc<LocalLogStore>| async move {
        for t in 0..16u32 {
            let r = region(t);
            let got = read_all(&store, r, 0).await;
            assert_eq!(ids(&got), (1..=100).collect::<Vec<_>>(), "region {r}");
            for e in got {
                assert_eq!(e.data, payload(r, e.entry_id, 1000 + t as usize));
            }
        }
    };
    check(store.clone()).await;
    store.close().await.unwrap();
    drop(store);
    check(Arc::new(LocalLogStore::open(config).await.unwrap())).await;
}

#[tokio::test]
async fn trait_object_works() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn LogStore> = Arc::new(open(dir.path()).await);
    let r = region(1);
    store.append_batch(vec![entry(r, 1)]).await.unwrap();
    let err = store.append_batch(vec![entry(r, 1)]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.downcast_ref::<Error>().is_some());
    assert_eq!(store.last_entry_id(r), Some(1));
    store.obsolete(r, 1).await.unwrap();
    store.stop().await.unwrap();
}
