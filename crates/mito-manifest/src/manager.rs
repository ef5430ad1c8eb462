//! Opens, updates and checkpoints a region's manifest on an object store.
//!
//! ```text
//!  {region_dir}manifest/
//!    00000000000000000011.json ... 00000000000000000020.json   deltas after the previous checkpoint
//!    00000000000000000010.checkpoint                          previous checkpoint (kept as a fallback)
//!    00000000000000000020.checkpoint                          latest checkpoint
//!    00000000000000000021.json ...                            deltas after it
//!    _last_checkpoint                                         -> version 20, size, CRC32C
//! ```
//!
//! Open takes the newest checkpoint that passes its checks (the pointer's, else any other,
//! newest first) and replays every later delta; the versions after the checkpoint must all be
//! there. A damaged delta refuses the open, naming the file: no complete state can be proven
//! without it. One checkpoint generation is kept so that a damaged latest checkpoint falls
//! back to the previous one plus the deltas since.

use std::collections::BTreeSet;

use opendal::{ErrorKind as OpendalErrorKind, Operator};
use snafu::{ResultExt, ensure};
use store_api::metadata::RegionMetadata;

use crate::action::{Action, RegionChange, RegionManifest};
use crate::error::{
    AlreadyExistsSnafu, CorruptedSnafu, EncodeSnafu, Error, IncompleteSnafu, InvalidActionSnafu,
    ObjectStoreSnafu, RemovedSnafu, Result, SyncSnafu,
};
use crate::format::{
    Checkpoint, Delta, Pointer, decode_checkpoint, decode_delta, decode_pointer, encode_checkpoint,
    encode_delta, encode_pointer,
};

/// The pointer file's name.
pub const POINTER_FILE: &str = "_last_checkpoint";

/// The manifest directory of a region directory (which ends with `/`).
pub fn manifest_dir(region_dir: &str) -> String {
    format!("{region_dir}manifest/")
}

fn delta_name(version: u64) -> String {
    format!("{version:020}.json")
}

fn checkpoint_name(version: u64) -> String {
    format!("{version:020}.checkpoint")
}

/// How the manifest is kept.
#[derive(Debug, Clone)]
pub struct ManifestOptions {
    /// Write a checkpoint every this many versions (0: never).
    pub checkpoint_distance: u64,
}

impl Default for ManifestOptions {
    fn default() -> Self {
        Self {
            checkpoint_distance: 10,
        }
    }
}

/// What the manifest directory holds, by version.
#[derive(Debug, Default)]
struct Listing {
    deltas: BTreeSet<u64>,
    checkpoints: BTreeSet<u64>,
    pointer: bool,
}

impl Listing {
    fn is_empty(&self) -> bool {
        self.deltas.is_empty() && self.checkpoints.is_empty() && !self.pointer
    }
}

/// The manifest of one region: its current state and the files behind it. One writer per
/// region: the engine serializes updates.
#[derive(Debug)]
pub struct RegionManifestManager {
    op: Operator,
    dir: String,
    options: ManifestOptions,
    state: RegionManifest,
    last_checkpoint: Option<u64>,
}

impl RegionManifestManager {
    /// Creates the manifest of a new region (version 1: its metadata). Fails if one exists.
    pub async fn create(
        op: Operator,
        region_dir: &str,
        metadata: RegionMetadata,
        options: ManifestOptions,
    ) -> Result<Self> {
        Self::create_with(op, region_dir, metadata, Vec::new(), options).await
    }

    /// Creates the manifest of a new region whose version 1 holds its metadata followed by
    /// `more` (its options, say), in one atomic write. Fails if one exists.
    pub async fn create_with(
        op: Operator,
        region_dir: &str,
        metadata: RegionMetadata,
        more: Vec<Action>,
        options: ManifestOptions,
    ) -> Result<Self> {
        let dir = manifest_dir(region_dir);
        let listing = list(&op, &dir).await?;
        ensure!(listing.is_empty(), AlreadyExistsSnafu { dir: &dir });
        let mut actions = vec![Action::Change(RegionChange {
            metadata: metadata.clone(),
        })];
        actions.extend(more);
        let state = RegionManifest::from_first(1, &actions).map_err(|reason| {
            InvalidActionSnafu {
                region_id: metadata.region_id(),
                version: 1u64,
                reason,
            }
            .build()
        })?;
        let path = format!("{dir}{}", delta_name(1));
        let bytes = encode_delta(&Delta {
            version: 1,
            actions,
        })
        .context(EncodeSnafu { path: &path })?;
        write(&op, &path, bytes).await?;
        Ok(Self {
            op,
            dir,
            options,
            state,
            last_checkpoint: None,
        })
    }

    /// Opens the manifest under `region_dir`; `None` if there is none.
    pub async fn open(
        op: Operator,
        region_dir: &str,
        options: ManifestOptions,
    ) -> Result<Option<Self>> {
        let dir = manifest_dir(region_dir);
        let listing = list(&op, &dir).await?;
        if listing.is_empty() {
            return Ok(None);
        }
        let (state, last_checkpoint) = recover(&op, &dir, &listing).await?;
        Ok(Some(Self {
            op,
            dir,
            options,
            state,
            last_checkpoint,
        }))
    }

    /// The current state.
    pub fn manifest(&self) -> &RegionManifest {
        &self.state
    }

    /// The current version.
    pub fn version(&self) -> u64 {
        self.state.manifest_version
    }

    /// The manifest directory.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// Appends the actions as the next version (one atomic object write) and applies them;
    /// checkpoints when due. Invalid actions change nothing.
    pub async fn update(&mut self, actions: Vec<Action>) -> Result<u64> {
        let region_id = self.state.region_id();
        ensure!(!self.state.removed, RemovedSnafu { region_id });
        let version = self.version() + 1;
        let mut next = self.state.clone();
        next.apply(version, &actions).map_err(|reason| {
            InvalidActionSnafu {
                region_id,
                version,
                reason,
            }
            .build()
        })?;
        let path = format!("{}{}", self.dir, delta_name(version));
        let exists = self
            .op
            .exists(&path)
            .await
            .context(ObjectStoreSnafu { path: &path })?;
        ensure!(!exists, AlreadyExistsSnafu { dir: &path });
        let bytes =
            encode_delta(&Delta { version, actions }).context(EncodeSnafu { path: &path })?;
        write(&self.op, &path, bytes).await?;
        self.state = next;
        let due = self.options.checkpoint_distance > 0
            && version - self.last_checkpoint.unwrap_or(0) >= self.options.checkpoint_distance;
        if due && let Err(e) = self.checkpoint().await {
            // The delta is durable; the next update tries again.
            tracing::warn!(region_id = %region_id, version, error = %e, "manifest checkpoint failed");
        }
        Ok(version)
    }

    /// Writes a checkpoint of the current state and its pointer, then deletes what the
    /// previous checkpoint made redundant.
    pub async fn checkpoint(&mut self) -> Result<()> {
        let version = self.version();
        if self.last_checkpoint == Some(version) {
            return Ok(());
        }
        let bytes = encode_checkpoint(&Checkpoint {
            state: self.state.clone(),
        })
        .context(EncodeSnafu {
            path: format!("{}{}", self.dir, checkpoint_name(version)),
        })?;
        let pointer = Pointer {
            version,
            size: bytes.len() as u64,
            checksum: crc32c::crc32c(&bytes),
        };
        write(
            &self.op,
            &format!("{}{}", self.dir, checkpoint_name(version)),
            bytes,
        )
        .await?;
        // Crash points for tests: a checkpoint written but not pointed to, and one pointed
        // to with its redundant files still there.
        fail::fail_point!("mito-manifest-checkpoint-before-pointer");
        let path = format!("{}{POINTER_FILE}", self.dir);
        let bytes = encode_pointer(&pointer).context(EncodeSnafu { path: &path })?;
        write(&self.op, &path, bytes).await?;
        fail::fail_point!("mito-manifest-checkpoint-before-purge");
        let previous = self.last_checkpoint.replace(version);
        if let Some(prev) = previous {
            self.purge(prev).await;
        }
        Ok(())
    }

    /// Deletes deltas up to `keep_from` and checkpoints older than it. Failures are logged:
    /// leftovers are deleted by a later purge.
    async fn purge(&self, keep_from: u64) {
        let listing = match list(&self.op, &self.dir).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(dir = %self.dir, error = %e, "listing the manifest for purge failed");
                return;
            }
        };
        let names = listing
            .deltas
            .iter()
            .filter(|v| **v <= keep_from)
            .map(|v| delta_name(*v))
            .chain(
                listing
                    .checkpoints
                    .iter()
                    .filter(|v| **v < keep_from)
                    .map(|v| checkpoint_name(*v)),
            );
        for name in names {
            let path = format!("{}{name}", self.dir);
            if let Err(e) = self.op.delete(&path).await {
                tracing::warn!(path, error = %e, "deleting an old manifest file failed");
            }
        }
    }
}

async fn list(op: &Operator, dir: &str) -> Result<Listing> {
    let entries = match op.list(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == OpendalErrorKind::NotFound => return Ok(Listing::default()),
        Err(e) => return Err(e).context(ObjectStoreSnafu { path: dir }),
    };
    let mut listing = Listing::default();
    for entry in entries {
        let name = entry.name();
        if name == POINTER_FILE {
            listing.pointer = true;
        } else if let Some(v) = name.strip_suffix(".json").and_then(parse_version) {
            listing.deltas.insert(v);
        } else if let Some(v) = name.strip_suffix(".checkpoint").and_then(parse_version) {
            listing.checkpoints.insert(v);
        }
    }
    Ok(listing)
}

fn parse_version(s: &str) -> Option<u64> {
    (s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Writes a manifest file (staged and renamed into place by the fs backend) and makes its
/// name durable before the caller counts on it.
async fn write(op: &Operator, path: &str, bytes: Vec<u8>) -> Result<()> {
    op.write(path, bytes)
        .await
        .context(ObjectStoreSnafu { path })?;
    mito_sst::store::sync_dirs(op, path)
        .await
        .context(SyncSnafu { path })?;
    Ok(())
}

async fn read(op: &Operator, path: &str) -> Result<Vec<u8>> {
    Ok(op
        .read(path)
        .await
        .context(ObjectStoreSnafu { path })?
        .to_vec())
}

/// Reads and checks checkpoint `version`, against the pointer when it names it.
async fn load_checkpoint(
    op: &Operator,
    dir: &str,
    version: u64,
    pointer: Option<Pointer>,
) -> Result<RegionManifest> {
    let path = format!("{dir}{}", checkpoint_name(version));
    let bytes = read(op, &path).await?;
    let corrupted = |reason: String| {
        CorruptedSnafu {
            path: &path,
            reason,
        }
        .build()
    };
    if let Some(p) = pointer.filter(|p| p.version == version) {
        let crc = crc32c::crc32c(&bytes);
        if p.size != bytes.len() as u64 || p.checksum != crc {
            return Err(corrupted(format!(
                "{} bytes with checksum {crc:#010x}; {POINTER_FILE} says {} bytes, {:#010x}",
                bytes.len(),
                p.size,
                p.checksum
            )));
        }
    }
    let cp = decode_checkpoint(&bytes).map_err(corrupted)?;
    if cp.state.manifest_version != version {
        return Err(corrupted(format!(
            "holds version {}",
            cp.state.manifest_version
        )));
    }
    Ok(cp.state)
}

/// Rebuilds the state: the newest usable checkpoint, then every later delta.
async fn recover(
    op: &Operator,
    dir: &str,
    listing: &Listing,
) -> Result<(RegionManifest, Option<u64>)> {
    let pointer = if listing.pointer {
        let path = format!("{dir}{POINTER_FILE}");
        match read(op, &path).await.and_then(|b| {
            decode_pointer(&b).map_err(|reason| {
                CorruptedSnafu {
                    path: &path,
                    reason,
                }
                .build()
            })
        }) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "manifest pointer unusable; looking for checkpoints");
                None
            }
        }
    } else {
        None
    };
    // Candidate bases, newest first; `None` = replay from the first delta.
    let mut candidates: Vec<Option<u64>> =
        listing.checkpoints.iter().rev().map(|v| Some(*v)).collect();
    candidates.push(None);
    let max_delta = listing.deltas.last().copied().unwrap_or(0);
    let mut last_error: Option<Error> = None;
    for candidate in candidates {
        let (base, from) = match candidate {
            Some(v) => match load_checkpoint(op, dir, v, pointer).await {
                Ok(state) => (Some(state), v),
                Err(e) => {
                    tracing::warn!(error = %e, "manifest checkpoint unusable; trying an older one");
                    last_error = Some(e);
                    continue;
                }
            },
            None => (None, 0),
        };
        // Every version after the base must be there.
        if let Some(missing) = (from + 1..=max_delta).find(|v| !listing.deltas.contains(v)) {
            last_error = Some(
                IncompleteSnafu {
                    dir,
                    reason: format!(
                        "delta {} is missing after the base at version {from}",
                        delta_name(missing)
                    ),
                }
                .build(),
            );
            continue;
        }
        let mut state = base;
        for v in from + 1..=max_delta {
            let path = format!("{dir}{}", delta_name(v));
            let bytes = read(op, &path).await?;
            let delta = decode_delta(&bytes).map_err(|reason| {
                CorruptedSnafu {
                    path: &path,
                    reason,
                }
                .build()
            })?;
            ensure!(
                delta.version == v,
                CorruptedSnafu {
                    path: &path,
                    reason: format!("holds version {}", delta.version),
                }
            );
            let invalid = |reason: String| {
                CorruptedSnafu {
                    path: &path,
                    reason,
                }
                .build()
            };
            state = Some(match state {
                None => RegionManifest::from_first(v, &delta.actions).map_err(invalid)?,
                Some(mut s) => {
                    s.apply(v, &delta.actions).map_err(invalid)?;
                    s
                }
            });
        }
        if let Some(state) = state {
            return Ok((state, candidate));
        }
    }
    Err(last_error.unwrap_or_else(|| {
        IncompleteSnafu {
            dir,
            reason: "no checkpoint and no delta".to_string(),
        }
        .build()
    }))
}
