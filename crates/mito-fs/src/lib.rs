//! The file-system calls that decide what survives a power cut, behind one narrow trait.
//!
//! Mito's durable writes reach the disk in two ways: the WAL and the catalog write files
//! themselves (append, fsync, cut, rename, remove, directory fsync), and SSTs and manifests
//! go through an opendal [`Operator`] (the fs backend stages, fsyncs and renames each
//! object; [`Fs::sync_dir`] then makes the rename durable). Both go through an [`Fs`]:
//! [`OsFs`] (the operating system) in production, and with the `fault` feature
//! `fault::FaultFs`, which models what a power cut keeps (only synced bytes, only synced
//! directory entries), can tear the last write, and fails writes or syncs on command.
//!
//! Reads are not part of the trait: they change nothing a power cut could undo.
//!
//! Which `Fs` serves a path is decided by [`fs_for`]: the one [`register`]ed for the
//! longest prefix of the path, [`OsFs`] otherwise. Tests register a `FaultFs` for a data
//! directory before opening an engine over it; production code registers nothing.

use std::fmt::Debug;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use opendal::Operator;

#[cfg(feature = "fault")]
pub mod fault;
#[cfg(feature = "fault")]
mod layer;

/// A file opened for writing through an [`Fs`]. Writes append at the end.
pub trait FsFile: Write + Send + Sync + Debug {
    /// Makes the file's data durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Makes the file's data and metadata durable (`fsync`).
    fn sync_all(&mut self) -> io::Result<()>;
    /// Cuts (or extends) the file to `len` bytes; later writes go to the new end.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// The calls whose effects a power cut may undo until they are synced.
pub trait Fs: Send + Sync + Debug {
    /// Creates `path` and any missing parent directory.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates `path` (emptied if it exists) for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Opens the existing file `path` for appending at its end.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of directory `path` (files created, renamed, removed) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// `op` (an operator over a directory this `Fs` serves) with this file system's
    /// effects applied to its writes and deletes. The operating system's is `op` itself.
    fn operator(&self, op: Operator) -> Operator {
        op
    }
}

/// The operating system's file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFs;

/// A file of the operating system, written at its end.
#[derive(Debug)]
struct OsFile {
    file: std::fs::File,
}

impl Write for OsFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl FsFile for OsFile {
    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        std::io::Seek::seek(&mut self.file, std::io::SeekFrom::End(0)).map(drop)
    }
}

impl Fs for OsFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        Ok(Box::new(OsFile { file }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let file = std::fs::OpenOptions::new().append(true).open(path)?;
        Ok(Box::new(OsFile { file }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }
}

/// Creates directory `path` and its missing ancestors durably: after the creation, the parent
/// of each directory created is fsynced, so a power cut cannot undo the directory while
/// files inside it (synced with their own directory) were acknowledged.
pub fn create_dir_durable(fs: &dyn Fs, path: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = path.ancestors().take_while(|p| !p.exists()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    fs.create_dir_all(path)?;
    for dir in missing.iter().rev() {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Replaces the small file `dir/name` with `bytes`, atomically and durably: the bytes go to
/// `name.tmp`, which is fsynced, renamed over `name`, and the directory fsynced. A crash
/// leaves the old file or the new one, never a mix; a `name.tmp` left behind is overwritten
/// by the next replace.
pub fn replace(fs: &dyn Fs, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = fs.create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs.rename(&tmp, &path)?;
    fs.sync_dir(dir)
}

type Registry = Mutex<Vec<(PathBuf, Arc<dyn Fs>)>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Vec::new()))
}

/// The [`Fs`] serving `path`: the one registered for the longest prefix of it, else
/// [`OsFs`].
pub fn fs_for(path: &Path) -> Arc<dyn Fs> {
    let registered = registry().lock().unwrap_or_else(PoisonError::into_inner);
    registered
        .iter()
        .filter(|(root, _)| path.starts_with(root))
        .max_by_key(|(root, _)| root.as_os_str().len())
        .map_or_else(|| Arc::new(OsFs) as Arc<dyn Fs>, |(_, fs)| fs.clone())
}

/// Serves every path under `root` with `fs` until the returned guard is dropped. Code
/// that already looked its `Fs` up (an open engine) keeps the one it found.
pub fn register(root: &Path, fs: Arc<dyn Fs>) -> Registered {
    let root = root.to_path_buf();
    registry()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((root.clone(), fs));
    Registered { root }
}

/// Keeps a [`register`]ed file system in place; dropping it removes the registration.
#[derive(Debug)]
#[must_use = "the registration ends when this is dropped"]
pub struct Registered {
    root: PathBuf,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut registered = registry().lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = registered.iter().rposition(|(root, _)| *root == self.root) {
            registered.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn the_longest_registered_prefix_serves_a_path() {
        #[derive(Debug)]
        struct Named;
        impl Fs for Named {
            fn create_dir_all(&self, _: &Path) -> io::Result<()> {
                Err(io::Error::other("named"))
            }
            fn create(&self, _: &Path) -> io::Result<Box<dyn FsFile>> {
                Err(io::Error::other("named"))
            }
            fn open_append(&self, _: &Path) -> io::Result<Box<dyn FsFile>> {
                Err(io::Error::other("named"))
            }
            fn rename(&self, _: &Path, _: &Path) -> io::Result<()> {
                Err(io::Error::other("named"))
            }
            fn remove_file(&self, _: &Path) -> io::Result<()> {
                Err(io::Error::other("named"))
            }
            fn sync_dir(&self, _: &Path) -> io::Result<()> {
                Err(io::Error::other("named"))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("a/b");
        let guard = register(&dir.path().join("a"), Arc::new(Named));
        assert!(fs_for(&inner).sync_dir(&inner).is_err());
        assert!(fs_for(dir.path()).create_dir_all(&inner).is_ok());
        drop(guard);
        assert!(fs_for(&inner).sync_dir(&inner).is_ok());
    }

    #[test]
    fn create_dir_durable_makes_missing_ancestors() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_durable(&OsFs, &deep).unwrap();
        assert!(deep.is_dir());
        create_dir_durable(&OsFs, &deep).unwrap();
    }

    #[test]
    fn replace_swaps_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        replace(&OsFs, dir.path(), "f", b"first version").unwrap();
        replace(&OsFs, dir.path(), "f", b"second").unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"second");
        assert!(!dir.path().join("f.tmp").exists());
    }

    #[test]
    fn os_files_append_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let fs = OsFs;
        let mut f = fs.create(&path).unwrap();
        f.write_all(b"hello world").unwrap();
        f.set_len(5).unwrap();
        f.write_all(b"!").unwrap();
        f.sync_data().unwrap();
        drop(f);
        let mut f = fs.open_append(&path).unwrap();
        f.write_all(b"?").unwrap();
        f.sync_all().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello!?");
        fs.rename(&path, &dir.path().join("g")).unwrap();
        fs.sync_dir(dir.path()).unwrap();
        fs.remove_file(&dir.path().join("g")).unwrap();
    }
}
