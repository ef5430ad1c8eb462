//! Texts of one query shape (the same statement with other literals in its `WHERE` clause)
//! share one plan, run with their own values: every such run answers what a plan made for
//! that text alone answers, over files and the memtable.
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
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

mod common;

const HOSTS: usize = 40;
/// Seconds between two rows of a host; two hours of data.
const STEP: i64 = 10;
const ROWS_PER_HOST: i64 = 720;

/// Two hours of `cpu` for [`HOSTS`] hosts: the first hour flushed to a file, the second in
/// the memtable.
async fn instance(dir: &std::path::Path) -> Instance {
    let instance = Instance::open(dir, InstanceOptions::default())
        .await
        .unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    for half in 0..2 {
        let mut text = String::new();
        for step in (half * ROWS_PER_HOST / 2)..((half + 1) * ROWS_PER_HOST / 2) {
            for h in 0..HOSTS {
                let user: f64 = rng.random_range(0.0..100.0);
                let system: f64 = rng.random_range(-5.0..5.0);
                text.push_str(&format!(
                    "cpu,hostname=host_{h},region=r{} usage_user={user:.2},usage_system={system:.2},cores={}i {}\n",
                    h % 3,
                    h % 8,
                    step * STEP * 1_000_000_000
                ));
            }
        }
        let report = ingest_text(&instance, &text, &IngestOptions::default()).await;
        assert_eq!(report.refused, 0, "{:?}", report.errors);
        if half == 0 {
            instance.flush("cpu").await.unwrap();
        }
    }
    instance
}

fn time(seconds: i64) -> String {
    let hours = seconds / 3600;
    let minutes = (seconds % 3600) / 60;
    format!("'1970-01-01T{hours:02}:{minutes:02}:{:02}'", seconds % 60)
}

/// A random text of each shape: new hosts, windows and thresholds every time.
fn texts(rng: &mut StdRng) -> Vec<String> {
    let host = |rng: &mut StdRng| format!("'host_{}'", rng.random_range(0..HOSTS));
    let span = ROWS_PER_HOST * STEP;
    let lo = rng.random_range(0..span / 60) * 60;
    let hi = (lo + rng.random_range(1..span / 60) * 60).min(span + 600);
    let window = format!("time >= {} AND time < {}", time(lo), time(hi));
    let eight: Vec<String> = (0..8).map(|_| host(rng)).collect();
    let threshold: f64 = rng.random_range(0.0..100.0);
    let minute = "date_bin(INTERVAL '1 minute', time) AS minute";
    vec![
        format!(
            "SELECT {minute}, max(usage_user) FROM cpu WHERE hostname = {} AND {window} \
             GROUP BY minute ORDER BY minute",
            host(rng)
        ),
        format!(
            "SELECT {minute}, max(usage_user), min(usage_system) FROM cpu WHERE hostname IN ({}) \
             AND {window} GROUP BY minute ORDER BY minute",
            eight.join(", ")
        ),
        format!(
            "SELECT * FROM cpu WHERE hostname = {} AND usage_user > {threshold:.1} AND {window} \
             ORDER BY time",
            host(rng)
        ),
        // An integer literal against a float column, a negative one, an integer column.
        format!(
            "SELECT count(*), sum(cores) FROM cpu WHERE usage_user > {} AND usage_system > -{} \
             AND cores >= {} AND {window}",
            rng.random_range(0..100),
            rng.random_range(0..5),
            rng.random_range(0..8)
        ),
        format!(
            "SELECT region, avg(usage_user) FROM cpu WHERE {window} GROUP BY region ORDER BY region"
        ),
        format!(
            "SELECT {minute}, max(usage_user) FROM cpu WHERE time < {} AND time >= {} \
             GROUP BY minute ORDER BY minute DESC LIMIT 5",
            time(hi),
            time(lo)
        ),
        // A fraction against an integer column binds nothing: planned per text.
        format!(
            "SELECT count(*) FROM cpu WHERE cores > {}.5 AND {window}",
            rng.random_range(0..8)
        ),
    ]
}

/// `sql` with a conjunct that is always true and that no shape can hold (its placeholders
/// would have no type), so it is planned as a text of its own.
fn unshaped(sql: &str) -> String {
    sql.replacen(" WHERE ", " WHERE ('a' || 'b') = 'ab' AND ", 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_text_of_a_shape_answers_as_its_own_plan() {
    let dir = tempfile::tempdir().unwrap();
    let instance = instance(dir.path()).await;
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..25 {
        for sql in texts(&mut rng) {
            let plain = unshaped(&sql);
            assert_ne!(plain, sql);
            assert_eq!(
                rows(&instance, &sql).await,
                rows(&instance, &plain).await,
                "{sql}"
            );
        }
    }
    // New texts of the shapes that bind add no plan (the last shape's texts are each kept
    // by their text).
    let kept = instance.cached_plans();
    for _ in 0..10 {
        let texts = texts(&mut rng);
        for sql in &texts[..texts.len() - 1] {
            rows(&instance, sql).await;
        }
    }
    assert_eq!(instance.cached_plans(), kept);
    instance.close(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shape_with_values_that_do_not_bind_is_planned_per_text() {
    let dir = tempfile::tempdir().unwrap();
    let instance = instance(dir.path()).await;
    // The same shape, first with a value that binds, then with ones that cannot be what
    // the shape's types say: each is planned alone and gives its own answer or error.
    let ok = "SELECT count(*) FROM cpu WHERE hostname = 'host_1' AND time < '1970-01-01T00:10:00'";
    assert_eq!(rows(&instance, ok).await, ["60"]);
    let bad = "SELECT count(*) FROM cpu WHERE hostname = 'host_1' AND time < 'not a time'";
    let err = frontend::query::query(&instance, bad).await.unwrap_err();
    assert!(err.to_string().contains("not a time"), "{err}");
    let number = "SELECT count(*) FROM cpu WHERE hostname = 'host_1' AND time < 600000000000";
    let shaped = frontend::query::query(&instance, number).await.unwrap_err();
    let plain = frontend::query::query(&instance, &unshaped(number))
        .await
        .unwrap_err();
    assert_eq!(shaped.to_string(), plain.to_string());
    instance.close(false).await.unwrap();
}
