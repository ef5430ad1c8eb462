//! Criterion micro benchmarks of Mito's components, one file per component under `benches/`,
//! and the child-process helper they share ([`child`]); their data comes from the `tsbs`
//! crate. Run them with `make bench`; results and the machine they were measured on are
//! recorded in `docs/benchmarks.md`.

#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        reason = "tests assert by panicking"
    )
)]

pub mod child;
