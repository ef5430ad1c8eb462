//! The [`RegionEngine`] trait: the only way into a storage engine.

use std::sync::Arc;

use async_trait::async_trait;

use crate::RegionId;
use crate::error::BoxedError;
use crate::metadata::RegionMetadataRef;
use crate::region_request::{RegionOptionsMap, RegionRequest, RegionResponse};
use crate::scan::{BatchStream, ScanRequest};

/// Whether a region accepts writes on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegionRole {
    /// Accepts writes and reads.
    Leader,
    /// Reads only (a replica, or a region being moved away).
    Follower,
}

/// A storage engine hosting many regions.
///
/// Every method is safe to call concurrently. Mutations of one region are serialised inside
/// the engine; scans read a consistent snapshot without waiting for writers.
#[async_trait]
pub trait RegionEngine: Send + Sync + std::fmt::Debug {
    /// The engine's name, as region routes refer to it (`"mito"`, `"file"`).
    fn name(&self) -> &str;

    /// Handles a request for `region_id`. On error nothing the request asked for happened,
    /// unless the error's kind says the outcome is unknown (`StorageFailure`).
    async fn handle_request(
        &self,
        region_id: RegionId,
        request: RegionRequest,
    ) -> Result<RegionResponse, BoxedError>;

    /// Reads rows of `region_id`.
    async fn scan(
        &self,
        region_id: RegionId,
        request: ScanRequest,
    ) -> Result<BatchStream, BoxedError>;

    /// The current metadata of an open region.
    async fn metadata(&self, region_id: RegionId) -> Result<RegionMetadataRef, BoxedError>;

    /// The role of an open region; `None` if the region is not open here.
    fn role(&self, region_id: RegionId) -> Option<RegionRole>;

    /// Changes the role of an open region.
    fn set_role(&self, region_id: RegionId, role: RegionRole) -> Result<(), BoxedError>;

    /// Figures of an open region (rows, files, bytes, sequences); `None` if the region is
    /// not open here. Cheap: no I/O.
    fn region_statistics(&self, region_id: RegionId) -> Option<RegionStatistics>;

    /// The options set on an open region, as stored (absent keys take the engine's
    /// defaults).
    async fn region_options(&self, region_id: RegionId) -> Result<RegionOptionsMap, BoxedError>;

    /// The engine's metrics in the Prometheus text exposition format (what a server's
    /// `/metrics` serves); empty for an engine that keeps none.
    fn metrics_text(&self) -> String {
        String::new()
    }

    /// Stops the engine: rejects new requests, finishes or cancels running jobs, closes regions.
    async fn stop(&self) -> Result<(), BoxedError>;
}

/// Figures of one open region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegionStatistics {
    /// Bytes held by its memtables.
    pub memtable_bytes: u64,
    /// Rows written to its memtables (every version).
    pub memtable_rows: u64,
    /// SST files.
    pub files: usize,
    /// Bytes of its SSTs.
    pub sst_bytes: u64,
    /// Rows in its SSTs.
    pub sst_rows: u64,
    /// Last committed sequence.
    pub committed_sequence: u64,
    /// Last WAL entry in the SSTs.
    pub flushed_entry_id: u64,
    /// Last sequence in the SSTs.
    pub flushed_sequence: u64,
    /// The schema version (bumped by every column change).
    pub schema_version: u64,
    /// The compaction window in seconds, once configured or inferred.
    pub compaction_window_secs: Option<u64>,
}

/// Shared handle to an engine.
pub type RegionEngineRef = Arc<dyn RegionEngine>;
