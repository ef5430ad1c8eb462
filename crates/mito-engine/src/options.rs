//! Region options: parsed and validated from the user's string map, persisted in the manifest
//! (as the validated map), changed by `ALTER`.
//!
//! | key | value | default |
//! |---|---|---|
//! | `ttl` | a duration (`7d`, `12h`, `90m`; at least 1s) or `forever` | forever |
//! | `compaction.type` | `twcs` | `twcs` |
//! | `compaction.twcs.time_window` | a duration in whole seconds (`1h`, `1d`) | inferred from the data |
//! | `compaction.twcs.trigger_file_num` | files in a window that trigger a merge, 2..=64 | 4 |
//! | `compaction.twcs.max_output_file_size` | a size (`512MiB`), at least 1MiB | 512MiB |
//! | `append_mode` | `true` / `false`: keep every row, no dedup | false |
//! | `merge_mode` | `last_row` / `last_non_null` (not with `append_mode`) | `last_row` |
//! | `write_buffer_size` | a size, 64KiB..=4GiB: flush the region above it | the engine's `region_write_buffer_size` |
//! | `wal` | `on` / `off`: with `off` rows not yet flushed are lost by a crash | `on` |
//!
//! Unknown keys and bad values are refused with the key and the reason; nothing is stored.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow_schema::{DataType, TimeUnit};
use mito_compaction::TwcsOptions;
use mito_read::{DedupOptions, MergeMode};
use store_api::config::ReadableSize;
use store_api::metadata::RegionMetadata;

/// The keys a region accepts.
pub const KEYS: [&str; 9] = [
    TTL,
    COMPACTION_TYPE,
    TIME_WINDOW,
    TRIGGER_FILES,
    MAX_OUTPUT_SIZE,
    APPEND_MODE,
    MERGE_MODE,
    WRITE_BUFFER_SIZE,
    WAL,
];

const TTL: &str = "ttl";
const COMPACTION_TYPE: &str = "compaction.type";
const TIME_WINDOW: &str = "compaction.twcs.time_window";
const TRIGGER_FILES: &str = "compaction.twcs.trigger_file_num";
const MAX_OUTPUT_SIZE: &str = "compaction.twcs.max_output_file_size";
const APPEND_MODE: &str = "append_mode";
const MERGE_MODE: &str = "merge_mode";
const WRITE_BUFFER_SIZE: &str = "write_buffer_size";
const WAL: &str = "wal";

/// The region's options, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionOptions {
    /// Rows older than `now - ttl` are invisible and their files dropped; `None` keeps all.
    pub ttl: Option<Duration>,
    /// The configured compaction window, in seconds.
    pub time_window_secs: Option<u64>,
    /// Files in a window that trigger its compaction.
    pub trigger_files: usize,
    /// Compaction outputs roll at this size.
    pub max_output_file_size: u64,
    /// Keep every row (no dedup).
    pub append_mode: bool,
    /// How versions of one row combine.
    pub merge_mode: MergeMode,
    /// Flush the region when its mutable memtable passes this size.
    pub write_buffer_size: Option<ReadableSize>,
    /// Whether writes go through the WAL.
    pub wal: bool,
}

impl Default for RegionOptions {
    fn default() -> Self {
        let twcs = TwcsOptions::default();
        Self {
            ttl: None,
            time_window_secs: None,
            trigger_files: twcs.trigger_files,
            max_output_file_size: twcs.max_output_file_size,
            append_mode: false,
            merge_mode: MergeMode::LastRow,
            write_buffer_size: None,
            wal: true,
        }
    }
}

fn bad(key: &str, value: &str, why: &str) -> String {
    format!("region option '{key}' = '{value}': {why}")
}

fn duration(key: &str, value: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(value.trim()).map_err(|e| {
        bad(
            key,
            value,
            &format!("not a duration ({e}); try 7d, 12h or 90m"),
        )
    })?;
    if d < Duration::from_secs(1) {
        return Err(bad(key, value, "must be at least 1s"));
    }
    Ok(d)
}

fn size(key: &str, value: &str, min: u64, max: u64) -> Result<u64, String> {
    let s: ReadableSize = value
        .parse()
        .map_err(|e| bad(key, value, &format!("{e}")))?;
    if s.as_bytes() < min || s.as_bytes() > max {
        return Err(bad(
            key,
            value,
            &format!(
                "must be between {} and {}",
                ReadableSize(min),
                ReadableSize(max)
            ),
        ));
    }
    Ok(s.as_bytes())
}

fn boolean(key: &str, value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "on" => Ok(true),
        "false" | "off" => Ok(false),
        _ => Err(bad(key, value, "expected true or false")),
    }
}

impl RegionOptions {
    /// Parses and validates a map; every key must be known.
    pub fn parse(map: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut o = Self::default();
        for (key, value) in map {
            match key.as_str() {
                TTL => {
                    o.ttl = match value.trim().to_ascii_lowercase().as_str() {
                        "forever" | "none" | "0" => None,
                        _ => Some(duration(key, value)?),
                    }
                }
                COMPACTION_TYPE => {
                    if !value.trim().eq_ignore_ascii_case("twcs") {
                        return Err(bad(key, value, "the only compaction type is twcs"));
                    }
                }
                TIME_WINDOW => {
                    let d = duration(key, value)?;
                    if d.subsec_nanos() != 0 {
                        return Err(bad(key, value, "must be whole seconds"));
                    }
                    o.time_window_secs = Some(d.as_secs());
                }
                TRIGGER_FILES => {
                    let n: usize = value
                        .trim()
                        .parse()
                        .map_err(|_| bad(key, value, "expected a whole number"))?;
                    if !(2..=64).contains(&n) {
                        return Err(bad(key, value, "must be between 2 and 64"));
                    }
                    o.trigger_files = n;
                }
                MAX_OUTPUT_SIZE => {
                    o.max_output_file_size = size(key, value, 1 << 20, u64::MAX)?;
                }
                APPEND_MODE => o.append_mode = boolean(key, value)?,
                MERGE_MODE => {
                    o.merge_mode = match value.trim().to_ascii_lowercase().as_str() {
                        "last_row" => MergeMode::LastRow,
                        "last_non_null" => MergeMode::LastNonNull,
                        _ => return Err(bad(key, value, "expected last_row or last_non_null")),
                    }
                }
                WRITE_BUFFER_SIZE => {
                    o.write_buffer_size = Some(ReadableSize(size(key, value, 64 << 10, 4 << 30)?));
                }
                WAL => o.wal = boolean(key, value)?,
                _ => {
                    return Err(format!(
                        "unknown region option '{key}'; known: {}",
                        KEYS.join(", ")
                    ));
                }
            }
        }
        if o.append_mode && o.merge_mode != MergeMode::LastRow {
            return Err(
                "region options 'append_mode' = true and 'merge_mode' = last_non_null do not go together: an append-mode region keeps every row".to_string(),
            );
        }
        Ok(o)
    }

    /// The map with `set` applied over `current` and `unset` keys removed, validated.
    pub fn merged(
        current: &BTreeMap<String, String>,
        set: &BTreeMap<String, String>,
        unset: &[String],
    ) -> Result<(BTreeMap<String, String>, Self), String> {
        let mut map = current.clone();
        for key in unset {
            if !KEYS.contains(&key.as_str()) {
                return Err(format!(
                    "unknown region option '{key}'; known: {}",
                    KEYS.join(", ")
                ));
            }
            map.remove(key);
        }
        map.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
        let parsed = Self::parse(&map)?;
        Ok((map, parsed))
    }

    /// The read semantics of the region.
    pub fn dedup(&self) -> DedupOptions {
        DedupOptions {
            merge_mode: self.merge_mode,
            append_mode: self.append_mode,
            keep_deletes: false,
        }
    }

    /// What the compaction picker needs; `stored_window` is a window inferred earlier,
    /// `expire_before` the TTL's cutoff ([`RegionOptions::ttl_cutoff`]).
    pub fn twcs(&self, stored_window: Option<u64>, expire_before: Option<i64>) -> TwcsOptions {
        TwcsOptions {
            time_window_secs: self.time_window_secs.or(stored_window),
            trigger_files: self.trigger_files,
            max_output_file_size: self.max_output_file_size,
            expire_before,
            ..TwcsOptions::default()
        }
    }

    /// The oldest timestamp (in the time index's unit) still alive at `now_millis`: rows
    /// before it are expired. `None` without a TTL.
    pub fn ttl_cutoff(&self, metadata: &RegionMetadata, now_millis: i64) -> Option<i64> {
        let units = units_per_second(metadata);
        let ttl = i64::try_from(self.ttl?.as_secs().max(1)).unwrap_or(i64::MAX);
        let now = i128::from(now_millis) * i128::from(units) / 1000;
        let now = i64::try_from(now).unwrap_or(if now < 0 { i64::MIN } else { i64::MAX });
        Some(now.saturating_sub(ttl.saturating_mul(units)))
    }
}

/// Time-index units per second of a region (1 for seconds, 1000 for milliseconds, ...).
pub fn units_per_second(metadata: &RegionMetadata) -> i64 {
    match &metadata.time_index_column().data_type {
        DataType::Timestamp(TimeUnit::Millisecond, _) => 1_000,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 1_000_000,
        DataType::Timestamp(TimeUnit::Nanosecond, _) => 1_000_000_000,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_option() {
        let o = RegionOptions::parse(&map(&[
            ("ttl", "7d"),
            ("compaction.type", "TWCS"),
            ("compaction.twcs.time_window", "2h"),
            ("compaction.twcs.trigger_file_num", "8"),
            ("compaction.twcs.max_output_file_size", "64MiB"),
            ("append_mode", "false"),
            ("merge_mode", "last_non_null"),
            ("write_buffer_size", "8MiB"),
            ("wal", "off"),
        ]))
        .unwrap();
        assert_eq!(o.ttl, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(o.time_window_secs, Some(7200));
        assert_eq!(o.trigger_files, 8);
        assert_eq!(o.max_output_file_size, 64 << 20);
        assert_eq!(o.merge_mode, MergeMode::LastNonNull);
        assert_eq!(o.write_buffer_size, Some(ReadableSize::mib(8)));
        assert!(!o.wal);
        assert_eq!(
            RegionOptions::parse(&map(&[])).unwrap(),
            RegionOptions::default()
        );
        assert_eq!(
            RegionOptions::parse(&map(&[("ttl", "forever")]))
                .unwrap()
                .ttl,
            None
        );
    }

    #[test]
    fn refuses_bad_options_with_the_key() {
        for (pairs, want) in [
            (vec![("tll", "7d")], "unknown region option 'tll'"),
            (vec![("ttl", "soon")], "'ttl' = 'soon': not a duration"),
            (vec![("ttl", "10ms")], "at least 1s"),
            (vec![("compaction.type", "lcs")], "only compaction type"),
            (
                vec![("compaction.twcs.time_window", "1500ms")],
                "whole seconds",
            ),
            (
                vec![("compaction.twcs.trigger_file_num", "1")],
                "between 2 and 64",
            ),
            (
                vec![("compaction.twcs.trigger_file_num", "x")],
                "whole number",
            ),
            (vec![("append_mode", "yes")], "true or false"),
            (vec![("merge_mode", "first")], "last_row or last_non_null"),
            (
                vec![("write_buffer_size", "1KiB")],
                "between 64KiB and 4GiB",
            ),
            (
                vec![("append_mode", "true"), ("merge_mode", "last_non_null")],
                "do not go together",
            ),
        ] {
            let err = RegionOptions::parse(&map(&pairs)).unwrap_err();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }

    #[test]
    fn the_ttl_cutoff_is_exact_in_every_time_unit() {
        use store_api::RegionId;
        use store_api::metadata::{ColumnMetadata, RegionMetadataBuilder, SemanticType};
        let meta = |unit| {
            let mut b = RegionMetadataBuilder::new(RegionId::new(1, 1));
            b.push_column(ColumnMetadata::new(
                0,
                "ts",
                DataType::Timestamp(unit, None),
                SemanticType::Timestamp,
            ));
            b.build().unwrap()
        };
        let o = RegionOptions::parse(&map(&[("ttl", "1h")])).unwrap();
        // 2026-11-22 in milliseconds: in nanoseconds it is past what `now * 10^9` could
        // hold as i64 before the division, so the cutoff is computed in i128.
        let now_ms: i64 = 1_795_000_000_000;
        for (unit, per_ms) in [
            (TimeUnit::Second, 0),
            (TimeUnit::Millisecond, 1),
            (TimeUnit::Microsecond, 1_000),
            (TimeUnit::Nanosecond, 1_000_000),
        ] {
            let want = if per_ms == 0 {
                now_ms / 1000 - 3600
            } else {
                (now_ms - 3_600_000) * per_ms
            };
            assert_eq!(o.ttl_cutoff(&meta(unit), now_ms), Some(want), "{unit:?}");
        }
        assert_eq!(
            RegionOptions::default().ttl_cutoff(&meta(TimeUnit::Nanosecond), now_ms),
            None
        );
    }

    #[test]
    fn merges_set_and_unset() {
        let current = map(&[("ttl", "7d"), ("append_mode", "true")]);
        let (m, o) =
            RegionOptions::merged(&current, &map(&[("ttl", "1d")]), &["append_mode".into()])
                .unwrap();
        assert_eq!(m, map(&[("ttl", "1d")]));
        assert_eq!(o.ttl, Some(Duration::from_secs(86_400)));
        assert!(!o.append_mode);
        assert!(RegionOptions::merged(&current, &map(&[]), &["nope".into()]).is_err());
    }
}
