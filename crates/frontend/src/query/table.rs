//! A DataFusion `TableProvider` over a table's regions: filters pushed as `Exact`, one
//! partition per region, streamed.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::RecordBatchOptions;
use arrow_schema::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::{StreamExt, TryStreamExt};
use store_api::engine::RegionEngineRef;
use store_api::metadata::RegionMetadataRef;
use store_api::scan::{ScanOrder, ScanRequest, SeriesRowSelector};
use store_api::{ColumnId, RegionId};

/// One table as DataFusion sees it.
#[derive(Debug)]
pub struct RegionTable {
    engine: RegionEngineRef,
    regions: Vec<RegionId>,
    pub(super) metadata: RegionMetadataRef,
    /// The columns as scans return them (tags dictionary-encoded).
    schema: SchemaRef,
    /// Rows each scan keeps of each series (set by [`LastRowPushdown`]).
    pub(super) selector: Option<SeriesRowSelector>,
}

impl RegionTable {
    /// A table over `regions`, all with the schema of `metadata`.
    pub fn new(
        engine: RegionEngineRef,
        regions: Vec<RegionId>,
        metadata: RegionMetadataRef,
    ) -> Self {
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
    pub(super) fn last_rows(&self) -> Self {
        Self {
            engine: self.engine.clone(),
            regions: self.regions.clone(),
            metadata: self.metadata.clone(),
            schema: self.schema.clone(),
            selector: Some(SeriesRowSelector::LastRow),
        }
    }

    /// The time index column's name.
    pub(super) fn time_index(&self) -> &str {
        self.metadata.time_index_column().name.as_str()
    }

    /// Whether the engine can take `expr` as a scan filter: a plain form over its columns.
    pub(super) fn pushable(&self, expr: &Expr) -> bool {
        !expr.column_refs().is_empty() && self.plain(expr)
    }

    pub(super) fn plain(&self, expr: &Expr) -> bool {
        match expr {
            Expr::Column(c) => self.metadata.column_by_name(&c.name).is_some(),
            // A shape's parameter, bound to a literal where the scan starts.
            Expr::Literal(..) | Expr::Placeholder(_) => true,
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
pub(super) struct RegionPartition {
    engine: RegionEngineRef,
    region_id: RegionId,
    request: ScanRequest,
    schema: SchemaRef,
}

impl PartitionStream for RegionPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let engine = self.engine.clone();
        let region_id = self.region_id;
        let mut request = self.request.clone();
        let schema = self.schema.clone();
        let out_schema = schema.clone();
        let params = ctx.session_config().get_extension::<BoundParams>();
        let stream = futures::stream::once(async move {
            request.filters = bind_filters(std::mem::take(&mut request.filters), params)?;
            engine
                .scan(region_id, request)
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

/// The values of a shape's parameters for one run: `$1` is the first. Handed to the scans in
/// the run's task context.
#[derive(Debug)]
pub(crate) struct BoundParams(pub(crate) Vec<ScalarValue>);

/// `filters` with every placeholder replaced by its value in `params`.
fn bind_filters(filters: Vec<Expr>, params: Option<Arc<BoundParams>>) -> DfResult<Vec<Expr>> {
    let mut placeholders = false;
    for f in &filters {
        f.apply(|e| {
            placeholders |= matches!(e, Expr::Placeholder(_));
            Ok(if placeholders {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })?;
    }
    if !placeholders {
        return Ok(filters);
    }
    let Some(params) = params else {
        return Err(DataFusionError::Plan(
            "the query has parameters ($1, ...) but no values were given for them".to_string(),
        ));
    };
    filters
        .into_iter()
        .map(|f| {
            f.transform(|e| match e {
                Expr::Placeholder(p) => {
                    let value =
                        p.id.strip_prefix('$')
                            .and_then(|n| n.parse::<usize>().ok())
                            .and_then(|n| n.checked_sub(1))
                            .and_then(|i| params.0.get(i))
                            .ok_or_else(|| {
                                DataFusionError::Plan(format!("no value for parameter {}", p.id))
                            })?;
                    Ok(Transformed::yes(Expr::Literal(value.clone(), None)))
                }
                other => Ok(Transformed::no(other)),
            })
            .map(|t| t.data)
        })
        .collect()
}

/// The engine's batch in the partition's schema (the same columns; only the empty
/// projection differs: it keeps the row count alone).
pub(super) fn conform(batch: RecordBatch, schema: &SchemaRef) -> DfResult<RecordBatch> {
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
