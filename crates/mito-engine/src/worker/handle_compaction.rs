//! Compactions: one run at a time per region (a later explicit request runs next), its
//! merges on the background runtime, the committed edits applied to the version on report.

use std::sync::Arc;

use mito_compaction::{CompactionJob, TwcsOptions, commit, pick, write_outputs};
use mito_manifest::{Action, RegionEdit};
use mito_sst::{FileId, FileMeta};
use snafu::{IntoError, ResultExt};
use store_api::RegionId;
use store_api::region_request::RegionResponse;
use store_api::time::TimeSpan;

use crate::error::{CompactionFailedSnafu, CompactionSnafu, Error, ManifestSnafu, StoppedSnafu};
use crate::options::units_per_second;
use crate::region::{MitoRegion, edit_files};

use super::{Deferred, RegionWorker, Reply, Shared, WorkerRequest, not_open, reply};

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

impl RegionWorker {
    /// Starts a compaction run of the region (TWCS pick, then each task: merge, write, one
    /// manifest edit). With one running, the waiter gets that run's outcome.
    pub(super) fn schedule_compaction(
        &mut self,
        region_id: RegionId,
        waiters: impl IntoIterator<Item = Reply>,
        strict_window: Option<u64>,
    ) {
        let Some(state) = self.regions.get_mut(&region_id) else {
            for tx in waiters {
                reply(tx, not_open(region_id));
            }
            return;
        };
        // An explicit request during a run gets a run of its own after it, with its own
        // options; a background trigger is covered by the run in progress.
        if !state.compaction.request(waiters, strict_window) {
            return;
        }
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

    pub(super) fn on_compaction_done(&mut self, done: CompactionDone) -> Vec<(RegionId, Deferred)> {
        let region_id = done.region_id;
        let metrics = self.shared.metrics.clone();
        let op = self.shared.op.clone();
        let Some(state) = self.regions.get_mut(&region_id) else {
            return Vec::new();
        };
        let (waiters, next) = state.compaction.finished();
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
        for tx in waiters {
            let result = match &done.error {
                Some(e) => Err(CompactionFailedSnafu { region_id }.into_error(e.clone())),
                None => Ok(RegionResponse::new(0)),
            };
            reply(tx, result);
        }
        if let Some(e) = &done.error {
            tracing::warn!(%region_id, error = %e, "compaction failed; the region keeps its files");
        }
        if let Some((strict_window, waiters)) = next {
            self.schedule_compaction(region_id, waiters, strict_window);
            return Vec::new();
        }
        if state.flush.is_running() {
            return Vec::new();
        }
        std::mem::take(&mut state.deferred)
            .into_iter()
            .map(|d| (region_id, d))
            .collect()
    }
}

/// One compaction run: pick over the current files, persist an inferred window, then each
/// task: merge and write (manifest not held), commit (manifest held for the edit only).
pub(super) async fn run_compaction(
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
        // No input (never planned): every file counts as overlapping.
        let span = inputs
            .iter()
            .map(|f| f.time_range)
            .reduce(TimeSpan::union)
            .unwrap_or(TimeSpan::new(i64::MIN, i64::MAX));
        // Tombstones may go only if no older row for their keys can be outside the inputs.
        // Files flushed while this runs hold newer sequences, so the snapshot suffices.
        let drop_deletes = files
            .iter()
            .filter(|f| !task.inputs.contains(&f.file_id))
            .all(|f| !f.time_range.overlaps(span));
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
