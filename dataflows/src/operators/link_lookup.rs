//! `LookupLinkMeta`: join each click with the version of its link's metadata valid at the
//! click's event time.
//!
//! * **Inputs**: (1) updates, [`EnrichedRecord`]s exchanged by [`route_str`]`(code)` — the
//!   same routing as the rollups, so the joined click stays on its rollup worker; (2) the
//!   link-metadata collection `(code, LinkMeta)` with `+1/−1` diffs, **arranged** by code
//!   with the same routing (a differential arrangement: the one place in the graph with
//!   retractions).
//! * **Output**: updates, [`LinkedRecord`] = click + the metadata version chosen for it.
//! * **State**: the metadata versions per code (folded from the arrangement's batches) and
//!   clicks of epochs not yet complete. The trace's compaction frontier follows the input, so
//!   it holds one consolidated multiset of versions per code.
//!
//! Semantics (a *half-join*, in differential's terms): a click at processing epoch `t` sees
//! the metadata changes at epochs `≤ t`, and never a later one; metadata changes do not
//! revisit clicks already counted. Among the versions a code has at that epoch, the click
//! gets the one valid at its event time: the greatest [`LinkMeta::valid_from_ms`] `≤ ts`
//! (equal instants: the greatest by `Ord`); a click older than every version gets the
//! earliest one. The binary feeds every version a link ever had (never retracting one,
//! `src/job/link_meta.rs`), so a tag change re-keys clicks made after it, leaves earlier
//! rollup rows under the old tags, and a replay of the click log attributes every click as
//! the live run did — except a click made after a change but processed before the change
//! reached this operator (the API's hook feeds a change before the API answers; changes made
//! by other processes arrive within `meta-poll-interval`). With every `valid_from_ms` equal
//! (e.g. `0`), the greatest value by `Ord` wins, whatever the click's time.
//! A code the link store never announced gets `meta = None` and is still counted.

use std::collections::BTreeMap;
use std::sync::Arc;

use differential_dataflow::VecCollection;
use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::operators::arrange::arrangement::{Arranged, arrange_core};
use differential_dataflow::trace::implementations::{ValBatcher, ValSpine};
use differential_dataflow::trace::{Cursor, Navigable, TraceReader};
use sluice_schemas::LinkMeta;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

use crate::hash::{FxHashMap, route_bytes, route_str};
use crate::model::DimStr;
use crate::records::{EnrichedRecord, LinkedRecord};

/// Trace of link metadata keyed by code.
pub type LinkMetaTrace = TraceAgent<ValSpine<String, LinkMeta, u64, isize>>;

/// Link metadata arranged by code (routed like the rollups).
pub type LinkMetaArranged<'scope> = Arranged<'scope, LinkMetaTrace>;

/// Arranges a `(code, LinkMeta)` collection by code, exchanged by [`route_str`].
pub fn arrange_link_meta<'scope>(meta: VecCollection<'scope, u64, (String, LinkMeta), isize>) -> LinkMetaArranged<'scope> {
    let pact = Exchange::new(|u: &((String, LinkMeta), u64, isize)| route_str(&(u.0).0));
    arrange_core::<_, _, ValBatcher<String, LinkMeta, u64, isize>, ValSpine<String, LinkMeta, u64, isize>>(
        meta.inner,
        pact,
        "ArrangeLinkMetaByCode",
        ValBatcher::new,
    )
}

/// The metadata versions of one code: by `valid_from_ms`, then the values of that instant in
/// `Ord` order with their counts (never zero). Updates cost `O(log n)` in the number of
/// versions, a lookup one descent.
#[derive(Default)]
struct MetaEntry {
    versions: BTreeMap<i64, Vec<(Arc<LinkMeta>, isize)>>,
}

impl MetaEntry {
    fn update(&mut self, meta: LinkMeta, diff: isize) {
        let instant = meta.valid_from_ms;
        let at = self.versions.entry(instant).or_default();
        match at.binary_search_by(|(m, _)| (**m).cmp(&meta)) {
            Ok(i) => {
                at[i].1 += diff;
                if at[i].1 == 0 {
                    at.remove(i);
                }
            }
            Err(i) => at.insert(i, (Arc::new(meta), diff)),
        }
        if at.is_empty() {
            self.versions.remove(&instant);
        }
    }

    /// The version valid at event time `ts` (module docs).
    fn at(&self, ts: i64) -> Option<&Arc<LinkMeta>> {
        fn live(group: &[(Arc<LinkMeta>, isize)]) -> Option<&Arc<LinkMeta>> {
            group.iter().rev().find(|(_, d)| *d > 0).map(|(m, _)| m)
        }
        self.versions.range(..=ts).rev().find_map(|(_, g)| live(g)).or_else(|| self.versions.values().find_map(|g| live(g)))
    }
}

/// Extension trait: the metadata half-join (module docs).
pub trait LookupLinkMeta<'scope> {
    /// Joins clicks with `meta`.
    fn lookup_link_meta(self, meta: LinkMetaArranged<'scope>) -> StreamVec<'scope, u64, LinkedRecord>;
}

impl<'scope> LookupLinkMeta<'scope> for StreamVec<'scope, u64, EnrichedRecord> {
    fn lookup_link_meta(self, meta: LinkMetaArranged<'scope>) -> StreamVec<'scope, u64, LinkedRecord> {
        let mut trace = meta.trace;
        let clicks_pact = Exchange::new(|r: &EnrichedRecord| route_bytes(r.code.as_bytes()));
        self.binary_frontier(meta.stream, clicks_pact, Pipeline, "LookupLinkMeta", move |_cap, _info| {
            // Every version of every code ever fed, deleted links included, kept for the
            // operator's life: needed, not a leak. Clicks of a deleted link still arrive —
            // logged before the delete and processed after, imported or backfilled later,
            // replayed at a start — and get the version valid at their time, as when the
            // link was live (`src/job/link_meta.rs`: a delete retracts nothing, so nothing
            // here learns of it). Dropping a code's entry would count such clicks with
            // `meta = None` (no organisation, no tags).
            let mut index: FxHashMap<DimStr, MetaEntry> = FxHashMap::default();
            let mut pending: Vec<(u64, String, LinkMeta, isize)> = Vec::new();
            let mut stash: BTreeMap<u64, (Capability<u64>, Vec<Vec<EnrichedRecord>>)> = BTreeMap::new();
            let mut out: Vec<LinkedRecord> = Vec::new();
            move |(clicks_in, clicks_f), (meta_in, meta_f), output| {
                meta_in.for_each(|_cap, data| {
                    for span in data.iter() {
                        let Some(batch) = span.inner.as_ref() else { continue };
                        let mut cursor = batch.cursor();
                        while let Some(key) = cursor.get_key(batch) {
                            while let Some(val) = cursor.get_val(batch) {
                                cursor.map_times(batch, |t, d| pending.push((*t, key.clone(), val.clone(), *d)));
                                cursor.step_val(batch);
                            }
                            cursor.step_key(batch);
                        }
                    }
                });
                clicks_in.for_each(|cap, data| {
                    let Some(&t) = cap.least() else { return };
                    stash.entry(t).or_insert_with(|| (cap.delayed(&t, 0), Vec::new())).1.push(std::mem::take(data));
                });
                pending.sort_by_key(|p| p.0);
                let ready = |t: u64| !clicks_f.less_equal(&t) && !meta_f.less_equal(&t);
                while let Some(&t) = stash.keys().next() {
                    if !ready(t) {
                        break;
                    }
                    let (cap, batches) = stash.remove(&t).expect("key present");
                    let n = pending.partition_point(|p| p.0 <= t);
                    for (_, code, m, d) in pending.drain(..n) {
                        index.entry(DimStr::new(&code)).or_default().update(m, d);
                    }
                    for b in batches {
                        out.extend(b.into_iter().map(|rec| {
                            let meta = index.get(&rec.code).and_then(|e| e.at(rec.ts).cloned());
                            LinkedRecord { rec, meta }
                        }));
                    }
                    output.session(&cap).give_container(&mut out);
                    out.clear();
                }
                // Fold updates that precede every click still to come (stashed or in flight).
                let in_flight = clicks_f.frontier().iter().copied().min().unwrap_or(u64::MAX);
                let limit = stash.keys().next().map_or(in_flight, |&t| t.min(in_flight));
                let n = pending.partition_point(|p| p.0 < limit);
                for (_, code, m, d) in pending.drain(..n) {
                    index.entry(DimStr::new(&code)).or_default().update(m, d);
                }
                trace.set_logical_compaction(meta_f.frontier());
                trace.set_physical_compaction(meta_f.frontier());
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(tag: &str, valid_from_ms: i64) -> LinkMeta {
        LinkMeta { code: "c".into(), org: None, tags: vec![tag.into()], domain: None, target_host: None, valid_from_ms }
    }

    fn tag_at(e: &MetaEntry, ts: i64) -> Option<String> {
        e.at(ts).map(|m| m.tags[0].clone())
    }

    #[test]
    fn a_click_gets_the_version_valid_at_its_event_time() {
        let mut e = MetaEntry::default();
        assert_eq!(tag_at(&e, 5), None);
        e.update(meta("b", 2_000), 1);
        e.update(meta("a", 1_000), 1);
        e.update(meta("c", 3_000), 1);
        let want = |ts: i64| match ts {
            ..2_000 => "a",
            2_000..3_000 => "b",
            _ => "c",
        };
        for ts in [i64::MIN, 0, 999, 1_000, 1_999, 2_000, 2_999, 3_000, i64::MAX] {
            assert_eq!(tag_at(&e, ts).as_deref(), Some(want(ts)), "ts {ts}");
        }
        // Retracting a version: its instants fall to the version before.
        e.update(meta("b", 2_000), -1);
        assert_eq!(tag_at(&e, 2_500).as_deref(), Some("a"));
        // Two versions from one instant: the greatest by `Ord`, also before every version.
        e.update(meta("z", 1_000), 1);
        assert_eq!(tag_at(&e, 1_500).as_deref(), Some("z"));
        assert_eq!(tag_at(&e, 10).as_deref(), Some("z"));
        assert_eq!(tag_at(&e, 3_000).as_deref(), Some("c"));
    }

    /// Random updates (several values per instant, retractions, counts passing through
    /// negative) against a plain scan of the multiset.
    #[test]
    fn lookups_equal_a_plain_scan_of_the_versions() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut e = MetaEntry::default();
        let mut naive: Vec<(LinkMeta, isize)> = Vec::new();
        for step in 0..3_000 {
            let m = meta(["a", "b", "c"][next(3) as usize], (next(40) as i64) * 100);
            let diff = if next(4) == 0 { -1 } else { 1 };
            e.update(m.clone(), diff);
            match naive.iter_mut().find(|(x, _)| *x == m) {
                Some((_, d)) => *d += diff,
                None => naive.push((m, diff)),
            }
            let ts = next(4_400) as i64 - 200;
            let live: Vec<&LinkMeta> = naive.iter().filter(|(_, d)| *d > 0).map(|(m, _)| m).collect();
            let want = live
                .iter()
                .filter(|m| m.valid_from_ms <= ts)
                .max_by_key(|m| (m.valid_from_ms, (**m).clone()))
                .or_else(|| {
                    let first = live.iter().map(|m| m.valid_from_ms).min()?;
                    live.iter().filter(|m| m.valid_from_ms == first).max()
                })
                .map(|m| (*m).clone());
            assert_eq!(e.at(ts).map(|m| (**m).clone()), want, "step {step}, ts {ts}");
        }
        assert!(e.versions.values().all(|g| !g.is_empty() && g.iter().all(|(_, d)| *d != 0)), "no empty groups, no zero counts");
    }

    #[test]
    fn unchanged_versions_keep_their_allocation() {
        let mut e = MetaEntry::default();
        e.update(meta("a", 1_000), 1);
        let before = Arc::clone(e.at(1_000).expect("version"));
        e.update(meta("b", 2_000), 1);
        assert!(Arc::ptr_eq(&before, e.at(1_500).expect("version")));
    }
}
