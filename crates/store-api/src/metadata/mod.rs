//! Region metadata: the validated schema of a region.
//!
//! A [`RegionMetadata`] can only be obtained through [`RegionMetadataBuilder::build`] or by
//! deserializing (which runs the same validation), so every value in memory keeps the rules:
//!
//! - at least one column; names are non-empty, at most [`MAX_NAME_BYTES`] bytes, unique, and
//!   never start with `__` (reserved for internal columns such as [`PRIMARY_KEY_COLUMN`]);
//! - column ids are unique;
//! - exactly one time index column, NOT NULL, of a timestamp type without time zone, without
//!   default;
//! - tags are strings or integers; fields are booleans, numbers, strings or binary;
//! - the primary key lists every tag column exactly once and nothing else; its order is the
//!   order rows are sorted in;
//! - a default value fits its column's type and nullability.
//!
//! The JSON encoding is part of the manifest format: `tests/fixtures/` holds frozen documents
//! that must keep decoding.

mod column;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_schema::{Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use snafu::{IntoError, ensure};

pub use self::column::{
    ColumnMetadata, SUPPORTED_TYPES, SemanticType, Value, type_from_name, type_name,
};
use crate::error::{DecodeMetadataSnafu, InvalidColumnTypeSnafu, InvalidMetadataSnafu, Result};
use crate::{ColumnId, RegionId};

/// Internal column holding the encoded primary key.
pub const PRIMARY_KEY_COLUMN: &str = "__primary_key";
/// Internal column holding each row's sequence number.
pub const SEQUENCE_COLUMN: &str = "__sequence";
/// Internal column holding each row's operation (put or delete).
pub const OP_TYPE_COLUMN: &str = "__op_type";
/// Prefix reserved for internal columns; no user column may start with it.
pub const RESERVED_PREFIX: &str = "__";
/// Longest column name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Shared handle to region metadata.
pub type RegionMetadataRef = Arc<RegionMetadata>;

/// The validated schema of a region. See the [module docs](self) for the rules it keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawRegionMetadata", into = "RawRegionMetadata")]
pub struct RegionMetadata {
    region_id: RegionId,
    column_metadatas: Vec<ColumnMetadata>,
    primary_key: Vec<ColumnId>,
    schema_version: u64,
    // Derived from the above at validation.
    schema: SchemaRef,
    time_index: usize,
    id_to_index: HashMap<ColumnId, usize>,
}

/// The serialized form; turned into [`RegionMetadata`] only through validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegionMetadata {
    region_id: RegionId,
    column_metadatas: Vec<ColumnMetadata>,
    primary_key: Vec<ColumnId>,
    schema_version: u64,
}

impl TryFrom<RawRegionMetadata> for RegionMetadata {
    type Error = crate::error::Error;

    fn try_from(raw: RawRegionMetadata) -> Result<Self> {
        validate(raw)
    }
}

impl From<RegionMetadata> for RawRegionMetadata {
    fn from(m: RegionMetadata) -> Self {
        Self {
            region_id: m.region_id,
            column_metadatas: m.column_metadatas,
            primary_key: m.primary_key,
            schema_version: m.schema_version,
        }
    }
}

impl RegionMetadata {
    /// Decodes and validates a JSON document.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|source| DecodeMetadataSnafu.into_error(source))
    }

    /// Encodes as JSON. Validated metadata always serializes (every type has a name, every
    /// float default is finite); an error would be a bug and is returned, not papered over.
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }

    /// The region these metadata belong to.
    pub fn region_id(&self) -> RegionId {
        self.region_id
    }

    /// All columns, in schema order.
    pub fn column_metadatas(&self) -> &[ColumnMetadata] {
        &self.column_metadatas
    }

    /// Ids of the tag columns, in primary-key (sort) order.
    pub fn primary_key(&self) -> &[ColumnId] {
        &self.primary_key
    }

    /// Increases on every schema change; starts at 0.
    pub fn schema_version(&self) -> u64 {
        self.schema_version
    }

    /// The user-visible Arrow schema (columns in schema order, no internal columns).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The time index column.
    #[expect(
        clippy::indexing_slicing,
        reason = "validation stored the position of the one timestamp column"
    )]
    pub fn time_index_column(&self) -> &ColumnMetadata {
        &self.column_metadatas[self.time_index]
    }

    /// Position of a column in the schema.
    pub fn column_index_by_id(&self, id: ColumnId) -> Option<usize> {
        self.id_to_index.get(&id).copied()
    }

    /// A column by id.
    pub fn column_by_id(&self, id: ColumnId) -> Option<&ColumnMetadata> {
        self.column_index_by_id(id)
            .and_then(|i| self.column_metadatas.get(i))
    }

    /// A column by name.
    pub fn column_by_name(&self, name: &str) -> Option<&ColumnMetadata> {
        self.column_metadatas.iter().find(|c| c.name == name)
    }

    /// The tag columns, in primary-key order.
    pub fn primary_key_columns(&self) -> impl Iterator<Item = &ColumnMetadata> {
        self.primary_key
            .iter()
            .filter_map(|id| self.column_by_id(*id))
    }

    /// The field columns, in schema order.
    pub fn field_columns(&self) -> impl Iterator<Item = &ColumnMetadata> {
        self.column_metadatas
            .iter()
            .filter(|c| c.semantic_type == SemanticType::Field)
    }

    /// Largest column id in use (new columns take ids above it).
    pub fn max_column_id(&self) -> ColumnId {
        self.column_metadatas
            .iter()
            .map(|c| c.column_id)
            .max()
            .unwrap_or(0)
    }
}

/// Builds a validated [`RegionMetadata`].
#[derive(Debug, Clone)]
pub struct RegionMetadataBuilder {
    raw: RawRegionMetadata,
}

impl RegionMetadataBuilder {
    /// An empty builder for `region_id`, at schema version 0.
    pub fn new(region_id: RegionId) -> Self {
        Self {
            raw: RawRegionMetadata {
                region_id,
                column_metadatas: Vec::new(),
                primary_key: Vec::new(),
                schema_version: 0,
            },
        }
    }

    /// A builder holding `metadata`, to derive a changed version from it.
    pub fn from_existing(metadata: &RegionMetadata) -> Self {
        Self {
            raw: metadata.clone().into(),
        }
    }

    /// Appends a column.
    pub fn push_column(&mut self, column: ColumnMetadata) -> &mut Self {
        self.raw.column_metadatas.push(column);
        self
    }

    /// Removes the column named `name`, and its primary-key entry; returns it if it existed.
    pub fn remove_column(&mut self, name: &str) -> Option<ColumnMetadata> {
        let pos = self
            .raw
            .column_metadatas
            .iter()
            .position(|c| c.name == name)?;
        let column = self.raw.column_metadatas.remove(pos);
        self.raw.primary_key.retain(|id| *id != column.column_id);
        Some(column)
    }

    /// Sets the primary key (tag column ids in sort order).
    pub fn primary_key(&mut self, key: Vec<ColumnId>) -> &mut Self {
        self.raw.primary_key = key;
        self
    }

    /// Sets the schema version.
    pub fn schema_version(&mut self, version: u64) -> &mut Self {
        self.raw.schema_version = version;
        self
    }

    /// Validates and builds.
    pub fn build(&self) -> Result<RegionMetadata> {
        validate(self.raw.clone())
    }
}

fn validate(raw: RawRegionMetadata) -> Result<RegionMetadata> {
    let region_id = raw.region_id;
    let invalid = |reason: String| InvalidMetadataSnafu { region_id, reason }.build();

    if raw.column_metadatas.is_empty() {
        return Err(invalid(
            "a region needs at least a time index column".into(),
        ));
    }
    let mut names = HashSet::new();
    let mut id_to_index = HashMap::new();
    let mut time_index = None;
    for (i, c) in raw.column_metadatas.iter().enumerate() {
        let name = &c.name;
        ensure!(
            !name.is_empty(),
            InvalidMetadataSnafu {
                region_id,
                reason: format!("column id {} has an empty name", c.column_id)
            }
        );
        ensure!(
            name.len() <= MAX_NAME_BYTES,
            InvalidMetadataSnafu {
                region_id,
                reason: format!("column name '{name}' is longer than {MAX_NAME_BYTES} bytes"),
            }
        );
        ensure!(
            !name.starts_with(RESERVED_PREFIX),
            InvalidMetadataSnafu {
                region_id,
                reason: format!(
                    "column name '{name}' is reserved: names starting with '{RESERVED_PREFIX}' are internal"
                ),
            }
        );
        ensure!(
            names.insert(name.as_str()),
            InvalidMetadataSnafu {
                region_id,
                reason: format!("duplicate column name '{name}'")
            }
        );
        ensure!(
            id_to_index.insert(c.column_id, i).is_none(),
            InvalidMetadataSnafu {
                region_id,
                reason: format!("duplicate column id {} (column '{name}')", c.column_id),
            }
        );
        let type_error = |reason: &str| {
            InvalidColumnTypeSnafu {
                region_id,
                column: name.clone(),
                column_id: c.column_id,
                data_type: type_name(&c.data_type),
                reason,
            }
            .build()
        };
        if let Some(reason) = column::type_role_error(c.semantic_type, &c.data_type) {
            return Err(type_error(reason));
        }
        if c.semantic_type == SemanticType::Timestamp {
            if let Some(prev) = time_index.replace(i) {
                let prev_name = raw
                    .column_metadatas
                    .get(prev)
                    .map_or("", |p| p.name.as_str());
                return Err(invalid(format!(
                    "more than one time index: '{prev_name}' and '{name}'"
                )));
            }
            ensure!(
                !c.nullable,
                InvalidMetadataSnafu {
                    region_id,
                    reason: format!("time index '{name}' must be NOT NULL")
                }
            );
            ensure!(
                c.default.is_none(),
                InvalidMetadataSnafu {
                    region_id,
                    reason: format!("time index '{name}' cannot have a default")
                }
            );
        }
        if let Some(reason) = c
            .default
            .as_ref()
            .and_then(|d| d.incompatibility(&c.data_type, c.nullable))
        {
            return Err(type_error(&reason));
        }
    }
    let Some(time_index) = time_index else {
        return Err(invalid("no time index column".into()));
    };

    let mut seen = HashSet::new();
    for id in &raw.primary_key {
        let column = id_to_index
            .get(id)
            .and_then(|i| raw.column_metadatas.get(*i));
        match column {
            None => return Err(invalid(format!("primary key names unknown column id {id}"))),
            Some(c) if c.semantic_type != SemanticType::Tag => {
                return Err(invalid(format!(
                    "primary key column '{}' is a {}, not a tag",
                    c.name, c.semantic_type
                )));
            }
            Some(c) if !seen.insert(*id) => {
                return Err(invalid(format!("primary key lists '{}' twice", c.name)));
            }
            Some(_) => {}
        }
    }
    if let Some(missing) = raw
        .column_metadatas
        .iter()
        .find(|c| c.semantic_type == SemanticType::Tag && !seen.contains(&c.column_id))
    {
        return Err(invalid(format!(
            "tag column '{}' is missing from the primary key",
            missing.name
        )));
    }

    let fields: Vec<Field> = raw
        .column_metadatas
        .iter()
        .map(|c| Field::new(c.name.clone(), c.data_type.clone(), c.nullable))
        .collect();
    Ok(RegionMetadata {
        region_id,
        schema: Arc::new(Schema::new(fields)),
        column_metadatas: raw.column_metadatas,
        primary_key: raw.primary_key,
        schema_version: raw.schema_version,
        time_index,
        id_to_index,
    })
}

#[cfg(test)]
mod tests;
