//! Physical plans kept by query text, run again as reset copies, and the session and memory
//! pool they run in. Owned by the `Instance`, used by `query` (which depends on the instance,
//! not the other way round).

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use arrow_schema::SchemaRef;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use snafu::ResultExt;

use crate::error::{Result, SqlSnafu};

/// Physical plans by query text, each valid while the tables it was planned against (the
/// fingerprint) are unchanged, and the session those tables were registered in. Only plans
/// free of functions whose value can change between runs (`now()`, `random()`: not
/// immutable) are kept, since planning folds them into constants. A repeated query skips
/// parsing, planning and both optimizers: each run executes a copy of the kept plan with
/// its operators' state reset, and its scans read the data as of then (a scan takes its
/// snapshot when it starts, not when it is planned).
pub(crate) struct PlanCache {
    pub(crate) plans: quick_cache::sync::Cache<String, Arc<CachedPlan>>,
    /// Plans by query shape (see `query::shape`): texts that differ only in the literals of
    /// their `WHERE` clause share one plan, run with their own values.
    pub(crate) shapes: quick_cache::sync::Cache<String, Arc<Shape>>,
    pub(crate) session: std::sync::Mutex<Option<(u64, SessionContext)>>,
    /// The memory pool (and spill files) every session of the instance shares.
    pub(crate) runtime: Arc<RuntimeEnv>,
    pub(crate) timeout: Option<Duration>,
}

#[derive(Debug)]
pub(crate) struct CachedPlan {
    pub(crate) fingerprint: u64,
    pub(crate) schema: SchemaRef,
    /// Never executed itself: runs execute reset copies.
    pub(crate) physical: Arc<dyn ExecutionPlan>,
}

/// A query shape planned with placeholders, or found not to plan that way.
#[derive(Debug)]
pub(crate) struct Shape {
    pub(crate) fingerprint: u64,
    /// `None`: the shape's placeholders do not all end up in scan filters (or their types
    /// are not known); its texts are planned one by one.
    pub(crate) plan: Option<ShapePlan>,
}

#[derive(Debug)]
pub(crate) struct ShapePlan {
    pub(crate) schema: SchemaRef,
    /// Never executed itself: runs execute reset copies with their values bound.
    pub(crate) physical: Arc<dyn ExecutionPlan>,
    /// The types of `$1..$n`, as planning inferred them.
    pub(crate) types: Vec<arrow_schema::DataType>,
}

impl std::fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanCache")
            .field("plans", &self.plans.len())
            .finish_non_exhaustive()
    }
}

/// Queries the plan cache holds.
pub(crate) const CACHED_PLANS: usize = 256;

impl PlanCache {
    /// A cache whose queries share a memory pool of `memory_limit` bytes and stop after
    /// `timeout`.
    pub(crate) fn new(memory_limit: u64, timeout: Option<Duration>) -> Result<Self> {
        let limit = usize::try_from(memory_limit).unwrap_or(usize::MAX);
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
            plans: quick_cache::sync::Cache::new(CACHED_PLANS),
            shapes: quick_cache::sync::Cache::new(CACHED_PLANS),
            session: std::sync::Mutex::new(None),
            runtime,
            timeout,
        })
    }

    /// Plans held, by text and by shape.
    pub(crate) fn len(&self) -> u64 {
        (self.plans.len() + self.shapes.len()) as u64
    }

    /// The kept session, if it was made for the tables of `fingerprint`.
    pub(crate) fn kept_session(&self, fingerprint: u64) -> Option<SessionContext> {
        self.session
            .lock()
            .ok()
            .and_then(|s| s.as_ref().filter(|(f, _)| *f == fingerprint).cloned())
            .map(|(_, ctx)| ctx)
    }

    /// Keeps `ctx` as the session of the tables of `fingerprint`.
    pub(crate) fn keep_session(&self, fingerprint: u64, ctx: SessionContext) {
        if let Ok(mut s) = self.session.lock() {
            *s = Some((fingerprint, ctx));
        }
    }
}

/// Whether `plan` can be kept and run again: every function in it always gives the same
/// result for the same arguments (planning folds `now()` and the like into constants), and
/// it is no recursive query (its work table is state shared between operators), `EXPLAIN`
/// or `EXPLAIN ANALYZE`.
pub(crate) fn keepable(plan: &LogicalPlan) -> bool {
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
