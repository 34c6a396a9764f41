//! Interned strings compared by identity: the per-link detectors' codes.
//!
//! A [`Sym`] is a shared handle to a string held by one [`SymTable`]. The table hands out at
//! most one live allocation per distinct string, so two `Sym`s of one table are equal exactly
//! when they are the same allocation: equality and hashing look at the pointer (one word),
//! never at the bytes. Order and display use the text, so orders that reach an output
//! (tie-breaks, evaluation order) are those of the strings, whatever the allocation
//! addresses. Iteration order of a map keyed by `Sym` depends on addresses and must never
//! reach an output (as for every internal table, STYLE §3.9 rule 43).
//!
//! Memory: the table keeps every string some `Sym` still refers to, plus the ones dropped
//! since its last [`SymTable::compact`]; it compacts (drops the strings only it refers to)
//! once it has grown to twice what it held after the previous compaction and at least
//! [`COMPACT_MIN`] entries, so it stays bounded by what the detectors hold.
//!
//! `Sym` is `Rc`-based: a table and its symbols belong to one worker thread (a detector's
//! state), so clones cost no atomic operation.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use crate::hash::FxHashMap;
use crate::model::DimStr;

/// Least table size at which [`SymTable::maybe_compact`] considers compacting (entries).
pub(crate) const COMPACT_MIN: usize = 1 << 16;

/// An interned string (module docs): equality and hash by identity, order by text.
#[derive(Clone)]
pub(crate) struct Sym(Rc<str>);

impl Sym {
    /// The text.
    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 8 bytes of the text, big-endian, zero-padded. Where two symbols' values
    /// differ they order like [`Ord`] (by text, byte-lexicographic: a shorter text pads with
    /// zeros, below any byte that can follow it but NUL, which pads equal and only makes the
    /// values tie), so sorts can compare integers first and texts only on ties.
    #[inline]
    pub(crate) fn order_prefix(&self) -> u64 {
        let mut b = [0u8; 8];
        let n = self.0.len().min(8);
        b[..n].copy_from_slice(&self.0.as_bytes()[..n]);
        u64::from_be_bytes(b)
    }
}

impl PartialEq for Sym {
    #[inline]
    fn eq(&self, other: &Sym) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for Sym {}

impl Hash for Sym {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(Rc::as_ptr(&self.0).cast::<u8>() as usize);
    }
}

impl PartialOrd for Sym {
    #[inline]
    fn partial_cmp(&self, other: &Sym) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Sym {
    /// By text (byte-lexicographic, as `str` and [`DimStr`]); the same allocation is equal
    /// without reading it.
    #[inline]
    fn cmp(&self, other: &Sym) -> Ordering {
        if Rc::ptr_eq(&self.0, &other.0) { Ordering::Equal } else { self.0.as_bytes().cmp(other.0.as_bytes()) }
    }
}

impl std::ops::Deref for Sym {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Sym {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for Sym {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The table handing out [`Sym`]s (module docs).
#[derive(Default)]
pub(crate) struct SymTable {
    syms: FxHashMap<DimStr, Sym>,
    /// Compact once the table reaches this many entries (and [`COMPACT_MIN`]).
    compact_at: usize,
}

impl std::fmt::Debug for SymTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SymTable").field("len", &self.syms.len()).finish()
    }
}

impl SymTable {
    /// The symbol of `s` (added when new).
    #[inline]
    pub(crate) fn get(&mut self, s: &str) -> Sym {
        if let Some(sym) = self.syms.get(s) {
            return sym.clone();
        }
        let sym = Sym(Rc::from(s));
        self.syms.insert(DimStr::new(s), sym.clone());
        sym
    }

    /// Strings in the table.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.syms.len()
    }

    /// Drops the strings no [`Sym`] outside the table refers to.
    pub(crate) fn compact(&mut self) {
        self.syms.retain(|_, s| Rc::strong_count(&s.0) > 1);
        self.compact_at = 2 * self.syms.len();
    }

    /// [`SymTable::compact`] once the table has grown enough since the last one (module docs).
    pub(crate) fn maybe_compact(&mut self) {
        if self.syms.len() >= self.compact_at.max(COMPACT_MIN) {
            self.compact();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift).
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn equal_exactly_when_the_text_is_and_ordered_by_text() {
        let mut t = SymTable::default();
        let words = ["b", "a", "", "a-string-longer-than-twenty-two-bytes", "Zürich", "ab"];
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut held: Vec<(Sym, &str)> = Vec::new();
        for round in 0..2_000 {
            let w = words[(next(&mut rng) % words.len() as u64) as usize];
            held.push((t.get(w), w));
            if round % 97 == 0 {
                // Drop about half of what is held, then compact: the rest stays valid.
                held.retain(|_| next(&mut rng).is_multiple_of(2));
                t.compact();
                let live: std::collections::BTreeSet<&str> = held.iter().map(|(_, w)| *w).collect();
                assert_eq!(t.len(), live.len(), "the table keeps exactly the held strings");
            }
        }
        for (a, wa) in &held {
            assert_eq!(a.as_str(), *wa);
            for (b, wb) in &held {
                assert_eq!(a == b, wa == wb, "{wa:?} vs {wb:?}");
                assert_eq!(a.cmp(b), wa.as_bytes().cmp(wb.as_bytes()), "{wa:?} vs {wb:?}");
                if a == b {
                    use std::hash::BuildHasher;
                    assert_eq!(crate::hash::FxBuildHasher.hash_one(a), crate::hash::FxBuildHasher.hash_one(b));
                }
            }
        }
    }

    #[test]
    fn compaction_waits_for_growth() {
        let mut t = SymTable::default();
        let keep = t.get("kept");
        for i in 0..COMPACT_MIN - 2 {
            drop(t.get(&i.to_string()));
        }
        t.maybe_compact();
        assert_eq!(t.len(), COMPACT_MIN - 1, "below the minimum size nothing is dropped");
        drop(t.get("one more"));
        t.maybe_compact();
        assert_eq!(t.len(), 1, "only the held string stays");
        assert!(t.get("kept") == keep, "a held string keeps its identity");
    }

    #[test]
    fn order_prefix_orders_like_the_text_where_it_differs() {
        let mut t = SymTable::default();
        let words = ["", "a", "a\0", "a\0b", "ab", "abcdefgh", "abcdefgh0", "abcdefgi", "b", "l00a1f", "l00a20", "\u{7f}", "é", "Zürich"];
        for wa in words {
            for wb in words {
                let (a, b) = (t.get(wa), t.get(wb));
                if a.order_prefix() != b.order_prefix() {
                    assert_eq!(a.order_prefix().cmp(&b.order_prefix()), a.cmp(&b), "{wa:?} vs {wb:?}");
                }
            }
        }
    }
}
