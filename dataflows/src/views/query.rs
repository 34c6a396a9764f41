//! Per-link stats queries (`GET /v1/links/{code}/stats`).
//!
//! Semantics:
//! * `[from_ms, to_ms)` is half-open; both must be whole minutes (`unaligned_range`).
//! * Output buckets are UTC minutes, or local hours/days of `tz` ([`super::tz`]); a bucket
//!   cut by the range counts only the part inside it. Buckets without clicks are left out
//!   (no zero-fill; the serving layer may fill).
//! * Each bucket is answered from the coarsest stored rows covering it exactly
//!   ([`super::cover`]), so minute, hour and day answers agree wherever all are retained.
//! * `clicks` are sums; `uniques` are the cardinality of the union of visitor sketches —
//!   per row over the row's bucket, and in [`Totals`]/[`DimensionTotal`] over the whole
//!   range (never a sum of rows; case C17) — capped at the `clicks` of the same rows
//!   ([`crate::sketch::cap_uniques`]: an estimate may exceed the exact visitor count).
//! * Bot clicks are excluded unless `include_bots`.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::cover::cover;
use super::rows::{Row, split_key};
use super::shard::ShardState;
use super::tz::{Bucket, bucket_spans};
use super::{AsOf, Views};
use crate::model::{Dimension, View};
use crate::sketch::VisitorSketch;
use crate::{Error, Result};

/// Most output buckets one query may produce (400 days of hours fit).
pub const MAX_BUCKETS: usize = 100_000;
/// Largest accepted `limit`.
pub const MAX_LIMIT: usize = 100_000;

/// Row order of a stats result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OrderBy {
    /// Bucket ascending, then clicks descending, then dimension values ascending.
    #[default]
    Bucket,
    /// Clicks descending, then bucket and dimension values ascending.
    ClicksDesc,
    /// Uniques descending, then bucket and dimension values ascending.
    UniquesDesc,
}

/// A per-link stats query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    /// Short code.
    pub code: String,
    /// Range start (inclusive), ms since epoch UTC, whole minute.
    pub from_ms: i64,
    /// Range end (exclusive), ms since epoch UTC, whole minute.
    pub to_ms: i64,
    /// Output bucket size.
    pub bucket: Bucket,
    /// Zone of hour/day buckets.
    pub tz: Tz,
    /// Breakdown: none, one dimension, or `[Country, Device]`.
    pub dimensions: Vec<Dimension>,
    /// Include bot clicks.
    pub include_bots: bool,
    /// Most rows (and dimension totals) returned; `None` = all.
    pub limit: Option<usize>,
    /// Row order.
    pub order_by: OrderBy,
}

impl StatsQuery {
    /// A query with UTC buckets, no breakdown, bots excluded, no limit, bucket order.
    pub fn new(code: &str, from_ms: i64, to_ms: i64, bucket: Bucket) -> StatsQuery {
        StatsQuery {
            code: code.to_string(),
            from_ms,
            to_ms,
            bucket,
            tz: Tz::UTC,
            dimensions: Vec::new(),
            include_bots: false,
            limit: None,
            order_by: OrderBy::Bucket,
        }
    }

    /// The stored view answering this query, or `unsupported_dimensions`.
    pub fn view(&self) -> Result<View> {
        View::for_dimensions(&self.dimensions).ok_or_else(|| {
            Error::query(
                "unsupported_dimensions",
                "dimensions must be empty, one of country, device, browser, os, referrer_domain, referrer_medium, or country,device",
            )
        })
    }

    fn validate(&self) -> Result<View> {
        if self.from_ms >= self.to_ms {
            return Err(Error::query("invalid_range", "from must be before to"));
        }
        if self.from_ms.rem_euclid(60_000) != 0 || self.to_ms.rem_euclid(60_000) != 0 {
            return Err(Error::query("unaligned_range", "from and to must be whole minutes"));
        }
        if let Some(l) = self.limit
            && (l == 0 || l > MAX_LIMIT)
        {
            return Err(Error::query("invalid_limit", format!("limit must be between 1 and {MAX_LIMIT}")));
        }
        self.view()
    }
}

/// One output row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsRow {
    /// Start of the (local) bucket, ms since epoch UTC (may precede `from_ms` for the first).
    pub bucket_start_ms: i64,
    /// Dimension values in the order of [`StatsQuery::dimensions`] (empty without breakdown).
    pub dims: Vec<Arc<str>>,
    /// Clicks in the bucket ∩ range.
    pub clicks: u64,
    /// Distinct visitors in the bucket ∩ range (estimate, never above `clicks`).
    pub uniques: u64,
}

/// Clicks and uniques of a dimension value over the whole range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimensionTotal {
    /// Dimension values.
    pub dims: Vec<Arc<str>>,
    /// Clicks over the range.
    pub clicks: u64,
    /// Distinct visitors over the range (sketch union; estimate, never above `clicks`).
    pub uniques: u64,
}

/// Range totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Totals {
    /// Clicks over the range.
    pub clicks: u64,
    /// Distinct visitors over the range (sketch union, not a sum; never above `clicks`).
    pub uniques: u64,
}

/// Answer to a [`StatsQuery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsResult {
    /// Rows in [`StatsQuery::order_by`] order, at most `limit`.
    pub rows: Vec<StatsRow>,
    /// Whether `limit` cut rows off.
    pub truncated: bool,
    /// Totals over the range (all dimension values).
    pub totals: Totals,
    /// With a breakdown: per dimension value over the whole range, clicks descending, at
    /// most `limit`. Empty without breakdown.
    pub by_dimension: Vec<DimensionTotal>,
    /// Whether `limit` cut `by_dimension` off (the values left out are still in `totals`).
    #[serde(default)]
    pub by_dimension_truncated: bool,
    /// Frontier of the shard that answered.
    pub as_of: AsOf,
}

#[derive(Default)]
pub(crate) struct Acc {
    pub(crate) clicks: u64,
    pub(crate) sketch: VisitorSketch,
}

impl Acc {
    #[inline]
    pub(crate) fn add(&mut self, row: &Row) {
        self.clicks += row.clicks();
        self.sketch.merge(&row.sketch);
    }
    pub(crate) fn add_acc(&mut self, other: &Acc) {
        self.clicks += other.clicks;
        self.sketch.merge(&other.sketch);
    }
}

fn dims_of(view: View, key: (u32, u32), shard: &ShardState) -> Vec<Arc<str>> {
    let name = |dim: usize, id: u32| Arc::clone(shard.value_name(dim, id));
    match view {
        View::Total => Vec::new(),
        View::Single(d) => vec![name(d.index(), key.0)],
        View::CountryDevice => vec![name(0, key.0), name(1, key.1)],
    }
}

pub(crate) fn run(views: &Views, q: &StatsQuery) -> Result<StatsResult> {
    run_counting_bots(views, q, &mut 0)
}

/// [`run`], also adding to `bots` the bot clicks of the range (total view), read under the
/// same shard lock as the result, hence at the same frontier.
pub(crate) fn run_counting_bots(views: &Views, q: &StatsQuery, bots: &mut u64) -> Result<StatsResult> {
    let view = q.validate()?;
    let spans = bucket_spans(q.tz, q.bucket, q.from_ms, q.to_ms, MAX_BUCKETS)?;
    let shard = views.shard_for(&q.code)?.read();
    let as_of = AsOf { epoch: shard.applied_epoch, watermark_ms: shard.watermark_ms };
    let mut result =
        StatsResult { rows: Vec::new(), truncated: false, totals: Totals::default(), by_dimension: Vec::new(), by_dimension_truncated: false, as_of };
    let Some(code) = shard.code(&q.code) else { return Ok(result) };
    let vi = view.index();
    // Requested order of pair dimensions: stored as (country, device).
    let swap = view == View::CountryDevice && q.dimensions.first() == Some(&Dimension::Device);
    let keep = |k: u64| q.include_bots || !split_key(k).3;

    let mut totals = Acc::default();
    let mut by_dim: BTreeMap<(u32, u32), Acc> = BTreeMap::new();
    let mut pieces = Vec::new();
    for (s, e) in spans {
        let (a, b) = (s.max(q.from_ms), e.min(q.to_ms));
        pieces.clear();
        cover(a, b, &shard.retained_from, &mut pieces)?;
        let mut bucket_total = Acc::default();
        let mut bucket_dims: BTreeMap<(u32, u32), Acc> = BTreeMap::new();
        for block in pieces.iter().flat_map(|&(g, start)| shard.blocks(code, g, start)) {
            block.for_view(0, |k, row| {
                if keep(k) {
                    bucket_total.add(row);
                }
                if split_key(k).3 {
                    *bots += row.clicks();
                }
            });
            if vi != 0 {
                block.for_view(vi, |k, row| {
                    if keep(k) {
                        let (_, x, y, _) = split_key(k);
                        bucket_dims.entry((x, y)).or_default().add(row);
                    }
                });
            }
        }
        totals.add_acc(&bucket_total);
        if vi == 0 {
            if bucket_total.clicks > 0 {
                let uniques = bucket_total.sketch.uniques_within(bucket_total.clicks);
                result.rows.push(StatsRow { bucket_start_ms: s, dims: Vec::new(), clicks: bucket_total.clicks, uniques });
            }
        } else {
            for (key, mut acc) in bucket_dims {
                by_dim.entry(key).or_default().add_acc(&acc);
                let mut dims = dims_of(view, key, &shard);
                if swap {
                    dims.reverse();
                }
                let uniques = acc.sketch.uniques_within(acc.clicks);
                result.rows.push(StatsRow { bucket_start_ms: s, dims, clicks: acc.clicks, uniques });
            }
        }
    }
    result.totals = Totals { clicks: totals.clicks, uniques: totals.sketch.uniques_within(totals.clicks) };
    for (key, mut acc) in by_dim {
        let mut dims = dims_of(view, key, &shard);
        if swap {
            dims.reverse();
        }
        let uniques = acc.sketch.uniques_within(acc.clicks);
        result.by_dimension.push(DimensionTotal { dims, clicks: acc.clicks, uniques });
    }
    drop(shard);
    order_and_limit(&mut result, q);
    Ok(result)
}

/// Puts `rows` in [`StatsQuery::order_by`] order and `by_dimension` in clicks-descending
/// order (ties: by values), then cuts both to `limit` and sets the `truncated` flags. Shared
/// by every path that answers a [`StatsQuery`] (views, reference, ClickHouse).
pub fn order_and_limit(r: &mut StatsResult, q: &StatsQuery) {
    match q.order_by {
        OrderBy::Bucket => r.rows.sort_by(|a, b| a.bucket_start_ms.cmp(&b.bucket_start_ms).then(b.clicks.cmp(&a.clicks)).then_with(|| a.dims.cmp(&b.dims))),
        OrderBy::ClicksDesc => r.rows.sort_by(|a, b| b.clicks.cmp(&a.clicks).then(a.bucket_start_ms.cmp(&b.bucket_start_ms)).then_with(|| a.dims.cmp(&b.dims))),
        OrderBy::UniquesDesc => {
            r.rows.sort_by(|a, b| b.uniques.cmp(&a.uniques).then(a.bucket_start_ms.cmp(&b.bucket_start_ms)).then_with(|| a.dims.cmp(&b.dims)))
        }
    }
    r.by_dimension.sort_by(|a, b| b.clicks.cmp(&a.clicks).then_with(|| a.dims.cmp(&b.dims)));
    if let Some(l) = q.limit {
        r.truncated = r.rows.len() > l;
        r.by_dimension_truncated = r.by_dimension.len() > l;
        r.rows.truncate(l);
        r.by_dimension.truncate(l);
    }
}
