//! Helpers shared by the `mito` binary's tests.
#![allow(
    dead_code,
    clippy::expect_used,
    reason = "each test file uses a different subset; tests assert by panicking"
)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `mito` binary on `dir` with `args`; returns what it printed and its status.
pub fn mito(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mito"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run mito")
}
