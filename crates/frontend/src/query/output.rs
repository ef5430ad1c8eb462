//! Results as text: aligned tables, CSV, JSON arrays and lines, written batch by batch as a
//! query's stream yields them (the `mito sql` command and the HTTP SQL endpoint share it).

use std::io::Write;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use datafusion::arrow::{csv, json};

/// Text formats of a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An aligned text table (printed every [`TABLE_ROWS`] rows).
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

/// Prints `batches` to `out` in `format`.
pub fn print(
    out: &mut dyn Write,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: Format,
) -> std::io::Result<()> {
    let mut printer = Printer::new(schema.clone(), format);
    for b in batches {
        printer.push(out, b)?;
    }
    printer.finish(out)
}

/// Rows an aligned table holds before it is printed: a longer result prints as several
/// tables (aligned each), so that printing never holds a whole result.
pub const TABLE_ROWS: usize = 10_000;

/// Prints a result batch by batch as it arrives. CSV and JSON are written as they come; an
/// aligned table is printed every [`TABLE_ROWS`] rows.
#[derive(Debug)]
pub struct Printer {
    schema: SchemaRef,
    format: Format,
    rows: usize,
    /// Table: the rows not printed yet.
    held: Vec<RecordBatch>,
    held_rows: usize,
    /// CSV: whether the header is out. JSON: whether the array is open.
    started: bool,
}

impl Printer {
    /// A printer of a result with `schema`.
    pub fn new(schema: SchemaRef, format: Format) -> Self {
        Self {
            schema,
            format,
            rows: 0,
            held: Vec::new(),
            held_rows: 0,
            started: false,
        }
    }

    /// Prints (or holds, for a table) one batch.
    pub fn push(&mut self, out: &mut dyn Write, batch: &RecordBatch) -> std::io::Result<()> {
        self.rows += batch.num_rows();
        match self.format {
            Format::Table => {
                if batch.num_rows() > 0 {
                    self.held.push(batch.clone());
                    self.held_rows += batch.num_rows();
                }
                if self.held_rows >= TABLE_ROWS {
                    self.print_table(out)?;
                }
            }
            Format::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .with_header(!self.started)
                    .build(&mut *out);
                w.write(batch).map_err(std::io::Error::other)?;
                self.started = true;
            }
            Format::Json => {
                if batch.num_rows() > 0 {
                    let mut w = json::ArrayWriter::new(Vec::new());
                    w.write(batch).map_err(std::io::Error::other)?;
                    w.finish().map_err(std::io::Error::other)?;
                    let text = w.into_inner();
                    // `[{...},{...}]`: the objects between the brackets.
                    let objects = text
                        .get(1..text.len().saturating_sub(1))
                        .unwrap_or_default();
                    out.write_all(if self.started { b"," } else { b"[" })?;
                    out.write_all(objects)?;
                    self.started = true;
                }
            }
            Format::Ndjson => {
                let mut w = json::LineDelimitedWriter::new(&mut *out);
                w.write(batch).map_err(std::io::Error::other)?;
                w.finish().map_err(std::io::Error::other)?;
            }
        }
        Ok(())
    }

    fn print_table(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        let text = datafusion::arrow::util::pretty::pretty_format_batches_with_schema(
            self.schema.clone(),
            &self.held,
        )
        .map_err(std::io::Error::other)?;
        writeln!(out, "{text}")?;
        self.held.clear();
        self.held_rows = 0;
        self.started = true;
        Ok(())
    }

    /// Ends the output (the last table, the row count; the closing bracket).
    pub fn finish(mut self, out: &mut dyn Write) -> std::io::Result<()> {
        match self.format {
            Format::Table => {
                if self.held_rows > 0 || !self.started {
                    self.print_table(out)?;
                }
                let rows = self.rows;
                writeln!(out, "{rows} row{}", if rows == 1 { "" } else { "s" })?;
            }
            Format::Csv => {
                if !self.started {
                    let mut w = csv::WriterBuilder::new().with_header(true).build(&mut *out);
                    w.write(&RecordBatch::new_empty(self.schema.clone()))
                        .map_err(std::io::Error::other)?;
                }
            }
            Format::Json => {
                writeln!(out, "{}", if self.started { "]" } else { "[]" })?;
            }
            Format::Ndjson => {}
        }
        out.flush()?;
        Ok(())
    }
}
