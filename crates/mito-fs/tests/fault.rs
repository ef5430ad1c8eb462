//! What a simulated power cut keeps, call by call.
#![cfg(feature = "fault")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::io::Write;
use std::path::Path;

use mito_fs::Fs;
use mito_fs::fault::{Cut, FaultFs, Op};

fn read(p: &Path) -> Option<Vec<u8>> {
    std::fs::read(p).ok()
}

#[tokio::test]
async fn only_synced_bytes_and_synced_entries_survive() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A file that existed before (durable) gets appends, half of them synced.
    std::fs::write(d.join("old"), b"base").unwrap();
    let fs = FaultFs::new(1);
    let mut old = fs.open_append(&d.join("old")).unwrap();
    old.write_all(b"+synced").unwrap();
    old.sync_data().unwrap();
    old.write_all(b"+lost").unwrap();
    // A new file whose directory is synced, and one whose directory is not.
    let mut kept = fs.create(&d.join("kept")).unwrap();
    kept.write_all(b"kept").unwrap();
    kept.sync_all().unwrap();
    fs.sync_dir(d).unwrap();
    let mut gone = fs.create(&d.join("gone")).unwrap();
    gone.write_all(b"gone").unwrap();
    gone.sync_all().unwrap();
    // A rename and a removal that were never made durable.
    fs.rename(&d.join("kept"), &d.join("renamed")).unwrap();
    fs.remove_file(&d.join("old")).unwrap();

    let report = fs.power_cut(Cut::DropUnsynced).await.unwrap();
    assert_eq!(read(&d.join("old")).unwrap(), b"base+synced");
    assert_eq!(read(&d.join("kept")).unwrap(), b"kept");
    assert_eq!(read(&d.join("renamed")), None);
    assert_eq!(read(&d.join("gone")), None);
    assert_eq!(report.entries_undone, 3);
    // `old` lost its unsynced "+lost" by coming back from its removal with what was durable.
    // The machine is off: nothing goes through any more.
    assert!(fs.create(&d.join("late")).is_err());
    assert!(old.write_all(b"x").is_err());
}

#[tokio::test]
async fn a_tear_keeps_a_prefix_of_the_unsynced_bytes() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let fs = FaultFs::new(seed);
        let mut f = fs.create(&path).unwrap();
        f.write_all(b"0123").unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(dir.path()).unwrap();
        f.write_all(b"456789").unwrap();
        fs.power_cut(Cut::Tear).await.unwrap();
        let bytes = read(&path).unwrap();
        assert!(bytes.len() >= 4 && b"0123456789".starts_with(&bytes));
        seen.insert(bytes.len());
    }
    assert!(seen.len() > 2, "tears fall at different bytes: {seen:?}");
}

#[tokio::test]
async fn a_cut_at_a_write_tears_it_and_stops_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let fs = FaultFs::new(7);
    let mut f = fs.create(&path).unwrap();
    fs.sync_dir(dir.path()).unwrap();
    fs.cut_at(2);
    f.write_all(&[1u8; 100]).unwrap();
    assert!(f.write_all(&[2u8; 100]).is_err());
    assert!(fs.is_dead());
    assert!(f.sync_data().is_err());
    let on_disk = read(&path).unwrap();
    assert!(
        on_disk.len() >= 100 && on_disk.len() < 200,
        "{}",
        on_disk.len()
    );
    fs.power_cut(Cut::DropUnsynced).await.unwrap();
    // Nothing was ever synced.
    assert_eq!(read(&path).unwrap(), b"");
}

#[tokio::test]
async fn injected_failures_fire_once_at_the_nth_call() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::new(3);
    let mut f = fs.create(&dir.path().join("f")).unwrap();
    fs.fail(Op::Sync, 2);
    f.sync_data().unwrap();
    let err = f.sync_data().unwrap_err();
    assert!(err.to_string().contains("injected fault"), "{err}");
    f.sync_data().unwrap();
    assert_eq!(fs.stats().failures, 1);
    assert!(!fs.is_dead());
}

#[tokio::test]
async fn objects_are_durable_once_their_directory_is_synced() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let fs = FaultFs::new(5);
    let builder = opendal::services::Fs::default()
        .root(root.to_str().unwrap())
        .atomic_write_dir(root.join(".staging").to_str().unwrap());
    let op = fs.operator(opendal::Operator::new(builder).unwrap());
    op.write("a/synced.bin", vec![1u8; 10]).await.unwrap();
    fs.sync_dir(&root.join("a")).unwrap();
    fs.sync_dir(&root).unwrap();
    op.write("a/unsynced.bin", vec![2u8; 10]).await.unwrap();
    op.write("b/new_dir.bin", vec![3u8; 10]).await.unwrap();
    fs.sync_dir(&root.join("b")).unwrap();
    op.delete("a/synced.bin").await.unwrap();
    assert_eq!(read(&root.join("a/synced.bin")), None);

    fs.power_cut(Cut::DropUnsynced).await.unwrap();
    assert_eq!(read(&root.join("a/synced.bin")).unwrap(), vec![1u8; 10]);
    assert_eq!(read(&root.join("a/unsynced.bin")), None);
    // Its file was synced into `b`, but `b` itself never into the root.
    assert!(!root.join("b").exists());
    assert!(op.write("a/late.bin", vec![4u8]).await.is_err());
}
