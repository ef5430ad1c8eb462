//! Configuration of the local WAL.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use store_api::config::ReadableSize;

use crate::error::{InvalidConfigSnafu, Result};

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// fsync before the append returns: an acknowledged entry survives power loss. Group
    /// commit shares one fsync among every append waiting at the time. The default.
    #[default]
    Sync,
    /// Acknowledge once the entry is written to the OS; fsync every `interval`. A power loss
    /// may lose the last interval, and what survives is a prefix of the appends. A process
    /// crash loses nothing.
    Periodic {
        /// Time between fsyncs, e.g. `"1s"`.
        #[serde(with = "humantime_serde")]
        interval: Duration,
    },
}

/// Largest entry any store accepts: what a record of the segment format can hold (1 GiB
/// of payload less its 16-byte region and entry id prefix; `local::format` is built on it).
pub const MAX_ENTRY_LEN: usize = (1 << 30) - 16;

/// Configuration of a [`LocalLogStore`](crate::LocalLogStore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WalConfig {
    /// Directory of the segment files. Default `wal`.
    pub dir: PathBuf,
    /// A segment is closed and a new one started once it passes this size. Default 64MiB;
    /// 1MiB to 4GiB.
    pub segment_size: ReadableSize,
    /// When appends are acknowledged. Default `sync`.
    pub durability: Durability,
    /// Largest entry payload accepted; bigger appends are rejected. Default 64MiB; at most 1GiB.
    pub max_entry_size: ReadableSize,
    /// Upper bound of bytes gathered into one write and fsync by group commit. Default 8MiB.
    pub max_group_size: ReadableSize,
    /// Open to read only: nothing on disk changes (no torn tail cut, no segment created or
    /// removed, no purge), so a reader works on a full or read-only disk; appends fail with
    /// a `ReadOnly` error. Default false.
    pub read_only: bool,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("wal"),
            segment_size: ReadableSize::mib(64),
            durability: Durability::Sync,
            max_entry_size: ReadableSize::mib(64),
            max_group_size: ReadableSize::mib(8),
            read_only: false,
        }
    }
}

impl WalConfig {
    /// The default config over `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            ..Self::default()
        }
    }

    /// Checks the values; clamps what has a safe nearest value, rejects the rest.
    pub fn sanitize(&mut self) -> Result<()> {
        let min_seg = ReadableSize::mib(1);
        let max_seg = ReadableSize::gib(4);
        self.segment_size = self.segment_size.clamp(min_seg, max_seg);
        let max_entry = MAX_ENTRY_LEN as u64;
        if self.max_entry_size.as_bytes() == 0 || self.max_entry_size.as_bytes() > max_entry {
            return InvalidConfigSnafu {
                reason: format!(
                    "max_entry_size {} must be between 1B and {}",
                    self.max_entry_size,
                    ReadableSize(max_entry)
                ),
            }
            .fail();
        }
        if self.max_group_size.as_bytes() == 0 {
            self.max_group_size = ReadableSize::mib(8);
        }
        if let Durability::Periodic { interval } = &mut self.durability {
            *interval = (*interval).max(Duration::from_millis(1));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe() {
        let c = WalConfig::default();
        assert_eq!(c.durability, Durability::Sync);
        assert_eq!(c.segment_size, ReadableSize::mib(64));
    }

    #[test]
    fn sanitize_clamps_and_rejects() {
        let mut c = WalConfig::new("/tmp/x");
        c.segment_size = ReadableSize(10);
        c.durability = Durability::Periodic {
            interval: Duration::ZERO,
        };
        c.sanitize().unwrap();
        assert_eq!(c.segment_size, ReadableSize::mib(1));
        assert_eq!(
            c.durability,
            Durability::Periodic {
                interval: Duration::from_millis(1)
            }
        );

        c.max_entry_size = ReadableSize::gib(2);
        let err = c.sanitize().unwrap_err();
        assert!(err.to_string().contains("max_entry_size 2GiB"), "{err}");
    }

    #[test]
    fn parses_from_json_with_human_units() {
        let c: WalConfig = serde_json::from_str(
            r#"{"dir":"/data/wal","segment_size":"128MiB","durability":{"periodic":{"interval":"250ms"}}}"#,
        )
        .unwrap();
        assert_eq!(c.segment_size, ReadableSize::mib(128));
        assert_eq!(
            c.durability,
            Durability::Periodic {
                interval: Duration::from_millis(250)
            }
        );
        assert_eq!(c.max_entry_size, ReadableSize::mib(64));
    }
}
