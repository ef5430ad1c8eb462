//! Power cuts under a whole instance: tables created by line protocol (catalog writes),
//! columns added to them (alters), flushes, all through a `FaultFs` that stops at a random
//! call and leaves the disk as a power cut would. After each cut the instance opens, every
//! acknowledged table and column exists, and each table holds every acknowledged row, no
//! row twice and none that was never written.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use frontend::ingest::{IngestOptions, Input, ingest};
use frontend::{Instance, InstanceOptions};
use mito_fs::fault::{Cut, FaultFs};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store_api::clock::SystemClock;

/// What the writer was told.
#[derive(Debug, Default)]
struct Acks {
    /// Per table: the values of acknowledged rows (each value written once).
    rows: BTreeMap<String, BTreeSet<u64>>,
    /// Per table: every value a write was attempted for.
    attempted: BTreeMap<String, BTreeSet<u64>>,
    /// (table, column) pairs whose adding write was acknowledged.
    columns: BTreeSet<(String, String)>,
}

/// Chunk `c` of the workload: 50 rows into one of up to three tables (a table appears at
/// chunks 0, 3 and 6), and from chunk 4 on a new field `w` in `t0`.
fn chunk(c: u64) -> (String, String, Vec<u64>) {
    let table = format!("t{}", (c % 3).min(c / 3));
    let mut text = String::new();
    let mut values = Vec::new();
    for i in 0..50 {
        let v = c * 1000 + i;
        let extra = if table == "t0" && c >= 4 { ",w=1" } else { "" };
        text.push_str(&format!(
            "{table},host=h{} v={v}{extra} {}\n",
            i % 5,
            v * 1_000_000
        ));
        values.push(v);
    }
    (table, text, values)
}

async fn workload(instance: &Instance, acks: &mut Acks) {
    for c in 0..10 {
        let (table, text, values) = chunk(c);
        acks.attempted
            .entry(table.clone())
            .or_default()
            .extend(&values);
        let report = ingest(
            instance,
            Input::Bytes(text.into_bytes().into()),
            &IngestOptions::default(),
            Arc::new(SystemClock),
            None,
        )
        .await;
        match report {
            Ok(r) if r.refused == 0 && r.rows_written == 50 => {}
            _ => return,
        }
        acks.rows.entry(table.clone()).or_default().extend(&values);
        if table == "t0" && c >= 4 {
            acks.columns.insert((table.clone(), "w".to_string()));
        }
        if c % 3 == 2 && instance.flush(&table).await.is_err() {
            return;
        }
    }
}

async fn check(dir: &Path, acks: &Acks, what: &str) {
    let instance = match Instance::open(dir, InstanceOptions::default()).await {
        Ok(i) => i,
        Err(e) => panic!("{what}: the directory does not open after the cut: {e}"),
    };
    let tables: BTreeSet<String> = instance
        .tables()
        .await
        .into_iter()
        .map(|t| t.name)
        .collect();
    for table in &tables {
        let attempted = acks.attempted.get(table);
        let mut seen = BTreeSet::new();
        for v in common::rows(&instance, &format!("SELECT v FROM {table}")).await {
            let v: f64 = v.parse().unwrap();
            let v = v as u64;
            assert!(seen.insert(v), "{what}: {table} holds {v} twice");
            assert!(
                attempted.is_some_and(|a| a.contains(&v)),
                "{what}: {table} holds {v}, never written"
            );
        }
        if let Some(acked) = acks.rows.get(table) {
            let lost: Vec<_> = acked.difference(&seen).collect();
            assert!(
                lost.is_empty(),
                "{what}: {table} lost acknowledged rows {lost:?}"
            );
        }
    }
    for table in acks.rows.keys() {
        assert!(
            tables.contains(table),
            "{what}: acknowledged table {table} is gone"
        );
    }
    for (table, column) in &acks.columns {
        common::rows(&instance, &format!("SELECT {column} FROM {table}")).await;
    }
    instance.close(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_columns_and_rows_acknowledged_survive_a_cut_anywhere() {
    // A run without a cut gives the workload's number of calls.
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::new(0);
    let guard = mito_fs::register(dir.path(), Arc::new(fs.clone()));
    let instance = Instance::open(dir.path(), InstanceOptions::default())
        .await
        .unwrap();
    let mut acks = Acks::default();
    workload(&instance, &mut acks).await;
    let total = fs.stats().calls;
    instance.close(false).await.unwrap();
    drop(guard);
    assert_eq!(acks.rows.values().map(BTreeSet::len).sum::<usize>(), 500);
    check(dir.path(), &acks, "no cut").await;

    let mut rng = StdRng::seed_from_u64(0xca7a);
    for i in 0..16 {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::new(rng.random());
        let guard = mito_fs::register(dir.path(), Arc::new(fs.clone()));
        let at = rng.random_range(1..=total);
        let mode = if i % 2 == 0 {
            Cut::Tear
        } else {
            Cut::DropUnsynced
        };
        let mut acks = Acks::default();
        // The cut may fall while the instance opens (its first catalog or WAL segment).
        fs.cut_at(at);
        if let Ok(instance) = Instance::open(dir.path(), InstanceOptions::default()).await {
            workload(&instance, &mut acks).await;
            fs.power_cut(mode).await.unwrap();
            instance.close(false).await.ok();
        } else {
            fs.power_cut(mode).await.unwrap();
        }
        drop(guard);
        check(
            dir.path(),
            &acks,
            &format!("cut {i} at call {at} of {total} ({mode:?})"),
        )
        .await;
    }
}
