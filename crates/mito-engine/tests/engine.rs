//! The engine through `RegionEngine`: lifecycle, reopen, flush, truncate, drop, scans and bad
//! input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

mod common;

use std::collections::BTreeMap;

use common::*;
use datafusion_expr::{col, lit};
use store_api::RegionId;
use store_api::engine::RegionEngine;
use store_api::error::ErrorKind;
use store_api::region_request::{
    RegionCloseRequest, RegionDropRequest, RegionFlushRequest, RegionOpenRequest, RegionPutRequest,
    RegionRequest, RegionTruncateRequest,
};
use store_api::scan::{ScanOrder, ScanRequest, TimeRange};

fn r(h: &str, ts: i64, v: f64) -> Row {
    (h.to_string(), ts, Some(v))
}

async fn flush(engine: &mito_engine::MitoEngine, region: RegionId) {
    engine
        .handle_request(region, RegionRequest::Flush(RegionFlushRequest))
        .await
        .unwrap();
}

async fn close(engine: &mito_engine::MitoEngine, region: RegionId) {
    engine
        .handle_request(
            region,
            RegionRequest::Close(RegionCloseRequest { flush: false }),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_flush_reopen_scan() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), small_config()).await;
    create(&engine, REGION).await;
    put(&engine, REGION, &[("b", 2, Some(2.0)), ("a", 1, Some(1.0))])
        .await
        .unwrap();
    flush(&engine, REGION).await;
    put(
        &engine,
        REGION,
        &[("a", 1, Some(10.0)), ("c", 3, Some(f64::NAN))],
    )
    .await
    .unwrap();
    delete(&engine, REGION, &[("b", 2)]).await.unwrap();
    let want = vec![r("a", 1, 10.0), r("c", 3, f64::NAN)];
    assert!(same_rows(&scan_all(&engine, REGION).await, &want));
    let stats = engine.region_statistics(REGION).unwrap();
    assert_eq!(stats.files, 1);

    // Reopen in a new engine: the WAL replays what was not flushed.
    engine.stop().await.unwrap();
    let engine = start(dir.path(), small_config()).await;
    assert!(engine.scan(REGION, ScanRequest::default()).await.is_err());
    open(&engine, REGION).await;
    assert!(same_rows(&scan_all(&engine, REGION).await, &want));
    // Sequences continue after the replayed ones: a new write wins over the replayed rows.
    put(&engine, REGION, &[("c", 3, Some(3.0))]).await.unwrap();
    flush(&engine, REGION).await;
    let want = vec![r("a", 1, 10.0), r("c", 3, 3.0)];
    assert!(same_rows(&scan_all(&engine, REGION).await, &want));
    close(&engine, REGION).await;
    open(&engine, REGION).await;
    assert!(same_rows(&scan_all(&engine, REGION).await, &want));
    engine.stop().await.unwrap();
}

/// The value of the metric line starting with `name` (0 when absent).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opened_region_preloads_its_file_readers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), small_config()).await;
    create(&engine, REGION).await;
    for i in 0..3 {
        put(&engine, REGION, &[("a", i, Some(1.0)), ("b", i, Some(2.0))])
            .await
            .unwrap();
        flush(&engine, REGION).await;
    }
    let files = engine.region_statistics(REGION).unwrap().files;
    assert!(files >= 1);
    let want = scan_all(&engine, REGION).await;
    engine.stop().await.unwrap();

    let engine = start(dir.path(), small_config()).await;
    open(&engine, REGION).await;
    // The readers open in the background; wait (bounded) until all are in.
    let preloaded = || metric(&engine.metrics_text(), "mito_sst_readers_preloaded_total");
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while preloaded() < files as f64 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("every reader preloaded");
    assert_eq!(preloaded(), files as f64);
    // The first scan finds every reader in the cache.
    assert!(same_rows(&scan_all(&engine, REGION).await, &want));
    let text = engine.metrics_text();
    assert_eq!(
        metric(
            &text,
            "mito_cache_lookups_total{cache=\"sst_meta\",result=\"miss\"}"
        ),
        0.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "mito_cache_lookups_total{cache=\"sst_meta\",result=\"hit\"}"
        ),
        files as f64,
        "{text}"
    );
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_project_filter_limit_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), small_config()).await;
    create(&engine, REGION).await;
    let rows: Vec<(String, i64, f64)> = (0..300)
        .map(|i| (format!("h{}", i % 3), i64::from(i / 3) * 1000, f64::from(i)))
        .collect();
    let refs: Vec<(&str, i64, Option<f64>)> = rows
        .iter()
        .map(|(h, t, v)| (h.as_str(), *t, Some(*v)))
        .collect();
    put(&engine, REGION, &refs[..150]).await.unwrap();
    flush(&engine, REGION).await;
    let snapshot = engine.region_statistics(REGION).unwrap().committed_sequence;
    put(&engine, REGION, &refs[150..]).await.unwrap();

    let all = scan_all(&engine, REGION).await;
    assert_eq!(all.len(), 300);
    assert!(
        all.windows(2)
            .all(|w| (&w[0].0, w[0].1) < (&w[1].0, w[1].1))
    );

    // Snapshot: only the first 150 rows existed.
    let old = scan(
        &engine,
        REGION,
        ScanRequest {
            snapshot: Some(snapshot),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(old.len(), 150);

    // Filters on a tag and a field, a time range, a limit, a projection.
    let req = ScanRequest {
        filters: vec![col("host").eq(lit("h1")), col("cpu").gt(lit(100.0))],
        time_range: Some(TimeRange::new(0, 90_000)),
        ..Default::default()
    };
    let got = scan(&engine, REGION, req).await;
    let want: Vec<Row> = all
        .iter()
        .filter(|r| r.0 == "h1" && r.2.unwrap() > 100.0 && r.1 < 90_000)
        .cloned()
        .collect();
    assert!(!want.is_empty());
    assert!(same_rows(&got, &want));
    let limited = scan(
        &engine,
        REGION,
        ScanRequest {
            limit: Some(7),
            ..Default::default()
        },
    )
    .await;
    assert!(same_rows(&limited, &all[..7]));
    let unordered = scan(
        &engine,
        REGION,
        ScanRequest {
            order: ScanOrder::Unordered,
            ..Default::default()
        },
    )
    .await;
    let mut sorted = unordered.clone();
    sorted.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert!(same_rows(&sorted, &all));
    let stream = engine
        .scan(
            REGION,
            ScanRequest {
                projection: Some(vec![2, 0]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let names: Vec<String> = stream
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["cpu", "host"]);
    // Bad scans are clear errors.
    for bad in [
        ScanRequest {
            projection: Some(vec![9]),
            ..Default::default()
        },
        ScanRequest {
            filters: vec![col("nope").eq(lit(1))],
            ..Default::default()
        },
    ] {
        let err = engine.scan(REGION, bad).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    }
    // The second identical scan hits the caches.
    let _ = scan_all(&engine, REGION).await;
    let metrics = engine.metrics_text();
    assert!(
        metrics.contains("mito_cache_lookups_total{cache=\"sst_meta\",result=\"hit\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mito_cache_lookups_total{cache=\"page\",result=\"hit\"}"),
        "{metrics}"
    );
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_and_drop() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), small_config()).await;
    create(&engine, REGION).await;
    put(&engine, REGION, &[("a", 1, Some(1.0))]).await.unwrap();
    flush(&engine, REGION).await;
    put(&engine, REGION, &[("a", 2, Some(2.0))]).await.unwrap();
    engine
        .handle_request(REGION, RegionRequest::Truncate(RegionTruncateRequest::All))
        .await
        .unwrap();
    assert!(scan_all(&engine, REGION).await.is_empty());
    put(&engine, REGION, &[("z", 9, Some(9.0))]).await.unwrap();
    close(&engine, REGION).await;
    open(&engine, REGION).await;
    assert!(same_rows(
        &scan_all(&engine, REGION).await,
        &[r("z", 9, 9.0)]
    ));

    engine
        .handle_request(REGION, RegionRequest::Drop(RegionDropRequest))
        .await
        .unwrap();
    assert!(engine.scan(REGION, ScanRequest::default()).await.is_err());
    let err = engine
        .handle_request(REGION, RegionRequest::Open(RegionOpenRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(!dir.path().join("data/regions/1/1").exists());
    // The id can be used again, and the old WAL entries do not come back.
    create(&engine, REGION).await;
    assert!(scan_all(&engine, REGION).await.is_empty());
    engine.stop().await.unwrap();
    let engine = start(dir.path(), small_config()).await;
    open(&engine, REGION).await;
    assert!(scan_all(&engine, REGION).await.is_empty());
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_regions_and_close_with_flush() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), small_config()).await;
    let regions: Vec<RegionId> = (0..8).map(|i| RegionId::new(7, i)).collect();
    for (i, region) in regions.iter().enumerate() {
        create(&engine, *region).await;
        put(&engine, *region, &[("h", i as i64, Some(i as f64))])
            .await
            .unwrap();
    }
    for region in &regions {
        engine
            .handle_request(
                *region,
                RegionRequest::Close(RegionCloseRequest { flush: true }),
            )
            .await
            .unwrap();
    }
    engine.stop().await.unwrap();
    let engine = start(dir.path(), small_config()).await;
    for (i, region) in regions.iter().enumerate() {
        open(&engine, *region).await;
        assert_eq!(engine.region_statistics(*region).unwrap().files, 1);
        assert!(same_rows(
            &scan_all(&engine, *region).await,
            &[r("h", i as i64, i as f64)]
        ));
    }
    // Creating an open region again is refused, not silently accepted.
    let err = engine
        .handle_request(regions[0], RegionRequest::Create(create_request()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing() {
    use std::sync::Arc;

    use arrow_array::{
        ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
    };

    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), small_config()).await;
    create(&engine, REGION).await;
    put(&engine, REGION, &[("a", 1, Some(1.0))]).await.unwrap();
    let host = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v])) };
    let ts = |v: Option<i64>| -> ArrayRef { Arc::new(TimestampMillisecondArray::from(vec![v])) };
    let huge = "x".repeat(40 << 20);
    let bad: Vec<(&str, RecordBatch)> = vec![
        (
            "wrong type",
            RecordBatch::try_from_iter([
                ("host", host("b")),
                ("ts", ts(Some(2))),
                ("cpu", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ])
            .unwrap(),
        ),
        (
            "missing time index",
            RecordBatch::try_from_iter([
                ("host", host("b")),
                ("cpu", Arc::new(Float64Array::from(vec![1.0])) as ArrayRef),
            ])
            .unwrap(),
        ),
        (
            "null time index",
            RecordBatch::try_from_iter([("host", host("b")), ("ts", ts(None))]).unwrap(),
        ),
        (
            "unknown column",
            RecordBatch::try_from_iter([
                ("host", host("b")),
                ("ts", ts(Some(2))),
                ("disk", Arc::new(Float64Array::from(vec![1.0])) as ArrayRef),
            ])
            .unwrap(),
        ),
        ("empty batch", put_batch(&[])),
        (
            "huge string",
            RecordBatch::try_from_iter([("host", host(&huge)), ("ts", ts(Some(2)))]).unwrap(),
        ),
    ];
    for (what, batch) in bad {
        let err = engine
            .handle_request(REGION, RegionRequest::Put(RegionPutRequest { rows: batch }))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{what}: {err}");
        assert!(
            err.to_string().contains("region 1(1)") || err.to_string().contains("Invalid request"),
            "{what}: {err}"
        );
    }
    // NaN, extreme timestamps and a 1 MiB tag are fine; nothing was lost.
    let big = "y".repeat(1 << 20);
    put(
        &engine,
        REGION,
        &[
            ("n", i64::MIN, Some(f64::NAN)),
            ("n", i64::MAX, Some(f64::INFINITY)),
            (big.as_str(), 0, None),
        ],
    )
    .await
    .unwrap();
    let want = vec![
        r("a", 1, 1.0),
        r("n", i64::MIN, f64::NAN),
        r("n", i64::MAX, f64::INFINITY),
        (big.clone(), 0, None),
    ];
    let mut got = scan_all(&engine, REGION).await;
    got.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert!(same_rows(&got, &want));
    flush(&engine, REGION).await;
    close(&engine, REGION).await;
    open(&engine, REGION).await;
    let mut got = scan_all(&engine, REGION).await;
    got.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert!(same_rows(&got, &want));
    // Requests for unknown regions and unsupported requests are typed errors.
    let err = put(&engine, RegionId::new(9, 9), &[("a", 1, None)])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    engine.stop().await.unwrap();
    let err = put(&engine, REGION, &[("a", 1, None)]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_regions_flush_on_their_own() {
    use std::sync::Arc;
    use std::time::Duration;

    use store_api::clock::ManualClock;

    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let config = mito_engine::MitoConfig {
        auto_flush_interval: Duration::from_secs(60),
        ..small_config()
    };
    let engine = start_with_clock(dir.path(), config, clock.clone()).await;
    create(&engine, REGION).await;
    put(&engine, REGION, &[("a", 1, Some(1.0))]).await.unwrap();
    // Not idle long enough: nothing happens over a few worker ticks.
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    for _ in 0..4 {
        tick.tick().await;
    }
    assert_eq!(engine.region_statistics(REGION).unwrap().files, 0);
    // A minute later by the engine's clock, the next tick flushes it.
    clock.advance(61_000);
    let mut flushed = false;
    for _ in 0..40 {
        tick.tick().await;
        if engine.region_statistics(REGION).unwrap().files == 1 {
            flushed = true;
            break;
        }
    }
    assert!(flushed, "the idle region was not flushed");
    assert!(same_rows(
        &scan_all(&engine, REGION).await,
        &[r("a", 1, 1.0)]
    ));
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_write_buffer_stalls_and_flushes_but_loses_nothing() {
    use store_api::config::ReadableSize;

    let dir = tempfile::tempdir().unwrap();
    let config = mito_engine::MitoConfig {
        global_write_buffer_size: ReadableSize::mib(1),
        region_write_buffer_size: ReadableSize::mib(1),
        ..small_config()
    };
    let engine = start(dir.path(), config).await;
    create(&engine, REGION).await;
    let mut want = Vec::new();
    for step in 0..60 {
        let rows: Vec<(String, i64, Option<f64>)> = (0..500)
            .map(|h| {
                (
                    format!("host-{h:04}"),
                    step * 1000,
                    Some(f64::from(h) + step as f64),
                )
            })
            .collect();
        let refs: Vec<(&str, i64, Option<f64>)> =
            rows.iter().map(|(h, t, v)| (h.as_str(), *t, *v)).collect();
        put(&engine, REGION, &refs).await.unwrap();
        want.extend(rows);
    }
    want.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert!(same_rows(&scan_all(&engine, REGION).await, &want));
    // One explicit flush at the end; every other file was a flush the buffer asked for.
    flush(&engine, REGION).await;
    let stats = engine.region_statistics(REGION).unwrap();
    assert!(stats.files >= 2, "{stats:?}");
    assert!(same_rows(&scan_all(&engine, REGION).await, &want));
    let metrics = engine.metrics_text();
    assert!(
        metrics.contains("mito_flushes_total{outcome=\"ok\"}"),
        "{metrics}"
    );
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_in_a_group_fail_alone() {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch};

    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), small_config()).await;
    create(&engine, REGION).await;
    // Many concurrent requests land in the same worker groups; every third one is bad.
    let tasks: Vec<_> = (0..60i64)
        .map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let batch = if i % 3 == 0 {
                    let host: ArrayRef = Arc::new(arrow_array::StringArray::from(vec!["bad"]));
                    let cpu: ArrayRef = Arc::new(Int64Array::from(vec![i]));
                    RecordBatch::try_from_iter([("host", host), ("cpu", cpu)]).unwrap()
                } else {
                    put_batch(&[("good", i, Some(i as f64))])
                };
                engine
                    .handle_request(REGION, RegionRequest::Put(RegionPutRequest { rows: batch }))
                    .await
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let result = t.await.unwrap();
        if i % 3 == 0 {
            assert_eq!(result.unwrap_err().kind(), ErrorKind::InvalidArgument);
        } else {
            assert_eq!(result.unwrap().affected_rows, 1);
        }
    }
    let want: Vec<Row> = (0..60i64)
        .filter(|i| i % 3 != 0)
        .map(|i| r("good", i, i as f64))
        .collect();
    assert!(same_rows(&scan_all(&engine, REGION).await, &want));
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_merges_files_and_changes_no_row() {
    use store_api::region_request::{CompactOptions, RegionCompactRequest};

    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), small_config()).await;
    create(&engine, REGION).await;
    let compact = |options| RegionRequest::Compact(RegionCompactRequest { options });
    // Three hours of rows, each hour written by three overlapping flushes, with overwrites
    // and deletes across files; each hour dense enough (4,200 rows, over
    // SPARSE_WINDOW_ROWS) that compaction keeps it a window of its own.
    let mut want = std::collections::BTreeMap::new();
    for hour in 0..3i64 {
        for round in 0..3 {
            let rows: Vec<(String, i64, Option<f64>)> = (0..4200)
                .map(|i| {
                    let v = (round * 10_000 + i) as f64;
                    (format!("h{}", i % 5), hour * 3_600_000 + i * 200, Some(v))
                })
                .collect();
            let refs: Vec<(&str, i64, Option<f64>)> =
                rows.iter().map(|(h, t, v)| (h.as_str(), *t, *v)).collect();
            put(&engine, REGION, &refs).await.unwrap();
            for (h, t, v) in rows {
                want.insert((h, t), v);
            }
            // Row i = 25 * round + 6 (host h1).
            let gone = ("h1", hour * 3_600_000 + round * 5000 + 1200);
            delete(&engine, REGION, &[gone]).await.unwrap();
            want.remove(&(gone.0.to_string(), gone.1));
            flush(&engine, REGION).await;
        }
    }
    let want: Vec<Row> = want.into_iter().map(|((h, t), v)| (h, t, v)).collect();
    assert!(same_rows(&scan_all(&engine, REGION).await, &want));
    // Strict hourly windows: one file per hour.
    engine
        .handle_request(
            REGION,
            compact(CompactOptions::StrictWindow {
                window_seconds: 3600,
            }),
        )
        .await
        .unwrap();
    let stats = engine.region_statistics(REGION).unwrap();
    assert_eq!(stats.files, 3, "{stats:?}");
    assert!(same_rows(&scan_all(&engine, REGION).await, &want));
    // A regular compaction finds nothing more to do in closed windows with one file each.
    engine
        .handle_request(REGION, compact(CompactOptions::Regular))
        .await
        .unwrap();
    assert_eq!(engine.region_statistics(REGION).unwrap().files, 3);
    // A bad window is refused.
    let err = engine
        .handle_request(
            REGION,
            compact(CompactOptions::StrictWindow { window_seconds: 0 }),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    // The removed inputs are deleted once no scan holds them; reopen sees the same rows.
    close(&engine, REGION).await;
    open(&engine, REGION).await;
    assert_eq!(engine.region_statistics(REGION).unwrap().files, 3);
    assert!(same_rows(&scan_all(&engine, REGION).await, &want));
    let parquet = std::fs::read_dir(dir.path().join("data/regions/1/1/data"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "parquet")
        })
        .count();
    assert_eq!(parquet, 3, "inputs of the compaction were not deleted");
    // Truncate after compaction: nothing comes back.
    engine
        .handle_request(REGION, RegionRequest::Truncate(RegionTruncateRequest::All))
        .await
        .unwrap();
    close(&engine, REGION).await;
    open(&engine, REGION).await;
    assert!(scan_all(&engine, REGION).await.is_empty());
    engine.stop().await.unwrap();
}

/// The last row of each series that passes a filter on a field, where the last rows fail
/// it for a varying stretch back (up to every row), in files and a memtable that overwrite
/// and delete each other's rows: the answers of the brute-force selection over every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_row_passing_a_field_filter_is_found_however_far_back() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), small_config()).await;
    create(&engine, REGION).await;
    let mut rng = StdRng::seed_from_u64(7);
    let hosts: Vec<String> = (0..24).map(|i| format!("h{i:02}")).collect();
    let mut state: BTreeMap<(String, i64), Option<f64>> = BTreeMap::new();
    // Host i's value is null in its last 0, 3, 15, 63 or 255 steps of 10 s, or in all of
    // them (i % 6), with nulls scattered before; four files.
    let steps = 1200i64;
    let null_tail = |i: usize| match i % 6 {
        5 => steps,
        n => 4i64.pow(n as u32) - 1,
    };
    for part in 0..4 {
        let mut rows = Vec::new();
        for (i, h) in hosts.iter().enumerate() {
            for s in (part * steps / 4)..((part + 1) * steps / 4) {
                let v = (s < steps - null_tail(i) && !rng.random_bool(0.1))
                    .then(|| f64::from(rng.random_range(0..1000)));
                rows.push((h.as_str(), s * 10_000, v));
            }
        }
        put(&engine, REGION, &rows).await.unwrap();
        for (h, t, v) in rows {
            state.insert((h.to_string(), t), v);
        }
        flush(&engine, REGION).await;
    }
    last_rows_match(&engine, &state).await;
    // Newer versions, in a file and then in the memtable: a value over an old null, and
    // over the last row with a value of each series whose last row is null, a null or a
    // delete (so the last row itself is never deleted, which takes the full merge).
    for round in 0..2 {
        let mut rows = Vec::new();
        let mut gone = Vec::new();
        for (i, h) in hosts.iter().enumerate() {
            let last_valued = state
                .iter()
                .filter(|((host, _), v)| host == h && v.is_some())
                .map(|((_, t), _)| *t)
                .next_back();
            if let Some(t) = last_valued
                && null_tail(i) > 0
            {
                if rng.random_bool(0.5) {
                    rows.push((h.as_str(), t, None));
                } else {
                    gone.push((h.as_str(), t));
                }
            }
            let t = rng.random_range(0..steps - 1) * 10_000;
            rows.push((h.as_str(), t, Some(f64::from(rng.random_range(0..1000)))));
        }
        put(&engine, REGION, &rows).await.unwrap();
        delete(&engine, REGION, &gone).await.unwrap();
        for (h, t, v) in rows {
            state.insert((h.to_string(), t), v);
        }
        for (h, t) in gone {
            state.remove(&(h.to_string(), t));
        }
        if round == 0 {
            flush(&engine, REGION).await;
        }
    }
    last_rows_match(&engine, &state).await;
}

/// Last-row scans with field filters answer as the selection over `state`'s rows does.
async fn last_rows_match(
    engine: &mito_engine::MitoEngine,
    state: &BTreeMap<(String, i64), Option<f64>>,
) {
    use store_api::scan::SeriesRowSelector;
    type Keep = Box<dyn Fn(&str, i64, f64) -> bool>;
    let ts = |t| {
        lit(datafusion_common::ScalarValue::TimestampMillisecond(
            Some(t),
            None,
        ))
    };
    let three = ["h01", "h05", "h09"];
    let cases: Vec<(Vec<datafusion_expr::Expr>, Keep)> = vec![
        (vec![col("cpu").is_not_null()], Box::new(|_, _, _| true)),
        (
            vec![col("cpu").gt(lit(900.0))],
            Box::new(|_, _, v| v > 900.0),
        ),
        (
            vec![
                col("cpu").lt(lit(500.0)),
                col("host").in_list(three.iter().map(|h| lit(*h)).collect(), false),
            ],
            Box::new(move |h, _, v| v < 500.0 && three.contains(&h)),
        ),
        (
            vec![col("cpu").is_not_null(), col("ts").lt(ts(9_000_000))],
            Box::new(|_, t, _| t < 9_000_000),
        ),
    ];
    for (filters, keep) in cases {
        let what = format!("{filters:?}");
        let got = scan(
            engine,
            REGION,
            ScanRequest {
                filters,
                series_row_selector: Some(SeriesRowSelector::LastRow),
                ..Default::default()
            },
        )
        .await;
        let mut want: BTreeMap<String, Row> = BTreeMap::new();
        for ((h, t), v) in state {
            if let Some(v) = v
                && keep(h, *t, *v)
            {
                want.insert(h.clone(), (h.clone(), *t, Some(*v)));
            }
        }
        let want: Vec<Row> = want.into_values().collect();
        assert!(want.len() >= 2, "{what}: a case with answers");
        assert!(
            same_rows(&got, &want),
            "{what}\n got {got:?}\nwant {want:?}"
        );
    }
}
