//! Create and open: manifest, WAL replay, the SST check against the manifest (orphans,
//! missing files).

use std::sync::Arc;

use futures::StreamExt;
use mito_manifest::{Action, RegionEdit, RegionManifestManager, RegionOptionsChange};
use mito_memtable::Memtable;
use mito_sst::{FileId, FileMeta};
use snafu::{ResultExt, ensure};
use store_api::metadata::RegionMetadataRef;
use store_api::region_request::{RegionCreateRequest, RegionOpenRequest, RegionResponse};
use store_api::{EntryId, RegionId, SequenceNumber};

use crate::error::{
    BadWalEntrySnafu, InvalidRequestSnafu, ManifestSnafu, MemtableSnafu, MissingFilesSnafu,
    ObjectStoreSnafu, RegionExistsSnafu, RegionNotFoundSnafu, Result, UnrecordedFilesSnafu,
    WalGapSnafu, WalReadSnafu,
};
use crate::options::RegionOptions;
use crate::region::{FileSet, MitoRegion, Version, edit_files, memtable_options, region_dir};
use crate::validate;
use crate::wal_entry;

use super::state::RegionState;
use super::{RegionWorker, Shared};

impl RegionWorker {
    pub(super) async fn create(
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

    pub(super) async fn open(
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
    pub(super) async fn replay(
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
pub(super) async fn check_files(
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
