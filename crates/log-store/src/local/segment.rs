//! Segment files on disk: names, creation, reading. Blocking I/O; callers run it off the
//! async runtime.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use mito_fs::{Fs, FsFile};

use snafu::ResultExt;

use super::format::encode_header;
use crate::error::{IoSnafu, Result};

/// Extension of segment files.
pub(crate) const SEGMENT_EXT: &str = "wal";
/// Name of the lock file that keeps two stores out of one directory.
pub const LOCK_FILE: &str = "LOCK";

/// Path of segment `id`: `{id:020}.wal`.
pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.{SEGMENT_EXT}"))
}

/// The segment id of a file name, if it is a segment's name.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".wal")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Suffix of a segment being created: it gets its header, is synced, and only then takes
/// its final name, so a file with a segment's name always has a whole header.
pub(crate) const CREATING_SUFFIX: &str = ".creating";

/// Creates segment `id` holding only its header, durably: the header is written and synced
/// under a temporary name, renamed into place, and the directory synced. A segment whose
/// header is missing or short is therefore damage, never a crash while creating it.
pub(crate) fn create_segment(fs: &dyn Fs, dir: &Path, id: u64) -> Result<Box<dyn FsFile>> {
    let path = segment_path(dir, id);
    let tmp = creating_path(dir, id);
    let mut file = fs.create(&tmp).context(IoSnafu {
        path: &tmp,
        op: "create segment",
    })?;
    file.write_all(&encode_header(id)).context(IoSnafu {
        path: &tmp,
        op: "write segment header",
    })?;
    file.sync_all().context(IoSnafu {
        path: &tmp,
        op: "fsync new segment",
    })?;
    fs.rename(&tmp, &path).context(IoSnafu {
        path: &path,
        op: "rename new segment into place",
    })?;
    sync_dir(fs, dir)?;
    Ok(file)
}

/// Path of segment `id` while it is created.
pub(crate) fn creating_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.{SEGMENT_EXT}{CREATING_SUFFIX}"))
}

/// Opens segment `id` for appending after its first `valid_len` bytes, cutting anything
/// after them (a torn tail) durably first.
pub(crate) fn open_for_append(
    fs: &dyn Fs,
    dir: &Path,
    id: u64,
    valid_len: u64,
) -> Result<Box<dyn FsFile>> {
    let path = segment_path(dir, id);
    let len = std::fs::metadata(&path)
        .context(IoSnafu {
            path: &path,
            op: "stat segment",
        })?
        .len();
    let mut file = fs.open_append(&path).context(IoSnafu {
        path: &path,
        op: "open segment",
    })?;
    if len != valid_len {
        file.set_len(valid_len).context(IoSnafu {
            path: &path,
            op: "truncate torn tail",
        })?;
        file.sync_all().context(IoSnafu {
            path: &path,
            op: "fsync truncated segment",
        })?;
    }
    Ok(file)
}

/// Reads segment `id`: the whole file, or its first `limit` bytes.
pub(crate) fn read_segment(dir: &Path, id: u64, limit: Option<u64>) -> Result<Vec<u8>> {
    let path = segment_path(dir, id);
    let (file, len) = open_with_len(&path, OpenOptions::new().read(true))?;
    let want = limit.map_or(len, |l| l.min(len));
    let mut buf = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
    file.take(want).read_to_end(&mut buf).context(IoSnafu {
        path: &path,
        op: "read segment",
    })?;
    Ok(buf)
}

/// Opens `path` with `options`; returns the file and its length.
fn open_with_len(path: &Path, options: &OpenOptions) -> Result<(File, u64)> {
    let file = options.open(path).context(IoSnafu {
        path,
        op: "open segment",
    })?;
    let len = file
        .metadata()
        .context(IoSnafu {
            path,
            op: "stat segment",
        })?
        .len();
    Ok((file, len))
}

/// Makes the directory's entries (created or removed files) durable.
pub(crate) fn sync_dir(fs: &dyn Fs, dir: &Path) -> Result<()> {
    fs.sync_dir(dir).context(IoSnafu {
        path: dir,
        op: "fsync directory",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        let p = segment_path(Path::new("/w"), 42);
        assert_eq!(p, Path::new("/w/00000000000000000042.wal"));
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_segment_name(name), Some(42));
        assert_eq!(parse_segment_name("42.wal"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.wal"), None);
        assert_eq!(parse_segment_name("00000000000000000042.wal.tmp"), None);
        assert_eq!(parse_segment_name(LOCK_FILE), None);
    }
}
