//! A detector's value table: values its state refers to often (the links and user agents of
//! a flood's evidence), stored once and referred to by `u32` ids.
//!
//! Ids are local to one detector instance and never leave it (nothing orders by id); two ids
//! are equal exactly when their values are. The table only grows between [`Interner::compact`] calls, which keep exactly
//! the values still referred to (the caller visits every id it holds) and renumber them;
//! detectors compact when the table has grown past twice what they held at the last
//! compaction (and past 65,536 entries), so it stays bounded by what they hold.

use std::hash::Hash;

use crate::hash::FxHashMap;
use crate::model::DimStr;

/// Least table size at which a detector considers compacting (entries).
const COMPACT_MIN: usize = 1 << 16;

/// Values by id and ids by value (module docs).
#[derive(Debug)]
pub(crate) struct Interner<K> {
    ids: FxHashMap<K, u32>,
    values: Vec<K>,
    /// Compact once the table reaches this many entries.
    compact_at: usize,
}

impl<K> Default for Interner<K> {
    fn default() -> Interner<K> {
        Interner { ids: FxHashMap::default(), values: Vec::new(), compact_at: 0 }
    }
}

impl<K: Hash + Eq + Clone> Interner<K> {
    /// The id of `k`, adding it when new.
    #[inline]
    pub(crate) fn id(&mut self, k: &K) -> u32 {
        if let Some(&i) = self.ids.get(k) {
            return i;
        }
        self.insert(k.clone())
    }

    fn insert(&mut self, k: K) -> u32 {
        let i = u32::try_from(self.values.len()).expect("fewer than 2^32 distinct values held");
        self.values.push(k.clone());
        self.ids.insert(k, i);
        i
    }

    /// The value of id `i` (an id this table returned since its last compaction).
    #[inline]
    pub(crate) fn get(&self, i: u32) -> &K {
        &self.values[i as usize]
    }

    /// Values in the table.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the table has grown enough since the last compaction to compact it now.
    pub(crate) fn wants_compaction(&self) -> bool {
        self.values.len() >= self.compact_at.max(COMPACT_MIN)
    }

    /// Keeps only the values whose ids `visit` passes to its callback, renumbering them in
    /// place (`visit` must pass every id its caller still holds, each any number of times).
    pub(crate) fn compact(&mut self, visit: impl FnOnce(&mut dyn FnMut(&mut u32))) {
        let mut map = vec![u32::MAX; self.values.len()];
        let old = std::mem::take(&mut self.values);
        let values = &mut self.values;
        visit(&mut |i: &mut u32| {
            let slot = &mut map[*i as usize];
            if *slot == u32::MAX {
                *slot = values.len() as u32;
                values.push(old[*i as usize].clone());
            }
            *i = *slot;
        });
        self.ids.clear();
        self.ids.extend(self.values.iter().enumerate().map(|(i, k)| (k.clone(), i as u32)));
        self.compact_at = 2 * self.values.len();
    }
}

impl Interner<DimStr> {
    /// The id of `s` (copied into the table when new).
    #[inline]
    pub(crate) fn id_str(&mut self, s: &str) -> u32 {
        match self.ids.get(s) {
            Some(&i) => i,
            None => self.insert(DimStr::new(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_survive_compaction() {
        let mut t: Interner<DimStr> = Interner::default();
        let (b, a, c) = (t.id(&"b".into()), t.id(&"a".into()), t.id(&"c-a-string-longer-than-22-bytes".into()));
        assert_eq!((b, a, c), (0, 1, 2));
        assert_eq!(t.id(&"a".into()), 1);
        // Only `c` and `a` are still held: `b` goes, the others are renumbered.
        let mut held = [c, a, c];
        t.compact(|f| held.iter_mut().for_each(f));
        assert_eq!(held, [0, 1, 0]);
        assert_eq!(t.len(), 2);
        assert_eq!((t.get(0).as_str(), t.get(1).as_str()), ("c-a-string-longer-than-22-bytes", "a"));
        assert_eq!(t.id(&"a".into()), 1);
        assert_eq!(t.id_str("b"), 2, "a dropped string is new again");
        assert_eq!(t.id_str("c-a-string-longer-than-22-bytes"), 0);
    }
}
