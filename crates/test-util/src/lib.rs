//! What Mito's tests share, so each idea is written once: replaying a checked-in fuzz corpus
//! as a normal test ([`replay_corpus`]), killing a real child process with SIGKILL at a
//! chosen moment ([`kill_after`], [`child_test`]), and region metadata of tags, a time index
//! and fields ([`metadata`]). A dev-dependency only: nothing here is
//! linked into a release binary. Test code: it panics on anything unexpected.

#![allow(
    clippy::panic,
    clippy::expect_used,
    reason = "test support: a broken harness must fail the test loudly"
)]

pub mod http;
pub mod metadata;
pub mod server;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The checked-in cargo-fuzz corpus of `target` (`fuzz/corpus/{target}`).
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Replays every input of the corpus of fuzz target `target` through `body`, which reports
/// a broken invariant as `Err` (or panics, as the fuzz target would). At least `min` inputs
/// must be there, so a corpus that went missing fails the test instead of passing it.
pub fn replay_corpus(target: &str, min: usize, mut body: impl FnMut(&[u8]) -> Result<(), String>) {
    let dir = corpus_dir(target);
    let mut n = 0;
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .path();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(e) = body(&data) {
            panic!("{}: {e}", path.display());
        }
        n += 1;
    }
    assert!(
        n >= min.max(1),
        "corpus at {} has {n} inputs",
        dir.display()
    );
}

/// A command that runs the test `name` of this very test binary alone, as a child process
/// (the child/parent pattern: the child test does its work only when the parent set an
/// environment variable, and returns at once otherwise).
pub fn child_test(name: &str) -> Command {
    let exe = std::env::current_exe().expect("the test binary's own path");
    let mut command = Command::new(exe);
    command.args(["--exact", name, "--nocapture", "--test-threads=1"]);
    command
}

/// What a killed child left behind.
#[derive(Debug)]
pub struct Killed {
    /// The lines it printed on stdout before it died.
    pub lines: Vec<String>,
    /// Whether it had exited on its own before the kill.
    pub finished: bool,
}

/// Starts `command` (stdout captured, stderr dropped), lets it run for `after`, kills it
/// with SIGKILL and waits for it.
pub fn kill_after(mut command: Command, after: Duration) -> Killed {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    std::thread::sleep(after);
    let finished = child.try_wait().expect("polling the child").is_some();
    // SIGKILL (`Child::kill` on Unix); an already exited child is not an error.
    let _ = child.kill();
    child.wait().expect("waiting for the killed child");
    let lines = reader.join().expect("the stdout reader");
    Killed { lines, finished }
}
