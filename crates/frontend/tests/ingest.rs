//! Ingest into a real instance: order of duplicated points across batches in flight, and
//! tables that evolve while batches are in flight.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

use common::{ingest_text, rows};
use frontend::ingest::IngestOptions;
use frontend::{Instance, InstanceOptions};

mod common;

async fn write(instance: &Instance, text: &str, batch_rows: usize) {
    let options = IngestOptions {
        batch_rows,
        ..IngestOptions::default()
    };
    let report = ingest_text(instance, text, &options).await;
    assert_eq!(report.refused, 0, "{:?}", report.errors);
}

async fn open(dir: &std::path::Path) -> Instance {
    Instance::open(dir, InstanceOptions::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_line_of_a_point_wins_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let instance = open(dir.path()).await;
    // One batch per line, all the same point: each overlaps the previous, so they are
    // written in order and the last value stays. Interleaved with a second series whose
    // batches are disjoint in time (those may be in flight together).
    let mut text = String::new();
    for i in 0..200 {
        text.push_str(&format!("m,s=a v={i} 5\nm,s=b v={i} {}\n", 100 + i));
    }
    write(&instance, &text, 1).await;
    assert_eq!(
        rows(
            &instance,
            "SELECT s, count(*), max(v) FROM m GROUP BY s ORDER BY s"
        )
        .await,
        ["a,1,199.0", "b,200,199.0"]
    );
    // New columns arriving in later batches while earlier ones are in flight.
    let mut text = String::new();
    for i in 0..100 {
        text.push_str(&format!(
            "m,s=c,k{}=x v={i},f{}={i}i {}\n",
            i % 7,
            i % 5,
            1000 + i
        ));
    }
    write(&instance, &text, 3).await;
    assert_eq!(
        rows(
            &instance,
            "SELECT count(*), sum(f4), count(k6) FROM m WHERE s = 'c'"
        )
        .await,
        ["100,1030,14"]
    );
    instance.close(true).await.unwrap();

    // Everything is still there after a reopen.
    let instance = open(dir.path()).await;
    assert_eq!(rows(&instance, "SELECT count(*) FROM m").await, ["301"]);
    instance.close(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_plans_follow_new_data_and_new_columns() {
    let dir = tempfile::tempdir().unwrap();
    let instance = open(dir.path()).await;
    write(&instance, "p,h=a v=1 1\n", 100).await;
    let all = "SELECT * FROM p ORDER BY time";
    assert_eq!(
        rows(&instance, all).await,
        ["1970-01-01T00:00:00.000000001,a,1.0"]
    );
    assert_eq!(instance.cached_plans(), 1);
    // New rows: the cached plan reads them.
    write(&instance, "p,h=b v=2 2\n", 100).await;
    assert_eq!(
        rows(&instance, all).await,
        [
            "1970-01-01T00:00:00.000000001,a,1.0",
            "1970-01-01T00:00:00.000000002,b,2.0"
        ]
    );
    // A new field alters the table: the old plan is not used, `*` has the new column.
    write(&instance, "p,h=c v=3,w=4i 3\n", 100).await;
    assert_eq!(
        rows(&instance, all).await,
        [
            "1970-01-01T00:00:00.000000001,a,1.0,",
            "1970-01-01T00:00:00.000000002,b,2.0,",
            "1970-01-01T00:00:00.000000003,c,3.0,4"
        ]
    );
    // A query whose value depends on when it runs is never kept.
    let before = instance.cached_plans();
    let now = "SELECT count(*) FROM p WHERE time < now()";
    assert_eq!(rows(&instance, now).await, ["3"]);
    assert_eq!(instance.cached_plans(), before);
    instance.close(false).await.unwrap();
}

/// Kept physical plans run again with fresh operator state: every run of a cached plan gives
/// what a freshly planned copy of the query gives, over data that changes between runs
/// (new rows in the memtable, then in a new file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_plans_rerun_like_fresh_ones() {
    let dir = tempfile::tempdir().unwrap();
    let instance = open(dir.path()).await;
    let queries = [
        // A grouped aggregate, then a sort.
        "SELECT h, count(*), sum(v) FROM q GROUP BY h ORDER BY h",
        // Top-k.
        "SELECT h, v FROM q ORDER BY v DESC, h LIMIT 3",
        // A join (its build side is operator state).
        "SELECT a.h, count(*) FROM q a JOIN q b ON a.h = b.h GROUP BY a.h ORDER BY a.h",
        // A window, a union, a scalar subquery.
        "SELECT h, time, sum(v) OVER (PARTITION BY h ORDER BY time) FROM q ORDER BY h, time",
        "SELECT h FROM q WHERE v > 2 UNION ALL SELECT h FROM q WHERE v < 2 ORDER BY h",
        "SELECT count(*) FROM q WHERE v > (SELECT avg(v) FROM q)",
        // The last row per series.
        "SELECT DISTINCT ON (h) h, time, v FROM q ORDER BY h, time DESC",
    ];
    let mut text = String::new();
    for round in 0..3 {
        text.clear();
        for i in 0..20 {
            text.push_str(&format!(
                "q,h=h{} v={} {}\n",
                i % 4,
                (i * 7 + round) % 5,
                round * 100 + i
            ));
        }
        write(&instance, &text, 7).await;
        if round == 1 {
            instance.flush("q").await.unwrap();
        }
        for q in queries {
            let fresh = rows(&instance, &format!("{q} -- round {round}")).await;
            assert!(!fresh.is_empty(), "{q}");
            assert_eq!(rows(&instance, q).await, fresh, "{q}, round {round}");
            assert_eq!(rows(&instance, q).await, fresh, "{q}, round {round}, again");
        }
    }
    instance.close(false).await.unwrap();
}

/// A one-region table is planned as one DataFusion partition: no round-robin split, no
/// partial and final aggregates joined by a repartition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_region_tables_plan_one_partition() {
    let dir = tempfile::tempdir().unwrap();
    let instance = open(dir.path()).await;
    write(&instance, "r,h=a v=1 1\nr,h=b v=2 2\n", 100).await;
    let plan = rows(
        &instance,
        "EXPLAIN SELECT h, count(*) FROM r WHERE v > 0 GROUP BY h ORDER BY h",
    )
    .await
    .join("\n");
    assert!(!plan.contains("RepartitionExec"), "{plan}");
    assert!(plan.contains("mode=Single"), "{plan}");
    // The pushed filter is applied by the scan alone.
    assert!(!plan.contains("FilterExec"), "{plan}");
    assert_eq!(
        rows(
            &instance,
            "SELECT h, count(*) FROM r WHERE v > 1 GROUP BY h"
        )
        .await,
        ["b,1"]
    );
    instance.close(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_engine_refuses_is_split_and_only_its_bad_lines_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = InstanceOptions::default();
    options.engine.max_write_bytes = store_api::config::ReadableSize::kib(64);
    let instance = Instance::open(dir.path(), options).await.unwrap();
    // 1,000 small lines, three of them with a 100 KB string: each of those is over the
    // engine's request limit on its own, so no split can save it; every other line lands.
    let big = "x".repeat(100_000);
    let mut text = String::new();
    for i in 0..1000 {
        if [10, 500, 999].contains(&i) {
            text.push_str(&format!("m,s=a v=1,note=\"{big}\" {i}\n"));
        } else {
            text.push_str(&format!("m,s=a v={i} {i}\n"));
        }
    }
    let report = ingest_text(&instance, &text, &IngestOptions::default()).await;
    assert_eq!(report.rows_written, 997);
    assert_eq!(report.refused, 3);
    let lines: Vec<u64> = report.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [11, 501, 1000]);
    assert!(
        report.errors[0].reason.contains("max_write_bytes"),
        "{}",
        report.errors[0]
    );
    assert_eq!(
        rows(&instance, "SELECT count(*), sum(v) FROM m").await,
        ["997,497991.0"]
    );
    instance.close(true).await.unwrap();
}
