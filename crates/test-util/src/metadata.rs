//! Region metadata for tests: tags, then the time index, then fields, column ids in that
//! order, the tags as the primary key.

use std::sync::Arc;

use arrow_schema::{DataType, TimeUnit};
use store_api::metadata::{ColumnMetadata, RegionMetadataBuilder, RegionMetadataRef, SemanticType};
use store_api::{ColumnId, RegionId};

/// A builder holding `tags`, the time index `time` and `fields`, with column ids from
/// `first_id` in that order and the tags as the primary key; push more before building.
pub fn builder(
    region: RegionId,
    first_id: ColumnId,
    tags: &[(&str, DataType)],
    time: (&str, TimeUnit),
    fields: &[(&str, DataType)],
) -> RegionMetadataBuilder {
    let mut b = RegionMetadataBuilder::new(region);
    let mut id = first_id;
    let mut key = Vec::new();
    let mut push = |b: &mut RegionMetadataBuilder, name: &str, t: DataType, s: SemanticType| {
        if s == SemanticType::Tag {
            key.push(id);
        }
        b.push_column(ColumnMetadata::new(id, name, t, s));
        id += 1;
    };
    for (name, t) in tags {
        push(&mut b, name, t.clone(), SemanticType::Tag);
    }
    let (ts, unit) = time;
    push(
        &mut b,
        ts,
        DataType::Timestamp(unit, None),
        SemanticType::Timestamp,
    );
    for (name, t) in fields {
        push(&mut b, name, t.clone(), SemanticType::Field);
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
