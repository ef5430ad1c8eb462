//! Opening a WAL directory: read every segment in order, rebuild the index, cut a torn tail.

use std::path::Path;
use std::sync::Arc;

use mito_fs::Fs;
use snafu::ResultExt;
use tracing::{info, warn};

use super::format::{self, HEADER_LEN, HeaderError, Tail};
use super::index::Index;
use super::list::{self, LIST_FILE, ListFile, SegmentList};
use super::segment::{
    CREATING_SUFFIX, create_segment, open_for_append, parse_segment_name, read_segment,
    segment_path, sync_dir,
};
use crate::error::{IoSnafu, Result, SegmentMissingSnafu, corrupted};

/// The state found in a WAL directory.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) index: Index,
    /// The segment appends continue in, opened at its valid end; `None` when read-only.
    pub(crate) active: Option<Active>,
    /// The directory's segment list as written at the end of the open; `None` when
    /// read-only.
    pub(crate) list: Option<ListFile>,
}

/// The segment appends continue in.
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) file: Box<dyn mito_fs::FsFile>,
    pub(crate) id: u64,
    pub(crate) size: u64,
    pub(crate) has_records: bool,
}

/// Reads the WAL in `dir` (which the caller created, durably). Damage anywhere but the tail
/// of the last segment is an error naming the file and offset. `read_only` changes nothing on disk: a
/// torn tail is left in place (and not read), a half-created segment stays, no segment is
/// created or sealed.
pub(crate) fn recover(shared: &Arc<dyn Fs>, dir: &Path, read_only: bool) -> Result<Recovered> {
    let fs: &dyn Fs = &**shared;
    let mut ids = Vec::new();
    let mut removed_creating = false;
    for entry in std::fs::read_dir(dir).context(IoSnafu {
        path: dir,
        op: "list WAL directory",
    })? {
        let entry = entry.context(IoSnafu {
            path: dir,
            op: "list WAL directory",
        })?;
        let name = entry.file_name();
        let creating = name
            .to_str()
            .and_then(|n| n.strip_suffix(CREATING_SUFFIX))
            .and_then(parse_segment_name);
        if creating.is_some() {
            if read_only {
                continue;
            }
            // A crash while creating a segment: it never held a record.
            let path = entry.path();
            warn!(path = %path.display(), "removing a WAL segment left half created by a crash");
            fs.remove_file(&path).context(IoSnafu {
                path: &path,
                op: "remove half-created segment",
            })?;
            removed_creating = true;
            continue;
        }
        match name.to_str().and_then(parse_segment_name) {
            Some(id) => ids.push(id),
            None if !is_known_file(&name) => {
                warn!(dir = %dir.display(), file = ?name, "ignoring a file that is not a WAL segment");
            }
            None => {}
        }
    }
    if removed_creating {
        sync_dir(fs, dir)?;
    }
    ids.sort_unstable();
    let listed = list::read_list(dir)?;
    if let Some(listed) = &listed {
        ids = check_against_list(fs, dir, ids, listed, read_only)?;
    }
    let next_id = listed.as_ref().map_or(1, |l| l.next_id.max(1));

    let mut index = Index::default();
    let mut active = None;
    let n = ids.len();
    for (i, id) in ids.into_iter().enumerate() {
        let is_last = i + 1 == n;
        let path = segment_path(dir, id);
        let bytes = read_segment(dir, id, None)?;
        let scan = match format::scan_segment(&bytes) {
            Ok(scan) => scan,
            Err(HeaderError::Incomplete { len }) => {
                // Segments are named only once their header is synced (`create_segment`), so
                // a short one lost bytes it had: its records, if any, are gone.
                return Err(corrupted(
                    &path,
                    len,
                    format!(
                        "segment header incomplete ({len} of {HEADER_LEN} bytes): the file was \
                         emptied or cut, and whatever it held is lost; (a directory last \
                         written before WAL format 2 can also show this after a crash while \
                         creating its last segment; then deleting that file recovers)"
                    ),
                ));
            }
            Err(e) => return Err(corrupted(&path, 0, e.to_string())),
        };
        if scan.header.segment_id != id {
            return Err(corrupted(
                &path,
                12,
                format!(
                    "header names segment {} but the file name says {id}",
                    scan.header.segment_id
                ),
            ));
        }
        match scan.tail {
            Tail::Clean => {}
            Tail::Torn { offset, damage } if is_last && read_only => {
                warn!(
                    path = %path.display(),
                    offset,
                    ignored_bytes = bytes.len() - offset,
                    %damage,
                    "ignoring the torn tail of the last WAL segment (read-only: left in place)"
                );
            }
            Tail::Torn { offset, damage } if is_last => {
                warn!(
                    path = %path.display(),
                    offset,
                    dropped_bytes = bytes.len() - offset,
                    %damage,
                    "dropping the torn tail of the last WAL segment"
                );
            }
            Tail::Torn { offset, damage } => {
                return Err(corrupted(
                    &path,
                    offset,
                    format!("{damage} in a segment that is not the last one"),
                ));
            }
            Tail::Corrupt {
                offset,
                damage,
                next_valid,
            } => {
                let after = match next_valid {
                    Some(next) => format!("followed by a valid record at offset {next}"),
                    None => "and the search for later valid records gave up".to_string(),
                };
                return Err(corrupted(&path, offset, format!("{damage}, {after}")));
            }
        }
        for r in &scan.records {
            index.add(id, r.region_id, r.entry_id);
        }
        index.segments.entry(id).or_default().size = scan.valid_end as u64;
        if is_last && !read_only {
            let file = open_for_append(fs, dir, id, scan.valid_end as u64)?;
            if scan.header.version == format::FORMAT_VERSION {
                active = Some(Active {
                    file,
                    id,
                    size: scan.valid_end as u64,
                    has_records: !scan.records.is_empty(),
                });
            } else {
                // Records of the current version never go into an older segment: seal it
                // (its torn tail is cut) and continue in a new one.
                drop(file);
                let next = (id + 1).max(next_id);
                info!(
                    path = %path.display(),
                    version = scan.header.version,
                    "sealing a WAL segment of an older format version; appends go to a new one"
                );
                active = Some(new_active(fs, dir, next, &mut index)?);
            }
        }
    }

    let active = match active {
        Some(a) => Some(a),
        None if read_only => None,
        None => Some(new_active(fs, dir, next_id, &mut index)?),
    };
    let list = match &active {
        Some(a) => Some(store_list(
            shared.clone(),
            dir,
            listed,
            next_id.max(a.id + 1),
            &index,
        )?),
        None => None,
    };
    info!(
        dir = %dir.display(),
        segments = index.segments.len(),
        regions = index.last_entry.len(),
        active = ?active.as_ref().map(|a| a.id),
        read_only,
        "opened WAL"
    );
    Ok(Recovered {
        index,
        active,
        list,
    })
}

/// Files of a WAL directory that are not segments.
fn is_known_file(name: &std::ffi::OsStr) -> bool {
    let tmp = format!("{LIST_FILE}.tmp");
    name == super::segment::LOCK_FILE || name == LIST_FILE || name == tmp.as_str()
}

/// Holds the segments found (`ids`, sorted) against the directory's list: a listed segment
/// that is missing is an error; an unlisted one below `next_id` is a purge a crash
/// interrupted (removed, or skipped when read-only); an unlisted one at or above `next_id`
/// was created just before a crash, before it was listed and so before any record reached
/// it. Returns the segments to read.
fn check_against_list(
    fs: &dyn Fs,
    dir: &Path,
    ids: Vec<u64>,
    listed: &SegmentList,
    read_only: bool,
) -> Result<Vec<u64>> {
    if let Some(missing) = listed.live.iter().find(|id| ids.binary_search(id).is_err()) {
        return SegmentMissingSnafu {
            path: segment_path(dir, *missing),
            list: dir.join(LIST_FILE),
        }
        .fail();
    }
    let (keep, purged): (Vec<u64>, Vec<u64>) = ids
        .into_iter()
        .partition(|id| listed.live.contains(id) || *id >= listed.next_id);
    if purged.is_empty() || read_only {
        return Ok(keep);
    }
    warn!(dir = %dir.display(), segments = ?purged, "finishing a WAL purge a crash interrupted");
    super::delete_segments(fs, dir, purged)?;
    Ok(keep)
}

/// Writes the segment list for the segments now in `index` (unless the file already says
/// so) and returns it for the store to keep up to date.
fn store_list(
    fs: Arc<dyn Fs>,
    dir: &Path,
    listed: Option<SegmentList>,
    next_id: u64,
    index: &Index,
) -> Result<ListFile> {
    let list = SegmentList {
        next_id,
        live: index.segments.keys().copied().collect(),
    };
    let file = ListFile::new(fs, dir.to_path_buf(), list);
    if listed.as_ref() != Some(file.list()) {
        if listed.is_none() {
            info!(dir = %dir.display(), "writing the WAL segment list ({LIST_FILE})");
        }
        file.store()?;
    }
    Ok(file)
}

/// Creates segment `id` (header only) as the one appends go to, and records it in `index`.
fn new_active(fs: &dyn Fs, dir: &Path, id: u64, index: &mut Index) -> Result<Active> {
    let file = create_segment(fs, dir, id)?;
    index.segments.entry(id).or_default().size = HEADER_LEN as u64;
    Ok(Active {
        file,
        id,
        size: HEADER_LEN as u64,
        has_records: false,
    })
}
