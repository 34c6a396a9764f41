//! [`DimSym`]: a dimension value interned in one process-wide table.
//!
//! Every distinct dimension value (country, device class, browser, OS, referrer domain,
//! referrer medium) gets one `u32` id, the same on every worker of the process, for the life
//! of the process. A record then carries six 4-byte ids instead of six strings, and the
//! stages after enrichment compare, hash and index values by id: the link detectors key their
//! windows by it, the rollup shards translate it to their own ids through a `Vec` indexed by
//! id instead of hashing the text.
//!
//! The table only grows (the text of an id is leaked once and never freed): it holds each
//! distinct value once, as each rollup shard's own interner already does for as long as the
//! shard lives, so it adds one copy of the values to what the shards keep. Values come from
//! the enricher (bounded vocabularies, and registrable referrer domains) and from records
//! deserialized from other processes; queries never add values (they look texts up in the
//! shards).
//!
//! Interning takes the table's lock (a read lock for a known value), so the enricher interns
//! only on misses of its own caches; reading an id's text takes the read lock too, and the
//! per-click paths never do (they compare ids, and order by text only on ties).

use std::cmp::Ordering;
use std::fmt;
use std::sync::LazyLock;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::hash::FxHashMap;

/// An interned dimension value (module docs): `Copy`, 4 bytes; equality and hashing by id
/// (equal ids exactly when equal texts), order and display by text.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DimSym(u32);

#[derive(Default)]
struct Table {
    ids: FxHashMap<&'static str, u32>,
    texts: Vec<&'static str>,
}

static TABLE: LazyLock<RwLock<Table>> = LazyLock::new(RwLock::default);

impl DimSym {
    /// The symbol of `s`, added to the process-wide table when new.
    pub fn new(s: &str) -> DimSym {
        if let Some(&id) = TABLE.read().ids.get(s) {
            return DimSym(id);
        }
        let mut t = TABLE.write();
        if let Some(&id) = t.ids.get(s) {
            return DimSym(id);
        }
        let id = u32::try_from(t.texts.len()).expect("fewer than 2^32 distinct dimension values");
        let text: &'static str = Box::leak(Box::from(s));
        t.texts.push(text);
        t.ids.insert(text, id);
        DimSym(id)
    }

    /// The process-wide id (dense from 0, in order of first interning; differs between runs
    /// and processes, so it must never reach an output).
    #[inline]
    pub fn id(self) -> u32 {
        self.0
    }

    /// The text.
    pub fn as_str(self) -> &'static str {
        TABLE.read().texts[self.0 as usize]
    }
}

impl Default for DimSym {
    /// The empty string.
    fn default() -> Self {
        DimSym::new("")
    }
}

impl From<&str> for DimSym {
    fn from(s: &str) -> Self {
        DimSym::new(s)
    }
}

impl std::ops::Deref for DimSym {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialOrd for DimSym {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for DimSym {
    /// By text (byte-lexicographic, as `str`); equal ids without reading the table.
    fn cmp(&self, other: &Self) -> Ordering {
        if self.0 == other.0 { Ordering::Equal } else { self.as_str().as_bytes().cmp(other.as_str().as_bytes()) }
    }
}

impl fmt::Debug for DimSym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}
impl fmt::Display for DimSym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl Serialize for DimSym {
    /// As the plain string (the id is process-local).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
impl<'de> Deserialize<'de> for DimSym {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(DimSym::new(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_ids_exactly_for_equal_texts_ordered_by_text() {
        let words = ["b", "a", "", "a-string-longer-than-twenty-two-bytes", "Zürich", "ab", "B"];
        let syms: Vec<DimSym> = words.iter().map(|w| DimSym::new(w)).collect();
        for (a, wa) in syms.iter().zip(words) {
            assert_eq!(a.as_str(), wa);
            let fresh = wa.to_string(); // another allocation of the same text
            assert_eq!(*a, DimSym::new(&fresh), "interning again gives the same id");
            for (b, wb) in syms.iter().zip(words) {
                assert_eq!(a == b, wa == wb, "{wa:?} vs {wb:?}");
                assert_eq!(a.cmp(b), wa.as_bytes().cmp(wb.as_bytes()), "{wa:?} vs {wb:?}");
            }
        }
        assert_eq!(DimSym::default().as_str(), "");
        assert_eq!(format!("{} {:?}", syms[4], syms[4]), "Zürich \"Zürich\"");
    }

    #[test]
    fn the_same_id_on_every_thread_and_through_serialization() {
        let here = DimSym::new("thread-test.example");
        let there = std::thread::spawn(|| DimSym::new("thread-test.example")).join().expect("thread");
        assert_eq!(here, there);
        let bytes = bincode::serialize(&here).expect("serialize");
        assert_eq!(bytes, bincode::serialize("thread-test.example").expect("serialize"), "serialized as the plain string");
        let back: DimSym = bincode::deserialize(&bytes).expect("deserialize");
        assert_eq!(back, here);
    }
}
