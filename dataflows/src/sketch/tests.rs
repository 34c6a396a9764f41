use std::collections::HashSet;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

fn sketch_of(ids: impl IntoIterator<Item = u64>) -> VisitorSketch {
    let mut s = VisitorSketch::new();
    for id in ids {
        s.insert(id);
    }
    s
}

fn within_3_sigma(estimate: u64, exact: usize) {
    let tol = 3.0 * hll_relative_error() * exact as f64;
    let diff = (estimate as f64 - exact as f64).abs();
    assert!(diff <= tol.max(1.0), "estimate {estimate} vs exact {exact} (tolerance {tol:.1})");
}

#[test]
fn sketch_is_24_bytes() {
    assert_eq!(std::mem::size_of::<VisitorSketch>(), 24);
}

#[test]
fn exact_up_to_the_limit_with_repeats() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for n in [0usize, 1, 2, 3, 17, EXACT_LIMIT] {
        let ids: Vec<u64> = (0..n).map(|_| rng.random()).collect();
        let mut s = VisitorSketch::new();
        for _ in 0..3 {
            for &id in &ids {
                s.insert(id);
            }
        }
        assert!(s.is_exact());
        assert_eq!(s.uniques(), n as u64);
        assert_eq!(s.uniques_ref(), n as u64);
    }
}

#[test]
fn upgrades_past_the_limit_and_stays_accurate() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for n in [EXACT_LIMIT + 1, 50, 1_000, 20_000, 200_000] {
        let ids: HashSet<u64> = (0..n).map(|_| rng.random()).collect();
        let mut s = sketch_of(ids.iter().copied());
        assert!(!s.is_exact());
        let est = s.uniques();
        if n <= 1_000 {
            // Sparse HLL++ (2^25 virtual registers) is exact to rounding at these sizes.
            assert!(est.abs_diff(ids.len() as u64) <= 1, "n={n} est={est}");
        }
        within_3_sigma(est, ids.len());
    }
}

#[test]
fn union_is_not_a_sum() {
    // C17: the same visitors on several days count once over the range.
    let days: Vec<VisitorSketch> = (0..3).map(|_| sketch_of([10, 20])).collect();
    let mut range = VisitorSketch::new();
    for d in &days {
        range.merge(d);
    }
    assert_eq!(range.uniques(), 2);

    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let a: Vec<u64> = (0..30_000).map(|_| rng.random()).collect();
    let b: Vec<u64> = a[10_000..].iter().copied().chain((0..10_000).map(|_| rng.random())).collect();
    let mut sa = sketch_of(a.iter().copied());
    let sb = sketch_of(b.iter().copied());
    sa.merge(&sb);
    let exact: HashSet<u64> = a.iter().chain(b.iter()).copied().collect();
    within_3_sigma(sa.uniques(), exact.len());
}

#[test]
fn merge_exact_into_hll_and_hll_into_exact() {
    let big = sketch_of(0..5_000u64);
    let small = sketch_of([1_000_000, 1_000_001, 3]);
    let mut a = small.clone();
    a.merge(&big);
    let mut b = big.clone();
    b.merge(&small);
    assert_eq!(a, b, "union is commutative in canonical form");
    within_3_sigma(a.uniques(), 5_002);
}

#[test]
fn bytes_round_trip_every_kind() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for n in [0usize, 1, 2, 9, EXACT_LIMIT, 500, 4_000, 60_000] {
        let ids: Vec<u64> = (0..n).map(|_| rng.random()).collect();
        let s = sketch_of(ids.iter().copied());
        let bytes = s.to_bytes();
        assert_eq!(bytes[0], 1, "version byte");
        let back = VisitorSketch::from_bytes(&bytes).expect("decode");
        assert_eq!(back.to_bytes(), bytes, "n={n}");
        assert_eq!(back.uniques_ref(), s.uniques_ref(), "n={n}");
        // Still mergeable with sketches built locally.
        let mut m = back.clone();
        m.merge(&s);
        assert_eq!(m.uniques_ref(), s.uniques_ref());
    }
}

#[test]
fn encoding_is_canonical_regardless_of_insert_order() {
    let ids: Vec<u64> = (0..3_000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
    let a = sketch_of(ids.iter().copied());
    let b = sketch_of(ids.iter().rev().copied());
    assert_eq!(a.to_bytes(), b.to_bytes());
}

#[test]
fn dense_bytes_have_fixed_size() {
    let s = sketch_of(0..200_000u64);
    let bytes = s.to_bytes();
    assert_eq!(bytes[1], 2, "dense kind");
    assert_eq!(bytes.len(), 3 + (1 << HLL_PRECISION) * 6 / 8);
}

#[test]
fn bad_bytes_are_errors_not_panics() {
    let good = sketch_of(0..100u64).to_bytes();
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![2, 0, 0],
        vec![1, 9],
        vec![1, 0, 3, 1],
        vec![1, 0, 2, 5, 0],
        vec![1, 1, 12, 0],
        vec![1, 2, 14, 0, 0],
        good[..good.len() - 1].to_vec(),
        [good.clone(), vec![0]].concat(),
    ];
    for c in cases {
        assert!(VisitorSketch::from_bytes(&c).is_err(), "accepted {c:?}");
    }
}

/// The sparse codes, the sparse estimate and the dense registers must be exactly those of
/// `hyperloglogplus`, so sketches convert and merge with the crate's without loss.
#[test]
fn sparse_form_matches_the_crate_exactly() {
    use hyperloglogplus::HyperLogLog;
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for n in [60usize, 700, 2_500] {
        let ids: Vec<u64> = (0..n).map(|_| rng.random()).collect();
        let mut crate_hll = new_hll();
        let mut ours = sparse::SparseCodes::default();
        for &id in &ids {
            crate_hll.insert(&id);
            ours.insert_id(id);
        }
        match bridge::hll_to_canonical(&crate_hll).expect("canonical") {
            bridge::Canonical::Sparse(codes) => assert_eq!(codes, ours.codes_copy(), "n={n}"),
            bridge::Canonical::Dense(_) => panic!("crate went dense at n={n}"),
        }
        assert_eq!(crate_hll.count(), ours.estimate(), "n={n}");
    }
    // dense: decoding our codes gives the registers the crate computes from raw hashes
    let ids: Vec<u64> = (0..40_000).map(|_| rng.random()).collect();
    let mut crate_hll = new_hll();
    let mut ours = sparse::SparseCodes::default();
    for &id in &ids {
        crate_hll.insert(&id);
        ours.insert_id(id);
    }
    match bridge::hll_to_canonical(&crate_hll).expect("canonical") {
        bridge::Canonical::Dense(regs) => assert_eq!(regs, ours.registers()),
        bridge::Canonical::Sparse(_) => panic!("crate stayed sparse"),
    }
    for code in ours.codes_copy() {
        let (i, z) = sparse::decode(code);
        assert!(i < 1 << HLL_PRECISION && z >= 1);
    }
}

/// `insert_sorted` of a batch against `insert` of each id: same canonical bytes, same exact
/// flag, and for exact sets the same heap bytes (capacity follows single inserts).
fn check_sorted_insert(before: &[u64], batch: &[u64]) {
    let mut one_by_one = sketch_of(before.iter().copied());
    let mut batched = one_by_one.clone();
    batch.iter().for_each(|&id| one_by_one.insert(id));
    let mut sorted: Vec<u64> = batch.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    batched.insert_sorted(&sorted);
    assert_eq!(batched.to_bytes(), one_by_one.to_bytes(), "before {} ids, batch {} ids", before.len(), batch.len());
    assert_eq!(batched.is_exact(), one_by_one.is_exact());
    if one_by_one.is_exact() {
        assert_eq!(batched.heap_bytes(), one_by_one.heap_bytes());
    }
    assert_eq!(batched.uniques(), one_by_one.uniques());
}

#[test]
fn sorted_insert_matches_single_inserts_at_every_boundary() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // Sizes around the inline (2), exact (EXACT_LIMIT) and sparse (3,072 codes) boundaries.
    let sizes = [0usize, 1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33, EXACT_LIMIT - 1, EXACT_LIMIT, EXACT_LIMIT + 1, 100, 3_000, 3_100];
    for &a in &sizes {
        for &b in &sizes {
            if a + b > 4_000 {
                continue;
            }
            let before: Vec<u64> = (0..a).map(|_| rng.random_range(0..5_000u64)).collect();
            let batch: Vec<u64> = (0..b).map(|_| rng.random_range(0..5_000u64)).collect();
            check_sorted_insert(&before, &batch);
        }
    }
}

proptest::proptest! {
    #[test]
    fn sorted_insert_matches_single_inserts(
        before in proptest::collection::vec(0u64..200, 0..80),
        batch in proptest::collection::vec(0u64..200, 0..80),
    ) {
        check_sorted_insert(&before, &batch);
    }
}
