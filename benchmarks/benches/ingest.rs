//! Engine ingest: the TSBS cpu-only data (4000 hosts x 3 hours every 10 s = 4.32 million
//! rows) through `RegionEngine` in batches of 4000 rows (one timestamp of every host) from 2
//! concurrent writers, `sync` WAL durability, default engine config (flushes happen as the
//! write buffer fills). Reports, per run: rows/s from the first put to the last
//! acknowledgement, bytes on disk (SSTs + manifest, WAL), peak RSS of the process (reset
//! before each run), the time to reopen the region with its WAL unflushed, and after a
//! final flush. Median [min..max] of `BENCH_RUNS` runs (default 3).
//!
//! The writers share one generator (behind a lock), so generation is inside the measured
//! time as a client's encoding would be; its rate alone is printed too.
//!
//! `cargo bench -p benchmarks --bench ingest`
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "a benchmark measures wall time and stops on any error"
)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use benchmarks::tsbs::{CpuGenerator, cpu_metadata};
use log_store::WalConfig;
use mito_engine::{MitoConfig, MitoEngine};
use store_api::RegionId;
use store_api::engine::RegionEngine;
use store_api::region_request::{
    RegionCloseRequest, RegionCreateRequest, RegionFlushRequest, RegionOpenRequest,
    RegionPutRequest, RegionRequest,
};

const HOSTS: usize = 4000;
const STEPS: usize = 1080;
const WRITERS: usize = 2;
const REGION: RegionId = RegionId::new(1024, 0);

fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

fn reset_peak_rss() {
    // Linux: writing 5 resets VmHWM to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Run {
    rows_per_sec: f64,
    sst_bytes: u64,
    wal_bytes: u64,
    files: usize,
    peak_rss_mib: u64,
    reopen_replay: Duration,
    reopen_flushed: Duration,
}

async fn run_once() -> Run {
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "target".into()))
        .unwrap();
    let config = MitoConfig::default();
    let engine = MitoEngine::open_local(dir.path(), config.clone(), WalConfig::default())
        .await
        .unwrap();
    let meta = cpu_metadata(REGION);
    engine
        .handle_request(
            REGION,
            RegionRequest::Create(RegionCreateRequest {
                column_metadatas: meta.column_metadatas().to_vec(),
                primary_key: meta.primary_key().to_vec(),
                options: Default::default(),
            }),
        )
        .await
        .unwrap();
    let generator = Arc::new(Mutex::new((CpuGenerator::new(HOSTS, 42), 0usize)));
    reset_peak_rss();
    let start = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let engine = engine.clone();
            let generator = generator.clone();
            tokio::spawn(async move {
                loop {
                    let batch = {
                        let mut g = generator.lock().unwrap();
                        if g.1 == STEPS {
                            break;
                        }
                        g.1 += 1;
                        g.0.next_batch()
                    };
                    engine
                        .handle_request(
                            REGION,
                            RegionRequest::Put(RegionPutRequest { rows: batch }),
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    let peak = peak_rss_mib();
    let stats = engine.region_statistics(REGION).unwrap();
    // Reopen with the WAL holding what was not flushed yet.
    engine
        .handle_request(
            REGION,
            RegionRequest::Close(RegionCloseRequest { flush: false }),
        )
        .await
        .unwrap();
    let t = Instant::now();
    engine
        .handle_request(REGION, RegionRequest::Open(RegionOpenRequest::default()))
        .await
        .unwrap();
    let reopen_replay = t.elapsed();
    engine
        .handle_request(REGION, RegionRequest::Flush(RegionFlushRequest))
        .await
        .unwrap();
    engine
        .handle_request(
            REGION,
            RegionRequest::Close(RegionCloseRequest { flush: false }),
        )
        .await
        .unwrap();
    let t = Instant::now();
    engine
        .handle_request(REGION, RegionRequest::Open(RegionOpenRequest::default()))
        .await
        .unwrap();
    let reopen_flushed = t.elapsed();
    let final_stats = engine.region_statistics(REGION).unwrap();
    engine.stop().await.unwrap();
    let rows = (HOSTS * STEPS) as f64;
    Run {
        rows_per_sec: rows / elapsed.as_secs_f64(),
        sst_bytes: dir_bytes(&dir.path().join("data")),
        wal_bytes: dir_bytes(&dir.path().join("wal")),
        files: final_stats.files.max(stats.files),
        peak_rss_mib: peak,
        reopen_replay,
        reopen_flushed,
    }
}

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!("{:.3} [{:.3}..{:.3}]", v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("ingest: bench");
        return;
    }
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The generator alone, for reference.
    let t = Instant::now();
    let mut g = CpuGenerator::new(HOSTS, 42);
    for _ in 0..STEPS {
        std::hint::black_box(g.next_batch());
    }
    let gen_rate = (HOSTS * STEPS) as f64 / t.elapsed().as_secs_f64();
    println!("generator alone: {:.2} M rows/s", gen_rate / 1e6);
    let config = MitoConfig::default();
    println!(
        "write buffer limit {} MiB, region {} MiB, {} workers",
        config.global_write_buffer_size.as_bytes() >> 20,
        config.region_write_buffer_size.as_bytes() >> 20,
        config.num_workers
    );
    let mut results = Vec::new();
    for i in 0..runs {
        let r = rt.block_on(run_once());
        println!(
            "run {i}: {:.3} M rows/s, SST+manifest {:.1} MB ({:.2} B/row, {} files), WAL left {:.1} MB, peak RSS {} MiB, reopen with WAL {:.0} ms, after flush {:.1} ms",
            r.rows_per_sec / 1e6,
            r.sst_bytes as f64 / 1e6,
            r.sst_bytes as f64 / (HOSTS * STEPS) as f64,
            r.files,
            r.wal_bytes as f64 / 1e6,
            r.peak_rss_mib,
            r.reopen_replay.as_secs_f64() * 1e3,
            r.reopen_flushed.as_secs_f64() * 1e3,
        );
        results.push(r);
    }
    println!(
        "ingest M rows/s: {}",
        summary(results.iter().map(|r| r.rows_per_sec / 1e6).collect())
    );
    println!(
        "peak RSS MiB: {}",
        summary(results.iter().map(|r| r.peak_rss_mib as f64).collect())
    );
    println!(
        "reopen with WAL ms: {}",
        summary(
            results
                .iter()
                .map(|r| r.reopen_replay.as_secs_f64() * 1e3)
                .collect()
        )
    );
    println!(
        "reopen after flush ms: {}",
        summary(
            results
                .iter()
                .map(|r| r.reopen_flushed.as_secs_f64() * 1e3)
                .collect()
        )
    );
    println!(
        "bytes/row on disk: {}",
        summary(
            results
                .iter()
                .map(|r| r.sst_bytes as f64 / (HOSTS * STEPS) as f64)
                .collect()
        )
    );
}
