//! The [`LogStore`] trait: the write-ahead log as the engine sees it.
//!
//! Entries are keyed by (region, entry id). The engine assigns entry ids, strictly increasing
//! per region; the log store keeps them in append order, returns them from a given id, and
//! forgets them once they are obsolete (flushed).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::BoxedError;
use crate::{EntryId, RegionId};

/// One WAL entry: an opaque payload (the engine encodes rows as Arrow IPC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The region the entry belongs to.
    pub region_id: RegionId,
    /// Its id; strictly increasing per region.
    pub entry_id: EntryId,
    /// The payload.
    pub data: Bytes,
}

/// What an append made durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendResponse {
    /// For each region in the batch, the last entry id now in the log.
    pub last_entry_ids: HashMap<RegionId, EntryId>,
}

/// A stream of a region's entries in entry-id order, in chunks.
pub type EntryStream = BoxStream<'static, Result<Vec<Entry>, BoxedError>>;

/// A write-ahead log shared by many regions.
#[async_trait]
pub trait LogStore: Send + Sync + std::fmt::Debug {
    /// Appends entries of any number of regions as one group. When it returns `Ok`, the
    /// entries are as durable as the store's durability mode promises. Entry ids must be
    /// strictly increasing per region, within the batch and after the region's last entry.
    async fn append_batch(&self, entries: Vec<Entry>) -> Result<AppendResponse, BoxedError>;

    /// Reads the entries of `region_id` whose id is `>= from`, in order.
    async fn read(&self, region_id: RegionId, from: EntryId) -> Result<EntryStream, BoxedError>;

    /// Marks every entry of `region_id` with id `<= entry_id` as no longer needed. Space is
    /// reclaimed once no region needs anything in it. Use `EntryId::MAX` for a dropped region.
    async fn obsolete(&self, region_id: RegionId, entry_id: EntryId) -> Result<(), BoxedError>;

    /// The id of the last entry of `region_id` in the log, if the log holds any.
    fn last_entry_id(&self, region_id: RegionId) -> Option<EntryId>;

    /// Flushes what is buffered and stops accepting appends.
    async fn stop(&self) -> Result<(), BoxedError>;
}

/// Shared handle to a log store.
pub type LogStoreRef = Arc<dyn LogStore>;
