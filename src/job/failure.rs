//! A dataflow that stopped working while the process runs: a timely worker panicked (a bug)
//! or, with several processes, a peer process of the cluster is gone (timely's workers then
//! panic with "MergeQueue poisoned."; a timely cluster does not survive the loss of a
//! process). The views stop following the clicks, so:
//! - `/readyz` answers 503 with dependency `dataflow` = `{"status": "failed", "error"}`
//!   ([`DataflowHealth`]);
//! - with several processes, `/readyz` answers 503 with `dataflow` = `{"status": "starting",
//!   "error"}` until the processes have compared their settings (at the first epoch,
//!   `sluice_dataflows` module `pipeline::agreement`) and this process found them equal: a
//!   process whose cluster will not run (another setting in one process) is never ready;
//! - [`super::system::System::serve_until`] stops the process gracefully and it exits with
//!   code 1 and [`DataflowFailed`], so that a supervisor restarts it (every process of a
//!   cluster must restart: the survivors are stuck). Nothing is lost: the click log or
//!   topic is the source of truth, and the next start replays it from the last checkpoint.
//!
//! A failed dataflow writes no last checkpoint (its state is not consistent) and its join at
//! the stop is bounded by [`FAILED_JOIN_TIMEOUT`] (workers stuck on a dead peer never end).

use std::sync::Arc;
use std::time::Duration;

/// How long the stop waits for the workers of a failed dataflow to end.
pub const FAILED_JOIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often [`FailureWatch::failed`] looks.
const POLL: Duration = Duration::from_millis(100);

/// Reads why the dataflow failed (`None` while it works).
#[derive(Clone)]
pub struct FailureWatch(pub(super) Arc<dyn Fn() -> Option<String> + Send + Sync>);

impl FailureWatch {
    /// Why the dataflow failed, `None` while it works.
    pub fn get(&self) -> Option<String> {
        (self.0)()
    }

    /// Resolves with the failure once the dataflow has failed (never while it works).
    pub async fn failed(&self) -> String {
        loop {
            if let Some(why) = self.get() {
                return why;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// What `/readyz` says while the processes of a cluster have not compared their settings.
pub const NOT_AGREED_YET: &str = "the processes of the cluster have not compared their settings yet (at the dataflow's first epoch, once every process runs)";

/// `/readyz`'s view of the dataflow (name `dataflow`, required): `{"status": "up"}`;
/// `{"status": "starting", "error": NOT_AGREED_YET}` until a cluster's processes have found
/// their settings equal (module docs); `{"status": "failed", "error": "dataflow worker 0
/// panicked: …"}` once a worker failed (a settings difference included).
pub struct DataflowHealth {
    /// Why the dataflow failed.
    pub(super) failure: FailureWatch,
    /// Whether the settings check passed (`PipelineHandle::agreed`).
    pub(super) agreed: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl crate::health::Dependency for DataflowHealth {
    fn name(&self) -> &'static str {
        "dataflow"
    }

    fn status(&self) -> (bool, serde_json::Value) {
        match self.failure.get() {
            Some(why) => (false, serde_json::json!({ "status": "failed", "error": why })),
            None if !(self.agreed)() => (false, serde_json::json!({ "status": "starting", "error": NOT_AGREED_YET })),
            None => (true, serde_json::json!({ "status": "up" })),
        }
    }

    fn required(&self) -> bool {
        true
    }
}

/// The error `sluice serve` exits with (code 1) when its dataflow failed while it ran.
#[derive(Debug)]
pub struct DataflowFailed {
    /// What the failed worker reported (`dataflow worker N panicked: …`).
    pub cause: String,
    /// Timely processes of the cluster (`[dataflow] processes`).
    pub processes: usize,
}

impl std::fmt::Display for DataflowFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the dataflow stopped working ({}), so its stats no longer follow the clicks; ", self.cause)?;
        if self.processes > 1 {
            write!(
                f,
                "with {} processes this is most often a process of the cluster that stopped or cannot be reached (a timely cluster does not survive the \
                 loss of one), or processes started with different settings (named above when the processes could compare them) or \
                 --dataflow-workers: restart every process of the cluster (with the same settings and worker count); ",
                self.processes
            )?;
        } else {
            write!(f, "restart the process; ")?;
        }
        if self.processes > 1 {
            write!(f, "nothing is lost: the next start replays the clicks from the first one (checkpoints are off with several processes)")
        } else {
            write!(f, "nothing is lost: the next start replays the clicks after the last checkpoint (or from the first click)")
        }
    }
}

impl std::error::Error for DataflowFailed {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Dependency as _;
    use parking_lot::Mutex;

    #[tokio::test]
    async fn health_and_watch_follow_the_failure() {
        let slot: Arc<Mutex<Option<String>>> = Arc::default();
        let s = Arc::clone(&slot);
        let watch = FailureWatch(Arc::new(move || s.lock().clone()));
        let agreed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let a = Arc::clone(&agreed);
        let health = DataflowHealth { failure: watch.clone(), agreed: Arc::new(move || a.load(std::sync::atomic::Ordering::Acquire)) };
        assert_eq!(health.status(), (false, serde_json::json!({"status": "starting", "error": NOT_AGREED_YET})), "a cluster before its settings check");
        agreed.store(true, std::sync::atomic::Ordering::Release);
        assert_eq!(health.status(), (true, serde_json::json!({"status": "up"})));
        assert!(tokio::time::timeout(Duration::from_millis(300), watch.failed()).await.is_err(), "no failure yet");
        *slot.lock() = Some("dataflow worker 1 panicked: MergeQueue poisoned.".into());
        assert_eq!(health.status(), (false, serde_json::json!({"status": "failed", "error": "dataflow worker 1 panicked: MergeQueue poisoned."})));
        assert_eq!(watch.failed().await, "dataflow worker 1 panicked: MergeQueue poisoned.");
        assert!(health.required());
    }

    #[test]
    fn the_error_says_what_to_restart() {
        let one = DataflowFailed { cause: "dataflow worker 0 panicked: boom".into(), processes: 1 }.to_string();
        assert_eq!(
            one,
            "the dataflow stopped working (dataflow worker 0 panicked: boom), so its stats no longer follow the clicks; restart the process; nothing is \
             lost: the next start replays the clicks after the last checkpoint (or from the first click)"
        );
        let two = DataflowFailed { cause: "dataflow worker 1 panicked: MergeQueue poisoned.".into(), processes: 2 }.to_string();
        assert!(two.contains("with 2 processes") && two.contains("restart every process of the cluster"), "{two}");
        assert!(two.ends_with("the next start replays the clicks from the first one (checkpoints are off with several processes)"), "{two}");
    }
}
