//! A log store that stores nothing, for regions that skip the WAL.

use async_trait::async_trait;
use store_api::error::BoxedError;
use store_api::logstore::{AppendResponse, Entry, EntryStream, LogStore};
use store_api::{EntryId, RegionId};

/// Accepts every append and forgets it; reads return nothing. Data written to a region on
/// this store survives only once flushed.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopLogStore;

#[async_trait]
impl LogStore for NoopLogStore {
    async fn append_batch(&self, entries: Vec<Entry>) -> Result<AppendResponse, BoxedError> {
        let mut response = AppendResponse::default();
        for e in entries {
            response.last_entry_ids.insert(e.region_id, e.entry_id);
        }
        Ok(response)
    }

    async fn read(&self, _region_id: RegionId, _from: EntryId) -> Result<EntryStream, BoxedError> {
        Ok(Box::pin(futures::stream::empty()))
    }

    async fn obsolete(&self, _region_id: RegionId, _entry_id: EntryId) -> Result<(), BoxedError> {
        Ok(())
    }

    fn last_entry_id(&self, _region_id: RegionId) -> Option<EntryId> {
        None
    }

    async fn stop(&self) -> Result<(), BoxedError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn noop_accepts_and_forgets() {
        let store = NoopLogStore;
        let region_id = RegionId::new(1, 1);
        let resp = store
            .append_batch(vec![Entry {
                region_id,
                entry_id: 3,
                data: Bytes::from_static(b"x"),
            }])
            .await
            .unwrap();
        assert_eq!(resp.last_entry_ids[&region_id], 3);
        assert!(
            store
                .read(region_id, 0)
                .await
                .unwrap()
                .next()
                .await
                .is_none()
        );
        assert_eq!(store.last_entry_id(region_id), None);
    }
}
