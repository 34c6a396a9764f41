//! A small direct-mapped array of recently served cache entries in front of the moka L1
//! cache ([`crate::cache::LinkCache`]).
//!
//! Why: a moka read is several dependent pointer loads (bucket, key, value entry) plus
//! recording the read for its eviction policy and, every so often, running that policy's
//! housekeeping on the caller's thread; on a redirect server that is most of the handler's
//! time. A slot here is one 64-byte cache line holding its lock, the code (inline, up to
//! [`MAX_FRONT_KEY_BYTES`]), the entry's epoch and deadline and the link; the caller reads
//! the link while the slot is locked ([`Front::with`]), so a hit changes no reference
//! count. At the maximum rate the kernel's network stack evicts most of the CPU caches
//! between two requests, so each further line touched, each atomic on a cold line, costs
//! a cache miss per request.
//!
//! Semantics kept: a slot is only filled from an entry the L1 cache just returned as live
//! and fresh, and serves it for at most [`Front::ttl`] after that (so an entry can outlive
//! its L1 TTL by at most that much, by default 1 s, and never more than a quarter of the
//! TTL or negative TTL). Freshness against invalidations is checked by the caller on every
//! hit (the same epoch check the L1 cache uses), so read-after-write holds. Slots hold
//! `Arc`s of links, so the front adds at most `slots` links of memory (half the L1
//! capacity, at most 16,384).

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cache::{CachedLink, Entry};

/// Most slots of a front, whatever the L1 capacity.
pub const MAX_FRONT_SLOTS: usize = 16_384;
/// Longest time a slot serves an entry after it was read from the L1 cache.
pub const MAX_FRONT_TTL: Duration = Duration::from_secs(1);
/// Longest code a slot holds (bytes); longer codes (custom aliases) are always looked up in
/// the L1 cache. Chosen so that a slot, its lock included, fills one 64-byte cache line.
pub const MAX_FRONT_KEY_BYTES: usize = 31;

/// What a slot holds: the code inline (no pointer to follow for the key comparison), the
/// entry's load epoch and link, and the deadline.
struct Slot {
    /// The entry's load epoch ([`Entry`]).
    epoch: u64,
    /// Served until this many ns after [`Front::base`]; 0 = empty.
    until_ns: u64,
    /// The entry's link (`None`: no such code).
    link: Option<Arc<CachedLink>>,
    /// Length of the code in `key` (0 = empty).
    key_len: u8,
    key: [u8; MAX_FRONT_KEY_BYTES],
}

impl Slot {
    const EMPTY: Slot = Slot { epoch: 0, until_ns: 0, link: None, key_len: 0, key: [0; MAX_FRONT_KEY_BYTES] };

    fn holds(&self, code: &[u8]) -> bool {
        self.key_len != 0 && self.key.get(..usize::from(self.key_len)) == Some(code)
    }
}

/// One slot per cache line, so that a lookup touches a single line for the lock, the key,
/// the epoch and the deadline.
#[repr(align(64))]
struct Cell(Mutex<Slot>);

/// A fresh-looking entry held by the front, as seen while its slot is locked.
pub(crate) struct FrontEntry<'a> {
    /// The entry's load epoch.
    pub epoch: u64,
    /// The entry's link (`None`: no such code).
    pub link: Option<&'a Arc<CachedLink>>,
}

/// The front array: `slots.len()` is a power of two (or zero: the front is off).
pub(crate) struct Front {
    slots: Box<[Cell]>,
    /// Keyed per process (foldhash, random seed), so that which codes share a slot cannot be
    /// chosen from outside; much cheaper than SipHash for a short code.
    hasher: foldhash::fast::RandomState,
    ttl: Duration,
    /// Origin of the slots' deadlines.
    base: Instant,
}

impl Front {
    /// A front for an L1 cache of `capacity` entries whose entries live `ttl` (positive)
    /// and `negative_ttl` (unknown codes): the largest power of two of slots not above
    /// `capacity / 2` (capped at [`MAX_FRONT_SLOTS`]; none below 2), serving each entry for
    /// `min(1 s, ttl / 4, negative_ttl / 4)`.
    pub(crate) fn new(capacity: u64, ttl: Duration, negative_ttl: Duration) -> Self {
        let half = usize::try_from(capacity / 2).unwrap_or(usize::MAX).min(MAX_FRONT_SLOTS);
        let n = if half < 2 { 0 } else { 1usize << half.ilog2() };
        let slots = (0..n).map(|_| Cell(Mutex::new(Slot::EMPTY))).collect();
        Self { slots, hasher: foldhash::fast::RandomState::default(), ttl: MAX_FRONT_TTL.min(ttl / 4).min(negative_ttl / 4), base: Instant::now() }
    }

    /// How long a slot serves an entry.
    #[cfg(test)]
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    fn slot(&self, code: &str) -> Option<&Mutex<Slot>> {
        if self.slots.is_empty() || self.ttl.is_zero() || code.is_empty() || code.len() > MAX_FRONT_KEY_BYTES {
            return None;
        }
        let i = (self.hasher.hash_one(code) as usize) & (self.slots.len() - 1);
        self.slots.get(i).map(|c| &c.0)
    }

    /// `now` as ns after [`Self::base`], at least 1 (0 marks an empty slot).
    fn ns(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX).max(1)
    }

    /// Calls `f` with the entry held for `code`, if its slot holds `code` and has not run
    /// out at `now`; `f` runs with the slot locked (keep it short, no waiting) and returns
    /// `None` to decline the entry (e.g. stale). `None` when the slot does not serve `code`.
    pub(crate) fn with<R>(&self, code: &str, now: Instant, f: impl FnOnce(FrontEntry<'_>) -> Option<R>) -> Option<R> {
        let cell = self.slot(code)?;
        let now = self.ns(now);
        let slot = cell.lock().unwrap_or_else(|p| p.into_inner());
        if now < slot.until_ns && slot.holds(code.as_bytes()) { f(FrontEntry { epoch: slot.epoch, link: slot.link.as_ref() }) } else { None }
    }

    /// Holds `entry` (just returned live by the L1 cache at `now`) for `code`, replacing
    /// whatever shared its slot. Codes longer than [`MAX_FRONT_KEY_BYTES`] are not held.
    pub(crate) fn put(&self, code: &str, entry: &Entry, now: Instant) {
        let Some(cell) = self.slot(code) else { return };
        let until_ns = self.ns(now + self.ttl);
        let mut slot = cell.lock().unwrap_or_else(|p| p.into_inner());
        if !slot.holds(code.as_bytes()) {
            slot.key = [0; MAX_FRONT_KEY_BYTES];
            if let Some(k) = slot.key.get_mut(..code.len()) {
                k.copy_from_slice(code.as_bytes());
            }
            // `slot` guarantees 1 <= len <= MAX_FRONT_KEY_BYTES.
            slot.key_len = u8::try_from(code.len()).unwrap_or(0);
        }
        slot.epoch = entry.epoch;
        slot.link = entry.link.clone();
        slot.until_ns = until_ns;
    }

    /// Empties the slot of `code` (a later [`Self::with`] misses).
    pub(crate) fn forget(&self, code: &str) {
        if let Some(cell) = self.slot(code) {
            let mut slot = cell.lock().unwrap_or_else(|p| p.into_inner());
            if slot.holds(code.as_bytes()) {
                *slot = Slot::EMPTY;
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

    /// A link entry at `epoch` whose target is `url`.
    fn entry(epoch: u64, url: &str) -> Entry {
        let link = crate::test_link("c", url);
        Entry { epoch, link: CachedLink::from_link(&link).map(Arc::new) }
    }

    /// `(epoch, target)` the front serves for `code` at `now`.
    fn get(f: &Front, code: &str, now: Instant) -> Option<(u64, Option<String>)> {
        f.with(code, now, |e| Some((e.epoch, e.link.map(|l| l.location.to_str().expect("ascii").to_owned()))))
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
        assert_eq!(std::mem::size_of::<Cell>(), 64, "one slot per cache line");
    }

    #[test]
    fn serves_only_its_own_key_until_the_slot_runs_out() {
        let f = Front::new(1000, Duration::from_secs(60), Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(get(&f, "abc", t0), None);
        f.put("abc", &entry(3, "https://e.example/a"), t0);
        assert_eq!(get(&f, "abc", t0), Some((3, Some("https://e.example/a".to_owned()))));
        assert_eq!(get(&f, "abd", t0), None, "another key, whatever its slot");
        assert_eq!(get(&f, "ab", t0), None, "a prefix of the key");
        assert!(get(&f, "abc", t0 + Duration::from_millis(999)).is_some());
        assert_eq!(get(&f, "abc", t0 + Duration::from_secs(1)), None, "run out after the front ttl");
        assert_eq!(f.with("abc", t0, |_| None::<()>), None, "declined by the caller");
        f.put("abc", &Entry { epoch: 4, link: None }, t0);
        assert_eq!(get(&f, "abc", t0), Some((4, None)), "replaced in place; unknown code");
        f.forget("abc");
        assert_eq!(get(&f, "abc", t0), None);
    }

    #[test]
    fn long_codes_are_not_held() {
        let f = Front::new(1000, Duration::from_secs(60), Duration::from_secs(5));
        let t0 = Instant::now();
        let longest = "k".repeat(MAX_FRONT_KEY_BYTES);
        let longer = "k".repeat(MAX_FRONT_KEY_BYTES + 1);
        f.put(&longest, &entry(1, "https://e.example/l"), t0);
        f.put(&longer, &entry(1, "https://e.example/l"), t0);
        assert!(get(&f, &longest, t0).is_some());
        assert_eq!(get(&f, &longer, t0), None);
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
        f.put(a, &entry(1, "https://e.example/a"), t0);
        f.put(b, &entry(2, "https://e.example/b"), t0);
        assert_eq!(get(&f, a, t0), None);
        assert_eq!(get(&f, b, t0), Some((2, Some("https://e.example/b".to_owned()))));
    }
}
