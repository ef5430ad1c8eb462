//! A DataFusion [`TableProvider`] over a table's regions, and the SQL entry point.
//!
//! ```text
//! SQL --DataFusion plan--> TableScan(projection, filters, limit)
//!     --RegionTable::scan--> ScanRequest per region { projection by column id,
//!                            filters on columns (prune files, row groups, pages; exact),
//!                            time range from the time index bounds, limit }
//!     --> one DataFusion partition per region, streamed
//! ```
//!
//! Filters are pushed as `Inexact`: the engine applies them exactly, DataFusion applies them
//! once more (cheap next to the I/O they save), so a filter form the engine might prune
//! differently can never change an answer. Only plain forms are pushed (columns, literals,
//! comparisons, AND/OR/NOT, IN, BETWEEN, IS NULL, casts); the rest stay in DataFusion.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::RecordBatchOptions;
use arrow_schema::{DataType, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{ScalarValue, TableReference};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::{StreamExt, TryStreamExt};
use mito_engine::MitoEngine;
use snafu::ResultExt;
use store_api::metadata::RegionMetadataRef;
use store_api::scan::{ScanOrder, ScanRequest, TimeRange};
use store_api::{ColumnId, RegionId};

use crate::error::{Result, SqlSnafu};
use crate::instance::Instance;

/// One table as DataFusion sees it.
#[derive(Debug)]
pub struct RegionTable {
    engine: MitoEngine,
    regions: Vec<RegionId>,
    metadata: RegionMetadataRef,
    /// The columns as scans return them (tags dictionary-encoded).
    schema: SchemaRef,
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
        }
    }

    fn time_index(&self) -> (&str, TimeUnit) {
        let c = self.metadata.time_index_column();
        let unit = match &c.data_type {
            DataType::Timestamp(u, _) => *u,
            _ => TimeUnit::Nanosecond,
        };
        (c.name.as_str(), unit)
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

    /// The time range implied by the conjunction of `filters` (`None`: unbounded).
    fn time_range(&self, filters: &[Expr]) -> Option<TimeRange> {
        let (name, unit) = self.time_index();
        let mut range = TimeRange::default();
        let mut bounded = false;
        for f in filters {
            for conjunct in split_conjunction(f) {
                if let Some((start, end)) = bound(conjunct, name, unit) {
                    if let Some(s) = start {
                        range.start = Some(range.start.map_or(s, |r| r.max(s)));
                    }
                    if let Some(e) = end {
                        range.end = Some(range.end.map_or(e, |r| r.min(e)));
                    }
                    bounded = true;
                }
            }
        }
        bounded.then_some(range)
    }
}

/// A timestamp literal in `unit`.
fn timestamp_literal(e: &Expr, unit: TimeUnit) -> Option<i64> {
    let Expr::Literal(v, _) = e else {
        return None;
    };
    match (v, unit) {
        (ScalarValue::TimestampSecond(Some(t), None), TimeUnit::Second)
        | (ScalarValue::TimestampMillisecond(Some(t), None), TimeUnit::Millisecond)
        | (ScalarValue::TimestampMicrosecond(Some(t), None), TimeUnit::Microsecond)
        | (ScalarValue::TimestampNanosecond(Some(t), None), TimeUnit::Nanosecond) => Some(*t),
        _ => None,
    }
}

fn is_column(e: &Expr, name: &str) -> bool {
    matches!(e, Expr::Column(c) if c.name == name)
}

/// `[start, end)` bounds a conjunct puts on the time index.
fn bound(e: &Expr, name: &str, unit: TimeUnit) -> Option<(Option<i64>, Option<i64>)> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, t) = if is_column(left, name) {
                (*op, timestamp_literal(right, unit)?)
            } else if is_column(right, name) {
                (op.swap()?, timestamp_literal(left, unit)?)
            } else {
                return None;
            };
            match op {
                Operator::Eq => Some((Some(t), Some(t.checked_add(1)?))),
                Operator::Gt => Some((Some(t.checked_add(1)?), None)),
                Operator::GtEq => Some((Some(t), None)),
                Operator::Lt => Some((None, Some(t))),
                Operator::LtEq => Some((None, Some(t.checked_add(1)?))),
                _ => None,
            }
        }
        Expr::Between(b) if !b.negated && is_column(&b.expr, name) => Some((
            Some(timestamp_literal(&b.low, unit)?),
            Some(timestamp_literal(&b.high, unit)?.checked_add(1)?),
        )),
        _ => None,
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
                    TableProviderFilterPushDown::Inexact
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
            time_range: self.time_range(&filters),
            filters,
            limit,
            // The plan declares no output ordering, so the engine need not merge sources
            // whose time spans are disjoint.
            order: ScanOrder::Unordered,
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

/// A DataFusion session with every table of `instance` registered under its name.
pub async fn session(instance: &Instance) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(2);
    let ctx = SessionContext::new_with_config(config);
    for t in instance.tables().await {
        let metadata = instance.metadata(&t.name).await?;
        let table = RegionTable::new(
            instance.engine().clone(),
            t.region_ids().collect(),
            metadata,
        );
        ctx.register_table(TableReference::bare(t.name.as_str()), Arc::new(table))
            .context(SqlSnafu)?;
    }
    Ok(ctx)
}

/// Runs one read-only SQL statement; returns the result's schema and batches.
pub async fn query(instance: &Instance, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let ctx = session(instance).await?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx.sql_with_options(sql, options).await.context(SqlSnafu)?;
    let schema: Arc<Schema> = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.context(SqlSnafu)?;
    Ok((schema, batches))
}
