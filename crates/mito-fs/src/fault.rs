//! A file system that knows what a power cut keeps: [`FaultFs`].
//!
//! It passes every call to the operating system and records what is not durable yet:
//! bytes appended after a file's last sync, and directory entries (a file or directory
//! created, renamed or removed) whose directory has not been synced since. A
//! [`FaultFs::power_cut`] stops the file system (every later call fails, as on a machine
//! that lost power) and rewrites the directory to what a disk would hold afterwards:
//! unsynced bytes dropped (or, with [`Cut::Tear`], a random part of them kept), unsynced
//! entries undone in reverse order (created files gone, renames back, removed files back
//! with their durable contents). This is the POSIX model, stricter than ext4 in ordered
//! mode (which often keeps more); a rename counts as durable once the directory of either
//! name is synced, as one journal transaction holds both.
//!
//! Faults on command: [`FaultFs::fail`] makes the n-th later call of a kind fail (a write
//! then reaches the disk in part), and [`FaultFs::cut_at`] stops the file system at the
//! n-th later call, tearing it if it is a write, so a power cut can fall at any point of a
//! flush, a checkpoint or a compaction without the test knowing where those are.
//!
//! Limits of the model: a shrinking `set_len` is taken as durable at once (a cut that would
//! bring the old tail back is a torn tail the WAL handles anyway); writes that bypass the
//! `Fs` (the opendal fs backend's staging files, the WAL's lock file) are kept.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use opendal::Operator;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{Fs, FsFile, OsFs};

/// Kinds of calls, for counting and for injected failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// An append to a file (WAL records, catalog bytes) or a buffer of an object write.
    Write,
    /// A file's `fsync`/`fdatasync`.
    Sync,
    /// A directory's `fsync`.
    SyncDir,
    /// A file or directory created; an object write started.
    Create,
    /// An object write finished (the fs backend syncs and renames it into place).
    Commit,
    /// A rename.
    Rename,
    /// A file, directory or object removed.
    Remove,
    /// A file cut to a length.
    SetLen,
}

/// What a power cut does with bytes written after a file's last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// All of them are lost.
    DropUnsynced,
    /// A random prefix of them survives (a write torn at any byte).
    Tear,
}

/// What a [`FaultFs::power_cut`] undid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Files that lost bytes.
    pub files_cut: u64,
    /// Bytes lost.
    pub bytes_lost: u64,
    /// Directory entries undone (creations, renames, removals).
    pub entries_undone: u64,
}

/// Counters of the calls seen, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every counted call.
    pub calls: u64,
    /// File syncs that completed.
    pub syncs: u64,
    /// Directory syncs that completed.
    pub dir_syncs: u64,
    /// Injected failures that fired.
    pub failures: u64,
}

/// A fault-injecting [`Fs`] over the operating system's. Clones share one state.
#[derive(Debug, Clone)]
pub struct FaultFs {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    drained: tokio::sync::Notify,
}

#[derive(Debug)]
struct State {
    dead: bool,
    in_flight: usize,
    cut_at: Option<u64>,
    failures: Vec<(Op, u64)>,
    files: HashMap<u64, Tracked>,
    next_file: u64,
    pending: Vec<Entry>,
    rng: StdRng,
    stats: Stats,
}

/// A file written through this `Fs`: its current and its durable length.
#[derive(Debug)]
struct Tracked {
    path: PathBuf,
    len: u64,
    synced: u64,
}

/// A directory entry change not yet durable.
#[derive(Debug)]
enum Entry {
    /// `path` was created; `replaced` holds the durable contents of a file it replaced.
    Create {
        path: PathBuf,
        replaced: Option<Vec<u8>>,
    },
    /// `from` was renamed to `to`, replacing a file whose durable contents are `replaced`.
    Rename {
        from: PathBuf,
        to: PathBuf,
        replaced: Option<Vec<u8>>,
    },
    /// The file `path`, whose durable contents were `contents`, was removed.
    Remove { path: PathBuf, contents: Vec<u8> },
}

impl Entry {
    /// Whether syncing directory `dir` makes this change durable.
    fn durable_by(&self, dir: &Path) -> bool {
        let in_dir = |p: &Path| p.parent() == Some(dir);
        match self {
            Entry::Create { path, .. } | Entry::Remove { path, .. } => in_dir(path),
            Entry::Rename { from, to, .. } => in_dir(from) || in_dir(to),
        }
    }
}

/// How a call may go on.
enum Admit {
    /// Do it.
    Go,
    /// Do part of it (a write) and fail: the power went or a fault was injected.
    Tear(io::Error),
}

/// An admitted call; the cut waits until every ticket is dropped.
pub(crate) struct Ticket {
    shared: Arc<Shared>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            self.shared.drained.notify_waiters();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn dead_error() -> io::Error {
    io::Error::other("the file system lost power (simulated power cut)")
}

fn injected(op: Op) -> io::Error {
    io::Error::other(format!("injected fault: {op:?} failed"))
}

/// The durable contents of the file at `path` (its bytes up to the last sync), if it is a
/// file.
fn durable_contents(state: &State, path: &Path) -> Option<Vec<u8>> {
    let mut bytes = std::fs::read(path).ok()?;
    if let Some(t) = state.files.values().find(|t| t.path == path) {
        bytes.truncate(usize::try_from(t.synced).unwrap_or(usize::MAX));
    }
    Some(bytes)
}

/// Records the directories that creating `path` will create (missing ancestors, outermost
/// first) as pending entries.
fn record_missing_dirs(state: &mut State, path: &Path) {
    let mut missing = Vec::new();
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        dir = d.parent();
    }
    for d in missing.into_iter().rev() {
        state.pending.push(Entry::Create {
            path: d,
            replaced: None,
        });
    }
}

impl FaultFs {
    /// A file system that works until told otherwise; `seed` drives torn writes.
    pub fn new(seed: u64) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    dead: false,
                    in_flight: 0,
                    cut_at: None,
                    failures: Vec::new(),
                    files: HashMap::new(),
                    next_file: 0,
                    pending: Vec::new(),
                    rng: StdRng::seed_from_u64(seed),
                    stats: Stats::default(),
                }),
                drained: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The `n`-th later call of kind `op` (1 = the next) fails; a write reaches the disk in
    /// part first.
    pub fn fail(&self, op: Op, n: u64) {
        self.shared.lock().failures.push((op, n.max(1)));
    }

    /// The file system stops at the `n`-th later call of any kind (1 = the next): that call
    /// and every later one fail, a write among them reaching the disk in part. Apply the
    /// cut's effect on the disk with [`power_cut`](Self::power_cut).
    pub fn cut_at(&self, n: u64) {
        let mut state = self.shared.lock();
        let at = state.stats.calls + n.max(1);
        state.cut_at = Some(at);
    }

    /// Whether the file system has stopped (a cut happened or is in place).
    pub fn is_dead(&self) -> bool {
        self.shared.lock().dead
    }

    /// Counters of the calls so far.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }

    /// Stops the file system, waits for calls under way to return, and leaves the disk as a
    /// power cut at this moment would. Every later call fails; open the directory again
    /// with a new `Fs`.
    pub async fn power_cut(&self, cut: Cut) -> io::Result<CutReport> {
        loop {
            let drained = self.shared.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let mut state = self.shared.lock();
                state.dead = true;
                if state.in_flight == 0 {
                    return apply_cut(&mut state, cut);
                }
            }
            drained.await;
        }
    }

    fn admit(&self, op: Op) -> io::Result<(Ticket, Admit)> {
        let mut state = self.shared.lock();
        if state.dead {
            return Err(dead_error());
        }
        state.stats.calls += 1;
        let calls = state.stats.calls;
        let mut admit = Admit::Go;
        if state.cut_at == Some(calls) {
            state.dead = true;
            admit = Admit::Tear(dead_error());
        } else {
            let mut fired = false;
            for (kind, n) in state.failures.iter_mut() {
                if *kind == op && *n > 0 {
                    *n -= 1;
                    if *n == 0 {
                        fired = true;
                        break;
                    }
                }
            }
            state.failures.retain(|(_, n)| *n > 0);
            if fired {
                state.stats.failures += 1;
                admit = Admit::Tear(injected(op));
            }
        }
        state.in_flight += 1;
        Ok((
            Ticket {
                shared: self.shared.clone(),
            },
            admit,
        ))
    }

    /// Admits a call that has no partial form: a refused one fails whole.
    fn admit_whole(&self, op: Op) -> io::Result<Ticket> {
        match self.admit(op)? {
            (ticket, Admit::Go) => Ok(ticket),
            (_, Admit::Tear(e)) => Err(e),
        }
    }

    fn track(&self, path: &Path, len: u64) -> u64 {
        let mut state = self.shared.lock();
        let id = state.next_file;
        state.next_file += 1;
        state.files.insert(
            id,
            Tracked {
                path: path.to_path_buf(),
                len,
                synced: len,
            },
        );
        id
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.shared.lock())
    }

    /// Called by the opendal layer before an object write starts at absolute `path`.
    pub(crate) fn object_create(&self, path: &Path) -> io::Result<()> {
        let _ticket = self.admit_whole(Op::Create)?;
        self.with_state(|state| {
            record_missing_dirs(state, path);
            let replaced = durable_contents(state, path);
            state.pending.push(Entry::Create {
                path: path.to_path_buf(),
                replaced,
            });
        });
        Ok(())
    }

    /// Called by the opendal layer before directory `path` is created.
    pub(crate) fn object_create_dir(&self, path: &Path) -> io::Result<()> {
        let _ticket = self.admit_whole(Op::Create)?;
        self.with_state(|state| record_missing_dirs(state, &path.join("x")));
        Ok(())
    }

    /// Admits a buffer of an object write.
    pub(crate) fn object_write(&self) -> io::Result<()> {
        self.admit_whole(Op::Write).map(drop)
    }

    /// Admits the end of an object write; the ticket is held while the backend syncs and
    /// renames.
    pub(crate) fn object_commit(&self) -> io::Result<Ticket> {
        self.admit_whole(Op::Commit)
    }

    /// Called by the opendal layer before the object at absolute `path` is removed.
    pub(crate) fn object_remove(&self, path: &Path) -> io::Result<Ticket> {
        let ticket = self.admit_whole(Op::Remove)?;
        self.with_state(|state| {
            if let Some(contents) = durable_contents(state, path) {
                state.pending.push(Entry::Remove {
                    path: path.to_path_buf(),
                    contents,
                });
            }
        });
        Ok(ticket)
    }
}

fn apply_cut(state: &mut State, cut: Cut) -> io::Result<CutReport> {
    let mut report = CutReport::default();
    let mut files: Vec<&Tracked> = state.files.values().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut keeps = Vec::new();
    for t in files {
        if t.len <= t.synced || !t.path.is_file() {
            continue;
        }
        let unsynced = t.len - t.synced;
        let kept = match cut {
            Cut::DropUnsynced => 0,
            Cut::Tear => state.rng.random_range(0..=unsynced),
        };
        keeps.push((t.path.clone(), t.synced + kept, unsynced - kept));
    }
    for (path, len, lost) in keeps {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)?
            .set_len(len)?;
        if lost > 0 {
            report.files_cut += 1;
            report.bytes_lost += lost;
        }
    }
    while let Some(entry) = state.pending.pop() {
        report.entries_undone += 1;
        match entry {
            Entry::Create { path, replaced } => {
                remove_any(&path)?;
                if let Some(bytes) = replaced {
                    std::fs::write(&path, bytes)?;
                }
            }
            Entry::Rename { from, to, replaced } => {
                if to.exists() {
                    if let Some(parent) = from.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::rename(&to, &from)?;
                }
                if let Some(bytes) = replaced {
                    std::fs::write(&to, bytes)?;
                }
            }
            Entry::Remove { path, contents } => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&path, contents)?;
            }
        }
    }
    state.files.clear();
    Ok(report)
}

fn remove_any(path: &Path) -> io::Result<()> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A file written through a [`FaultFs`].
#[derive(Debug)]
struct FaultFile {
    fs: FaultFs,
    id: u64,
    inner: Box<dyn FsFile>,
}

impl Write for FaultFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (_ticket, admit) = self.fs.admit(Op::Write)?;
        let n = match admit {
            Admit::Go => self.inner.write(buf)?,
            Admit::Tear(e) => {
                let keep = self
                    .fs
                    .with_state(|s| s.rng.random_range(0..=buf.len().saturating_sub(1)));
                self.inner.write_all(buf.get(..keep).unwrap_or_default())?;
                self.fs.with_state(|s| {
                    if let Some(t) = s.files.get_mut(&self.id) {
                        t.len += keep as u64;
                    }
                });
                return Err(e);
            }
        };
        self.fs.with_state(|s| {
            if let Some(t) = s.files.get_mut(&self.id) {
                t.len += n as u64;
            }
        });
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl FaultFile {
    fn sync(&mut self, all: bool) -> io::Result<()> {
        let _ticket = self.fs.admit_whole(Op::Sync)?;
        if all {
            self.inner.sync_all()?;
        } else {
            self.inner.sync_data()?;
        }
        self.fs.with_state(|s| {
            s.stats.syncs += 1;
            if let Some(t) = s.files.get_mut(&self.id) {
                t.synced = t.len;
            }
        });
        Ok(())
    }
}

impl FsFile for FaultFile {
    fn sync_data(&mut self) -> io::Result<()> {
        self.sync(false)
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.sync(true)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let _ticket = self.fs.admit_whole(Op::SetLen)?;
        self.inner.set_len(len)?;
        self.fs.with_state(|s| {
            if let Some(t) = s.files.get_mut(&self.id) {
                t.len = len;
                t.synced = t.synced.min(len);
            }
        });
        Ok(())
    }
}

impl Fs for FaultFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        if path.is_dir() {
            return Ok(());
        }
        let _ticket = self.admit_whole(Op::Create)?;
        self.with_state(|state| {
            record_missing_dirs(state, &path.join("x"));
        });
        OsFs.create_dir_all(path)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let _ticket = self.admit_whole(Op::Create)?;
        self.with_state(|state| {
            let replaced = durable_contents(state, path);
            state.files.retain(|_, t| t.path != path);
            state.pending.push(Entry::Create {
                path: path.to_path_buf(),
                replaced,
            });
        });
        let inner = OsFs.create(path)?;
        let id = self.track(path, 0);
        Ok(Box::new(FaultFile {
            fs: self.clone(),
            id,
            inner,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let inner = OsFs.open_append(path)?;
        let len = std::fs::metadata(path)?.len();
        let existing = self.with_state(|s| {
            s.files
                .iter()
                .find(|(_, t)| t.path == path)
                .map(|(id, _)| *id)
        });
        let id = existing.unwrap_or_else(|| self.track(path, len));
        Ok(Box::new(FaultFile {
            fs: self.clone(),
            id,
            inner,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let _ticket = self.admit_whole(Op::Rename)?;
        self.with_state(|state| {
            let replaced = durable_contents(state, to);
            state.files.retain(|_, t| t.path != to);
            for t in state.files.values_mut() {
                if t.path == from {
                    t.path = to.to_path_buf();
                }
            }
            state.pending.push(Entry::Rename {
                from: from.to_path_buf(),
                to: to.to_path_buf(),
                replaced,
            });
        });
        OsFs.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let _ticket = self.admit_whole(Op::Remove)?;
        self.with_state(|state| {
            if let Some(contents) = durable_contents(state, path) {
                state.pending.push(Entry::Remove {
                    path: path.to_path_buf(),
                    contents,
                });
            }
            state.files.retain(|_, t| t.path != path);
        });
        OsFs.remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let _ticket = self.admit_whole(Op::SyncDir)?;
        OsFs.sync_dir(path)?;
        self.with_state(|state| {
            state.stats.dir_syncs += 1;
            state.pending.retain(|e| !e.durable_by(path));
        });
        Ok(())
    }

    fn operator(&self, op: Operator) -> Operator {
        let root = PathBuf::from(&*op.info().root());
        op.layer(crate::layer::FaultLayer::new(self.clone(), root))
    }
}
