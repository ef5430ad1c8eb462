//! The memtable of a Mito region: one kind, columnar, time-partitioned.
//!
//! ```text
//!  write(RecordBatch, first sequence, Put|Delete)
//!    -> encode each row's primary key (mito-codec), look up its series id
//!    -> split rows by time window (the region's compaction window, default 1 day)
//!    -> one immutable Part per window: series ids, timestamps, sequences,
//!       and the write's own field arrays (shared, not copied)
//!  read(projection, time range, snapshot sequence)
//!    -> rows sorted by (primary key, ts, sequence desc), deduplicated by mito-read
//!  freeze() -> read-only until its flush commits
//! ```
//!
//! Accounting ([`Memtable::stats`]) counts the bytes actually held: every Arrow buffer kept,
//! the row vectors and the series keys.

pub mod error;
mod gather;
mod memtable;
mod merge;
mod part;
mod read;
mod series;

pub use memtable::{DEFAULT_TIME_WINDOW, Memtable, MemtableOptions, MemtableStats, MergePolicy};
pub use read::{DEFAULT_BATCH_ROWS, MemtableIter, MemtableRead};
