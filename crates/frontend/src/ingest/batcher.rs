//! [`Batcher`]: parsed lines into one Arrow batch per table, checked against the tables'
//! schemas. Pure and synchronous (no engine, no runtime): the ingest pipeline runs it on a
//! thread of its own and sends the batches it returns to the engine.
//!
//! ```text
//! line text --parse_line--> Line --check (types, roles, names)--> append to the table's
//! column builders --(batch_rows reached)--> Ready { table, new columns, RecordBatch }
//! ```
//!
//! A line is checked whole before any of it is appended, so a refused line leaves nothing
//! behind. A measurement seen for the first time becomes a new table (tags as the primary
//! key in the order of its first line, `time` as the time index, nanoseconds); a tag or field
//! seen for the first time becomes a new nullable column, announced in the first batch that
//! holds it so that the caller can alter the table before writing the batch.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::ArrayBuilder;
use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch, TimestampNanosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use foldhash::HashMapExt;
use store_api::metadata::{ColumnMetadata, RegionMetadata, SemanticType};
use store_api::time::TimeSpan;

use crate::ingest::line_protocol::{
    FieldKind, FieldValue, Line, ParseError, parse_fields, parse_line, plain_series_end,
    trim_blanks,
};
pub use crate::ingest::series_memo::SeriesMemo;
use crate::ingest::series_memo::{KNOWN_SERIES_BYTES, KnownSeries, Layout, at, span_in};

/// Name of the time index of tables the line protocol creates.
pub const TIME_COLUMN: &str = "time";

/// The unit of line-protocol timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Nanoseconds (the line protocol's default).
    #[default]
    Nanosecond,
    /// Microseconds.
    Microsecond,
    /// Milliseconds.
    Millisecond,
    /// Seconds.
    Second,
}

impl Precision {
    /// Nanoseconds per unit.
    pub fn nanos(self) -> i64 {
        match self {
            Precision::Nanosecond => 1,
            Precision::Microsecond => 1_000,
            Precision::Millisecond => 1_000_000,
            Precision::Second => 1_000_000_000,
        }
    }

    /// Parses `ns`, `us`, `ms` or `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ns" | "n" => Precision::Nanosecond,
            "us" | "u" => Precision::Microsecond,
            "ms" => Precision::Millisecond,
            "s" => Precision::Second,
            _ => return None,
        })
    }
}

/// The role and type of a column as the line protocol sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Tag,
    Field(FieldKind),
    Time,
    /// A column of a type the line protocol cannot write (the table was made otherwise).
    Other,
}

#[derive(Debug)]
struct Column {
    name: String,
    role: Role,
    /// Whether the engine's table has it (otherwise the next batch announces it).
    in_table: bool,
}

#[derive(Debug)]
enum Builder {
    Str(StringBuilder),
    F64(Float64Builder),
    I64(Int64Builder),
    U64(UInt64Builder),
    Bool(BooleanBuilder),
}

impl Builder {
    fn new(role: Role, capacity: usize) -> Option<Self> {
        Some(match role {
            Role::Tag | Role::Field(FieldKind::String) => {
                Builder::Str(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            Role::Field(FieldKind::Float) => Builder::F64(Float64Builder::with_capacity(capacity)),
            Role::Field(FieldKind::Int) => Builder::I64(Int64Builder::with_capacity(capacity)),
            Role::Field(FieldKind::UInt) => Builder::U64(UInt64Builder::with_capacity(capacity)),
            Role::Field(FieldKind::Bool) => Builder::Bool(BooleanBuilder::with_capacity(capacity)),
            Role::Time | Role::Other => return None,
        })
    }

    fn len(&self) -> usize {
        match self {
            Builder::Str(b) => b.len(),
            Builder::F64(b) => b.len(),
            Builder::I64(b) => b.len(),
            Builder::U64(b) => b.len(),
            Builder::Bool(b) => b.len(),
        }
    }

    fn append_nulls(&mut self, n: usize) {
        match self {
            Builder::Str(b) => b.append_nulls(n),
            Builder::F64(b) => b.append_nulls(n),
            Builder::I64(b) => b.append_nulls(n),
            Builder::U64(b) => b.append_nulls(n),
            Builder::Bool(b) => b.append_nulls(n),
        }
    }

    /// Appends a checked value (its kind matches the builder).
    fn append(&mut self, v: &FieldValue<'_>) {
        match (self, v) {
            (Builder::F64(b), FieldValue::Float(x)) => b.append_value(*x),
            (Builder::I64(b), FieldValue::Int(x)) => b.append_value(*x),
            (Builder::U64(b), FieldValue::UInt(x)) => b.append_value(*x),
            (Builder::Bool(b), FieldValue::Bool(x)) => b.append_value(*x),
            (Builder::Str(b), FieldValue::Str(x)) => b.append_value(x),
            // Unreachable after `check`; a null keeps the columns aligned regardless.
            (b, _) => b.append_nulls(1),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::U64(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
        }
    }
}

/// The rows buffered for one table.
#[derive(Debug)]
struct TableBuffer {
    exists: bool,
    /// The layout of the table as it existed when the batcher started (its columns are this
    /// buffer's first `initial_columns`, in the same order).
    layout: Option<Layout>,
    initial_columns: usize,
    columns: Vec<Column>,
    by_name: foldhash::HashMap<String, usize>,
    /// Builders by column index, created when a batch first holds the column.
    builders: Vec<Option<Builder>>,
    time: Vec<i64>,
    /// The input line of each buffered row (1-based), to name a row the engine refuses.
    lines: Vec<u64>,
    /// Column index used for the n-th tag / field of the previous line (lines of one source
    /// usually list them in the same order, so most lookups skip the hash map).
    tag_hint: Vec<usize>,
    field_hint: Vec<usize>,
    /// Scratch: resolved column index of each tag and field of the line being checked.
    resolved: Vec<Option<usize>>,
    /// Per column, the last line (`line_stamp`) that used it.
    stamps: Vec<u32>,
    line_stamp: u32,
}

impl TableBuffer {
    fn new(existing: Option<&RegionMetadata>) -> Self {
        let mut t = Self {
            exists: existing.is_some(),
            layout: existing.map(|m| (m.region_id(), m.schema_version())),
            initial_columns: 0,
            columns: Vec::new(),
            by_name: foldhash::HashMap::new(),
            builders: Vec::new(),
            time: Vec::new(),
            lines: Vec::new(),
            tag_hint: Vec::new(),
            field_hint: Vec::new(),
            resolved: Vec::new(),
            stamps: Vec::new(),
            line_stamp: 0,
        };
        match existing {
            Some(m) => {
                for c in m.column_metadatas() {
                    let role = match c.semantic_type {
                        SemanticType::Timestamp => Role::Time,
                        SemanticType::Tag if c.data_type == DataType::Utf8 => Role::Tag,
                        SemanticType::Field => {
                            kind_of(&c.data_type).map_or(Role::Other, Role::Field)
                        }
                        SemanticType::Tag => Role::Other,
                    };
                    t.push_column(c.name.clone(), role, true);
                }
            }
            None => {
                t.push_column(TIME_COLUMN.to_string(), Role::Time, false);
            }
        }
        if t.exists {
            t.initial_columns = t.columns.len();
        }
        t
    }

    fn push_column(&mut self, name: String, role: Role, in_table: bool) -> usize {
        let i = self.columns.len();
        self.by_name.insert(name.clone(), i);
        self.columns.push(Column {
            name,
            role,
            in_table,
        });
        self.builders.push(None);
        self.stamps.push(0);
        i
    }

    fn lookup(&self, name: &str, hint: Option<&usize>) -> Option<usize> {
        if let Some(&h) = hint
            && self.columns.get(h).is_some_and(|c| c.name == name)
        {
            return Some(h);
        }
        self.by_name.get(name).copied()
    }

    fn rows(&self) -> usize {
        self.time.len()
    }

    /// A new stamp for the line being checked.
    fn next_stamp(&mut self) -> u32 {
        self.line_stamp = self.line_stamp.wrapping_add(1);
        if self.line_stamp == 0 {
            self.stamps.iter_mut().for_each(|s| *s = 0);
            self.line_stamp = 1;
        }
        self.line_stamp
    }

    /// Checks a line against the table; fills `resolved` (tags, then fields).
    fn check(&mut self, line: &Line<'_>) -> Result<(), String> {
        self.resolved.clear();
        // A key used twice resolves to one column twice: a stamp per column finds it without
        // comparing names. Keys the table lacks are compared by name (they are rare).
        let stamp = self.next_stamp();
        let mut fresh: Vec<&str> = Vec::new();
        for (n, (key, _)) in line.tags.iter().enumerate() {
            let found = self.lookup(key, self.tag_hint.get(n));
            match found {
                Some(i) => {
                    let c = self.columns.get(i).ok_or("column index out of range")?;
                    match c.role {
                        Role::Tag => {}
                        Role::Time => {
                            return Err(format!("tag '{key}' has the name of the time index"));
                        }
                        Role::Field(_) => {
                            return Err(format!("tag '{key}' is a field of this table"));
                        }
                        Role::Other => {
                            return Err(format!(
                                "tag '{key}' is a column the line protocol cannot write"
                            ));
                        }
                    }
                    if let Some(s) = self.stamps.get_mut(i) {
                        if *s == stamp {
                            return Err(format!("tag '{key}' appears twice"));
                        }
                        *s = stamp;
                    }
                }
                None => {
                    check_column_name(key, "tag")?;
                    if fresh.contains(&key.as_ref()) {
                        return Err(format!("tag '{key}' appears twice"));
                    }
                    fresh.push(key);
                }
            }
            self.resolved.push(found);
        }
        self.check_fields(line, stamp, fresh)
    }

    /// Checks a line whose tags are those of a line accepted before (a known series, see
    /// [`Batcher`]): they resolve to `columns`, which are tags of this table.
    fn check_known(
        &mut self,
        line: &Line<'_>,
        columns: impl Iterator<Item = usize>,
    ) -> Result<(), String> {
        self.resolved.clear();
        let stamp = self.next_stamp();
        for i in columns {
            if let Some(s) = self.stamps.get_mut(i) {
                *s = stamp;
            }
            self.resolved.push(Some(i));
        }
        self.check_fields(line, stamp, Vec::new())
    }

    /// Checks the fields of a line after its tags (`fresh` holds the tag keys the table
    /// lacks); appends to `resolved`.
    fn check_fields<'l>(
        &mut self,
        line: &'l Line<'_>,
        stamp: u32,
        mut fresh: Vec<&'l str>,
    ) -> Result<(), String> {
        let new_tags = fresh.len();
        for (n, (key, value)) in line.fields.iter().enumerate() {
            let found = self.lookup(key, self.field_hint.get(n));
            match found {
                Some(i) => {
                    let c = self.columns.get(i).ok_or("column index out of range")?;
                    let twice = self.stamps.get(i) == Some(&stamp);
                    match c.role {
                        Role::Field(_) if twice => {
                            return Err(format!("field '{key}' appears twice"));
                        }
                        Role::Field(kind) if kind == value.kind() => {}
                        Role::Field(kind) => {
                            return Err(format!(
                                "field '{key}' is {kind} in this table, the line has {}",
                                value.kind()
                            ));
                        }
                        Role::Time => {
                            return Err(format!("field '{key}' has the name of the time index"));
                        }
                        Role::Tag if twice => {
                            return Err(format!("'{key}' is both a tag and a field"));
                        }
                        Role::Tag => return Err(format!("field '{key}' is a tag of this table")),
                        Role::Other => {
                            return Err(format!(
                                "field '{key}' is a column the line protocol cannot write"
                            ));
                        }
                    }
                    if let Some(s) = self.stamps.get_mut(i) {
                        *s = stamp;
                    }
                }
                None => {
                    check_column_name(key, "field")?;
                    if let Some(pos) = fresh.iter().position(|k| *k == key.as_ref()) {
                        return Err(if pos < new_tags {
                            format!("'{key}' is both a tag and a field")
                        } else {
                            format!("field '{key}' appears twice")
                        });
                    }
                    fresh.push(key);
                }
            }
            self.resolved.push(found);
        }
        Ok(())
    }

    /// Appends a checked line (after [`check`](Self::check)).
    fn append(&mut self, number: u64, line: &Line<'_>, ts_ns: i64, capacity: usize) {
        let row = self.rows();
        let tags = line.tags.len();
        for (n, (key, value)) in line.tags.iter().enumerate() {
            let i = self.column_for(n, n, key, Role::Tag);
            if let Some(Builder::Str(b)) = self.builder(i, Role::Tag, row, capacity) {
                b.append_value(value);
            }
        }
        for (n, (key, value)) in line.fields.iter().enumerate() {
            let role = Role::Field(value.kind());
            let i = self.column_for(tags + n, n, key, role);
            if let Some(b) = self.builder(i, role, row, capacity) {
                b.append(value);
            }
        }
        self.time.push(ts_ns);
        self.lines.push(number);
        for b in self.builders.iter_mut().flatten() {
            if b.len() <= row {
                b.append_nulls(1);
            }
        }
    }

    /// The column of the line's `n`-th key as `check` resolved it (the `slot`-th tag or
    /// field), created if the table lacks it; kept as the hint for the next line.
    fn column_for(&mut self, n: usize, slot: usize, key: &str, role: Role) -> usize {
        let i = match self.resolved.get(n).copied().flatten() {
            Some(i) => i,
            None => self.push_column(key.to_string(), role, false),
        };
        let hints = if role == Role::Tag {
            &mut self.tag_hint
        } else {
            &mut self.field_hint
        };
        match hints.get_mut(slot) {
            Some(h) => *h = i,
            None => hints.push(i),
        }
        i
    }

    /// The builder of column `i`, made (with `row` leading nulls) on its first value.
    fn builder(
        &mut self,
        i: usize,
        role: Role,
        row: usize,
        capacity: usize,
    ) -> Option<&mut Builder> {
        let slot = self.builders.get_mut(i)?;
        if slot.is_none() {
            *slot = Builder::new(role, capacity).map(|mut b| {
                b.append_nulls(row);
                b
            });
        }
        slot.as_mut()
    }

    /// Takes the buffered rows as a batch, with the columns the table still lacks.
    fn take(&mut self, name: &str) -> Option<Ready> {
        // No rows buffered: nothing to take.
        let time_range = TimeSpan::of(&self.time)?;
        let create = !self.exists;
        let mut new_columns = Vec::new();
        let mut fields = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for (c, b) in self.columns.iter_mut().zip(self.builders.iter_mut()) {
            if c.role == Role::Time {
                fields.push(Field::new(
                    &c.name,
                    DataType::Timestamp(TimeUnit::Nanosecond, None),
                    false,
                ));
                arrays.push(Arc::new(TimestampNanosecondArray::from(std::mem::take(
                    &mut self.time,
                ))));
                if !c.in_table {
                    new_columns.push(column_metadata(&c.name, c.role));
                    c.in_table = true;
                }
                continue;
            }
            let Some(mut builder) = b.take() else {
                continue;
            };
            let data_type = data_type_of(c.role);
            fields.push(Field::new(&c.name, data_type, true));
            arrays.push(builder.finish());
            if !c.in_table {
                new_columns.push(column_metadata(&c.name, c.role));
                c.in_table = true;
            }
        }
        self.exists = true;
        #[expect(
            clippy::expect_used,
            reason = "invariant: every builder holds one entry per buffered row (append pads \
                      the columns a line lacks) and was made for its field's type"
        )]
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .expect("buffered columns have equal lengths and their fields' types");
        Some(Ready {
            table: name.to_string(),
            create,
            new_columns,
            batch,
            time_range,
            lines: std::mem::take(&mut self.lines),
        })
    }
}

/// A batch ready for the engine.
#[derive(Debug)]
pub struct Ready {
    /// The table.
    pub table: String,
    /// Whether the table must be created first (with `new_columns`, tags in key order).
    pub create: bool,
    /// Columns the table lacks: create or alter before writing `batch`.
    pub new_columns: Vec<ColumnMetadata>,
    /// The rows, columns by name.
    pub batch: RecordBatch,
    /// The smallest and largest timestamp of the rows (nanoseconds).
    pub time_range: TimeSpan,
    /// The input line (1-based) of each row, in row order.
    pub lines: Vec<u64>,
}

/// Why one line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number in the input.
    pub line: u64,
    /// What is wrong (with the column for syntax errors).
    pub reason: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Turns lines into per-table batches.
#[derive(Debug)]
pub struct Batcher {
    precision: Precision,
    batch_rows: usize,
    /// Buffers by table, in first-seen order; `index` finds them by name and `last` is the
    /// table of the previous line (most inputs are long runs of one measurement).
    tables: Vec<(String, TableBuffer)>,
    index: HashMap<String, usize>,
    last: usize,
    /// Schemas of the tables that existed when the batcher started.
    existing: HashMap<String, Arc<RegionMetadata>>,
    /// Series accepted before by this batcher, by the bytes of their line up to the first
    /// space (lines without an escape there), with the index of their table buffer: a line
    /// of a known series parses and checks only its fields. Columns are never removed nor
    /// change role, so what a series resolved to stays valid.
    known: foldhash::HashMap<Box<[u8]>, (usize, Arc<KnownSeries>)>,
    /// Bytes of `known`'s keys; past `known_limit` it starts over.
    known_bytes: usize,
    known_limit: usize,
    /// Series accepted by earlier batchers of the same tables (one HTTP request each; a
    /// collector sends the same series in every request).
    memo: Arc<SeriesMemo>,
    /// Series this batcher learned that hold for a table's layout; given to `memo` at the end.
    learned: Vec<(Box<[u8]>, Layout, Arc<KnownSeries>)>,
}

impl Batcher {
    /// A batcher over the tables that exist now (their schemas), emitting batches of
    /// `batch_rows` rows; `memo` is shared with the batchers before and after it.
    pub fn new(
        existing: HashMap<String, Arc<RegionMetadata>>,
        precision: Precision,
        batch_rows: usize,
        memo: Arc<SeriesMemo>,
    ) -> Self {
        Self {
            precision,
            batch_rows: batch_rows.max(1),
            tables: Vec::new(),
            index: HashMap::new(),
            last: 0,
            existing,
            known: foldhash::HashMap::new(),
            known_bytes: 0,
            known_limit: KNOWN_SERIES_BYTES,
            memo,
            learned: Vec::new(),
        }
    }

    /// The index of the buffer of table `name`, made on the table's first line.
    fn table_for(&mut self, name: &str) -> Result<usize, String> {
        if self.tables.get(self.last).is_some_and(|(n, _)| n == name) {
            return Ok(self.last);
        }
        self.last = match self.index.get(name) {
            Some(i) => *i,
            None => {
                crate::catalog::check_name(name)?;
                let buffer = TableBuffer::new(self.existing.get(name).map(|m| m.as_ref()));
                self.tables.push((name.to_string(), buffer));
                self.index.insert(name.to_string(), self.tables.len() - 1);
                self.tables.len() - 1
            }
        };
        Ok(self.last)
    }

    /// Parses, checks and buffers one line (`number` is 1-based, for errors); `now_ns` is
    /// the timestamp of a line without one. Returns a batch when the line's table has
    /// `batch_rows` rows buffered.
    pub fn push<'a>(
        &mut self,
        number: u64,
        text: &'a str,
        scratch: &mut Line<'a>,
        now_ns: i64,
    ) -> Result<Option<Ready>, LineError> {
        let err = |reason: String| LineError {
            line: number,
            reason,
        };
        let (lead, text) = trim_blanks(text);
        // Columns count from the start of the line as sent.
        let parse_err = |mut e: ParseError| {
            e.column += lead;
            err(e.to_string())
        };
        let series_end = plain_series_end(text.as_bytes());
        let series = series_end.and_then(|end| Some((end, text.as_bytes().get(..end)?)));
        let mut known = None;
        if let Some((_, series)) = series {
            if let Some((table, k)) = self.known.get(series) {
                self.last = *table;
                known = Some(k.clone());
            } else if let Some((layout, k)) = self.memo.get(series) {
                // It holds only if this batcher's table has the layout it was learned on.
                let table = self.table_for(&at(text, k.measurement)).map_err(&err)?;
                if self.tables.get(table).and_then(|(_, t)| t.layout) == Some(layout) {
                    known = Some(k);
                }
            }
        }
        match (&known, series) {
            (Some(k), Some((end, _))) => {
                parse_fields(text, end, scratch).map_err(parse_err)?;
                scratch.measurement = at(text, k.measurement);
                scratch.tags.clear();
                scratch.tags.extend(
                    k.tags
                        .iter()
                        .map(|&(key, value, _)| (at(text, key), at(text, value))),
                );
            }
            _ => {
                // `text` has no leading blanks left: parse_line's columns are ours.
                parse_line(text, scratch).map_err(parse_err)?;
            }
        }
        let ts = match scratch.timestamp {
            Some(t) => t.checked_mul(self.precision.nanos()).ok_or_else(|| {
                err(format!(
                    "timestamp {t} in {:?} is outside the nanosecond range (years 1677-2262)",
                    self.precision
                ))
            })?,
            None => now_ns,
        };
        let name = scratch.measurement.as_ref();
        let table_index = self.table_for(name).map_err(&err)?;
        let batch_rows = self.batch_rows;
        let Some((_, table)) = self.tables.get_mut(table_index) else {
            return Ok(None);
        };
        match &known {
            Some(k) => table.check_known(scratch, k.tags.iter().map(|t| t.2)),
            None => table.check(scratch),
        }
        .map_err(&err)?;
        // Batches end where the timestamp changes (past `batch_rows`), so that time-ordered
        // input gives batches disjoint in time, which the writer may have in flight together.
        // Twice `batch_rows` ends a batch regardless.
        let mut ready = None;
        if table.rows() >= batch_rows && table.time.last() != Some(&ts) {
            ready = table.take(name);
        }
        table.append(number, scratch, ts, batch_rows);
        if ready.is_none() && table.rows() >= batch_rows.saturating_mul(2) {
            ready = table.take(name);
        }
        if known.is_none()
            && let Some((end, series)) = series
        {
            // `append` left the column of the n-th tag as the n-th tag hint.
            let columns = table.tag_hint.get(..scratch.tags.len()).unwrap_or_default();
            let spans = span_in(text, &scratch.measurement).and_then(|measurement| {
                let tags = scratch
                    .tags
                    .iter()
                    .zip(columns)
                    .map(|((k, v), &c)| Some((span_in(text, k)?, span_in(text, v)?, c)))
                    .collect::<Option<Vec<_>>>()?;
                Some(KnownSeries { measurement, tags })
            });
            if let Some(known) = spans
                && known.tags.len() == scratch.tags.len()
            {
                let known = Arc::new(known);
                // Others may use it only where every tag is a column the table had.
                if let Some(layout) = table.layout
                    && known.tags.iter().all(|t| t.2 < table.initial_columns)
                    && end <= self.known_limit
                {
                    self.learned.push((series.into(), layout, known.clone()));
                }
                if self.known_bytes + end > self.known_limit {
                    self.known.clear();
                    self.known_bytes = 0;
                }
                if end <= self.known_limit {
                    self.known_bytes += end;
                    self.known.insert(series.into(), (table_index, known));
                }
            }
        }
        Ok(ready)
    }

    /// Every buffered batch, tables in name order; what the batcher learned goes to the
    /// shared memo.
    pub fn finish(&mut self) -> Vec<Ready> {
        self.memo.publish(std::mem::take(&mut self.learned));
        let mut out: Vec<Ready> = self
            .tables
            .iter_mut()
            .filter_map(|(n, t)| t.take(n))
            .collect();
        out.sort_by(|a, b| a.table.cmp(&b.table));
        out
    }
}

fn check_column_name(name: &str, what: &str) -> Result<(), String> {
    if name.starts_with("__") {
        return Err(format!(
            "{what} '{name}': names starting with '__' are reserved"
        ));
    }
    if name.len() > 255 {
        return Err(format!(
            "{what} name is {} bytes, more than 255",
            name.len()
        ));
    }
    Ok(())
}

fn kind_of(data_type: &DataType) -> Option<FieldKind> {
    Some(match data_type {
        DataType::Float64 => FieldKind::Float,
        DataType::Int64 => FieldKind::Int,
        DataType::UInt64 => FieldKind::UInt,
        DataType::Boolean => FieldKind::Bool,
        DataType::Utf8 => FieldKind::String,
        _ => return None,
    })
}

fn data_type_of(role: Role) -> DataType {
    match role {
        Role::Tag | Role::Field(FieldKind::String) | Role::Other => DataType::Utf8,
        Role::Field(FieldKind::Float) => DataType::Float64,
        Role::Field(FieldKind::Int) => DataType::Int64,
        Role::Field(FieldKind::UInt) => DataType::UInt64,
        Role::Field(FieldKind::Bool) => DataType::Boolean,
        Role::Time => DataType::Timestamp(TimeUnit::Nanosecond, None),
    }
}

fn column_metadata(name: &str, role: Role) -> ColumnMetadata {
    let semantic = match role {
        Role::Tag => SemanticType::Tag,
        Role::Time => SemanticType::Timestamp,
        Role::Field(_) | Role::Other => SemanticType::Field,
    };
    // Ids are assigned by the instance when it creates or alters the table.
    ColumnMetadata::new(0, name, data_type_of(role), semantic).with_nullable(role != Role::Time)
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, Float64Array, Int64Array, StringArray};

    use super::*;

    fn run(batcher: &mut Batcher, text: &str) -> (Vec<Ready>, Vec<LineError>) {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for (i, l) in text.lines().enumerate() {
            let mut scratch = Line::default();
            match batcher.push(i as u64 + 1, l, &mut scratch, 42) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        out.extend(batcher.finish());
        (out, errors)
    }

    fn batcher(rows: usize) -> Batcher {
        Batcher::new(HashMap::new(), Precision::Nanosecond, rows, Arc::default())
    }

    /// Table `m` as it exists: tags `tags` in that column order, then fields `f1` (float)
    /// and `f2` (integer), at `version`.
    fn existing(tags: &[&str], version: u64) -> HashMap<String, Arc<RegionMetadata>> {
        let mut builder =
            store_api::metadata::RegionMetadataBuilder::new(store_api::RegionId::new(1024, 0));
        let mut columns = vec![column_metadata(TIME_COLUMN, Role::Time)];
        columns.extend(tags.iter().map(|t| column_metadata(t, Role::Tag)));
        columns.push(column_metadata("f1", Role::Field(FieldKind::Float)));
        columns.push(column_metadata("f2", Role::Field(FieldKind::Int)));
        let mut key = Vec::new();
        for (i, mut c) in columns.into_iter().enumerate() {
            c.column_id = i as u32;
            if c.semantic_type == SemanticType::Tag {
                key.push(c.column_id);
            }
            builder.push_column(c);
        }
        let meta = builder
            .primary_key(key)
            .schema_version(version)
            .build()
            .unwrap();
        HashMap::from([("m".to_string(), Arc::new(meta))])
    }

    #[test]
    fn a_new_table_with_later_columns() {
        let mut b = batcher(100);
        let (ready, errors) = run(
            &mut b,
            "cpu,host=a usage=1 10\ncpu,host=b usage=2,n=5i 20\ncpu,host=c,dc=x usage=3\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(ready.len(), 1);
        let r = &ready[0];
        assert!(r.create);
        let names: Vec<&str> = r.new_columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["time", "host", "usage", "n", "dc"]);
        let batch = &r.batch;
        assert_eq!(batch.num_rows(), 3);
        let time = batch.column_by_name("time").unwrap();
        let time = time
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .unwrap();
        assert_eq!(time.values().to_vec(), vec![10, 20, 42]);
        let n = batch.column_by_name("n").unwrap();
        let n = n.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(n.iter().collect::<Vec<_>>(), vec![None, Some(5), None]);
        let dc = batch.column_by_name("dc").unwrap();
        let dc = dc.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(dc.iter().collect::<Vec<_>>(), vec![None, None, Some("x")]);
        let u = batch.column_by_name("usage").unwrap();
        let u = u.as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(u.values().to_vec(), vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn batches_roll_and_announce_each_column_once() {
        let mut b = batcher(2);
        let (ready, errors) = run(
            &mut b,
            "m a=1 1\nm a=2 2\nm a=3,b=t 3\nm a=4 4\nm c=\"s\" 5\n",
        );
        assert!(errors.is_empty());
        assert_eq!(ready.len(), 3);
        assert!(ready[0].create && !ready[1].create && !ready[2].create);
        let announced: Vec<Vec<&str>> = ready
            .iter()
            .map(|r| r.new_columns.iter().map(|c| c.name.as_str()).collect())
            .collect();
        assert_eq!(announced, vec![vec!["time", "a"], vec!["b"], vec!["c"]]);
        assert_eq!(ready[2].batch.num_columns(), 2, "only columns with values");
    }

    #[test]
    fn batches_end_where_the_timestamp_changes() {
        let mut b = batcher(2);
        let (ready, _) = run(
            &mut b,
            "m a=1 1\nm a=2 1\nm a=3 1\nm a=4 2\nm a=5 2\nm a=6 3\n",
        );
        let sizes: Vec<(usize, (i64, i64))> = ready
            .iter()
            .map(|r| (r.batch.num_rows(), (r.time_range.min, r.time_range.max)))
            .collect();
        assert_eq!(sizes, vec![(3, (1, 1)), (2, (2, 2)), (1, (3, 3))]);
        // One timestamp for many rows: cut at twice the batch size regardless.
        let mut b = batcher(2);
        let (ready, _) = run(&mut b, &"m a=1 7\n".repeat(9));
        let sizes: Vec<usize> = ready.iter().map(|r| r.batch.num_rows()).collect();
        assert_eq!(sizes, vec![4, 4, 1]);
    }

    #[test]
    fn bad_lines_leave_nothing_and_are_numbered() {
        let mut b = batcher(100);
        let text = "m,t=a v=1 1\n\
                    m v=1i 2\n\
                    m,v=x w=1 3\n\
                    m t=1 4\n\
                    m time=1 5\n\
                    m,time=a v=1 6\n\
                    m v=1,v=2 7\n\
                    m,x=1,x=2 v=1 8\n\
                    m,__k=1 v=1 9\n\
                    m v=1 99999999999999999999\n\
                    m,t=b v=2 11\n\
                    m,q=1 q=1 12\n";
        let (ready, errors) = run(&mut b, text);
        let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8, 9, 10, 12], "{errors:#?}");
        assert!(
            errors[0]
                .reason
                .contains("field 'v' is float in this table, the line has integer")
        );
        assert!(errors[1].reason.contains("tag 'v' is a field"));
        assert!(errors[2].reason.contains("field 't' is a tag"));
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].batch.num_rows(), 2);
        let names: Vec<&str> = ready[0]
            .new_columns
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["time", "t", "v"], "refused lines add no column");
    }

    #[test]
    fn existing_tables_are_checked_against_their_schema() {
        let mut first = batcher(10);
        let (ready, _) = run(&mut first, "m,t=a v=1 1\n");
        let cols = ready[0].new_columns.clone();
        let mut builder =
            store_api::metadata::RegionMetadataBuilder::new(store_api::RegionId::new(1024, 0));
        let mut key = Vec::new();
        for (i, mut c) in cols.into_iter().enumerate() {
            c.column_id = i as u32;
            if c.semantic_type == SemanticType::Tag {
                key.push(c.column_id);
            }
            builder.push_column(c);
        }
        let meta = Arc::new(builder.primary_key(key).build().unwrap());
        let mut b = Batcher::new(
            HashMap::from([("m".to_string(), meta)]),
            Precision::Second,
            10,
            Arc::default(),
        );
        let (ready, errors) = run(&mut b, "m v=1i 1\nm,t=b v=2 3\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 1);
        assert!(!ready[0].create);
        assert!(ready[0].new_columns.is_empty());
        let time = ready[0].batch.column_by_name("time").unwrap();
        let time = time
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .unwrap();
        assert_eq!(time.value(0), 3_000_000_000);
        assert_eq!(time.null_count(), 0);
    }

    /// Lines from a small alphabet: repeated series (some with escapes), tags and fields
    /// sharing names, changing field types, junk.
    fn line_strategy() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let measurement =
            prop_oneof![8 => Just("m"), 1 => Just("n"), 1 => Just("m\\ x"), 1 => Just("#c")];
        let tag = (
            prop_oneof![Just("a"), Just("b"), Just("f1"), Just("__r")],
            prop_oneof![8 => Just("x"), 1 => Just("y"), 1 => Just("x\\,y"), 1 => Just("")],
        );
        let field = (
            prop_oneof![Just("f1"), Just("f2"), Just("a")],
            prop_oneof![
                Just("1"),
                Just("2.5"),
                Just("3i"),
                Just("t"),
                Just("\"s\""),
                Just("z")
            ],
        );
        let ts = prop_oneof![Just(""), Just(" 5"), Just(" 6"), Just(" x")];
        (
            measurement,
            proptest::collection::vec(tag, 0..=2),
            proptest::collection::vec(field, 0..3),
            ts,
            any::<bool>(),
        )
            .prop_map(|(m, tags, fields, ts, cr)| {
                let mut l = m.to_string();
                for (k, v) in tags {
                    l.push_str(&format!(",{k}={v}"));
                }
                l.push(' ');
                let f: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                l.push_str(&f.join(","));
                l.push_str(ts);
                if cr {
                    l.push('\r');
                }
                l
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// The known-series memo changes nothing: the same batches and the same refusals as
        /// parsing and checking every line whole.
        #[test]
        fn known_series_change_nothing(lines in proptest::collection::vec(line_strategy(), 1..60)) {
            let text = lines.join("\n");
            let mut memo = batcher(4);
            let mut whole = batcher(4);
            whole.known_limit = 0;
            let (a, ea) = run(&mut memo, &text);
            let (b, eb) = run(&mut whole, &text);
            proptest::prop_assert_eq!(ea, eb);
            proptest::prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
            proptest::prop_assert!(whole.known.is_empty());
        }

        /// A memo shared with an earlier batcher changes nothing either, whether the table
        /// still has the layout the memo learned on or has another one (a later schema
        /// version with the tags in other columns).
        #[test]
        fn a_shared_memo_changes_nothing(
            first in proptest::collection::vec(line_strategy(), 1..40),
            second in proptest::collection::vec(line_strategy(), 1..40),
            relayout in proptest::prelude::any::<bool>(),
        ) {
            let memo: Arc<SeriesMemo> = Arc::default();
            let before = existing(&["a", "b"], 0);
            let now = if relayout { existing(&["b", "f0", "a"], 1) } else { before.clone() };
            let mut earlier = Batcher::new(before, Precision::Nanosecond, 4, memo.clone());
            run(&mut earlier, &first.join("\n"));
            let text = second.join("\n");
            let mut shared = Batcher::new(now.clone(), Precision::Nanosecond, 4, memo);
            let mut alone = Batcher::new(now, Precision::Nanosecond, 4, Arc::default());
            alone.known_limit = 0;
            let (a, ea) = run(&mut shared, &text);
            let (b, eb) = run(&mut alone, &text);
            proptest::prop_assert_eq!(ea, eb);
            proptest::prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
    }

    #[test]
    fn series_learned_on_an_existing_table_are_shared_with_later_batchers() {
        let memo: Arc<SeriesMemo> = Arc::default();
        let text = "m,a=x,b=y f1=1 1\nm,a=x,b=z f1=2 1\nm,a=x,c=new f1=3 1\nq,a=x f1=1 1\n";
        let mut first = Batcher::new(
            existing(&["a", "b"], 0),
            Precision::Nanosecond,
            10,
            memo.clone(),
        );
        let (_, errors) = run(&mut first, text);
        assert!(errors.is_empty(), "{errors:?}");
        // A new tag column or a new table holds for this batcher only.
        assert_eq!(memo.len(), 2);
        let mut second = Batcher::new(
            existing(&["a", "b"], 0),
            Precision::Nanosecond,
            10,
            memo.clone(),
        );
        let (ready, errors) = run(&mut second, "m,a=x,b=y f1=5 2\nm,a=x,b=y f1=6i 3\n");
        assert_eq!(errors.len(), 1, "a known series' fields are still checked");
        assert_eq!(ready[0].batch.num_rows(), 1);
        assert!(second.known.is_empty(), "the shared memo answered");
    }
}
