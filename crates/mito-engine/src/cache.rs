//! Caches of the read path, each with a byte limit and hit/miss metrics.
//!
//! - SST metadata: opened [`SstReader`]s (checked footer, page index, decoded `SstInfo`) by
//!   (file, schema version). A repeated scan of a file neither re-reads nor re-parses its tail.
//! - Pages: verified column-chunk bytes by (file, offset), through
//!   [`mito_sst::ChunkCache`]; a repeated scan neither re-reads nor re-checks them.
//! - Columns: decoded columns of whole row groups by (file, row group, column), through
//!   [`mito_sst::ColumnCache`]; a repeated scan decodes nothing, it slices or gathers rows.

use std::sync::Arc;

use mito_sst::{ChunkCache, ColumnCache, FileId, FileMeta, SstReader};
use opendal::Operator;
use snafu::ResultExt;
use store_api::metadata::RegionMetadataRef;

use crate::error::{Result, SstSnafu};
use crate::metrics::Metrics;

/// The engine's read caches.
#[derive(Debug)]
pub struct CacheManager {
    readers: Option<moka::sync::Cache<(FileId, u64), Arc<SstReader>>>,
    pages: Option<Arc<ChunkCache>>,
    columns: Option<Arc<ColumnCache>>,
    metrics: Arc<Metrics>,
}

impl CacheManager {
    /// Caches of the given byte sizes (0 disables one).
    pub fn new(meta_bytes: u64, page_bytes: u64, column_bytes: u64, metrics: Arc<Metrics>) -> Self {
        let readers = (meta_bytes > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(meta_bytes)
                .weigher(|_: &(FileId, u64), r: &Arc<SstReader>| {
                    let m = r.file_meta();
                    // The decoded tail takes a few times its encoded size.
                    u32::try_from(m.file_size.saturating_sub(m.tail_offset).saturating_mul(4))
                        .unwrap_or(u32::MAX)
                        .saturating_add(4096)
                })
                .build()
        });
        let pages = (page_bytes > 0).then(|| Arc::new(ChunkCache::new(page_bytes)));
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
        let region_id = metadata.region_id();
        let key = (meta.file_id, metadata.schema_version());
        if let Some(cache) = &self.readers
            && let Some(r) = cache.get(&key)
        {
            self.lookup("sst_meta", true);
            return Ok(r);
        }
        self.lookup("sst_meta", false);
        let mut reader = SstReader::open(op.clone(), region_dir, meta.clone(), metadata.clone())
            .await
            .context(SstSnafu { region_id })?;
        if let Some(pages) = &self.pages {
            reader.set_chunk_cache(pages.clone());
        }
        if let Some(columns) = &self.columns {
            reader.set_column_cache(columns.clone());
        }
        let reader = Arc::new(reader);
        if let Some(cache) = &self.readers {
            cache.insert(key, reader.clone());
        }
        Ok(reader)
    }

    fn lookup(&self, cache: &str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.metrics
            .cache_lookups
            .with_label_values(&[cache, result])
            .inc();
    }

    /// Copies the page and column caches' own hit/miss counts into the metrics.
    pub fn sync_page_metrics(&self) {
        let counts = [
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
