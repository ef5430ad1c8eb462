//! Errors of compaction.

use snafu::{Location, Snafu};
use store_api::RegionId;
use store_api::error::{ErrorExt, ErrorKind};

/// Errors of compaction.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// Reading an input or writing an output failed.
    #[snafu(display("Compaction of region {region_id}: SST error: {source}"))]
    Sst {
        region_id: RegionId,
        #[snafu(source(from(mito_sst::error::Error, Box::new)))]
        source: Box<mito_sst::error::Error>,
        #[snafu(implicit)]
        location: Location,
    },

    /// The manifest edit failed.
    #[snafu(display("Compaction of region {region_id}: manifest error: {source}"))]
    Manifest {
        region_id: RegionId,
        #[snafu(source(from(mito_manifest::error::Error, Box::new)))]
        source: Box<mito_manifest::error::Error>,
        #[snafu(implicit)]
        location: Location,
    },

    /// Merging the inputs failed.
    #[snafu(display("Compaction of region {region_id}: merge error: {source}"))]
    Merge {
        region_id: RegionId,
        source: arrow_schema::ArrowError,
        #[snafu(implicit)]
        location: Location,
    },

    /// The task is invalid (no inputs, inputs of another region).
    #[snafu(display("Compaction of region {region_id}: {reason}"))]
    InvalidTask {
        region_id: RegionId,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },
}

/// Result of compaction.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl ErrorExt for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Sst { source, .. } => source.kind(),
            Error::Manifest { source, .. } => source.kind(),
            Error::Merge { .. } => ErrorKind::Internal,
            Error::InvalidTask { .. } => ErrorKind::InvalidArgument,
        }
    }
}
