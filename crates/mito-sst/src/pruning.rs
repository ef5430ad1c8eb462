//! Row group and page pruning with DataFusion's `PruningPredicate` over Parquet statistics.
//!
//! Filters are given against the region's current schema (plain types: tags as strings). Each
//! conjunct becomes one predicate. A row group is read only if every predicate may match it;
//! inside a row group, predicates over a single column also prune that column's pages through
//! the page index, and the surviving row ranges are intersected. Columns the file lacks, and
//! decimal-encoded floats, have no usable statistics and never prune. The read's time range
//! prunes row groups and pages by the time index's statistics directly (no predicate).
//!
//! The predicates are built once per scan and shared by its files' reads ([`Pruner`]); the
//! statistics arrays they are evaluated on are taken from a file's footer once and kept with
//! its opened reader ([`StatsMemo`]), so a read's pruning is only the evaluation.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int64Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_array::{Array, ArrayRef, BooleanArray, UInt64Array};
use arrow_schema::{DataType, Schema, SchemaRef, TimeUnit};
use datafusion_common::pruning::PruningStatistics;
use datafusion_common::{Column, DFSchema, ScalarValue};
use datafusion_expr::Expr;
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::utils::split_conjunction;
use datafusion_pruning::{PruningPredicate, PruningPredicateBuilder};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use parquet::file::metadata::ParquetMetaData;
use store_api::ColumnId;
use store_api::metadata::RegionMetadata;
use store_api::scan::TimeRange;

use crate::format::SstInfo;

/// The pruning predicates of a read's filters. Built once per scan (`Pruner::new`, then
/// [`crate::SstReadRequest::pruner`]) and shared by the reads of every file in it, since they
/// depend only on the filters and the region's current schema; a read without one builds its
/// own.
pub struct Pruner {
    predicates: Vec<Predicate>,
}

/// One conjunct's pruning predicate, and its plain form when it has one.
struct Predicate {
    general: PruningPredicate,
    /// The conjunct as a comparison of a column with strings, checked on string statistics
    /// directly (DataFusion's evaluation over a statistics batch costs far more than the
    /// comparisons); `general` prunes for statistics of other types.
    plain: Option<Plain>,
}

/// A conjunct's plain form ([`mito_read::PlainCheck`], one that answers for ranges) and the
/// name of the column it compares.
struct Plain {
    column: String,
    check: mito_read::PlainCheck,
}

impl Plain {
    /// The plain form of `physical` over `schema`, if it has one that ranges can rule out.
    fn of(
        physical: &Arc<dyn datafusion_physical_expr::PhysicalExpr>,
        schema: &Schema,
    ) -> Option<Self> {
        let check = mito_read::PlainCheck::of(physical).filter(|c| c.checks_ranges())?;
        Some(Self {
            column: schema.fields().get(check.column())?.name().clone(),
            check,
        })
    }

    /// Whether container `i`, whose values lie in `mins[i]..=maxes[i]`, may hold a match;
    /// `None` when the statistics are not strings.
    fn may_match(&self, mins: &ArrayRef, maxes: &ArrayRef, i: usize) -> Option<bool> {
        let (Some(min), Some(max)) = (str_at(mins, i)?, str_at(maxes, i)?) else {
            // Unknown bounds (no statistics, or only nulls): keep.
            return Some(true);
        };
        self.check.may_match_range(min, max)
    }

    /// The mask of `may_match` over all containers, or `None` if the statistics are not
    /// strings.
    fn mask(&self, mins: &ArrayRef, maxes: &ArrayRef) -> Option<Vec<bool>> {
        if mins.len() != maxes.len() {
            return None;
        }
        (0..mins.len())
            .map(|i| self.may_match(mins, maxes, i))
            .collect()
    }
}

/// The string at `i`: `Some(None)` if it is null, `None` if `a` holds no strings.
fn str_at(a: &ArrayRef, i: usize) -> Option<Option<&str>> {
    if i >= a.len() {
        return None;
    }
    if a.is_null(i) {
        return Some(None);
    }
    if let Some(s) = a.as_string_opt::<i32>() {
        Some(Some(s.value(i)))
    } else if let Some(s) = a.as_string_opt::<i64>() {
        Some(Some(s.value(i)))
    } else {
        a.as_string_view_opt().map(|s| Some(s.value(i)))
    }
}

impl std::fmt::Debug for Pruner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pruner")
            .field("predicates", &self.predicates.len())
            .finish()
    }
}

impl Pruner {
    /// Predicates for `filters` over the region's current schema. A filter that cannot be
    /// turned into a predicate (unknown column, unsupported expression) prunes nothing.
    pub fn new(schema: &SchemaRef, filters: &[Expr]) -> Self {
        let mut predicates = Vec::new();
        let Ok(df_schema) = DFSchema::try_from(schema.as_ref().clone()) else {
            return Self { predicates };
        };
        let props = ExecutionProps::new();
        for filter in filters {
            for conjunct in split_conjunction(filter) {
                let physical = match datafusion_physical_expr::create_physical_expr(
                    conjunct,
                    &df_schema,
                    &props,
                    &PhysicalPlanningContext::default(),
                ) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::debug!(filter = %conjunct, error = %e, "filter not usable for pruning");
                        continue;
                    }
                };
                let plain = Plain::of(&physical, schema);
                match PruningPredicateBuilder::new()
                    .with_file_schema(schema.clone())
                    .try_build(physical)
                {
                    Ok(p) if !p.always_true() => predicates.push(Predicate { general: p, plain }),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(filter = %conjunct, error = %e, "filter not usable for pruning");
                    }
                }
            }
        }
        Self { predicates }
    }

    /// Whether nothing can be pruned.
    pub(crate) fn is_empty(&self) -> bool {
        self.predicates.is_empty()
    }

    /// The row groups (of `candidates`) every predicate may match.
    pub(crate) fn row_groups(&self, file: &FileStats<'_>, candidates: Vec<usize>) -> Vec<usize> {
        if self.predicates.is_empty() || candidates.is_empty() {
            return candidates;
        }
        // Every predicate is evaluated over all the file's row groups (statistics kept per
        // file), and the candidates taken from the masks.
        let all = AllRowGroups { file };
        let mut keep = vec![true; file.parquet.num_row_groups()];
        for p in &self.predicates {
            let plain = p.plain.as_ref().and_then(|plain| {
                let stats = file.row_group_stats(&plain.column)?;
                plain.mask(&stats.mins, &stats.maxes)
            });
            match plain.map_or_else(|| p.general.prune(&all), Ok) {
                Ok(mask) => keep.iter_mut().zip(mask).for_each(|(k, m)| *k &= m),
                Err(e) => tracing::debug!(error = %e, "row group pruning failed; keeping all"),
            }
        }
        candidates
            .into_iter()
            .filter(|rg| keep.get(*rg).copied().unwrap_or(true))
            .collect()
    }

    /// Rows of each row group (in `row_groups`, in order) that page statistics (of the
    /// predicates over one column, and of the time index for `time`) do not rule out, or
    /// `None` when no page is pruned.
    pub(crate) fn pages(
        &self,
        file: &FileStats<'_>,
        row_groups: &[usize],
        time: Option<&TimeRange>,
    ) -> Option<RowSelection> {
        if file.parquet.column_index().is_none() || file.parquet.offset_index().is_none() {
            return None;
        }
        let ts_name = file.current.time_index_column().name.as_str();
        let mut selectors: Vec<RowSelector> = Vec::new();
        let mut pruned_any = false;
        for rg in row_groups {
            let rg_rows = usize::try_from(file.parquet.row_group(*rg).num_rows()).unwrap_or(0);
            let mut selection: Option<RowSelection> = None;
            let mut narrow = |page_sel: RowSelection| {
                selection = Some(match selection.take() {
                    None => page_sel,
                    Some(s) => s.intersection(&page_sel),
                });
            };
            for p in &self.predicates {
                let Some(column) = p.general.required_columns().single_column() else {
                    continue;
                };
                let Some(stats) = file.page_stats(column.name(), *rg) else {
                    continue;
                };
                let plain = p
                    .plain
                    .as_ref()
                    .and_then(|plain| plain.mask(&stats.mins, &stats.maxes));
                let Ok(mask) = plain.map_or_else(
                    || {
                        p.general.prune(&PageStats {
                            column: column.name(),
                            stats: &stats,
                        })
                    },
                    Ok,
                ) else {
                    continue;
                };
                narrow(page_selection(&stats.rows, |i| {
                    mask.get(i).copied().unwrap_or(true)
                }));
            }
            if let Some(range) = time
                && let Some(stats) = file.page_stats(ts_name, *rg)
            {
                narrow(page_selection(&stats.rows, |i| {
                    time_may_overlap(range, &stats.mins, &stats.maxes, i)
                }));
            }
            match selection {
                Some(s) if s.row_count() < rg_rows => {
                    pruned_any = true;
                    selectors.extend(Vec::<RowSelector>::from(s));
                }
                _ => selectors.push(RowSelector::select(rg_rows)),
            }
        }
        pruned_any.then(|| RowSelection::from(selectors))
    }
}

/// The selection of a row group's pages by `keep(page)`, from the pages' row counts.
fn page_selection(rows: &UInt64Array, keep: impl Fn(usize) -> bool) -> RowSelection {
    RowSelection::from(
        (0..rows.len())
            .map(|i| {
                let n = if rows.is_null(i) {
                    0
                } else {
                    usize::try_from(rows.value(i)).unwrap_or(0)
                };
                if keep(i) {
                    RowSelector::select(n)
                } else {
                    RowSelector::skip(n)
                }
            })
            .collect::<Vec<_>>(),
    )
}

/// The value at `i` of a timestamp or `Int64` array, `None` if it is null or another type.
fn i64_at(a: &ArrayRef, i: usize) -> Option<i64> {
    if i >= a.len() || a.is_null(i) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => {
            a.as_primitive::<TimestampSecondType>().value(i)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            a.as_primitive::<TimestampMillisecondType>().value(i)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            a.as_primitive::<TimestampMicrosecondType>().value(i)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            a.as_primitive::<TimestampNanosecondType>().value(i)
        }
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i),
        _ => return None,
    })
}

/// Whether container `i`, whose time index lies in `mins[i]..=maxes[i]`, may hold a row in
/// `range` (true when a bound is unknown).
fn time_may_overlap(range: &TimeRange, mins: &ArrayRef, maxes: &ArrayRef, i: usize) -> bool {
    let below = matches!((range.start, i64_at(maxes, i)), (Some(s), Some(max)) if max < s);
    let above = matches!((range.end, i64_at(mins, i)), (Some(e), Some(min)) if min >= e);
    !(below || above)
}

/// Statistics of one column over a set of containers (the row groups of a file, or the pages
/// of one row group), as arrays in the current schema's type.
struct ColumnStats {
    mins: ArrayRef,
    maxes: ArrayRef,
    nulls: ArrayRef,
    /// Rows per container.
    rows: UInt64Array,
}

/// The statistics a file's reads have pruned with, taken from its footer once and kept with
/// the opened reader: per column over all row groups, and per column and row group over its
/// pages. Only columns filters name are ever taken, so it holds at most a few arrays per
/// column the footer already describes. `None` marks a column without usable statistics.
#[derive(Default)]
pub(crate) struct StatsMemo {
    row_groups: Mutex<HashMap<ColumnId, Known>>,
    /// By column and row group.
    pages: Mutex<HashMap<(ColumnId, usize), Known>>,
}

/// A column's statistics, or `None` when it has no usable ones.
type Known = Option<Arc<ColumnStats>>;

/// What pruning knows about one file: its Parquet metadata and how the current schema's
/// columns map onto its columns.
pub(crate) struct FileStats<'a> {
    pub(crate) parquet: &'a ParquetMetaData,
    /// The Arrow schema stored in the file.
    pub(crate) file_schema: &'a Schema,
    pub(crate) info: &'a SstInfo,
    pub(crate) current: &'a RegionMetadata,
    pub(crate) memo: &'a StatsMemo,
}

impl FileStats<'_> {
    /// A statistics converter for the current column `id`, if the file holds it with usable
    /// statistics.
    fn converter(&self, id: ColumnId) -> Option<StatisticsConverter<'_>> {
        if self.info.float_encoding(id).is_some() {
            return None;
        }
        let file_column = self.info.region_metadata.column_by_id(id)?;
        StatisticsConverter::try_new(
            &file_column.name,
            self.file_schema,
            self.parquet.file_metadata().schema_descr(),
        )
        .ok()
    }

    /// The row group statistics of the current column `name`, over all row groups.
    fn row_group_stats(&self, name: &str) -> Option<Arc<ColumnStats>> {
        let id = self.current.column_by_name(name)?.column_id;
        let mut memo = self.memo.row_groups.lock().ok()?;
        memo.entry(id)
            .or_insert_with(|| {
                let c = self.converter(id)?;
                let metas = self.parquet.row_groups();
                let rows: UInt64Array = metas
                    .iter()
                    .map(|m| u64::try_from(m.num_rows()).ok())
                    .collect();
                Some(Arc::new(ColumnStats {
                    mins: c.row_group_mins(metas).ok()?,
                    maxes: c.row_group_maxes(metas).ok()?,
                    nulls: Arc::new(c.row_group_null_counts(metas).ok()?),
                    rows,
                }))
            })
            .clone()
    }

    /// The page statistics of the current column `name` in row group `rg`.
    fn page_stats(&self, name: &str, rg: usize) -> Option<Arc<ColumnStats>> {
        let id = self.current.column_by_name(name)?.column_id;
        let mut memo = self.memo.pages.lock().ok()?;
        memo.entry((id, rg))
            .or_insert_with(|| {
                let c = self.converter(id)?;
                let column_index = self.parquet.column_index()?;
                let offset_index = self.parquet.offset_index()?;
                let rg_iter = || std::iter::once(&rg);
                let rows = c
                    .data_page_row_counts(offset_index, self.parquet.row_groups(), rg_iter())
                    .ok()??;
                Some(Arc::new(ColumnStats {
                    mins: c
                        .data_page_mins(column_index, offset_index, rg_iter())
                        .ok()?,
                    maxes: c
                        .data_page_maxes(column_index, offset_index, rg_iter())
                        .ok()?,
                    nulls: Arc::new(
                        c.data_page_null_counts(column_index, offset_index, rg_iter())
                            .ok()?,
                    ),
                    rows,
                }))
            })
            .clone()
    }

    /// `candidates` without the row groups whose time index statistics rule out `range`.
    pub(crate) fn time_row_groups(&self, range: &TimeRange, candidates: Vec<usize>) -> Vec<usize> {
        let Some(stats) = self.row_group_stats(&self.current.time_index_column().name) else {
            return candidates;
        };
        candidates
            .into_iter()
            .filter(|rg| time_may_overlap(range, &stats.mins, &stats.maxes, *rg))
            .collect()
    }
}

/// Every row group of a file, as `PruningStatistics`.
struct AllRowGroups<'a, 'b> {
    file: &'a FileStats<'b>,
}

impl PruningStatistics for AllRowGroups<'_, '_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        Some(self.file.row_group_stats(&column.name)?.mins.clone())
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        Some(self.file.row_group_stats(&column.name)?.maxes.clone())
    }

    fn num_containers(&self) -> usize {
        self.file.parquet.num_row_groups()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        Some(self.file.row_group_stats(&column.name)?.nulls.clone())
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        let counts: UInt64Array = self
            .file
            .parquet
            .row_groups()
            .iter()
            .map(|m| u64::try_from(m.num_rows()).ok())
            .collect();
        Some(Arc::new(counts))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

/// The pages of one column in one row group, as `PruningStatistics`.
struct PageStats<'a> {
    column: &'a str,
    stats: &'a ColumnStats,
}

impl PruningStatistics for PageStats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        (column.name == self.column).then(|| self.stats.mins.clone())
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        (column.name == self.column).then(|| self.stats.maxes.clone())
    }

    fn num_containers(&self) -> usize {
        self.stats.rows.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        (column.name == self.column).then(|| self.stats.nulls.clone())
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(self.stats.rows.clone()))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::StringArray;
    use arrow_schema::Field;
    use datafusion_expr::{col, lit};
    use proptest::prelude::*;

    use super::*;

    fn word() -> impl Strategy<Value = String> {
        "[a-d]{0,3}"
    }

    proptest! {
        /// The plain check of a string comparison prunes exactly what DataFusion's predicate
        /// prunes, over the same statistics (bounds null where unknown).
        #[test]
        fn plain_checks_prune_as_datafusion_does(
            bounds in prop::collection::vec(prop::option::of((word(), word())), 1..12),
            values in prop::collection::vec(word(), 1..4),
            form in 0usize..6,
            flip in any::<bool>(),
            dictionary in any::<bool>(),
        ) {
            let (mins, maxes): (Vec<Option<String>>, Vec<Option<String>>) = bounds
                .iter()
                .map(|b| match b {
                    Some((a, b)) if a <= b => (Some(a.clone()), Some(b.clone())),
                    Some((a, b)) => (Some(b.clone()), Some(a.clone())),
                    None => (None, None),
                })
                .unzip();
            let v = || {
                if dictionary {
                    lit(ScalarValue::Dictionary(
                        Box::new(DataType::UInt32),
                        Box::new(ScalarValue::Utf8(Some(values[0].clone()))),
                    ))
                } else {
                    lit(values[0].clone())
                }
            };
            let (c, l) = if flip { (v(), col("tag")) } else { (col("tag"), v()) };
            let filter = match form {
                0 => c.eq(l),
                1 => c.lt(l),
                2 => c.lt_eq(l),
                3 => c.gt(l),
                4 => c.gt_eq(l),
                _ => col("tag").in_list(values.iter().map(|v| lit(v.clone())).collect(), false),
            };
            let schema = Arc::new(Schema::new(vec![Field::new("tag", DataType::Utf8, true)]));
            let pruner = Pruner::new(&schema, std::slice::from_ref(&filter));
            let p = &pruner.predicates[0];
            let plain = p.plain.as_ref().expect("a plain form");
            let n = mins.len();
            let stats = ColumnStats {
                mins: Arc::new(StringArray::from(mins)),
                maxes: Arc::new(StringArray::from(maxes)),
                nulls: Arc::new(UInt64Array::from(vec![0; n])),
                rows: UInt64Array::from(vec![10; n]),
            };
            let general = p
                .general
                .prune(&PageStats { column: "tag", stats: &stats })
                .unwrap();
            prop_assert_eq!(plain.mask(&stats.mins, &stats.maxes).unwrap(), general, "{}", filter);
        }
    }

    #[test]
    fn other_forms_have_no_plain_check() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("tag", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let filters = [
            col("tag").not_eq(lit("a")),
            col("tag").in_list(vec![lit("a")], true),
            col("n").eq(lit(3i64)),
            col("tag").eq(lit("a")).or(col("tag").eq(lit("b"))),
        ];
        let pruner = Pruner::new(&schema, &filters);
        assert_eq!(pruner.predicates.len(), 4);
        assert!(pruner.predicates.iter().all(|p| p.plain.is_none()));
    }
}
