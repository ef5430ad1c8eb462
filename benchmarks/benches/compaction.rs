//! Compaction over a day of data: the TSBS cpu-only data for 24 hours (4000 hosts every 10 s =
//! 34.56 million rows) through `RegionEngine` in batches of 4000 rows from 2 writers, with a
//! small write buffer (16 MiB per region, 256 MiB in all) so that flushes are many.
//!
//! Two modes, each run in a fresh process, alternating:
//! - `off`: `auto_compaction = false`, the baseline ingest rate;
//! - `on`: default TWCS (window inferred from the data, trigger 4 files), compactions run
//!   while the writers write; after the last acknowledgement a final flush and one explicit
//!   `Compact` (which waits for a running one).
//!
//! Reported per run: rows/s to the last acknowledgement and per tenth of the input (how the
//! rate moves while compactions run), the ratio on/off; write amplification = (bytes written
//! by flushes + by compactions) / bytes of the final SSTs; files per window at the end (the
//! newest window is still open); compaction throughput = rows written by compactions / seconds
//! spent in compaction runs (one runs at a time, so per core).
//!
//! `cargo bench -p benchmarks --bench compaction` (`BENCH_RUNS`, default 1 per mode;
//! `BENCH_HOURS`, default 24; `BENCH_DIR` for the data, default `target`;
//! `BENCH_COMPACTION_NICE`, default the engine's 10).
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::panic,
    reason = "a benchmark measures wall time and stops on any error"
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use log_store::WalConfig;
use mito_engine::{MitoConfig, MitoEngine};
use store_api::RegionId;
use store_api::config::ReadableSize;
use store_api::engine::RegionEngine;
use store_api::region_request::{
    RegionCompactRequest, RegionCreateRequest, RegionFlushRequest, RegionPutRequest, RegionRequest,
};
use tsbs::{CpuGenerator, INTERVAL_SECS, cpu_metadata};

const HOSTS: usize = 4000;
const WRITERS: usize = 2;
const REGION: RegionId = RegionId::new(2048, 0);

fn steps() -> usize {
    let hours: usize = std::env::var("BENCH_HOURS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    hours * 3600 / INTERVAL_SECS as usize
}

fn config(compaction: bool) -> MitoConfig {
    MitoConfig {
        global_write_buffer_size: ReadableSize::mib(256),
        region_write_buffer_size: ReadableSize::mib(16),
        auto_compaction: compaction,
        // `BENCH_COMPACTION_NICE=0` runs compaction at the writers' priority.
        compaction_nice: std::env::var("BENCH_COMPACTION_NICE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(MitoConfig::default().compaction_nice),
        ..MitoConfig::default()
    }
}

/// A counter or histogram sum from the Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

async fn request(engine: &MitoEngine, r: RegionRequest) {
    engine.handle_request(REGION, r).await.unwrap();
}

/// One run; returns `key=value` pairs.
async fn run_once(compaction: bool) -> BTreeMap<String, f64> {
    let base = std::env::var("BENCH_DIR").unwrap_or_else(|_| "target".into());
    let dir = tempfile::tempdir_in(base).unwrap();
    let engine = MitoEngine::open_local(dir.path(), config(compaction), WalConfig::default())
        .await
        .unwrap();
    let meta = cpu_metadata(REGION);
    request(
        &engine,
        RegionRequest::Create(RegionCreateRequest {
            column_metadatas: meta.column_metadatas().to_vec(),
            primary_key: meta.primary_key().to_vec(),
            // `BENCH_WINDOW=1h` configures the window instead of letting the first compaction
            // infer it.
            options: std::env::var("BENCH_WINDOW")
                .ok()
                .filter(|w| !w.is_empty())
                .map(|w| [("compaction.twcs.time_window".to_string(), w)].into())
                .unwrap_or_default(),
        }),
    )
    .await;
    let steps = steps();
    let mut g = CpuGenerator::new(HOSTS, 42);
    let batches: Vec<_> = (0..steps).map(|_| g.next_batch()).collect();
    let queue = Arc::new(Mutex::new(batches.into_iter().enumerate()));
    let marks = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let engine = engine.clone();
            let queue = queue.clone();
            let marks = marks.clone();
            tokio::spawn(async move {
                loop {
                    let Some((i, batch)) = queue.lock().unwrap().next() else {
                        break;
                    };
                    request(
                        &engine,
                        RegionRequest::Put(RegionPutRequest { rows: batch }),
                    )
                    .await;
                    if (i + 1) % (steps / 10).max(1) == 0 {
                        marks.lock().unwrap().push(start.elapsed().as_secs_f64());
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let ingest = start.elapsed().as_secs_f64();
    request(&engine, RegionRequest::Flush(RegionFlushRequest)).await;
    if compaction {
        request(
            &engine,
            RegionRequest::Compact(RegionCompactRequest::default()),
        )
        .await;
    }
    let total = start.elapsed().as_secs_f64();
    let rows = (HOSTS * steps) as f64;
    let mut out = BTreeMap::new();
    out.insert("rows".into(), rows);
    out.insert("rows_per_sec".into(), rows / ingest);
    out.insert("seconds_to_compacted".into(), total);
    let mut marks = marks.lock().unwrap().clone();
    marks.sort_by(f64::total_cmp);
    let mut prev = 0.0;
    for (i, m) in marks.iter().enumerate() {
        out.insert(format!("tenth{i}"), rows / 10.0 / (m - prev));
        prev = *m;
    }
    let files = engine.region_files(REGION).unwrap();
    let stats = engine.region_statistics(REGION).unwrap();
    let final_bytes: u64 = files.iter().map(|f| f.file_size).sum();
    let text = engine.metrics_text();
    let flushed = metric(&text, "mito_flush_bytes_total");
    let compacted = metric(&text, "mito_compaction_bytes_total");
    out.insert("files".into(), files.len() as f64);
    out.insert("final_bytes".into(), final_bytes as f64);
    out.insert("flush_bytes".into(), flushed);
    out.insert("compaction_bytes".into(), compacted);
    out.insert(
        "write_amp".into(),
        (flushed + compacted) / (final_bytes as f64).max(1.0),
    );
    out.insert(
        "flushes".into(),
        metric(&text, "mito_flushes_total{outcome=\"ok\"}"),
    );
    let compaction_rows = metric(&text, "mito_compaction_rows_total");
    let compaction_secs = metric(&text, "mito_compaction_seconds_sum");
    out.insert("compaction_rows".into(), compaction_rows);
    out.insert("compaction_seconds".into(), compaction_secs);
    out.insert(
        "compaction_rows_per_sec".into(),
        compaction_rows / compaction_secs.max(1e-9),
    );
    // Files per window (by each file's max timestamp, as the picker buckets them).
    let window_s = stats.compaction_window_secs.unwrap_or(3600) as i64;
    let window = window_s * 1_000_000_000; // the TSBS time index is in nanoseconds
    let mut per_window: BTreeMap<i64, usize> = BTreeMap::new();
    for f in &files {
        *per_window
            .entry(f.time_range.max.div_euclid(window))
            .or_default() += 1;
    }
    let newest = per_window.keys().next_back().copied();
    let closed_max = per_window
        .iter()
        .filter(|(w, _)| Some(**w) != newest)
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0);
    out.insert("window_secs".into(), window_s as f64);
    out.insert("windows".into(), per_window.len() as f64);
    out.insert("closed_window_max_files".into(), closed_max as f64);
    out.insert(
        "newest_window_files".into(),
        newest
            .and_then(|w| per_window.get(&w))
            .copied()
            .unwrap_or(0) as f64,
    );
    engine.stop().await.unwrap();
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("compaction: bench");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(mode) = std::env::var("BENCH_COMPACTION_CHILD") {
        let out = rt.block_on(run_once(mode == "on"));
        let line: Vec<String> = out.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("RESULT {}", line.join(" "));
        return;
    }
    let runs = benchmarks::child::runs(1);
    println!(
        "{} hosts x {} steps = {} rows; write buffer 256 MiB, region 16 MiB",
        HOSTS,
        steps(),
        HOSTS * steps()
    );
    let mut rates: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for i in 0..runs {
        for mode in ["off", "on"] {
            let line = benchmarks::child::run_child("BENCH_COMPACTION_CHILD", mode)
                .unwrap_or_else(|e| panic!("run {i} ({mode}): {e}"));
            let r: BTreeMap<String, f64> = line
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
                .collect();
            let tenths: Vec<String> = (0..10)
                .filter_map(|t| r.get(&format!("tenth{t}")))
                .map(|v| format!("{:.2}", v / 1e6))
                .collect();
            println!(
                "run {i} compaction {mode}: ingest {:.3} M rows/s (per tenth: {} M); {} flushes; {:.1} s to compacted",
                r["rows_per_sec"] / 1e6,
                tenths.join(" "),
                r["flushes"],
                r["seconds_to_compacted"],
            );
            println!(
                "  files {} in {} windows of {} s: at most {} per closed window, {} in the newest; final SSTs {:.1} MB ({:.2} B/row)",
                r["files"],
                r["windows"],
                r["window_secs"],
                r["closed_window_max_files"],
                r["newest_window_files"],
                r["final_bytes"] / 1e6,
                r["final_bytes"] / r["rows"],
            );
            println!(
                "  flushed {:.1} MB, compacted {:.1} MB: write amplification {:.2}; compaction {:.2} M rows/s per core ({:.1} M rows in {:.1} s)",
                r["flush_bytes"] / 1e6,
                r["compaction_bytes"] / 1e6,
                r["write_amp"],
                r["compaction_rows_per_sec"] / 1e6,
                r["compaction_rows"] / 1e6,
                r["compaction_seconds"],
            );
            rates.entry(mode).or_default().push(r["rows_per_sec"]);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let off = median(rates.get_mut("off").unwrap());
    let on = median(rates.get_mut("on").unwrap());
    println!(
        "ingest with compaction / without: {:.3} M / {:.3} M rows/s = {:.2}",
        on / 1e6,
        off / 1e6,
        on / off
    );
}
