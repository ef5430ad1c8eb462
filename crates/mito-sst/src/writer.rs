//! Writes one SST file from batches sorted by (primary key, ts, sequence desc).

use arrow_array::RecordBatch;
use bytes::Bytes;
use mito_read::merge::SortedBatch;
use opendal::Operator;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use snafu::{ResultExt, ensure};
use store_api::SequenceNumber;
use store_api::metadata::{OP_TYPE_COLUMN, PRIMARY_KEY_COLUMN, RegionMetadataRef, SEQUENCE_COLUMN};

use crate::error::{
    ArrowSnafu, CorruptedSnafu, EmptySstSnafu, InvalidInputSnafu, ObjectStoreSnafu, ParquetSnafu,
    Result,
};
use crate::file::{FileId, FileMeta, sst_path};
use crate::format::{
    FloatEncoding, SST_FORMAT_VERSION, SST_INFO_KEY, SstInfo, choose_encodings, encode_batch,
    exception_column, file_schema,
};
use store_api::time::TimeSpan;

/// Rows buffered before the float encodings are chosen.
const SAMPLE_ROWS: usize = 8192;

/// How SST files are written.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Rows per row group.
    pub row_group_rows: usize,
    /// Rows per data page (the granularity of page pruning).
    pub page_rows: usize,
    /// ZSTD level.
    pub zstd_level: i32,
    /// Compaction level recorded in the [`FileMeta`].
    pub level: u8,
    /// Read the whole file back after the upload and compare its checksum (catches object
    /// stores that lose or change bytes while reporting success).
    pub verify_after_upload: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            row_group_rows: 100_000,
            page_rows: 8192,
            zstd_level: 3,
            level: 0,
            verify_after_upload: true,
        }
    }
}

struct Encoder {
    writer: ArrowWriter<Vec<u8>>,
    floats: Vec<FloatEncoding>,
    schema: arrow_schema::SchemaRef,
}

/// Order and range bookkeeping over the rows written.
#[derive(Default)]
struct Tracker {
    rows: u64,
    min_ts: i64,
    max_ts: i64,
    max_sequence: SequenceNumber,
    first_key: Option<Vec<u8>>,
    /// The last non-empty batch written (its last row continues the order).
    last: Option<SortedBatch>,
}

/// Writes one SST. Call [`SstWriter::finish`] to get its [`FileMeta`]; on an error the writer
/// aborts the upload and deletes what it wrote. A writer dropped without `finish` may leave a
/// partial object behind: it is not in the manifest, so open-time garbage collection removes
/// it.
pub struct SstWriter {
    op: Operator,
    path: String,
    file_id: FileId,
    metadata: RegionMetadataRef,
    options: WriteOptions,
    expected: arrow_schema::SchemaRef,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    encoder: Option<Encoder>,
    upload: Option<opendal::Writer>,
    uploaded: u64,
    checksum: u32,
    chunk_checksums: Vec<Vec<u32>>,
    tracker: Tracker,
    failed: bool,
}

impl std::fmt::Debug for SstWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SstWriter")
            .field("path", &self.path)
            .field("rows", &self.tracker.rows)
            .field("uploaded", &self.uploaded)
            .finish_non_exhaustive()
    }
}

impl SstWriter {
    /// A writer of file `file_id` of the region described by `metadata`, under `region_dir`.
    pub fn new(
        op: Operator,
        region_dir: &str,
        file_id: FileId,
        metadata: RegionMetadataRef,
        options: WriteOptions,
    ) -> Self {
        let all: Vec<usize> = (0..metadata.column_metadatas().len()).collect();
        let expected = mito_read::compat::read_schema(&metadata, &all);
        Self {
            op,
            path: sst_path(region_dir, file_id),
            file_id,
            metadata,
            options,
            expected,
            pending: Vec::new(),
            pending_rows: 0,
            encoder: None,
            upload: None,
            uploaded: 0,
            checksum: 0,
            chunk_checksums: Vec::new(),
            tracker: Tracker::default(),
            failed: false,
        }
    }

    /// Writes a whole new file of `batches` (sorted as [`SstWriter::write`] requires) under
    /// `region_dir` with a fresh id, and returns its metadata.
    pub async fn write_file(
        op: Operator,
        region_dir: &str,
        metadata: RegionMetadataRef,
        batches: impl IntoIterator<Item = &RecordBatch>,
        options: WriteOptions,
    ) -> Result<FileMeta> {
        let mut w = Self::new(op, region_dir, FileId::random(), metadata, options);
        for b in batches {
            w.write(b).await?;
        }
        w.finish().await
    }

    /// The path of the file being written.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Rows accepted so far.
    pub fn rows(&self) -> u64 {
        self.tracker.rows
    }

    /// Bytes uploaded so far plus the encoder's buffered estimate.
    pub fn estimated_size(&self) -> u64 {
        let buffered = self
            .encoder
            .as_ref()
            .map_or(0, |e| e.writer.in_progress_size() + e.writer.inner().len());
        self.uploaded + buffered as u64
    }

    /// Appends a batch in the region's read schema (all columns, then `__primary_key`,
    /// `__sequence`, `__op_type`), continuing the sort order of the previous batches.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let result = self.write_inner(batch).await;
        if result.is_err() {
            self.abort().await;
        }
        result
    }

    /// Writes the footer, uploads the rest and returns the file's metadata.
    pub async fn finish(mut self) -> Result<FileMeta> {
        let result = self.finish_inner().await;
        if result.is_err() {
            self.abort().await;
        }
        result
    }

    /// Abandons the file: aborts the upload and deletes the object if any of it was written.
    pub async fn abort(&mut self) {
        self.failed = true;
        self.encoder = None;
        if let Some(mut upload) = self.upload.take()
            && let Err(e) = upload.abort().await
        {
            tracing::warn!(path = %self.path, error = %e, "aborting an SST upload failed");
        }
        if let Err(e) = self.op.delete(&self.path).await {
            tracing::warn!(path = %self.path, error = %e, "deleting an abandoned SST failed");
        }
    }

    async fn write_inner(&mut self, batch: &RecordBatch) -> Result<()> {
        ensure!(
            !self.failed,
            InvalidInputSnafu {
                region_id: self.metadata.region_id(),
                file_id: self.file_id,
                reason: "the writer failed before; start a new file",
            }
        );
        self.check_batch(batch)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.encoder.is_none() {
            self.pending.push(batch.clone());
            self.pending_rows += batch.num_rows();
            if self.pending_rows < SAMPLE_ROWS {
                return Ok(());
            }
            self.start_encoder()?;
            for b in std::mem::take(&mut self.pending) {
                self.encode(&b).await?;
            }
            return Ok(());
        }
        self.encode(batch).await
    }

    fn invalid(&self, reason: String) -> crate::error::Error {
        InvalidInputSnafu {
            region_id: self.metadata.region_id(),
            file_id: self.file_id,
            reason,
        }
        .build()
    }

    /// Checks the schema and the sort order, and records ranges.
    fn check_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        let got = batch.schema();
        if got.fields() != self.expected.fields() {
            return Err(self.invalid(format!(
                "batch schema {got:?} is not the region's read schema {:?}",
                self.expected
            )));
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let ts_idx = self
            .metadata
            .column_index_by_id(self.metadata.time_index_column().column_id)
            .ok_or_else(|| self.invalid("the metadata has no time index column".to_string()))?;
        let sorted =
            SortedBatch::try_new(batch.clone(), ts_idx).map_err(|e| self.invalid(e.to_string()))?;
        // Each row against the one before it, the first against the previous batch's last.
        let previous = self.tracker.last.take();
        let mut prev: Option<(&SortedBatch, usize)> =
            previous.as_ref().map(|p| (p, p.num_rows() - 1));
        for row in 0..sorted.num_rows() {
            if let Some((p, r)) = prev
                && p.cmp_rows(r, &sorted, row) == std::cmp::Ordering::Greater
            {
                let (t, seq) = (
                    sorted.ts(row).unwrap_or_default(),
                    sorted.seq(row).unwrap_or_default(),
                );
                return Err(self.invalid(format!(
                    "row {} (timestamp {t}, sequence {seq}) breaks the (key, ts, sequence desc) order",
                    self.tracker.rows + row as u64
                )));
            }
            prev = Some((&sorted, row));
        }
        let tr = &mut self.tracker;
        for row in 0..sorted.num_rows() {
            let (Some(t), Some(seq)) = (sorted.ts(row), sorted.seq(row)) else {
                continue;
            };
            if tr.rows == 0 && row == 0 {
                tr.min_ts = t;
                tr.max_ts = t;
            }
            tr.min_ts = tr.min_ts.min(t);
            tr.max_ts = tr.max_ts.max(t);
            tr.max_sequence = tr.max_sequence.max(seq);
        }
        if tr.first_key.is_none() {
            tr.first_key = Some(sorted.key(0).to_vec());
        }
        tr.rows += sorted.num_rows() as u64;
        tr.last = Some(sorted);
        Ok(())
    }

    fn start_encoder(&mut self) -> Result<()> {
        let sample = arrow_select::concat::concat_batches(&self.expected, &self.pending)
            .context(ArrowSnafu { path: &self.path })?;
        let floats = choose_encodings(&self.metadata, &sample);
        let schema = file_schema(&self.metadata, &floats);
        let level = ZstdLevel::try_new(self.options.zstd_level)
            .context(ParquetSnafu { path: &self.path })?;
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(self.options.row_group_rows.max(1)))
            .set_data_page_row_count_limit(self.options.page_rows.max(1))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_statistics_truncate_length(None)
            .set_column_index_truncate_length(None)
            .set_created_by(format!("mito-sst format {SST_FORMAT_VERSION}"));
        let time_index = self.metadata.time_index_column().name.clone();
        let mut delta_columns = vec![time_index, SEQUENCE_COLUMN.to_string()];
        // Page statistics (the column index) only where page pruning reads them: user
        // columns stored as themselves. Internal columns and float-encoded fields (pruning
        // skips them) keep row-group statistics; every column keeps its offset index. With
        // small pages the column index of 34 TSBS columns was half the file's tail.
        let mut chunk_stats: Vec<String> = [PRIMARY_KEY_COLUMN, SEQUENCE_COLUMN, OP_TYPE_COLUMN]
            .iter()
            .map(|c| (*c).to_string())
            .collect();
        for enc in &floats {
            if let Some(c) = self.metadata.column_by_id(enc.column_id) {
                delta_columns.push(c.name.clone());
                chunk_stats.push(c.name.clone());
            }
            // Exceptions are rare: mostly nulls, stored as definition levels.
            let exc = exception_column(enc.column_id);
            props = props.set_column_dictionary_enabled(ColumnPath::from(exc.clone()), false);
            chunk_stats.push(exc);
        }
        for name in chunk_stats {
            props = props
                .set_column_statistics_enabled(ColumnPath::from(name), EnabledStatistics::Chunk);
        }
        for name in delta_columns {
            let path = ColumnPath::from(name);
            props = props
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
        }
        let writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props.build()))
            .context(ParquetSnafu { path: &self.path })?;
        self.encoder = Some(Encoder {
            writer,
            floats,
            schema,
        });
        Ok(())
    }

    async fn encode(&mut self, batch: &RecordBatch) -> Result<()> {
        let Some(enc) = self.encoder.as_mut() else {
            return Ok(());
        };
        let encoded = encode_batch(&self.metadata, &enc.floats, &enc.schema, batch)
            .context(ArrowSnafu { path: &self.path })?;
        enc.writer
            .write(&encoded)
            .context(ParquetSnafu { path: &self.path })?;
        if enc.writer.flushed_row_groups().len() > self.chunk_checksums.len() {
            self.ship_row_groups().await?;
        }
        Ok(())
    }

    /// Uploads the bytes of the row groups closed since the last call, recording the checksum
    /// of each column chunk.
    async fn ship_row_groups(&mut self) -> Result<()> {
        let Some(enc) = self.encoder.as_mut() else {
            return Ok(());
        };
        enc.writer
            .sync()
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
            .context(ParquetSnafu { path: &self.path })?;
        let bytes = std::mem::take(enc.writer.inner_mut());
        let start = self.uploaded;
        for rg in enc
            .writer
            .flushed_row_groups()
            .iter()
            .skip(self.chunk_checksums.len())
        {
            let mut crcs = Vec::with_capacity(rg.num_columns());
            for col in rg.columns() {
                let (offset, len) = col.byte_range();
                let chunk = offset
                    .checked_sub(start)
                    .and_then(|from| {
                        let from = usize::try_from(from).ok()?;
                        bytes.get(from..from.checked_add(usize::try_from(len).ok()?)?)
                    })
                    .ok_or_else(|| {
                        CorruptedSnafu {
                            path: &self.path,
                            reason: format!(
                                "column chunk at {offset}+{len} is outside the bytes just written ({start}+{})",
                                bytes.len()
                            ),
                        }
                        .build()
                    })?;
                crcs.push(crc32c::crc32c(chunk));
            }
            self.chunk_checksums.push(crcs);
        }
        self.upload(bytes).await
    }

    async fn upload(&mut self, bytes: Vec<u8>) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.checksum = crc32c::crc32c_append(self.checksum, &bytes);
        self.uploaded += bytes.len() as u64;
        if self.upload.is_none() {
            let w = self
                .op
                .writer_with(&self.path)
                .await
                .context(ObjectStoreSnafu { path: &self.path })?;
            self.upload = Some(w);
        }
        if let Some(w) = self.upload.as_mut() {
            w.write(Bytes::from(bytes))
                .await
                .context(ObjectStoreSnafu { path: &self.path })?;
        }
        Ok(())
    }

    async fn finish_inner(&mut self) -> Result<FileMeta> {
        ensure!(
            !self.failed,
            InvalidInputSnafu {
                region_id: self.metadata.region_id(),
                file_id: self.file_id,
                reason: "the writer failed before; start a new file",
            }
        );
        ensure!(
            self.tracker.rows > 0,
            EmptySstSnafu {
                region_id: self.metadata.region_id(),
                file_id: self.file_id,
            }
        );
        if self.encoder.is_none() {
            self.start_encoder()?;
            for b in std::mem::take(&mut self.pending) {
                self.encode(&b).await?;
            }
        }
        if let Some(enc) = self.encoder.as_mut() {
            enc.writer
                .flush()
                .context(ParquetSnafu { path: &self.path })?;
        }
        self.ship_row_groups().await?;
        let tail_offset = self.uploaded;
        let Some(mut enc) = self.encoder.take() else {
            return Err(self.invalid("no encoder".to_string()));
        };
        let info = SstInfo {
            version: SST_FORMAT_VERSION,
            region_metadata: self.metadata.as_ref().clone(),
            floats: enc.floats.clone(),
            chunk_checksums: self.chunk_checksums.clone(),
        };
        let info = info
            .to_json()
            .map_err(|e| self.invalid(format!("cannot encode the SST info: {e}")))?;
        enc.writer
            .append_key_value_metadata(KeyValue::new(SST_INFO_KEY.to_string(), info));
        let parquet_meta = enc
            .writer
            .finish()
            .context(ParquetSnafu { path: &self.path })?;
        enc.writer
            .sync()
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
            .context(ParquetSnafu { path: &self.path })?;
        let tail = std::mem::take(enc.writer.inner_mut());
        let tail_checksum = crc32c::crc32c(&tail);
        self.upload(tail).await?;
        if let Some(mut w) = self.upload.take() {
            w.close()
                .await
                .context(ObjectStoreSnafu { path: &self.path })?;
        }
        self.verify_upload().await?;
        // Durable by name before anyone can name it in a manifest edit.
        crate::store::sync_dirs(&self.op, &self.path).await?;
        let tr = &self.tracker;
        let num_row_groups = parquet_meta.num_row_groups() as u64;
        Ok(FileMeta {
            region_id: self.metadata.region_id(),
            file_id: self.file_id,
            time_range: TimeSpan {
                min: tr.min_ts,
                max: tr.max_ts,
            },
            min_key: tr.first_key.clone().unwrap_or_default(),
            max_key: tr
                .last
                .as_ref()
                .map(|b| b.key(b.num_rows() - 1).to_vec())
                .unwrap_or_default(),
            level: self.options.level,
            num_rows: tr.rows,
            num_row_groups,
            file_size: self.uploaded,
            max_sequence: tr.max_sequence,
            checksum: self.checksum,
            tail_offset,
            tail_checksum,
        })
    }

    /// Checks that the object has the size (and, if asked, the checksum) that was written.
    // `&mut`: a shared borrow of the writer (not `Sync`) held across an await would make
    // the future `!Send`.
    async fn verify_upload(&mut self) -> Result<()> {
        let stat = self
            .op
            .stat(&self.path)
            .await
            .context(ObjectStoreSnafu { path: &self.path })?;
        ensure!(
            stat.content_length() == self.uploaded,
            CorruptedSnafu {
                path: &self.path,
                reason: format!(
                    "uploaded {} bytes but the object store holds {}",
                    self.uploaded,
                    stat.content_length()
                ),
            }
        );
        if self.options.verify_after_upload {
            let data = self
                .op
                .read(&self.path)
                .await
                .context(ObjectStoreSnafu { path: &self.path })?;
            let mut crc = 0;
            for chunk in data {
                crc = crc32c::crc32c_append(crc, &chunk);
            }
            ensure!(
                crc == self.checksum,
                CorruptedSnafu {
                    path: &self.path,
                    reason: format!(
                        "checksum after upload {crc:#010x} differs from the bytes written {:#010x}",
                        self.checksum
                    ),
                }
            );
        }
        Ok(())
    }
}
