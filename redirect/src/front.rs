//! A small direct-mapped array of recently served cache entries in front of the moka L1
//! cache ([`crate::cache::LinkCache`]).
//!
//! Why: a moka read is several dependent pointer loads (bucket, key, value entry) plus
//! recording the read for its eviction policy and, every so often, running that policy's
//! housekeeping on the caller's thread; on a redirect server that is most of the handler's
//! time. A slot here is one lock, one key comparison and one `Arc` clone.
//!
//! Semantics kept: a slot is only filled from an entry the L1 cache just returned as live
//! and fresh, and serves it for at most [`Front::ttl`] after that (so an entry can outlive
//! its L1 TTL by at most that much, by default 1 s, and never more than a quarter of the
//! TTL or negative TTL). Freshness against invalidations is checked by the caller on every
//! hit (the same epoch check the L1 cache uses), so read-after-write holds. Slots hold
//! `Arc`s of entries, so the front adds at most `slots` entries of memory (half the L1
//! capacity, at most 16,384).

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cache::Entry;

/// Most slots of a front, whatever the L1 capacity.
pub const MAX_FRONT_SLOTS: usize = 16_384;
/// Longest time a slot serves an entry after it was read from the L1 cache.
pub const MAX_FRONT_TTL: Duration = Duration::from_secs(1);

struct Slot {
    key: Arc<str>,
    entry: Arc<Entry>,
    until: Instant,
}

/// The front array: `slots.len()` is a power of two (or zero: the front is off).
pub(crate) struct Front {
    slots: Box<[Mutex<Option<Slot>>]>,
    hasher: std::hash::RandomState,
    ttl: Duration,
}

impl Front {
    /// A front for an L1 cache of `capacity` entries whose entries live `ttl` (positive)
    /// and `negative_ttl` (unknown codes): the largest power of two of slots not above
    /// `capacity / 2` (capped at [`MAX_FRONT_SLOTS`]; none below 2), serving each entry for
    /// `min(1 s, ttl / 4, negative_ttl / 4)`.
    pub(crate) fn new(capacity: u64, ttl: Duration, negative_ttl: Duration) -> Self {
        let half = usize::try_from(capacity / 2).unwrap_or(usize::MAX).min(MAX_FRONT_SLOTS);
        let n = if half < 2 { 0 } else { 1usize << half.ilog2() };
        let slots = (0..n).map(|_| Mutex::new(None)).collect();
        Self { slots, hasher: std::hash::RandomState::new(), ttl: MAX_FRONT_TTL.min(ttl / 4).min(negative_ttl / 4) }
    }

    /// How long a slot serves an entry.
    #[cfg(test)]
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    fn slot(&self, code: &str) -> Option<&Mutex<Option<Slot>>> {
        if self.slots.is_empty() || self.ttl.is_zero() {
            return None;
        }
        let i = (self.hasher.hash_one(code) as usize) & (self.slots.len() - 1);
        self.slots.get(i)
    }

    /// The entry held for `code`, if its slot holds `code` and has not run out.
    pub(crate) fn get(&self, code: &str, now: Instant) -> Option<Arc<Entry>> {
        let slot = self.slot(code)?.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some(s) if now < s.until && &*s.key == code => Some(Arc::clone(&s.entry)),
            _ => None,
        }
    }

    /// Holds `entry` (just returned live by the L1 cache at `now`) for `code`, replacing
    /// whatever shared its slot.
    pub(crate) fn put(&self, code: &str, entry: &Arc<Entry>, now: Instant) {
        let Some(slot) = self.slot(code) else { return };
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        let key = match slot.take() {
            Some(s) if &*s.key == code => s.key,
            _ => Arc::from(code),
        };
        *slot = Some(Slot { key, entry: Arc::clone(entry), until: now + self.ttl });
    }

    /// Empties the slot of `code` (a later [`Self::get`] misses).
    pub(crate) fn forget(&self, code: &str) {
        if let Some(slot) = self.slot(code) {
            let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            if slot.as_ref().is_some_and(|s| &*s.key == code) {
                *slot = None;
            }
        }
    }

    /// Number of slots (0 = off).
    #[cfg(test)]
    pub(crate) fn slots(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Arc<Entry> {
        Arc::new(Entry::absent_for_tests())
    }

    #[test]
    fn sizing_follows_capacity_and_ttls() {
        let s = Duration::from_secs;
        assert_eq!(Front::new(100_000, s(60), s(5)).slots(), MAX_FRONT_SLOTS);
        assert_eq!(Front::new(1000, s(60), s(5)).slots(), 256, "largest power of two <= 500");
        assert_eq!(Front::new(16, s(60), s(5)).slots(), 8);
        assert_eq!(Front::new(3, s(60), s(5)).slots(), 0, "below 2 slots the front is off");
        assert_eq!(Front::new(1000, s(60), s(5)).ttl(), s(1));
        assert_eq!(Front::new(1000, s(60), Duration::from_millis(200)).ttl(), Duration::from_millis(50));
        assert_eq!(Front::new(1000, Duration::from_millis(400), s(5)).ttl(), Duration::from_millis(100));
    }

    #[test]
    fn serves_only_its_own_key_until_the_slot_runs_out() {
        let f = Front::new(1000, Duration::from_secs(60), Duration::from_secs(5));
        let t0 = Instant::now();
        let e = entry();
        assert!(f.get("abc", t0).is_none());
        f.put("abc", &e, t0);
        assert!(f.get("abc", t0).is_some_and(|g| Arc::ptr_eq(&g, &e)));
        assert!(f.get("abd", t0).is_none(), "another key, whatever its slot");
        assert!(f.get("abc", t0 + Duration::from_millis(999)).is_some());
        assert!(f.get("abc", t0 + Duration::from_secs(1)).is_none(), "run out after the front ttl");
        f.put("abc", &e, t0);
        f.forget("abc");
        assert!(f.get("abc", t0).is_none());
    }

    #[test]
    fn a_colliding_key_replaces_the_slot() {
        let f = Front::new(4, Duration::from_secs(60), Duration::from_secs(5));
        assert_eq!(f.slots(), 2);
        let t0 = Instant::now();
        let codes: Vec<String> = (0..64).map(|i| format!("c{i}")).collect();
        let (a, b) = codes
            .iter()
            .flat_map(|a| codes.iter().map(move |b| (a, b)))
            .find(|(a, b)| a != b && f.slot(a).map(|s| s as *const _) == f.slot(b).map(|s| s as *const _))
            .expect("two of 64 keys share one of 2 slots");
        f.put(a, &entry(), t0);
        f.put(b, &entry(), t0);
        assert!(f.get(a, t0).is_none());
        assert!(f.get(b, t0).is_some());
    }
}
