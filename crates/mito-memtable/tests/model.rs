//! The memtable against an oracle: random puts and deletes (nulls, duplicate and out-of-order
//! timestamps, rows across several time partitions), read back at random snapshots and time
//! ranges, in every merge mode and in append mode.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, TimestampMillisecondType, UInt32Type};
use arrow_array::{
    Array, ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::{DataType, TimeUnit};
use mito_codec::{KeyValue, PrimaryKeyCodec};
use mito_memtable::{Memtable, MemtableOptions, MemtableRead, MergePolicy};
use mito_read::{DedupOptions, MergeMode, OpType};
use proptest::prelude::*;
use store_api::RegionId;
use store_api::metadata::RegionMetadata;
use store_api::scan::TimeRange;

type Key = (Option<String>, Option<i32>);
type Fields = (Option<f64>, Option<String>);

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<(Key, i64, Fields)>),
    Delete(Vec<(Key, i64)>),
    Read {
        at: u8,
        range: Option<(i64, i64)>,
        partition: bool,
    },
}

fn metadata() -> Arc<RegionMetadata> {
    test_util::metadata::build(&test_util::metadata::builder(
        RegionId::new(1, 1),
        0,
        &[("host", DataType::Utf8), ("dc", DataType::Int32)],
        ("ts", TimeUnit::Millisecond),
        &[("a", DataType::Float64), ("b", DataType::Utf8)],
    ))
}

fn batch(rows: &[(Key, i64, Option<Fields>)]) -> RecordBatch {
    let host: ArrayRef = Arc::new(StringArray::from(
        rows.iter().map(|r| r.0.0.clone()).collect::<Vec<_>>(),
    ));
    let dc: ArrayRef = Arc::new(Int32Array::from(
        rows.iter().map(|r| r.0.1).collect::<Vec<_>>(),
    ));
    let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
    ));
    let mut cols = vec![("host", host), ("dc", dc), ("ts", ts)];
    if rows.iter().all(|r| r.2.is_some()) {
        let a: ArrayRef = Arc::new(Float64Array::from(
            rows.iter()
                .map(|r| r.2.as_ref().unwrap().0)
                .collect::<Vec<_>>(),
        ));
        let b: ArrayRef = Arc::new(StringArray::from(
            rows.iter()
                .map(|r| r.2.as_ref().unwrap().1.clone())
                .collect::<Vec<_>>(),
        ));
        cols.push(("a", a));
        cols.push(("b", b));
    }
    RecordBatch::try_from_iter(cols).unwrap()
}

type OutRow = (Key, i64, Fields);

/// The expected rows at `seq`: every op up to it applied in order.
fn oracle(
    history: &[(u64, OpType, Key, i64, Fields)],
    seq: u64,
    range: Option<(i64, i64)>,
    opts: DedupOptions,
) -> Vec<OutRow> {
    let codec = PrimaryKeyCodec::from_metadata(&metadata()).unwrap();
    let enc = |k: &Key| {
        let mut out = Vec::new();
        let v = [
            k.0.clone().map_or(KeyValue::Null, KeyValue::String),
            k.1.map_or(KeyValue::Null, |i| KeyValue::Int(i.into())),
        ];
        codec.encode(&v, &mut out).unwrap();
        out
    };
    let visible = history
        .iter()
        .filter(|h| h.0 <= seq && range.is_none_or(|(s, e)| h.3 >= s && h.3 < e));
    if opts.append_mode {
        let mut rows: Vec<_> = visible
            .filter(|h| h.1 == OpType::Put)
            .map(|h| {
                (
                    enc(&h.2),
                    h.3,
                    std::cmp::Reverse(h.0),
                    (h.2.clone(), h.3, h.4.clone()),
                )
            })
            .collect();
        rows.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
        return rows.into_iter().map(|r| r.3).collect();
    }
    let mut map: BTreeMap<(Vec<u8>, i64), (Key, Option<Fields>)> = BTreeMap::new();
    for (_, op, key, ts, fields) in visible {
        let slot = map.entry((enc(key), *ts)).or_insert((key.clone(), None));
        slot.1 = match (op, opts.merge_mode, slot.1.take()) {
            (OpType::Delete, _, _) => None,
            (OpType::Put, MergeMode::LastNonNull, Some(old)) => {
                Some((fields.0.or(old.0), fields.1.clone().or(old.1)))
            }
            (OpType::Put, _, _) => Some(fields.clone()),
        };
    }
    map.into_iter()
        .filter_map(|((_, ts), (k, f))| f.map(|f| (k, ts, f)))
        .collect()
}

fn read_all(m: &Memtable, req: &MemtableRead) -> Vec<OutRow> {
    let mut out = Vec::new();
    let iter = m.read(req).unwrap();
    for b in iter {
        let b = b.unwrap();
        let host = b.column(0).as_dictionary::<UInt32Type>();
        let hv = host.values().as_string::<i32>();
        let dc = b.column(1).as_dictionary::<UInt32Type>();
        let dv = dc.values().as_primitive::<Int32Type>();
        let ts = b.column(2).as_primitive::<TimestampMillisecondType>();
        let a = b.column(3).as_primitive::<Float64Type>();
        let bb = b.column(4).as_string::<i32>();
        for i in 0..b.num_rows() {
            let hk = host.keys().value(i) as usize;
            let dk = dc.keys().value(i) as usize;
            let key = (
                (!hv.is_null(hk)).then(|| hv.value(hk).to_string()),
                (!dv.is_null(dk)).then(|| dv.value(dk)),
            );
            out.push((
                key,
                ts.value(i),
                (
                    (!a.is_null(i)).then(|| a.value(i)),
                    (!bb.is_null(i)).then(|| bb.value(i).to_string()),
                ),
            ));
        }
    }
    out
}

fn key() -> impl Strategy<Value = Key> {
    (
        prop::option::weighted(
            0.85,
            prop::sample::select(vec!["h0", "h1", "h10", "h2"]).prop_map(String::from),
        ),
        prop::option::weighted(0.85, -1i32..3),
    )
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        prop::option::weighted(0.7, -10.0f64..10.0),
        prop::option::weighted(0.7, "[xy]{0,3}"),
    )
}

fn op() -> impl Strategy<Value = Op> {
    // ts in 0..60 ms with 20 ms windows: three partitions, plus some negative times.
    let ts = prop_oneof![9 => 0i64..60, 1 => -25i64..0];
    prop_oneof![
        5 => prop::collection::vec((key(), ts.clone(), fields()), 1..12).prop_map(Op::Put),
        2 => prop::collection::vec((key(), ts), 1..5).prop_map(Op::Delete),
        2 => (any::<u8>(), prop::option::of((-30i64..60, 0i64..40).prop_map(|(s, l)| (s, s + l))), any::<bool>())
            .prop_map(|(at, range, partition)| Op::Read { at, range, partition }),
    ]
}

fn run(ops: Vec<Op>, opts: DedupOptions, merge: MergePolicy) {
    let m = Memtable::new(
        metadata(),
        MemtableOptions {
            time_window: Duration::from_millis(20),
            dedup: opts,
            merge,
        },
    )
    .unwrap();
    let mut history = Vec::new();
    let mut next_seq = 1u64;
    for op in ops {
        match op {
            Op::Put(rows) => {
                let b = batch(
                    &rows
                        .iter()
                        .map(|(k, ts, f)| (k.clone(), *ts, Some(f.clone())))
                        .collect::<Vec<_>>(),
                );
                m.write(&b, next_seq, OpType::Put).unwrap();
                for (k, ts, f) in rows {
                    history.push((next_seq, OpType::Put, k, ts, f));
                    next_seq += 1;
                }
            }
            Op::Delete(rows) => {
                let b = batch(
                    &rows
                        .iter()
                        .map(|(k, ts)| (k.clone(), *ts, None))
                        .collect::<Vec<_>>(),
                );
                m.write(&b, next_seq, OpType::Delete).unwrap();
                for (k, ts) in rows {
                    history.push((next_seq, OpType::Delete, k, ts, (None, None)));
                    next_seq += 1;
                }
            }
            Op::Read {
                at,
                range,
                partition,
            } => {
                let seq = (u64::from(at) * next_seq) / 255;
                let mut req = MemtableRead {
                    sequence: Some(seq),
                    time_range: range.map(|(s, e)| TimeRange::new(s, e)),
                    batch_rows: 7,
                    ..MemtableRead::default()
                };
                let mut want_range = range;
                if partition {
                    // Read one partition only: the oracle sees that window.
                    if let Some(start) = m.partition_starts().first().copied() {
                        req.partition = Some(start);
                        let (s, e) = range.unwrap_or((i64::MIN, i64::MAX));
                        want_range = Some((s.max(start), e.min(start + m.window())));
                    }
                }
                assert_eq!(
                    read_all(&m, &req),
                    oracle(&history, seq, want_range, opts),
                    "read at {seq} of {range:?}"
                );
            }
        }
    }
    // Everything, at the end; then frozen, still the same.
    let last = next_seq.saturating_sub(1);
    let full = MemtableRead::default();
    assert_eq!(read_all(&m, &full), oracle(&history, last, None, opts));
    m.freeze();
    assert_eq!(read_all(&m, &full), oracle(&history, last, None, opts));
    assert!(
        m.write(
            &batch(&[((None, None), 0, Some((None, None)))]),
            next_seq,
            OpType::Put
        )
        .is_err()
    );
    let stats = m.stats();
    assert_eq!(stats.rows, history.len());
    assert_eq!(stats.max_sequence, last);
}

/// Merges after almost every write, several levels deep.
const EAGER: MergePolicy = MergePolicy {
    level0_fanin: 2,
    fanin: 2,
};

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn last_row(ops in prop::collection::vec(op(), 1..25)) {
        run(ops, DedupOptions::default(), MergePolicy::default());
    }

    #[test]
    fn last_non_null(ops in prop::collection::vec(op(), 1..25)) {
        run(ops, DedupOptions { merge_mode: MergeMode::LastNonNull, ..DedupOptions::default() }, MergePolicy::default());
    }

    #[test]
    fn append_mode(ops in prop::collection::vec(op(), 1..25)) {
        run(ops, DedupOptions { append_mode: true, ..DedupOptions::default() }, MergePolicy::default());
    }

    #[test]
    fn last_row_with_eager_merges(ops in prop::collection::vec(op(), 1..40)) {
        run(ops, DedupOptions::default(), EAGER);
    }

    #[test]
    fn last_non_null_with_eager_merges(ops in prop::collection::vec(op(), 1..40)) {
        run(ops, DedupOptions { merge_mode: MergeMode::LastNonNull, ..DedupOptions::default() }, EAGER);
    }

    #[test]
    fn append_mode_with_eager_merges(ops in prop::collection::vec(op(), 1..40)) {
        run(ops, DedupOptions { append_mode: true, ..DedupOptions::default() }, EAGER);
    }
}
