//! Shared helpers of the engine tests: a small cpu schema, batch builders and a scan that
//! returns plain rows.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMillisecondType};
use arrow_array::{
    Array, ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::DataType;
use futures::TryStreamExt;
use log_store::{Durability, WalConfig};
use mito_engine::{MitoConfig, MitoEngine};
use store_api::RegionId;
use store_api::engine::RegionEngine;
use store_api::region_request::{
    RegionCreateRequest, RegionDeleteRequest, RegionOpenRequest, RegionPutRequest, RegionRequest,
};
use store_api::scan::ScanRequest;

pub const REGION: RegionId = RegionId::new(1, 1);

/// A row of the test schema: (host, ts, cpu).
pub type Row = (String, i64, Option<f64>);

pub fn create_request() -> RegionCreateRequest {
    test_util::metadata::host_ts_cpu_create()
}

pub fn small_config() -> MitoConfig {
    MitoConfig {
        num_workers: 2,
        ..MitoConfig::default()
    }
}

pub async fn start(dir: &Path, config: MitoConfig) -> MitoEngine {
    let wal = WalConfig {
        durability: Durability::Sync,
        ..WalConfig::default()
    };
    MitoEngine::open_local(dir, config, wal).await.unwrap()
}

/// An engine over `dir` (data under `data/`, WAL under `wal/`) whose clock the test drives.
pub async fn start_with_clock(
    dir: &Path,
    config: MitoConfig,
    clock: Arc<store_api::clock::ManualClock>,
) -> MitoEngine {
    let op = mito_sst::store::fs_operator(&dir.join("data").to_string_lossy()).unwrap();
    let wal = log_store::LocalLogStore::open(WalConfig::new(dir.join("wal")))
        .await
        .unwrap();
    MitoEngine::new(config, op, Arc::new(wal), clock).unwrap()
}

pub fn put_batch(rows: &[(&str, i64, Option<f64>)]) -> RecordBatch {
    let host: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)));
    let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from_iter_values(
        rows.iter().map(|r| r.1),
    ));
    let cpu: ArrayRef = Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2)));
    RecordBatch::try_from_iter([("host", host), ("ts", ts), ("cpu", cpu)]).unwrap()
}

pub fn delete_batch(keys: &[(&str, i64)]) -> RecordBatch {
    let host: ArrayRef = Arc::new(StringArray::from_iter_values(keys.iter().map(|r| r.0)));
    let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from_iter_values(
        keys.iter().map(|r| r.1),
    ));
    RecordBatch::try_from_iter([("host", host), ("ts", ts)]).unwrap()
}

pub async fn create(engine: &MitoEngine, region: RegionId) {
    engine
        .handle_request(region, RegionRequest::Create(create_request()))
        .await
        .unwrap();
}

pub async fn open(engine: &MitoEngine, region: RegionId) {
    engine
        .handle_request(region, RegionRequest::Open(RegionOpenRequest::default()))
        .await
        .unwrap();
}

pub async fn put(
    engine: &MitoEngine,
    region: RegionId,
    rows: &[(&str, i64, Option<f64>)],
) -> Result<usize, store_api::error::BoxedError> {
    engine
        .handle_request(
            region,
            RegionRequest::Put(RegionPutRequest {
                rows: put_batch(rows),
            }),
        )
        .await
        .map(|r| r.affected_rows)
}

pub async fn delete(
    engine: &MitoEngine,
    region: RegionId,
    keys: &[(&str, i64)],
) -> Result<usize, store_api::error::BoxedError> {
    engine
        .handle_request(
            region,
            RegionRequest::Delete(RegionDeleteRequest {
                keys: delete_batch(keys),
            }),
        )
        .await
        .map(|r| r.affected_rows)
}

/// Rows of a scan in (host, ts) order as returned.
pub async fn scan(engine: &MitoEngine, region: RegionId, req: ScanRequest) -> Vec<Row> {
    let stream = engine.scan(region, req).await.unwrap();
    let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
    rows_of(&batches)
}

pub async fn scan_all(engine: &MitoEngine, region: RegionId) -> Vec<Row> {
    scan(engine, region, ScanRequest::default()).await
}

pub fn rows_of(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        let host = arrow_cast::cast(b.column_by_name("host").unwrap(), &DataType::Utf8).unwrap();
        let host = host.as_string::<i32>();
        let ts = b
            .column_by_name("ts")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        let cpu = b
            .column_by_name("cpu")
            .map(|c| c.as_primitive::<Float64Type>().clone());
        for i in 0..b.num_rows() {
            let v = cpu
                .as_ref()
                .and_then(|c| (!c.is_null(i)).then(|| c.value(i)));
            out.push((host.value(i).to_string(), ts.value(i), v));
        }
    }
    out
}

/// Exact row equality (NaN equal to NaN, -0.0 different from 0.0).
pub fn same_rows(a: &[Row], b: &[Row]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.0 == y.0 && x.1 == y.1 && x.2.map(f64::to_bits) == y.2.map(f64::to_bits)
        })
}
