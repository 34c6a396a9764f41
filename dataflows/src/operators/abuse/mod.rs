//! Abuse detection as operators of the click graph (issue 7).
//!
//! ```text
//! dedup ─▶ TapFloodRecords ─▶ (clicks, unchanged) ─▶ enrich ─▶ LookupLinkMeta ─▶ DetectLinkAnomalies ─▶ (clicks, unchanged) ─▶ rollups
//!              │                                                                    ▲        │
//!              └─▶ flood records ─▶ DetectVisitorFloods ─┐              blocked links │        └─▶ anomalies ─┐
//!                 (exchange by visitor / network)        │                           │          (by code)    │
//! link metadata ─┐                                       │                           │                       │
//! blocklist ─────┴─▶ blocked_codes (differential join) ──┼───────────────────────────┘                       │
//!                                                        └────────────▶ SinkAnomalies ◀──────────────────────┘
//! ```
//!
//! The detectors never copy a click: `TapFloodRecords` and `DetectLinkAnomalies` pass the
//! clicks on at once and keep only what they read of each (a [`FloodClick`]; a compact
//! held click with interned dimension values, `sym.rs`) until the watermark makes it due.
//!
//! | file | what |
//! |---|---|
//! | `ticks.rs` | event-time evaluation ticks driven by the global watermark |
//! | `link_window.rs` | per-link sliding window (per-visitor cap) and EWMA baseline |
//! | `pending.rs` | clicks held until their tick, in canonical order (merge per epoch, drain from the front) |
//! | `intern.rs` | the flood detector's string table: its evidence refers to links and user agents by `u32` ids |
//! | `sym.rs` | the link detectors' interned strings: compared and hashed by identity, ordered by text |
//! | `anomaly_lifecycle.rs` | open / updated / closed per `(kind, key)`, deterministic ids |
//! | `known.rs` | the store's anomalies: a replayed episode continues the one it derives under another id |
//! | `click_burst.rs`, `bot_share.rs`, `referrer_spam.rs`, `geo_shift.rs`, `share_shift.rs`, `blocklisted_target.rs` | the per-link detectors (pure functions of the link state) and the blocklist join |
//! | `link_anomalies.rs` | operator `DetectLinkAnomalies` running the per-link detectors |
//! | `visitor_flood.rs` | operators `TapFloodRecords` and `DetectVisitorFloods` |
//! | `sink.rs` | operator `SinkAnomalies` |
//!
//! **Time.** Everything is event time: detectors evaluate at ticks (every `[abuse] tick` of
//! event time, as the watermark passes), over sliding windows ending at the tick, so they
//! run on partial minutes and an attack is flagged at the first tick after its clicks cross
//! the thresholds. **Determinism.** Keys are exchanged by fixed hashes (code, visitor,
//! network), clicks are folded in a canonical order at each tick, ids are derived from
//! `(kind, key, window start)`: the same input gives the same events (but `detected_at`) for
//! any number of workers.

pub mod anomaly_lifecycle;
pub mod blocklisted_target;
pub mod bot_share;
pub mod click_burst;
pub mod geo_shift;
mod intern;
mod known;
pub mod link_anomalies;
pub mod link_window;
mod pending;
pub mod referrer_spam;
pub mod share_shift;
pub mod sink;
mod sym;
pub mod ticks;
pub mod visitor_flood;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use differential_dataflow::VecCollection;
use sluice_schemas::{Anomaly, LinkMeta};
use timely::dataflow::operators::Concat;
use timely::dataflow::operators::Probe;
use timely::dataflow::{ProbeHandle, StreamVec};

pub use blocklisted_target::{BlockedChange, blocked_codes};
pub use link_anomalies::{DetectLinkAnomalies, LinkDetector, LinkDetectorParams};
pub use sink::SinkAnomalies;
pub use visitor_flood::{DetectVisitorFloods, FloodClick, FloodDetector, FloodDetectorParams, FloodKey, FloodRecord, Network, TapFloodRecords};

use crate::anomaly::{AnomalyCounters, AnomalySink, StoredAnomalies};
use crate::clock::Clock;
use crate::config::AbuseConfig;
use crate::records::{GatedClick, LinkedRecord};
use crate::watermark::WatermarkReport;

/// What one worker's graph needs to attach the detectors (the pipeline builds it).
pub struct AbuseWiring {
    /// `[abuse]`; nothing is attached when `enabled` is false.
    pub config: AbuseConfig,
    /// Processing clock (`detected_at`).
    pub clock: Arc<dyn Clock>,
    /// Where counts go.
    pub counters: Arc<AnomalyCounters>,
    /// Where events go.
    pub sink: Option<AnomalySink>,
    /// The sink's input frontier on this worker (`u64::MAX` when detection is off).
    pub progress: Arc<AtomicU64>,
    /// Anomalies open in the store that the detectors take over: the latest event of each,
    /// given when the pipeline restores a checkpoint (empty otherwise; module
    /// `anomaly_lifecycle`, **Restart**).
    pub adopt: Arc<[Anomaly]>,
    /// The store's other anomalies (the open ones not adopted, and a reader of the closed
    /// ones), which the detectors reconcile the episodes they open with (module `known`: a
    /// replay continues the stored anomaly it derives under another id, and closes a stored
    /// open one it does not derive again).
    pub known: StoredAnomalies,
}

impl AbuseWiring {
    /// Closes at once the anomalies to adopt ([`AbuseWiring::adopt`]) and the open ones of
    /// [`AbuseWiring::known`] that no attached
    /// detector can take over — detection off, or `visitor_flood` off (`flood_on` false) —
    /// so that none stays open forever (README, "Anomalies open across a restart"). Called on
    /// global worker 0 only.
    fn close_unattended(&self, flood_on: bool) {
        let now = self.clock.now_ms();
        let closed: Vec<Anomaly> = self
            .adopt
            .iter()
            .chain(self.known.open.iter().filter(|a| a.status != sluice_schemas::AnomalyStatus::Closed))
            .filter(|a| !self.config.enabled || (a.kind == sluice_schemas::AnomalyKind::VisitorFlood && !flood_on))
            .filter_map(|a| anomaly_lifecycle::closed_now(a, now))
            .collect();
        if !closed.is_empty() {
            tracing::warn!(closed = closed.len(), "anomalies open at the last stop closed at start: their detector is off");
            crate::anomaly::emit(&closed, &self.counters, self.sink.as_ref());
        }
    }

    /// Splits flood records off the deduplicated clicks (module docs); passes the clicks
    /// through untouched (and returns no records) when detection or the flood detector is off.
    pub fn tap<'scope>(&self, deduped: StreamVec<'scope, u64, GatedClick>) -> (StreamVec<'scope, u64, GatedClick>, Option<StreamVec<'scope, u64, FloodClick>>) {
        if self.config.enabled && self.config.visitor_flood.enabled {
            let (d, f) = deduped.tap_flood_records();
            (d, Some(f))
        } else {
            (deduped, None)
        }
    }

    /// Attaches the detectors and the sink; returns `linked` (for the rollups). The
    /// detectors' output joins `probe`, so back-pressure covers them.
    pub fn attach<'scope>(
        self,
        linked: StreamVec<'scope, u64, LinkedRecord>,
        floods: Option<StreamVec<'scope, u64, FloodClick>>,
        reports: StreamVec<'scope, u64, WatermarkReport>,
        meta: VecCollection<'scope, u64, (String, LinkMeta), isize>,
        blocklist: VecCollection<'scope, u64, String, isize>,
        probe: &ProbeHandle<u64>,
    ) -> StreamVec<'scope, u64, LinkedRecord> {
        if linked.scope().index() == 0 {
            self.close_unattended(floods.is_some());
        }
        if !self.config.enabled {
            self.progress.store(u64::MAX, Ordering::Release);
            return linked;
        }
        let blocked = blocked_codes(meta, blocklist);
        let link_params =
            LinkDetectorParams { config: self.config.clone(), clock: Arc::clone(&self.clock), adopt: Arc::clone(&self.adopt), known: self.known.clone() };
        let (linked, mut anomalies) = linked.detect_link_anomalies(reports.clone(), blocked, link_params);
        if let Some(f) = floods {
            let flood_params = FloodDetectorParams { config: self.config, clock: self.clock, adopt: self.adopt, known: self.known };
            anomalies = anomalies.concat(f.detect_visitor_floods(reports, flood_params));
        }
        anomalies.probe_with(probe).sink_anomalies(self.counters, self.sink, self.progress);
        linked
    }
}
