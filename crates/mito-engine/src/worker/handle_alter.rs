//! Alter: runs on empty memtables (flushing first), the region's writes held meanwhile.

use std::sync::Arc;

use mito_manifest::{Action, RegionChange, RegionOptionsChange};
use snafu::ResultExt;
use store_api::RegionId;
use store_api::engine::RegionRole;
use store_api::region_request::{AlterKind, RegionAlterRequest, RegionOptionsMap, RegionResponse};

use crate::error::{InvalidRequestSnafu, ManifestSnafu, MemtableSnafu, ReadOnlySnafu, Result};
use crate::options::RegionOptions;

use super::{DdlRequest, Deferred, RegionWorker, Reply, not_open, reply};

impl RegionWorker {
    /// An alter runs on a region with empty memtables, no flush and no compaction running:
    /// until then it waits (flushing what the memtables hold) and the region's writes are
    /// held; they run after it against the new schema.
    pub(super) async fn handle_alter(
        &mut self,
        region_id: RegionId,
        req: RegionAlterRequest,
        tx: Reply,
    ) {
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
        if has_data || state.flush.is_running() || state.compaction.is_running() {
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

    pub(super) async fn alter(
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
}
