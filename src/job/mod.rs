//! The click dataflow inside `sluice serve`: the embedded click log → the timely /
//! differential graph of `sluice-dataflows` → materialized views the stats API reads.
//!
//! [`DataflowJob::start`] (called by [`system::System::start`] in processes that hold the
//! click log) builds, in order:
//! 1. the enricher (vendored UA, bot, GeoIP and referrer data; `[dataflow] geoip-path`);
//! 2. the link-metadata feed (process 0 only): the store's change feed replayed from the
//!    start, then the API hook and a poll of the feed ([`link_meta`]);
//! 3. the input: the log tail ([`log_source`], partition = process id) or, in Kafka mode,
//!    the click topic ([`kafka_source`]), from the offsets of the newest valid checkpoint
//!    ([`checkpoint`]: views, dedup state and watermarks are restored from it) or, without
//!    one, from the first offset (the state is rebuilt by replaying the input);
//! 4. the pipeline with `[dataflow] workers` timely threads (and, with `processes > 1`,
//!    timely's cluster mode over the hostfile), dead letters counted in
//!    `sluice_events_dead_lettered_total{reason}` and logged (rate-limited);
//! 5. a telemetry task: `sluice_dataflow_backlog_events`, `sluice_dataflow_lag_seconds`
//!    (age of the stats API's `as_of`), `sluice_dataflow_events_total{outcome}`.
//!
//! 6. the checkpoint task: a checkpoint every `[dataflow] checkpoint-interval`.
//!
//! [`DataflowJob::shutdown`] takes a last checkpoint, then stops the tail, the feed and the
//! workers (nothing else to flush: the log or topic is the source of truth); a checkpoint it
//! could not write is its error ([`CheckpointNotWritten`]) once the rest is stopped.
//!
//! | file | what |
//! |---|---|
//! | `config.rs` | `[dataflow]` and `[stats]` sections |
//! | `checkpoint.rs` | checkpoint files: format, atomic write, newest-valid load, rounds |
//! | `kafka_source.rs` | the click topic as the input, offset commits, freshness |
//! | `log_source.rs` | the log as a `ClickSource`, freshness frontier |
//! | `link_meta.rs` | link metadata from the API hook and the change feed |
//! | `stop.rs` | the job's stop and the stop's shared drain budget |
//! | `failure.rs` | a dataflow that failed while running: `/readyz`, the process's exit |
//! | `system.rs` | the whole process: store, log, writer, dataflow, HTTP ([`system::System`]) |

pub mod checkpoint;
pub mod config;
mod counting_sink;
pub mod early_answers;
mod failure;
pub mod kafka_source;
pub mod link_meta;
pub mod log_source;
mod lost_store;
mod split_roles;
pub(crate) mod start_cleanup;
pub mod stop;
pub mod system;

pub use failure::{DataflowFailed, DataflowHealth};
pub use stop::CheckpointNotWritten;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context;
use parking_lot::Mutex;
use sluice_connectors::LinkStore;
use sluice_connectors::click_log::ClickLog;
use sluice_dataflows::changes::ChangeSink;
use sluice_dataflows::clock::SystemClock;
use sluice_dataflows::dead_letter::{DeadLetter, DeadLetterReason, DeadLetterSink};
use sluice_dataflows::enrich::{EnrichConfig, Enricher};
use sluice_dataflows::pipeline::{self, CheckpointOptions, PipelineHandle, PipelineInputs, PipelineOutputs, PipelineStats, link_meta_channel};
use sluice_dataflows::source::{ClickSource, SourceFactory};
use sluice_dataflows::views::{AsOf, Views};
use sluice_serving::LinkChangeHook;
use sluice_serving::stats::ViewSource;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use kafka_source::{SinkAcks, SourceProgress};
use link_meta::MetaFeeder;
use log_source::NoSource;

/// How often the telemetry task updates the dataflow gauges.
const TELEMETRY_INTERVAL: Duration = Duration::from_secs(1);
/// At most one dead-letter log line per this many ms.
const DEAD_LETTER_LOG_EVERY_MS: i64 = 10_000;

/// The running dataflow of this process (module docs).
pub struct DataflowJob {
    pipeline: Option<PipelineHandle>,
    views: Views,
    progress: Arc<dyn SourceProgress>,
    feeder: Option<Arc<MetaFeeder>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    stats: Arc<dyn Fn() -> PipelineStats + Send + Sync>,
    checkpointer: Option<checkpoint::Checkpointer>,
    /// Stops the periodic checkpoint task (before the last checkpoint at shutdown).
    checkpoint_stop: watch::Sender<bool>,
    checkpoint_task: Option<JoinHandle<()>>,
    /// The click log tail's health (embedded log mode), for `/readyz`.
    health: Option<Arc<dyn crate::health::Dependency>>,
    /// Why the pipeline failed while running ([`failure`]).
    failure: failure::FailureWatch,
    /// Whether a cluster's processes found their settings equal (`PipelineHandle::agreed`).
    agreed: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for DataflowJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataflowJob").field("views", &self.views).field("backlog", &self.progress.backlog()).finish_non_exhaustive()
    }
}

/// The enrichment settings: `[dataflow] geoip-path`, and the service's own hosts (the base
/// URL's and every short domain), whose referrers count as direct (case C22).
pub fn enrich_config(cfg: &Config) -> anyhow::Result<EnrichConfig> {
    let mut own_hosts: Vec<String> = cfg.base_url()?.host_str().map(str::to_string).into_iter().collect();
    own_hosts.extend(cfg.server.short_domains.iter().cloned());
    Ok(EnrichConfig { geoip_path: cfg.dataflow.geoip_path.clone(), own_hosts, ..EnrichConfig::default() })
}

/// Wall clock, ms since the Unix epoch, UTC.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn dead_letter_sink() -> DeadLetterSink {
    let last_log = AtomicI64::new(i64::MIN);
    let suppressed = Mutex::new([0u64; 3]);
    Arc::new(move |batch: &[DeadLetter]| {
        let now = now_ms();
        let mut counts = suppressed.lock();
        for d in batch {
            counts[DeadLetterReason::ALL.iter().position(|r| *r == d.reason).unwrap_or(0)] += 1;
        }
        let prev = last_log.load(Ordering::Relaxed);
        if prev == i64::MIN || now - prev >= DEAD_LETTER_LOG_EVERY_MS {
            last_log.store(now, Ordering::Relaxed);
            let first = &batch[0];
            tracing::warn!(
                too_late = counts[0],
                future = counts[1],
                invalid = counts[2],
                example_reason = first.reason.as_str(),
                example_detail = %first.detail,
                example_offset = first.offset,
                "clicks dead-lettered (counts since the last report; sluice_events_dead_lettered_total has them all)"
            );
            *counts = [0; 3];
        }
    })
}

/// Where a start of the dataflow resumes: its click log and the checkpoint loaded and
/// checked against it by [`DataflowJob::check_start`]; consumed by [`DataflowJob::start_at`].
pub struct StartPoint {
    log: ClickLog,
    checkpoints_on: bool,
    source_id: checkpoint::SourceIdentity,
    checkpoint_dir: std::path::PathBuf,
    restored: Option<(std::path::PathBuf, checkpoint::CheckpointFile)>,
    /// A checkpoint of another input newer than `restored` (the sinks were last written from it).
    switch: Option<checkpoint::InputSwitch>,
}

impl StartPoint {
    /// Drops the restored checkpoint's source offsets, keeping its state: every partition of
    /// the click topic is read from its first offset. For a click topic this start had to
    /// create (deleted, or the broker lost its data): the checkpoint's offsets point into a
    /// topic that is gone, and every record of the new one is new to the restored state.
    pub fn forget_source_offsets(&mut self) {
        if let Some((path, file)) = self.restored.as_mut()
            && !file.snapshot.offsets.is_empty()
        {
            tracing::warn!(checkpoint = %path.display(), offsets = ?file.snapshot.offsets, "the click topic was created at this start: the checkpoint's offsets belong to a topic that is gone; reading the new one from its first offsets");
            file.snapshot.offsets.clear();
        }
    }
}

#[cfg(test)]
impl StartPoint {
    /// The checkpoint the start resumes from, if any.
    pub(crate) fn restored(&self) -> Option<&checkpoint::CheckpointFile> {
        self.restored.as_ref().map(|(_, f)| f)
    }
}

impl std::fmt::Debug for StartPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartPoint").field("source", &self.source_id).field("checkpoint", &self.restored.as_ref().map(|(p, _)| p)).finish_non_exhaustive()
    }
}

/// The abuse detectors' side of [`DataflowJob::start_with_acks`].
#[derive(Clone, Default)]
pub struct JobAnomalies {
    /// Where their events go (`None`: counted only).
    pub sink: Option<sluice_dataflows::anomaly::AnomalySink>,
    /// What the anomaly store holds ([`crate::anomalies::AnomalyOutputs::stored_anomalies`]):
    /// the detectors reconcile the episodes they open with it, so that a replay continues
    /// the anomaly a previous run derived from the same clicks, and close one it left open
    /// that the replay does not derive again (`PipelineOutputs::stored_anomalies`; README,
    /// "Anomalies open across a restart").
    pub stored: sluice_dataflows::anomaly::StoredAnomalies,
}

impl JobAnomalies {
    /// The latest event of every anomaly still open (`open`/`updated`) among [`Self::stored`]:
    /// a start that restores a checkpoint hands them to the detectors, which update or close
    /// them like their own (their windows are not in the checkpoint); a start that replays the
    /// input from its first record derives them again instead (README, "The anomaly store").
    pub fn open(&self) -> Vec<sluice_schemas::Anomaly> {
        self.stored.open.iter().filter(|a| a.status != sluice_schemas::AnomalyStatus::Closed).cloned().collect()
    }
}

impl std::fmt::Debug for JobAnomalies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobAnomalies").field("sink", &self.sink.is_some()).field("stored", &self.stored).finish()
    }
}

impl DataflowJob {
    /// Starts the dataflow over `log` with link metadata from `store` (module docs).
    ///
    /// Errors: invalid `[dataflow]` configuration, unreadable enrichment data or GeoIP
    /// file, the link store failing during the initial metadata load, timely failing to
    /// start (e.g. cluster peers unreachable).
    ///
    /// # Panics
    /// If called outside a tokio runtime.
    pub async fn start(cfg: &Config, log: ClickLog, store: Arc<dyn LinkStore>) -> anyhow::Result<DataflowJob> {
        Self::start_with_changes(cfg, log, store, None).await
    }

    /// [`Self::start`] with the change stream sent to `changes` (the Redis/ClickHouse sinks,
    /// `crate::sinks`).
    ///
    /// Errors: as [`Self::start`].
    pub async fn start_with_changes(cfg: &Config, log: ClickLog, store: Arc<dyn LinkStore>, changes: Option<ChangeSink>) -> anyhow::Result<DataflowJob> {
        Self::start_with_outputs(cfg, log, store, changes, None).await
    }

    /// [`Self::start_with_changes`], plus the abuse detectors' anomalies sent to `anomalies`
    /// (the ClickHouse sink, `crate::sinks`).
    ///
    /// Errors: as [`Self::start`].
    pub async fn start_with_outputs(
        cfg: &Config,
        log: ClickLog,
        store: Arc<dyn LinkStore>,
        changes: Option<ChangeSink>,
        anomalies: Option<sluice_dataflows::anomaly::AnomalySink>,
    ) -> anyhow::Result<DataflowJob> {
        Self::start_with_acks(cfg, log, store, changes, JobAnomalies { sink: anomalies, ..JobAnomalies::default() }, None, None).await
    }

    /// [`Self::start_with_outputs`] (with the store's open anomalies in `anomalies`, see
    /// [`JobAnomalies`]), plus what the external view sinks durably applied
    /// (`acks`): in Kafka mode (`[kafka] brokers`) the dataflow reads the click topic instead
    /// of `log` and commits the offsets of inputs every sink has applied ([`kafka_source`]).
    /// `pending` is the low-water mark of this process's click intake writing to `log`
    /// ([`log_source`]: freshness and the idle watermark respect clicks not yet appended).
    ///
    /// Errors: as [`Self::start`], and the broker unreachable or the click topic missing.
    pub async fn start_with_acks(
        cfg: &Config,
        log: ClickLog,
        store: Arc<dyn LinkStore>,
        changes: Option<ChangeSink>,
        anomalies: JobAnomalies,
        acks: Option<SinkAcks>,
        pending: Option<Arc<sluice_ingest::PendingFloor>>,
    ) -> anyhow::Result<DataflowJob> {
        let start = Self::check_start(cfg, log).await?;
        Self::start_at(cfg, start, store, changes, anomalies, acks, pending).await
    }

    /// Loads the checkpoint a start over `log` resumes from (the newest valid one of its
    /// input, [`checkpoint`]) and checks it against the log, without starting anything:
    /// [`system::System::start`] runs this before it creates the link store or the visitor
    /// secret, so that a start refused here leaves the data dir as it was.
    ///
    /// Errors: the newest checkpoint was taken of another click log
    /// ([`checkpoint::load_latest_for_log`]) or starts past the log's head (the log was
    /// deleted, truncated or replaced); the log starts past offset 0 and no checkpoint of it
    /// is found while checkpoints are on (unless `count_from_log_start`); the checkpoint
    /// directory cannot be listed.
    pub async fn check_start(cfg: &Config, log: ClickLog) -> anyhow::Result<StartPoint> {
        let checkpoints_on = !cfg.dataflow.checkpoint_interval.is_zero() && cfg.dataflow.processes == 1;
        let source_id = if cfg.kafka.enabled() {
            checkpoint::SourceIdentity::Kafka { topic: cfg.kafka.click_topic.clone() }
        } else {
            checkpoint::SourceIdentity::LogFile { partition: cfg.dataflow.partition(), log_id: log.log_id() }
        };
        let checkpoint_dir = checkpoint::dir_of(&cfg.server.data_dir);
        let checkpoint::StartCheckpoint { restored, switch } = if checkpoints_on {
            let (dir, id) = (checkpoint_dir.clone(), source_id.clone());
            let log_clicks = (!cfg.kafka.enabled()).then(|| log.head() - log.low());
            tokio::task::spawn_blocking(move || checkpoint::load_for_start(&dir, &id, log_clicks)).await.context("checkpoint load task failed")??
        } else {
            checkpoint::StartCheckpoint { restored: None, switch: None }
        };
        if !cfg.kafka.enabled() && restored.is_none() && log.low() > 0 {
            // Nothing holds the clicks below the log's start any more (a `sluice log reset`
            // kept them only in checkpoints, now moved away or of another input). Counting
            // from the log's start would write a checkpoint newer than those, which would win
            // over them once they are put back: refused unless asked for (README, "Checkpoints").
            let low = log.low();
            if checkpoints_on && !cfg.dataflow.count_from_log_start {
                anyhow::bail!(
                    "the click log in the data dir starts at offset {low} (it was reset, or continued after damage), but no checkpoint in {} \
                     holds the clicks of the {low} log entries before it (offsets 0 to {last}; checkpoints moved away, deleted, or of another \
                     input). Starting would count only the clicks from offset {low} on, and its next checkpoint would then win over the older \
                     ones if they are put back. Put back the checkpoints directory that holds them (after `sluice log reset`, the newest \
                     checkpoint of this log ends at offset {low}), or, to accept losing the clicks of those {low} log entries from the stats, \
                     start with `sluice serve --count-from-log-start`",
                    checkpoint_dir.display(),
                    last = low - 1
                );
            }
            tracing::warn!(
                first_offset = low,
                checkpoints = checkpoints_on,
                "the click log starts at offset {low} and no checkpoint of it is restored: the views (and sinks rebuilt from them) count only \
                 the clicks from that offset on; the clicks of the {low} log entries before it are not counted (put back the checkpoints directory kept by \
                 `sluice log reset` to count them)"
            );
        }
        if !cfg.kafka.enabled() {
            let from = restored.as_ref().and_then(|(_, f)| f.snapshot.offsets.get(&cfg.dataflow.partition()).copied()).unwrap_or_else(|| log.low());
            if from > log.head() {
                anyhow::bail!(
                    "the newest checkpoint in {} starts after click-log offset {from}, but the click log in the data dir ends at offset {} \
                     (was clicks.redb deleted, truncated or replaced?); new clicks would be skipped. Put the original clicks.redb back, \
                     or move the checkpoints directory away to rebuild the views from the log as it is",
                    checkpoint_dir.display(),
                    log.head()
                );
            }
        }
        Ok(StartPoint { log, checkpoints_on, source_id, checkpoint_dir, restored, switch })
    }

    /// [`Self::start_with_acks`] from a start point [`Self::check_start`] accepted.
    ///
    /// Errors: as [`Self::start_with_acks`] (without the checkpoint checks, done).
    pub async fn start_at(
        cfg: &Config,
        start: StartPoint,
        store: Arc<dyn LinkStore>,
        changes: Option<ChangeSink>,
        anomalies: JobAnomalies,
        acks: Option<SinkAcks>,
        pending: Option<Arc<sluice_ingest::PendingFloor>>,
    ) -> anyhow::Result<DataflowJob> {
        let StartPoint { log, checkpoints_on, source_id, checkpoint_dir, restored, switch } = start;
        let mut pcfg = cfg.dataflow.pipeline_config()?;
        // Checked against every peer's when the graph starts (`sluice_dataflows::pipeline`,
        // agreement): the config refuses a cluster without a configured secret.
        if let (Some(cluster), Some(s)) = (pcfg.cluster.as_mut(), &cfg.visitor.secret) {
            let secret = crate::config::parse_secret(&s.0)?;
            cluster.agreed.push(("visitor.secret (its fingerprint)".to_owned(), crate::visitor_secret::fingerprint(&secret)));
        }
        for r in DeadLetterReason::ALL {
            metrics::counter!("sluice_events_dead_lettered_total", "reason" => r.as_str()).increment(0);
        }
        metrics::counter!("sluice_events_dead_lettered_total", "reason" => "undecodable").increment(0);
        // Present from the start at 0 (alerts on rate() or absent() need the series).
        metrics::counter!("sluice_checkpoints_skipped_total").increment(0);
        let ecfg = enrich_config(cfg)?;
        let enricher =
            tokio::task::spawn_blocking(move || Enricher::new(&ecfg)).await.context("enricher task failed")?.context("could not load the enrichment data")?;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        // Link metadata: complete before the first click is read (process 0 feeds it).
        let (feeder, meta_feed) = if cfg.dataflow.process_id() == 0 {
            let (tx, feed) = link_meta_channel();
            let feeder = Arc::new(MetaFeeder::new(tx));
            let after = link_meta::catch_up(&feeder, store.as_ref(), 0).await.context("could not load link metadata from the store")?;
            tracing::info!(links = feeder.live_links(), changes = after, "link metadata loaded");
            tasks.push(tokio::spawn(link_meta::follow_changes(Arc::clone(&feeder), store, after, cfg.dataflow.meta_poll_interval, stop_rx.clone())));
            (Some(feeder), Some(feed))
        } else {
            (None, None)
        };

        // Checkpoints: the newest valid one of this input is the starting state (loaded and
        // checked by `check_start`).
        if let Some((path, f)) = &restored {
            metrics::counter!("sluice_checkpoint_restores_total").increment(1);
            tracing::info!(
                path = %path.display(),
                created_ms = f.created_ms,
                rows = f.snapshot.views.rows.len(),
                dedup_ids = f.snapshot.dedup.ids.len(),
                offsets = ?f.snapshot.offsets,
                "restoring the dataflow from a checkpoint"
            );
        }
        let restored_path = restored.as_ref().map(|(p, _)| p.clone());
        let snapshot = restored.map(|(_, f)| f.snapshot);
        let start_offsets = snapshot.as_ref().map(|s| s.offsets.clone()).unwrap_or_default();

        let mut health: Option<Arc<dyn crate::health::Dependency>> = None;
        let (factory, progress, changes): (SourceFactory, Arc<dyn SourceProgress>, Option<ChangeSink>) = if cfg.kafka.enabled() {
            let start = snapshot.as_ref().map(checkpoint::kafka_offsets).unwrap_or_default();
            let input = kafka_source::start(&cfg.kafka, &pcfg, changes, acks.clone(), start, stop_rx.clone()).await?;
            tasks.push(input.task);
            (input.factory, input.progress, Some(input.changes))
        } else {
            // At or below the head (`check_start`).
            let from = start_offsets.get(&cfg.dataflow.partition()).copied().unwrap_or_else(|| log.low());
            if from < log.low() {
                tracing::warn!(checkpoint = from, log_low = log.low(), "the click log no longer holds every click after the checkpoint");
            }
            let (source, progress, tail) =
                log_source::start_tail(log.clone(), cfg.dataflow.partition(), from, cfg.dataflow.batch_size, stop_rx.clone(), pending);
            health = Some(Arc::new(log_source::ClickLogHealth(Arc::clone(&progress))));
            tasks.push(tail);
            let slot = Mutex::new(Some(source));
            let reader = pcfg.first_worker();
            let factory: SourceFactory = Arc::new(move |index, _peers| {
                let mine = if index == reader { slot.lock().take() } else { None };
                match mine {
                    Some(s) => Box::new(s) as Box<dyn ClickSource>,
                    None => Box::new(NoSource),
                }
            });
            (factory, progress, changes)
        };
        let inputs = PipelineInputs { source: factory, enricher, clock: Arc::new(SystemClock), link_meta: meta_feed };
        let open_anomalies = anomalies.open();
        let outputs = PipelineOutputs { changes, dead_letters: Some(dead_letter_sink()), anomalies: anomalies.sink, stored_anomalies: anomalies.stored };
        if snapshot.is_some() && !open_anomalies.is_empty() {
            tracing::info!(open = open_anomalies.len(), "the restored abuse detectors take over the anomalies open in the anomaly store");
        }
        let options = checkpoints_on.then_some(CheckpointOptions { restore: snapshot, open_anomalies });
        let handle =
            tokio::task::spawn_blocking(move || crate::sched::run_with_default_slice(|| pipeline::start_with_checkpoints(&pcfg, inputs, outputs, options)))
                .await
                .context("dataflow start task failed")?
                .context("could not start the dataflow")?;
        let views = handle.views().clone();
        // Restored by now: after a switch of inputs the sinks get every row again (before
        // the first checkpoint of this run can be taken).
        if let Some(path) = &restored_path {
            checkpoint::resend_after_switch(&views, path, switch.as_ref());
        }
        let stats: Arc<dyn Fn() -> PipelineStats + Send + Sync> = Arc::new(handle.stats_handle());
        let failure = failure::FailureWatch(Arc::new(handle.failure_handle()));
        let agreed = Arc::new(handle.agreed_handle());
        tasks.push(tokio::spawn(telemetry(views.clone(), Arc::clone(&progress), Arc::clone(&stats), stop_rx)));
        let (checkpoint_stop, checkpoint_stop_rx) = watch::channel(false);
        let checkpointer = handle.checkpoints().map(|h| checkpoint::Checkpointer { handle: h.clone(), acks, dir: checkpoint_dir, source: source_id });
        let checkpoint_task = checkpointer.clone().map(|c| tokio::spawn(checkpoint::run(c, cfg.dataflow.checkpoint_interval, checkpoint_stop_rx)));
        tracing::info!(
            workers = cfg.dataflow.workers,
            processes = cfg.dataflow.processes,
            process_id = cfg.dataflow.process_id(),
            kafka = cfg.kafka.enabled(),
            from = ?start_offsets,
            checkpoints = checkpoints_on,
            log_head = log.head(),
            "click dataflow started"
        );
        Ok(DataflowJob {
            pipeline: Some(handle),
            views,
            progress,
            feeder,
            stop,
            tasks,
            stats,
            checkpointer,
            checkpoint_stop,
            checkpoint_task,
            health,
            failure,
            agreed,
        })
    }

    /// The materialized views.
    pub fn views(&self) -> &Views {
        &self.views
    }

    /// How far the views are behind the log (or the Kafka topic).
    pub fn progress(&self) -> &Arc<dyn SourceProgress> {
        &self.progress
    }

    /// The click log tail as a required `/readyz` dependency (`None` in Kafka mode).
    pub fn health(&self) -> Option<Arc<dyn crate::health::Dependency>> {
        self.health.clone()
    }

    /// Why the dataflow failed while it ran, for `/readyz` ([`DataflowHealth`]) and the
    /// process's stop ([`failure`]).
    pub fn failure(&self) -> failure::FailureWatch {
        self.failure.clone()
    }

    /// `/readyz`'s `dataflow` entry: failed, or (a cluster) not yet past the processes'
    /// settings check ([`DataflowHealth`]).
    pub fn dataflow_health(&self) -> DataflowHealth {
        DataflowHealth { failure: self.failure.clone(), agreed: Arc::clone(&self.agreed) }
    }

    /// Views plus frontier, for the stats API.
    pub fn view_source(&self) -> ViewSource {
        ViewSource { views: self.views.clone(), frontier: Arc::clone(&self.progress) as Arc<dyn sluice_serving::stats::Frontier> }
    }

    /// The hook to register with the link API (`None` on processes other than 0).
    pub fn link_hook(&self) -> Option<Arc<dyn LinkChangeHook>> {
        self.feeder.as_ref().map(|f| Arc::clone(f) as Arc<dyn LinkChangeHook>)
    }

    /// The abuse detectors' blocklist input (`None` once stopped); entries reach the graph
    /// through process 0.
    pub fn blocklist(&self) -> Option<sluice_dataflows::anomaly::BlocklistSender> {
        self.pipeline.as_ref().map(|p| p.blocklist().clone())
    }

    /// Counters of the pipeline since start.
    pub fn stats(&self) -> PipelineStats {
        (self.stats)()
    }

    /// Waits until every click in the log when this was called is counted in the views;
    /// returns the frontier reached. Errors after `timeout`.
    pub async fn sync(&self, timeout: Duration) -> anyhow::Result<AsOf> {
        let t0 = self.progress.now_ms();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let a = self.views.as_of();
            if self.progress.covered_until(a.epoch).is_some_and(|c| c >= t0) {
                return Ok(a);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("the dataflow did not catch up with the click log within {timeout:?} ({} events behind)", self.progress.backlog());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Takes a checkpoint now ([`checkpoint::take`]); `None` when checkpoints are off.
    ///
    /// Errors: as [`checkpoint::take`].
    pub async fn checkpoint(&self) -> Option<anyhow::Result<std::path::PathBuf>> {
        match &self.checkpointer {
            Some(c) => Some(checkpoint::take(c, checkpoint::ACK_TIMEOUT, None).await),
            None => None,
        }
    }
}

impl Drop for DataflowJob {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = self.checkpoint_stop.send(true);
        if let Some(t) = &self.checkpoint_task {
            t.abort();
        }
        for t in &self.tasks {
            t.abort();
        }
        // PipelineHandle's own Drop shuts the workers down and joins them.
    }
}

async fn telemetry(views: Views, progress: Arc<dyn SourceProgress>, stats: Arc<dyn Fn() -> PipelineStats + Send + Sync>, mut stop: watch::Receiver<bool>) {
    let backlog = metrics::gauge!("sluice_dataflow_backlog_events");
    let lag = metrics::gauge!("sluice_dataflow_lag_seconds");
    let outcome = |o: &'static str| metrics::counter!("sluice_dataflow_events_total", "outcome" => o);
    let (received, accepted, duplicates) = (outcome("received"), outcome("accepted"), outcome("duplicate"));
    loop {
        let s = stats();
        received.absolute(s.received);
        accepted.absolute(s.accepted);
        duplicates.absolute(s.duplicates);
        backlog.set(progress.backlog() as f64);
        if let Some(c) = progress.covered_until(views.as_of().epoch) {
            lag.set((progress.now_ms() - c).max(0) as f64 / 1000.0);
        }
        tokio::select! {
            () = tokio::time::sleep(TELEMETRY_INTERVAL) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
    }
}
