//! Line-protocol ingest into an [`Instance`]: read, parse and batch on a thread of its own,
//! create or alter tables and write the batches on the runtime.
//!
//! ```text
//! reader thread: read 8 MiB chunks -> split lines -> Batcher --Ready--> channel (bounded)
//! runtime:       channel -> create table / add columns (in order) -> put
//! ```
//!
//! Puts of one input are issued one after another, so a point written twice keeps its last
//! line's values. In `strict` mode the whole input is parsed and checked first and nothing
//! is written if any line is refused; a file is read twice, standard input is held in memory.

pub mod batcher;
pub mod line_protocol;
pub mod prom_remote_write;
mod series_memo;

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_array::RecordBatch;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use snafu::ResultExt;
use store_api::clock::ClockRef;
use store_api::error::{ErrorExt, ErrorKind};
use store_api::metadata::RegionMetadata;
use store_api::region_request::RegionOptionsMap;
use store_api::time::TimeSpan;
use tokio::sync::mpsc;

use crate::error::{Error, InputSnafu, Result};
use crate::ingest::batcher::{Batcher, LineError, Precision, Ready, SeriesMemo};
use crate::ingest::line_protocol::{Line, is_skipped};
use crate::instance::Instance;

/// How to ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// The unit of the timestamps.
    pub precision: Precision,
    /// Refuse the whole input if any line is invalid.
    pub strict: bool,
    /// Rows per batch sent to the engine.
    pub batch_rows: usize,
    /// Options of the tables this ingest creates.
    pub table_options: RegionOptionsMap,
    /// Refused lines kept (with their reasons) in the report; the rest are only counted.
    pub max_reported_errors: usize,
    /// Told the line numbers of the rows of every write the engine acknowledged, as soon as
    /// it did (crash tests record them to check nothing acknowledged is lost).
    pub on_acknowledged: Option<OnAcknowledged>,
}

/// Called with the (1-based) line numbers of acknowledged rows.
pub type AckFn = dyn Fn(&[u64]) + Send + Sync;

/// A callback given the (1-based) line numbers of acknowledged rows.
#[derive(Clone)]
pub struct OnAcknowledged(pub Arc<AckFn>);

impl std::fmt::Debug for OnAcknowledged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnAcknowledged(..)")
    }
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            precision: Precision::Nanosecond,
            strict: false,
            batch_rows: 8192,
            // A point written in two lines keeps the fields of both, as in InfluxDB.
            table_options: RegionOptionsMap::from([(
                "merge_mode".to_string(),
                "last_non_null".to_string(),
            )]),
            max_reported_errors: 1000,
            on_acknowledged: None,
        }
    }
}

/// Where the lines come from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A file.
    File(std::path::PathBuf),
    /// Standard input.
    Stdin,
    /// Bytes in memory (an HTTP body: read in place).
    Bytes(bytes::Bytes),
}

impl Input {
    fn name(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
            Input::Stdin => "stdin".into(),
            Input::Bytes(_) => "input".into(),
        }
    }

    fn open(&self) -> std::io::Result<Box<dyn Read + Send>> {
        Ok(match self {
            Input::File(p) => Box::new(std::fs::File::open(p)?),
            Input::Stdin => Box::new(std::io::stdin()),
            Input::Bytes(b) => Box::new(std::io::Cursor::new(b.clone())),
        })
    }
}

/// Progress of a running ingest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes read.
    pub bytes: u64,
    /// Lines read (including refused and skipped ones).
    pub lines: u64,
    /// Whether this is the validation pass of a strict ingest.
    pub validating: bool,
}

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Lines read (including blank and comment lines).
    pub lines: u64,
    /// Input bytes read.
    pub bytes: u64,
    /// Rows written to the engine.
    pub rows_written: u64,
    /// Lines refused.
    pub refused: u64,
    /// The first refused lines, with reasons.
    pub errors: Vec<LineError>,
    /// Tables created.
    pub tables_created: Vec<String>,
    /// Columns added to existing tables.
    pub columns_added: usize,
    /// Whether nothing was written because a strict ingest found refused lines.
    pub aborted_strict: bool,
}

type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// Reads `input` into `instance`, reporting progress to `progress` about every chunk.
pub async fn ingest(
    instance: &Instance,
    input: Input,
    options: &IngestOptions,
    clock: ClockRef,
    progress: Option<ProgressFn>,
) -> Result<IngestReport> {
    let input = match (&input, options.strict) {
        (Input::Stdin, true) => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context(InputSnafu { input: "stdin" })?;
            Input::Bytes(bytes.into())
        }
        _ => input,
    };
    let existing = existing_schemas(instance).await?;
    if options.strict {
        let check = run_reader(
            &input,
            existing.clone(),
            instance.series.clone(),
            options,
            &clock,
            progress.clone(),
            true,
        );
        let mut report = drain(check, options, None).await?;
        if report.refused > 0 {
            report.aborted_strict = true;
            report.rows_written = 0;
            return Ok(report);
        }
    }
    let rx = run_reader(
        &input,
        existing,
        instance.series.clone(),
        options,
        &clock,
        progress,
        false,
    );
    drain(rx, options, Some(instance)).await
}

/// What the reader thread sends.
enum Message {
    Batch(Ready),
    Refused(LineError),
    Done { lines: u64, bytes: u64 },
    Failed(std::io::Error),
}

struct Reader {
    rx: mpsc::Receiver<Message>,
    stop: Arc<AtomicBool>,
    name: String,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

async fn existing_schemas(instance: &Instance) -> Result<HashMap<String, Arc<RegionMetadata>>> {
    let mut out = HashMap::new();
    for t in instance.tables().await {
        let m = instance.metadata(&t.name).await?;
        out.insert(t.name.clone(), m);
    }
    Ok(out)
}

fn run_reader(
    input: &Input,
    existing: HashMap<String, Arc<RegionMetadata>>,
    memo: Arc<SeriesMemo>,
    options: &IngestOptions,
    clock: &ClockRef,
    progress: Option<ProgressFn>,
    validating: bool,
) -> Reader {
    let (tx, rx) = mpsc::channel(4);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = Reader {
        rx,
        stop: stop.clone(),
        name: input.name(),
    };
    let input = input.clone();
    let clock = clock.clone();
    let mut batcher = Batcher::new(existing, options.precision, options.batch_rows, memo);
    std::thread::spawn(move || {
        let send = |m: Message| tx.blocking_send(m).is_ok() && !stop.load(Ordering::Acquire);
        let mut lines = 0u64;
        let result = read_chunks(&input, |chunk, bytes| {
            let now_ns = clock.now_millis().saturating_mul(1_000_000);
            // One scratch line per chunk: its vectors keep their capacity from line to line.
            let mut scratch = Line::default();
            let mut from = 0;
            let ends = memchr::memchr_iter(b'\n', chunk).chain(
                // The input's last line may lack its newline.
                (!chunk.ends_with(b"\n")).then_some(chunk.len()),
            );
            for end in ends {
                let raw = chunk.get(from..end).unwrap_or_default();
                from = end + 1;
                lines += 1;
                if is_skipped(raw) {
                    continue;
                }
                let pushed = match std::str::from_utf8(raw) {
                    Ok(text) => batcher.push(lines, text, &mut scratch, now_ns),
                    Err(e) => Err(LineError {
                        line: lines,
                        reason: format!(
                            "not UTF-8 (invalid byte at column {})",
                            e.valid_up_to() + 1
                        ),
                    }),
                };
                let ok = match pushed {
                    Ok(Some(ready)) => send(Message::Batch(ready)),
                    Ok(None) => true,
                    Err(e) => send(Message::Refused(e)),
                };
                if !ok {
                    return false;
                }
            }
            if let Some(p) = &progress {
                p(Progress {
                    bytes,
                    lines,
                    validating,
                });
            }
            true
        });
        match result {
            Ok(bytes) => {
                for ready in batcher.finish() {
                    if !send(Message::Batch(ready)) {
                        return;
                    }
                }
                let _ = send(Message::Done { lines, bytes });
            }
            Err(e) => {
                let _ = send(Message::Failed(e));
            }
        }
    });
    reader
}

/// Calls `f(whole lines, bytes read so far)` for each chunk of the input (the last chunk may
/// lack its final newline); stops early when `f` returns false. Returns the bytes read.
fn read_chunks(input: &Input, mut f: impl FnMut(&[u8], u64) -> bool) -> std::io::Result<u64> {
    const CHUNK: usize = 8 << 20;
    if let Input::Bytes(bytes) = input {
        // In memory already (an HTTP body): whole lines of it in place, no copy. A request
        // is usually far below a chunk, and a chunk buffer would cost it a fresh 8 MiB.
        let mut rest: &[u8] = bytes;
        let mut done = 0u64;
        while !rest.is_empty() {
            let end = match rest.get(..CHUNK) {
                Some(head) if rest.len() > CHUNK => {
                    memchr::memrchr(b'\n', head).map_or_else(
                        // A line longer than a chunk: up to its end.
                        || memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1),
                        |i| i + 1,
                    )
                }
                _ => rest.len(),
            };
            let (lines, tail) = rest.split_at(end);
            done += lines.len() as u64;
            if !f(lines, done) {
                return Ok(done);
            }
            rest = tail;
        }
        return Ok(done);
    }
    let mut reader = input.open()?;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK * 2);
    let mut bytes = 0u64;
    loop {
        let start = buf.len();
        buf.resize(start + CHUNK, 0);
        let n = read_full(&mut reader, buf.get_mut(start..).unwrap_or_default())?;
        buf.truncate(start + n);
        bytes += n as u64;
        if n == 0 {
            if !buf.is_empty() {
                f(&buf, bytes);
            }
            return Ok(bytes);
        }
        // Whole lines only; a line longer than a chunk waits for more input.
        let Some(end) = memchr::memrchr(b'\n', &buf).map(|i| i + 1) else {
            continue;
        };
        if !f(buf.get(..end).unwrap_or_default(), bytes) {
            return Ok(bytes);
        }
        buf.drain(..end);
    }
}

fn read_full(r: &mut dyn Read, mut out: &mut [u8]) -> std::io::Result<usize> {
    let mut total = 0;
    while !out.is_empty() {
        match r.read(out) {
            Ok(0) => break,
            Ok(n) => {
                total += n;
                out = out.get_mut(n..).unwrap_or_default();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// Puts of one table in flight together at most (batches disjoint in time only).
const MAX_IN_FLIGHT: usize = 3;

/// Consumes the reader's messages; writes batches when `write` is given.
///
/// Puts run concurrently only where their order cannot matter: batches of different tables,
/// or of one table with disjoint time ranges (no point can be in both). A batch that adds
/// columns, or overlaps one in flight, waits for the earlier puts of its table.
async fn drain(
    mut reader: Reader,
    options: &IngestOptions,
    instance: Option<&Instance>,
) -> Result<IngestReport> {
    let mut report = IngestReport::default();
    let mut in_flight = FuturesUnordered::new();
    // (table, min, max) of each put in flight, by the id its future returns.
    let mut ranges: HashMap<u64, (String, TimeSpan)> = HashMap::new();
    let mut next_id = 0u64;
    let mut finished = false;
    while let Some(m) = reader.rx.recv().await {
        match m {
            Message::Batch(ready) => {
                let Some(instance) = instance else {
                    continue;
                };
                loop {
                    let blocked = ranges.values().any(|(t, span)| {
                        *t == ready.table
                            && (ready.create
                                || !ready.new_columns.is_empty()
                                || ready.time_range.overlaps(*span))
                    });
                    if !blocked && in_flight.len() < MAX_IN_FLIGHT {
                        break;
                    }
                    let Some(done) = in_flight.next().await else {
                        break;
                    };
                    let (id, put): (u64, Put) = done;
                    ranges.remove(&id);
                    if let Some(e) = report.add(put, options) {
                        return Err(stopped(e, in_flight, report, options).await);
                    }
                }
                if let Err(e) = prepare_table(instance, options, &ready, &mut report).await {
                    return Err(stopped(e, in_flight, report, options).await);
                }
                let id = next_id;
                next_id += 1;
                ranges.insert(id, (ready.table.clone(), ready.time_range));
                let Ready {
                    table,
                    batch,
                    lines,
                    ..
                } = ready;
                let acked = options.on_acknowledged.as_ref();
                in_flight.push(async move {
                    (
                        id,
                        put_or_split(instance, &table, batch, &lines, acked).await,
                    )
                });
            }
            Message::Refused(e) => report.refuse(e, options),
            Message::Done { lines, bytes } => {
                report.lines = lines;
                report.bytes = bytes;
                finished = true;
            }
            Message::Failed(source) => {
                return Err(source).context(InputSnafu {
                    input: reader.name.clone(),
                });
            }
        }
    }
    while let Some((_, put)) = in_flight.next().await {
        if let Some(e) = report.add(put, options) {
            return Err(stopped(e, in_flight, report, options).await);
        }
    }
    // Lines the engine refused are reported after parse errors of later lines.
    report.errors.sort_by_key(|e| e.line);
    if !finished {
        // The reader thread ended without its last message: it panicked. What was written
        // stays written; the caller must not take the input as done.
        return Err(std::io::Error::other(format!(
            "the reader stopped after {} rows were written, before the end of the input",
            report.rows_written
        )))
        .context(InputSnafu {
            input: reader.name.clone(),
        });
    }
    Ok(report)
}

/// The error of an ingest stopped by `error`, once every put still in flight has answered:
/// its count of written rows is then exact (a put in flight may still succeed).
async fn stopped<F>(
    error: Error,
    mut in_flight: FuturesUnordered<F>,
    mut report: IngestReport,
    options: &IngestOptions,
) -> Error
where
    F: std::future::Future<Output = (u64, Put)>,
{
    // Only the first failure is reported; the others are most likely its echoes.
    while let Some((_, put)) = in_flight.next().await {
        let _ = report.add(put, options);
    }
    Error::IngestStopped {
        rows_written: report.rows_written,
        source: Box::new(error),
    }
}

impl IngestReport {
    fn refuse(&mut self, e: LineError, options: &IngestOptions) {
        self.refused += 1;
        if self.errors.len() < options.max_reported_errors {
            self.errors.push(e);
        }
    }

    /// Counts what `put` wrote and refused; returns its failure, if it had one.
    fn add(&mut self, put: Put, options: &IngestOptions) -> Option<Error> {
        self.rows_written += put.rows as u64;
        for e in put.refused {
            self.refuse(e, options);
        }
        put.failed
    }
}

/// What one batch's put did: rows written, lines the engine refused, and the failure that
/// stopped it (the rows written before it count).
#[derive(Debug, Default)]
struct Put {
    rows: usize,
    refused: Vec<LineError>,
    failed: Option<Error>,
}

/// Writes `batch`; if the engine refuses it as invalid (say, over `max_write_bytes`), writes
/// its halves instead, down to single rows, and reports each row still refused as its line.
/// An error of any other kind (storage failure, a stopped engine) stops it and ends the ingest.
async fn put_or_split(
    instance: &Instance,
    table: &str,
    batch: RecordBatch,
    lines: &[u64],
    acked: Option<&OnAcknowledged>,
) -> Put {
    // Halves wait on a stack, the earlier first: the rows of one batch stay in order (a point
    // written twice keeps its later line).
    let mut out = Put::default();
    let mut stack = vec![(0usize, batch)];
    while let Some((offset, batch)) = stack.pop() {
        let rows = batch.num_rows();
        match instance.put(table, batch.clone()).await {
            Ok(n) => {
                out.rows += n;
                if let Some(OnAcknowledged(f)) = acked {
                    f(lines.get(offset..offset + rows).unwrap_or_default());
                }
            }
            Err(e) if e.kind() != ErrorKind::InvalidArgument => {
                out.failed = Some(e);
                return out;
            }
            Err(e) if rows <= 1 => out.refused.push(LineError {
                line: lines.get(offset).copied().unwrap_or(0),
                reason: format!("refused by the engine: {e}"),
            }),
            Err(_) => {
                let half = rows / 2;
                stack.push((offset + half, batch.slice(half, rows - half)));
                stack.push((offset, batch.slice(0, half)));
            }
        }
    }
    out
}

/// Creates the batch's table, or adds the columns it announces.
async fn prepare_table(
    instance: &Instance,
    options: &IngestOptions,
    ready: &Ready,
    report: &mut IngestReport,
) -> Result<()> {
    if ready.create {
        let (_, created) = instance
            .create_table_if_absent(
                &ready.table,
                ready.new_columns.clone(),
                options.table_options.clone(),
            )
            .await?;
        if created {
            report.tables_created.push(ready.table.clone());
        }
    } else if !ready.new_columns.is_empty() {
        report.columns_added += ready.new_columns.len();
        instance
            .add_columns(&ready.table, ready.new_columns.clone())
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    /// The pieces `read_chunks` hands over, and the bytes it says it read.
    fn pieces(input: &Input) -> (Vec<Vec<u8>>, u64) {
        let mut out = Vec::new();
        let n = read_chunks(input, |piece, _| {
            out.push(piece.to_vec());
            true
        })
        .unwrap();
        (out, n)
    }

    #[test]
    fn bytes_in_memory_are_cut_into_whole_lines_as_a_file_is() {
        let line = "cpu,host=h1 usage=1.5 1\n";
        let mut text = line.repeat((9 << 20) / line.len());
        // A line longer than a chunk, and a last line without its newline.
        text.push_str(&"x".repeat(9 << 20));
        text.push_str("\ncpu,host=h2 usage=2 2");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.lp");
        std::fs::write(&path, &text).unwrap();
        let (from_memory, n) = pieces(&Input::Bytes(text.clone().into()));
        let (from_file, m) = pieces(&Input::File(path));
        assert_eq!((n, m), (text.len() as u64, text.len() as u64));
        assert_eq!(from_memory.concat(), text.as_bytes());
        assert_eq!(from_file.concat(), text.as_bytes());
        assert!(from_memory.len() >= 3);
        for p in &from_memory[..from_memory.len() - 1] {
            assert!(p.ends_with(b"\n"));
        }
    }
}
