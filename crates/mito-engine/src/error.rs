//! Errors of the engine.

use snafu::{Location, Snafu};
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
}

/// Result of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl ErrorExt for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidConfig { .. } => ErrorKind::InvalidArgument,
        }
    }
}
