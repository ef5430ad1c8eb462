//! The k-way merge with dedup (`mito_read::merge`) on TSBS cpu-only rows, as a scan over a
//! memtable and SST files or a compaction sees them.
//!
//! - `merge/two_sources_by_series`: two sorted sources holding consecutive time ranges of the
//!   same 4000 series (1 M rows: 125 steps each), so the output alternates between them every
//!   125 rows; rows/s on one core.
//! - `merge/four_overlapping`: four sources with every 4th step each (same 1 M rows), so the
//!   merge switches source at every row: the worst case.
//!
//! `cargo bench -p benchmarks --bench merge`
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a benchmark measures wall time and stops on any error"
)]

use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use mito_memtable::{Memtable, MemtableOptions, MemtableRead};
use mito_read::merge::{BatchStream, MergeOptions, merge};
use mito_read::{DedupOptions, OpType};
use store_api::RegionId;
use store_api::metadata::{RegionMetadataRef, SemanticType};
use tsbs::{CpuGenerator, cpu_metadata};

const HOSTS: usize = 4000;
const STEPS: usize = 250;

/// Sorted batches of the steps `keep` selects, with sequences as if written in step order.
fn source(meta: &RegionMetadataRef, keep: impl Fn(usize) -> bool) -> Vec<RecordBatch> {
    let mut g = CpuGenerator::new(HOSTS, 123);
    let m = Memtable::new(
        meta.clone(),
        MemtableOptions {
            time_window: Duration::from_secs(365 * 24 * 3600),
            ..MemtableOptions::default()
        },
    )
    .unwrap();
    for step in 0..STEPS {
        let b = g.next_batch();
        if keep(step) {
            m.write(&b, (step * HOSTS) as u64 + 1, OpType::Put).unwrap();
        }
    }
    m.freeze();
    m.read(&MemtableRead {
        keep_deletes: true,
        ..MemtableRead::default()
    })
    .unwrap()
    .map(|b| b.unwrap())
    .collect()
}

fn run(meta: &RegionMetadataRef, sources: &[Vec<RecordBatch>]) -> usize {
    let schema = sources[0][0].schema();
    let time_index = meta
        .column_index_by_id(meta.time_index_column().column_id)
        .unwrap();
    let fields = meta
        .column_metadatas()
        .iter()
        .enumerate()
        .filter(|(_, c)| c.semantic_type == SemanticType::Field)
        .map(|(i, _)| i)
        .collect();
    let streams: Vec<BatchStream<arrow_schema::ArrowError>> = sources
        .iter()
        .map(|s| futures::stream::iter(s.clone().into_iter().map(Ok)).boxed())
        .collect();
    let merged = merge(
        streams,
        MergeOptions {
            schema,
            time_index,
            fields,
            dedup: DedupOptions::default(),
            batch_rows: 8192,
        },
    );
    futures::executor::block_on(
        merged
            .map(|b| b.unwrap().num_rows())
            .fold(0, |a, n| async move { a + n }),
    )
}

fn bench_merge(c: &mut Criterion) {
    let meta: RegionMetadataRef = Arc::new(cpu_metadata(RegionId::new(1, 0)));
    let rows = (HOSTS * STEPS) as u64;
    let halves = vec![
        source(&meta, |s| s < STEPS / 2),
        source(&meta, |s| s >= STEPS / 2),
    ];
    let quarters: Vec<Vec<RecordBatch>> = (0..4).map(|q| source(&meta, |s| s % 4 == q)).collect();
    assert_eq!(run(&meta, &halves) as u64, rows);
    assert_eq!(run(&meta, &quarters) as u64, rows);

    let mut group = c.benchmark_group("merge");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    group.throughput(Throughput::Elements(rows));
    group.bench_function("two_sources_by_series", |b| b.iter(|| run(&meta, &halves)));
    group.bench_function("four_overlapping", |b| b.iter(|| run(&meta, &quarters)));
    group.finish();
}

criterion_group!(benches, bench_merge);
criterion_main!(benches);
