//! The background runtime: compaction's merge-and-write runs on its own threads, at a lower
//! CPU priority than writes, flushes and scans.
//!
//! Compaction is work that can wait; ingest cannot. On the shared runtime a merge holds a
//! worker thread for as long as a poll lasts and takes CPU from the writers one for one. On its
//! own threads with a higher nice value (Linux: `setpriority` on the thread id) the kernel gives
//! the writers the CPU first and compaction whatever is left, catching up when writes pause.
//! Only the merge runs here; picking and the manifest edit stay on the engine's runtime.

use std::future::Future;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

use crate::error::{InvalidConfigSnafu, Result};

/// Highest nice value (lowest priority) on Linux.
pub const MAX_NICE: i32 = 19;

/// Threads of the background runtime; the runtime stops (without waiting) when dropped.
#[derive(Debug)]
pub(crate) struct BackgroundRuntime {
    handle: Handle,
    // `Some` until dropped: a runtime dropped inside another runtime's task must shut down in
    // the background instead of blocking (tokio refuses that).
    runtime: Option<Runtime>,
}

impl BackgroundRuntime {
    /// Starts `threads` threads named `mito-compact`, each lowered to `nice` (0 = the
    /// process's own priority).
    pub fn start(threads: usize, nice: i32) -> Result<Self> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .max_blocking_threads(threads.max(1) * 4)
            .thread_name("mito-compact")
            .enable_all()
            .on_thread_start(move || lower_priority(nice))
            .build()
            .map_err(|e| {
                InvalidConfigSnafu {
                    reason: format!("cannot start the compaction threads: {e}"),
                }
                .build()
            })?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Runs `future` on the background threads.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // An unfinished merge is abandoned; its outputs were never committed and the next
            // open removes them as orphans.
            runtime.shutdown_background();
        }
    }
}

/// Lowers the calling thread's CPU priority to `nice`; failures are logged, never fatal.
fn lower_priority(nice: i32) {
    if nice <= 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), nice.min(MAX_NICE)) {
            tracing::warn!(nice, error = %e, "cannot lower the compaction thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    tracing::debug!(nice, "thread priorities are only lowered on Linux");
}

/// The nice value of the calling thread (Linux), for tests and diagnostics.
#[cfg(target_os = "linux")]
pub fn current_thread_nice() -> std::io::Result<i32> {
    rustix::process::getpriority_process(Some(rustix::thread::gettid())).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn background_threads_run_at_the_configured_nice_value() {
        let base = current_thread_nice().unwrap_or(0);
        let bg = BackgroundRuntime::start(1, 10).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        drop(bg.spawn(async move {
            let _ = tx.send(current_thread_nice().map_err(|e| e.to_string()));
        }));
        let nice = rx.recv().unwrap();
        // Raising the nice value is always allowed; a process already above 10 stays there.
        assert_eq!(nice, Ok(base.max(10)));
        // The caller's thread is untouched.
        assert_eq!(current_thread_nice().unwrap_or(0), base);
    }

    #[test]
    fn dropping_inside_a_runtime_does_not_block_or_panic() {
        let rt = Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let bg = BackgroundRuntime::start(1, 0).unwrap();
            let out = bg.spawn(async { 7 }).await.unwrap();
            assert_eq!(out, 7);
            drop(bg);
        });
    }
}
