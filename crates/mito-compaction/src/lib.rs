//! Compaction of Mito regions.
//!
//! Started with issue 6: the time-window compaction picker ([`picker`]), a pure synchronous
//! function of (files, options, now) with no I/O. The compaction task (merge through the
//! scan's merge, one manifest edit), the scheduler and file purge come next.

pub mod picker;

pub use picker::{CompactionPlan, CompactionTask, TwcsOptions, WINDOW_CHOICES_SECS, pick};
