//! Memtable insert and read on TSBS cpu-only rows: 4000 hosts, batches of 4000 rows (one row
//! per host, as a collector sends them), 10 string tags and 10 float fields.
//!
//! - `memtable/insert`: rows/s inserting 90 batches (360,000 rows, 15 minutes of data) into a
//!   fresh memtable, on one core.
//! - `memtable/read_sorted_dedup`: rows/s for the sorted, deduplicated read of the whole
//!   memtable (all columns), on one core, read after read (parts merged by the first read).
//! - `memtable/first_read_after_insert`: the same read on a freshly filled memtable, so it
//!   includes merging the parts into series order (what the first query pays).
//! - `memtable/read_frozen`: one read of a freshly filled, frozen memtable: no merge (what a
//!   flush pays).
//! - Memory: bytes held per row against the Arrow size of the same input rows, printed once.
//!
//! `cargo bench -p benchmarks --bench memtable`
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    reason = "a benchmark measures wall time and stops on any error"
)]

use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mito_memtable::{Memtable, MemtableOptions, MemtableRead};
use mito_read::OpType;
use store_api::RegionId;
use tsbs::{CpuGenerator, cpu_metadata};

const HOSTS: usize = 4000;
const STEPS: usize = 90;

fn batches() -> Vec<RecordBatch> {
    let mut g = CpuGenerator::new(HOSTS, 123);
    (0..STEPS).map(|_| g.next_batch()).collect()
}

fn fill(batches: &[RecordBatch]) -> Memtable {
    let meta = Arc::new(cpu_metadata(RegionId::new(1, 0)));
    let m = Memtable::new(meta, MemtableOptions::default()).unwrap();
    let mut seq = 1;
    for b in batches {
        m.write(b, seq, OpType::Put).unwrap();
        seq += b.num_rows() as u64;
    }
    m
}

fn bench_memtable(c: &mut Criterion) {
    let input = batches();
    let rows = (HOSTS * STEPS) as u64;

    let m = fill(&input);
    let held = m.stats().bytes;
    let arrow: usize = input.iter().map(|b| b.get_array_memory_size()).sum();
    // Tag arrays are shared between the generator's batches; count them once per batch as a
    // sender would have to: the Arrow size of the same rows, sent separately.
    let arrow_unshared: usize = input
        .iter()
        .map(|b| {
            b.columns()
                .iter()
                .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
                .sum::<usize>()
        })
        .sum();
    println!(
        "memtable memory: {rows} rows, held {held} B = {:.1} B/row; Arrow size of the input {arrow_unshared} B = {:.1} B/row; held / Arrow = {:.2} (input batches as allocated: {arrow} B)",
        held as f64 / rows as f64,
        arrow_unshared as f64 / rows as f64,
        held as f64 / arrow_unshared as f64,
    );

    let mut group = c.benchmark_group("memtable");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(rows));
    group.bench_function("insert", |b| b.iter(|| fill(&input)));
    let req = MemtableRead::default();
    group.bench_function("read_sorted_dedup", |b| {
        b.iter(|| {
            let n: usize = m.read(&req).unwrap().map(|b| b.unwrap().num_rows()).sum();
            assert_eq!(n as u64, rows);
        })
    });
    group.bench_function("first_read_after_insert", |b| {
        b.iter_batched(
            || fill(&input),
            |fresh| {
                let n: usize = fresh
                    .read(&req)
                    .unwrap()
                    .map(|b| b.unwrap().num_rows())
                    .sum();
                assert_eq!(n as u64, rows);
                fresh
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.bench_function("read_frozen", |b| {
        b.iter_batched(
            || {
                let m = fill(&input);
                m.freeze();
                m
            },
            |frozen| {
                let n: usize = frozen
                    .read(&req)
                    .unwrap()
                    .map(|b| b.unwrap().num_rows())
                    .sum();
                assert_eq!(n as u64, rows);
                frozen
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_memtable);
criterion_main!(benches);
