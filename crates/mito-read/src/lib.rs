//! What rows mean when several versions of one (primary key, timestamp) meet: the op types,
//! the merge modes, and the one dedup every read path uses (memtable reads, scans, flush,
//! compaction).
//!
//! ```text
//!  rows sorted by (key, ts, sequence desc)          dedup(mode)           kept rows
//!  k1 t1 seq9 Put  a=1 b=null   ─┐                                        k1 t1: a=1 b=7 (last_non_null)
//!  k1 t1 seq5 Put  a=2 b=7      ─┴─ one run ──►  newest wins / fills  ──► or a=1 b=null (last_row)
//!  k1 t2 seq8 Delete            ─┐
//!  k1 t2 seq3 Put  a=5          ─┴─ a delete hides everything older ──► (tombstone kept for flush)
//! ```
//!
//! Rows are addressed through [`SortedRows`], so the same code runs over a memtable's
//! permutation and over merged SST batches.

use arrow_array::RecordBatch;
use arrow_schema::ArrowError;
use serde::{Deserialize, Serialize};

pub mod compat;
pub mod last_row;
pub mod merge;

/// What a row does. Stored in `__op_type` as a `u8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpType {
    /// A tombstone for (key, ts): hides every older version.
    Delete = 0,
    /// An insert or overwrite.
    Put = 1,
}

impl OpType {
    /// The stored byte.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The op of a stored byte (anything but 0 reads as `Put`; writers only store 0 and 1).
    pub fn from_u8(b: u8) -> Self {
        if b == 0 { OpType::Delete } else { OpType::Put }
    }
}

/// How versions of one (key, ts) combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeMode {
    /// The version with the highest sequence wins whole.
    #[default]
    LastRow,
    /// Field by field, the newest non-null value wins (back to the newest delete).
    LastNonNull,
}

/// How a read treats versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DedupOptions {
    /// Merge mode of the region.
    pub merge_mode: MergeMode,
    /// Keep every row (an `append_mode` region); no dedup at all.
    pub append_mode: bool,
    /// Keep the winning tombstones in the output (flush and compaction, so they keep hiding
    /// older data in other files); a user scan drops them.
    pub keep_deletes: bool,
}

impl Default for DedupOptions {
    fn default() -> Self {
        Self {
            merge_mode: MergeMode::LastRow,
            append_mode: false,
            keep_deletes: false,
        }
    }
}

/// Random access to rows sorted by (key, ts, sequence desc).
pub trait SortedRows {
    /// Number of rows.
    fn num_rows(&self) -> usize;
    /// Whether rows `a` and `b` have the same key and timestamp.
    fn same_key_ts(&self, a: usize, b: usize) -> bool;
    /// The op of row `i`.
    fn op(&self, i: usize) -> OpType;
    /// Number of field columns.
    fn num_fields(&self) -> usize;
    /// Whether field `f` of row `i` is null.
    fn field_is_null(&self, i: usize, f: usize) -> bool;
}

/// The rows a dedup keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// For each output row: the input row giving its key, timestamp, sequence and op.
    pub rows: Vec<usize>,
    /// `LastNonNull` only: for each field, for each output row, the input row giving the value
    /// (`None` when every version's value is null). Empty when fields come from `rows`.
    pub fields: Vec<Vec<Option<usize>>>,
}

/// Deduplicates sorted rows. Runs of equal (key, ts) must not be split across calls.
pub fn dedup(rows: &impl SortedRows, options: DedupOptions) -> Selection {
    let n = rows.num_rows();
    if options.append_mode {
        let rows = (0..n)
            .filter(|i| options.keep_deletes || rows.op(*i) == OpType::Put)
            .collect();
        return Selection {
            rows,
            fields: Vec::new(),
        };
    }
    let fill = options.merge_mode == MergeMode::LastNonNull;
    let nf = rows.num_fields();
    let mut out = Selection {
        rows: Vec::with_capacity(n),
        fields: if fill {
            vec![Vec::with_capacity(n); nf]
        } else {
            Vec::new()
        },
    };
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && rows.same_key_ts(start, end) {
            end += 1;
        }
        // `start` is the newest version of this (key, ts).
        match rows.op(start) {
            OpType::Delete => {
                if options.keep_deletes {
                    out.rows.push(start);
                    for f in out.fields.iter_mut() {
                        f.push(None);
                    }
                }
            }
            OpType::Put => {
                out.rows.push(start);
                if fill {
                    // Older versions fill nulls, but nothing at or past a delete counts.
                    let live_end = (start..end)
                        .find(|i| rows.op(*i) == OpType::Delete)
                        .unwrap_or(end);
                    for (f, col) in out.fields.iter_mut().enumerate() {
                        col.push((start..live_end).find(|i| !rows.field_is_null(*i, f)));
                    }
                }
            }
        }
        start = end;
    }
    out
}

/// The rows of `batch` whose value in `values` (one per row: a column's raw values) passes
/// `keep`; the batch itself when every row does.
pub fn keep_rows<N: Copy>(
    batch: RecordBatch,
    values: &[N],
    keep: impl Fn(N) -> bool,
) -> Result<RecordBatch, ArrowError> {
    if values.len() != batch.num_rows() {
        return Err(ArrowError::InvalidArgumentError(format!(
            "{} values to filter {} rows",
            values.len(),
            batch.num_rows()
        )));
    }
    if values.iter().all(|v| keep(*v)) {
        return Ok(batch);
    }
    let mask: arrow_array::BooleanArray = values.iter().map(|v| Some(keep(*v))).collect();
    arrow_select::filter::filter_record_batch(&batch, &mask)
}

/// The values of a 64-bit primitive array (a time index), without copying; `None` for another
/// layout or a buffer shorter than the array.
pub fn i64_values(array: &arrow_array::ArrayRef) -> Option<arrow_buffer::ScalarBuffer<i64>> {
    let data = array.to_data();
    if data.data_type().primitive_width() != Some(8) || data.buffers().len() != 1 {
        return None;
    }
    let buf = data.buffers().first()?;
    (buf.len() >= (data.offset() + data.len()) * 8)
        .then(|| arrow_buffer::ScalarBuffer::<i64>::new(buf.clone(), data.offset(), data.len()))
}

/// Why [`filter_batch`] failed.
#[derive(Debug)]
pub enum PredicateError {
    /// The predicate could not be evaluated.
    Evaluate {
        /// The predicate, as displayed.
        predicate: String,
        /// DataFusion's error.
        source: datafusion_common::DataFusionError,
    },
    /// The predicate gave something other than booleans.
    NotBoolean {
        /// The predicate, as displayed.
        predicate: String,
        /// What it gave.
        data_type: arrow_schema::DataType,
    },
    /// Filtering by the mask failed.
    Arrow(ArrowError),
}

impl PredicateError {
    /// Why evaluating a predicate failed (`Evaluate`): DataFusion's error, with the fix for
    /// its usual cause, a column compared with a value of another type (`host = 1` on a
    /// string tag casts every tag to a number).
    pub fn evaluation_reason(source: &datafusion_common::DataFusionError) -> String {
        let mut reason = source.to_string();
        if reason.contains("Cannot cast") {
            reason.push_str(
                "; compare a column with a value of its own type (a tag is a string: \
                 host = '1', not host = 1)",
            );
        }
        reason
    }
}

/// The rows of `batch` passing every predicate, evaluated in turn on the rows left (stops
/// early when none are).
pub fn filter_batch(
    batch: RecordBatch,
    predicates: &[std::sync::Arc<dyn datafusion_physical_expr::PhysicalExpr>],
) -> Result<RecordBatch, PredicateError> {
    let mut batch = batch;
    for f in predicates {
        if batch.num_rows() == 0 {
            break;
        }
        let mask = predicate_mask(f, &batch)?;
        batch = filter_by_mask(batch, &mask).map_err(PredicateError::Arrow)?;
    }
    Ok(batch)
}

/// `predicate` evaluated on every row of `batch`.
pub fn predicate_mask(
    predicate: &std::sync::Arc<dyn datafusion_physical_expr::PhysicalExpr>,
    batch: &RecordBatch,
) -> Result<arrow_array::BooleanArray, PredicateError> {
    use arrow_array::cast::AsArray;
    let mask = predicate
        .evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(|source| PredicateError::Evaluate {
            predicate: predicate.to_string(),
            source,
        })?;
    match mask.as_boolean_opt() {
        Some(mask) => Ok(mask.clone()),
        None => Err(PredicateError::NotBoolean {
            predicate: predicate.to_string(),
            data_type: mask.data_type().clone(),
        }),
    }
}

/// Whether `expr` names columns, all of them tags of `metadata`, and is not volatile: a
/// filter that keeps or drops whole series.
pub fn names_only_tags(
    expr: &datafusion_expr::Expr,
    metadata: &store_api::metadata::RegionMetadata,
) -> bool {
    let columns = expr.column_refs();
    !columns.is_empty()
        && !expr.is_volatile()
        && columns.iter().all(|c| {
            metadata
                .column_by_name(&c.name)
                .is_some_and(|m| m.semantic_type == store_api::metadata::SemanticType::Tag)
        })
}

/// A read's row filters, split by whether they name only tags.
#[derive(Debug, Default, Clone)]
pub struct RowFilters {
    /// Naming only tags: the same across a run of one series, evaluated once per run
    /// ([`filter_series`]).
    pub series: Vec<std::sync::Arc<dyn datafusion_physical_expr::PhysicalExpr>>,
    /// The others: evaluated on every row.
    pub rows: Vec<std::sync::Arc<dyn datafusion_physical_expr::PhysicalExpr>>,
}

impl RowFilters {
    /// Adds `predicate`, the physical form of `expr`, to the series or the row filters.
    pub fn push(
        &mut self,
        expr: &datafusion_expr::Expr,
        predicate: std::sync::Arc<dyn datafusion_physical_expr::PhysicalExpr>,
        metadata: &store_api::metadata::RegionMetadata,
    ) {
        if names_only_tags(expr, metadata) {
            self.series.push(predicate);
        } else {
            self.rows.push(predicate);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty() && self.rows.is_empty()
    }

    /// The rows of `batch` passing every filter. The runs of one series are those of equal
    /// keys of the batch's primary key column (a `UInt32` dictionary without NULLs: equal keys,
    /// equal primary keys, equal tags); a batch without one is filtered row by row.
    pub fn apply(&self, batch: RecordBatch) -> Result<RecordBatch, PredicateError> {
        self.apply_rows(self.apply_series(batch)?)
    }

    /// The rows of `batch` passing the series filters (see [`RowFilters::apply`]).
    pub fn apply_series(&self, batch: RecordBatch) -> Result<RecordBatch, PredicateError> {
        use arrow_array::cast::AsArray;
        if self.series.is_empty() {
            return Ok(batch);
        }
        let keys = batch
            .column_by_name(store_api::metadata::PRIMARY_KEY_COLUMN)
            .and_then(|c| c.as_dictionary_opt::<arrow_array::types::UInt32Type>())
            .filter(|d| arrow_array::Array::null_count(d.keys()) == 0)
            .map(|d| d.keys().values().clone());
        match keys {
            Some(keys) => filter_series(batch, &self.series, &keys),
            None => filter_batch(batch, &self.series),
        }
    }

    /// The rows of `batch` passing the row filters.
    pub fn apply_rows(&self, batch: RecordBatch) -> Result<RecordBatch, PredicateError> {
        filter_batch(batch, &self.rows)
    }
}

/// The rows of `batch` passing every predicate, where the predicates name only columns whose
/// value is the same across each run of equal `keys` (tags, by the series key of each row):
/// they are evaluated on the first row of each run and the answer applies to the run. Rows
/// sorted by series come in a few long runs, so this evaluates a handful of rows instead of
/// all of them; with many short runs it evaluates every row ([`filter_batch`]).
pub fn filter_series(
    batch: RecordBatch,
    predicates: &[std::sync::Arc<dyn datafusion_physical_expr::PhysicalExpr>],
    keys: &[u32],
) -> Result<RecordBatch, PredicateError> {
    let rows = batch.num_rows();
    if predicates.is_empty() || rows == 0 {
        return Ok(batch);
    }
    if keys.len() != rows {
        return Err(PredicateError::Arrow(ArrowError::InvalidArgumentError(
            format!("{} series keys for {rows} rows", keys.len()),
        )));
    }
    if u32::try_from(rows).is_err() {
        return filter_batch(batch, predicates);
    }
    let starts = run_starts(keys);
    if starts.len() * 4 > rows {
        return filter_batch(batch, predicates);
    }
    let keep = keep_runs(&batch, predicates, &starts)?;
    if keep.iter().all(|k| *k) {
        return Ok(batch);
    }
    let mask = run_mask(rows, &starts, &keep);
    filter_by_mask(batch, &mask).map_err(PredicateError::Arrow)
}

/// A mask over `rows` rows holding `keep[j]` for every row of run `j`, the runs starting at
/// `starts` (ascending, the first at 0; the last runs to `rows`).
pub fn run_mask(rows: usize, starts: &[u32], keep: &[bool]) -> arrow_array::BooleanArray {
    let mut selected = arrow_buffer::BooleanBufferBuilder::new(rows);
    let ends = starts.iter().skip(1).map(|s| *s as usize).chain([rows]);
    for ((start, end), k) in starts.iter().zip(ends).zip(keep) {
        selected.append_n(end.saturating_sub(*start as usize), *k);
    }
    arrow_array::BooleanArray::new(selected.finish(), None)
}

/// The rows of `batch` where `mask` is true (not NULL): the batch itself when that is every
/// row, an empty slice of it when none (neither copies a column).
fn filter_by_mask(
    batch: RecordBatch,
    mask: &arrow_array::BooleanArray,
) -> Result<RecordBatch, ArrowError> {
    match mask.true_count() {
        0 => Ok(batch.slice(0, 0)),
        n if n == batch.num_rows() => Ok(batch),
        _ => arrow_select::filter::filter_record_batch(&batch, mask),
    }
}

/// The first row of each run of equal `keys` (the first is 0 when there are any keys). For
/// more than `u32::MAX` keys, the runs of the first `u32::MAX`.
pub fn run_starts(keys: &[u32]) -> Vec<u32> {
    let mut starts: Vec<u32> = Vec::new();
    if !keys.is_empty() {
        starts.push(0);
    }
    for ((i, a), b) in (1u32..).zip(keys).zip(keys.iter().skip(1)) {
        if a != b {
            starts.push(i);
        }
    }
    starts
}

/// The rows `at` of `column`; a dictionary's values cut to those the rows use.
fn take_rows(
    column: &arrow_array::ArrayRef,
    at: &arrow_array::UInt32Array,
) -> Result<arrow_array::ArrayRef, ArrowError> {
    use arrow_array::cast::AsArray;
    if let Some(d) = column.as_dictionary_opt::<arrow_array::types::UInt32Type>() {
        // One value per row (O(rows), where cutting the dictionary is O(its values)).
        let keys = arrow_select::take::take(d.keys(), at, None)?;
        let values = arrow_select::take::take(d.values().as_ref(), keys.as_ref(), None)?;
        let len = u32::try_from(keys.len())
            .map_err(|_| ArrowError::InvalidArgumentError("too many rows".into()))?;
        let keys = arrow_array::UInt32Array::new((0..len).collect(), keys.nulls().cloned());
        return Ok(std::sync::Arc::new(arrow_array::DictionaryArray::<
            arrow_array::types::UInt32Type,
        >::try_new(keys, values)?));
    }
    let taken = arrow_select::take::take(column.as_ref(), at, None)?;
    match taken.as_any_dictionary_opt() {
        Some(d) => arrow_select::dictionary::garbage_collect_any_dictionary(d),
        None => Ok(taken),
    }
}

/// For each row of `batch` at `at`, whether it passes every one of `predicates` (a NULL
/// answer fails). Evaluates them on those rows only, of the columns they read: the others
/// become NULL columns of type Null, so that column positions hold. A taken dictionary keeps
/// all its values (a page's thousands of tags), which a predicate over it would evaluate:
/// a `UInt32` one becomes one value per row taken (the same type), any other is cut to the
/// values used.
///
/// A predicate of a plain form (`tag = 'x'`, `<`, `IN (...)`, ... on a string or string
/// dictionary column, see [`PlainCheck`]) is checked on the strings directly, without
/// DataFusion; the rest are evaluated as above.
pub fn keep_runs(
    batch: &RecordBatch,
    predicates: &[std::sync::Arc<dyn datafusion_physical_expr::PhysicalExpr>],
    at: &[u32],
) -> Result<Vec<bool>, PredicateError> {
    let mut keep = vec![true; at.len()];
    let mut general = Vec::new();
    for p in predicates {
        match PlainCheck::of(p).and_then(|c| c.mask(batch, at)) {
            Some(mask) => keep.iter_mut().zip(mask).for_each(|(k, m)| *k &= m),
            None => general.push(p.clone()),
        }
    }
    if general.is_empty() || !keep.contains(&true) {
        return Ok(keep);
    }
    let predicates = general.as_slice();
    let read: std::collections::HashSet<usize> = predicates
        .iter()
        .flat_map(datafusion_physical_expr::utils::collect_columns)
        .map(|c| c.index())
        .collect();
    let firsts_at = arrow_array::UInt32Array::from(at.to_vec());
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    // One NULL column shared by every column not read.
    let null_field = std::sync::Arc::new(arrow_schema::Field::new(
        "",
        arrow_schema::DataType::Null,
        true,
    ));
    let null_column = arrow_array::new_null_array(&arrow_schema::DataType::Null, at.len());
    for (i, (field, column)) in schema.fields().iter().zip(batch.columns()).enumerate() {
        if read.contains(&i) {
            fields.push(field.clone());
            columns.push(take_rows(column, &firsts_at).map_err(PredicateError::Arrow)?);
        } else {
            fields.push(null_field.clone());
            columns.push(null_column.clone());
        }
    }
    let firsts = RecordBatch::try_new_with_options(
        std::sync::Arc::new(arrow_schema::Schema::new(fields)),
        columns,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(at.len())),
    )
    .map_err(PredicateError::Arrow)?;
    for f in predicates {
        let mask = predicate_mask(f, &firsts)?;
        for (k, i) in keep.iter_mut().zip(0..mask.len()) {
            *k &= arrow_array::Array::is_valid(&mask, i) && mask.value(i);
        }
    }
    Ok(keep)
}

/// The string a non-null string literal holds (a dictionary's value too: a tag's literal is
/// often one).
pub fn scalar_string(v: &datafusion_common::ScalarValue) -> Option<String> {
    use datafusion_common::ScalarValue;
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        ScalarValue::Dictionary(_, v) => scalar_string(v),
        _ => None,
    }
}

/// A comparison of a column with strings, as a physical predicate: `column op 'value'`
/// (`=`, `!=`, `<`, `<=`, `>`, `>=`, either side) or `column [NOT] IN ('a', ...)`, the
/// literals strings or string dictionaries. Checked on a string or `UInt32` string-dictionary
/// column directly, with SQL's answer (a NULL value passes nothing).
#[derive(Debug)]
pub struct PlainCheck {
    column: usize,
    test: PlainTest,
}

#[derive(Debug)]
enum PlainTest {
    /// Sorted, without duplicates; `true`: `NOT IN`.
    In(Vec<String>, bool),
    Cmp(datafusion_expr::Operator, String),
}

impl PlainCheck {
    /// The plain form of `p`, if it has one.
    pub fn of(p: &std::sync::Arc<dyn datafusion_physical_expr::PhysicalExpr>) -> Option<Self> {
        use datafusion_expr::Operator;
        use datafusion_physical_expr::expressions::{BinaryExpr, Column, InListExpr, Literal};
        let literal = |e: &std::sync::Arc<dyn datafusion_physical_expr::PhysicalExpr>| {
            scalar_string(e.downcast_ref::<Literal>()?.value())
        };
        let column = |e: &std::sync::Arc<dyn datafusion_physical_expr::PhysicalExpr>| {
            e.downcast_ref::<Column>().map(Column::index)
        };
        if let Some(b) = p.downcast_ref::<BinaryExpr>() {
            let (column, value, op) = match (column(b.left()), column(b.right())) {
                (Some(c), None) => (c, literal(b.right())?, *b.op()),
                (None, Some(c)) => (c, literal(b.left())?, b.op().swap()?),
                _ => return None,
            };
            return matches!(
                op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
            )
            .then_some(Self {
                column,
                test: PlainTest::Cmp(op, value),
            });
        }
        let list = p.downcast_ref::<InListExpr>()?;
        let column = column(list.expr())?;
        let mut values = list
            .list()
            .iter()
            .map(literal)
            .collect::<Option<Vec<_>>>()?;
        values.sort_unstable();
        values.dedup();
        Some(Self {
            column,
            test: PlainTest::In(values, list.negated()),
        })
    }

    /// The position of the compared column in the schema the predicate was built over.
    pub fn column(&self) -> usize {
        self.column
    }

    /// Whether [`PlainCheck::may_match_range`] answers: every form but `!=` and `NOT IN`.
    pub fn checks_ranges(&self) -> bool {
        match &self.test {
            PlainTest::In(_, negated) => !negated,
            PlainTest::Cmp(op, _) => *op != datafusion_expr::Operator::NotEq,
        }
    }

    /// Whether a container whose values all lie in `min..=max` may hold a value that passes;
    /// `None` for `!=` and `NOT IN`.
    pub fn may_match_range(&self, min: &str, max: &str) -> Option<bool> {
        use datafusion_expr::Operator;
        Some(match &self.test {
            PlainTest::In(_, true) => return None,
            PlainTest::In(values, false) => {
                let first = values.partition_point(|v| v.as_str() < min);
                values.get(first).is_some_and(|v| v.as_str() <= max)
            }
            PlainTest::Cmp(op, v) => {
                let v = v.as_str();
                match op {
                    Operator::Eq => min <= v && v <= max,
                    Operator::Lt => min < v,
                    Operator::LtEq => min <= v,
                    Operator::Gt => max > v,
                    Operator::GtEq => max >= v,
                    _ => return None,
                }
            }
        })
    }

    /// For each row of `batch` at `at`, whether it passes; `None` when the column is not
    /// strings or a `UInt32` dictionary of strings, or a row is out of bounds.
    pub fn mask(&self, batch: &RecordBatch, at: &[u32]) -> Option<Vec<bool>> {
        use arrow_array::Array;
        use arrow_array::cast::AsArray;
        use arrow_array::types::UInt32Type;
        use datafusion_expr::Operator;
        let column = batch.columns().get(self.column)?;
        let pass = |v: Option<&str>| {
            let Some(v) = v else {
                return false;
            };
            match &self.test {
                PlainTest::In(values, negated) => {
                    values.binary_search_by(|x| x.as_str().cmp(v)).is_ok() != *negated
                }
                PlainTest::Cmp(op, x) => {
                    let x = x.as_str();
                    match op {
                        Operator::Eq => v == x,
                        Operator::NotEq => v != x,
                        Operator::Lt => v < x,
                        Operator::LtEq => v <= x,
                        Operator::Gt => v > x,
                        _ => v >= x,
                    }
                }
            }
        };
        let rows = column.len();
        if at.iter().any(|r| *r as usize >= rows) {
            return None;
        }
        if let Some(d) = column.as_dictionary_opt::<UInt32Type>() {
            let values = d.values().as_string_opt::<i32>()?;
            let keys = d.keys();
            at.iter()
                .map(|r| {
                    let r = *r as usize;
                    if keys.is_null(r) {
                        return Some(false);
                    }
                    let k = keys.value(r) as usize;
                    if k >= values.len() {
                        return None;
                    }
                    Some(pass(values.is_valid(k).then(|| values.value(k))))
                })
                .collect()
        } else {
            let strings = column.as_string_opt::<i32>()?;
            Some(
                at.iter()
                    .map(|r| {
                        let r = *r as usize;
                        pass(strings.is_valid(r).then(|| strings.value(r)))
                    })
                    .collect(),
            )
        }
    }
}

/// `expr` as a physical predicate over `schema`. An `IN` list of dictionary literals is
/// unwrapped to their values first: DataFusion then tests a dictionary column's values once
/// per batch and maps the answers through the keys, where a list of dictionary literals made
/// it hash every row (~0.2 ms per thousand-row page of one tag).
pub fn physical_predicate(
    expr: &datafusion_expr::Expr,
    schema: &datafusion_common::DFSchema,
) -> datafusion_common::Result<std::sync::Arc<dyn datafusion_physical_expr::PhysicalExpr>> {
    use datafusion_common::ScalarValue;
    use datafusion_common::tree_node::{Transformed, TreeNode};
    use datafusion_expr::Expr;
    let plain = expr
        .clone()
        .transform(|e| match e {
            Expr::InList(mut l)
                if !l.list.is_empty()
                    && l.list
                        .iter()
                        .all(|i| matches!(i, Expr::Literal(ScalarValue::Dictionary(..), _))) =>
            {
                for item in &mut l.list {
                    if let Expr::Literal(ScalarValue::Dictionary(_, v), meta) = item {
                        *item = Expr::Literal(v.as_ref().clone(), meta.clone());
                    }
                }
                Ok(Transformed::yes(Expr::InList(l)))
            }
            e => Ok(Transformed::no(e)),
        })?
        .data;
    datafusion_physical_expr::create_physical_expr(
        &plain,
        schema,
        &datafusion_expr::execution_props::ExecutionProps::new(),
        &datafusion_expr::physical_planning_context::PhysicalPlanningContext::default(),
    )
}

#[cfg(test)]
mod tests;
