//! `MitoEngine`: the region engine over the WAL, memtables, SST files and the manifest.
//!
//! ```text
//!  RegionEngine::handle_request ─► region worker (one tokio task per shard of regions)
//!     validate ─► group WAL append ─► memtable ─► publish committed sequence ─► answer
//!     flush: freeze ─► SSTs ─► one manifest edit ─► drop memtables, obsolete WAL
//!  RegionEngine::scan ─► version snapshot ─► memtable + SST sources ─► merge ─► filters
//! ```
//!
//! See `docs/engine.md` for the request flow, the guarantees and the configuration.

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
