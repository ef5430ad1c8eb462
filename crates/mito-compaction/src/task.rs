//! The compaction task: merge input SSTs into fewer, sorted outputs and commit the swap with
//! one manifest edit.
//!
//! ```text
//!  inputs ──► each read whole (checked chunks) ──► mito_read::merge (the scan's dedup)
//!         ──► outputs of at most max_output_file_size ──► one edit: outputs in, inputs out
//!  any failure before the edit is durable ──► outputs deleted; the inputs stay the region's
//! ```
//!
//! Tombstones are kept unless the caller proves that no older row for their keys can exist
//! outside the inputs (`drop_deletes`): no other file overlaps the inputs' time range. The
//! inputs are not deleted here: the caller removes them once no scan reads them.

use futures::StreamExt;
use mito_manifest::{Action, RegionEdit, RegionManifestManager};
use mito_read::DedupOptions;
use mito_read::merge::{BatchStream, MergeOptions, merge};
use mito_sst::{FileMeta, SstReadRequest, SstReader, SstWriter, WriteOptions, sst_path};
use opendal::Operator;
use snafu::{IntoError, OptionExt, ResultExt};
use store_api::metadata::{RegionMetadataRef, SemanticType};

use crate::error::{InvalidTaskSnafu, ManifestSnafu, MergeSnafu, Result, SstSnafu};

/// One compaction.
#[derive(Debug, Clone)]
pub struct CompactionJob {
    /// Where the files are.
    pub op: Operator,
    /// The region directory (ends with `/`).
    pub region_dir: String,
    /// The region's current metadata (inputs of older schemas are read in it).
    pub metadata: RegionMetadataRef,
    /// The files to merge.
    pub inputs: Vec<FileMeta>,
    /// The region's merge and append modes.
    pub dedup: DedupOptions,
    /// Whether tombstones may be dropped (no file outside the inputs overlaps them in time).
    pub drop_deletes: bool,
    /// Outputs roll at this size (bytes written so far, an estimate before compression ends).
    pub max_output_file_size: u64,
    /// How outputs are written; `level` is set to 1.
    pub write_options: WriteOptions,
    /// Rows per merged batch.
    pub batch_rows: usize,
}

/// What a compaction committed.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionOutput {
    /// Files added.
    pub outputs: Vec<FileMeta>,
    /// Rows read from the inputs and written to the outputs.
    pub rows_in: u64,
    /// Rows written.
    pub rows_out: u64,
    /// The manifest version of the edit.
    pub manifest_version: u64,
}

/// Runs a compaction and commits it.
pub async fn compact(
    job: CompactionJob,
    manifest: &mut RegionManifestManager,
) -> Result<CompactionOutput> {
    let merged = write_outputs(&job).await?;
    commit(&job, merged, manifest).await
}

/// The outputs of a compaction, written but not committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// Files written.
    pub outputs: Vec<FileMeta>,
    /// Rows read from the inputs.
    pub rows_in: u64,
    /// Rows written.
    pub rows_out: u64,
}

/// Merges the inputs into outputs (deleted again if anything fails). The caller commits them
/// with [`commit`]; splitting the two lets it hold the manifest only for the edit.
pub async fn write_outputs(job: &CompactionJob) -> Result<Merged> {
    let mut written: Vec<FileMeta> = Vec::new();
    let result = run(job, &mut written).await;
    match result {
        Ok((rows_in, rows_out)) => Ok(Merged {
            outputs: written,
            rows_in,
            rows_out,
        }),
        Err(e) => {
            delete_outputs(job, &written).await;
            Err(e)
        }
    }
}

/// Commits written outputs with one manifest edit (outputs in, inputs out); deletes the
/// outputs if the edit fails.
pub async fn commit(
    job: &CompactionJob,
    merged: Merged,
    manifest: &mut RegionManifestManager,
) -> Result<CompactionOutput> {
    let region_id = job.metadata.region_id();
    let edit = RegionEdit {
        files_to_add: merged.outputs.clone(),
        files_to_remove: job.inputs.iter().map(|f| f.file_id).collect(),
        ..RegionEdit::default()
    };
    match manifest
        .update(vec![Action::Edit(edit)])
        .await
        .context(ManifestSnafu { region_id })
    {
        Ok(manifest_version) => Ok(CompactionOutput {
            outputs: merged.outputs,
            rows_in: merged.rows_in,
            rows_out: merged.rows_out,
            manifest_version,
        }),
        Err(e) => {
            delete_outputs(job, &merged.outputs).await;
            Err(e)
        }
    }
}

async fn delete_outputs(job: &CompactionJob, outputs: &[FileMeta]) {
    for f in outputs {
        let path = sst_path(&job.region_dir, f.file_id);
        if let Err(e) = job.op.delete(&path).await {
            tracing::warn!(path, error = %e, "deleting an output of a failed compaction failed");
        }
    }
}

async fn run(job: &CompactionJob, written: &mut Vec<FileMeta>) -> Result<(u64, u64)> {
    let metadata = &job.metadata;
    let region_id = metadata.region_id();
    if job.inputs.is_empty() {
        return InvalidTaskSnafu {
            region_id,
            reason: "no input files",
        }
        .fail();
    }
    let mut sources: Vec<BatchStream<arrow_schema::ArrowError>> = Vec::new();
    let mut rows_in = 0;
    for f in &job.inputs {
        rows_in += f.num_rows;
        let reader = SstReader::open(job.op.clone(), &job.region_dir, f.clone(), metadata.clone())
            .await
            .context(SstSnafu { region_id })?;
        let stream = reader
            .read(&SstReadRequest {
                batch_rows: job.batch_rows,
                ..SstReadRequest::default()
            })
            .await
            .context(SstSnafu { region_id })?;
        // Errors travel through the merge as Arrow errors carrying the SST error's text.
        sources.push(
            stream
                .map(|b| b.map_err(|e| arrow_schema::ArrowError::ExternalError(Box::new(e))))
                .boxed(),
        );
    }
    let columns = metadata.column_metadatas();
    let schema = mito_read::compat::read_schema(metadata, &(0..columns.len()).collect::<Vec<_>>());
    let options = MergeOptions {
        schema,
        time_index: columns
            .iter()
            .position(|c| c.semantic_type == SemanticType::Timestamp)
            .context(InvalidTaskSnafu {
                region_id,
                reason: "the region's metadata has no time index column",
            })?,
        fields: columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.semantic_type == SemanticType::Field)
            .map(|(i, _)| i)
            .collect(),
        dedup: DedupOptions {
            keep_deletes: !job.drop_deletes,
            ..job.dedup
        },
        batch_rows: job.batch_rows.max(1),
    };
    let mut merged = merge(sources, options);
    let write_options = WriteOptions {
        level: 1,
        ..job.write_options.clone()
    };
    let new_writer = || {
        SstWriter::new(
            job.op.clone(),
            &job.region_dir,
            mito_sst::FileId::random(),
            metadata.clone(),
            write_options.clone(),
        )
    };
    let mut writer: Option<SstWriter> = None;
    let mut rows_out = 0;
    while let Some(batch) = merged.next().await {
        let batch = batch.map_err(|e| MergeSnafu { region_id }.into_error(e))?;
        if batch.num_rows() == 0 {
            continue;
        }
        rows_out += batch.num_rows() as u64;
        let w = writer.get_or_insert_with(new_writer);
        w.write(&batch).await.context(SstSnafu { region_id })?;
        if w.estimated_size() >= job.max_output_file_size
            && let Some(full) = writer.take()
        {
            written.push(full.finish().await.context(SstSnafu { region_id })?);
        }
    }
    if let Some(last) = writer.take() {
        written.push(last.finish().await.context(SstSnafu { region_id })?);
    }
    Ok((rows_in, rows_out))
}
