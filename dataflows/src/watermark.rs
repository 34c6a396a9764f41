//! Event-time progress: per-partition watermarks at the source gate and the global watermark
//! every stateful operator derives from them.
//!
//! ## Definitions
//! * **Partition watermark** `W_p`: the largest event time of a record accepted from
//!   partition `p` (backfill included), each capped at its **reference time** (below: a
//!   record stamped up to `future_skew` ahead counts as stamped when it arrived, so `W_p`
//!   never runs ahead of the clock). Once `p` has delivered nothing for `idle_timeout`
//!   of processing time it is **idle** and `W_p` advances with the processing clock:
//!   `W_p = base + (now − last_arrival)`, where `base` is `W_p` at the last arrival. It
//!   never moves backwards. Future events and dead letters never move it.
//! * **Reference time** of a record ([`reference_time_ms`]): when it arrived, as the source
//!   recorded it ([`SourceRecord::arrival_ms`]: the embedded click log's append time, kept
//!   for the records stamped after it; a Kafka record's timestamp), or the processing clock
//!   when the gate reads it where the source recorded none — whichever is earlier. A record
//!   with `ts > reference + future_skew` is dead-lettered `future`; an accepted one moves
//!   `W_p` to at most `min(ts, reference)`. Capping at the arrival rather than at the clock
//!   of the read makes the gate's decisions depend on the log only: a restart that replays
//!   the click log (no checkpoint after the record, e.g. after a `kill -9`) reads a record
//!   stamped ahead at a later clock, and capping at that clock would move `W_p` further
//!   than the first read did, and dead-letter `too_late` a record behind it that the first
//!   read applied. A record without an arrival is one stamped at or before it (the log
//!   records none for those), so capping it at the clock changes nothing, or one from a log
//!   written before arrival times were kept (capped at the clock of the read, as before).
//!   The clock still bounds an arrival after it (a clock stepped back, a Kafka producer's
//!   clock ahead), so `W_p` never runs ahead of the clock.
//! * **Lateness** is decided per record against its own partition, at the gate:
//!   a non-backfill record with `ts < W_p − allowed_lateness` is dead-lettered `too_late`.
//!   This depends only on the partition's record order, so the decision is identical for
//!   any number of workers.
//! * **Global watermark** `W`: the minimum of `W_p` over active (not idle) partitions — an
//!   idle partition never holds busy ones back (case C21). When every partition is idle it
//!   is the minimum over the idle partitions that have ever delivered data, so the last
//!   windows still become final while all traffic has stopped. It never moves backwards.
//!   Partitions report `(W_p, idle)` in-band ([`WatermarkReport`], broadcast to all workers),
//!   and every operator folds the reports of completed epochs, so all workers agree on `W`
//!   at every epoch.
//! * `W` drives retention (dedup state, minute and long rollups) and the `as_of` of queries.
//!   While no partition is idle, `W ≤ W_p` for every `p`, so anything the gate accepts is
//!   still retained downstream; when an idle partition wakes up behind `W`, the dedup
//!   operator re-checks lateness against `W` (see [`crate::operators::dedup`]).

use serde::{Deserialize, Serialize};
use sluice_schemas::ClickEvent;

use crate::config::SemanticsConfig;
use crate::dead_letter::{DeadLetter, DeadLetterReason};
use crate::hash::FxHashMap;
use crate::records::GatedClick;
use crate::source::SourceRecord;

/// Latest year an event timestamp may carry (9999-12-31T23:59:59.999Z).
const MAX_TS_MS: i64 = 253_402_300_799_999;

/// A partition's watermark and idleness, sent in-band to every worker when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkReport {
    /// Partition.
    pub partition: u32,
    /// `W_p`, ms since epoch UTC; `i64::MIN` before any data.
    pub watermark_ms: i64,
    /// Whether the partition is idle.
    pub idle: bool,
    /// Event time (ms UTC) of the first record the gate accepted from the partition, in
    /// partition order (`i64::MIN` before any): unlike `W_p`, it does not depend on how the
    /// records were batched, nor on late records that follow it (the abuse detectors' history
    /// starts there, [`crate::operators::abuse::ticks`]).
    pub first_ms: i64,
}

/// The instant (ms UTC) the gate measures a record read at processing time `now_ms`
/// against (module docs, "Reference time"): its arrival `arrival_ms` as the source recorded
/// it, or `now_ms` when unknown, whichever is earlier.
pub fn reference_time_ms(arrival_ms: Option<i64>, now_ms: i64) -> i64 {
    arrival_ms.map_or(now_ms, |a| a.min(now_ms))
}

/// Checks the fields of a raw event; `Err` names the offending field.
pub fn validate_event(ev: &ClickEvent) -> Result<(), &'static str> {
    if ev.event_id.is_nil() {
        return Err("event_id is nil");
    }
    let code_ok = !ev.code.is_empty() && ev.code.len() <= 64 && ev.code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !code_ok {
        return Err("code must match [A-Za-z0-9_-]{1,64}");
    }
    if !(0..=MAX_TS_MS).contains(&ev.ts) {
        return Err("ts is outside 1970..=9999");
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartitionState {
    partition: u32,
    watermark: i64,
    /// `watermark` at the last accepted record (base of idle extrapolation).
    base: i64,
    last_arrival: i64,
    idle: bool,
    reported: Option<(i64, bool)>,
    /// Event time of the first accepted record (`i64::MIN` before any).
    #[serde(default = "no_first")]
    first: i64,
}

fn no_first() -> i64 {
    i64::MIN
}

/// The gate in front of the dataflow on each worker: validation, the future check, the
/// per-partition lateness decision and watermark tracking (module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceGate {
    parts: Vec<PartitionState>,
    #[serde(skip)]
    index: FxHashMap<u32, usize>,
    lateness_ms: i64,
    skew_ms: i64,
    idle_ms: i64,
    long_retention_ms: i64,
    /// The source's latest [`crate::source::ClickSource::pending_floor`] (see [`Self::hold`]).
    #[serde(skip)]
    held_at: Option<i64>,
    /// Set by [`Self::settle`] (a graceful stop, or a checkpoint until
    /// [`Self::unsettle`]): partitions turn idle at once.
    #[serde(skip)]
    settling: bool,
    /// Largest event time accepted since the start (`i64::MIN`: none), stamps ahead of the
    /// clock included ([`Self::settle`]).
    #[serde(skip, default = "no_first")]
    max_ts: i64,
}

impl SourceGate {
    /// A gate for the given partitions, all starting active at processing time `now_ms`.
    pub fn new(sem: &SemanticsConfig, partitions: &[u32], now_ms: i64) -> SourceGate {
        let mut g = SourceGate {
            parts: Vec::new(),
            index: FxHashMap::default(),
            lateness_ms: sem.lateness_ms(),
            skew_ms: sem.future_skew_ms(),
            idle_ms: sem.idle_timeout_ms(),
            long_retention_ms: sem.retention_ms()[3],
            held_at: None,
            settling: false,
            max_ts: i64::MIN,
        };
        for &p in partitions {
            g.slot(p, now_ms);
        }
        g
    }

    fn slot(&mut self, p: u32, now_ms: i64) -> usize {
        if self.index.len() != self.parts.len() {
            // After deserialization (the index is not serialized).
            self.index = self.parts.iter().enumerate().map(|(i, s)| (s.partition, i)).collect();
        }
        if let Some(&i) = self.index.get(&p) {
            return i;
        }
        self.parts.push(PartitionState {
            partition: p,
            watermark: i64::MIN,
            base: i64::MIN,
            last_arrival: now_ms,
            idle: false,
            reported: None,
            first: i64::MIN,
        });
        self.index.insert(p, self.parts.len() - 1);
        self.parts.len() - 1
    }

    /// Decides one record at processing time `now_ms` (ms UTC): `future` and the watermark
    /// cap against its reference time ([`reference_time_ms`] of its arrival and `now_ms`),
    /// lateness against its partition's watermark (module docs). (Both variants carry the
    /// event, so the `Err` is no larger than the `Ok`.)
    #[allow(clippy::result_large_err)]
    pub fn admit(&mut self, rec: SourceRecord, now_ms: i64) -> Result<GatedClick, DeadLetter> {
        let dead = |rec: SourceRecord, reason, detail: String| DeadLetter { partition: rec.partition, offset: rec.offset, reason, detail, event: rec.event };
        if let Err(why) = validate_event(&rec.event) {
            return Err(dead(rec, DeadLetterReason::Invalid, why.to_string()));
        }
        let reference = reference_time_ms(rec.arrival_ms, now_ms);
        if rec.event.ts > reference.saturating_add(self.skew_ms) {
            let d = match rec.arrival_ms {
                Some(a) if a <= now_ms => format!("ts {} is more than {} ms after its arrival {a}", rec.event.ts, self.skew_ms),
                _ => format!("ts {} is more than {} ms after the processing clock {now_ms}", rec.event.ts, self.skew_ms),
            };
            return Err(dead(rec, DeadLetterReason::Future, d));
        }
        let i = self.slot(rec.partition, now_ms);
        let st = &mut self.parts[i];
        let wm = st.watermark;
        let limit = if rec.backfill { self.long_retention_ms } else { self.lateness_ms };
        if wm != i64::MIN && rec.event.ts < wm.saturating_sub(limit) {
            let d = format!("ts {} is more than {limit} ms behind partition watermark {wm}", rec.event.ts);
            return Err(dead(rec, DeadLetterReason::TooLate, d));
        }
        if st.first == i64::MIN {
            st.first = rec.event.ts;
        }
        // An event accepted within the future-skew tolerance counts as if stamped when it
        // arrived: the watermark never runs ahead of the processing clock (one client's
        // skewed clock would otherwise move lateness, retention and `as_of` ahead for every
        // link), and a replay of the log moves it as the first read did.
        st.watermark = st.watermark.max(rec.event.ts.min(reference));
        self.max_ts = self.max_ts.max(rec.event.ts);
        st.base = st.watermark;
        st.last_arrival = now_ms;
        st.idle = false;
        Ok(GatedClick { partition: rec.partition, offset: rec.offset, backfill: rec.backfill, event: rec.event })
    }

    /// Records the source's pending floor (`None`: nothing promised). While it is `Some`,
    /// [`Self::tick`] treats the gate's partitions as if records kept arriving: none turns
    /// idle, an idle one turns active again at its current `W_p` (which then holds the global
    /// watermark back until the promised records have arrived), and idleness is counted
    /// from the last tick that saw the floor, so the promised records have a whole
    /// `idle_timeout` to be read after they became readable.
    pub fn hold(&mut self, pending_floor: Option<i64>) {
        self.held_at = pending_floor;
    }

    /// Applies idleness at `now_ms` and appends a report for every partition whose
    /// `(W_p, idle)` changed since its last report.
    pub fn tick(&mut self, now_ms: i64, reports: &mut Vec<WatermarkReport>) {
        for st in &mut self.parts {
            if self.held_at.is_some() {
                if st.idle {
                    st.idle = false;
                    st.base = st.watermark;
                }
                st.last_arrival = st.last_arrival.max(now_ms);
            } else if self.settling || now_ms - st.last_arrival >= self.idle_ms {
                st.idle = true;
                if st.base != i64::MIN {
                    st.watermark = st.watermark.max(st.base.saturating_add(now_ms - st.last_arrival));
                }
            }
            let cur = (st.watermark, st.idle);
            if st.reported != Some(cur) {
                st.reported = Some(cur);
                reports.push(WatermarkReport { partition: st.partition, watermark_ms: cur.0, idle: cur.1, first_ms: st.first });
            }
        }
    }

    /// Checkpoint hook ([`crate::checkpoint`]): resumes `partition` at watermark `W_p =
    /// watermark_ms`, active, as if its last record arrived at `now_ms` (downtime is not
    /// idleness), and announces it at the next [`Self::tick`].
    pub fn resume_partition(&mut self, partition: u32, watermark_ms: i64, now_ms: i64) {
        let i = self.slot(partition, now_ms);
        let st = &mut self.parts[i];
        st.watermark = st.watermark.max(watermark_ms);
        st.base = st.watermark;
        st.last_arrival = now_ms;
        st.idle = false;
        st.reported = None;
    }

    /// At a graceful stop, once the source has delivered what it had: from the next
    /// [`Self::tick`] on, every partition is idle at once instead of after `idle_timeout`, so
    /// `W_p` advances with the processing clock from the last record (module docs) and the
    /// event-time windows of the records already read complete within their length, not
    /// `idle_timeout` later (which the stop would not wait for). `W_p` still never runs ahead
    /// of the clock. Returns the largest event time accepted since the start, a stamp ahead
    /// of the clock (within `future_skew`) included, which `W` reaches only once the clock
    /// does (`None` before any record).
    pub fn settle(&mut self) -> Option<i64> {
        self.settling = true;
        (self.max_ts != i64::MIN).then_some(self.max_ts)
    }

    /// Whether [`Self::settle`] is in force.
    pub fn settling(&self) -> bool {
        self.settling
    }

    /// Ends a [`Self::settle`] that held the source for a checkpoint (not a stop's) at
    /// processing time `now_ms`: a partition made idle by it that has not been quiet for
    /// `idle_timeout` turns active again at its current `W_p` (which the settle may have
    /// moved ahead with the clock; it never moves back), so it holds the global watermark
    /// as before; one quiet for that long stays idle. Reported at the next [`Self::tick`].
    pub fn unsettle(&mut self, now_ms: i64) {
        self.settling = false;
        for st in &mut self.parts {
            // `base` stays `W_p` at the last arrival: idleness later counts from there.
            if st.idle && now_ms - st.last_arrival < self.idle_ms {
                st.idle = false;
            }
        }
    }

    /// Current `W_p` of a partition (`None` if unknown).
    pub fn partition_watermark(&self, partition: u32) -> Option<i64> {
        self.parts.iter().find(|s| s.partition == partition).map(|s| s.watermark)
    }
}

/// The global watermark as folded from [`WatermarkReport`]s (module docs).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GlobalWatermark {
    parts: std::collections::BTreeMap<u32, (i64, bool)>,
    current: Option<i64>,
}

impl GlobalWatermark {
    /// Folds one report in (call [`Self::recompute`] after a batch).
    pub fn apply(&mut self, r: &WatermarkReport) {
        self.parts.insert(r.partition, (r.watermark_ms, r.idle));
    }

    /// Recomputes and returns `W` (monotone; `i64::MIN` before any data).
    pub fn recompute(&mut self) -> i64 {
        let active = self.parts.values().filter(|(_, idle)| !idle).map(|(w, _)| *w).min();
        let computed = match active {
            Some(w) => w,
            None => self.parts.values().map(|(w, _)| *w).filter(|&w| w != i64::MIN).min().unwrap_or(i64::MIN),
        };
        let w = self.current.map_or(computed, |c| c.max(computed));
        self.current = Some(w);
        w
    }

    /// The last computed `W`.
    pub fn current(&self) -> i64 {
        self.current.unwrap_or(i64::MIN)
    }
}

#[cfg(test)]
mod tests;
