//! SST write and read on TSBS cpu-only rows (4000 hosts, 10 string tags, 10 float fields with
//! 2 decimals, one row per host every 10 s), sorted as a flush writes them.
//!
//! - `sst/write_1m`: rows/s writing 1,000,000 rows into one file on local disk (one core;
//!   includes the read-back checksum verification after upload).
//! - `sst/read_1m`: rows/s reading that file whole, all columns.
//! - `sst/selective_first_batch` and `sst/selective_read`: one host over one hour
//!   (`hostname = 'host_1333'`, 360 rows) from a 4,320,000-row file (3 hours): time to the
//!   first batch and to the whole answer, with the file opened (footer read) each time.
//! - Bytes per row on disk for both files, printed once.
//!
//! `cargo bench -p benchmarks --bench sst`
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a benchmark measures wall time and stops on any error"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion_expr::{col, lit};
use futures::StreamExt;
use mito_memtable::{Memtable, MemtableOptions, MemtableRead};
use mito_read::OpType;
use mito_sst::{FileMeta, SstReadRequest, SstReader, SstWriter, WriteOptions};
use opendal::Operator;
use store_api::RegionId;
use store_api::metadata::RegionMetadataRef;
use store_api::scan::TimeRange;
use tsbs::{CpuGenerator, cpu_metadata};

const HOSTS: usize = 4000;
const DIR: &str = "region/";

/// Sorted flush batches of `steps` timestamps of every host.
fn sorted_batches(meta: &RegionMetadataRef, steps: usize) -> Vec<RecordBatch> {
    let mut g = CpuGenerator::new(HOSTS, 123);
    let m = Memtable::new(
        meta.clone(),
        MemtableOptions {
            time_window: Duration::from_secs(365 * 24 * 3600),
            ..MemtableOptions::default()
        },
    )
    .unwrap();
    let mut seq = 1;
    for _ in 0..steps {
        let b = g.next_batch();
        m.write(&b, seq, OpType::Put).unwrap();
        seq += b.num_rows() as u64;
    }
    m.freeze();
    let req = MemtableRead {
        keep_deletes: true,
        ..MemtableRead::default()
    };
    m.read(&req).unwrap().map(|b| b.unwrap()).collect()
}

async fn write(op: &Operator, meta: &RegionMetadataRef, batches: &[RecordBatch]) -> FileMeta {
    SstWriter::write_file(
        op.clone(),
        DIR,
        meta.clone(),
        batches,
        WriteOptions::default(),
    )
    .await
    .unwrap()
}

async fn count(reader: &SstReader, req: &SstReadRequest) -> usize {
    let mut s = reader.read(req).await.unwrap();
    let mut n = 0;
    while let Some(b) = s.next().await {
        n += b.unwrap().num_rows();
    }
    n
}

/// Rows of `host` in what the reader returns (pruning keeps whole pages; the scan above the
/// SST applies the filter to rows).
async fn count_host(reader: &SstReader, req: &SstReadRequest, host: &str) -> usize {
    let mut s = reader.read(req).await.unwrap();
    let mut n = 0;
    while let Some(b) = s.next().await {
        let b = b.unwrap();
        let hosts = arrow_cast::cast(b.column(0), &arrow_schema::DataType::Utf8).unwrap();
        n += hosts
            .as_string::<i32>()
            .iter()
            .filter(|h| *h == Some(host))
            .count();
    }
    n
}

fn bench_sst(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let op = mito_sst::store::fs_operator(dir.path().to_str().unwrap()).unwrap();
    let meta: RegionMetadataRef = Arc::new(cpu_metadata(RegionId::new(1, 0)));

    // 1M rows = 4000 hosts x 250 steps.
    let small = sorted_batches(&meta, 250);
    let rows: usize = small.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 1_000_000);
    let file = rt.block_on(write(&op, &meta, &small));
    println!(
        "sst 1M rows: {} bytes = {:.2} B/row, {} row groups",
        file.file_size,
        file.file_size as f64 / rows as f64,
        file.num_row_groups
    );

    let mut group = c.benchmark_group("sst");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function("write_1m", |b| {
        b.iter(|| {
            let f = rt.block_on(write(&op, &meta, &small));
            rt.block_on(op.delete(&mito_sst::sst_path(DIR, f.file_id)))
                .unwrap();
        })
    });
    let reader = rt
        .block_on(SstReader::open(op.clone(), DIR, file.clone(), meta.clone()))
        .unwrap();
    group.bench_function("read_1m", |b| {
        b.iter(|| {
            let n = rt.block_on(count(&reader, &SstReadRequest::default()));
            assert_eq!(n, rows);
        })
    });
    drop(small);

    // 4.32M rows = 3 hours.
    let big = sorted_batches(&meta, 1080);
    let big_rows: usize = big.iter().map(RecordBatch::num_rows).sum();
    let big_file = rt.block_on(write(&op, &meta, &big));
    drop(big);
    println!(
        "sst 4.32M rows: {} bytes = {:.2} B/row, {} row groups",
        big_file.file_size,
        big_file.file_size as f64 / big_rows as f64,
        big_file.num_row_groups
    );
    // Where the bytes go: compressed column chunk bytes per column, summed over row groups.
    let r = rt
        .block_on(SstReader::open(
            op.clone(),
            DIR,
            big_file.clone(),
            meta.clone(),
        ))
        .unwrap();
    let pq = r.parquet_metadata();
    let schema = pq.file_metadata().schema_descr();
    let mut per_column: Vec<(String, i64)> = (0..schema.num_columns())
        .map(|i| (schema.column(i).name().to_string(), 0))
        .collect();
    for rg in pq.row_groups() {
        for (i, c) in rg.columns().iter().enumerate() {
            per_column[i].1 += c.compressed_size();
        }
    }
    let line: Vec<String> = per_column
        .iter()
        .map(|(n, b)| format!("{n} {:.2}", *b as f64 / big_rows as f64))
        .collect();
    println!("sst 4.32M rows, B/row per column: {}", line.join(", "));
    // 2016-01-01T01:00:00Z .. 02:00:00Z in ns.
    let start = 1_451_610_000_000_000_000i64;
    let req = SstReadRequest {
        time_range: Some(TimeRange::new(start, start + 3_600_000_000_000)),
        filters: vec![col("hostname").eq(lit("host_1333"))],
        ..SstReadRequest::default()
    };
    let open = || {
        rt.block_on(SstReader::open(
            op.clone(),
            DIR,
            big_file.clone(),
            meta.clone(),
        ))
        .unwrap()
    };
    let r = open();
    let plan = r.plan(&req);
    let returned = rt.block_on(count(&r, &req));
    let got = rt.block_on(count_host(&r, &req, "host_1333"));
    println!(
        "selective read: {got} rows of the host in {returned} rows returned, {} rows decoded from {} row group(s)",
        plan.rows,
        plan.row_groups.len()
    );
    assert_eq!(got, 360);
    group.throughput(Throughput::Elements(got as u64));
    group.bench_function("selective_first_batch", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let r = open();
                rt.block_on(async {
                    let mut s = r.read(&req).await.unwrap();
                    s.next().await.unwrap().unwrap();
                });
                total += t.elapsed();
            }
            total
        })
    });
    group.bench_function("selective_read", |b| {
        b.iter(|| {
            let r = open();
            assert_eq!(rt.block_on(count_host(&r, &req, "host_1333")), 360);
        })
    });
    group.finish();
}

criterion_group!(benches, bench_sst);
criterion_main!(benches);
