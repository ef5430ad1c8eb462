//! Engine ingest: the TSBS cpu-only data (4000 hosts x 3 hours every 10 s = 4.32 million
//! rows) through `RegionEngine` in batches of 4000 rows (one timestamp of every host) from 2
//! concurrent writers, `sync` WAL durability, default engine config (flushes happen as the
//! write buffer fills).
//!
//! Per run, each in a fresh process (so that peak RSS is the run's own):
//! - rows/s from the first put to the last acknowledgement, and to the end of a final flush;
//! - bytes on disk (SSTs + manifest) and WAL bytes left;
//! - peak RSS: the process's VmHWM minus its RSS right before the first put, i.e. what the
//!   engine added on top of the pre-generated input (about 0.4 GB: the batches are generated
//!   before the clock starts, as the peers were loaded from pre-generated files); the
//!   whole-process peak is printed next to it;
//! - the time to reopen the region with about a quarter of the data in the WAL (replayed),
//!   and after a flush.
//!
//! Median [min..max] of `BENCH_RUNS` runs (default 3).
//!
//! `cargo bench -p benchmarks --bench ingest`
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::panic,
    reason = "a benchmark measures wall time and stops on any error"
)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use log_store::WalConfig;
use mito_engine::{MitoConfig, MitoEngine};
use store_api::RegionId;
use store_api::engine::RegionEngine;
use store_api::region_request::{
    RegionCloseRequest, RegionCreateRequest, RegionFlushRequest, RegionOpenRequest,
    RegionPutRequest, RegionRequest,
};
use tsbs::{CpuGenerator, cpu_metadata};

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

fn status_mib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// One run's figures, as the child prints them.
#[derive(Debug, Clone, Copy)]
struct Run {
    rows_per_sec: f64,
    rows_per_sec_flushed: f64,
    sst_bytes: f64,
    wal_bytes: f64,
    files: f64,
    peak_rss_mib: f64,
    peak_total_mib: f64,
    reopen_replay_ms: f64,
    reopen_flushed_ms: f64,
    replayed_rows: f64,
}

impl Run {
    fn to_line(self) -> String {
        format!(
            "RESULT {} {} {} {} {} {} {} {} {} {}",
            self.rows_per_sec,
            self.rows_per_sec_flushed,
            self.sst_bytes,
            self.wal_bytes,
            self.files,
            self.peak_rss_mib,
            self.peak_total_mib,
            self.reopen_replay_ms,
            self.reopen_flushed_ms,
            self.replayed_rows
        )
    }

    /// Parses what follows `RESULT ` in [`Run::to_line`]'s output.
    fn from_line(line: &str) -> Self {
        let v: Vec<f64> = line
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        Self {
            rows_per_sec: v[0],
            rows_per_sec_flushed: v[1],
            sst_bytes: v[2],
            wal_bytes: v[3],
            files: v[4],
            peak_rss_mib: v[5],
            peak_total_mib: v[6],
            reopen_replay_ms: v[7],
            reopen_flushed_ms: v[8],
            replayed_rows: v[9],
        }
    }
}

async fn request(engine: &MitoEngine, r: RegionRequest) {
    engine.handle_request(REGION, r).await.unwrap();
}

async fn run_once() -> Run {
    let base = std::env::var("BENCH_DIR").unwrap_or_else(|_| "target".into());
    let dir = tempfile::tempdir_in(base).unwrap();
    let engine = MitoEngine::open_local(dir.path(), MitoConfig::default(), WalConfig::default())
        .await
        .unwrap();
    let meta = cpu_metadata(REGION);
    request(
        &engine,
        RegionRequest::Create(RegionCreateRequest {
            column_metadatas: meta.column_metadatas().to_vec(),
            primary_key: meta.primary_key().to_vec(),
            options: Default::default(),
        }),
    )
    .await;
    let mut g = CpuGenerator::new(HOSTS, 42);
    let batches: Vec<_> = (0..STEPS).map(|_| g.next_batch()).collect();
    let queue = Arc::new(Mutex::new(batches.into_iter()));
    // Linux: writing 5 resets VmHWM to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let baseline = status_mib("VmRSS:");
    let start = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let engine = engine.clone();
            let queue = queue.clone();
            tokio::spawn(async move {
                loop {
                    let Some(batch) = queue.lock().unwrap().next() else {
                        break;
                    };
                    request(
                        &engine,
                        RegionRequest::Put(RegionPutRequest { rows: batch }),
                    )
                    .await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    request(&engine, RegionRequest::Flush(RegionFlushRequest)).await;
    let elapsed_flushed = start.elapsed();
    let peak_total = status_mib("VmHWM:");
    let files = engine.region_statistics(REGION).unwrap().files;
    let sst_bytes = dir_bytes(&dir.path().join("data"));
    let wal_bytes = dir_bytes(&dir.path().join("wal"));
    // A quarter of the data again, left in the WAL, for the reopen-with-replay measure.
    let mut g = CpuGenerator::new(HOSTS, 43);
    for _ in 0..STEPS / 4 {
        let rows = g.next_batch();
        request(&engine, RegionRequest::Put(RegionPutRequest { rows })).await;
    }
    let close = || RegionRequest::Close(RegionCloseRequest { flush: false });
    request(&engine, close()).await;
    let t = Instant::now();
    request(&engine, RegionRequest::Open(RegionOpenRequest::default())).await;
    let reopen_replay = t.elapsed();
    let replayed = engine.region_statistics(REGION).unwrap().memtable_rows;
    request(&engine, RegionRequest::Flush(RegionFlushRequest)).await;
    request(&engine, close()).await;
    let t = Instant::now();
    request(&engine, RegionRequest::Open(RegionOpenRequest::default())).await;
    let reopen_flushed = t.elapsed();
    engine.stop().await.unwrap();
    let rows = (HOSTS * STEPS) as f64;
    Run {
        rows_per_sec: rows / elapsed.as_secs_f64(),
        rows_per_sec_flushed: rows / elapsed_flushed.as_secs_f64(),
        sst_bytes: sst_bytes as f64,
        wal_bytes: wal_bytes as f64,
        files: files as f64,
        peak_rss_mib: peak_total.saturating_sub(baseline) as f64,
        peak_total_mib: peak_total as f64,
        reopen_replay_ms: reopen_replay.as_secs_f64() * 1e3,
        reopen_flushed_ms: reopen_flushed.as_secs_f64() * 1e3,
        replayed_rows: replayed as f64,
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if std::env::var("BENCH_INGEST_CHILD").is_ok() {
        println!("{}", rt.block_on(run_once()).to_line());
        return;
    }
    let runs = benchmarks::child::runs(3);
    let t = Instant::now();
    let mut g = CpuGenerator::new(HOSTS, 42);
    for _ in 0..STEPS {
        std::hint::black_box(g.next_batch());
    }
    let gen_rate = (HOSTS * STEPS) as f64 / t.elapsed().as_secs_f64();
    println!(
        "generator alone (not timed in the runs): {:.2} M rows/s",
        gen_rate / 1e6
    );
    let config = MitoConfig::default();
    println!(
        "write buffer limit {} MiB, region {} MiB, {} workers",
        config.global_write_buffer_size.as_bytes() >> 20,
        config.region_write_buffer_size.as_bytes() >> 20,
        config.num_workers
    );
    let mut results = Vec::new();
    for i in 0..runs {
        let line = benchmarks::child::run_child("BENCH_INGEST_CHILD", "1")
            .unwrap_or_else(|e| panic!("run {i}: {e}"));
        let r = Run::from_line(&line);
        println!(
            "run {i}: {:.3} M rows/s acknowledged, {:.3} M rows/s to the end of the last flush; SST+manifest {:.1} MB ({:.2} B/row, {} files); WAL left {:.1} MB; peak RSS +{} MiB (process {} MiB); reopen replaying {} rows {:.0} ms, after a flush {:.1} ms",
            r.rows_per_sec / 1e6,
            r.rows_per_sec_flushed / 1e6,
            r.sst_bytes / 1e6,
            r.sst_bytes / (HOSTS * STEPS) as f64,
            r.files,
            r.wal_bytes / 1e6,
            r.peak_rss_mib,
            r.peak_total_mib,
            r.replayed_rows,
            r.reopen_replay_ms,
            r.reopen_flushed_ms,
        );
        results.push(r);
    }
    let col = |f: fn(&Run) -> f64| summary(results.iter().map(f).collect());
    println!(
        "ingest M rows/s, acknowledged: {}",
        col(|r| r.rows_per_sec / 1e6)
    );
    println!(
        "ingest M rows/s, to the last flush: {}",
        col(|r| r.rows_per_sec_flushed / 1e6)
    );
    println!("peak RSS above the input, MiB: {}", col(|r| r.peak_rss_mib));
    println!(
        "reopen with WAL replay, ms: {}",
        col(|r| r.reopen_replay_ms)
    );
    println!("reopen after flush, ms: {}", col(|r| r.reopen_flushed_ms));
    println!(
        "bytes/row on disk: {}",
        col(|r| r.sst_bytes / (HOSTS * STEPS) as f64)
    );
}
