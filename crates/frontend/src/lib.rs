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
pub mod query;

pub use error::{Error, Result};
pub use instance::{Instance, InstanceOptions, QueryOptions};

/// Replays the checked-in cargo-fuzz corpus `fuzz/corpus/{target}` through `body`; at least
/// `min` inputs must be there.
#[cfg(test)]
fn replay_fuzz_corpus(target: &str, min: usize, body: fn(&[u8]) -> Result<(), String>) {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .path();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(e) = body(&data) {
            panic!("{}: {e}", path.display());
        }
        n += 1;
    }
    assert!(n >= min, "corpus at {} has {n} inputs", dir.display());
}
