//! Compaction of Mito regions.
//!
//! - [`picker`]: the time-window compaction picker, a pure synchronous function of (files,
//!   options, now) with no I/O.
//! - [`task`]: one compaction: merge inputs through the scan's merge and dedup, write outputs,
//!   commit one manifest edit.
//!
//! Still to come (issue 6): the scheduler in the engine, file purge and orphan cleanup.

pub mod error;
pub mod picker;
pub mod task;

pub use picker::{CompactionPlan, CompactionTask, TwcsOptions, WINDOW_CHOICES_SECS, pick};
pub use task::{CompactionJob, CompactionOutput, Merged, commit, compact, write_outputs};
