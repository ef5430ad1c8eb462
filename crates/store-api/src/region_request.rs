//! Requests a region engine handles, and their responses.
//!
//! Rows travel as Arrow [`RecordBatch`]es in the region's schema (by column name); nothing is
//! converted row by row. Options travel as string maps and are parsed and validated by the
//! engine that owns them.

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use snafu::ensure;

use crate::error::{InvalidRequestSnafu, Result};
use crate::metadata::{ColumnMetadata, RegionMetadata, RegionMetadataBuilder, SemanticType};
use crate::scan::TimeRange;
use crate::{ColumnId, RegionId};

/// Region options as given by the user (`ttl`, `append_mode`, ...); parsed by the engine.
pub type RegionOptionsMap = BTreeMap<String, String>;

/// A request to change or manage a region.
#[derive(Debug)]
pub enum RegionRequest {
    /// Create a new region.
    Create(RegionCreateRequest),
    /// Open an existing region (read its manifest, replay its WAL).
    Open(RegionOpenRequest),
    /// Close an open region.
    Close(RegionCloseRequest),
    /// Close the region and delete all its files.
    Drop(RegionDropRequest),
    /// Insert (or overwrite) rows.
    Put(RegionPutRequest),
    /// Delete rows by (primary key, timestamp).
    Delete(RegionDeleteRequest),
    /// Change the schema or the options.
    Alter(RegionAlterRequest),
    /// Write the memtables to SST files.
    Flush(RegionFlushRequest),
    /// Merge SST files.
    Compact(RegionCompactRequest),
    /// Remove all data, or the data of a time range.
    Truncate(RegionTruncateRequest),
}

impl RegionRequest {
    /// Short name of the request kind, for logs and metric labels.
    pub fn kind_name(&self) -> &'static str {
        match self {
            RegionRequest::Create(_) => "create",
            RegionRequest::Open(_) => "open",
            RegionRequest::Close(_) => "close",
            RegionRequest::Drop(_) => "drop",
            RegionRequest::Put(_) => "put",
            RegionRequest::Delete(_) => "delete",
            RegionRequest::Alter(_) => "alter",
            RegionRequest::Flush(_) => "flush",
            RegionRequest::Compact(_) => "compact",
            RegionRequest::Truncate(_) => "truncate",
        }
    }
}

/// Create a region with these columns.
#[derive(Debug, Clone, Default)]
pub struct RegionCreateRequest {
    /// All columns, in schema order.
    pub column_metadatas: Vec<ColumnMetadata>,
    /// Tag column ids in sort order.
    pub primary_key: Vec<ColumnId>,
    /// Region options.
    pub options: RegionOptionsMap,
}

impl RegionCreateRequest {
    /// Validates the columns and builds the region's metadata (schema version 0).
    pub fn build_metadata(&self, region_id: RegionId) -> Result<RegionMetadata> {
        let mut builder = RegionMetadataBuilder::new(region_id);
        for c in &self.column_metadatas {
            builder.push_column(c.clone());
        }
        builder.primary_key(self.primary_key.clone()).build()
    }
}

/// Open an existing region.
#[derive(Debug, Clone, Default)]
pub struct RegionOpenRequest {
    /// Options that override the stored ones for this open only (e.g. WAL settings).
    pub options: RegionOptionsMap,
    /// Open without replaying the WAL (a read-only follower, or a region known to be flushed).
    pub skip_wal_replay: bool,
}

/// Close an open region.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegionCloseRequest {
    /// Flush the memtables before closing (otherwise the WAL keeps the data).
    pub flush: bool,
}

/// Drop a region: close it and delete its files.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegionDropRequest;

/// Insert rows. Columns are matched by name; missing nullable or defaulted fields are filled.
#[derive(Debug, Clone)]
pub struct RegionPutRequest {
    /// The rows.
    pub rows: RecordBatch,
}

/// Delete rows: the batch holds the tag columns and the time index of each row to delete.
#[derive(Debug, Clone)]
pub struct RegionDeleteRequest {
    /// Keys of the rows to delete.
    pub keys: RecordBatch,
}

/// Change the schema or the options of a region.
#[derive(Debug, Clone)]
pub struct RegionAlterRequest {
    /// The schema version the request was made against; a stale one is rejected.
    pub schema_version: u64,
    /// What to change.
    pub kind: AlterKind,
}

/// The change an alter makes.
#[derive(Debug, Clone)]
pub enum AlterKind {
    /// Add columns at the end of the schema (tags also at the end of the primary key).
    AddColumns {
        /// The new columns; nullable or with a default.
        columns: Vec<ColumnMetadata>,
    },
    /// Drop field columns by name.
    DropColumns {
        /// Names of the columns to drop.
        names: Vec<String>,
    },
    /// Set region options.
    SetOptions {
        /// Options to set.
        options: RegionOptionsMap,
    },
    /// Reset region options to their defaults.
    UnsetOptions {
        /// Option keys to reset.
        keys: Vec<String>,
    },
}

impl RegionAlterRequest {
    /// Checks the request against the current metadata and returns the metadata it leads to
    /// (the same metadata for option changes).
    pub fn apply(&self, current: &RegionMetadata) -> Result<RegionMetadata> {
        let region_id = current.region_id();
        ensure!(
            self.schema_version == current.schema_version(),
            InvalidRequestSnafu {
                region_id,
                reason: format!(
                    "alter made against schema version {}, but the region is at {}",
                    self.schema_version,
                    current.schema_version()
                ),
            }
        );
        let mut builder = RegionMetadataBuilder::from_existing(current);
        match &self.kind {
            AlterKind::AddColumns { columns } => {
                ensure!(
                    !columns.is_empty(),
                    InvalidRequestSnafu {
                        region_id,
                        reason: "no column to add"
                    }
                );
                let mut key = current.primary_key().to_vec();
                for c in columns {
                    ensure!(
                        c.nullable || c.default.is_some(),
                        InvalidRequestSnafu {
                            region_id,
                            reason: format!(
                                "new column '{}' must be nullable or have a default, since existing rows lack it",
                                c.name
                            ),
                        }
                    );
                    ensure!(
                        c.semantic_type != SemanticType::Timestamp,
                        InvalidRequestSnafu {
                            region_id,
                            reason: format!("cannot add a second time index '{}'", c.name),
                        }
                    );
                    if c.semantic_type == SemanticType::Tag {
                        key.push(c.column_id);
                    }
                    builder.push_column(c.clone());
                }
                builder.primary_key(key);
            }
            AlterKind::DropColumns { names } => {
                ensure!(
                    !names.is_empty(),
                    InvalidRequestSnafu {
                        region_id,
                        reason: "no column to drop"
                    }
                );
                for name in names {
                    let Some(c) = current.column_by_name(name) else {
                        return InvalidRequestSnafu {
                            region_id,
                            reason: format!("cannot drop unknown column '{name}'"),
                        }
                        .fail();
                    };
                    ensure!(
                        c.semantic_type == SemanticType::Field,
                        InvalidRequestSnafu {
                            region_id,
                            reason: format!("cannot drop {} column '{name}'", c.semantic_type),
                        }
                    );
                    builder.remove_column(name);
                }
            }
            AlterKind::SetOptions { .. } | AlterKind::UnsetOptions { .. } => {
                return Ok(current.clone());
            }
        }
        builder.schema_version(current.schema_version() + 1).build()
    }
}

/// Flush a region's memtables.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegionFlushRequest;

/// Compact a region.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegionCompactRequest {
    /// How to pick the files.
    pub options: CompactOptions,
}

/// How a compaction picks its inputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CompactOptions {
    /// The region's compaction strategy (TWCS).
    #[default]
    Regular,
    /// Merge every window of the given width into one sorted run.
    StrictWindow {
        /// Window width in seconds; must be positive.
        window_seconds: i64,
    },
}

/// What a truncate removes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RegionTruncateRequest {
    /// Everything.
    #[default]
    All,
    /// Files fully inside the range and the memtable rows in it.
    TimeRange(TimeRange),
}

/// The answer to a [`RegionRequest`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegionResponse {
    /// Rows written or deleted (0 for DDL).
    pub affected_rows: usize,
}

impl RegionResponse {
    /// A response for `rows` affected rows.
    pub fn new(affected_rows: usize) -> Self {
        Self { affected_rows }
    }
}

#[cfg(test)]
mod tests {
    use arrow_schema::{DataType, TimeUnit};

    use super::*;
    use crate::metadata::Value;

    fn create() -> RegionCreateRequest {
        RegionCreateRequest {
            column_metadatas: vec![
                ColumnMetadata::new(0, "host", DataType::Utf8, SemanticType::Tag),
                ColumnMetadata::new(
                    1,
                    "ts",
                    DataType::Timestamp(TimeUnit::Millisecond, None),
                    SemanticType::Timestamp,
                ),
                ColumnMetadata::new(2, "cpu", DataType::Float64, SemanticType::Field),
            ],
            primary_key: vec![0],
            options: RegionOptionsMap::new(),
        }
    }

    #[test]
    fn create_builds_validated_metadata() {
        let m = create().build_metadata(RegionId::new(1, 2)).unwrap();
        assert_eq!(m.region_id(), RegionId::new(1, 2));
        let mut bad = create();
        bad.primary_key.clear();
        assert!(bad.build_metadata(RegionId::new(1, 2)).is_err());
    }

    #[test]
    fn alter_add_and_drop_columns_bump_the_version() {
        let m = create().build_metadata(RegionId::new(1, 2)).unwrap();
        let add = RegionAlterRequest {
            schema_version: 0,
            kind: AlterKind::AddColumns {
                columns: vec![
                    ColumnMetadata::new(3, "dc", DataType::Utf8, SemanticType::Tag),
                    ColumnMetadata::new(4, "mem", DataType::Float64, SemanticType::Field)
                        .with_nullable(false)
                        .with_default(Value::Float(0.0)),
                ],
            },
        };
        let m1 = add.apply(&m).unwrap();
        assert_eq!(m1.schema_version(), 1);
        assert_eq!(m1.primary_key(), &[0, 3]);

        let drop = RegionAlterRequest {
            schema_version: 1,
            kind: AlterKind::DropColumns {
                names: vec!["cpu".into()],
            },
        };
        let m2 = drop.apply(&m1).unwrap();
        assert_eq!(m2.schema_version(), 2);
        assert!(m2.column_by_name("cpu").is_none());
    }

    #[test]
    fn alter_rejects_bad_changes() {
        let m = create().build_metadata(RegionId::new(1, 2)).unwrap();
        let cases = [
            (
                RegionAlterRequest {
                    schema_version: 5,
                    kind: AlterKind::DropColumns {
                        names: vec!["cpu".into()],
                    },
                },
                "schema version 5",
            ),
            (
                RegionAlterRequest {
                    schema_version: 0,
                    kind: AlterKind::DropColumns {
                        names: vec!["host".into()],
                    },
                },
                "cannot drop tag column 'host'",
            ),
            (
                RegionAlterRequest {
                    schema_version: 0,
                    kind: AlterKind::DropColumns {
                        names: vec!["nope".into()],
                    },
                },
                "unknown column 'nope'",
            ),
            (
                RegionAlterRequest {
                    schema_version: 0,
                    kind: AlterKind::AddColumns {
                        columns: vec![
                            ColumnMetadata::new(9, "x", DataType::Int64, SemanticType::Field)
                                .with_nullable(false),
                        ],
                    },
                },
                "must be nullable or have a default",
            ),
            (
                RegionAlterRequest {
                    schema_version: 0,
                    kind: AlterKind::AddColumns {
                        columns: vec![ColumnMetadata::new(
                            9,
                            "cpu",
                            DataType::Int64,
                            SemanticType::Field,
                        )],
                    },
                },
                "duplicate column name 'cpu'",
            ),
        ];
        for (req, want) in cases {
            let err = req.apply(&m).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }

    #[test]
    fn option_changes_keep_the_schema() {
        let m = create().build_metadata(RegionId::new(1, 2)).unwrap();
        let req = RegionAlterRequest {
            schema_version: 0,
            kind: AlterKind::SetOptions {
                options: [("ttl".to_string(), "7d".to_string())].into(),
            },
        };
        assert_eq!(req.apply(&m).unwrap(), m);
    }
}
