//! Per-link state shared by the per-link detectors: a sliding window of per-tick buckets and
//! the link's per-minute EWMA baseline.
//!
//! * **Window** `[S − window, S)`: clicks in per-tick buckets (kept to subtract them when they
//!   leave) and their running sums: all clicks and bot clicks (`raw`), human and bot clicks
//!   **counted** under the per-visitor cap (a visitor's first `per-visitor-cap` clicks in the
//!   window count, later ones only in `raw`), counted human clicks by country and by
//!   referrer domain, all clicks by browser family, and clicks per visitor.
//! * **Baseline**: when a bucket leaves the window it is added to its minute; a minute is
//!   folded into exponentially weighted moving averages once all of it has left the window
//!   (so the baseline never includes the window it is compared with): human clicks per
//!   minute (mean and variance, West's incremental EWMA form), bot clicks per minute, and
//!   human clicks per minute by country and by referrer domain. The weight of a new minute
//!   is `max(α, 1/n)` for the link's `n`-th minute since the detectors started (so the first
//!   minutes are a plain average, not biased towards zero). Minutes without clicks fold as
//!   zeros. Minutes during which the caller says not to learn (an anomaly of the link is
//!   open) are skipped, so an attack never becomes the baseline. Values below `1e-3` per
//!   minute snap to zero, which makes an idle link's state identical to a fresh one (the
//!   operator may then drop it).
//!
//! Memory: one bucket per tick with clicks in the window (one entry per click: its visitor
//! and three dimension values), the window sums, and a handful of floats plus the
//! composition maps (pruned below `1e-3`) per link.

use std::collections::VecDeque;
use std::hash::Hash;
use std::ops::Deref;

use crate::hash::FxHashMap;
use crate::model::DimStr;

/// What a dimension value is held as: [`DimStr`] (tests), or the records' interned
/// [`crate::model::DimSym`] (the operator: equality and hashing by id, order by text).
pub(crate) trait DimKey: Clone + Eq + Hash + Ord + Deref<Target = str> {}
impl<K: Clone + Eq + Hash + Ord + Deref<Target = str>> DimKey for K {}

const MINUTE_MS: i64 = 60_000;
const SNAP: f64 = 1e-3;

/// One click as the link detectors see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkClick<'a, K = DimStr> {
    pub visitor: u64,
    pub is_bot: bool,
    pub country: &'a K,
    pub referrer: &'a K,
    pub browser: &'a K,
}

/// Adds one to `k`'s count in `v` (pushed at the end when new).
fn bump<K: PartialEq + Clone>(v: &mut Vec<(K, u64)>, k: &K) {
    match v.iter_mut().find(|(x, _)| x == k) {
        Some((_, c)) => *c += 1,
        None => v.push((k.clone(), 1)),
    }
}

/// Adds one to `k`'s count (cloning `k` only when it is new).
fn incr<K: DimKey>(map: &mut FxHashMap<K, u64>, k: &K) {
    match map.get_mut(k) {
        Some(c) => *c += 1,
        None => {
            map.insert(k.clone(), 1);
        }
    }
}

fn sub<K: DimKey>(map: &mut FxHashMap<K, u64>, k: &K, n: u64) {
    if let Some(c) = map.get_mut(k) {
        *c -= n.min(*c);
        if *c == 0 {
            map.remove(k);
        }
    }
}

/// One click of a bucket: what leaving the window takes out of the sums (and adds to its
/// minute). `counted_human`: a human click under the per-visitor cap, so its country and
/// referrer were counted.
#[derive(Debug)]
struct BucketClick<K> {
    visitor: u64,
    browser: K,
    country: K,
    referrer: K,
    counted_human: bool,
}

/// The clicks of one tick. Its clicks are kept one entry each, in one vector: most buckets
/// hold a click or two, and one allocation per bucket beats one per dimension.
#[derive(Debug)]
struct Bucket<K> {
    sec: i64,
    raw: u32,
    raw_bots: u32,
    human: u32,
    bots: u32,
    clicks: Vec<BucketClick<K>>,
}

impl<K> Bucket<K> {
    fn new(sec: i64) -> Bucket<K> {
        Bucket { sec, raw: 0, raw_bots: 0, human: 0, bots: 0, clicks: Vec::new() }
    }
}

/// Sums over the window's buckets (module docs).
#[derive(Debug)]
pub(crate) struct WindowSums<K = DimStr> {
    /// All clicks.
    pub raw: u64,
    /// All bot clicks.
    pub raw_bots: u64,
    /// Human clicks under the per-visitor cap.
    pub human: u64,
    /// Bot clicks under the per-visitor cap.
    pub bots: u64,
    /// Counted human clicks by country.
    pub countries: FxHashMap<K, u64>,
    /// Counted human clicks by referrer domain.
    pub referrers: FxHashMap<K, u64>,
    /// All clicks by browser family.
    pub browsers: FxHashMap<K, u64>,
    /// All clicks by visitor.
    pub visitors: FxHashMap<u64, u32>,
}

impl<K> Default for WindowSums<K> {
    fn default() -> WindowSums<K> {
        WindowSums {
            raw: 0,
            raw_bots: 0,
            human: 0,
            bots: 0,
            countries: FxHashMap::default(),
            referrers: FxHashMap::default(),
            browsers: FxHashMap::default(),
            visitors: FxHashMap::default(),
        }
    }
}

#[derive(Debug)]
struct MinuteAcc<K> {
    minute: i64,
    human: u64,
    bots: u64,
    countries: Vec<(K, u64)>,
    referrers: Vec<(K, u64)>,
}

/// The link's EWMA baseline (module docs). Rates are per minute.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Baseline<K = DimStr> {
    folded_until: i64,
    /// Minutes folded (learned or zero) since the detectors started.
    pub minutes: u32,
    /// Minutes passed without learning (the baseline frozen while an anomaly of the link
    /// was open): the link's warm-up is longer by as many (`link_anomalies` module docs).
    pub frozen: u32,
    /// Mean human clicks per minute.
    pub mean: f64,
    /// Variance of human clicks per minute.
    pub var: f64,
    /// Mean bot clicks per minute.
    pub bot_mean: f64,
    countries: Vec<(K, f64)>,
    referrers: Vec<(K, f64)>,
}

impl<K: DimKey> Baseline<K> {
    fn new(origin: i64) -> Baseline<K> {
        Baseline { folded_until: origin, minutes: 0, frozen: 0, mean: 0.0, var: 0.0, bot_mean: 0.0, countries: Vec::new(), referrers: Vec::new() }
    }

    fn is_zero(&self) -> bool {
        self.mean == 0.0 && self.var == 0.0 && self.bot_mean == 0.0 && self.countries.is_empty() && self.referrers.is_empty()
    }

    /// Share of `country` in the baseline's human clicks (0 without history).
    pub(crate) fn country_share(&self, country: &str) -> f64 {
        share(&self.countries, country, self.mean)
    }

    /// Share of `referrer` in the baseline's human clicks (0 without history).
    pub(crate) fn referrer_share(&self, referrer: &str) -> f64 {
        share(&self.referrers, referrer, self.mean)
    }

    /// Share of bots in the baseline's clicks (0 without history).
    pub(crate) fn bot_share(&self) -> f64 {
        let total = self.mean + self.bot_mean;
        if total > 0.0 { self.bot_mean / total } else { 0.0 }
    }

    fn fold(&mut self, x: Option<&MinuteAcc<K>>, alpha: f64) {
        self.minutes += 1;
        if x.is_none() && self.is_zero() {
            return;
        }
        let a = alpha.max(1.0 / f64::from(self.minutes));
        let human = x.map_or(0.0, |x| x.human as f64);
        let diff = human - self.mean;
        let incr = a * diff;
        self.mean += incr;
        self.var = (1.0 - a) * (self.var + diff * incr);
        self.bot_mean += a * (x.map_or(0.0, |x| x.bots as f64) - self.bot_mean);
        let empty = Vec::new();
        ewma_map(&mut self.countries, x.map_or(&empty, |x| &x.countries), a);
        ewma_map(&mut self.referrers, x.map_or(&empty, |x| &x.referrers), a);
        if self.mean < SNAP && self.var < SNAP && self.bot_mean < SNAP {
            self.mean = 0.0;
            self.var = 0.0;
            self.bot_mean = 0.0;
            self.countries.clear();
            self.referrers.clear();
        }
    }
}

fn share<K: DimKey>(v: &[(K, f64)], k: &str, total: f64) -> f64 {
    if total <= 0.0 {
        return 0.0;
    }
    v.iter().find(|(x, _)| &**x == k).map_or(0.0, |(_, c)| (c / total).min(1.0))
}

fn ewma_map<K: DimKey>(map: &mut Vec<(K, f64)>, x: &[(K, u64)], a: f64) {
    for (_, v) in map.iter_mut() {
        *v *= 1.0 - a;
    }
    for (k, n) in x {
        let add = a * *n as f64;
        match map.iter_mut().find(|(m, _)| m == k) {
            Some((_, v)) => *v += add,
            None => map.push((k.clone(), add)),
        }
    }
    map.retain(|(_, v)| *v >= SNAP);
}

/// Window plus baseline of one link (module docs).
#[derive(Debug)]
pub(crate) struct LinkWindow<K = DimStr> {
    buckets: VecDeque<Bucket<K>>,
    /// Running sums of the window.
    pub sums: WindowSums<K>,
    acc: Option<MinuteAcc<K>>,
    /// The baseline.
    pub base: Baseline<K>,
}

impl<K: DimKey> LinkWindow<K> {
    /// An empty window whose baseline starts at `origin` (start of the detectors' history).
    pub(crate) fn new(origin: i64) -> LinkWindow<K> {
        LinkWindow { buckets: VecDeque::new(), sums: WindowSums::default(), acc: None, base: Baseline::new(origin) }
    }

    /// Adds a click to the bucket of tick `sec` (its `ts` rounded down to the tick). `cap`:
    /// per-visitor cap. The caller only adds clicks whose bucket is inside the window.
    pub(crate) fn add(&mut self, c: &LinkClick<'_, K>, sec: i64, cap: u32) {
        let seen = self.sums.visitors.entry(c.visitor).or_insert(0);
        let counted = *seen < cap;
        *seen += 1;
        let i = match self.buckets.back() {
            Some(b) if b.sec == sec => self.buckets.len() - 1,
            Some(b) if b.sec < sec => {
                self.buckets.push_back(Bucket::new(sec));
                self.buckets.len() - 1
            }
            None => {
                self.buckets.push_back(Bucket::new(sec));
                0
            }
            Some(_) => {
                let i = self.buckets.partition_point(|b| b.sec < sec);
                if self.buckets.get(i).is_none_or(|b| b.sec != sec) {
                    self.buckets.insert(i, Bucket::new(sec));
                }
                i
            }
        };
        let b = &mut self.buckets[i];
        let s = &mut self.sums;
        b.raw += 1;
        s.raw += 1;
        incr(&mut s.browsers, c.browser);
        if c.is_bot {
            b.raw_bots += 1;
            s.raw_bots += 1;
        }
        let counted_human = counted && !c.is_bot;
        b.clicks.push(BucketClick { visitor: c.visitor, browser: c.browser.clone(), country: c.country.clone(), referrer: c.referrer.clone(), counted_human });
        if !counted {
            return;
        }
        if c.is_bot {
            b.bots += 1;
            s.bots += 1;
        } else {
            b.human += 1;
            s.human += 1;
            incr(&mut s.countries, c.country);
            incr(&mut s.referrers, c.referrer);
        }
    }

    /// Moves the window to end at tick `s`: buckets before `s − window_ms` leave it (into
    /// their minute), and every minute that has entirely left it is folded into the baseline
    /// with weight `alpha` — learned when `learn`, else skipped.
    pub(crate) fn advance(&mut self, s: i64, window_ms: i64, alpha: f64, learn: bool) {
        let start = s - window_ms;
        while self.buckets.front().is_some_and(|b| b.sec < start) {
            let b = self.buckets.pop_front().expect("front exists");
            let minute = b.sec.div_euclid(MINUTE_MS) * MINUTE_MS;
            self.fold_until(minute, alpha, learn);
            self.expire(b, minute);
        }
        self.fold_until(start.div_euclid(MINUTE_MS) * MINUTE_MS, alpha, learn);
    }

    /// Folds every minute before `until` (exclusive, minute-aligned).
    fn fold_until(&mut self, until: i64, alpha: f64, learn: bool) {
        while self.base.folded_until < until {
            let m = self.base.folded_until;
            let acc = self.acc.take_if(|a| a.minute <= m);
            let x = acc.as_ref().filter(|a| a.minute == m);
            if learn {
                self.base.fold(x, alpha);
            } else {
                self.base.frozen = self.base.frozen.saturating_add(1);
            }
            self.base.folded_until = m + MINUTE_MS;
            // Skip runs of empty minutes on a zero baseline in one step.
            if self.acc.is_none() && self.base.is_zero() && learn {
                let gap = (until - self.base.folded_until).div_euclid(MINUTE_MS).max(0);
                self.base.minutes = self.base.minutes.saturating_add(u32::try_from(gap).unwrap_or(u32::MAX));
                self.base.folded_until += gap * MINUTE_MS;
            }
        }
    }

    fn expire(&mut self, b: Bucket<K>, minute: i64) {
        let s = &mut self.sums;
        s.raw -= u64::from(b.raw);
        s.raw_bots -= u64::from(b.raw_bots);
        s.human -= u64::from(b.human);
        s.bots -= u64::from(b.bots);
        for c in &b.clicks {
            if c.counted_human {
                sub(&mut s.countries, &c.country, 1);
                sub(&mut s.referrers, &c.referrer, 1);
            }
            sub(&mut s.browsers, &c.browser, 1);
            let v = &c.visitor;
            if let Some(n) = s.visitors.get_mut(v) {
                *n -= 1;
                if *n == 0 {
                    s.visitors.remove(v);
                }
            }
        }
        if minute < self.base.folded_until {
            return; // a late bucket of a minute already folded
        }
        let acc = self.acc.get_or_insert_with(|| MinuteAcc { minute, human: 0, bots: 0, countries: Vec::new(), referrers: Vec::new() });
        acc.human += u64::from(b.human);
        acc.bots += u64::from(b.bots);
        // Keys new to the minute are appended in order of their first counted click in the
        // bucket, as when the bucket kept per-key counts.
        for c in b.clicks.iter().filter(|c| c.counted_human) {
            bump(&mut acc.countries, &c.country);
            bump(&mut acc.referrers, &c.referrer);
        }
    }

    /// Whether the window is empty and the baseline is zero past its bias-corrected start
    /// (`minutes ≥ 1/alpha`): then the state equals a fresh one and may be dropped.
    pub(crate) fn is_idle(&self, alpha: f64) -> bool {
        self.buckets.is_empty() && self.acc.is_none() && self.base.is_zero() && f64::from(self.base.minutes) * alpha >= 1.0
    }
}

#[cfg(test)]
mod tests;
