//! Region metadata for tests: tags, then the time index, then fields, column ids in that
//! order, the tags as the primary key.

use std::sync::Arc;

use arrow_schema::{DataType, TimeUnit};
use store_api::metadata::{ColumnMetadata, RegionMetadataBuilder, RegionMetadataRef, SemanticType};
use store_api::region_request::RegionCreateRequest;
use store_api::{ColumnId, RegionId};

/// The columns `tags`, the time index `time` and `fields`, with ids from `first_id` in that
/// order, and the primary key (the tags' ids).
pub fn columns(
    first_id: ColumnId,
    tags: &[(&str, DataType)],
    time: (&str, TimeUnit),
    fields: &[(&str, DataType)],
) -> (Vec<ColumnMetadata>, Vec<ColumnId>) {
    let (ts, unit) = time;
    let all = tags
        .iter()
        .map(|(n, t)| (*n, t.clone(), SemanticType::Tag))
        .chain(std::iter::once((
            ts,
            DataType::Timestamp(unit, None),
            SemanticType::Timestamp,
        )))
        .chain(
            fields
                .iter()
                .map(|(n, t)| (*n, t.clone(), SemanticType::Field)),
        );
    let columns: Vec<ColumnMetadata> = all
        .zip(first_id..)
        .map(|((name, t, s), id)| ColumnMetadata::new(id, name, t, s))
        .collect();
    let key = columns
        .iter()
        .filter(|c| c.semantic_type == SemanticType::Tag)
        .map(|c| c.column_id)
        .collect();
    (columns, key)
}

/// A builder holding [`columns`]; push more before building.
pub fn builder(
    region: RegionId,
    first_id: ColumnId,
    tags: &[(&str, DataType)],
    time: (&str, TimeUnit),
    fields: &[(&str, DataType)],
) -> RegionMetadataBuilder {
    let (columns, key) = columns(first_id, tags, time, fields);
    let mut b = RegionMetadataBuilder::new(region);
    for c in columns {
        b.push_column(c);
    }
    b.primary_key(key);
    b
}

/// Built metadata of [`builder`].
pub fn build(b: &RegionMetadataBuilder) -> RegionMetadataRef {
    Arc::new(b.build().expect("test metadata is valid"))
}

/// The smallest useful region: tag `host` (0), time index `ts` (1) in `unit`, field `v` (2,
/// `Float64`).
pub fn host_ts_v(region: RegionId, unit: TimeUnit) -> RegionMetadataRef {
    build(&builder(
        region,
        0,
        &[("host", DataType::Utf8)],
        ("ts", unit),
        &[("v", DataType::Float64)],
    ))
}

/// The request creating a region of tag `host` (0), time index `ts` (1, milliseconds) and
/// field `cpu` (2, `Float64`), with default options.
pub fn host_ts_cpu_create() -> RegionCreateRequest {
    let (column_metadatas, primary_key) = columns(
        0,
        &[("host", DataType::Utf8)],
        ("ts", TimeUnit::Millisecond),
        &[("cpu", DataType::Float64)],
    );
    RegionCreateRequest {
        column_metadatas,
        primary_key,
        options: Default::default(),
    }
}
