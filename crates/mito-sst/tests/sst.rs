//! SST files end to end: memtable output written, read back, pruned, damaged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

// The engine's column cache, as the engine hands it to readers (a dev-dependency).
use mito_engine::cache::ColumnCache;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType, UInt32Type};
use arrow_array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::{DataType, TimeUnit};
use datafusion_expr::{col, lit};
use futures::TryStreamExt;
use mito_memtable::{Memtable, MemtableOptions, MemtableRead};
use mito_read::OpType;
use mito_sst::error::Error;
use mito_sst::reader::ReadPlan;
use mito_sst::{FileId, FileMeta, Pruner, SstReadRequest, SstReader, SstWriter, WriteOptions};
use opendal::Operator;
use store_api::RegionId;
use store_api::error::{ErrorExt, ErrorKind};
use store_api::metadata::{
    ColumnMetadata, RegionMetadataBuilder, RegionMetadataRef, SemanticType, Value,
};
use store_api::scan::TimeRange;

const REGION_DIR: &str = "region/";

fn builder() -> RegionMetadataBuilder {
    test_util::metadata::builder(
        RegionId::new(7, 1),
        1,
        &[("host", DataType::Utf8), ("dc", DataType::Utf8)],
        ("ts", TimeUnit::Millisecond),
        &[
            ("cpu", DataType::Float64),
            ("mem", DataType::Int64),
            ("note", DataType::Utf8),
        ],
    )
}

fn metadata() -> RegionMetadataRef {
    Arc::new(builder().build().unwrap())
}

fn memory() -> Operator {
    mito_sst::store::memory_operator()
}

/// One batch of the region's columns in write order.
fn rows_batch(
    host: Vec<String>,
    dc: Vec<Option<String>>,
    ts: Vec<i64>,
    cpu: Vec<Option<f64>>,
    mem: Vec<Option<i64>>,
    note: Vec<Option<String>>,
) -> RecordBatch {
    RecordBatch::try_from_iter(vec![
        ("host", Arc::new(StringArray::from(host)) as ArrayRef),
        ("dc", Arc::new(StringArray::from(dc)) as ArrayRef),
        (
            "ts",
            Arc::new(TimestampMillisecondArray::from(ts)) as ArrayRef,
        ),
        ("cpu", Arc::new(Float64Array::from(cpu)) as ArrayRef),
        ("mem", Arc::new(Int64Array::from(mem)) as ArrayRef),
        ("note", Arc::new(StringArray::from(note)) as ArrayRef),
    ])
    .unwrap()
}

/// Rows of `hosts` hosts x `points` timestamps (10 s apart), time-major like real ingest,
/// with a few special floats, nulls and deletes.
fn memtable(metadata: &RegionMetadataRef, hosts: usize, points: usize) -> Memtable {
    let mt = Memtable::new(metadata.clone(), MemtableOptions::default()).unwrap();
    let mut seq = 1;
    for p in 0..points {
        let mut host = Vec::new();
        let mut dc = Vec::new();
        let mut ts = Vec::new();
        let mut cpu = Vec::new();
        let mut mem = Vec::new();
        let mut note = Vec::new();
        for h in 0..hosts {
            host.push(format!("host_{h:04}"));
            dc.push(if h % 3 == 0 {
                None
            } else {
                Some(format!("dc{}", h % 3))
            });
            ts.push(i64::try_from(p).unwrap() * 10_000);
            let i = p * hosts + h;
            cpu.push(match i % 97 {
                0 => None,
                1 => Some(f64::NAN),
                2 => Some(-0.0),
                3 => Some(f64::INFINITY),
                4 => Some(0.1 + 0.2),
                _ => Some(f64::from(u32::try_from((i * 7919) % 10_000).unwrap()) / 100.0),
            });
            mem.push((!i.is_multiple_of(5)).then_some(i64::try_from(i).unwrap() * 1024));
            note.push(i.is_multiple_of(11).then(|| format!("n{i}")));
        }
        let batch = rows_batch(host, dc, ts, cpu, mem, note);
        mt.write(&batch, seq, OpType::Put).unwrap();
        seq += batch.num_rows() as u64;
    }
    // Delete every 13th host's second point: tombstones must survive the flush.
    let deleted: Vec<String> = (0..hosts)
        .step_by(13)
        .map(|h| format!("host_{h:04}"))
        .collect();
    let n = deleted.len();
    let dcs: Vec<Option<String>> = (0..hosts)
        .step_by(13)
        .map(|h| {
            if h % 3 == 0 {
                None
            } else {
                Some(format!("dc{}", h % 3))
            }
        })
        .collect();
    let batch = RecordBatch::try_from_iter(vec![
        ("host", Arc::new(StringArray::from(deleted)) as ArrayRef),
        ("dc", Arc::new(StringArray::from(dcs)) as ArrayRef),
        (
            "ts",
            Arc::new(TimestampMillisecondArray::from(vec![10_000; n])) as ArrayRef,
        ),
    ])
    .unwrap();
    mt.write(&batch, seq, OpType::Delete).unwrap();
    mt.freeze();
    mt
}

fn flush_batches(mt: &Memtable, batch_rows: usize) -> Vec<RecordBatch> {
    let req = MemtableRead {
        keep_deletes: true,
        batch_rows,
        ..MemtableRead::default()
    };
    mt.read(&req)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

async fn write(
    op: &Operator,
    metadata: &RegionMetadataRef,
    batches: &[RecordBatch],
    options: WriteOptions,
) -> FileMeta {
    SstWriter::write_file(op.clone(), REGION_DIR, metadata.clone(), batches, options)
        .await
        .unwrap()
}

async fn read_all(reader: &SstReader, req: &SstReadRequest) -> Result<RecordBatch, Error> {
    let schema = reader.read_schema(req.projection.as_deref())?;
    let batches: Vec<RecordBatch> = reader.read(req).await?.try_collect().await?;
    Ok(arrow_select::concat::concat_batches(&schema, &batches).unwrap())
}

fn concat(batches: &[RecordBatch]) -> RecordBatch {
    arrow_select::concat::concat_batches(&batches[0].schema(), batches).unwrap()
}

/// Batches compared value by value (dictionaries resolved, floats by bits).
fn assert_same(a: &RecordBatch, b: &RecordBatch) {
    assert_eq!(a.schema(), b.schema());
    assert_eq!(a.num_rows(), b.num_rows());
    for (i, (x, y)) in a.columns().iter().zip(b.columns()).enumerate() {
        let x = arrow_cast_plain(x);
        let y = arrow_cast_plain(y);
        assert_eq!(
            x.to_data(),
            y.to_data(),
            "column {} differs",
            a.schema().field(i).name()
        );
    }
}

fn arrow_cast_plain(a: &ArrayRef) -> ArrayRef {
    match a.data_type() {
        DataType::Dictionary(_, v) => {
            let d = a.as_dictionary::<UInt32Type>();
            let idx: Vec<Option<u32>> = d.keys().iter().collect();
            let take = arrow_array::UInt32Array::from(idx);
            let values = arrow_select::take::take(d.values(), &take, None).unwrap();
            assert_eq!(values.data_type(), v.as_ref());
            values
        }
        _ => a.clone(),
    }
}

#[tokio::test]
async fn round_trip_is_exact() {
    let meta = metadata();
    let mt = memtable(&meta, 300, 40);
    let batches = flush_batches(&mt, 4096);
    let expected = concat(&batches);
    let op = memory();
    let file = write(
        &op,
        &meta,
        &batches,
        WriteOptions {
            row_group_rows: 5000,
            page_rows: 512,
            ..WriteOptions::default()
        },
    )
    .await;
    assert_eq!(file.num_rows, expected.num_rows() as u64);
    assert_eq!(
        file.num_row_groups,
        (expected.num_rows() as u64).div_ceil(5000)
    );
    assert_eq!(file.time_range.min, 0);
    assert_eq!(file.time_range.max, 390_000);
    assert_eq!(file.max_sequence, 300 * 40 + 300u64.div_ceil(13));
    assert!(file.min_key < file.max_key);
    let stat = op
        .stat(&mito_sst::sst_path(REGION_DIR, file.file_id))
        .await
        .unwrap();
    assert_eq!(stat.content_length(), file.file_size);

    let reader = SstReader::open(op.clone(), REGION_DIR, file.clone(), meta.clone())
        .await
        .unwrap();
    // cpu is stored as decimals (scale 2), with NaN/-0.0/inf/0.1+0.2 as exceptions.
    assert_eq!(reader.info().float_encoding(4).map(|e| e.scale), Some(2));
    if std::env::var_os("MITO_BLESS").is_some() {
        let corpus = test_util::corpus_dir("sst_info");
        std::fs::write(
            corpus.join("info_v1.json"),
            reader.info().to_json().unwrap(),
        )
        .unwrap();
    }
    let got = read_all(&reader, &SstReadRequest::default()).await.unwrap();
    assert_same(&got, &expected);
    // Tombstones came through.
    let ops = got
        .column(8)
        .as_primitive::<arrow_array::types::UInt8Type>();
    assert_eq!(
        ops.values()
            .iter()
            .filter(|o| **o == OpType::Delete.as_u8())
            .count(),
        300usize.div_ceil(13)
    );
}

#[tokio::test]
async fn projection_and_time_range() {
    let meta = metadata();
    let mt = memtable(&meta, 50, 30);
    let batches = flush_batches(&mt, 1000);
    let op = memory();
    let file = write(&op, &meta, &batches, WriteOptions::default()).await;
    let reader = SstReader::open(op, REGION_DIR, file, meta.clone())
        .await
        .unwrap();
    let req = SstReadRequest {
        projection: Some(vec![4, 1]),
        time_range: Some(TimeRange::new(50_000, 120_000)),
        ..SstReadRequest::default()
    };
    let got = read_all(&reader, &req).await.unwrap();
    // Expected: the memtable's own read with the same request.
    let want = mt
        .read(&MemtableRead {
            projection: Some(vec![4, 1]),
            time_range: Some(TimeRange::new(50_000, 120_000)),
            keep_deletes: true,
            ..MemtableRead::default()
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_same(&got, &concat(&want));
    assert_eq!(
        got.num_rows(),
        50 * 7,
        "the deletes at 10 s are outside the range"
    );
    // A range outside the file reads nothing, without touching a row group.
    let none = SstReadRequest {
        time_range: Some(TimeRange::new(1_000_000, 2_000_000)),
        ..SstReadRequest::default()
    };
    assert_eq!(reader.plan(&none).row_groups, Vec::<usize>::new());
    assert_eq!(read_all(&reader, &none).await.unwrap().num_rows(), 0);
    // Unknown column ids are an error, not an empty read.
    let bad = SstReadRequest {
        projection: Some(vec![99]),
        ..SstReadRequest::default()
    };
    let err = reader.read(&bad).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn tag_filters_prune_row_groups_and_pages() {
    let meta = metadata();
    let mt = memtable(&meta, 400, 50);
    let batches = flush_batches(&mt, 8192);
    let op = memory();
    let file = write(
        &op,
        &meta,
        &batches,
        WriteOptions {
            row_group_rows: 4000,
            page_rows: 256,
            ..WriteOptions::default()
        },
    )
    .await;
    let reader = SstReader::open(op.clone(), REGION_DIR, file.clone(), meta.clone())
        .await
        .unwrap();
    let req = SstReadRequest {
        filters: vec![col("host").eq(lit("host_0123"))],
        ..SstReadRequest::default()
    };
    let ReadPlan {
        row_groups, rows, ..
    } = reader.plan(&req);
    assert_eq!(row_groups.len(), 1, "one host lives in one row group");
    assert!(rows <= 2 * 256 + 1024, "pages pruned: {rows} rows left");
    let got = read_all(&reader, &req).await.unwrap();
    let hosts = arrow_cast_plain(got.column(0));
    let matching = hosts
        .as_string::<i32>()
        .iter()
        .filter(|h| *h == Some("host_0123"))
        .count();
    assert_eq!(matching, 50, "every row of the host is read");
    // Time range plus host: fewer pages still, same rows as filtering everything.
    let req = SstReadRequest {
        filters: vec![
            col("host")
                .eq(lit("host_0123"))
                .and(col("dc").eq(lit("dc0"))),
        ],
        ..SstReadRequest::default()
    };
    assert_eq!(
        reader.plan(&req).row_groups.len(),
        0,
        "host_0123 is in dc0? no: dc is null for h%3==0"
    );
    // A filter DataFusion cannot use for pruning prunes nothing but still reads.
    let req = SstReadRequest {
        filters: vec![col("nosuch").eq(lit(1))],
        ..SstReadRequest::default()
    };
    assert_eq!(reader.plan(&req).rows as u64, file.num_rows);

    // A reader keeps the statistics it pruned with: one that has planned many requests (some
    // twice) plans each as a fresh reader does, with the predicates built by the read or
    // beforehand.
    let span = file.time_range;
    let requests: Vec<SstReadRequest> = (0..12)
        .map(|i| {
            let filters = vec![col("host").eq(lit(format!("host_{:04}", (i % 4) * 31)))];
            SstReadRequest {
                pruner: (i % 2 == 0).then(|| Arc::new(Pruner::new(meta.schema(), &filters))),
                filters,
                // Outside the file (pruned to nothing), cutting it, or none.
                time_range: match i % 3 {
                    0 => Some(TimeRange::new(-100 - i, -50)),
                    1 => Some(TimeRange::new(span.min + i * 37, span.max - i * 41)),
                    _ => None,
                },
                ..SstReadRequest::default()
            }
        })
        .collect();
    for round in 0..2 {
        for (i, req) in requests.iter().enumerate().rev().skip(round * 3) {
            let fresh = SstReader::open(op.clone(), REGION_DIR, file.clone(), meta.clone());
            let want = fresh.await.unwrap().plan(req);
            assert_eq!(reader.plan(req), want, "request {i}, round {round}");
            assert_eq!(reader.plan(req), want, "request {i} again");
            let own = SstReadRequest {
                pruner: None,
                ..req.clone()
            };
            assert_eq!(
                reader.plan(&own),
                want,
                "request {i} building its predicates"
            );
        }
    }
}

#[tokio::test]
async fn old_files_read_in_the_new_schema() {
    let old = metadata();
    let mt = memtable(&old, 20, 5);
    let batches = flush_batches(&mt, 1000);
    let op = memory();
    let file = write(&op, &old, &batches, WriteOptions::default()).await;

    // Alter: drop `note`, add a field with a default and a nullable one.
    let mut b = RegionMetadataBuilder::from_existing(&old);
    b.remove_column("note");
    b.push_column(
        ColumnMetadata::new(7, "load", DataType::Float64, SemanticType::Field)
            .with_default(Value::Float(2.5)),
    )
    .push_column(ColumnMetadata::new(
        8,
        "extra",
        DataType::Int64,
        SemanticType::Field,
    ))
    .schema_version(1);
    let new = Arc::new(b.build().unwrap());
    let reader = SstReader::open(op, REGION_DIR, file, new.clone())
        .await
        .unwrap();
    let got = read_all(&reader, &SstReadRequest::default()).await.unwrap();
    let schema = got.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "host",
            "dc",
            "ts",
            "cpu",
            "mem",
            "load",
            "extra",
            "__primary_key",
            "__sequence",
            "__op_type"
        ]
    );
    let load = got.column(5).as_primitive::<Float64Type>();
    assert!(load.iter().all(|v| v == Some(2.5)));
    assert_eq!(got.column(6).null_count(), got.num_rows());
    let mem = got.column(4).as_primitive::<Int64Type>();
    let want = concat(&batches);
    assert_eq!(mem, want.column(4).as_primitive::<Int64Type>());
}

#[tokio::test]
async fn writer_rejects_bad_input_and_cleans_up() {
    let meta = metadata();
    let mt = memtable(&meta, 10, 3);
    let batches = flush_batches(&mt, 1000);
    let op = memory();
    // Out of order: the same batch twice.
    let id = FileId::random();
    let mut w = SstWriter::new(
        op.clone(),
        REGION_DIR,
        id,
        meta.clone(),
        WriteOptions::default(),
    );
    w.write(&batches[0]).await.unwrap();
    let err = w.write(&batches[0]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("order"), "{err}");
    assert!(
        w.write(&batches[0]).await.is_err(),
        "a failed writer stays failed"
    );
    assert!(
        !op.exists(&mito_sst::sst_path(REGION_DIR, id))
            .await
            .unwrap()
    );

    // Wrong schema.
    let mut w = SstWriter::new(
        op.clone(),
        REGION_DIR,
        FileId::random(),
        meta.clone(),
        WriteOptions::default(),
    );
    let wrong = batches[0].project(&[0, 1, 2]).unwrap();
    assert_eq!(
        w.write(&wrong).await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );

    // Empty file.
    let w = SstWriter::new(
        op.clone(),
        REGION_DIR,
        FileId::random(),
        meta.clone(),
        WriteOptions::default(),
    );
    assert!(matches!(w.finish().await, Err(Error::EmptySst { .. })));

    // Big files: the upload happens row group by row group and still cleans up on failure.
    let mt = memtable(&meta, 500, 40);
    let batches = flush_batches(&mt, 8192);
    let id = FileId::random();
    let mut w = SstWriter::new(
        op.clone(),
        REGION_DIR,
        id,
        meta.clone(),
        WriteOptions {
            row_group_rows: 2000,
            ..WriteOptions::default()
        },
    );
    w.write(&batches[0]).await.unwrap();
    w.write(&batches[1]).await.unwrap();
    assert!(w.estimated_size() > 0);
    let err = w.write(&batches[0]).await.unwrap_err();
    assert!(err.to_string().contains("order"));
    assert!(
        !op.exists(&mito_sst::sst_path(REGION_DIR, id))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn files_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let op = mito_sst::store::fs_operator(dir.path().to_str().unwrap()).unwrap();
    let meta = metadata();
    let mt = memtable(&meta, 30, 10);
    let batches = flush_batches(&mt, 1000);
    let file = write(&op, &meta, &batches, WriteOptions::default()).await;
    let on_disk = dir
        .path()
        .join(format!("region/data/{}.parquet", file.file_id));
    assert_eq!(std::fs::metadata(&on_disk).unwrap().len(), file.file_size);
    let reader = SstReader::open(op, REGION_DIR, file, meta).await.unwrap();
    assert_same(
        &read_all(&reader, &SstReadRequest::default()).await.unwrap(),
        &concat(&batches),
    );
}

/// Every single-byte change of the file either fails the read with an error naming the file
/// or (for the 4 magic bytes at the start, which no reader looks at) leaves the rows intact.
#[tokio::test]
async fn damaged_files_fail_loudly() {
    let meta = metadata();
    let mt = memtable(&meta, 40, 10);
    let batches = flush_batches(&mt, 1000);
    let expected = concat(&batches);
    let op = memory();
    let file = write(&op, &meta, &batches, WriteOptions::default()).await;
    let path = mito_sst::sst_path(REGION_DIR, file.file_id);
    let original = op.read(&path).await.unwrap().to_vec();
    let mut failures = 0;
    let stride = (original.len() / 1500).max(1);
    for pos in (0..original.len()).step_by(stride) {
        for bit in [0u8, 5] {
            let mut damaged = original.clone();
            damaged[pos] ^= 1 << bit;
            op.write(&path, damaged).await.unwrap();
            let result =
                match SstReader::open(op.clone(), REGION_DIR, file.clone(), meta.clone()).await {
                    Ok(r) => read_all(&r, &SstReadRequest::default()).await,
                    Err(e) => Err(e),
                };
            match result {
                Ok(got) => {
                    assert!(pos < 4, "flip at {pos} read without error");
                    assert_same(&got, &expected);
                }
                Err(e) => {
                    failures += 1;
                    assert!(e.to_string().contains(&file.file_id.to_string()), "{e}");
                    assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
                }
            }
        }
    }
    assert!(failures > 0);
    // Cut short at several points.
    for keep in [
        0,
        4,
        original.len() / 2,
        original.len() - 9,
        original.len() - 1,
    ] {
        op.write(&path, original[..keep].to_vec()).await.unwrap();
        let result = match SstReader::open(op.clone(), REGION_DIR, file.clone(), meta.clone()).await
        {
            Ok(r) => read_all(&r, &SstReadRequest::default()).await.map(|_| ()),
            Err(e) => Err(e),
        };
        let e = result.unwrap_err();
        assert!(e.to_string().contains(&file.file_id.to_string()), "{e}");
    }
    // A file meta of another region is refused.
    op.write(&path, original).await.unwrap();
    let mut other = file.clone();
    other.region_id = RegionId::new(9, 9);
    assert!(SstReader::open(op, REGION_DIR, other, meta).await.is_err());
}

#[tokio::test]
async fn timestamps_extremes_survive() {
    let meta = metadata();
    let mt = Memtable::new(meta.clone(), MemtableOptions::default()).unwrap();
    let ts = vec![i64::MIN, -1, 0, i64::MAX];
    let batch = RecordBatch::try_from_iter(vec![
        (
            "host",
            Arc::new(StringArray::from(vec!["a"; 4])) as ArrayRef,
        ),
        (
            "dc",
            Arc::new(StringArray::from(vec![Some("x"); 4])) as ArrayRef,
        ),
        (
            "ts",
            Arc::new(TimestampMillisecondArray::from(ts.clone())) as ArrayRef,
        ),
        (
            "cpu",
            Arc::new(Float64Array::from(vec![f64::MAX, f64::MIN, 1e-300, -1e300])) as ArrayRef,
        ),
    ])
    .unwrap();
    mt.write(&batch, 1, OpType::Put).unwrap();
    mt.freeze();
    let batches = flush_batches(&mt, 10);
    let op = memory();
    let file = write(&op, &meta, &batches, WriteOptions::default()).await;
    assert_eq!(
        (file.time_range.min, file.time_range.max),
        (i64::MIN, i64::MAX)
    );
    let reader = SstReader::open(op, REGION_DIR, file, meta).await.unwrap();
    let got = read_all(&reader, &SstReadRequest::default()).await.unwrap();
    assert_same(&got, &concat(&batches));
    let got_ts = got.column(2).as_primitive::<TimestampMillisecondType>();
    assert_eq!(got_ts.values().to_vec(), ts);
}

/// One file of `hosts` x `points` rows in row groups of `row_group_rows` (pages of 256), opened
/// twice: without a column cache, and with one (also returned).
async fn plain_and_cached(
    hosts: usize,
    points: usize,
    row_group_rows: usize,
) -> (SstReader, SstReader, Arc<ColumnCache>) {
    let meta = metadata();
    let mt = memtable(&meta, hosts, points);
    let batches = flush_batches(&mt, 8192);
    let op = memory();
    let options = WriteOptions {
        row_group_rows,
        page_rows: 256,
        ..WriteOptions::default()
    };
    let file = write(&op, &meta, &batches, options).await;
    let plain = SstReader::open(op, REGION_DIR, file, meta).await.unwrap();
    let mut cached = plain.clone();
    let cache = Arc::new(ColumnCache::new(64 << 20));
    cached.set_column_cache(cache.clone() as Arc<dyn mito_sst::ColumnCache>);
    (plain, cached, cache)
}

#[tokio::test]
async fn column_cache_reads_equal_uncached_reads() {
    let (plain, mut cached, _) = plain_and_cached(400, 50, 4000).await;
    let requests = [
        SstReadRequest::default(),
        SstReadRequest {
            filters: vec![col("host").eq(lit("host_0123"))],
            batch_rows: 7,
            ..SstReadRequest::default()
        },
        SstReadRequest {
            projection: Some(vec![4, 1]),
            time_range: Some(TimeRange::new(50_000, 120_000)),
            ..SstReadRequest::default()
        },
        SstReadRequest {
            filters: vec![col("host").in_list(vec![lit("host_0007"), lit("host_0311")], false)],
            time_range: Some(TimeRange::new(20_000, 400_000)),
            ..SstReadRequest::default()
        },
    ];
    // Every request, three times over: the same rows as without the cache.
    for _ in 0..3 {
        for req in &requests {
            let want = read_all(&plain, req).await.unwrap();
            let got = read_all(&cached, req).await.unwrap();
            assert_same(&got, &want);
        }
    }
    // A partial read, alone: the first time decodes only its rows and keeps nothing, the
    // second decodes its rows too and starts the whole columns' decode in the background
    // (waited for here), the third reads from the cache alone.
    let partial = &requests[1];
    let alone = Arc::new(ColumnCache::new(64 << 20));
    cached.set_column_cache(alone.clone() as Arc<dyn mito_sst::ColumnCache>);
    for round in 0..3 {
        assert_same(
            &read_all(&cached, partial).await.unwrap(),
            &read_all(&plain, partial).await.unwrap(),
        );
        alone.settle().await;
        let (hits, misses) = alone.take_counts();
        match round {
            0 => assert_eq!((hits, alone.bytes()), (0, 0), "round {round}"),
            1 => assert!(hits == 0 && alone.bytes() > 0, "round {round}"),
            _ => assert_eq!((hits > 0, misses), (true, 0), "round {round}"),
        }
    }
    // A whole read keeps its columns at once; every request then reads from the cache.
    let fresh = Arc::new(ColumnCache::new(64 << 20));
    cached.set_column_cache(fresh.clone() as Arc<dyn mito_sst::ColumnCache>);
    for (i, req) in requests.iter().enumerate() {
        let want = read_all(&plain, req).await.unwrap();
        let got = read_all(&cached, req).await.unwrap();
        assert_same(&got, &want);
        let (hits, misses) = fresh.take_counts();
        if i > 0 {
            assert_eq!((hits > 0, misses), (true, 0), "request {i}");
        }
    }
}

#[tokio::test]
async fn column_cache_keeps_to_its_limit_and_reads_stay_right() {
    let (plain, mut cached, big) = plain_and_cached(400, 50, 2000).await;
    let all = SstReadRequest::default();
    let want = read_all(&plain, &all).await.unwrap();
    assert_same(&read_all(&cached, &all).await.unwrap(), &want);
    let whole = big.bytes();
    assert!(whole > 0);
    // A cache of a third of that: reads keep decoding what it evicted, and it stays in bounds.
    let limit = whole / 3;
    let small = Arc::new(ColumnCache::new(limit));
    cached.set_column_cache(small.clone() as Arc<dyn mito_sst::ColumnCache>);
    for _ in 0..3 {
        assert_same(&read_all(&cached, &all).await.unwrap(), &want);
        assert!(small.bytes() <= limit, "{} > {limit}", small.bytes());
        assert!(small.bytes() > 0);
    }
    let (_, misses) = small.take_counts();
    assert!(misses > 0);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Tag filters through the column cache (runs of unwanted series cut from the cached row
    /// groups) keep the rows an uncached read keeps, on the first read (partial decode), the
    /// second (whole columns kept) and the third (from the cache), with time ranges, several
    /// filters, NULL tags and projections that leave the primary key unprojected.
    #[test]
    fn cached_tag_filters_keep_what_uncached_ones_keep(
        hosts in proptest::collection::vec(0usize..120, 0..6),
        negated in proptest::bool::ANY,
        dc in proptest::option::of(0usize..4),
        range in proptest::option::of((0i64..400_000, 0i64..400_000)),
        project in 0usize..4,
        batch_rows in 1usize..500,
    ) {
        static FILE: std::sync::LazyLock<(SstReader, SstReader)> = std::sync::LazyLock::new(|| {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (plain, cached, _) = runtime.block_on(plain_and_cached(120, 40, 1000));
            (plain, cached)
        });
        let (plain, mut cached) = FILE.clone();
        cached.set_column_cache(Arc::new(ColumnCache::new(64 << 20)));
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let mut filters = Vec::new();
            if !hosts.is_empty() {
                let list = hosts.iter().map(|h| lit(format!("host_{h:04}"))).collect();
                filters.push(col("host").in_list(list, negated));
            }
            match dc {
                Some(0) => filters.push(col("dc").is_null()),
                Some(d) => filters.push(col("dc").not_eq(lit(format!("dc{d}")))),
                None => {}
            }
            let req = SstReadRequest {
                projection: [None, Some(vec![4, 1]), Some(vec![4, 2]), Some(vec![1])][project].clone(),
                time_range: range.map(|(a, b)| TimeRange::new(a.min(b), a.max(b) + 1)),
                // Half the reads prune with predicates built beforehand, as a scan shares them.
                pruner: (batch_rows % 2 == 0)
                    .then(|| Arc::new(Pruner::new(metadata().schema(), &filters))),
                filters,
                batch_rows,
            };
            let want = read_all(&plain, &req).await.unwrap();
            for _ in 0..3 {
                assert_same(&read_all(&cached, &req).await.unwrap(), &want);
            }
            // The time range cut inside the read keeps what a read without it, filtered by
            // time afterwards, keeps (all columns read: with a projection, the file applies
            // no filter on a column it does not read, and returns more rows for the caller
            // to filter).
            if let (Some(r), None) = (req.time_range, &req.projection) {
                let every = SstReadRequest {
                    time_range: None,
                    ..req.clone()
                };
                let every = read_all(&plain, &every).await.unwrap();
                let ts = every
                    .column_by_name("ts")
                    .unwrap()
                    .as_primitive::<TimestampMillisecondType>();
                let inside: arrow_array::BooleanArray =
                    ts.values().iter().map(|t| Some(r.contains(*t))).collect();
                let every = arrow_select::filter::filter_record_batch(&every, &inside).unwrap();
                assert_same(&want, &every);
            }
        });
    }
}

#[tokio::test]
async fn last_rows_are_each_keys_latest_in_range() {
    let (plain, cached, _) = plain_and_cached(300, 40, 3000).await;
    let ranges = [
        None,
        Some(TimeRange::new(50_000, 120_000)),
        Some(TimeRange::new(0, 15_000)),
    ];
    for range in ranges {
        let req = SstReadRequest {
            time_range: range,
            ..SstReadRequest::default()
        };
        // Expected: the last row of each key of a full read.
        let all = read_all(&plain, &req).await.unwrap();
        let mut keep = Vec::new();
        let pk = arrow_cast_plain(all.column(all.num_columns() - 3));
        let pk = pk.as_binary::<i32>();
        for i in 0..all.num_rows() {
            if i + 1 == all.num_rows() || pk.value(i) != pk.value(i + 1) {
                keep.push(i as u32);
            }
        }
        let want =
            arrow_select::take::take_record_batch(&all, &arrow_array::UInt32Array::from(keep))
                .unwrap();
        for reader in [&plain, &cached, &cached] {
            let newer = std::collections::HashMap::new();
            let got: Vec<RecordBatch> = reader
                .last_rows(&req, &newer)
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            let schema = reader.read_schema(None).unwrap();
            let got = arrow_select::concat::concat_batches(&schema, &got).unwrap();
            assert_same(&got, &want);
        }
        // A key known newer than anything here is skipped; one known older is not.
        let first = pk.value(0).to_vec();
        let newer = std::collections::HashMap::from([(first, i64::MAX)]);
        let got: Vec<RecordBatch> = plain
            .last_rows(&req, &newer)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let rows: usize = got.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows + 1, want.num_rows());
    }
}

/// Columns that are null in every row of some row groups (`mem` for the first half of the
/// hosts, `note` everywhere, and `cpu`'s exception column, since every cpu value is a plain
/// decimal) are not decoded there: they read back as nulls, beside the same columns decoded
/// in other row groups, plain and through the column cache.
#[tokio::test]
async fn all_null_chunks_read_back_as_nulls() {
    let meta = metadata();
    let (hosts, points) = (60usize, 20usize);
    let mt = Memtable::new(meta.clone(), MemtableOptions::default()).unwrap();
    for p in 0..points {
        let host: Vec<String> = (0..hosts).map(|h| format!("host_{h:04}")).collect();
        let dc: Vec<Option<String>> = (0..hosts).map(|_| Some("dc1".to_string())).collect();
        let ts = vec![i64::try_from(p).unwrap() * 10_000; hosts];
        let cpu: Vec<Option<f64>> = (0..hosts)
            .map(|h| Some(f64::from(u32::try_from(h * 31 + p).unwrap()) / 4.0))
            .collect();
        let mem: Vec<Option<i64>> = (0..hosts)
            .map(|h| (h >= hosts / 2).then(|| i64::try_from(h * p).unwrap()))
            .collect();
        let note: Vec<Option<String>> = vec![None; hosts];
        let batch = rows_batch(host, dc, ts, cpu, mem, note);
        let seq = u64::try_from(p * hosts + 1).unwrap();
        mt.write(&batch, seq, OpType::Put).unwrap();
    }
    mt.freeze();
    let batches = flush_batches(&mt, 4096);
    let expected = concat(&batches);
    let op = memory();
    let options = WriteOptions {
        row_group_rows: 100,
        page_rows: 50,
        ..WriteOptions::default()
    };
    let file = write(&op, &meta, &batches, options).await;
    let plain = SstReader::open(op, REGION_DIR, file, meta).await.unwrap();
    assert_eq!(plain.info().float_encoding(4).map(|e| e.scale), Some(2));
    let mut cached = plain.clone();
    cached.set_column_cache(Arc::new(ColumnCache::new(64 << 20)) as Arc<dyn mito_sst::ColumnCache>);
    for reader in [&plain, &cached, &cached] {
        let got = read_all(reader, &SstReadRequest::default()).await.unwrap();
        assert_same(&got, &expected);
        // A few rows of a host where `mem` is all null, projected to `mem` and `note` (the
        // projection is of column ids: cpu 4, mem 5, note 6).
        let req = SstReadRequest {
            projection: Some(vec![5, 6]),
            filters: vec![col("host").eq(lit("host_0003"))],
            ..SstReadRequest::default()
        };
        let got = read_all(reader, &req).await.unwrap();
        assert!(got.num_rows() >= points);
        for name in ["mem", "note"] {
            let column = got.column_by_name(name).unwrap();
            assert_eq!(column.null_count(), got.num_rows(), "{name}");
        }
    }
    let got = read_all(&plain, &SstReadRequest::default()).await.unwrap();
    let mem = got.column_by_name("mem").unwrap();
    assert!(mem.null_count() > 0 && mem.null_count() < mem.len());
}
