//! [`MitoEngine`]: the [`RegionEngine`] over workers, the WAL, memtables, SSTs and manifests.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use arrow_array::RecordBatch;
use async_trait::async_trait;
use log_store::{LocalLogStore, WalConfig};
use mito_read::OpType;
use snafu::ResultExt;
use store_api::RegionId;
use store_api::clock::{ClockRef, SystemClock};
use store_api::engine::{RegionEngine, RegionRole, RegionStatistics};
use store_api::error::BoxedError;
use store_api::logstore::LogStoreRef;
use store_api::metadata::RegionMetadataRef;
use store_api::region_request::{RegionOptionsMap, RegionRequest, RegionResponse};
use store_api::scan::{BatchStream, ScanRequest};
use tokio::sync::{Semaphore, oneshot};

use crate::background::BackgroundRuntime;
use crate::cache::CacheManager;
use crate::config::MitoConfig;
use crate::error::{
    EngineReadOnlySnafu, InvalidConfigSnafu, OpenDataDirSnafu, OpenWalSnafu, RegionNotFoundSnafu,
    Result, StoppedSnafu, WalMissingSnafu,
};
use crate::metrics::Metrics;
use crate::region::MitoRegionRef;
use crate::scan::{ScanContext, scan};
use crate::worker::{DdlRequest, Shared, WorkerHandle, WorkerRequest, WriteRequest, prepare};
use crate::write_buffer::WriteBufferManager;

/// The Mito region engine. Cheap to clone; every clone is the same engine.
#[derive(Debug, Clone)]
pub struct MitoEngine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    workers: Vec<WorkerHandle>,
    scan: ScanContext,
    stopped: AtomicBool,
}

impl MitoEngine {
    /// Starts an engine over `op` (SSTs and manifests) and `log_store` (the WAL). Must be
    /// called inside a tokio runtime; the workers run on it.
    pub fn new(
        mut config: MitoConfig,
        op: opendal::Operator,
        log_store: LogStoreRef,
        clock: ClockRef,
    ) -> Result<Self> {
        config.sanitize()?;
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::new().map_err(|e| {
            InvalidConfigSnafu {
                reason: format!("metrics registry: {e}"),
            }
            .build()
        })?);
        let shared = Arc::new(Shared {
            op: op.clone(),
            log_store,
            regions: Arc::new(RwLock::new(HashMap::new())),
            write_buffer: Arc::new(WriteBufferManager::new(
                config.global_write_buffer_size.as_bytes(),
            )),
            flush_slots: Arc::new(Semaphore::new(config.max_background_flushes)),
            compaction_slots: Arc::new(Semaphore::new(config.max_background_compactions)),
            background: BackgroundRuntime::start(
                config.compaction_threads,
                config.compaction_nice,
            )?,
            clock,
            metrics: metrics.clone(),
            config: config.clone(),
        });
        let workers = (0..config.num_workers)
            .map(|i| WorkerHandle::start(i, shared.clone()))
            .collect();
        let cache = Arc::new(CacheManager::new(
            config.sst_meta_cache_size.as_bytes(),
            config.page_cache_size.as_bytes(),
            config.column_cache_size.as_bytes(),
            metrics.clone(),
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                scan: ScanContext {
                    op,
                    cache,
                    metrics,
                    batch_rows: config.scan_batch_rows,
                    clock: shared.clock.clone(),
                },
                shared,
                workers,
                stopped: AtomicBool::new(false),
            }),
        })
    }

    /// The embedded default: SSTs and manifests under `data_dir/data` on the local disk, the
    /// WAL in `data_dir/wal` (with `wal`'s settings but that directory).
    pub async fn open_local(
        data_dir: &Path,
        mut config: MitoConfig,
        mut wal: WalConfig,
    ) -> Result<Self> {
        let read_only = config.read_only || wal.read_only;
        config.read_only = read_only;
        wal.read_only = read_only;
        let data = data_dir.join("data");
        if !read_only {
            std::fs::create_dir_all(&data).map_err(|e| {
                OpenDataDirSnafu {
                    path: &data,
                    reason: e.to_string(),
                }
                .build()
            })?;
        }
        let open_store = if read_only {
            mito_sst::store::fs_operator_read_only
        } else {
            mito_sst::store::fs_operator
        };
        let op = open_store(&data.to_string_lossy()).map_err(|e| {
            OpenDataDirSnafu {
                path: &data,
                reason: e.to_string(),
            }
            .build()
        })?;
        wal.dir = data_dir.join("wal");
        // A WAL directory and its lock file are created (durably, before any region) with
        // the data directory and never removed; gone or emptied while regions exist, they
        // took entries with them (a lost segment inside is the log store's to find).
        let regions = data.join("regions");
        if !wal.dir.join(log_store::local::LOCK_FILE).exists() && has_entries(&regions) {
            return WalMissingSnafu {
                dir: wal.dir,
                regions,
            }
            .fail();
        }
        let log_store = LocalLogStore::open(wal).await.context(OpenWalSnafu {
            dir: data_dir.join("wal"),
        })?;
        // The WAL's lock is held: no other process writes here, so what is staged is left
        // over from a write that never finished (a killed flush or compaction).
        if !read_only {
            remove_staging_leftovers(&data.join(mito_sst::store::STAGING_DIR))?;
        }
        Self::new(config, op, Arc::new(log_store), Arc::new(SystemClock))
    }

    /// The effective (sanitized) configuration.
    pub fn config(&self) -> &MitoConfig {
        &self.inner.shared.config
    }

    /// The engine's metrics in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        self.inner.scan.cache.sync_page_metrics();
        self.inner.shared.metrics.render()
    }

    /// The engine's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.shared.metrics
    }

    /// Bytes held by memtables now (mutable and flushing).
    pub fn memtable_bytes(&self) -> u64 {
        self.inner.shared.write_buffer.total_bytes()
    }

    /// Ids of the open regions.
    pub fn region_ids(&self) -> Vec<RegionId> {
        let mut ids: Vec<RegionId> = self.regions().keys().copied().collect();
        ids.sort();
        ids
    }

    /// Statistics of an open region.
    pub fn region_statistics(&self, region_id: RegionId) -> Option<RegionStatistics> {
        let region = self.region(region_id).ok()?;
        let v = region.version();
        Some(RegionStatistics {
            memtable_bytes: v.memtables().map(|m| m.stats().bytes as u64).sum(),
            memtable_rows: v.memtables().map(|m| m.stats().rows as u64).sum(),
            files: v.files.len(),
            sst_bytes: v.files.values().map(|f| f.meta().file_size).sum(),
            sst_rows: v.files.values().map(|f| f.meta().num_rows).sum(),
            committed_sequence: region.committed(),
            flushed_entry_id: v.flushed_entry_id,
            flushed_sequence: v.flushed_sequence,
            schema_version: v.metadata.schema_version(),
            compaction_window_secs: v.window_secs,
        })
    }

    /// The SST files of an open region, in file-id order.
    pub fn region_files(&self, region_id: RegionId) -> Option<Vec<mito_sst::FileMeta>> {
        let region = self.region(region_id).ok()?;
        let v = region.version();
        Some(v.files.values().map(|f| f.meta().clone()).collect())
    }

    /// The options set on an open region (as stored in its manifest; absent keys take their
    /// defaults, see [`crate::options`]).
    pub async fn region_options(
        &self,
        region_id: RegionId,
    ) -> Result<std::collections::BTreeMap<String, String>> {
        let region = self.region(region_id)?;
        let manifest = region.manifest.lock().await;
        Ok(manifest.manifest().options.clone())
    }

    fn regions(&self) -> std::sync::RwLockReadGuard<'_, HashMap<RegionId, MitoRegionRef>> {
        self.inner
            .shared
            .regions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn region(&self, region_id: RegionId) -> Result<MitoRegionRef> {
        self.regions().get(&region_id).cloned().ok_or_else(|| {
            RegionNotFoundSnafu {
                region_id,
                hint: String::new(),
            }
            .build()
        })
    }

    fn worker(&self, region_id: RegionId) -> Result<&WorkerHandle> {
        // Fibonacci hashing spreads consecutive ids over the workers.
        let h = region_id.as_u64().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let n = self.inner.workers.len().max(1) as u64;
        self.inner
            .workers
            .get(usize::try_from(h % n).unwrap_or(0))
            .ok_or_else(|| {
                StoppedSnafu {
                    hint: " (no workers)",
                }
                .build()
            })
    }

    fn check_running(&self) -> Result<()> {
        if self.inner.stopped.load(Ordering::Acquire) {
            return StoppedSnafu {
                hint: String::new(),
            }
            .fail();
        }
        Ok(())
    }

    async fn send(
        &self,
        region_id: RegionId,
        make: impl FnOnce(oneshot::Sender<Result<RegionResponse>>) -> WorkerRequest,
    ) -> Result<RegionResponse> {
        self.check_running()?;
        let (tx, rx) = oneshot::channel();
        self.worker(region_id)?
            .tx
            .send(make(tx))
            .await
            .map_err(|_| {
                StoppedSnafu {
                    hint: " (worker gone)",
                }
                .build()
            })?;
        rx.await.map_err(|_| {
            StoppedSnafu {
                hint: " (request dropped)",
            }
            .build()
        })?
    }

    /// Handles a request with the engine's own error type.
    pub async fn handle(
        &self,
        region_id: RegionId,
        request: RegionRequest,
    ) -> Result<RegionResponse> {
        let ddl = |r| {
            move |tx| WorkerRequest::Ddl {
                region_id,
                request: r,
                tx,
            }
        };
        if self.inner.shared.config.read_only {
            let what = match request {
                RegionRequest::Open(o) => {
                    let opened = self.send(region_id, ddl(DdlRequest::Open(o))).await;
                    self.preload_readers(region_id, &opened);
                    return opened;
                }
                RegionRequest::Close(mut c) => {
                    c.flush = false;
                    return self.send(region_id, ddl(DdlRequest::Close(c))).await;
                }
                RegionRequest::Put(_) | RegionRequest::Delete(_) => "a write",
                RegionRequest::Create(_) => "creating a region",
                RegionRequest::Drop(_) => "dropping a region",
                RegionRequest::Flush(_) => "a flush",
                RegionRequest::Truncate(_) => "a truncate",
                RegionRequest::Alter(_) => "an alter",
                RegionRequest::Compact(_) => "a compaction",
            };
            return EngineReadOnlySnafu { what }.fail();
        }
        match request {
            RegionRequest::Put(p) => self.write(region_id, OpType::Put, p.rows).await,
            RegionRequest::Delete(d) => self.write(region_id, OpType::Delete, d.keys).await,
            RegionRequest::Create(c) => self.send(region_id, ddl(DdlRequest::Create(c))).await,
            RegionRequest::Open(o) => {
                let opened = self.send(region_id, ddl(DdlRequest::Open(o))).await;
                self.preload_readers(region_id, &opened);
                opened
            }
            RegionRequest::Close(c) => self.send(region_id, ddl(DdlRequest::Close(c))).await,
            RegionRequest::Drop(_) => self.send(region_id, ddl(DdlRequest::Drop)).await,
            RegionRequest::Flush(_) => self.send(region_id, ddl(DdlRequest::Flush)).await,
            RegionRequest::Truncate(t) => self.send(region_id, ddl(DdlRequest::Truncate(t))).await,
            RegionRequest::Alter(a) => self.send(region_id, ddl(DdlRequest::Alter(a))).await,
            RegionRequest::Compact(c) => self.send(region_id, ddl(DdlRequest::Compact(c))).await,
        }
    }

    /// After a successful open, opens the readers of the region's files into the reader
    /// cache in the background (`CacheManager::preload`), so the first queries do not each
    /// pay for a file's footer and page index.
    fn preload_readers(&self, region_id: RegionId, opened: &Result<RegionResponse>) {
        if opened.is_err() {
            return;
        }
        let Ok(region) = self.region(region_id) else {
            return;
        };
        let version = region.version();
        let files: Vec<mito_sst::FileMeta> =
            version.files.values().map(|f| f.meta().clone()).collect();
        if files.is_empty() {
            return;
        }
        let cache = self.inner.scan.cache.clone();
        let op = self.inner.scan.op.clone();
        let dir = region.region_dir().clone();
        let metadata = version.metadata.clone();
        tokio::spawn(async move {
            let n = cache.preload(&op, &dir, files, &metadata).await;
            tracing::debug!(%region_id, readers = n, "preloaded SST readers");
        });
    }

    /// A put or delete: validated and WAL-encoded here, in the caller's task (so that many
    /// writers use many cores), then sequenced, logged and applied by the region's worker.
    async fn write(
        &self,
        region_id: RegionId,
        op: OpType,
        batch: RecordBatch,
    ) -> Result<RegionResponse> {
        self.check_running()?;
        let prepared = match self.region(region_id) {
            Ok(region) => Some(
                prepare(
                    &region.version().metadata,
                    &batch,
                    op,
                    self.inner.shared.config.max_write_bytes.as_bytes(),
                )
                .inspect_err(|_| {
                    self.inner
                        .shared
                        .metrics
                        .write_requests
                        .with_label_values(&["invalid"])
                        .inc();
                })?,
            ),
            // The worker answers (the region may be opening right now).
            Err(_) => None,
        };
        self.send(region_id, |tx| {
            WorkerRequest::Write(WriteRequest {
                region_id,
                op,
                batch,
                prepared,
                tx,
            })
        })
        .await
    }

    /// Scans with the engine's own error type.
    pub async fn scan_region(
        &self,
        region_id: RegionId,
        request: ScanRequest,
    ) -> Result<BatchStream> {
        self.check_running()?;
        let region = self.region(region_id)?;
        scan(&region, request, &self.inner.scan).await
    }

    /// Stops the workers (waiting for running flushes) and the WAL.
    pub async fn shutdown(&self) -> Result<()> {
        if self.inner.stopped.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        for w in &self.inner.workers {
            let (tx, rx) = oneshot::channel();
            if w.tx.send(WorkerRequest::Stop { tx }).await.is_ok() {
                let _ = rx.await;
            }
        }
        self.inner
            .shared
            .regions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.inner.shared.log_store.stop().await.map_err(|e| {
            StoppedSnafu {
                hint: format!(" (WAL stop failed: {e})"),
            }
            .build()
        })?;
        Ok(())
    }
}

#[async_trait]
impl RegionEngine for MitoEngine {
    fn name(&self) -> &str {
        "mito"
    }

    async fn handle_request(
        &self,
        region_id: RegionId,
        request: RegionRequest,
    ) -> Result<RegionResponse, BoxedError> {
        self.handle(region_id, request)
            .await
            .map_err(BoxedError::new)
    }

    async fn scan(
        &self,
        region_id: RegionId,
        request: ScanRequest,
    ) -> Result<BatchStream, BoxedError> {
        self.scan_region(region_id, request)
            .await
            .map_err(BoxedError::new)
    }

    async fn metadata(&self, region_id: RegionId) -> Result<RegionMetadataRef, BoxedError> {
        self.region(region_id)
            .map(|r| r.version().metadata.clone())
            .map_err(BoxedError::new)
    }

    fn role(&self, region_id: RegionId) -> Option<RegionRole> {
        self.region(region_id).ok().map(|r| r.role())
    }

    fn set_role(&self, region_id: RegionId, role: RegionRole) -> Result<(), BoxedError> {
        self.region(region_id)
            .map(|r| r.set_role(role))
            .map_err(BoxedError::new)
    }

    fn region_statistics(&self, region_id: RegionId) -> Option<RegionStatistics> {
        MitoEngine::region_statistics(self, region_id)
    }

    async fn region_options(&self, region_id: RegionId) -> Result<RegionOptionsMap, BoxedError> {
        MitoEngine::region_options(self, region_id)
            .await
            .map_err(BoxedError::new)
    }

    fn metrics_text(&self) -> String {
        MitoEngine::metrics_text(self)
    }

    async fn stop(&self) -> Result<(), BoxedError> {
        self.shutdown().await.map_err(BoxedError::new)
    }
}

/// Deletes the files under the fs backend's staging directory: each is a write that never
/// finished (a file appears under its real name only once complete), so none is referenced.
/// Whether `dir` exists and holds anything.
fn has_entries(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

fn remove_staging_leftovers(staging: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(staging) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return OpenDataDirSnafu {
                path: staging,
                reason: format!("listing staged writes: {e}"),
            }
            .fail();
        }
    };
    let mut removed = 0usize;
    let mut bytes = 0u64;
    for entry in entries.flatten() {
        let path = entry.path();
        let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
        let result = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match result {
            Ok(()) => {
                removed += 1;
                bytes += len;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a staged write left by a crash");
            }
        }
    }
    if removed > 0 {
        tracing::warn!(
            dir = %staging.display(),
            files = removed,
            bytes,
            "removed unfinished writes left by a crash (killed flush or compaction)"
        );
    }
    Ok(())
}
