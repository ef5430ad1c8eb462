//! Write-ahead logs for Mito regions.
//!
//! ```text
//!  region worker ──append_batch(entries of many regions)──► LocalLogStore
//!                                                              │ encode [len][crc32c][payload]
//!                                                              ▼
//!                                                        writer thread: group commit
//!                                                        (one write + one fsync per group)
//!                                                              ▼
//!                                                  dir/{segment_id:020}.wal (rolls at size)
//!  open region ──read(region, from flushed+1)──► entries in order
//!  flush done  ──obsolete(region, flushed entry)──► segments nobody needs are deleted
//! ```
//!
//! - [`LocalLogStore`]: the default; segment files in a local directory. Recovery drops a torn
//!   tail and refuses damage followed by valid records (see [`local::format`]).
//! - [`NoopLogStore`]: stores nothing, for regions that skip the WAL.
//!
//! Both implement [`store_api::logstore::LogStore`].

pub mod config;
pub mod error;
pub mod local;
mod noop;

pub use config::{Durability, WalConfig};
pub use local::LocalLogStore;
pub use noop::NoopLogStore;
