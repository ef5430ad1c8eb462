//! DataFusion sessions with the instance's tables registered, its memory limit and the
//! optimizer rules Mito adds.

use std::sync::Arc;

use datafusion::common::TableReference;
use datafusion::common::tree_node::Transformed;
use datafusion::error::Result as DfResult;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::prelude::{SessionConfig, SessionContext};
use snafu::ResultExt;
use store_api::RegionId;
use store_api::metadata::RegionMetadataRef;

use crate::error::{Result, SqlSnafu};
use crate::instance::Instance;

use super::last_row::LastRowPushdown;
use super::table::RegionTable;

/// A DataFusion session with every table of `instance` registered under its name (and the
/// instance's query memory limit).
pub async fn session(instance: &Instance) -> Result<SessionContext> {
    new_session(instance, tables(instance).await?.0)
}

/// A table as a session registers it: its entry, regions and schema.
pub(super) type Registered = (crate::catalog::TableEntry, Vec<RegionId>, RegionMetadataRef);

/// The tables of `instance`, and their fingerprint (names, regions, schema versions): what a
/// plan depends on besides the query text.
pub(super) async fn tables(instance: &Instance) -> Result<(Vec<Registered>, u64)> {
    use std::hash::{Hash, Hasher};
    let mut fingerprint = std::collections::hash_map::DefaultHasher::new();
    let mut out = Vec::new();
    for t in instance.tables().await {
        let metadata = instance.metadata(&t.name).await?;
        let regions: Vec<RegionId> = t.region_ids().collect();
        (&t.name, &regions, metadata.schema_version()).hash(&mut fingerprint);
        out.push((t, regions, metadata));
    }
    Ok((out, fingerprint.finish()))
}

/// A new session over `tables`.
pub(super) fn new_session(instance: &Instance, tables: Vec<Registered>) -> Result<SessionContext> {
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(partitions(&tables));
    // Plans are kept and run again (see `PlanCache`); a dynamic filter is state an operator
    // shares with the operators it pushed it into, which resetting a plan does not renew.
    let optimizer = &mut config.options_mut().optimizer;
    optimizer.enable_dynamic_filter_pushdown = false;
    optimizer.enable_topk_dynamic_filter_pushdown = false;
    optimizer.enable_join_dynamic_filter_pushdown = false;
    optimizer.enable_aggregate_dynamic_filter_pushdown = false;
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(instance.plans.runtime.clone())
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(crate::query::run_aggregate::RunAggregate))
        .with_physical_optimizer_rule(Arc::new(YieldAfterJoins))
        .build();
    let ctx = SessionContext::new_with_state(state);
    ctx.add_optimizer_rule(Arc::new(LastRowPushdown));
    super::pg_catalog::install(&ctx, &tables)?;
    for (t, regions, metadata) in tables {
        let table = RegionTable::new(instance.engine().clone(), regions, metadata);
        ctx.register_table(TableReference::bare(t.name.as_str()), Arc::new(table))
            .context(SqlSnafu)?;
    }
    Ok(ctx)
}

/// Puts a yield point above every join, so that a query's timeout (and cancellation) can
/// stop it. A join turns few input batches into many output batches without polling its
/// inputs, and the operator above it (an aggregate, say) consumes them all in one poll:
/// the scan's own yield points are never reached, and a `count(*)` over a three-way cross
/// join ran 74 s past a 300 ms timeout. [`CooperativeExec`] spends a unit of the task's
/// budget per batch and yields when it runs out.
#[derive(Debug)]
pub(super) struct YieldAfterJoins;

impl PhysicalOptimizerRule for YieldAfterJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &datafusion::config::ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        use datafusion::common::tree_node::TreeNode;
        plan.transform_up(|node| {
            // Every DataFusion join is named `...JoinExec`.
            if node.name().ends_with("JoinExec") {
                let wrapped: Arc<dyn ExecutionPlan> = Arc::new(CooperativeExec::new(node));
                return Ok(Transformed::yes(wrapped));
            }
            Ok(Transformed::no(node))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "YieldAfterJoins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// DataFusion's partitions: one per region of the widest table, at most one per core. A
/// region's scan is one partition and runs its sources (memtables, files) on tasks of their
/// own, so a one-region table uses the cores without DataFusion splitting its stream: over the
/// bench's one-region table two partitions (a round-robin split, then partial and final
/// aggregates joined by a hash repartition) were slower on every query than one, 0.8 vs
/// 0.5 ms on one host's hour and no faster on the 4.3 M-row `double-groupby-1`.
pub(super) fn partitions(tables: &[Registered]) -> usize {
    let widest = tables.iter().map(|t| t.1.len()).max().unwrap_or(1);
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    widest.clamp(1, cores.max(1))
}

/// The instance's kept session if its tables are still those it registered, else a new one
/// (kept); with the tables' fingerprint.
pub(super) async fn cached_session(instance: &Instance) -> Result<(SessionContext, u64)> {
    let (tables, fingerprint) = tables(instance).await?;
    if let Some(ctx) = instance.plans.kept_session(fingerprint) {
        return Ok((ctx, fingerprint));
    }
    let ctx = new_session(instance, tables)?;
    instance.plans.keep_session(fingerprint, ctx.clone());
    Ok((ctx, fingerprint))
}
