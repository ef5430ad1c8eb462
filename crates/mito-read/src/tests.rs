use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// (key, ts, seq, op, fields) of one test row.
type Row = (u32, i64, u64, OpType, Vec<Option<i32>>);
/// (key, ts, op, fields) of one output row.
type OutRow = (u32, i64, OpType, Vec<Option<i32>>);

#[derive(Debug, Clone)]
struct Rows(Vec<Row>);

impl SortedRows for Rows {
    fn num_rows(&self) -> usize {
        self.0.len()
    }
    fn same_key_ts(&self, a: usize, b: usize) -> bool {
        (self.0[a].0, self.0[a].1) == (self.0[b].0, self.0[b].1)
    }
    fn op(&self, i: usize) -> OpType {
        self.0[i].3
    }
    fn num_fields(&self) -> usize {
        self.0.first().map_or(0, |r| r.4.len())
    }
    fn field_is_null(&self, i: usize, f: usize) -> bool {
        self.0[i].4[f].is_none()
    }
}

fn materialize(rows: &Rows, sel: &Selection) -> Vec<OutRow> {
    sel.rows
        .iter()
        .enumerate()
        .map(|(o, &i)| {
            let r = &rows.0[i];
            let fields = if sel.fields.is_empty() {
                r.4.clone()
            } else {
                sel.fields
                    .iter()
                    .enumerate()
                    .map(|(f, col)| col[o].and_then(|j| rows.0[j].4[f]))
                    .collect()
            };
            (r.0, r.1, r.3, fields)
        })
        .collect()
}

fn example() -> Rows {
    use OpType::*;
    Rows(vec![
        (1, 10, 9, Put, vec![Some(1), None]),
        (1, 10, 5, Put, vec![Some(2), Some(7)]),
        (1, 20, 8, Delete, vec![None, None]),
        (1, 20, 3, Put, vec![Some(5), Some(5)]),
        (1, 30, 7, Put, vec![None, None]),
        (1, 30, 6, Delete, vec![None, None]),
        (1, 30, 2, Put, vec![Some(3), Some(3)]),
        (2, 10, 4, Put, vec![Some(4), None]),
    ])
}

#[test]
fn last_row_keeps_the_newest_and_honours_deletes() {
    let rows = example();
    let sel = dedup(&rows, DedupOptions::default());
    assert_eq!(sel.rows, vec![0, 4, 7]);
    assert!(sel.fields.is_empty());
    let with_tombstones = dedup(
        &rows,
        DedupOptions {
            keep_deletes: true,
            ..DedupOptions::default()
        },
    );
    assert_eq!(with_tombstones.rows, vec![0, 2, 4, 7]);
}

#[test]
fn last_non_null_fills_back_to_the_newest_delete() {
    let rows = example();
    let opts = DedupOptions {
        merge_mode: MergeMode::LastNonNull,
        ..DedupOptions::default()
    };
    let sel = dedup(&rows, opts);
    assert_eq!(sel.rows, vec![0, 4, 7]);
    // (1,10): a from seq 9, b from seq 5. (1,30): nothing below the delete counts.
    assert_eq!(sel.fields[0], vec![Some(0), None, Some(7)]);
    assert_eq!(sel.fields[1], vec![Some(1), None, None]);
}

#[test]
fn append_mode_keeps_every_put() {
    let rows = example();
    let sel = dedup(
        &rows,
        DedupOptions {
            append_mode: true,
            ..DedupOptions::default()
        },
    );
    assert_eq!(sel.rows, vec![0, 1, 3, 4, 6, 7]);
}

#[test]
fn op_type_bytes() {
    assert_eq!(OpType::from_u8(OpType::Delete.as_u8()), OpType::Delete);
    assert_eq!(OpType::from_u8(OpType::Put.as_u8()), OpType::Put);
}

/// Oracle: apply the rows in sequence order to a map.
fn oracle(rows: &Rows, mode: MergeMode) -> Vec<OutRow> {
    let mut by_seq = rows.0.clone();
    by_seq.sort_by_key(|r| r.2);
    let mut map: BTreeMap<(u32, i64), Option<Vec<Option<i32>>>> = BTreeMap::new();
    for (k, ts, _, op, fields) in by_seq {
        let slot = map.entry((k, ts)).or_insert(None);
        match op {
            OpType::Delete => *slot = None,
            OpType::Put => {
                *slot = Some(match (mode, slot.take()) {
                    (MergeMode::LastNonNull, Some(old)) => {
                        fields.iter().zip(old).map(|(n, o)| n.or(o)).collect()
                    }
                    _ => fields,
                })
            }
        }
    }
    map.into_iter()
        .filter_map(|((k, ts), v)| v.map(|f| (k, ts, OpType::Put, f)))
        .collect()
}

fn sorted_rows() -> impl Strategy<Value = Rows> {
    prop::collection::vec(
        (
            0u32..3,
            0i64..4,
            prop::bool::weighted(0.2),
            prop::collection::vec(prop::option::weighted(0.6, 0i32..100), 2),
        ),
        0..40,
    )
    .prop_map(|raw| {
        let mut rows: Vec<_> = raw
            .into_iter()
            .enumerate()
            .map(|(seq, (k, ts, del, f))| {
                let op = if del { OpType::Delete } else { OpType::Put };
                (
                    k,
                    ts,
                    seq as u64,
                    op,
                    if del { vec![None, None] } else { f },
                )
            })
            .collect();
        rows.sort_by(|a, b| {
            (a.0, a.1, std::cmp::Reverse(a.2)).cmp(&(b.0, b.1, std::cmp::Reverse(b.2)))
        });
        Rows(rows)
    })
}

proptest! {
    #[test]
    fn dedup_matches_applying_rows_in_order(rows in sorted_rows(), fill in any::<bool>()) {
        let mode = if fill { MergeMode::LastNonNull } else { MergeMode::LastRow };
        let sel = dedup(&rows, DedupOptions { merge_mode: mode, ..DedupOptions::default() });
        prop_assert_eq!(materialize(&rows, &sel), oracle(&rows, mode));
    }
}

proptest! {
    /// An `IN` list of dictionary literals over a dictionary column gives what DataFusion
    /// gives for it without the unwrapping, nulls and `NOT IN` included.
    #[test]
    fn in_lists_of_dictionary_literals_keep_their_answer(
        values in proptest::collection::vec(proptest::option::of(0u8..6), 0..60),
        list in proptest::collection::vec(0u8..8, 1..5),
        negated in any::<bool>(),
    ) {
        use arrow_array::{ArrayRef, DictionaryArray, types::UInt32Type};
        use datafusion_common::{DFSchema, ScalarValue};
        use datafusion_expr::{Expr, col, lit};
        let dict_type = arrow_schema::DataType::Dictionary(
            Box::new(arrow_schema::DataType::UInt32),
            Box::new(arrow_schema::DataType::Utf8),
        );
        let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("h", dict_type, true),
        ]));
        let names: Vec<Option<String>> = values.iter().map(|v| v.map(|v| format!("h{v}"))).collect();
        let array: DictionaryArray<UInt32Type> =
            names.iter().map(|v| v.as_deref()).collect();
        let batch = RecordBatch::try_new(schema.clone(), vec![std::sync::Arc::new(array) as ArrayRef])
            .unwrap();
        let items: Vec<Expr> = list
            .iter()
            .map(|v| {
                lit(ScalarValue::Dictionary(
                    Box::new(arrow_schema::DataType::UInt32),
                    Box::new(ScalarValue::Utf8(Some(format!("h{v}")))),
                ))
            })
            .collect();
        let expr = col("h").in_list(items, negated);
        let df_schema = DFSchema::try_from(schema.as_ref().clone()).unwrap();
        let plain = physical_predicate(&expr, &df_schema).unwrap();
        let as_planned = datafusion_physical_expr::create_physical_expr(
            &expr,
            &df_schema,
            &datafusion_expr::execution_props::ExecutionProps::new(),
            &datafusion_expr::physical_planning_context::PhysicalPlanningContext::default(),
        )
        .unwrap();
        let eval = |p: &std::sync::Arc<dyn datafusion_physical_expr::PhysicalExpr>| {
            p.evaluate(&batch).unwrap().into_array(batch.num_rows()).unwrap()
        };
        let (got, want_mask) = (eval(&plain), eval(&as_planned));
        prop_assert_eq!(got.as_ref(), want_mask.as_ref());
        let kept = filter_batch(batch.clone(), &[plain]).unwrap();
        let want = values
            .iter()
            .filter(|v| v.is_some_and(|v| list.contains(&v) != negated))
            .count();
        prop_assert_eq!(kept.num_rows(), want);
    }
}

proptest! {
    /// Filters naming only a column that follows the series key keep the same rows evaluated
    /// once per run of one key as evaluated on every row: runs long and short (every row its
    /// own key falls back to per-row), NULL tags, `IS NULL`, several filters.
    #[test]
    fn series_filters_keep_what_row_filters_keep(
        runs in proptest::collection::vec((0u32..6, 1usize..40), 0..12),
        null_key in proptest::option::of(0u32..6),
        list in proptest::collection::vec(0u32..8, 1..4),
        negated in any::<bool>(),
        also_not_null in any::<bool>(),
        form in 0usize..8,
        dictionary_literal in any::<bool>(),
    ) {
        use arrow_array::{ArrayRef, DictionaryArray, Int64Array, types::UInt32Type};
        use datafusion_common::DFSchema;
        use datafusion_expr::{col, lit};
        let keys: Vec<u32> = runs.iter().flat_map(|(k, n)| std::iter::repeat_n(*k, *n)).collect();
        // The tag follows the key (one key, one series); one key's tag is NULL.
        let names: Vec<Option<String>> = keys
            .iter()
            .map(|k| (Some(*k) != null_key).then(|| format!("h{}", k % 4)))
            .collect();
        let tag: DictionaryArray<UInt32Type> = names.iter().map(|v| v.as_deref()).collect();
        let dict_type = arrow_schema::DataType::Dictionary(
            Box::new(arrow_schema::DataType::UInt32),
            Box::new(arrow_schema::DataType::Utf8),
        );
        let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("h", dict_type, true),
            arrow_schema::Field::new("v", arrow_schema::DataType::Int64, false),
        ]));
        let row_numbers = Int64Array::from_iter_values(0..keys.len() as i64);
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![std::sync::Arc::new(tag) as ArrayRef, std::sync::Arc::new(row_numbers)],
        )
        .unwrap();
        let df_schema = DFSchema::try_from(schema.as_ref().clone()).unwrap();
        // An IN list, or a comparison with one string (either side, a plain or a dictionary
        // literal): the forms keep_runs checks on the strings directly.
        let one = || {
            let v = format!("h{}", list[0]);
            if dictionary_literal {
                lit(datafusion_common::ScalarValue::Dictionary(
                    Box::new(arrow_schema::DataType::UInt32),
                    Box::new(datafusion_common::ScalarValue::Utf8(Some(v))),
                ))
            } else {
                lit(v)
            }
        };
        let first = match form {
            0 => col("h").eq(one()),
            1 => col("h").not_eq(one()),
            2 => col("h").lt(one()),
            3 => one().lt_eq(col("h")),
            4 => col("h").gt(one()),
            5 => col("h").gt_eq(one()),
            _ => col("h").in_list(list.iter().map(|v| lit(format!("h{v}"))).collect(), negated),
        };
        let mut exprs = vec![first];
        if also_not_null {
            exprs.push(col("h").is_not_null());
        }
        let predicates: Vec<_> = exprs
            .iter()
            .map(|e| physical_predicate(e, &df_schema).unwrap())
            .collect();
        let got = filter_series(batch.clone(), &predicates, &keys).unwrap();
        let want = filter_batch(batch, &predicates).unwrap();
        prop_assert_eq!(got, want);
    }
}

/// The tag filters a scan pushes have a plain form over the files' dictionary tag columns,
/// with plain and dictionary literals alike; other forms have none.
#[test]
fn tag_comparisons_have_a_plain_check() {
    use datafusion_common::{DFSchema, ScalarValue};
    use datafusion_expr::{col, lit};
    let dict = arrow_schema::DataType::Dictionary(
        Box::new(arrow_schema::DataType::UInt32),
        Box::new(arrow_schema::DataType::Utf8),
    );
    let schema = arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("h", dict.clone(), true),
        arrow_schema::Field::new("s", arrow_schema::DataType::Utf8, true),
        arrow_schema::Field::new("v", arrow_schema::DataType::Int64, true),
    ]);
    let df_schema = DFSchema::try_from(schema).unwrap();
    let dict_lit = lit(ScalarValue::Dictionary(
        Box::new(arrow_schema::DataType::UInt32),
        Box::new(ScalarValue::Utf8(Some("x".into()))),
    ));
    for e in [
        col("h").eq(lit("x")),
        col("h").eq(dict_lit.clone()),
        dict_lit.lt(col("h")),
        col("h").in_list(vec![lit("x"), lit("y")], false),
        col("s").gt_eq(lit("x")),
    ] {
        let p = physical_predicate(&e, &df_schema).unwrap();
        assert!(PlainCheck::of(&p).is_some(), "{e}: {p}");
    }
    for e in [
        col("v").eq(lit(1i64)),
        col("h").is_null(),
        col("h").eq(lit("x")).or(col("h").eq(lit("y"))),
    ] {
        let p = physical_predicate(&e, &df_schema).unwrap();
        assert!(PlainCheck::of(&p).is_none(), "{e}: {p}");
    }
}
