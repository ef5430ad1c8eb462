//! Flushes: freeze the mutable memtable, run the flush job (SSTs, one manifest edit) off the
//! worker, and on its report drop the flushed memtables, free the write buffer and obsolete the
//! WAL. Idle and pressure triggers live here too.

use std::sync::Arc;

use mito_memtable::Memtable;
use snafu::{IntoError, ResultExt};
use store_api::region_request::RegionResponse;
use store_api::{EntryId, RegionId, SequenceNumber};

use crate::error::{Error, FlushFailedSnafu, MemtableSnafu};
use crate::flush::{FlushJob, FlushOutput, flush};
use crate::region::edit_files;
use crate::write_buffer::{Pressure, pick_flushes};

use super::{Deferred, RegionWorker, Reply, WorkerRequest, not_open, reply};

#[derive(Debug)]
pub(crate) struct FlushDone {
    region_id: RegionId,
    memtables: Vec<Arc<Memtable>>,
    flushed_entry_id: EntryId,
    flushed_sequence: SequenceNumber,
    result: std::result::Result<FlushOutput, Arc<Error>>,
}

impl RegionWorker {
    /// Flushes this worker's largest regions when the global buffer asks for it.
    pub(super) fn flush_for_pressure(&mut self) {
        let sizes: Vec<(RegionId, u64)> = self
            .regions
            .iter()
            .filter(|(_, s)| !s.flush.is_running())
            .map(|(id, s)| (*id, s.mutable_bytes))
            .collect();
        for region_id in pick_flushes(&sizes, self.shared.write_buffer.limit()) {
            self.schedule_flush(region_id, None);
        }
    }

    pub(super) fn on_tick(&mut self) {
        let now = self.shared.clock.now_millis();
        let idle =
            i64::try_from(self.shared.config.auto_flush_interval.as_millis()).unwrap_or(i64::MAX);
        let due: Vec<RegionId> = self
            .regions
            .iter()
            .filter(|(_, s)| {
                !s.flush.is_running()
                    && s.mutable_bytes > 0
                    && now.saturating_sub(s.last_write_ms) >= idle
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
    pub(super) fn schedule_flush(
        &mut self,
        region_id: RegionId,
        waiters: impl IntoIterator<Item = Reply>,
    ) {
        let Some(state) = self.regions.get_mut(&region_id) else {
            for tx in waiters {
                reply(tx, not_open(region_id));
            }
            return;
        };
        if !state.flush.request(waiters) {
            return;
        }
        let mut version = (*state.region.version()).clone();
        if !version.mutable.is_empty() {
            let fresh = match version.new_memtable().context(MemtableSnafu { region_id }) {
                Ok(m) => Arc::new(m),
                Err(e) => {
                    let e = Arc::new(e);
                    for tx in state.flush.take_waiters() {
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
            for tx in state.flush.take_waiters() {
                reply(tx, Ok(RegionResponse::new(0)));
            }
            return;
        }
        state.flush.started();
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

    pub(super) async fn on_flush_done(&mut self, done: FlushDone) -> Vec<(RegionId, Deferred)> {
        let region_id = done.region_id;
        let metrics = self.shared.metrics.clone();
        let Some(state) = self.regions.get_mut(&region_id) else {
            return Vec::new();
        };
        let (ok, next) = match done.result {
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
                let (waiters, next) = state.flush.succeeded();
                for tx in waiters {
                    reply(tx, Ok(RegionResponse::new(0)));
                }
                (true, next)
            }
            Err(e) => {
                metrics.flushes.with_label_values(&["failed"]).inc();
                tracing::warn!(%region_id, error = %e, "flush failed; the rows stay in the memtables and the WAL");
                for tx in state.flush.failed() {
                    reply(
                        tx,
                        Err(FlushFailedSnafu { region_id }.into_error(e.clone())),
                    );
                }
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
                (false, None)
            }
        };
        if let Some(waiters) = next {
            // Requests that arrived during the flush: one more, or answered now if the
            // memtables are empty. The deferred requests wait for it.
            self.schedule_flush(region_id, waiters);
            if self
                .regions
                .get(&region_id)
                .is_some_and(|s| s.flush.is_running())
            {
                return Vec::new();
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
}
