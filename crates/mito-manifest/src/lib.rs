//! The region manifest: the single source of truth for a region's metadata and files.
//!
//! ```text
//!  update(actions) ──► {version:020}.json (one atomic put) ──► state.apply(actions)
//!                        every N versions: {version:020}.checkpoint + _last_checkpoint
//!  open ──► newest checkpoint that passes its checks + every later delta ──► RegionManifest
//! ```
//!
//! [`action`] and [`format`](mod@format) are pure; [`manager`] does the I/O through an opendal operator.

pub mod action;
pub mod error;
pub mod format;
pub mod manager;

pub use action::{
    Action, RegionChange, RegionEdit, RegionManifest, RegionOptionsChange, RegionRemove,
    RegionTruncate,
};
pub use manager::{ManifestOptions, RegionManifestManager, manifest_dir};
