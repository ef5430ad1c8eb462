//! The region contract of Mito: what a region engine is, in traits and plain data.
//!
//! This crate holds no I/O and no runtime. Engines (`mito-engine`, `file-engine`),
//! the WAL (`log-store`) and everything above them (region server, frontend) meet here.
//!
//! ```text
//!   frontend / region server
//!        |  RegionRequest (Create, Open, Put(RecordBatch), Flush, ...)   ScanRequest
//!        v                                                                   |
//!   dyn RegionEngine::handle_request(RegionId, ..) -> RegionResponse         |
//!   dyn RegionEngine::scan(RegionId, ..) -> BatchStream  <-------------------+
//!        |
//!        |  validated rows, encoded as WAL entries keyed by (RegionId, EntryId)
//!        v
//!   dyn LogStore::append_batch(Vec<Entry>)   read(region, from)   obsolete(region, id)
//! ```
//!
//! Vocabulary:
//! - [`RegionId`]: table id (high 32 bits) and region number (low 32 bits).
//! - [`metadata::RegionMetadata`]: the validated schema of a region: tag columns (the primary
//!   key, in order), exactly one time index, fields, and a `schema_version`.
//! - [`SequenceNumber`]: orders every row ever written to a region; [`EntryId`]: orders a
//!   region's WAL entries. They are separate counters.
//! - [`error::ErrorKind`]: the small public classification of every error, which says whether
//!   a caller may retry.
//! - [`clock::Clock`]: injected time, so TTLs, windows and intervals are testable.

pub mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod logstore;
pub mod metadata;
pub mod region_request;
pub mod scan;
mod storage;
pub mod time;

pub use storage::{ColumnId, EntryId, RegionId, RegionNumber, SequenceNumber, TableId};
