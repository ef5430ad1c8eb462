//! The local segmented WAL.
//!
//! ```text
//!  dir/
//!    LOCK                       held (flock) while a store has the directory open
//!    00000000000000000001.wal   segment: header, then records [len][crc32c][payload]
//!    00000000000000000002.wal   the active segment; appends go here
//! ```
//!
//! Modules: [`format`](mod@format) (bytes, pure), `segment` (file I/O), `recovery` (open),
//! `writer` (the group-commit thread), `index` (what is where, in memory).

pub mod format;
mod index;
pub mod list;
mod recovery;
mod segment;
pub use segment::LOCK_FILE;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use snafu::{ResultExt, ensure};
use store_api::error::BoxedError;
use store_api::logstore::{AppendResponse, Entry, EntryStream, LogStore};
use store_api::{EntryId, RegionId};
use tracing::{info, warn};

use self::format::Tail;
use self::index::Index;
use self::writer::{AppendRequest, Command, Writer};
use crate::config::{Durability, WalConfig};
use crate::error::{
    DirLockedSnafu, InvalidEntrySnafu, IoSnafu, JoinSnafu, ReadOnlySnafu, Result, StoppedSnafu,
    corrupted,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The index and the list are updated in single steps (the list restores itself when its
    // write fails); a panic elsewhere while holding the lock cannot leave either
    // half-changed, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A write-ahead log in a local directory, shared by many regions.
#[derive(Debug)]
pub struct LocalLogStore {
    dir: PathBuf,
    max_entry_size: usize,
    index: Arc<Mutex<Index>>,
    /// The directory's segment list; `None` when read-only.
    list: Option<Arc<Mutex<list::ListFile>>>,
    tx: Sender<Command>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Where segment files are created, removed and synced.
    fs: Arc<dyn mito_fs::Fs>,
    /// Opened with `read_only`: nothing on disk changes.
    read_only: bool,
    /// The directory lock of a read-only store (a writable one's writer thread holds it).
    _read_lock: Option<std::fs::File>,
}

impl LocalLogStore {
    /// Opens (or creates) the WAL in `config.dir`: reads every segment, drops a torn tail of
    /// the last one, and starts the writer thread. Fails if the directory is in use or a
    /// segment is corrupted before its tail.
    pub async fn open(mut config: WalConfig) -> Result<Self> {
        config.sanitize()?;
        tokio::task::spawn_blocking(move || Self::open_blocking(config))
            .await
            .context(JoinSnafu)?
    }

    fn open_blocking(config: WalConfig) -> Result<Self> {
        let dir = config.dir.clone();
        let read_only = config.read_only;
        if read_only && !dir.exists() {
            // Nothing to read and nothing to lock; appends fail.
            return Ok(Self::read_only_store(dir, &config, Index::default(), None));
        }
        let fs = mito_fs::fs_for(&dir);
        mito_fs::create_dir_durable(&*fs, &dir).context(IoSnafu {
            path: &dir,
            op: "create WAL directory",
        })?;
        let lock_path = dir.join(segment::LOCK_FILE);
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .context(IoSnafu {
                path: &lock_path,
                op: "open lock file",
            })?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return DirLockedSnafu { dir }.fail(),
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(source).context(IoSnafu {
                    path: lock_path,
                    op: "lock WAL directory",
                });
            }
        }
        let rec = recovery::recover(&fs, &dir, read_only)?;
        let (Some(active), Some(list)) = (rec.active, rec.list) else {
            return Ok(Self::read_only_store(
                dir,
                &config,
                rec.index,
                Some(lock_file),
            ));
        };
        let last_ids = rec.index.last_entry.clone();
        let index = Arc::new(Mutex::new(rec.index));
        let list = Arc::new(Mutex::new(list));
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            dir: dir.clone(),
            config: config.clone(),
            index: index.clone(),
            list: list.clone(),
            fs: fs.clone(),
            file: active.file,
            active_id: active.id,
            active_size: active.size,
            active_has_records: active.has_records,
            last_ids,
            poisoned: None,
            unsynced: false,
            _lock_file: lock_file,
        };
        let handle = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run(rx))
            .context(IoSnafu {
                path: &dir,
                op: "spawn WAL writer thread",
            })?;
        if let Durability::Periodic { interval } = config.durability {
            let ticker = tx.clone();
            std::thread::Builder::new()
                .name("wal-sync".into())
                .spawn(move || {
                    // Ends at the first tick after the writer is gone.
                    while ticker.send(Command::Sync).is_ok() {
                        std::thread::sleep(interval);
                    }
                })
                .context(IoSnafu {
                    path: &dir,
                    op: "spawn WAL sync thread",
                })?;
        }
        Ok(Self {
            dir,
            max_entry_size: usize::try_from(config.max_entry_size.as_bytes()).unwrap_or(usize::MAX),
            index,
            list: Some(list),
            tx,
            writer: Mutex::new(Some(handle)),
            fs,
            read_only: false,
            _read_lock: None,
        })
    }

    /// A store that only reads: no writer thread, appends fail with `ReadOnly`.
    fn read_only_store(
        dir: PathBuf,
        config: &WalConfig,
        index: Index,
        lock: Option<std::fs::File>,
    ) -> Self {
        let (tx, _rx) = mpsc::channel();
        Self {
            dir,
            max_entry_size: usize::try_from(config.max_entry_size.as_bytes()).unwrap_or(usize::MAX),
            index: Arc::new(Mutex::new(index)),
            list: None,
            tx,
            writer: Mutex::new(None),
            fs: Arc::new(mito_fs::OsFs),
            read_only: true,
            _read_lock: lock,
        }
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Ids of the segment files the log currently holds, oldest first.
    pub fn segment_ids(&self) -> Vec<u64> {
        lock(&self.index).segments.keys().copied().collect()
    }

    /// Appends entries as one group (see [`LogStore::append_batch`]).
    pub async fn append(&self, entries: &[Entry]) -> Result<AppendResponse> {
        let mut response = AppendResponse::default();
        if entries.is_empty() {
            return Ok(response);
        }
        ensure!(!self.read_only, ReadOnlySnafu { dir: &self.dir });
        let total: usize = entries
            .iter()
            .map(|e| format::record_len(e.data.len()))
            .sum();
        let mut buf = Vec::with_capacity(total);
        let mut keys = Vec::with_capacity(entries.len());
        for e in entries {
            ensure!(
                e.data.len() <= self.max_entry_size,
                InvalidEntrySnafu {
                    region_id: e.region_id,
                    entry_id: e.entry_id,
                    reason: format!(
                        "entry of {} bytes is over max_entry_size ({} bytes)",
                        e.data.len(),
                        self.max_entry_size
                    ),
                }
            );
            format::encode_record(e.region_id, e.entry_id, &e.data, &mut buf);
            keys.push((e.region_id, e.entry_id));
            response.last_entry_ids.insert(e.region_id, e.entry_id);
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        let request = AppendRequest { buf, keys, reply };
        self.tx
            .send(Command::Append(request))
            .map_err(|_| StoppedSnafu { dir: &self.dir }.build())?;
        rx.await
            .map_err(|_| StoppedSnafu { dir: &self.dir }.build())??;
        Ok(response)
    }

    /// Reads the entries of `region_id` from `from` on, one segment at a time.
    pub fn read_entries(&self, region_id: RegionId, from: EntryId) -> EntryStream {
        let segments = lock(&self.index).segments_for(region_id, from);
        let dir = self.dir.clone();
        let index = self.index.clone();
        futures::stream::iter(segments)
            .then(move |(id, size)| {
                let dir = dir.clone();
                let index = index.clone();
                async move {
                    let read = move || read_region_entries(&dir, &index, id, size, region_id, from);
                    tokio::task::spawn_blocking(read)
                        .await
                        .context(JoinSnafu)
                        .and_then(|r| r)
                        .map_err(BoxedError::from)
                }
            })
            .filter(|r| futures::future::ready(!matches!(r, Ok(v) if v.is_empty())))
            .boxed()
    }

    /// Marks entries of `region_id` up to `entry_id` obsolete and deletes the segments no
    /// region needs any more. Returns the ids of the deleted segments.
    pub async fn mark_obsolete(&self, region_id: RegionId, entry_id: EntryId) -> Result<Vec<u64>> {
        let purged = {
            let mut index = lock(&self.index);
            index.mark_obsolete(region_id, entry_id);
            if self.read_only {
                return Ok(Vec::new());
            }
            index.take_purgeable()
        };
        if purged.is_empty() {
            return Ok(purged);
        }
        self.remove_segments(purged.clone()).await?;
        Ok(purged)
    }

    /// Syncs what is buffered and stops the writer. Later appends fail with `Stopped`.
    ///
    /// When every entry left is obsolete (all regions flushed), the segments are removed too,
    /// the active one included, oldest first: a clean shutdown leaves no bytes of data that
    /// is already in SSTs. A crash part way leaves obsolete segments, which the next open
    /// reads and skips as usual.
    pub async fn close(&self) -> Result<()> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let sent = self.tx.send(Command::Stop(reply)).is_ok();
        let result = if sent {
            rx.await.unwrap_or(Ok(()))
        } else {
            Ok(())
        };
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            tokio::task::spawn_blocking(move || handle.join())
                .await
                .context(JoinSnafu)?
                .unwrap_or_else(|_| warn!("WAL writer thread panicked"));
        }
        result?;
        self.remove_if_all_obsolete().await
    }

    async fn remove_if_all_obsolete(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let ids: Vec<u64> = {
            let mut index = lock(&self.index);
            if index.segments.is_empty() || !index.all_obsolete() {
                return Ok(());
            }
            let ids = index.segments.keys().copied().collect();
            index.segments.clear();
            ids
        };
        self.remove_segments(ids).await
    }

    /// Unlists segments, then deletes their files, oldest first (a missing one is fine),
    /// then syncs the directory. If the list cannot be written the files stay (they are
    /// read again, and purged, after the next open).
    async fn remove_segments(&self, ids: Vec<u64>) -> Result<()> {
        let (fs, dir, list) = (self.fs.clone(), self.dir.clone(), self.list.clone());
        tokio::task::spawn_blocking(move || {
            if let Some(list) = &list {
                lock(list).remove(&ids)?;
            }
            delete_segments(&*fs, &dir, ids)
        })
        .await
        .context(JoinSnafu)?
    }
}

/// Deletes segment files, oldest first (a missing one is fine), then syncs the directory.
fn delete_segments(fs: &dyn mito_fs::Fs, dir: &Path, ids: Vec<u64>) -> Result<()> {
    for id in ids {
        let path = segment::segment_path(dir, id);
        match fs.remove_file(&path) {
            Ok(()) => info!(path = %path.display(), "purged obsolete WAL segment"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(source).context(IoSnafu {
                    path,
                    op: "delete obsolete segment",
                });
            }
        }
    }
    segment::sync_dir(fs, dir)
}

impl Drop for LocalLogStore {
    fn drop(&mut self) {
        // Without `close`, still sync and release the directory before returning, so the
        // same directory can be reopened right away.
        let (reply, _rx) = tokio::sync::oneshot::channel();
        let _ = self.tx.send(Command::Stop(reply));
        let handle = self
            .writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

fn read_region_entries(
    dir: &Path,
    index: &Mutex<Index>,
    id: u64,
    size: u64,
    region_id: RegionId,
    from: EntryId,
) -> Result<Vec<Entry>> {
    let buf = match segment::read_segment(dir, id, Some(size)) {
        Ok(buf) => buf,
        // Purged after the read started: everything in it was obsolete.
        Err(crate::error::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound
                && !lock(index).segments.contains_key(&id) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let path = segment::segment_path(dir, id);
    if (buf.len() as u64) < size {
        return Err(corrupted(
            &path,
            buf.len(),
            format!("segment shrank below its {size} written bytes"),
        ));
    }
    let scan = format::scan_segment(&buf).map_err(|e| corrupted(&path, 0, e.to_string()))?;
    if let Tail::Torn { offset, damage } | Tail::Corrupt { offset, damage, .. } = scan.tail {
        return Err(corrupted(
            &path,
            offset,
            format!("{damage} in data read back after it was written"),
        ));
    }
    let entries = scan
        .records
        .iter()
        .filter(|r| r.region_id == region_id && r.entry_id >= from)
        .map(|r| Entry {
            region_id,
            entry_id: r.entry_id,
            data: Bytes::copy_from_slice(buf.get(r.data.clone()).unwrap_or_default()),
        })
        .collect();
    Ok(entries)
}

#[async_trait]
impl LogStore for LocalLogStore {
    async fn append_batch(&self, entries: Vec<Entry>) -> Result<AppendResponse, BoxedError> {
        Ok(self.append(&entries).await?)
    }

    async fn read(&self, region_id: RegionId, from: EntryId) -> Result<EntryStream, BoxedError> {
        Ok(self.read_entries(region_id, from))
    }

    async fn obsolete(&self, region_id: RegionId, entry_id: EntryId) -> Result<(), BoxedError> {
        self.mark_obsolete(region_id, entry_id).await?;
        Ok(())
    }

    fn last_entry_id(&self, region_id: RegionId) -> Option<EntryId> {
        lock(&self.index).last_entry.get(&region_id).copied()
    }

    async fn stop(&self) -> Result<(), BoxedError> {
        Ok(self.close().await?)
    }
}
