use arrow_schema::{DataType, TimeUnit};

use super::*;
use crate::error::Error;

fn ts_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

/// host (tag), region (tag), ts (time index), cpu (field f64), note (field string, default).
fn cpu_builder() -> RegionMetadataBuilder {
    let mut b = RegionMetadataBuilder::new(RegionId::new(1024, 1));
    b.push_column(ColumnMetadata::new(
        0,
        "host",
        DataType::Utf8,
        SemanticType::Tag,
    ))
    .push_column(ColumnMetadata::new(
        1,
        "region",
        DataType::Utf8,
        SemanticType::Tag,
    ))
    .push_column(ColumnMetadata::new(
        2,
        "ts",
        ts_ms(),
        SemanticType::Timestamp,
    ))
    .push_column(ColumnMetadata::new(
        3,
        "cpu",
        DataType::Float64,
        SemanticType::Field,
    ))
    .push_column(
        ColumnMetadata::new(4, "note", DataType::Utf8, SemanticType::Field)
            .with_nullable(false)
            .with_default(Value::String("none".into())),
    )
    .primary_key(vec![1, 0]);
    b
}

fn reason_of(err: Error) -> String {
    err.to_string()
}

#[test]
fn builds_and_exposes_columns() {
    let m = cpu_builder().build().unwrap();
    assert_eq!(m.region_id(), RegionId::new(1024, 1));
    assert_eq!(m.time_index_column().name, "ts");
    assert_eq!(m.primary_key(), &[1, 0]);
    let tags: Vec<_> = m.primary_key_columns().map(|c| c.name.as_str()).collect();
    assert_eq!(tags, ["region", "host"]);
    let fields: Vec<_> = m.field_columns().map(|c| c.name.as_str()).collect();
    assert_eq!(fields, ["cpu", "note"]);
    assert_eq!(m.schema().fields().len(), 5);
    assert!(!m.schema().field(2).is_nullable());
    assert_eq!(m.column_by_name("cpu").unwrap().column_id, 3);
    assert_eq!(m.column_index_by_id(4), Some(4));
    assert!(m.column_by_id(99).is_none());
    assert_eq!(m.max_column_id(), 4);
}

#[test]
fn rejects_missing_or_duplicate_time_index() {
    let mut b = RegionMetadataBuilder::new(RegionId::new(1, 1));
    b.push_column(ColumnMetadata::new(
        0,
        "v",
        DataType::Float64,
        SemanticType::Field,
    ));
    assert!(reason_of(b.build().unwrap_err()).contains("no time index"));

    let mut b = cpu_builder();
    b.push_column(ColumnMetadata::new(
        9,
        "ts2",
        ts_ms(),
        SemanticType::Timestamp,
    ));
    assert!(reason_of(b.build().unwrap_err()).contains("more than one time index: 'ts' and 'ts2'"));

    let empty = RegionMetadataBuilder::new(RegionId::new(1, 1))
        .build()
        .unwrap_err();
    assert!(reason_of(empty).contains("at least a time index"));
}

#[test]
fn rejects_nullable_or_non_timestamp_time_index() {
    let mut b = RegionMetadataBuilder::new(RegionId::new(1, 1));
    b.push_column(
        ColumnMetadata::new(0, "ts", ts_ms(), SemanticType::Timestamp).with_nullable(true),
    );
    assert!(reason_of(b.build().unwrap_err()).contains("must be NOT NULL"));

    let mut b = RegionMetadataBuilder::new(RegionId::new(1, 1));
    b.push_column(ColumnMetadata::new(
        0,
        "ts",
        DataType::Int64,
        SemanticType::Timestamp,
    ));
    let err = b.build().unwrap_err();
    assert!(matches!(err, Error::InvalidColumnType { .. }), "{err}");
    assert!(err.to_string().contains("'ts' (id 0)"), "{err}");
}

#[test]
fn rejects_duplicate_names_and_ids() {
    let mut b = cpu_builder();
    b.push_column(ColumnMetadata::new(
        7,
        "cpu",
        DataType::Float64,
        SemanticType::Field,
    ));
    assert!(reason_of(b.build().unwrap_err()).contains("duplicate column name 'cpu'"));

    let mut b = cpu_builder();
    b.push_column(ColumnMetadata::new(
        3,
        "mem",
        DataType::Float64,
        SemanticType::Field,
    ));
    assert!(reason_of(b.build().unwrap_err()).contains("duplicate column id 3"));
}

#[test]
fn rejects_reserved_empty_and_long_names() {
    for name in [
        PRIMARY_KEY_COLUMN,
        SEQUENCE_COLUMN,
        OP_TYPE_COLUMN,
        "__mine",
    ] {
        let mut b = cpu_builder();
        b.push_column(ColumnMetadata::new(
            8,
            name,
            DataType::Int64,
            SemanticType::Field,
        ));
        assert!(
            reason_of(b.build().unwrap_err()).contains("is reserved"),
            "{name}"
        );
    }
    let mut b = cpu_builder();
    b.push_column(ColumnMetadata::new(
        8,
        "",
        DataType::Int64,
        SemanticType::Field,
    ));
    assert!(reason_of(b.build().unwrap_err()).contains("empty name"));
    let mut b = cpu_builder();
    b.push_column(ColumnMetadata::new(
        8,
        "x".repeat(256),
        DataType::Int64,
        SemanticType::Field,
    ));
    assert!(reason_of(b.build().unwrap_err()).contains("longer than 255"));
}

#[test]
fn primary_key_must_list_exactly_the_tags() {
    let mut b = cpu_builder();
    b.primary_key(vec![0]);
    assert!(reason_of(b.build().unwrap_err()).contains("tag column 'region' is missing"));

    let mut b = cpu_builder();
    b.primary_key(vec![0, 1, 3]);
    assert!(reason_of(b.build().unwrap_err()).contains("'cpu' is a field, not a tag"));

    let mut b = cpu_builder();
    b.primary_key(vec![0, 1, 0]);
    assert!(reason_of(b.build().unwrap_err()).contains("lists 'host' twice"));

    let mut b = cpu_builder();
    b.primary_key(vec![0, 1, 42]);
    assert!(reason_of(b.build().unwrap_err()).contains("unknown column id 42"));
}

#[test]
fn rejects_bad_types_and_defaults() {
    let mut b = cpu_builder();
    b.push_column(ColumnMetadata::new(
        8,
        "f",
        DataType::Float64,
        SemanticType::Tag,
    ));
    b.primary_key(vec![1, 0, 8]);
    assert!(reason_of(b.build().unwrap_err()).contains("a tag must be a string or an integer"));

    let mut b = cpu_builder();
    b.push_column(ColumnMetadata::new(
        8,
        "d",
        DataType::Date32,
        SemanticType::Field,
    ));
    assert!(reason_of(b.build().unwrap_err()).contains("type not supported"));

    let mut b = cpu_builder();
    b.push_column(
        ColumnMetadata::new(8, "n", DataType::Int8, SemanticType::Field)
            .with_default(Value::Int(300)),
    );
    assert!(reason_of(b.build().unwrap_err()).contains("does not fit type int8"));

    let mut b = cpu_builder();
    b.push_column(
        ColumnMetadata::new(8, "n", DataType::Int8, SemanticType::Field)
            .with_nullable(false)
            .with_default(Value::Null),
    );
    assert!(reason_of(b.build().unwrap_err()).contains("cannot default to null"));
}

#[test]
fn remove_column_drops_it_from_the_primary_key() {
    let m = cpu_builder().build().unwrap();
    let mut b = RegionMetadataBuilder::from_existing(&m);
    let removed = b.remove_column("region").unwrap();
    assert_eq!(removed.column_id, 1);
    assert!(b.remove_column("nope").is_none());
    let m2 = b.schema_version(1).build().unwrap();
    assert_eq!(m2.primary_key(), &[0]);
    assert_eq!(m2.schema_version(), 1);
}

#[test]
fn json_round_trip_keeps_everything() {
    let m = cpu_builder().build().unwrap();
    let json = m.to_json().unwrap();
    let back = RegionMetadata::from_json(&json).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.time_index_column().name, "ts");
}

#[test]
fn decoding_validates() {
    let bad = br#"{"region_id":1,"column_metadatas":[{"column_id":0,"name":"v","data_type":"float64","nullable":true,"semantic_type":"field"}],"primary_key":[],"schema_version":0}"#;
    let err = RegionMetadata::from_json(bad).unwrap_err();
    assert!(err.to_string().contains("no time index"), "{err}");

    let unknown_type = br#"{"region_id":1,"column_metadatas":[{"column_id":0,"name":"ts","data_type":"timestamp_fortnight","nullable":false,"semantic_type":"timestamp"}],"primary_key":[],"schema_version":0}"#;
    let err = RegionMetadata::from_json(unknown_type).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown column type 'timestamp_fortnight'"),
        "{err}"
    );

    assert!(RegionMetadata::from_json(b"{").is_err());
    assert!(RegionMetadata::from_json(b"").is_err());
}

/// Frozen documents: written once by an earlier version, they must decode forever.
#[test]
fn frozen_fixture_v0_decodes() {
    let bytes = include_bytes!("../../tests/fixtures/region_metadata_v0.json");
    let m = RegionMetadata::from_json(bytes).unwrap();
    assert_eq!(m, cpu_builder().build().unwrap());
}

/// The current encoding of the fixture's metadata is byte-identical to the frozen file, so any
/// change to the encoding is noticed (and must come with a new fixture, keeping the old one).
#[test]
fn current_encoding_matches_frozen_fixture() {
    let frozen = include_str!("../../tests/fixtures/region_metadata_v0.json");
    let current = serde_json::to_string_pretty(&cpu_builder().build().unwrap()).unwrap();
    assert_eq!(current.trim(), frozen.trim());
}

#[test]
fn frozen_fixture_with_every_type_decodes() {
    let bytes = include_bytes!("../../tests/fixtures/region_metadata_all_types_v0.json");
    let m = RegionMetadata::from_json(bytes).unwrap();
    // Every supported type except the three timestamp units a field cannot have.
    assert_eq!(m.column_metadatas().len(), SUPPORTED_TYPES.len() - 3);
    for c in m.column_metadatas() {
        assert_eq!(format!("c_{}", type_name(&c.data_type)), c.name);
    }
    assert_eq!(m.time_index_column().name, "c_timestamp_nanosecond");
    assert_eq!(
        m.column_by_name("c_uint64").unwrap().default,
        Some(Value::UInt(u64::MAX))
    );
    assert_eq!(m.schema_version(), 7);
}

mod props {
    use proptest::prelude::*;

    use super::*;

    fn field_type() -> impl Strategy<Value = DataType> {
        prop::sample::select(
            SUPPORTED_TYPES
                .iter()
                .map(|(_, t)| t.clone())
                .filter(|t| !matches!(t, DataType::Timestamp(..)))
                .collect::<Vec<_>>(),
        )
    }

    proptest! {
        /// Any valid metadata survives a JSON round trip unchanged.
        #[test]
        fn valid_metadata_round_trips(
            n_tags in 0usize..5,
            field_types in prop::collection::vec(field_type(), 0..8),
            version in any::<u64>(),
            table in any::<u32>(),
            number in any::<u32>(),
        ) {
            let mut b = RegionMetadataBuilder::new(RegionId::new(table, number));
            let mut id = 0;
            let mut key = Vec::new();
            for i in 0..n_tags {
                b.push_column(ColumnMetadata::new(id, format!("t{i}"), DataType::Utf8, SemanticType::Tag));
                key.push(id);
                id += 1;
            }
            b.push_column(ColumnMetadata::new(id, "ts", DataType::Timestamp(TimeUnit::Nanosecond, None), SemanticType::Timestamp));
            id += 1;
            for (i, t) in field_types.into_iter().enumerate() {
                b.push_column(ColumnMetadata::new(id, format!("f{i}"), t, SemanticType::Field));
                id += 1;
            }
            key.reverse();
            let m = b.primary_key(key).schema_version(version).build().unwrap();
            let back = RegionMetadata::from_json(&m.to_json().unwrap()).unwrap();
            prop_assert_eq!(back, m);
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn arbitrary_bytes_do_not_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = RegionMetadata::from_json(&bytes);
        }
    }
}
