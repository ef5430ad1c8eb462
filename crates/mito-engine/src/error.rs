//! Errors of the engine.

use snafu::{Location, Snafu};
use store_api::RegionId;
use store_api::error::{ErrorExt, ErrorKind};

/// Errors of the engine.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// The engine configuration cannot work.
    #[snafu(display("Invalid engine config: {reason}"))]
    InvalidConfig {
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// Writing or reading an SST failed.
    #[snafu(display("SST error in region {region_id}: {source}"))]
    Sst {
        region_id: RegionId,
        #[snafu(source(from(mito_sst::error::Error, Box::new)))]
        source: Box<mito_sst::error::Error>,
        #[snafu(implicit)]
        location: Location,
    },

    /// The manifest failed.
    #[snafu(display("Manifest error in region {region_id}: {source}"))]
    Manifest {
        region_id: RegionId,
        #[snafu(source(from(mito_manifest::error::Error, Box::new)))]
        source: Box<mito_manifest::error::Error>,
        #[snafu(implicit)]
        location: Location,
    },

    /// A memtable read or write failed.
    #[snafu(display("Memtable error in region {region_id}: {source}"))]
    Memtable {
        region_id: RegionId,
        #[snafu(source(from(mito_memtable::error::Error, Box::new)))]
        source: Box<mito_memtable::error::Error>,
        #[snafu(implicit)]
        location: Location,
    },
}

/// Result of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl ErrorExt for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidConfig { .. } => ErrorKind::InvalidArgument,
            Error::Sst { source, .. } => source.kind(),
            Error::Manifest { source, .. } => source.kind(),
            Error::Memtable { source, .. } => source.kind(),
        }
    }
}
