//! Errors of the manifest. Every message names the region or the file.

use snafu::{Location, Snafu};
use store_api::RegionId;
use store_api::error::{ErrorExt, ErrorKind};

/// Errors of the region manifest.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// The object store failed.
    #[snafu(display("Object store error on {path}: {source}"))]
    ObjectStore {
        path: String,
        source: opendal::Error,
        #[snafu(implicit)]
        location: Location,
    },

    /// A manifest file was written but making its name durable failed.
    #[snafu(display("Cannot make manifest file {path} durable: {source}"))]
    Sync {
        path: String,
        #[snafu(source(from(mito_sst::error::Error, Box::new)))]
        source: Box<mito_sst::error::Error>,
        #[snafu(implicit)]
        location: Location,
    },

    /// A manifest file's contents could not be encoded (nothing was written).
    #[snafu(display("Cannot encode manifest file {path}: {source}"))]
    Encode {
        path: String,
        source: serde_json::Error,
        #[snafu(implicit)]
        location: Location,
    },

    /// A manifest file fails its checksum or does not decode.
    #[snafu(display("Manifest file {path} is corrupted: {reason}"))]
    Corrupted {
        path: String,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// The manifest files do not form a complete history (a version is missing), so no state
    /// can be proven complete.
    #[snafu(display("Manifest under {dir} is incomplete: {reason}"))]
    Incomplete {
        dir: String,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// An action cannot apply to the current state.
    #[snafu(display(
        "Invalid manifest action for region {region_id} at version {version}: {reason}"
    ))]
    InvalidAction {
        region_id: RegionId,
        version: u64,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// A manifest already exists where a new region was to be created.
    #[snafu(display("A manifest already exists under {dir}"))]
    AlreadyExists {
        dir: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// The region was removed; its manifest takes no more actions.
    #[snafu(display("Region {region_id} was removed"))]
    Removed {
        region_id: RegionId,
        #[snafu(implicit)]
        location: Location,
    },
}

/// Result of the manifest.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl ErrorExt for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::ObjectStore { source, .. } if source.is_temporary() => ErrorKind::Unavailable,
            Error::ObjectStore { source, .. } if source.kind() == opendal::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Error::ObjectStore { .. } | Error::Sync { .. } => ErrorKind::StorageFailure,
            Error::Corrupted { .. } | Error::Incomplete { .. } => ErrorKind::Corrupted,
            Error::InvalidAction { .. } => ErrorKind::InvalidArgument,
            Error::Encode { .. } => ErrorKind::Internal,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::Removed { .. } => ErrorKind::NotFound,
        }
    }
}
