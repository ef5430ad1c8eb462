//! Arbitrary bytes decoded as a primary key (the first byte picks the element types): no
//! panic, and what decodes re-encodes byte for byte. Body: `mito_codec::fuzz_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mito_codec::fuzz_decode(data);
});
