//! Caches of the read path, each with a byte limit and hit/miss metrics, all on one
//! implementation (`weighted::WeightedCache`).
//!
//! - SST metadata: opened [`SstReader`]s (checked footer, page index, decoded `SstInfo`) by
//!   (file, schema version). A repeated scan of a file neither re-reads nor re-parses its tail.
//! - Pages: verified column-chunk bytes by (file, offset) ([`PageCache`], the reader's
//!   [`mito_sst::ChunkCache`]); a repeated scan neither re-reads nor re-checks them.
//! - Columns: decoded columns of whole row groups by (file, row group, column)
//!   ([`ColumnCache`], the reader's [`mito_sst::ColumnCache`], with the admission policy); a
//!   repeated scan decodes nothing, it slices or gathers rows.

mod sst;
mod weighted;

use std::sync::Arc;

use mito_sst::{FileId, FileMeta, SstReader};

pub use self::sst::{ColumnCache, PageCache};
use self::weighted::WeightedCache;
use opendal::Operator;
use snafu::ResultExt;
use store_api::metadata::RegionMetadataRef;

use crate::error::{Result, SstSnafu};
use crate::metrics::Metrics;

/// The engine's read caches.
#[derive(Debug)]
pub struct CacheManager {
    readers: Option<WeightedCache<(FileId, u64), Arc<SstReader>>>,
    pages: Option<Arc<PageCache>>,
    columns: Option<Arc<ColumnCache>>,
    metrics: Arc<Metrics>,
}

/// A guess of an opened reader's size (its decoded tail, page index included).
const TYPICAL_READER_BYTES: u64 = 512 << 10;

/// The bytes an opened reader of `m` is counted for: the decoded tail takes a few times its
/// encoded size.
fn reader_weight(m: &FileMeta) -> u64 {
    m.file_size
        .saturating_sub(m.tail_offset)
        .saturating_mul(4)
        .saturating_add(4096)
}

impl CacheManager {
    /// Caches of the given byte sizes (0 disables one).
    pub fn new(meta_bytes: u64, page_bytes: u64, column_bytes: u64, metrics: Arc<Metrics>) -> Self {
        let readers = (meta_bytes > 0).then(|| {
            // Every reader opened is read again (a file's queries keep coming): new ones get
            // half the room.
            WeightedCache::new(
                meta_bytes,
                TYPICAL_READER_BYTES,
                0.5,
                |_, r: &Arc<SstReader>| reader_weight(r.file_meta()),
            )
        });
        let pages = (page_bytes > 0).then(|| Arc::new(PageCache::new(page_bytes)));
        let columns = (column_bytes > 0).then(|| Arc::new(ColumnCache::new(column_bytes)));
        Self {
            readers,
            pages,
            columns,
            metrics,
        }
    }

    /// The reader of a file, from the cache or opened now.
    pub async fn reader(
        &self,
        op: &Operator,
        region_dir: &str,
        meta: &FileMeta,
        metadata: &RegionMetadataRef,
    ) -> Result<Arc<SstReader>> {
        let key = (meta.file_id, metadata.schema_version());
        if let Some(r) = self.readers.as_ref().and_then(|c| c.get(&key)) {
            return Ok(r);
        }
        self.open_reader(op, region_dir, meta, metadata).await
    }

    /// Opens the reader of a file and keeps it in the cache (no lookup first).
    async fn open_reader(
        &self,
        op: &Operator,
        region_dir: &str,
        meta: &FileMeta,
        metadata: &RegionMetadataRef,
    ) -> Result<Arc<SstReader>> {
        let region_id = metadata.region_id();
        let key = (meta.file_id, metadata.schema_version());
        let mut reader = SstReader::open(op.clone(), region_dir, meta.clone(), metadata.clone())
            .await
            .context(SstSnafu { region_id })?;
        if let Some(pages) = &self.pages {
            reader.set_chunk_cache(pages.clone() as Arc<dyn mito_sst::ChunkCache>);
        }
        if let Some(columns) = &self.columns {
            reader.set_column_cache(columns.clone() as Arc<dyn mito_sst::ColumnCache>);
        }
        let reader = Arc::new(reader);
        if let Some(cache) = &self.readers {
            cache.insert(key, reader.clone());
        }
        Ok(reader)
    }

    /// Opens the readers of `files` (the newest first) into the reader cache while they fill
    /// at most half of it, so that the first query of a file after an open does not pay for
    /// its footer and page index. A file that fails to open is left to the query that reads
    /// it, which reports the error. Returns how many readers it opened.
    pub async fn preload(
        &self,
        op: &Operator,
        region_dir: &str,
        mut files: Vec<FileMeta>,
        metadata: &RegionMetadataRef,
    ) -> usize {
        let Some(readers) = &self.readers else {
            return 0;
        };
        files.sort_by_key(|f| std::cmp::Reverse(f.time_range.max));
        let mut opened = 0;
        for file in &files {
            let weight = reader_weight(file);
            if readers.bytes().saturating_add(weight) > readers.capacity() / 2 {
                break;
            }
            if readers
                .peek(&(file.file_id, metadata.schema_version()))
                .is_some()
            {
                continue;
            }
            match self.open_reader(op, region_dir, file, metadata).await {
                Ok(_) => {
                    opened += 1;
                    self.metrics.preloaded_readers.inc();
                }
                Err(e) => {
                    tracing::debug!(file = %file.file_id, error = %e, "preloading a reader failed")
                }
            }
        }
        opened
    }

    /// Copies the caches' hit/miss counts into the metrics.
    pub fn sync_page_metrics(&self) {
        let counts = [
            ("sst_meta", self.readers.as_ref().map(|r| r.take_counts())),
            ("page", self.pages.as_ref().map(|p| p.take_counts())),
            ("column", self.columns.as_ref().map(|c| c.take_counts())),
        ];
        for (cache, counts) in counts {
            if let Some((hits, misses)) = counts {
                self.metrics
                    .cache_lookups
                    .with_label_values(&[cache, "hit"])
                    .inc_by(hits);
                self.metrics
                    .cache_lookups
                    .with_label_values(&[cache, "miss"])
                    .inc_by(misses);
            }
        }
    }
}
