//! Grouped aggregates that find each row's group by comparing it with the row before.
//!
//! A region scan returns rows sorted by series, then time, file by file, so the rows of one
//! group of `GROUP BY hostname, date_bin(INTERVAL '1 hour', time)` arrive in long runs.
//! DataFusion's hash aggregate finds every row's group by hashing its key: a dictionary-encoded
//! tag goes through the row format, and `date_bin` is computed for each row first.
//! [`RunAggregateExec`] compares a row with the one before instead (tags by dictionary key, the
//! time by the bounds of the current bin) and looks the key up only where a run starts. The
//! aggregates are DataFusion's own groups accumulators, fed the same rows in the same order
//! with the same group indices, so the results are the same to the bit.
//!
//! ```text
//! AggregateExec (Partial | Single | SinglePartitioned, linear input order, no limit,
//!                no grouping sets, plain GROUP BY keys, groups-accumulator aggregates)
//!   --RunAggregate rule--> RunAggregateExec (same plan properties, same output schema)
//! keys: dictionary columns (tags) | date_bin(literal interval, timestamp column[, origin])
//! ```
//!
//! Anything else (another key expression, `DISTINCT`, an ordered aggregate such as
//! `first_value(x ORDER BY t)`) stays with DataFusion's aggregate.

use std::fmt;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, make_array};
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::compute::cast;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputDistributionRequirements, InputOrderMode,
    PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures::StreamExt;
use store_api::time::TimeSpan;

/// Replaces the aggregates [`RunAggregateExec`] can run (see the module docs).
#[derive(Debug)]
pub(crate) struct RunAggregate;

impl PhysicalOptimizerRule for RunAggregate {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|plan| match RunAggregateExec::try_new(&plan) {
            Some(exec) => Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>)),
            None => Ok(Transformed::no(plan)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "RunAggregate"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// One `GROUP BY` key.
#[derive(Debug, Clone, Copy)]
enum Key {
    /// A dictionary-encoded input column: rows compare by dictionary key.
    Tag { column: usize },
    /// `date_bin` of a timestamp input column: rows compare by the bounds of the bin.
    Bin { column: usize, bin: Bin },
}

impl Key {
    /// Words of a group's key this key takes.
    fn width(&self) -> usize {
        match self {
            Key::Tag { .. } => 1,
            Key::Bin { .. } => 2,
        }
    }

    /// The key `expr` is over `schema`, if it is one of the two forms.
    fn of(expr: &Arc<dyn PhysicalExpr>, schema: &arrow_schema::Schema) -> Option<Key> {
        if let Some(c) = expr.downcast_ref::<Column>() {
            let field = schema.fields().get(c.index())?;
            return matches!(field.data_type(), DataType::Dictionary(..))
                .then_some(Key::Tag { column: c.index() });
        }
        let f = expr.downcast_ref::<ScalarFunctionExpr>()?;
        let [stride, column, origin @ ..] = f.args() else {
            return None;
        };
        if f.fun().name() != "date_bin" || origin.len() > 1 {
            return None;
        }
        let stride = stride_nanos(literal(stride)?)?;
        let column = column.downcast_ref::<Column>()?;
        let DataType::Timestamp(unit, _) = schema.fields().get(column.index())?.data_type() else {
            return None;
        };
        let origin = match origin.first() {
            None => 0,
            Some(e) => match literal(e)? {
                ScalarValue::TimestampNanosecond(Some(v), _) => *v,
                _ => return None,
            },
        };
        let scale = match unit {
            TimeUnit::Second => 1_000_000_000,
            TimeUnit::Millisecond => 1_000_000,
            TimeUnit::Microsecond => 1_000,
            TimeUnit::Nanosecond => 1,
        };
        Some(Key::Bin {
            column: column.index(),
            bin: Bin {
                scale,
                stride,
                origin,
            },
        })
    }
}

fn literal(expr: &Arc<dyn PhysicalExpr>) -> Option<&ScalarValue> {
    expr.downcast_ref::<Literal>().map(Literal::value)
}

/// A stride DataFusion's `date_bin` takes as nanoseconds; month strides and the strides it
/// rejects (zero, too large, mixed months and days) are left to it.
fn stride_nanos(v: &ScalarValue) -> Option<i64> {
    const DAY: i64 = 86_400_000_000_000;
    let nanos = match v {
        ScalarValue::IntervalDayTime(Some(v)) => (v.days as i64)
            .checked_mul(DAY)?
            .checked_add((v.milliseconds as i64).checked_mul(1_000_000)?)?,
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => (v.days as i64)
            .checked_mul(DAY)?
            .checked_add(v.nanoseconds)?,
        _ => return None,
    };
    (nanos > 0).then_some(nanos)
}

/// `date_bin(stride, t, origin)` over a timestamp with `scale` nanoseconds per unit, as
/// DataFusion computes it: in nanoseconds, bins floored from the origin, `None` (NULL) where
/// a step overflows.
#[derive(Debug, Clone, Copy)]
struct Bin {
    scale: i64,
    stride: i64,
    origin: i64,
}

impl Bin {
    fn exact(&self, t: i64) -> Option<i64> {
        let diff = t.checked_mul(self.scale)?.checked_sub(self.origin)?;
        let mut delta = diff.checked_sub(diff.checked_rem(self.stride)?)?;
        if diff < 0 && self.stride > 1 && delta != diff {
            delta = delta.checked_sub(self.stride)?;
        }
        Some(self.origin.checked_add(delta)? / self.scale)
    }

    /// The bin of `t` and the closed range of times in the same bin (just `t` where the bin's
    /// bounds are not whole units, or near the ends of the range).
    fn span(&self, t: i64) -> (Option<i64>, TimeSpan) {
        let bin = self.exact(t);
        if let Some(b) = bin
            && self.stride % self.scale == 0
            && self.origin % self.scale == 0
            && let Some(last) = b.checked_add(self.stride / self.scale - 1)
            && (b..=last).contains(&t)
            && self.exact(b) == Some(b)
            && self.exact(last) == Some(b)
        {
            // `exact` is monotonic, so every time between two of the bin's is in the bin.
            return (bin, TimeSpan::new(b, last));
        }
        (bin, TimeSpan::point(t))
    }
}

/// An `AggregateExec` run by comparing each row's key with the row before.
#[derive(Debug)]
pub(crate) struct RunAggregateExec {
    /// The `AggregateExec` replaced: its properties, schema, input and display are this one's.
    agg: Arc<dyn ExecutionPlan>,
    keys: Arc<[Key]>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// Final values (`Single*`) rather than partial states (`Partial`).
    final_output: bool,
    metrics: ExecutionPlanMetricsSet,
}

impl RunAggregateExec {
    /// The exec for `plan`, if it is an aggregate this exec can run.
    fn try_new(plan: &Arc<dyn ExecutionPlan>) -> Option<Self> {
        let agg = plan.downcast_ref::<AggregateExec>()?;
        let final_output = match agg.mode() {
            AggregateMode::Partial => false,
            AggregateMode::Single | AggregateMode::SinglePartitioned => true,
            _ => return None,
        };
        let group = agg.group_expr();
        if group.has_grouping_set()
            || group.expr().is_empty()
            || agg.limit_options().is_some()
            || !agg.dynamic_expressions_produced().is_empty()
            || *agg.input_order_mode() != InputOrderMode::Linear
            || agg.aggr_expr().iter().any(|a| {
                a.is_distinct() || !a.order_bys().is_empty() || !a.groups_accumulator_supported()
            })
        {
            return None;
        }
        let schema = agg.input_schema();
        let keys = group
            .expr()
            .iter()
            .map(|(e, _)| Key::of(e, &schema))
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            agg: Arc::clone(plan),
            keys: keys.into(),
            aggregates: agg.aggr_expr().to_vec(),
            filters: agg.filter_expr().to_vec(),
            final_output,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    fn input(&self) -> Result<&Arc<dyn ExecutionPlan>> {
        self.agg.children().first().copied().ok_or_else(|| {
            DataFusionError::Internal("RunAggregateExec: the aggregate has no input".into())
        })
    }
}

impl DisplayAs for RunAggregateExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunAggregateExec (keys compared row to row) over ")?;
        self.agg.fmt_as(t, f)
    }
}

impl ExecutionPlan for RunAggregateExec {
    fn name(&self) -> &str {
        "RunAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.agg.properties()
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.agg.input_distribution_requirements()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        self.agg.maintains_input_order()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.agg.children()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.agg.apply_expressions(f)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let agg = Arc::clone(&self.agg).replace_children(children, options)?;
        Ok(match Self::try_new(&agg) {
            Some(exec) => Arc::new(exec),
            // The aggregate over new children no longer qualifies: it runs as itself.
            None => agg,
        })
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(
                datafusion::physical_plan::ChildrenPropertiesMode::Recompute,
            ),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut input = self.input()?.execute(partition, Arc::clone(&context))?;
        let schema = self.schema();
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let reservation = MemoryConsumer::new(format!("RunAggregateExec[{partition}]"))
            .register(context.memory_pool());
        let mut state = State::new(self, reservation)?;
        let batch_size = context.session_config().batch_size().max(1);
        let out_schema = Arc::clone(&schema);
        let run = async move {
            while let Some(batch) = input.next().await {
                let batch = batch?;
                let _timer = baseline.elapsed_compute().timer();
                state.update(&batch)?;
            }
            let _timer = baseline.elapsed_compute().timer();
            let out = state.finish(&out_schema)?;
            let mut batches = Vec::with_capacity(out.num_rows().div_ceil(batch_size));
            let mut offset = 0;
            while offset < out.num_rows() {
                let len = batch_size.min(out.num_rows() - offset);
                batches.push(out.slice(offset, len));
                offset += len;
            }
            baseline.record_output(out.num_rows());
            baseline.done();
            Ok::<_, DataFusionError>(batches)
        };
        let stream = futures::stream::once(run).flat_map(|r| {
            futures::stream::iter(match r {
                Ok(batches) => batches.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            })
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// The key word of a NULL tag, and of a dictionary key not yet looked up.
const NULL_ID: u64 = u64::MAX;
const UNKNOWN: u64 = u64::MAX - 1;

/// A tag key's values, by id.
struct TagValues {
    /// NULL of the dictionary's value type.
    null: ScalarValue,
    /// String values by text; any other type by value.
    strings: foldhash::HashMap<Box<str>, u64>,
    others: foldhash::HashMap<ScalarValue, u64>,
    values: Vec<ScalarValue>,
    /// The dictionary last seen and the ids of its keys (`UNKNOWN` until looked up): batches
    /// of one file often share it.
    dictionary: Option<(ArrayRef, Vec<u64>)>,
}

impl TagValues {
    /// The id of `key` (`NULL_KEY` for NULL) of the current dictionary, `values`.
    fn id(&mut self, values: &ArrayRef, key: u32) -> Result<u64> {
        if key == NULL_KEY {
            return Ok(NULL_ID);
        }
        let key = key as usize;
        let Some((_, cache)) = self.dictionary.as_mut() else {
            return Err(DataFusionError::Internal(
                "RunAggregateExec: no dictionary".into(),
            ));
        };
        if let Some(&id) = cache.get(key)
            && id != UNKNOWN
        {
            return Ok(id);
        }
        let next = self.values.len() as u64;
        let id = if values.is_null(key) {
            NULL_ID
        } else if let Some(strings) = values.as_string_opt::<i32>() {
            let text = strings.value(key);
            match self.strings.get(text) {
                Some(&id) => id,
                None => {
                    self.strings.insert(text.into(), next);
                    self.values.push(ScalarValue::Utf8(Some(text.to_owned())));
                    next
                }
            }
        } else {
            let value = ScalarValue::try_from_array(values, key)?;
            match self.others.get(&value) {
                Some(&id) => id,
                None => {
                    self.others.insert(value.clone(), next);
                    self.values.push(value);
                    next
                }
            }
        };
        if let Some(slot) = cache.get_mut(key) {
            *slot = id;
        }
        Ok(id)
    }
}

/// One partition's groups and accumulators.
struct State {
    keys: Arc<[Key]>,
    /// Per key (`None` for bins).
    tags: Vec<Option<TagValues>>,
    width: usize,
    groups: foldhash::HashMap<Box<[u64]>, usize>,
    /// Each group's key words, `width` per group, in group order.
    group_keys: Vec<u64>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    final_output: bool,
    indices: Vec<usize>,
    reservation: MemoryReservation,
}

/// The dictionary key standing for NULL in [`Columns::Tag`].
const NULL_KEY: u32 = u32::MAX;

/// A key's column in one batch.
enum Columns<'a> {
    /// Dictionary keys (`NULL_KEY` for NULL) and values.
    Tag {
        keys: std::borrow::Cow<'a, [u32]>,
        values: &'a ArrayRef,
    },
    Bin {
        times: &'a [i64],
        nulls: Option<&'a datafusion::arrow::buffer::NullBuffer>,
        bin: Bin,
    },
}

/// The dictionary keys of `array` as `u32`, `NULL_KEY` for NULL; borrowed when they are
/// `u32` without NULLs (a scan's tags).
fn dictionary_keys(array: &ArrayRef) -> Result<(std::borrow::Cow<'_, [u32]>, &ArrayRef)> {
    let dict = array.as_any_dictionary_opt().ok_or_else(|| {
        DataFusionError::Internal(format!(
            "RunAggregateExec: a key column is {}, not a dictionary",
            array.data_type()
        ))
    })?;
    let values = dict.values();
    let nulls = dict.keys().logical_nulls();
    if nulls.is_none()
        && let Some(keys) = dict
            .keys()
            .as_primitive_opt::<arrow_array::types::UInt32Type>()
    {
        return Ok((std::borrow::Cow::Borrowed(keys.values().as_ref()), values));
    }
    let mut keys = if values.is_empty() {
        vec![NULL_KEY; array.len()]
    } else {
        dict.normalized_keys()
            .into_iter()
            .map(|k| u32::try_from(k).ok().filter(|k| *k != NULL_KEY))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "RunAggregateExec: a dictionary of {} values",
                    values.len()
                ))
            })?
    };
    if let Some(nulls) = nulls {
        for (k, valid) in keys.iter_mut().zip(nulls.iter()) {
            if !valid {
                *k = NULL_KEY;
            }
        }
    }
    Ok((std::borrow::Cow::Owned(keys), values))
}

/// The end of the run of rows from `from` (before `to`) whose times are in the closed range
/// `range` (`None`: whose times are NULL).
#[expect(
    clippy::indexing_slicing,
    reason = "rows below `to` are in `times` and `nulls` (the caller's batch)"
)]
fn bin_run_end(
    times: &[i64],
    nulls: Option<&datafusion::arrow::buffer::NullBuffer>,
    range: Option<TimeSpan>,
    from: usize,
    to: usize,
) -> usize {
    let mut end = from;
    match (range, nulls) {
        (Some(TimeSpan { min: lo, max: hi }), None) => {
            // Eight at a time first: a check the compiler vectorizes.
            let inside = |ts: &[i64]| ts.iter().fold(true, |a, t| a & (lo <= *t) & (*t <= hi));
            while end + 8 <= to && inside(&times[end..end + 8]) {
                end += 8;
            }
            while end < to && lo <= times[end] && times[end] <= hi {
                end += 1;
            }
        }
        (Some(TimeSpan { min: lo, max: hi }), Some(nulls)) => {
            while end < to && nulls.is_valid(end) && lo <= times[end] && times[end] <= hi {
                end += 1;
            }
        }
        (None, Some(nulls)) => {
            while end < to && nulls.is_null(end) {
                end += 1;
            }
        }
        (None, None) => {}
    }
    end
}

impl State {
    fn new(exec: &RunAggregateExec, reservation: MemoryReservation) -> Result<Self> {
        let input_schema = exec.input()?.schema();
        let mut tags = Vec::with_capacity(exec.keys.len());
        for key in exec.keys.iter() {
            tags.push(match key {
                Key::Tag { column } => match input_schema.field(*column).data_type() {
                    DataType::Dictionary(_, v) => Some(TagValues {
                        null: ScalarValue::try_from(v.as_ref())?,
                        strings: Default::default(),
                        others: Default::default(),
                        values: Vec::new(),
                        dictionary: None,
                    }),
                    _ => None,
                },
                Key::Bin { .. } => None,
            });
        }
        Ok(Self {
            keys: Arc::clone(&exec.keys),
            tags,
            width: exec.keys.iter().map(Key::width).sum(),
            groups: Default::default(),
            group_keys: Vec::new(),
            accumulators: exec
                .aggregates
                .iter()
                .map(|a| a.create_groups_accumulator())
                .collect::<Result<_>>()?,
            arguments: exec.aggregates.iter().map(|a| a.expressions()).collect(),
            filters: exec.filters.clone(),
            final_output: exec.final_output,
            indices: Vec::new(),
            reservation,
        })
    }

    #[expect(
        clippy::indexing_slicing,
        reason = "every column of a batch has `rows` values (so has `keys`), `change` has \
                  `rows` entries, `tags` and `ranges` one per key, `scratch` `width` words"
    )]
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let mut columns = Vec::with_capacity(self.keys.len());
        // Rows where a tag differs from the row before (the first row always starts a run).
        let mut change = vec![0u8; rows];
        change[0] = 1;
        for (k, key) in self.keys.iter().enumerate() {
            columns.push(match *key {
                Key::Tag { column } => {
                    let (keys, values) = dictionary_keys(batch.column(column))?;
                    for (c, w) in change[1..].iter_mut().zip(keys.windows(2)) {
                        *c |= u8::from(w[0] != w[1]);
                    }
                    if let Some(tag) = self.tags[k].as_mut()
                        && tag
                            .dictionary
                            .as_ref()
                            .is_none_or(|(d, _)| !Arc::ptr_eq(d, values))
                    {
                        tag.dictionary = Some((Arc::clone(values), vec![UNKNOWN; values.len()]));
                    }
                    Columns::Tag { keys, values }
                }
                Key::Bin { column, bin } => {
                    let array = batch.column(column);
                    let times = store_api::time::timestamp_values(array)
                        .map(|v| &v[..])
                        .ok_or_else(|| {
                            DataFusionError::Internal(format!(
                                "RunAggregateExec: column {column} is {}, not a timestamp",
                                array.data_type()
                            ))
                        })?;
                    Columns::Bin {
                        times,
                        nulls: array.nulls().filter(|n| n.null_count() > 0),
                        bin,
                    }
                }
            });
        }
        let mut ranges: Vec<Option<TimeSpan>> = vec![None; self.keys.len()];
        let mut scratch = vec![0u64; self.width];
        self.indices.clear();
        self.indices.reserve(rows);
        let mut row = 0;
        // The tags are the same from `row` up to `tags_end`; each bin's run may end sooner.
        let mut tags_end = 0;
        while row < rows {
            if row >= tags_end {
                tags_end = memchr::memchr(1, &change[row + 1..]).map_or(rows, |p| row + 1 + p);
            }
            let mut end = tags_end;
            let mut word = 0;
            for (k, c) in columns.iter().enumerate() {
                match c {
                    Columns::Tag { keys, values } => {
                        let tag = self.tags[k].as_mut().ok_or_else(|| {
                            DataFusionError::Internal("RunAggregateExec: no tag state".into())
                        })?;
                        scratch[word] = tag.id(values, keys[row])?;
                        word += 1;
                    }
                    Columns::Bin { times, nulls, bin } => {
                        if nulls.is_some_and(|n| n.is_null(row)) {
                            ranges[k] = None;
                            scratch[word] = 0;
                            scratch[word + 1] = 0;
                        } else {
                            let (b, span) = bin.span(times[row]);
                            ranges[k] = Some(span);
                            scratch[word] = u64::from(b.is_some());
                            scratch[word + 1] = b.unwrap_or(0) as u64;
                        }
                        end = end.min(bin_run_end(times, *nulls, ranges[k], row + 1, end));
                        word += 2;
                    }
                }
            }
            let group = match self.groups.get(scratch.as_slice()) {
                Some(&g) => g,
                None => {
                    let g = self.groups.len();
                    self.groups.insert(scratch.clone().into_boxed_slice(), g);
                    self.group_keys.extend_from_slice(&scratch);
                    g
                }
            };
            self.indices.extend(std::iter::repeat_n(group, end - row));
            row = end;
        }
        let total = self.groups.len();
        for ((acc, arguments), filter) in self
            .accumulators
            .iter_mut()
            .zip(&self.arguments)
            .zip(&self.filters)
        {
            let values = arguments
                .iter()
                .map(|e| e.evaluate(batch)?.into_array(rows))
                .collect::<Result<Vec<_>>>()?;
            let filter = match filter {
                Some(f) => Some(f.evaluate(batch)?.into_array(rows)?),
                None => None,
            };
            let filter = match &filter {
                Some(f) => Some(f.as_boolean_opt().ok_or_else(|| {
                    DataFusionError::Internal(format!(
                        "RunAggregateExec: an aggregate filter is {}, not boolean",
                        f.data_type()
                    ))
                })?),
                None => None,
            };
            acc.update_batch(&values, &self.indices, filter, total)?;
        }
        let size = self.accumulators.iter().map(|a| a.size()).sum::<usize>()
            + self.groups.capacity() * (self.width * 8 + 24)
            + self.group_keys.capacity() * 8
            + self.indices.capacity() * 8;
        self.reservation.try_resize(size)
    }

    /// The groups and their aggregates, in the order the groups were first seen.
    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch> {
        let groups = self.groups.len();
        if groups == 0 {
            return Ok(RecordBatch::new_empty(Arc::clone(schema)));
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        let mut word = 0;
        for (k, key) in self.keys.iter().enumerate() {
            let data_type = schema.field(k).data_type();
            let words = self.group_keys.iter().skip(word).step_by(self.width);
            match key {
                Key::Tag { .. } => {
                    let Some(Some(tag)) = self.tags.get(k) else {
                        return Err(DataFusionError::Internal(
                            "RunAggregateExec: no tag state".into(),
                        ));
                    };
                    let values = words
                        .map(|&id| {
                            usize::try_from(id)
                                .ok()
                                .and_then(|i| tag.values.get(i))
                                .unwrap_or(&tag.null)
                                .clone()
                        })
                        .collect::<Vec<_>>();
                    let array = ScalarValue::iter_to_array(values)?;
                    columns.push(cast(&array, data_type)?);
                    word += 1;
                }
                Key::Bin { .. } => {
                    let valid = words.clone();
                    let bins = self.group_keys.iter().skip(word + 1).step_by(self.width);
                    let array: Int64Array = valid
                        .zip(bins)
                        .map(|(&v, &b)| (v != 0).then_some(b as i64))
                        .collect();
                    let data = array
                        .into_data()
                        .into_builder()
                        .data_type(data_type.clone())
                        .build()?;
                    columns.push(make_array(data));
                    word += 2;
                }
            }
        }
        for acc in &mut self.accumulators {
            if self.final_output {
                columns.push(acc.evaluate(EmitTo::All)?);
            } else {
                columns.extend(acc.state(EmitTo::All)?);
            }
        }
        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use arrow_array::types::UInt32Type;
    use arrow_array::{DictionaryArray, Float64Array, Int64Array, TimestampMillisecondArray};
    use arrow_schema::{Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{SessionConfig, SessionContext};
    use proptest::prelude::*;

    use super::*;

    /// One input row: host, region, time (ms), usage, count.
    type Row = (
        Option<u8>,
        Option<u8>,
        Option<i64>,
        Option<f64>,
        Option<i64>,
    );

    fn schema() -> SchemaRef {
        let tag = DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8));
        Arc::new(Schema::new(vec![
            Field::new("host", tag.clone(), true),
            Field::new("region", tag, true),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                true,
            ),
            Field::new("usage", DataType::Float64, true),
            Field::new("n", DataType::Int64, true),
        ]))
    }

    fn batch(rows: &[Row]) -> RecordBatch {
        let tag = |f: fn(&Row) -> Option<u8>| -> ArrayRef {
            let names: Vec<Option<String>> =
                rows.iter().map(|r| f(r).map(|v| format!("h{v}"))).collect();
            Arc::new(
                names
                    .iter()
                    .map(Option::as_deref)
                    .collect::<DictionaryArray<UInt32Type>>(),
            )
        };
        RecordBatch::try_new(
            schema(),
            vec![
                tag(|r| r.0),
                tag(|r| r.1),
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
                Arc::new(rows.iter().map(|r| r.3).collect::<Float64Array>()),
                Arc::new(rows.iter().map(|r| r.4).collect::<Int64Array>()),
            ],
        )
        .unwrap()
    }

    /// A session over `partitions` (each a list of batches), with or without the rule.
    fn session(partitions: &[Vec<Vec<Row>>], rule: bool) -> SessionContext {
        let config = SessionConfig::new()
            .with_target_partitions(partitions.len().max(1))
            .with_batch_size(7);
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        if rule {
            state = state.with_physical_optimizer_rule(Arc::new(RunAggregate));
        }
        let ctx = SessionContext::new_with_state(state.build());
        let data = partitions
            .iter()
            .map(|p| p.iter().map(|b| batch(b)).collect())
            .collect();
        let table = MemTable::try_new(schema(), data).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        ctx
    }

    async fn run(ctx: &SessionContext, sql: &str) -> (Vec<RecordBatch>, String) {
        let df = ctx.sql(sql).await.unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        let batches = df.collect().await.unwrap();
        (batches, shown)
    }

    /// The queries each case runs: every key form, several aggregates, a FILTER clause.
    const QUERIES: &[&str] = &[
        "SELECT host, avg(usage), count(*), sum(n) FROM t GROUP BY host ORDER BY host",
        "SELECT date_bin(INTERVAL '10 milliseconds', time) AS b, host, avg(usage), max(usage), \
         min(n) FROM t GROUP BY b, host ORDER BY b, host",
        "SELECT host, region, date_bin(INTERVAL '7 milliseconds', time, \
         TIMESTAMP '1970-01-01T00:00:00.003') AS b, sum(usage), count(usage) FROM t \
         GROUP BY host, region, b ORDER BY host, region, b",
        "SELECT date_bin(INTERVAL '1 day', time) AS b, max(usage), \
         sum(usage) FILTER (WHERE n > 0) FROM t GROUP BY b ORDER BY b",
        "SELECT date_bin(INTERVAL '1500 microseconds', time) AS b, count(*) FROM t \
         GROUP BY b ORDER BY b",
    ];

    /// Results with the rule equal DataFusion's own, to the bit; the rule's plans use it.
    async fn check(partitions: Vec<Vec<Vec<Row>>>) {
        let with = session(&partitions, true);
        let without = session(&partitions, false);
        for sql in QUERIES {
            let (got, plan) = run(&with, sql).await;
            let (want, plain) = run(&without, sql).await;
            assert!(plan.contains("RunAggregateExec"), "{sql}\n{plan}");
            assert!(!plain.contains("RunAggregateExec"), "{sql}\n{plain}");
            let got = datafusion::arrow::util::pretty::pretty_format_batches(&got)
                .unwrap()
                .to_string();
            let want = datafusion::arrow::util::pretty::pretty_format_batches(&want)
                .unwrap()
                .to_string();
            assert_eq!(got, want, "{sql}\n{plan}");
        }
    }

    /// Rows sorted by series then time, as a region scan returns them, in runs.
    fn sorted(hosts: u8, points: i64, step: i64) -> Vec<Row> {
        let mut rows = Vec::new();
        for h in 0..hosts {
            for i in 0..points {
                let v = f64::from(h) * 0.1 + (i as f64) * 0.37;
                rows.push((Some(h), Some(h % 2), Some(i * step), Some(v), Some(i - 3)));
            }
        }
        rows
    }

    #[tokio::test]
    async fn sorted_runs_one_partition_and_two() {
        let rows = sorted(5, 40, 3);
        let batches: Vec<Vec<Row>> = rows.chunks(13).map(<[Row]>::to_vec).collect();
        check(vec![batches.clone()]).await;
        let (a, b) = batches.split_at(batches.len() / 2);
        check(vec![a.to_vec(), b.to_vec()]).await;
    }

    #[tokio::test]
    async fn nulls_and_times_before_the_epoch() {
        let mut rows = sorted(3, 20, -5);
        rows[3].0 = None;
        rows[4].0 = None;
        rows[7].3 = None;
        rows[8].4 = None;
        rows[30].1 = None;
        rows.push((None, None, Some(i64::MIN / 2), None, None));
        rows[10].2 = None;
        rows[11].2 = None;
        rows[40].2 = None;
        rows.push((Some(1), None, Some(i64::MAX / 2), Some(1.5), Some(2)));
        check(vec![rows.chunks(6).map(<[Row]>::to_vec).collect()]).await;
    }

    #[test]
    fn plans_it_leaves_alone() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let ctx = session(&[vec![sorted(2, 4, 1)]], true);
            for sql in [
                // not a dictionary column or a bin
                "SELECT n, count(*) FROM t GROUP BY n",
                // DISTINCT aggregate
                "SELECT host, count(DISTINCT n), count(DISTINCT usage) FROM t GROUP BY host",
                // ordered aggregate
                "SELECT host, first_value(usage ORDER BY time) FROM t GROUP BY host",
                // month stride
                "SELECT date_bin(INTERVAL '1 month', time) AS b, count(*) FROM t GROUP BY b",
                // no GROUP BY
                "SELECT count(*), avg(usage) FROM t",
            ] {
                let (_, plan) = run(&ctx, sql).await;
                assert!(!plan.contains("RunAggregateExec"), "{sql}\n{plan}");
            }
        });
    }

    fn row() -> impl Strategy<Value = Row> {
        (
            proptest::option::weighted(0.9, 0u8..4),
            proptest::option::weighted(0.9, 0u8..2),
            proptest::option::weighted(
                0.95,
                prop_oneof![
                    8 => -200i64..200,
                    1 => any::<i64>(),
                ],
            ),
            proptest::option::weighted(0.9, -1e3f64..1e3),
            proptest::option::weighted(0.9, -100i64..100),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Any rows (sorted into runs or not, any times) in any batches and partitions.
        #[test]
        fn any_rows(
            mut rows in proptest::collection::vec(row(), 1..120),
            sort in any::<bool>(),
            chunk in 1usize..40,
            two in any::<bool>(),
        ) {
            if sort {
                rows.sort_by_key(|r| (r.0, r.1, r.2));
            }
            let batches: Vec<Vec<Row>> = rows.chunks(chunk).map(<[Row]>::to_vec).collect();
            let partitions = if two && batches.len() > 1 {
                let (a, b) = batches.split_at(batches.len() / 2);
                vec![a.to_vec(), b.to_vec()]
            } else {
                vec![batches]
            };
            tokio::runtime::Runtime::new().unwrap().block_on(check(partitions));
        }

        /// The bin of a time is DataFusion's `date_bin`, and every time in its span has it.
        #[test]
        fn bins_match_date_bin(
            t in prop_oneof![4 => -10_000i64..10_000, 1 => any::<i64>()],
            stride in prop_oneof![4 => 1i64..5_000_000_000, 1 => 1i64..i64::MAX],
            origin in prop_oneof![4 => -3_000_000_000i64..3_000_000_000, 1 => any::<i64>()],
            scale in prop_oneof![Just(1i64), Just(1_000), Just(1_000_000), Just(1_000_000_000)],
        ) {
            let bin = Bin { scale, stride, origin };
            let (b, TimeSpan { min: lo, max: hi }) = bin.span(t);
            prop_assert_eq!(b, date_bin(t, stride, origin, scale));
            prop_assert!(lo <= t && t <= hi);
            for x in [lo, hi, lo + (hi - lo) / 2] {
                prop_assert_eq!(bin.exact(x), b, "{} in [{}, {}]", x, lo, hi);
            }
            // Bins of whole units, away from the ends of the range, are found whole: a run
            // needs one lookup per bin, not per row.
            let small = |v: i64| v.unsigned_abs() < 1 << 40;
            if stride % scale == 0 && origin % scale == 0 && small(t) && small(stride) {
                prop_assert_eq!(hi - lo + 1, stride / scale);
            }
        }
    }

    /// DataFusion's `date_bin` on one timestamp of `scale` nanoseconds per unit.
    fn date_bin(t: i64, stride: i64, origin: i64, scale: i64) -> Option<i64> {
        use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs};
        let unit = match scale {
            1 => TimeUnit::Nanosecond,
            1_000 => TimeUnit::Microsecond,
            1_000_000 => TimeUnit::Millisecond,
            _ => TimeUnit::Second,
        };
        let array: ArrayRef = make_array(
            Int64Array::from(vec![t])
                .into_data()
                .into_builder()
                .data_type(DataType::Timestamp(unit, None))
                .build()
                .unwrap(),
        );
        let args = vec![
            ColumnarValue::Scalar(ScalarValue::new_interval_mdn(0, 0, stride)),
            ColumnarValue::Array(array.clone()),
            ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(Some(origin), None)),
        ];
        let fun = datafusion::functions::datetime::date_bin();
        let out = fun
            .invoke_with_args(ScalarFunctionArgs {
                args,
                arg_fields: vec![
                    Arc::new(Field::new(
                        "s",
                        DataType::Interval(arrow_schema::IntervalUnit::MonthDayNano),
                        false,
                    )),
                    Arc::new(Field::new("t", array.data_type().clone(), true)),
                    Arc::new(Field::new(
                        "o",
                        DataType::Timestamp(TimeUnit::Nanosecond, None),
                        false,
                    )),
                ],
                number_rows: 1,
                return_field: Arc::new(Field::new("b", array.data_type().clone(), true)),
                config_options: Arc::new(ConfigOptions::default()),
            })
            .unwrap()
            .into_array(1)
            .unwrap();
        let out = cast(&out, &DataType::Int64).unwrap();
        let out = out.as_primitive::<arrow_array::types::Int64Type>();
        out.is_valid(0).then(|| out.value(0))
    }
}
