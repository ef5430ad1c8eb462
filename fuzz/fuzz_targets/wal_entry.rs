//! Arbitrary bytes as the engine's WAL payload (a whole entry, and the body of an entry with
//! a valid header and checksum, so the column decoder is reached): no panic, and a decoded
//! entry re-encodes to the same batch. Body: `mito_engine::wal_entry::fuzz_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mito_engine::wal_entry::fuzz_decode(data);
});
