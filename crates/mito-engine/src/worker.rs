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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arrow_array::RecordBatch;
use bytes::Bytes;
use futures::StreamExt;
use mito_compaction::{CompactionJob, TwcsOptions, commit, pick, write_outputs};
use mito_manifest::{
    Action, ManifestOptions, RegionChange, RegionEdit, RegionManifestManager, RegionOptionsChange,
    RegionRemove, RegionTruncate,
};
use mito_memtable::Memtable;
use mito_read::OpType;
use mito_sst::{FileId, FileMeta, WriteOptions};
use opendal::Operator;
use snafu::{IntoError, ResultExt, ensure};
use store_api::clock::ClockRef;
use store_api::engine::RegionRole;
use store_api::logstore::{Entry, LogStoreRef};
use store_api::metadata::RegionMetadataRef;
use store_api::region_request::{
    AlterKind, CompactOptions, RegionAlterRequest, RegionCloseRequest, RegionCompactRequest,
    RegionCreateRequest, RegionOpenRequest, RegionOptionsMap, RegionResponse,
    RegionTruncateRequest,
};
use store_api::scan::TimeRange;
use store_api::{EntryId, RegionId, SequenceNumber};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::background::BackgroundRuntime;
use crate::config::MitoConfig;
use crate::error::{
    BadWalEntrySnafu, CompactionFailedSnafu, CompactionSnafu, EncodeWalSnafu, Error,
    FlushFailedSnafu, InvalidRequestSnafu, ManifestSnafu, MemtableSnafu, MissingFilesSnafu,
    ObjectStoreSnafu, ReadOnlySnafu, RegionExistsSnafu, RegionNotFoundSnafu, Result, StoppedSnafu,
    UnrecordedFilesSnafu, WalAppendSnafu, WalGapSnafu, WalReadSnafu, WriteBufferFullSnafu,
};
use crate::flush::{FlushJob, FlushOutput, flush};
use crate::metrics::Metrics;
use crate::options::{RegionOptions, units_per_second};
use crate::region::{
    FileSet, MitoRegion, MitoRegionRef, Version, edit_files, memtable_options, region_dir,
};
use crate::validate;
use crate::wal_entry;
use crate::write_buffer::{Pressure, WriteBufferManager, pick_flushes};

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

/// A write request.
#[derive(Debug)]
pub(crate) struct WriteRequest {
    pub region_id: RegionId,
    pub op: OpType,
    pub batch: RecordBatch,
    /// Validated and encoded by the requester's task (against `schema_version`), if it could.
    pub prepared: Option<Prepared>,
    pub tx: oneshot::Sender<Result<RegionResponse>>,
}

/// A write validated against one schema version, its WAL body encoded.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub schema_version: u64,
    pub batch: RecordBatch,
    pub body: wal_entry::EncodedBody,
}

/// Validates a write against `metadata` and encodes its WAL body; both sizes are bounded.
pub(crate) fn prepare(
    metadata: &RegionMetadataRef,
    batch: &RecordBatch,
    op: OpType,
    max_bytes: u64,
) -> Result<Prepared> {
    let region_id = metadata.region_id();
    let batch = validate::normalize(metadata, batch, op)
        .map_err(|reason| InvalidRequestSnafu { region_id, reason }.build())?;
    let too_big = |what: &str, bytes: u64| {
        InvalidRequestSnafu {
            region_id,
            reason: format!(
                "the request holds {bytes} bytes {what}, over max_write_bytes ({max_bytes}); split it"
            ),
        }
        .build()
    };
    let decoded = data_bytes(&batch);
    if decoded > max_bytes {
        return Err(too_big("of columns", decoded));
    }
    let body = wal_entry::encode_body(&batch).context(EncodeWalSnafu { region_id })?;
    if body.len() as u64 > max_bytes {
        return Err(too_big("encoded", body.len() as u64));
    }
    Ok(Prepared {
        schema_version: metadata.schema_version(),
        batch,
        body,
    })
}

/// Bytes of data the batch's columns hold: what its rows take, not what its buffers have
/// room for (a builder's batch of 3 rows can have capacity for 8,192 in every column).
pub(crate) fn data_bytes(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|c| {
            let data = c.to_data();
            // A slice's size fails only for layouts it cannot measure; then the whole buffers.
            data.get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size()) as u64
        })
        .sum()
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

#[derive(Debug)]
pub(crate) struct FlushDone {
    region_id: RegionId,
    memtables: Vec<Arc<Memtable>>,
    flushed_entry_id: EntryId,
    flushed_sequence: SequenceNumber,
    result: std::result::Result<FlushOutput, Arc<Error>>,
}

/// A sequenced write waiting for its WAL append.
#[derive(Debug)]
struct Pending {
    req: WriteRequest,
    batch: RecordBatch,
    first_sequence: SequenceNumber,
    entry_id: EntryId,
    rows: u64,
}

/// A group's WAL append in flight, and the writes it carries.
type Inflight = futures::future::BoxFuture<
    'static,
    (
        std::result::Result<store_api::logstore::AppendResponse, store_api::error::BoxedError>,
        Vec<Pending>,
    ),
>;

/// WAL appends a worker keeps in flight before it waits for the oldest.
const MAX_INFLIGHT: usize = 4;

/// What a compaction run did: per task, the inputs removed and the outputs added (committed),
/// and the error that stopped it, if any.
#[derive(Debug)]
pub(crate) struct CompactionDone {
    region_id: RegionId,
    applied: Vec<(Vec<FileId>, Vec<FileMeta>)>,
    /// A window inferred and persisted by this run.
    inferred_window_secs: Option<u64>,
    error: Option<Arc<Error>>,
}

/// A DDL request waiting for the region's flush. `needs_flush` requests fail if it fails.
#[derive(Debug)]
struct Deferred {
    request: DdlRequest,
    tx: Reply,
    needs_flush: bool,
}

/// The worker's private state of a region.
#[derive(Debug)]
struct RegionState {
    region: MitoRegionRef,
    next_entry_id: EntryId,
    next_sequence: SequenceNumber,
    /// Last entry and sequence whose rows are in the memtables (appends may be in flight
    /// after them).
    applied_entry_id: EntryId,
    applied_sequence: SequenceNumber,
    /// Bytes of the mutable memtable accounted in the write buffer.
    mutable_bytes: u64,
    /// Frozen memtables and the bytes accounted for each.
    frozen: Vec<(Arc<Memtable>, u64)>,
    flushing: bool,
    /// Waiters of the running flush.
    flush_waiters: Vec<Reply>,
    /// Waiters that arrived while a flush ran; they need the next one.
    next_waiters: Vec<Reply>,
    flush_again: bool,
    deferred: Vec<Deferred>,
    last_write_ms: i64,
    compacting: bool,
    compact_waiters: Vec<Reply>,
    /// A compaction asked for while one ran: its strict window and waiters; it runs next.
    next_compaction: Option<(Option<u64>, Vec<Reply>)>,
    /// Writes that arrived while an alter waits for the memtables to be flushed; they run
    /// after it, against the new schema.
    held: Vec<WriteRequest>,
}

impl RegionState {
    /// The last entry and sequence whose rows are in `version`'s memtables or files: what a
    /// flush of every memtable makes durable. Sequenced writes whose WAL append is still in
    /// flight are not in the memtables yet, so they must not count (the crash test caught
    /// exactly that).
    fn applied_through(&self, version: &Version) -> (EntryId, SequenceNumber) {
        (
            self.applied_entry_id.max(version.flushed_entry_id),
            self.applied_sequence.max(version.flushed_sequence),
        )
    }

    /// Whether an alter is waiting (writes are held meanwhile).
    fn alter_waiting(&self) -> bool {
        self.deferred
            .iter()
            .any(|d| matches!(d.request, DdlRequest::Alter(_)))
    }
}

impl RegionState {
    /// Gives every memtable byte the region holds back to the write buffer (close, drop,
    /// truncate).
    fn release(&mut self, wb: &WriteBufferManager) {
        wb.freeze(self.mutable_bytes);
        wb.free(self.mutable_bytes + self.frozen.iter().map(|(_, b)| *b).sum::<u64>());
        self.mutable_bytes = 0;
        self.frozen.clear();
    }

    fn new(
        region: MitoRegionRef,
        next_entry_id: EntryId,
        next_sequence: SequenceNumber,
        now: i64,
    ) -> Self {
        Self {
            region,
            next_entry_id,
            next_sequence,
            applied_entry_id: next_entry_id.saturating_sub(1),
            applied_sequence: next_sequence.saturating_sub(1),
            mutable_bytes: 0,
            frozen: Vec::new(),
            flushing: false,
            flush_waiters: Vec::new(),
            next_waiters: Vec::new(),
            flush_again: false,
            deferred: Vec::new(),
            last_write_ms: now,
            compacting: false,
            compact_waiters: Vec::new(),
            next_compaction: None,
            held: Vec::new(),
        }
    }
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
                && self.regions.values().all(|s| !s.flushing && !s.compacting)
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

    // ---------------------------------------------------------------- writes

    async fn handle_writes(&mut self, writes: Vec<WriteRequest>) {
        let metrics = self.shared.metrics.clone();
        let wb = self.shared.write_buffer.clone();
        match wb.pressure() {
            Pressure::Reject => {
                for w in writes {
                    metrics
                        .write_requests
                        .with_label_values(&["rejected"])
                        .inc();
                    reply(
                        w.tx,
                        WriteBufferFullSnafu {
                            used: wb.total_bytes(),
                            limit: wb.limit(),
                        }
                        .fail(),
                    );
                }
                self.flush_for_pressure();
                return;
            }
            Pressure::Stall => {
                metrics.write_stalls.inc_by(writes.len() as u64);
                self.stalled.extend(writes);
                self.flush_for_pressure();
                return;
            }
            Pressure::Normal | Pressure::Flush => {}
        }

        let max_bytes = self.shared.config.max_write_bytes.as_bytes();
        let mut entries = Vec::new();
        let mut pending = Vec::new();
        for mut w in writes {
            let region_id = w.region_id;
            let Some(state) = self.regions.get_mut(&region_id) else {
                metrics.write_requests.with_label_values(&["invalid"]).inc();
                reply(w.tx, not_open(region_id));
                continue;
            };
            if state.region.role() == RegionRole::Follower {
                metrics.write_requests.with_label_values(&["invalid"]).inc();
                reply(w.tx, ReadOnlySnafu { region_id }.fail());
                continue;
            }
            if state.alter_waiting() {
                state.held.push(w);
                continue;
            }
            let version = state.region.version();
            let schema_version = version.metadata.schema_version();
            let prepared = match w.prepared.take() {
                Some(p) if p.schema_version == schema_version => Ok(p),
                _ => prepare(&version.metadata, &w.batch, w.op, max_bytes),
            };
            let prepared = match prepared {
                Ok(p) => p,
                Err(e) => {
                    let outcome = if matches!(e, Error::InvalidRequest { .. }) {
                        "invalid"
                    } else {
                        "failed"
                    };
                    metrics.write_requests.with_label_values(&[outcome]).inc();
                    reply(w.tx, Err(e));
                    continue;
                }
            };
            let rows = prepared.batch.num_rows() as u64;
            let first_sequence = state.next_sequence;
            state.next_sequence += rows;
            let entry_id = if version.options.wal {
                let data = wal_entry::seal(prepared.body, w.op, first_sequence, schema_version);
                let entry_id = state.next_entry_id;
                state.next_entry_id += 1;
                entries.push(Entry {
                    region_id,
                    entry_id,
                    data: Bytes::from(data),
                });
                entry_id
            } else {
                // No WAL: the rows live in the memtable only, until a flush. The entry id
                // stays at the last one assigned (applied in order with everything before).
                state.next_entry_id.saturating_sub(1)
            };
            pending.push(Pending {
                req: w,
                batch: prepared.batch,
                first_sequence,
                entry_id,
                rows,
            });
        }
        if pending.is_empty() {
            return;
        }
        while self.inflight.len() >= MAX_INFLIGHT {
            self.complete_next().await;
        }
        if entries.is_empty() {
            // Only regions without a WAL: nothing to wait for, but still in order.
            self.inflight.push_back(Box::pin(async move {
                let done = store_api::logstore::AppendResponse {
                    last_entry_ids: HashMap::new(),
                };
                (Ok(done), pending)
            }));
            return;
        }
        metrics.wal_group_requests.observe(entries.len() as f64);
        let log_store = self.shared.log_store.clone();
        let timer = metrics.wal_append_seconds.start_timer();
        self.inflight.push_back(Box::pin(async move {
            let result = log_store.append_batch(entries).await;
            timer.observe_duration();
            (result, pending)
        }));
    }

    /// Waits for the oldest WAL append in flight and applies it.
    async fn complete_next(&mut self) {
        if let Some((result, pending)) = self.inflight.next().await {
            self.complete(result, pending);
        }
    }

    /// Applies every WAL append in flight (before anything that needs the memtables to hold
    /// every sequenced write: DDL, flush scheduling, stop).
    async fn drain_inflight(&mut self) {
        while !self.inflight.is_empty() {
            self.complete_next().await;
        }
    }

    /// After a WAL append: memtable inserts, the committed sequence, the answers, then flushes
    /// if a buffer limit is passed.
    fn complete(
        &mut self,
        appended: std::result::Result<
            store_api::logstore::AppendResponse,
            store_api::error::BoxedError,
        >,
        pending: Vec<Pending>,
    ) {
        let metrics = self.shared.metrics.clone();
        let wb = self.shared.write_buffer.clone();
        if let Err(e) = appended {
            // The outcome is unknown: the entry ids and sequences stay used.
            let e = Arc::new(e);
            for p in pending {
                metrics.write_requests.with_label_values(&["failed"]).inc();
                reply(
                    p.req.tx,
                    Err(WalAppendSnafu {
                        region_id: p.req.region_id,
                    }
                    .into_error(e.clone())),
                );
            }
            return;
        }
        let now = self.shared.clock.now_millis();
        let mut touched = HashSet::new();
        for p in pending {
            let region_id = p.req.region_id;
            let Some(state) = self.regions.get_mut(&region_id) else {
                continue;
            };
            let version = state.region.version();
            match version
                .mutable
                .write(&p.batch, p.first_sequence, p.req.op)
                .context(MemtableSnafu { region_id })
            {
                Ok(_) => {
                    let last = p.first_sequence + p.rows - 1;
                    state.region.publish(last);
                    state.applied_entry_id = p.entry_id;
                    state.applied_sequence = last;
                    let op = if p.req.op == OpType::Put {
                        "put"
                    } else {
                        "delete"
                    };
                    metrics.write_rows.with_label_values(&[op]).inc_by(p.rows);
                    metrics.write_requests.with_label_values(&["ok"]).inc();
                    reply(p.req.tx, Ok(RegionResponse::new(p.rows as usize)));
                }
                Err(e) => {
                    // Validation makes this unreachable; the rows are in the WAL and come
                    // back at the next open, so the outcome is reported as unknown.
                    tracing::error!(%region_id, error = %e, "memtable insert failed after the WAL append");
                    metrics.write_requests.with_label_values(&["failed"]).inc();
                    reply(p.req.tx, Err(e));
                }
            }
            state.last_write_ms = now;
            touched.insert(region_id);
        }
        let default_limit = self.shared.config.region_write_buffer_size;
        let mut to_flush = Vec::new();
        for region_id in touched {
            let Some(state) = self.regions.get_mut(&region_id) else {
                continue;
            };
            let version = state.region.version();
            let region_limit = version
                .options
                .write_buffer_size
                .unwrap_or(default_limit)
                .as_bytes();
            let bytes = version.mutable.stats().bytes as u64;
            if bytes > state.mutable_bytes {
                wb.reserve(bytes - state.mutable_bytes);
            }
            state.mutable_bytes = bytes.max(state.mutable_bytes);
            if state.mutable_bytes > region_limit && !state.flushing {
                to_flush.push(region_id);
            }
        }
        for region_id in to_flush {
            self.schedule_flush(region_id, None);
        }
        if wb.pressure() >= Pressure::Flush {
            self.flush_for_pressure();
        }
        metrics
            .memtable_bytes
            .set(i64::try_from(wb.total_bytes()).unwrap_or(i64::MAX));
    }

    async fn retry_stalled(&mut self) {
        if self.stalled.is_empty() || self.shared.write_buffer.pressure() >= Pressure::Stall {
            return;
        }
        let stalled = std::mem::take(&mut self.stalled);
        self.handle_writes(stalled).await;
    }

    /// Flushes this worker's largest regions when the global buffer asks for it.
    fn flush_for_pressure(&mut self) {
        let sizes: Vec<(RegionId, u64)> = self
            .regions
            .iter()
            .filter(|(_, s)| !s.flushing)
            .map(|(id, s)| (*id, s.mutable_bytes))
            .collect();
        for region_id in pick_flushes(&sizes, self.shared.write_buffer.limit()) {
            self.schedule_flush(region_id, None);
        }
    }

    fn on_tick(&mut self) {
        let now = self.shared.clock.now_millis();
        let idle =
            i64::try_from(self.shared.config.auto_flush_interval.as_millis()).unwrap_or(i64::MAX);
        let due: Vec<RegionId> = self
            .regions
            .iter()
            .filter(|(_, s)| {
                !s.flushing && s.mutable_bytes > 0 && now.saturating_sub(s.last_write_ms) >= idle
            })
            .map(|(id, _)| *id)
            .collect();
        for region_id in due {
            tracing::debug!(%region_id, "flushing an idle region");
            self.schedule_flush(region_id, None);
        }
        // Memory held by this worker's idle regions must not stall another worker's writers:
        // every worker answers global pressure on its tick, not only when it writes, if it
        // holds at least its share of the mutable half (so small regions are not flushed
        // into tiny files every tick while someone else's flush runs).
        let wb = &self.shared.write_buffer;
        let share = wb.limit() / 2 / self.shared.config.num_workers.max(1) as u64;
        let mine: u64 = self.regions.values().map(|s| s.mutable_bytes).sum();
        if wb.pressure() >= Pressure::Flush && mine >= share {
            self.flush_for_pressure();
        }
    }

    // ---------------------------------------------------------------- flush

    /// Freezes the region's mutable memtable (if it holds rows) and starts a flush of every
    /// frozen memtable. With a flush running, the request is remembered and served next.
    fn schedule_flush(&mut self, region_id: RegionId, waiter: Option<Reply>) {
        let Some(state) = self.regions.get_mut(&region_id) else {
            if let Some(tx) = waiter {
                reply(tx, not_open(region_id));
            }
            return;
        };
        if state.flushing {
            state.flush_again = true;
            state.next_waiters.extend(waiter);
            return;
        }
        state.flush_waiters.extend(waiter);
        let mut version = (*state.region.version()).clone();
        if !version.mutable.is_empty() {
            let fresh = match version.new_memtable().context(MemtableSnafu { region_id }) {
                Ok(m) => Arc::new(m),
                Err(e) => {
                    let e = Arc::new(e);
                    for tx in state.flush_waiters.drain(..) {
                        reply(
                            tx,
                            Err(FlushFailedSnafu { region_id }.into_error(e.clone())),
                        );
                    }
                    return;
                }
            };
            let old = std::mem::replace(&mut version.mutable, fresh);
            old.freeze();
            version.immutables.push(old.clone());
            self.shared.write_buffer.freeze(state.mutable_bytes);
            state.frozen.push((old, state.mutable_bytes));
            state.mutable_bytes = 0;
            state.region.set_version(version.clone());
        }
        if version.immutables.is_empty() {
            for tx in state.flush_waiters.drain(..) {
                reply(tx, Ok(RegionResponse::new(0)));
            }
            return;
        }
        state.flushing = true;
        let memtables = version.immutables.clone();
        // What the frozen memtables hold: every applied write (see `applied_through`).
        let (flushed_entry_id, flushed_sequence) = state.applied_through(&version);
        let region = state.region.clone();
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        let metadata = version.metadata.clone();
        tokio::spawn(async move {
            let _slot = shared.flush_slots.clone().acquire_owned().await;
            let timer = shared.metrics.flush_seconds.start_timer();
            let result = {
                let mut manifest = region.manifest.lock().await;
                flush(
                    FlushJob {
                        op: shared.op.clone(),
                        region_dir: region.region_dir(),
                        metadata,
                        memtables: &memtables,
                        flushed_entry_id,
                        flushed_sequence,
                        write_options: shared.write_options(),
                        exclude: None,
                        remove: Vec::new(),
                    },
                    &mut manifest,
                )
                .await
            };
            timer.observe_duration();
            let done = FlushDone {
                region_id,
                memtables,
                flushed_entry_id,
                flushed_sequence,
                result: result.map_err(Arc::new),
            };
            if tx.send(WorkerRequest::FlushDone(done)).await.is_err() {
                tracing::warn!(%region_id, "flush finished after its worker stopped");
            }
        });
    }

    async fn on_flush_done(&mut self, done: FlushDone) -> Vec<(RegionId, Deferred)> {
        let region_id = done.region_id;
        let metrics = self.shared.metrics.clone();
        let Some(state) = self.regions.get_mut(&region_id) else {
            return Vec::new();
        };
        state.flushing = false;
        let ok = match done.result {
            Ok(output) => {
                metrics.flushes.with_label_values(&["ok"]).inc();
                let mut version = (*state.region.version()).clone();
                version
                    .immutables
                    .retain(|m| !done.memtables.iter().any(|f| Arc::ptr_eq(f, m)));
                for f in &output.files {
                    metrics.flush_bytes.inc_by(f.file_size);
                }
                version.files = Arc::new(edit_files(
                    &version.files,
                    &[],
                    output.files,
                    state.region.region_dir(),
                    &self.shared.op,
                ));
                version.flushed_entry_id = version.flushed_entry_id.max(done.flushed_entry_id);
                version.flushed_sequence = version.flushed_sequence.max(done.flushed_sequence);
                state.region.set_version(version);
                let mut freed = 0;
                state.frozen.retain(|(m, bytes)| {
                    let flushed = done.memtables.iter().any(|f| Arc::ptr_eq(f, m));
                    if flushed {
                        freed += bytes;
                    }
                    !flushed
                });
                self.shared.write_buffer.free(freed);
                if let Err(e) = self
                    .shared
                    .log_store
                    .obsolete(region_id, done.flushed_entry_id)
                    .await
                {
                    // The entries are only replayed needlessly (and skipped) at the next open.
                    tracing::warn!(%region_id, error = %e, "obsoleting flushed WAL entries failed");
                }
                for tx in state.flush_waiters.drain(..) {
                    reply(tx, Ok(RegionResponse::new(0)));
                }
                true
            }
            Err(e) => {
                metrics.flushes.with_label_values(&["failed"]).inc();
                tracing::warn!(%region_id, error = %e, "flush failed; the rows stay in the memtables and the WAL");
                for tx in state
                    .flush_waiters
                    .drain(..)
                    .chain(state.next_waiters.drain(..))
                {
                    reply(
                        tx,
                        Err(FlushFailedSnafu { region_id }.into_error(e.clone())),
                    );
                }
                state.flush_again = false;
                for d in std::mem::take(&mut state.deferred) {
                    if d.needs_flush {
                        reply(
                            d.tx,
                            Err(FlushFailedSnafu { region_id }.into_error(e.clone())),
                        );
                    } else {
                        state.deferred.push(d);
                    }
                }
                false
            }
        };
        if ok && state.flush_again {
            state.flush_again = false;
            let waiters = std::mem::take(&mut state.next_waiters);
            self.schedule_flush(region_id, None);
            if let Some(state) = self.regions.get_mut(&region_id) {
                if state.flushing {
                    state.flush_waiters.extend(waiters);
                    return Vec::new();
                }
                for tx in waiters {
                    reply(tx, Ok(RegionResponse::new(0)));
                }
            }
        }
        let deferred: Vec<(RegionId, Deferred)> =
            self.regions.get_mut(&region_id).map_or_else(Vec::new, |s| {
                std::mem::take(&mut s.deferred)
                    .into_iter()
                    .map(|d| (region_id, d))
                    .collect()
            });
        // New files may make a window due; not when a close, drop or truncate waits.
        if ok && deferred.is_empty() && self.shared.config.auto_compaction {
            self.schedule_compaction(region_id, None, None);
        }
        deferred
    }

    // ---------------------------------------------------------------- compaction

    /// Starts a compaction run of the region (TWCS pick, then each task: merge, write, one
    /// manifest edit). With one running, the waiter gets that run's outcome.
    fn schedule_compaction(
        &mut self,
        region_id: RegionId,
        waiter: Option<Reply>,
        strict_window: Option<u64>,
    ) {
        let Some(state) = self.regions.get_mut(&region_id) else {
            if let Some(tx) = waiter {
                reply(tx, not_open(region_id));
            }
            return;
        };
        if state.compacting {
            // An explicit request runs after the current run, with its own options; a
            // background trigger is covered by the run in progress.
            if let Some(tx) = waiter {
                let next = state
                    .next_compaction
                    .get_or_insert((strict_window, Vec::new()));
                next.0 = strict_window.or(next.0);
                next.1.push(tx);
            }
            return;
        }
        state.compact_waiters.extend(waiter);
        state.compacting = true;
        let region = state.region.clone();
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let done = run_compaction(&shared, &region, strict_window).await;
            if tx.send(WorkerRequest::CompactionDone(done)).await.is_err() {
                tracing::warn!(%region_id, "compaction finished after its worker stopped");
            }
        });
    }

    fn on_compaction_done(&mut self, done: CompactionDone) -> Vec<(RegionId, Deferred)> {
        let region_id = done.region_id;
        let metrics = self.shared.metrics.clone();
        let op = self.shared.op.clone();
        let Some(state) = self.regions.get_mut(&region_id) else {
            return Vec::new();
        };
        state.compacting = false;
        if let Some(w) = done.inferred_window_secs {
            let mut version = (*state.region.version()).clone();
            if version.options.time_window_secs.is_none() {
                // Memtables created from now on partition by it.
                version.window_secs = Some(w);
                state.region.set_version(version);
            }
        }
        if !done.applied.is_empty() {
            let mut version = (*state.region.version()).clone();
            let mut files = (*version.files).clone();
            for (inputs, outputs) in done.applied {
                files = edit_files(&files, &inputs, outputs, state.region.region_dir(), &op);
            }
            version.files = Arc::new(files);
            state.region.set_version(version);
        }
        let outcome = if done.error.is_some() { "failed" } else { "ok" };
        metrics.compactions.with_label_values(&[outcome]).inc();
        for tx in state.compact_waiters.drain(..) {
            let result = match &done.error {
                Some(e) => Err(CompactionFailedSnafu { region_id }.into_error(e.clone())),
                None => Ok(RegionResponse::new(0)),
            };
            reply(tx, result);
        }
        if let Some(e) = &done.error {
            tracing::warn!(%region_id, error = %e, "compaction failed; the region keeps its files");
        }
        if let Some((strict_window, waiters)) = state.next_compaction.take() {
            state.compact_waiters = waiters;
            self.schedule_compaction(region_id, None, strict_window);
            return Vec::new();
        }
        if state.flushing {
            return Vec::new();
        }
        std::mem::take(&mut state.deferred)
            .into_iter()
            .map(|d| (region_id, d))
            .collect()
    }

    // ---------------------------------------------------------------- DDL

    async fn handle_ddl(&mut self, region_id: RegionId, request: DdlRequest, tx: Reply) {
        let waits_for_flush = matches!(
            request,
            DdlRequest::Close(_) | DdlRequest::Drop | DdlRequest::Truncate(_)
        );
        if waits_for_flush
            && let Some(state) = self.regions.get_mut(&region_id)
            && (state.flushing || state.compacting)
        {
            state.deferred.push(Deferred {
                request,
                tx,
                needs_flush: false,
            });
            return;
        }
        if let DdlRequest::Alter(req) = request {
            self.handle_alter(region_id, req, tx).await;
            return;
        }
        match request {
            DdlRequest::Alter(_) => {}
            DdlRequest::Create(req) => reply(tx, self.create(region_id, req).await),
            DdlRequest::Open(req) => {
                let was_open = self.regions.contains_key(&region_id);
                let result = self.open(region_id, req).await;
                // What a writable open replayed is flushed at once: a run killed before its
                // own flush would otherwise leave the log to be replayed (and to grow) at
                // every open.
                let replayed = self
                    .regions
                    .get(&region_id)
                    .is_some_and(|s| s.mutable_bytes > 0);
                if result.is_ok() && !was_open && replayed && !self.shared.config.read_only {
                    tracing::info!(%region_id, "flushing what the WAL replay recovered");
                    self.schedule_flush(region_id, None);
                }
                reply(tx, result);
            }
            DdlRequest::Close(req) => {
                let has_data = self.regions.get(&region_id).is_some_and(|s| {
                    let v = s.region.version();
                    !v.mutable.is_empty() || !v.immutables.is_empty()
                });
                if req.flush && has_data {
                    if let Some(state) = self.regions.get_mut(&region_id) {
                        state.deferred.push(Deferred {
                            request: DdlRequest::Close(RegionCloseRequest { flush: false }),
                            tx,
                            needs_flush: true,
                        });
                    }
                    self.schedule_flush(region_id, None);
                } else {
                    reply(tx, self.close(region_id));
                }
            }
            DdlRequest::Drop => reply(tx, self.drop_region(region_id).await),
            DdlRequest::Flush => self.schedule_flush(region_id, Some(tx)),
            DdlRequest::Compact(req) => match req.options {
                CompactOptions::Regular => self.schedule_compaction(region_id, Some(tx), None),
                CompactOptions::StrictWindow { window_seconds } => match u64::try_from(window_seconds) {
                    Ok(w) if w > 0 => self.schedule_compaction(region_id, Some(tx), Some(w)),
                    _ => reply(
                        tx,
                        InvalidRequestSnafu {
                            region_id,
                            reason: format!("strict-window compaction needs a positive window, got {window_seconds} s"),
                        }
                        .fail(),
                    ),
                },
            },
            DdlRequest::Truncate(RegionTruncateRequest::All) => {
                reply(tx, self.truncate(region_id).await);
            }
            DdlRequest::Truncate(RegionTruncateRequest::TimeRange(range)) => {
                reply(tx, self.truncate_range(region_id, range).await);
            }
        }
    }

    /// An alter runs on a region with empty memtables, no flush and no compaction running:
    /// until then it waits (flushing what the memtables hold) and the region's writes are
    /// held; they run after it against the new schema.
    async fn handle_alter(&mut self, region_id: RegionId, req: RegionAlterRequest, tx: Reply) {
        let Some(state) = self.regions.get_mut(&region_id) else {
            reply(tx, not_open(region_id));
            return;
        };
        if state.region.role() == RegionRole::Follower {
            reply(tx, ReadOnlySnafu { region_id }.fail());
            return;
        }
        let version = state.region.version();
        let has_data = !version.mutable.is_empty() || !version.immutables.is_empty();
        if has_data || state.flushing || state.compacting {
            state.deferred.push(Deferred {
                request: DdlRequest::Alter(req),
                tx,
                needs_flush: has_data,
            });
            if has_data {
                self.schedule_flush(region_id, None);
            }
            return;
        }
        reply(tx, self.alter(region_id, req).await);
    }

    async fn alter(
        &mut self,
        region_id: RegionId,
        req: RegionAlterRequest,
    ) -> Result<RegionResponse> {
        let Some(state) = self.regions.get_mut(&region_id) else {
            return not_open(region_id);
        };
        let invalid = |reason: String| InvalidRequestSnafu { region_id, reason }.build();
        let version = state.region.version();
        let mut manifest = state.region.manifest.lock().await;
        let stored = manifest.manifest();
        let metadata = req
            .apply(&version.metadata)
            .map_err(|e| invalid(e.to_string()))?;
        let (map, options) = match &req.kind {
            AlterKind::SetOptions { options } => {
                RegionOptions::merged(&stored.options, options, &[]).map_err(invalid)?
            }
            AlterKind::UnsetOptions { keys } => {
                RegionOptions::merged(&stored.options, &RegionOptionsMap::new(), keys)
                    .map_err(invalid)?
            }
            AlterKind::AddColumns { columns } => {
                // Old files may still hold a dropped column's id: ids are never reused.
                let used = stored.used_column_id();
                if let Some(c) = columns.iter().find(|c| c.column_id <= used) {
                    return Err(invalid(format!(
                        "new column '{}' has id {}, but ids up to {used} are taken (now or before); use a larger one",
                        c.name, c.column_id
                    )));
                }
                (stored.options.clone(), (*version.options).clone())
            }
            AlterKind::DropColumns { .. } => (stored.options.clone(), (*version.options).clone()),
        };
        let mut actions = Vec::new();
        if metadata != *version.metadata {
            actions.push(Action::Change(RegionChange {
                metadata: metadata.clone(),
            }));
        }
        if map != stored.options {
            actions.push(Action::Options(RegionOptionsChange {
                options: map.clone(),
            }));
        }
        let stored_window = stored.compaction_time_window_secs;
        if actions.is_empty() {
            return Ok(RegionResponse::new(0));
        }
        manifest
            .update(actions)
            .await
            .context(ManifestSnafu { region_id })?;
        drop(manifest);
        let mut next = (*version).clone();
        next.metadata = Arc::new(metadata);
        next.window_secs = options.time_window_secs.or(stored_window);
        next.options = Arc::new(options);
        next.mutable = Arc::new(next.new_memtable().context(MemtableSnafu { region_id })?);
        state.region.set_version(next);
        tracing::info!(%region_id, kind = ?req.kind, "region altered");
        Ok(RegionResponse::new(0))
    }

    fn is_open_anywhere(&self, region_id: RegionId) -> bool {
        self.shared
            .regions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&region_id)
    }

    async fn create(
        &mut self,
        region_id: RegionId,
        req: RegionCreateRequest,
    ) -> Result<RegionResponse> {
        if self.is_open_anywhere(region_id) {
            return RegionExistsSnafu {
                region_id,
                hint: " (it is open)",
            }
            .fail();
        }
        let invalid = |reason: String| InvalidRequestSnafu { region_id, reason }.build();
        let options = RegionOptions::parse(&req.options).map_err(invalid)?;
        let metadata = req
            .build_metadata(region_id)
            .map_err(|e| invalid(e.to_string()))?;
        let dir = region_dir(region_id);
        let more = if req.options.is_empty() {
            Vec::new()
        } else {
            vec![Action::Options(RegionOptionsChange {
                options: req.options.clone(),
            })]
        };
        let mut manifest = RegionManifestManager::create_with(
            self.shared.op.clone(),
            &dir,
            metadata.clone(),
            more,
            self.shared.manifest_options(),
        )
        .await
        .context(ManifestSnafu { region_id })?;
        // A WAL may still hold entries of an earlier region with this id (dropped, not yet
        // reclaimed): the new region starts after them.
        let last = self.shared.log_store.last_entry_id(region_id).unwrap_or(0);
        if last > 0 {
            manifest
                .update(vec![Action::Edit(RegionEdit {
                    flushed_entry_id: Some(last),
                    ..RegionEdit::default()
                })])
                .await
                .context(ManifestSnafu { region_id })?;
        }
        let metadata: RegionMetadataRef = Arc::new(metadata);
        let window_secs = options.time_window_secs;
        let version = Version {
            mutable: Arc::new(
                Memtable::new(metadata.clone(), memtable_options(&options, window_secs))
                    .context(MemtableSnafu { region_id })?,
            ),
            metadata,
            options: Arc::new(options),
            window_secs,
            immutables: Vec::new(),
            files: Arc::new(FileSet::new()),
            flushed_entry_id: last,
            flushed_sequence: 0,
        };
        let region = Arc::new(MitoRegion::new(dir.into(), version, 0, manifest));
        self.regions.insert(
            region_id,
            RegionState::new(region.clone(), last + 1, 1, self.shared.clock.now_millis()),
        );
        self.shared.insert_region(region);
        tracing::info!(%region_id, "region created");
        Ok(RegionResponse::new(0))
    }

    async fn open(
        &mut self,
        region_id: RegionId,
        req: RegionOpenRequest,
    ) -> Result<RegionResponse> {
        if self.regions.contains_key(&region_id) {
            return Ok(RegionResponse::new(0));
        }
        let dir = region_dir(region_id);
        let Some(manifest) = RegionManifestManager::open(
            self.shared.op.clone(),
            &dir,
            self.shared.manifest_options(),
        )
        .await
        .context(ManifestSnafu { region_id })?
        else {
            return RegionNotFoundSnafu {
                region_id,
                hint: format!(": no manifest under '{dir}'"),
            }
            .fail();
        };
        let state = manifest.manifest();
        if state.removed {
            return RegionNotFoundSnafu {
                region_id,
                hint: format!(": it was dropped (manifest under '{dir}')"),
            }
            .fail();
        }
        if state.region_id() != region_id {
            return InvalidRequestSnafu {
                region_id,
                reason: format!(
                    "the manifest under '{dir}' belongs to region {}",
                    state.region_id()
                ),
            }
            .fail();
        }
        let metadata: RegionMetadataRef = Arc::new(state.metadata.clone());
        let manifest_version = manifest.version();
        let region_dir = dir.clone();
        let dir: Arc<str> = dir.into();
        let files = edit_files(
            &FileSet::new(),
            &[],
            state.files.values().cloned(),
            &dir,
            &self.shared.op,
        );
        // The stored options, with this open's overrides (not persisted).
        let (_, options) =
            RegionOptions::merged(&state.options, &req.options, &[]).map_err(|reason| {
                InvalidRequestSnafu {
                    region_id,
                    reason: format!("opening with the stored options and the given ones: {reason}"),
                }
                .build()
            })?;
        let window_secs = options
            .time_window_secs
            .or(state.compaction_time_window_secs);
        let mutable = Memtable::new(metadata.clone(), memtable_options(&options, window_secs))
            .context(MemtableSnafu { region_id })?;
        let flushed_entry_id = state.flushed_entry_id;
        let flushed_sequence = state.flushed_sequence;
        let mut committed = flushed_sequence;
        let mut last_entry = flushed_entry_id;
        if !req.skip_wal_replay {
            let (c, l) = Self::replay(
                self.shared.clone(),
                region_id,
                &metadata,
                &mutable,
                flushed_entry_id,
            )
            .await?;
            committed = committed.max(c);
            last_entry = last_entry.max(l);
        }
        // Only after replay is it known which rows the region holds, hence which unnamed
        // files can go; without a replay (or a WAL) nothing proves it, so they stay.
        let recovered = (!req.skip_wal_replay && options.wal).then_some(committed);
        check_files(
            &self.shared,
            region_id,
            &region_dir,
            &state.files,
            manifest_version,
            recovered,
            !self.shared.config.read_only,
        )
        .await?;
        let wal_last = self.shared.log_store.last_entry_id(region_id).unwrap_or(0);
        let next_entry_id = last_entry.max(wal_last) + 1;
        let version = Version {
            metadata,
            options: Arc::new(options),
            window_secs,
            mutable: Arc::new(mutable),
            immutables: Vec::new(),
            files: Arc::new(files),
            flushed_entry_id,
            flushed_sequence,
        };
        let mutable_bytes = version.mutable.stats().bytes as u64;
        let region = Arc::new(MitoRegion::new(dir, version, committed, manifest));
        let mut rs = RegionState::new(
            region.clone(),
            next_entry_id,
            committed + 1,
            self.shared.clock.now_millis(),
        );
        rs.mutable_bytes = mutable_bytes;
        self.shared.write_buffer.reserve(mutable_bytes);
        self.regions.insert(region_id, rs);
        self.shared.insert_region(region);
        // The WAL's obsolete marks live in memory: restate this region's, so that segments
        // holding only flushed entries can go (and a clean close can remove the whole log).
        if flushed_entry_id > 0
            && let Err(e) = self
                .shared
                .log_store
                .obsolete(region_id, flushed_entry_id)
                .await
        {
            tracing::warn!(%region_id, error = %e, "obsoleting flushed WAL entries at open failed");
        }
        tracing::info!(%region_id, committed, next_entry_id, "region opened");
        Ok(RegionResponse::new(0))
    }

    /// Replays the region's WAL after `flushed_entry_id` into `memtable`; returns the last
    /// sequence and the last entry id replayed.
    async fn replay(
        shared: Arc<Shared>,
        region_id: RegionId,
        metadata: &RegionMetadataRef,
        memtable: &Memtable,
        flushed_entry_id: EntryId,
    ) -> Result<(SequenceNumber, EntryId)> {
        let mut stream = shared
            .log_store
            .read(region_id, flushed_entry_id.saturating_add(1))
            .await
            .context(WalReadSnafu { region_id })?;
        let (mut committed, mut last_entry, mut count) = (0, 0, 0u64);
        // Entry ids of a region are dense (one per logged write), so after the flushed one
        // each must follow the last: a hole means acknowledged writes are gone (a deleted or
        // emptied segment), which must stop the open rather than be skipped.
        let mut expected = flushed_entry_id.saturating_add(1);
        while let Some(chunk) = stream.next().await {
            for entry in chunk.context(WalReadSnafu { region_id })? {
                if entry.entry_id <= flushed_entry_id {
                    continue;
                }
                let entry_id = entry.entry_id;
                ensure!(
                    entry_id == expected,
                    WalGapSnafu {
                        region_id,
                        expected,
                        found: entry_id,
                    }
                );
                expected = entry_id.saturating_add(1);
                let bad = |reason: String| {
                    BadWalEntrySnafu {
                        region_id,
                        entry_id,
                        reason,
                    }
                    .build()
                };
                let e = wal_entry::decode(&entry.data).map_err(bad)?;
                let logged = if e.schema_version < metadata.schema_version() {
                    // Logged before an alter (its flush normally covers it): read in today's
                    // schema, without the columns dropped since.
                    validate::known_columns(metadata, &e.batch).map_err(bad)?
                } else {
                    e.batch
                };
                let batch = validate::normalize(metadata, &logged, e.op).map_err(bad)?;
                let rows = batch.num_rows() as u64;
                memtable
                    .write(&batch, e.first_sequence, e.op)
                    .context(MemtableSnafu { region_id })?;
                committed = committed.max(e.first_sequence + rows - 1);
                last_entry = entry_id;
                count += 1;
            }
        }
        shared.metrics.replayed_entries.inc_by(count);
        tracing::info!(%region_id, entries = count, last_entry, "WAL replayed");
        Ok((committed, last_entry))
    }

    /// Forgets the region; its unflushed rows stay in the WAL.
    fn close(&mut self, region_id: RegionId) -> Result<RegionResponse> {
        let Some(mut state) = self.regions.remove(&region_id) else {
            return Ok(RegionResponse::new(0));
        };
        state.release(&self.shared.write_buffer);
        self.shared.remove_region(region_id);
        tracing::info!(%region_id, "region closed");
        Ok(RegionResponse::new(0))
    }

    async fn drop_region(&mut self, region_id: RegionId) -> Result<RegionResponse> {
        let Some(state) = self.regions.get(&region_id) else {
            return not_open(region_id);
        };
        let region = state.region.clone();
        region
            .manifest
            .lock()
            .await
            .update(vec![Action::Remove(RegionRemove { region_id })])
            .await
            .context(ManifestSnafu { region_id })?;
        if let Some(mut state) = self.regions.remove(&region_id) {
            state.release(&self.shared.write_buffer);
        }
        self.shared.remove_region(region_id);
        if let Err(e) = self
            .shared
            .log_store
            .obsolete(region_id, EntryId::MAX)
            .await
        {
            tracing::warn!(%region_id, error = %e, "obsoleting the WAL of a dropped region failed");
        }
        let dir = region.region_dir().to_string();
        self.shared
            .op
            .delete_with(&dir)
            .recursive(true)
            .await
            .context(ObjectStoreSnafu {
                op: "remove_all",
                path: dir,
            })?;
        tracing::info!(%region_id, "region dropped");
        Ok(RegionResponse::new(0))
    }

    async fn truncate(&mut self, region_id: RegionId) -> Result<RegionResponse> {
        let Some(state) = self.regions.get_mut(&region_id) else {
            return not_open(region_id);
        };
        let truncated_entry_id = state.next_entry_id.saturating_sub(1);
        let truncated_sequence = state.next_sequence.saturating_sub(1);
        state
            .region
            .manifest
            .lock()
            .await
            .update(vec![Action::Truncate(RegionTruncate {
                truncated_entry_id,
                truncated_sequence,
            })])
            .await
            .context(ManifestSnafu { region_id })?;
        let old = state.region.version();
        for f in old.files.values() {
            f.mark_removed();
        }
        let version = Version {
            metadata: old.metadata.clone(),
            options: old.options.clone(),
            window_secs: old.window_secs,
            mutable: Arc::new(old.new_memtable().context(MemtableSnafu { region_id })?),
            immutables: Vec::new(),
            files: Arc::new(FileSet::new()),
            flushed_entry_id: truncated_entry_id,
            flushed_sequence: truncated_sequence,
        };
        state.region.set_version(version);
        state.release(&self.shared.write_buffer);
        if let Err(e) = self
            .shared
            .log_store
            .obsolete(region_id, truncated_entry_id)
            .await
        {
            tracing::warn!(%region_id, error = %e, "obsoleting the WAL of a truncated region failed");
        }
        tracing::info!(%region_id, truncated_entry_id, truncated_sequence, "region truncated");
        Ok(RegionResponse::new(0))
    }
}

impl RegionWorker {
    /// Removes the files fully inside `range` and the memtable rows in it: the memtable is
    /// written out without those rows (in this worker, so no write can slip in between),
    /// and one manifest edit adds its files, removes the covered ones and moves the flushed
    /// entry id. Rows in range in files that stick out of it stay.
    async fn truncate_range(
        &mut self,
        region_id: RegionId,
        range: TimeRange,
    ) -> Result<RegionResponse> {
        let Some(state) = self.regions.get_mut(&region_id) else {
            return not_open(region_id);
        };
        if range.is_empty() {
            return InvalidRequestSnafu {
                region_id,
                reason: format!("truncating an empty time range {range:?}"),
            }
            .fail();
        }
        let old = state.region.version();
        let inside = |min: i64, max: i64| range.contains(min) && range.contains(max);
        let remove: Vec<FileId> = old
            .files
            .values()
            .filter(|f| inside(f.meta().time_range.min, f.meta().time_range.max))
            .map(|f| f.file_id())
            .collect();
        let memtables: Vec<Arc<Memtable>> =
            old.memtables().filter(|m| !m.is_empty()).cloned().collect();
        let (flushed_entry_id, flushed_sequence) = state.applied_through(&old);
        let output = {
            let mut manifest = state.region.manifest.lock().await;
            flush(
                FlushJob {
                    op: self.shared.op.clone(),
                    region_dir: state.region.region_dir(),
                    metadata: old.metadata.clone(),
                    memtables: &memtables,
                    flushed_entry_id,
                    flushed_sequence,
                    write_options: self.shared.write_options(),
                    exclude: Some(range),
                    remove: remove.clone(),
                },
                &mut manifest,
            )
            .await?
        };
        let files = edit_files(
            &old.files,
            &remove,
            output.files,
            state.region.region_dir(),
            &self.shared.op,
        );
        let mut next = (*old).clone();
        next.mutable = Arc::new(old.new_memtable().context(MemtableSnafu { region_id })?);
        next.immutables.clear();
        next.files = Arc::new(files);
        next.flushed_entry_id = flushed_entry_id;
        next.flushed_sequence = flushed_sequence;
        state.region.set_version(next);
        state.release(&self.shared.write_buffer);
        if let Err(e) = self
            .shared
            .log_store
            .obsolete(region_id, flushed_entry_id)
            .await
        {
            tracing::warn!(%region_id, error = %e, "obsoleting the WAL after a range truncate failed");
        }
        tracing::info!(%region_id, ?range, removed = remove.len(), "time range truncated");
        Ok(RegionResponse::new(0))
    }
}

/// Checks the SSTs under the region's data directory against the manifest at open.
///
/// - A file the manifest names but the directory lacks fails the open (`Corrupted`).
/// - A file the manifest does not name is an orphan: the output of a flush or compaction that
///   died before its edit, or an input of one that died after it; or the file of an edit
///   whose manifest delta is lost. With `recovered = Some(seq)` (the highest sequence the
///   manifest and the WAL replay hold), an orphan whose rows all lie at or below `seq` holds
///   nothing that is not elsewhere and is deleted; one with newer rows is the only copy of
///   acknowledged rows, so the open fails naming it and nothing is deleted. With `None`
///   (no replay, or no WAL) nothing proves an orphan redundant and every orphan stays.
///   An orphan whose footer cannot be read stays too, with a warning. With `delete` false
///   (a read-only engine) the checks run but nothing is deleted.
async fn check_files(
    shared: &Shared,
    region_id: RegionId,
    region_dir: &str,
    live: &std::collections::BTreeMap<FileId, FileMeta>,
    manifest_version: u64,
    recovered: Option<SequenceNumber>,
    delete: bool,
) -> Result<()> {
    let dir = format!("{region_dir}{}", mito_sst::DATA_DIR);
    let entries = match shared.op.list(&dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == opendal::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(e).context(ObjectStoreSnafu {
                op: "list",
                path: dir,
            });
        }
    };
    let present: std::collections::BTreeSet<FileId> = entries
        .iter()
        .filter_map(|entry| mito_sst::parse_sst_file_name(entry.name()))
        .collect();
    let missing: Vec<String> = live
        .keys()
        .filter(|id| !present.contains(id))
        .map(|id| mito_sst::sst_path(region_dir, *id))
        .collect();
    ensure!(
        missing.is_empty(),
        MissingFilesSnafu {
            region_id,
            manifest_version,
            files: missing.join(", "),
        }
    );
    let orphans = present.iter().filter(|id| !live.contains_key(id));
    let Some(recovered) = recovered else {
        let kept = orphans.count();
        if kept > 0 {
            tracing::info!(%region_id, kept, "SSTs not in the manifest kept (no WAL replay to prove them redundant)");
        }
        return Ok(());
    };
    let mut deletable = Vec::new();
    let mut newer = Vec::new();
    for id in orphans {
        let path = mito_sst::sst_path(region_dir, *id);
        match mito_sst::orphan::max_sequence(&shared.op, &path).await {
            Ok(Some(max)) if max > recovered => newer.push((path, max)),
            Ok(_) => deletable.push(path),
            Err(e) => {
                tracing::warn!(%region_id, path, error = %e, "an SST not in the manifest cannot be read; keeping it");
            }
        }
    }
    if let Some(max) = newer.iter().map(|(_, m)| *m).max() {
        let files: Vec<String> = newer.into_iter().map(|(p, _)| p).collect();
        return UnrecordedFilesSnafu {
            region_id,
            manifest_version,
            files: files.join(", "),
            max_sequence: max,
            recovered,
        }
        .fail();
    }
    if !delete {
        return Ok(());
    }
    let mut removed = 0u64;
    for path in deletable {
        match shared.op.delete(&path).await {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(%region_id, path, error = %e, "deleting an orphan SST failed"),
        }
    }
    if removed > 0 {
        shared.metrics.orphan_files.inc_by(removed);
        tracing::info!(%region_id, removed, "orphan SSTs removed at open");
    }
    Ok(())
}

fn not_open<T>(region_id: RegionId) -> Result<T> {
    RegionNotFoundSnafu {
        region_id,
        hint: String::new(),
    }
    .fail()
}

/// One compaction run: pick over the current files, persist an inferred window, then each
/// task: merge and write (manifest not held), commit (manifest held for the edit only).
async fn run_compaction(
    shared: &Shared,
    region: &MitoRegion,
    strict_window: Option<u64>,
) -> CompactionDone {
    let region_id = region.region_id();
    let mut done = CompactionDone {
        region_id,
        applied: Vec::new(),
        inferred_window_secs: None,
        error: None,
    };
    let Ok(_slot) = shared.compaction_slots.clone().acquire_owned().await else {
        return done;
    };
    let timer = shared.metrics.compaction_seconds.start_timer();
    let version = region.version();
    let files: Vec<FileMeta> = version.files.values().map(|f| f.meta().clone()).collect();
    let units = units_per_second(&version.metadata);
    let stored_window = region
        .manifest
        .lock()
        .await
        .manifest()
        .compaction_time_window_secs;
    // The scans' cutoff: a file is dropped only when every row of it is already invisible.
    let expire_before = version
        .options
        .ttl_cutoff(&version.metadata, shared.clock.now_millis());
    let options = match strict_window {
        Some(w) => TwcsOptions {
            time_window_secs: Some(w),
            trigger_files: 2,
            expire_before,
            ..TwcsOptions::default()
        },
        None => version.options.twcs(stored_window, expire_before),
    };
    let plan = pick(&files, &options, units);
    if plan.inferred && strict_window.is_none() && !files.is_empty() {
        let persisted = region
            .manifest
            .lock()
            .await
            .update(vec![Action::Edit(RegionEdit {
                compaction_time_window_secs: Some(plan.window_secs),
                ..RegionEdit::default()
            })])
            .await
            .context(ManifestSnafu { region_id });
        if let Err(e) = persisted {
            done.error = Some(Arc::new(e));
            return done;
        }
        done.inferred_window_secs = Some(plan.window_secs);
    }
    if !plan.expired.is_empty() {
        // Whole files past the TTL: removed without being read (their rows are already
        // invisible to scans).
        let removed = region
            .manifest
            .lock()
            .await
            .update(vec![Action::Edit(RegionEdit {
                files_to_remove: plan.expired.clone(),
                ..RegionEdit::default()
            })])
            .await
            .context(ManifestSnafu { region_id });
        match removed {
            Ok(_) => {
                tracing::info!(%region_id, files = plan.expired.len(), "expired files removed");
                shared
                    .metrics
                    .expired_files
                    .inc_by(plan.expired.len() as u64);
                done.applied.push((plan.expired.clone(), Vec::new()));
            }
            Err(e) => {
                done.error = Some(Arc::new(e));
                return done;
            }
        }
    }
    for task in plan.tasks {
        let inputs: Vec<FileMeta> = files
            .iter()
            .filter(|f| task.inputs.contains(&f.file_id))
            .cloned()
            .collect();
        let lo = inputs
            .iter()
            .map(|f| f.time_range.min)
            .min()
            .unwrap_or(i64::MIN);
        let hi = inputs
            .iter()
            .map(|f| f.time_range.max)
            .max()
            .unwrap_or(i64::MAX);
        // Tombstones may go only if no older row for their keys can be outside the inputs.
        // Files flushed while this runs hold newer sequences, so the snapshot suffices.
        let drop_deletes = files
            .iter()
            .filter(|f| !task.inputs.contains(&f.file_id))
            .all(|f| !f.overlaps_time(lo, hi));
        let job = CompactionJob {
            op: shared.op.clone(),
            region_dir: region.region_dir().to_string(),
            metadata: version.metadata.clone(),
            inputs,
            dedup: version.options.dedup(),
            drop_deletes,
            max_output_file_size: task.max_output_file_size,
            write_options: shared.write_options(),
            batch_rows: shared.config.scan_batch_rows,
        };
        // The merge runs on the background threads; `job` comes back for the commit.
        let (job, written) = match shared
            .background
            .spawn(async move {
                let written = write_outputs(&job).await;
                (job, written)
            })
            .await
        {
            Ok(pair) => pair,
            Err(e) => {
                done.error = Some(Arc::new(
                    StoppedSnafu {
                        hint: format!(": the compaction merge of region {region_id} ended: {e}"),
                    }
                    .build(),
                ));
                break;
            }
        };
        let result = match written {
            Ok(merged) => {
                // Crash point for tests: outputs written, not yet in the manifest.
                fail::fail_point!("mito-compaction-before-commit");
                let mut manifest = region.manifest.lock().await;
                commit(&job, merged, &mut manifest).await
            }
            Err(e) => Err(e),
        };
        // Crash point for tests: the edit is durable, the inputs are not deleted yet.
        fail::fail_point!("mito-compaction-after-commit");
        match result {
            Ok(out) => {
                let (mut rows, mut bytes) = (0, 0);
                for f in &out.outputs {
                    shared.metrics.compaction_bytes.inc_by(f.file_size);
                    shared.metrics.compaction_rows.inc_by(f.num_rows);
                    rows += f.num_rows;
                    bytes += f.file_size;
                }
                tracing::info!(
                    %region_id,
                    window_start = task.window_start,
                    inputs = task.inputs.len(),
                    input_bytes = job.inputs.iter().map(|f| f.file_size).sum::<u64>(),
                    outputs = out.outputs.len(),
                    rows,
                    bytes,
                    "compaction task committed"
                );
                done.applied.push((task.inputs, out.outputs));
            }
            Err(e) => {
                done.error = Some(Arc::new(CompactionSnafu { region_id }.into_error(e)));
                break;
            }
        }
    }
    timer.observe_duration();
    done
}
