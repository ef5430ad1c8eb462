//! The engine sees a WAL only as `Arc<dyn LogStore>`: both implementations keep the contract
//! the engine relies on (append groups across regions, read from an id, obsolete, last id).
#![allow(clippy::unwrap_used, reason = "tests assert by panicking")]

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use log_store::{LocalLogStore, NoopLogStore, WalConfig};
use store_api::RegionId;
use store_api::error::ErrorKind;
use store_api::logstore::{Entry, LogStore};

fn entry(region: u32, id: u64) -> Entry {
    let region_id = RegionId::new(42, region);
    Entry {
        region_id,
        entry_id: id,
        data: Bytes::from(format!("{region}/{id}")),
    }
}

async fn read(store: &dyn LogStore, region: u32, from: u64) -> Vec<u64> {
    let chunks: Vec<Vec<Entry>> = store
        .read(RegionId::new(42, region), from)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    chunks.into_iter().flatten().map(|e| e.entry_id).collect()
}

#[tokio::test]
async fn local_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn LogStore> = Arc::new(
        LocalLogStore::open(WalConfig::new(dir.path()))
            .await
            .unwrap(),
    );
    let resp = store
        .append_batch(vec![entry(1, 1), entry(2, 1), entry(1, 2)])
        .await
        .unwrap();
    assert_eq!(resp.last_entry_ids[&RegionId::new(42, 1)], 2);
    assert_eq!(read(&*store, 1, 2).await, [2]);
    assert_eq!(read(&*store, 2, 0).await, [1]);
    assert_eq!(store.last_entry_id(RegionId::new(42, 2)), Some(1));

    let err = store.append_batch(vec![entry(1, 2)]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(!err.is_retryable());

    store.obsolete(RegionId::new(42, 1), 2).await.unwrap();
    store.stop().await.unwrap();
    let err = store.append_batch(vec![entry(1, 3)]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
}

#[tokio::test]
async fn noop_store_keeps_the_contract() {
    let store: Arc<dyn LogStore> = Arc::new(NoopLogStore);
    let resp = store
        .append_batch(vec![entry(1, 1), entry(1, 2)])
        .await
        .unwrap();
    assert_eq!(resp.last_entry_ids[&RegionId::new(42, 1)], 2);
    assert!(read(&*store, 1, 0).await.is_empty());
    store.obsolete(RegionId::new(42, 1), 2).await.unwrap();
    store.stop().await.unwrap();
}
