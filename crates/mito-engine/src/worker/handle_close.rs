//! Close, drop and truncate (whole region or a time range).

use std::sync::Arc;

use mito_manifest::{Action, RegionRemove, RegionTruncate};
use mito_memtable::Memtable;
use mito_sst::FileId;
use snafu::ResultExt;
use store_api::region_request::RegionResponse;
use store_api::scan::TimeRange;
use store_api::{EntryId, RegionId};

use crate::error::{InvalidRequestSnafu, ManifestSnafu, MemtableSnafu, ObjectStoreSnafu, Result};
use crate::flush::{FlushJob, flush};
use crate::region::{FileSet, Version, edit_files};

use super::{RegionWorker, not_open};

impl RegionWorker {
    /// Forgets the region; its unflushed rows stay in the WAL.
    pub(super) fn close(&mut self, region_id: RegionId) -> Result<RegionResponse> {
        let Some(mut state) = self.regions.remove(&region_id) else {
            return Ok(RegionResponse::new(0));
        };
        state.release(&self.shared.write_buffer);
        self.shared.remove_region(region_id);
        tracing::info!(%region_id, "region closed");
        Ok(RegionResponse::new(0))
    }

    pub(super) async fn drop_region(&mut self, region_id: RegionId) -> Result<RegionResponse> {
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

    pub(super) async fn truncate(&mut self, region_id: RegionId) -> Result<RegionResponse> {
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

    /// Removes the files fully inside `range` and the memtable rows in it: the memtable is
    /// written out without those rows (in this worker, so no write can slip in between),
    /// and one manifest edit adds its files, removes the covered ones and moves the flushed
    /// entry id. Rows in range in files that stick out of it stay.
    pub(super) async fn truncate_range(
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
        let remove: Vec<FileId> = old
            .files
            .values()
            .filter(|f| range.covers(f.meta().time_range))
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
