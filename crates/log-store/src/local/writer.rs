//! The writer thread: the only code that appends to segment files.
//!
//! ```text
//!  append_batch (any task)          writer thread (one per store)
//!  encode records + crc  --Append-->  drain the queue (up to max_group_size)
//!  await reply                        validate entry ids, reject bad requests alone
//!                                     write every accepted buffer (roll segments)
//!                                     one fsync (sync mode) | mark unsynced (periodic)
//!                                     publish to the index, answer every request
//!  ticker thread (periodic) --Sync--> fsync if anything is unsynced
//! ```
//!
//! A failed write or fsync poisons the writer: the failed group and every later append get
//! an error, because after a failed fsync the file's contents are unknown. Reopening the
//! store re-reads what actually reached the disk.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;

use mito_fs::{Fs, FsFile};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use snafu::ResultExt;
use store_api::{EntryId, RegionId};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::format::{self, HEADER_LEN};
use super::index::Index;
use super::list::ListFile;
use super::lock;
use super::segment::{create_segment, segment_path};
use crate::config::{Durability, WalConfig};
use crate::error::{Error, InvalidEntrySnafu, IoSnafu, PoisonedSnafu, Result};

/// How long the writer waits for one more request of a group that is smaller than the
/// previous one (sync mode only). Well below one fsync (about 200 us on the reference disk).
const GROUP_WAIT: std::time::Duration = std::time::Duration::from_micros(50);

/// A message to the writer thread.
pub(crate) enum Command {
    /// Append encoded records.
    Append(AppendRequest),
    /// Periodic durability: fsync what is unsynced.
    Sync,
    /// Sync, then exit; the reply says whether the final sync worked.
    Stop(oneshot::Sender<Result<()>>),
}

/// Encoded records of one `append_batch` call.
pub(crate) struct AppendRequest {
    /// The records, back to back.
    pub(crate) buf: Vec<u8>,
    /// (region, entry id) of each record, in order.
    pub(crate) keys: Vec<(RegionId, EntryId)>,
    /// Where the outcome goes.
    pub(crate) reply: oneshot::Sender<Result<()>>,
}

/// State owned by the writer thread.
pub(crate) struct Writer {
    pub(crate) dir: PathBuf,
    pub(crate) config: WalConfig,
    pub(crate) index: Arc<Mutex<Index>>,
    /// The directory's segment list: a new segment is listed before records reach it.
    pub(crate) list: Arc<Mutex<ListFile>>,
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) file: Box<dyn FsFile>,
    pub(crate) active_id: u64,
    pub(crate) active_size: u64,
    pub(crate) active_has_records: bool,
    /// Last entry id per region including appends not yet published; validates new ones.
    pub(crate) last_ids: HashMap<RegionId, EntryId>,
    pub(crate) poisoned: Option<String>,
    pub(crate) unsynced: bool,
    /// Held for the writer's lifetime: the directory lock.
    pub(crate) _lock_file: File,
}

/// One accepted request after its bytes were written: where they went.
struct Written {
    segment_id: u64,
    segment_size: u64,
    keys: Vec<(RegionId, EntryId)>,
}

impl Writer {
    /// Runs until a `Stop` arrives or every sender is gone.
    pub(crate) fn run(mut self, rx: Receiver<Command>) {
        let max_group = self.config.max_group_size.as_bytes();
        let sync_mode = self.config.durability == Durability::Sync;
        // Requests in the previous group: appenders answered together tend to come back
        // together, a few microseconds apart.
        let mut last_group_len = 0usize;
        while let Ok(first) = rx.recv() {
            let mut group = Vec::new();
            let mut group_bytes = 0u64;
            let mut want_sync = false;
            let mut stop = None;
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Append(req) => {
                        group_bytes += req.buf.len() as u64;
                        group.push(req);
                    }
                    Command::Sync => want_sync = true,
                    Command::Stop(reply) => stop = Some(reply),
                }
                if stop.is_none() && group_bytes < max_group {
                    next = rx.try_recv().ok();
                    // In sync mode, rather than paying a whole fsync for a partial group, wait
                    // briefly for the rest of the previous group's appenders. Each wait is
                    // short and the first miss ends it, so a lone appender never waits.
                    if next.is_none() && sync_mode && group.len() < last_group_len {
                        next = rx.recv_timeout(GROUP_WAIT).ok();
                    }
                }
            }
            last_group_len = group.len();
            if !group.is_empty() {
                self.commit_group(group);
            }
            if want_sync || stop.is_some() {
                let result = self.sync_if_unsynced();
                if let Some(reply) = stop {
                    let _ = reply.send(result);
                    info!(dir = %self.dir.display(), "WAL writer stopped");
                    return;
                }
            }
        }
        let _ = self.sync_if_unsynced();
    }

    fn commit_group(&mut self, group: Vec<AppendRequest>) {
        if let Some(reason) = &self.poisoned {
            for req in group {
                let _ = req.reply.send(self.poisoned_error(reason.clone()));
            }
            return;
        }
        let mut accepted = Vec::with_capacity(group.len());
        for req in group {
            match self.check_entry_ids(&req.keys) {
                Ok(()) => accepted.push(req),
                Err(e) => {
                    let _ = req.reply.send(Err(e));
                }
            }
        }
        match self.write_all(&mut accepted) {
            Ok(written) => {
                self.publish(written);
                for req in accepted {
                    let _ = req.reply.send(Ok(()));
                }
            }
            Err(e) => {
                let reason = e.to_string();
                error!(dir = %self.dir.display(), error = %e, "WAL write failed; refusing further appends");
                self.poisoned = Some(reason.clone());
                for req in accepted {
                    let _ = req.reply.send(self.poisoned_error(reason.clone()));
                }
            }
        }
    }

    /// Entry ids must grow per region, across requests and after what the log holds.
    fn check_entry_ids(&mut self, keys: &[(RegionId, EntryId)]) -> Result<()> {
        let mut pending: HashMap<RegionId, EntryId> = HashMap::new();
        for &(region_id, entry_id) in keys {
            let last = pending
                .get(&region_id)
                .or_else(|| self.last_ids.get(&region_id))
                .copied();
            if let Some(last) = last.filter(|last| entry_id <= *last) {
                return InvalidEntrySnafu {
                    region_id,
                    entry_id,
                    reason: format!("entry ids must increase; the region's last entry is {last}"),
                }
                .fail();
            }
            pending.insert(region_id, entry_id);
        }
        self.last_ids.extend(pending);
        Ok(())
    }

    /// Writes (and in sync mode syncs) one group. On failure the group's bytes are cut from
    /// the log again, so that a reopen does not replay records whose appenders were told
    /// they failed (best effort: the WAL is poisoned either way).
    fn write_all(&mut self, accepted: &mut [AppendRequest]) -> Result<Vec<Written>> {
        let start = (self.active_id, self.active_size);
        let result = self.write_group(accepted);
        if result.is_err() {
            self.undo_group(start);
        }
        result
    }

    /// Cuts what a failed group wrote: the segments it created are cut back to their header
    /// (they stay, listed, so the segment list needs no write on a full disk), the one it
    /// started in is truncated to where the group began.
    fn undo_group(&mut self, (start_id, start_size): (u64, u64)) {
        let fs = self.fs.clone();
        let cut = || -> std::io::Result<()> {
            let created = ((start_id + 1)..=self.active_id).map(|id| (id, HEADER_LEN as u64));
            for (id, len) in std::iter::once((start_id, start_size)).chain(created) {
                let mut file = fs.open_append(&segment_path(&self.dir, id))?;
                file.set_len(len)?;
                file.sync_all()?;
            }
            Ok(())
        };
        match cut() {
            Ok(()) => warn!(
                dir = %self.dir.display(),
                segment = start_id,
                offset = start_size,
                "cut the records of the failed WAL write; they were not acknowledged"
            ),
            Err(e) => error!(
                dir = %self.dir.display(),
                segment = start_id,
                offset = start_size,
                error = %e,
                "could not cut the records of the failed WAL write; a reopen may replay them \
                 although their appenders were told they failed"
            ),
        }
    }

    fn write_group(&mut self, accepted: &mut [AppendRequest]) -> Result<Vec<Written>> {
        let mut written = Vec::with_capacity(accepted.len());
        for req in accepted {
            let len = req.buf.len() as u64;
            if self.active_has_records
                && self.active_size + len > self.config.segment_size.as_bytes()
            {
                self.roll()?;
            }
            // Invariant: `append` encoded whole records; a failure here is a bug, and
            // poisoning (the error path) is the safe answer to it.
            format::place_records(&mut req.buf, self.active_id, self.active_size)
                .map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("append buffer holds no whole record at byte {}", e.at),
                    )
                })
                .context(IoSnafu {
                    path: segment_path(&self.dir, self.active_id),
                    op: "place records",
                })?;
            self.write_buf(&req.buf).context(IoSnafu {
                path: segment_path(&self.dir, self.active_id),
                op: "append records",
            })?;
            self.active_size += len;
            self.active_has_records = true;
            written.push(Written {
                segment_id: self.active_id,
                segment_size: self.active_size,
                keys: req.keys.clone(),
            });
        }
        match self.config.durability {
            Durability::Sync => self.sync_data()?,
            Durability::Periodic { .. } => self.unsynced = true,
        }
        Ok(written)
    }

    /// Closes the active segment durably and starts the next one.
    fn roll(&mut self) -> Result<()> {
        self.sync_data()?;
        let next = self.active_id + 1;
        let file = create_segment(&*self.fs, &self.dir, next)?;
        lock(&self.list).add(next)?;
        self.file = file;
        self.active_id = next;
        self.active_size = HEADER_LEN as u64;
        self.active_has_records = false;
        Ok(())
    }

    fn write_buf(&mut self, buf: &[u8]) -> std::io::Result<()> {
        // Fault injection: half the bytes reach the file, then the disk is full.
        fail::fail_point!("wal-write", |_| {
            let half = buf.get(..buf.len() / 2).unwrap_or_default();
            self.file.write_all(half)?;
            Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "failpoint wal-write",
            ))
        });
        self.file.write_all(buf)
    }

    fn fsync(&mut self) -> std::io::Result<()> {
        fail::fail_point!("wal-fsync", |_| Err(std::io::Error::other(
            "failpoint wal-fsync"
        )));
        self.file.sync_data()
    }

    fn sync_data(&mut self) -> Result<()> {
        self.fsync().context(IoSnafu {
            path: segment_path(&self.dir, self.active_id),
            op: "fsync segment",
        })?;
        self.unsynced = false;
        Ok(())
    }

    fn sync_if_unsynced(&mut self) -> Result<()> {
        if !self.unsynced || self.poisoned.is_some() {
            return Ok(());
        }
        let result = self.sync_data();
        if let Err(e) = &result {
            error!(dir = %self.dir.display(), error = %e, "periodic WAL fsync failed; refusing further appends");
            self.poisoned = Some(e.to_string());
        }
        result
    }

    /// Makes written entries visible to readers and to purge, all under one lock so a
    /// segment never looks purgeable while its new entries are unpublished.
    fn publish(&self, written: Vec<Written>) {
        let mut index = lock(&self.index);
        for w in written {
            for (region_id, entry_id) in w.keys {
                index.add(w.segment_id, region_id, entry_id);
            }
            index.segments.entry(w.segment_id).or_default().size = w.segment_size;
        }
    }

    fn poisoned_error(&self, reason: String) -> Result<()> {
        Err::<(), Error>(
            PoisonedSnafu {
                dir: &self.dir,
                reason,
            }
            .build(),
        )
    }
}
