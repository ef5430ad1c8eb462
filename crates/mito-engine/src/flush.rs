//! Flushing frozen memtables into SST files and committing them with one manifest edit.
//!
//! ```text
//!  frozen memtables ──► per memtable, per time window: sorted read (tombstones kept)
//!                   ──► one SST each ──► one manifest edit: files + flushed entry id/sequence
//!  any failure      ──► every SST written by this flush is deleted; memtables and WAL untouched
//! ```
//!
//! The caller drops the memtables and obsoletes the WAL only after this returns `Ok`.

use std::sync::Arc;

use arrow_array::RecordBatch;
// A window of fewer rows than this shares its file with the sparse windows next to it (3,000
// points spread over 500 years made one file per point's window); the compaction picker
// merges sparse windows by the same bound.
use mito_compaction::picker::SPARSE_WINDOW_ROWS;
use mito_manifest::{Action, RegionEdit, RegionManifestManager};
use mito_memtable::{Memtable, MemtableRead};
use mito_sst::{FileId, FileMeta, SstWriter, WriteOptions, sst_path};
use opendal::Operator;
use snafu::ResultExt;
use store_api::metadata::RegionMetadataRef;
use store_api::scan::TimeRange;
use store_api::{EntryId, SequenceNumber};

use crate::error::{
    ArrowSnafu, InvalidRequestSnafu, ManifestSnafu, MemtableSnafu, Result, SstSnafu,
};

/// What one flush writes.
#[derive(Debug)]
pub struct FlushJob<'a> {
    /// Where files go.
    pub op: Operator,
    /// The region directory (ends with `/`).
    pub region_dir: &'a str,
    /// The region's metadata at freeze time.
    pub metadata: RegionMetadataRef,
    /// Frozen memtables, oldest first.
    pub memtables: &'a [Arc<Memtable>],
    /// The last WAL entry whose rows are in these memtables.
    pub flushed_entry_id: EntryId,
    /// The last sequence whose rows are in these memtables.
    pub flushed_sequence: SequenceNumber,
    /// How SSTs are written.
    pub write_options: WriteOptions,
    /// Rows in this range are not written (a truncate of a time range).
    pub exclude: Option<TimeRange>,
    /// Files the same manifest edit removes (a truncate of a time range).
    pub remove: Vec<FileId>,
}

/// What a flush committed.
#[derive(Debug, Clone, PartialEq)]
pub struct FlushOutput {
    /// The files added.
    pub files: Vec<FileMeta>,
    /// The manifest version of the edit.
    pub manifest_version: u64,
}

/// The rows one flushed file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileGroup {
    /// One dense time window.
    Window(i64),
    /// Consecutive sparse windows: the rows in `[start, end)`.
    Span(TimeRange),
}

/// Which windows of a memtable go to which file: a window with at least
/// [`SPARSE_WINDOW_ROWS`] rows gets a file of its own; consecutive sparser ones share one
/// until it holds that many rows. `windows` is (start, rows) in order; `width` the window.
fn file_groups(windows: &[(i64, usize)], width: i64) -> Vec<FileGroup> {
    let mut out = Vec::new();
    // The sparse windows gathered so far: first start, last start, rows.
    let mut open: Option<(i64, i64, usize)> = None;
    let close = |open: &mut Option<(i64, i64, usize)>, out: &mut Vec<FileGroup>| {
        if let Some((first, last, _)) = open.take() {
            out.push(if first == last {
                FileGroup::Window(first)
            } else {
                // The last window of the time index's range ends past i64::MAX: unbounded,
                // or its row at i64::MAX would be left out.
                FileGroup::Span(TimeRange {
                    start: Some(first),
                    end: last.checked_add(width),
                })
            });
        }
    };
    for &(start, rows) in windows {
        if rows >= SPARSE_WINDOW_ROWS {
            close(&mut open, &mut out);
            out.push(FileGroup::Window(start));
            continue;
        }
        let (first, total) = match open {
            Some((first, _, total)) => (first, total + rows),
            None => (start, rows),
        };
        open = Some((first, start, total));
        if total >= SPARSE_WINDOW_ROWS {
            close(&mut open, &mut out);
        }
    }
    close(&mut open, &mut out);
    out
}

/// Writes the memtables' rows as SSTs (one per memtable and dense time window, sparse windows
/// sharing files) and commits them.
pub async fn flush(job: FlushJob<'_>, manifest: &mut RegionManifestManager) -> Result<FlushOutput> {
    let mut written: Vec<FileMeta> = Vec::new();
    let result = write_and_commit(&job, manifest, &mut written).await;
    if result.is_err() {
        for f in &written {
            let path = sst_path(job.region_dir, f.file_id);
            if let Err(e) = job.op.delete(&path).await {
                tracing::warn!(path, error = %e, "deleting an SST of a failed flush failed");
            }
        }
    }
    result
}

async fn write_and_commit(
    job: &FlushJob<'_>,
    manifest: &mut RegionManifestManager,
    written: &mut Vec<FileMeta>,
) -> Result<FlushOutput> {
    let region_id = job.metadata.region_id();
    for memtable in job.memtables {
        for group in file_groups(&memtable.partition_rows(), memtable.window()) {
            let req = match group {
                FileGroup::Window(start) => MemtableRead {
                    partition: Some(start),
                    keep_deletes: true,
                    ..MemtableRead::default()
                },
                FileGroup::Span(range) => MemtableRead {
                    time_range: Some(range),
                    keep_deletes: true,
                    ..MemtableRead::default()
                },
            };
            let mut rows = memtable.read(&req).context(MemtableSnafu { region_id })?;
            let mut writer = SstWriter::new(
                job.op.clone(),
                job.region_dir,
                FileId::random(),
                job.metadata.clone(),
                job.write_options.clone(),
            );
            let mut any = false;
            for batch in rows.by_ref() {
                let mut batch = batch.context(MemtableSnafu { region_id })?;
                if let Some(range) = &job.exclude {
                    batch = exclude_range(&batch, &job.metadata, range)?;
                    if batch.num_rows() == 0 {
                        continue;
                    }
                }
                any |= batch.num_rows() > 0;
                writer.write(&batch).await.context(SstSnafu { region_id })?;
            }
            if !any {
                // Everything in this window was deduplicated away.
                writer.abort().await;
                continue;
            }
            written.push(writer.finish().await.context(SstSnafu { region_id })?);
        }
    }
    let edit = RegionEdit {
        files_to_add: written.clone(),
        files_to_remove: job.remove.clone(),
        flushed_entry_id: Some(job.flushed_entry_id),
        flushed_sequence: Some(job.flushed_sequence),
        ..RegionEdit::default()
    };
    fail::fail_point!("mito-flush-commit", |_| {
        Err(opendal::Error::new(
            opendal::ErrorKind::Unexpected,
            "injected by failpoint mito-flush-commit",
        ))
        .context(crate::error::ObjectStoreSnafu {
            op: "write",
            path: manifest.dir().to_string(),
        })
    });
    let version = manifest
        .update(vec![Action::Edit(edit)])
        .await
        .context(ManifestSnafu { region_id })?;
    Ok(FlushOutput {
        files: written.clone(),
        manifest_version: version,
    })
}

/// The rows of `batch` whose timestamp is outside `range`.
fn exclude_range(
    batch: &RecordBatch,
    metadata: &RegionMetadataRef,
    range: &TimeRange,
) -> Result<RecordBatch> {
    let region_id = metadata.region_id();
    let ts_name = &metadata.time_index_column().name;
    let ts = batch
        .column_by_name(ts_name)
        .map(|c| c.to_data())
        .filter(|d| d.buffers().len() == 1 && d.len() == batch.num_rows());
    let Some(ts) = ts else {
        return InvalidRequestSnafu {
            region_id,
            reason: format!("memtable rows without time index '{ts_name}'"),
        }
        .fail();
    };
    mito_read::keep_rows(batch.clone(), ts.buffer::<i64>(0), |t| !range.contains(t))
        .context(ArrowSnafu)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: usize = SPARSE_WINDOW_ROWS;

    #[test]
    fn dense_windows_get_a_file_each_and_sparse_ones_share() {
        let w = 10;
        // Two dense windows, then a run of sparse ones, a dense one, one sparse one.
        let windows = [
            (0, S),
            (10, S + 5),
            (20, 1),
            (50, 2),
            (90, S - 10),
            (100, 7),
            (110, S),
            (500, 1),
        ];
        assert_eq!(
            file_groups(&windows, w),
            [
                FileGroup::Window(0),
                FileGroup::Window(10),
                // 1 + 2 + (S - 10) + 7 reaches S at window 100: the group closes there.
                FileGroup::Span(TimeRange::new(20, 110)),
                FileGroup::Window(110),
                FileGroup::Window(500),
            ]
        );
        assert!(file_groups(&[], w).is_empty());
        // The window holding i64::MAX: the span has no end, so that row is kept.
        let last = i64::MAX.div_euclid(w) * w;
        assert_eq!(
            file_groups(&[(i64::MIN, 1), (last, 1)], w),
            [FileGroup::Span(TimeRange {
                start: Some(i64::MIN),
                end: None
            })]
        );
    }

    #[test]
    fn scattered_points_make_few_files() {
        // 3,000 points, each alone in its window (500 years of days): one file per 4,096 rows.
        let windows: Vec<(i64, usize)> = (0..3000).map(|i| (i * 86_400, 1)).collect();
        assert_eq!(
            file_groups(&windows, 86_400),
            [FileGroup::Span(TimeRange::new(0, 3000 * 86_400))]
        );
    }
}
