//! The `too_late` verdicts of `sluice import --data-dir`: the events the dataflow would
//! dead-letter `too_late` when `sluice serve` reads them from the click log are refused, by
//! the rule `POST /v1/events` applies ([`LatenessCheck`], the same in-flight margin), so an
//! import gives the same verdicts with or without a server.
//!
//! ## The watermark an offline import measures against
//! The dataflow decides lateness at its source gate, against its partition watermark `W_p`
//! at the moment it reads the event (`sluice_dataflows::watermark`). After a restart `W_p`
//! resumes at the newest checkpoint's value as if its last record had just arrived (downtime
//! is not idleness, so it does not jump to the clock), then rises to the event time of every
//! record read after the checkpoint's offset; the imported events, appended at the log's
//! end, are read after all of them. Without a checkpoint the whole log is replayed from its
//! first record, and `W_p` starts empty. So when the imported events are read, `W_p` is the
//! newest of: the checkpoint's partition and global watermarks, and the event times of the
//! log's records after its offset (all of them without one), each capped at the append time
//! the log recorded for a record stamped after it, as the gate caps it — what
//! [`stored_watermark_ms`] reads — and, for each imported event, the import's own earlier
//! events. Only the few
//! seconds before the server has read them may add idle time: the in-flight margin (60 s,
//! as at the intake) covers that.
//!
//! A data dir with no event yet has no watermark: only the rule between the import's own
//! events applies (as `POST /v1/events` to a server that has seen no event). Event times
//! are not compared to the clock: a just-restarted server counts an event its watermark
//! has not left behind, however old (once the watermark passes `ts + long-retention`, e.g.
//! with the first live click, retention evicts it from the views, as for any event).
//!
//! Codes are not looked up (`unknown_code`): the dataflow counts an event whose code no link
//! has (in the summary's totals, countries and referrers, and under the link once one has
//! the code), so nothing is dead-lettered; importing into a data dir is the way to load the
//! history of deleted links.

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use sluice_connectors::click_log::{ClickLog, arrival_at};
use sluice_ingest::http::gate::{LatenessCheck, watermark_floor_ms};
use sluice_schemas::ClickEvent;

use crate::config::Config;
use crate::intake_gate::in_flight_margin_ms;
use crate::job::checkpoint;

/// Records read from the click log at a time while looking for its newest event time.
const SCAN_CHUNK: usize = 10_000;

/// The lateness rule of one offline import (module docs).
pub(super) struct OfflineLateness {
    check: Mutex<LatenessCheck>,
}

impl OfflineLateness {
    /// The rule for importing into `log` (in `data_dir`, with `cfg`): `backfill` events may
    /// trail the watermark by `[dataflow] long-retention`, live ones by `allowed-lateness`.
    ///
    /// Errors: the checkpoints or the click log cannot be read ([`stored_watermark_ms`]).
    pub(super) fn open(cfg: &Config, data_dir: &Path, log: &ClickLog, backfill: bool) -> anyhow::Result<OfflineLateness> {
        let limit = if backfill { cfg.dataflow.long_retention } else { cfg.dataflow.allowed_lateness };
        let limit_ms = i64::try_from(limit.as_millis()).unwrap_or(i64::MAX);
        let watermark = stored_watermark_ms(cfg, data_dir, log)?;
        let floor = watermark.and_then(|w| watermark_floor_ms(w, limit_ms, in_flight_margin_ms()));
        let now_ms = crate::job::now_ms();
        Ok(OfflineLateness { check: Mutex::new(LatenessCheck::new(floor, Some(limit_ms)).capped_at(now_ms, in_flight_margin_ms())) })
    }

    /// Keeps the events of `events` (in input order) that are not too late and returns how
    /// many were refused `too_late`; the kept ones count as accepted for the events after.
    pub(super) fn retain(&self, events: &mut Vec<ClickEvent>) -> u64 {
        let mut check = self.check.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = events.len();
        events.retain(|e| check.admit(e.ts).is_ok());
        (before - events.len()) as u64
    }
}

/// The dataflow's partition watermark when it reads what is appended to `log` now (module
/// docs): the newest of the newest checkpoint's partition and global watermarks (when
/// checkpoints are on, `[dataflow] checkpoint-interval` not 0 and `processes = 1`, and the
/// dataflow reads this log, not Kafka) and the event times of the log's records from the
/// checkpoint's offset on (all records without a checkpoint), each capped at its recorded
/// arrival (the click log's append time of a record stamped after it, as the dataflow's gate
/// caps it). `None`: no event yet.
///
/// Errors: the checkpoint directory cannot be listed, or its newest checkpoint of this
/// partition was taken of another click log (the server would refuse to start); the log
/// cannot be read. Undecodable records are skipped (the dataflow dead-letters them).
pub(super) fn stored_watermark_ms(cfg: &Config, data_dir: &Path, log: &ClickLog) -> anyhow::Result<Option<i64>> {
    let partition = cfg.dataflow.partition();
    let checkpoints_on = !cfg.dataflow.checkpoint_interval.is_zero() && cfg.dataflow.processes == 1 && !cfg.kafka.enabled();
    let mut newest: Option<i64> = None;
    let mut from = log.low();
    if checkpoints_on {
        let dir = checkpoint::dir_of(data_dir);
        let source = checkpoint::SourceIdentity::LogFile { partition, log_id: log.log_id() };
        let restored = checkpoint::load_latest_for_log(&dir, &source, Some(log.head() - log.low()))
            .context("could not read the checkpoints, which hold the event time the dataflow has reached (events older than its limit are too late)")?;
        if let Some((_, file)) = restored {
            let snap = &file.snapshot;
            let marks = snap.partition_watermarks.get(&partition).copied().into_iter().chain([snap.watermark.current()]);
            newest = marks.filter(|&w| w != i64::MIN && w != i64::MAX).max();
            from = from.max(snap.offsets.get(&partition).copied().unwrap_or(0));
        }
    }
    while from < log.head() {
        let raw = log.read_raw(from, SCAN_CHUNK).with_context(|| format!("could not read the click log from offset {from}"))?;
        let Some(&(last, _)) = raw.last() else { break };
        let arrivals = log.arrival_times(from..last + 1).with_context(|| format!("could not read the click log's arrival times from offset {from}"))?;
        for (offset, bytes) in &raw {
            if let Ok(ev) = sluice_schemas::avro::decode_click_event(bytes) {
                let ts = arrival_at(&arrivals, *offset).map_or(ev.ts, |a| ev.ts.min(a));
                newest = Some(newest.map_or(ts, |n| n.max(ts)));
            }
        }
        from = last + 1;
    }
    Ok(newest)
}
