//! A region as readers see it: an immutable [`Version`] swapped atomically by the region's
//! worker, the committed sequence, and the manifest.
//!
//! ```text
//!  worker (only writer)                    scans (any task)
//!   write  -> mutable memtable              committed = region.committed()
//!          -> publish committed sequence    version   = region.version()   (one Arc clone)
//!   freeze -> version' = {new mutable,      read memtables and files of that version at
//!                          immutables + old} sequence <= snapshot
//!   flush done -> version'' = {files + new,
//!                              immutables - flushed}
//! ```
//!
//! A file leaves the version when it is removed (truncate, drop, later compaction); its
//! [`FileHandle`] deletes it from the object store once the last version holding it, and so
//! the last scan reading it, is gone.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use mito_manifest::RegionManifestManager;
use mito_memtable::{Memtable, MemtableOptions};
use mito_sst::{FileId, FileMeta, sst_path};
use opendal::Operator;
use store_api::engine::RegionRole;
use store_api::metadata::RegionMetadataRef;
use store_api::{EntryId, RegionId, SequenceNumber};

use crate::options::RegionOptions;

/// The directory of a region under the engine's root (ends with `/`).
pub fn region_dir(region_id: RegionId) -> String {
    format!(
        "regions/{}/{}/",
        region_id.table_id(),
        region_id.region_number()
    )
}

/// An SST of a version. Deleted from the object store when dropped after [`mark_removed`].
///
/// [`mark_removed`]: FileHandle::mark_removed
#[derive(Debug)]
pub struct FileHandle {
    meta: FileMeta,
    region_dir: Arc<str>,
    op: Operator,
    removed: AtomicBool,
}

impl FileHandle {
    /// A handle of a live file.
    pub fn new(meta: FileMeta, region_dir: Arc<str>, op: Operator) -> Self {
        Self {
            meta,
            region_dir,
            op,
            removed: AtomicBool::new(false),
        }
    }

    /// The file's metadata.
    pub fn meta(&self) -> &FileMeta {
        &self.meta
    }

    /// The file's id.
    pub fn file_id(&self) -> FileId {
        self.meta.file_id
    }

    /// The manifest no longer references the file: delete it once unused.
    pub fn mark_removed(&self) {
        self.removed.store(true, Ordering::Release);
    }
}

impl Drop for FileHandle {
    fn drop(&mut self) {
        if !self.removed.load(Ordering::Acquire) {
            return;
        }
        let path = sst_path(&self.region_dir, self.meta.file_id);
        let op = self.op.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(e) = op.delete(&path).await {
                        tracing::warn!(path, error = %e, "deleting a removed SST failed; it stays as an orphan");
                    }
                });
            }
            Err(_) => {
                tracing::warn!(
                    path,
                    "no runtime to delete a removed SST; it stays as an orphan"
                );
            }
        }
    }
}

/// How a region's memtables partition and deduplicate: one partition per compaction window,
/// so that a flush writes one file per window.
pub fn memtable_options(options: &RegionOptions, window_secs: Option<u64>) -> MemtableOptions {
    let mut o = MemtableOptions {
        dedup: options.dedup(),
        ..MemtableOptions::default()
    };
    if let Some(w) = window_secs.filter(|w| *w > 0) {
        o.time_window = std::time::Duration::from_secs(w);
    }
    o
}

/// Files of a version by id.
pub type FileSet = BTreeMap<FileId, Arc<FileHandle>>;

/// `files` after a manifest edit: the `removed` ones leave (and are deleted from the object
/// store once the last version holding them is gone), the `added` ones join.
pub fn edit_files(
    files: &FileSet,
    removed: &[FileId],
    added: impl IntoIterator<Item = FileMeta>,
    region_dir: &Arc<str>,
    op: &Operator,
) -> FileSet {
    let mut next = files.clone();
    for id in removed {
        if let Some(h) = next.remove(id) {
            h.mark_removed();
        }
    }
    for f in added {
        next.insert(
            f.file_id,
            Arc::new(FileHandle::new(f, region_dir.clone(), op.clone())),
        );
    }
    next
}

/// What a scan reads: everything of a region at one moment.
#[derive(Debug, Clone)]
pub struct Version {
    /// The schema.
    pub metadata: RegionMetadataRef,
    /// The region's options (TTL, merge and append mode, compaction, WAL).
    pub options: Arc<RegionOptions>,
    /// The compaction window in seconds: configured, else inferred and persisted, else none.
    pub window_secs: Option<u64>,
    /// The memtable taking writes.
    pub mutable: Arc<Memtable>,
    /// Frozen memtables waiting for (or in) a flush, oldest first.
    pub immutables: Vec<Arc<Memtable>>,
    /// The SSTs.
    pub files: Arc<FileSet>,
    /// Last WAL entry whose rows are in the files.
    pub flushed_entry_id: EntryId,
    /// Last sequence whose rows are in the files.
    pub flushed_sequence: SequenceNumber,
}

impl Version {
    /// A new, empty memtable for this version.
    pub fn new_memtable(&self) -> mito_memtable::error::Result<Memtable> {
        Memtable::new(
            self.metadata.clone(),
            memtable_options(&self.options, self.window_secs),
        )
    }

    /// Every memtable, mutable first.
    pub fn memtables(&self) -> impl Iterator<Item = &Arc<Memtable>> {
        std::iter::once(&self.mutable).chain(self.immutables.iter())
    }
}

const ROLE_LEADER: u8 = 0;
const ROLE_FOLLOWER: u8 = 1;

/// An open region, shared by its worker (which changes it) and scans (which read it).
#[derive(Debug)]
pub struct MitoRegion {
    region_id: RegionId,
    region_dir: Arc<str>,
    version: RwLock<Arc<Version>>,
    committed: AtomicU64,
    role: AtomicU8,
    /// The manifest; locked by the worker's DDL and by flush jobs.
    pub manifest: tokio::sync::Mutex<RegionManifestManager>,
}

impl MitoRegion {
    /// A region at `version` with `committed` as its last committed sequence.
    pub fn new(
        region_dir: Arc<str>,
        version: Version,
        committed: SequenceNumber,
        manifest: RegionManifestManager,
    ) -> Self {
        Self {
            region_id: version.metadata.region_id(),
            region_dir,
            version: RwLock::new(Arc::new(version)),
            committed: AtomicU64::new(committed),
            role: AtomicU8::new(ROLE_LEADER),
            manifest: tokio::sync::Mutex::new(manifest),
        }
    }

    /// The region's id.
    pub fn region_id(&self) -> RegionId {
        self.region_id
    }

    /// The region directory.
    pub fn region_dir(&self) -> &Arc<str> {
        &self.region_dir
    }

    /// The current version.
    pub fn version(&self) -> Arc<Version> {
        // Replaced in one assignment; a poisoned lock still holds a whole version.
        self.version
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the version (the worker only).
    pub(crate) fn set_version(&self, version: Version) {
        *self
            .version
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(version);
    }

    /// The last sequence whose write was acknowledged (or replayed).
    pub fn committed(&self) -> SequenceNumber {
        self.committed.load(Ordering::Acquire)
    }

    pub(crate) fn publish(&self, sequence: SequenceNumber) {
        self.committed.fetch_max(sequence, Ordering::AcqRel);
    }

    /// Leader or follower.
    pub fn role(&self) -> RegionRole {
        if self.role.load(Ordering::Acquire) == ROLE_FOLLOWER {
            RegionRole::Follower
        } else {
            RegionRole::Leader
        }
    }

    pub(crate) fn set_role(&self, role: RegionRole) {
        let v = match role {
            RegionRole::Leader => ROLE_LEADER,
            RegionRole::Follower => ROLE_FOLLOWER,
        };
        self.role.store(v, Ordering::Release);
    }
}

/// Shared handle to a region.
pub type MitoRegionRef = Arc<MitoRegion>;
