//! Fixed, documented hash functions.
//!
//! Three jobs, three functions, none of them seeded per process (DESIGN.md, "Semantics":
//! sketches only merge when built with the same hash, and data is routed to the same worker
//! by every process):
//!
//! * [`VisitorHashState`] — the **one** hash of every visitor sketch (HLL++ registers and
//!   sparse codes). It is the SplitMix64 finalizer (Steele, Lea, Flood: "Fast splittable
//!   pseudorandom number generators", OOPSLA 2014; constants of Stafford's "Mix13") applied
//!   to `visitor_id XOR VISITOR_HASH_SEED`. It is a bijection on `u64`, so distinct visitors
//!   never collide before the HLL bucketing. Changing it invalidates every stored sketch;
//!   `tests::golden_values` pins it.
//! * [`route_str`] / [`route_u128`] — routing hashes deciding which timely worker owns a short
//!   code (rollups, link metadata) or an event id (dedup). They are part of the multi-process
//!   contract: every process must compute the same owner.
//! * [`FxBuildHasher`] — a fast, non-cryptographic hasher for internal lookup tables only
//!   (iteration order of those maps never reaches an output; STYLE §3.9 rule 43).

use std::hash::{BuildHasher, Hasher};

/// Seed XORed into visitor ids before mixing ("sluice" in ASCII, then a version nibble).
pub const VISITOR_HASH_SEED: u64 = 0x736c_7569_6365_0001;

/// SplitMix64 finalizer ("Mix13" constants): a bijective avalanche mix of 64 bits.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The fixed hash of a visitor id used by every sketch: `mix64(visitor_id ^ VISITOR_HASH_SEED)`.
#[inline]
pub fn visitor_hash(visitor_id: u64) -> u64 {
    mix64(visitor_id ^ VISITOR_HASH_SEED)
}

/// [`BuildHasher`] of all visitor sketches: builds [`VisitorHasher`]s with no per-process state.
///
/// Serializes as a unit (zero bytes in bincode), so a sketch's bytes carry no hasher state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VisitorHashState;

impl BuildHasher for VisitorHashState {
    type Hasher = VisitorHasher;
    #[inline]
    fn build_hasher(&self) -> VisitorHasher {
        VisitorHasher { state: VISITOR_HASH_SEED, written: false }
    }
}

/// Hasher of [`VisitorHashState`].
///
/// For a single `write_u64(v)` (how `u64::hash` feeds it) `finish()` is exactly
/// [`visitor_hash`]`(v)`. Other inputs are folded 8 bytes at a time (little-endian, zero
/// padded, then the length) through the same mix, so the hasher is total and deterministic;
/// sketches only ever hash `u64` visitor ids.
#[derive(Debug, Clone)]
pub struct VisitorHasher {
    state: u64,
    written: bool,
}

impl Hasher for VisitorHasher {
    #[inline]
    fn finish(&self) -> u64 {
        if self.written { self.state } else { mix64(self.state) }
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.state = if self.written { mix64(self.state ^ mix64(v)) } else { mix64(v ^ self.state) };
        self.written = true;
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(b));
        }
        self.write_u64(bytes.len() as u64);
    }
}

/// Routing hash of a string (short codes): FNV-1a over the UTF-8 bytes, then [`mix64`].
///
/// Stable across processes, platforms and releases; the owner of code `c` among `peers`
/// workers is `route_str(c) % peers` (timely's exchange takes the hash modulo the peers).
#[inline]
pub fn route_str(s: &str) -> u64 {
    route_bytes(s.as_bytes())
}

/// [`route_str`] of a string given as its UTF-8 bytes (e.g. [`crate::model::DimStr::as_bytes`],
/// which skips re-validating UTF-8): equal to `route_str` of the same string.
#[inline]
pub fn route_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// Routing hash of a 128-bit id (event ids): `mix64(hi ^ mix64(lo))`.
#[inline]
pub fn route_u128(v: u128) -> u64 {
    mix64(((v >> 64) as u64) ^ mix64(v as u64))
}

/// Index of the worker owning routing hash `h` among `peers` workers.
#[inline]
pub fn owner(h: u64, peers: usize) -> usize {
    (h % peers.max(1) as u64) as usize
}

/// Fast hasher for internal tables (FxHash's multiply-rotate step, as in rustc).
#[derive(Debug, Clone, Copy, Default)]
pub struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn finish(&self) -> u64 {
        // hashbrown uses the top 7 bits as tag: fold high entropy down first.
        mix64(self.hash)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

/// [`BuildHasher`] for [`FxHasher`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FxBuildHasher;

impl BuildHasher for FxBuildHasher {
    type Hasher = FxHasher;
    #[inline]
    fn build_hasher(&self) -> FxHasher {
        FxHasher::default()
    }
}

/// `HashMap` with [`FxBuildHasher`] (internal lookups only).
pub type FxHashMap<K, V> = std::collections::HashMap<K, V, FxBuildHasher>;
/// `HashSet` with [`FxBuildHasher`] (internal lookups only).
pub type FxHashSet<K> = std::collections::HashSet<K, FxBuildHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_values() {
        // Pinned: changing any of these breaks every stored sketch and the worker routing.
        assert_eq!(mix64(0), 0);
        assert_eq!(mix64(1), 0x5692_161d_100b_05e5);
        assert_eq!(visitor_hash(0), mix64(VISITOR_HASH_SEED));
        assert_eq!(route_str(""), mix64(0xcbf2_9ce4_8422_2325));
        // The BuildHasher agrees with visitor_hash for u64 input (how HLL++ hashes ids).
        for v in [0u64, 1, 42, u64::MAX, 0x0123_4567_89ab_cdef] {
            let mut h = VisitorHashState.build_hasher();
            h.write_u64(v);
            assert_eq!(h.finish(), visitor_hash(v));
            assert_eq!(VisitorHashState.hash_one(v), visitor_hash(v));
        }
    }

    #[test]
    fn mix_is_a_bijection_on_a_sample() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000u64 {
            assert!(seen.insert(visitor_hash(i)));
        }
    }

    #[test]
    fn routing_spreads_codes() {
        let peers = 4;
        let mut counts = [0usize; 4];
        for i in 0..40_000 {
            counts[owner(route_str(&format!("code{i}")), peers)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "unbalanced routing {counts:?}");
        }
    }
}
