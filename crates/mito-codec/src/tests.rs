use std::sync::Arc;

use arrow_array::{Int32Array, StringArray, UInt16Array};
use proptest::prelude::*;

use super::*;

fn enc(codec: &PrimaryKeyCodec, values: &[KeyValue]) -> Vec<u8> {
    let mut out = Vec::new();
    codec.encode(values, &mut out).unwrap();
    out
}

fn s(v: &str) -> KeyValue {
    KeyValue::String(v.to_string())
}

#[test]
fn frozen_bytes() {
    let codec = PrimaryKeyCodec::new(vec![
        KeyType::String,
        KeyType::String,
        KeyType::Int(4),
        KeyType::UInt(2),
    ]);
    let key = enc(
        &codec,
        &[
            s("host_1"),
            KeyValue::Null,
            KeyValue::Int(42),
            KeyValue::UInt(7),
        ],
    );
    assert_eq!(
        key,
        [
            0x01, b'h', b'o', b's', b't', b'_', b'1', 0x00, 0x00, // "host_1"
            0x00, // null
            0x01, 0x80, 0x00, 0x00, 0x2a, // 42i32, sign bit flipped
            0x01, 0x00, 0x07, // 7u16
        ]
    );
    assert_eq!(
        enc(&PrimaryKeyCodec::new(vec![KeyType::String]), &[s("a\0b")]),
        [0x01, b'a', 0x00, 0xFF, b'b', 0x00, 0x00]
    );
    assert_eq!(
        enc(
            &PrimaryKeyCodec::new(vec![KeyType::Int(1)]),
            &[KeyValue::Int(-1)]
        ),
        [0x01, 0x7F]
    );
}

#[test]
fn order_edge_cases() {
    let codec = PrimaryKeyCodec::new(vec![KeyType::String, KeyType::Int(8)]);
    let ordered = [
        vec![KeyValue::Null, KeyValue::Null],
        vec![KeyValue::Null, KeyValue::Int(i64::MIN)],
        vec![s(""), KeyValue::Null],
        vec![s(""), KeyValue::Int(-1)],
        vec![s(""), KeyValue::Int(0)],
        vec![s(""), KeyValue::Int(i64::MAX)],
        vec![s("\0"), KeyValue::Null],
        vec![s("\0\0"), KeyValue::Null],
        vec![s("\x01"), KeyValue::Null],
        vec![s("a"), KeyValue::Null],
        vec![s("a\0"), KeyValue::Null],
        vec![s("a\x01"), KeyValue::Null],
        vec![s("ab"), KeyValue::Null],
        vec![s("b"), KeyValue::Null],
        vec![s("é"), KeyValue::Null],
    ];
    for pair in ordered.windows(2) {
        assert!(pair[0] < pair[1]);
        assert!(
            enc(&codec, &pair[0]) < enc(&codec, &pair[1]),
            "{:?} vs {:?}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn type_mismatches_are_errors() {
    let codec = PrimaryKeyCodec::new(vec![KeyType::Int(1)]);
    let mut out = Vec::new();
    assert!(codec.encode(&[KeyValue::Int(300)], &mut out).is_err());
    assert!(codec.encode(&[s("x")], &mut out).is_err());
    assert!(codec.encode(&[], &mut out).is_err());
    assert!(KeyType::from_arrow(&DataType::Float64).is_err());
}

#[test]
fn decode_errors_name_the_offset() {
    let codec = PrimaryKeyCodec::new(vec![KeyType::String, KeyType::Int(4)]);
    let key = enc(&codec, &[s("ab"), KeyValue::Int(5)]);
    for cut in 0..key.len() {
        let err = codec.decode(&key[..cut]).unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "cut {cut}: {err}");
    }
    let mut trailing = key.clone();
    trailing.push(0);
    assert_eq!(
        codec.decode(&trailing),
        Err(Error::Decode {
            offset: key.len(),
            reason: "trailing bytes after the last element"
        })
    );
    assert!(codec.decode(&[0x02]).is_err());
    assert!(codec.decode(&[0x01, 0x00, 0x07]).is_err(), "bad escape");
    assert!(
        codec.decode(&[0x01, 0xC3, 0x00, 0x00, 0x00]).is_err(),
        "not UTF-8"
    );
    assert_eq!(
        Error::Decode {
            offset: 0,
            reason: "x"
        }
        .kind(),
        ErrorKind::Corrupted
    );
}

#[test]
fn encode_row_matches_encode() {
    let codec = PrimaryKeyCodec::new(vec![KeyType::String, KeyType::Int(4), KeyType::UInt(2)]);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![Some("a"), None])),
        Arc::new(Int32Array::from(vec![Some(-3), Some(9)])),
        Arc::new(UInt16Array::from(vec![None, Some(65535)])),
    ];
    for (row, want) in [
        vec![s("a"), KeyValue::Int(-3), KeyValue::Null],
        vec![KeyValue::Null, KeyValue::Int(9), KeyValue::UInt(65535)],
    ]
    .into_iter()
    .enumerate()
    {
        let mut out = Vec::new();
        codec.encode_row(&cols, row, &mut out).unwrap();
        assert_eq!(out, enc(&codec, &want));
        assert_eq!(codec.decode(&out).unwrap(), want);
    }
    let mut out = Vec::new();
    assert!(codec.encode_row(&cols, 5, &mut out).is_err());
    assert!(codec.encode_row(&cols[..2], 0, &mut out).is_err());
    let wrong: Vec<ArrayRef> = vec![cols[1].clone(), cols[0].clone(), cols[2].clone()];
    assert!(codec.encode_row(&wrong, 0, &mut out).is_err());
}

/// Replays the checked-in cargo-fuzz corpus (see `fuzz/`) as a normal test.
#[test]
fn fuzz_corpus_replays() {
    test_util::replay_corpus("pk_codec", 1, |bytes| {
        fuzz_decode(bytes);
        Ok(())
    });
}

fn key_type() -> impl Strategy<Value = KeyType> {
    prop_oneof![
        Just(KeyType::String),
        prop::sample::select(vec![1u8, 2, 4, 8]).prop_map(KeyType::Int),
        prop::sample::select(vec![1u8, 2, 4, 8]).prop_map(KeyType::UInt),
    ]
}

fn value_of(t: KeyType) -> BoxedStrategy<KeyValue> {
    let v = match t {
        KeyType::String => prop_oneof![
            "[a-c\u{0}\u{1}é]{0,4}".prop_map(KeyValue::String),
            ".{0,12}".prop_map(KeyValue::String)
        ]
        .boxed(),
        KeyType::Int(w) => {
            let bits = u32::from(w) * 8;
            let (min, max) = if bits == 64 {
                (i64::MIN, i64::MAX)
            } else {
                (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
            };
            prop_oneof![Just(min), Just(max), Just(0i64), min..=max]
                .prop_map(KeyValue::Int)
                .boxed()
        }
        KeyType::UInt(w) => {
            let max = if w == 8 {
                u64::MAX
            } else {
                (1u64 << (u32::from(w) * 8)) - 1
            };
            prop_oneof![Just(0u64), Just(max), 0..=max]
                .prop_map(KeyValue::UInt)
                .boxed()
        }
    };
    prop_oneof![1 => Just(KeyValue::Null), 6 => v].boxed()
}

fn tuples() -> impl Strategy<Value = (Vec<KeyType>, Vec<KeyValue>, Vec<KeyValue>)> {
    prop::collection::vec(key_type(), 1..5).prop_flat_map(|types| {
        let a: Vec<_> = types.iter().map(|t| value_of(*t)).collect();
        let b: Vec<_> = types.iter().map(|t| value_of(*t)).collect();
        (Just(types), a, b)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_and_order((types, a, b) in tuples()) {
        let codec = PrimaryKeyCodec::new(types);
        let (ka, kb) = (enc(&codec, &a), enc(&codec, &b));
        prop_assert_eq!(codec.decode(&ka).unwrap(), a.clone());
        prop_assert_eq!(codec.decode(&kb).unwrap(), b.clone());
        prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
    }

    #[test]
    fn truncated_keys_are_errors((types, a, _b) in tuples(), cut in any::<prop::sample::Index>()) {
        let codec = PrimaryKeyCodec::new(types);
        let key = enc(&codec, &a);
        let cut = cut.index(key.len());
        prop_assert!(codec.decode(&key[..cut]).is_err());
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        fuzz_decode(&bytes);
    }
}

fn meta_with_tags(
    tags: &[(
        u32,
        &str,
        arrow_schema::DataType,
        Option<store_api::metadata::Value>,
    )],
) -> RegionMetadata {
    use store_api::RegionId;
    use store_api::metadata::{ColumnMetadata, RegionMetadataBuilder, SemanticType};
    let mut b = RegionMetadataBuilder::new(RegionId::new(1, 1));
    b.push_column(ColumnMetadata::new(
        0,
        "ts",
        arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, None),
        SemanticType::Timestamp,
    ));
    let mut key = Vec::new();
    for (id, name, t, default) in tags {
        let mut c = ColumnMetadata::new(*id, *name, t.clone(), SemanticType::Tag);
        if let Some(d) = default {
            c = c.with_default(d.clone());
        }
        b.push_column(c);
        key.push(*id);
    }
    b.primary_key(key).build().unwrap()
}

#[test]
fn keys_of_an_older_key_extend_to_the_new_one() {
    use arrow_schema::DataType;
    use store_api::metadata::Value;
    let old = meta_with_tags(&[(1, "host", DataType::Utf8, None)]);
    let new = meta_with_tags(&[
        (1, "host", DataType::Utf8, None),
        (2, "dc", DataType::Utf8, None),
        (3, "rack", DataType::UInt16, Some(Value::Int(7))),
    ]);
    let suffix = PrimaryKeyCodec::appended_key_suffix(&old, &new).unwrap();
    let old_codec = PrimaryKeyCodec::from_metadata(&old).unwrap();
    let new_codec = PrimaryKeyCodec::from_metadata(&new).unwrap();
    // An old key plus the suffix is the new key of (host, null, 7), and decodes as such.
    let mut a = enc(&old_codec, &[s("a")]);
    a.extend_from_slice(&suffix);
    assert_eq!(
        a,
        enc(&new_codec, &[s("a"), KeyValue::Null, KeyValue::UInt(7)])
    );
    assert_eq!(
        new_codec.decode(&a).unwrap(),
        vec![s("a"), KeyValue::Null, KeyValue::UInt(7)]
    );
    // Order among old keys is kept.
    let mut b = enc(&old_codec, &[s("a\u{0}")]);
    b.extend_from_slice(&suffix);
    let mut c = enc(&old_codec, &[s("ab")]);
    c.extend_from_slice(&suffix);
    assert!(a < b && b < c);
    // No change: empty suffix. A key that does not extend the old one: an error.
    assert!(
        PrimaryKeyCodec::appended_key_suffix(&new, &new)
            .unwrap()
            .is_empty()
    );
    assert!(PrimaryKeyCodec::appended_key_suffix(&new, &old).is_err());
}
