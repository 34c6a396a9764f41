//! The rows of a large [`super::Block`]: one open-addressing table holding each row key
//! inline with its row, probed linearly.
//!
//! A lookup reads the slot its key hashes to and usually finds the key (or an empty slot)
//! there or in the next one, so a row costs one cache miss (a `hashbrown` table reads its
//! control bytes, then the bucket, elsewhere). And since the home slot is a pure function of
//! the key, a caller about to update many rows loads their home slots first
//! ([`RowTable::touch`]), so the misses overlap. The table doubles before it is seven
//! eighths full (as `hashbrown` does); rows are never removed one by one (a block is dropped
//! whole).
//!
//! Memory: 40 bytes per slot (8-byte key, 32-byte [`Row`]), between 7/16 and 7/8 of the slots
//! in use once the table has grown.

use super::Row;

/// The key of an empty slot. No row has it: it would need view 7, the bot bit and both
/// interned ids at 2^30 − 1 ([`super::row_key`]), i.e. a billion interned values of one
/// dimension in one shard, while ids are dense from 0.
const EMPTY: u64 = u64::MAX;

/// Fibonacci hashing multiplier (2^64 / φ, odd).
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

#[derive(Clone, Debug)]
struct Slot {
    key: u64,
    row: Row,
}

fn empty_slots(n: usize) -> Box<[Slot]> {
    (0..n).map(|_| Slot { key: EMPTY, row: Row::default() }).collect()
}

/// Rows by key in one open-addressing table (module docs).
#[derive(Debug)]
pub(crate) struct RowTable {
    /// A power of two of slots, at least 8.
    slots: Box<[Slot]>,
    /// Slots in use.
    len: usize,
    /// 64 − log2(slots): a key's home slot is the top bits of its multiplied hash.
    shift: u32,
}

impl RowTable {
    /// An empty table with room for `n` rows before it grows (the fewest slots, a power of
    /// two, of which `n` is at most 7/8).
    pub(crate) fn with_capacity(n: usize) -> RowTable {
        let slots = (n * 8).div_ceil(7).next_power_of_two().max(8);
        RowTable { slots: empty_slots(slots), len: 0, shift: 64 - slots.trailing_zeros() }
    }

    /// The slot `key` hashes to.
    #[inline]
    fn home(&self, key: u64) -> usize {
        ((key ^ (key >> 32)).wrapping_mul(MULTIPLIER) >> self.shift) as usize
    }

    /// The slot holding `key` (`true`), or the empty slot ending its probe (`false`).
    #[inline]
    fn find(&self, key: u64) -> (usize, bool) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let k = self.slots[i].key;
            if k == key {
                return (i, true);
            }
            if k == EMPTY {
                return (i, false);
            }
            i = (i + 1) & mask;
        }
    }

    /// The row of `key`, created empty (and `created` incremented) if absent.
    ///
    /// # Panics
    /// If `key` is the reserved empty key (see [`EMPTY`]; no row key is).
    #[inline]
    pub(crate) fn entry(&mut self, key: u64, created: &mut usize) -> &mut Row {
        assert_ne!(key, EMPTY, "the reserved empty key is no row key");
        let (mut i, found) = self.find(key);
        if !found {
            if (self.len + 1) * 8 > self.slots.len() * 7 {
                self.grow();
                i = self.find(key).0;
            }
            self.slots[i].key = key;
            self.len += 1;
            *created += 1;
        }
        &mut self.slots[i].row
    }

    /// Doubles the slots and reinserts every row.
    fn grow(&mut self) {
        let bigger = empty_slots(self.slots.len() * 2);
        let old = std::mem::replace(&mut self.slots, bigger);
        self.shift -= 1;
        for s in old.into_vec().into_iter().filter(|s| s.key != EMPTY) {
            let (i, _) = self.find(s.key);
            self.slots[i] = s;
        }
    }

    /// The row of `key`, if present.
    #[inline]
    pub(crate) fn get(&self, key: u64) -> Option<&Row> {
        match self.find(key) {
            (i, true) if key != EMPTY => Some(&self.slots[i].row),
            _ => None,
        }
    }

    /// The row of `key`, mutably, if present.
    #[inline]
    pub(crate) fn get_mut(&mut self, key: u64) -> Option<&mut Row> {
        match self.find(key) {
            (i, true) if key != EMPTY => Some(&mut self.slots[i].row),
            _ => None,
        }
    }

    /// Loads the home slot of `key` and returns its key word: only the load matters (as for
    /// [`crate::sketch::VisitorSketch::touch`]), so the lookups that follow hit the cache.
    #[inline]
    pub(crate) fn touch(&self, key: u64) -> u64 {
        self.slots[self.home(key)].key
    }

    /// Every row with its key, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &Row)> {
        self.slots.iter().filter(|s| s.key != EMPTY).map(|s| (s.key, &s.row))
    }

    /// Every row with its key, mutably, in slot order.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut Row)> {
        self.slots.iter_mut().filter(|s| s.key != EMPTY).map(|s| (s.key, &mut s.row))
    }

    /// Rows held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes of the slots (not of the rows' sketches).
    pub(crate) fn slot_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{RowTable, Slot};
    use crate::views::rows::row_key;

    #[test]
    fn slots_are_40_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 40);
    }

    /// Against a `BTreeMap`: 5,000 distinct keys of every view, in a scattered order (a
    /// permutation), the `j`-th one added `1 + j % 3` times, from a table sized for 33 rows
    /// (it doubles seven times).
    #[test]
    fn holds_exactly_the_rows_of_a_map() {
        let mut t = RowTable::with_capacity(33);
        assert_eq!(t.slot_bytes(), 64 * 40);
        let mut want: BTreeMap<u64, u64> = BTreeMap::new();
        let keys: Vec<u64> = (0..5_000u32).map(|i| row_key((i % 8) as usize, i / 8, i % 7, i % 5 == 0)).collect();
        let mut created = 0;
        for round in 0..3 {
            for j in 0..keys.len() {
                if j % 3 < round {
                    continue;
                }
                let k = keys[(j * 7_919) % keys.len()];
                t.entry(k, &mut created).add_clicks(1, false);
                *want.entry(k).or_default() += 1;
            }
        }
        assert_eq!(created, 5_000);
        // 1,667 keys added once, 1,667 twice, 1,666 three times
        assert_eq!(t.iter().map(|(_, r)| r.clicks()).sum::<u64>(), 9_999);
        assert_eq!(created, want.len());
        assert_eq!(t.len(), want.len());
        // 5,000 rows: grown to 8,192 slots (doubled past 7/8: 4,096 slots hold 3,584 < 5,000,
        // 8,192 hold 7,168)
        assert_eq!(t.slot_bytes(), 8_192 * 40);
        let got: BTreeMap<u64, u64> = t.iter().map(|(k, r)| (k, r.clicks())).collect();
        assert_eq!(got, want);
        for (&k, &n) in &want {
            assert_eq!(t.get(k).map(|r| r.clicks()), Some(n));
            t.get_mut(k).expect("present").add_clicks(1, false);
        }
        assert_eq!(t.iter_mut().map(|(_, r)| r.clicks()).sum::<u64>(), want.values().sum::<u64>() + want.len() as u64);
        // (the key of 15 = 8 + 7 is `row_key(7, 1, 1, true)`: 15 % 5 == 0 makes it a bot's)
        assert!(t.get(row_key(7, 1, 1, true)).is_some());
        for absent in [row_key(0, 5_000, 0, false), row_key(7, 1, 1, false), u64::MAX] {
            assert!(t.get(absent).is_none(), "{absent:x}");
        }
    }

    /// The table grows when a row would fill more than 7/8 of it: 8 slots hold 7 rows, 16
    /// hold 14; `with_capacity` picks the fewest slots that hold its rows.
    #[test]
    fn grows_past_seven_eighths_full() {
        let mut t = RowTable::with_capacity(0);
        let mut created = 0;
        for (i, slots_after) in [(1, 8), (7, 8), (8, 16), (14, 16), (15, 32)] {
            while t.len() < i {
                t.entry(row_key(0, t.len() as u32, 0, false), &mut created);
            }
            assert_eq!(t.slot_bytes(), slots_after * 40, "{i} rows");
        }
        assert_eq!(created, 15);
        for (n, slots) in [(7, 8), (8, 16), (14, 16), (15, 32), (33, 64), (56, 64), (57, 128)] {
            assert_eq!(RowTable::with_capacity(n).slot_bytes(), slots * 40, "room for {n}");
        }
    }

    #[test]
    #[should_panic(expected = "reserved empty key")]
    fn refuses_the_empty_key() {
        RowTable::with_capacity(8).entry(u64::MAX, &mut 0);
    }
}
