//! The crash users have: `mito write` of a TSBS-sized file (or a `mito flush` / `mito compact`
//! of what it left) killed with SIGKILL at a random moment, then the next command on the same
//! directory. Every cycle the directory must open,
//! the rows it holds must be points of the input (none invented, none duplicated), no row a
//! finished write landed may go missing, and a final complete write must reproduce the input
//! exactly. `MITO_CRASH_CYCLES` sets the number of kills (default 8); the kill moments come
//! from `MITO_CRASH_SEED` (printed, so a failure can be rerun).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    reason = "tests assert by panicking; the kill moments follow how long an open takes"
)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{files_under, mito};
use tsbs::{CpuGenerator, write_line_protocol};

const HOSTS: usize = 200;
const STEPS: usize = 300;

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// A TSBS cpu-only file from the generator `mito bench` uses: HOSTS hosts x STEPS steps of
/// 10 s, 10 tags and 10 fields, time-major like TSBS emits it.
fn tsbs_file(path: &Path) -> usize {
    let mut cpu = CpuGenerator::new(HOSTS, 99);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut text = String::new();
    for _ in 0..STEPS {
        text.clear();
        write_line_protocol(&cpu.next_batch(), &mut text);
        f.write_all(text.as_bytes()).unwrap();
    }
    f.flush().unwrap();
    HOSTS * STEPS
}

/// (hostname, timestamp) of each line of a TSBS file, by line number (0 unused).
fn input_keys(path: &Path) -> Vec<(String, i64)> {
    let mut keys = vec![(String::new(), 0)];
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let host = line
            .split(',')
            .find_map(|kv| kv.strip_prefix("hostname="))
            .unwrap()
            .to_string();
        let ts = line.rsplit(' ').next().unwrap().parse().unwrap();
        keys.push((host, ts));
    }
    keys
}

/// The (hostname, timestamp) of every row of `cpu`, duplicates kept (none if a write was
/// killed before it created the table), or why the directory did not open. The first command
/// after a kill is `tables`: what it reports on stderr (a torn WAL tail cut) is returned too.
fn rows(dir: &Path) -> Result<(Vec<(String, i64)>, String), String> {
    let o = mito(dir, &["tables", "--format", "csv"]);
    let stderr = text(&o.stderr);
    if !o.status.success() {
        return Err(format!("status {:?}: {stderr}", o.status));
    }
    if !text(&o.stdout).lines().any(|l| l.starts_with("cpu,")) {
        return Ok((Vec::new(), stderr));
    }
    let sql = "SELECT hostname, CAST(time AS BIGINT) FROM cpu";
    let o = mito(dir, &["sql", "--format", "csv", sql]);
    if !o.status.success() {
        return Err(format!("status {:?}: {}", o.status, text(&o.stderr)));
    }
    let rows = text(&o.stdout)
        .lines()
        .skip(1)
        .map(|l| {
            let (h, t) = l.rsplit_once(',').unwrap();
            (h.to_string(), t.trim().parse().unwrap())
        })
        .collect();
    Ok((rows, stderr))
}

/// The number of rows of `cpu` and of distinct (hostname, timestamp) among them.
fn counts(dir: &Path) -> Result<(u64, u64), String> {
    let (rows, _) = rows(dir)?;
    let distinct: std::collections::HashSet<&(String, i64)> = rows.iter().collect();
    Ok((rows.len() as u64, distinct.len() as u64))
}

/// The line numbers a killed `mito write --ack-log` recorded as acknowledged (a last line
/// cut by the kill is ignored).
fn acknowledged_lines(log: &Path) -> Vec<usize> {
    let Ok(text) = std::fs::read_to_string(log) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for run in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let (a, b) = run.trim_end().split_once('-').unwrap();
        out.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap());
    }
    out
}

#[test]
fn killed_writes_always_leave_a_directory_that_opens() {
    let cycles: u64 = std::env::var("MITO_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let seed: u64 = std::env::var("MITO_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        // A new seed each run (the process id), printed so a failure can be rerun.
        .unwrap_or_else(|| u64::from(std::process::id()).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    eprintln!("MITO_CRASH_SEED={seed} MITO_CRASH_CYCLES={cycles}");
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("cpu.lp");
    let lines = tsbs_file(&input) as u64;
    let keys = input_keys(&input);
    let known: std::collections::HashSet<&(String, i64)> = keys.iter().skip(1).collect();
    let ack_log = work.path().join("acks");
    let mut acked_rows = 0usize;
    let dir = work.path().join("data");
    let mut rng = seed;
    let mut landed = 0u64;
    let mut torn_cuts = 0usize;
    let mut open_time = Duration::ZERO;
    // How long one whole write of the file takes on this build and machine (a debug write
    // takes seconds, a release one a fraction of that): the kills are spread over it.
    let calibrate = std::time::Instant::now();
    let o = mito(
        &work.path().join("calibrate"),
        &["write", input.to_str().unwrap()],
    );
    assert!(o.status.success(), "calibration write: {}", text(&o.stderr));
    let whole_write_ms = u64::try_from(calibrate.elapsed().as_millis()).unwrap_or(u64::MAX);
    eprintln!(
        "a whole write takes {whole_write_ms} ms here; kills spread over 5 ms..{} ms after the open",
        whole_write_ms + whole_write_ms / 4
    );
    let mut finished_runs = 0usize;
    for cycle in 0..cycles {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1442695040888963407);
        // After the time an open took last (the WAL replay grows with what killed writes
        // left), so the kill lands in the write, flush or compaction and not always in the
        // replay before it.
        let delay =
            open_time + Duration::from_millis(5 + (rng >> 33) % (whole_write_ms * 5 / 4 + 1));
        // Mostly writes; one cycle in five kills a flush or a compaction of what the killed
        // writes left (a flush after the WAL replay, a merge of the files).
        let args: Vec<&std::ffi::OsStr> = match (rng >> 20) % 10 {
            0 => vec!["flush".as_ref(), "--all".as_ref()],
            1 => vec!["compact".as_ref(), "--all".as_ref()],
            _ => vec![
                "write".as_ref(),
                input.as_os_str(),
                "--ack-log".as_ref(),
                ack_log.as_os_str(),
            ],
        };
        let _ = std::fs::remove_file(&ack_log);
        let writing = args.first() == Some(&"write".as_ref());
        let mut command = Command::new(env!("CARGO_BIN_EXE_mito"));
        command.arg("--data-dir").arg(&dir).args(&args);
        let finished = test_util::kill_after(command, delay).finished;
        finished_runs += usize::from(finished);
        let opened = std::time::Instant::now();
        let (rows, stderr) = rows(&dir).unwrap_or_else(|e| {
            panic!("cycle {cycle} (killed after {delay:?}, seed {seed}): does not open: {e}")
        });
        // Two commands, each an open (read-only: no replay flush).
        open_time = opened.elapsed() / 2;
        if stderr.contains("torn tail") {
            torn_cuts += 1;
        }
        let total = rows.len() as u64;
        let present: std::collections::HashSet<(String, i64)> = rows.into_iter().collect();
        assert_eq!(
            total,
            present.len() as u64,
            "cycle {cycle}: duplicated rows"
        );
        assert!(
            total <= lines,
            "cycle {cycle}: {total} rows from {lines} lines"
        );
        // The same file each time: points only accumulate (each write rewrites them).
        assert!(
            total >= landed,
            "cycle {cycle}: {total} rows, {landed} had landed before"
        );
        landed = total;
        // Row by row: every acknowledged line is there, and nothing that is not a line of
        // the input.
        assert!(
            present.iter().all(|k| known.contains(k)),
            "cycle {cycle} (seed {seed}): a row that was never written"
        );
        let acked = acknowledged_lines(&ack_log);
        for line in &acked {
            assert!(
                present.contains(&keys[*line]),
                "cycle {cycle} (killed after {delay:?}, seed {seed}): acknowledged line {line} is lost"
            );
        }
        acked_rows += acked.len();
        if finished && writing {
            assert_eq!(total, lines, "cycle {cycle}: a finished write lost rows");
        }
        if (cycle + 1) % 100 == 0 {
            eprintln!(
                "{} of {cycles} cycles: every reopen fine, {finished_runs} ran to the end before the kill, {torn_cuts} torn tails, {acked_rows} acknowledged rows checked, last open {open_time:?}",
                cycle + 1
            );
        }
    }
    // A final complete write reproduces the input exactly.
    let o = mito(&dir, &["write", input.to_str().unwrap()]);
    assert!(o.status.success(), "final write: {}", text(&o.stderr));
    assert_eq!(counts(&dir).unwrap(), (lines, lines));
    eprintln!(
        "{cycles} cycles of `mito write`, `flush` and `compact` killed with SIGKILL ({lines} lines; {finished_runs} ran to the end first), {torn_cuts} torn WAL tails reported at the next open, {acked_rows} acknowledged rows checked one by one, every reopen fine"
    );
}

/// A directory whose catalog file was deleted is refused, naming the file; nothing changes.
#[test]
fn a_deleted_catalog_is_an_error_not_an_empty_database() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let o = Command::new(env!("CARGO_BIN_EXE_mito"))
        .arg("--data-dir")
        .arg(dir)
        .args(["write", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(b"cpu,host=a v=1 1\ncpu,host=b v=2 2\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    std::fs::remove_file(dir.join("catalog.mito")).unwrap();
    for args in [&["tables"][..], &["write", "/dev/null"][..]] {
        let o = mito(dir, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = text(&o.stderr);
        assert!(
            err.contains("catalog.mito") && err.contains("missing"),
            "{err}"
        );
    }
}

/// Standard error closed (`2>&-`): the write still completes, with no panic.
#[test]
fn a_closed_stderr_does_not_abort_a_write() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("d");
    let input = work.path().join("in.lp");
    std::fs::write(
        &input,
        "cpu,hostname=a v=1 1\nbad line\ncpu,hostname=b v=2 2\n",
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mito"));
    cmd.arg("--data-dir")
        .arg(&dir)
        .arg("write")
        .arg(&input)
        .arg("--progress")
        .stdout(Stdio::null());
    // Standard error is a pipe whose reader is gone: every write to it fails (EPIPE).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stderr(writer);
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(3), "one refused line, no panic (101)");
    assert_eq!(counts(&dir).unwrap(), (2, 2));
}

/// Request sizes are measured as data, not as the builders' capacity: one 500-field line and
/// one 250-tag line land (they once failed the whole write, counted as 41 MB of columns).
#[test]
fn wide_lines_are_measured_as_data() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("d");
    let input = work.path().join("wide.lp");
    let fields: Vec<String> = (0..500).map(|i| format!("f{i}={i}")).collect();
    let tags: Vec<String> = (0..250).map(|i| format!("t{i}=v{i}")).collect();
    std::fs::write(
        &input,
        format!(
            "m,host=a {} 1\nm,host=b f0=1 2\nt,{} v=1 3\n",
            fields.join(","),
            tags.join(",")
        ),
    )
    .unwrap();
    let o = mito(&dir, &["write", input.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = mito(
        &dir,
        &[
            "sql",
            "--format",
            "csv",
            "SELECT count(*), sum(f499) FROM m",
        ],
    );
    assert_eq!(
        text(&o.stdout).lines().nth(1),
        Some("2,499.0"),
        "{}",
        text(&o.stderr)
    );
    let o = mito(&dir, &["sql", "--format", "csv", "SELECT t249, v FROM t"]);
    assert_eq!(
        text(&o.stdout).lines().nth(1),
        Some("v249,1.0"),
        "{}",
        text(&o.stderr)
    );
}

/// Every file with its bytes, under `dir`.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    files_under(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// The reading commands open read-only: on a directory with a torn WAL tail and unflushed
/// rows they answer (showing the recovery warning) and change no byte on disk; a directory
/// that does not exist is an empty database and is not created.
#[test]
fn reading_commands_change_nothing_on_disk() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("d");
    let input = work.path().join("in.lp");
    std::fs::write(&input, "cpu,hostname=a v=1 1\ncpu,hostname=b v=2 2\n").unwrap();
    let o = mito(&dir, &["write", "--no-flush", input.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let wal = dir.join("wal/00000000000000000001.wal");
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes.extend_from_slice(&[0xa5; 5000]);
    std::fs::write(&wal, bytes).unwrap();
    let before = snapshot(&dir);
    let o = mito(
        &dir,
        &["sql", "--format", "csv", "SELECT count(*) FROM cpu"],
    );
    assert_eq!(
        text(&o.stdout).lines().nth(1),
        Some("2"),
        "{}",
        text(&o.stderr)
    );
    assert!(text(&o.stderr).contains("torn tail"), "{}", text(&o.stderr));
    for args in [
        &["tables"][..],
        &["describe", "cpu"][..],
        &["options", "cpu"][..],
    ] {
        let o = mito(&dir, args);
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    }
    assert!(
        snapshot(&dir) == before,
        "a reading command changed the directory"
    );
    // A writer then cuts the tail and goes on.
    let o = mito(&dir, &["write", input.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(counts(&dir).unwrap().0, 2);

    let missing = work.path().join("missing");
    assert!(mito(&missing, &["tables"]).status.success());
    assert!(!missing.exists());
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted (lazily) on drop. Needs root,
/// as CI has; elsewhere set `MITO_SKIP_MOUNT_TESTS=1`.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        if std::env::var_os("MITO_SKIP_MOUNT_TESTS").is_some() {
            eprintln!("MITO_SKIP_MOUNT_TESTS is set: the disk-full test is skipped");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "mounting a tmpfs needs root (set MITO_SKIP_MOUNT_TESTS=1 to skip): {}",
            text(&o.stderr)
        );
        Some(Self { dir })
    }

    fn resize(&self, size: &str) {
        let o = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_fails_the_write_and_keeps_exactly_what_was_acknowledged() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("cpu.lp");
    let lines = tsbs_file(&input) as u64;
    // Sizes that fill up in the WAL's first segment, across segments, and around flushes.
    for size in ["3m", "6m", "9m"] {
        let Some(fs) = Tmpfs::mount(size) else {
            return;
        };
        let dir = fs.dir.path().join("d");
        let o = mito(&dir, &["write", input.to_str().unwrap()]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{size}: {err}");
        assert!(!err.contains("panicked"), "{size}: {err}");
        assert!(err.contains("No space left on device"), "{size}: {err}");
        // "... (N rows were written before the failure and are kept)"
        let acked: u64 = err
            .split(" rows were written before the failure")
            .next()
            .and_then(|head| head.rsplit('(').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{size}: no count of written rows in: {err}"));
        assert!(acked < lines, "{size}: {acked}");

        // Space returns: the directory opens, for reading and then for writing, and holds
        // exactly the acknowledged rows, each once.
        fs.resize("256m");
        assert_eq!(counts(&dir).unwrap(), (acked, acked), "{size}");
        let o = mito(&dir, &["write", input.to_str().unwrap()]);
        assert!(o.status.success(), "{size}: {}", text(&o.stderr));
        assert_eq!(counts(&dir).unwrap(), (lines, lines), "{size}");
    }
}
