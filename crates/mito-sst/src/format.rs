//! The layout of an SST file, pure (no I/O): its Arrow schema, the decimal encoding of float
//! columns, and the `mito.sst` key-value metadata.
//!
//! ```text
//!  columns: region columns in region order (tags dictionary-encoded; an f64 field encoded as
//!           decimal is stored as Int64), __primary_key, __sequence, __op_type,
//!           then one `__exc_{column_id}` Float64 column per decimal-encoded field
//!  key-value metadata "mito.sst": JSON of SstInfo { version, region metadata, float
//!           encodings, CRC32C of every column chunk }
//! ```
//!
//! Decimal encoding. Metrics are mostly short decimals (`37.41`): as f64 their bits look
//! random and compress badly, but as integers scaled by `10^scale` they delta-encode into a few
//! bits. A value is stored as the integer `m` when `m as f64 / 10^scale` gives back exactly the
//! same bits; every other value (NaN, infinities, -0.0, 0.1 + 0.2, values beyond 2^63) goes
//! into the column's exception column, null elsewhere. Decoding is therefore exact for every
//! f64. The scale is chosen per file from the first rows written.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow_buffer::NullBufferBuilder;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use mito_read::compat;
use serde::{Deserialize, Serialize};
use store_api::ColumnId;
use store_api::metadata::{RegionMetadata, SemanticType};

/// The current SST format version, written into every file.
pub const SST_FORMAT_VERSION: u32 = 1;
/// The key of the SST's own metadata in the Parquet key-value metadata.
pub const SST_INFO_KEY: &str = "mito.sst";
/// Largest decimal scale tried: values with more decimals are exceptions.
pub const MAX_SCALE: u8 = 9;
/// Prefix of an exception column's name; the column id follows.
pub const EXCEPTION_PREFIX: &str = "__exc_";

const POW10: [f64; MAX_SCALE as usize + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
/// 2^63 as f64: integers of magnitude below this convert to i64 and back exactly.
const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;

/// How one f64 field is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatEncoding {
    /// The field.
    pub column_id: ColumnId,
    /// Values are stored as `round(v * 10^scale)`.
    pub scale: u8,
}

/// The SST's own metadata, stored as JSON under [`SST_INFO_KEY`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SstInfo {
    /// [`SST_FORMAT_VERSION`] of the writer.
    pub version: u32,
    /// The region metadata the file was written with.
    pub region_metadata: RegionMetadata,
    /// The decimal-encoded f64 fields.
    pub floats: Vec<FloatEncoding>,
    /// CRC32C of each column chunk's bytes, by row group then column.
    pub chunk_checksums: Vec<Vec<u32>>,
}

impl SstInfo {
    /// Encodes as JSON (plain data with string keys: an error would be a bug, and is
    /// returned rather than written as an empty document).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Decodes and checks the version and the encodings against the metadata.
    pub fn from_json(s: &str) -> Result<Self, String> {
        let info: SstInfo =
            serde_json::from_str(s).map_err(|e| format!("bad {SST_INFO_KEY}: {e}"))?;
        if info.version != SST_FORMAT_VERSION {
            return Err(format!(
                "unsupported SST format version {} (this build reads {SST_FORMAT_VERSION})",
                info.version
            ));
        }
        for enc in &info.floats {
            let ok = info
                .region_metadata
                .column_by_id(enc.column_id)
                .is_some_and(|c| {
                    c.semantic_type == SemanticType::Field && c.data_type == DataType::Float64
                });
            if !ok || enc.scale > MAX_SCALE {
                return Err(format!("bad float encoding {enc:?}"));
            }
        }
        Ok(info)
    }

    /// The encoding of a field, if it is decimal-encoded.
    pub fn float_encoding(&self, column_id: ColumnId) -> Option<FloatEncoding> {
        self.floats
            .iter()
            .copied()
            .find(|e| e.column_id == column_id)
    }
}

/// The name of the exception column of a decimal-encoded field.
pub fn exception_column(column_id: ColumnId) -> String {
    format!("{EXCEPTION_PREFIX}{column_id}")
}

/// The Arrow schema of a file written with `metadata` and `floats`.
pub fn file_schema(metadata: &RegionMetadata, floats: &[FloatEncoding]) -> SchemaRef {
    let mut fields: Vec<Field> = metadata
        .column_metadatas()
        .iter()
        .map(|c| {
            let f = compat::read_field(c);
            if floats.iter().any(|e| e.column_id == c.column_id) {
                f.with_data_type(DataType::Int64)
            } else {
                f
            }
        })
        .collect();
    fields.extend(compat::internal_fields());
    fields.extend(
        floats
            .iter()
            .map(|e| Field::new(exception_column(e.column_id), DataType::Float64, true)),
    );
    Arc::new(Schema::new(fields))
}

/// `v` as an integer at `scale`, if decoding gives back exactly `v`.
pub fn to_decimal(v: f64, scale: u8) -> Option<i64> {
    let p = *POW10.get(usize::from(scale))?;
    let m = (v * p).round();
    // NaN fails this comparison too.
    if m.is_nan() || m.abs() >= I64_BOUND {
        return None;
    }
    #[expect(clippy::cast_possible_truncation, reason = "|m| < 2^63 checked above")]
    let i = m as i64;
    (from_decimal(i, p).to_bits() == v.to_bits()).then_some(i)
}

#[expect(
    clippy::cast_precision_loss,
    reason = "exactness is checked by to_decimal"
)]
fn from_decimal(m: i64, p: f64) -> f64 {
    m as f64 / p
}

/// The smallest scale at which `v` is an exact decimal.
fn min_scale(v: f64) -> Option<u8> {
    (0..=MAX_SCALE).find(|s| to_decimal(v, *s).is_some())
}

/// The scale that stores `values` in the fewest bits (about 3.3 bits per decimal digit for
/// every value, 64 bits per exception), or `None` if plain f64 is cheaper.
pub fn choose_scale(values: &Float64Array) -> Option<u8> {
    // Values per minimal scale; the last slot counts values that are no decimal at all.
    let mut counts = [0u64; MAX_SCALE as usize + 2];
    let mut n = 0u64;
    for v in values.iter().flatten() {
        n += 1;
        let slot = min_scale(v).map_or(MAX_SCALE as usize + 1, usize::from);
        if let Some(c) = counts.get_mut(slot) {
            *c += 1;
        }
    }
    if n == 0 {
        return Some(0);
    }
    let mut best: Option<(u64, u8)> = None;
    let mut exact = 0u64;
    for scale in 0..=MAX_SCALE {
        exact += counts.get(usize::from(scale)).copied().unwrap_or(0);
        let exceptions = n - exact;
        // Bits in units of 1/10: 33 per digit per value, 640 per exception.
        let cost = exceptions * 640 + n * 33 * u64::from(scale);
        if best.is_none_or(|(c, _)| cost < c) {
            best = Some((cost, scale));
        }
    }
    // Plain f64 costs 64 bits per value before compression.
    best.filter(|(cost, _)| *cost < n * 640 / 2).map(|(_, s)| s)
}

/// Chooses the encodings of the f64 fields of `metadata` from a sample batch in the read
/// schema of all columns.
pub fn choose_encodings(metadata: &RegionMetadata, sample: &RecordBatch) -> Vec<FloatEncoding> {
    metadata
        .column_metadatas()
        .iter()
        .enumerate()
        .filter(|(_, c)| c.semantic_type == SemanticType::Field && c.data_type == DataType::Float64)
        .filter_map(|(i, c)| {
            let values = sample.columns().get(i)?.as_primitive_opt::<Float64Type>()?;
            choose_scale(values).map(|scale| FloatEncoding {
                column_id: c.column_id,
                scale,
            })
        })
        .collect()
}

/// Splits f64 values into scaled integers and exceptions.
pub fn encode_floats(values: &Float64Array, scale: u8) -> (Int64Array, Float64Array) {
    let len = values.len();
    let mut ints = Vec::with_capacity(len);
    let mut int_valid = NullBufferBuilder::new(len);
    let mut exc = Vec::new();
    let mut exc_valid = NullBufferBuilder::new(len);
    for i in 0..len {
        if values.is_null(i) {
            ints.push(0);
            int_valid.append_null();
            exc_valid.append_null();
            continue;
        }
        let v = values.value(i);
        match to_decimal(v, scale) {
            Some(m) => {
                ints.push(m);
                int_valid.append_non_null();
                exc_valid.append_null();
            }
            None => {
                ints.push(0);
                int_valid.append_null();
                exc.resize(i, 0.0);
                exc.push(v);
                exc_valid.append_non_null();
            }
        }
    }
    exc.resize(len, 0.0);
    (
        Int64Array::new(ints.into(), int_valid.finish()),
        Float64Array::new(exc.into(), exc_valid.finish()),
    )
}

/// Restores f64 values from scaled integers and exceptions. `Err` if the two columns disagree
/// in length or claim one row twice (a damaged file).
pub fn decode_floats(
    ints: &Int64Array,
    exceptions: &Float64Array,
    scale: u8,
) -> Result<Float64Array, String> {
    let p = *POW10
        .get(usize::from(scale))
        .ok_or_else(|| format!("decimal scale {scale} above {MAX_SCALE}"))?;
    if ints.len() != exceptions.len() {
        return Err("decimal and exception columns differ in length".to_string());
    }
    if exceptions.null_count() == exceptions.len() {
        // No exceptions: one vectorizable pass that keeps the null buffer.
        return Ok(ints.unary::<_, Float64Type>(|m| from_decimal(m, p)));
    }
    let len = ints.len();
    let mut out = Vec::with_capacity(len);
    let mut valid = NullBufferBuilder::new(len);
    for i in 0..len {
        match (ints.is_valid(i), exceptions.is_valid(i)) {
            (true, false) => {
                out.push(from_decimal(ints.value(i), p));
                valid.append_non_null();
            }
            (false, true) => {
                out.push(exceptions.value(i));
                valid.append_non_null();
            }
            (false, false) => {
                out.push(0.0);
                valid.append_null();
            }
            (true, true) => return Err(format!("row {i} is both a decimal and an exception")),
        }
    }
    Ok(Float64Array::new(out.into(), valid.finish()))
}

/// Converts a batch in the region's read schema (all columns) to the file schema.
pub fn encode_batch(
    metadata: &RegionMetadata,
    floats: &[FloatEncoding],
    file_schema: &SchemaRef,
    batch: &RecordBatch,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    let mut exceptions = Vec::with_capacity(floats.len());
    for enc in floats {
        let idx = metadata.column_index_by_id(enc.column_id).ok_or_else(|| {
            arrow_schema::ArrowError::SchemaError(format!("no column {}", enc.column_id))
        })?;
        let slot = columns.get_mut(idx).ok_or_else(|| {
            arrow_schema::ArrowError::SchemaError(format!("batch lacks column {idx}"))
        })?;
        let values = slot.as_primitive_opt::<Float64Type>().ok_or_else(|| {
            arrow_schema::ArrowError::SchemaError(format!("column {} is not f64", enc.column_id))
        })?;
        let (ints, exc) = encode_floats(values, enc.scale);
        *slot = Arc::new(ints);
        exceptions.push(Arc::new(exc) as ArrayRef);
    }
    columns.extend(exceptions);
    RecordBatch::try_new(file_schema.clone(), columns)
}

/// The fuzz target's body (kept here so a normal test replays the corpus): arbitrary bytes as
/// the `mito.sst` metadata, and as decimal and exception columns to decode. Never panics;
/// what decodes re-encodes to the same value.
pub fn fuzz_sst_info(data: &[u8]) -> Result<(), String> {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(info) = SstInfo::from_json(text)
    {
        let again = SstInfo::from_json(&info.to_json().map_err(|e| e.to_string())?)?;
        if again != info {
            return Err("SstInfo round trip differs".to_string());
        }
        let schema = file_schema(&info.region_metadata, &info.floats);
        if schema.fields().is_empty() {
            return Err("empty file schema".to_string());
        }
    }
    // Bytes as (scale, then 9-byte cells: a tag byte and an i64) decimal/exception pairs.
    let Some((scale, rest)) = data.split_first() else {
        return Ok(());
    };
    let mut ints = Vec::new();
    let mut exc = Vec::new();
    for cell in rest.chunks_exact(9) {
        let (tag, value) = cell.split_at(1);
        let raw = i64::from_le_bytes(value.try_into().unwrap_or_default());
        let tag = tag.first().copied().unwrap_or(0);
        ints.push((tag & 1 == 1).then_some(raw));
        exc.push((tag & 2 == 2).then_some(f64::from_bits(raw.cast_unsigned())));
    }
    let ints = Int64Array::from(ints);
    let exc = Float64Array::from(exc);
    if let Ok(values) = decode_floats(&ints, &exc, *scale % (MAX_SCALE + 2)) {
        // Whatever decodes re-encodes to the same bits at the same scale.
        let scale = *scale % (MAX_SCALE + 2);
        let (i2, e2) = encode_floats(&values, scale);
        let back = decode_floats(&i2, &e2, scale)?;
        let same = values
            .iter()
            .zip(back.iter())
            .all(|(a, b)| a.map(f64::to_bits) == b.map(f64::to_bits));
        if !same {
            return Err("float re-encoding differs".to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn round_trip(values: Vec<Option<f64>>, scale: u8) -> Vec<Option<u64>> {
        let arr = Float64Array::from(values);
        let (ints, exc) = encode_floats(&arr, scale);
        let back = decode_floats(&ints, &exc, scale).unwrap();
        back.iter().map(|v| v.map(f64::to_bits)).collect()
    }

    fn bits(values: &[Option<f64>]) -> Vec<Option<u64>> {
        values.iter().map(|v| v.map(f64::to_bits)).collect()
    }

    #[test]
    fn special_values_are_exact() {
        let values = vec![
            Some(37.41),
            Some(f64::NAN),
            Some(-f64::NAN),
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
            Some(-0.0),
            Some(0.0),
            None,
            Some(0.1 + 0.2),
            Some(f64::MAX),
            Some(f64::MIN_POSITIVE),
            Some(5e-324),
            Some(9.3e18),
            Some(-100.0),
            Some(1e-9),
        ];
        for scale in 0..=MAX_SCALE {
            assert_eq!(
                round_trip(values.clone(), scale),
                bits(&values),
                "scale {scale}"
            );
        }
    }

    #[test]
    fn short_decimals_become_integers() {
        let arr = Float64Array::from(vec![37.41, 0.5, 100.0, 0.29]);
        assert_eq!(choose_scale(&arr), Some(2));
        let (ints, exc) = encode_floats(&arr, 2);
        assert_eq!(ints.values(), &[3741, 50, 10000, 29]);
        assert_eq!(exc.null_count(), 4);
        // Mostly random bits: plain f64.
        let noisy = Float64Array::from((1..100).map(|i| f64::from(i) / 7.0).collect::<Vec<_>>());
        assert_eq!(choose_scale(&noisy), None);
        // Integers: scale 0; all null: anything cheap.
        assert_eq!(choose_scale(&Float64Array::from(vec![1.0, -3.0])), Some(0));
        assert_eq!(choose_scale(&Float64Array::from(vec![None, None])), Some(0));
    }

    #[test]
    fn damaged_pairs_are_errors() {
        let ints = Int64Array::from(vec![Some(1), None]);
        let both = Float64Array::from(vec![Some(1.0), None]);
        assert!(decode_floats(&ints, &both, 2).is_err());
        let short = Float64Array::from(vec![None]);
        assert!(decode_floats(&ints, &short, 2).is_err());
        assert!(decode_floats(&ints, &Float64Array::from(vec![None, None]), 10).is_err());
    }

    #[test]
    fn fuzz_corpus_replays() {
        test_util::replay_corpus("sst_info", 1, fuzz_sst_info);
    }

    proptest! {
        #[test]
        fn every_f64_round_trips(raw in proptest::collection::vec(proptest::option::of(any::<u64>()), 0..64), scale in 0..=MAX_SCALE) {
            let values: Vec<Option<f64>> = raw.iter().map(|v| v.map(f64::from_bits)).collect();
            prop_assert_eq!(round_trip(values.clone(), scale), bits(&values));
        }

        #[test]
        fn decimals_round_trip(raw in proptest::collection::vec((-1_000_000i64..1_000_000, 0u8..=MAX_SCALE), 1..64), scale in 0..=MAX_SCALE) {
            let values: Vec<Option<f64>> = raw
                .iter()
                .map(|(m, s)| Some(from_decimal(*m, POW10[usize::from(*s)])))
                .collect();
            prop_assert_eq!(round_trip(values.clone(), scale), bits(&values));
            // At the values' own largest scale nothing is an exception.
            let max = raw.iter().map(|(_, s)| *s).max().unwrap_or(0);
            let (_, exc) = encode_floats(&Float64Array::from(values), max);
            prop_assert_eq!(exc.null_count(), exc.len());
        }
    }
}
