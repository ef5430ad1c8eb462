//! Errors of the memtable.

use snafu::{Location, Snafu};
use store_api::RegionId;
use store_api::error::{ErrorExt, ErrorKind};

/// Errors of the memtable.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// A write reached a frozen memtable (a bug in the caller: frozen memtables are read-only).
    #[snafu(display("Memtable of region {region_id} is frozen"))]
    Frozen {
        region_id: RegionId,
        #[snafu(implicit)]
        location: Location,
    },

    /// The batch does not fit the region's schema.
    #[snafu(display("Invalid batch for the memtable of region {region_id}: {reason}"))]
    InvalidBatch {
        region_id: RegionId,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// The primary key could not be encoded or decoded.
    #[snafu(display("Primary key error in region {region_id}: {source}"))]
    Key {
        region_id: RegionId,
        source: mito_codec::Error,
        #[snafu(implicit)]
        location: Location,
    },

    /// An invariant of the memtable did not hold (a bug; reported instead of a wrong answer).
    #[snafu(display("Internal error in the memtable of region {region_id}: {reason}"))]
    Internal {
        region_id: RegionId,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// An Arrow kernel failed.
    #[snafu(display("Arrow error in the memtable of region {region_id}: {source}"))]
    Arrow {
        region_id: RegionId,
        source: arrow_schema::ArrowError,
        #[snafu(implicit)]
        location: Location,
    },
}

/// Result of the memtable.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl ErrorExt for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Frozen { .. } | Error::Arrow { .. } | Error::Internal { .. } => {
                ErrorKind::Internal
            }
            Error::InvalidBatch { .. } => ErrorKind::InvalidArgument,
            Error::Key { source, .. } => source.kind(),
        }
    }
}
