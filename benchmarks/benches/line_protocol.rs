//! Line-protocol ingest without the engine: parsing alone, and parsing into per-table Arrow
//! batches (the `mito write` reader thread), over TSBS cpu-only lines (100 hosts x 100 steps).

use std::collections::HashMap;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use frontend::ingest::batcher::{Batcher, Precision, SeriesMemo};
use frontend::ingest::line_protocol::{Line, parse_line};
use tsbs::{CpuGenerator, write_line_protocol};

fn input() -> String {
    let mut cpu = CpuGenerator::new(100, 42);
    let mut text = String::new();
    for _ in 0..100 {
        write_line_protocol(&cpu.next_batch(), &mut text);
    }
    text
}

fn bench(c: &mut Criterion) {
    let text = input();
    let lines: Vec<&str> = text.lines().collect();
    let mut group = c.benchmark_group("line_protocol");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| {
            let mut line = Line::default();
            let mut fields = 0;
            for l in &lines {
                parse_line(l, &mut line).unwrap_or_default();
                fields += line.fields.len();
            }
            fields
        })
    });
    group.bench_function("parse_and_batch", |b| {
        b.iter(|| {
            let mut batcher = Batcher::new(
                HashMap::new(),
                Precision::Nanosecond,
                8192,
                Arc::new(SeriesMemo::default()),
            );
            let mut rows = 0;
            let mut line = Line::default();
            for (i, l) in lines.iter().enumerate() {
                if let Ok(Some(r)) = batcher.push(i as u64 + 1, l, &mut line, 0) {
                    rows += r.batch.num_rows();
                }
            }
            rows + batcher
                .finish()
                .iter()
                .map(|r| r.batch.num_rows())
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
