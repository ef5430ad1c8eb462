//! The series dictionary: encoded primary key -> dense series id, shared by every time
//! partition of a memtable. Append-only: ids are never reused while the memtable lives.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;

/// Dense id of a series inside one memtable.
pub(crate) type SeriesId = u32;

/// Encoded keys and their ids.
#[derive(Debug, Default)]
pub(crate) struct SeriesDict {
    ids: HashMap<Arc<[u8]>, SeriesId, RandomState>,
    keys: Vec<Arc<[u8]>>,
    key_bytes: usize,
}

impl SeriesDict {
    /// The id of `key`, added if new. Returns the id and the bytes newly held.
    pub(crate) fn get_or_insert(&mut self, key: &[u8]) -> (SeriesId, usize) {
        if let Some(id) = self.ids.get(key) {
            return (*id, 0);
        }
        let id = self.keys.len() as SeriesId;
        let key: Arc<[u8]> = Arc::from(key);
        // The key bytes, the Arc header, a map slot and a vector slot.
        let held = key.len()
            + 16
            + 2 * std::mem::size_of::<usize>()
            + std::mem::size_of::<(usize, SeriesId)>();
        self.key_bytes += held;
        self.ids.insert(key.clone(), id);
        self.keys.push(key);
        (id, held)
    }

    /// Number of series.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Every key so far, indexed by id (cheap: clones the `Arc`s).
    pub(crate) fn keys(&self) -> Vec<Arc<[u8]>> {
        self.keys.clone()
    }
}

/// For each series id, its rank in key order.
pub(crate) fn ranks(keys: &[Arc<[u8]>]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..keys.len() as u32).collect();
    order.sort_unstable_by(|a, b| keys.get(*a as usize).cmp(&keys.get(*b as usize)));
    let mut rank = vec![0u32; keys.len()];
    for (r, id) in order.into_iter().enumerate() {
        if let Some(slot) = rank.get_mut(id as usize) {
            *slot = r as u32;
        }
    }
    rank
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dense_and_stable() {
        let mut d = SeriesDict::default();
        assert_eq!(d.get_or_insert(b"b").0, 0);
        assert_eq!(d.get_or_insert(b"a").0, 1);
        let (id, held) = d.get_or_insert(b"b");
        assert_eq!((id, held), (0, 0));
        assert_eq!(d.len(), 2);
        assert_eq!(ranks(&d.keys()), vec![1, 0]);
    }
}
