//! Helpers shared by the `mito` binary's tests.
#![allow(
    dead_code,
    clippy::expect_used,
    reason = "each test file uses a different subset; tests assert by panicking"
)]

use std::path::{Path, PathBuf};
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

/// Every file under `dir` (recursively), sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("list a directory") {
            let p = e.expect("a directory entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
