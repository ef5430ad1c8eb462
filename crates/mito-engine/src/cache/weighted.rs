//! The one cache implementation of the read path: a byte-limited map (quick_cache's
//! CLOCK-Pro, one lock-light shard per core) whose entries weigh what they hold, with lookups
//! counted as hits and misses for the metrics.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

/// How much an entry weighs, in bytes (at least 1: weightless entries would never leave).
pub(crate) type Weigh<K, V> = fn(&K, &V) -> u64;

/// quick_cache's weighter over a plain function.
#[derive(Debug)]
pub(crate) struct FnWeighter<K, V>(Weigh<K, V>);

impl<K, V> Clone for FnWeighter<K, V> {
    fn clone(&self) -> Self {
        Self(self.0)
    }
}

impl<K, V> quick_cache::Weighter<K, V> for FnWeighter<K, V> {
    fn weight(&self, key: &K, value: &V) -> u64 {
        (self.0)(key, value).max(1)
    }
}

/// A byte-limited cache with counted lookups.
pub(crate) struct WeightedCache<K, V> {
    cache: quick_cache::sync::Cache<K, V, FnWeighter<K, V>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<K: Eq + Hash + Clone, V: Clone> std::fmt::Debug for WeightedCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightedCache")
            .field("bytes", &self.cache.weight())
            .field("capacity", &self.cache.capacity())
            .field("entries", &self.cache.len())
            .finish()
    }
}

impl<K, V> WeightedCache<K, V>
where
    K: Eq + Hash + Clone,
    V: Clone,
{
    /// A cache of at most about `bytes` bytes, sized for entries of about `typical` bytes.
    ///
    /// `hot` is the share of `bytes` kept for entries looked up again while held (CLOCK-Pro's
    /// hot part); new entries share the rest. quick_cache's default, 0.97, suits a cache
    /// that admits everything: an entry must come back to stay. A cache whose caller
    /// already admits only what was asked for before (the column cache) gives new entries
    /// room with a lower share, or they leave before their second lookup.
    ///
    /// Each shard holds `bytes / shards` and refuses an entry heavier than that, so the
    /// shards stay few enough to hold 64 typical entries each (one shard per core at most).
    pub(crate) fn new(bytes: u64, typical: u64, hot: f64, weigh: Weigh<K, V>) -> Self {
        let items = usize::try_from(bytes / typical.max(1))
            .unwrap_or(usize::MAX)
            .max(1024);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut shards = cores.next_power_of_two();
        while shards > 1 && bytes / (shards as u64) < typical.saturating_mul(64) {
            shards /= 2;
        }
        let mut options = quick_cache::OptionsBuilder::new();
        options
            .shards(shards)
            .estimated_items_capacity(items)
            .weight_capacity(bytes.max(1))
            .hot_allocation(hot.clamp(0.0, 1.0));
        let cache = match options.build() {
            Ok(o) => quick_cache::sync::Cache::with_options(
                o,
                FnWeighter(weigh),
                Default::default(),
                Default::default(),
            ),
            // The builder refuses only missing capacities, both set above.
            Err(_) => {
                quick_cache::sync::Cache::with_weighter(items, bytes.max(1), FnWeighter(weigh))
            }
        };
        Self {
            cache,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The entry of `key`, counted as a hit or a miss.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let found = self.cache.get(key);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The entry of `key`, not counted.
    pub(crate) fn peek(&self, key: &K) -> Option<V> {
        self.cache.get(key)
    }

    /// Keeps `value` (an entry heavier than the hot share of its shard is not kept).
    pub(crate) fn insert(&self, key: K, value: V) {
        self.cache.insert(key, value);
    }

    /// The byte limit.
    pub(crate) fn capacity(&self) -> u64 {
        self.cache.capacity()
    }

    /// Bytes held now.
    pub(crate) fn bytes(&self) -> u64 {
        self.cache.weight()
    }

    /// Hits and misses since the last call.
    pub(crate) fn take_counts(&self) -> (u64, u64) {
        (
            self.hits.swap(0, Ordering::Relaxed),
            self.misses.swap(0, Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lookups_and_keeps_its_byte_limit() {
        let c: WeightedCache<u32, Vec<u8>> =
            WeightedCache::new(10_000, 100, 0.97, |_, v| v.len() as u64);
        assert!(c.get(&1).is_none());
        c.insert(1, vec![0; 100]);
        assert_eq!(c.get(&1).map(|v| v.len()), Some(100));
        assert!(c.peek(&1).is_some());
        assert_eq!(c.take_counts(), (1, 1));
        assert_eq!(c.take_counts(), (0, 0));
        for k in 0..1000 {
            c.insert(k, vec![0; 100]);
        }
        assert!(c.bytes() <= 10_000, "{}", c.bytes());
    }
}
