//! The worker's private state of a region.

use std::sync::Arc;

use mito_memtable::Memtable;
use store_api::{EntryId, SequenceNumber};

use crate::region::{MitoRegionRef, Version};
use crate::write_buffer::WriteBufferManager;

use super::write::WriteRequest;
use super::{DdlRequest, Deferred, Reply};

/// The worker's private state of a region.
#[derive(Debug)]
pub(super) struct RegionState {
    pub(super) region: MitoRegionRef,
    pub(super) next_entry_id: EntryId,
    pub(super) next_sequence: SequenceNumber,
    /// Last entry and sequence whose rows are in the memtables (appends may be in flight
    /// after them).
    pub(super) applied_entry_id: EntryId,
    pub(super) applied_sequence: SequenceNumber,
    /// Bytes of the mutable memtable accounted in the write buffer.
    pub(super) mutable_bytes: u64,
    /// Frozen memtables and the bytes accounted for each.
    pub(super) frozen: Vec<(Arc<Memtable>, u64)>,
    pub(super) flush: FlushState<Reply>,
    pub(super) deferred: Vec<Deferred>,
    pub(super) last_write_ms: i64,
    pub(super) compaction: CompactionState<Reply>,
    /// Writes that arrived while an alter waits for the memtables to be flushed; they run
    /// after it, against the new schema.
    pub(super) held: Vec<WriteRequest>,
}

impl RegionState {
    /// The last entry and sequence whose rows are in `version`'s memtables or files: what a
    /// flush of every memtable makes durable. Sequenced writes whose WAL append is still in
    /// flight are not in the memtables yet, so they must not count (the crash test caught
    /// exactly that).
    pub(super) fn applied_through(&self, version: &Version) -> (EntryId, SequenceNumber) {
        (
            self.applied_entry_id.max(version.flushed_entry_id),
            self.applied_sequence.max(version.flushed_sequence),
        )
    }

    /// Whether an alter is waiting (writes are held meanwhile).
    pub(super) fn alter_waiting(&self) -> bool {
        self.deferred
            .iter()
            .any(|d| matches!(d.request, DdlRequest::Alter(_)))
    }
}

impl RegionState {
    /// Gives every memtable byte the region holds back to the write buffer (close, drop,
    /// truncate).
    pub(super) fn release(&mut self, wb: &WriteBufferManager) {
        wb.freeze(self.mutable_bytes);
        wb.free(self.mutable_bytes + self.frozen.iter().map(|(_, b)| *b).sum::<u64>());
        self.mutable_bytes = 0;
        self.frozen.clear();
    }

    pub(super) fn new(
        region: MitoRegionRef,
        next_entry_id: EntryId,
        next_sequence: SequenceNumber,
        now: i64,
    ) -> Self {
        Self {
            region,
            next_entry_id,
            next_sequence,
            applied_entry_id: next_entry_id.saturating_sub(1),
            applied_sequence: next_sequence.saturating_sub(1),
            mutable_bytes: 0,
            frozen: Vec::new(),
            flush: FlushState::default(),
            deferred: Vec::new(),
            last_write_ms: now,
            compaction: CompactionState::default(),
            held: Vec::new(),
        }
    }
}

/// Flush bookkeeping of one region: at most one flush runs; requests that arrive meanwhile
/// are served by one more flush after it. `W` is a waiter (a reply channel in the worker).
#[derive(Debug)]
pub(super) struct FlushState<W> {
    running: bool,
    /// Waiters of the running flush (or of the one about to start).
    waiters: Vec<W>,
    /// Whether a request arrived while a flush ran, and its waiters: they need the next one,
    /// since the running flush may not hold their rows.
    again: bool,
    next_waiters: Vec<W>,
}

impl<W> Default for FlushState<W> {
    fn default() -> Self {
        Self {
            running: false,
            waiters: Vec::new(),
            again: false,
            next_waiters: Vec::new(),
        }
    }
}

impl<W> FlushState<W> {
    pub(super) fn is_running(&self) -> bool {
        self.running
    }

    /// A flush is asked for. `true`: none runs, the caller starts one now (or answers
    /// [`FlushState::take_waiters`] if there is nothing to flush); `false`: one runs, the
    /// request is served by the next.
    pub(super) fn request(&mut self, waiters: impl IntoIterator<Item = W>) -> bool {
        if self.running {
            self.again = true;
            self.next_waiters.extend(waiters);
            false
        } else {
            self.waiters.extend(waiters);
            true
        }
    }

    /// The caller started the flush it was told to.
    pub(super) fn started(&mut self) {
        self.running = true;
    }

    /// The waiters of a flush that was not started (nothing to flush, or it could not start).
    pub(super) fn take_waiters(&mut self) -> Vec<W> {
        std::mem::take(&mut self.waiters)
    }

    /// The running flush succeeded: its waiters, and the waiters of the next flush if one was
    /// asked for meanwhile (the caller requests it with them).
    pub(super) fn succeeded(&mut self) -> (Vec<W>, Option<Vec<W>>) {
        self.running = false;
        let done = std::mem::take(&mut self.waiters);
        let next = std::mem::take(&mut self.again).then(|| std::mem::take(&mut self.next_waiters));
        (done, next)
    }

    /// The running flush failed: every waiter, of it and of the next, gets the failure; no
    /// next flush is run on its own (the next trigger retries).
    pub(super) fn failed(&mut self) -> Vec<W> {
        self.running = false;
        self.again = false;
        let mut all = std::mem::take(&mut self.waiters);
        all.append(&mut self.next_waiters);
        all
    }
}

/// The strict window and the waiters of a compaction run asked for during another.
pub(super) type NextRun<W> = (Option<u64>, Vec<W>);

/// Compaction bookkeeping of one region: at most one run at a time. An explicit request
/// that arrives during a run gets a run of its own after it (with its strict window); a
/// background trigger is covered by the run in progress.
#[derive(Debug)]
pub(super) struct CompactionState<W> {
    running: bool,
    waiters: Vec<W>,
    /// The strict window and waiters of the run after this one.
    next: Option<NextRun<W>>,
}

impl<W> Default for CompactionState<W> {
    fn default() -> Self {
        Self {
            running: false,
            waiters: Vec::new(),
            next: None,
        }
    }
}

impl<W> CompactionState<W> {
    pub(super) fn is_running(&self) -> bool {
        self.running
    }

    /// A run is asked for (`waiters` empty: a background trigger). `true`: the caller starts
    /// it now; it is marked running.
    pub(super) fn request(
        &mut self,
        waiters: impl IntoIterator<Item = W>,
        strict_window: Option<u64>,
    ) -> bool {
        if self.running {
            let mut waiters = waiters.into_iter().peekable();
            if waiters.peek().is_some() {
                let next = self.next.get_or_insert((strict_window, Vec::new()));
                next.0 = strict_window.or(next.0);
                next.1.extend(waiters);
            }
            false
        } else {
            self.waiters.extend(waiters);
            self.running = true;
            true
        }
    }

    /// The run finished (either way): its waiters, and the strict window and waiters of the
    /// run asked for meanwhile, which the caller requests next.
    pub(super) fn finished(&mut self) -> (Vec<W>, Option<NextRun<W>>) {
        self.running = false;
        (std::mem::take(&mut self.waiters), self.next.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_asked_for_while_one_runs_is_served_by_the_next() {
        let mut f = FlushState::default();
        assert!(f.request([1]));
        f.started();
        assert!(f.is_running());
        assert!(!f.request([2]));
        assert!(!f.request(None));
        assert!(!f.request([3]));
        let (done, next) = f.succeeded();
        assert_eq!(done, vec![1]);
        assert_eq!(next, Some(vec![2, 3]));
        assert!(!f.is_running());
        // The caller requests the next flush with those waiters.
        assert!(f.request(next.unwrap_or_default()));
        assert_eq!(f.take_waiters(), vec![2, 3]);
    }

    #[test]
    fn a_background_request_during_a_flush_still_asks_for_another() {
        let mut f = FlushState::<u8>::default();
        assert!(f.request(None));
        f.started();
        assert!(!f.request(None));
        let (done, next) = f.succeeded();
        assert!(done.is_empty());
        assert_eq!(next, Some(vec![]));
        // Without a request meanwhile there is no next flush.
        assert!(f.request(None));
        f.started();
        assert_eq!(f.succeeded(), (vec![], None));
    }

    #[test]
    fn a_failed_flush_fails_every_waiter_and_schedules_nothing() {
        let mut f = FlushState::default();
        assert!(f.request([1, 2]));
        f.started();
        assert!(!f.request([3]));
        assert_eq!(f.failed(), vec![1, 2, 3]);
        assert!(!f.is_running());
        // The next request starts a fresh flush with only its own waiter.
        assert!(f.request([4]));
        f.started();
        assert_eq!(f.succeeded(), (vec![4], None));
    }

    #[test]
    fn only_explicit_compactions_during_a_run_get_a_run_of_their_own() {
        let mut c = CompactionState::default();
        assert!(c.request([1], None));
        assert!(c.is_running());
        // A background trigger is covered by the run in progress.
        assert!(!c.request(None, None));
        assert_eq!(c.finished(), (vec![1], None));

        assert!(c.request(None, None));
        assert!(!c.request([2], None));
        assert!(!c.request([3], Some(3600)));
        assert!(!c.request([4], None));
        // The strict window asked for sticks; the waiters wait together.
        assert_eq!(c.finished(), (vec![], Some((Some(3600), vec![2, 3, 4]))));
        assert!(!c.is_running());
    }
}
