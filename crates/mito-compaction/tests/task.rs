//! The compaction task on real SSTs (in-memory object store): versions merged like a scan,
//! tombstones kept or dropped, outputs rolled by size, one manifest edit, no file left behind
//! when the edit fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampSecondType, UInt8Type};
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampSecondArray};
use arrow_schema::TimeUnit;
use futures::StreamExt;
use mito_compaction::{CompactionJob, compact};
use mito_manifest::{Action, ManifestOptions, RegionEdit, RegionManifestManager, RegionRemove};
use mito_memtable::{Memtable, MemtableOptions, MemtableRead};
use mito_read::{DedupOptions, OpType};
use mito_sst::{FileId, FileMeta, SstReadRequest, SstReader, SstWriter, WriteOptions};
use opendal::Operator;
use store_api::RegionId;
use store_api::metadata::RegionMetadataRef;

const DIR: &str = "regions/1/1/";

fn metadata() -> RegionMetadataRef {
    test_util::metadata::host_ts_v(RegionId::new(1, 1), TimeUnit::Second)
}

enum Op<'a> {
    Put(&'a [(&'a str, i64, f64)]),
    Del(&'a [(&'a str, i64)]),
}

/// Writes one SST holding the ops (sequences from `seq`), as a flush would.
async fn sst(op: &Operator, meta: &RegionMetadataRef, ops: &[Op<'_>], mut seq: u64) -> FileMeta {
    let m = Memtable::new(meta.clone(), MemtableOptions::default()).unwrap();
    for o in ops {
        match o {
            Op::Put(rows) => {
                let host: ArrayRef =
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)));
                let ts: ArrayRef = Arc::new(TimestampSecondArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                ));
                let v: ArrayRef =
                    Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2)));
                let b = RecordBatch::try_from_iter([("host", host), ("ts", ts), ("v", v)]).unwrap();
                m.write(&b, seq, OpType::Put).unwrap();
                seq += rows.len() as u64;
            }
            Op::Del(keys) => {
                let host: ArrayRef =
                    Arc::new(StringArray::from_iter_values(keys.iter().map(|r| r.0)));
                let ts: ArrayRef = Arc::new(TimestampSecondArray::from_iter_values(
                    keys.iter().map(|r| r.1),
                ));
                let b = RecordBatch::try_from_iter([("host", host), ("ts", ts)]).unwrap();
                m.write(&b, seq, OpType::Delete).unwrap();
                seq += keys.len() as u64;
            }
        }
    }
    let batches: Vec<RecordBatch> = m
        .read(&MemtableRead {
            keep_deletes: true,
            ..MemtableRead::default()
        })
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    SstWriter::write_file(
        op.clone(),
        DIR,
        meta.clone(),
        &batches,
        WriteOptions::default(),
    )
    .await
    .unwrap()
}

/// (host, ts) -> (value, op) of every row of the files, in file order.
async fn rows(
    op: &Operator,
    meta: &RegionMetadataRef,
    files: &[FileMeta],
) -> Vec<(String, i64, f64, u8)> {
    let mut out = Vec::new();
    for f in files {
        let r = SstReader::open(op.clone(), DIR, f.clone(), meta.clone())
            .await
            .unwrap();
        let mut s = r.read(&SstReadRequest::default()).await.unwrap();
        while let Some(b) = s.next().await {
            let b = b.unwrap();
            let host = arrow_cast_utf8(b.column(0));
            let ts = b.column(1).as_primitive::<TimestampSecondType>();
            let v = b.column(2).as_primitive::<Float64Type>();
            let op = b.column(5).as_primitive::<UInt8Type>();
            for (i, h) in host.into_iter().enumerate() {
                out.push((h, ts.value(i), v.value(i), op.value(i)));
            }
        }
    }
    out
}

fn arrow_cast_utf8(a: &ArrayRef) -> Vec<String> {
    let d = a.as_dictionary::<arrow_array::types::UInt32Type>();
    let values = d.values().as_string::<i32>();
    d.keys()
        .values()
        .iter()
        .map(|k| values.value(*k as usize).to_string())
        .collect()
}

async fn setup(
    files: &[FileMeta],
    meta: &RegionMetadataRef,
    op: &Operator,
) -> RegionManifestManager {
    let mut m = RegionManifestManager::create(
        op.clone(),
        DIR,
        (**meta).clone(),
        ManifestOptions::default(),
    )
    .await
    .unwrap();
    m.update(vec![Action::Edit(RegionEdit {
        files_to_add: files.to_vec(),
        ..RegionEdit::default()
    })])
    .await
    .unwrap();
    m
}

fn job(
    op: &Operator,
    meta: &RegionMetadataRef,
    inputs: Vec<FileMeta>,
    drop_deletes: bool,
    max: u64,
) -> CompactionJob {
    CompactionJob {
        op: op.clone(),
        region_dir: DIR.to_string(),
        metadata: meta.clone(),
        inputs,
        dedup: DedupOptions::default(),
        drop_deletes,
        max_output_file_size: max,
        write_options: WriteOptions::default(),
        batch_rows: 1024,
    }
}

async fn sst_count(op: &Operator) -> usize {
    op.list(&format!("{DIR}data/")).await.map_or(0, |l| {
        l.iter().filter(|e| e.path().ends_with(".parquet")).count()
    })
}

#[tokio::test]
async fn versions_merge_like_a_scan_and_tombstones_follow_the_rule() {
    let op = mito_sst::store::memory_operator();
    let meta = metadata();
    // Given an old file, a newer one overwriting and deleting some of it
    let old = sst(
        &op,
        &meta,
        &[Op::Put(&[("a", 1, 1.0), ("a", 2, 2.0), ("b", 1, 3.0)])],
        1,
    )
    .await;
    let new = sst(
        &op,
        &meta,
        &[
            Op::Put(&[("a", 2, 20.0), ("c", 5, 5.0)]),
            Op::Del(&[("b", 1)]),
        ],
        10,
    )
    .await;
    for drop_deletes in [false, true] {
        let mut manifest = setup(&[old.clone(), new.clone()], &meta, &op).await;
        // When compacting both
        let out = compact(
            job(
                &op,
                &meta,
                vec![old.clone(), new.clone()],
                drop_deletes,
                u64::MAX,
            ),
            &mut manifest,
        )
        .await
        .unwrap();
        // Then one output holds the newest version of each row
        assert_eq!(out.outputs.len(), 1);
        assert_eq!(out.outputs[0].level, 1);
        let got = rows(&op, &meta, &out.outputs).await;
        let mut want = vec![("a".to_string(), 1, 1.0, 1), ("a".to_string(), 2, 20.0, 1)];
        if !drop_deletes {
            // the tombstone stays: an older file outside the inputs could hold ("b", 1)
            want.push(("b".to_string(), 1, 0.0, 0));
        }
        want.push(("c".to_string(), 5, 5.0, 1));
        let got: Vec<_> = got
            .into_iter()
            .map(|(h, t, v, o)| (h, t, if o == 0 { 0.0 } else { v }, o))
            .collect();
        assert_eq!(got, want, "drop_deletes = {drop_deletes}");
        // And the manifest swapped the files in one edit
        let files: Vec<FileId> = manifest.manifest().files.keys().copied().collect();
        assert_eq!(files, vec![out.outputs[0].file_id]);
        assert_eq!(out.manifest_version, 3);
        // And the max sequence is that of the newest row kept (the dropped tombstone was
        // the newest row of the inputs)
        let expected_max = if drop_deletes {
            new.max_sequence - 1
        } else {
            new.max_sequence
        };
        assert_eq!(out.outputs[0].max_sequence, expected_max);
        // Reset: a fresh manifest directory for the next round.
        op.delete_with(&format!("{DIR}manifest/"))
            .recursive(true)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn outputs_roll_at_the_size_limit() {
    let op = mito_sst::store::memory_operator();
    let meta = metadata();
    let rows_a: Vec<(String, i64, f64)> = (0..30_000)
        .map(|i| {
            (
                format!("h{:03}", i % 300),
                i64::from(i / 300),
                f64::from(i) * 0.37,
            )
        })
        .collect();
    let refs: Vec<(&str, i64, f64)> = rows_a
        .iter()
        .map(|(h, t, v)| (h.as_str(), *t, *v))
        .collect();
    let a = sst(&op, &meta, &[Op::Put(&refs[..15_000])], 1).await;
    let b = sst(&op, &meta, &[Op::Put(&refs[15_000..])], 20_000).await;
    let mut manifest = setup(&[a.clone(), b.clone()], &meta, &op).await;
    let out = compact(
        job(&op, &meta, vec![a.clone(), b.clone()], true, 20_000),
        &mut manifest,
    )
    .await
    .unwrap();
    assert!(out.outputs.len() >= 2, "{} outputs", out.outputs.len());
    assert_eq!(out.rows_out, 30_000);
    let got = rows(&op, &meta, &out.outputs).await;
    assert_eq!(got.len(), 30_000);
    // Outputs follow each other in key order: together one sorted run.
    let keys: Vec<(String, i64)> = got.iter().map(|r| (r.0.clone(), r.1)).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    let want: BTreeMap<(String, i64), f64> =
        rows_a.into_iter().map(|(h, t, v)| ((h, t), v)).collect();
    assert!(
        got.iter()
            .all(|r| want.get(&(r.0.clone(), r.1)) == Some(&r.2))
    );
    assert_eq!(manifest.manifest().files.len(), out.outputs.len());
}

#[tokio::test]
async fn a_failed_edit_leaves_the_inputs_and_no_output() {
    let op = mito_sst::store::memory_operator();
    let meta = metadata();
    let a = sst(&op, &meta, &[Op::Put(&[("a", 1, 1.0)])], 1).await;
    let b = sst(&op, &meta, &[Op::Put(&[("a", 1, 2.0)])], 5).await;
    let mut manifest = setup(&[a.clone(), b.clone()], &meta, &op).await;
    // The region is dropped under the compaction: the edit is refused.
    manifest
        .update(vec![Action::Remove(RegionRemove {
            region_id: meta.region_id(),
        })])
        .await
        .unwrap();
    assert_eq!(sst_count(&op).await, 2);
    let err = compact(job(&op, &meta, vec![a, b], true, u64::MAX), &mut manifest)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("(1, 1)") && err.to_string().contains("removed"),
        "{err}"
    );
    assert_eq!(
        sst_count(&op).await,
        2,
        "the output of the failed compaction is left behind"
    );
    // An empty task is refused.
    let err = compact(job(&op, &meta, Vec::new(), true, u64::MAX), &mut manifest)
        .await
        .unwrap_err();
    assert_eq!(
        store_api::error::ErrorExt::kind(&err),
        store_api::error::ErrorKind::InvalidArgument
    );
}
