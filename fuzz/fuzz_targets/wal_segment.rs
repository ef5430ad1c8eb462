//! Arbitrary bytes decoded as a WAL segment: no panic, and the valid prefix re-encodes
//! byte for byte. The body lives in `log_store::local::format::fuzz_scan_segment`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    log_store::local::format::fuzz_scan_segment(data);
});
