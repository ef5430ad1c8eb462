//! Arbitrary bytes as the parameters of a PostgreSQL `Bind` message (declared types,
//! formats, values): no panic, and every decoded value of the type it was decoded for.
//! Body: `server::fuzz_bind`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = server::fuzz_bind(data) {
        panic!("{e}");
    }
});
