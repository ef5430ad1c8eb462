//! Regression (found by the crash test): a memtable written by many small requests and never
//! read before its flush must still return the newest version of each row.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use mito_memtable::{Memtable, MemtableOptions, MemtableRead};
use mito_read::OpType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[test]
fn unread_memtable_with_many_parts_keeps_the_newest_versions() {
    for seed in 0..20u64 {
        let meta = Arc::new(create_request().build_metadata(REGION).unwrap());
        let m = Memtable::new(meta, MemtableOptions::default()).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut oracle: BTreeMap<(String, i64), Option<f64>> = BTreeMap::new();
        let mut seq = 1;
        let hosts: Vec<String> = (0..5).map(|h| format!("h{h}")).collect();
        for _ in 0..rng.random_range(10..600) {
            if rng.random_range(0..4) == 0 {
                let keys: Vec<(&str, i64)> = (0..rng.random_range(1..5))
                    .map(|_| {
                        (
                            hosts[rng.random_range(0..5)].as_str(),
                            rng.random_range(0..50),
                        )
                    })
                    .collect();
                m.write(&delete_batch(&keys), seq, OpType::Delete).unwrap();
                seq += keys.len() as u64;
                for (h, t) in keys {
                    oracle.remove(&(h.to_string(), t));
                }
            } else {
                let rows: Vec<(&str, i64, Option<f64>)> = (0..rng.random_range(1..30))
                    .map(|_| {
                        (
                            hosts[rng.random_range(0..5)].as_str(),
                            rng.random_range(0..50),
                            Some(f64::from(rng.random_range(0..100000))),
                        )
                    })
                    .collect();
                m.write(&put_batch(&rows), seq, OpType::Put).unwrap();
                seq += rows.len() as u64;
                for (h, t, v) in rows {
                    oracle.insert((h.to_string(), t), v);
                }
            }
        }
        m.freeze();
        let batches: Vec<_> = m
            .read(&MemtableRead::default())
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let got = rows_of(&batches);
        let want: Vec<Row> = oracle.into_iter().map(|((h, t), v)| (h, t, v)).collect();
        if !same_rows(&got, &want) {
            let diff: Vec<_> = got
                .iter()
                .zip(&want)
                .filter(|(a, b)| a != b)
                .take(5)
                .collect();
            panic!(
                "seed {seed}: {} rows vs {} expected; first differences {diff:?}",
                got.len(),
                want.len()
            );
        }
    }
}
