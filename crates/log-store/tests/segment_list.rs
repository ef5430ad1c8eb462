//! The segment list (`SEGMENTS`): a deleted segment, the newest included, fails the open
//! naming the file; interrupted purges and creates are told apart from loss.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use log_store::error::Error;
use log_store::local::list::{LIST_FILE, SegmentList, decode_list, encode_list};
use log_store::{LocalLogStore, WalConfig};
use store_api::config::ReadableSize;
use store_api::error::{ErrorExt, ErrorKind};

fn small_segments(dir: &Path) -> WalConfig {
    WalConfig {
        segment_size: ReadableSize::mib(1),
        ..WalConfig::new(dir)
    }
}

/// Appends 40 entries of 64 KiB to region 1 (three segments of 1 MiB) and closes the store
/// without marking anything obsolete; returns the segment files.
async fn three_segments(dir: &Path) -> Vec<PathBuf> {
    let store = LocalLogStore::open(small_segments(dir)).await.unwrap();
    append_sized(&store, 1..=40, 64 << 10).await;
    store.close().await.unwrap();
    drop(store);
    let segs = segments(dir);
    assert_eq!(segs.len(), 3, "{segs:?}");
    segs
}

fn list_of(dir: &Path) -> SegmentList {
    decode_list(&std::fs::read(dir.join(LIST_FILE)).unwrap()).unwrap()
}

/// Every file of `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    v.sort();
    v
}

async fn open_err(config: WalConfig) -> Error {
    LocalLogStore::open(config).await.unwrap_err()
}

/// The case the list exists for: the newest segment deleted leaves no hole in any region's
/// entry ids, yet its entries are gone. Writable and read-only opens refuse, naming the file,
/// and change nothing.
#[tokio::test]
async fn a_deleted_newest_segment_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let segs = three_segments(dir.path()).await;
    assert_eq!(list_of(dir.path()).live, [1, 2, 3].into());
    for victim in [2usize, 1, 0] {
        let case = tempfile::tempdir().unwrap();
        for p in &segs {
            std::fs::copy(p, case.path().join(p.file_name().unwrap())).unwrap();
        }
        std::fs::copy(dir.path().join(LIST_FILE), case.path().join(LIST_FILE)).unwrap();
        std::fs::remove_file(case.path().join(segs[victim].file_name().unwrap())).unwrap();
        let before = snapshot(case.path());
        for read_only in [true, false] {
            let err = open_err(WalConfig {
                read_only,
                ..small_segments(case.path())
            })
            .await;
            assert!(matches!(err, Error::SegmentMissing { .. }), "{err}");
            assert_eq!(err.kind(), ErrorKind::Corrupted);
            let text = err.to_string();
            let name = segs[victim].file_name().unwrap().to_str().unwrap();
            assert!(text.contains(name), "{text}");
            assert!(text.contains(LIST_FILE), "{text}");
        }
        let mut after = snapshot(case.path());
        // The writable open created the lock file; nothing else changed.
        after.retain(|(p, _)| !p.ends_with("LOCK"));
        assert_eq!(after, before, "victim {victim}");
    }
}

/// Every segment deleted (the directory emptied but for the list) is loss too.
#[tokio::test]
async fn an_emptied_wal_directory_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    for p in three_segments(dir.path()).await {
        std::fs::remove_file(p).unwrap();
    }
    let err = open_err(WalConfig::new(dir.path())).await;
    assert!(matches!(err, Error::SegmentMissing { .. }), "{err}");
}

/// A purge that a crash interrupted (the list written, the file not yet deleted) leaves an
/// unlisted segment below `next_id`: a writable open deletes it, a read-only one skips it;
/// neither reads its entries.
#[tokio::test]
async fn an_unlisted_older_segment_is_a_purge_to_finish() {
    let dir = tempfile::tempdir().unwrap();
    let segs = three_segments(dir.path()).await;
    let mut list = list_of(dir.path());
    list.live.remove(&1);
    std::fs::write(dir.path().join(LIST_FILE), encode_list(&list)).unwrap();

    let store = LocalLogStore::open(WalConfig {
        read_only: true,
        ..small_segments(dir.path())
    })
    .await
    .unwrap();
    let first_read_only = ids(&read_all(&store, region(1), 0).await)[0];
    drop(store);
    assert!(segs[0].exists());

    let store = LocalLogStore::open(small_segments(dir.path()))
        .await
        .unwrap();
    let read = ids(&read_all(&store, region(1), 0).await);
    assert_eq!(read[0], first_read_only);
    assert!(read[0] > 1, "segment 1's entries are not read: {read:?}");
    assert_eq!(*read.last().unwrap(), 40);
    assert!(!segs[0].exists());
    assert_eq!(list_of(dir.path()).live, [2, 3].into());
}

/// A crash right after a segment was created and before it was listed leaves an unlisted
/// segment at `next_id`: it holds no record and the open accepts (and lists) it.
#[tokio::test]
async fn a_segment_created_before_its_listing_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    three_segments(dir.path()).await;
    std::fs::write(
        dir.path().join("00000000000000000004.wal"),
        log_store::local::format::encode_header(4),
    )
    .unwrap();
    let store = LocalLogStore::open(small_segments(dir.path()))
        .await
        .unwrap();
    assert_eq!(ids(&read_all(&store, region(1), 0).await).len(), 40);
    store.append(&[entry(region(1), 41)]).await.unwrap();
    assert_eq!(list_of(dir.path()).live, [1, 2, 3, 4].into());
    assert_eq!(list_of(dir.path()).next_id, 5);
}

/// A directory written before the list existed opens and gets one; ids go on from the
/// highest segment found.
#[tokio::test]
async fn a_directory_without_a_list_gets_one() {
    let dir = tempfile::tempdir().unwrap();
    three_segments(dir.path()).await;
    std::fs::remove_file(dir.path().join(LIST_FILE)).unwrap();
    let read_only = LocalLogStore::open(WalConfig {
        read_only: true,
        ..small_segments(dir.path())
    })
    .await
    .unwrap();
    drop(read_only);
    assert!(
        !dir.path().join(LIST_FILE).exists(),
        "read-only writes nothing"
    );
    let store = LocalLogStore::open(small_segments(dir.path()))
        .await
        .unwrap();
    assert_eq!(ids(&read_all(&store, region(1), 0).await).len(), 40);
    let list = list_of(dir.path());
    assert_eq!(list.live, [1, 2, 3].into());
    assert_eq!(list.next_id, 4);
}

/// Segment ids are never reused: after a clean close removed every segment, the next open
/// continues after the last id, so an old copy of a segment can never pass for a new one.
#[tokio::test]
async fn ids_go_on_after_a_clean_close_removed_every_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.append(&[entry(region(1), 1)]).await.unwrap();
    store.mark_obsolete(region(1), 1).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    assert!(segments(dir.path()).is_empty());
    let list = list_of(dir.path());
    assert!(list.live.is_empty());
    assert_eq!(list.next_id, 2);
    let store = open(dir.path()).await;
    assert_eq!(store.segment_ids(), [2]);
    drop(store);
    assert_eq!(list_of(dir.path()).live, [2].into());
}

/// Purged segments leave the list before their files go, and rolls list the new segment
/// before writing to it: the list always names exactly the files that hold live entries.
#[tokio::test]
async fn the_list_follows_rolls_and_purges() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalLogStore::open(small_segments(dir.path()))
        .await
        .unwrap();
    let r = region(1);
    for id in 1..=40 {
        append_sized(&store, id..=id, 64 << 10).await;
        let on_disk: Vec<u64> = store.segment_ids();
        assert_eq!(list_of(dir.path()).live, on_disk.iter().copied().collect());
    }
    let purged = store.mark_obsolete(r, 35).await.unwrap();
    assert!(!purged.is_empty());
    let live = list_of(dir.path()).live;
    assert!(purged.iter().all(|id| !live.contains(id)));
    assert_eq!(segments(dir.path()).len(), live.len());
}

/// A damaged list is corruption naming the file; the open changes nothing.
#[tokio::test]
async fn a_damaged_list_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    three_segments(dir.path()).await;
    let path = dir.path().join(LIST_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let err = open_err(WalConfig::new(dir.path())).await;
    assert!(matches!(err, Error::Corrupted { .. }), "{err}");
    assert!(err.to_string().contains(LIST_FILE), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}
