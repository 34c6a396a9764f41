//! HLL++ sparse representation with cheap inserts.
//!
//! Codes are exactly those of `hyperloglogplus` 0.4 (`encode_hash`/`decode_hash`, p = 14,
//! p' = 25; HLL++ paper §5.3.2), so a [`SparseCodes`] converts losslessly into the crate's
//! sparse state and, past [`SPARSE_MAX_CODES`], into its dense registers. What differs is
//! the insert path: the crate buffers codes in a SipHash `HashSet` and re-encodes its whole
//! varint list every 131 inserts; here codes are appended to a plain buffer and merged into a
//! sorted vector once the buffer reaches an eighth of it (amortized O(1) per insert).

use crate::hash::visitor_hash;

/// Precision of the sparse representation (p' in the HLL++ paper).
const PRIME: u32 = 25;
/// Dense precision (p).
const P: u32 = super::HLL_PRECISION as u32;

/// Sparse codes kept before converting to dense registers (4 bytes each: 12 KiB, about the
/// size of the dense registers).
pub(super) const SPARSE_MAX_CODES: usize = 3072;

/// The crate's `encode_hash` for a 64-bit hash.
#[inline]
pub(super) fn encode(hash: u64) -> u32 {
    let index = hash >> (64 - PRIME);
    let dif = (hash >> (64 - PRIME)) & ((1 << (PRIME - P)) - 1);
    if dif == 0 {
        let h = (hash << PRIME) | (1 << (PRIME - 1));
        let zeros = 1 + h.leading_zeros();
        ((index as u32) << 7) | (zeros << 1) | 1
    } else {
        (index << 1) as u32
    }
}

/// The crate's `decode_hash`: (register index, register value).
#[inline]
pub(super) fn decode(code: u32) -> (usize, u8) {
    if code & 1 == 1 {
        let zeros = ((code >> 1) & 0x3f) + (PRIME - P);
        ((code >> (32 - P)) as usize, zeros as u8)
    } else {
        let index = (code << (32 - (PRIME + 1))) >> (32 - P);
        let h = code << (32 - PRIME + P - 1);
        (index as usize, (h.leading_zeros() + 1) as u8)
    }
}

/// The union of the ascending, distinct `sorted` and `add` as a new vector of exactly its
/// length in capacity, or `None` when `add` holds nothing new.
///
/// One forward pass writes the union into a fresh vector sized for both inputs (no search
/// per added code: a code of `add` already in `sorted` is written once), then the vector is
/// shrunk to the union's length. mimalloc shrinks in place when at least half of the block
/// stays in use, which holds here (`add` is at most an eighth of `sorted` past the first
/// flushes), so the result costs one allocation and one pass, against a reallocation
/// (copy), a search per added code and a merge pass when `sorted` was grown in place.
fn union_sorted(sorted: &[u32], add: &[u32]) -> Option<Vec<u32>> {
    if add.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(sorted.len() + add.len());
    merge_sorted_into(&mut out, sorted, add);
    if out.len() == sorted.len() {
        return None;
    }
    out.shrink_to_fit();
    Some(out)
}

/// Appends to `out` the union of `a` and `b` (both ascending, no duplicates within either;
/// sparse codes here, exact-set ids in the parent module),
/// ascending, an id in both taken once: one compare per id while both lists last, then the
/// rest of either copied as is.
#[inline]
pub(super) fn merge_sorted_into<T: Copy + Ord>(out: &mut Vec<T>, a: &[T], b: &[T]) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        if x < y {
            out.push(x);
            i += 1;
        } else {
            out.push(y);
            j += 1;
            i += usize::from(x == y);
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
}

/// Sorted distinct codes plus an unsorted insert buffer.
#[derive(Clone, Debug, Default)]
pub(super) struct SparseCodes {
    sorted: Vec<u32>,
    buffer: Vec<u32>,
}

impl SparseCodes {
    /// From sorted distinct codes.
    pub(super) fn from_sorted(sorted: Vec<u32>) -> SparseCodes {
        SparseCodes { sorted, buffer: Vec::new() }
    }

    /// Adds a visitor id.
    #[inline]
    pub(super) fn insert_id(&mut self, visitor_id: u64) {
        self.insert_code(encode(visitor_hash(visitor_id)));
    }

    #[inline]
    pub(super) fn insert_code(&mut self, code: u32) {
        self.buffer.push(code);
        if self.buffer.len() >= (self.sorted.len() / 8).max(16) {
            self.flush();
        }
    }

    /// Merges the buffer into the sorted codes ([`union_sorted`]: one pass into a vector of
    /// exactly the union's length, so the sorted codes' capacity always equals their count,
    /// as [`Self::heap_bytes`] reports it). The buffer keeps its allocation.
    pub(super) fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        self.buffer.sort_unstable();
        self.buffer.dedup();
        if self.buffer.len() * 16 <= self.sorted.len() {
            // A few codes against many: a flush forced by a read or by the dense check
            // ([`Self::wants_dense`] flushes at every insert while the codes are just below
            // the limit), mostly of codes already held. Find them by binary search, so a
            // flush that adds nothing costs no pass over the sorted codes.
            let sorted = &self.sorted;
            self.buffer.retain(|c| sorted.binary_search(c).is_err());
        }
        if let Some(union) = union_sorted(&self.sorted, &self.buffer) {
            self.sorted = union;
        }
        self.buffer.clear();
    }

    /// Sorted distinct codes without mutating (copies when the buffer is not empty).
    pub(super) fn codes_copy(&self) -> Vec<u32> {
        let mut c = self.clone();
        c.flush();
        c.sorted
    }

    /// Distinct codes after a flush (an upper bound before).
    pub(super) fn len_upper(&self) -> usize {
        self.sorted.len() + self.buffer.len()
    }

    /// Whether the sparse form outgrew [`SPARSE_MAX_CODES`].
    pub(super) fn wants_dense(&mut self) -> bool {
        self.len_upper() > SPARSE_MAX_CODES && {
            self.flush();
            self.sorted.len() > SPARSE_MAX_CODES
        }
    }

    /// The crate's sparse estimate: linear counting over 2^24 virtual registers
    /// (`HyperLogLogPlus::count` in sparse mode).
    pub(super) fn estimate(&mut self) -> f64 {
        self.flush();
        let m = (1u64 << (PRIME - 1)) as f64;
        let zeros = m - self.sorted.len() as f64;
        m * (m / zeros).ln()
    }

    /// Dense registers (one byte each) equivalent to these codes.
    pub(super) fn registers(&mut self) -> Vec<u8> {
        self.flush();
        let mut regs = vec![0u8; 1 << P];
        for &c in &self.sorted {
            let (i, z) = decode(c);
            regs[i] = regs[i].max(z);
        }
        regs
    }

    /// Approximate heap bytes.
    pub(super) fn heap_bytes(&self) -> usize {
        4 * (self.sorted.capacity() + self.buffer.capacity()) + 48
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::{SparseCodes, union_sorted};

    #[test]
    fn union_sorted_is_the_set_union_with_exact_capacity() {
        let cases: [(&[u32], &[u32]); 9] = [
            (&[], &[]),
            (&[], &[0, 5]),
            (&[0, 5], &[]),
            (&[1, 3, 5], &[1, 3, 5]),
            (&[1, 3, 5], &[0, 2, 4, 6]),
            (&[1, 3, 5], &[0, 3, 9]),
            (&[0, u32::MAX - 1], &[0, 7, u32::MAX - 1]),
            (&[10, 20, 30, 40], &[40]),
            (&[10, 20, 30, 40], &[5]),
        ];
        for (sorted, add) in cases {
            let want: BTreeSet<u32> = sorted.iter().chain(add).copied().collect();
            match union_sorted(sorted, add) {
                None => assert_eq!(want.len(), sorted.len(), "{sorted:?} ∪ {add:?}: nothing new"),
                Some(u) => {
                    assert_eq!(u, want.iter().copied().collect::<Vec<_>>(), "{sorted:?} ∪ {add:?}");
                    assert!(u.len() > sorted.len());
                    assert_eq!(u.capacity(), u.len());
                }
            }
        }
    }

    /// Inserted codes (repeats, code 0, codes present or not) against a `BTreeSet`: the
    /// codes after every flush, and the sorted codes' capacity equal to their count after
    /// each flush, as the in-place merge before gave it (grown by exactly the new codes).
    #[test]
    fn flushes_keep_exactly_the_distinct_codes_inserted() {
        let mut rng = ChaCha8Rng::seed_from_u64(41);
        for (n, domain) in [(40usize, 50u32), (500, 400), (3_000, 1 << 20), (5_000, 2_000), (20_000, u32::MAX)] {
            let mut s = SparseCodes::default();
            let mut model = BTreeSet::new();
            for k in 0..n {
                let c = if k % 97 == 0 { 0 } else { rng.random_range(0..domain) };
                s.insert_code(c);
                model.insert(c);
                if k % 37 == 0 {
                    // a forced flush of a small buffer (reads, the dense check)
                    s.flush();
                }
                assert_eq!(s.sorted.capacity(), s.sorted.len(), "n {n}, after {k} inserts");
                assert!(s.sorted.windows(2).all(|w| w[0] < w[1]));
                if k % 1_000 == 999 {
                    assert_eq!(s.codes_copy(), model.iter().copied().collect::<Vec<_>>());
                }
            }
            s.flush();
            assert!(s.buffer.is_empty());
            assert_eq!(s.sorted, model.iter().copied().collect::<Vec<_>>(), "n {n}, domain {domain}");
            assert_eq!(s.sorted.capacity(), model.len());
            assert_eq!(s.len_upper(), model.len());
        }
    }
}
