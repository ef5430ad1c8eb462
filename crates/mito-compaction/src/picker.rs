//! The TWCS (time-window compaction strategy) picker: what to compact, as a pure function.
//!
//! ```text
//!  files ──► expired by TTL (max timestamp before now - ttl): dropped whole, never read
//!        ──► the rest bucketed by time window (the window of each file's max timestamp);
//!            the window is the configured one, else inferred from the widest file and
//!            rounded up to 1h, 2h, 12h, 1d or 1w (the caller persists an inferred window)
//!        ──► per window:
//!              the newest (active) window: compact once it holds `trigger_files` files
//!              a closed window: compact when its files overlap in time, or once it holds
//!                `trigger_files` files, so that it ends as one sorted run; disjoint files
//!                beyond two: all but the largest are merged, so it ends with at most two
//!              consecutive closed windows of fewer than `SPARSE_WINDOW_ROWS` rows each:
//!                merged together, until the merge holds that many rows
//!            at most `max_input_files` inputs per task (the oldest by sequence first);
//!            outputs roll at `max_output_file_size`
//! ```

use mito_sst::{FileId, FileMeta};
use store_api::time::TimeSpan;

/// The windows an inferred window is rounded up to, in seconds: 1h, 2h, 12h, 1d, 1w.
pub const WINDOW_CHOICES_SECS: [u64; 5] = [3600, 7200, 43_200, 86_400, LARGEST_WINDOW_SECS];

/// A closed window holding fewer rows than this is sparse: consecutive sparse windows are
/// merged together (and a flush writes them to one file) until the rows reach it, so points
/// scattered over centuries do not become a file each.
pub const SPARSE_WINDOW_ROWS: usize = 4096;

/// A closed window of disjoint files is merged once it holds more files than this.
pub const MAX_CLOSED_WINDOW_FILES: usize = 2;

/// The largest window an inference picks (a week).
const LARGEST_WINDOW_SECS: u64 = 604_800;

/// What the picker needs from the region's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwcsOptions {
    /// The compaction window in seconds: configured, or persisted after a first inference.
    pub time_window_secs: Option<u64>,
    /// Files in a window that trigger its compaction. Default 4.
    pub trigger_files: usize,
    /// Most input files of one task. Default 32.
    pub max_input_files: usize,
    /// Outputs roll at this size. Default 512 MiB.
    pub max_output_file_size: u64,
    /// Files whose every timestamp is before this one (in the time index's unit: the TTL's
    /// cutoff, `now - ttl`, computed by the caller with the same rule its scans use) are
    /// dropped.
    pub expire_before: Option<i64>,
}

impl Default for TwcsOptions {
    fn default() -> Self {
        Self {
            time_window_secs: None,
            trigger_files: 4,
            max_input_files: 32,
            max_output_file_size: 512 << 20,
            expire_before: None,
        }
    }
}

/// One merge of files of one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionTask {
    /// Start of the window, in the time index's unit.
    pub window_start: i64,
    /// Files to merge, oldest (by max sequence) first.
    pub inputs: Vec<FileId>,
    /// Outputs roll at this size.
    pub max_output_file_size: u64,
}

/// What to do with a region's files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompactionPlan {
    /// The window used, in seconds.
    pub window_secs: u64,
    /// Whether the window was inferred now (the caller records it in the manifest).
    pub inferred: bool,
    /// Files entirely older than the TTL: remove without reading.
    pub expired: Vec<FileId>,
    /// Merges, oldest window first.
    pub tasks: Vec<CompactionTask>,
}

/// Picks what to compact. `units_per_second` converts seconds to the time index's unit
/// (1 for seconds, 1000 for milliseconds, ...).
pub fn pick(files: &[FileMeta], options: &TwcsOptions, units_per_second: i64) -> CompactionPlan {
    let units_per_second = units_per_second.max(1);
    let mut expired = Vec::new();
    let mut live: Vec<&FileMeta> = Vec::with_capacity(files.len());
    for f in files {
        match options.expire_before {
            Some(c) if f.time_range.max < c => expired.push(f.file_id),
            _ => live.push(f),
        }
    }
    let (window_secs, inferred) = match options.time_window_secs {
        Some(w) if w > 0 => (w, false),
        _ => (infer_window_secs(&live, units_per_second), true),
    };
    let window = i64::try_from(window_secs)
        .unwrap_or(i64::MAX)
        .saturating_mul(units_per_second)
        .max(1);
    let mut by_window: std::collections::BTreeMap<i64, Vec<&FileMeta>> = Default::default();
    for f in live {
        by_window
            .entry(window_start(f.time_range.max, window))
            .or_default()
            .push(f);
    }
    let active = by_window.keys().next_back().copied();
    let trigger = options.trigger_files.max(2);
    let max_inputs = options.max_input_files.max(2);
    let mut tasks = Vec::new();
    // Consecutive sparse closed windows, merged together (see `SPARSE_WINDOW_ROWS`).
    let mut run = SparseRun::default();
    for (start, mut files) in by_window {
        let is_active = Some(start) == active;
        let overlap = files.len() >= 2 && any_overlap(&files);
        let due = if is_active {
            files.len() >= trigger
        } else {
            files.len() >= trigger || overlap || files.len() > MAX_CLOSED_WINDOW_FILES
        };
        let rows: u64 = files.iter().map(|f| f.num_rows).sum();
        if !due && !is_active && rows < SPARSE_WINDOW_ROWS as u64 {
            run.add(start, &files, rows);
            if run.rows >= SPARSE_WINDOW_ROWS as u64 || run.inputs.len() >= max_inputs {
                tasks.extend(run.take(options));
            }
            continue;
        }
        tasks.extend(run.take(options));
        if !due {
            continue;
        }
        if !is_active && !overlap && files.len() < trigger {
            // A closed window of disjoint files, too many of them: merge all but the
            // largest (usually the window's earlier compaction output), which is left as is.
            // That ends the window with two files without rewriting the big one.
            let keep = files
                .iter()
                .copied()
                .max_by_key(|f| (f.file_size, std::cmp::Reverse((f.max_sequence, f.file_id))))
                .map(|f| f.file_id);
            files.retain(|f| Some(f.file_id) != keep);
        }
        files.sort_by_key(|f| (f.max_sequence, f.file_id));
        files.truncate(max_inputs);
        tasks.push(CompactionTask {
            window_start: start,
            inputs: files.iter().map(|f| f.file_id).collect(),
            max_output_file_size: options.max_output_file_size,
        });
    }
    tasks.extend(run.take(options));
    CompactionPlan {
        window_secs,
        inferred,
        expired,
        tasks,
    }
}

/// Consecutive closed windows, each holding fewer than [`SPARSE_WINDOW_ROWS`] rows, gathered
/// into one merge.
#[derive(Debug, Default)]
struct SparseRun {
    first_window: i64,
    inputs: Vec<FileId>,
    rows: u64,
}

impl SparseRun {
    fn add(&mut self, window_start: i64, files: &[&FileMeta], rows: u64) {
        if self.inputs.is_empty() {
            self.first_window = window_start;
        }
        self.inputs.extend(files.iter().map(|f| f.file_id));
        self.rows += rows;
    }

    /// The run's merge, if it has two files or more to merge; the run starts again.
    fn take(&mut self, options: &TwcsOptions) -> Option<CompactionTask> {
        let run = std::mem::take(self);
        (run.inputs.len() >= 2).then_some(CompactionTask {
            window_start: run.first_window,
            inputs: run.inputs,
            max_output_file_size: options.max_output_file_size,
        })
    }
}

/// Start of the window holding `ts` (floor division, also for negative timestamps).
fn window_start(ts: i64, window: i64) -> i64 {
    ts.div_euclid(window).saturating_mul(window)
}

fn any_overlap(files: &[&FileMeta]) -> bool {
    let mut sorted: Vec<TimeSpan> = files.iter().map(|f| f.time_range).collect();
    sorted.sort_unstable_by_key(|s| (s.min, s.max));
    sorted.windows(2).any(|w| match w {
        [a, b] => a.overlaps(*b),
        _ => false,
    })
}

/// The smallest window choice that holds the widest file; 1h with no files.
fn infer_window_secs(files: &[&FileMeta], units_per_second: i64) -> u64 {
    let widest = files
        .iter()
        .map(|f| f.time_range.width())
        .max()
        .unwrap_or(0);
    let widest_secs = u64::try_from(widest.div_euclid(units_per_second)).unwrap_or(u64::MAX);
    WINDOW_CHOICES_SECS
        .iter()
        .copied()
        .find(|w| *w >= widest_secs)
        .unwrap_or(LARGEST_WINDOW_SECS)
}

#[cfg(test)]
mod tests {
    use store_api::RegionId;

    use super::*;

    const H: i64 = 3600; // seconds; the tests use a second-unit time index

    fn file(id: u128, min: i64, max: i64, seq: u64) -> FileMeta {
        FileMeta {
            region_id: RegionId::new(1, 1),
            file_id: FileId::from_u128(id),
            time_range: TimeSpan { min, max },
            min_key: Vec::new(),
            max_key: Vec::new(),
            level: 0,
            // Dense: the window rules apply (see `sparse_windows_are_merged_together`).
            num_rows: SPARSE_WINDOW_ROWS as u64,
            num_row_groups: 1,
            file_size: 1000,
            max_sequence: seq,
            checksum: 0,
            tail_offset: 0,
            tail_checksum: 0,
        }
    }

    fn hourly() -> TwcsOptions {
        TwcsOptions {
            time_window_secs: Some(3600),
            ..TwcsOptions::default()
        }
    }

    fn ids(v: &[u128]) -> Vec<FileId> {
        v.iter().map(|i| FileId::from_u128(*i)).collect()
    }

    #[test]
    fn the_active_window_waits_for_the_trigger() {
        // Given three overlapping flush outputs in the newest hour
        let files = [
            file(1, 0, 100, 10),
            file(2, 50, 150, 20),
            file(3, 90, 200, 30),
        ];
        // When picking with a trigger of 4
        let plan = pick(&files, &hourly(), 1);
        // Then nothing is compacted yet
        assert!(plan.tasks.is_empty());
        // And a fourth file triggers one task with all four, oldest first
        let files = [
            files[2].clone(),
            files[0].clone(),
            file(4, 0, 10, 40),
            files[1].clone(),
        ];
        let plan = pick(&files, &hourly(), 1);
        assert_eq!(plan.tasks.len(), 1);
        assert_eq!(plan.tasks[0].inputs, ids(&[1, 2, 3, 4]));
        assert_eq!(plan.tasks[0].window_start, 0);
    }

    #[test]
    fn a_closed_window_with_overlaps_becomes_one_run() {
        // Given hour 0 with two overlapping files and hour 1 (active) with one
        let files = [
            file(1, 0, 100, 1),
            file(2, 50, 120, 2),
            file(3, H, H + 10, 3),
        ];
        // When picking
        let plan = pick(&files, &hourly(), 1);
        // Then hour 0 is merged; the active hour is left alone
        assert_eq!(plan.tasks.len(), 1);
        assert_eq!(plan.tasks[0].window_start, 0);
        assert_eq!(plan.tasks[0].inputs, ids(&[1, 2]));
    }

    #[test]
    fn disjoint_files_of_a_closed_window_end_as_at_most_two() {
        // Given hour 0 with two files that do not overlap, and an active hour 1
        let files = [file(1, 0, 10, 1), file(2, 20, 30, 2), file(9, H, H, 9)];
        // Then nothing is due (one sorted run already, two files)
        assert!(pick(&files, &hourly(), 1).tasks.is_empty());
        // And a third file merges all but the largest (the oldest among equals)
        let mut three = files.to_vec();
        three.push(file(3, 40, 50, 3));
        let plan = pick(&three, &hourly(), 1);
        assert_eq!(plan.tasks.len(), 1);
        assert_eq!(plan.tasks[0].inputs, ids(&[2, 3]));
        let files = three;
        // And a fourth small file makes the whole run due (the trigger)
        let mut more = files.to_vec();
        more.push(file(4, 60, 70, 4));
        let plan = pick(&more, &hourly(), 1);
        assert_eq!(plan.tasks.len(), 1);
        assert_eq!(plan.tasks[0].inputs, ids(&[1, 2, 3, 4]));
    }

    #[test]
    fn sparse_windows_are_merged_together() {
        let sparse = |id: u128, at: i64, rows: u64| FileMeta {
            num_rows: rows,
            ..file(id, at, at, id as u64)
        };
        // Given points scattered one per hour over 100 closed hours (a file each), a dense
        // closed hour in the middle, and an active hour
        let mut files: Vec<FileMeta> = (0..100).map(|i| sparse(i, i as i64 * H, 1)).collect();
        files.push(sparse(500, 50 * H + 1, SPARSE_WINDOW_ROWS as u64));
        files.push(sparse(600, 1000 * H, 1));
        let plan = pick(&files, &hourly(), 1);
        // Then the sparse hours before and after the dense one are merged, at most
        // `max_input_files` at a time; the dense hour and the active one are left alone
        let inputs: Vec<Vec<FileId>> = plan.tasks.iter().map(|t| t.inputs.clone()).collect();
        assert_eq!(
            inputs,
            [
                ids(&(0..32).collect::<Vec<_>>()),
                ids(&(32..50).collect::<Vec<_>>()),
                ids(&(51..83).collect::<Vec<_>>()),
                ids(&(83..100).collect::<Vec<_>>()),
            ]
        );
        // And a run closes once it holds SPARSE_WINDOW_ROWS rows
        let half = SPARSE_WINDOW_ROWS as u64 / 2;
        let files = [
            sparse(1, 0, half),
            sparse(2, H, half),
            sparse(3, 2 * H, half),
            sparse(4, 3 * H, 1),
            sparse(9, 10 * H, 1),
        ];
        let plan = pick(&files, &hourly(), 1);
        let inputs: Vec<Vec<FileId>> = plan.tasks.iter().map(|t| t.inputs.clone()).collect();
        assert_eq!(inputs, [ids(&[1, 2]), ids(&[3, 4])]);
        // And a lone sparse window, or merged output, is left as it is
        assert!(
            pick(&[sparse(1, 0, 5), sparse(9, 10 * H, 1)], &hourly(), 1)
                .tasks
                .is_empty()
        );
    }

    #[test]
    fn files_wholly_older_than_the_ttl_expire_without_being_read() {
        // Given a TTL of one hour at t = 10h (so a cutoff at 9h), a file ending at 8h, one
        // spanning 8h..9.5h, and a recent one
        let options = TwcsOptions {
            expire_before: Some(9 * H),
            ..hourly()
        };
        let files = [
            file(1, 8 * H - 100, 8 * H, 1),
            file(2, 8 * H, 9 * H + H / 2, 2),
            file(3, 10 * H - 5, 10 * H - 1, 3),
        ];
        let plan = pick(&files, &options, 1);
        // Then only the file entirely before 9h expires
        assert_eq!(plan.expired, ids(&[1]));
        assert!(plan.tasks.is_empty());
    }

    #[test]
    fn the_window_is_inferred_from_the_widest_file_and_rounded_up() {
        // Given millisecond timestamps and a widest file of 3 hours
        let ms = 1000;
        let files = [file(1, 0, 3 * H * ms, 1), file(2, 0, 10 * ms, 2)];
        let plan = pick(&files, &TwcsOptions::default(), ms);
        // Then the window is 12h, marked as inferred
        assert_eq!(plan.window_secs, 43_200);
        assert!(plan.inferred);
        // And with no file, 1h; with a configured window, that one, not inferred
        assert_eq!(pick(&[], &TwcsOptions::default(), ms).window_secs, 3600);
        let plan = pick(&files, &hourly(), ms);
        assert_eq!((plan.window_secs, plan.inferred), (3600, false));
        // And files wider than a week get a week
        let wide = [file(1, 0, 30 * 24 * H * ms, 1)];
        assert_eq!(
            pick(&wide, &TwcsOptions::default(), ms).window_secs,
            604_800
        );
    }

    #[test]
    fn tasks_are_bounded_and_windows_handle_negative_timestamps() {
        // Given 10 overlapping files in a closed window before the epoch, and an active one
        let mut files: Vec<FileMeta> = (0..10).map(|i| file(i, -H, -1, 100 - i as u64)).collect();
        files.push(file(99, 0, 1, 1000));
        let options = TwcsOptions {
            max_input_files: 3,
            ..hourly()
        };
        let plan = pick(&files, &options, 1);
        // Then one task for window [-1h, 0) with the 3 oldest files by sequence
        assert_eq!(plan.tasks.len(), 1);
        assert_eq!(plan.tasks[0].window_start, -H);
        assert_eq!(plan.tasks[0].inputs, ids(&[9, 8, 7]));
    }
}
