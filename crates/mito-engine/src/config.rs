//! The engine's configuration: one serde struct with documented defaults and a `sanitize`
//! step that replaces what cannot work with what can, saying so in the log.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use store_api::config::ReadableSize;

use crate::error::{InvalidConfigSnafu, Result};

/// Configuration of a `MitoEngine`. Every field has a default (`#[serde(default)]`), so a
/// config file names only what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MitoConfig {
    /// Open to read only (set by the command, not by a config file): regions open and scan,
    /// every request that would write is refused with `ReadOnly`, and opening changes nothing
    /// on disk (no orphan or staging cleanup, no WAL truncation, purge or new segment).
    #[serde(skip)]
    pub read_only: bool,
    /// Region workers: tokio tasks that own regions and serialize their writes. Default: the
    /// number of CPUs, at least 1 and at most 64.
    pub num_workers: usize,
    /// Requests a worker takes from its channel at once (one WAL append per group).
    /// Default 64.
    pub worker_request_batch: usize,
    /// Capacity of each worker's request channel. Default 2048.
    pub worker_channel_size: usize,
    /// Limit of memtable bytes across the engine. Above half of it the largest regions flush;
    /// above it writers stall; above twice it writes are rejected. Default min(RAM / 8, 1GiB).
    pub global_write_buffer_size: ReadableSize,
    /// A region whose mutable memtable passes this size flushes. Default 1/8 of the global
    /// write buffer.
    pub region_write_buffer_size: ReadableSize,
    /// Regions with unflushed data and no write for this long flush. Default 30m.
    #[serde(with = "humantime_serde")]
    pub auto_flush_interval: Duration,
    /// Write-amplification guard: at most this many flushes run at once. Default num_workers.
    pub max_background_flushes: usize,
    /// At most this many compactions run at once in the engine (one per region). Default 1.
    pub max_background_compactions: usize,
    /// Threads of the compaction runtime (merges run there, not on the caller's runtime).
    /// Default 1.
    pub compaction_threads: usize,
    /// Nice value of the compaction threads (Linux; 0..=19, higher is lower priority): writes,
    /// flushes and scans get the CPU first, compaction catches up when they leave some. 0 runs
    /// compaction at the process's priority. Default 10.
    pub compaction_nice: i32,
    /// Compact after flushes on the engine's own initiative. With `false` only `Compact`
    /// requests compact (bulk loads, benchmarks). Default true.
    pub auto_compaction: bool,
    /// Byte limit of the SST metadata cache. Default 64MiB.
    pub sst_meta_cache_size: ReadableSize,
    /// Byte limit of the page cache: verified, still compressed column-chunk bytes of SSTs.
    /// Default 256MiB.
    pub page_cache_size: ReadableSize,
    /// Byte limit of the column cache: decoded columns of whole SST row groups, so a repeated
    /// read decodes nothing. Default min(RAM / 16, 2GiB), 512MiB when the RAM size is unknown.
    pub column_cache_size: ReadableSize,
    /// Manifest versions between checkpoints. Default 10.
    pub manifest_checkpoint_distance: u64,
    /// Rows per row group in SSTs. Default 100000.
    pub sst_row_group_size: usize,
    /// Rows per data page in SSTs: the granularity of page pruning, so about what a read of
    /// one series decodes per column. Default 8192.
    pub sst_page_rows: usize,
    /// Rows per batch returned by scans. Default 8192.
    pub scan_batch_rows: usize,
    /// Largest encoded write request (one WAL entry); bigger requests are refused before the
    /// WAL. Must stay below the WAL's `max_entry_size`. Default 32MiB.
    pub max_write_bytes: ReadableSize,
}

/// Upper bound of `num_workers`.
pub const MAX_WORKERS: usize = 64;

impl Default for MitoConfig {
    fn default() -> Self {
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_WORKERS);
        let memory = total_memory();
        let buffer = default_global_write_buffer(memory);
        Self {
            num_workers: workers,
            worker_request_batch: 64,
            worker_channel_size: 2048,
            global_write_buffer_size: buffer,
            region_write_buffer_size: ReadableSize(buffer.as_bytes() / 8),
            auto_flush_interval: Duration::from_secs(30 * 60),
            max_background_flushes: workers,
            max_background_compactions: 1,
            compaction_threads: 1,
            compaction_nice: 10,
            auto_compaction: true,
            sst_meta_cache_size: ReadableSize::mib(64),
            page_cache_size: ReadableSize::mib(256),
            column_cache_size: default_column_cache(memory),
            manifest_checkpoint_distance: 10,
            sst_row_group_size: 100_000,
            sst_page_rows: 8192,
            scan_batch_rows: 8192,
            max_write_bytes: ReadableSize::mib(32),
            read_only: false,
        }
    }
}

/// min(RAM / 8, 1GiB), and 1GiB when the RAM size is unknown.
pub fn default_global_write_buffer(total_memory: Option<u64>) -> ReadableSize {
    let cap = ReadableSize::gib(1).as_bytes();
    ReadableSize(total_memory.map_or(cap, |m| (m / 8).min(cap)))
}

/// min(RAM / 16, 2GiB), and 512MiB when the RAM size is unknown. With 512MiB on the bench
/// machine (24GiB) the column cache was full after the bench's first six queries, and its
/// admission policy turned the next query's columns away for three runs.
pub fn default_column_cache(total_memory: Option<u64>) -> ReadableSize {
    let cap = ReadableSize::gib(2).as_bytes();
    total_memory.map_or(ReadableSize::mib(512), |m| ReadableSize((m / 16).min(cap)))
}

/// Total memory from `/proc/meminfo`, if readable.
pub fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&text)
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

impl MitoConfig {
    /// Makes the config usable: zero or oversized values are replaced by the nearest working
    /// one (logged); contradictions that cannot be fixed are errors.
    pub fn sanitize(&mut self) -> Result<()> {
        let defaults = Self::default();
        let fix = |name: &str, ok: bool, set: &mut dyn FnMut()| {
            if !ok {
                set();
                tracing::warn!(
                    option = name,
                    "invalid engine option replaced by its default"
                );
            }
        };
        fix(
            "num_workers",
            (1..=MAX_WORKERS).contains(&self.num_workers),
            &mut || {
                self.num_workers = self.num_workers.clamp(1, MAX_WORKERS);
            },
        );
        let workers = self.num_workers;
        fix(
            "worker_request_batch",
            self.worker_request_batch > 0,
            &mut || {
                self.worker_request_batch = defaults.worker_request_batch;
            },
        );
        fix(
            "worker_channel_size",
            self.worker_channel_size > 0,
            &mut || {
                self.worker_channel_size = defaults.worker_channel_size;
            },
        );
        fix(
            "max_background_compactions",
            self.max_background_compactions > 0,
            &mut || {
                self.max_background_compactions = 1;
            },
        );
        fix(
            "compaction_threads",
            (1..=MAX_WORKERS).contains(&self.compaction_threads),
            &mut || {
                self.compaction_threads = self.compaction_threads.clamp(1, MAX_WORKERS);
            },
        );
        fix(
            "compaction_nice",
            (0..=crate::background::MAX_NICE).contains(&self.compaction_nice),
            &mut || {
                self.compaction_nice = self.compaction_nice.clamp(0, crate::background::MAX_NICE);
            },
        );
        fix(
            "max_background_flushes",
            self.max_background_flushes > 0,
            &mut || {
                self.max_background_flushes = workers;
            },
        );
        fix(
            "manifest_checkpoint_distance",
            self.manifest_checkpoint_distance > 0,
            &mut || {
                self.manifest_checkpoint_distance = defaults.manifest_checkpoint_distance;
            },
        );
        fix(
            "sst_row_group_size",
            self.sst_row_group_size >= 1024,
            &mut || {
                self.sst_row_group_size = self.sst_row_group_size.max(1024);
            },
        );
        fix(
            "sst_page_rows",
            (64..=self.sst_row_group_size).contains(&self.sst_page_rows),
            &mut || {
                self.sst_page_rows = self.sst_page_rows.clamp(64, self.sst_row_group_size);
            },
        );
        fix("scan_batch_rows", self.scan_batch_rows > 0, &mut || {
            self.scan_batch_rows = defaults.scan_batch_rows;
        });
        fix(
            "max_write_bytes",
            (1024..=ReadableSize::gib(1).as_bytes()).contains(&self.max_write_bytes.as_bytes()),
            &mut || {
                self.max_write_bytes = defaults.max_write_bytes;
            },
        );
        if self.global_write_buffer_size.as_bytes() < ReadableSize::mib(1).as_bytes() {
            return InvalidConfigSnafu {
                reason: format!(
                    "global_write_buffer_size {} is below 1MiB",
                    self.global_write_buffer_size
                ),
            }
            .fail();
        }
        let global = self.global_write_buffer_size.as_bytes();
        fix(
            "region_write_buffer_size",
            (1..=global).contains(&self.region_write_buffer_size.as_bytes()),
            &mut || self.region_write_buffer_size = ReadableSize(global / 8),
        );
        if self.auto_flush_interval.is_zero() {
            return InvalidConfigSnafu {
                reason: "auto_flush_interval is 0".to_string(),
            }
            .fail();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_machine() {
        assert_eq!(
            default_global_write_buffer(Some(24 << 30)),
            ReadableSize::gib(1)
        );
        assert_eq!(
            default_global_write_buffer(Some(4 << 30)),
            ReadableSize::mib(512)
        );
        assert_eq!(default_global_write_buffer(None), ReadableSize::gib(1));
        assert_eq!(
            default_column_cache(Some(24 << 30)),
            ReadableSize::mib(1536)
        );
        assert_eq!(default_column_cache(Some(64 << 30)), ReadableSize::gib(2));
        assert_eq!(default_column_cache(None), ReadableSize::mib(512));
        assert_eq!(
            parse_mem_total("MemFree: 1 kB\nMemTotal:       24576 kB\n"),
            Some(24576 * 1024)
        );
        assert_eq!(parse_mem_total("garbage"), None);
        let c = MitoConfig::default();
        assert!((1..=MAX_WORKERS).contains(&c.num_workers));
        assert_eq!(
            c.region_write_buffer_size.as_bytes() * 8,
            c.global_write_buffer_size.as_bytes()
        );
        let mut d = c.clone();
        d.sanitize().unwrap();
        assert_eq!(c, d, "defaults are already sane");
    }

    #[test]
    fn sanitize_fixes_what_it_can_and_refuses_the_rest() {
        let mut c = MitoConfig {
            num_workers: 0,
            worker_request_batch: 0,
            max_background_flushes: 0,
            region_write_buffer_size: ReadableSize(0),
            sst_row_group_size: 10,
            sst_page_rows: 1,
            compaction_threads: 0,
            compaction_nice: 40,
            ..MitoConfig::default()
        };
        c.sanitize().unwrap();
        assert_eq!(c.compaction_threads, 1);
        assert_eq!(c.compaction_nice, 19);
        assert_eq!(c.num_workers, 1);
        assert_eq!(c.max_background_flushes, 1);
        assert!(c.worker_request_batch > 0);
        assert_eq!(c.sst_row_group_size, 1024);
        assert_eq!(c.sst_page_rows, 64);
        assert_eq!(
            c.region_write_buffer_size.as_bytes(),
            c.global_write_buffer_size.as_bytes() / 8
        );
        let mut tiny = MitoConfig {
            global_write_buffer_size: ReadableSize::kib(4),
            ..MitoConfig::default()
        };
        assert!(
            tiny.sanitize()
                .unwrap_err()
                .to_string()
                .contains("global_write_buffer_size")
        );
    }

    #[test]
    fn config_files_name_only_what_they_change() {
        let c: MitoConfig = serde_json::from_str(
            r#"{"num_workers": 3, "auto_flush_interval": "5m", "page_cache_size": "1GiB"}"#,
        )
        .unwrap();
        assert_eq!(c.num_workers, 3);
        assert_eq!(c.auto_flush_interval, Duration::from_secs(300));
        assert_eq!(c.page_cache_size, ReadableSize::gib(1));
        assert!(
            serde_json::from_str::<MitoConfig>(r#"{"num_wrokers": 3}"#).is_err(),
            "typos are errors"
        );
    }
}
