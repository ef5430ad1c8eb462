//! A DataFusion [`TableProvider`] over a table's regions, and the SQL entry point.
//!
//! ```text
//! SQL --DataFusion plan--> TableScan(projection, filters, limit)
//!     --RegionTable::scan--> ScanRequest per region { projection by column id,
//!                            filters on columns (prune files, row groups, pages; exact;
//!                            the engine turns time index bounds into its time range), limit }
//!     --> one DataFusion partition per region, streamed
//! ```
//!
//! Filters are pushed as `Exact`: the engine prunes with them and applies every one of them to
//! the rows it returns, with DataFusion's own physical expressions over the same column types,
//! so DataFusion does not filter again. Only plain forms are pushed (columns, literals,
//! comparisons, AND/OR/NOT, IN, BETWEEN, IS NULL, casts); the rest stay in DataFusion.

use std::any::Any;
use std::future::Future as _;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_array::RecordBatchOptions;
use arrow_schema::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, TableReference};
use datafusion::datasource::TableType;
use datafusion::datasource::{DefaultTableSource, provider_as_source};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::functions_aggregate::first_last::{FirstValue, LastValue};
use datafusion::functions_window::expr_fn::lag;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, ExprFunctionExt, Filter, LogicalPlan, LogicalPlanBuilder, Operator,
    TableProviderFilterPushDown, TableScan,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::{StreamExt, TryStreamExt};
use mito_engine::MitoEngine;
use snafu::ResultExt;
use store_api::metadata::{RegionMetadataRef, SemanticType};
use store_api::scan::{ScanOrder, ScanRequest, SeriesRowSelector};
use store_api::{ColumnId, RegionId};

use crate::error::{Result, SqlSnafu};
use crate::instance::{Instance, QueryOptions};

/// One table as DataFusion sees it.
#[derive(Debug)]
pub struct RegionTable {
    engine: MitoEngine,
    regions: Vec<RegionId>,
    metadata: RegionMetadataRef,
    /// The columns as scans return them (tags dictionary-encoded).
    schema: SchemaRef,
    /// Rows each scan keeps of each series (set by [`LastRowPushdown`]).
    selector: Option<SeriesRowSelector>,
}

impl RegionTable {
    /// A table over `regions`, all with the schema of `metadata`.
    pub fn new(engine: MitoEngine, regions: Vec<RegionId>, metadata: RegionMetadataRef) -> Self {
        let schema = Arc::new(Schema::new(
            metadata
                .column_metadatas()
                .iter()
                .map(mito_read::compat::read_field)
                .collect::<Vec<_>>(),
        ));
        Self {
            engine,
            regions,
            metadata,
            schema,
            selector: None,
        }
    }

    /// The same table, its scans keeping only the last row of each series.
    fn last_rows(&self) -> Self {
        Self {
            engine: self.engine.clone(),
            regions: self.regions.clone(),
            metadata: self.metadata.clone(),
            schema: self.schema.clone(),
            selector: Some(SeriesRowSelector::LastRow),
        }
    }

    /// The time index column's name.
    fn time_index(&self) -> &str {
        self.metadata.time_index_column().name.as_str()
    }

    /// Whether the engine can take `expr` as a scan filter: a plain form over its columns.
    fn pushable(&self, expr: &Expr) -> bool {
        !expr.column_refs().is_empty() && self.plain(expr)
    }

    fn plain(&self, expr: &Expr) -> bool {
        match expr {
            Expr::Column(c) => self.metadata.column_by_name(&c.name).is_some(),
            Expr::Literal(..) => true,
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                matches!(
                    op,
                    Operator::Eq
                        | Operator::NotEq
                        | Operator::Lt
                        | Operator::LtEq
                        | Operator::Gt
                        | Operator::GtEq
                        | Operator::And
                        | Operator::Or
                ) && self.plain(left)
                    && self.plain(right)
            }
            Expr::Not(e) | Expr::IsNull(e) | Expr::IsNotNull(e) => self.plain(e),
            Expr::Between(b) => self.plain(&b.expr) && self.plain(&b.low) && self.plain(&b.high),
            Expr::InList(l) => self.plain(&l.expr) && l.list.iter().all(|e| self.plain(e)),
            Expr::Cast(c) => self.plain(&c.expr),
            Expr::TryCast(c) => self.plain(&c.expr),
            _ => false,
        }
    }
}

#[async_trait]
impl TableProvider for RegionTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.pushable(f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let columns = self.metadata.column_metadatas();
        let schema = &self.schema;
        let (projected, ids): (SchemaRef, Vec<ColumnId>) = match projection {
            Some(p) => {
                let projected = Arc::new(schema.project(p)?);
                let ids = p
                    .iter()
                    .filter_map(|i| columns.get(*i).map(|c| c.column_id))
                    .collect();
                (projected, ids)
            }
            None => (
                schema.clone(),
                columns.iter().map(|c| c.column_id).collect(),
            ),
        };
        let filters: Vec<Expr> = filters
            .iter()
            .filter(|f| self.pushable(f))
            .cloned()
            .collect();
        let request = ScanRequest {
            // No column asked (`count(*)`): read the time index, return only row counts.
            projection: Some(if ids.is_empty() {
                vec![self.metadata.time_index_column().column_id]
            } else {
                ids
            }),
            filters,
            limit,
            // The plan declares no output ordering, so the engine need not merge sources
            // whose time spans are disjoint.
            order: ScanOrder::Unordered,
            series_row_selector: self.selector,
            ..ScanRequest::default()
        };
        let partitions: Vec<Arc<dyn PartitionStream>> = self
            .regions
            .iter()
            .map(|r| {
                Arc::new(RegionPartition {
                    engine: self.engine.clone(),
                    region_id: *r,
                    request: request.clone(),
                    schema: projected.clone(),
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        Ok(Arc::new(StreamingTableExec::try_new(
            projected,
            partitions,
            None,
            Vec::new(),
            false,
            limit,
        )?))
    }
}

/// One region's scan as a DataFusion partition.
#[derive(Debug)]
struct RegionPartition {
    engine: MitoEngine,
    region_id: RegionId,
    request: ScanRequest,
    schema: SchemaRef,
}

impl PartitionStream for RegionPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let engine = self.engine.clone();
        let region_id = self.region_id;
        let request = self.request.clone();
        let schema = self.schema.clone();
        let out_schema = schema.clone();
        let stream = futures::stream::once(async move {
            engine
                .scan_region(region_id, request)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))
        })
        .map_ok(move |batches| {
            let schema = schema.clone();
            batches.map(move |b| {
                let b = b.map_err(|e| DataFusionError::External(Box::new(e)))?;
                conform(b, &schema)
            })
        })
        .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(out_schema, stream))
    }
}

/// The engine's batch in the partition's schema (the same columns; only the empty
/// projection differs: it keeps the row count alone).
fn conform(batch: RecordBatch, schema: &SchemaRef) -> DfResult<RecordBatch> {
    if schema.fields().is_empty() {
        return Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            Vec::new(),
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )?);
    }
    Ok(RecordBatch::try_new(
        schema.clone(),
        batch.columns().to_vec(),
    )?)
}

/// A DataFusion session with every table of `instance` registered under its name (and the
/// instance's query memory limit).
pub async fn session(instance: &Instance) -> Result<SessionContext> {
    new_session(instance, tables(instance).await?.0)
}

/// A table as a session registers it: its entry, regions and schema.
type Registered = (crate::catalog::TableEntry, Vec<RegionId>, RegionMetadataRef);

/// The tables of `instance`, and their fingerprint (names, regions, schema versions): what a
/// plan depends on besides the query text.
async fn tables(instance: &Instance) -> Result<(Vec<Registered>, u64)> {
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
fn new_session(instance: &Instance, tables: Vec<Registered>) -> Result<SessionContext> {
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
        .with_physical_optimizer_rule(Arc::new(crate::run_aggregate::RunAggregate))
        .with_physical_optimizer_rule(Arc::new(YieldAfterJoins))
        .build();
    let ctx = SessionContext::new_with_state(state);
    ctx.add_optimizer_rule(Arc::new(LastRowPushdown));
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
struct YieldAfterJoins;

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
fn partitions(tables: &[Registered]) -> usize {
    let widest = tables.iter().map(|t| t.1.len()).max().unwrap_or(1);
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    widest.clamp(1, cores.max(1))
}

/// Physical plans by query text, each valid while the tables it was planned against (the
/// fingerprint) are unchanged, and the session those tables were registered in. Only plans
/// free of functions whose value can change between runs (`now()`, `random()`: not
/// immutable) are kept, since planning folds them into constants. A repeated query skips
/// parsing, planning and both optimizers: each run executes a copy of the kept plan with
/// its operators' state reset, and its scans read the data as of then (a scan takes its
/// snapshot when it starts, not when it is planned).
pub(crate) struct PlanCache {
    plans: moka::sync::Cache<String, Arc<CachedPlan>>,
    session: std::sync::Mutex<Option<(u64, SessionContext)>>,
    /// The memory pool (and spill files) every session of the instance shares.
    runtime: Arc<RuntimeEnv>,
    timeout: Option<Duration>,
}

#[derive(Debug)]
struct CachedPlan {
    fingerprint: u64,
    schema: SchemaRef,
    /// Never executed itself: runs execute reset copies.
    physical: Arc<dyn ExecutionPlan>,
}

impl std::fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanCache")
            .field("plans", &self.plans.entry_count())
            .finish_non_exhaustive()
    }
}

/// Queries the plan cache holds.
const CACHED_PLANS: u64 = 256;

impl PlanCache {
    pub(crate) fn new(options: &QueryOptions) -> Result<Self> {
        let limit = usize::try_from(options.memory_limit.as_bytes()).unwrap_or(usize::MAX);
        // Fair shares between the operators that can spill; the five largest consumers are
        // named in the error of a query over the limit.
        let pool = TrackConsumersPool::new(
            FairSpillPool::new(limit),
            NonZeroUsize::new(5).unwrap_or(NonZeroUsize::MIN),
        );
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(pool))
            .build_arc()
            .context(SqlSnafu)?;
        Ok(Self {
            plans: moka::sync::Cache::new(CACHED_PLANS),
            session: std::sync::Mutex::new(None),
            runtime,
            timeout: options.timeout,
        })
    }

    /// Plans held.
    pub(crate) fn len(&self) -> u64 {
        self.plans.run_pending_tasks();
        self.plans.entry_count()
    }

    /// The kept session if the tables are still those it registered, else a new one (kept).
    async fn session(&self, instance: &Instance) -> Result<(SessionContext, u64)> {
        let (tables, fingerprint) = tables(instance).await?;
        let kept = self
            .session
            .lock()
            .ok()
            .and_then(|s| s.as_ref().filter(|(f, _)| *f == fingerprint).cloned());
        if let Some((_, ctx)) = kept {
            return Ok((ctx, fingerprint));
        }
        let ctx = new_session(instance, tables)?;
        if let Ok(mut s) = self.session.lock() {
            *s = Some((fingerprint, ctx.clone()));
        }
        Ok((ctx, fingerprint))
    }
}

/// Whether `plan` can be kept and run again: every function in it always gives the same
/// result for the same arguments (planning folds `now()` and the like into constants), and
/// it is no recursive query (its work table is state shared between operators), `EXPLAIN`
/// or `EXPLAIN ANALYZE`.
fn keepable(plan: &LogicalPlan) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Volatility;
    let mut ok = true;
    let walked = plan.apply_with_subqueries(|node| {
        if matches!(
            node,
            LogicalPlan::RecursiveQuery(_) | LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)
        ) {
            ok = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        node.apply_expressions(|e| {
            e.apply(|e| {
                let volatility = match e {
                    Expr::ScalarFunction(f) => Some(f.func.signature().volatility),
                    Expr::AggregateFunction(f) => Some(f.func.signature().volatility),
                    Expr::WindowFunction(f) => Some(f.fun.signature().volatility),
                    _ => None,
                };
                if volatility.is_some_and(|v| v != Volatility::Immutable) {
                    ok = false;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    ok && walked.is_ok()
}

/// Runs one read-only SQL statement; returns the result's schema and batches.
pub async fn query(instance: &Instance, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let (schema, stream) = query_stream(instance, sql).await?;
    let batches = stream.try_collect().await.context(SqlSnafu)?;
    Ok((schema, batches))
}

/// Plans one read-only SQL statement and starts it; its batches come as the stream is
/// polled, so a large result is never held whole. The instance's query timeout covers
/// planning and the whole stream: past it, the stream ends with a timeout error.
pub async fn query_stream(
    instance: &Instance,
    sql: &str,
) -> Result<(SchemaRef, SendableRecordBatchStream)> {
    // The timeout and the moment it runs out.
    let limit = instance
        .plans
        .timeout
        .map(|t| (t, tokio::time::Instant::now() + t));
    let planned = plan(instance, sql);
    let (schema, physical, ctx) = match limit {
        Some((t, at)) => tokio::time::timeout_at(at, planned)
            .await
            .map_err(|_| timed_out(t))
            .context(SqlSnafu)??,
        None => planned.await?,
    };
    let stream =
        datafusion::physical_plan::execute_stream(physical, ctx.task_ctx()).context(SqlSnafu)?;
    let stream: SendableRecordBatchStream = match limit {
        Some((t, at)) => Box::pin(Deadline {
            inner: stream,
            sleep: Box::pin(tokio::time::sleep_until(at)),
            timeout: t,
            expired: false,
        }),
        None => stream,
    };
    Ok((schema, stream))
}

fn timed_out(timeout: Duration) -> DataFusionError {
    DataFusionError::ResourcesExhausted(format!(
        "the query ran longer than its timeout ({:?}) and was stopped",
        timeout
    ))
}

/// A stream that ends with a timeout error at its deadline.
struct Deadline {
    inner: SendableRecordBatchStream,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    expired: bool,
}

impl futures::Stream for Deadline {
    type Item = DfResult<RecordBatch>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.expired {
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.expired = true;
            return Poll::Ready(Some(Err(timed_out(self.timeout))));
        }
        self.inner.poll_next_unpin(cx)
    }
}

impl datafusion::physical_plan::RecordBatchStream for Deadline {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

/// The physical plan of `sql`, ready to run: a reset copy of a kept plan, or a new one (kept
/// if it can be run again).
async fn plan(
    instance: &Instance,
    sql: &str,
) -> Result<(SchemaRef, Arc<dyn ExecutionPlan>, SessionContext)> {
    let (ctx, fingerprint) = instance.plans.session(instance).await?;
    let cached = instance
        .plans
        .plans
        .get(sql)
        .filter(|p| p.fingerprint == fingerprint);
    let (schema, physical) = match cached {
        Some(p) => (p.schema.clone(), p.physical.clone()),
        None => {
            let state = ctx.state();
            let options = SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(false);
            let dialect = state.config().options().sql_parser.dialect;
            let mut statement = state.sql_to_statement(sql, &dialect).context(SqlSnafu)?;
            crate::sql_guard::check(&mut statement)
                .map_err(DataFusionError::Plan)
                .context(SqlSnafu)?;
            let plan = state.statement_to_plan(statement).await.context(SqlSnafu)?;
            options.verify_plan(&plan).context(SqlSnafu)?;
            let keep = keepable(&plan);
            let optimized = state.optimize(&plan).context(SqlSnafu)?;
            let schema: SchemaRef = Arc::new(optimized.schema().as_arrow().clone());
            let physical = state
                .query_planner()
                .create_physical_plan(&optimized, &state)
                .await
                .context(SqlSnafu)?;
            if !keep {
                return Ok((schema, physical, ctx));
            }
            instance.plans.plans.insert(
                sql.to_string(),
                Arc::new(CachedPlan {
                    fingerprint,
                    schema: schema.clone(),
                    physical: physical.clone(),
                }),
            );
            (schema, physical)
        }
    };
    let run =
        datafusion::physical_plan::execution_plan::reset_plan_states(physical).context(SqlSnafu)?;
    Ok((schema, run, ctx))
}

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
struct LastRowPushdown;

/// Prefix of the columns holding the previous row's group values in the rewritten plan.
const PREVIOUS: &str = "__mito_previous_";

impl LastRowPushdown {
    /// The region table under `input` if the aggregate may read only last rows.
    fn table<'a>(
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
