//! Region options and alter: validated, persisted, applied (TTL, append and merge mode, WAL
//! off, per-region buffer), and schema changes read over old files without rewriting them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::DataType;
use common::*;
use futures::TryStreamExt;
use mito_engine::MitoEngine;
use store_api::clock::ManualClock;
use store_api::engine::RegionEngine;
use store_api::error::ErrorKind;
use store_api::metadata::{ColumnMetadata, SemanticType, Value};
use store_api::region_request::{
    AlterKind, RegionAlterRequest, RegionCloseRequest, RegionCompactRequest, RegionCreateRequest,
    RegionFlushRequest, RegionOpenRequest, RegionPutRequest, RegionRequest,
};
use store_api::scan::ScanRequest;

const HOUR: i64 = 3_600_000;

fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn create_with(
    engine: &MitoEngine,
    options: &[(&str, &str)],
) -> Result<(), store_api::error::BoxedError> {
    let req = RegionCreateRequest {
        options: opts(options),
        ..create_request()
    };
    engine
        .handle_request(REGION, RegionRequest::Create(req))
        .await
        .map(|_| ())
}

async fn request(engine: &MitoEngine, req: RegionRequest) {
    engine.handle_request(REGION, req).await.unwrap();
}

async fn alter(
    engine: &MitoEngine,
    schema_version: u64,
    kind: AlterKind,
) -> Result<(), store_api::error::BoxedError> {
    engine
        .handle_request(
            REGION,
            RegionRequest::Alter(RegionAlterRequest {
                schema_version,
                kind,
            }),
        )
        .await
        .map(|_| ())
}

/// Every row as strings, columns in the order given.
async fn table(engine: &MitoEngine, columns: &[&str]) -> Vec<Vec<String>> {
    table_where(engine, columns, Vec::new()).await
}

/// The rows passing `filters`, of `columns`, formatted.
async fn table_where(
    engine: &MitoEngine,
    columns: &[&str],
    filters: Vec<datafusion_expr::Expr>,
) -> Vec<Vec<String>> {
    let req = ScanRequest {
        filters,
        ..ScanRequest::default()
    };
    let stream = engine.scan(REGION, req).await.unwrap();
    let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
    let mut out = Vec::new();
    for b in &batches {
        let fmts: Vec<ArrayFormatter<'_>> = columns
            .iter()
            .map(|c| {
                ArrayFormatter::try_new(
                    b.column_by_name(c).unwrap().as_ref(),
                    &FormatOptions::default().with_null("null"),
                )
                .unwrap()
            })
            .collect();
        for i in 0..b.num_rows() {
            out.push(fmts.iter().map(|f| f.value(i).to_string()).collect());
        }
    }
    out
}

fn strings(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_are_refused_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), small_config()).await;
    for (pairs, want) in [
        (vec![("ttl", "later")], "'ttl' = 'later'"),
        (vec![("tll", "1d")], "unknown region option 'tll'"),
        (vec![("merge_mode", "first")], "last_row or last_non_null"),
    ] {
        let err = create_with(&engine, &pairs).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.to_string().contains(want), "{err}");
    }
    let err = engine
        .handle_request(REGION, RegionRequest::Open(RegionOpenRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    // The id is still free.
    create_with(&engine, &[("ttl", "7d")]).await.unwrap();
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_persist_and_alter_changes_them() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), small_config()).await;
    create_with(
        &engine,
        &[("ttl", "7d"), ("compaction.twcs.time_window", "1h")],
    )
    .await
    .unwrap();
    let stats = engine.region_statistics(REGION).unwrap();
    assert_eq!(stats.compaction_window_secs, Some(3600));
    alter(
        &engine,
        0,
        AlterKind::SetOptions {
            options: opts(&[("ttl", "30d"), ("write_buffer_size", "4MiB")]),
        },
    )
    .await
    .unwrap();
    alter(
        &engine,
        0,
        AlterKind::UnsetOptions {
            keys: vec!["compaction.twcs.time_window".into()],
        },
    )
    .await
    .unwrap();
    // A bad change is refused whole.
    let err = alter(
        &engine,
        0,
        AlterKind::SetOptions {
            options: opts(&[("ttl", "1d"), ("wal", "maybe")]),
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("'wal' = 'maybe'"), "{err}");
    let want = opts(&[("ttl", "30d"), ("write_buffer_size", "4MiB")]);
    assert_eq!(engine.region_options(REGION).await.unwrap(), want);
    engine.stop().await.unwrap();

    let engine = start(dir.path(), small_config()).await;
    open(&engine, REGION).await;
    assert_eq!(engine.region_options(REGION).await.unwrap(), want);
    assert_eq!(
        engine
            .region_statistics(REGION)
            .unwrap()
            .compaction_window_secs,
        None
    );
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_hides_expired_rows_and_compaction_drops_expired_files() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(90 * HOUR));
    let engine = start_with_clock(dir.path(), small_config(), clock.clone()).await;
    create_with(
        &engine,
        &[("ttl", "10h"), ("compaction.twcs.time_window", "1h")],
    )
    .await
    .unwrap();
    // One file per hour 80..85 (alive: 80h and later, at now = 90h), each hour dense enough
    // that compaction leaves it alone (sparse hours would be merged together).
    let dense = mito_compaction::picker::SPARSE_WINDOW_ROWS as i64;
    for h in 80..85 {
        let rows: Vec<(&str, i64, Option<f64>)> = (0..dense)
            .map(|k| ("a", h * HOUR + k, Some(h as f64)))
            .collect();
        put(&engine, REGION, &rows).await.unwrap();
        request(&engine, RegionRequest::Flush(RegionFlushRequest)).await;
    }
    // A memtable row older than the TTL is invisible too.
    put(&engine, REGION, &[("b", 50 * HOUR, Some(0.0))])
        .await
        .unwrap();
    let hours = |rows: Vec<Row>| {
        let mut h: Vec<i64> = rows.iter().map(|r| r.1 / HOUR).collect();
        h.dedup();
        h
    };
    assert_eq!(hours(scan_all(&engine, REGION).await), [80, 81, 82, 83, 84]);
    assert_eq!(engine.region_statistics(REGION).unwrap().files, 5);

    // Three hours later, hours 80..82 have expired.
    clock.advance(3 * HOUR);
    assert_eq!(hours(scan_all(&engine, REGION).await), [83, 84]);
    request(
        &engine,
        RegionRequest::Compact(RegionCompactRequest::default()),
    )
    .await;
    let stats = engine.region_statistics(REGION).unwrap();
    assert_eq!(stats.files, 2, "expired files are removed");
    assert!(engine.metrics_text().contains("mito_expired_files_total 3"));
    // Unsetting the TTL shows what is still stored (the memtable row), not what was dropped.
    alter(
        &engine,
        0,
        AlterKind::UnsetOptions {
            keys: vec!["ttl".into()],
        },
    )
    .await
    .unwrap();
    assert_eq!(hours(scan_all(&engine, REGION).await), [83, 84, 50]);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_mode_keeps_duplicates_and_last_non_null_merges_fields() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), small_config()).await;
    create_with(&engine, &[("append_mode", "true")])
        .await
        .unwrap();
    put(&engine, REGION, &[("a", 1, Some(1.0))]).await.unwrap();
    request(&engine, RegionRequest::Flush(RegionFlushRequest)).await;
    put(&engine, REGION, &[("a", 1, Some(2.0))]).await.unwrap();
    assert_eq!(scan_all(&engine, REGION).await.len(), 2);
    engine.stop().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), small_config()).await;
    create_with(&engine, &[("merge_mode", "last_non_null")])
        .await
        .unwrap();
    put(&engine, REGION, &[("a", 1, Some(1.0))]).await.unwrap();
    request(&engine, RegionRequest::Flush(RegionFlushRequest)).await;
    put(&engine, REGION, &[("a", 1, None)]).await.unwrap();
    assert!(same_rows(
        &scan_all(&engine, REGION).await,
        &[("a".to_string(), 1, Some(1.0))]
    ));
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_wal_unflushed_rows_are_lost_by_a_restart_and_flushed_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), small_config()).await;
    create_with(&engine, &[("wal", "off")]).await.unwrap();
    put(&engine, REGION, &[("a", 1, Some(1.0))]).await.unwrap();
    request(&engine, RegionRequest::Flush(RegionFlushRequest)).await;
    put(&engine, REGION, &[("b", 2, Some(2.0))]).await.unwrap();
    assert_eq!(scan_all(&engine, REGION).await.len(), 2);
    engine.stop().await.unwrap();
    let engine = start(dir.path(), small_config()).await;
    open(&engine, REGION).await;
    assert!(same_rows(
        &scan_all(&engine, REGION).await,
        &[("a".to_string(), 1, Some(1.0))]
    ));
    // Closing with a flush keeps everything.
    put(&engine, REGION, &[("c", 3, Some(3.0))]).await.unwrap();
    request(
        &engine,
        RegionRequest::Close(RegionCloseRequest { flush: true }),
    )
    .await;
    open(&engine, REGION).await;
    assert_eq!(scan_all(&engine, REGION).await.len(), 2);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_region_write_buffer_flushes_that_region() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), small_config()).await;
    create_with(&engine, &[("write_buffer_size", "64KiB")])
        .await
        .unwrap();
    for i in 0..20 {
        let rows: Vec<(String, i64, Option<f64>)> = (0..200)
            .map(|j| (format!("host-{j}"), i64::from(i), Some(1.0)))
            .collect();
        let refs: Vec<(&str, i64, Option<f64>)> =
            rows.iter().map(|r| (r.0.as_str(), r.1, r.2)).collect();
        put(&engine, REGION, &refs).await.unwrap();
    }
    // Flushes run in the background: wait for one without a timing assertion.
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
    while engine.region_statistics(REGION).unwrap().files == 0 {
        tick.tick().await;
    }
    assert_eq!(scan_all(&engine, REGION).await.len(), 4000);
    engine.stop().await.unwrap();
}

fn put3(rows: &[(&str, Option<&str>, i64, Option<f64>)]) -> RecordBatch {
    let host: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)));
    let dc: ArrayRef = Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1)));
    let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from_iter_values(
        rows.iter().map(|r| r.2),
    ));
    let mem: ArrayRef = Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.3)));
    RecordBatch::try_from_iter([("host", host), ("dc", dc), ("ts", ts), ("mem", mem)]).unwrap()
}

async fn put_batch_raw(
    engine: &MitoEngine,
    rows: RecordBatch,
) -> Result<(), store_api::error::BoxedError> {
    engine
        .handle_request(REGION, RegionRequest::Put(RegionPutRequest { rows }))
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_and_drop_columns_read_old_files_in_the_new_schema() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), small_config()).await;
    create(&engine, REGION).await;
    put(&engine, REGION, &[("a", 1, Some(1.0)), ("b", 2, Some(2.0))])
        .await
        .unwrap();
    request(&engine, RegionRequest::Flush(RegionFlushRequest)).await;
    // Unflushed rows are flushed by the alter itself (never rewritten in the new schema).
    put(&engine, REGION, &[("c", 3, Some(3.0))]).await.unwrap();

    alter(
        &engine,
        0,
        AlterKind::AddColumns {
            columns: vec![
                ColumnMetadata::new(3, "dc", DataType::Utf8, SemanticType::Tag),
                ColumnMetadata::new(4, "mem", DataType::Float64, SemanticType::Field)
                    .with_default(Value::Float(0.5)),
            ],
        },
    )
    .await
    .unwrap();
    let stats = engine.region_statistics(REGION).unwrap();
    assert_eq!(stats.schema_version, 1);
    assert_eq!(stats.files, 2);
    assert_eq!(stats.memtable_rows, 0);
    let cols = ["host", "dc", "ts", "cpu", "mem"];
    let ts = |ms: &str| format!("1970-01-01T00:00:00.00{ms}");
    let (t1, t2, t3) = (ts("1"), ts("2"), ts("3"));
    assert_eq!(
        table(&engine, &cols).await,
        strings(&[
            &["a", "null", &t1, "1.0", "0.5"],
            &["b", "null", &t2, "2.0", "0.5"],
            &["c", "null", &t3, "3.0", "0.5"],
        ])
    );
    // A write keyed (a, dc = null, 1) is the same row as the old (a, 1): it replaces it.
    put_batch_raw(
        &engine,
        put3(&[("a", None, 1, Some(9.0)), ("a", Some("x"), 1, None)]),
    )
    .await
    .unwrap();
    assert_eq!(
        table(&engine, &cols).await,
        strings(&[
            &["a", "null", &t1, "null", "9.0"],
            &["a", "x", &t1, "null", "null"],
            &["b", "null", &t2, "2.0", "0.5"],
            &["c", "null", &t3, "3.0", "0.5"],
        ])
    );
    // Filters on the new tag: the old files (no such column: NULL) and the memtable alike,
    // each with its own series filter (the files cannot evaluate one on their columns).
    use datafusion_expr::{col, lit};
    assert_eq!(
        table_where(&engine, &cols, vec![col("dc").eq(lit("x"))]).await,
        strings(&[&["a", "x", &t1, "null", "null"]])
    );
    assert_eq!(
        table_where(&engine, &cols, vec![col("dc").is_null()]).await,
        strings(&[
            &["a", "null", &t1, "null", "9.0"],
            &["b", "null", &t2, "2.0", "0.5"],
            &["c", "null", &t3, "3.0", "0.5"],
        ])
    );
    assert_eq!(
        table_where(
            &engine,
            &cols,
            vec![col("host").not_eq(lit("b")), col("dc").is_null()]
        )
        .await,
        strings(&[
            &["a", "null", &t1, "null", "9.0"],
            &["c", "null", &t3, "3.0", "0.5"],
        ])
    );

    // A stale alter and a reused column id are refused.
    let err = alter(
        &engine,
        0,
        AlterKind::DropColumns {
            names: vec!["cpu".into()],
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("schema version 0"), "{err}");
    alter(
        &engine,
        1,
        AlterKind::DropColumns {
            names: vec!["cpu".into()],
        },
    )
    .await
    .unwrap();
    let err = alter(
        &engine,
        2,
        AlterKind::AddColumns {
            columns: vec![ColumnMetadata::new(
                2,
                "cpu",
                DataType::Utf8,
                SemanticType::Field,
            )],
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("ids up to 4 are taken"), "{err}");
    // A write with the dropped column gets a clear error; nothing of it lands.
    let err = put(&engine, REGION, &[("d", 4, Some(4.0))])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.to_string()
            .contains("unknown column 'cpu': not in the region's schema (version 2)"),
        "{err}"
    );
    let cols = ["host", "dc", "ts", "mem"];
    let want = strings(&[
        &["a", "null", &t1, "9.0"],
        &["a", "x", &t1, "null"],
        &["b", "null", &t2, "0.5"],
        &["c", "null", &t3, "0.5"],
    ]);
    assert_eq!(table(&engine, &cols).await, want);

    // Reopen, then compact files of three schema versions into one: same rows.
    engine.stop().await.unwrap();
    let engine = start(dir.path(), small_config()).await;
    open(&engine, REGION).await;
    assert_eq!(table(&engine, &cols).await, want);
    request(
        &engine,
        RegionRequest::Compact(RegionCompactRequest {
            options: store_api::region_request::CompactOptions::StrictWindow {
                window_seconds: 3600,
            },
        }),
    )
    .await;
    assert_eq!(engine.region_statistics(REGION).unwrap().files, 1);
    assert_eq!(table(&engine, &cols).await, want);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_an_alter_land_in_the_new_schema_or_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(start(dir.path(), small_config()).await);
    create(&engine, REGION).await;
    let writer = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut ok = Vec::new();
            for i in 0..300i64 {
                if put(&engine, REGION, &[("w", i, Some(i as f64))])
                    .await
                    .is_ok()
                {
                    ok.push(i);
                }
            }
            ok
        })
    };
    alter(
        &engine,
        0,
        AlterKind::AddColumns {
            columns: vec![ColumnMetadata::new(
                3,
                "mem",
                DataType::Float64,
                SemanticType::Field,
            )],
        },
    )
    .await
    .unwrap();
    let ok = writer.await.unwrap();
    // The alter only adds a nullable column: every write fits either schema.
    assert_eq!(ok.len(), 300);
    let got: Vec<i64> = scan_all(&engine, REGION)
        .await
        .iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(got, ok);
    let engine = Arc::into_inner(engine).unwrap();
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncating_a_time_range_removes_files_inside_it_and_memtable_rows_in_it() {
    use store_api::region_request::RegionTruncateRequest;
    use store_api::scan::TimeRange;

    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), small_config()).await;
    create(&engine, REGION).await;
    // File A spans 0h..2h (sticks out of the range), file B holds 1h only (inside).
    put(
        &engine,
        REGION,
        &[("a", 0, Some(0.0)), ("a", 2 * HOUR, Some(2.0))],
    )
    .await
    .unwrap();
    request(&engine, RegionRequest::Flush(RegionFlushRequest)).await;
    put(&engine, REGION, &[("b", HOUR, Some(1.0))])
        .await
        .unwrap();
    request(&engine, RegionRequest::Flush(RegionFlushRequest)).await;
    // Memtable rows: one in the range, one after it.
    put(
        &engine,
        REGION,
        &[("c", HOUR + 1, Some(1.5)), ("c", 5 * HOUR, Some(5.0))],
    )
    .await
    .unwrap();
    let err = engine
        .handle_request(
            REGION,
            RegionRequest::Truncate(RegionTruncateRequest::TimeRange(TimeRange::new(5, 5))),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("empty time range"), "{err}");
    request(
        &engine,
        RegionRequest::Truncate(RegionTruncateRequest::TimeRange(TimeRange::new(
            HOUR,
            3 * HOUR,
        ))),
    )
    .await;
    let want = vec![
        ("a".to_string(), 0, Some(0.0)),
        ("a".to_string(), 2 * HOUR, Some(2.0)),
        ("c".to_string(), 5 * HOUR, Some(5.0)),
    ];
    assert!(same_rows(&scan_all(&engine, REGION).await, &want));
    let stats = engine.region_statistics(REGION).unwrap();
    assert_eq!((stats.files, stats.memtable_rows), (2, 0));
    // Durable: the truncate is one manifest edit and the WAL is obsolete up to it.
    engine.stop().await.unwrap();
    let engine = start(dir.path(), small_config()).await;
    open(&engine, REGION).await;
    assert!(same_rows(&scan_all(&engine, REGION).await, &want));
    engine.stop().await.unwrap();
}
