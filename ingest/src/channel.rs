//! The bounded intake channel between the redirect hot path and the log writer.
//!
//! [`ClickSender::try_send`] never blocks and never allocates beyond the event itself: on a
//! full channel the event is dropped and counted (`sluice_click_events_dropped_total{reason=
//! "channel_full"}`), so a slow disk can cost clicks but never redirect latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sluice_schemas::ClickEvent;
use tokio::sync::mpsc;

use crate::pending::PendingFloor;
use crate::telemetry::{ClicksDropped, DropReason, LogWritesRecovered, RecoveredBy};

/// Counters of one intake channel, shared by its senders, its receiver and the writer.
/// The same numbers go to the `metrics` facade; these are for tests, `/readyz` and logs.
#[derive(Debug, Default)]
pub struct IngestStats {
    dropped_channel_full: AtomicU64,
    dropped_closed: AtomicU64,
    dropped_log_error: AtomicU64,
    logged: AtomicU64,
    /// The writer's current failure episode (its latest error and how many attempts failed
    /// since the episode began); `None` once an append succeeds again.
    append_failure: std::sync::Mutex<Option<AppendFailure>>,
    /// What the writer's latest check of the log's file found wrong (deleted and not
    /// restored, replaced); `None` while the file is in place.
    file_failure: std::sync::Mutex<Option<String>>,
}

/// A failure episode of the writer: from a failed append attempt until an append (or probe)
/// succeeds again (`writer.rs` docs, "Failures").
#[derive(Debug)]
struct AppendFailure {
    /// The latest attempt's error (`/readyz`).
    error: String,
    /// Failed attempts (appends and probes) in the episode.
    attempts: u64,
}

/// A point-in-time copy of [`IngestStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStatsSnapshot {
    /// Events dropped because the channel was full.
    pub dropped_channel_full: u64,
    /// Events dropped because the writer had stopped.
    pub dropped_closed: u64,
    /// Events dropped because the click log kept failing.
    pub dropped_log_error: u64,
    /// Events the writer made durable.
    pub logged: u64,
}

impl IngestStats {
    /// Current values.
    pub fn snapshot(&self) -> IngestStatsSnapshot {
        IngestStatsSnapshot {
            dropped_channel_full: self.dropped_channel_full.load(Ordering::Relaxed),
            dropped_closed: self.dropped_closed.load(Ordering::Relaxed),
            dropped_log_error: self.dropped_log_error.load(Ordering::Relaxed),
            logged: self.logged.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn dropped(&self, reason: DropReason, count: u64) {
        let c = match reason {
            DropReason::ChannelFull => &self.dropped_channel_full,
            DropReason::Closed => &self.dropped_closed,
            DropReason::LogError => &self.dropped_log_error,
        };
        c.fetch_add(count, Ordering::Relaxed);
        ClicksDropped { reason, count }.emit();
    }

    /// The writer appended `count` events: the failed state ends (one info line when it
    /// was on, [`LogWritesRecovered`]).
    pub(crate) fn logged(&self, count: u64) {
        self.logged.fetch_add(count, Ordering::Relaxed);
        self.append_succeeded(RecoveredBy::Append);
    }

    /// An append or probe through another path (`POST /v1/events`, the writer's probe)
    /// succeeded: the log takes writes, the failed state ends (one info line when it was on).
    pub(crate) fn append_succeeded(&self, by: RecoveredBy) {
        let ended = self.append_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(failure) = ended {
            LogWritesRecovered { failed_attempts: failure.attempts, by }.emit();
        }
    }

    /// Records a failed append (or probe) attempt; `true` when it is the first of its
    /// failure episode (the writer logs it at warn level, the next ones at debug level).
    pub(crate) fn append_failed(&self, error: String) -> bool {
        let mut failure = self.append_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &mut *failure {
            Some(f) => {
                f.error = error;
                f.attempts += 1;
                false
            }
            None => {
                *failure = Some(AppendFailure { error, attempts: 1 });
                true
            }
        }
    }

    /// The error of the writer's latest append attempt if it failed (the click log is not
    /// taking new clicks: a full disk, an I/O error), or of its latest probe since; `None`
    /// once an append or probe succeeds (also a `POST /v1/events` append through a
    /// [`crate::DurableAppender::with_stats`]) or before any was tried. `/readyz` reports it.
    pub fn append_failure(&self) -> Option<String> {
        self.append_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref().map(|f| f.error.clone())
    }

    pub(crate) fn set_file_failure(&self, error: Option<String>) {
        *self.file_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = error;
    }

    /// What the writer's latest check of the log's file found wrong (`clicks.redb` deleted
    /// and not restored, or replaced by another file: clicks written from then on are lost at
    /// the next restart); `None` while the file is in place or before the first check.
    /// `/readyz` reports it.
    pub fn file_failure(&self) -> Option<String> {
        self.file_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Sending half: cheap to clone, one per redirect worker or shared.
#[derive(Debug, Clone)]
pub struct ClickSender {
    tx: mpsc::Sender<ClickEvent>,
    stats: Arc<IngestStats>,
    pending: Arc<PendingFloor>,
}

/// Receiving half, consumed by [`crate::spawn_log_writer`].
#[derive(Debug)]
pub struct ClickReceiver {
    pub(crate) rx: mpsc::Receiver<ClickEvent>,
    pub(crate) stats: Arc<IngestStats>,
    pub(crate) pending: Arc<PendingFloor>,
}

/// A bounded channel holding at most `capacity` events (clamped to at least 1).
pub fn click_channel(capacity: usize) -> (ClickSender, ClickReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let stats = Arc::new(IngestStats::default());
    let pending = Arc::new(PendingFloor::new());
    (ClickSender { tx, stats: Arc::clone(&stats), pending: Arc::clone(&pending) }, ClickReceiver { rx, stats, pending })
}

impl ClickSender {
    /// Queues `ev` without waiting. Returns `false` (and counts the drop) when the channel is
    /// full or the writer has stopped. An accepted event's `ts` holds the channel's
    /// [`PendingFloor`] down until the writer has appended it.
    pub fn try_send(&self, ev: ClickEvent) -> bool {
        let ts = ev.ts;
        match self.tx.try_send(ev) {
            Ok(()) => {
                self.pending.accepted(ts);
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.dropped(DropReason::ChannelFull, 1);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.stats.dropped(DropReason::Closed, 1);
                false
            }
        }
    }

    /// Free slots right now (for `/readyz` and gauges).
    pub fn available(&self) -> usize {
        self.tx.capacity()
    }

    /// The channel's counters.
    pub fn stats(&self) -> &Arc<IngestStats> {
        &self.stats
    }

    /// The channel's low-water mark: the event times of accepted clicks not yet in the log.
    pub fn pending(&self) -> &Arc<PendingFloor> {
        &self.pending
    }
}

impl ClickReceiver {
    /// The channel's counters.
    pub fn stats(&self) -> &Arc<IngestStats> {
        &self.stats
    }
}
