//! `LookupLinkMeta`: join each click with its link's metadata as of the click's epoch.
//!
//! * **Inputs**: (1) updates, [`EnrichedRecord`]s exchanged by [`route_str`]`(code)` — the
//!   same routing as the rollups, so the joined click stays on its rollup worker; (2) the
//!   link-metadata collection `(code, LinkMeta)` with `+1/−1` diffs, **arranged** by code
//!   with the same routing (a differential arrangement: the one place in the graph with
//!   retractions — an update is `−old, +new`).
//! * **Output**: updates, [`LinkedRecord`] = click + the metadata current at its epoch.
//! * **State**: the current metadata per code (folded from the arrangement's batches) and
//!   clicks of epochs not yet complete. The trace's compaction frontier follows the input, so
//!   it holds one consolidated value per code.
//!
//! Semantics (a *half-join*, in differential's terms): a click at processing epoch `t` sees
//! every metadata change at epochs `≤ t`, and never a later one; metadata changes do not
//! revisit clicks already counted. So a tag change re-keys clicks processed after it and
//! leaves earlier rollup rows under the old tags. If the feed leaves several values for a
//! code (an update sent without retracting the old value), the greatest (by `Ord`) wins.
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

#[derive(Default)]
struct MetaEntry {
    values: Vec<(LinkMeta, isize)>,
    current: Option<Arc<LinkMeta>>,
}

impl MetaEntry {
    fn update(&mut self, meta: LinkMeta, diff: isize) {
        match self.values.iter_mut().find(|(m, _)| *m == meta) {
            Some((_, d)) => *d += diff,
            None => self.values.push((meta, diff)),
        }
        self.values.retain(|(_, d)| *d != 0);
        let best = self.values.iter().filter(|(_, d)| *d > 0).map(|(m, _)| m).max();
        if best != self.current.as_deref() {
            self.current = best.cloned().map(Arc::new);
        }
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
                            let meta = index.get(&rec.code).and_then(|e| e.current.clone());
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
