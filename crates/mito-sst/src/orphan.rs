//! What an SST file says about itself without its manifest entry: used at region open to
//! decide whether a file the manifest does not name can be deleted.

use opendal::Operator;
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::statistics::Statistics;
use snafu::ResultExt;
use store_api::metadata::SEQUENCE_COLUMN;

use crate::error::{CorruptedSnafu, ObjectStoreSnafu, ParquetSnafu, Result};

/// Parquet's footer: metadata length (4 bytes) and magic (4 bytes).
const FOOTER_LEN: u64 = 8;

/// The highest row sequence in the SST at `path`, from its footer's `__sequence` statistics
/// (two ranged reads; no row is decoded). `None` for a file without rows.
pub async fn max_sequence(op: &Operator, path: &str) -> Result<Option<u64>> {
    let corrupted = |reason: String| {
        CorruptedSnafu {
            path: path.to_string(),
            reason,
        }
        .build()
    };
    let size = op
        .stat(path)
        .await
        .context(ObjectStoreSnafu { path })?
        .content_length();
    if size < FOOTER_LEN + 4 {
        return Err(corrupted(format!("{size} bytes is too short for Parquet")));
    }
    let footer = op
        .read_with(path)
        .range(size - FOOTER_LEN..size)
        .await
        .context(ObjectStoreSnafu { path })?
        .to_vec();
    let (len, magic) = footer.split_at(4);
    if magic != b"PAR1" {
        return Err(corrupted("no Parquet footer magic".to_string()));
    }
    let mut len_bytes = [0u8; 4];
    len_bytes.copy_from_slice(len);
    let meta_len = u64::from(u32::from_le_bytes(len_bytes));
    if meta_len + FOOTER_LEN + 4 > size {
        return Err(corrupted(format!(
            "footer claims {meta_len} bytes of metadata in a {size}-byte file"
        )));
    }
    let meta_start = size - FOOTER_LEN - meta_len;
    let meta = op
        .read_with(path)
        .range(meta_start..size - FOOTER_LEN)
        .await
        .context(ObjectStoreSnafu { path })?
        .to_vec();
    let parquet = ParquetMetaDataReader::decode_metadata(&meta).context(ParquetSnafu { path })?;
    let schema = parquet.file_metadata().schema_descr();
    let Some(column) = (0..schema.num_columns()).find(|i| {
        schema
            .column(*i)
            .path()
            .parts()
            .first()
            .is_some_and(|name| name == SEQUENCE_COLUMN)
    }) else {
        return Err(corrupted(format!("no {SEQUENCE_COLUMN} column")));
    };
    let mut max = None;
    for rg in parquet.row_groups() {
        if rg.num_rows() == 0 {
            continue;
        }
        let stat = rg
            .columns()
            .get(column)
            .and_then(|c| c.statistics())
            .and_then(|s| match s {
                Statistics::Int64(v) => v.max_opt().map(|m| *m as u64),
                _ => None,
            })
            .ok_or_else(|| {
                corrupted(format!("a row group without {SEQUENCE_COLUMN} statistics"))
            })?;
        max = Some(max.map_or(stat, |m: u64| m.max(stat)));
    }
    Ok(max)
}
