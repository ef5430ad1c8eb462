//! The memtable: writes split into time partitions, exact accounting, freeze.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow_schema::{DataType, TimeUnit};
use mito_codec::PrimaryKeyCodec;
use mito_read::{DedupOptions, OpType};
use snafu::{OptionExt, ResultExt, ensure};
use store_api::metadata::RegionMetadataRef;
use store_api::time::{TimeSpan, timestamp_values};
use store_api::{RegionId, SequenceNumber};

use crate::error::{ArrowSnafu, FrozenSnafu, InternalSnafu, InvalidBatchSnafu, KeySnafu, Result};
use crate::part::{Ops, Part};
use crate::series::SeriesDict;

/// Default width of a time partition when the region has no compaction window yet.
pub const DEFAULT_TIME_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Options of a memtable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemtableOptions {
    /// Width of a time partition (the region's compaction window).
    pub time_window: Duration,
    /// Merge mode, append mode.
    pub dedup: DedupOptions,
    /// When parts of a window are merged into series order.
    pub merge: MergePolicy,
}

impl Default for MemtableOptions {
    fn default() -> Self {
        Self {
            time_window: DEFAULT_TIME_WINDOW,
            dedup: DedupOptions::default(),
            merge: MergePolicy::default(),
        }
    }
}

/// When a window's parts are merged (see the `merge` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergePolicy {
    /// Parts made by writes that trigger a merge into one level-1 part (at least 2).
    pub level0_fanin: usize,
    /// Merged parts of one level that trigger a merge into the next (at least 2).
    pub fanin: usize,
}

impl Default for MergePolicy {
    fn default() -> Self {
        Self {
            level0_fanin: 16,
            fanin: 8,
        }
    }
}

/// Cheap-to-read figures of a memtable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemtableStats {
    /// Bytes held (Arrow buffers, row vectors, series keys).
    pub bytes: usize,
    /// Rows written (every version counts).
    pub rows: usize,
    /// Distinct series.
    pub series: usize,
    /// Smallest and largest timestamp written, if any row was.
    pub time_range: Option<TimeSpan>,
    /// Largest sequence written (0 if none).
    pub max_sequence: SequenceNumber,
    /// Number of time partitions.
    pub partitions: usize,
}

/// A region's memtable: mutable until [`Memtable::freeze`], readable always.
#[derive(Debug)]
pub struct Memtable {
    pub(crate) metadata: RegionMetadataRef,
    pub(crate) codec: PrimaryKeyCodec,
    pub(crate) options: MemtableOptions,
    /// Width of a partition in the time index's unit.
    pub(crate) window: i64,
    pub(crate) series: RwLock<SeriesDict>,
    pub(crate) partitions: RwLock<BTreeMap<i64, Vec<Arc<Part>>>>,
    frozen: AtomicBool,
    bytes: AtomicUsize,
    rows: AtomicUsize,
    min_ts: AtomicI64,
    max_ts: AtomicI64,
    max_sequence: AtomicU64,
}

pub(crate) fn read_lock<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // Updates happen in single steps after all fallible work, so a poisoned lock holds
    // consistent data.
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn write_lock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Memtable {
    /// An empty memtable for a region.
    pub fn new(metadata: RegionMetadataRef, options: MemtableOptions) -> Result<Self> {
        let region_id = metadata.region_id();
        let codec = PrimaryKeyCodec::from_metadata(&metadata).context(KeySnafu { region_id })?;
        let unit = match &metadata.time_index_column().data_type {
            DataType::Timestamp(unit, _) => *unit,
            other => {
                return InvalidBatchSnafu {
                    region_id,
                    reason: format!("time index type {other}"),
                }
                .fail();
            }
        };
        let window = window_in_unit(options.time_window, unit).max(1);
        Ok(Self {
            metadata,
            codec,
            options,
            window,
            series: RwLock::default(),
            partitions: RwLock::default(),
            frozen: AtomicBool::new(false),
            bytes: AtomicUsize::new(0),
            rows: AtomicUsize::new(0),
            min_ts: AtomicI64::new(i64::MAX),
            max_ts: AtomicI64::new(i64::MIN),
            max_sequence: AtomicU64::new(0),
        })
    }

    /// The region's metadata.
    pub fn metadata(&self) -> &RegionMetadataRef {
        &self.metadata
    }

    /// The options.
    pub fn options(&self) -> &MemtableOptions {
        &self.options
    }

    fn region_id(&self) -> RegionId {
        self.metadata.region_id()
    }

    /// Writes `batch` (columns matched by name: every tag and the time index must be there;
    /// a missing field is null). Row `i` gets sequence `first_sequence + i`.
    pub fn write(
        &self,
        batch: &RecordBatch,
        first_sequence: SequenceNumber,
        op: OpType,
    ) -> Result<usize> {
        let region_id = self.region_id();
        ensure!(
            !self.frozen.load(Ordering::Acquire),
            FrozenSnafu { region_id }
        );
        let n = batch.num_rows();
        if n == 0 {
            return Ok(0);
        }
        let invalid = |reason: String| InvalidBatchSnafu { region_id, reason }.build();
        let ts_meta = self.metadata.time_index_column();
        let ts_col = batch
            .column_by_name(&ts_meta.name)
            .ok_or_else(|| invalid(format!("missing time index column '{}'", ts_meta.name)))?;
        ensure!(
            ts_col.data_type() == &ts_meta.data_type,
            InvalidBatchSnafu {
                region_id,
                reason: format!(
                    "time index '{}' has type {}, expected {}",
                    ts_meta.name,
                    ts_col.data_type(),
                    ts_meta.data_type
                )
            }
        );
        ensure!(
            ts_col.null_count() == 0,
            InvalidBatchSnafu {
                region_id,
                reason: format!("time index '{}' has nulls", ts_meta.name)
            }
        );
        let ts = timestamp_values(ts_col)
            .cloned()
            .ok_or_else(|| invalid("time index is not a timestamp".into()))?;
        let last_sequence = u64::try_from(n - 1)
            .ok()
            .and_then(|d| first_sequence.checked_add(d))
            .ok_or_else(|| invalid("sequence overflow".into()))?;

        let mut tags = Vec::with_capacity(self.codec.types().len());
        for c in self.metadata.primary_key_columns() {
            let col = batch
                .column_by_name(&c.name)
                .ok_or_else(|| invalid(format!("missing tag column '{}'", c.name)))?;
            ensure!(
                col.data_type() == &c.data_type,
                InvalidBatchSnafu {
                    region_id,
                    reason: format!(
                        "tag '{}' has type {}, expected {}",
                        c.name,
                        col.data_type(),
                        c.data_type
                    )
                }
            );
            tags.push(col.clone());
        }
        let mut fields = Vec::new();
        for c in self.metadata.field_columns() {
            let col = batch.column_by_name(&c.name).cloned();
            if let Some(col) = &col {
                ensure!(
                    col.data_type() == &c.data_type,
                    InvalidBatchSnafu {
                        region_id,
                        reason: format!(
                            "field '{}' has type {}, expected {}",
                            c.name,
                            col.data_type(),
                            c.data_type
                        )
                    }
                );
            }
            fields.push(col);
        }

        // Series of every row. The key buffer is reused; new series take the lock's write side.
        let mut series = Vec::with_capacity(n);
        let mut new_bytes = 0usize;
        {
            let mut dict = write_lock(&self.series);
            let mut key = Vec::with_capacity(64);
            for row in 0..n {
                key.clear();
                self.codec
                    .encode_row(&tags, row, &mut key)
                    .context(KeySnafu { region_id })?;
                let (id, held) = dict.get_or_insert(&key);
                new_bytes += held;
                series.push(id);
            }
        }

        let sequences: Vec<u64> = (first_sequence..=last_sequence).collect();
        let window = self.window;
        let first_window = ts.first().map_or(0, |t| window_start(*t, window));
        let (min, max) = ts
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(*t), hi.max(*t)));
        let mut parts = Vec::new();
        if window_start(min, window) == first_window && window_start(max, window) == first_window {
            parts.push((
                first_window,
                Part::new(series, ts, sequences, Ops::Same(op), fields, 0),
            ));
        } else {
            let mut by_window: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
            for (row, t) in ts.iter().enumerate() {
                by_window
                    .entry(window_start(*t, window))
                    .or_default()
                    .push(row as u32);
            }
            let ts_array: ArrayRef = ts_col.clone();
            for (start, rows) in by_window {
                let idx = UInt32Array::from(rows);
                let take = |a: &ArrayRef| {
                    arrow_select::take::take(a.as_ref(), &idx, None)
                        .context(ArrowSnafu { region_id })
                };
                // `take` keeps the type: a time index that stopped being a timestamp is a bug,
                // not an empty window.
                let part_ts =
                    timestamp_values(&take(&ts_array)?)
                        .cloned()
                        .context(InternalSnafu {
                            region_id,
                            reason: "the time index lost its timestamp type in a window split",
                        })?;
                let part_fields = fields
                    .iter()
                    .map(|f| f.as_ref().map(&take).transpose())
                    .collect::<Result<Vec<_>>>()?;
                let part_series = idx
                    .values()
                    .iter()
                    .map(|r| {
                        series.get(*r as usize).copied().context(InternalSnafu {
                            region_id,
                            reason: format!("row {r} has no series id in a window split"),
                        })
                    })
                    .collect::<Result<_>>()?;
                let part_seq = idx
                    .values()
                    .iter()
                    .map(|r| first_sequence + u64::from(*r))
                    .collect();
                parts.push((
                    start,
                    Part::new(
                        part_series,
                        part_ts,
                        part_seq,
                        Ops::Same(op),
                        part_fields,
                        0,
                    ),
                ));
            }
        }

        let added: usize = parts.iter().map(|(_, p)| p.bytes).sum::<usize>() + new_bytes;
        {
            let mut partitions = write_lock(&self.partitions);
            for (start, part) in parts {
                partitions.entry(start).or_default().push(Arc::new(part));
            }
        }
        self.bytes.fetch_add(added, Ordering::Relaxed);
        self.rows.fetch_add(n, Ordering::Relaxed);
        self.min_ts.fetch_min(min, Ordering::Relaxed);
        self.max_ts.fetch_max(max, Ordering::Relaxed);
        self.max_sequence
            .fetch_max(last_sequence, Ordering::Release);
        Ok(n)
    }

    /// Accounts a merge: `added` bytes held by the new part, `freed` by the parts it replaced.
    pub(crate) fn adjust_bytes(&self, added: usize, freed: usize) {
        self.bytes.fetch_add(added, Ordering::Relaxed);
        self.bytes.fetch_sub(freed, Ordering::Relaxed);
    }

    /// The timestamps of the partition starting at `start`.
    pub(crate) fn partition_span(&self, start: i64) -> TimeSpan {
        TimeSpan::new(start, start.saturating_add(self.window - 1))
    }

    /// Makes the memtable read-only (later writes fail).
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::Release);
    }

    /// Whether [`Memtable::freeze`] was called.
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Acquire)
    }

    /// Current figures; cheap (atomics and two short locks).
    pub fn stats(&self) -> MemtableStats {
        let rows = self.rows.load(Ordering::Relaxed);
        let (min, max) = (
            self.min_ts.load(Ordering::Relaxed),
            self.max_ts.load(Ordering::Relaxed),
        );
        MemtableStats {
            bytes: self.bytes.load(Ordering::Relaxed),
            rows,
            series: read_lock(&self.series).len(),
            time_range: (rows > 0).then_some(TimeSpan::new(min, max)),
            max_sequence: self.max_sequence.load(Ordering::Acquire),
            partitions: read_lock(&self.partitions).len(),
        }
    }

    /// Start of every time partition, in order (each a `[start, start + window)` range).
    pub fn partition_starts(&self) -> Vec<i64> {
        read_lock(&self.partitions).keys().copied().collect()
    }

    /// Start and rows (before deduplication) of every time partition, in order.
    pub fn partition_rows(&self) -> Vec<(i64, usize)> {
        read_lock(&self.partitions)
            .iter()
            .map(|(start, parts)| (*start, parts.iter().map(|p| p.num_rows()).sum()))
            .collect()
    }

    /// Width of a time partition in the time index's unit.
    pub fn window(&self) -> i64 {
        self.window
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.rows.load(Ordering::Relaxed) == 0
    }
}

/// Start of the window holding `ts` (floor division, so negative times work).
pub(crate) fn window_start(ts: i64, window: i64) -> i64 {
    ts.div_euclid(window).saturating_mul(window)
}

fn window_in_unit(d: Duration, unit: TimeUnit) -> i64 {
    let per_sec: i128 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let v =
        i128::from(d.as_secs()) * per_sec + i128::from(d.subsec_nanos()) * per_sec / 1_000_000_000;
    i64::try_from(v).unwrap_or(i64::MAX)
}
