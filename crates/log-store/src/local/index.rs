//! What the WAL holds, in memory: which regions have entries in which segment, the last entry
//! of every region, and how far each region is obsolete. Pure bookkeeping, no I/O.

use std::collections::{BTreeMap, HashMap};

use store_api::{EntryId, RegionId};

/// Entry-id span of one region inside one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) first: EntryId,
    pub(crate) last: EntryId,
}

/// One segment file.
#[derive(Debug, Clone, Default)]
pub(crate) struct SegmentInfo {
    /// Bytes of valid data (header and whole records) in the file.
    pub(crate) size: u64,
    /// The regions with entries in the segment.
    pub(crate) regions: HashMap<RegionId, Span>,
}

impl SegmentInfo {
    pub(crate) fn add(&mut self, region_id: RegionId, entry_id: EntryId) {
        self.regions
            .entry(region_id)
            .and_modify(|s| s.last = entry_id)
            .or_insert(Span {
                first: entry_id,
                last: entry_id,
            });
    }
}

/// The index of a log store.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Segments by id, oldest first; the last one is the active (appended) segment.
    pub(crate) segments: BTreeMap<u64, SegmentInfo>,
    /// Last entry id of each region in the log.
    pub(crate) last_entry: HashMap<RegionId, EntryId>,
    /// Entries up to this id are obsolete, per region.
    pub(crate) obsolete: HashMap<RegionId, EntryId>,
}

impl Index {
    /// The id of the segment appends go to.
    pub(crate) fn active_id(&self) -> Option<u64> {
        self.segments.keys().next_back().copied()
    }

    /// Records an entry found in (or appended to) segment `segment_id`. The region's last
    /// entry id only ever grows.
    pub(crate) fn add(&mut self, segment_id: u64, region_id: RegionId, entry_id: EntryId) {
        self.segments
            .entry(segment_id)
            .or_default()
            .add(region_id, entry_id);
        let last = self.last_entry.entry(region_id).or_insert(entry_id);
        *last = (*last).max(entry_id);
    }

    /// Raises the obsolete mark of a region (never lowers it).
    pub(crate) fn mark_obsolete(&mut self, region_id: RegionId, entry_id: EntryId) {
        let mark = self.obsolete.entry(region_id).or_insert(entry_id);
        *mark = (*mark).max(entry_id);
    }

    /// Removes and returns the ids of the segments no region needs any more. The active
    /// segment is never among them.
    pub(crate) fn take_purgeable(&mut self) -> Vec<u64> {
        let active = self.active_id();
        let purgeable: Vec<u64> = self
            .segments
            .iter()
            .filter(|(id, _)| Some(**id) != active)
            .filter(|(_, seg)| self.all_entries_obsolete(seg))
            .map(|(id, _)| *id)
            .collect();
        for id in &purgeable {
            self.segments.remove(id);
        }
        purgeable
    }

    /// Whether every entry of every segment, the active one included, is obsolete: then the
    /// whole log may go (at close, when nothing appends any more).
    pub(crate) fn all_obsolete(&self) -> bool {
        self.segments
            .values()
            .all(|seg| self.all_entries_obsolete(seg))
    }

    /// Whether every entry of `seg` is obsolete for its region.
    fn all_entries_obsolete(&self, seg: &SegmentInfo) -> bool {
        seg.regions
            .iter()
            .all(|(r, span)| self.obsolete.get(r).is_some_and(|o| span.last <= *o))
    }

    /// Ids and sizes of the segments that may hold entries of `region_id` with id `>= from`.
    pub(crate) fn segments_for(&self, region_id: RegionId, from: EntryId) -> Vec<(u64, u64)> {
        self.segments
            .iter()
            .filter(|(_, seg)| seg.regions.get(&region_id).is_some_and(|s| s.last >= from))
            .map(|(id, seg)| (*id, seg.size))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: u32) -> RegionId {
        RegionId::new(1, n)
    }

    #[test]
    fn purges_only_segments_every_region_has_left() {
        // Given three segments: 1 holds r1 and r2, 2 holds r1, 3 (active) holds r2.
        let mut idx = Index::default();
        idx.add(1, r(1), 1);
        idx.add(1, r(2), 1);
        idx.add(1, r(1), 2);
        idx.add(2, r(1), 3);
        idx.add(3, r(2), 2);

        // When only r1 is obsolete up to 2, nothing goes: r2 still needs segment 1.
        idx.mark_obsolete(r(1), 2);
        assert!(idx.take_purgeable().is_empty());

        // When r2 is obsolete up to 1, segment 1 goes.
        idx.mark_obsolete(r(2), 1);
        assert_eq!(idx.take_purgeable(), vec![1]);

        // When r1 and r2 are fully obsolete, segment 2 goes but never the active one.
        idx.mark_obsolete(r(1), EntryId::MAX);
        idx.mark_obsolete(r(2), EntryId::MAX);
        assert_eq!(idx.take_purgeable(), vec![2]);
        assert_eq!(idx.active_id(), Some(3));
    }

    #[test]
    fn all_obsolete_includes_the_active_segment() {
        // Given two segments, the active one holding r2's newest entry.
        let mut idx = Index::default();
        idx.add(1, r(1), 1);
        idx.add(2, r(2), 1);
        idx.add(2, r(2), 2);
        // When r1 and r2 up to 1 are obsolete, r2's entry 2 in the active segment is still
        // needed.
        idx.mark_obsolete(r(1), 1);
        idx.mark_obsolete(r(2), 1);
        assert!(!idx.all_obsolete());
        // Then once r2 is obsolete up to 2, nothing is needed.
        idx.mark_obsolete(r(2), 2);
        assert!(idx.all_obsolete());
    }

    #[test]
    fn obsolete_mark_never_goes_back() {
        let mut idx = Index::default();
        idx.mark_obsolete(r(1), 10);
        idx.mark_obsolete(r(1), 5);
        assert_eq!(idx.obsolete[&r(1)], 10);
    }

    #[test]
    fn empty_old_segments_are_purgeable() {
        let mut idx = Index::default();
        idx.segments.insert(1, SegmentInfo::default());
        idx.segments.insert(2, SegmentInfo::default());
        assert_eq!(idx.take_purgeable(), vec![1]);
    }

    #[test]
    fn segments_for_skips_segments_without_newer_entries() {
        let mut idx = Index::default();
        idx.add(1, r(1), 1);
        idx.add(1, r(1), 2);
        idx.add(2, r(2), 1);
        idx.add(3, r(1), 3);
        let ids: Vec<u64> = idx
            .segments_for(r(1), 3)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, vec![3]);
        let ids: Vec<u64> = idx
            .segments_for(r(1), 0)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, vec![1, 3]);
        assert!(idx.segments_for(r(9), 0).is_empty());
    }
}
