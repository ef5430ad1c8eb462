//! `mito`: the embedded time-series database on a local data directory.
//!
//! ```text
//! mito write   [--data-dir DIR] [--precision ns|us|ms|s] [--strict] [FILE|-]
//! mito sql     [--data-dir DIR] [--format table|csv|json|ndjson] [--runs N] "SELECT ..."
//! mito tables  [--data-dir DIR]            tables with rows, files and bytes
//! mito describe TABLE                      columns with their roles
//! mito flush   TABLE | --all               write memtables to SST files
//! mito compact TABLE | --all [--window S]  merge SST files
//! mito options TABLE                       the table's options
//! mito server  [--http ADDR] [--config FILE] [--users FILE]   serve over HTTP (docs/server.md)
//! mito user add NAME                       a users-file line (password from standard input)
//! ```
//!
//! Exit status: 0 on success, 1 on an error, 2 on bad usage, 3 when some input lines were
//! refused (the valid ones were written, unless `--strict`).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use frontend::ingest::batcher::Precision;
use frontend::ingest::{IngestOptions, IngestReport, Input, OnAcknowledged, Progress, ingest};
use frontend::{Instance, InstanceOptions};
use futures::StreamExt;
use store_api::clock::{ClockRef, SystemClock};
use store_api::config::ReadableSize;
use store_api::region_request::CompactOptions;

/// `eprintln!` that never panics: a closed standard error (`mito write 2>&-`, a pager that
/// quit) must not abort a write half done, so what cannot be shown is dropped.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` that never panics (see [`note!`]).
macro_rules! note_inline {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

mod bench;
mod chart;
mod format;

/// mimalloc: DataFusion's planning and the scan's many small, short-lived allocations run
/// measurably faster on it than on glibc's allocator (docs/benchmarks.md). Built without
/// transparent huge pages (`no_thp`): with them, a decode's fresh buffers faulted in whole
/// 2 MiB pages the kernel zeroed, 63% of a cold query's CPU (docs/decisions.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "mito",
    version,
    about = "Mito: an embedded time-series database"
)]
struct Cli {
    /// The data directory (created if missing).
    #[arg(
        long,
        global = true,
        env = "MITO_DATA_DIR",
        default_value = "mito-data"
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write InfluxDB line protocol from a file or standard input (`-`).
    Write {
        /// The input file; `-` or nothing reads standard input.
        input: Option<PathBuf>,
        /// The unit of the timestamps.
        #[arg(long, default_value = "ns", value_parser = parse_precision)]
        precision: Precision,
        /// Write nothing if any line is invalid.
        #[arg(long)]
        strict: bool,
        /// Rows per batch sent to the engine.
        #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        batch_rows: u32,
        /// Leave the rows in the WAL and memtables instead of flushing at the end.
        #[arg(long)]
        no_flush: bool,
        /// Show progress even when standard error is not a terminal.
        #[arg(long)]
        progress: bool,
        /// Append the line numbers of the rows the engine acknowledged to this file as each
        /// write is acknowledged, one `first-last` range per line (what a crash test checks
        /// against the directory after killing the write).
        #[arg(long, value_name = "FILE")]
        ack_log: Option<PathBuf>,
    },
    /// Run one SQL query (read-only) and print its result as it comes.
    Sql {
        /// The query; `-` reads it from standard input.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        query: Option<String>,
        /// Read the query from this file.
        #[arg(long, short = 'f')]
        file: Option<PathBuf>,
        /// Stop the query after this long (`30s`, `5m`, `1h`; `0` for no limit). Default:
        /// 10 minutes.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Memory the query may hold in sorts, joins and aggregates (`512MiB`, `4GiB`);
        /// past it, operators that can spill to temporary files, and the others fail the
        /// query. Default: a quarter of RAM.
        #[arg(long, value_parser = parse_size)]
        memory_limit: Option<ReadableSize>,
        /// The output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Run the query this many times and print the min and median latency to standard
        /// error (the result is printed once).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        runs: u32,
    },
    /// List the tables with their rows, files and bytes.
    Tables {
        /// The output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show a table's columns and their roles.
    Describe {
        /// The table.
        table: String,
    },
    /// Write a table's memtables to SST files.
    Flush {
        /// The table.
        table: Option<String>,
        /// Every table.
        #[arg(long, conflicts_with = "table")]
        all: bool,
    },
    /// Merge a table's SST files (TWCS, or every window of `--window` seconds).
    Compact {
        /// The table.
        table: Option<String>,
        /// Every table.
        #[arg(long, conflicts_with = "table")]
        all: bool,
        /// Merge every window of this many seconds into one sorted run.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        window: Option<i64>,
    },
    /// Show the options set on a table.
    Options {
        /// The table.
        table: String,
    },
    /// Serve the data directory over HTTP (InfluxDB writes, SQL, metrics) and the PostgreSQL
    /// protocol until SIGTERM or SIGINT; then finish in-flight requests, flush and exit 0.
    /// See docs/server.md.
    Server {
        /// A TOML config file (every key optional; flags override it).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The HTTP address (default 127.0.0.1:4000; port 0 picks a free port, printed).
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
        /// The PostgreSQL protocol address (default 127.0.0.1:4003; port 0 picks a free
        /// port, printed).
        #[arg(long, value_name = "ADDR", conflicts_with = "no_pg")]
        pg: Option<std::net::SocketAddr>,
        /// Do not serve the PostgreSQL protocol.
        #[arg(long)]
        no_pg: bool,
        /// The users file (lines from `mito user add`); without it nothing is asked.
        #[arg(long, value_name = "FILE")]
        users: Option<PathBuf>,
        /// Serve a non-loopback address without a users file.
        #[arg(long)]
        insecure: bool,
        /// Largest request body after gzip decoding (default 64MiB).
        #[arg(long, value_parser = parse_any_size)]
        max_body: Option<ReadableSize>,
        /// Time to read a request's headers, and then its body (default 30s).
        #[arg(long, value_parser = parse_duration)]
        read_timeout: Option<Duration>,
        /// Stop a query after this long (`0` for no limit; default 10m).
        #[arg(long, value_parser = parse_duration)]
        query_timeout: Option<Duration>,
        /// Memory the running queries hold together (default: a quarter of RAM).
        #[arg(long, value_parser = parse_size)]
        memory_limit: Option<ReadableSize>,
    },
    /// Manage the users of `mito server`.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Generate benchmark data (TSBS cpu-only, or IoT trucks), ingest it and run its query
    /// set; writes a report.
    Bench {
        /// The data and queries: TSBS cpu-only hosts, or trucks in the model of TSBS's IoT
        /// use case (sparse and late rows; integer, string and bool fields).
        #[arg(long, value_enum, default_value_t = bench::Workload::Cpu)]
        workload: bench::Workload,
        /// Hosts (series); trucks for `--workload iot`.
        #[arg(long, default_value_t = 4000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        hosts: u32,
        /// Hours of data (one row per host every 10 s).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=720))]
        hours: u64,
        /// Output directory: the input file, the data directory and the report.
        #[arg(long, default_value = "mito-bench")]
        out: PathBuf,
        /// Timed runs of each query type, after two untimed ones, each with its own random
        /// hosts and window as TSBS draws them (median and p90 reported, and the first run).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        runs: u32,
        /// Seed of the random draws (the same seed, the same queries).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Repeat fixed parameters instead of drawing: profiles one query and its caches;
        /// not what TSBS measures.
        #[arg(long)]
        repeat: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Print a users-file line for NAME (a salted SCRAM-SHA-256 verifier, never the
    /// password); the password is the first line of standard input.
    Add {
        /// The user name.
        name: String,
    },
}

/// The `--ack-log` callback: each acknowledged write's line numbers as `first-last` runs,
/// appended in one `write` (a killed process leaves whole lines, or a last one without its
/// newline, which readers ignore). Not fsynced: it records what the engine acknowledged to
/// this process, which a process kill keeps in the page cache.
fn ack_logger(path: &Path) -> Result<OnAcknowledged, String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("opening the acknowledgement log {}: {e}", path.display()))?;
    let file = std::sync::Mutex::new(file);
    let path = path.to_path_buf();
    Ok(OnAcknowledged(Arc::new(move |lines: &[u64]| {
        let mut sorted = lines.to_vec();
        sorted.sort_unstable();
        let mut out = String::new();
        let mut runs = sorted.iter().copied().peekable();
        while let Some(first) = runs.next() {
            let mut last = first;
            while runs.peek() == Some(&(last + 1)) {
                last += 1;
                runs.next();
            }
            out.push_str(&format!("{first}-{last}\n"));
        }
        let mut f = file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = std::io::Write::write_all(&mut *f, out.as_bytes()) {
            let _ = writeln!(
                std::io::stderr(),
                "warning: could not record acknowledged lines in {}: {e}",
                path.display()
            );
        }
    })))
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

impl From<Format> for frontend::query::output::Format {
    fn from(f: Format) -> Self {
        match f {
            Format::Table => Self::Table,
            Format::Csv => Self::Csv,
            Format::Json => Self::Json,
            Format::Ndjson => Self::Ndjson,
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration ({e}); say 30s, 5m or 1h"))
}

fn parse_size(s: &str) -> Result<ReadableSize, String> {
    let size: ReadableSize = s
        .parse()
        .map_err(|e| format!("'{s}' is not a size ({e}); say 512MiB or 4GiB"))?;
    if size.as_bytes() < ReadableSize::mib(16).as_bytes() {
        return Err(format!(
            "'{s}' is below the smallest query memory limit, 16MiB"
        ));
    }
    Ok(size)
}

fn parse_any_size(s: &str) -> Result<ReadableSize, String> {
    s.parse()
        .map_err(|e| format!("'{s}' is not a size ({e}); say 512KiB or 64MiB"))
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    Precision::parse(s).ok_or_else(|| format!("'{s}' is not one of ns, us, ms, s"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            note!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            note!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Prints the engine's warnings and errors (recovery cutting a torn WAL tail, rewriting a
/// file, removing leftovers) on standard error, one line each. `MITO_LOG` sets another filter
/// (`info`, `debug`, `log_store=debug`, ...); `MITO_LOG=off` silences them.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MITO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Standard error may be closed: the writer drops what it cannot write.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .try_init();
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn run(cli: Cli) -> Result<ExitCode, BoxError> {
    if let Command::Bench {
        workload,
        hosts,
        hours,
        out,
        runs,
        seed,
        repeat,
    } = &cli.command
    {
        let report = bench::run(&bench::BenchOptions {
            workload: *workload,
            hosts: *hosts as usize,
            hours: *hours,
            out: out.clone(),
            runs: *runs as usize,
            seed: *seed,
            repeat: *repeat,
        })
        .await?;
        let _ = writeln!(std::io::stdout(), "{report}");
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::User {
        command: UserCommand::Add { name },
    } = &cli.command
    {
        let mut password = String::new();
        std::io::stdin()
            .read_line(&mut password)
            .map_err(|e| format!("reading the password from standard input: {e}"))?;
        let password = password.trim_end_matches(['\r', '\n']);
        let line = server::auth::user_line(name, password)?;
        let _ = writeln!(std::io::stdout(), "{line}");
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Server { .. } = &cli.command {
        return serve(&cli.data_dir, cli.command).await;
    }
    // Commands that only read open the directory read-only: they change nothing on disk, so
    // they work on a full disk and cannot race a crash into damage.
    let read_only = matches!(
        cli.command,
        Command::Sql { .. }
            | Command::Tables { .. }
            | Command::Describe { .. }
            | Command::Options { .. }
    );
    let mut options = InstanceOptions::default();
    options.wal.read_only = read_only;
    if let Command::Sql {
        timeout,
        memory_limit,
        ..
    } = &cli.command
    {
        if let Some(timeout) = timeout {
            options.query.timeout = (!timeout.is_zero()).then_some(*timeout);
        }
        if let Some(limit) = memory_limit {
            options.query.memory_limit = *limit;
        }
    }
    let instance = Instance::open(&cli.data_dir, options).await?;
    let result = command(&instance, cli.command).await;
    let flush = matches!(&result, Ok((_, true)));
    let closed = instance.close(flush).await;
    let (code, _) = result?;
    closed?;
    Ok(code)
}

/// `mito server`: the options (file, then flags), the instance, the server until a signal;
/// then the connections drained and the instance flushed and closed.
async fn serve(dir: &Path, command: Command) -> Result<ExitCode, BoxError> {
    let Command::Server {
        config,
        http,
        pg,
        no_pg,
        users,
        insecure,
        max_body,
        read_timeout,
        query_timeout,
        memory_limit,
    } = command
    else {
        return Err("not the server command".into());
    };
    let mut config = match &config {
        Some(path) => server::config::ServerConfig::load(path)?,
        None => server::config::ServerConfig::default(),
    };
    if let Some(a) = http {
        config.http.addr = a;
    }
    if let Some(a) = pg {
        config.pg.addr = a;
        config.pg.enabled = true;
    }
    if no_pg {
        config.pg.enabled = false;
    }
    if users.is_some() {
        config.auth.users = users;
    }
    config.auth.insecure |= insecure;
    if let Some(v) = max_body {
        config.http.max_body = v;
    }
    if let Some(v) = read_timeout {
        config.http.read_timeout = v;
    }
    if let Some(v) = query_timeout {
        config.query.timeout = v;
    }
    if memory_limit.is_some() {
        config.query.memory_limit = memory_limit;
    }
    config.validate()?;
    let mut options = InstanceOptions {
        engine: config.engine.clone(),
        ..InstanceOptions::default()
    };
    options.query.timeout = (!config.query.timeout.is_zero()).then_some(config.query.timeout);
    if let Some(limit) = config.query.memory_limit {
        options.query.memory_limit = limit;
    }
    // Everything that can refuse the start (options, users file, address) before the data
    // directory is opened or created.
    let server = server::Server::bind(config).await?;
    let instance = Arc::new(Instance::open(dir, options).await?);
    let shutdown = shutdown_signal();
    // Printed before the HTTP line, which tests and scripts wait for.
    if let Some(addr) = server.pg_addr() {
        note!("mito server: PostgreSQL protocol on postgres://{addr}");
    }
    if let Some(addr) = server.http_addr() {
        note!(
            "mito server: data directory {}, listening on http://{addr}",
            dir.display()
        );
    }
    let served = server.run(instance.clone(), shutdown).await;
    note!("mito server: stopped accepting; flushing and closing");
    instance.close(true).await?;
    served?;
    note!("mito server: stopped");
    Ok(ExitCode::SUCCESS)
}

/// A future that completes at the first SIGTERM or SIGINT (never, if neither can be
/// watched). The handlers are installed here, before the future is first polled, so a
/// signal sent as soon as the server says it listens is not missed.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let watched = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = watched else {
            note!("warning: cannot watch SIGTERM/SIGINT; stop the server with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}

/// Runs a command; returns the exit code and whether to flush on close.
async fn command(instance: &Instance, command: Command) -> Result<(ExitCode, bool), BoxError> {
    let mut out = std::io::stdout().lock();
    match command {
        Command::Write {
            input,
            precision,
            strict,
            batch_rows,
            no_flush,
            progress,
            ack_log,
        } => {
            let input = match input {
                None => Input::Stdin,
                Some(p) if p.as_os_str() == "-" => Input::Stdin,
                Some(p) => Input::File(p),
            };
            let options = IngestOptions {
                precision,
                strict,
                batch_rows: batch_rows as usize,
                on_acknowledged: ack_log.as_deref().map(ack_logger).transpose()?,
                ..IngestOptions::default()
            };
            let code = write(instance, input, &options, progress).await?;
            Ok((code, !no_flush))
        }
        Command::Sql {
            query,
            file,
            format,
            runs,
            ..
        } => {
            let query = read_query(query, file)?;
            if runs == 1 {
                // The result is printed as it comes: a large one is never held whole.
                let (schema, mut stream) = frontend::query::query_stream(instance, &query).await?;
                let mut printer = format::Printer::new(schema, format.into());
                while let Some(batch) = stream.next().await {
                    printer.push(
                        &mut out,
                        &batch.map_err(|source| frontend::Error::Sql { source })?,
                    )?;
                }
                printer.finish(&mut out)?;
                return Ok((ExitCode::SUCCESS, false));
            }
            let mut times = Vec::new();
            let mut result = None;
            for _ in 0..runs {
                let t = bench::stopwatch();
                result = Some(frontend::query::query(instance, &query).await?);
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            if runs > 1 {
                let first = times.first().copied().unwrap_or(0.0);
                times.sort_by(f64::total_cmp);
                note!(
                    "{runs} runs: first {first:.3} ms, min {:.3} ms, median {:.3} ms, max {:.3} ms",
                    times.first().copied().unwrap_or(0.0),
                    times.get(times.len() / 2).copied().unwrap_or(0.0),
                    times.last().copied().unwrap_or(0.0)
                );
            }
            if let Some((schema, batches)) = result {
                format::print(&mut out, &schema, &batches, format.into())?;
            }
            Ok((ExitCode::SUCCESS, false))
        }
        Command::Tables { format } => {
            let (schema, batches) = format::tables(instance).await?;
            format::print(&mut out, &schema, &batches, format.into())?;
            Ok((ExitCode::SUCCESS, false))
        }
        Command::Describe { table } => {
            let (schema, batches) = format::describe(instance, &table).await?;
            format::print(&mut out, &schema, &batches, Format::Table.into())?;
            Ok((ExitCode::SUCCESS, false))
        }
        Command::Flush { table, all } => {
            for name in targets(instance, table, all).await? {
                instance.flush(&name).await?;
                writeln!(out, "flushed {name}")?;
            }
            Ok((ExitCode::SUCCESS, false))
        }
        Command::Compact { table, all, window } => {
            let options = match window {
                Some(window_seconds) => CompactOptions::StrictWindow { window_seconds },
                None => CompactOptions::Regular,
            };
            for name in targets(instance, table, all).await? {
                let before = files_of(instance, &name).await;
                instance.compact(&name, options).await?;
                let after = files_of(instance, &name).await;
                writeln!(out, "compacted {name}: {before} files -> {after} files")?;
            }
            Ok((ExitCode::SUCCESS, false))
        }
        Command::Bench { .. } | Command::Server { .. } | Command::User { .. } => {
            Err("this command runs on its own".into())
        }
        Command::Options { table } => {
            let options = instance.options(&table).await?;
            if options.is_empty() {
                writeln!(out, "{table}: no option set (every option at its default)")?;
            }
            for (k, v) in options {
                writeln!(out, "{k} = {v}")?;
            }
            Ok((ExitCode::SUCCESS, false))
        }
    }
}

/// The query text: the argument, standard input (`-`), or a file.
fn read_query(query: Option<String>, file: Option<PathBuf>) -> Result<String, BoxError> {
    let text = match (query, file) {
        (_, Some(path)) => std::fs::read_to_string(&path)
            .map_err(|e| format!("reading the query from {}: {e}", path.display()))?,
        (Some(q), None) if q == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| format!("reading the query from standard input: {e}"))?;
            text
        }
        (Some(q), None) => q,
        (None, None) => return Err("give a query, `-` for standard input, or --file".into()),
    };
    if text.trim().is_empty() {
        return Err("the query is empty".into());
    }
    Ok(text)
}

async fn targets(
    instance: &Instance,
    table: Option<String>,
    all: bool,
) -> Result<Vec<String>, BoxError> {
    match (table, all) {
        (Some(t), _) => {
            instance.table(&t).await?;
            Ok(vec![t])
        }
        (None, true) => Ok(instance
            .tables()
            .await
            .into_iter()
            .map(|t| t.name)
            .collect()),
        (None, false) => Err("name a table, or pass --all".into()),
    }
}

async fn files_of(instance: &Instance, name: &str) -> usize {
    instance
        .summaries()
        .await
        .iter()
        .find(|s| s.entry.name == name)
        .map_or(0, |s| s.stats.files)
}

async fn write(
    instance: &Instance,
    input: Input,
    options: &IngestOptions,
    force_progress: bool,
) -> Result<ExitCode, BoxError> {
    let clock: ClockRef = Arc::new(SystemClock);
    let total = match &input {
        Input::File(p) => std::fs::metadata(p).map(|m| m.len()).ok(),
        _ => None,
    };
    let started = clock.now_millis();
    let show = force_progress || std::io::stderr().is_terminal();
    let progress = show.then(|| progress_printer(clock.clone(), started, total));
    let report = ingest(instance, input, options, clock.clone(), progress).await?;
    if show {
        note!();
    }
    let secs = (clock.now_millis() - started).max(1) as f64 / 1000.0;
    summarize(&report, secs);
    Ok(if report.refused > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints ingest progress on one standard-error line (bytes, share of `total`, lines/s).
pub fn progress_printer(
    clock: ClockRef,
    started_ms: i64,
    total: Option<u64>,
) -> Arc<dyn Fn(Progress) + Send + Sync> {
    Arc::new(move |p: Progress| {
        let secs = (clock.now_millis() - started_ms).max(1) as f64 / 1000.0;
        let what = if p.validating { "checking" } else { "writing" };
        let share = total
            .filter(|t| *t > 0)
            .map(|t| format!(" ({:.0}%)", p.bytes as f64 * 100.0 / t as f64))
            .unwrap_or_default();
        note_inline!(
            "\r{what}: {} read{share}, {} lines, {:.0} lines/s   ",
            format::bytes(p.bytes),
            p.lines,
            p.lines as f64 / secs
        );
    })
}

fn summarize(report: &IngestReport, secs: f64) {
    for e in &report.errors {
        note!("{e}");
    }
    if report.refused > report.errors.len() as u64 {
        note!(
            "... and {} more refused lines",
            report.refused - report.errors.len() as u64
        );
    }
    if report.aborted_strict {
        note!(
            "strict: {} of {} lines refused; nothing written",
            report.refused,
            report.lines
        );
        return;
    }
    let created = if report.tables_created.is_empty() {
        String::new()
    } else {
        format!(", created {}", report.tables_created.join(", "))
    };
    note!(
        "wrote {} rows from {} lines ({}) in {:.2} s: {:.0} rows/s; {} lines refused{created}",
        report.rows_written,
        report.lines,
        format::bytes(report.bytes),
        secs,
        report.rows_written as f64 / secs,
        report.refused,
    );
}
