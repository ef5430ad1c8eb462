//! `mito bench`: the TSBS cpu-only workload end to end. Generates the data (the model of
//! `tsbs`, seeded) as a line-protocol file, ingests it with the same pipeline as
//! `mito write`, settles (waits for the compaction the flushes asked for), runs the TSBS
//! query set through SQL, and writes a report.
//!
//! ```text
//! OUT/cpu.lp          the generated input (kept: the peers can load the same file)
//! OUT/data/           the data directory
//! OUT/report.md       figures as a Markdown table
//! OUT/report.json     the same figures, machine-readable
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use frontend::ingest::{IngestOptions, Input, ingest};
use frontend::{Instance, InstanceOptions};
use serde_json::json;
use store_api::clock::{ClockRef, SystemClock};
use tsbs::{CpuGenerator, INTERVAL_SECS, write_line_protocol};

use crate::BoxError;

/// Untimed runs of each query before its timed ones (the peers runner gives each peer as many):
/// the first plans the query and reads from disk, the second admits its columns to the column
/// cache.
const WARMUPS: usize = 2;

/// What `mito bench` runs.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Hosts (series).
    pub hosts: usize,
    /// Hours of data, one row per host every 10 s.
    pub hours: u64,
    /// Output directory (must not hold a data directory yet).
    pub out: PathBuf,
    /// Runs of each query; the median is reported.
    pub runs: usize,
}

/// One TSBS query: its name and SQL.
struct Query {
    name: &'static str,
    sql: String,
}

/// The data's start (2016-01-01T00:00:00Z) plus `d` seconds, as a SQL timestamp literal
/// (the generated data stays inside January 2016 for up to 30 days).
fn ts(d: i64) -> String {
    format!(
        "2016-01-{:02}T{:02}:{:02}:{:02}",
        1 + d / 86_400,
        d % 86_400 / 3600,
        d % 3600 / 60,
        d % 60
    )
}

/// The query set of issue 7, with fixed parameters inside the data's time range.
fn queries(hosts: usize, hours: u64) -> Vec<Query> {
    let span = i64::try_from(hours).unwrap_or(1) * 3600;
    let host = |i: usize| format!("'host_{}'", i % hosts.max(1));
    let eight: Vec<String> = (0..8).map(|i| host(i * 7 + 3)).collect();
    let eight = eight.join(", ");
    let one = host(1);
    let end = ts(span);
    let start = ts(0);
    let hour_ago = ts((span - 3600).max(0));
    let five_min_ago = ts((span - 300).max(0));
    let all10 = "max(usage_user), max(usage_system), max(usage_idle), max(usage_nice), \
                 max(usage_iowait), max(usage_irq), max(usage_softirq), max(usage_steal), \
                 max(usage_guest), max(usage_guest_nice)";
    vec![
        Query {
            name: "single-groupby-1-1-1",
            sql: format!(
                "SELECT date_bin(INTERVAL '1 minute', time) AS minute, max(usage_user) FROM cpu \
                 WHERE hostname = {one} AND time >= '{hour_ago}' AND time < '{end}' \
                 GROUP BY minute ORDER BY minute"
            ),
        },
        Query {
            name: "single-groupby-1-8-1",
            sql: format!(
                "SELECT date_bin(INTERVAL '1 minute', time) AS minute, max(usage_user) FROM cpu \
                 WHERE hostname IN ({eight}) AND time >= '{hour_ago}' AND time < '{end}' \
                 GROUP BY minute ORDER BY minute"
            ),
        },
        Query {
            name: "single-groupby-5-1-12",
            sql: format!(
                "SELECT date_bin(INTERVAL '1 minute', time) AS minute, max(usage_user), \
                 max(usage_system), max(usage_idle), max(usage_nice), max(usage_iowait) FROM cpu \
                 WHERE hostname = {one} AND time >= '{start}' AND time < '{end}' \
                 GROUP BY minute ORDER BY minute"
            ),
        },
        Query {
            name: "cpu-max-all-1",
            sql: format!(
                "SELECT date_bin(INTERVAL '1 hour', time) AS hour, {all10} FROM cpu \
                 WHERE hostname = {one} AND time >= '{start}' AND time < '{end}' \
                 GROUP BY hour ORDER BY hour"
            ),
        },
        Query {
            name: "cpu-max-all-8",
            sql: format!(
                "SELECT date_bin(INTERVAL '1 hour', time) AS hour, {all10} FROM cpu \
                 WHERE hostname IN ({eight}) AND time >= '{start}' AND time < '{end}' \
                 GROUP BY hour ORDER BY hour"
            ),
        },
        Query {
            name: "double-groupby-1",
            sql: format!(
                "SELECT date_bin(INTERVAL '1 hour', time) AS hour, hostname, avg(usage_user) \
                 FROM cpu WHERE time >= '{start}' AND time < '{end}' \
                 GROUP BY hour, hostname ORDER BY hour, hostname"
            ),
        },
        Query {
            name: "high-cpu-1",
            sql: format!(
                "SELECT * FROM cpu WHERE hostname = {one} AND usage_user > 90.0 \
                 AND time >= '{start}' AND time < '{end}' ORDER BY time"
            ),
        },
        Query {
            name: "groupby-orderby-limit",
            sql: format!(
                "SELECT date_bin(INTERVAL '1 minute', time) AS minute, max(usage_user) FROM cpu \
                 WHERE time < '{end}' AND time >= '{five_min_ago}' \
                 GROUP BY minute ORDER BY minute DESC LIMIT 5"
            ),
        },
        Query {
            name: "lastpoint",
            sql: "SELECT DISTINCT ON (hostname) * FROM cpu ORDER BY hostname, time DESC"
                .to_string(),
        },
    ]
}

/// A benchmark measures wall time: the stated exception to the injected clock.
#[expect(
    clippy::disallowed_methods,
    reason = "a benchmark measures wall time (docs/store-api.md, Clock)"
)]
pub(crate) fn stopwatch() -> std::time::Instant {
    std::time::Instant::now()
}

/// Peak resident set of this process (`VmHWM`), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Generates the input file: every host every 10 s, time-major.
fn generate(path: &Path, hosts: usize, hours: u64) -> Result<u64, BoxError> {
    let mut file = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(path)?);
    let mut cpu = CpuGenerator::new(hosts, 123);
    let steps = hours * 3600 / u64::try_from(INTERVAL_SECS).unwrap_or(10);
    let mut text = String::new();
    for _ in 0..steps {
        text.clear();
        write_line_protocol(&cpu.next_batch(), &mut text);
        file.write_all(text.as_bytes())?;
    }
    file.flush()?;
    Ok(steps * hosts as u64)
}

/// Runs the benchmark and writes the report; returns the Markdown report.
pub async fn run(options: &BenchOptions) -> Result<String, BoxError> {
    let clock: ClockRef = Arc::new(SystemClock);
    std::fs::create_dir_all(&options.out)?;
    let data = options.out.join("data");
    if data.exists() {
        return Err(format!(
            "{} already holds a data directory; choose another --out or remove it",
            data.display()
        )
        .into());
    }
    let input = options.out.join("cpu.lp");
    note!(
        "generating {} hosts x {} h into {}",
        options.hosts,
        options.hours,
        input.display()
    );
    let rows = generate(&input, options.hosts, options.hours)?;
    let input_bytes = std::fs::metadata(&input)?.len();

    let instance = Instance::open(&data, InstanceOptions::default()).await?;
    note!("ingesting {rows} rows ({input_bytes} bytes)");
    let started = clock.now_millis();
    let report = ingest(
        &instance,
        Input::File(input.clone()),
        &IngestOptions::default(),
        clock.clone(),
        Some(crate::progress_printer(
            clock.clone(),
            started,
            Some(input_bytes),
        )),
    )
    .await?;
    let ingest_ms = (clock.now_millis() - started).max(1);
    note!();
    instance.flush("cpu").await?;
    let with_flush_ms = (clock.now_millis() - started).max(1);
    // Settle, as the peers are settled: wait for the compaction the flushes asked for, so the
    // queries see one stable set of files rather than one a background merge is replacing.
    instance
        .compact("cpu", store_api::region_request::CompactOptions::Regular)
        .await?;
    let settle_ms = (clock.now_millis() - started).max(1) - with_flush_ms;
    let sst_bytes = dir_bytes(&data.join("data"));
    let disk_bytes = dir_bytes(&data);

    let mut results = Vec::new();
    // Each query's answer, as CSV, for the peers runner to compare against.
    let answers = options.out.join("answers");
    std::fs::create_dir_all(&answers)?;
    for q in queries(options.hosts, options.hours) {
        let mut times = Vec::new();
        let mut result_rows = 0;
        for run in 0..WARMUPS + options.runs.max(1) {
            let t = stopwatch();
            let (schema, batches) = frontend::query::query(&instance, &q.sql).await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            result_rows = batches.iter().map(|b| b.num_rows()).sum::<usize>();
            if run == 0 {
                let mut file = std::io::BufWriter::new(std::fs::File::create(
                    answers.join(format!("{}.csv", q.name)),
                )?);
                crate::format::print(&mut file, &schema, &batches, crate::Format::Csv.into())?;
                file.flush()?;
            }
        }
        // The first run plans the query and fills the caches; later runs reuse them. The
        // median is of the runs after the warm-ups, as the peers runner times the peers.
        let first = times.first().copied().unwrap_or(0.0);
        let mut times = times.split_off(WARMUPS.min(times.len()));
        times.sort_by(f64::total_cmp);
        let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
        note!(
            "  {:<22} {median:>9.2} ms  (first {first:.2} ms, {result_rows} rows)",
            q.name
        );
        results.push((q.name, median, first, result_rows, q.sql));
    }
    instance.close(false).await?;
    // After a clean close the WAL is gone when every entry is flushed (`LocalLogStore::close`).
    let closed_bytes = dir_bytes(&data);
    let rss = peak_rss().unwrap_or(0);

    let rows_per_s = report.rows_written as f64 * 1000.0 / ingest_ms as f64;
    let mut md = String::new();
    md.push_str(&format!(
        "# mito bench: TSBS cpu-only, {} hosts x {} h\n\n",
        options.hosts, options.hours
    ));
    md.push_str("| figure | value |\n|---|---:|\n");
    md.push_str(&format!("| rows | {} |\n", report.rows_written));
    md.push_str(&format!(
        "| ingest rows/s (to the last acknowledgement) | {rows_per_s:.0} |\n"
    ));
    md.push_str(&format!(
        "| ingest rows/s including the final flush | {:.0} |\n",
        report.rows_written as f64 * 1000.0 / with_flush_ms as f64
    ));
    md.push_str(&format!(
        "| settle: compaction after the final flush (ms) | {settle_ms} |\n"
    ));
    md.push_str(&format!(
        "| SST bytes per row | {:.2} |\n",
        sst_bytes as f64 / report.rows_written.max(1) as f64
    ));
    md.push_str(&format!(
        "| data directory bytes per row (with WAL) | {:.2} |\n",
        disk_bytes as f64 / report.rows_written.max(1) as f64
    ));
    md.push_str(&format!(
        "| data directory bytes per row after close | {:.2} |\n",
        closed_bytes as f64 / report.rows_written.max(1) as f64
    ));
    md.push_str(&format!("| peak RSS (MiB) | {} |\n\n", rss >> 20));
    md.push_str(&format!(
        "| query | median ms ({} runs after {WARMUPS} warm-ups) | first run ms | rows |\n|---|---:|---:|---:|\n",
        options.runs
    ));
    for (name, median, first, n, _) in &results {
        md.push_str(&format!("| {name} | {median:.2} | {first:.2} | {n} |\n"));
    }
    let json = json!({
        "hosts": options.hosts,
        "hours": options.hours,
        "rows": report.rows_written,
        "ingest_rows_per_s": rows_per_s,
        "ingest_ms": ingest_ms,
        "ingest_with_flush_ms": with_flush_ms,
        "settle_ms": settle_ms,
        "sst_bytes": sst_bytes,
        "data_dir_bytes": disk_bytes,
        "closed_data_dir_bytes": closed_bytes,
        "peak_rss_bytes": rss,
        "queries": results.iter().map(|(name, median, first, n, sql)| json!({
            "name": name, "median_ms": median, "first_ms": first, "rows": n, "sql": sql,
        })).collect::<Vec<_>>(),
    });
    let bars: Vec<(&str, f64)> = results.iter().map(|(n, ms, ..)| (*n, *ms)).collect();
    crate::chart::write_latency_png(
        std::io::BufWriter::new(std::fs::File::create(options.out.join("report.png"))?),
        &format!(
            "mito bench: TSBS cpu-only, {} hosts x {} h",
            options.hosts, options.hours
        ),
        &format!(
            "{rows_per_s:.0} rows/s, {:.2} B/row of SSTs, peak RSS {} MiB",
            sst_bytes as f64 / report.rows_written.max(1) as f64,
            rss >> 20
        ),
        &bars,
    )?;
    md.push_str("\n![query latencies](report.png)\n");
    std::fs::write(options.out.join("report.md"), &md)?;
    std::fs::write(
        options.out.join("report.json"),
        serde_json::to_vec_pretty(&json)?,
    )?;
    Ok(md)
}
