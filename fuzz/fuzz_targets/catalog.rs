//! Arbitrary bytes as a catalog file: no panic; whatever decodes keeps the catalog's rules
//! and round-trips. Body: `frontend::catalog::fuzz_catalog`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = frontend::catalog::fuzz_catalog(data) {
        panic!("{e}");
    }
});
