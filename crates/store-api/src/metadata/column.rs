//! Columns: their semantic role, their type (with a frozen serialized name) and defaults.

use std::fmt;

use arrow_schema::{DataType, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::ColumnId;

/// The role of a column in a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SemanticType {
    /// Part of the primary key (a series identifier).
    Tag,
    /// A value column.
    Field,
    /// The time index: exactly one per region, NOT NULL.
    Timestamp,
}

impl fmt::Display for SemanticType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SemanticType::Tag => "tag",
            SemanticType::Field => "field",
            SemanticType::Timestamp => "timestamp",
        })
    }
}

/// A constant value, used for column defaults.
///
/// Serialized as `{"type": "<kind>", "value": ..}`; floats must be finite (JSON cannot hold
/// NaN or infinities).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer (fits any integer column whose range holds it).
    Int(i64),
    /// An unsigned integer (fits any integer column whose range holds it).
    #[serde(rename = "uint")]
    UInt(u64),
    /// A finite float.
    Float(f64),
    /// UTF-8 text.
    String(String),
    /// Raw bytes.
    Binary(Vec<u8>),
}

impl Value {
    /// Whether this value can be stored in a column of `data_type` (`None` if it can, else
    /// the reason why not).
    pub fn incompatibility(&self, data_type: &DataType, nullable: bool) -> Option<String> {
        let fits_int = |v: i128| -> bool {
            let (min, max): (i128, i128) = match data_type {
                DataType::Int8 => (i8::MIN.into(), i8::MAX.into()),
                DataType::Int16 => (i16::MIN.into(), i16::MAX.into()),
                DataType::Int32 => (i32::MIN.into(), i32::MAX.into()),
                DataType::Int64 => (i64::MIN.into(), i64::MAX.into()),
                DataType::UInt8 => (0, u8::MAX.into()),
                DataType::UInt16 => (0, u16::MAX.into()),
                DataType::UInt32 => (0, u32::MAX.into()),
                DataType::UInt64 => (0, u64::MAX.into()),
                _ => return false,
            };
            (min..=max).contains(&v)
        };
        let ok = match (self, data_type) {
            (Value::Null, _) => {
                return (!nullable).then(|| "a NOT NULL column cannot default to null".to_string());
            }
            (Value::Bool(_), DataType::Boolean) => true,
            (Value::Int(v), _) => fits_int(i128::from(*v)),
            (Value::UInt(v), _) => fits_int(i128::from(*v)),
            (Value::Float(v), DataType::Float64) => v.is_finite(),
            (Value::Float(v), DataType::Float32) => v.is_finite() && v.abs() <= f64::from(f32::MAX),
            (Value::String(_), DataType::Utf8) => true,
            (Value::Binary(_), DataType::Binary) => true,
            _ => false,
        };
        (!ok).then(|| {
            format!(
                "default {self:?} does not fit type {}",
                type_name(data_type)
            )
        })
    }
}

/// Metadata of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnMetadata {
    /// Unique, immutable id inside the region.
    pub column_id: ColumnId,
    /// User-visible name; unique inside the region; never starts with `__`.
    pub name: String,
    /// Arrow type; one of the types listed in [`SUPPORTED_TYPES`], stored under its frozen name.
    #[serde(with = "type_serde")]
    pub data_type: DataType,
    /// Whether the column may hold nulls (never for the time index).
    pub nullable: bool,
    /// Tag, field or time index.
    pub semantic_type: SemanticType,
    /// Value used when a write or an older file lacks the column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

impl ColumnMetadata {
    /// A nullable column without default.
    pub fn new(
        column_id: ColumnId,
        name: impl Into<String>,
        data_type: DataType,
        semantic_type: SemanticType,
    ) -> Self {
        Self {
            column_id,
            name: name.into(),
            data_type,
            nullable: semantic_type != SemanticType::Timestamp,
            semantic_type,
            default: None,
        }
    }

    /// Sets nullability.
    pub fn with_nullable(mut self, nullable: bool) -> Self {
        self.nullable = nullable;
        self
    }

    /// Sets the default value.
    pub fn with_default(mut self, default: Value) -> Self {
        self.default = Some(default);
        self
    }
}

/// Every Arrow type a column may have, with its frozen serialized name. The names are part
/// of the on-disk format (manifest, SST metadata): never rename one.
pub const SUPPORTED_TYPES: &[(&str, DataType)] = &[
    ("bool", DataType::Boolean),
    ("int8", DataType::Int8),
    ("int16", DataType::Int16),
    ("int32", DataType::Int32),
    ("int64", DataType::Int64),
    ("uint8", DataType::UInt8),
    ("uint16", DataType::UInt16),
    ("uint32", DataType::UInt32),
    ("uint64", DataType::UInt64),
    ("float32", DataType::Float32),
    ("float64", DataType::Float64),
    ("string", DataType::Utf8),
    ("binary", DataType::Binary),
    (
        "timestamp_second",
        DataType::Timestamp(TimeUnit::Second, None),
    ),
    (
        "timestamp_millisecond",
        DataType::Timestamp(TimeUnit::Millisecond, None),
    ),
    (
        "timestamp_microsecond",
        DataType::Timestamp(TimeUnit::Microsecond, None),
    ),
    (
        "timestamp_nanosecond",
        DataType::Timestamp(TimeUnit::Nanosecond, None),
    ),
];

/// The frozen name of a supported type, or its Arrow spelling for an unsupported one (for
/// error messages).
pub fn type_name(data_type: &DataType) -> String {
    SUPPORTED_TYPES
        .iter()
        .find(|(_, t)| t == data_type)
        .map_or_else(
            || format!("unsupported({data_type})"),
            |(n, _)| (*n).to_string(),
        )
}

/// The Arrow type of a frozen name.
pub fn type_from_name(name: &str) -> Option<DataType> {
    SUPPORTED_TYPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| t.clone())
}

/// Whether `data_type` is allowed for a column of `semantic_type` (`None` if it is, else why not).
pub(crate) fn type_role_error(
    semantic_type: SemanticType,
    data_type: &DataType,
) -> Option<&'static str> {
    let supported = SUPPORTED_TYPES.iter().any(|(_, t)| t == data_type);
    if !supported {
        return Some("type not supported");
    }
    let is_ts = matches!(data_type, DataType::Timestamp(_, None));
    match semantic_type {
        SemanticType::Timestamp if !is_ts => Some("the time index must be a timestamp type"),
        SemanticType::Tag if !(data_type == &DataType::Utf8 || data_type.is_integer()) => {
            Some("a tag must be a string or an integer")
        }
        SemanticType::Field if is_ts => Some("timestamp fields are not supported"),
        _ => None,
    }
}

mod type_serde {
    use arrow_schema::DataType;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _, ser::Error as _};

    use super::{SUPPORTED_TYPES, type_from_name};

    pub(super) fn serialize<S: Serializer>(t: &DataType, s: S) -> Result<S::Ok, S::Error> {
        match SUPPORTED_TYPES.iter().find(|(_, st)| st == t) {
            Some((name, _)) => s.serialize_str(name),
            None => Err(S::Error::custom(format!("unsupported column type {t}"))),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DataType, D::Error> {
        let name = String::deserialize(d)?;
        type_from_name(&name)
            .ok_or_else(|| D::Error::custom(format!("unknown column type '{name}'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_type_round_trips_by_name() {
        for (name, t) in SUPPORTED_TYPES {
            assert_eq!(type_name(t), *name);
            assert_eq!(type_from_name(name).as_ref(), Some(t));
        }
        assert_eq!(type_from_name("decimal"), None);
        assert_eq!(type_name(&DataType::Date32), "unsupported(Date32)");
    }

    #[test]
    fn defaults_must_fit_their_column() {
        assert!(
            Value::Int(127)
                .incompatibility(&DataType::Int8, true)
                .is_none()
        );
        assert!(
            Value::Int(128)
                .incompatibility(&DataType::Int8, true)
                .is_some()
        );
        assert!(
            Value::Int(-1)
                .incompatibility(&DataType::UInt64, true)
                .is_some()
        );
        assert!(
            Value::UInt(u64::MAX)
                .incompatibility(&DataType::UInt64, true)
                .is_none()
        );
        assert!(
            Value::UInt(u64::MAX)
                .incompatibility(&DataType::Int64, true)
                .is_some()
        );
        assert!(
            Value::Float(f64::NAN)
                .incompatibility(&DataType::Float64, true)
                .is_some()
        );
        assert!(
            Value::Float(1e300)
                .incompatibility(&DataType::Float32, true)
                .is_some()
        );
        assert!(
            Value::Float(1.5)
                .incompatibility(&DataType::Float32, true)
                .is_none()
        );
        assert!(Value::Null.incompatibility(&DataType::Utf8, true).is_none());
        assert!(
            Value::Null
                .incompatibility(&DataType::Utf8, false)
                .is_some()
        );
        assert!(
            Value::String("x".into())
                .incompatibility(&DataType::Binary, true)
                .is_some()
        );
        assert!(
            Value::Bool(true)
                .incompatibility(&DataType::Boolean, false)
                .is_none()
        );
    }

    #[test]
    fn roles_restrict_types() {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        assert!(type_role_error(SemanticType::Timestamp, &ts).is_none());
        assert!(type_role_error(SemanticType::Timestamp, &DataType::Int64).is_some());
        assert!(
            type_role_error(
                SemanticType::Timestamp,
                &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
            )
            .is_some()
        );
        assert!(type_role_error(SemanticType::Tag, &DataType::Utf8).is_none());
        assert!(type_role_error(SemanticType::Tag, &DataType::UInt32).is_none());
        assert!(type_role_error(SemanticType::Tag, &DataType::Float64).is_some());
        assert!(type_role_error(SemanticType::Field, &DataType::Float64).is_none());
        assert!(type_role_error(SemanticType::Field, &ts).is_some());
        assert!(type_role_error(SemanticType::Field, &DataType::Date32).is_some());
    }
}
