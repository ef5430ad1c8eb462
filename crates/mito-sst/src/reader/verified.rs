//! Verified reads: column chunks fetched whole (adjacent ones coalesced) and checked against
//! their CRC32C before any byte is decoded; the footer served from the checked tail.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use opendal::Operator;
use parquet::arrow::async_reader::MetadataFetch;
use parquet::errors::ParquetError;

use crate::error::{CorruptedSnafu, Result};
use crate::file::FileId;
use crate::format::SstInfo;

use super::cache::ChunkCache;
use super::read_error;

/// Serves the footer and page index from the checked tail bytes.
pub(super) struct TailFetch {
    pub(super) offset: u64,
    pub(super) bytes: Bytes,
}

impl MetadataFetch for TailFetch {
    fn fetch(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        let slice = range
            .start
            .checked_sub(self.offset)
            .zip(range.end.checked_sub(self.offset))
            .and_then(|(s, e)| {
                let (s, e) = (usize::try_from(s).ok()?, usize::try_from(e).ok()?);
                (s <= e && e <= self.bytes.len()).then(|| self.bytes.slice(s..e))
            });
        let result = slice.ok_or_else(|| {
            ParquetError::General(format!(
                "footer refers to bytes {range:?} outside the checked tail starting at {}",
                self.offset
            ))
        });
        futures::future::ready(result).boxed()
    }
}

/// Reads column chunks whole and checks each against its CRC32C before handing out any of
/// its bytes.
pub(super) struct VerifiedReader {
    pub(super) op: Operator,
    pub(super) path: Arc<str>,
    /// Holds the recorded checksum of every column chunk.
    pub(super) info: Arc<SstInfo>,
    pub(super) chunks: HashMap<(usize, usize), Bytes>,
    pub(super) file_id: FileId,
    pub(super) cache: Option<Arc<dyn ChunkCache>>,
}

impl VerifiedReader {
    /// Reads and checks every chunk of `wanted` (row group, column, file byte range) that is
    /// not cached yet; chunks that lie next to each other in the file (gaps under
    /// [`COALESCE_GAP`]) come in one read.
    pub(super) async fn load(&mut self, wanted: &[(usize, usize, Range<u64>)]) -> Result<()> {
        let corrupted = |reason: String| {
            CorruptedSnafu {
                path: self.path.to_string(),
                reason,
            }
            .build()
        };
        let mut missing: Vec<(usize, usize, u64, u64)> = Vec::new();
        for (rg, col, range) in wanted {
            let (rg, col, start, end) = (*rg, *col, range.start, range.end);
            if !self.chunks.contains_key(&(rg, col))
                && !missing.iter().any(|m| (m.0, m.1) == (rg, col))
            {
                if let Some(chunk) = self.cache.as_ref().and_then(|c| c.get(self.file_id, start)) {
                    self.chunks.insert((rg, col), chunk);
                } else {
                    missing.push((rg, col, start, end));
                }
            }
        }
        missing.sort_by_key(|m| m.2);
        let mut i = 0;
        while i < missing.len() {
            let Some(first) = missing.get(i) else { break };
            let span_start = first.2;
            let mut span_end = first.3;
            let mut j = i + 1;
            while let Some(next) = missing.get(j) {
                if next.2 > span_end.saturating_add(COALESCE_GAP) {
                    break;
                }
                span_end = span_end.max(next.3);
                j += 1;
            }
            let bytes = self
                .op
                .read_with(&self.path)
                .range(span_start..span_end)
                .await
                .map_err(|e| read_error(&self.path, None, e))?
                .to_bytes();
            if bytes.len() as u64 != span_end - span_start {
                return Err(corrupted(format!(
                    "bytes {span_start}..{span_end} cut short: {} bytes",
                    bytes.len()
                )));
            }
            for (rg, col, start, end) in missing.get(i..j).unwrap_or_default() {
                let from = usize::try_from(start - span_start).unwrap_or(usize::MAX);
                let to = usize::try_from(end - span_start).unwrap_or(usize::MAX);
                let chunk = bytes
                    .get(from..to)
                    .map(|_| bytes.slice(from..to))
                    .ok_or_else(|| corrupted(format!("chunk {start}..{end} outside its read")))?;
                let expected = self
                    .info
                    .chunk_checksums
                    .get(*rg)
                    .and_then(|r| r.get(*col))
                    .copied();
                let crc = crc32c::crc32c(&chunk);
                if expected != Some(crc) {
                    return Err(corrupted(format!(
                        "checksum {crc:#010x} of column chunk {col} of row group {rg} (bytes {start}..{end}) differs from the recorded {expected:#010x?}"
                    )));
                }
                if let Some(cache) = &self.cache {
                    cache.insert(self.file_id, *start, chunk.clone());
                }
                self.chunks.insert((*rg, *col), chunk);
            }
            i = j;
        }
        Ok(())
    }
}

/// Chunks closer than this are read together.
pub(super) const COALESCE_GAP: u64 = 64 * 1024;
