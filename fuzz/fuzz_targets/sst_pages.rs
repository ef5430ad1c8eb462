//! Arbitrary bytes as one column chunk of a small Parquet file, decoded by the SST reader's
//! page decoder (its own ZSTD page decompression over parquet's page reader), with the
//! file's real metadata and page index: no panic. Body: `mito_sst::reader::fuzz_pages`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = mito_sst::reader::fuzz_pages(data) {
        panic!("{e}");
    }
});
