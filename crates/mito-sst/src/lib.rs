//! Parquet SST files of a Mito region.
//!
//! ```text
//!  sorted batches (key, ts, seq desc) ──► SstWriter ──► one Parquet object ──► FileMeta
//!        row groups of ~100k rows, ZSTD, delta-encoded ts/sequence/decimal fields,
//!        untruncated statistics + page index, CRC32C per column chunk and of the tail
//!  FileMeta + projection/time range/filters ──► SstReader ──► batches in (key, ts, seq desc)
//!        row groups and pages pruned by DataFusion's PruningPredicate (plain string
//!        comparisons and the time range checked directly); every byte read is checked
//!        against its checksum before it is decoded
//! ```
//!
//! All I/O goes through an opendal [`opendal::Operator`]; paths come from ids only
//! ([`file::sst_path`]).

pub mod error;
pub mod file;
pub mod format;
pub mod orphan;
mod pruning;
pub mod reader;
pub mod store;
pub mod writer;

pub use file::{DATA_DIR, FileId, FileMeta, parse_sst_file_name, sst_path};
pub use reader::{
    Admission, CacheKey, ChunkCache, ColumnCache, Pruner, Slot, SstRead, SstReadRequest, SstReader,
};
pub use writer::{SstWriter, WriteOptions};
