//! TSBS "cpu-only" rows, generated in Rust with the model of `shared/bench/gen.py`: 10 string
//! tags per host, 10 float fields each a random walk (start U(0,100), step N(0,1), clamped to
//! [0, 100], rounded to 2 decimals), one row per host every 10 s from 2016-01-01T00:00:00Z,
//! time-major (all hosts at t, then t + 10 s). Seeded and deterministic; not byte-identical to
//! `gen.py`'s Python RNG, the same distribution.

pub mod iot;

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use arrow_schema::{DataType, TimeUnit};
use store_api::RegionId;
use store_api::metadata::{ColumnMetadata, RegionMetadata, RegionMetadataBuilder, SemanticType};

/// Tag names, in primary-key order.
pub const TAGS: [&str; 10] = [
    "hostname",
    "region",
    "datacenter",
    "rack",
    "os",
    "arch",
    "team",
    "service",
    "service_version",
    "service_environment",
];
/// Field names.
pub const FIELDS: [&str; 10] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];
const REGIONS: [(&str, &[&str]); 9] = [
    (
        "us-east-1",
        &["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1e"],
    ),
    ("us-west-1", &["us-west-1a", "us-west-1b"]),
    ("us-west-2", &["us-west-2a", "us-west-2b", "us-west-2c"]),
    ("eu-west-1", &["eu-west-1a", "eu-west-1b", "eu-west-1c"]),
    ("eu-central-1", &["eu-central-1a", "eu-central-1b"]),
    ("ap-southeast-1", &["ap-southeast-1a", "ap-southeast-1b"]),
    ("ap-southeast-2", &["ap-southeast-2a", "ap-southeast-2b"]),
    ("ap-northeast-1", &["ap-northeast-1a", "ap-northeast-1c"]),
    ("sa-east-1", &["sa-east-1a", "sa-east-1b", "sa-east-1c"]),
];
const OSES: [&str; 3] = ["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"];
const ARCHS: [&str; 2] = ["x64", "x86"];
const TEAMS: [&str; 4] = ["SF", "NYC", "LON", "CHI"];
const ENVS: [&str; 3] = ["production", "staging", "test"];
/// 2016-01-01T00:00:00Z in nanoseconds.
pub const START_NS: i64 = 1_451_606_400_000_000_000;
/// Seconds between two rows of a host.
pub const INTERVAL_SECS: i64 = 10;

/// SplitMix64: small, fast, seeded.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }

    /// Standard normal (Box-Muller).
    pub fn gauss(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from.get(self.below(from.len())).copied().unwrap_or("")
    }
}

/// The region metadata of the `cpu` table: 10 string tags, `time` (ns), 10 float fields.
pub fn cpu_metadata(region_id: RegionId) -> RegionMetadata {
    let mut b = RegionMetadataBuilder::new(region_id);
    let mut id = 0;
    for t in TAGS {
        b.push_column(ColumnMetadata::new(
            id,
            t,
            DataType::Utf8,
            SemanticType::Tag,
        ));
        id += 1;
    }
    b.push_column(ColumnMetadata::new(
        id,
        "time",
        DataType::Timestamp(TimeUnit::Nanosecond, None),
        SemanticType::Timestamp,
    ));
    id += 1;
    for f in FIELDS {
        b.push_column(ColumnMetadata::new(
            id,
            f,
            DataType::Float64,
            SemanticType::Field,
        ));
        id += 1;
    }
    b.primary_key((0..TAGS.len() as u32).collect());
    // The columns above always satisfy the metadata rules.
    b.build()
        .unwrap_or_else(|e| unreachable!("cpu metadata is valid: {e}"))
}

/// Generates the rows one timestamp (one batch of every host) at a time.
#[derive(Debug)]
pub struct CpuGenerator {
    tag_columns: Vec<ArrayRef>,
    values: Vec<f64>,
    rng: Rng,
    step: i64,
    hosts: usize,
}

impl CpuGenerator {
    /// `hosts` hosts, seeded.
    pub fn new(hosts: usize, seed: u64) -> Self {
        let mut tag_rng = Rng::new(seed ^ 0x7461_6773);
        let mut cols: Vec<Vec<String>> = vec![Vec::with_capacity(hosts); TAGS.len()];
        for i in 0..hosts {
            let (region, dcs) = REGIONS
                .get(tag_rng.below(REGIONS.len()))
                .copied()
                .unwrap_or(("", &[]));
            let row = [
                format!("host_{i}"),
                region.to_string(),
                tag_rng.pick(dcs).to_string(),
                tag_rng.below(100).to_string(),
                tag_rng.pick(&OSES).to_string(),
                tag_rng.pick(&ARCHS).to_string(),
                tag_rng.pick(&TEAMS).to_string(),
                tag_rng.below(20).to_string(),
                tag_rng.below(2).to_string(),
                tag_rng.pick(&ENVS).to_string(),
            ];
            for (c, v) in cols.iter_mut().zip(row) {
                c.push(v);
            }
        }
        let tag_columns = cols
            .into_iter()
            .map(|c| Arc::new(StringArray::from(c)) as ArrayRef)
            .collect();
        let mut rng = Rng::new(seed);
        let values = (0..hosts * FIELDS.len())
            .map(|_| rng.unit() * 100.0)
            .collect();
        Self {
            tag_columns,
            values,
            rng,
            step: 0,
            hosts,
        }
    }

    /// Rows per batch (one per host).
    pub fn hosts(&self) -> usize {
        self.hosts
    }

    /// The next timestamp's rows: columns in [`cpu_metadata`] order.
    pub fn next_batch(&mut self) -> RecordBatch {
        let ts = START_NS + self.step * INTERVAL_SECS * 1_000_000_000;
        self.step += 1;
        let mut fields: Vec<Vec<f64>> = vec![Vec::with_capacity(self.hosts); FIELDS.len()];
        for (i, v) in self.values.iter_mut().enumerate() {
            *v = (*v + self.rng.gauss()).clamp(0.0, 100.0);
            if let Some(col) = fields.get_mut(i % FIELDS.len()) {
                col.push((*v * 100.0).round() / 100.0);
            }
        }
        let mut columns: Vec<(&str, ArrayRef)> = TAGS
            .iter()
            .copied()
            .zip(self.tag_columns.iter().cloned())
            .collect();
        columns.push((
            "time",
            Arc::new(TimestampNanosecondArray::from(vec![ts; self.hosts])),
        ));
        for (name, col) in FIELDS.iter().copied().zip(fields) {
            columns.push((name, Arc::new(Float64Array::from(col))));
        }
        // Every column has `hosts` rows and the names are distinct.
        RecordBatch::try_from_iter(columns)
            .unwrap_or_else(|e| unreachable!("cpu batch is valid: {e}"))
    }
}

/// Appends `batch` (a [`CpuGenerator`] batch) to `out` as line protocol, as TSBS and
/// `gen.py` print it: tags in key order, fields with two decimals, nanosecond timestamps.
pub fn write_line_protocol(batch: &RecordBatch, out: &mut String) {
    use std::fmt::Write;
    let strings = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
    };
    let tags: Vec<StringArray> = TAGS.iter().filter_map(|t| strings(t)).collect();
    let fields: Vec<Float64Array> = FIELDS
        .iter()
        .filter_map(|f| {
            batch
                .column_by_name(f)
                .and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned())
        })
        .collect();
    let time = batch.column_by_name("time").and_then(|c| {
        c.as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .cloned()
    });
    let Some(time) = time else {
        return;
    };
    for row in 0..batch.num_rows() {
        out.push_str("cpu");
        for (name, col) in TAGS.iter().zip(&tags) {
            let _ = write!(out, ",{name}={}", col.value(row));
        }
        for (i, (name, col)) in FIELDS.iter().zip(&fields).enumerate() {
            let _ = write!(
                out,
                "{}{name}={:.2}",
                if i == 0 { ' ' } else { ',' },
                col.value(row)
            );
        }
        let _ = writeln!(out, " {}", time.value(row));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_well_formed() {
        let mut a = CpuGenerator::new(50, 7);
        let mut b = CpuGenerator::new(50, 7);
        let (x, y) = (a.next_batch(), b.next_batch());
        assert_eq!(x, y);
        assert_eq!(x.num_rows(), 50);
        assert_eq!(x.num_columns(), 21);
        let next = a.next_batch();
        assert_ne!(next, x);
        let meta = cpu_metadata(RegionId::new(1, 0));
        assert_eq!(meta.primary_key().len(), 10);
        for f in FIELDS {
            let col = next.column_by_name(f).unwrap();
            let vals = col.as_any().downcast_ref::<Float64Array>().unwrap();
            assert!(vals.values().iter().all(|v| (0.0..=100.0).contains(v)));
        }
    }
}
