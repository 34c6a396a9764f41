//! Cross-link summary (`GET /v1/stats/summary`): top links by clicks, totals, and top
//! countries and referrer domains across links, over `[from_ms, to_ms)` (whole minutes;
//! covered like [`super::query`]).
//!
//! Optional `org`/`tag` filters select clicks by the link metadata they were counted under:
//! total-view rows are keyed by the metadata version valid at each click's event time
//! ([`crate::operators::LookupLinkMeta`]), so a tag change re-keys clicks made after it and
//! leaves earlier ones under the old tags (exact). Country and
//! referrer breakdowns are not keyed by metadata; under a filter they include all clicks of
//! the links that had matching clicks in the range (exact unless a link's org/tags changed
//! inside the range).
//!
//! Multi-process: a process answers for the links its workers own.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::cover::cover;
use super::query::{Acc, DimensionTotal, Totals};
use super::rows::split_key;
use super::{AsOf, Views};
use crate::model::{Dimension, View};
use crate::{Error, Result};

/// A summary query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryQuery {
    /// Range start (inclusive), ms since epoch UTC, whole minute.
    pub from_ms: i64,
    /// Range end (exclusive), ms since epoch UTC, whole minute.
    pub to_ms: i64,
    /// Include bot clicks.
    pub include_bots: bool,
    /// Entries per top list (1..=1000).
    pub limit: usize,
    /// Only clicks counted under this organisation.
    pub org: Option<String>,
    /// Only clicks counted while the link had this tag.
    pub tag: Option<String>,
    /// Codes left out of `top_links` and of the `links` count (the serving layer passes the
    /// deleted links it found there); their clicks still count in `totals`, `top_countries`
    /// and `top_referrers` (they happened). Empty: every link is listed.
    pub exclude: BTreeSet<Arc<str>>,
}

/// One link's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkTotal {
    /// Short code.
    pub code: Arc<str>,
    /// Clicks over the range.
    pub clicks: u64,
    /// Distinct visitors over the range (estimate, never above `clicks`).
    pub uniques: u64,
}

/// Answer to a [`SummaryQuery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryResult {
    /// Links by clicks descending (then code ascending), at most `limit`.
    pub top_links: Vec<LinkTotal>,
    /// Number of links with clicks in the range (excluded codes left out).
    pub links: usize,
    /// The codes counted in `links`, ascending (the serving layer checks which of them the
    /// link store still has).
    pub link_codes: Vec<Arc<str>>,
    /// Totals across links (uniques: union over all links).
    pub totals: Totals,
    /// Countries by clicks descending, at most `limit`.
    pub top_countries: Vec<DimensionTotal>,
    /// Referrer domains by clicks descending, at most `limit`.
    pub top_referrers: Vec<DimensionTotal>,
    /// Minimum frontier over the local shards.
    pub as_of: AsOf,
}

pub(crate) fn run(views: &Views, q: &SummaryQuery) -> Result<SummaryResult> {
    run_counting_bots(views, q, &mut 0)
}

/// [`run`], also adding to `bots` the bot clicks of the matching links over the range, each
/// shard's read under the same lock as its part of the result.
pub(crate) fn run_counting_bots(views: &Views, q: &SummaryQuery, bots: &mut u64) -> Result<SummaryResult> {
    if q.from_ms >= q.to_ms {
        return Err(Error::query("invalid_range", "from must be before to"));
    }
    if q.from_ms.rem_euclid(60_000) != 0 || q.to_ms.rem_euclid(60_000) != 0 {
        return Err(Error::query("unaligned_range", "from and to must be whole minutes"));
    }
    if q.limit == 0 || q.limit > 1000 {
        return Err(Error::query("invalid_limit", "limit must be between 1 and 1000"));
    }
    let filtered = q.org.is_some() || q.tag.is_some();
    let country_view = View::Single(Dimension::Country).index();
    let referrer_view = View::Single(Dimension::ReferrerDomain).index();
    let mut links: Vec<(LinkTotal, Acc)> = Vec::new();
    let mut countries: BTreeMap<Arc<str>, Acc> = BTreeMap::new();
    let mut referrers: BTreeMap<Arc<str>, Acc> = BTreeMap::new();
    // Clicks of the excluded links: in the totals, not in the link lists.
    let mut hidden = Acc::default();
    let mut as_of = AsOf { epoch: u64::MAX, watermark_ms: i64::MAX };
    let mut pieces = Vec::new();
    for shard in views.local_shards() {
        let shard = shard.read();
        as_of.epoch = as_of.epoch.min(shard.applied_epoch);
        as_of.watermark_ms = as_of.watermark_ms.min(shard.watermark_ms);
        pieces.clear();
        cover(q.from_ms, q.to_ms, &shard.retained_from, &mut pieces)?;
        let meta_ok = |id: u32| {
            if !filtered {
                return true;
            }
            let Some(m) = shard.meta(id) else { return false };
            q.org.as_ref().is_none_or(|o| m.org.as_deref() == Some(o.as_str())) && q.tag.as_ref().is_none_or(|t| m.tags.iter().any(|x| x == t))
        };
        for code in &shard.code_rollups {
            let mut acc = Acc::default();
            for b in pieces.iter().flat_map(|&(g, start)| shard.blocks(code, g, start)) {
                b.for_view(0, |k, row| {
                    let (_, meta, _, bot) = split_key(k);
                    if (q.include_bots || !bot) && meta_ok(meta) {
                        acc.add(row);
                    }
                    if bot && meta_ok(meta) {
                        *bots += row.clicks();
                    }
                });
            }
            if acc.clicks == 0 {
                continue;
            }
            for b in pieces.iter().flat_map(|&(g, start)| shard.blocks(code, g, start)) {
                for (vi, dim, target) in [(country_view, Dimension::Country, &mut countries), (referrer_view, Dimension::ReferrerDomain, &mut referrers)] {
                    b.for_view(vi, |k, row| {
                        let (_, v, _, bot) = split_key(k);
                        if q.include_bots || !bot {
                            target.entry(Arc::clone(shard.value_name(dim.index(), v))).or_default().add(row);
                        }
                    });
                }
            }
            if q.exclude.contains(&*code.name) {
                hidden.add_acc(&acc);
            } else {
                links.push((LinkTotal { code: Arc::clone(&code.name), clicks: acc.clicks, uniques: 0 }, acc));
            }
        }
    }
    if views.local_shards().is_empty() {
        as_of = AsOf { epoch: 0, watermark_ms: i64::MIN };
    }
    let mut total = hidden;
    for (l, acc) in &mut links {
        total.add_acc(acc);
        l.uniques = acc.sketch.uniques_within(acc.clicks);
    }
    let n_links = links.len();
    let mut link_codes: Vec<Arc<str>> = links.iter().map(|(l, _)| Arc::clone(&l.code)).collect();
    link_codes.sort_unstable();
    let mut top: Vec<LinkTotal> = links.into_iter().map(|(l, _)| l).collect();
    top.sort_by(|a, b| b.clicks.cmp(&a.clicks).then_with(|| a.code.cmp(&b.code)));
    top.truncate(q.limit);
    let rank = |m: BTreeMap<Arc<str>, Acc>| {
        let mut v: Vec<DimensionTotal> =
            m.into_iter().map(|(k, mut a)| DimensionTotal { dims: vec![k], clicks: a.clicks, uniques: a.sketch.uniques_within(a.clicks) }).collect();
        v.sort_by(|a, b| b.clicks.cmp(&a.clicks).then_with(|| a.dims.cmp(&b.dims)));
        v.truncate(q.limit);
        v
    };
    Ok(SummaryResult {
        top_links: top,
        links: n_links,
        link_codes,
        totals: Totals { clicks: total.clicks, uniques: total.sketch.uniques_within(total.clicks) },
        top_countries: rank(countries),
        top_referrers: rank(referrers),
        as_of,
    })
}
