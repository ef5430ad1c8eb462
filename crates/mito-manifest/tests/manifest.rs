//! The manifest on a real operator: updates, checkpoints, reopen, damage and compatibility.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

use std::path::PathBuf;

use arrow_schema::{DataType, TimeUnit};
use mito_manifest::action::{
    RegionChange, RegionEdit, RegionOptionsChange, RegionRemove, RegionTruncate,
};
use mito_manifest::error::Error;
use mito_manifest::format::{self, Checkpoint, Delta, Pointer};
use mito_manifest::{Action, ManifestOptions, RegionManifest, RegionManifestManager};
use mito_sst::{FileId, FileMeta};
use opendal::Operator;
use store_api::RegionId;
use store_api::error::{ErrorExt, ErrorKind};
use store_api::metadata::{ColumnMetadata, RegionMetadata, SemanticType};
use store_api::time::TimeSpan;

const REGION_DIR: &str = "data/region_1/";
const DIR: &str = "data/region_1/manifest/";
const REGION: RegionId = RegionId::new(1024, 1);

fn metadata(version: u64) -> RegionMetadata {
    let mut b = test_util::metadata::builder(
        REGION,
        0,
        &[("host", DataType::Utf8)],
        ("ts", TimeUnit::Millisecond),
        &[("cpu", DataType::Float64)],
    );
    b.schema_version(version);
    if version > 0 {
        b.push_column(ColumnMetadata::new(
            3,
            "mem",
            DataType::Int64,
            SemanticType::Field,
        ));
    }
    b.build().unwrap()
}

fn file(n: u128) -> FileMeta {
    FileMeta {
        region_id: REGION,
        file_id: FileId::from_u128(n),
        time_range: TimeSpan {
            min: i64::try_from(n).unwrap() * 1000,
            max: i64::try_from(n).unwrap() * 1000 + 999,
        },
        min_key: vec![1, 2],
        max_key: vec![3, 4],
        level: 0,
        num_rows: 100,
        num_row_groups: 1,
        file_size: 2048,
        max_sequence: u64::try_from(n).unwrap() * 100,
        checksum: 1,
        tail_offset: 1000,
        tail_checksum: 2,
    }
}

fn flush(n: u128) -> Action {
    Action::Edit(RegionEdit {
        files_to_add: vec![file(n)],
        flushed_entry_id: Some(u64::try_from(n).unwrap() * 10),
        flushed_sequence: Some(u64::try_from(n).unwrap() * 100),
        ..RegionEdit::default()
    })
}

fn options() -> ManifestOptions {
    ManifestOptions {
        checkpoint_distance: 10,
    }
}

async fn names(op: &Operator) -> Vec<String> {
    let mut n: Vec<String> = op
        .list(DIR)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name().to_string())
        .filter(|n| !n.is_empty() && !n.ends_with('/'))
        .collect();
    n.sort();
    n
}

/// A manifest at version 25: flushes, a compaction, an alter, checkpoints at 10 and 20.
/// Returns the state after every version (index = version).
async fn build(op: &Operator) -> Vec<Option<RegionManifest>> {
    let mut m = RegionManifestManager::create(op.clone(), REGION_DIR, metadata(0), options())
        .await
        .unwrap();
    let mut states = vec![None, Some(m.manifest().clone())];
    for v in 2..=25u64 {
        let action = match v {
            12 => Action::Edit(RegionEdit {
                files_to_add: vec![file(100)],
                files_to_remove: vec![FileId::from_u128(2), FileId::from_u128(3)],
                compaction_time_window_secs: Some(3600),
                ..RegionEdit::default()
            }),
            15 => Action::Change(RegionChange {
                metadata: metadata(1),
            }),
            _ => flush(u128::from(v)),
        };
        assert_eq!(m.update(vec![action]).await.unwrap(), v);
        states.push(Some(m.manifest().clone()));
    }
    states
}

async fn open(op: &Operator) -> Result<RegionManifest, Error> {
    RegionManifestManager::open(op.clone(), REGION_DIR, options())
        .await
        .map(|m| m.unwrap().manifest().clone())
}

fn name(v: u64, ext: &str) -> String {
    format!("{DIR}{v:020}.{ext}")
}

#[tokio::test]
async fn updates_checkpoints_and_reopen() {
    let op = mito_sst::store::memory_operator();
    assert!(
        RegionManifestManager::open(op.clone(), REGION_DIR, options())
            .await
            .unwrap()
            .is_none()
    );
    let states = build(&op).await;
    let last = states[25].clone().unwrap();
    assert_eq!(last.manifest_version, 25);
    assert_eq!(last.metadata, metadata(1));
    assert_eq!(last.flushed_entry_id, 250);
    assert_eq!(last.compaction_time_window_secs, Some(3600));
    assert!(!last.files.contains_key(&FileId::from_u128(2)));
    assert!(last.files.contains_key(&FileId::from_u128(100)));
    assert_eq!(
        last.files.len(),
        22 - 2 + 1,
        "22 flushes, a compaction of 2 into 1"
    );
    assert_eq!(open(&op).await.unwrap(), last);
    // One generation of history kept: checkpoint 10 and deltas 11..=25.
    let mut want: Vec<String> = (11..=25).map(|v| format!("{v:020}.json")).collect();
    want.push(format!("{:020}.checkpoint", 10));
    want.push(format!("{:020}.checkpoint", 20));
    want.push("_last_checkpoint".to_string());
    want.sort();
    assert_eq!(names(&op).await, want);

    // Creating over it is refused; reopening and updating continues the versions.
    let err = RegionManifestManager::create(op.clone(), REGION_DIR, metadata(0), options())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    let mut m = RegionManifestManager::open(op.clone(), REGION_DIR, options())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.update(vec![flush(500)]).await.unwrap(), 26);
    assert_eq!(open(&op).await.unwrap(), *m.manifest());
}

#[tokio::test]
async fn invalid_actions_change_nothing() {
    let op = mito_sst::store::memory_operator();
    build(&op).await;
    let mut m = RegionManifestManager::open(op.clone(), REGION_DIR, options())
        .await
        .unwrap()
        .unwrap();
    let before = m.manifest().clone();
    let files_before = names(&op).await;
    let mut foreign = file(900);
    foreign.region_id = RegionId::new(1, 1);
    let bad = [
        vec![Action::Change(RegionChange {
            metadata: metadata(0),
        })], // schema version goes back
        vec![flush(4)], // file 4 already present
        vec![Action::Edit(RegionEdit {
            files_to_add: vec![foreign],
            ..RegionEdit::default()
        })],
        vec![Action::Remove(RegionRemove {
            region_id: RegionId::new(5, 5),
        })],
        vec![flush(901), flush(901)],
    ];
    for actions in bad {
        let err = m.update(actions).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(err.to_string().contains("1024"), "{err}");
    }
    assert_eq!(m.manifest(), &before);
    assert_eq!(names(&op).await, files_before);
    // Truncate then remove; a removed region takes nothing more.
    m.update(vec![Action::Truncate(RegionTruncate {
        truncated_entry_id: 1000,
        truncated_sequence: 9000,
    })])
    .await
    .unwrap();
    assert!(m.manifest().files.is_empty());
    assert_eq!(m.manifest().flushed_sequence, 9000);
    m.update(vec![Action::Remove(RegionRemove { region_id: REGION })])
        .await
        .unwrap();
    assert_eq!(
        m.update(vec![flush(902)]).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(open(&op).await.unwrap().removed);
}

async fn damage(op: &Operator, path: String, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = op.read(&path).await.unwrap().to_vec();
    f(&mut bytes);
    op.write(&path, bytes).await.unwrap();
}

#[tokio::test]
async fn damage_is_detected_and_fallbacks_are_complete() {
    // Each case: what to do, and the version the open must give (None: refuse).
    type Case = (
        &'static str,
        Box<dyn Fn(&Operator) -> futures::future::BoxFuture<'_, ()>>,
        Option<u64>,
    );
    let cases: Vec<Case> = vec![
        (
            "flip latest delta",
            Box::new(|op| {
                Box::pin(damage(op, name(25, "json"), |b| {
                    let n = b.len();
                    b[n - 3] ^= 1;
                }))
            }),
            None,
        ),
        (
            "truncate latest delta",
            Box::new(|op| Box::pin(damage(op, name(25, "json"), |b| b.truncate(b.len() / 2)))),
            None,
        ),
        (
            "delete latest delta",
            Box::new(|op| Box::pin(async move { op.delete(&name(25, "json")).await.unwrap() })),
            Some(24),
        ),
        (
            "delete a middle delta",
            Box::new(|op| Box::pin(async move { op.delete(&name(22, "json")).await.unwrap() })),
            None,
        ),
        (
            "flip latest checkpoint",
            Box::new(|op| {
                Box::pin(damage(op, name(20, "checkpoint"), |b| {
                    let n = b.len();
                    b[n / 2] ^= 0x10;
                }))
            }),
            Some(25),
        ),
        (
            "truncate latest checkpoint",
            Box::new(|op| Box::pin(damage(op, name(20, "checkpoint"), |b| b.truncate(10)))),
            Some(25),
        ),
        (
            "delete latest checkpoint",
            Box::new(|op| {
                Box::pin(async move { op.delete(&name(20, "checkpoint")).await.unwrap() })
            }),
            Some(25),
        ),
        (
            "flip pointer",
            Box::new(|op| {
                Box::pin(damage(op, format!("{DIR}_last_checkpoint"), |b| {
                    let n = b.len();
                    b[n - 2] ^= 4;
                }))
            }),
            Some(25),
        ),
        (
            "truncate pointer",
            Box::new(|op| {
                Box::pin(damage(op, format!("{DIR}_last_checkpoint"), |b| {
                    b.truncate(5)
                }))
            }),
            Some(25),
        ),
        (
            "delete pointer",
            Box::new(|op| {
                Box::pin(async move { op.delete(&format!("{DIR}_last_checkpoint")).await.unwrap() })
            }),
            Some(25),
        ),
        (
            "damaged checkpoint and a delta it would need",
            Box::new(|op| {
                Box::pin(async move {
                    damage(op, name(20, "checkpoint"), |b| b[40] ^= 1).await;
                    op.delete(&name(15, "json")).await.unwrap();
                })
            }),
            None,
        ),
        (
            "both checkpoints damaged, early deltas purged",
            Box::new(|op| {
                Box::pin(async move {
                    damage(op, name(20, "checkpoint"), |b| b[40] ^= 1).await;
                    damage(op, name(10, "checkpoint"), |b| b[40] ^= 1).await;
                })
            }),
            None,
        ),
    ];
    for (what, act, want) in cases {
        let op = mito_sst::store::memory_operator();
        let states = build(&op).await;
        act(&op).await;
        match (open(&op).await, want) {
            (Ok(state), Some(v)) => {
                assert_eq!(
                    Some(&state),
                    states[usize::try_from(v).unwrap()].as_ref(),
                    "{what}"
                );
            }
            (Err(e), None) => {
                assert_eq!(e.kind(), ErrorKind::Corrupted, "{what}: {e}");
                assert!(
                    e.to_string().contains(DIR),
                    "{what}: error names the file: {e}"
                );
            }
            (got, want) => panic!("{what}: got {got:?}, want version {want:?}"),
        }
    }
}

/// Every single-bit flip of the newest files opens either to the full state (the damaged file
/// was a redundant one) or to an error naming a file; never to another state.
#[tokio::test]
async fn every_bit_flip_is_detected() {
    let op = mito_sst::store::memory_operator();
    let states = build(&op).await;
    let full = states[25].clone().unwrap();
    for path in [
        name(25, "json"),
        name(20, "checkpoint"),
        format!("{DIR}_last_checkpoint"),
    ] {
        let original = op.read(&path).await.unwrap().to_vec();
        let stride = (original.len() / 400).max(1);
        for pos in (0..original.len()).step_by(stride) {
            let mut b = original.clone();
            b[pos] ^= 1 << (pos % 8);
            op.write(&path, b).await.unwrap();
            match open(&op).await {
                Ok(state) => assert_eq!(state, full, "{path} flipped at {pos}"),
                Err(e) => assert!(e.to_string().contains(DIR), "{e}"),
            }
        }
        op.write(&path, original).await.unwrap();
    }
    assert_eq!(open(&op).await.unwrap(), full);
}

#[tokio::test]
async fn on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let op = mito_sst::store::fs_operator(dir.path().to_str().unwrap()).unwrap();
    let states = build(&op).await;
    assert_eq!(open(&op).await.unwrap(), states[25].clone().unwrap());
    assert!(
        dir.path()
            .join("data/region_1/manifest/_last_checkpoint")
            .exists()
    );
}

// ---- Compatibility: frozen encodings of every action kind and file kind. ----

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

fn fixture_values() -> Vec<(&'static str, Vec<u8>)> {
    let delta = |version, actions| format::encode_delta(&Delta { version, actions }).unwrap();
    let mut state = RegionManifest::from_first(
        1,
        &[Action::Change(RegionChange {
            metadata: metadata(0),
        })],
    )
    .unwrap();
    state.apply(2, &[flush(2), flush(3)]).unwrap();
    let checkpoint = format::encode_checkpoint(&Checkpoint { state }).unwrap();
    let pointer = format::encode_pointer(&Pointer {
        version: 2,
        size: checkpoint.len() as u64,
        checksum: crc32c::crc32c(&checkpoint),
    })
    .unwrap();
    vec![
        (
            "delta_change.json",
            delta(
                1,
                vec![Action::Change(RegionChange {
                    metadata: metadata(1),
                })],
            ),
        ),
        (
            "delta_edit.json",
            delta(
                2,
                vec![Action::Edit(RegionEdit {
                    files_to_add: vec![file(7)],
                    files_to_remove: vec![FileId::from_u128(3)],
                    flushed_entry_id: Some(70),
                    flushed_sequence: Some(700),
                    compaction_time_window_secs: Some(7200),
                })],
            ),
        ),
        (
            "delta_truncate.json",
            delta(
                3,
                vec![Action::Truncate(RegionTruncate {
                    truncated_entry_id: 5,
                    truncated_sequence: 50,
                })],
            ),
        ),
        (
            "delta_options.json",
            delta(
                5,
                vec![Action::Options(RegionOptionsChange {
                    options: [
                        ("ttl".to_string(), "7days".to_string()),
                        ("append_mode".to_string(), "true".to_string()),
                    ]
                    .into(),
                })],
            ),
        ),
        (
            "delta_remove.json",
            delta(4, vec![Action::Remove(RegionRemove { region_id: REGION })]),
        ),
        ("checkpoint", checkpoint),
        ("last_checkpoint", pointer),
    ]
}

#[test]
fn frozen_encodings_still_decode() {
    let dir = fixtures_dir();
    if std::env::var_os("MITO_BLESS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in fixture_values() {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    for (name, bytes) in fixture_values() {
        let frozen = std::fs::read(dir.join(name)).unwrap();
        // Today's encoder writes the same bytes, and the frozen bytes decode to the value.
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            String::from_utf8_lossy(&frozen),
            "{name}"
        );
        match name {
            "checkpoint" => {
                format::decode_checkpoint(&frozen).unwrap();
            }
            "last_checkpoint" => {
                format::decode_pointer(&frozen).unwrap();
            }
            _ => {
                format::decode_delta(&frozen).unwrap();
            }
        }
    }
    // Fields added later default when absent: an edit with only one key decodes.
    let body = br#"{"version":9,"actions":[{"type":"edit","files_to_remove":[]}]}"#;
    let d = format::decode_delta(&format::encode(format::FileKind::Delta, body)).unwrap();
    assert_eq!(d.actions, vec![Action::Edit(RegionEdit::default())]);
}

/// Replays the checked-in cargo-fuzz corpus (see `fuzz/`), which starts from the fixtures.
#[test]
fn fuzz_corpus_replays() {
    test_util::replay_corpus("manifest_action", 6, |bytes| {
        format::fuzz_manifest_action(bytes)
    });
}
