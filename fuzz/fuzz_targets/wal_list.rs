//! Arbitrary bytes decoded as a WAL segment list (`SEGMENTS`): no panic, and what decodes
//! keeps the list's rules and re-encodes byte for byte. The body lives in
//! `log_store::local::list::fuzz_decode_list`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    log_store::local::list::fuzz_decode_list(data);
});
