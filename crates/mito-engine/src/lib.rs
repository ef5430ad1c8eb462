//! `MitoEngine`: the region engine over the WAL, memtables, SST files and the manifest.
//!
//! ```text
//!  RegionEngine::handle_request ─► region worker (one tokio task per shard of regions)
//!     validate ─► group WAL append ─► memtable ─► publish committed sequence ─► answer
//!     flush: freeze ─► SSTs ─► one manifest edit ─► drop memtables, obsolete WAL
//!  RegionEngine::scan ─► version snapshot ─► memtable + SST sources ─► merge ─► filters
//! ```
//!
//! Where each step lives: requests enter in [`engine`] (`MitoEngine::handle`, `scan_region`);
//! the region workers are in `worker/` (`mod.rs` the loop, `write.rs` the write path,
//! `handle_flush.rs`, `handle_compaction.rs`, `open.rs` with the WAL replay, `handle_alter.rs`,
//! `handle_close.rs`, `state.rs` the per-region state machines); the flush job in [`flush`];
//! scans in `scan/` (`mod.rs` the plan and sources, `split.rs`, `last_row.rs`); versions and regions in [`region`]; the write buffer in
//! [`write_buffer`]. `docs/architecture.md` draws every path with its files;
//! `docs/engine.md` gives the request flow, the guarantees and the configuration.

pub mod background;
pub mod cache;
pub mod config;
pub mod engine;
pub mod error;
pub mod flush;
pub mod metrics;
pub mod options;
pub mod region;
mod scan;
pub mod validate;
pub mod wal_entry;
mod worker;
pub mod write_buffer;

pub use config::MitoConfig;
pub use engine::MitoEngine;
