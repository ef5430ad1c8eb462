//! Row group and page pruning with DataFusion's `PruningPredicate` over Parquet statistics.
//!
//! Filters are given against the region's current schema (plain types: tags as strings). Each
//! conjunct becomes one predicate. A row group is read only if every predicate may match it;
//! inside a row group, predicates over a single column also prune that column's pages through
//! the page index, and the surviving row ranges are intersected. Columns the file lacks, and
//! decimal-encoded floats, have no usable statistics and never prune.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, UInt64Array};
use arrow_schema::{DataType, Schema, SchemaRef, TimeUnit};
use datafusion_common::pruning::PruningStatistics;
use datafusion_common::{Column, DFSchema, ScalarValue};
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::utils::split_conjunction;
use datafusion_expr::{Expr, col, lit};
use datafusion_pruning::{PruningPredicate, PruningPredicateBuilder};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use parquet::file::metadata::ParquetMetaData;
use store_api::metadata::RegionMetadata;
use store_api::scan::TimeRange;

use crate::format::SstInfo;

/// The predicates of one read.
pub(crate) struct Pruner {
    predicates: Vec<PruningPredicate>,
}

/// `ts >= start AND ts < end` over the time index, in its unit.
pub(crate) fn time_range_exprs(metadata: &RegionMetadata, range: &TimeRange) -> Vec<Expr> {
    let ts = metadata.time_index_column();
    let scalar = |v: i64| match &ts.data_type {
        DataType::Timestamp(TimeUnit::Second, tz) => {
            ScalarValue::TimestampSecond(Some(v), tz.clone())
        }
        DataType::Timestamp(TimeUnit::Millisecond, tz) => {
            ScalarValue::TimestampMillisecond(Some(v), tz.clone())
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            ScalarValue::TimestampMicrosecond(Some(v), tz.clone())
        }
        _ => ScalarValue::TimestampNanosecond(Some(v), None),
    };
    let mut out = Vec::new();
    if let Some(start) = range.start {
        out.push(col(ts.name.as_str()).gt_eq(lit(scalar(start))));
    }
    if let Some(end) = range.end {
        out.push(col(ts.name.as_str()).lt(lit(scalar(end))));
    }
    out
}

impl Pruner {
    /// Predicates for `filters` over the region's current schema. A filter that cannot be
    /// turned into a predicate (unknown column, unsupported expression) prunes nothing.
    pub(crate) fn new(schema: &SchemaRef, filters: &[Expr]) -> Self {
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
                match PruningPredicateBuilder::new()
                    .with_file_schema(schema.clone())
                    .try_build(physical)
                {
                    Ok(p) if !p.always_true() => predicates.push(p),
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
        let mut keep = candidates;
        for p in &self.predicates {
            let stats = RowGroupStats {
                file,
                row_groups: &keep,
            };
            match p.prune(&stats) {
                Ok(mask) => {
                    keep = keep
                        .iter()
                        .zip(mask)
                        .filter_map(|(rg, k)| k.then_some(*rg))
                        .collect();
                }
                Err(e) => tracing::debug!(error = %e, "row group pruning failed; keeping all"),
            }
        }
        keep
    }

    /// Rows of each row group (in `row_groups`, in order) that page statistics do not rule
    /// out, or `None` when no page is pruned.
    pub(crate) fn pages(&self, file: &FileStats<'_>, row_groups: &[usize]) -> Option<RowSelection> {
        let (Some(column_index), Some(offset_index)) =
            (file.parquet.column_index(), file.parquet.offset_index())
        else {
            return None;
        };
        let mut selectors: Vec<RowSelector> = Vec::new();
        let mut pruned_any = false;
        for rg in row_groups {
            let rg_rows = usize::try_from(file.parquet.row_group(*rg).num_rows()).unwrap_or(0);
            let mut selection: Option<RowSelection> = None;
            for p in &self.predicates {
                let Some(column) = p.required_columns().single_column() else {
                    continue;
                };
                let Some(converter) = file.converter(column.name()) else {
                    continue;
                };
                let Ok(Some(row_counts)) = converter.data_page_row_counts(
                    offset_index,
                    file.parquet.row_groups(),
                    std::iter::once(rg),
                ) else {
                    continue;
                };
                let (Ok(mins), Ok(maxes), Ok(nulls)) = (
                    converter.data_page_mins(column_index, offset_index, std::iter::once(rg)),
                    converter.data_page_maxes(column_index, offset_index, std::iter::once(rg)),
                    converter.data_page_null_counts(
                        column_index,
                        offset_index,
                        std::iter::once(rg),
                    ),
                ) else {
                    continue;
                };
                let stats = PageStats {
                    column: column.name(),
                    mins,
                    maxes,
                    nulls,
                    row_counts: row_counts.clone(),
                };
                let Ok(mask) = p.prune(&stats) else {
                    continue;
                };
                let page_sel = RowSelection::from(
                    mask.iter()
                        .zip(row_counts.iter())
                        .map(|(keep, rows)| {
                            let rows = usize::try_from(rows.unwrap_or(0)).unwrap_or(0);
                            if *keep {
                                RowSelector::select(rows)
                            } else {
                                RowSelector::skip(rows)
                            }
                        })
                        .collect::<Vec<_>>(),
                );
                selection = Some(match selection {
                    None => page_sel,
                    Some(s) => s.intersection(&page_sel),
                });
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

/// What pruning knows about one file: its Parquet metadata and how the current schema's
/// columns map onto its columns.
pub(crate) struct FileStats<'a> {
    pub(crate) parquet: &'a ParquetMetaData,
    /// The Arrow schema stored in the file.
    pub(crate) file_schema: &'a Schema,
    pub(crate) info: &'a SstInfo,
    pub(crate) current: &'a RegionMetadata,
}

impl FileStats<'_> {
    /// A statistics converter for the current column `name`, if the file holds it with
    /// usable statistics.
    fn converter(&self, name: &str) -> Option<StatisticsConverter<'_>> {
        let id = self.current.column_by_name(name)?.column_id;
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
}

struct RowGroupStats<'a, 'b> {
    file: &'a FileStats<'b>,
    row_groups: &'a [usize],
}

impl RowGroupStats<'_, '_> {
    fn metas(&self) -> impl Iterator<Item = &parquet::file::metadata::RowGroupMetaData> {
        self.row_groups
            .iter()
            .map(|rg| self.file.parquet.row_group(*rg))
    }
}

impl PruningStatistics for RowGroupStats<'_, '_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.file
            .converter(&column.name)?
            .row_group_mins(self.metas())
            .ok()
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.file
            .converter(&column.name)?
            .row_group_maxes(self.metas())
            .ok()
    }

    fn num_containers(&self) -> usize {
        self.row_groups.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let counts = self
            .file
            .converter(&column.name)?
            .row_group_null_counts(self.metas())
            .ok()?;
        Some(Arc::new(counts))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        let counts: UInt64Array = self
            .metas()
            .map(|m| u64::try_from(m.num_rows()).ok())
            .collect();
        Some(Arc::new(counts))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

struct PageStats<'a> {
    column: &'a str,
    mins: ArrayRef,
    maxes: ArrayRef,
    nulls: UInt64Array,
    row_counts: UInt64Array,
}

impl PruningStatistics for PageStats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        (column.name == self.column).then(|| self.mins.clone())
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        (column.name == self.column).then(|| self.maxes.clone())
    }

    fn num_containers(&self) -> usize {
        self.row_counts.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        (column.name == self.column).then(|| Arc::new(self.nulls.clone()) as ArrayRef)
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(self.row_counts.clone()))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}
