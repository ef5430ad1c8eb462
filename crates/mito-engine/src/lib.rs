//! `MitoEngine`: the region engine over the WAL, memtables, SST files and the manifest.
//!
//! Under construction (issue 5). What exists: the configuration with its `sanitize` step, the
//! engine-wide write-buffer accounting, and the flush of frozen memtables into SSTs committed
//! with one manifest edit. The region workers, open/replay and scan come next, built on
//! `mito-sst`, `mito-manifest` and `mito_read::merge`.

pub mod config;
pub mod error;
pub mod flush;
pub mod write_buffer;

pub use config::MitoConfig;
