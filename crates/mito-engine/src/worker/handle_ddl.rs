//! DDL dispatch: requests that must wait for a running flush or compaction are deferred,
//! the rest run at once.

use store_api::RegionId;
use store_api::region_request::{CompactOptions, RegionCloseRequest, RegionTruncateRequest};

use crate::error::InvalidRequestSnafu;

use super::{DdlRequest, Deferred, RegionWorker, Reply, reply};

impl RegionWorker {
    // ---------------------------------------------------------------- DDL

    pub(super) async fn handle_ddl(&mut self, region_id: RegionId, request: DdlRequest, tx: Reply) {
        let waits_for_flush = matches!(
            request,
            DdlRequest::Close(_) | DdlRequest::Drop | DdlRequest::Truncate(_)
        );
        if waits_for_flush
            && let Some(state) = self.regions.get_mut(&region_id)
            && (state.flush.is_running() || state.compaction.is_running())
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

    pub(super) fn is_open_anywhere(&self, region_id: RegionId) -> bool {
        self.shared
            .regions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&region_id)
    }
}
