//! Manifest actions and the region state they build, pure (no I/O).
//!
//! Encodings are frozen: every action kind has a fixture in `tests/fixtures/` that must keep
//! decoding to the same value. Fields may be added with serde defaults, never renamed.

use std::collections::BTreeMap;

use mito_sst::{FileId, FileMeta};
use serde::{Deserialize, Serialize};
use store_api::metadata::RegionMetadata;
use store_api::{ColumnId, EntryId, RegionId, SequenceNumber};

/// One change to a region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// The region's metadata (create, alter).
    Change(RegionChange),
    /// Files added and removed (flush, compaction), with what they make durable.
    Edit(RegionEdit),
    /// Every file dropped; the WAL up to the entry is obsolete.
    Truncate(RegionTruncate),
    /// The region is dropped; its files are garbage.
    Remove(RegionRemove),
    /// The region's options (create, alter): the whole validated map from now on.
    Options(RegionOptionsChange),
}

/// New region options. The engine parses and validates them; the manifest keeps the map.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RegionOptionsChange {
    /// Every option set from now on (absent keys take their defaults).
    pub options: BTreeMap<String, String>,
}

/// New region metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionChange {
    /// The metadata from now on.
    pub metadata: RegionMetadata,
}

/// Files added and removed at once.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RegionEdit {
    /// Files written (by a flush or a compaction) that become visible.
    #[serde(default)]
    pub files_to_add: Vec<FileMeta>,
    /// Files no longer part of the region (compaction inputs, expired files).
    #[serde(default)]
    pub files_to_remove: Vec<FileId>,
    /// WAL entries up to this one are in SSTs (a flush).
    #[serde(default)]
    pub flushed_entry_id: Option<EntryId>,
    /// Rows up to this sequence are in SSTs (a flush).
    #[serde(default)]
    pub flushed_sequence: Option<SequenceNumber>,
    /// The compaction time window in seconds, once inferred or configured.
    #[serde(default)]
    pub compaction_time_window_secs: Option<u64>,
}

/// Truncation of the whole region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionTruncate {
    /// WAL entries up to this one are obsolete.
    pub truncated_entry_id: EntryId,
    /// Rows up to this sequence are gone.
    pub truncated_sequence: SequenceNumber,
}

/// Removal of the region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionRemove {
    /// The region removed.
    pub region_id: RegionId,
}

/// The state of a region the manifest describes at one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionManifest {
    /// The current metadata.
    pub metadata: RegionMetadata,
    /// The region's SST files by id.
    pub files: BTreeMap<FileId, FileMeta>,
    /// WAL entries up to this one are in SSTs or obsolete.
    pub flushed_entry_id: EntryId,
    /// Rows up to this sequence are in SSTs or truncated.
    pub flushed_sequence: SequenceNumber,
    /// The compaction time window in seconds, if known.
    pub compaction_time_window_secs: Option<u64>,
    /// The largest column id any schema of the region has used, once a schema changed (a
    /// dropped column's id is never reused: old files still hold it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_column_id: Option<ColumnId>,
    /// The region's options (`ttl`, `append_mode`, ...), as last set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// The entry id of the last truncate, if any.
    pub truncated_entry_id: Option<EntryId>,
    /// Whether the region was removed.
    pub removed: bool,
    /// The manifest version this state is at.
    pub manifest_version: u64,
}

/// Why an action cannot apply.
pub type ApplyError = String;

impl RegionManifest {
    /// The state of a new region.
    pub fn new(metadata: RegionMetadata) -> Self {
        Self {
            metadata,
            files: BTreeMap::new(),
            flushed_entry_id: 0,
            flushed_sequence: 0,
            compaction_time_window_secs: None,
            max_column_id: None,
            options: BTreeMap::new(),
            truncated_entry_id: None,
            removed: false,
            manifest_version: 0,
        }
    }

    /// The largest column id the region has ever used.
    pub fn used_column_id(&self) -> ColumnId {
        self.max_column_id
            .unwrap_or(0)
            .max(self.metadata.max_column_id())
    }

    /// The region id.
    pub fn region_id(&self) -> RegionId {
        self.metadata.region_id()
    }

    /// Applies the actions of `version` in order; on error the state is unchanged.
    pub fn apply(&mut self, version: u64, actions: &[Action]) -> Result<(), ApplyError> {
        if version <= self.manifest_version {
            return Err(format!(
                "version {version} does not follow the current version {}",
                self.manifest_version
            ));
        }
        let mut next = self.clone();
        for action in actions {
            next.apply_one(action)?;
        }
        next.manifest_version = version;
        *self = next;
        Ok(())
    }

    fn apply_one(&mut self, action: &Action) -> Result<(), ApplyError> {
        if self.removed {
            return Err("the region was removed".to_string());
        }
        match action {
            Action::Change(change) => {
                let m = &change.metadata;
                if m.region_id() != self.region_id() {
                    return Err(format!(
                        "metadata of region {} in the manifest of region {}",
                        m.region_id(),
                        self.region_id()
                    ));
                }
                if m.schema_version() < self.metadata.schema_version() {
                    return Err(format!(
                        "schema version {} is older than the current {}",
                        m.schema_version(),
                        self.metadata.schema_version()
                    ));
                }
                self.max_column_id = Some(self.used_column_id().max(m.max_column_id()));
                self.metadata = m.clone();
            }
            Action::Edit(edit) => {
                for id in &edit.files_to_remove {
                    // Removing a file that is already gone (truncated meanwhile) is a no-op.
                    self.files.remove(id);
                }
                for file in &edit.files_to_add {
                    if file.region_id != self.region_id() {
                        return Err(format!(
                            "file {} belongs to region {}",
                            file.file_id, file.region_id
                        ));
                    }
                    if file.time_range.min > file.time_range.max || file.num_rows == 0 {
                        return Err(format!(
                            "file {} has an empty time range or no rows",
                            file.file_id
                        ));
                    }
                    if self.files.insert(file.file_id, file.clone()).is_some() {
                        return Err(format!("file {} is added twice", file.file_id));
                    }
                }
                if let Some(e) = edit.flushed_entry_id {
                    self.flushed_entry_id = self.flushed_entry_id.max(e);
                }
                if let Some(s) = edit.flushed_sequence {
                    self.flushed_sequence = self.flushed_sequence.max(s);
                }
                if let Some(w) = edit.compaction_time_window_secs {
                    if w == 0 {
                        return Err("compaction time window of 0 s".to_string());
                    }
                    self.compaction_time_window_secs = Some(w);
                }
            }
            Action::Truncate(t) => {
                self.files.clear();
                self.flushed_entry_id = self.flushed_entry_id.max(t.truncated_entry_id);
                self.flushed_sequence = self.flushed_sequence.max(t.truncated_sequence);
                self.truncated_entry_id = Some(t.truncated_entry_id);
            }
            Action::Remove(r) => {
                if r.region_id != self.region_id() {
                    return Err(format!("removal of region {}", r.region_id));
                }
                self.removed = true;
            }
            Action::Options(o) => {
                self.options = o.options.clone();
            }
        }
        Ok(())
    }

    /// The state a first delta builds: it must start with a `Change`.
    pub fn from_first(version: u64, actions: &[Action]) -> Result<Self, ApplyError> {
        let Some(Action::Change(first)) = actions.first() else {
            return Err("the first manifest version does not start with a change".to_string());
        };
        let mut state = Self::new(first.metadata.clone());
        state.apply(version, actions.get(1..).unwrap_or_default())?;
        Ok(state)
    }

    /// Checks the invariants every state keeps (for tests and fuzzing).
    pub fn check_invariants(&self) -> Result<(), String> {
        for (id, f) in &self.files {
            if *id != f.file_id || f.region_id != self.region_id() {
                return Err(format!("file {id} misfiled"));
            }
            if f.time_range.min > f.time_range.max {
                return Err(format!("file {id} has an inverted time range"));
            }
        }
        Ok(())
    }
}
