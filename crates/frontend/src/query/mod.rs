//! SQL over the tables: the entry points, and (in the submodules) the DataFusion `TableProvider`
//! over a table's regions, the session and its rules.
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

mod last_row;
pub mod output;
mod pg_catalog;
pub(crate) mod run_aggregate;
mod session;
mod shape;
mod sql_guard;
mod table;

use std::future::Future as _;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::{SQLOptions, SessionContext};
use futures::{StreamExt, TryStreamExt};
use snafu::ResultExt;

use crate::error::{Result, SqlSnafu};
use crate::instance::Instance;

use crate::plan_cache::{CachedPlan, Shape, ShapePlan, keepable};

pub use pg_catalog::{PG_INFORMATION_SCHEMA, is_catalog, is_empty_catalog, is_information_view};
pub use session::session;
pub use table::RegionTable;

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
    let limit = deadline(instance);
    let planned = within(limit, plan(instance, sql)).await?;
    Ok((
        planned.schema,
        start(planned.physical, &planned.ctx, planned.params, limit)?,
    ))
}

/// The instance's query timeout and the moment it runs out, from now.
fn deadline(instance: &Instance) -> Option<(Duration, tokio::time::Instant)> {
    instance
        .plans
        .timeout
        .map(|t| (t, tokio::time::Instant::now() + t))
}

/// `planning`, stopped with a timeout error at the deadline.
async fn within<T>(
    limit: Option<(Duration, tokio::time::Instant)>,
    planning: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match limit {
        Some((t, at)) => tokio::time::timeout_at(at, planning)
            .await
            .map_err(|_| timed_out(t))
            .context(SqlSnafu)?,
        None => planning.await,
    }
}

/// Starts `physical` with `params` bound (a shape's plan); the stream ends with a timeout
/// error at the deadline.
fn start(
    physical: Arc<dyn ExecutionPlan>,
    ctx: &SessionContext,
    params: Option<Arc<table::BoundParams>>,
    limit: Option<(Duration, tokio::time::Instant)>,
) -> Result<SendableRecordBatchStream> {
    let task = ctx.task_ctx();
    let task = match params {
        None => task,
        Some(params) => {
            let config = task.session_config().clone().with_extension(params);
            let task = Arc::try_unwrap(task).unwrap_or_else(|shared| {
                datafusion::execution::TaskContext::new(
                    shared.task_id(),
                    shared.session_id(),
                    shared.session_config().clone(),
                    shared.scalar_functions().clone(),
                    shared.higher_order_functions().clone(),
                    shared.aggregate_functions().clone(),
                    shared.window_functions().clone(),
                    shared.runtime_env(),
                )
            });
            Arc::new(task.with_session_config(config))
        }
    };
    let stream = datafusion::physical_plan::execute_stream(physical, task).context(SqlSnafu)?;
    Ok(match limit {
        Some((t, at)) => Box::pin(Deadline {
            inner: stream,
            sleep: Box::pin(tokio::time::sleep_until(at)),
            timeout: t,
            expired: false,
        }),
        None => stream,
    })
}

/// A read-only statement planned once and run many times with different parameters (`$1`,
/// `$2`, ...): a prepared statement of the PostgreSQL extended protocol. It keeps the logical
/// plan with its placeholders; each run puts the values in, then optimizes and plans it
/// physically (pruning and the engine's pushdowns need the values). If the tables changed
/// since it was prepared (a table created, a column added), a run plans the text again.
#[derive(Debug, Clone)]
pub struct Prepared {
    sql: String,
    plan: LogicalPlan,
    schema: SchemaRef,
    params: Vec<Option<DataType>>,
    fingerprint: u64,
}

impl Prepared {
    /// The result's schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The parameters `$1..$n` and the types inferred for them (`None`: not inferable, such
    /// as a parameter only selected).
    pub fn params(&self) -> &[Option<DataType>] {
        &self.params
    }
}

/// Plans one read-only statement with placeholders; see [`Prepared`].
pub async fn prepare(instance: &Instance, sql: &str) -> Result<Prepared> {
    let limit = deadline(instance);
    within(limit, async {
        let (ctx, fingerprint) = session::cached_session(instance).await?;
        let plan = logical_plan(&ctx, sql).await?;
        let params = placeholder_types(&plan)?;
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        Ok(Prepared {
            sql: sql.to_string(),
            plan,
            schema,
            params,
            fingerprint,
        })
    })
    .await
}

/// Runs a prepared statement with `params` as `$1..$n` (each already of its inferred type or
/// castable to it); the stream and timeout are those of [`query_stream`].
pub async fn execute(
    instance: &Instance,
    prepared: &Prepared,
    params: Vec<ScalarValue>,
) -> Result<(SchemaRef, SendableRecordBatchStream)> {
    let limit = deadline(instance);
    let (schema, physical, ctx) = within(limit, async {
        let (ctx, fingerprint) = session::cached_session(instance).await?;
        let plan = if fingerprint == prepared.fingerprint {
            prepared.plan.clone()
        } else {
            logical_plan(&ctx, &prepared.sql).await?
        };
        let plan = plan
            .with_param_values(ParamValues::from(params))
            .context(SqlSnafu)?;
        let (schema, physical) = physical_plan(&ctx, &plan).await?;
        Ok((schema, physical, ctx))
    })
    .await?;
    Ok((schema, start(physical, &ctx, None, limit)?))
}

/// The types of `$1..$n` in `plan`, in order; a gap (`$2` without `$1`) is an error.
fn placeholder_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
    let found = plan.get_parameter_types().context(SqlSnafu)?;
    let mut numbered = Vec::with_capacity(found.len());
    for (name, ty) in found {
        let n = name
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                DataFusionError::Plan(format!("parameter {name} is not positional ($1, $2, ...)"))
            })
            .context(SqlSnafu)?;
        numbered.push((n, ty));
    }
    numbered.sort_by_key(|(n, _)| *n);
    for (i, (n, _)) in numbered.iter().enumerate() {
        if *n != i + 1 {
            return Err(DataFusionError::Plan(format!(
                "parameter ${} is used but ${} is not",
                n,
                i + 1
            )))
            .context(SqlSnafu);
        }
    }
    Ok(numbered.into_iter().map(|(_, ty)| ty).collect())
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

/// A plan ready to run, and the values its scans bind (a shape's plan).
struct Planned {
    schema: SchemaRef,
    physical: Arc<dyn ExecutionPlan>,
    ctx: SessionContext,
    params: Option<Arc<table::BoundParams>>,
}

/// The physical plan of `sql`, ready to run: a reset copy of a plan kept for this text or
/// for its shape (see `shape`), or a new one (kept if it can be run again).
async fn plan(instance: &Instance, sql: &str) -> Result<Planned> {
    let (ctx, fingerprint) = session::cached_session(instance).await?;
    let reset = |physical| {
        datafusion::physical_plan::execution_plan::reset_plan_states(physical).context(SqlSnafu)
    };
    if let Some(p) = instance
        .plans
        .plans
        .get(sql)
        .filter(|p| p.fingerprint == fingerprint)
    {
        let physical = reset(p.physical.clone())?;
        return Ok(Planned {
            schema: p.schema.clone(),
            physical,
            ctx,
            params: None,
        });
    }
    let statement = parse(&ctx, sql)?;
    if let Some((shaped, literals)) = shape::parameterize(&statement) {
        let key = shape::key(&shaped, &literals);
        let kept = instance
            .plans
            .shapes
            .get(&key)
            .filter(|s| s.fingerprint == fingerprint);
        let kept = match kept {
            Some(kept) => kept,
            None => {
                let planned = Arc::new(Shape {
                    fingerprint,
                    plan: shape_plan(&ctx, shaped).await,
                });
                instance.plans.shapes.insert(key, planned.clone());
                planned
            }
        };
        if let Some(p) = &kept.plan
            && let Some(values) = shape::bind(&literals, &p.types)
        {
            let physical = reset(p.physical.clone())?;
            return Ok(Planned {
                schema: p.schema.clone(),
                physical,
                ctx,
                params: Some(Arc::new(table::BoundParams(values))),
            });
        }
    }
    let plan = statement_plan(&ctx, statement).await?;
    let keep = keepable(&plan);
    let (schema, physical) = physical_plan(&ctx, &plan).await?;
    if keep {
        instance.plans.plans.insert(
            sql.to_string(),
            Arc::new(CachedPlan {
                fingerprint,
                schema: schema.clone(),
                physical: physical.clone(),
            }),
        );
    }
    let physical = if keep { reset(physical)? } else { physical };
    Ok(Planned {
        schema,
        physical,
        ctx,
        params: None,
    })
}

/// The plan of a shape (a statement with placeholders), if every placeholder has a known
/// type and ends up in a scan's filters: planning fails where one would be left elsewhere
/// (DataFusion evaluates no placeholder), and then the shape has no plan.
async fn shape_plan(
    ctx: &SessionContext,
    shaped: datafusion::sql::parser::Statement,
) -> Option<ShapePlan> {
    let plan = statement_plan(ctx, shaped).await.ok()?;
    if !keepable(&plan) {
        return None;
    }
    let types = placeholder_types(&plan)
        .ok()?
        .into_iter()
        .collect::<Option<Vec<_>>>()?;
    let (schema, physical) = physical_plan(ctx, &plan).await.ok()?;
    Some(ShapePlan {
        schema,
        physical,
        types,
    })
}

/// Optimizes `plan` and plans it physically; with the optimized plan's schema.
async fn physical_plan(
    ctx: &SessionContext,
    plan: &LogicalPlan,
) -> Result<(SchemaRef, Arc<dyn ExecutionPlan>)> {
    let state = ctx.state();
    let optimized = state.optimize(plan).context(SqlSnafu)?;
    let schema: SchemaRef = Arc::new(optimized.schema().as_arrow().clone());
    let physical = state
        .query_planner()
        .create_physical_plan(&optimized, &state)
        .await
        .context(SqlSnafu)?;
    Ok((schema, physical))
}

/// Parses, checks (see `sql_guard`) and plans one read-only statement.
async fn logical_plan(ctx: &SessionContext, sql: &str) -> Result<LogicalPlan> {
    let statement = parse(ctx, sql)?;
    statement_plan(ctx, statement).await
}

/// Parses one statement and checks its shape (see `sql_guard`).
fn parse(ctx: &SessionContext, sql: &str) -> Result<datafusion::sql::parser::Statement> {
    let state = ctx.state_ref();
    let state = state.read();
    let dialect = state.config().options().sql_parser.dialect;
    let mut statement = state.sql_to_statement(sql, &dialect).context(SqlSnafu)?;
    crate::query::sql_guard::check(&mut statement)
        .map_err(DataFusionError::Plan)
        .context(SqlSnafu)?;
    Ok(statement)
}

/// Plans one parsed, checked statement, refusing anything but a read.
async fn statement_plan(
    ctx: &SessionContext,
    statement: datafusion::sql::parser::Statement,
) -> Result<LogicalPlan> {
    let state = ctx.state();
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let plan = state.statement_to_plan(statement).await.context(SqlSnafu)?;
    options.verify_plan(&plan).context(SqlSnafu)?;
    Ok(plan)
}
