//! Region workers: each a tokio task owning a shard of the regions and serializing every
//! mutation of them.
//!
//! ```text
//!  requests ─► channel ─► worker: take up to `worker_request_batch` at once
//!    writes:  validate each (bad ones answered, the rest go on) -> assign entry ids and
//!             sequences -> ONE WAL append for the group -> memtable inserts -> publish the
//!             committed sequence -> answer -> flush if a buffer limit is passed
//!    DDL:     create / open (manifest + WAL replay) / close / drop / flush / truncate
//!    flush:   freeze the mutable memtable, spawn the job (SSTs + one manifest edit); the job
//!             reports back, and only then the worker drops the immutable memtables and
//!             obsoletes the WAL
//!    tick:    flush regions idle for `auto_flush_interval`, retry stalled writes
//! ```
//!
//! Close, drop and truncate of a region with a flush in flight wait for it to finish.
//!
//! Where each part lives: the loop and dispatch here; `write` (validate, sequence, WAL
//! group append, memtable inserts, stalls); `handle_flush` (triggers, the flush job and its
//! report); `handle_compaction` (runs and their report); `handle_ddl` (dispatch, deferral
//! behind a running flush or compaction); `open` (create, open, WAL replay, the SST check);
//! `handle_alter`; `handle_close` (close, drop, truncate); `state` (a region's state, and the
//! flush and compaction bookkeeping as small state machines with their own unit tests).

mod handle_alter;
mod handle_close;
mod handle_compaction;
mod handle_ddl;
mod handle_flush;
mod open;
mod state;
mod write;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use mito_manifest::ManifestOptions;
use mito_sst::WriteOptions;
use opendal::Operator;
use store_api::RegionId;
use store_api::clock::ClockRef;
use store_api::logstore::LogStoreRef;
use store_api::region_request::{
    RegionAlterRequest, RegionCloseRequest, RegionCompactRequest, RegionCreateRequest,
    RegionOpenRequest, RegionResponse, RegionTruncateRequest,
};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::background::BackgroundRuntime;
use crate::config::MitoConfig;
use crate::error::{RegionNotFoundSnafu, Result, StoppedSnafu};
use crate::metrics::Metrics;
use crate::region::MitoRegionRef;
use crate::write_buffer::WriteBufferManager;

use state::RegionState;
use write::Inflight;

pub(crate) use handle_compaction::CompactionDone;
pub(crate) use handle_flush::FlushDone;
pub(crate) use write::{WriteRequest, prepare};

/// Regions open on the engine, shared by workers (writers) and scans (readers).
pub(crate) type RegionMap = Arc<RwLock<HashMap<RegionId, MitoRegionRef>>>;

/// Time between worker ticks (idle-flush checks, stalled-write retries).
const TICK: Duration = Duration::from_millis(500);

/// What every worker shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: Arc<MitoConfig>,
    pub op: Operator,
    pub log_store: LogStoreRef,
    pub regions: RegionMap,
    pub write_buffer: Arc<WriteBufferManager>,
    pub flush_slots: Arc<Semaphore>,
    pub compaction_slots: Arc<Semaphore>,
    /// Where compaction merges run (lower CPU priority).
    pub background: BackgroundRuntime,
    pub clock: ClockRef,
    pub metrics: Arc<Metrics>,
}

impl Shared {
    fn manifest_options(&self) -> ManifestOptions {
        ManifestOptions {
            checkpoint_distance: self.config.manifest_checkpoint_distance,
        }
    }

    fn write_options(&self) -> WriteOptions {
        WriteOptions {
            row_group_rows: self.config.sst_row_group_size,
            page_rows: self.config.sst_page_rows,
            ..WriteOptions::default()
        }
    }

    fn insert_region(&self, region: MitoRegionRef) {
        self.regions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(region.region_id(), region);
    }

    fn remove_region(&self, region_id: RegionId) {
        self.regions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&region_id);
    }
}

/// A request that changes a region's state.
#[derive(Debug)]
pub(crate) enum DdlRequest {
    Create(RegionCreateRequest),
    Open(RegionOpenRequest),
    Close(RegionCloseRequest),
    Drop,
    Flush,
    Compact(RegionCompactRequest),
    Truncate(RegionTruncateRequest),
    Alter(RegionAlterRequest),
}

type Reply = oneshot::Sender<Result<RegionResponse>>;

/// What a worker's channel carries.
#[derive(Debug)]
pub(crate) enum WorkerRequest {
    Write(WriteRequest),
    Ddl {
        region_id: RegionId,
        request: DdlRequest,
        tx: Reply,
    },
    FlushDone(FlushDone),
    CompactionDone(CompactionDone),
    Stop {
        tx: oneshot::Sender<()>,
    },
}

/// A DDL request waiting for the region's flush. `needs_flush` requests fail if it fails.
#[derive(Debug)]
struct Deferred {
    request: DdlRequest,
    tx: Reply,
    needs_flush: bool,
}

/// Handle to a running worker.
#[derive(Debug, Clone)]
pub(crate) struct WorkerHandle {
    pub tx: mpsc::Sender<WorkerRequest>,
}

impl WorkerHandle {
    /// Starts a worker on the current runtime.
    pub fn start(id: usize, shared: Arc<Shared>) -> Self {
        let (tx, rx) = mpsc::channel(shared.config.worker_channel_size);
        let worker = RegionWorker {
            id,
            shared,
            rx,
            tx: tx.clone(),
            regions: HashMap::new(),
            stalled: Vec::new(),
            stopping: None,
            inflight: futures::stream::FuturesOrdered::new(),
        };
        tokio::spawn(worker.run());
        Self { tx }
    }
}

struct RegionWorker {
    id: usize,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<WorkerRequest>,
    tx: mpsc::Sender<WorkerRequest>,
    regions: HashMap<RegionId, RegionState>,
    stalled: Vec<WriteRequest>,
    stopping: Option<oneshot::Sender<()>>,
    inflight: futures::stream::FuturesOrdered<Inflight>,
}

fn reply<T>(tx: oneshot::Sender<Result<T>>, result: Result<T>) {
    // The requester may have gone away (cancelled); nothing to do then.
    let _ = tx.send(result);
}

impl RegionWorker {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let notify = self.shared.write_buffer.clone();
        loop {
            let first = tokio::select! {
                // Completed appends first: they free writers and memtable room.
                biased;
                done = self.inflight.next(), if !self.inflight.is_empty() => {
                    if let Some((result, pending)) = done {
                        self.complete(result, pending);
                    }
                    continue;
                }
                req = self.rx.recv() => match req {
                    Some(r) => r,
                    None => break,
                },
                _ = tick.tick() => {
                    self.drain_inflight().await;
                    self.on_tick();
                    self.retry_stalled().await;
                    continue;
                }
                _ = notify.freed(), if !self.stalled.is_empty() => {
                    self.retry_stalled().await;
                    continue;
                }
            };
            let mut batch = vec![first];
            while batch.len() < self.shared.config.worker_request_batch {
                match self.rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.handle_batch(batch).await;
            if self.stopping.is_some() {
                self.drain_inflight().await;
            }
            if self.stopping.is_some()
                && self
                    .regions
                    .values()
                    .all(|s| !s.flush.is_running() && !s.compaction.is_running())
            {
                break;
            }
        }
        // Stopped: answer whatever is left.
        for w in std::mem::take(&mut self.stalled) {
            reply(
                w.tx,
                StoppedSnafu {
                    hint: String::new(),
                }
                .fail(),
            );
        }
        self.shared
            .metrics
            .memtable_bytes
            .set(i64::try_from(self.shared.write_buffer.total_bytes()).unwrap_or(i64::MAX));
        if let Some(tx) = self.stopping.take() {
            let _ = tx.send(());
        }
        tracing::debug!(worker = self.id, "region worker stopped");
    }

    async fn handle_batch(&mut self, batch: Vec<WorkerRequest>) {
        let mut writes = Vec::new();
        for req in batch {
            match req {
                WorkerRequest::Write(w) => {
                    if self.stopping.is_some() {
                        reply(
                            w.tx,
                            StoppedSnafu {
                                hint: String::new(),
                            }
                            .fail(),
                        );
                    } else {
                        writes.push(w);
                    }
                }
                other => {
                    // Keep the order: writes before this request go first.
                    if !writes.is_empty() {
                        self.handle_writes(std::mem::take(&mut writes)).await;
                    }
                    self.handle_other(other).await;
                }
            }
        }
        if !writes.is_empty() {
            self.handle_writes(writes).await;
        }
    }

    async fn handle_other(&mut self, req: WorkerRequest) {
        // DDL and flush bookkeeping need every sequenced write applied first.
        self.drain_inflight().await;
        match req {
            WorkerRequest::Write(w) => self.handle_writes(vec![w]).await,
            WorkerRequest::Ddl {
                region_id,
                request,
                tx,
            } => {
                if self.stopping.is_some() {
                    reply(
                        tx,
                        StoppedSnafu {
                            hint: String::new(),
                        }
                        .fail(),
                    );
                } else {
                    self.handle_ddl(region_id, request, tx).await;
                }
            }
            WorkerRequest::CompactionDone(done) => {
                for (region_id, d) in self.on_compaction_done(done) {
                    self.handle_ddl(region_id, d.request, d.tx).await;
                }
            }
            WorkerRequest::FlushDone(done) => {
                let deferred = self.on_flush_done(done).await;
                for (region_id, d) in deferred {
                    self.handle_ddl(region_id, d.request, d.tx).await;
                }
                self.retry_stalled().await;
            }
            WorkerRequest::Stop { tx } => {
                self.stopping = Some(tx);
            }
        }
        self.release_held().await;
    }

    /// Runs the writes held for alters that are done (or failed).
    async fn release_held(&mut self) {
        let mut ready = Vec::new();
        for state in self.regions.values_mut() {
            if !state.held.is_empty() && !state.alter_waiting() {
                ready.append(&mut state.held);
            }
        }
        if !ready.is_empty() {
            self.handle_writes(ready).await;
        }
    }
}

fn not_open<T>(region_id: RegionId) -> Result<T> {
    RegionNotFoundSnafu {
        region_id,
        hint: String::new(),
    }
    .fail()
}
