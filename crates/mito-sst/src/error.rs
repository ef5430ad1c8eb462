//! Errors of SST files. Every message names the file (region id and file id, or the path).

use snafu::{Location, Snafu};
use store_api::RegionId;
use store_api::error::{ErrorExt, ErrorKind};

use crate::file::FileId;

/// Errors of writing and reading SST files.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// The batches given to the writer do not fit the region schema or are out of order.
    #[snafu(display("Invalid input for SST {file_id} of region {region_id}: {reason}"))]
    InvalidInput {
        region_id: RegionId,
        file_id: FileId,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// An SST must hold at least one row (it always has a time range).
    #[snafu(display("SST {file_id} of region {region_id} would be empty"))]
    EmptySst {
        region_id: RegionId,
        file_id: FileId,
        #[snafu(implicit)]
        location: Location,
    },

    /// The object store failed.
    #[snafu(display("Object store error on {path}: {source}"))]
    ObjectStore {
        path: String,
        source: opendal::Error,
        #[snafu(implicit)]
        location: Location,
    },

    /// Making a directory's entries durable (fsync of the directory) failed.
    #[snafu(display("Cannot fsync directory {}: {source}", path.display()))]
    SyncDir {
        path: std::path::PathBuf,
        source: std::io::Error,
        #[snafu(implicit)]
        location: Location,
    },

    /// Parquet encoding or decoding failed.
    #[snafu(display("Parquet error in {path}: {source}"))]
    Parquet {
        path: String,
        source: parquet::errors::ParquetError,
        #[snafu(implicit)]
        location: Location,
    },

    /// An Arrow kernel failed.
    #[snafu(display("Arrow error in {path}: {source}"))]
    Arrow {
        path: String,
        source: arrow_schema::ArrowError,
        #[snafu(implicit)]
        location: Location,
    },

    /// The file's bytes are not what was written: a checksum or size mismatch, or metadata
    /// that cannot be what the writer produced.
    #[snafu(display("SST {path} is corrupted: {reason}"))]
    Corrupted {
        path: String,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// The file belongs to another region or uses columns in a way the region does not.
    #[snafu(display("SST {path} does not match region {region_id}: {reason}"))]
    SchemaMismatch {
        path: String,
        region_id: RegionId,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// A filter of the read cannot be evaluated on the file's rows (a type the values do not
    /// cast to, say): the query is at fault, not the file.
    #[snafu(display(
        "the query's filter {filter} cannot be evaluated on the rows of SST {path} (the file \
         is fine): {reason}"
    ))]
    FilterFailed {
        path: String,
        filter: String,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// A read request is invalid (unknown column id, ...).
    #[snafu(display("Invalid read of SST {path}: {reason}"))]
    InvalidRead {
        path: String,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },
}

/// Result of SST operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl ErrorExt for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidInput { .. }
            | Error::EmptySst { .. }
            | Error::InvalidRead { .. }
            | Error::FilterFailed { .. } => ErrorKind::InvalidArgument,
            Error::ObjectStore { source, .. } if source.is_temporary() => ErrorKind::Unavailable,
            Error::ObjectStore { source, .. } if source.kind() == opendal::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Error::ObjectStore { .. } | Error::SyncDir { .. } => ErrorKind::StorageFailure,
            Error::Corrupted { .. } | Error::Parquet { .. } => ErrorKind::Corrupted,
            Error::SchemaMismatch { .. } => ErrorKind::Corrupted,
            Error::Arrow { .. } => ErrorKind::Internal,
        }
    }
}
