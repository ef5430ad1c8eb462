//! Arbitrary bytes as an SST's `mito.sst` metadata and as decimal/exception column pairs to
//! decode: no panic, round trips stable. Body: `mito_sst::format::fuzz_sst_info`. (The
//! Parquet bytes themselves only reach the decoder after their CRC32C matched.)
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = mito_sst::format::fuzz_sst_info(data) {
        panic!("{e}");
    }
});
