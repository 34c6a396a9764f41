//! The end of a graceful stop ([`super::system::System::shutdown`]): how the part after the
//! HTTP server shares `[server] drain-timeout` ([`StopBudget`]), the error when it still
//! outlasts it ([`StopTimedOut`]), the error of a last checkpoint that could not be written
//! ([`CheckpointNotWritten`]), and the stop's outcome from what went wrong on the way
//! ([`outcome`]).

use std::time::Duration;

use anyhow::Context as _;
use tokio::time::Instant;

use super::{DataflowJob, checkpoint, failure};

use super::checkpoint::SETTLE_TIMEOUT;

/// Kept free at the end of the drain for what follows the sinks (closing the link store).
const RESERVE: Duration = Duration::from_millis(250);

/// The error of [`super::system::System::shutdown`] when the stop after the HTTP server
/// (click log drain, dataflow, sinks) did not finish within `[server] drain-timeout`: what
/// was still running is left unfinished (clicks still queued for the log are lost; the
/// dataflow replays from its last checkpoint at the next start).
#[derive(Debug)]
pub struct StopTimedOut {
    /// `[server] drain-timeout`.
    pub drain_timeout: Duration,
}

impl std::fmt::Display for StopTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the stop after the HTTP server (click log drain, dataflow, sinks) did not finish within drain-timeout ({:?})", self.drain_timeout)
    }
}

impl std::error::Error for StopTimedOut {}

/// The error of [`super::DataflowJob::shutdown`] when the last checkpoint, taken at the graceful
/// stop, could not be written (e.g. `checkpoints/` cannot be created, a full disk, the view
/// sinks not applying its cut). Nothing is lost: the next start resumes from the previous
/// checkpoint (or, without one, from the first click) and replays the clicks after it. The
/// stop goes on to its end; the process then exits with code 1 (README, "Run it").
#[derive(Debug)]
pub struct CheckpointNotWritten {
    /// Why the write failed.
    pub cause: anyhow::Error,
}

impl std::fmt::Display for CheckpointNotWritten {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the dataflow checkpoint could not be written at shutdown ({:#}); nothing is lost: the next start resumes from the previous checkpoint (or, \
             without one, from the first click) and replays the clicks after it",
            self.cause
        )
    }
}

impl std::error::Error for CheckpointNotWritten {}

impl DataflowJob {
    /// Before the stop's checkpoint: lets the abuse detectors evaluate the clicks read so
    /// far (`sluice_dataflows::pipeline`, settle; their windows are not in the checkpoint, so
    /// clicks read but not evaluated at its cut would never be), waiting at most `timeout`
    /// (a warning past it). Every click in the log is read first: one the tail reads after the
    /// cut is replayed at the next start anyway.
    async fn settle(&self, timeout: Duration) {
        let Some(p) = &self.pipeline else { return };
        let t0 = tokio::time::Instant::now();
        if let Err(e) = self.sync(timeout).await {
            tracing::debug!(error = %format!("{e:#}"), "the stop's settle goes on without every click of the log read");
        }
        if !p.settle_begin() {
            return;
        }
        while !p.settled() {
            if t0.elapsed() >= timeout {
                tracing::warn!(
                    ?timeout,
                    "the abuse detectors had not evaluated the last clicks read when the stop's checkpoint was taken (e.g. clicks stamped ahead of \
                     the clock): an anomaly that those clicks complete is not reported"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tracing::debug!(elapsed_ms = t0.elapsed().as_millis() as u64, "event time settled before the stop's checkpoint");
    }

    /// Takes a last checkpoint, then stops the tail, the metadata feed and the workers, and
    /// waits for them (also when the checkpoint failed).
    ///
    /// Errors if a worker failed; else [`CheckpointNotWritten`] (in the `anyhow` chain) when
    /// the last checkpoint could not be written, once the rest is stopped.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown_within(checkpoint::ACK_TIMEOUT).await
    }

    /// [`Self::shutdown`] whose last checkpoint waits at most `ack_timeout` for the external
    /// view sinks to apply its cut (a periodic round in flight gives up at once).
    ///
    /// Errors: as [`Self::shutdown`].
    pub async fn shutdown_within(mut self, ack_timeout: Duration) -> anyhow::Result<()> {
        let _ = self.checkpoint_stop.send(true);
        if let Some(t) = self.checkpoint_task.take() {
            let _ = t.await;
        }
        let failed = self.failure.get();
        if self.checkpointer.is_some() && failed.is_none() {
            self.settle(SETTLE_TIMEOUT.min(ack_timeout / 2)).await;
        }
        let taken = match &self.checkpointer {
            // A failed dataflow's state is not consistent (and its cut never completes).
            Some(c) if failed.is_none() => Some(checkpoint::take(c, ack_timeout, None).await),
            _ => None,
        };
        let not_written = match taken {
            Some(Err(cause)) => Some(CheckpointNotWritten { cause }),
            _ => None,
        };
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        if let Some(p) = self.pipeline.take() {
            p.shutdown();
            // A plain thread, not a blocking task: the workers of a failed cluster may never
            // end, and the runtime's drop would wait for that task for ever.
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || tx.send(p.join()));
            match failed {
                None => rx.await.context("dataflow join thread failed")?.context("dataflow worker failed")?,
                // The failure is the process's error already (`System::serve_until`).
                Some(why) => match tokio::time::timeout(failure::FAILED_JOIN_TIMEOUT, rx).await {
                    Ok(r) => tracing::debug!(joined = ?r, "the failed dataflow's workers ended"),
                    Err(_) => tracing::warn!(failure = %why, "the failed dataflow's workers did not end; leaving them to the process's exit"),
                },
            }
        }
        tracing::info!("click dataflow stopped");
        match not_written {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// The time left of `[server] drain-timeout`, handed out to the stages of the stop so that
/// waiting for a service that is down (the last checkpoint waiting for a view sink to apply
/// its cut, a sink writing what it holds) ends inside the bound, with an error naming what
/// was behind, instead of the whole stop running into [`StopTimedOut`].
#[derive(Debug, Clone, Copy)]
pub struct StopBudget {
    deadline: Instant,
}

impl StopBudget {
    /// A budget of `drain_timeout` from now.
    pub fn new(drain_timeout: Duration) -> StopBudget {
        StopBudget { deadline: Instant::now() + drain_timeout }
    }

    /// What is left, less the reserve kept for the very end.
    pub fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now()).saturating_sub(RESERVE)
    }

    /// How long the last checkpoint may wait for the view sinks: half of what is left, the
    /// other half being the sinks' own time to write what they hold.
    pub fn checkpoint_acks(&self) -> Duration {
        self.left() / 2
    }
}

/// The stop's result once everything is stopped, from the click log's problem (found at
/// the last look at the file) and the last checkpoint's (README, "Run it").
///
/// Errors: the log's problem (with what the stop did about it), else the checkpoint's.
pub fn outcome(log_problem: Option<sluice_connectors::Error>, checkpoint_problem: Option<anyhow::Error>) -> anyhow::Result<()> {
    match (log_problem, checkpoint_problem) {
        // The stop did its part, but the next start needs the operator first: say so,
        // and exit with an error (README, "Run it").
        (Some(e), checkpoint) => {
            let wrote_checkpoint = checkpoint.is_none();
            if let Some(c) = checkpoint {
                tracing::error!("{c}");
            }
            // Damage the log already went on from in a new file: nothing is left to do
            // when this stop's checkpoint was written (the next start continues from it),
            // but the clicks the damaged file stored are gone from the log: exit 1 all
            // the same, saying exactly that.
            if matches!(e, sluice_connectors::Error::ClickLogContinued { .. }) && wrote_checkpoint {
                tracing::error!(error = %e, "stopped; the click log was damaged while in use and went on in a new file");
                return Err(anyhow::Error::new(e).context(
                    "the graceful stop finished and wrote its checkpoint, which the next start continues from (nothing to do before it); \
                     the click log was damaged while in use",
                ));
            }
            // The data dir went while serving and did not come back before the stop: the
            // open, deleted file dies with this process. Its advice (`mkdir -p`, written back
            // within seconds) is for a running server; at the stop, say what is lost.
            if let sluice_connectors::Error::ClickLogDirRemoved { dir, .. } = &e {
                tracing::error!(error = %e, "stopped; the data dir was removed while serving");
                anyhow::bail!(
                    "the graceful stop finished, but the data dir {dir} was removed while sluice was running and did not exist \
                     again before the stop: the clicks of its click log, and whatever else it held, are lost with this \
                     process; nothing was written back, and a next start in {dir} begins a new, empty data dir"
                );
            }
            tracing::error!(error = %e, "stopped, but the click log needs attention before the next start");
            Err(anyhow::Error::new(e).context("the graceful stop finished, but the click log needs attention before the next start"))
        }
        // Nothing is lost, but the stop did not end as it should: exit with an error,
        // whose one line (printed by `main`) says so.
        (None, Some(c)) => Err(c),
        (None, None) => Ok(()),
    }
}

/// The stop's result once the link store's file had its last look ([`outcome`] and the
/// store's problem: `links.db` not at its path at the stop, deleted and not written back, or
/// replaced): the file SQLite had open dies with this process, so the stop exits 1 naming
/// the file even when everything else went well.
///
/// Errors: `result`'s error (the store's problem logged), else the store's problem.
pub fn with_store_problem(result: anyhow::Result<()>, store_problem: Option<sluice_connectors::Error>) -> anyhow::Result<()> {
    let Some(e) = store_problem else { return result };
    let lost = "the links in the file sluice had open, and every change made since it left its path, are lost with this process";
    let message = match &e {
        sluice_connectors::Error::LinkStoreFileMoved { path, what: "replaced by another file", .. } => {
            format!("the graceful stop finished, but the link store file \"{path}\" was replaced by another file while sluice was running (left alone): {lost}")
        }
        sluice_connectors::Error::LinkStoreFileMoved { path, .. } => format!(
            "the graceful stop finished, but the link store file \"{path}\" was deleted while sluice was running and could not be written back \
             before the stop (its directory was missing): {lost}"
        ),
        sluice_connectors::Error::LinkStoreWriteBack { path, detail } => format!(
            "the graceful stop finished, but the link store file \"{path}\" was deleted while sluice was running and could not be written back \
             before the stop ({detail}): {lost}"
        ),
        other => format!("the graceful stop finished, but the link store file needs attention: {other}"),
    };
    tracing::error!(error = %e, "stopped; the link store's file was not at its path");
    match result {
        Ok(()) => Err(anyhow::anyhow!(message)),
        Err(first) => {
            tracing::error!("{message}");
            Err(first)
        }
    }
}
