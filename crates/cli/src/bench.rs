//! `mito bench`: a workload end to end. Generates the data (seeded, from the `tsbs` crate)
//! as a line-protocol file, ingests it with the same pipeline as `mito write`, settles
//! (waits for the compaction the flushes asked for), runs the workload's query set through
//! SQL, and writes a report. Two workloads: TSBS cpu-only (`cpu`, the default) and trucks
//! in the model of TSBS's IoT use case (`iot`: sparse rows, late rows, integer, string and
//! bool fields, full-precision floats).
//!
//! ```text
//! OUT/cpu.lp          the generated input (iot.lp for iot; kept: the peers load the same file)
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
use tsbs::iot::{FLEETS, IotGenerator};
use tsbs::{CpuGenerator, INTERVAL_SECS, write_line_protocol};

use crate::BoxError;

/// Untimed runs of each query before its timed ones (the peers runner gives each peer as many):
/// the first plans the query and reads from disk, the second admits its columns to the column
/// cache.
const WARMUPS: usize = 2;

/// The data and query set `mito bench` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// TSBS cpu-only: hosts with 10 tags and 10 two-decimal float fields.
    Cpu,
    /// Trucks in the model of TSBS's IoT use case: `readings` and `diagnostics`.
    Iot,
}

impl Workload {
    /// The query types, in report order.
    fn queries(self) -> &'static [&'static str] {
        match self {
            Self::Cpu => &CPU_QUERIES,
            Self::Iot => &IOT_QUERIES,
        }
    }

    /// The tables the generated file writes.
    fn tables(self) -> &'static [&'static str] {
        match self {
            Self::Cpu => &["cpu"],
            Self::Iot => &["readings", "diagnostics"],
        }
    }

    /// Its name in reports and file names.
    fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Iot => "iot",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Cpu => "TSBS cpu-only",
            Self::Iot => "IoT trucks",
        }
    }

    /// What `--hosts` counts.
    fn units(self) -> &'static str {
        match self {
            Self::Cpu => "hosts",
            Self::Iot => "trucks",
        }
    }

    /// What a draw picks from: hosts, or for iot a fleet.
    fn choices(self, hosts: usize) -> usize {
        match self {
            Self::Cpu => hosts,
            Self::Iot => FLEETS.len(),
        }
    }
}

/// What `mito bench` runs.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The data and query set.
    pub workload: Workload,
    /// Hosts (series); trucks for the iot workload.
    pub hosts: usize,
    /// Hours of data, one row per host every 10 s.
    pub hours: u64,
    /// Output directory (must not hold a data directory yet).
    pub out: PathBuf,
    /// Timed runs of each query type (each its own draw unless `repeat`); the median and p90
    /// are reported.
    pub runs: usize,
    /// Seed of the random draws.
    pub seed: u64,
    /// Repeat fixed parameters instead of drawing (profiling one query).
    pub repeat: bool,
}

/// The TSBS cpu query types, in report order.
const CPU_QUERIES: [&str; 9] = [
    "single-groupby-1-1-1",
    "single-groupby-1-8-1",
    "single-groupby-5-1-12",
    "cpu-max-all-1",
    "cpu-max-all-8",
    "double-groupby-1",
    "high-cpu-1",
    "groupby-orderby-limit",
    "lastpoint",
];

/// The iot query types, in report order: the latest position of each truck of a fleet; the
/// trucks of a fleet whose fuel fell below 10% in an hour; the trucks of a fleet that stood
/// (average velocity under 1) for 10 minutes; the average fuel state of every fleet per hour.
const IOT_QUERIES: [&str; 4] = [
    "last-loc",
    "low-fuel",
    "stationary-trucks",
    "avg-fuel-fleet",
];

/// A query type's draw as TSBS makes it: (hosts, window seconds, the bucket a window starts
/// on). 1 or 8 random hosts and a random window of TSBS's width clipped to the data,
/// starting on a whole bucket (as in `benchmarks/peers/peers.py`, whose engines must agree
/// on buckets); groupby-orderby-limit's random end closes 5 minutes; lastpoint has none.
/// The iot queries draw a fleet (as one of 5 "hosts") and a window.
fn draw_shape(name: &str) -> (usize, i64, i64) {
    match name {
        "last-loc" => (1, 0, 1),
        "low-fuel" => (1, 3600, 60),
        "stationary-trucks" => (1, 600, 60),
        "avg-fuel-fleet" => (0, 12 * 3600, 3600),
        "single-groupby-1-1-1" => (1, 3600, 60),
        "single-groupby-1-8-1" => (8, 3600, 60),
        "single-groupby-5-1-12" => (1, 12 * 3600, 60),
        "cpu-max-all-1" => (1, 8 * 3600, 3600),
        "cpu-max-all-8" => (8, 8 * 3600, 3600),
        "double-groupby-1" => (0, 12 * 3600, 3600),
        "high-cpu-1" => (1, 12 * 3600, 60),
        "groupby-orderby-limit" => (0, 300, 60),
        _ => (0, 0, 1),
    }
}

/// The eight hosts of the fixed parameters (and of draws that use one host): spread over
/// the set.
fn spread_eight() -> Vec<usize> {
    (0..8).map(|i| i * 7 + 3).collect()
}

/// One query's parameters: its hosts and its window, in seconds from the data's start.
#[derive(Debug, Clone, PartialEq)]
struct Params {
    one: usize,
    eight: Vec<usize>,
    start: i64,
    end: i64,
}

impl Params {
    /// The fixed parameters (`--repeat`): host 1, eight hosts spread over the set, and for
    /// each query the last window of its width (the whole data for the long ones).
    fn fixed(name: &str, span: i64) -> Self {
        let width = match name {
            "single-groupby-1-1-1" | "single-groupby-1-8-1" | "low-fuel" => 3600,
            "groupby-orderby-limit" => 300,
            "stationary-trucks" => 600,
            _ => span,
        };
        Self {
            one: 1,
            eight: spread_eight(),
            start: (span - width).max(0),
            end: span,
        }
    }

    /// A random draw for query `name` over `hosts` hosts and `span` seconds of data.
    fn draw(name: &str, rng: &mut tsbs::Rng, hosts: usize, span: i64) -> Self {
        let (k, width, align) = draw_shape(name);
        let width = width.min(span);
        let slots = (span - width) / align + 1;
        let start = if width > 0 {
            i64::try_from(rng.below(usize::try_from(slots).unwrap_or(1))).unwrap_or(0) * align
        } else {
            0
        };
        // k distinct hosts, drawn until that many differ.
        let mut picked: Vec<usize> = Vec::with_capacity(k.max(1));
        while picked.len() < k.max(1).min(hosts) {
            let h = rng.below(hosts);
            if !picked.contains(&h) {
                picked.push(h);
            }
        }
        Self {
            one: picked.first().copied().unwrap_or(0),
            eight: if k == 8 { picked } else { spread_eight() },
            start,
            end: if width > 0 { start + width } else { span },
        }
    }
}

/// The data's start (2016-01-01T00:00:00Z) plus `d` seconds, as a SQL timestamp literal
/// (the generated data stays inside January 2016 for up to 30 days).
fn ts(d: i64) -> String {
    format!(
        "'2016-01-{:02}T{:02}:{:02}:{:02}'",
        1 + d / 86_400,
        d % 86_400 / 3600,
        d % 3600 / 60,
        d % 60
    )
}

/// The SQL of iot query `name` with parameters `p` (`p.one` picks the fleet).
fn iot_sql(name: &str, p: &Params) -> String {
    let fleet = FLEETS.get(p.one % FLEETS.len()).copied().unwrap_or("East");
    let window = format!("time >= {} AND time < {}", ts(p.start), ts(p.end));
    match name {
        "last-loc" => format!(
            "SELECT DISTINCT ON (name) name, latitude, longitude FROM readings \
             WHERE fleet = '{fleet}' AND latitude IS NOT NULL ORDER BY name, time DESC"
        ),
        "low-fuel" => format!(
            "SELECT name, min(fuel_state) AS fuel FROM diagnostics WHERE fleet = '{fleet}' \
             AND {window} GROUP BY name HAVING min(fuel_state) < 0.1 ORDER BY name"
        ),
        "stationary-trucks" => format!(
            "SELECT name, avg(velocity) AS velocity FROM readings WHERE fleet = '{fleet}' \
             AND {window} GROUP BY name HAVING avg(velocity) < 1 ORDER BY name"
        ),
        _ => format!(
            "SELECT date_bin(INTERVAL '1 hour', time) AS hour, fleet, avg(fuel_state) \
             FROM diagnostics WHERE {window} GROUP BY hour, fleet ORDER BY hour, fleet"
        ),
    }
}

/// The SQL of query `name` with parameters `p` over `hosts` hosts.
fn sql(name: &str, p: &Params, hosts: usize) -> String {
    let host = |i: usize| format!("'host_{}'", i % hosts.max(1));
    let eight = p
        .eight
        .iter()
        .map(|&i| host(i))
        .collect::<Vec<_>>()
        .join(", ");
    let one = host(p.one);
    let window = format!("time >= {} AND time < {}", ts(p.start), ts(p.end));
    let minute = "date_bin(INTERVAL '1 minute', time) AS minute";
    let hour = "date_bin(INTERVAL '1 hour', time) AS hour";
    let all10 = "max(usage_user), max(usage_system), max(usage_idle), max(usage_nice), \
                 max(usage_iowait), max(usage_irq), max(usage_softirq), max(usage_steal), \
                 max(usage_guest), max(usage_guest_nice)";
    match name {
        "single-groupby-1-1-1" => format!(
            "SELECT {minute}, max(usage_user) FROM cpu WHERE hostname = {one} AND {window} \
             GROUP BY minute ORDER BY minute"
        ),
        "single-groupby-1-8-1" => format!(
            "SELECT {minute}, max(usage_user) FROM cpu WHERE hostname IN ({eight}) AND {window} \
             GROUP BY minute ORDER BY minute"
        ),
        "single-groupby-5-1-12" => format!(
            "SELECT {minute}, max(usage_user), max(usage_system), max(usage_idle), \
             max(usage_nice), max(usage_iowait) FROM cpu WHERE hostname = {one} AND {window} \
             GROUP BY minute ORDER BY minute"
        ),
        "cpu-max-all-1" => format!(
            "SELECT {hour}, {all10} FROM cpu WHERE hostname = {one} AND {window} \
             GROUP BY hour ORDER BY hour"
        ),
        "cpu-max-all-8" => format!(
            "SELECT {hour}, {all10} FROM cpu WHERE hostname IN ({eight}) AND {window} \
             GROUP BY hour ORDER BY hour"
        ),
        "double-groupby-1" => format!(
            "SELECT {hour}, hostname, avg(usage_user) FROM cpu WHERE {window} \
             GROUP BY hour, hostname ORDER BY hour, hostname"
        ),
        "high-cpu-1" => format!(
            "SELECT * FROM cpu WHERE hostname = {one} AND usage_user > 90.0 AND {window} \
             ORDER BY time"
        ),
        "groupby-orderby-limit" => format!(
            "SELECT {minute}, max(usage_user) FROM cpu WHERE time < {} AND time >= {} \
             GROUP BY minute ORDER BY minute DESC LIMIT 5",
            ts(p.end),
            ts(p.start)
        ),
        _ => "SELECT DISTINCT ON (hostname) * FROM cpu ORDER BY hostname, time DESC".to_string(),
    }
}

/// Each query type's SQL texts, `n` of them: drawn from `seed` (each its own hosts and
/// window, as TSBS draws them), or with `repeat` the fixed parameters `n` times.
fn plan(
    workload: Workload,
    hosts: usize,
    hours: u64,
    n: usize,
    seed: u64,
    repeat: bool,
) -> Vec<(&'static str, Vec<String>)> {
    let span = i64::try_from(hours).unwrap_or(1) * 3600;
    let mut rng = tsbs::Rng::new(seed);
    workload
        .queries()
        .iter()
        .map(|&name| {
            let texts = (0..n)
                .map(|_| {
                    let p = if repeat {
                        Params::fixed(name, span)
                    } else {
                        Params::draw(name, &mut rng, workload.choices(hosts), span)
                    };
                    match workload {
                        Workload::Cpu => sql(name, &p, hosts),
                        Workload::Iot => iot_sql(name, &p),
                    }
                })
                .collect();
            (name, texts)
        })
        .collect()
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

/// Generates the input file: every host (truck) every 10 s, time-major; returns its rows.
fn generate(path: &Path, workload: Workload, hosts: usize, hours: u64) -> Result<u64, BoxError> {
    let mut file = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(path)?);
    let steps = hours * 3600 / u64::try_from(INTERVAL_SECS).unwrap_or(10);
    let mut text = String::new();
    let mut rows = 0u64;
    match workload {
        Workload::Cpu => {
            let mut cpu = CpuGenerator::new(hosts, 123);
            for _ in 0..steps {
                text.clear();
                write_line_protocol(&cpu.next_batch(), &mut text);
                file.write_all(text.as_bytes())?;
            }
            rows = steps * hosts as u64;
        }
        Workload::Iot => {
            let mut iot = IotGenerator::new(hosts, 123);
            for _ in 0..steps {
                text.clear();
                rows += iot.next_step(&mut text) as u64;
                file.write_all(text.as_bytes())?;
            }
            text.clear();
            rows += iot.finish(&mut text) as u64;
            file.write_all(text.as_bytes())?;
        }
    }
    file.flush()?;
    Ok(rows)
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
    let workload = options.workload;
    let input = options.out.join(format!("{}.lp", workload.name()));
    note!(
        "generating {} {}, {} x {} h into {}",
        workload.title(),
        options.hosts,
        workload.units(),
        options.hours,
        input.display()
    );
    let rows = generate(&input, workload, options.hosts, options.hours)?;
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
    for table in workload.tables() {
        instance.flush(table).await?;
    }
    let with_flush_ms = (clock.now_millis() - started).max(1);
    // Settle, as the peers are settled: wait for the compaction the flushes asked for, so the
    // queries see one stable set of files rather than one a background merge is replacing.
    for table in workload.tables() {
        instance
            .compact(table, store_api::region_request::CompactOptions::Regular)
            .await?;
    }
    let settle_ms = (clock.now_millis() - started).max(1) - with_flush_ms;
    let sst_bytes = dir_bytes(&data.join("data"));
    let disk_bytes = dir_bytes(&data);

    let mut results = Vec::new();
    // Each query's answer, as CSV, for the peers runner to compare against.
    let answers = options.out.join("answers");
    std::fs::create_dir_all(&answers)?;
    let runs = options.runs.max(1);
    for (name, texts) in plan(
        workload,
        options.hosts,
        options.hours,
        WARMUPS + runs,
        options.seed,
        options.repeat,
    ) {
        let mut times = Vec::new();
        let mut result_rows = 0;
        for (run, text) in texts.iter().enumerate() {
            let t = stopwatch();
            let (schema, batches) = frontend::query::query(&instance, text).await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            if run == 0 {
                result_rows = batches.iter().map(|b| b.num_rows()).sum::<usize>();
                let mut file = std::io::BufWriter::new(std::fs::File::create(
                    answers.join(format!("{name}.csv")),
                )?);
                crate::format::print(&mut file, &schema, &batches, crate::Format::Csv.into())?;
                file.flush()?;
            }
        }
        // The first run plans the query shape and reads from disk. The median and p90 are of
        // the runs after the warm-ups, as the peers runner times the peers.
        let first = times.first().copied().unwrap_or(0.0);
        let mut times = times.split_off(WARMUPS.min(times.len()));
        times.sort_by(f64::total_cmp);
        let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
        let p90 = times
            .get((times.len() * 9).div_ceil(10).saturating_sub(1))
            .copied()
            .unwrap_or(0.0);
        note!("  {name:<22} {median:>9.2} ms  (p90 {p90:.2} ms, first {first:.2} ms)");
        let first_sql = texts.first().cloned().unwrap_or_default();
        results.push((name, median, p90, first, result_rows, first_sql));
    }
    instance.close(false).await?;
    // After a clean close the WAL is gone when every entry is flushed (`LocalLogStore::close`).
    let closed_bytes = dir_bytes(&data);
    let rss = peak_rss().unwrap_or(0);

    let rows_per_s = report.rows_written as f64 * 1000.0 / ingest_ms as f64;
    let mut md = String::new();
    md.push_str(&format!(
        "# mito bench: {}, {} {} x {} h\n\n",
        workload.title(),
        options.hosts,
        workload.units(),
        options.hours
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
    let mode = if options.repeat {
        "the same fixed parameters repeated (--repeat: profiling one query, not TSBS)".to_string()
    } else {
        format!(
            "a random draw of hosts and window per run (seed {}), as TSBS draws them",
            options.seed
        )
    };
    md.push_str(&format!(
        "Queries in-process through the frontend; {mode}; {runs} timed runs after {WARMUPS} \
         untimed.\n\n| query | median ms | p90 ms | first run ms | rows (first run) |\n\
         |---|---:|---:|---:|---:|\n"
    ));
    for (name, median, p90, first, n, _) in &results {
        md.push_str(&format!(
            "| {name} | {median:.2} | {p90:.2} | {first:.2} | {n} |\n"
        ));
    }
    let json = json!({
        "workload": workload.name(),
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
        "seed": options.seed,
        "repeat": options.repeat,
        "runs": runs,
        // `sql` and `rows` are the first run's (its answer is answers/NAME.csv).
        "queries": results.iter().map(|(name, median, p90, first, n, sql)| json!({
            "name": name, "median_ms": median, "p90_ms": p90, "first_ms": first, "rows": n,
            "sql": sql,
        })).collect::<Vec<_>>(),
    });
    let bars: Vec<(&str, f64)> = results.iter().map(|(n, ms, ..)| (*n, *ms)).collect();
    crate::chart::write_latency_png(
        std::io::BufWriter::new(std::fs::File::create(options.out.join("report.png"))?),
        &format!(
            "mito bench: {}, {} x {} h",
            workload.title(),
            options.hosts,
            options.hours
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    #[test]
    fn draws_stay_inside_the_data_on_whole_buckets_with_distinct_hosts() {
        let span = 3 * 3600;
        let mut rng = tsbs::Rng::new(7);
        for &name in CPU_QUERIES.iter().chain(&IOT_QUERIES) {
            let (k, width, align) = draw_shape(name);
            let mut windows = std::collections::HashSet::new();
            for _ in 0..200 {
                let p = Params::draw(name, &mut rng, 4000, span);
                assert!(
                    0 <= p.start && p.start < p.end && p.end <= span,
                    "{name} {p:?}"
                );
                assert_eq!(p.start % align, 0, "{name} {p:?}");
                if width > 0 {
                    assert_eq!(p.end - p.start, width.min(span), "{name}");
                }
                if k == 8 {
                    let set: std::collections::HashSet<_> = p.eight.iter().collect();
                    assert_eq!(set.len(), 8, "{name} {p:?}");
                }
                assert!(p.one < 4000);
                windows.insert(p.start);
            }
            // The 1-hour and 5-minute windows move; the long ones cover the 3 h of data.
            if 0 < width && width < span {
                assert!(windows.len() > 10, "{name}: {} windows", windows.len());
            }
        }
        // Fewer hosts than a query asks for: each host once.
        let p = Params::draw("cpu-max-all-8", &mut rng, 3, span);
        assert_eq!(p.eight.len(), 3);
    }

    #[test]
    fn the_same_seed_draws_the_same_queries_and_repeat_repeats_one() {
        let a = plan(Workload::Cpu, 4000, 3, 20, 1, false);
        assert_eq!(a, plan(Workload::Cpu, 4000, 3, 20, 1, false));
        assert_ne!(a, plan(Workload::Cpu, 4000, 3, 20, 2, false));
        let single = &a[0].1;
        let distinct: std::collections::HashSet<_> = single.iter().collect();
        assert!(
            distinct.len() > 15,
            "{} distinct texts of 20",
            distinct.len()
        );
        for (_, texts) in plan(Workload::Cpu, 4000, 3, 5, 1, true) {
            assert!(texts.iter().all(|t| t == &texts[0]));
        }
        // The fixed single-groupby-1-1-1 is the last hour of host 1.
        let fixed = &plan(Workload::Cpu, 4000, 3, 1, 1, true)[0].1[0];
        assert!(
            fixed.contains("hostname = 'host_1'")
                && fixed.contains("time >= '2016-01-01T02:00:00' AND time < '2016-01-01T03:00:00'"),
            "{fixed}"
        );
    }
}
