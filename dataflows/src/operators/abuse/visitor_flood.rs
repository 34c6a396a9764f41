//! `visitor_flood`: one visitor, or one client network, sending clicks beyond a threshold.
//!
//! Two operators:
//! * `TapFloodRecords` (in `visitor_flood/records.rs`, with the records and keys) sits on
//!   the deduplicated click stream (before enrichment, which drops the client network and
//!   the raw user agent). It passes the clicks through untouched and
//!   emits, per click, one [`FloodClick`] counted under the click's visitor and its network
//!   (`ip_trunc`, an IPv4 /24 or IPv6 /48; none when unknown or unreadable), or two, one per
//!   key, when another worker owns the network (`visitor_flood/click.rs`).
//! * `DetectVisitorFloods`: **input** updates, [`FloodClick`]s exchanged by a fixed hash of
//!   their key (so a key lives on one worker for any number of workers), and the broadcast
//!   [`WatermarkReport`]s; **output** updates, [`Anomaly`] lifecycle events. **State**:
//!   per-tick buckets of `(key, visitor)` for the window `[S − window, S)`, per key its
//!   clicks in the window (networks also per visitor, to count each visitor at most
//!   `network-per-visitor-cap` times), and one [`LifecycleSlot`]. A key with no clicks in the
//!   window and nothing open is dropped, so state is bounded by the window's distinct keys.
//!
//! `observed` = the visitor's clicks in the window, or the network's clicks with each visitor
//! capped; `expected` = the `warning-min-clicks` threshold; `score` = `observed / expected`.
//! Evidence lists (top links, user agents) of a key are kept from the moment its clicks
//! reach half the info level (earlier clicks only count), so they describe the flood itself
//! without storing details of every click; a tracked click leaves the lists when it leaves
//! the window, so their counts are clicks in the window (minus the few before tracking).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use sluice_schemas::{Anomaly, AnomalyKind, Evidence};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use super::anomaly_lifecycle::{Assessment, Body, LifecycleParams, LifecycleSlot, closed_now, severity_of, top_n};
use super::intern::Interner;
use super::known::KnownAnomalies;
use super::pending::Pending;
use super::ticks::Ticker;
use crate::anomaly::StoredAnomalies;
use crate::chunked::Chunked;
use crate::clock::Clock;
use crate::config::{AbuseConfig, Levels};
use crate::hash::FxHashMap;
use crate::model::DimStr;
use crate::watermark::WatermarkReport;

mod bucket;
mod click;
mod records;
use bucket::{BucketEntry, UNTRACKED};
pub use click::FloodClick;
pub use records::{FloodKey, FloodRecord, Network, TapFloodRecords};

/// Evidence lists of a tracked key: clicks by link and by user agent (string ids; a flood
/// over many links or user agents makes them long, hence maps).
#[derive(Debug, Default)]
struct Detail {
    codes: FxHashMap<u32, u64>,
    user_agents: FxHashMap<u32, u64>,
    network: Option<Network>,
}

/// Takes one click of `k` out of `counts`.
fn take_one(counts: &mut FxHashMap<u32, u64>, k: u32) {
    if let Some(n) = counts.get_mut(&k) {
        *n -= 1;
        if *n == 0 {
            counts.remove(&k);
        }
    }
}

/// Renumbers the keys of `counts` with `f` (see [`Interner::compact`]).
fn renumber(counts: &mut FxHashMap<u32, u64>, f: &mut dyn FnMut(&mut u32)) {
    let old = std::mem::take(counts);
    counts.extend(old.into_iter().map(|(mut k, n)| {
        f(&mut k);
        (k, n)
    }));
}

#[derive(Debug, Default)]
struct KeyCounts {
    clicks: u32,
    capped: u32,
    per_visitor: PerVisitor,
    detail: Option<Box<Detail>>,
}

/// A network key's clicks per visitor in the window. Most networks hold one visitor, so the
/// first is kept inline and a table is allocated only for a second one.
#[derive(Debug, Default)]
enum PerVisitor {
    /// No clicks.
    #[default]
    Empty,
    /// One visitor and its clicks (> 0).
    One(u64, u32),
    /// Several visitors (counts > 0); boxed, so a key's state stays small.
    Many(Box<FxHashMap<u64, u32>>),
}

impl PerVisitor {
    /// Adds a click of `v`; returns its new count.
    fn bump(&mut self, v: u64) -> u32 {
        match self {
            PerVisitor::Empty => {
                *self = PerVisitor::One(v, 1);
                1
            }
            PerVisitor::One(x, n) if *x == v => {
                *n += 1;
                *n
            }
            PerVisitor::One(x, n) => {
                let mut m = Box::new(FxHashMap::with_capacity_and_hasher(4, Default::default()));
                m.insert(*x, *n);
                m.insert(v, 1);
                *self = PerVisitor::Many(m);
                1
            }
            PerVisitor::Many(m) => {
                let c = m.entry(v).or_insert(0);
                *c += 1;
                *c
            }
        }
    }

    /// Takes a click of `v` away; returns its count before, `None` when `v` has none.
    fn drop_one(&mut self, v: u64) -> Option<u32> {
        match self {
            PerVisitor::Empty => None,
            PerVisitor::One(x, n) if *x == v => {
                let before = *n;
                *n -= 1;
                if *n == 0 {
                    *self = PerVisitor::Empty;
                }
                Some(before)
            }
            PerVisitor::One(..) => None,
            PerVisitor::Many(m) => {
                let c = m.get_mut(&v)?;
                let before = *c;
                *c -= 1;
                if *c == 0 {
                    m.remove(&v);
                }
                Some(before)
            }
        }
    }

    /// `(visitor, clicks)` pairs, in no particular order.
    fn iter(&self) -> Box<dyn Iterator<Item = (u64, u32)> + '_> {
        match self {
            PerVisitor::Empty => Box::new(std::iter::empty()),
            PerVisitor::One(v, n) => Box::new(std::iter::once((*v, *n))),
            PerVisitor::Many(m) => Box::new(m.iter().map(|(v, n)| (*v, *n))),
        }
    }

    /// Visitors with clicks.
    fn len(&self) -> usize {
        match self {
            PerVisitor::Empty => 0,
            PerVisitor::One(..) => 1,
            PerVisitor::Many(m) => m.len(),
        }
    }
}

#[derive(Debug, Default)]
struct KeyState {
    counts: KeyCounts,
    slot: LifecycleSlot,
}

/// The flood detector without timely (module docs).
pub struct FloodDetector {
    levels: Levels,
    network_levels: Levels,
    cap: u32,
    top_n: usize,
    enabled: bool,
    life: LifecycleParams,
    ticker: Ticker,
    /// The links and user agents of the clicks in the evidence lists.
    strings: Interner<DimStr>,
    pending: Pending<FloodClick>,
    /// Per tick (start, ms UTC), its clicks ([`BucketEntry`]s), in [`Chunked`] lists.
    buckets: VecDeque<(i64, Chunked<BucketEntry>)>,
    /// Emptied chunks of the buckets that left the window, kept for reuse.
    spare: Vec<Vec<BucketEntry>>,
    keys: FxHashMap<FloodKey, KeyState>,
    dirty: BTreeSet<FloodKey>,
    open: BTreeSet<FloodKey>,
    /// Anomalies of the store displaced at adoption ([`FloodDetector::adopt`]), closed at
    /// the next [`FloodDetector::advance`].
    displaced: Vec<Anomaly>,
    /// The store's anomalies of the owned keys ([`FloodDetector::know`]).
    known: KnownAnomalies,
}

impl FloodDetector {
    /// A detector configured by `cfg` (`[abuse]`, validated by the pipeline).
    pub fn new(cfg: &AbuseConfig) -> FloodDetector {
        let f = &cfg.visitor_flood;
        let window_ms = i64::try_from(f.window.as_millis()).unwrap_or(i64::MAX);
        FloodDetector {
            levels: f.levels(),
            network_levels: f.network_levels(),
            cap: f.network_per_visitor_cap,
            top_n: cfg.top_n,
            enabled: f.enabled,
            life: LifecycleParams {
                window_ms,
                quiet_ms: window_ms * i64::from(cfg.quiet_windows),
                update_interval_ms: cfg.update_interval_ms(),
                update_min_change: cfg.update_min_change,
            },
            ticker: Ticker::new(cfg.tick_ms()),
            strings: Interner::default(),
            pending: Pending::default(),
            buckets: VecDeque::new(),
            spare: Vec::new(),
            keys: FxHashMap::default(),
            dirty: BTreeSet::new(),
            open: BTreeSet::new(),
            displaced: Vec::new(),
            known: KnownAnomalies::new(window_ms),
        }
    }

    /// Takes over the `visitor_flood` anomalies of `open` (the store's latest events of
    /// anomalies open at the stop) whose key `owns` accepts by its routing hash
    /// ([`FloodKey::route`]), when the detector starts from a checkpoint (module
    /// `anomaly_lifecycle`, **Restart**): each key's slot continues its anomaly. Of two open
    /// anomalies of one key the older is closed at the next [`FloodDetector::advance`].
    /// Returns how many were adopted.
    pub fn adopt(&mut self, open: &[Anomaly], owns: &dyn Fn(u64) -> bool) -> usize {
        let mut adopted = 0;
        for a in open.iter().filter(|a| a.kind == AnomalyKind::VisitorFlood && a.status != sluice_schemas::AnomalyStatus::Closed) {
            let Some(key) = FloodKey::from_anomaly_key(&a.key) else {
                tracing::warn!(key = %a.key, anomaly_id = %a.anomaly_id, "an open visitor_flood anomaly with a key the detector does not read is left open");
                continue;
            };
            if !self.enabled || !owns(key.route()) {
                continue;
            }
            adopted += 1;
            self.displaced.extend(self.keys.entry(key).or_default().slot.adopt(a.clone()));
            self.open.insert(key);
        }
        adopted
    }

    /// Learns the `visitor_flood` anomalies of `stored` (the store's, minus those adopted)
    /// whose key `owns` accepts, as [`super::LinkDetector::know`] does for the per-link
    /// kinds (module `known`). Returns how many open ones.
    pub fn know(&mut self, stored: &StoredAnomalies, owns: impl Fn(u64) -> bool + 'static) -> usize {
        let on = self.enabled;
        let mine = move |a: &Anomaly| on && a.kind == AnomalyKind::VisitorFlood && FloodKey::from_anomaly_key(&a.key).is_some_and(|k| owns(k.route()));
        let n = self.known.extend(stored.open.iter().filter(|a| mine(a)));
        self.known.read_closed_at_start(stored, Box::new(mine));
        n
    }

    /// Keys with state (diagnostics and tests).
    pub fn tracked_keys(&self) -> usize {
        self.keys.len()
    }

    /// Takes the clicks of one epoch (in any order), leaving `clicks` empty.
    pub fn push_clicks(&mut self, clicks: &mut Vec<FloodClick>) {
        if self.enabled {
            self.pending.push(clicks);
        }
        clicks.clear();
    }

    /// Takes the per-key records of one epoch (in any order), leaving `recs` empty: each is
    /// the click of its key only ([`FloodClick`]'s `From<FloodRecord>`).
    pub fn push(&mut self, recs: &mut Vec<FloodRecord>) {
        if self.enabled {
            for r in recs.drain(..) {
                self.pending.push_one(FloodClick::from(r));
            }
        }
        recs.clear();
    }

    /// Drops the strings nothing refers to once the table has grown enough (module
    /// [`super::intern`]).
    fn compact_strings(&mut self) {
        if !self.strings.wants_compaction() {
            return;
        }
        let (buckets, keys) = (&mut self.buckets, &mut self.keys);
        self.strings.compact(|f| {
            for e in buckets.iter_mut().flat_map(|(_, v)| v.iter_mut()).filter(|e| e.code != UNTRACKED) {
                f(&mut e.code);
                f(&mut e.ua);
            }
            for d in keys.values_mut().filter_map(|k| k.counts.detail.as_deref_mut()) {
                renumber(&mut d.codes, f);
                renumber(&mut d.user_agents, f);
            }
        });
    }

    /// Folds one epoch's watermark reports and runs every tick that became due.
    pub fn advance(&mut self, reports: &[WatermarkReport], now_ms: i64, out: &mut Vec<Anomaly>) {
        out.extend(self.displaced.drain(..).filter_map(|a| closed_now(&a, now_ms)));
        let earliest = if self.ticker.started() { None } else { self.pending.first(&()).map(|r| r.ts) };
        self.ticker.apply(reports, earliest);
        self.known.start(self.ticker.next_tick());
        while let Some(mut s) = self.ticker.due() {
            if self.dirty.is_empty() && self.open.is_empty() {
                let last = self.ticker.last_due().unwrap_or(s);
                let next = self.pending.first(&()).map(|r| self.ticker.floor(r.ts) + self.ticker.tick_ms());
                s = s.max(next.map_or(last, |n| n.min(last)));
            }
            self.tick(s, now_ms, out);
            self.ticker.done(s);
        }
        self.compact_strings();
    }

    fn tick(&mut self, s: i64, now_ms: i64, out: &mut Vec<Anomaly>) {
        let start = s - self.life.window_ms;
        while self.buckets.front().is_some_and(|(sec, _)| *sec < start) {
            let (_, mut entries) = self.buckets.pop_front().expect("front exists");
            let mut spare = std::mem::take(&mut self.spare);
            entries.drain_into(&mut spare, |e| self.remove(e));
            self.spare = spare;
        }
        let mut pending = std::mem::take(&mut self.pending);
        let taken = pending.take_before(s, &());
        for r in taken {
            let sec = self.ticker.floor(r.ts);
            if sec < start {
                continue;
            }
            let i = match self.buckets.back() {
                Some((b, _)) if *b == sec => self.buckets.len() - 1,
                Some((b, _)) if *b > sec => {
                    let i = self.buckets.partition_point(|(x, _)| *x < sec);
                    if self.buckets.get(i).is_none_or(|(x, _)| *x != sec) {
                        self.buckets.insert(i, (sec, Chunked::default()));
                    }
                    i
                }
                _ => {
                    self.buckets.push_back((sec, Chunked::default()));
                    self.buckets.len() - 1
                }
            };
            // (The click's keys are independent: each folds its clicks in `FloodClick` order.)
            if r.by_visitor() {
                let key = FloodKey::Visitor(r.visitor_id);
                let (code, ua) = self.add(key, &r).unwrap_or((UNTRACKED, UNTRACKED));
                self.buckets[i].1.push_pooled(BucketEntry::new(key, r.visitor_id, code, ua), &mut self.spare);
            }
            if let Some(key) = r.network_key() {
                let (code, ua) = self.add(key, &r).unwrap_or((UNTRACKED, UNTRACKED));
                self.buckets[i].1.push_pooled(BucketEntry::new(key, r.visitor_id, code, ua), &mut self.spare);
            }
        }
        self.pending = pending;
        let mut keys = std::mem::take(&mut self.dirty);
        keys.extend(self.open.iter().copied());
        for key in keys {
            self.evaluate(key, s, now_ms, out);
        }
        self.known.close_orphans(s, now_ms, out);
    }

    fn track_from(&self, key: &FloodKey) -> u32 {
        let l = if matches!(key, FloodKey::Visitor(_)) { &self.levels } else { &self.network_levels };
        u32::try_from((l.info_min_clicks / 2).max(1)).unwrap_or(u32::MAX)
    }

    /// Counts click `r` under `key`; returns its link and user agent ids if it went into the
    /// key's evidence lists.
    fn add(&mut self, key: FloodKey, r: &FloodClick) -> Option<(u32, u32)> {
        let track_from = self.track_from(&key);
        let st = &mut self.keys.entry(key).or_default().counts;
        st.clicks += 1;
        if matches!(key, FloodKey::Network(_)) && st.per_visitor.bump(r.visitor_id) <= self.cap {
            st.capped += 1;
        }
        if st.detail.is_none() && st.clicks >= track_from {
            st.detail = Some(Box::default());
        }
        let mut ids = None;
        if let Some(d) = st.detail.as_mut() {
            // (Ids are equal exactly when the strings are.)
            let (code, ua) = (self.strings.id(&r.code), self.strings.id_str(&r.user_agent));
            *d.codes.entry(code).or_insert(0) += 1;
            *d.user_agents.entry(ua).or_insert(0) += 1;
            if d.network.is_none() {
                d.network = r.network();
            }
            ids = Some((code, ua));
        }
        // Below the info level with nothing open, an evaluation can only say "nothing" (the
        // open keys are evaluated at every tick anyway): only keys at or above it are dirty.
        let (observed, levels) = match key {
            FloodKey::Visitor(_) => (st.clicks, &self.levels),
            FloodKey::Network(_) => (st.capped, &self.network_levels),
        };
        if u64::from(observed) >= levels.info_min_clicks.min(levels.warning_min_clicks).min(levels.critical_min_clicks) {
            self.dirty.insert(key);
        }
        ids
    }

    fn remove(&mut self, e: BucketEntry) {
        let (key, visitor, code, ua) = (e.key(), e.visitor(), e.code, e.ua);
        let Some(st) = self.keys.get_mut(&key) else { return };
        let c = &mut st.counts;
        c.clicks = c.clicks.saturating_sub(1);
        if let (true, Some(d)) = (code != UNTRACKED, c.detail.as_mut()) {
            take_one(&mut d.codes, code);
            take_one(&mut d.user_agents, ua);
        }
        if c.per_visitor.drop_one(visitor).is_some_and(|before| before <= self.cap) {
            c.capped = c.capped.saturating_sub(1);
        }
        if c.clicks == 0 && !st.slot.is_open() {
            self.keys.remove(&key);
        }
    }

    fn evaluate(&mut self, key: FloodKey, s: i64, now_ms: i64, out: &mut Vec<Anomaly>) {
        let (levels, is_visitor) = match key {
            FloodKey::Visitor(_) => (self.levels, true),
            FloodKey::Network(_) => (self.network_levels, false),
        };
        let Some(st) = self.keys.get_mut(&key) else { return };
        let observed = if is_visitor { st.counts.clicks } else { st.counts.capped };
        let verdict = severity_of(u64::from(observed), &levels, true).map(|severity| {
            let expected = levels.warning_min_clicks as f64;
            Assessment { severity, observed: f64::from(observed), expected, score: f64::from(observed) / expected.max(1.0) }
        });
        if verdict.is_some() || st.slot.is_open() {
            // (Nothing open and no verdict: the lifecycle emits nothing; skip the key's text.)
            let (window, top, strings) = (self.life.window_ms, self.top_n, &self.strings);
            let counts = &st.counts;
            let ev =
                st.slot.step(AnomalyKind::VisitorFlood, &key.anomaly_key(), s, verdict, &self.life, now_ms, |a| body(key, counts, strings, a, window, top));
            out.extend(ev.and_then(|ev| self.known.reconcile(&mut st.slot, ev, s)));
        }
        if st.slot.is_open() {
            self.open.insert(key);
        } else {
            self.open.remove(&key);
            if st.counts.clicks == 0 {
                self.keys.remove(&key);
            }
        }
    }
}

fn body(key: FloodKey, st: &KeyCounts, strings: &Interner<DimStr>, a: &Assessment, window_ms: i64, top: usize) -> Body {
    let detail = st.detail.as_deref();
    let codes = detail.map(|d| top_n(d.codes.iter().map(|(c, n)| (strings.get(*c).as_str(), *n)), top)).unwrap_or_default();
    let uas = detail.map(|d| top_n(d.user_agents.iter().map(|(u, n)| (strings.get(*u).as_str(), *n)), top)).unwrap_or_default();
    let (visitors, top_share, top_visitors, network) = match key {
        FloodKey::Visitor(_) => (1, 1.0, Vec::new(), detail.and_then(|d| d.network)),
        FloodKey::Network(n) => {
            let max = st.per_visitor.iter().map(|(_, c)| c).max().unwrap_or(0);
            let hex: Vec<(String, u64)> = st.per_visitor.iter().map(|(v, c)| (format!("{v:016x}"), u64::from(c))).collect();
            let share = if st.clicks > 0 { f64::from(max) / f64::from(st.clicks) } else { 0.0 };
            (st.per_visitor.len() as u64, share, top_n(hex.iter().map(|(v, c)| (v.as_str(), *c)), top), Some(n))
        }
    };
    let code = codes.first().map(|t| t.value.clone());
    let who = match key {
        FloodKey::Visitor(v) => format!("visitor {v:016x}{}", network.map(|n| format!(" ({})", n.cidr())).unwrap_or_default()),
        FloodKey::Network(n) => format!("network {} ({visitors} visitors)", n.cidr()),
    };
    let summary = format!(
        "{} visitor flood: {who} sent {:.0} clicks in {} s{}",
        a.severity.as_str(),
        a.observed,
        window_ms / 1000,
        code.as_deref().map(|c| format!(", mostly to link \"{c}\"")).unwrap_or_default()
    );
    Body {
        code,
        org: None,
        summary,
        evidence: Evidence {
            window_ms,
            clicks: u64::from(st.clicks),
            visitors,
            top_visitor_share: top_share,
            top_user_agents: uas,
            top_codes: codes,
            top_visitors,
            network: network.map(|n| n.cidr()),
            ..Evidence::default()
        },
    }
}

struct Epoch {
    cap: Capability<u64>,
    recs: Vec<FloodClick>,
    reports: Vec<WatermarkReport>,
}

/// Most emptied epoch buffers kept for reuse.
const SPARE_EPOCHS: usize = 16;

/// What [`DetectVisitorFloods::detect_visitor_floods`] needs besides its inputs.
pub struct FloodDetectorParams {
    /// `[abuse]`.
    pub config: AbuseConfig,
    /// Processing clock (`detected_at`).
    pub clock: Arc<dyn Clock>,
    /// Anomalies open in the store, taken over by a detector restored from a checkpoint
    /// ([`FloodDetector::adopt`]); empty otherwise.
    pub adopt: Arc<[Anomaly]>,
    /// The store's other anomalies ([`FloodDetector::know`]).
    pub known: StoredAnomalies,
}

/// Extension trait: the flood detector (module docs).
pub trait DetectVisitorFloods<'scope> {
    /// Counts flood clicks per key; returns the anomaly events.
    fn detect_visitor_floods(self, reports: StreamVec<'scope, u64, WatermarkReport>, params: FloodDetectorParams) -> StreamVec<'scope, u64, Anomaly>;
}

impl<'scope> DetectVisitorFloods<'scope> for StreamVec<'scope, u64, FloodClick> {
    fn detect_visitor_floods(self, reports: StreamVec<'scope, u64, WatermarkReport>, params: FloodDetectorParams) -> StreamVec<'scope, u64, Anomaly> {
        let (index, peers) = (self.scope().index(), self.scope().peers());
        let mut builder = OperatorBuilder::new("DetectVisitorFloods".to_owned(), self.scope());
        let mut recs_in = builder.new_input(self, Exchange::new(|r: &FloodClick| r.route()));
        let mut reports_in = builder.new_input(reports, Pipeline);
        let (out, stream) = builder.new_output::<Vec<Anomaly>>();
        let mut out = OutputBuilder::<_, CapacityContainerBuilder<Vec<Anomaly>>>::from(out);
        builder.build(move |initial| {
            drop(initial);
            let mut det = FloodDetector::new(&params.config);
            // The keys this worker owns: those the exchange above routes here.
            let adopted = det.adopt(&params.adopt, &|h| crate::hash::owner(h, peers) == index);
            if adopted > 0 {
                tracing::info!(worker = index, adopted, "visitor_flood: open anomalies of the store taken over after the restore");
            }
            det.know(&params.known, move |h| crate::hash::owner(h, peers) == index);
            let clock = params.clock;
            let mut stash: BTreeMap<u64, Epoch> = BTreeMap::new();
            let mut spare: Vec<Vec<FloodClick>> = Vec::new();
            let mut buf: Vec<Anomaly> = Vec::new();
            move |frontiers| {
                recs_in.for_each(|cap, data| {
                    let t = *cap.least().expect("input capability has a time");
                    let ep = stash.entry(t).or_insert_with(|| Epoch { cap: cap.delayed(&t, 0), recs: spare.pop().unwrap_or_default(), reports: Vec::new() });
                    ep.recs.append(data);
                });
                reports_in.for_each(|cap, data| {
                    let t = *cap.least().expect("input capability has a time");
                    stash
                        .entry(t)
                        .or_insert_with(|| Epoch { cap: cap.delayed(&t, 0), recs: spare.pop().unwrap_or_default(), reports: Vec::new() })
                        .reports
                        .append(data);
                });
                let ready = |t: u64| frontiers.iter().all(|f| !f.less_equal(&t));
                let mut handle = out.activate();
                while let Some(&t) = stash.keys().next() {
                    if !ready(t) {
                        break;
                    }
                    let mut ep = stash.remove(&t).expect("key present");
                    det.push_clicks(&mut ep.recs);
                    det.advance(&ep.reports, clock.now_ms(), &mut buf);
                    if !buf.is_empty() {
                        handle.session(&ep.cap).give_container(&mut buf);
                        buf.clear();
                    }
                    if spare.len() < SPARE_EPOCHS {
                        spare.push(ep.recs);
                    }
                }
            }
        });
        stream
    }
}

#[cfg(test)]
mod tests;
