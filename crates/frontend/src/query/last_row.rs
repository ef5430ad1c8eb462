//! The rewrite of "the latest row of each group" into a last-row scan.

use std::any::Any;
use std::sync::Arc;

use datafusion::common::Column;
use datafusion::common::tree_node::Transformed;
use datafusion::datasource::{DefaultTableSource, provider_as_source};
use datafusion::error::Result as DfResult;
use datafusion::functions_aggregate::first_last::{FirstValue, LastValue};
use datafusion::functions_window::expr_fn::lag;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, ExprFunctionExt, Filter, LogicalPlan, LogicalPlanBuilder, Operator, TableScan,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use store_api::metadata::SemanticType;

use super::table::RegionTable;

/// Pushes "the latest row of each group" into the scan when groups are sets of series:
///
/// ```text
/// Aggregate: groupBy=[tags..], aggr=[first_value(c ORDER BY [tags.., time DESC]) ..]
///   (Filter: only conjuncts the scan applies exactly)
///     TableScan: RegionTable            -> the same, the scan keeping each series' last row
/// ```
///
/// (`DISTINCT ON (tags) .. ORDER BY tags, time DESC` becomes this aggregate.) The latest row
/// of a group of series is the latest of their last rows, so the aggregate's answer does not
/// change, and the engine reads a few rows per series instead of all of them. `last_value`
/// ordered by time ascending is the same selection.
#[derive(Debug)]
pub(super) struct LastRowPushdown;

/// Prefix of the columns holding the previous row's group values in the rewritten plan.
pub(super) const PREVIOUS: &str = "__mito_previous_";

impl LastRowPushdown {
    /// The region table under `input` if the aggregate may read only last rows.
    pub(super) fn table<'a>(
        input: &'a LogicalPlan,
        group: &[Expr],
        aggr: &[Expr],
    ) -> Option<(&'a TableScan, &'a RegionTable)> {
        let scan = match input {
            LogicalPlan::TableScan(scan) => scan,
            LogicalPlan::Filter(filter) => match filter.input.as_ref() {
                LogicalPlan::TableScan(scan)
                    if split_conjunction(&filter.predicate)
                        .iter()
                        .all(|c| scan.filters.contains(c)) =>
                {
                    scan
                }
                _ => return None,
            },
            _ => return None,
        };
        if scan.fetch.is_some() {
            return None;
        }
        let source: &dyn Any = scan.source.as_ref();
        let source = source.downcast_ref::<DefaultTableSource>()?;
        let table: &dyn Any = source.table_provider.as_ref();
        let table = table.downcast_ref::<RegionTable>()?;
        if table.selector.is_some() {
            return None;
        }
        let tag = |e: &Expr| match e {
            Expr::Column(c) => table
                .metadata
                .column_by_name(&c.name)
                .is_some_and(|m| m.semantic_type == SemanticType::Tag),
            _ => false,
        };
        if !group.iter().all(tag) || aggr.is_empty() {
            return None;
        }
        let time = table.time_index();
        let latest_first = |e: &Expr| {
            let Expr::AggregateFunction(f) = e.clone().unalias_nested().data else {
                return false;
            };
            let any: &dyn Any = f.func.inner().as_ref();
            let want_desc = if any.downcast_ref::<FirstValue>().is_some() {
                true
            } else if any.downcast_ref::<LastValue>().is_some() {
                false
            } else {
                return false;
            };
            let p = &f.params;
            let order: Vec<_> = p
                .order_by
                .iter()
                .filter(|s| !group.contains(&s.expr))
                .collect();
            !p.distinct
                && p.filter.is_none()
                && matches!(order.as_slice(), [s] if s.asc != want_desc
                    && matches!(&s.expr, Expr::Column(c) if c.name == time))
        };
        aggr.iter().all(latest_first).then_some((scan, table))
    }
}

impl OptimizerRule for LastRowPushdown {
    fn name(&self) -> &str {
        "mito_last_row_pushdown"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(agg) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let Some((scan, table)) = Self::table(&agg.input, &agg.group_expr, &agg.aggr_expr) else {
            return Ok(Transformed::no(plan));
        };
        let time = table.time_index().to_string();
        let mut new_scan = scan.clone();
        new_scan.source = provider_as_source(Arc::new(table.last_rows()));
        let new_input = match agg.input.as_ref() {
            LogicalPlan::Filter(f) => LogicalPlan::Filter(Filter::try_new(
                f.predicate.clone(),
                Arc::new(LogicalPlan::TableScan(new_scan)),
            )?),
            _ => LogicalPlan::TableScan(new_scan),
        };
        // The aggregate over a few rows per series, as the first row of each group in
        // (group, time DESC) order: the rows whose group differs from the row before. One
        // ordered window (`lag`) does it; DataFusion's ordered `first_value` keeps an
        // accumulator per group and column, and a window partitioned by group pays per
        // partition, both far more than this sort of the same rows.
        let time_col = Expr::Column(Column::new(scan.table_name.clone().into(), time));
        let mut order: Vec<_> = agg
            .group_expr
            .iter()
            .map(|g| g.clone().sort(true, false))
            .collect();
        order.push(time_col.sort(false, true));
        let mut windows = Vec::with_capacity(agg.group_expr.len());
        let mut first: Option<Expr> = None;
        for (i, g) in agg.group_expr.iter().enumerate() {
            let name = format!("{PREVIOUS}{i}");
            windows.push(
                lag(g.clone(), Some(1), None)
                    .order_by(order.clone())
                    .build()?
                    .alias(name.as_str()),
            );
            let differs = Expr::BinaryExpr(BinaryExpr::new(
                Box::new(Expr::Column(Column::from_name(name))),
                Operator::IsDistinctFrom,
                Box::new(g.clone()),
            ));
            first = Some(match first {
                Some(f) => f.or(differs),
                None => differs,
            });
        }
        let Some(first) = first else {
            return Ok(Transformed::no(plan));
        };
        let mut outputs = agg.group_expr.clone();
        for a in &agg.aggr_expr {
            let name = a.schema_name().to_string();
            let Expr::AggregateFunction(f) = a.clone().unalias_nested().data else {
                return Ok(Transformed::no(plan));
            };
            let [arg] = f.params.args.as_slice() else {
                return Ok(Transformed::no(plan));
            };
            outputs.push(arg.clone().alias(name));
        }
        let rewritten = LogicalPlanBuilder::from(new_input)
            .window(windows)?
            .filter(first)?
            .project(outputs)?
            .build()?;
        Ok(Transformed::yes(rewritten))
    }
}
