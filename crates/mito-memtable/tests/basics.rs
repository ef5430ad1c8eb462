//! Memtable behaviour beyond the model test: projection, stats, partitions, bad batches.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampSecondType, UInt8Type, UInt32Type, UInt64Type};
use arrow_array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampSecondArray,
};
use arrow_schema::{DataType, TimeUnit};
use mito_memtable::{Memtable, MemtableOptions, MemtableRead};
use mito_read::OpType;
use store_api::RegionId;
use store_api::error::{ErrorExt, ErrorKind};
use store_api::metadata::RegionMetadata;
use store_api::scan::TimeRange;
use store_api::time::TimeSpan;

fn metadata() -> Arc<RegionMetadata> {
    test_util::metadata::build(&test_util::metadata::builder(
        RegionId::new(3, 4),
        10,
        &[("host", DataType::Utf8)],
        ("ts", TimeUnit::Second),
        &[("v", DataType::Float64)],
    ))
}

fn hourly() -> Memtable {
    Memtable::new(
        metadata(),
        MemtableOptions {
            time_window: Duration::from_secs(3600),
            ..MemtableOptions::default()
        },
    )
    .unwrap()
}

fn batch(hosts: &[&str], ts: &[i64], v: &[f64]) -> RecordBatch {
    RecordBatch::try_from_iter([
        (
            "host",
            Arc::new(StringArray::from(hosts.to_vec())) as ArrayRef,
        ),
        (
            "ts",
            Arc::new(TimestampSecondArray::from(ts.to_vec())) as ArrayRef,
        ),
        ("v", Arc::new(Float64Array::from(v.to_vec())) as ArrayRef),
    ])
    .unwrap()
}

#[test]
fn stats_track_rows_series_time_and_sequence() {
    let m = hourly();
    assert!(m.is_empty());
    assert_eq!(m.stats().time_range, None);
    m.write(
        &batch(&["a", "b", "a"], &[100, 7300, 50], &[1.0, 2.0, 3.0]),
        10,
        OpType::Put,
    )
    .unwrap();
    let s = m.stats();
    assert_eq!(
        (s.rows, s.series, s.time_range, s.max_sequence, s.partitions),
        (3, 2, Some(TimeSpan::new(50, 7300)), 12, 2)
    );
    assert!(s.bytes > 0);
    assert_eq!(m.partition_starts(), vec![0, 7200]);
    assert_eq!(m.window(), 3600);
    let before = s.bytes;
    m.write(&batch(&["c"], &[200], &[4.0]), 13, OpType::Put)
        .unwrap();
    assert!(m.stats().bytes > before, "a new series and rows add bytes");
}

#[test]
fn projection_orders_columns_and_appends_internal_ones() {
    let m = hourly();
    m.write(&batch(&["b", "a"], &[5, 5], &[2.0, 1.0]), 1, OpType::Put)
        .unwrap();
    let req = MemtableRead {
        projection: Some(vec![12, 10]),
        ..MemtableRead::default()
    };
    let schema = m.read_schema(Some(&[12, 10])).unwrap();
    let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        ["v", "host", "__primary_key", "__sequence", "__op_type"]
    );
    let batches: Vec<_> = m.read(&req).unwrap().collect::<Result<_, _>>().unwrap();
    let b = &batches[0];
    assert_eq!(b.schema(), schema);
    assert_eq!(
        b.column(0).as_primitive::<Float64Type>().values(),
        &[1.0, 2.0]
    );
    let host = b.column(1).as_dictionary::<UInt32Type>();
    assert_eq!(
        host.values()
            .as_string::<i32>()
            .value(host.keys().value(0) as usize),
        "a"
    );
    assert_eq!(b.column(3).as_primitive::<UInt64Type>().values(), &[2, 1]);
    assert_eq!(b.column(4).as_primitive::<UInt8Type>().values(), &[1, 1]);
    assert!(
        m.read(&MemtableRead {
            projection: Some(vec![99]),
            ..MemtableRead::default()
        })
        .is_err()
    );
}

#[test]
fn partitions_read_alone_and_time_ranges_cut() {
    let m = hourly();
    m.write(
        &batch(&["a", "a", "a"], &[10, 3700, 7300], &[1.0, 2.0, 3.0]),
        1,
        OpType::Put,
    )
    .unwrap();
    let ts_of = |req: MemtableRead| -> Vec<i64> {
        m.read(&req)
            .unwrap()
            .flat_map(|b| {
                b.unwrap()
                    .column(1)
                    .as_primitive::<TimestampSecondType>()
                    .values()
                    .to_vec()
            })
            .collect()
    };
    assert_eq!(ts_of(MemtableRead::default()), [10, 3700, 7300]);
    assert_eq!(
        ts_of(MemtableRead {
            partition: Some(3600),
            ..MemtableRead::default()
        }),
        [3700]
    );
    assert_eq!(
        ts_of(MemtableRead {
            time_range: Some(TimeRange::new(11, 7300)),
            ..MemtableRead::default()
        }),
        [3700]
    );
    assert!(
        ts_of(MemtableRead {
            partition: Some(99),
            ..MemtableRead::default()
        })
        .is_empty()
    );
}

#[test]
fn deletes_are_kept_for_flush_and_dropped_for_users() {
    let m = hourly();
    m.write(&batch(&["a"], &[1], &[1.0]), 1, OpType::Put)
        .unwrap();
    let keys = RecordBatch::try_from_iter([
        ("host", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
        (
            "ts",
            Arc::new(TimestampSecondArray::from(vec![1])) as ArrayRef,
        ),
    ])
    .unwrap();
    m.write(&keys, 2, OpType::Delete).unwrap();
    let user: usize = m
        .read(&MemtableRead::default())
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(user, 0);
    let flush: Vec<RecordBatch> = m
        .read(&MemtableRead {
            keep_deletes: true,
            ..MemtableRead::default()
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(flush[0].num_rows(), 1);
    assert_eq!(
        flush[0].column(5).as_primitive::<UInt8Type>().value(0),
        OpType::Delete.as_u8()
    );
    assert!(
        flush[0].column(2).is_null(0),
        "a tombstone carries no field values"
    );
}

#[test]
fn bad_batches_are_typed_errors_and_change_nothing() {
    let m = hourly();
    let cases: Vec<(RecordBatch, &str)> = vec![
        (
            RecordBatch::try_from_iter([(
                "host",
                Arc::new(StringArray::from(vec!["a"])) as ArrayRef,
            )])
            .unwrap(),
            "missing time index column 'ts'",
        ),
        (
            RecordBatch::try_from_iter([
                ("host", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
                ("ts", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ])
            .unwrap(),
            "time index 'ts' has type Int64",
        ),
        (
            RecordBatch::try_from_iter([
                (
                    "host",
                    Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
                ),
                (
                    "ts",
                    Arc::new(TimestampSecondArray::from(vec![None, Some(1)])) as ArrayRef,
                ),
            ])
            .unwrap(),
            "time index 'ts' has nulls",
        ),
        (
            RecordBatch::try_from_iter([(
                "ts",
                Arc::new(TimestampSecondArray::from(vec![1])) as ArrayRef,
            )])
            .unwrap(),
            "missing tag column 'host'",
        ),
        (
            RecordBatch::try_from_iter([
                ("host", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
                (
                    "ts",
                    Arc::new(TimestampSecondArray::from(vec![1])) as ArrayRef,
                ),
                ("v", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ])
            .unwrap(),
            "field 'v' has type Int64",
        ),
    ];
    for (b, want) in cases {
        let err = m.write(&b, 1, OpType::Put).unwrap_err();
        assert!(err.to_string().contains(want), "{err} should say {want}");
        assert!(
            err.to_string().contains(&RegionId::new(3, 4).to_string()),
            "{err}"
        );
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }
    assert!(m.is_empty());
    let err = m.write(&batch(&["a"], &[1], &[1.0]), u64::MAX, OpType::Put);
    assert!(err.is_ok(), "one row at the last sequence fits");
    let err = m
        .write(
            &batch(&["a", "b"], &[1, 2], &[1.0, 2.0]),
            u64::MAX,
            OpType::Put,
        )
        .unwrap_err();
    assert!(err.to_string().contains("sequence overflow"), "{err}");
    m.freeze();
    assert!(m.is_frozen());
    assert!(
        m.write(&batch(&["a"], &[1], &[1.0]), 5, OpType::Put)
            .is_err()
    );
}
