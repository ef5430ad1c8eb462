//! Benchmarks whose every run is a fresh process (so that memory and caches are the run's
//! own): the parent re-runs its own executable with an environment variable set, and the
//! child prints one `RESULT ...` line.

/// `BENCH_RUNS`, else `default`.
pub fn runs(default: usize) -> usize {
    std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs this executable as a child with `key=value` set and returns what follows `RESULT `
/// on its output, or a description of what went wrong (with the child's output).
pub fn run_child(key: &str, value: &str) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let out = std::process::Command::new(exe)
        .arg("--bench")
        .env(key, value)
        .output()
        .map_err(|e| format!("starting the child: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "the child ({key}={value}) printed no result: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}
