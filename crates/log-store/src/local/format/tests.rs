use proptest::prelude::*;

use super::*;

fn segment(records: &[(u64, u64, Vec<u8>)]) -> Vec<u8> {
    let mut buf = encode_header(7).to_vec();
    for (region, entry, data) in records {
        encode_record(RegionId::from_u64(*region), *entry, data, &mut buf);
    }
    buf
}

fn three() -> Vec<(u64, u64, Vec<u8>)> {
    vec![
        (1, 1, b"hello".to_vec()),
        (2, 1, vec![0u8; 100]),
        (1, 2, b"world!".to_vec()),
    ]
}

#[test]
fn header_round_trip_and_errors() {
    let h = encode_header(42);
    assert_eq!(
        decode_header(&h),
        Ok(SegmentHeader {
            version: FORMAT_VERSION,
            segment_id: 42
        })
    );
    assert_eq!(
        decode_header(&h[..10]),
        Err(HeaderError::Incomplete { len: 10 })
    );
    let mut bad = h;
    bad[0] ^= 1;
    assert_eq!(decode_header(&bad), Err(HeaderError::BadMagic));
    let mut bad = h;
    bad[13] ^= 1;
    assert_eq!(decode_header(&bad), Err(HeaderError::BadChecksum));
}

#[test]
fn unsupported_version_is_named() {
    let mut h = encode_header(1);
    h[8..10].copy_from_slice(&9u16.to_le_bytes());
    let crc = crc32c::crc32c(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        decode_header(&h),
        Err(HeaderError::UnsupportedVersion { version: 9 })
    );
}

/// Found by the fuzzer: a header with a valid checksum but nonzero reserved flags was
/// accepted (and re-encoded differently). Version 1 defines no flags, so it is an error.
#[test]
fn unknown_header_flags_are_rejected() {
    let mut h = encode_header(1);
    h[10..12].copy_from_slice(&0x4d00u16.to_le_bytes());
    let crc = crc32c::crc32c(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        decode_header(&h),
        Err(HeaderError::UnsupportedFlags { flags: 0x4d00 })
    );
    assert!(
        HeaderError::UnsupportedFlags { flags: 0x4d00 }
            .to_string()
            .contains("0x4d00")
    );
}

/// A frozen segment: these bytes were written by format version 1 and must always decode.
#[test]
fn frozen_v1_segment_decodes() {
    let frozen: &[u8] = &[
        0x4d, 0x49, 0x54, 0x4f, 0x2d, 0x57, 0x41, 0x4c, 0x01, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0xba, 0xaa, 0x56, 0xa6, 0x15, 0x00, 0x00, 0x00, 0xaa, 0x86,
        0x19, 0x81, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
    ];
    assert_eq!(segment(&[(1, 1, b"hello".to_vec())]), frozen);
    let scan = scan_segment(frozen).unwrap();
    assert_eq!(scan.header.segment_id, 7);
    assert_eq!(scan.records.len(), 1);
    assert_eq!(&frozen[scan.records[0].data.clone()], b"hello");
    assert_eq!(scan.tail, Tail::Clean);
}

#[test]
fn round_trip_three_records() {
    let buf = segment(&three());
    let scan = scan_segment(&buf).unwrap();
    assert_eq!(scan.tail, Tail::Clean);
    assert_eq!(scan.valid_end, buf.len());
    let got: Vec<_> = scan
        .records
        .iter()
        .map(|r| {
            (
                r.region_id.as_u64(),
                r.entry_id,
                buf[r.data.clone()].to_vec(),
            )
        })
        .collect();
    assert_eq!(got, three());
}

#[test]
fn empty_segment_is_clean() {
    let buf = encode_header(3);
    let scan = scan_segment(&buf).unwrap();
    assert!(scan.records.is_empty());
    assert_eq!(scan.valid_end, HEADER_LEN);
    assert_eq!(scan.tail, Tail::Clean);
}

/// Cutting the segment at every byte of the last record leaves the earlier records and a
/// torn tail at the start of the last one.
#[test]
fn cut_anywhere_in_last_record_is_a_torn_tail() {
    let buf = segment(&three());
    let last_start = scan_segment(&buf).unwrap().records[2].offset;
    for cut in last_start + 1..buf.len() {
        let scan = scan_segment(&buf[..cut]).unwrap();
        assert_eq!(scan.records.len(), 2, "cut {cut}");
        assert_eq!(scan.valid_end, last_start);
        assert!(
            matches!(scan.tail, Tail::Torn { offset, .. } if offset == last_start),
            "cut {cut}: {:?}",
            scan.tail
        );
    }
}

#[test]
fn payload_flip_in_the_middle_is_corruption() {
    let buf = segment(&three());
    let second = scan_segment(&buf).unwrap().records[1].clone();
    let mut bad = buf.clone();
    bad[second.data.start + 10] ^= 0x40;
    let scan = scan_segment(&bad).unwrap();
    assert_eq!(scan.records.len(), 1);
    assert_eq!(
        scan.tail,
        Tail::Corrupt {
            offset: second.offset,
            damage: RecordDamage::BadChecksum,
            next_valid: Some(second.end()),
        }
    );
}

#[test]
fn length_flip_in_the_middle_is_corruption() {
    let buf = segment(&three());
    let second = scan_segment(&buf).unwrap().records[1].clone();
    for bit in 0..32 {
        let mut bad = buf.clone();
        bad[second.offset + bit / 8] ^= 1 << (bit % 8);
        let scan = scan_segment(&bad).unwrap();
        assert_eq!(scan.records.len(), 1, "bit {bit}");
        assert!(
            matches!(scan.tail, Tail::Corrupt { offset, next_valid: Some(n), .. } if offset == second.offset && n == second.end()),
            "bit {bit}: {:?}",
            scan.tail
        );
    }
}

#[test]
fn flip_in_last_record_is_a_torn_tail() {
    let buf = segment(&three());
    let last = scan_segment(&buf).unwrap().records[2].clone();
    for pos in last.offset..buf.len() {
        let mut bad = buf.clone();
        bad[pos] ^= 0x01;
        let scan = scan_segment(&bad).unwrap();
        assert_eq!(scan.records.len(), 2, "pos {pos}");
        assert!(
            matches!(scan.tail, Tail::Torn { .. }),
            "pos {pos}: {:?}",
            scan.tail
        );
    }
}

#[test]
fn zero_filled_tail_is_torn() {
    let mut buf = segment(&three());
    let end = buf.len();
    buf.extend_from_slice(&[0u8; 4096]);
    let scan = scan_segment(&buf).unwrap();
    assert_eq!(scan.records.len(), 3);
    assert_eq!(scan.valid_end, end);
    assert_eq!(
        scan.tail,
        Tail::Torn {
            offset: end,
            damage: RecordDamage::BadLength { len: 0 }
        }
    );
}

#[test]
fn oversized_length_is_rejected_without_allocating() {
    let mut buf = encode_header(1).to_vec();
    buf.extend_from_slice(&u32::MAX.to_le_bytes());
    buf.extend_from_slice(&[0u8; 4]);
    assert_eq!(
        decode_record(&buf, HEADER_LEN),
        Err(RecordDamage::BadLength { len: u32::MAX })
    );
    assert_eq!(
        decode_record(&buf, usize::MAX),
        Err(RecordDamage::Truncated)
    );
}

#[test]
fn fuzz_body_accepts_valid_and_torn_segments() {
    let buf = segment(&three());
    for cut in 0..=buf.len() {
        fuzz_scan_segment(&buf[..cut]);
    }
}

/// Replays the checked-in cargo-fuzz corpus (see `fuzz/`) as a normal test.
#[test]
fn fuzz_corpus_replays() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/wal_segment");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        fuzz_scan_segment(&bytes);
        n += 1;
    }
    assert!(n > 0, "empty corpus at {}", dir.display());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_records_round_trip(
        records in prop::collection::vec((any::<u64>(), any::<u64>(), prop::collection::vec(any::<u8>(), 0..300)), 0..20)
    ) {
        let buf = segment(&records);
        let scan = scan_segment(&buf).unwrap();
        prop_assert_eq!(&scan.tail, &Tail::Clean);
        let got: Vec<_> = scan.records.iter()
            .map(|r| (r.region_id.as_u64(), r.entry_id, buf[r.data.clone()].to_vec()))
            .collect();
        prop_assert_eq!(got, records);
    }

    /// A single bit flip anywhere never panics, never yields a record that was not written,
    /// and is never silently dropped unless it hit the last record.
    #[test]
    fn single_bit_flip(
        records in prop::collection::vec((0u64..4, any::<u64>(), prop::collection::vec(any::<u8>(), 0..200)), 1..10),
        pos_seed in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let buf = segment(&records);
        let clean = scan_segment(&buf).unwrap();
        let pos = pos_seed.index(buf.len());
        let mut bad = buf.clone();
        bad[pos] ^= 1 << bit;
        match scan_segment(&bad) {
            Err(_) => prop_assert!(pos < HEADER_LEN),
            Ok(scan) => {
                prop_assert!(pos >= HEADER_LEN);
                // Records before the flip are intact.
                for (a, b) in scan.records.iter().zip(&clean.records) {
                    prop_assert_eq!(a, b);
                }
                let last_start = clean.records.last().map_or(HEADER_LEN, |r| r.offset);
                match scan.tail {
                    Tail::Clean => prop_assert!(false, "a flip must be noticed"),
                    Tail::Torn { .. } => prop_assert!(pos >= last_start, "torn tail at {pos} before last record at {last_start}"),
                    Tail::Corrupt { .. } => prop_assert!(pos < last_start),
                }
                fuzz_scan_segment(&bad);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(tail in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut buf = encode_header(1).to_vec();
        buf.extend_from_slice(&tail);
        fuzz_scan_segment(&buf);
        fuzz_scan_segment(&tail);
    }
}
