//! Errors of the log store.

use std::path::PathBuf;

use snafu::{Location, Snafu};
use store_api::error::{BoxedError, ErrorExt, ErrorKind};
use store_api::{EntryId, RegionId};

/// Errors of the log store.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// A file operation failed.
    #[snafu(display("WAL I/O error on {}: {op}: {source}", path.display()))]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
        #[snafu(implicit)]
        location: Location,
    },

    /// Another process (or another store in this process) holds the WAL directory.
    #[snafu(display("WAL directory {} is in use by another log store", dir.display()))]
    DirLocked {
        dir: PathBuf,
        #[snafu(implicit)]
        location: Location,
    },

    /// A segment is damaged in a way recovery must not paper over.
    #[snafu(display("WAL segment {} is corrupted at offset {offset}: {reason}", path.display()))]
    Corrupted {
        path: PathBuf,
        offset: u64,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// A segment the directory's list names is gone: entries it held may be lost.
    #[snafu(display(
        "WAL segment {} is missing, but {} lists it as holding entries that may not be \
         flushed yet, so acknowledged writes may be lost; restore the file (the directory was \
         not changed)",
        path.display(),
        list.display()
    ))]
    SegmentMissing {
        path: PathBuf,
        list: PathBuf,
        #[snafu(implicit)]
        location: Location,
    },

    /// An entry breaks the append rules.
    #[snafu(display("Invalid WAL entry {entry_id} for region {region_id}: {reason}"))]
    InvalidEntry {
        region_id: RegionId,
        entry_id: EntryId,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// The configuration is unusable.
    #[snafu(display("Invalid WAL config: {reason}"))]
    InvalidConfig {
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// An earlier write or fsync failed; the log accepts no more appends until reopened,
    /// because what reached the disk is unknown.
    #[snafu(display(
        "WAL in {} stopped accepting writes after an earlier failure: {reason}",
        dir.display()
    ))]
    Poisoned {
        dir: PathBuf,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// The log store was opened read-only.
    #[snafu(display("WAL in {} is open read-only", dir.display()))]
    ReadOnly {
        dir: PathBuf,
        #[snafu(implicit)]
        location: Location,
    },

    /// The log store was stopped.
    #[snafu(display("WAL in {} is stopped", dir.display()))]
    Stopped {
        dir: PathBuf,
        #[snafu(implicit)]
        location: Location,
    },

    /// A blocking task panicked or was cancelled.
    #[snafu(display("WAL background task failed: {source}"))]
    Join {
        source: tokio::task::JoinError,
        #[snafu(implicit)]
        location: Location,
    },
}

/// Result of the log store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl ErrorExt for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } | Error::Poisoned { .. } => ErrorKind::StorageFailure,
            Error::DirLocked { .. } => ErrorKind::AlreadyExists,
            Error::Corrupted { .. } | Error::SegmentMissing { .. } => ErrorKind::Corrupted,
            Error::InvalidEntry { .. } | Error::InvalidConfig { .. } => ErrorKind::InvalidArgument,
            Error::Stopped { .. } => ErrorKind::Cancelled,
            Error::ReadOnly { .. } => ErrorKind::ReadOnly,
            Error::Join { .. } => ErrorKind::Internal,
        }
    }
}

/// A `Corrupted` error for the segment at `path`, damaged at byte `offset`.
pub(crate) fn corrupted(path: &std::path::Path, offset: usize, reason: String) -> Error {
    CorruptedSnafu {
        path,
        offset: offset as u64,
        reason,
    }
    .build()
}

impl From<Error> for BoxedError {
    fn from(e: Error) -> Self {
        BoxedError::new(e)
    }
}
