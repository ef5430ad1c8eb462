//! Criterion micro benchmarks of Mito's components, one file per component under `benches/`.
//! Run them with `make bench`; results and the machine they were measured on are recorded in
//! `docs/benchmarks.md`.
