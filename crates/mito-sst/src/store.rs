//! Object store operators: the local-disk default and the in-memory one tests use.

use opendal::Operator;
use snafu::ResultExt;

use crate::error::{ObjectStoreSnafu, Result};

/// Directory under the root where the fs backend stages writes before renaming them into
/// place, so a file is either absent or complete.
pub const STAGING_DIR: &str = ".staging";

/// An operator over a local directory. Every write goes to a staging file that is synced
/// and renamed into place on close, so readers never see a partial object.
pub fn fs_operator(root: &str) -> Result<Operator> {
    let staging = format!("{}/{STAGING_DIR}", root.trim_end_matches('/'));
    let builder = opendal::services::Fs::default()
        .root(root)
        .atomic_write_dir(&staging);
    Operator::new(builder).context(ObjectStoreSnafu { path: root })
}

/// An operator over process memory (tests, benches).
pub fn memory_operator() -> Operator {
    // The memory backend takes no configuration that could be invalid.
    Operator::new(opendal::services::Memory::default()).unwrap_or_else(|_| unreachable_memory())
}

#[expect(
    clippy::panic,
    reason = "the memory backend has no failing configuration"
)]
fn unreachable_memory() -> Operator {
    panic!("building the in-memory object store failed")
}
