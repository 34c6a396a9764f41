//! A bounded history of ascending `(instant, value)` marks: what a poll at processing
//! instant `t` (ms UTC, [`super::EpochClock`]) had achieved, looked up by "the latest mark
//! before instant `limit`". [`super::TailProgress`] keeps two: the instants at which the
//! source had caught up with the log, and the log offsets handed to the dataflow.

use std::collections::VecDeque;

/// Ascending `(instant ms, value)` marks; at most `cap` are kept, and the last one evicted
/// keeps answering for limits past it (evictions pop the oldest, so it is the largest
/// evicted).
#[derive(Debug)]
pub(crate) struct Marks<V> {
    kept: VecDeque<(i64, V)>,
    evicted: Option<(i64, V)>,
    cap: usize,
}

impl<V: Copy + Ord> Marks<V> {
    /// An empty history keeping at most `cap` marks (`cap ≥ 1`).
    pub(crate) fn new(cap: usize) -> Marks<V> {
        Marks { kept: VecDeque::with_capacity(cap.min(1024)), evicted: None, cap: cap.max(1) }
    }

    /// Records `(t, v)` when it moves forward: ignored if `t` is before the last mark's
    /// instant or `v` is not above its value.
    pub(crate) fn push(&mut self, t: i64, v: V) {
        if self.kept.back().is_some_and(|&(bt, bv)| bt > t || bv >= v) {
            return;
        }
        self.kept.push_back((t, v));
        if self.kept.len() > self.cap {
            self.evicted = self.kept.pop_front();
        }
    }

    /// The value of the latest mark whose instant is before `limit`: a kept one, else the
    /// last evicted one if it is; `None` when no mark is before `limit`.
    pub(crate) fn latest_before(&self, limit: i64) -> Option<V> {
        let i = self.kept.partition_point(|&(t, _)| t < limit);
        if i > 0 {
            return Some(self.kept[i - 1].1);
        }
        self.evicted.filter(|&(t, _)| t < limit).map(|(_, v)| v)
    }

    /// Marks kept (evicted ones not counted).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.kept.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Marks;

    #[test]
    fn only_forward_marks_are_kept_and_looked_up_before_the_limit() {
        let mut m = Marks::new(8);
        assert_eq!(m.latest_before(i64::MAX), None::<u64>);
        m.push(100, 6);
        m.push(200, 10);
        m.push(150, 12); // an instant before the last one: ignored
        m.push(300, 10); // no progress: ignored
        m.push(200, 11); // same instant, further: kept
        assert_eq!(m.len(), 3);
        assert_eq!(m.latest_before(100), None);
        assert_eq!(m.latest_before(101), Some(6));
        assert_eq!(m.latest_before(200), Some(6));
        assert_eq!(m.latest_before(201), Some(11));
    }

    #[test]
    fn the_last_evicted_mark_answers_for_limits_past_it() {
        let mut m = Marks::new(4);
        for i in 0..7u64 {
            m.push(1_000 + i as i64, i + 1);
        }
        // (1000, 1), (1001, 2), (1002, 3) were evicted; (1003, 4)..(1006, 7) are kept.
        assert_eq!(m.len(), 4);
        assert_eq!(m.latest_before(1_002), None, "no mark before 1002 is left");
        assert_eq!(m.latest_before(1_003), Some(3));
        assert_eq!(m.latest_before(1_004), Some(4));
        assert_eq!(m.latest_before(i64::MAX), Some(7));
    }
}
