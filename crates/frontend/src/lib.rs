//! Tables over Mito regions, for one machine: the catalog, line-protocol ingest and SQL.
//!
//! ```text
//!  line protocol ─> ingest::line_protocol ─> ingest::batcher ─┐ (ingest thread)
//!                                                             v
//!  catalog.mito <── instance::Instance ── create / alter / put ──> MitoEngine (regions)
//!                        │                                            ^
//!  SQL ──> DataFusion ──> query::RegionTable ── ScanRequest ──────────┘
//! ```
//!
//! - [`ingest`]: the pipeline that reads input and writes batches, creating and altering
//!   tables on first sight of a measurement, tag or field; with the InfluxDB line protocol
//!   parser ([`ingest::line_protocol`], pure) and the batcher of parsed lines into per-table
//!   Arrow batches checked against the schemas ([`ingest::batcher`]).
//! - [`query`]: the SQL entry points (`query`, `query_stream`, `session`); the DataFusion
//!   `TableProvider` (`query::table`), the session and its optimizer rules
//!   (`query::session`, `query::last_row`, `query::run_aggregate`), the plan cache, the
//!   read-only statement guard.
//! - [`catalog`]: the catalog file (table names to region ids).
//! - [`instance`]: the embedded standalone mode over one data directory.

pub mod catalog;
pub mod error;
pub mod ingest;
pub mod instance;
#[cfg(feature = "sql")]
mod plan_cache;
#[cfg(feature = "sql")]
pub mod query;

pub use error::{Error, Result};
pub use instance::{Instance, InstanceOptions, QueryOptions};
