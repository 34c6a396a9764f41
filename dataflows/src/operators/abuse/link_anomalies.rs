//! `DetectLinkAnomalies`: the per-link detectors — `click_burst`, `bot_share`,
//! `referrer_spam`, `geo_shift`, `blocklisted_target` — over one shared per-link state.
//!
//! * **Inputs**: updates, [`LinkedRecord`]s partitioned by [`route_str`]`(code)` — the output
//!   of [`crate::operators::LookupLinkMeta`], taken as is (the same routing as the rollups); the broadcast
//!   [`WatermarkReport`]s; blocked-link changes ([`BlockedChange`], differential
//!   `(code, (entry, host))` with `±1`) exchanged by code.
//! * **Output**: updates, [`Anomaly`] lifecycle events (open / updated / closed), emitted at
//!   the processing epoch whose watermark report made the tick due.
//! * **State**: per code a [`LinkWindow`] (sliding window + EWMA baseline), the latest link
//!   metadata, and one [`LifecycleSlot`] per kind; the blocked entries per code; clicks not
//!   yet folded (`ts ≥` the next tick), each as a compact [`HeldClick`] (its code interned
//!   as a symbol, `sym.rs`; its dimension values the records' process-wide
//!   [`DimSym`]s). Codes whose window is empty, whose baseline decayed to
//!   zero and with nothing open are dropped at the next minute boundary, so state is bounded
//!   by the links active in the last hour or so (the baseline half-life sets how long).
//!
//! At every tick (module [`super::ticks`]) the operator folds pending clicks into their
//! links, then evaluates every link that got clicks or blocklist changes since the last tick
//! and every link with an open anomaly, in code order. The detectors share the state because
//! they look at the same window; each is a function in its own file. When one new referrer
//! or one country explains a link's surge (the `referrer_spam` / `geo_shift` shape holds),
//! the surge is reported as that kind and not also as a `click_burst`. While any of the
//! baseline kinds is open for a link, its baseline stops learning.
//!
//! **Warm-up, per link.** The baseline detectors (`click_burst`, `referrer_spam`,
//! `geo_shift`) judge a link only once its history covers `[abuse] warmup`. A link first
//! seen while the detectors warm up shares their origin (the start of their history, module
//! [`super::ticks`]): it was watched from the start and had no clicks. A link first seen
//! after that gets its own origin, the minute of its first click, and its own warm-up: a
//! new link's first minutes are its baseline, not a burst over a zero one. A link whose
//! state was dropped as idle (see **State**) and that gets clicks again counts as new.
//! Minutes with the link's baseline frozen (an anomaly of it open, e.g. a `bot_share` from
//! its first click) teach it nothing and do not count toward its warm-up, which also lasts
//! until the baseline holds two whole minutes (a warm-up shorter than the window plus two
//! minutes would otherwise judge against a baseline of nothing).
//!
//! Plain timely: the state is order-dependent (first clicks of a visitor count) and its
//! output is a stream of events, not a collection.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sluice_schemas::anomaly::link_key;
use sluice_schemas::{Anomaly, AnomalyKind, LinkMeta};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::{Capability, InputCapability};
use timely::progress::Antichain;

use super::anomaly_lifecycle::{Assessment, LifecycleParams, LifecycleSlot, closed_now};
use super::blocklisted_target::{self, BlockedChange};
use super::known::KnownAnomalies;
use super::link_window::{LinkClick, LinkWindow};
use super::pending::{Held, Pending};
use super::sym::{Sym, SymTable};
use super::ticks::Ticker;
use super::{bot_share, click_burst, geo_shift, referrer_spam};
use crate::anomaly::StoredAnomalies;
use crate::clock::Clock;
use crate::config::AbuseConfig;
use crate::hash::{FxHashMap, route_str};
use crate::model::{DimStr, DimSym, Dimension};
use crate::records::LinkedRecord;
use crate::watermark::WatermarkReport;

mod body;
use body::BodyCtx;

const MINUTE_MS: i64 = 60_000;
const BURST: usize = 0;
const BOTS: usize = 1;
const REFERRER: usize = 2;
const GEO: usize = 3;
const BLOCKED: usize = 4;
const KINDS: [AnomalyKind; 5] =
    [AnomalyKind::ClickBurst, AnomalyKind::BotShare, AnomalyKind::ReferrerSpam, AnomalyKind::GeoShift, AnomalyKind::BlocklistedTarget];

struct LinkState {
    key: String,
    /// Start of the link's history (ms UTC, a minute boundary): the detectors' origin for a
    /// link first seen during their warm-up, else the minute of its first click (module docs).
    origin: i64,
    win: LinkWindow<DimSym>,
    meta: Option<Arc<LinkMeta>>,
    slots: [LifecycleSlot; 5],
    /// Clicks were added at the current tick (the code is in `LinkDetector::touched`).
    touched: bool,
}

impl LinkState {
    /// The baseline learns unless a baseline-relative anomaly (or a bot surge) is open.
    fn learning(&self) -> bool {
        !self.slots[..BLOCKED].iter().any(LifecycleSlot::is_open)
    }

    fn any_open(&self) -> bool {
        self.slots.iter().any(LifecycleSlot::is_open)
    }
}

/// The per-link detectors without timely (module docs): fed with clicks, blocked-link
/// changes and watermark reports in epoch order, it appends anomaly events to `out`.
pub struct LinkDetector {
    cfg: AbuseConfig,
    life: LifecycleParams,
    alpha: f64,
    ticker: Ticker,
    states: FxHashMap<Sym, LinkState>,
    blocked: FxHashMap<DimStr, Vec<(String, String, isize)>>,
    /// The codes the detectors hold, each string once (module `sym.rs`): held clicks and
    /// the link table refer to them by [`Sym`]s, which hash and compare equal by identity
    /// (one word), as the dimension values' [`DimSym`]s do, so a click's fold never hashes
    /// or compares its strings.
    syms: SymTable,
    pending: Pending<HeldClick>,
    dirty: BTreeSet<Sym>,
    /// Codes that got clicks at the current tick, once each (merged into `dirty` at its end).
    touched: Vec<Sym>,
    /// Scratch: the codes evaluated at a tick.
    evaluated: Vec<Sym>,
    open: BTreeSet<Sym>,
    last_sweep_minute: i64,
    /// Anomalies of the store to take over at the first tick ([`LinkDetector::adopt`]): `(code,
    /// kind index, latest event)`.
    adopting: Vec<(String, usize, Anomaly)>,
    /// The store's anomalies of the owned links ([`LinkDetector::know`]).
    known: KnownAnomalies,
}

/// A click as the detectors hold it until its tick: what they read of a [`LinkedRecord`],
/// its code as a symbol of [`LinkDetector::syms`] and its (already interned)
/// [`Dims`](crate::model::Dims) values.
#[derive(Debug)]
pub(crate) struct HeldClick {
    ts: i64,
    visitor: u64,
    code: Sym,
    /// Dimension values ([`Dims::values`](crate::model::Dims::values) order).
    dims: [DimSym; 6],
    is_bot: bool,
    meta: Option<Arc<LinkMeta>>,
}

impl Held for HeldClick {
    type Ctx = ();
    /// `(ts, first 8 bytes of the code)` ([`Sym::order_prefix`]).
    type Prefix = (i64, u64);

    fn prefix(&self) -> (i64, u64) {
        (self.ts, self.code.order_prefix())
    }

    fn ts(&self) -> i64 {
        self.ts
    }

    /// `(ts, code, visitor, dimension values, is_bot, meta)`: the order of the
    /// [`LinkedRecord`]s the clicks come from.
    fn order(&self, o: &Self, _: &()) -> Ordering {
        self.ts
            .cmp(&o.ts)
            .then_with(|| self.code.cmp(&o.code))
            .then_with(|| self.visitor.cmp(&o.visitor))
            .then_with(|| {
                // `Dims::values` compared element by element (by text), then `is_bot`: the
                // order of `Dims`.
                for (a, b) in self.dims.iter().zip(&o.dims) {
                    match a.cmp(b) {
                        Ordering::Equal => {}
                        other => return other,
                    }
                }
                self.is_bot.cmp(&o.is_bot)
            })
            .then_with(|| self.meta.as_deref().cmp(&o.meta.as_deref()))
    }
}

impl LinkDetector {
    /// Detectors configured by `cfg` (validated by the pipeline).
    pub fn new(cfg: AbuseConfig) -> LinkDetector {
        let window_ms = cfg.link_window_ms();
        LinkDetector {
            life: LifecycleParams {
                window_ms,
                quiet_ms: window_ms * i64::from(cfg.quiet_windows),
                update_interval_ms: cfg.update_interval_ms(),
                update_min_change: cfg.update_min_change,
            },
            alpha: cfg.baseline_alpha(),
            ticker: Ticker::new(cfg.tick_ms()),
            cfg,
            states: FxHashMap::default(),
            blocked: FxHashMap::default(),
            syms: SymTable::default(),
            pending: Pending::default(),
            dirty: BTreeSet::new(),
            touched: Vec::new(),
            evaluated: Vec::new(),
            open: BTreeSet::new(),
            last_sweep_minute: i64::MIN,
            adopting: Vec::new(),
            known: KnownAnomalies::new(window_ms),
        }
    }

    /// Takes over the anomalies of `open` (the store's latest events of anomalies open at
    /// the stop) of the per-link kinds whose link `owns` accepts by its routing hash
    /// ([`route_str`]`(code)`), when the detectors start from a checkpoint (module
    /// `anomaly_lifecycle`, **Restart**). They enter their links' slots at the first tick (a
    /// link's state needs the detectors' origin); of two open anomalies of one kind and link
    /// the older is closed then. Returns how many will be adopted.
    pub fn adopt(&mut self, open: &[Anomaly], owns: &dyn Fn(u64) -> bool) -> usize {
        for a in open.iter().filter(|a| a.status != sluice_schemas::AnomalyStatus::Closed) {
            let (Some(i), Some(code)) = (KINDS.iter().position(|k| *k == a.kind), a.key.strip_prefix("link:")) else { continue };
            if owns(route_str(code)) {
                self.adopting.push((code.to_string(), i, a.clone()));
            }
        }
        self.adopting.len()
    }

    /// Learns the anomalies of the per-link kinds of `stored` (the store's, minus those
    /// adopted) whose link `owns` accepts, so that a replayed episode continues the stored
    /// anomaly it re-derives under another id, and a stored open one the replay does not
    /// derive again is closed (module `known`): the open ones now, the closed ones a replay
    /// can meet once the schedule starts. Returns how many open ones.
    pub fn know(&mut self, stored: &StoredAnomalies, owns: impl Fn(u64) -> bool + 'static) -> usize {
        let mine = move |a: &Anomaly| KINDS.contains(&a.kind) && a.key.strip_prefix("link:").is_some_and(|c| owns(route_str(c)));
        let n = self.known.extend(stored.open.iter().filter(|a| mine(a)));
        self.known.read_closed_at_start(stored, Box::new(mine));
        n
    }

    /// Puts the anomalies of [`LinkDetector::adopt`] into their links' slots at tick `s`
    /// (`origin`: the detectors'); closes the displaced ones.
    fn install_adopted(&mut self, origin: i64, s: i64, now_ms: i64, out: &mut Vec<Anomaly>) {
        let (window, warmup) = (self.life.window_ms, self.cfg.warmup_ms());
        for (code, i, a) in std::mem::take(&mut self.adopting) {
            let sym = self.syms.get(&code);
            let st = self.states.entry(sym.clone()).or_insert_with(|| {
                let origin = link_origin(origin, warmup, window, s, s);
                LinkState { key: link_key(&code), origin, win: LinkWindow::new(origin), meta: None, slots: Default::default(), touched: false }
            });
            if let Some(old) = st.slots[i].adopt(a) {
                out.extend(closed_now(&old, now_ms));
            }
            self.open.insert(sym);
        }
    }

    /// Links with state (diagnostics and tests).
    pub fn tracked_links(&self) -> usize {
        self.states.len()
    }

    /// Takes the clicks of one epoch (in any order), leaving `recs` empty.
    pub fn push_clicks(&mut self, recs: &mut Vec<LinkedRecord>) {
        for r in recs.drain(..) {
            let h = self.hold(&r);
            self.pending.push_one(h);
        }
    }

    /// What the detectors keep of `r` until its tick.
    fn hold(&mut self, r: &LinkedRecord) -> HeldClick {
        let code = self.syms.get(r.rec.code.as_str());
        HeldClick { ts: r.rec.ts, visitor: r.rec.visitor_id, code, dims: r.rec.dims.values, is_bot: r.rec.dims.is_bot, meta: r.meta.clone() }
    }

    /// Takes held clicks of one epoch (from [`LinkDetector::hold`]), leaving `held` empty.
    fn push_held(&mut self, held: &mut Vec<HeldClick>) {
        self.pending.push(held);
    }

    /// Drops the strings nothing refers to any more once the table has grown enough
    /// (module `sym.rs`).
    fn compact_syms(&mut self) {
        self.syms.maybe_compact();
    }

    /// Applies blocked-link changes of one epoch.
    pub fn push_blocked(&mut self, changes: &[BlockedChange]) {
        for ((code, (entry, host)), _, diff) in changes {
            let code = DimStr::new(code);
            let v = self.blocked.entry(code.clone()).or_default();
            match v.iter_mut().find(|(e, h, _)| e == entry && h == host) {
                Some((_, _, d)) => *d += diff,
                None => v.push((entry.clone(), host.clone(), *diff)),
            }
            v.retain(|(_, _, d)| *d != 0);
            v.sort();
            if v.is_empty() {
                self.blocked.remove(code.as_str());
            }
            self.dirty.insert(self.syms.get(&code));
        }
    }

    /// Folds one epoch's watermark reports and runs every tick that became due, appending
    /// events to `out` (`now_ms`: processing clock, for `detected_at`).
    pub fn advance(&mut self, reports: &[WatermarkReport], now_ms: i64, out: &mut Vec<Anomaly>) {
        self.run_ticks(reports, now_ms, out);
        self.compact_syms();
    }

    /// [`LinkDetector::advance`] without the value table's upkeep.
    fn run_ticks(&mut self, reports: &[WatermarkReport], now_ms: i64, out: &mut Vec<Anomaly>) {
        let earliest = if self.ticker.started() { None } else { self.pending.first(&()).map(|r| r.ts) };
        self.ticker.apply(reports, earliest);
        self.known.start(self.ticker.next_tick());
        while let Some(mut s) = self.ticker.due() {
            if self.dirty.is_empty() && self.open.is_empty() {
                // Nothing to evaluate before the tick of the next pending click.
                let last = self.ticker.last_due().unwrap_or(s);
                let next = self.pending.first(&()).map(|r| self.ticker.floor(r.ts) + self.ticker.tick_ms());
                s = s.max(next.map_or(last, |n| n.min(last)));
            }
            self.tick(s, now_ms, out);
            self.ticker.done(s);
        }
    }

    fn tick(&mut self, s: i64, now_ms: i64, out: &mut Vec<Anomaly>) {
        let Some(origin) = self.ticker.origin() else { return };
        if !self.adopting.is_empty() {
            self.install_adopted(origin, s, now_ms, out);
        }
        let window = self.life.window_ms;
        let (alpha, cap, warmup) = (self.alpha, self.cfg.per_visitor_cap, self.cfg.warmup_ms());
        for r in self.pending.take_before(s, &()) {
            let code = &r.code;
            let st = self.states.entry(code.clone()).or_insert_with(|| {
                let origin = link_origin(origin, warmup, window, s, r.ts);
                LinkState { key: link_key(code), origin, win: LinkWindow::new(origin), meta: None, slots: Default::default(), touched: false }
            });
            let learn = st.learning();
            st.win.advance(s, window, alpha, learn);
            let sec = self.ticker.floor(r.ts);
            if sec >= s - window {
                let d = |dim: Dimension| &r.dims[dim.index()];
                let click = LinkClick {
                    visitor: r.visitor,
                    is_bot: r.is_bot,
                    country: d(Dimension::Country),
                    referrer: d(Dimension::ReferrerDomain),
                    browser: d(Dimension::Browser),
                };
                st.win.add(&click, sec, cap);
            }
            // The link's latest metadata version seen (a late click carries an older one).
            if r.meta.as_ref().is_some_and(|m| st.meta.as_ref().is_none_or(|s| m.valid_from_ms >= s.valid_from_ms)) {
                st.meta = r.meta;
            }
            if !st.touched {
                st.touched = true;
                self.touched.push(code.clone());
            }
        }
        // Evaluated in code order, each once: the dirty, touched and open codes.
        let mut codes = std::mem::take(&mut self.evaluated);
        codes.extend(std::mem::take(&mut self.dirty));
        for code in self.touched.drain(..) {
            if let Some(st) = self.states.get_mut(&code) {
                st.touched = false;
            }
            codes.push(code);
        }
        codes.extend(self.open.iter().cloned());
        codes.sort_unstable();
        codes.dedup();
        for code in codes.drain(..) {
            self.evaluate(&code, s, now_ms, out);
        }
        self.evaluated = codes;
        self.known.close_orphans(s, now_ms, out);
        let minute = s.div_euclid(60_000);
        if minute != self.last_sweep_minute {
            self.last_sweep_minute = minute;
            self.states.retain(|_, st| {
                let learn = st.learning();
                st.win.advance(s, window, alpha, learn);
                st.any_open() || !st.win.is_idle(alpha)
            });
        }
    }

    fn evaluate(&mut self, code: &Sym, s: i64, now_ms: i64, out: &mut Vec<Anomaly>) {
        let Some(st) = self.states.get_mut(code) else { return };
        let cfg = &self.cfg;
        // Minutes the baseline was frozen (an anomaly of the link open) taught it nothing:
        // they do not count toward the warm-up (attack of session 49: a bot surge from a new
        // link's first click kept its baseline at 0 through the warm-up, and its ordinary
        // human traffic then became a critical click_burst).
        // Nor before its baseline holds two minutes (session 51: a 1 min warm-up judged on none).
        let warm = s - st.origin - i64::from(st.win.base.frozen) * MINUTE_MS >= cfg.warmup_ms() && st.win.base.minutes >= 2;
        let window = self.life.window_ms;
        let learn = st.learning();
        st.win.advance(s, window, self.alpha, learn);
        let entries: Vec<(String, String)> =
            self.blocked.get(code.as_str()).map(|v| v.iter().filter(|e| e.2 > 0).map(|(e, h, _)| (e.clone(), h.clone())).collect()).unwrap_or_default();
        let w = &st.win;
        let referrer = referrer_spam::shape(w, &cfg.referrer_spam, warm);
        let geo = geo_shift::shape(w, &cfg.geo_shift, warm);
        let burst = if referrer.is_some() || geo.is_some() { None } else { click_burst::assess(w, &cfg.click_burst, window, warm) };
        let verdicts: [Option<Assessment>; 5] = [
            burst,
            bot_share::assess(w, &cfg.bot_share),
            referrer_spam::assess(referrer.as_ref(), &cfg.referrer_spam),
            geo_shift::assess(geo.as_ref(), &cfg.geo_shift),
            blocklisted_target::assess(w.sums.raw, !entries.is_empty(), &cfg.blocklisted_target),
        ];
        for (i, verdict) in verdicts.into_iter().enumerate() {
            let ctx = BodyCtx {
                code,
                w: &st.win,
                meta: st.meta.as_deref(),
                window,
                top_n: cfg.top_n,
                referrer: referrer.as_ref(),
                geo: geo.as_ref(),
                entries: &entries,
            };
            if let Some(ev) = st.slots[i].step(KINDS[i], &st.key, s, verdict, &self.life, now_ms, |a| ctx.body(i, a)) {
                out.extend(self.known.reconcile(&mut st.slots[i], ev, s));
            }
        }
        if st.any_open() {
            if !self.open.contains(code) {
                self.open.insert(code.clone());
            }
        } else {
            self.open.remove(code);
        }
    }
}

/// The history origin of a link first seen at tick `s` with a click at `ts` (module docs):
/// the detectors' `origin` while they warm up (`s − origin < warmup`), else the minute of
/// the click — or of the window's start for a click older than the window, so a late click
/// never backdates a link's history.
fn link_origin(origin: i64, warmup: i64, window: i64, s: i64, ts: i64) -> i64 {
    if s - origin < warmup {
        return origin;
    }
    ts.max(s - window).div_euclid(MINUTE_MS).saturating_mul(MINUTE_MS).max(origin)
}

struct Epoch {
    cap: Capability<u64>,
    clicks: Vec<HeldClick>,
    reports: Vec<WatermarkReport>,
    blocked: Vec<BlockedChange>,
}

/// Most emptied epoch buffers kept for reuse.
const SPARE_EPOCHS: usize = 16;

/// The stashed epoch `t` (`cap`: an input capability for it), created when new.
fn epoch_at<'a>(stash: &'a mut BTreeMap<u64, Epoch>, spare: &mut Vec<Vec<HeldClick>>, cap: &InputCapability<u64>, t: u64) -> &'a mut Epoch {
    stash.entry(t).or_insert_with(|| Epoch { cap: cap.delayed(&t, 0), clicks: spare.pop().unwrap_or_default(), reports: Vec::new(), blocked: Vec::new() })
}

/// What [`DetectLinkAnomalies::detect_link_anomalies`] needs besides its inputs.
pub struct LinkDetectorParams {
    /// `[abuse]`.
    pub config: AbuseConfig,
    /// Processing clock (`detected_at`).
    pub clock: Arc<dyn Clock>,
    /// Anomalies open in the store, taken over by detectors restored from a checkpoint
    /// ([`LinkDetector::adopt`]); empty otherwise.
    pub adopt: Arc<[Anomaly]>,
    /// The store's other anomalies ([`LinkDetector::know`]).
    pub known: StoredAnomalies,
}

/// Extension trait: the per-link detectors (module docs).
pub trait DetectLinkAnomalies<'scope> {
    /// Runs the detectors over linked clicks, which must be partitioned by
    /// [`route_str`]`(code)` (as [`crate::operators::LookupLinkMeta`] emits them). Returns
    /// `(the clicks, passed on unchanged at once; the anomaly events)`: the detectors keep
    /// only what they read of each click ([`HeldClick`]), so the clicks are never copied.
    fn detect_link_anomalies(
        self,
        reports: StreamVec<'scope, u64, WatermarkReport>,
        blocked: StreamVec<'scope, u64, BlockedChange>,
        params: LinkDetectorParams,
    ) -> (StreamVec<'scope, u64, LinkedRecord>, StreamVec<'scope, u64, Anomaly>);
}

impl<'scope> DetectLinkAnomalies<'scope> for StreamVec<'scope, u64, LinkedRecord> {
    fn detect_link_anomalies(
        self,
        reports: StreamVec<'scope, u64, WatermarkReport>,
        blocked: StreamVec<'scope, u64, BlockedChange>,
        params: LinkDetectorParams,
    ) -> (StreamVec<'scope, u64, LinkedRecord>, StreamVec<'scope, u64, Anomaly>) {
        let (index, peers) = (self.scope().index(), self.scope().peers());
        let mut builder = OperatorBuilder::new("DetectLinkAnomalies".to_owned(), self.scope());
        // Already partitioned by `route_str(code)` (LookupLinkMeta's output; a LinkedRecord holds an
        // `Arc` and does not cross workers).
        let mut clicks_in = builder.new_input(self, Pipeline);
        let mut reports_in = builder.new_input(reports, Pipeline);
        let mut blocked_in = builder.new_input(blocked, Exchange::new(|u: &BlockedChange| route_str(&(u.0).0)));
        // Output 0: anomalies (held back until their epoch is complete); output 1: the clicks,
        // connected to the clicks input only (so their frontier is that of the clicks, as if
        // the detectors were not there).
        let (out, stream) = builder.new_output::<Vec<Anomaly>>();
        let (pass_out, pass) = builder.new_output_connection::<Vec<LinkedRecord>, _>([(0, Antichain::from_elem(0))]);
        let mut out = OutputBuilder::<_, CapacityContainerBuilder<Vec<Anomaly>>>::from(out);
        let mut pass_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<LinkedRecord>>>::from(pass_out);
        builder.build(move |initial| {
            drop(initial);
            let mut det = LinkDetector::new(params.config);
            // The links this worker owns: the clicks come partitioned by `route_str(code)`.
            let adopted = det.adopt(&params.adopt, &|h| crate::hash::owner(h, peers) == index);
            if adopted > 0 {
                tracing::info!(worker = index, adopted, "link detectors: open anomalies of the store taken over after the restore");
            }
            det.know(&params.known, move |h| crate::hash::owner(h, peers) == index);
            let clock = params.clock;
            let mut stash: BTreeMap<u64, Epoch> = BTreeMap::new();
            let mut spare: Vec<Vec<HeldClick>> = Vec::new();
            let mut buf: Vec<Anomaly> = Vec::new();
            move |frontiers| {
                let mut pass = pass_out.activate();
                clicks_in.for_each(|cap, data| {
                    let t = *cap.least().expect("input capability has a time");
                    let ep = epoch_at(&mut stash, &mut spare, &cap, t);
                    ep.clicks.reserve(data.len());
                    ep.clicks.extend(data.iter().map(|r| det.hold(r)));
                    pass.session(&cap.delayed(&t, 1)).give_container(data);
                });
                drop(pass);
                reports_in.for_each(|cap, data| {
                    let t = *cap.least().expect("input capability has a time");
                    let ep = epoch_at(&mut stash, &mut spare, &cap, t);
                    ep.reports.append(data);
                });
                blocked_in.for_each(|cap, data| {
                    let t = *cap.least().expect("input capability has a time");
                    let ep = epoch_at(&mut stash, &mut spare, &cap, t);
                    ep.blocked.append(data);
                });
                let ready = |t: u64| frontiers.iter().all(|f| !f.less_equal(&t));
                let mut handle = out.activate();
                let mut ran = false;
                while let Some(&t) = stash.keys().next() {
                    if !ready(t) {
                        break;
                    }
                    let mut ep = stash.remove(&t).expect("key present");
                    det.push_held(&mut ep.clicks);
                    det.push_blocked(&ep.blocked);
                    det.run_ticks(&ep.reports, clock.now_ms(), &mut buf);
                    ran = true;
                    if !buf.is_empty() {
                        handle.session(&ep.cap).give_container(&mut buf);
                        buf.clear();
                    }
                    if spare.len() < SPARE_EPOCHS {
                        spare.push(ep.clicks);
                    }
                }
                if ran {
                    det.compact_syms();
                }
            }
        });
        (pass, stream)
    }
}
