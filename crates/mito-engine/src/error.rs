//! Errors of the engine.

use std::sync::Arc;

use arrow_schema::ArrowError;
use snafu::{IntoError, Location, Snafu};
use store_api::error::{BoxedError, ErrorExt, ErrorKind};
use store_api::{EntryId, RegionId};

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

    /// The WAL directory did not open: damaged (`Corrupted`, with the segment and offset),
    /// locked by another process, or unreadable.
    #[snafu(display("Cannot open the WAL in {}: {source}", dir.display()))]
    OpenWal {
        dir: std::path::PathBuf,
        #[snafu(source(from(log_store::error::Error, Box::new)))]
        source: Box<log_store::error::Error>,
        #[snafu(implicit)]
        location: Location,
    },

    /// The WAL directory is gone while regions exist: what it held may be lost.
    #[snafu(display(
        "The WAL directory {} is missing or was emptied (no LOCK file), but {} holds \
         regions: entries not yet flushed may be lost; restore it (the data directory was not \
         changed), or create it with an empty LOCK file to open the regions as of their last \
         flush",
        dir.display(),
        regions.display()
    ))]
    WalMissing {
        dir: std::path::PathBuf,
        regions: std::path::PathBuf,
        #[snafu(implicit)]
        location: Location,
    },

    /// The data directory cannot be created or opened.
    #[snafu(display("Cannot open the data directory {}: {reason}", path.display()))]
    OpenDataDir {
        path: std::path::PathBuf,
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

    /// The region is not open on this engine (or does not exist).
    #[snafu(display("Region {region_id} is not open{hint}"))]
    RegionNotFound {
        region_id: RegionId,
        hint: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// The region is already open or already exists.
    #[snafu(display("Region {region_id} already exists{hint}"))]
    RegionExists {
        region_id: RegionId,
        hint: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// A request is invalid; nothing changed.
    #[snafu(display("Invalid request for region {region_id}: {reason}"))]
    InvalidRequest {
        region_id: RegionId,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// The request is valid but not supported by this version of the engine.
    #[snafu(display("Region {region_id}: {what} is not supported yet"))]
    Unsupported {
        region_id: RegionId,
        what: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// The region is a follower and takes no writes.
    #[snafu(display("Region {region_id} is a follower and takes no writes"))]
    ReadOnly {
        region_id: RegionId,
        #[snafu(implicit)]
        location: Location,
    },

    /// The engine was opened read-only.
    #[snafu(display("The engine is open read-only: {what} is refused"))]
    EngineReadOnly {
        what: &'static str,
        #[snafu(implicit)]
        location: Location,
    },

    /// Memtables hold more than twice the global write buffer: writes are refused until
    /// flushes catch up.
    #[snafu(display(
        "Write buffer full: memtables hold {used} bytes, over twice the limit of {limit} bytes; retry after flushes catch up"
    ))]
    WriteBufferFull {
        used: u64,
        limit: u64,
        #[snafu(implicit)]
        location: Location,
    },

    /// Encoding a WAL entry failed.
    #[snafu(display("Cannot encode a WAL entry of region {region_id}: {source}"))]
    EncodeWal {
        region_id: RegionId,
        source: ArrowError,
        #[snafu(implicit)]
        location: Location,
    },

    /// The WAL append failed; whether the entries are durable is unknown.
    #[snafu(display("WAL append for region {region_id} failed: {source}"))]
    WalAppend {
        region_id: RegionId,
        source: Arc<BoxedError>,
        #[snafu(implicit)]
        location: Location,
    },

    /// Reading the WAL failed.
    #[snafu(display("WAL read for region {region_id} failed: {source}"))]
    WalRead {
        region_id: RegionId,
        source: BoxedError,
        #[snafu(implicit)]
        location: Location,
    },

    /// A WAL entry of the region does not decode or does not fit the region.
    #[snafu(display("WAL entry {entry_id} of region {region_id} cannot be replayed: {reason}"))]
    BadWalEntry {
        region_id: RegionId,
        entry_id: EntryId,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// The region's WAL lacks entries between the flushed one and later ones: acknowledged
    /// writes are missing.
    #[snafu(display(
        "WAL of region {region_id} is missing entries {expected} to {} (entry {found} follows): acknowledged writes are gone, a WAL segment was deleted or damaged; not opening the region",
        found - 1
    ))]
    WalGap {
        region_id: RegionId,
        expected: EntryId,
        found: EntryId,
        #[snafu(implicit)]
        location: Location,
    },

    /// SST files the manifest names are not in the region's directory.
    #[snafu(display(
        "Region {region_id}: the manifest (version {manifest_version}) names SST files that are missing: {files}; not opening the region"
    ))]
    MissingFiles {
        region_id: RegionId,
        manifest_version: u64,
        files: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// SST files the manifest does not name hold rows newer than the manifest and the WAL:
    /// the manifest's newest edit is lost.
    #[snafu(display(
        "Region {region_id}: SST files not in the manifest (version {manifest_version}) hold rows up to sequence {max_sequence}, past the {recovered} the manifest and the WAL hold: the manifest's newest delta is missing or damaged; not opening the region (no file was deleted): {files}"
    ))]
    UnrecordedFiles {
        region_id: RegionId,
        manifest_version: u64,
        files: String,
        max_sequence: u64,
        recovered: u64,
        #[snafu(implicit)]
        location: Location,
    },

    /// An object store operation failed.
    #[snafu(display("Object store {op} of '{path}' failed: {source}"))]
    ObjectStore {
        op: &'static str,
        path: String,
        #[snafu(source(from(opendal::Error, Box::new)))]
        source: Box<opendal::Error>,
        #[snafu(implicit)]
        location: Location,
    },

    /// An Arrow computation failed.
    #[snafu(display("Arrow error: {source}"))]
    Arrow {
        source: ArrowError,
        #[snafu(implicit)]
        location: Location,
    },

    /// A broken invariant of the engine itself (a bug, not bad input): reported instead of
    /// answering with wrong data.
    #[snafu(display("Internal error in region {region_id}: {reason}"))]
    Internal {
        region_id: RegionId,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// Evaluating a scan filter failed.
    #[snafu(display("Filter of a scan of region {region_id} failed: {reason}"))]
    Filter {
        region_id: RegionId,
        reason: String,
        #[snafu(implicit)]
        location: Location,
    },

    /// A flush failed; the data stays in the memtables and the WAL.
    #[snafu(display("Flush of region {region_id} failed: {source}"))]
    FlushFailed {
        region_id: RegionId,
        source: Arc<Error>,
        #[snafu(implicit)]
        location: Location,
    },

    /// A compaction failed; the region keeps its files.
    #[snafu(display("Compaction of region {region_id} failed: {source}"))]
    Compaction {
        region_id: RegionId,
        #[snafu(source(from(mito_compaction::error::Error, Box::new)))]
        source: Box<mito_compaction::error::Error>,
        #[snafu(implicit)]
        location: Location,
    },

    /// A compaction failed (shared by everyone waiting for it).
    #[snafu(display("Compaction of region {region_id} failed: {source}"))]
    CompactionFailed {
        region_id: RegionId,
        source: Arc<Error>,
        #[snafu(implicit)]
        location: Location,
    },

    /// The engine is stopped, or the request was dropped when it stopped.
    #[snafu(display("Engine stopped{hint}"))]
    Stopped {
        hint: String,
        #[snafu(implicit)]
        location: Location,
    },
}

impl From<ArrowError> for Error {
    fn from(source: ArrowError) -> Self {
        ArrowSnafu.into_error(source)
    }
}

/// Result of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl ErrorExt for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidConfig { .. } => ErrorKind::InvalidArgument,
            Error::OpenWal { source, .. } => source.kind(),
            Error::OpenDataDir { .. } => ErrorKind::StorageFailure,
            Error::Sst { source, .. } => source.kind(),
            Error::Manifest { source, .. } => source.kind(),
            Error::Memtable { source, .. } => source.kind(),
            Error::RegionNotFound { .. } => ErrorKind::NotFound,
            Error::RegionExists { .. } => ErrorKind::AlreadyExists,
            Error::InvalidRequest { .. } => ErrorKind::InvalidArgument,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::ReadOnly { .. } | Error::EngineReadOnly { .. } => ErrorKind::ReadOnly,
            Error::WriteBufferFull { .. } => ErrorKind::Busy,
            Error::EncodeWal { .. } | Error::Arrow { .. } | Error::Internal { .. } => {
                ErrorKind::Internal
            }
            Error::WalAppend { source, .. } => source.kind(),
            Error::WalRead { source, .. } => source.kind(),
            Error::BadWalEntry { .. }
            | Error::WalGap { .. }
            | Error::MissingFiles { .. }
            | Error::WalMissing { .. }
            | Error::UnrecordedFiles { .. } => ErrorKind::Corrupted,
            Error::ObjectStore { source, .. } => match source.kind() {
                opendal::ErrorKind::NotFound => ErrorKind::NotFound,
                _ if source.is_temporary() => ErrorKind::Unavailable,
                _ => ErrorKind::StorageFailure,
            },
            Error::Filter { .. } => ErrorKind::InvalidArgument,
            Error::FlushFailed { source, .. } => source.kind(),
            Error::Stopped { .. } => ErrorKind::Cancelled,
            Error::Compaction { source, .. } => source.kind(),
            Error::CompactionFailed { source, .. } => source.kind(),
        }
    }
}
