//! The [`RegionEngine`] trait: the only way into a storage engine.

use std::sync::Arc;

use async_trait::async_trait;

use crate::RegionId;
use crate::error::BoxedError;
use crate::metadata::RegionMetadataRef;
use crate::region_request::{RegionRequest, RegionResponse};
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

    /// Stops the engine: rejects new requests, finishes or cancels running jobs, closes regions.
    async fn stop(&self) -> Result<(), BoxedError>;
}

/// Shared handle to an engine.
pub type RegionEngineRef = Arc<dyn RegionEngine>;
