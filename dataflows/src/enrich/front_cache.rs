//! A small direct-mapped cache keyed by text, in front of the enricher's slower lookups
//! (the user-agent LRU, the GeoIP tree walk).
//!
//! One slot per key hash (a power-of-two number of slots, [`FxBuildHasher`] hash masked);
//! a hit is one hash of the key, one comparison and a copy of the value; a miss overwrites
//! the slot. No recency bookkeeping, no reference counts: cheaper than an LRU hit, and
//! bounded by construction (`slots` values and their keys, each key at most `max_key_len`
//! bytes; longer keys are never cached). Values are pure functions of their keys, so a
//! cache never changes a result.

use std::hash::BuildHasher;

use crate::hash::FxBuildHasher;

/// Direct-mapped cache from text keys to `V` (module docs).
pub(crate) struct FrontCache<V> {
    slots: Vec<Option<(Box<str>, V)>>,
    mask: usize,
    max_key_len: usize,
}

impl<V: Clone> FrontCache<V> {
    /// A cache of `slots` slots (rounded up to a power of two, at least 1) for keys of at
    /// most `max_key_len` bytes.
    pub(crate) fn new(slots: usize, max_key_len: usize) -> FrontCache<V> {
        let n = slots.max(1).next_power_of_two();
        FrontCache { slots: (0..n).map(|_| None).collect(), mask: n - 1, max_key_len }
    }

    /// The slot of `key`, or `None` for a key too long to cache.
    #[inline]
    pub(crate) fn slot(&self, key: &str) -> Option<usize> {
        (key.len() <= self.max_key_len).then(|| FxBuildHasher.hash_one(key) as usize & self.mask)
    }

    /// The value cached for `key` in slot `i` (from [`FrontCache::slot`]).
    #[inline]
    pub(crate) fn get(&self, i: usize, key: &str) -> Option<&V> {
        match &self.slots[i] {
            Some((k, v)) if **k == *key => Some(v),
            _ => None,
        }
    }

    /// Stores `value` for `key` in slot `i` (from [`FrontCache::slot`]), replacing the slot.
    pub(crate) fn put(&mut self, i: usize, key: &str, value: V) {
        self.slots[i] = Some((Box::from(key), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_misses_replacement_and_long_keys() {
        let mut c: FrontCache<u32> = FrontCache::new(3, 8);
        assert_eq!(c.slots.len(), 4);
        let i = c.slot("abc").expect("short key");
        assert_eq!(c.get(i, "abc"), None);
        c.put(i, "abc", 7);
        assert_eq!(c.get(i, "abc"), Some(&7));
        // Another key in the same slot replaces it and is never mistaken for it.
        let other = (0..10_000).map(|n| n.to_string()).find(|k| c.slot(k) == Some(i)).expect("some key shares the slot");
        assert_eq!(c.get(i, &other), None);
        c.put(i, &other, 9);
        assert_eq!(c.get(i, &other), Some(&9));
        assert_eq!(c.get(i, "abc"), None);
        assert_eq!(c.slot("123456789"), None, "keys over max_key_len are not cached");
    }
}
