//! Arbitrary bytes as one line of line protocol: no panic, errors inside the line, and every
//! parsed point survives its canonical re-encoding. Body:
//! `frontend::ingest::line_protocol::fuzz_line_protocol`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = frontend::ingest::line_protocol::fuzz_line_protocol(data) {
        panic!("{e}");
    }
});
