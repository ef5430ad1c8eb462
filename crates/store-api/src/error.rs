//! Error classification shared by every crate, and the errors of this crate.
//!
//! Each crate has its own small snafu enum; every such enum implements [`ErrorExt`], which
//! maps each variant to an [`ErrorKind`]. Traits that must stay object-safe across crates
//! (the [`RegionEngine`](crate::engine::RegionEngine), the
//! [`LogStore`](crate::logstore::LogStore)) return a [`BoxedError`], which keeps the kind,
//! the message and the source chain of the original error.

use std::fmt;

use snafu::{Location, Snafu};

use crate::{ColumnId, RegionId};

/// What kind of failure an error is, and so what a caller may do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is wrong (bad schema, bad rows, bad option). Retrying it cannot help.
    InvalidArgument,
    /// The region, file or entry does not exist.
    NotFound,
    /// The region or object already exists.
    AlreadyExists,
    /// The request is valid but this engine or version does not support it.
    Unsupported,
    /// The region does not accept writes (a follower, or made read-only after a WAL failure).
    ReadOnly,
    /// Temporarily over a limit (write buffer full, too many jobs). Retry after a pause.
    Busy,
    /// A transient failure (network, object store timeout). Retrying may succeed.
    Unavailable,
    /// Local storage failed (write or fsync error, disk full). Not retried: the component
    /// that saw it has stopped accepting writes until it is reopened.
    StorageFailure,
    /// Stored bytes fail their checksum or do not decode. Needs an operator.
    Corrupted,
    /// The component was stopped or the request cancelled.
    Cancelled,
    /// A bug: an invariant did not hold.
    Internal,
}

impl ErrorKind {
    /// Whether the same request may succeed if sent again later.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Busy | ErrorKind::Unavailable)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::ReadOnly => "read only",
            ErrorKind::Busy => "busy",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::StorageFailure => "storage failure",
            ErrorKind::Corrupted => "corrupted",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        };
        f.write_str(name)
    }
}

/// Implemented by every error enum in Mito.
pub trait ErrorExt: std::error::Error + Send + Sync + 'static {
    /// The classification of this error.
    fn kind(&self) -> ErrorKind;
}

/// A type-erased error that keeps its [`ErrorKind`]; returned across trait objects.
pub struct BoxedError {
    inner: Box<dyn ErrorExt>,
}

impl BoxedError {
    /// Boxes `err`.
    pub fn new<E: ErrorExt>(err: E) -> Self {
        Self {
            inner: Box::new(err),
        }
    }

    /// The kind of the boxed error.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind()
    }

    /// Whether the failed request may be retried.
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    /// The original error, for callers that know the concrete type.
    pub fn downcast_ref<E: ErrorExt>(&self) -> Option<&E> {
        let any: &(dyn std::error::Error + 'static) = self.inner.as_ref();
        any.downcast_ref::<E>()
    }
}

impl fmt::Debug for BoxedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl fmt::Display for BoxedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for BoxedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

impl ErrorExt for BoxedError {
    fn kind(&self) -> ErrorKind {
        self.inner.kind()
    }
}

/// Errors of this crate: metadata and request validation.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// The region metadata breaks a rule (see [`RegionMetadataBuilder`](crate::metadata::RegionMetadataBuilder)).
    #[snafu(display("Invalid metadata for region {region_id}: {reason}"))]
    InvalidMetadata {
        region_id: RegionId,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// A column cannot have this type in this role.
    #[snafu(display(
        "Invalid type {data_type} for column '{column}' (id {column_id}) of region {region_id}: {reason}"
    ))]
    InvalidColumnType {
        region_id: RegionId,
        column: String,
        column_id: ColumnId,
        data_type: String,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// A request is malformed.
    #[snafu(display("Invalid request for region {region_id}: {reason}"))]
    InvalidRequest {
        region_id: RegionId,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// A serialized metadata document did not decode.
    #[snafu(display("Failed to decode region metadata: {source}"))]
    DecodeMetadata {
        source: serde_json::Error,
        #[snafu(implicit)]
        location: Location,
    },
}

/// Result of this crate's functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl ErrorExt for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidMetadata { .. }
            | Error::InvalidColumnType { .. }
            | Error::InvalidRequest { .. } => ErrorKind::InvalidArgument,
            Error::DecodeMetadata { .. } => ErrorKind::Corrupted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_busy_and_unavailable_are_retryable() {
        let all = [
            ErrorKind::InvalidArgument,
            ErrorKind::NotFound,
            ErrorKind::AlreadyExists,
            ErrorKind::Unsupported,
            ErrorKind::ReadOnly,
            ErrorKind::Busy,
            ErrorKind::Unavailable,
            ErrorKind::StorageFailure,
            ErrorKind::Corrupted,
            ErrorKind::Cancelled,
            ErrorKind::Internal,
        ];
        let retryable: Vec<_> = all.into_iter().filter(|k| k.is_retryable()).collect();
        assert_eq!(retryable, vec![ErrorKind::Busy, ErrorKind::Unavailable]);
    }

    #[test]
    fn boxed_error_keeps_kind_message_and_type() {
        let err = InvalidRequestSnafu {
            region_id: RegionId::new(3, 4),
            reason: "empty batch",
        }
        .build();
        let boxed = BoxedError::new(err);
        assert_eq!(boxed.kind(), ErrorKind::InvalidArgument);
        assert!(!boxed.is_retryable());
        assert_eq!(
            boxed.to_string(),
            "Invalid request for region 12884901892(3, 4): empty batch"
        );
        assert!(matches!(
            boxed.downcast_ref::<Error>(),
            Some(Error::InvalidRequest { .. })
        ));
    }
}
