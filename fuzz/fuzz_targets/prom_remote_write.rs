//! Arbitrary bytes as a Prometheus remote-write body (snappy, then protobuf): no panic, a
//! bounded decompression, and every converted sample a line that parses back. Body:
//! `frontend::ingest::prom_remote_write::fuzz_prom_remote_write`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = frontend::ingest::prom_remote_write::fuzz_prom_remote_write(data) {
        panic!("{e}");
    }
});
