//! Identifiers shared by every layer.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Id of a table; the high 32 bits of a [`RegionId`].
pub type TableId = u32;
/// Number of a region inside its table; the low 32 bits of a [`RegionId`].
pub type RegionNumber = u32;
/// Unique, immutable id of a column inside a region. Never reused after a drop.
pub type ColumnId = u32;
/// Orders every row written to a region; strictly increasing, survives restarts.
pub type SequenceNumber = u64;
/// Orders the WAL entries of one region; strictly increasing per region.
pub type EntryId = u64;

/// Id of a region: table id in the high 32 bits, region number in the low 32 bits.
///
/// Serialized as the plain `u64`, so that paths and encodings built from it never change.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RegionId(u64);

impl RegionId {
    /// The region `region_number` of table `table_id`.
    pub const fn new(table_id: TableId, region_number: RegionNumber) -> Self {
        Self(((table_id as u64) << 32) | region_number as u64)
    }

    /// Rebuilds an id from its `u64` form (see [`RegionId::as_u64`]).
    pub const fn from_u64(id: u64) -> Self {
        Self(id)
    }

    /// The `u64` form, used in paths and encodings.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The table this region belongs to.
    pub const fn table_id(self) -> TableId {
        (self.0 >> 32) as TableId
    }

    /// The region's number inside its table.
    pub const fn region_number(self) -> RegionNumber {
        self.0 as RegionNumber
    }
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}({}, {})",
            self.0,
            self.table_id(),
            self.region_number()
        )
    }
}

impl fmt::Debug for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<u64> for RegionId {
    fn from(id: u64) -> Self {
        Self(id)
    }
}

impl From<RegionId> for u64 {
    fn from(id: RegionId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_id_splits_into_table_and_number() {
        let id = RegionId::new(1024, 7);
        assert_eq!(id.table_id(), 1024);
        assert_eq!(id.region_number(), 7);
        assert_eq!(id.as_u64(), (1024u64 << 32) | 7);
        assert_eq!(RegionId::from_u64(id.as_u64()), id);
        assert_eq!(id.to_string(), "4398046511111(1024, 7)");
    }

    #[test]
    fn region_id_extremes() {
        let id = RegionId::new(u32::MAX, u32::MAX);
        assert_eq!(id.as_u64(), u64::MAX);
        assert_eq!(id.table_id(), u32::MAX);
        assert_eq!(id.region_number(), u32::MAX);
        assert_eq!(serde_json::to_string(&id).unwrap(), u64::MAX.to_string());
    }
}
