//! Tables over Mito regions, for one machine: the catalog, line-protocol ingest and SQL.
//!
//! ```text
//!  line protocol ──> line_protocol::parse_line ──> batcher::Batcher ──┐ (ingest thread)
//!                                                                     v
//!  catalog.mito <── instance::Instance ── create / alter / put ──> MitoEngine (regions)
//!                        │                                            ^
//!  SQL ──> DataFusion ──> provider::RegionTable ── ScanRequest ───────┘
//! ```
//!
//! - [`line_protocol`]: the InfluxDB line protocol parser (pure).
//! - [`batcher`]: parsed lines into per-table Arrow batches, checked against the schemas.
//! - [`ingest`]: the pipeline that reads input and writes batches, creating and altering
//!   tables on first sight of a measurement, tag or field.
//! - [`catalog`]: the catalog file (table names to region ids).
//! - [`instance`]: the embedded standalone mode over one data directory.
//! - [`provider`]: the DataFusion `TableProvider` and the SQL entry point.

pub mod batcher;
pub mod catalog;
pub mod error;
pub mod ingest;
pub mod instance;
pub mod line_protocol;
#[cfg(feature = "sql")]
pub mod provider;

pub use error::{Error, Result};
pub use instance::{Instance, InstanceOptions};
