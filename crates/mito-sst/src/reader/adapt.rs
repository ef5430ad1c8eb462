//! Adapts the file's batches to the region's current schema (decoded floats, added columns,
//! extended keys), by a layout of column positions made once per batch schema.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use mito_read::compat;
use snafu::ResultExt;
use store_api::metadata::{OP_TYPE_COLUMN, PRIMARY_KEY_COLUMN, RegionMetadataRef, SEQUENCE_COLUMN};
use store_api::scan::TimeRange;

use crate::error::{ArrowSnafu, CorruptedSnafu, Result};
use crate::format::{SstInfo, decode_floats, exception_column};

use super::key_filter_error;

pub(super) struct Adapter {
    /// Key filters applied to the file's batch first (see `SstReader::key_filters`).
    pub(super) pre: mito_read::RowFilters,
    pub(super) path: Arc<str>,
    pub(super) info: Arc<SstInfo>,
    pub(super) current: RegionMetadataRef,
    pub(super) indices: Vec<usize>,
    pub(super) out_schema: SchemaRef,
    pub(super) ts_name: String,
    pub(super) time_range: Option<TimeRange>,
    pub(super) key_suffix: Arc<[u8]>,
    /// Made from the first batch (every batch of a read has the same schema).
    pub(super) layout: std::sync::OnceLock<Layout>,
}

impl Adapter {
    pub(super) fn adapt(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let corrupted = |reason: String| {
            CorruptedSnafu {
                path: self.path.to_string(),
                reason,
            }
            .build()
        };
        let filtered;
        let batch = if self.pre.is_empty() {
            batch
        } else {
            filtered = self
                .pre
                .apply(batch.clone())
                .map_err(|e| key_filter_error(&self.path, e))?;
            &filtered
        };
        let schema = batch.schema();
        let fresh;
        let layout = match self.layout.get() {
            Some(l) if Arc::ptr_eq(&l.input, &schema) || *l.input == *schema => l,
            _ => {
                let l = self.layout_of(&schema)?;
                if self.layout.get().is_none() {
                    self.layout.get_or_init(|| l)
                } else {
                    fresh = l;
                    &fresh
                }
            }
        };
        let rows = batch.num_rows();
        let input = |i: usize| {
            batch
                .columns()
                .get(i)
                .ok_or_else(|| corrupted(format!("no column {i} in a batch read")))
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(layout.columns.len());
        for source in &layout.columns {
            columns.push(match *source {
                Source::Input(i) => input(i)?.clone(),
                Source::Floats {
                    ints,
                    exceptions,
                    scale,
                } => {
                    let ints = input(ints)?
                        .as_primitive_opt::<Int64Type>()
                        .ok_or_else(|| corrupted("a decimal column is not Int64".to_string()))?;
                    let exceptions = input(exceptions)?
                        .as_primitive_opt::<Float64Type>()
                        .ok_or_else(|| {
                            corrupted("an exception column is not Float64".to_string())
                        })?;
                    Arc::new(decode_floats(ints, exceptions, scale).map_err(corrupted)?)
                }
                Source::Default(i) => {
                    let c = self.current.column_metadatas().get(i).ok_or_else(|| {
                        corrupted(format!("no column {i} in the region's schema"))
                    })?;
                    compat::default_array(c, rows).context(ArrowSnafu {
                        path: self.path.to_string(),
                    })?
                }
                Source::Key(i) => extend_keys(input(i)?, &self.key_suffix).map_err(corrupted)?,
            });
        }
        let out = RecordBatch::try_new(self.out_schema.clone(), columns).context(ArrowSnafu {
            path: self.path.to_string(),
        })?;
        let Some(range) = self.time_range else {
            return Ok(out);
        };
        let ts = input(layout.ts)?.to_data();
        if ts.buffers().len() != 1 || ts.len() != rows {
            return Err(corrupted("time index of unexpected layout".to_string()));
        }
        mito_read::keep_rows(out, ts.buffer::<i64>(0), |t| range.contains(t)).context(ArrowSnafu {
            path: self.path.to_string(),
        })
    }

    /// Where the output columns come from in batches of schema `input` (the file's columns
    /// read, by their stored names).
    pub(super) fn layout_of(&self, input: &SchemaRef) -> Result<Layout> {
        let pos = |name: &str| {
            input.index_of(name).map_err(|_| {
                CorruptedSnafu {
                    path: self.path.to_string(),
                    reason: format!("column {name} not decoded"),
                }
                .build()
            })
        };
        let mut columns = Vec::with_capacity(self.indices.len() + 3);
        for i in &self.indices {
            let Some(c) = self.current.column_metadatas().get(*i) else {
                continue;
            };
            columns.push(match self.info.region_metadata.column_by_id(c.column_id) {
                Some(old) => match self.info.float_encoding(c.column_id) {
                    Some(enc) => Source::Floats {
                        ints: pos(&old.name)?,
                        exceptions: pos(&exception_column(c.column_id))?,
                        scale: enc.scale,
                    },
                    None => Source::Input(pos(&old.name)?),
                },
                None => Source::Default(*i),
            });
        }
        for name in [PRIMARY_KEY_COLUMN, SEQUENCE_COLUMN, OP_TYPE_COLUMN] {
            let p = pos(name)?;
            columns.push(
                if name == PRIMARY_KEY_COLUMN && !self.key_suffix.is_empty() {
                    Source::Key(p)
                } else {
                    Source::Input(p)
                },
            );
        }
        Ok(Layout {
            input: input.clone(),
            columns,
            ts: pos(&self.ts_name)?,
        })
    }
}

/// Where each output column of [`Adapter::adapt`] comes from, for batches of one schema.
#[derive(Debug)]
pub(super) struct Layout {
    /// The schema of the batches it is for.
    pub(super) input: SchemaRef,
    pub(super) columns: Vec<Source>,
    /// The time index's position in the input.
    pub(super) ts: usize,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Source {
    /// The input column at this position, as it is.
    Input(usize),
    /// A decimal-encoded field: the positions of its integers and exceptions, and its scale.
    Floats {
        ints: usize,
        exceptions: usize,
        scale: u8,
    },
    /// A column the file lacks (added later): the default of the region's column `i`.
    Default(usize),
    /// The primary key at this position, extended by the key suffix.
    Key(usize),
}

/// Appends `suffix` to every key of a dictionary-encoded key column (only the dictionary
/// values change; the keys keep their order since every old key gains the same suffix).
pub(super) fn extend_keys(
    array: &ArrayRef,
    suffix: &[u8],
) -> std::result::Result<ArrayRef, String> {
    let dict = array
        .as_any()
        .downcast_ref::<arrow_array::DictionaryArray<arrow_array::types::UInt32Type>>()
        .ok_or_else(|| format!("key column of type {}", array.data_type()))?;
    let values = dict
        .values()
        .as_any()
        .downcast_ref::<arrow_array::BinaryArray>()
        .ok_or_else(|| format!("key values of type {}", dict.values().data_type()))?;
    let extended: arrow_array::BinaryArray = values
        .iter()
        .map(|v| {
            v.map(|k| {
                let mut out = Vec::with_capacity(k.len() + suffix.len());
                out.extend_from_slice(k);
                out.extend_from_slice(suffix);
                out
            })
        })
        .collect();
    let out = arrow_array::DictionaryArray::<arrow_array::types::UInt32Type>::try_new(
        dict.keys().clone(),
        Arc::new(extended),
    )
    .map_err(|e| e.to_string())?;
    Ok(Arc::new(out))
}
