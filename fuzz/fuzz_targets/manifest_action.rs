//! Arbitrary bytes decoded as every kind of manifest file (and as a bare delta body, so the
//! fuzzer reaches the action decoder without forging checksums), then applied to a region
//! state: no panic, round trips stable, state invariants kept. Body:
//! `mito_manifest::format::fuzz_manifest_action`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = mito_manifest::format::fuzz_manifest_action(data) {
        panic!("{e}");
    }
});
