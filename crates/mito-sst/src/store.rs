//! Object store operators: the local-disk default and the in-memory one tests use.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use opendal::Operator;
use snafu::ResultExt;

use crate::error::{ObjectStoreSnafu, Result, SyncDirSnafu};

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
    let op = Operator::new(builder).context(ObjectStoreSnafu { path: root })?;
    Ok(mito_fs::fs_for(Path::new(root)).operator(op))
}

/// An operator over a local directory for reading only: nothing is created (the fs backend
/// makes its root and staging directory when it is built, so a missing root is read as an
/// empty store instead).
pub fn fs_operator_read_only(root: &str) -> Result<Operator> {
    if !Path::new(root).exists() {
        return Ok(memory_operator());
    }
    let builder = opendal::services::Fs::default().root(root);
    Operator::new(builder).context(ObjectStoreSnafu { path: root })
}

/// Directories whose own entry (in their parent) this process has made durable.
fn durable_dirs() -> &'static Mutex<HashSet<PathBuf>> {
    static DIRS: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    DIRS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Makes the object just written at `path` durable by name, on the local-disk backend: the
/// fs backend fsyncs the file and renames it into place, but a rename (and a directory it
/// created) only survives a power cut once the directory holding it is fsynced too. Syncs
/// the object's directory, then each ancestor up to the root's parent whose new entry this
/// process has not synced yet. Callers do this before an edit that names the object counts
/// (an SST before the manifest edit, a manifest delta before the WAL is made obsolete).
/// Other backends (memory, object stores) need nothing.
pub async fn sync_dirs(op: &Operator, path: &str) -> Result<()> {
    let info = op.info();
    if info.scheme() != "fs" {
        return Ok(());
    }
    let root = PathBuf::from(info.root());
    let rel = Path::new(path.trim_start_matches('/'));
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    let dir = root.join(parent);
    let stop = root.parent().map(Path::to_path_buf);
    tokio::task::spawn_blocking(move || sync_dir_chain(&dir, stop.as_deref()))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .context(SyncDirSnafu { path: root.clone() })?
}

fn sync_dir_chain(dir: &Path, stop: Option<&Path>) -> Result<()> {
    fsync_dir(dir)?;
    let mut child = dir.to_path_buf();
    loop {
        let known = durable_dirs()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&child);
        if known || Some(child.as_path()) == stop {
            return Ok(());
        }
        let Some(parent) = child.parent().map(Path::to_path_buf) else {
            return Ok(());
        };
        fsync_dir(&parent)?;
        durable_dirs()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(child);
        child = parent;
    }
}

fn fsync_dir(dir: &Path) -> Result<()> {
    mito_fs::fs_for(dir)
        .sync_dir(dir)
        .context(SyncDirSnafu { path: dir })
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
