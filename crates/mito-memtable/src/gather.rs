//! Building the output batches of a memtable read, one at a time.
//!
//! Each batch: the projected columns (tags as dictionaries over the batch's series, all tag
//! columns sharing one keys array; fields interleaved from the parts; the time index), then
//! `__primary_key` (dictionary of the encoded keys), `__sequence`, `__op_type`.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, StringBuilder};
use arrow_array::types::{
    Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{
    ArrayRef, DictionaryArray, PrimitiveArray, RecordBatch, UInt8Array, UInt32Array, UInt64Array,
    new_null_array,
};
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use mito_codec::{KeyValue, PrimaryKeyCodec};
use mito_read::{OpType, Selection};
use snafu::ResultExt;
use store_api::ColumnId;
use store_api::metadata::{RegionMetadataRef, SemanticType};

use crate::error::{ArrowSnafu, InternalSnafu, KeySnafu, Result};
use crate::memtable::Memtable;
use crate::part::{Part, field_sources};

/// A row of the sorted permutation: part index and row in the part.
pub(crate) type RowRef = (u32, u32);

/// Visible rows in sorted order, with their sort keys side by side.
#[derive(Debug)]
pub(crate) struct SortedIndex {
    pub(crate) rows: Vec<RowRef>,
    pub(crate) sid: Vec<u32>,
    pub(crate) ts: Vec<i64>,
    pub(crate) seq: Vec<u64>,
}

/// Everything a read needs to build its batches; owned, so the iterator outlives no lock.
#[derive(Debug)]
pub(crate) struct Gather {
    metadata: RegionMetadataRef,
    codec: PrimaryKeyCodec,
    schema: SchemaRef,
    /// Projected column positions in the region schema.
    columns: Vec<usize>,
    parts: Vec<Arc<Part>>,
    index: SortedIndex,
    selection: Selection,
    keys: Vec<Arc<[u8]>>,
    batch_rows: usize,
    field_ids: Vec<ColumnId>,
    /// Per field: an all-null array of one row, the source for absent values.
    null_sources: Vec<ArrayRef>,
    /// Per field: whether every part carries the column.
    in_every_part: Vec<bool>,
}

impl Gather {
    #[expect(
        clippy::too_many_arguments,
        reason = "the pieces of one read, moved in once"
    )]
    pub(crate) fn new(
        memtable: &Memtable,
        schema: SchemaRef,
        columns: Vec<usize>,
        parts: Vec<Arc<Part>>,
        index: SortedIndex,
        selection: Selection,
        keys: Vec<Arc<[u8]>>,
        batch_rows: usize,
    ) -> Self {
        let metadata = memtable.metadata.clone();
        let field_ids: Vec<ColumnId> = metadata.field_columns().map(|c| c.column_id).collect();
        let null_sources = metadata
            .field_columns()
            .map(|c| new_null_array(&c.data_type, 1))
            .collect();
        let in_every_part = (0..field_ids.len())
            .map(|f| parts.iter().all(|p| p.field(f).is_some()))
            .collect();
        Self {
            metadata,
            codec: memtable.codec.clone(),
            schema,
            columns,
            parts,
            index,
            selection,
            keys,
            batch_rows: batch_rows.max(1),
            field_ids,
            null_sources,
            in_every_part,
        }
    }

    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Batch number `chunk_no`, or `None` past the end.
    pub(crate) fn batch(&self, chunk_no: usize) -> Option<Result<RecordBatch>> {
        let offset = chunk_no.checked_mul(self.batch_rows)?;
        let end = offset
            .saturating_add(self.batch_rows)
            .min(self.selection.rows.len());
        let chunk = self
            .selection
            .rows
            .get(offset..end)
            .filter(|c| !c.is_empty())?;
        Some(self.build(offset, chunk))
    }

    fn key(&self, sid: u32) -> &[u8] {
        self.keys.get(sid as usize).map_or(&[][..], |k| k.as_ref())
    }

    fn build(&self, offset: usize, chunk: &[usize]) -> Result<RecordBatch> {
        let region_id = self.metadata.region_id();
        let ix = &self.index;
        let mut dict_keys = Vec::with_capacity(chunk.len());
        let mut series_in_batch: Vec<u32> = Vec::new();
        let mut ts = Vec::with_capacity(chunk.len());
        let mut seq = Vec::with_capacity(chunk.len());
        let mut op = Vec::with_capacity(chunk.len());
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(chunk.len());
        let mut last_sid = None;
        let internal = |reason: String| InternalSnafu { region_id, reason }.build();
        for &i in chunk {
            // The index's columns have one entry per sorted row, and `chunk` holds sorted
            // row numbers: a miss is a bug, reported rather than read as another row.
            let (Some(&(p, r)), Some(&sid), Some(&t), Some(&q)) =
                (ix.rows.get(i), ix.sid.get(i), ix.ts.get(i), ix.seq.get(i))
            else {
                return Err(internal(format!(
                    "sorted row {i} is outside the sort index ({} rows)",
                    ix.rows.len()
                )));
            };
            if last_sid != Some(sid) {
                series_in_batch.push(sid);
                last_sid = Some(sid);
            }
            dict_keys.push(series_in_batch.len() as u32 - 1);
            ts.push(t);
            seq.push(q);
            op.push(
                self.parts
                    .get(p as usize)
                    .map_or(OpType::Put, |x| x.op(r as usize))
                    .as_u8(),
            );
            picks.push((p as usize, r as usize));
        }
        let dict_keys = UInt32Array::from(dict_keys);
        let decoded: Vec<Vec<KeyValue>> = series_in_batch
            .iter()
            .map(|sid| {
                self.codec
                    .decode(self.key(*sid))
                    .context(KeySnafu { region_id })
            })
            .collect::<Result<_>>()?;

        let mut out: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        let mut ts = Some(ts);
        for &ci in &self.columns {
            let Some(c) = self.metadata.column_metadatas().get(ci) else {
                continue;
            };
            let array: ArrayRef = match c.semantic_type {
                SemanticType::Tag => {
                    let pos = self
                        .metadata
                        .primary_key()
                        .iter()
                        .position(|id| *id == c.column_id)
                        .ok_or_else(|| {
                            internal(format!("tag {} is not in the primary key", c.name))
                        })?;
                    let values = key_values_array(&c.data_type, decoded.iter().map(|d| d.get(pos)));
                    Arc::new(
                        DictionaryArray::<UInt32Type>::try_new(dict_keys.clone(), values)
                            .context(ArrowSnafu { region_id })?,
                    )
                }
                SemanticType::Timestamp => {
                    let ts = ts
                        .take()
                        .ok_or_else(|| internal("a second time index column".to_string()))?;
                    timestamp_array(&c.data_type, ts)
                }
                SemanticType::Field => {
                    let f = self
                        .field_ids
                        .iter()
                        .position(|id| *id == c.column_id)
                        .ok_or_else(|| {
                            internal(format!("field {} is not among the fields read", c.name))
                        })?;
                    self.field(f, offset, chunk.len(), &picks)?
                }
            };
            out.push(array);
        }
        let mut pk = BinaryBuilder::new();
        for sid in &series_in_batch {
            pk.append_value(self.key(*sid));
        }
        let pk: ArrayRef = Arc::new(pk.finish());
        out.push(Arc::new(
            DictionaryArray::<UInt32Type>::try_new(dict_keys, pk)
                .context(ArrowSnafu { region_id })?,
        ));
        out.push(Arc::new(UInt64Array::from(seq)));
        out.push(Arc::new(UInt8Array::from(op)));
        RecordBatch::try_new(self.schema.clone(), out).context(ArrowSnafu { region_id })
    }

    /// Field `f` of the output rows `offset..offset + len`, whose rows were picked at `picks`.
    fn field(
        &self,
        f: usize,
        offset: usize,
        len: usize,
        picks: &[(usize, usize)],
    ) -> Result<ArrayRef> {
        let null_src = self
            .null_sources
            .get(f)
            .map_or(EMPTY.as_ref(), |a| a.as_ref());
        // Sources: each part's column (or the null source where it lacks it), then the null
        // source itself at index `parts.len()`.
        let sources = field_sources(&self.parts, f, null_src);
        let null_part = self.parts.len();
        let idx: Cow<'_, [(usize, usize)]> = match self.selection.fields.get(f) {
            // last_non_null: each field's value may come from another version, or be null.
            Some(col) => col
                .get(offset..offset + len)
                .unwrap_or_default()
                .iter()
                .map(|src| match src.and_then(|s| self.index.rows.get(s)) {
                    Some((p, r)) => (*p as usize, *r as usize),
                    None => (null_part, 0),
                })
                .collect(),
            None if self.in_every_part.get(f).copied().unwrap_or(false) => Cow::Borrowed(picks),
            // Rows of parts without the column read the one-row null source.
            None => picks
                .iter()
                .map(|&(p, r)| {
                    let has = self
                        .parts
                        .get(p)
                        .is_some_and(|part| part.field(f).is_some());
                    if has { (p, r) } else { (p, 0) }
                })
                .collect(),
        };
        arrow_select::interleave::interleave(&sources, &idx).context(ArrowSnafu {
            region_id: self.metadata.region_id(),
        })
    }
}

static EMPTY: std::sync::LazyLock<ArrayRef> =
    std::sync::LazyLock::new(|| new_null_array(&DataType::Null, 1));

fn timestamp_array(dt: &DataType, values: Vec<i64>) -> ArrayRef {
    use arrow_array::{
        TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
        TimestampSecondArray,
    };
    match dt {
        DataType::Timestamp(TimeUnit::Second, _) => Arc::new(TimestampSecondArray::from(values)),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            Arc::new(TimestampMillisecondArray::from(values))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            Arc::new(TimestampMicrosecondArray::from(values))
        }
        _ => Arc::new(TimestampNanosecondArray::from(values)),
    }
}

fn key_values_array<'a>(
    dt: &DataType,
    values: impl Iterator<Item = Option<&'a KeyValue>>,
) -> ArrayRef {
    fn ints<T: arrow_array::ArrowPrimitiveType>(vals: Vec<Option<&KeyValue>>) -> ArrayRef
    where
        T::Native: TryFrom<i64> + TryFrom<u64>,
    {
        let arr: PrimitiveArray<T> = vals
            .into_iter()
            .map(|v| match v {
                Some(KeyValue::Int(i)) => T::Native::try_from(*i).ok(),
                Some(KeyValue::UInt(u)) => T::Native::try_from(*u).ok(),
                _ => None,
            })
            .collect();
        Arc::new(arr)
    }
    let vals: Vec<Option<&KeyValue>> = values.collect();
    match dt {
        DataType::Utf8 => {
            let mut b = StringBuilder::new();
            for v in vals {
                match v {
                    Some(KeyValue::String(s)) => b.append_value(s),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Int8 => ints::<Int8Type>(vals),
        DataType::Int16 => ints::<Int16Type>(vals),
        DataType::Int32 => ints::<Int32Type>(vals),
        DataType::Int64 => ints::<Int64Type>(vals),
        DataType::UInt8 => ints::<UInt8Type>(vals),
        DataType::UInt16 => ints::<UInt16Type>(vals),
        DataType::UInt32 => ints::<UInt32Type>(vals),
        DataType::UInt64 => ints::<UInt64Type>(vals),
        _ => new_null_array(dt, vals.len()),
    }
}
