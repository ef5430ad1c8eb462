//! Writes: validate (or take the caller's prepared encoding), sequence, one WAL append per
//! group (up to `MAX_INFLIGHT` in flight), memtable inserts, answers, stalls and rejects under
//! write-buffer pressure.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::RecordBatch;
use bytes::Bytes;
use futures::StreamExt;
use mito_read::OpType;
use snafu::{IntoError, ResultExt};
use store_api::engine::RegionRole;
use store_api::logstore::Entry;
use store_api::metadata::RegionMetadataRef;
use store_api::region_request::RegionResponse;
use store_api::{EntryId, RegionId, SequenceNumber};
use tokio::sync::oneshot;

use crate::error::{
    EncodeWalSnafu, Error, InvalidRequestSnafu, MemtableSnafu, ReadOnlySnafu, Result,
    WalAppendSnafu, WriteBufferFullSnafu,
};
use crate::validate;
use crate::wal_entry;
use crate::write_buffer::Pressure;

use super::{RegionWorker, not_open, reply};

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

/// A sequenced write waiting for its WAL append.
#[derive(Debug)]
pub(super) struct Pending {
    req: WriteRequest,
    batch: RecordBatch,
    first_sequence: SequenceNumber,
    entry_id: EntryId,
    rows: u64,
}

/// A group's WAL append in flight, and the writes it carries.
pub(super) type Inflight = futures::future::BoxFuture<
    'static,
    (
        std::result::Result<store_api::logstore::AppendResponse, store_api::error::BoxedError>,
        Vec<Pending>,
    ),
>;

/// WAL appends a worker keeps in flight before it waits for the oldest.
pub(super) const MAX_INFLIGHT: usize = 4;

impl RegionWorker {
    pub(super) async fn handle_writes(&mut self, writes: Vec<WriteRequest>) {
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
    pub(super) async fn complete_next(&mut self) {
        if let Some((result, pending)) = self.inflight.next().await {
            self.complete(result, pending);
        }
    }

    /// Applies every WAL append in flight (before anything that needs the memtables to hold
    /// every sequenced write: DDL, flush scheduling, stop).
    pub(super) async fn drain_inflight(&mut self) {
        while !self.inflight.is_empty() {
            self.complete_next().await;
        }
    }

    /// After a WAL append: memtable inserts, the committed sequence, the answers, then flushes
    /// if a buffer limit is passed.
    pub(super) fn complete(
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
            if state.mutable_bytes > region_limit && !state.flush.is_running() {
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

    pub(super) async fn retry_stalled(&mut self) {
        if self.stalled.is_empty() || self.shared.write_buffer.pressure() >= Pressure::Stall {
            return;
        }
        let stalled = std::mem::take(&mut self.stalled);
        self.handle_writes(stalled).await;
    }
}
