//! Taking checkpoints (module docs of [`super`], "When it is written"): one round
//! ([`take`]: a consistent snapshot, the external sinks caught up with its cut, the file
//! written) and the periodic task ([`run`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sluice_dataflows::checkpoint::{CheckpointHandle, CheckpointStatus, DataflowSnapshot, SNAPSHOT_VERSION};
use tokio::sync::watch;

use super::files::write;
use super::format::{CheckpointFile, SourceIdentity};
use crate::job::kafka_source::SinkAcks;

/// Longest a round holds the sources for the abuse detectors to evaluate the clicks read
/// before its cut ([`sluice_dataflows::checkpoint::CheckpointHandle::quiesce`]; also the
/// stop's wait, `super::super::stop`): a tick (1 s by default) past the latest click, plus
/// the time to apply it.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a round may wait for every worker's part.
const ROUND_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a periodic round may wait for the external sinks to apply the cut (the stop's
/// round gets what is left of `[server] drain-timeout` instead).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Kafka start offsets from a snapshot (partition → next offset).
pub fn kafka_offsets(snapshot: &DataflowSnapshot) -> BTreeMap<i32, i64> {
    snapshot.offsets.iter().filter_map(|(&p, &o)| Some((i32::try_from(p).ok()?, i64::try_from(o).ok()?))).collect()
}

/// Everything a round needs.
#[derive(Clone)]
pub struct Checkpointer {
    /// The pipeline's checkpoint handle.
    pub handle: CheckpointHandle,
    /// What the external sinks applied (`None`: no external sink).
    pub acks: Option<SinkAcks>,
    /// `<data-dir>/checkpoints`.
    pub dir: PathBuf,
    /// The input.
    pub source: SourceIdentity,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer").field("dir", &self.dir).field("source", &self.source).finish_non_exhaustive()
    }
}

/// Takes one checkpoint (module docs): snapshot, wait up to `ack_timeout` for the sinks,
/// write. Returns the file written. A round given `stop` gives up as soon as it turns true
/// while waiting (never while writing), so a stop does not wait out a round that waits for
/// a sink that is down. Metrics: `sluice_checkpoints_total{outcome}`,
/// `sluice_checkpoint_duration_seconds`, `sluice_checkpoint_bytes`.
///
/// Errors: no snapshot within the round timeout (e.g. the workers stopped), the sinks not
/// applying the cut within `ack_timeout`, `stop` turning true before the write, I/O errors
/// writing the file.
pub async fn take(c: &Checkpointer, ack_timeout: Duration, stop: Option<&watch::Receiver<bool>>) -> anyhow::Result<PathBuf> {
    let t0 = Instant::now();
    let r = take_inner(c, ack_timeout, stop).await;
    let outcome = if r.is_ok() { "written" } else { "failed" };
    metrics::counter!("sluice_checkpoints_total", "outcome" => outcome).increment(1);
    if r.is_ok() {
        metrics::histogram!("sluice_checkpoint_duration_seconds").record(t0.elapsed().as_secs_f64());
    }
    r
}

async fn take_inner(c: &Checkpointer, ack_timeout: Duration, stop: Option<&watch::Receiver<bool>>) -> anyhow::Result<PathBuf> {
    let stopping = || stop.is_some_and(|s| *s.borrow());
    // Every click in the cut must have been through the abuse detectors (their windows are
    // not in the snapshot): the sources are held until the snapshot is in hand.
    let quiet = c.handle.quiesce();
    if let Some(q) = &quiet {
        let t0 = tokio::time::Instant::now();
        while !q.settled() {
            if t0.elapsed() >= SETTLE_TIMEOUT {
                tracing::warn!(
                    timeout = ?SETTLE_TIMEOUT,
                    "the abuse detectors had not evaluated every click read when the checkpoint was taken (e.g. clicks stamped ahead of the clock, \
                     or a dataflow far behind): after a crash, an anomaly that those clicks complete is not reported"
                );
                break;
            }
            if stopping() {
                bail!("the process is stopping (its own round follows)");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tracing::debug!(elapsed_ms = t0.elapsed().as_millis() as u64, "event time settled before the checkpoint's cut");
    }
    let deadline = tokio::time::Instant::now() + ROUND_TIMEOUT;
    c.handle.begin();
    let snapshot = loop {
        match c.handle.poll() {
            CheckpointStatus::Done(s) => break *s,
            CheckpointStatus::Failed(why) => {
                tracing::debug!(%why, "checkpoint round failed; starting another");
                c.handle.begin();
            }
            CheckpointStatus::Pending => {}
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("no consistent snapshot within {ROUND_TIMEOUT:?}");
        }
        if stopping() {
            bail!("the process is stopping (its own round follows)");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    drop(quiet);
    if let Some(acks) = &c.acks {
        let deadline = tokio::time::Instant::now() + ack_timeout;
        while acks() < snapshot.cut_epoch {
            if tokio::time::Instant::now() >= deadline {
                bail!("the view sinks did not apply the checkpoint's cut within {ack_timeout:?}");
            }
            if stopping() {
                bail!("the process is stopping (its own round follows)");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let file = CheckpointFile { snapshot_version: SNAPSHOT_VERSION, created_ms: crate::job::now_ms(), source: c.source.clone(), snapshot };
    let dir = c.dir.clone();
    let (rows, ids, offsets) = (file.snapshot.views.rows.len(), file.snapshot.dedup.ids.len(), file.snapshot.offsets.clone());
    let (path, bytes) = tokio::task::spawn_blocking(move || write(&dir, &file)).await.context("checkpoint write task failed")??;
    metrics::gauge!("sluice_checkpoint_bytes").set(bytes as f64);
    tracing::info!(path = %path.display(), bytes, rows, dedup_ids = ids, ?offsets, "checkpoint written");
    Ok(path)
}

/// Takes a checkpoint every `interval` until `stop` turns true (failures are logged and
/// retried at the next interval).
pub async fn run(c: Checkpointer, interval: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        if let Err(e) = take(&c, ACK_TIMEOUT, Some(&stop)).await {
            if *stop.borrow() {
                break;
            }
            tracing::warn!(error = %format!("{e:#}"), "checkpoint failed; retrying at the next interval");
        }
    }
}
