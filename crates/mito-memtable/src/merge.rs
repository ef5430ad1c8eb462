//! Tiered merging of a window's parts into series order.
//!
//! Rows arrive time-major (every series at t, then at t + 10 s), so a series' rows are spread
//! over every part of its window and a read gathers each of them from a different place. When
//! a read finds that a window holds `level0_fanin` (16) parts made by writes, they are merged
//! into one part
//! whose rows are in (series key, ts, sequence desc) order; when it holds `fanin` (8) merged
//! parts of one level, those are merged into the next ([`MergePolicy`](crate::MergePolicy)).
//! Merging happens on reads, not writes, so the write path stays one key lookup per row: the
//! first read after many writes pays about what it would have paid without merging, and the
//! reads after it gather from few, sequential parts. Every version is kept (dedup stays a read-time
//! decision), so a merge never changes what any read returns. The order of series keys never
//! changes as series are added, so a merged part stays in key order.

use std::sync::Arc;

use arrow_array::{ArrayRef, new_null_array};
use arrow_buffer::ScalarBuffer;
use snafu::ResultExt;

use crate::error::{ArrowSnafu, Result};
use crate::memtable::{Memtable, read_lock, write_lock};
use crate::part::{Ops, Part, field_sources};
use crate::read::{MemtableRead, sort_rows};
use crate::series::ranks;

impl Memtable {
    /// Merges parts of the window starting at `start` while some level is full.
    pub(crate) fn maybe_merge(&self, start: i64) -> Result<()> {
        loop {
            let victims: Vec<Arc<Part>> = {
                let partitions = read_lock(&self.partitions);
                let Some(parts) = partitions.get(&start) else {
                    return Ok(());
                };
                let policy = self.options.merge;
                let full = (0..=u8::MAX).find(|level| {
                    let need = if *level == 0 {
                        policy.level0_fanin
                    } else {
                        policy.fanin
                    }
                    .max(2);
                    parts.iter().filter(|p| p.level == *level).count() >= need
                });
                let Some(level) = full else {
                    return Ok(());
                };
                parts.iter().filter(|p| p.level == level).cloned().collect()
            };
            let level = victims.first().map_or(0, |p| p.level).saturating_add(1);
            let merged = Arc::new(self.merge_parts(&victims, level)?);
            let freed: usize = victims.iter().map(|p| p.bytes).sum();
            let added = merged.bytes;
            let installed = {
                // Reads merge too, concurrently: install only if every victim is still there
                // (otherwise another merge already replaced them, and this one is dropped).
                let mut partitions = write_lock(&self.partitions);
                match partitions.get_mut(&start) {
                    Some(parts)
                        if victims
                            .iter()
                            .all(|v| parts.iter().any(|p| Arc::ptr_eq(v, p))) =>
                    {
                        let at = parts
                            .iter()
                            .position(|p| victims.iter().any(|v| Arc::ptr_eq(v, p)))
                            .unwrap_or(0);
                        parts.retain(|p| !victims.iter().any(|v| Arc::ptr_eq(v, p)));
                        parts.insert(at.min(parts.len()), merged);
                        true
                    }
                    _ => false,
                }
            };
            if !installed {
                continue;
            }
            self.adjust_bytes(added, freed);
        }
    }

    /// One part holding every row of `parts`, sorted by (series key, ts, sequence desc).
    fn merge_parts(&self, parts: &[Arc<Part>], level: u8) -> Result<Part> {
        let region_id = self.metadata.region_id();
        let keys = read_lock(&self.series).keys();
        let index = sort_rows(parts, &ranks(&keys), &MemtableRead::default());
        let num_fields = self.metadata.field_columns().count();
        let mut fields = Vec::with_capacity(num_fields);
        for (f, c) in self.metadata.field_columns().enumerate() {
            if parts.iter().all(|p| p.field(f).is_none()) {
                fields.push(None);
                continue;
            }
            let null: ArrayRef = new_null_array(&c.data_type, 1);
            let sources = field_sources(parts, f, null.as_ref());
            // Rows of parts without the column read the part's one-row null source.
            let idx: Vec<(usize, usize)> = index
                .rows
                .iter()
                .map(
                    |&(p, r)| match parts.get(p as usize).and_then(|x| x.field(f)) {
                        Some(_) => (p as usize, r as usize),
                        None => (p as usize, 0),
                    },
                )
                .collect();
            let array = arrow_select::interleave::interleave(&sources, &idx)
                .context(ArrowSnafu { region_id })?;
            fields.push(Some(array));
        }
        let first_op = parts.first().map(|p| p.op(0));
        let same_op = parts
            .iter()
            .all(|p| matches!(p.ops, Ops::Same(op) if Some(op) == first_op));
        let ops = match (same_op, first_op) {
            (true, Some(op)) => Ops::Same(op),
            _ => Ops::PerRow(
                index
                    .rows
                    .iter()
                    .map(|&(p, r)| {
                        parts
                            .get(p as usize)
                            .map_or(1, |x| x.op(r as usize).as_u8())
                    })
                    .collect(),
            ),
        };
        Ok(Part::new(
            index.sid,
            ScalarBuffer::from(index.ts),
            index.seq,
            ops,
            fields,
            level,
        ))
    }
}
