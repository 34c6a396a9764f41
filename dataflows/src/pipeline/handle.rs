//! What a [`PipelineHandle`] offers while the graph runs (views, counters, sync, failure)
//! and how it stops (shutdown, join, drop).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{DeadLetterCounters, PipelineHandle, PipelineStats};
use crate::anomaly::{AnomalyCounters, BlocklistSender};
use crate::views::{AsOf, Views};
use crate::{Error, Result};

impl PipelineHandle {
    /// The materialized views (clone to share with the serving layer).
    pub fn views(&self) -> &Views {
        &self.views
    }

    /// Starts and collects checkpoint rounds (`None` unless started by
    /// [`start_with_checkpoints`]).
    pub fn checkpoints(&self) -> Option<&crate::checkpoint::CheckpointHandle> {
        self.checkpoints.as_ref()
    }

    /// Dead-letter counts by reason.
    pub fn dead_letters(&self) -> &DeadLetterCounters {
        &self.shared.counters
    }

    /// Anomaly events emitted by this process, by kind and status.
    pub fn anomalies(&self) -> &AnomalyCounters {
        &self.shared.anomalies
    }

    /// The blocklist input of the abuse detectors (send every entry at start, then changes;
    /// entries reach the graph through this process's worker 0, i.e. process 0 of a cluster).
    pub fn blocklist(&self) -> &BlocklistSender {
        &self.blocklist
    }

    /// Counters since start.
    pub fn stats(&self) -> PipelineStats {
        self.stats_handle()()
    }

    /// A closure reading [`Self::stats`] that outlives the handle (e.g. after [`Self::join`]).
    pub fn stats_handle(&self) -> impl Fn() -> PipelineStats + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        move || PipelineStats {
            received: shared.received.load(Ordering::Relaxed),
            accepted: shared.accepted.load(Ordering::Relaxed),
            duplicates: shared.duplicates.load(Ordering::Relaxed),
            dead_lettered: shared.counters.total(),
        }
    }

    /// Waits until everything the local sources (and the link-metadata feed) had available
    /// when this was called is reflected in the local views and has been through the abuse
    /// detectors (their events delivered to the anomaly sink); returns the frontier reached.
    /// Errors with [`Error::Timeout`] after `timeout` (e.g. a source that never catches up).
    pub fn sync(&self, timeout: Duration) -> Result<AsOf> {
        let deadline = Instant::now() + timeout;
        let t0 = self.shared.epochs.now_epoch();
        self.shared.workers.wake();
        let target = loop {
            let done = (0..self.shared.caught_up.len())
                .all(|w| self.shared.finished[w].load(Ordering::Acquire) || self.shared.caught_up[w].load(Ordering::Acquire) > t0);
            if done {
                break self.shared.caught_up.iter().map(|c| c.load(Ordering::Acquire)).max().unwrap_or(0);
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(timeout));
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        loop {
            let a = self.views.as_of();
            let detectors = self.shared.detectors_past(target);
            if a.epoch > target && detectors {
                return Ok(a);
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(timeout));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Starts settling event time before a graceful stop's last checkpoint (module
    /// `settle`): the sources' partitions turn idle at once, so the abuse detectors evaluate
    /// every click read so far within a tick instead of after `idle_timeout`; poll
    /// [`Self::settled`]. Returns `false` when there is nothing to settle (no detectors).
    pub fn settle_begin(&self) -> bool {
        let requested = self.shared.settle.request(false).is_some();
        if requested {
            self.shared.workers.wake();
        }
        requested
    }

    /// Whether the settling [`Self::settle_begin`] started is done: the views' watermark has
    /// passed the tick of the latest click read, and the detectors have handed the events of
    /// that epoch to the anomaly sink.
    pub fn settled(&self) -> bool {
        self.shared.settled(self.shared.settle.current(), &self.views)
    }

    /// Why a local worker stopped before its time (it panicked or returned an error), `None`
    /// while every one runs or finished normally. Once set, the views no longer follow the
    /// input: with several processes, every worker of the cluster is stuck (a timely cluster
    /// does not survive the loss of a worker or process) and [`Self::join`] may never return.
    pub fn failure(&self) -> Option<String> {
        self.failure_handle()()
    }

    /// A closure reading [`Self::failure`] that outlives the handle.
    pub fn failure_handle(&self) -> impl Fn() -> Option<String> + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        move || shared.failure.lock().clone()
    }

    /// Whether the processes of the cluster have compared their settings and every local
    /// worker found them equal (module `agreement`): always true on a single process. Until
    /// then the process cannot know whether its cluster will run ([`Self::failure`] names a
    /// difference once one is seen).
    pub fn agreed(&self) -> bool {
        self.agreed_handle()()
    }

    /// A closure reading [`Self::agreed`] that outlives the handle.
    pub fn agreed_handle(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        let workers = shared.caught_up.len();
        move || shared.agreed.load(Ordering::Acquire) >= workers
    }

    /// Asks the workers to close their inputs and finish (returns immediately).
    pub fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.workers.wake();
    }

    /// Waits for the workers to finish (after [`Self::shutdown`], or when every source is
    /// finished and the metadata feed closed). Errors with [`Error::Worker`] if one failed.
    pub fn join(mut self) -> Result<()> {
        self.join_inner()
    }

    fn join_inner(&mut self) -> Result<()> {
        let Some(guards) = self.guards.take() else { return Ok(()) };
        let mut errors = Vec::new();
        // Once a peer process is gone, timely's join panics too (dropping its network
        // threads' guard, "Send thread panic"): the worker's failure says why.
        let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| guards.join()))
            .unwrap_or_else(|_| vec![Err(self.failure().unwrap_or_else(|| "the dataflow's network threads failed".into()))]);
        for r in results {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e),
                // timely describes a panic's payload as `Any { .. }`: the text recorded
                // at the panic says more.
                Err(e) => errors.push(self.failure().unwrap_or(e)),
            }
        }
        errors.dedup();
        if errors.is_empty() { Ok(()) } else { Err(Error::Worker(errors.join("; "))) }
    }
}

impl Drop for PipelineHandle {
    fn drop(&mut self) {
        if self.guards.is_some() {
            self.shutdown();
            if let Err(e) = self.join_inner() {
                tracing::error!(error = %e, "dataflow worker failed during shutdown");
            }
        }
    }
}
