//! Errors of the frontend: each names the table, file or line involved.

use std::path::PathBuf;

use snafu::Snafu;
use store_api::error::{BoxedError, ErrorExt, ErrorKind};

use crate::catalog::CatalogError;

/// A frontend error.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    /// Another process holds the data directory.
    #[snafu(display(
        "data directory {} is in use by another mito process (lock file {})",
        dir.display(),
        lock.display()
    ))]
    DataDirLocked {
        /// The data directory.
        dir: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// The data directory cannot be created or opened.
    #[snafu(display("data directory {}: {source}", dir.display()))]
    DataDir {
        /// The data directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The catalog cannot be read or written.
    #[snafu(display("{source}"))]
    Catalog {
        /// The cause.
        source: CatalogError,
    },
    /// No table has this name.
    #[snafu(display("table '{name}' does not exist{hint}"))]
    TableNotFound {
        /// The name asked for.
        name: String,
        /// The tables there are, or nothing.
        hint: String,
    },
    /// A table definition or change is refused before it reaches the engine.
    #[snafu(display("table '{name}': {reason}"))]
    InvalidTable {
        /// The table.
        name: String,
        /// Why.
        reason: String,
    },
    /// The engine refused or failed a request on a table's region.
    #[snafu(display("table '{table}' ({action}): {source}"))]
    Engine {
        /// The table.
        table: String,
        /// What was asked (`open`, `put`, `alter`, ...).
        action: &'static str,
        /// The engine's error.
        source: BoxedError,
    },
    /// The engine itself failed to start or stop.
    #[snafu(display("engine under {}: {source}", dir.display()))]
    EngineStart {
        /// The data directory.
        dir: PathBuf,
        /// The engine's error.
        source: BoxedError,
    },
    /// A SQL statement failed to plan or run.
    #[cfg(feature = "sql")]
    #[snafu(display("{source}"))]
    Sql {
        /// DataFusion's error.
        source: datafusion::error::DataFusionError,
    },
    /// An ingest stopped at an engine failure; what was acknowledged before it stays.
    #[snafu(display(
        "{source} ({rows_written} rows were written before the failure and are kept)"
    ))]
    IngestStopped {
        /// Rows acknowledged by the engine before the ingest stopped (every put that was in
        /// flight has answered).
        rows_written: u64,
        /// The failure.
        source: Box<Error>,
    },
    /// Reading the input failed.
    #[snafu(display("reading {input}: {source}"))]
    Input {
        /// The file (or `stdin`).
        input: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl ErrorExt for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::DataDirLocked { .. } => ErrorKind::Busy,
            Error::DataDir { .. } | Error::Input { .. } => ErrorKind::StorageFailure,
            Error::Catalog { source } => match source {
                CatalogError::Corrupted { .. } => ErrorKind::Corrupted,
                CatalogError::Io { .. } => ErrorKind::StorageFailure,
            },
            Error::TableNotFound { .. } => ErrorKind::NotFound,
            Error::InvalidTable { .. } => ErrorKind::InvalidArgument,
            #[cfg(feature = "sql")]
            Error::Sql { source } => sql_kind(source),
            Error::Engine { source, .. } | Error::EngineStart { source, .. } => source.kind(),
            Error::IngestStopped { source, .. } => source.kind(),
        }
    }
}

/// The frontend's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The kind of a DataFusion error: a query over the memory limit or past its timeout is
/// `Busy` (the same query may pass when fewer run), the engine's own errors keep their kind,
/// everything else is the statement's fault.
#[cfg(feature = "sql")]
fn sql_kind(e: &datafusion::error::DataFusionError) -> ErrorKind {
    use datafusion::error::DataFusionError as D;
    match e {
        D::ResourcesExhausted(_) => ErrorKind::Busy,
        D::Context(_, inner) => sql_kind(inner),
        D::Shared(inner) => sql_kind(inner),
        D::External(inner) => inner
            .downcast_ref::<D>()
            .map_or(ErrorKind::InvalidArgument, sql_kind),
        _ => ErrorKind::InvalidArgument,
    }
}
