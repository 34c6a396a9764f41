//! A naive reference implementation of the pipeline's semantics, for oracle tests and as the
//! benchmark's baseline.
//!
//! Event at a time, plain maps, exact sets, no timely, no sketches:
//! * lateness per partition against `max(ts)` of accepted records (each capped at its
//!   reference time), the future check against the record's reference time (its arrival,
//!   or the given processing time: [`reference_time_ms`]), validation via [`validate_event`];
//! * dedup by a set of every `event_id` ever accepted (never forgets; first wins);
//! * link metadata as a multiset per code, the greatest positive value current;
//! * the flood cap (`[abuse.flood-cap]`, default on): a per-(code, visitor, UTC minute)
//!   count of every accepted non-bot click, never forgotten; clicks past the cap are marked
//!   `is_bot` (see [`Reference::with_flood_cap`]);
//! * optionally, the rollups maintained naively: one `HashMap` row per (code, granularity,
//!   bucket, view, bot, dimension strings) with an exact `HashSet` of visitors
//!   ([`Reference::rollup_rows`]) — the baseline the benchmark measures;
//! * optionally, every accepted click kept, and queries answered by scanning them with
//!   chrono's local-time conversions ([`Reference::query`], [`Reference::summary`]) —
//!   independent of the pipeline's bucket covering.
//!
//! It models no retention and no idleness: oracle tests query ranges the pipeline retains
//! and keep every partition active.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{Datelike, LocalResult, NaiveTime, Offset, TimeZone, Timelike};
use chrono_tz::Tz;
use sluice_schemas::{ClickEvent, LinkMeta};

use crate::config::SemanticsConfig;
use crate::dead_letter::DeadLetterReason;
use crate::model::{Dims, Granularity, View};
use crate::pipeline::LinkMetaChange;
use crate::source::SourceRecord;
use crate::views::query::{DimensionTotal, StatsQuery, StatsResult, StatsRow, Totals};
use crate::views::summary::{LinkTotal, SummaryQuery, SummaryResult};
use crate::views::{AsOf, Bucket};
use crate::watermark::{reference_time_ms, validate_event};

/// One accepted click as the reference keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefClick {
    /// Short code.
    pub code: String,
    /// Event time, ms UTC.
    pub ts: i64,
    /// Visitor id.
    pub visitor_id: u64,
    /// Enrichment.
    pub dims: Dims,
    /// The link metadata version valid at the click's `ts`, among those applied before it.
    pub meta: Option<LinkMeta>,
}

/// What happened to a pushed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Counted.
    Accepted,
    /// A repeat of an accepted `event_id`.
    Duplicate,
    /// Refused.
    Dead(DeadLetterReason),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RollupKey {
    code: String,
    granularity: Granularity,
    bucket: i64,
    view: View,
    is_bot: bool,
    dims: Vec<String>,
}

/// The naive reference (module docs).
#[derive(Debug)]
pub struct Reference {
    lateness_ms: i64,
    skew_ms: i64,
    long_ms: i64,
    partitions: HashMap<u32, i64>,
    seen: HashSet<u128>,
    meta: HashMap<String, Vec<(LinkMeta, isize)>>,
    keep_clicks: bool,
    clicks: Vec<RefClick>,
    maintain_rollups: bool,
    rollups: HashMap<RollupKey, (u64, HashSet<u64>)>,
    dead: BTreeMap<DeadLetterReason, u64>,
    duplicates: u64,
    flood_cap: Option<u32>,
    flood_counts: HashMap<(String, u64, i64), u64>,
}

impl Reference {
    /// A reference that keeps clicks (for queries) and/or maintains naive rollups.
    pub fn new(sem: &SemanticsConfig, keep_clicks: bool, maintain_rollups: bool) -> Reference {
        Reference {
            lateness_ms: sem.lateness_ms(),
            skew_ms: sem.future_skew_ms(),
            long_ms: sem.retention_ms()[3],
            partitions: HashMap::new(),
            seen: HashSet::new(),
            meta: HashMap::new(),
            keep_clicks,
            clicks: Vec::new(),
            maintain_rollups,
            rollups: HashMap::new(),
            dead: BTreeMap::new(),
            duplicates: 0,
            flood_cap: crate::config::FloodCapConfig::default().cap(),
            flood_counts: HashMap::new(),
        }
    }

    /// Sets the flood cap (`None`: off) — the pipeline's `abuse.flood-cap.cap()`; the default
    /// is the default configuration's.
    pub fn with_flood_cap(mut self, cap: Option<u32>) -> Reference {
        self.flood_cap = cap;
        self
    }

    /// Applies a link-metadata change (affects clicks pushed afterwards).
    pub fn apply_meta(&mut self, change: &LinkMetaChange) {
        let values = self.meta.entry(change.meta.code.clone()).or_default();
        match values.iter_mut().find(|(m, _)| *m == change.meta) {
            Some((_, d)) => *d += change.diff,
            None => values.push((change.meta.clone(), change.diff)),
        }
        values.retain(|(_, d)| *d != 0);
    }

    /// The version of `code`'s metadata valid at event time `ts`: the greatest
    /// `valid_from_ms <= ts` (ties: the greatest value), else the earliest version
    /// (semantics of [`crate::operators::LookupLinkMeta`], computed by a plain scan).
    fn meta_at(&self, code: &str, ts: i64) -> Option<LinkMeta> {
        let live = || self.meta.get(code).into_iter().flatten().filter(|(_, d)| *d > 0).map(|(m, _)| m);
        let key = |m: &&LinkMeta| (m.valid_from_ms, (*m).clone());
        match live().filter(|m| m.valid_from_ms <= ts).max_by_key(key) {
            Some(m) => Some(m.clone()),
            None => {
                let first = live().map(|m| m.valid_from_ms).min()?;
                live().filter(|m| m.valid_from_ms == first).max().cloned()
            }
        }
    }

    /// Processes one record read at processing time `now_ms`; `enrich` is called for
    /// accepted clicks only.
    pub fn push(&mut self, rec: &SourceRecord, now_ms: i64, enrich: impl FnOnce(&ClickEvent) -> Dims) -> Outcome {
        let ev = &rec.event;
        let reference = reference_time_ms(rec.arrival_ms, now_ms);
        let outcome = if validate_event(ev).is_err() {
            Outcome::Dead(DeadLetterReason::Invalid)
        } else if ev.ts > reference + self.skew_ms {
            Outcome::Dead(DeadLetterReason::Future)
        } else {
            let wm = self.partitions.get(&rec.partition).copied();
            let limit = if rec.backfill { self.long_ms } else { self.lateness_ms };
            if wm.is_some_and(|w| ev.ts < w - limit) {
                Outcome::Dead(DeadLetterReason::TooLate)
            } else {
                // Capped at the reference time, like the gate's `W_p`.
                let capped = ev.ts.min(reference);
                let w = self.partitions.entry(rec.partition).or_insert(capped);
                *w = (*w).max(capped);
                if self.seen.insert(ev.event_id.as_u128()) { Outcome::Accepted } else { Outcome::Duplicate }
            }
        };
        match outcome {
            Outcome::Dead(r) => *self.dead.entry(r).or_default() += 1,
            Outcome::Duplicate => self.duplicates += 1,
            Outcome::Accepted => {
                let mut dims = enrich(ev);
                if let Some(cap) = self.flood_cap
                    && !dims.is_bot
                {
                    let n = self.flood_counts.entry((ev.code.clone(), ev.visitor_id, ev.ts.div_euclid(60_000))).or_default();
                    *n += 1;
                    dims.is_bot = *n > u64::from(cap);
                }
                if self.maintain_rollups {
                    self.add_rollups(ev, &dims);
                }
                if self.keep_clicks {
                    let meta = self.meta_at(&ev.code, ev.ts);
                    self.clicks.push(RefClick { code: ev.code.clone(), ts: ev.ts, visitor_id: ev.visitor_id, dims, meta });
                }
            }
        }
        outcome
    }

    fn add_rollups(&mut self, ev: &ClickEvent, dims: &Dims) {
        for g in Granularity::ALL {
            for view in View::ALL {
                let key = RollupKey {
                    code: ev.code.clone(),
                    granularity: g,
                    bucket: g.bucket_start(ev.ts),
                    view,
                    is_bot: dims.is_bot,
                    dims: view.dimensions().iter().map(|d| dims.get(*d).to_string()).collect(),
                };
                let row = self.rollups.entry(key).or_default();
                row.0 += 1;
                row.1.insert(ev.visitor_id);
            }
        }
    }

    /// Rows of the naively maintained rollups.
    pub fn rollup_rows(&self) -> usize {
        self.rollups.len()
    }

    /// Dead letters by reason.
    pub fn dead(&self, reason: DeadLetterReason) -> u64 {
        self.dead.get(&reason).copied().unwrap_or(0)
    }

    /// Duplicates dropped.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Accepted clicks (when kept).
    pub fn clicks(&self) -> &[RefClick] {
        &self.clicks
    }

    /// Global watermark with every partition active: the minimum partition watermark.
    pub fn watermark(&self) -> i64 {
        self.partitions.values().copied().min().unwrap_or(i64::MIN)
    }

    /// Answers a stats query by scanning the kept clicks (same result shape and ordering as
    /// [`crate::views::Views::query`]; uniques exact; `as_of` is zero).
    pub fn query(&self, q: &StatsQuery) -> StatsResult {
        let view = q.view().expect("reference queries use supported dimensions");
        type Cell = (u64, HashSet<u64>);
        let mut rows: BTreeMap<(i64, Vec<Arc<str>>), Cell> = BTreeMap::new();
        let mut by_dim: BTreeMap<Vec<Arc<str>>, (u64, HashSet<u64>)> = BTreeMap::new();
        let mut total: (u64, HashSet<u64>) = Default::default();
        for c in self.clicks.iter().filter(|c| c.code == q.code && (q.include_bots || !c.dims.is_bot)) {
            if c.ts < q.from_ms || c.ts >= q.to_ms {
                continue;
            }
            let b = local_bucket_start(q.tz, q.bucket, c.ts);
            let dims: Vec<Arc<str>> = q.dimensions.iter().map(|d| Arc::from(c.dims.get(*d))).collect();
            total.0 += 1;
            total.1.insert(c.visitor_id);
            let r = rows.entry((b, dims.clone())).or_default();
            r.0 += 1;
            r.1.insert(c.visitor_id);
            if view != View::Total {
                let d = by_dim.entry(dims).or_default();
                d.0 += 1;
                d.1.insert(c.visitor_id);
            }
        }
        let mut result = StatsResult {
            rows: rows.into_iter().map(|((b, dims), (clicks, v))| StatsRow { bucket_start_ms: b, dims, clicks, uniques: v.len() as u64 }).collect(),
            truncated: false,
            totals: Totals { clicks: total.0, uniques: total.1.len() as u64 },
            by_dimension: by_dim.into_iter().map(|(dims, (clicks, v))| DimensionTotal { dims, clicks, uniques: v.len() as u64 }).collect(),
            by_dimension_truncated: false,
            as_of: AsOf { epoch: 0, watermark_ms: self.watermark() },
        };
        crate::views::query::order_and_limit(&mut result, q);
        result
    }

    /// Answers a summary query by scanning the kept clicks (semantics of
    /// [`crate::views::summary`]; uniques exact).
    pub fn summary(&self, q: &SummaryQuery) -> SummaryResult {
        let in_range = |c: &&RefClick| c.ts >= q.from_ms && c.ts < q.to_ms && (q.include_bots || !c.dims.is_bot);
        let matches = |c: &RefClick| {
            let m = c.meta.as_ref();
            q.org.as_ref().is_none_or(|o| m.is_some_and(|m| m.org.as_deref() == Some(o.as_str())))
                && q.tag.as_ref().is_none_or(|t| m.is_some_and(|m| m.tags.contains(t)))
        };
        let mut links: BTreeMap<&str, (u64, HashSet<u64>)> = BTreeMap::new();
        let mut all: HashSet<u64> = HashSet::new();
        for c in self.clicks.iter().filter(in_range).filter(|c| matches(c)) {
            let e = links.entry(c.code.as_str()).or_default();
            e.0 += 1;
            e.1.insert(c.visitor_id);
            all.insert(c.visitor_id);
        }
        let mut countries: BTreeMap<Arc<str>, (u64, HashSet<u64>)> = BTreeMap::new();
        let mut referrers: BTreeMap<Arc<str>, (u64, HashSet<u64>)> = BTreeMap::new();
        for c in self.clicks.iter().filter(in_range).filter(|c| links.contains_key(c.code.as_str())) {
            for (m, d) in [(&mut countries, crate::model::Dimension::Country), (&mut referrers, crate::model::Dimension::ReferrerDomain)] {
                let e = m.entry(Arc::from(c.dims.get(d))).or_default();
                e.0 += 1;
                e.1.insert(c.visitor_id);
            }
        }
        let mut top: Vec<LinkTotal> = links
            .iter()
            .filter(|(code, _)| !q.exclude.contains(**code))
            .map(|(code, (n, v))| LinkTotal { code: Arc::from(*code), clicks: *n, uniques: v.len() as u64 })
            .collect();
        let listed = top.len();
        // (`links` is a BTreeMap: its codes come out ascending.)
        let link_codes: Vec<Arc<str>> = links.keys().filter(|code| !q.exclude.contains(**code)).map(|code| Arc::from(*code)).collect();
        top.sort_by(|a, b| b.clicks.cmp(&a.clicks).then_with(|| a.code.cmp(&b.code)));
        top.truncate(q.limit);
        let rank = |m: BTreeMap<Arc<str>, (u64, HashSet<u64>)>| {
            let mut v: Vec<DimensionTotal> = m.into_iter().map(|(k, (n, s))| DimensionTotal { dims: vec![k], clicks: n, uniques: s.len() as u64 }).collect();
            v.sort_by(|a, b| b.clicks.cmp(&a.clicks).then_with(|| a.dims.cmp(&b.dims)));
            v.truncate(q.limit);
            v
        };
        SummaryResult {
            links: listed,
            link_codes,
            totals: Totals { clicks: links.values().map(|(n, _)| n).sum(), uniques: all.len() as u64 },
            top_links: top,
            top_countries: rank(countries),
            top_referrers: rank(referrers),
            as_of: AsOf { epoch: 0, watermark_ms: self.watermark() },
        }
    }
}

/// Start (UTC ms) of the local bucket of `tz` containing `ts`, by chrono's local-time
/// conversions (independent of the pipeline's boundary walk).
pub fn local_bucket_start(tz: Tz, bucket: Bucket, ts: i64) -> i64 {
    let dt = tz.timestamp_millis_opt(ts).single().expect("timestamp in range");
    match bucket {
        Bucket::Minute => ts.div_euclid(60_000) * 60_000,
        Bucket::Hour => {
            let naive = dt.naive_local().with_minute(0).and_then(|d| d.with_second(0)).and_then(|d| d.with_nanosecond(0));
            let naive = naive.expect("valid local hour");
            let off = dt.offset().fix();
            match tz.from_local_datetime(&naive) {
                LocalResult::Single(x) => x.timestamp_millis(),
                LocalResult::Ambiguous(a, b) => {
                    if a.offset().fix() == off {
                        a.timestamp_millis()
                    } else {
                        b.timestamp_millis()
                    }
                }
                // The local hour start fell into a gap (sub-hour DST shift): the bucket begins
                // where the gap ends, which is where the offset changed.
                LocalResult::None => ts - (i64::from(dt.minute()) * 60_000 + i64::from(dt.second()) * 1000),
            }
        }
        Bucket::Day => {
            let date = dt.date_naive();
            let mut t = date.and_time(NaiveTime::MIN);
            loop {
                match tz.from_local_datetime(&t) {
                    LocalResult::Single(x) => return x.timestamp_millis(),
                    LocalResult::Ambiguous(a, _) => return a.timestamp_millis(),
                    LocalResult::None => t += chrono::Duration::minutes(15),
                }
                if t.date() != date || t.day() != date.day() {
                    return ts;
                }
            }
        }
    }
}
