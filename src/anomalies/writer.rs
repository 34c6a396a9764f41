//! The anomaly writer: the task that stores what the dataflow's [`AnomalySink`] emits in the
//! anomaly store, and `/readyz`'s view of it ([`AnomalyStoreHealth`]).
//!
//! **Never drops a batch while the process runs.** Events received are held in memory, in
//! arrival order, until an append stores them: whatever is held is appended in one
//! transaction (the store keeps each `(anomaly_id, revision)` once, so a retry of a commit
//! that reached the disk after all adds nothing twice). A failed append is retried with
//! capped exponential backoff ([`WriterConfig::retry_initial`] doubling up to
//! [`WriterConfig::retry_max`]) for as long as it fails; the store reopens its file by itself
//! after an I/O error (`sluice_connectors::anomaly_store` docs), so appends resume without a
//! restart once the disk has room again, and no further anomaly is needed for that. While
//! nothing is held and the store is closed after an I/O error (e.g. a failed read), the
//! writer probes it every [`WriterConfig::file_check`].
//!
//! **Bound.** At most [`WriterConfig::max_held`] events are held; events arriving beyond
//! that are dropped, counted in `sluice_anomaly_store_events_total{outcome="dropped"}` and
//! logged (an error, once per failure episode), and — like events still held at the stop —
//! reported to the stop, which makes the next start derive them again (see
//! [`super::AnomalyOutputs::shutdown`]).
//!
//! **File check.** Every [`WriterConfig::file_check`] the writer checks that
//! `anomalies.redb` is still the file the store opened
//! ([`AnomalyStore::check_file`]): a deleted file is written back from the open file (an
//! error log; nothing is lost; while it cannot be, e.g. its directory was removed, the check
//! fails [`AnomalyStoreHealth`] and is tried again every time), a replaced one fails
//! [`AnomalyStoreHealth`] until a restart.
//!
//! Metrics: `sluice_anomaly_store_events_total{outcome="stored|duplicate|dropped"}`,
//! `sluice_anomaly_store_errors_total`, gauge `sluice_anomaly_store_held_events`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use sluice_connectors::anomaly_store::{AnomalyStore, FileCheck};
use sluice_schemas::Anomaly;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Events held in memory at most while the store fails (a few KB each: at most a few tens
/// of MB; the detectors emit a handful of events a minute).
pub const MAX_HELD_EVENTS: usize = 20_000;

/// Settings of the writer (tests shorten them).
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Delay after the first failed append.
    pub retry_initial: Duration,
    /// Longest delay between two attempts.
    pub retry_max: Duration,
    /// Events held at most ([`MAX_HELD_EVENTS`]).
    pub max_held: usize,
    /// How often the store's file is checked (and a closed store probed).
    pub file_check: Duration,
    /// How long the stop keeps retrying what is still held.
    pub stop_retry: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_secs(5),
            max_held: MAX_HELD_EVENTS,
            file_check: Duration::from_secs(2),
            stop_retry: Duration::from_secs(2),
        }
    }
}

/// What the writer shares with `/readyz` and the stop.
#[derive(Debug, Default)]
pub struct WriterState {
    /// Events received and not stored yet.
    held: AtomicU64,
    /// Events dropped at the bound since the start.
    dropped: AtomicU64,
    /// Why the latest append (or probe) failed; `None` once one succeeded.
    append_error: Mutex<Option<String>>,
    /// The file was replaced, or deleted and not restored (`None` while in place).
    file_error: Mutex<Option<String>>,
}

impl WriterState {
    /// Events received and not stored yet.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }

    /// Events dropped at the bound since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Acquire)
    }
}

/// `/readyz`'s view of the anomaly store and its writer (name `anomaly_store`, optional:
/// redirects, stats and the API work without it, and nothing is dropped while it fails — the
/// events wait in memory). Failed while appends fail (`error` names the file, the cause and
/// what to do; `held` events wait in memory, `dropped` were dropped at the bound), while the
/// store is closed after an I/O error, and while `anomalies.redb` is replaced by another file
/// or deleted and not restored; up again by itself once an append (or probe) succeeds.
/// Shape: `{"status": "up", "events": <last event id>}` or `{"status": "failed", "error":
/// "...", "held": N, "dropped": N}`.
pub struct AnomalyStoreHealth {
    /// The store.
    pub store: Arc<AnomalyStore>,
    /// Its writer's state.
    pub state: Arc<WriterState>,
}

impl crate::health::Dependency for AnomalyStoreHealth {
    fn name(&self) -> &'static str {
        "anomaly_store"
    }

    fn status(&self) -> (bool, serde_json::Value) {
        let error = self.state.file_error.lock().clone().or_else(|| self.state.append_error.lock().clone()).or_else(|| {
            // A lost file's message says itself what happens to the events and what to do.
            self.store.failure().map(|f| {
                if self.store.is_lost() {
                    f
                } else {
                    format!("{f}; anomaly events wait in memory until it works again (free disk space, or fix the file's permissions)")
                }
            })
        });
        match error {
            None => (true, json!({ "status": "up", "events": self.store.head() })),
            Some(error) => (false, json!({ "status": "failed", "error": error, "held": self.state.held(), "dropped": self.state.dropped() })),
        }
    }
}

/// The readiness message of a failed append: the file, the cause, what happens and what to do
/// (for a file deleted while the store was closed, [`sluice_connectors::Error::AnomalyStoreLost`]
/// says that itself: no "stored once the store works again", which it will not by itself).
fn append_error_message(store: &AnomalyStore, e: &sluice_connectors::Error) -> String {
    if let sluice_connectors::Error::AnomalyStoreLost { .. } = e {
        return format!("could not store anomaly events in \"{}\" ({})", store.path().display(), crate::health::error_chain(e));
    }
    format!(
        "could not store anomaly events in \"{}\" ({}); they wait in memory and are stored once the store works again \
         (free disk space, or fix the file's permissions; a stop meanwhile makes the next start derive them again)",
        store.path().display(),
        crate::health::error_chain(e)
    )
}

/// What the writer left when it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterSummary {
    /// Events stored (new to the store) since the start.
    pub stored: u64,
    /// Events received and never stored: still held when the stop gave up, plus those
    /// dropped at the bound.
    pub unstored: u64,
}

struct Writer {
    store: Arc<AnomalyStore>,
    state: Arc<WriterState>,
    cfg: WriterConfig,
    held: Vec<Anomaly>,
    retry_at: Option<Instant>,
    delay: Duration,
    /// An error was logged for the current failure episode.
    failing: bool,
    /// A drop at the bound was logged for the current failure episode.
    dropping: bool,
    stored: u64,
}

impl Writer {
    fn take(&mut self, batch: Vec<Anomaly>) {
        for a in batch {
            if self.held.len() < self.cfg.max_held {
                self.held.push(a);
            } else {
                self.state.dropped.fetch_add(1, Ordering::AcqRel);
                metrics::counter!("sluice_anomaly_store_events_total", "outcome" => "dropped").increment(1);
                if !self.dropping {
                    self.dropping = true;
                    tracing::error!(
                        path = %self.store.path().display(),
                        held = self.held.len(),
                        "anomaly events dropped: the events waiting for the failing anomaly store reached the bound; the stop makes the next start derive them again"
                    );
                }
            }
        }
        self.publish_held();
    }

    fn publish_held(&self) {
        self.state.held.store(self.held.len() as u64, Ordering::Release);
        metrics::gauge!("sluice_anomaly_store_held_events").set(self.held.len() as f64);
    }

    /// Appends everything held (one transaction); on failure schedules the next attempt.
    async fn attempt(&mut self) {
        let (store, batch) = (Arc::clone(&self.store), std::mem::take(&mut self.held));
        let n = batch.len() as u64;
        let (batch, outcome) = match tokio::task::spawn_blocking(move || {
            let r = store.append(&batch);
            (batch, r)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                // The append panicked and the batch went with it (a bug): counted as dropped,
                // so that the stop has the next start derive it again.
                self.state.dropped.fetch_add(n, Ordering::AcqRel);
                tracing::error!(error = %e, events = n, "anomaly store task failed; its events are dropped");
                self.publish_held();
                return;
            }
        };
        match outcome {
            Ok(ids) => {
                self.stored += ids.len() as u64;
                metrics::counter!("sluice_anomaly_store_events_total", "outcome" => "stored").increment(ids.len() as u64);
                metrics::counter!("sluice_anomaly_store_events_total", "outcome" => "duplicate").increment(n - ids.len() as u64);
                self.succeeded(Some(n));
            }
            Err(e) => {
                self.held = batch;
                self.failed(&e);
            }
        }
        self.publish_held();
    }

    /// Probes a store closed after an I/O error while nothing is held.
    async fn probe(&mut self) {
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || store.probe_write()).await {
            Ok(Ok(())) => self.succeeded(None),
            Ok(Err(e)) => self.failed(&e),
            Err(e) => tracing::error!(error = %e, "anomaly store probe task failed"),
        }
    }

    fn succeeded(&mut self, events: Option<u64>) {
        if self.failing {
            tracing::info!(path = %self.store.path().display(), events, "the anomaly store works again; the events that waited are stored");
        }
        self.failing = false;
        self.dropping = false;
        self.retry_at = None;
        self.delay = self.cfg.retry_initial;
        *self.state.append_error.lock() = None;
    }

    fn failed(&mut self, e: &sluice_connectors::Error) {
        metrics::counter!("sluice_anomaly_store_errors_total").increment(1);
        let message = append_error_message(&self.store, e);
        if self.failing {
            tracing::debug!(error = %message, held = self.held.len(), "anomaly store still failing");
        } else {
            self.failing = true;
            tracing::error!(error = %message, held = self.held.len(), "could not store anomaly events; retrying with backoff until stored");
        }
        *self.state.append_error.lock() = Some(message);
        self.retry_at = Some(Instant::now() + self.delay);
        self.delay = (self.delay * 2).min(self.cfg.retry_max);
    }

    async fn check_file(&mut self) {
        let store = Arc::clone(&self.store);
        let checked = match tokio::task::spawn_blocking(move || store.check_file()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "anomaly store file check task failed");
                return;
            }
        };
        let mut file_error = self.state.file_error.lock();
        match checked {
            Ok(FileCheck::InPlace) => {
                if file_error.take().is_some() {
                    tracing::info!(path = %self.store.path().display(), "the anomaly store's file is back at its path");
                }
            }
            Ok(FileCheck::Restored { .. }) => *file_error = None,
            Err(e) => {
                let message = e.to_string();
                if file_error.as_deref() != Some(message.as_str()) {
                    tracing::error!(error = %message, "the anomaly store's file is not the one in use");
                    *file_error = Some(message);
                }
            }
        }
    }
}

/// Runs the writer until `stop` holds a deadline (then stores what is queued, retrying until
/// the deadline) or its sender is dropped (module docs).
pub(super) async fn run(
    store: Arc<AnomalyStore>,
    mut rx: mpsc::UnboundedReceiver<Vec<Anomaly>>,
    mut stop: watch::Receiver<Option<Instant>>,
    state: Arc<WriterState>,
    cfg: WriterConfig,
) -> WriterSummary {
    let mut check = tokio::time::interval(cfg.file_check);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.reset();
    let delay = cfg.retry_initial;
    let mut w = Writer { store, state, cfg, held: Vec::new(), retry_at: None, delay, failing: false, dropping: false, stored: 0 };
    let mut open = true;
    loop {
        let deadline = *stop.borrow();
        if let Some(d) = deadline {
            while let Ok(b) = rx.try_recv() {
                w.take(b);
            }
            if w.held.is_empty() || Instant::now() >= d {
                break;
            }
        }
        if !w.held.is_empty() && w.retry_at.is_none_or(|t| Instant::now() >= t) {
            w.attempt().await;
            continue;
        }
        let wake = match (w.retry_at.filter(|_| !w.held.is_empty()), deadline) {
            (Some(r), Some(d)) => Some(r.min(d)),
            (r, d) => r.or(d),
        };
        tokio::select! {
            biased;
            r = stop.changed(), if deadline.is_none() => {
                if r.is_err() {
                    break;
                }
            }
            b = rx.recv(), if deadline.is_none() && open => match b {
                Some(b) => {
                    w.take(b);
                    while let Ok(more) = rx.try_recv() {
                        w.take(more);
                    }
                }
                None => open = false,
            },
            () = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
            _ = check.tick(), if deadline.is_none() => {
                w.check_file().await;
                if w.held.is_empty() && w.store.failure().is_some() {
                    w.probe().await;
                }
            }
        }
    }
    let unstored = w.held.len() as u64 + w.state.dropped();
    WriterSummary { stored: w.stored, unstored }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file deleted while the store was closed is not said to recover by itself (it does
    /// not: the store's own message says what is lost and what to do); an I/O failure is.
    #[test]
    fn a_lost_store_file_is_not_said_to_recover_by_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AnomalyStore::open(dir.path()).expect("open");
        let path = store.path().display().to_string();
        let lost = sluice_connectors::Error::AnomalyStoreLost { path: path.clone() };
        assert_eq!(
            append_error_message(&store, &lost),
            format!(
                "could not store anomaly events in \"{path}\" (anomaly store \"{path}\" was deleted while it was closed after an I/O error, so \
                 sluice has no open file to write it back from: the anomaly events and webhook subscriptions it held are gone unless a backup \
                 of the file is put back. New anomaly events wait in memory meanwhile. To go on, stop sluice (a graceful stop makes the next \
                 start derive the waiting events again), put the backup at that path if there is one (without one, the start creates an \
                 empty store) and start it again)"
            )
        );
        let closed = sluice_connectors::Error::AnomalyStoreClosed { path: path.clone(), cause: "disk full".into() };
        assert_eq!(
            append_error_message(&store, &closed),
            format!(
                "could not store anomaly events in \"{path}\" (anomaly store \"{path}\" is closed after an I/O error (disk full); it is reopened \
                 by the next operation once the storage works again); they wait in memory and are stored once the store works again (free \
                 disk space, or fix the file's permissions; a stop meanwhile makes the next start derive them again)"
            )
        );
    }
}
