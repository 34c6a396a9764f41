//! Starting and driving the graph.
//!
//! [`start`] launches `workers` timely worker threads (or joins a timely cluster) and
//! returns a [`PipelineHandle`]. Every worker builds the same graph:
//!
//! ```text
//! source ─▶ gate ─▶ DedupByEventId ─▶ EnrichClicks ─▶ LookupLinkMeta ─▶ (CapVisitorFloods) ─▶ MaintainRollups ─▶ probe
//!            │      (by event id)                     (by code)  ▲       │(views shard)
//!            │           └──▶ SinkDeadLetters                     │       └─▶ change stream
//!            ├─ dead letters (invalid, future, too late)          │
//!            └─ watermark reports (broadcast) ───────────────────┴─▶ dedup, rollups
//! link metadata feed (worker 0) ─▶ ArrangeLinkMetaByCode ─────────┘
//! ```
//!
//! Timestamps are **processing epochs**: milliseconds of a monotonic processing clock that
//! every worker of the process shares ([`crate::clock::EpochClock::process`]: `Instant`
//! based, started at the wall-clock time of its first use; sources that report coverage
//! read the same clock). They only order and batch the work; event time travels inside the records and
//! the watermark reports, so a late event simply updates an old bucket in a new epoch.
//!
//! Each worker loop: poll the source (at most `batch_size` records, not while the graph lags
//! its input by more than `max_inflight_epochs`), pass every record through the
//! [`SourceGate`], send accepted clicks and changed watermark reports at the current epoch,
//! drain the link-metadata feed (worker 0), advance the inputs to the current epoch, step.
//!
//! In a timely cluster the graph also compares, at epoch 0, the settings every process must
//! share (`agreement`: worker threads, event-time semantics, `[abuse]`, and the caller's
//! [`crate::config::ClusterConfig::agreed`]); a difference fails the pipeline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::TryRecvError;
use std::time::Duration;

use differential_dataflow::input::Input as _;
use parking_lot::Mutex;
use sluice_schemas::LinkMeta;
use timely::dataflow::ProbeHandle;
use timely::dataflow::operators::Probe;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::vec::Input as _;

use crate::anomaly::{AnomalyCounters, AnomalySink, BlocklistSender, blocklist_channel};
use crate::changes::{ChangeCollector, ChangeSink};
use crate::clock::Clock;
use crate::config::PipelineConfig;
use crate::dead_letter::{DeadLetterCounters, DeadLetterSink, emit};
use crate::hash::FxHashMap;
use crate::operators::{
    AbuseWiring, CapVisitorFloods, ClickEnricher, DedupByEventId, DedupParams, EnrichClicks, LookupLinkMeta, MaintainRollups, RollupTarget, SinkDeadLetters,
    arrange_link_meta,
};
use crate::records::GatedClick;
use crate::source::{SourceFactory, SourceStatus};
use crate::views::Views;
use crate::wake::WakeSlot;
use crate::watermark::{SourceGate, WatermarkReport};
use crate::{Error, Result};

mod agreement;
mod handle;
mod link_meta;
mod settle;

pub use link_meta::{LinkMetaChange, LinkMetaFeed, LinkMetaSender, link_meta_channel};
pub use settle::Quiescence;

/// Longest a worker parks while it has nothing to do: no new input, and every epoch it
/// introduced has been through the graph. New input wakes it at once ([`crate::wake`]); the
/// timeout bounds how stale the idle bookkeeping gets (freshness `as_of`, idle partitions,
/// change-stream heartbeats, checkpoint cuts) and costs an idle process ~10 wake-ups/s.
pub const IDLE_PARK: Duration = Duration::from_millis(100);
/// Park while records are in flight (the rollups wait for later epochs before applying).
const BUSY_PARK: Duration = Duration::from_millis(1);

/// What the binary feeds in.
pub struct PipelineInputs<E: ClickEnricher> {
    /// Builds each worker's click source.
    pub source: SourceFactory,
    /// Prototype enricher; every worker uses its own clone.
    pub enricher: E,
    /// Processing clock for the gate (future check, idleness).
    pub clock: Arc<dyn Clock>,
    /// Link-metadata feed (`None`: every click gets `meta = None`).
    pub link_meta: Option<LinkMetaFeed>,
}

/// Where results go besides the [`Views`].
#[derive(Default)]
pub struct PipelineOutputs {
    /// Change stream for sinks (`None`: rows are not tracked for it).
    pub changes: Option<ChangeSink>,
    /// Dead-letter sink (dead letters are counted either way).
    pub dead_letters: Option<DeadLetterSink>,
    /// Anomaly events of the abuse detectors (`[abuse]`; counted either way).
    pub anomalies: Option<AnomalySink>,
    /// What the sink's store holds (default: nothing, or no store). The detectors reconcile
    /// the episodes they open with it, so that a replay of clicks a previous run has seen
    /// continues the anomalies it derived instead of opening twins
    /// ([`crate::operators::abuse::AbuseWiring::known`]); the open ones [`CheckpointOptions`]
    /// has them adopt are left out.
    pub stored_anomalies: crate::anomaly::StoredAnomalies,
}

/// Counters of this process since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// Records read from sources.
    pub received: u64,
    /// Records accepted by the gates.
    pub accepted: u64,
    /// Duplicates dropped by dedup.
    pub duplicates: u64,
    /// Dead letters (all reasons).
    pub dead_lettered: u64,
}

struct Shared {
    shutdown: AtomicBool,
    caught_up: Vec<AtomicU64>,
    finished: Vec<AtomicBool>,
    counters: Arc<DeadLetterCounters>,
    received: AtomicU64,
    accepted: AtomicU64,
    duplicates: Arc<AtomicU64>,
    epochs: crate::clock::EpochClock,
    anomalies: Arc<AnomalyCounters>,
    /// Per local worker: the anomaly sink's input frontier.
    anomaly_progress: Vec<Arc<AtomicU64>>,
    /// The local worker threads (woken by shutdown and [`PipelineHandle::sync`]).
    workers: WakeSlot,
    /// Why the first local worker that failed did ([`PipelineHandle::failure`]).
    failure: Mutex<Option<String>>,
    /// Local workers that have passed the cluster's settings check (module `agreement`;
    /// all of them from the start without a cluster): [`PipelineHandle::agreed`].
    agreed: AtomicUsize,
    /// Settling event time at a graceful stop ([`PipelineHandle::settle_begin`]) and
    /// before a checkpoint ([`crate::checkpoint::CheckpointHandle::quiesce`]).
    settle: settle::Settle,
}

impl Shared {
    /// Whether every local worker's abuse detectors have handed the events of epochs up to
    /// `epoch` to the anomaly sink (their sink's input frontier is past it).
    fn detectors_past(&self, epoch: u64) -> bool {
        self.anomaly_progress.iter().all(|p| p.load(Ordering::Acquire) > epoch)
    }

    /// Whether settle request `generation` is done ([`settle::Settle::done`]); wakes the
    /// workers so that they see it.
    fn settled(&self, generation: u64, views: &Views) -> bool {
        self.workers.wake();
        self.settle.done(generation, views, |w| self.finished[w].load(Ordering::Acquire), |e| self.detectors_past(e))
    }

    fn fail(&self, why: String) {
        tracing::error!(error = %why, "a dataflow worker failed; the views no longer follow the input");
        self.failure.lock().get_or_insert(why);
    }
}

/// The text of a panic's payload (`&str` or `String`, what `panic!` makes; other payloads
/// read `(no message)`).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str)).unwrap_or("(no message)")
}

/// A running pipeline. Dropping it shuts the workers down and waits for them.
pub struct PipelineHandle {
    views: Views,
    shared: Arc<Shared>,
    blocklist: BlocklistSender,
    checkpoints: Option<crate::checkpoint::CheckpointHandle>,
    guards: Option<timely::communication::WorkerGuards<std::result::Result<(), String>>>,
}

impl std::fmt::Debug for PipelineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineHandle").field("views", &self.views).finish_non_exhaustive()
    }
}

/// Starts the pipeline (module docs). Errors: [`Error::Config`] for an invalid
/// configuration, [`Error::Start`] if timely cannot start (e.g. cluster peers unreachable).
pub fn start<E: ClickEnricher>(config: &PipelineConfig, inputs: PipelineInputs<E>, outputs: PipelineOutputs) -> Result<PipelineHandle> {
    start_with_checkpoints(config, inputs, outputs, None)
}

/// Checkpointing of [`start_with_checkpoints`] ([`crate::checkpoint`]).
#[derive(Debug, Default)]
pub struct CheckpointOptions {
    /// State to start from (the sources must start at its offsets).
    pub restore: Option<crate::checkpoint::DataflowSnapshot>,
    /// The latest event of every anomaly still open (`open`/`updated`) in the anomaly store.
    /// With `restore`, the abuse detectors take them over, so that each is updated or closed
    /// like any other (their windows are not in the checkpoint; module
    /// [`crate::operators::abuse::anomaly_lifecycle`], **Restart**); ignored without (the
    /// input is replayed from the start and derives them again, reconciled with
    /// [`PipelineOutputs::stored_anomalies`]).
    pub open_anomalies: Vec<sluice_schemas::Anomaly>,
}

/// [`start`] with checkpoints enabled (`Some`): restores `restore` and lets the caller take
/// snapshots through [`PipelineHandle::checkpoints`].
///
/// Errors: as [`start`]; [`Error::Config`] with more than one process;
/// [`Error::SketchDecode`] for a snapshot row whose sketch does not decode.
pub fn start_with_checkpoints<E: ClickEnricher>(
    config: &PipelineConfig,
    inputs: PipelineInputs<E>,
    outputs: PipelineOutputs,
    mut checkpoints: Option<CheckpointOptions>,
) -> Result<PipelineHandle> {
    config.validate()?;
    let sem = config.semantics.clone();
    let workers = config.workers;
    let first_worker = config.first_worker();
    let views = Views::new(config.peers(), first_worker, workers, sem.retention_ms(), outputs.changes.is_some());
    let shared = Arc::new(Shared {
        shutdown: AtomicBool::new(false),
        caught_up: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        finished: (0..workers).map(|_| AtomicBool::new(false)).collect(),
        counters: Arc::default(),
        received: AtomicU64::new(0),
        accepted: AtomicU64::new(0),
        duplicates: Arc::default(),
        epochs: crate::clock::EpochClock::process(),
        anomalies: Arc::default(),
        anomaly_progress: (0..workers).map(|_| Arc::new(AtomicU64::new(0))).collect(),
        workers: WakeSlot::new(),
        failure: Mutex::new(None),
        agreed: AtomicUsize::new(if config.cluster.is_some() { 0 } else { workers }),
        settle: settle::Settle::new(workers, config.abuse.enabled.then(|| config.abuse.tick_ms())),
    });
    let collector = outputs.changes.map(|sink| Arc::new(ChangeCollector::new(workers, sink)));
    let adopt: Arc<[sluice_schemas::Anomaly]> = match checkpoints.as_mut() {
        Some(o) if o.restore.is_some() => std::mem::take(&mut o.open_anomalies).into(),
        _ => Arc::from([]),
    };
    let mut known = outputs.stored_anomalies.clone();
    if !adopt.is_empty() {
        let adopted: std::collections::BTreeSet<uuid::Uuid> = adopt.iter().map(|a| a.anomaly_id).collect();
        known.open = known.open.iter().filter(|a| !adopted.contains(&a.anomaly_id)).cloned().collect();
    }
    let ckpt = match checkpoints {
        Some(o) => {
            crate::checkpoint::check_restorable(config.cluster.as_ref().map_or(1, |c| c.addresses.len()))?;
            let flood = config.abuse.flood_cap.cap().is_some();
            let c = Arc::new(crate::checkpoint::Checkpoints::new(workers, first_worker, config.peers(), flood, o.restore));
            c.restore_views(&views)?;
            Some(c)
        }
        None => None,
    };
    let ckpt2 = ckpt.clone();
    let dl_sink = outputs.dead_letters;
    let proto = Mutex::new(inputs.enricher);
    let meta_feed = Mutex::new(inputs.link_meta);
    let (blocklist, block_feed) = blocklist_channel();
    let block_feed = Mutex::new(Some(block_feed));
    let (abuse_cfg, anomaly_sink) = (config.abuse.clone(), outputs.anomalies);
    let flood_cap = config.abuse.flood_cap.cap();
    let (factory, clock) = (inputs.source, inputs.clock);
    let (batch, max_inflight, interval) = (config.batch_size, config.max_inflight_epochs, config.change_interval);
    let apply_interval = config.apply_interval;
    let (cluster_process, agreed) = (config.cluster.as_ref().map(|c| c.process_id), agreement::settings(config));
    let cluster_processes = config.cluster.as_ref().map_or(1, |c| c.addresses.len());
    let (views2, shared2) = (views.clone(), Arc::clone(&shared));

    let run_worker = move |worker: &mut timely::worker::Worker| -> std::result::Result<(), String> {
        let (index, peers) = (worker.index(), worker.peers());
        let local = index - first_worker;
        let _span = tracing::info_span!("dataflow_worker", worker = index).entered();
        let shared = &shared2;
        shared.workers.register();
        let mut source = factory(index, peers);
        let enricher = proto.lock().clone();
        let mut params = DedupParams::from_semantics(&sem);
        params.duplicates = Arc::clone(&shared.duplicates);
        params.checkpoint = ckpt2.as_ref().map(|c| crate::checkpoint::DedupHook::new(c, local));
        let mut target = RollupTarget::new(&views2, local).with_apply_interval(apply_interval);
        if let Some(c) = &collector {
            target = target.with_changes(Arc::clone(c), interval);
        }
        if let Some(c) = &ckpt2 {
            target = target.with_checkpoint(crate::checkpoint::RollupHook::new(c, local));
        }
        let flood_hook = ckpt2.as_ref().map(|c| crate::checkpoint::FloodCapHook::new(c, local));
        let (counters, sink) = (Arc::clone(&shared.counters), dl_sink.clone());
        let probe = ProbeHandle::new();
        let abuse = AbuseWiring {
            config: abuse_cfg.clone(),
            clock: Arc::clone(&clock),
            counters: Arc::clone(&shared.anomalies),
            sink: anomaly_sink.clone(),
            progress: Arc::clone(&shared.anomaly_progress[local]),
            adopt: Arc::clone(&adopt),
            known: known.clone(),
        };
        let (clicks_in, reports_in, meta_in, block_in) = worker.dataflow::<u64, _, _>(|scope| {
            let (clicks_in, clicks) = scope.new_input::<GatedClick>();
            let (reports_in, reports) = scope.new_input::<WatermarkReport>();
            let (meta_in, meta) = scope.new_collection::<(String, LinkMeta), isize>();
            let (block_in, blocklist) = scope.new_collection::<String, isize>();
            if let Some(process) = cluster_process {
                let shared = Arc::clone(shared);
                let processes = cluster_processes;
                let passed = Arc::clone(&shared);
                agreement::check(
                    scope,
                    (process, processes),
                    local == 0,
                    agreed.clone(),
                    move |why| shared.fail(why),
                    move || {
                        passed.agreed.fetch_add(1, Ordering::AcqRel);
                    },
                );
            }
            let reports = reports.broadcast();
            let (deduped, late) = clicks.dedup_by_event_id(reports.clone(), params);
            late.sink_dead_letters(counters, sink);
            let (deduped, floods) = abuse.tap(deduped);
            let linked = deduped.enrich_clicks(enricher).lookup_link_meta(arrange_link_meta(meta.clone()));
            let linked = abuse.attach(linked, floods, reports.clone(), meta, blocklist, &probe);
            let linked = match flood_cap {
                Some(cap) => linked.cap_visitor_floods_with(reports.clone(), cap, sem.lateness_ms(), flood_hook),
                None => linked,
            };
            linked.maintain_rollups(reports, target).probe_with(&probe);
            (clicks_in, reports_in, meta_in, block_in)
        });
        let (mut clicks_in, mut reports_in, mut meta_in) = (Some(clicks_in), Some(reports_in), Some(meta_in));
        let meta_rx = if index == 0 { meta_feed.lock().take() } else { None };
        if let Some(rx) = &meta_rx {
            rx.1.register();
        }
        if meta_rx.is_none()
            && let Some(m) = meta_in.take()
        {
            m.close();
        }
        // The blocklist feed, like link metadata, enters at global worker 0.
        let block_rx = if index == 0 { block_feed.lock().take() } else { None };
        let mut block_in = if block_rx.is_some() {
            Some(block_in)
        } else {
            block_in.close();
            None
        };
        let mut gate = SourceGate::new(&sem, &source.partitions(), clock.now_ms());
        let mut cut = ckpt2.as_ref().map(|c| crate::checkpoint::SourceCut::new(c, local, source.partitions(), &mut gate, clock.now_ms()));
        let (mut buf, mut accepted, mut dead, mut reports) = (Vec::with_capacity(batch), Vec::new(), Vec::new(), Vec::new());
        // Announce every declared partition at epoch 0, before any data: the global
        // watermark then includes partitions that have not delivered yet (W stays at its
        // minimum until they do or turn idle), on every worker of every process.
        gate.tick(clock.now_ms(), &mut reports);
        if let Some(ri) = reports_in.as_mut()
            && !reports.is_empty()
        {
            ri.send_batch(&mut reports);
            reports.clear();
        }
        let mut offsets: FxHashMap<u32, u64> = FxHashMap::default();
        let mut offset_list: Vec<(u32, u64)> = Vec::new();
        let mut epoch = 0u64;
        // Last epoch at which input was sent (the worker parks long only once the graph has
        // processed it: every epoch up to the current one is through the probe).
        let mut sent_epoch = 0u64;
        loop {
            let now_epoch = shared.epochs.now_epoch().max(epoch);
            if now_epoch > epoch {
                epoch = now_epoch;
                if let Some(i) = clicks_in.as_mut() {
                    i.advance_to(epoch);
                }
                if let Some(i) = reports_in.as_mut() {
                    i.advance_to(epoch);
                }
                if let Some(i) = meta_in.as_mut() {
                    i.advance_to(epoch);
                    i.flush();
                }
                if let Some(i) = block_in.as_mut() {
                    i.advance_to(epoch);
                    i.flush();
                }
            }
            if let Some(c) = cut.as_mut() {
                c.tick(epoch, &gate);
            }
            if shared.shutdown.load(Ordering::Acquire) {
                break;
            }
            shared.settle.on_worker(local, &mut gate, clock.now_ms());
            let mut progressed = false;
            let mut caught_up = true;
            if let (Some(ci), Some(ri)) = (clicks_in.as_mut(), reports_in.as_mut()) {
                if probe.less_than(&epoch.saturating_sub(max_inflight)) {
                    caught_up = false;
                } else if shared.settle.holding() {
                    // A checkpoint quiesces (module `settle`): nothing is read, event time
                    // still advances on the settled partitions.
                    caught_up = false;
                    gate.tick(clock.now_ms(), &mut reports);
                    if !reports.is_empty() {
                        ri.send_batch(&mut reports);
                        reports.clear();
                    }
                } else {
                    let status = source.poll(&mut buf, batch);
                    gate.hold(source.pending_floor());
                    let now = clock.now_ms();
                    let n = buf.len();
                    // `send_batch` takes the vector's allocation: size it once per batch
                    // instead of growing it by doubling (a copy of every record per step).
                    accepted.reserve(n);
                    for rec in buf.drain(..) {
                        let o = offsets.entry(rec.partition).or_insert(0);
                        *o = (*o).max(rec.offset + 1);
                        match gate.admit(rec, now) {
                            Ok(c) => accepted.push(c),
                            Err(d) => dead.push(d),
                        }
                    }
                    gate.tick(now, &mut reports);
                    shared.received.fetch_add(n as u64, Ordering::Relaxed);
                    shared.accepted.fetch_add(accepted.len() as u64, Ordering::Relaxed);
                    if !accepted.is_empty() {
                        ci.send_batch(&mut accepted);
                        accepted.clear();
                    }
                    if !reports.is_empty() {
                        ri.send_batch(&mut reports);
                        reports.clear();
                    }
                    if !offsets.is_empty() {
                        if let Some(c) = cut.as_mut() {
                            c.sent(epoch, offsets.iter());
                        }
                        if let Some(c) = &collector {
                            offset_list.extend(offsets.iter().map(|(&p, &o)| (p, o)));
                            c.record_offsets(local, epoch, &offset_list);
                            offset_list.clear();
                        }
                        offsets.clear();
                    }
                    emit(&dead, &shared.counters, dl_sink.as_ref());
                    dead.clear();
                    progressed = n > 0;
                    match status {
                        SourceStatus::Active => caught_up = false,
                        SourceStatus::Idle => {}
                        SourceStatus::Finished => {
                            clicks_in = None;
                            reports_in = None;
                            shared.caught_up[local].store(epoch, Ordering::Release);
                            shared.finished[local].store(true, Ordering::Release);
                        }
                    }
                }
            }
            if let (Some(rx), Some(mi)) = (meta_rx.as_ref(), meta_in.as_mut()) {
                loop {
                    match rx.0.try_recv() {
                        Ok(ch) => {
                            mi.update((ch.meta.code.clone(), ch.meta), ch.diff);
                            progressed = true;
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            if let Some(m) = meta_in.take() {
                                m.close();
                            }
                            break;
                        }
                    }
                }
                if let Some(mi) = meta_in.as_mut() {
                    mi.flush();
                }
            }
            if let (Some(rx), Some(bi)) = (block_rx.as_ref(), block_in.as_mut()) {
                for ch in rx.0.try_iter() {
                    bi.update(ch.pattern, ch.diff);
                    progressed = true;
                }
                bi.flush();
            }
            if caught_up && clicks_in.is_some() {
                shared.caught_up[local].store(epoch, Ordering::Release);
            }
            if clicks_in.is_none() && meta_in.is_none() {
                break;
            }
            if progressed {
                // Input sent at `epoch` is in flight until the inputs pass `epoch`.
                sent_epoch = epoch;
                worker.step();
            } else if sent_epoch >= epoch || probe.less_than(&epoch) {
                worker.step_or_park(Some(BUSY_PARK));
            } else {
                worker.step_or_park(Some(IDLE_PARK));
            }
        }
        drop((clicks_in, reports_in, meta_in, block_in));
        shared.finished[local].store(true, Ordering::Release);
        Ok(())
    };
    // A worker that panics (a bug, or timely's "MergeQueue poisoned." once a peer process of
    // the cluster is gone) is recorded before the panic goes on: the other workers and the
    // binary keep running, and only `failure` tells them the views stopped following.
    let failures = Arc::clone(&shared);
    let worker_fn = move |worker: &mut timely::worker::Worker| -> std::result::Result<(), String> {
        let index = worker.index();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_worker(worker))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                failures.fail(format!("dataflow worker {index} failed: {e}"));
                Err(e)
            }
            Err(payload) => {
                failures.fail(format!("dataflow worker {index} panicked: {}", panic_text(payload.as_ref())));
                std::panic::resume_unwind(payload)
            }
        }
    };

    let guards = timely::execute(config.timely_config(), worker_fn).map_err(Error::Start)?;
    tracing::info!(workers, peers = config.peers(), first_worker, "dataflow started");
    let checkpoints = ckpt.map(|c| {
        let s = Arc::clone(&shared);
        let (q, views) = (Arc::clone(&shared), views.clone());
        crate::checkpoint::CheckpointHandle::new(c, Arc::new(move || s.epochs.now_epoch()), Arc::new(move || settle::Quiescence::begin(&q, &views)))
    });
    Ok(PipelineHandle { views, shared, blocklist, checkpoints, guards: Some(guards) })
}
