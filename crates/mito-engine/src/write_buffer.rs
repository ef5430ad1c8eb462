//! The engine-wide write buffer: how many memtable bytes exist, and what writers must do
//! about it.
//!
//! ```text
//!  bytes:  0 ──── limit/2 ──────── limit ─────────── 2*limit ──►
//!          normal │ flush largest   │ writers stall    │ writes rejected
//!                 (mutable bytes)   (all memtable bytes, flushing ones included)
//! ```
//!
//! Mutable bytes are those in memtables still taking writes; a frozen memtable's bytes stay
//! counted in the total until its flush commits and frees them.

use std::sync::atomic::{AtomicU64, Ordering};

use store_api::RegionId;

/// What the write buffer asks of writers right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pressure {
    /// Write freely.
    Normal,
    /// Mutable memtables passed half the limit: flush the largest regions.
    Flush,
    /// All memtables passed the limit: writers wait for flushes.
    Stall,
    /// All memtables passed twice the limit: writes fail with a clear error.
    Reject,
}

/// The pressure for the given byte counts.
pub fn pressure(mutable: u64, total: u64, limit: u64) -> Pressure {
    if total > limit.saturating_mul(2) {
        Pressure::Reject
    } else if total > limit {
        Pressure::Stall
    } else if mutable > limit / 2 {
        Pressure::Flush
    } else {
        Pressure::Normal
    }
}

/// Regions to flush so that mutable bytes fall to half the limit: the largest first, at least
/// one when any region holds data. `regions` are (region, mutable bytes).
pub fn pick_flushes(regions: &[(RegionId, u64)], limit: u64) -> Vec<RegionId> {
    let mut by_size: Vec<(RegionId, u64)> =
        regions.iter().copied().filter(|(_, b)| *b > 0).collect();
    by_size.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut mutable: u64 = by_size.iter().map(|(_, b)| *b).sum();
    let mut out = Vec::new();
    for (region, bytes) in by_size {
        if !out.is_empty() && mutable <= limit / 2 {
            break;
        }
        out.push(region);
        mutable -= bytes;
    }
    out
}

/// Engine-wide memtable accounting, shared by the workers.
#[derive(Debug)]
pub struct WriteBufferManager {
    limit: u64,
    mutable: AtomicU64,
    total: AtomicU64,
    freed: tokio::sync::Notify,
}

impl WriteBufferManager {
    /// A manager with `limit` bytes (the `global_write_buffer_size`).
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            mutable: AtomicU64::new(0),
            total: AtomicU64::new(0),
            freed: tokio::sync::Notify::new(),
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Records `bytes` added to a mutable memtable.
    pub fn reserve(&self, bytes: u64) {
        self.mutable.fetch_add(bytes, Ordering::Relaxed);
        self.total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records that a memtable of `bytes` was frozen for a flush.
    pub fn freeze(&self, bytes: u64) {
        sub(&self.mutable, bytes);
    }

    /// Records that a frozen memtable of `bytes` was flushed and dropped.
    pub fn free(&self, bytes: u64) {
        sub(&self.total, bytes);
        self.freed.notify_waiters();
    }

    /// Resolves at the next [`free`](Self::free) (stalled writers wait on it).
    pub async fn freed(&self) {
        self.freed.notified().await;
    }

    /// Bytes in mutable memtables.
    pub fn mutable_bytes(&self) -> u64 {
        self.mutable.load(Ordering::Relaxed)
    }

    /// Bytes in every memtable, flushing ones included.
    pub fn total_bytes(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The pressure now.
    pub fn pressure(&self) -> Pressure {
        pressure(self.mutable_bytes(), self.total_bytes(), self.limit)
    }
}

fn sub(counter: &AtomicU64, bytes: u64) {
    // Saturating: a double free (a bug) must not wrap into "full".
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(bytes))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_levels() {
        assert_eq!(pressure(0, 0, 100), Pressure::Normal);
        assert_eq!(pressure(50, 50, 100), Pressure::Normal);
        assert_eq!(pressure(51, 51, 100), Pressure::Flush);
        // Frozen memtables count towards stalls, not towards flush triggering.
        assert_eq!(pressure(10, 101, 100), Pressure::Stall);
        assert_eq!(pressure(10, 201, 100), Pressure::Reject);
    }

    #[test]
    fn the_largest_regions_flush_first() {
        let r = |n| RegionId::new(1, n);
        let regions = [(r(1), 10), (r(2), 40), (r(3), 30), (r(4), 0)];
        // 80 mutable, limit 100: down to 50 needs the 40 only.
        assert_eq!(pick_flushes(&regions, 100), vec![r(2)]);
        // Limit 40: down to 20 needs 40 then 30.
        assert_eq!(pick_flushes(&regions, 40), vec![r(2), r(3)]);
        // Below the threshold already: still the largest, when asked.
        assert_eq!(pick_flushes(&regions, 1000), vec![r(2)]);
        assert!(pick_flushes(&[(r(1), 0)], 10).is_empty());
    }

    #[test]
    fn accounting_moves_bytes_between_states() {
        let m = WriteBufferManager::new(100);
        m.reserve(60);
        assert_eq!(m.pressure(), Pressure::Flush);
        m.freeze(60);
        assert_eq!((m.mutable_bytes(), m.total_bytes()), (0, 60));
        assert_eq!(m.pressure(), Pressure::Normal);
        m.reserve(50);
        assert_eq!(m.pressure(), Pressure::Stall);
        m.free(60);
        m.free(1000);
        assert_eq!(m.total_bytes(), 0, "saturates instead of wrapping");
    }
}
