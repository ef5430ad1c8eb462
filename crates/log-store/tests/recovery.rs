//! Recovery of the local WAL from torn tails and damaged bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

mod common;

use std::path::Path;

use bytes::Bytes;
use common::*;
use log_store::error::Error;
use log_store::local::format::{HEADER_LEN, record_len};
use log_store::{LocalLogStore, WalConfig};
use store_api::config::ReadableSize;
use store_api::logstore::Entry;

/// Writes `n` entries of region 1 with varying sizes; returns them and each record's end offset.
async fn write_entries(dir: &Path, n: u64) -> (Vec<Entry>, Vec<usize>) {
    let store = open(dir).await;
    let r = region(1);
    let mut entries = Vec::new();
    let mut ends = Vec::new();
    let mut end = HEADER_LEN;
    for id in 1..=n {
        let e = Entry {
            region_id: r,
            entry_id: id,
            data: payload(r, id, 20 + (id as usize * 7) % 40),
        };
        store.append(std::slice::from_ref(&e)).await.unwrap();
        end += record_len(e.data.len());
        ends.push(end);
        entries.push(e);
    }
    store.close().await.unwrap();
    (entries, ends)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// Cut the file at every byte of the last three records: the whole records before the cut
/// come back, the log accepts new appends, and those survive a second reopen.
#[tokio::test]
async fn torn_tail_at_every_byte_then_append_then_reopen() {
    let src = tempfile::tempdir().unwrap();
    let (entries, ends) = write_entries(src.path(), 8).await;
    let r = region(1);
    let start = ends[ends.len() - 4];
    let file_len = *ends.last().unwrap();
    for cut in start..file_len {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(src.path(), dir.path());
        let seg = only_segment(dir.path());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut as u64)
            .unwrap();

        let kept = ends.iter().filter(|e| **e <= cut).count();
        let store = open(dir.path()).await;
        assert_eq!(
            read_all(&store, r, 0).await,
            entries[..kept],
            "cut at {cut}"
        );
        assert_eq!(
            std::fs::metadata(&seg).unwrap().len(),
            ends[kept - 1] as u64,
            "tail truncated"
        );
        let next = Entry {
            region_id: r,
            entry_id: 100,
            data: Bytes::from_static(b"after the cut"),
        };
        store.append(std::slice::from_ref(&next)).await.unwrap();
        store.close().await.unwrap();
        drop(store);

        let store = open(dir.path()).await;
        let mut want = entries[..kept].to_vec();
        want.push(next);
        assert_eq!(
            read_all(&store, r, 0).await,
            want,
            "cut at {cut}, after reopen"
        );
    }
}

/// Flip every bit of a small segment, one at a time: the header and middle records are
/// reported as corruption naming the file and offset; the last record is dropped as a torn
/// tail; nothing panics and nothing wrong is returned.
#[tokio::test]
async fn single_bit_flips_everywhere() {
    let src = tempfile::tempdir().unwrap();
    let (entries, ends) = write_entries(src.path(), 4).await;
    let r = region(1);
    let last_start = ends[ends.len() - 2];
    let file_len = *ends.last().unwrap();
    let record_of = |pos: usize| ends.iter().position(|e| pos < *e).unwrap();
    for pos in 0..file_len {
        for bit in [0u8, 3, 7] {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(src.path(), dir.path());
            let seg = only_segment(dir.path());
            let mut bytes = std::fs::read(&seg).unwrap();
            bytes[pos] ^= 1 << bit;
            std::fs::write(&seg, &bytes).unwrap();

            let result = LocalLogStore::open(WalConfig::new(dir.path())).await;
            if pos < HEADER_LEN {
                let err = result.unwrap_err();
                assert!(matches!(err, Error::Corrupted { .. }), "pos {pos}: {err}");
                assert!(
                    err.to_string().contains("00000000000000000001.wal"),
                    "{err}"
                );
            } else if pos >= last_start {
                let store = result.unwrap();
                assert_eq!(
                    read_all(&store, r, 0).await,
                    entries[..entries.len() - 1],
                    "pos {pos}"
                );
            } else {
                let err = result.unwrap_err();
                let rec = record_of(pos);
                let rec_start = if rec == 0 { HEADER_LEN } else { ends[rec - 1] };
                match &err {
                    Error::Corrupted { path, offset, .. } => {
                        assert_eq!(*path, seg);
                        assert_eq!(*offset, rec_start as u64, "pos {pos}");
                    }
                    other => panic!("pos {pos}: {other}"),
                }
                assert!(
                    err.to_string().contains(&format!("offset {rec_start}")),
                    "{err}"
                );
            }
        }
    }
}

#[tokio::test]
async fn damage_in_an_older_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = WalConfig::new(dir.path());
    config.segment_size = ReadableSize::mib(1);
    let store = LocalLogStore::open(config.clone()).await.unwrap();
    append_sized(&store, 1..=40, 64 << 10).await;
    store.close().await.unwrap();
    drop(store);
    let segs = segments(dir.path());
    assert!(segs.len() >= 2);
    // Cut the last record of the first segment: a torn tail, but not at the end of the log.
    let len = std::fs::metadata(&segs[0]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segs[0])
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let err = LocalLogStore::open(config).await.unwrap_err();
    assert!(err.to_string().contains("not the last one"), "{err}");
    assert!(
        err.to_string().contains("00000000000000000001.wal"),
        "{err}"
    );
}

/// A segment is named only once its header is synced, so a segment emptied or cut below its
/// header lost what it held: an error naming the file, never a silent rewrite.
#[tokio::test]
async fn an_emptied_or_cut_segment_is_an_error() {
    for len in [0usize, 4, 23] {
        let dir = tempfile::tempdir().unwrap();
        write_entries(dir.path(), 3).await;
        let seg = only_segment(dir.path());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len as u64)
            .unwrap();
        let err = LocalLogStore::open(WalConfig::new(dir.path()))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Corrupted { .. }), "len {len}: {err}");
        let text = err.to_string();
        assert!(text.contains("00000000000000000001.wal"), "{text}");
        assert!(text.contains("header incomplete"), "{text}");
    }
}

/// A crash while creating a segment leaves it under its temporary name: removed at open, and
/// the log continues in the segment before it.
#[tokio::test]
async fn a_half_created_segment_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), 3).await;
    let creating = dir.path().join("00000000000000000002.wal.creating");
    std::fs::write(&creating, b"MITO").unwrap();
    let store = open(dir.path()).await;
    assert!(!creating.exists());
    assert_eq!(ids(&read_all(&store, region(1), 0).await), [1, 2, 3]);
    store.append(&[entry(region(1), 4)]).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let store = open(dir.path()).await;
    assert_eq!(ids(&read_all(&store, region(1), 0).await), [1, 2, 3, 4]);
}

#[tokio::test]
async fn a_segment_whose_header_names_another_id_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), 2).await;
    std::fs::rename(
        dir.path().join("00000000000000000001.wal"),
        dir.path().join("00000000000000000005.wal"),
    )
    .unwrap();
    // Without the segment list (which would report segment 1 missing first), the header
    // check is what catches the rename.
    std::fs::remove_file(dir.path().join(log_store::local::list::LIST_FILE)).unwrap();
    let err = LocalLogStore::open(WalConfig::new(dir.path()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("header names segment 1"), "{err}");
}

#[tokio::test]
async fn foreign_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), 2).await;
    std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    let store = open(dir.path()).await;
    assert_eq!(ids(&read_all(&store, region(1), 0).await), [1, 2]);
}

/// Torn tails of every size the engine writes, from 1 KiB to the largest allowed entry
/// (64 MiB), cut at every kind of offset (inside the record header, at the payload's start,
/// at page boundaries, in the middle, one byte short) and also zero-filled from the cut to the
/// old end (a power cut that kept the file's length but not its last pages): the records
/// before come back, new appends land, and both survive a second reopen.
#[tokio::test]
async fn torn_tails_of_every_entry_size() {
    let r = region(1);
    for size in [1 << 10, 64 << 10, (1 << 20) + 7, 8 << 20, 64 << 20] {
        let src = tempfile::tempdir().unwrap();
        let store = open(src.path()).await;
        let entries: Vec<Entry> = (1..=3)
            .map(|id| Entry {
                region_id: r,
                entry_id: id,
                data: payload(r, id, if id == 3 { size } else { 1000 }),
            })
            .collect();
        for e in &entries {
            store.append(std::slice::from_ref(e)).await.unwrap();
        }
        store.close().await.unwrap();
        drop(store);
        // The largest entry does not fit in the 64 MiB segment after the others: it gets a
        // segment of its own.
        let own_segment = segments(src.path()).len() == 2;
        let last_start = if own_segment {
            HEADER_LEN
        } else {
            HEADER_LEN + 2 * record_len(1000)
        };
        let end = last_start + record_len(size);
        let last_segment = || segments(src.path()).pop().unwrap();
        assert_eq!(std::fs::metadata(last_segment()).unwrap().len(), end as u64);
        let page_after = |at: usize| (at / 4096 + 1) * 4096;
        let mut cuts = vec![
            last_start + 1,
            last_start + 8,
            last_start + 19,
            last_start + 20,
            last_start + 35,
            last_start + 36,
            page_after(last_start),
            page_after(last_start) + 4096,
            last_start + size / 2,
            page_after(last_start + size / 2),
            end.saturating_sub(4096),
            end - 1,
        ];
        cuts.retain(|c| *c > last_start && *c < end);
        cuts.sort_unstable();
        cuts.dedup();
        for cut in cuts {
            for zero_fill in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                copy_dir(src.path(), dir.path());
                let seg = dir.path().join(last_segment().file_name().unwrap());
                let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
                file.set_len(cut as u64).unwrap();
                if zero_fill {
                    file.set_len(end as u64).unwrap();
                }
                drop(file);
                let what = format!("size {size}, cut {cut}, zero-filled {zero_fill}");
                let store = LocalLogStore::open(WalConfig::new(dir.path()))
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(read_all(&store, r, 0).await, entries[..2], "{what}");
                assert_eq!(
                    std::fs::metadata(&seg).unwrap().len(),
                    last_start as u64,
                    "{what}: tail truncated"
                );
                let next = entry(r, 10);
                store.append(std::slice::from_ref(&next)).await.unwrap();
                store.close().await.unwrap();
                drop(store);
                let store = open(dir.path()).await;
                let mut want = entries[..2].to_vec();
                want.push(next);
                assert_eq!(read_all(&store, r, 0).await, want, "{what}, after reopen");
            }
        }
    }
}

/// Damage inside a large record that is followed by a whole record is corruption, found
/// however far the next record is (no search budget), and the error names file and offset.
#[tokio::test]
async fn damage_before_a_later_record_is_corruption_at_any_distance() {
    let r = region(1);
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let big = 16 << 20;
    for (id, len) in [(1, 1000), (2, big), (3, 1000)] {
        store
            .append(&[Entry {
                region_id: r,
                entry_id: id,
                data: payload(r, id, len),
            }])
            .await
            .unwrap();
    }
    store.close().await.unwrap();
    drop(store);
    let seg = only_segment(dir.path());
    let second = HEADER_LEN + record_len(1000);
    for pos in [second, second + 9, second + 40, second + big / 2] {
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[pos] ^= 0x10;
        let copy = tempfile::tempdir().unwrap();
        std::fs::write(copy.path().join(seg.file_name().unwrap()), &bytes).unwrap();
        let err = LocalLogStore::open(WalConfig::new(copy.path()))
            .await
            .unwrap_err();
        match &err {
            Error::Corrupted { offset, .. } => assert_eq!(*offset, second as u64, "pos {pos}"),
            other => panic!("pos {pos}: {other}"),
        }
        let text = err.to_string();
        assert!(text.contains("00000000000000000001.wal"), "{text}");
        assert!(
            text.contains(&format!(
                "valid record at offset {}",
                second + record_len(big)
            )),
            "{text}"
        );
    }
}

/// A directory written by format version 1 still opens: its records are read, its torn tail
/// is cut, and new appends go to a new segment of the current version.
#[tokio::test]
async fn a_version_1_log_opens_and_continues_in_version_2() {
    use log_store::local::format::{encode_header_version, encode_record_v1};
    let r = region(1);
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = encode_header_version(1, 1).to_vec();
    let old: Vec<Entry> = (1..=3).map(|id| entry(r, id)).collect();
    for e in &old {
        encode_record_v1(e.region_id, e.entry_id, &e.data, &mut bytes);
    }
    let whole = bytes.len();
    encode_record_v1(r, 4, &payload(r, 4, 5000), &mut bytes);
    bytes.truncate(whole + 100);
    std::fs::write(dir.path().join("00000000000000000001.wal"), &bytes).unwrap();

    let store = open(dir.path()).await;
    assert_eq!(read_all(&store, r, 0).await, old);
    let seg1 = dir.path().join("00000000000000000001.wal");
    assert_eq!(std::fs::metadata(&seg1).unwrap().len(), whole as u64);
    store.append(&[entry(r, 4)]).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let seg2 = std::fs::read(dir.path().join("00000000000000000002.wal")).unwrap();
    assert_eq!(
        &seg2[8..10],
        &2u16.to_le_bytes(),
        "new segment is version 2"
    );
    let store = open(dir.path()).await;
    assert_eq!(ids(&read_all(&store, r, 0).await), [1, 2, 3, 4]);
}

/// A read-only open changes nothing on disk: a torn tail stays (and is not read), no segment
/// is created, a missing directory is not created, appends fail with `ReadOnly`.
#[tokio::test]
async fn a_read_only_open_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (entries, ends) = write_entries(dir.path(), 4).await;
    let seg = only_segment(dir.path());
    let cut = ends[2] + 5;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(cut as u64)
        .unwrap();
    let before = std::fs::read(&seg).unwrap();
    let config = WalConfig {
        read_only: true,
        ..WalConfig::new(dir.path())
    };
    let store = LocalLogStore::open(config.clone()).await.unwrap();
    assert_eq!(read_all(&store, region(1), 0).await, entries[..3]);
    let err = store.append(&[entry(region(1), 9)]).await.unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err}");
    store.mark_obsolete(region(1), u64::MAX).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    assert_eq!(std::fs::read(&seg).unwrap(), before, "segment untouched");
    assert_eq!(segments(dir.path()), [seg]);

    let missing = dir.path().join("nowhere");
    let store = LocalLogStore::open(WalConfig {
        read_only: true,
        ..WalConfig::new(&missing)
    })
    .await
    .unwrap();
    assert!(read_all(&store, region(1), 0).await.is_empty());
    assert!(!missing.exists());
}
