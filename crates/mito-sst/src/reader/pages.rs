//! Decoding column chunks that are already in memory (fetched and checked by
//! `VerifiedReader`) without building a codec per chunk.
//!
//! Parquet's page reader creates a ZSTD compression and a decompression context for every
//! column chunk it opens, and a read of a few series opens one per row group and column: on
//! the random-draw TSBS queries the two context creations took more CPU than the
//! decompression itself (docs/decisions.md). Here a chunk's pages are read as if they were
//! uncompressed and each data or dictionary page is decompressed with one ZSTD context kept
//! per thread. Chunks of other codecs go through parquet's own page reader.

use std::cell::RefCell;

use super::page_header::{self, Uleb};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use bytes::{Buf, Bytes};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, RowGroups, RowSelection};
use parquet::arrow::{ArrowWriter, ProjectionMask, parquet_to_arrow_field_levels};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::page::{Page, PageIterator, PageMetadata, PageReader};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{
    PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader, RowGroupMetaData,
};
use parquet::file::page_index::offset_index::PageLocation;
use parquet::file::properties::{
    EnabledStatistics, ReaderProperties, WriterProperties, WriterVersion,
};
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::serialized_reader::SerializedPageReader;

/// One row group of a file whose projected column chunks are in memory.
pub(super) struct ChunkRowGroup {
    pub(super) parquet: Arc<ParquetMetaData>,
    pub(super) rg: usize,
    /// The checked bytes of each projected leaf column's chunk, by leaf index.
    pub(super) chunks: Vec<(usize, Bytes)>,
}

impl ChunkRowGroup {
    fn meta(&self) -> Result<&RowGroupMetaData> {
        self.parquet
            .row_groups()
            .get(self.rg)
            .ok_or_else(|| ParquetError::General(format!("no row group {}", self.rg)))
    }

    fn page_reader(&self, leaf: usize) -> Result<Box<dyn PageReader>> {
        let rg = self.meta()?;
        let column = rg
            .columns()
            .get(leaf)
            .ok_or_else(|| ParquetError::General(format!("no column {leaf} in row group")))?;
        let bytes = self
            .chunks
            .iter()
            .find(|(l, _)| *l == leaf)
            .map(|(_, b)| b.clone())
            .ok_or_else(|| ParquetError::General(format!("column chunk {leaf} was not loaded")))?;
        let (start, _) = column.byte_range();
        let chunk = Arc::new(Chunk { start, bytes });
        let rows = usize::try_from(rg.num_rows())?;
        let locations = self
            .parquet
            .offset_index()
            .and_then(|index| index.get(self.rg))
            .and_then(|columns| columns.get(leaf))
            .map(|c| c.page_locations().clone());
        check_headers(&chunk, locations.as_deref())?;
        let props = Arc::new(ReaderProperties::builder().build());
        let descr = column.column_descr();
        let levels = (descr.max_rep_level(), descr.max_def_level());
        if !matches!(column.compression(), Compression::ZSTD(_)) {
            let inner =
                SerializedPageReader::new_with_properties(chunk, column, rows, locations, props)?;
            let map = move |page: Page| check_page(&page, levels).map(|()| page);
            return Ok(Box::new(MapPages { inner, map }));
        }
        // The page reader sees the chunk as uncompressed (so it creates no codec) and hands
        // out the pages' compressed bytes, which `decompress` decompresses.
        let plain = column
            .clone()
            .into_builder()
            .set_compression(Compression::UNCOMPRESSED)
            .build()?;
        let limit = usize::try_from(column.uncompressed_size())?;
        let inner =
            SerializedPageReader::new_with_properties(chunk, &plain, rows, locations, props)?;
        let map = move |page: Page| {
            let page = decompress(page, limit)?;
            check_page(&page, levels).map(|()| page)
        };
        Ok(Box::new(MapPages { inner, map }))
    }
}

/// Checks a page for what parquet's decoders index or slice without checking (59.3.2 panics
/// on these, found by the `sst_pages` fuzz target): level sections longer than the page, a
/// run of levels or dictionary indices with a header over 5 bytes or longer than its
/// section, a dictionary-index section that is empty or states a bit width over 32, a
/// delta-binary-packed integer over 10 bytes or block of no values, plain values (or a dictionary) with bytes but
/// no values, and an encoding no SST is written in. `levels`: the column's maximum
/// repetition and definition levels.
fn check_page(page: &Page, levels: (i16, i16)) -> Result<()> {
    let (max_rep, max_def) = levels;
    let (buf, encoding, values_at) = match page {
        Page::DataPage {
            buf,
            num_values,
            encoding,
            def_level_encoding,
            rep_level_encoding,
            ..
        } => {
            // Version 1: the repetition then the definition levels lead the page, each
            // present only when its maximum level is above 0.
            let mut at = 0usize;
            for (max, level_encoding) in
                [(max_rep, rep_level_encoding), (max_def, def_level_encoding)]
            {
                if max > 0 {
                    let rest = buf.get(at..).unwrap_or_default();
                    let len = v1_levels_len(max, *num_values, *level_encoding, rest)?;
                    if *level_encoding == Encoding::RLE {
                        let runs = rest.get(4..len).unwrap_or_default();
                        check_runs(runs, level_width(max), usize::try_from(*num_values)?)?;
                    }
                    at = at
                        .checked_add(len)
                        .ok_or_else(|| bad_page("level sections overflow"))?;
                }
            }
            (buf, encoding, at)
        }
        Page::DataPageV2 {
            buf,
            num_values,
            encoding,
            def_levels_byte_len,
            rep_levels_byte_len,
            ..
        } => {
            let rep = usize::try_from(*rep_levels_byte_len)?;
            let at = rep
                .checked_add(usize::try_from(*def_levels_byte_len)?)
                .ok_or_else(|| bad_page("level sections overflow"))?;
            let values = usize::try_from(*num_values)?;
            for (max, section) in [(max_rep, buf.get(..rep)), (max_def, buf.get(rep..at))] {
                match section {
                    _ if max == 0 => {}
                    Some(runs) => check_runs(runs, level_width(max), values)?,
                    None => return Err(bad_page("level sections longer than the page")),
                }
            }
            (buf, encoding, at)
        }
        Page::DictionaryPage {
            buf, num_values, ..
        } => {
            // Parquet's byte-array decoder divides the bytes by the value count.
            if *num_values == 0 && !buf.is_empty() {
                return Err(bad_page("dictionary of no values with bytes"));
            }
            return Ok(());
        }
    };
    // Only the encodings an SST's writer uses (parquet's dictionary, plain and RLE
    // booleans, and delta for the integer columns it sets): parquet's other decoders are
    // never needed, and byte-stream-split's indexes past a malformed page.
    if !matches!(
        encoding,
        Encoding::PLAIN
            | Encoding::PLAIN_DICTIONARY
            | Encoding::RLE_DICTIONARY
            | Encoding::RLE
            | Encoding::DELTA_BINARY_PACKED
    ) {
        return Err(bad_page(&format!(
            "values in {encoding}, an encoding SSTs are not written in"
        )));
    }
    let values = buf
        .get(values_at..)
        .ok_or_else(|| bad_page("level sections longer than the page"))?;
    let count = match page {
        Page::DataPageV2 {
            num_values,
            num_nulls,
            ..
        } => num_values.saturating_sub(*num_nulls),
        _ => page.num_values(),
    };
    if count == 0 && *encoding == Encoding::PLAIN && !values.is_empty() {
        return Err(bad_page("plain values section with bytes for no values"));
    }
    if *encoding == Encoding::DELTA_BINARY_PACKED {
        check_delta(values)?;
    }
    if matches!(
        encoding,
        Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY
    ) {
        match values.split_first() {
            None => return Err(bad_page("dictionary-index section is empty")),
            Some((width, _)) if *width > 32 => {
                return Err(bad_page(&format!(
                    "dictionary indices state a bit width of {width}, over 32"
                )));
            }
            // As far as every level's value: a version 2 page's null count is only
            // what its header states, the decoder reads as many as the levels say.
            Some((width, runs)) => check_runs(
                runs,
                usize::from(*width),
                usize::try_from(page.num_values())?,
            )?,
        }
    }
    Ok(())
}

/// The length of a version 1 page's level section at the start of `rest`.
fn v1_levels_len(max: i16, num_values: u32, encoding: Encoding, rest: &[u8]) -> Result<usize> {
    let len = match encoding {
        // A 4-byte little-endian length, then the runs.
        Encoding::RLE => rest
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .and_then(|b| usize::try_from(u32::from_le_bytes(b)).ok())
            .and_then(|n| n.checked_add(4))
            .ok_or_else(|| bad_page("level section length cut off"))?,
        #[allow(deprecated, reason = "BIT_PACKED levels: deprecated, still readable")]
        Encoding::BIT_PACKED => {
            let bits = level_width(max) as u64;
            usize::try_from(u64::from(num_values).saturating_mul(bits).div_ceil(8))?
        }
        other => return Err(bad_page(&format!("level encoding {other}"))),
    };
    if len > rest.len() {
        return Err(bad_page("level section longer than the page"));
    }
    Ok(len)
}

/// The most values a delta-binary-packed block may hold (parquet's writer uses 128).
const MAX_DELTA_BLOCK: u64 = 1 << 16;

/// Checks the ULEB128 integers of a delta-binary-packed section (its header and each
/// block's minimum delta) for the 10-byte length parquet's reader asserts, and its block
/// size for one parquet makes progress with. The walk follows
/// the blocks as the decoder does and stops, leaving the error to parquet, where the
/// section does not parse.
fn check_delta(section: &[u8]) -> Result<()> {
    fn uleb(section: &[u8], at: &mut usize) -> Result<Option<u64>> {
        match page_header::uleb(section, at, 10) {
            Uleb::Value(v) => Ok(Some(v)),
            Uleb::CutOff => Ok(None),
            Uleb::TooLong => Err(bad_page("delta-packed integer over 10 bytes")),
        }
    }
    let mut at = 0usize;
    let (Some(block), Some(minis), Some(total), Some(_first)) = (
        uleb(section, &mut at)?,
        uleb(section, &mut at)?,
        uleb(section, &mut at)?,
        uleb(section, &mut at)?,
    ) else {
        return Ok(());
    };
    // Parquet accepts a block of 0 values (0 per miniblock) and then reads block after
    // block without progress, each with its own minimum delta; and it sums a block's
    // miniblock sizes unchecked. SSTs write blocks of 128 values.
    if block == 0 || block > MAX_DELTA_BLOCK {
        return Err(bad_page(&format!(
            "delta-packed blocks of {block} values (1 to {MAX_DELTA_BLOCK})"
        )));
    }
    let Some(per_mini) = block.checked_div(minis).filter(|n| *n > 0 && n % 8 == 0) else {
        return Ok(());
    };
    let mut left = total.saturating_sub(1);
    while left > 0 {
        if uleb(section, &mut at)?.is_none() {
            return Ok(());
        }
        let widths_at = at;
        let Some(body) = usize::try_from(minis).ok().and_then(|m| at.checked_add(m)) else {
            return Ok(());
        };
        at = body;
        for w in 0..minis {
            if left == 0 {
                break;
            }
            let width = usize::try_from(w)
                .ok()
                .and_then(|w| widths_at.checked_add(w))
                .and_then(|i| section.get(i))
                .copied();
            let Some(width) = width else {
                return Ok(());
            };
            let bytes = per_mini.saturating_mul(u64::from(width)) / 8;
            at = match usize::try_from(bytes).ok().and_then(|b| at.checked_add(b)) {
                Some(next) if next <= section.len() => next,
                _ => return Ok(()),
            };
            left = left.saturating_sub(per_mini);
        }
    }
    Ok(())
}

/// The bit width of levels up to `max`.
fn level_width(max: i16) -> usize {
    (u16::BITS - max.unsigned_abs().leading_zeros()) as usize
}

/// Checks the RLE/bit-packed hybrid runs of `width`-bit values in `section` (levels, or
/// dictionary indices) as far as its first `values` values: each run's header is at most 5
/// bytes and its bytes for the values it supplies lie inside the section.
fn check_runs(section: &[u8], width: usize, mut values: usize) -> Result<()> {
    let mut at = 0usize;
    while values > 0 && at < section.len() {
        // The run's header: a ULEB128 of at most 5 bytes (parquet reads a u32).
        let header = match page_header::uleb(section, &mut at, 5) {
            Uleb::Value(v) => v,
            Uleb::CutOff => return Err(bad_page("run header cut off")),
            Uleb::TooLong => return Err(bad_page("run header over 5 bytes")),
        };
        let count = usize::try_from(header >> 1)?;
        if count == 0 {
            // Parquet's decoders disagree on what follows an empty run (the level decoder
            // takes a value byte, the RLE decoder does not), and SSTs never hold one.
            return Err(bad_page("an empty run"));
        }
        let (supplied, bytes) = if header & 1 == 1 {
            // Bit-packed: `count` groups of 8 levels, `width` bytes per group.
            let levels = count.saturating_mul(8);
            let supplied = levels.min(values);
            let needed = supplied.saturating_mul(width).div_ceil(8);
            if at.saturating_add(needed) > section.len() {
                return Err(bad_page("bit-packed run longer than its section"));
            }
            (supplied, count.saturating_mul(width))
        } else {
            // Repeated: one value in whole bytes.
            let bytes = width.div_ceil(8);
            if at.saturating_add(bytes) > section.len() {
                return Err(bad_page("repeated run cut off"));
            }
            (count.min(values), bytes)
        };
        values -= supplied;
        at = at.saturating_add(bytes);
    }
    Ok(())
}

fn bad_page(what: &str) -> ParquetError {
    ParquetError::General(format!("malformed data page: {what}"))
}

impl RowGroups for ChunkRowGroup {
    fn num_rows(&self) -> usize {
        self.meta()
            .ok()
            .and_then(|rg| usize::try_from(rg.num_rows()).ok())
            .unwrap_or(0)
    }

    fn column_chunks(&self, i: usize) -> Result<Box<dyn PageIterator>> {
        Ok(Box::new(OneChunk(Some(self.page_reader(i)))))
    }

    fn row_groups(&self) -> Box<dyn Iterator<Item = &RowGroupMetaData> + '_> {
        Box::new(self.parquet.row_groups().get(self.rg).into_iter())
    }

    fn metadata(&self) -> &ParquetMetaData {
        &self.parquet
    }
}

/// Walks every page header of `chunk` (`page_header::check`) before parquet parses them: at
/// the pages of the offset index `locations` (and the dictionary page before the first), or
/// from the chunk's start page after page without one.
fn check_headers(chunk: &Chunk, locations: Option<&[PageLocation]>) -> Result<()> {
    let bad = |at: u64, why: String| bad_page(&format!("page header at {at}: {why}"));
    let end = chunk.len();
    match locations {
        Some(locations) => {
            let mut pages = Vec::with_capacity(locations.len() + 1);
            let mut from = chunk.start;
            for loc in locations {
                let offset = u64::try_from(loc.offset).map_err(|e| bad(0, e.to_string()))?;
                let size = u64::try_from(loc.compressed_page_size)
                    .map_err(|e| bad(offset, e.to_string()))?;
                if offset < from || offset.saturating_add(size) > end {
                    return Err(bad(offset, "outside its column chunk".to_string()));
                }
                if pages.is_empty() && offset > chunk.start {
                    pages.push((chunk.start, offset - chunk.start));
                }
                pages.push((offset, size));
                from = offset.saturating_add(size);
            }
            for (offset, size) in pages {
                let bytes = chunk.slice(offset, Some(usize::try_from(size)?))?;
                page_header::check(&bytes).map_err(|why| bad(offset, why))?;
            }
        }
        None => {
            let mut at = chunk.start;
            while at < end {
                let bytes = chunk.slice(at, None)?;
                let header = page_header::check(&bytes).map_err(|why| bad(at, why))?;
                let size = header
                    .compressed
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| bad(at, "no compressed page size".to_string()))?;
                at = at.saturating_add(header.len as u64).saturating_add(size);
            }
        }
    }
    Ok(())
}

/// The page readers of one column over one row group: a single one.
struct OneChunk(Option<Result<Box<dyn PageReader>>>);

impl Iterator for OneChunk {
    type Item = Result<Box<dyn PageReader>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.take()
    }
}

impl PageIterator for OneChunk {}

/// A column chunk's bytes, addressed by file offset.
struct Chunk {
    start: u64,
    bytes: Bytes,
}

impl Chunk {
    fn slice(&self, start: u64, len: Option<usize>) -> Result<Bytes> {
        let from = start
            .checked_sub(self.start)
            .and_then(|o| usize::try_from(o).ok())
            .filter(|o| *o <= self.bytes.len());
        let to = from.and_then(|f| match len {
            Some(n) => f.checked_add(n).filter(|t| *t <= self.bytes.len()),
            None => Some(self.bytes.len()),
        });
        match (from, to) {
            (Some(f), Some(t)) => Ok(self.bytes.slice(f..t)),
            _ => Err(ParquetError::EOF(format!(
                "read of {len:?} bytes at {start} outside the column chunk at {} of {} bytes",
                self.start,
                self.bytes.len()
            ))),
        }
    }
}

impl Length for Chunk {
    fn len(&self) -> u64 {
        self.start.saturating_add(self.bytes.len() as u64)
    }
}

impl ChunkReader for Chunk {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> Result<Self::T> {
        Ok(self.slice(start, None)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes> {
        self.slice(start, Some(length))
    }
}

/// A page of a ZSTD chunk read as uncompressed, decompressed; no page decompresses to more
/// than `limit`, the chunk's recorded uncompressed size.
fn decompress(page: Page, limit: usize) -> Result<Page> {
    Ok(match page {
        Page::DataPage {
            buf,
            num_values,
            encoding,
            def_level_encoding,
            rep_level_encoding,
            statistics,
        } => Page::DataPage {
            buf: unzstd(&[], &buf, limit)?,
            num_values,
            encoding,
            def_level_encoding,
            rep_level_encoding,
            statistics,
        },
        Page::DictionaryPage {
            buf,
            num_values,
            encoding,
            is_sorted,
        } => Page::DictionaryPage {
            buf: unzstd(&[], &buf, limit)?,
            num_values,
            encoding,
            is_sorted,
        },
        Page::DataPageV2 {
            buf,
            num_values,
            encoding,
            num_nulls,
            num_rows,
            def_levels_byte_len,
            rep_levels_byte_len,
            is_compressed: true,
            statistics,
        } => {
            // The levels lead the page uncompressed; only the values are compressed.
            let levels = usize::try_from(def_levels_byte_len)?
                .checked_add(usize::try_from(rep_levels_byte_len)?)
                .filter(|n| *n <= buf.len())
                .ok_or_else(|| {
                    ParquetError::General("page levels longer than the page".to_string())
                })?;
            let (head, values) = buf.split_at(levels);
            let buf = if values.is_empty() {
                buf.clone()
            } else {
                unzstd(head, values, limit)?
            };
            Page::DataPageV2 {
                buf,
                num_values,
                encoding,
                num_nulls,
                num_rows,
                def_levels_byte_len,
                rep_levels_byte_len,
                is_compressed: false,
                statistics,
            }
        }
        other => other,
    })
}

/// A page reader whose every page goes through `map` (the checks, and for a ZSTD chunk the
/// decompression first).
struct MapPages<P, F> {
    inner: P,
    map: F,
}

impl<P: PageReader, F: FnMut(Page) -> Result<Page> + Send> Iterator for MapPages<P, F> {
    type Item = Result<Page>;

    fn next(&mut self) -> Option<Self::Item> {
        self.get_next_page().transpose()
    }
}

impl<P: PageReader, F: FnMut(Page) -> Result<Page> + Send> PageReader for MapPages<P, F> {
    fn get_next_page(&mut self) -> Result<Option<Page>> {
        self.inner.get_next_page()?.map(&mut self.map).transpose()
    }

    fn peek_next_page(&mut self) -> Result<Option<PageMetadata>> {
        self.inner.peek_next_page()
    }

    fn skip_next_page(&mut self) -> Result<()> {
        self.inner.skip_next_page()
    }

    fn at_record_boundary(&mut self) -> Result<bool> {
        self.inner.at_record_boundary()
    }
}

thread_local! {
    /// The thread's ZSTD decompression context, made on its first page.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// `head` followed by the decompression of the ZSTD frame `frame`, whose header must state
/// its size (the writer's frames do), at most `limit` bytes.
fn unzstd(head: &[u8], frame: &[u8], limit: usize) -> Result<Bytes> {
    let size = zstd::zstd_safe::get_frame_content_size(frame)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            ParquetError::General("ZSTD page does not state its decompressed size".to_string())
        })?;
    if size > limit {
        return Err(ParquetError::General(format!(
            "ZSTD page states {size} bytes, more than its column chunk's {limit}"
        )));
    }
    let mut out = Vec::with_capacity(head.len().saturating_add(size));
    out.extend_from_slice(head);
    let written = DECOMPRESSOR.with(|cell| -> Result<usize> {
        let mut slot = cell.borrow_mut();
        let decompressor = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        let mut cursor = std::io::Cursor::new(&mut out);
        cursor.set_position(head.len() as u64);
        Ok(decompressor.decompress_to_buffer(frame, &mut cursor)?)
    })?;
    if written != size {
        return Err(ParquetError::General(format!(
            "ZSTD page decompressed to {written} bytes, not the {size} it states"
        )));
    }
    Ok(Bytes::from(out))
}

/// A file of 3 row groups of 1000 rows in pages of 100 rows: nullable integers, repeated
/// strings (dictionary pages) and floats (the page tests' file and the fuzz target's).
fn fixture(version: WriterVersion, compression: Compression) -> Bytes {
    let rows = 3000i64;
    let ints: Int64Array = (0..rows).map(|i| (i % 7 != 0).then_some(i * 3)).collect();
    let strs: StringArray = (0..rows)
        .map(|i| Some(format!("host_{}", i / 250)))
        .collect();
    let floats: Float64Array = (0..rows).map(|i| Some(i as f64 / 8.0)).collect();
    let props = WriterProperties::builder()
        .set_writer_version(version)
        .set_compression(compression)
        .set_max_row_group_row_count(Some(1000))
        .set_data_page_row_count_limit(100)
        .set_write_batch_size(100)
        .set_statistics_enabled(EnabledStatistics::Page)
        .build();
    let written = RecordBatch::try_from_iter([
        ("i", Arc::new(ints) as ArrayRef),
        ("s", Arc::new(strs) as ArrayRef),
        ("f", Arc::new(floats) as ArrayRef),
    ])
    .map_err(ParquetError::from)
    .and_then(|batch| {
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props))?;
        writer.write(&batch)?;
        writer.close()?;
        Ok(out)
    });
    // Fixed data written to memory: a failure is a bug of this function, and its tests
    // (and the fuzz target's first run) show it at once.
    Bytes::from(written.unwrap_or_default())
}

/// The fuzz target's body (`fuzz/fuzz_targets/sst_pages.rs`; a test replays its corpus):
/// arbitrary bytes as one column chunk of row group 1 of `fixture`'s file, decoded through
/// `ChunkRowGroup` with its real metadata and page index. The first byte picks the page
/// version (bit 0), the column (bits 1-2) and a row selection (bits 3-4); the rest is the
/// chunk. Decoding may fail; it must not panic. (In a read the chunk's CRC32C matched
/// before it gets here; this covers a checksum collision or a writer bug.)
pub fn fuzz_pages(data: &[u8]) -> std::result::Result<(), String> {
    static FILES: std::sync::OnceLock<Vec<(Arc<ParquetMetaData>, Bytes)>> =
        std::sync::OnceLock::new();
    let files = FILES.get_or_init(|| {
        let zstd =
            ZstdLevel::try_new(3).map_or(Compression::ZSTD(Default::default()), Compression::ZSTD);
        [WriterVersion::PARQUET_1_0, WriterVersion::PARQUET_2_0]
            .into_iter()
            .filter_map(|v| {
                let bytes = fixture(v, zstd);
                let meta = ParquetMetaDataReader::new()
                    .with_page_index_policy(PageIndexPolicy::Required)
                    .parse_and_finish(&bytes)
                    .ok()?;
                Some((Arc::new(meta), bytes))
            })
            .collect()
    });
    let Some((pick, chunk)) = data.split_first() else {
        return Ok(());
    };
    let Some((meta, _)) = files.get(usize::from(pick & 1)) else {
        return Err("the fixture files did not build".to_string());
    };
    let leaf = usize::from((pick >> 1) & 3) % 3;
    let selection = match (pick >> 3) & 3 {
        0 => None,
        1 => Some(RowSelection::from_consecutive_ranges(
            std::iter::once(5..17),
            1000,
        )),
        _ => Some(RowSelection::from_consecutive_ranges(
            [90..130, 400..401, 990..1000].into_iter(),
            1000,
        )),
    };
    let descr = meta.file_metadata().schema_descr_ptr();
    let mask = ProjectionMask::leaves(&descr, [leaf]);
    let levels = parquet_to_arrow_field_levels(&descr, mask, None).map_err(|e| e.to_string())?;
    let group = ChunkRowGroup {
        parquet: meta.clone(),
        rg: 1,
        chunks: vec![(leaf, Bytes::copy_from_slice(chunk))],
    };
    let Ok(reader) =
        ParquetRecordBatchReader::try_new_with_row_groups(&levels, &group, 64, selection)
    else {
        return Ok(());
    };
    for batch in reader {
        if batch.is_err() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::RecordBatch;
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::{
        ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder, RowSelection,
    };
    use parquet::arrow::{ProjectionMask, parquet_to_arrow_field_levels};
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
    use parquet::file::properties::WriterVersion;

    use parquet::basic::Encoding;
    use parquet::column::page::{Page, PageMetadata, PageReader};

    use super::{ChunkRowGroup, MapPages, check_page, fixture as file};

    fn metadata(bytes: &Bytes) -> Arc<ParquetMetaData> {
        let meta = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(bytes)
            .unwrap();
        Arc::new(meta)
    }

    fn ours(
        bytes: &Bytes,
        meta: &Arc<ParquetMetaData>,
        rg: usize,
        selection: Option<RowSelection>,
    ) -> parquet::errors::Result<Vec<RecordBatch>> {
        let descr = meta.file_metadata().schema_descr_ptr();
        let levels = parquet_to_arrow_field_levels(&descr, ProjectionMask::all(), None)?;
        let chunks = meta
            .row_group(rg)
            .columns()
            .iter()
            .enumerate()
            .map(|(leaf, c)| {
                let (start, len) = c.byte_range();
                (leaf, bytes.slice(start as usize..(start + len) as usize))
            })
            .collect();
        let group = ChunkRowGroup {
            parquet: meta.clone(),
            rg,
            chunks,
        };
        let reader =
            ParquetRecordBatchReader::try_new_with_row_groups(&levels, &group, 64, selection)?;
        Ok(reader.collect::<Result<Vec<_>, _>>()?)
    }

    fn parquets(bytes: &Bytes, rg: usize, selection: Option<RowSelection>) -> Vec<RecordBatch> {
        let mut builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
            .unwrap()
            .with_row_groups(vec![rg])
            .with_batch_size(64);
        if let Some(s) = selection {
            builder = builder.with_row_selection(s);
        }
        builder
            .build()
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    fn concat(batches: &[RecordBatch]) -> RecordBatch {
        arrow_select::concat::concat_batches(&batches[0].schema(), batches).unwrap()
    }

    #[test]
    fn pages_decode_as_parquets_own_reader_decodes_them() {
        let zstd = Compression::ZSTD(ZstdLevel::try_new(3).unwrap());
        for (version, compression) in [
            (WriterVersion::PARQUET_1_0, zstd),
            (WriterVersion::PARQUET_2_0, zstd),
            (WriterVersion::PARQUET_1_0, Compression::UNCOMPRESSED),
        ] {
            let bytes = file(version, compression);
            let meta = metadata(&bytes);
            assert_eq!(meta.num_row_groups(), 3);
            let selections = [
                None,
                // Inside one page, across a page boundary, and pages skipped whole.
                Some(RowSelection::from_consecutive_ranges(
                    std::iter::once(5..17),
                    1000,
                )),
                Some(RowSelection::from_consecutive_ranges(
                    [90..130, 400..401, 990..1000].into_iter(),
                    1000,
                )),
            ];
            for rg in 0..3 {
                for sel in &selections {
                    let got = concat(&ours(&bytes, &meta, rg, sel.clone()).unwrap());
                    let want = concat(&parquets(&bytes, rg, sel.clone()));
                    assert_eq!(got, want, "{version:?} {compression:?} rg {rg} {sel:?}");
                }
            }
        }
    }

    #[test]
    fn a_damaged_page_is_an_error_not_a_panic() {
        let zstd = Compression::ZSTD(ZstdLevel::try_new(3).unwrap());
        let bytes = file(WriterVersion::PARQUET_1_0, zstd);
        let meta = metadata(&bytes);
        let (start, len) = meta.row_group(1).column(2).byte_range();
        let mut failed = 0;
        // Every byte of one chunk flipped in turn (pages, headers and frames): decoding
        // either fails with an error or, where the flip hits bytes the reader does not
        // check, returns rows; it never panics.
        for at in (start..start + len).step_by(7) {
            let mut damaged = bytes.to_vec();
            damaged[at as usize] ^= 0x5a;
            let damaged = Bytes::from(damaged);
            if ours(&damaged, &meta, 1, None).is_err() {
                failed += 1;
            }
        }
        assert!(failed > 0);
    }

    #[test]
    fn malformed_data_pages_are_errors_before_parquet_decodes_them() {
        struct Pages(Vec<Page>);
        impl Iterator for Pages {
            type Item = parquet::errors::Result<Page>;
            fn next(&mut self) -> Option<Self::Item> {
                (!self.0.is_empty()).then(|| Ok(self.0.remove(0)))
            }
        }
        impl PageReader for Pages {
            fn get_next_page(&mut self) -> parquet::errors::Result<Option<Page>> {
                self.next().transpose()
            }
            fn peek_next_page(&mut self) -> parquet::errors::Result<Option<PageMetadata>> {
                Ok(None)
            }
            fn skip_next_page(&mut self) -> parquet::errors::Result<()> {
                Ok(())
            }
        }
        let v1 = |buf: &[u8], encoding, levels| Page::DataPage {
            buf: Bytes::copy_from_slice(buf),
            num_values: 4,
            encoding,
            def_level_encoding: levels,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let v2 = |buf: &[u8], def: u32| Page::DataPageV2 {
            buf: Bytes::copy_from_slice(buf),
            num_values: 4,
            encoding: Encoding::RLE_DICTIONARY,
            num_nulls: 0,
            num_rows: 4,
            def_levels_byte_len: def,
            rep_levels_byte_len: 0,
            is_compressed: false,
            statistics: None,
        };
        let check = |page: Page| {
            let mut reader = MapPages {
                inner: Pages(vec![page]),
                map: |p: Page| check_page(&p, (0, 1)).map(|()| p),
            };
            reader.get_next_page().map(|p| p.is_some())
        };
        // Definition levels: a 2-byte RLE section (one run of 4 ones), then the indices.
        let levels = [2u8, 0, 0, 0, 8, 1];
        let with = |values: &[u8]| [&levels[..], values].concat();
        assert!(
            check(v1(
                &with(&[2, 3, 0]),
                Encoding::RLE_DICTIONARY,
                Encoding::RLE
            ))
            .unwrap()
        );
        assert!(check(v1(&with(&[3]), Encoding::PLAIN, Encoding::RLE)).unwrap());
        for bad in [
            v1(&with(&[40, 3, 0]), Encoding::RLE_DICTIONARY, Encoding::RLE),
            v1(
                &with(&[2, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 3]),
                Encoding::RLE_DICTIONARY,
                Encoding::RLE,
            ),
            v1(&with(&[]), Encoding::PLAIN_DICTIONARY, Encoding::RLE),
            v1(&[9, 0, 0, 0, 8, 1], Encoding::PLAIN, Encoding::RLE),
            v1(&[2, 0], Encoding::PLAIN, Encoding::RLE),
            #[allow(deprecated, reason = "a BIT_PACKED level section")]
            v1(&[], Encoding::PLAIN, Encoding::BIT_PACKED),
            v1(&with(&[3]), Encoding::PLAIN, Encoding::DELTA_BINARY_PACKED),
            v1(&with(&[3; 8]), Encoding::BYTE_STREAM_SPLIT, Encoding::RLE),
            v1(
                &with(&[0x80; 12]),
                Encoding::DELTA_BINARY_PACKED,
                Encoding::RLE,
            ),
            // Blocks of 0 values: parquet reads minimum deltas without end.
            v1(
                &with(&[0, 21, 4, 0, 0xef, 0xef, 0xef]),
                Encoding::DELTA_BINARY_PACKED,
                Encoding::RLE,
            ),
            v2(&[8, 1, 33, 0], 2),
            v2(&[8, 1], 2),
            v2(&[8, 1, 3], 9),
            Page::DictionaryPage {
                buf: Bytes::from_static(&[1, 0, 0, 0, 7]),
                num_values: 0,
                encoding: Encoding::PLAIN,
                is_sorted: false,
            },
            Page::DataPageV2 {
                buf: Bytes::from_static(&[8, 0, 3]),
                num_values: 4,
                encoding: Encoding::PLAIN,
                num_nulls: 4,
                num_rows: 4,
                def_levels_byte_len: 2,
                rep_levels_byte_len: 0,
                is_compressed: false,
                statistics: None,
            },
            // A bit-packed run of 2 groups (16 levels) with none of its bytes in the section.
            v1(&[1, 0, 0, 0, 5, 3], Encoding::PLAIN, Encoding::RLE),
            v2(&[5, 3, 0], 1),
        ] {
            let what = format!("{bad:?}");
            assert!(check(bad).is_err(), "{what}");
        }
        // Indices of width 2: a repeated run of 4 ones.
        assert!(check(v2(&[8, 1, 2, 8, 1], 2)).unwrap());
        // A bit-packed run of 1 group (8 levels, of which the page's 4 are read).
        assert!(check(v2(&[3, 0x0f, 2, 8, 1], 2)).unwrap());
        assert!(
            check(v1(
                &[2, 0, 0, 0, 3, 0x0f, 3],
                Encoding::PLAIN,
                Encoding::RLE
            ))
            .unwrap()
        );
    }

    #[test]
    fn fuzz_corpus_replays() {
        // The seeds are the fixture's own chunks of row group 1, one per page version and
        // column: `MITO_BLESS=1` writes them.
        if std::env::var_os("MITO_BLESS").is_some() {
            let zstd = Compression::ZSTD(ZstdLevel::try_new(3).unwrap());
            let dir = test_util::corpus_dir("sst_pages");
            std::fs::create_dir_all(&dir).unwrap();
            for (v, version) in [WriterVersion::PARQUET_1_0, WriterVersion::PARQUET_2_0]
                .into_iter()
                .enumerate()
            {
                let bytes = file(version, zstd);
                let meta = metadata(&bytes);
                for leaf in 0..3u8 {
                    let (start, len) = meta.row_group(1).column(usize::from(leaf)).byte_range();
                    let mut seed = vec![v as u8 | (leaf << 1)];
                    seed.extend_from_slice(&bytes[start as usize..(start + len) as usize]);
                    std::fs::write(dir.join(format!("chunk_v{}_c{leaf}", v + 1)), seed).unwrap();
                }
            }
        }
        test_util::replay_corpus("sst_pages", 20, super::fuzz_pages);
    }
}
