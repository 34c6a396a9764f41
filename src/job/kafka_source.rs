//! The dataflow's input in Kafka mode (`[kafka] brokers` set): the click topic read by the
//! timely workers, freshness measured against the broker, and frontier-driven offset commits.
//!
//! * **Sources** ([`KafkaClickSource`]): worker `i` of `peers` reads the partitions `p` with
//!   `p % peers == i` through its own consumer (explicit assignment, no group membership,
//!   `sluice_connectors::kafka::KafkaSource`). Polls never block (`poll_batch` with a zero
//!   timeout drains what librdkafka already fetched). Undecodable messages are skipped and
//!   counted as `sluice_events_dead_lettered_total{reason="undecodable"}`.
//! * **Start position**: the offsets of the restored checkpoint ([`super::checkpoint`]; the
//!   checkpoint wins over the group's committed offsets, since the restored state is exactly
//!   "every record below them"), and the earliest retained offset for partitions it does not
//!   name — every partition when there is no checkpoint (the state is rebuilt by replaying
//!   the topic; dedup by `event_id` makes the replay exact).
//! * **Commits** (the `sluice-kafka-progress` thread): the pipeline's change stream reports,
//!   per processing-epoch frontier, the next offset of every partition whose records are all
//!   reflected in the change batches up to that frontier (`ChangeBatch::offsets`). The
//!   thread commits, at most once per [`COMMIT_INTERVAL`], the offsets of the latest batch
//!   that every view sink (Redis, ClickHouse) has durably applied (their `applied_epoch`);
//!   without external sinks, the latest batch the in-memory views applied. So a committed
//!   offset never runs ahead of a sink, and the group's lag is the dataflow's true backlog.
//! * **Freshness** ([`KafkaProgress`], the stats API's `freshness`): every
//!   [`WATCH_INTERVAL`] the thread reads the time `t`, then the partitions' high watermarks;
//!   when the sources have handed the dataflow everything below them, every click the broker
//!   acknowledged before `t` entered the graph no later than the last hand-over, and is
//!   counted once the views applied that epoch.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use parking_lot::Mutex;
use sluice_connectors::kafka::{KafkaConfig, KafkaSource, OffsetCommitter, StartOffsets, partitions_for_worker};
use sluice_dataflows::changes::{ChangeBatch, ChangeSink};
use sluice_dataflows::config::PipelineConfig;
use sluice_dataflows::source::{ClickSource, SourceFactory, SourceRecord, SourceStatus};
use sluice_serving::stats::Frontier;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::log_source::{EpochClock, NoSource, TailProgress};

/// How often the high watermarks are read for freshness and backlog.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(50);
/// How often applied offsets are committed to the consumer group.
pub const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// Timeout of one watermark or commit request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of the watermark request at start ([`fit_start_offsets`]).
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Caught-up instants remembered (one per [`WATCH_INTERVAL`]: ~7 minutes).
const HISTORY: usize = 8192;
/// Tolerance between the progress clock and the pipeline's epoch clock (ms).
const CLOCK_SLACK_MS: i64 = 3;

/// How far the views are behind their input: implemented by the embedded log's
/// [`TailProgress`] and Kafka's [`KafkaProgress`].
pub trait SourceProgress: Frontier + std::fmt::Debug {
    /// Now, ms since the epoch UTC, on the clock `covered_until` instants are measured with.
    fn now_ms(&self) -> i64;
}

impl SourceProgress for TailProgress {
    fn now_ms(&self) -> i64 {
        TailProgress::now_ms(self)
    }
}

/// The epoch every external view sink has durably applied (every change batch with
/// `epoch_upper` at or below it is written).
pub type SinkAcks = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Freshness and backlog of the Kafka input (module docs).
#[derive(Debug)]
pub struct KafkaProgress {
    clock: EpochClock,
    /// Next offset handed to the dataflow, per local partition.
    delivered: Mutex<BTreeMap<i32, i64>>,
    /// Progress-clock time of the latest hand-over of records (ms).
    last_delivery: AtomicI64,
    /// Messages in the broker the local sources have not handed over yet.
    backlog: AtomicU64,
    /// Ascending `(epoch needed, caught-up instant)`.
    caught_up: Mutex<VecDeque<(i64, i64)>>,
    evicted: Mutex<Option<(i64, i64)>>,
}

impl KafkaProgress {
    fn new(partitions: &[i32]) -> KafkaProgress {
        KafkaProgress {
            clock: EpochClock::process(),
            delivered: Mutex::new(partitions.iter().map(|&p| (p, 0)).collect()),
            last_delivery: AtomicI64::new(i64::MIN),
            backlog: AtomicU64::new(0),
            caught_up: Mutex::new(VecDeque::with_capacity(256)),
            evicted: Mutex::new(None),
        }
    }

    /// Progress of sources starting at `start` (partition → next offset; 0 for the others):
    /// records below a restored checkpoint's offsets count as handed over, or a partition
    /// with nothing new would look behind forever (backlog, freshness).
    fn starting_at(partitions: &[i32], start: &BTreeMap<i32, i64>) -> KafkaProgress {
        let p = KafkaProgress::new(partitions);
        {
            let mut d = p.delivered.lock();
            for (part, &o) in start {
                if let Some(e) = d.get_mut(part) {
                    *e = (*e).max(o);
                }
            }
        }
        p
    }

    /// A source handed over records up to `next` (partition → next offset).
    fn handed_over(&self, next: &BTreeMap<i32, i64>) {
        // Time first: an observer that sees the new offsets also sees this time or a later one.
        self.last_delivery.fetch_max(self.clock.now_ms(), Ordering::AcqRel);
        let mut d = self.delivered.lock();
        for (&p, &o) in next {
            let e = d.entry(p).or_insert(0);
            *e = (*e).max(o);
        }
    }

    /// `highs` were read after time `t`: record `t` as caught up if everything below them has
    /// been handed over.
    fn observe(&self, t: i64, highs: &BTreeMap<i32, i64>) {
        let behind: u64 = {
            let d = self.delivered.lock();
            highs.iter().map(|(p, &h)| u64::try_from(h - d.get(p).copied().unwrap_or(0)).unwrap_or(0)).sum()
        };
        self.backlog.store(behind, Ordering::Release);
        if behind > 0 {
            return;
        }
        let need = t.max(self.last_delivery.load(Ordering::Acquire));
        let mut q = self.caught_up.lock();
        if q.back().is_some_and(|&(n, c)| n >= need || c >= t) {
            return;
        }
        q.push_back((need, t));
        if q.len() > HISTORY
            && let Some(old) = q.pop_front()
        {
            *self.evicted.lock() = Some(old);
        }
    }
}

impl Frontier for KafkaProgress {
    fn covered_until(&self, applied_epoch: u64) -> Option<i64> {
        let limit = i64::try_from(applied_epoch).unwrap_or(i64::MAX).saturating_sub(CLOCK_SLACK_MS);
        let q = self.caught_up.lock();
        let i = q.partition_point(|&(need, _)| need < limit);
        if i > 0 {
            return Some(q[i - 1].1);
        }
        self.evicted.lock().filter(|&(need, _)| need < limit).map(|(_, t)| t)
    }

    fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Acquire)
    }
}

impl SourceProgress for KafkaProgress {
    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// One worker's [`ClickSource`] over its assigned partitions (module docs).
pub struct KafkaClickSource {
    source: KafkaSource,
    partitions: Vec<u32>,
    progress: Arc<KafkaProgress>,
    errors_logged: Option<Instant>,
}

impl std::fmt::Debug for KafkaClickSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaClickSource").field("partitions", &self.partitions).finish_non_exhaustive()
    }
}

impl ClickSource for KafkaClickSource {
    fn partitions(&self) -> Vec<u32> {
        self.partitions.clone()
    }

    fn poll(&mut self, out: &mut Vec<SourceRecord>, max: usize) -> SourceStatus {
        let batch = match self.source.poll_batch(max, Duration::ZERO) {
            Ok(b) => b,
            Err(e) => {
                if self.errors_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    self.errors_logged = Some(Instant::now());
                    tracing::error!(error = %e, partitions = ?self.partitions, "kafka source failed; retrying");
                }
                return SourceStatus::Idle;
            }
        };
        if !batch.dead_letters.is_empty() {
            metrics::counter!("sluice_events_dead_lettered_total", "reason" => "undecodable").increment(batch.dead_letters.len() as u64);
        }
        let n = batch.records.len();
        out.extend(batch.records.into_iter().filter_map(|r| {
            Some(SourceRecord {
                partition: u32::try_from(r.partition).ok()?,
                offset: u64::try_from(r.offset).ok()?,
                event: r.event,
                backfill: r.backfill,
                arrival_ms: r.timestamp_ms,
            })
        }));
        if !batch.next_offsets.is_empty() {
            self.progress.handed_over(&batch.next_offsets);
        }
        if n > 0 { SourceStatus::Active } else { SourceStatus::Idle }
    }
}

/// The Kafka input of one process's dataflow, built by [`start`].
pub struct KafkaInput {
    /// Hands each local worker its source.
    pub factory: SourceFactory,
    /// Freshness and backlog.
    pub progress: Arc<KafkaProgress>,
    /// The change sink to give the pipeline: records commit points, then forwards to the
    /// external sinks' change sink (if any).
    pub changes: ChangeSink,
    /// The `sluice-kafka-progress` thread (watermarks, commits); ends when `stop` turns true,
    /// after a last commit.
    pub task: JoinHandle<()>,
}

impl std::fmt::Debug for KafkaInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaInput").field("progress", &self.progress).finish_non_exhaustive()
    }
}

/// The start offsets of a checkpoint (partition → next offset) as they fit the click topic
/// now: an offset past a partition's high watermark `highs[p]` cannot come from this topic
/// (it was deleted and created again, or the broker lost its data), so that partition is read
/// from its first offset instead, with a warning — every record in it is new to the
/// restored state (the dedup still drops event ids it holds). Partitions not in `highs`
/// are kept as they are.
pub fn fit_start_offsets(topic: &str, mut start: BTreeMap<i32, i64>, highs: &BTreeMap<i32, i64>) -> BTreeMap<i32, i64> {
    start.retain(|p, o| match highs.get(p) {
        Some(&high) if *o > high => {
            tracing::warn!(
                topic,
                partition = p,
                checkpoint_offset = *o,
                high_watermark = high,
                "the checkpoint's offset is past the end of this click topic partition: the topic was created again or lost records; reading the partition from its first offset"
            );
            false
        }
        _ => true,
    });
    start
}

/// Opens one consumer per local worker of `pcfg` on `[kafka] click-topic` (from `start`:
/// partition → next offset, the earliest offset for partitions not in it) and starts the
/// progress thread (module docs). `changes` are the external sinks' change sink; `acks`
/// reports what they durably applied (`None`: no external sink).
///
/// Errors: the broker unreachable or the topic missing while opening the consumers.
///
/// # Panics
/// If called outside a tokio runtime.
pub async fn start(
    kafka: &KafkaConfig,
    pcfg: &PipelineConfig,
    changes: Option<ChangeSink>,
    acks: Option<SinkAcks>,
    start: BTreeMap<i32, i64>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<KafkaInput> {
    let (kcfg, first, workers, peers) = (kafka.clone(), pcfg.first_worker(), pcfg.workers, pcfg.peers());
    let (committer, sources, partitions, start_at) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let committer = OffsetCommitter::new(&kcfg).context("invalid [kafka] configuration")?;
        let count = committer.partition_count().context("could not read the click topic's partitions")?;
        let all: Vec<i32> = (0..count).collect();
        let highs = committer.high_watermarks(&all, OPEN_TIMEOUT).context("could not read the click topic's high watermarks")?;
        let start = fit_start_offsets(&kcfg.click_topic, start, &highs);
        let mut sources = Vec::with_capacity(workers);
        let mut partitions = Vec::new();
        for w in first..first + workers {
            partitions.extend(partitions_for_worker(count, w, peers)?);
            sources.push(Some(KafkaSource::open(&kcfg, w, peers, StartOffsets::Explicit(start.clone())).context("could not open the kafka source")?));
        }
        Ok((committer, sources, partitions, start))
    })
    .await
    .context("kafka source open task failed")??;
    let progress = Arc::new(KafkaProgress::starting_at(&partitions, &start_at));
    let slots = Mutex::new(sources);
    let p2 = Arc::clone(&progress);
    let factory: SourceFactory = Arc::new(move |index, _peers| {
        let mine = index.checked_sub(first).and_then(|i| slots.lock().get_mut(i).and_then(Option::take));
        match mine {
            Some(source) => {
                let partitions = source.assigned_partitions().iter().filter_map(|&p| u32::try_from(p).ok()).collect();
                Box::new(KafkaClickSource { source, partitions, progress: Arc::clone(&p2), errors_logged: None }) as Box<dyn ClickSource>
            }
            None => Box::new(NoSource),
        }
    });
    let pending: Arc<Mutex<VecDeque<ChangePoint>>> = Arc::default();
    let p3 = Arc::clone(&pending);
    let tee: ChangeSink = Arc::new(move |b: ChangeBatch| {
        if !b.offsets.is_empty() {
            let offsets = b.offsets.iter().filter_map(|o| Some((i32::try_from(o.partition).ok()?, i64::try_from(o.next_offset).ok()?))).collect();
            p3.lock().push_back(ChangePoint { epoch_upper: b.epoch_upper, offsets });
        }
        if let Some(inner) = &changes {
            inner(b);
        }
    });
    let driver = Driver { committer, partitions, progress: Arc::clone(&progress), pending, acks, committed: BTreeMap::new(), stop };
    let task = tokio::task::spawn_blocking(move || driver.run());
    Ok(KafkaInput { factory, progress, changes: tee, task })
}

/// Removes every change point whose batch the sinks applied (`epoch_upper <= applied`) and
/// returns the commit point of the last of them (points are cumulative: the last one covers
/// the earlier ones); `None` if the sinks have not applied the oldest one yet.
fn take_applied(q: &mut VecDeque<ChangePoint>, applied: u64) -> Option<BTreeMap<i32, i64>> {
    let mut last = None;
    while q.front().is_some_and(|c| c.epoch_upper <= applied) {
        last = q.pop_front();
    }
    last.map(|c| c.offsets)
}

/// A change batch's frontier and the commit point it carries.
struct ChangePoint {
    epoch_upper: u64,
    offsets: BTreeMap<i32, i64>,
}

struct Driver {
    committer: OffsetCommitter,
    partitions: Vec<i32>,
    progress: Arc<KafkaProgress>,
    pending: Arc<Mutex<VecDeque<ChangePoint>>>,
    acks: Option<SinkAcks>,
    committed: BTreeMap<i32, i64>,
    stop: watch::Receiver<bool>,
}

impl Driver {
    fn run(mut self) {
        let mut last_commit = Instant::now();
        let mut warned: Option<Instant> = None;
        let mut warn = |what: &str, e: &dyn std::fmt::Display| {
            if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                warned = Some(Instant::now());
                tracing::warn!(error = %e, "{what}");
            }
        };
        loop {
            // A dropped sender stops it too: a start that failed after this thread began
            // (the dataflow runtime not starting) drops the job without a stop signal, and a
            // thread left running would hold the runtime's shutdown, and the process, for ever.
            if *self.stop.borrow() || self.stop.has_changed().is_err() {
                break;
            }
            let t = self.progress.clock.now_ms();
            match self.committer.high_watermarks(&self.partitions, REQUEST_TIMEOUT) {
                Ok(highs) => self.progress.observe(t, &highs),
                Err(e) => warn("could not read the click topic's watermarks", &e),
            }
            if last_commit.elapsed() >= COMMIT_INTERVAL {
                last_commit = Instant::now();
                if let Err(e) = self.commit_applied() {
                    warn("could not commit applied kafka offsets; retrying", &e);
                }
            }
            std::thread::sleep(WATCH_INTERVAL);
        }
        if let Err(e) = self.commit_applied() {
            tracing::warn!(error = %e, "could not commit applied kafka offsets at shutdown");
        }
        tracing::debug!(committed = ?self.committed, "kafka progress thread stopped");
    }

    /// Commits the offsets of the latest change batch every sink has applied, if they moved.
    fn commit_applied(&mut self) -> sluice_connectors::Result<()> {
        let applied = self.acks.as_ref().map_or(u64::MAX, |a| a());
        let Some(target) = take_applied(&mut self.pending.lock(), applied) else { return Ok(()) };
        let mut next = self.committed.clone();
        for (&p, &o) in &target {
            let e = next.entry(p).or_insert(o);
            *e = (*e).max(o);
        }
        if next == self.committed {
            return Ok(());
        }
        if let Err(e) = self.committer.commit(&next) {
            // Keep the commit point for the next attempt.
            self.pending.lock().push_front(ChangePoint { epoch_upper: 0, offsets: next });
            return Err(e);
        }
        metrics::gauge!("sluice_kafka_committed_offsets_sum").set(next.values().sum::<i64>() as f64);
        self.committed = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_commit_points_every_sink_applied_are_taken() {
        let point = |epoch_upper: u64, o: i64| ChangePoint { epoch_upper, offsets: BTreeMap::from([(0, o), (1, o / 2)]) };
        let mut q: VecDeque<ChangePoint> = [point(5, 10), point(10, 20), point(15, 30)].into();
        assert_eq!(take_applied(&mut q, 4), None, "the sinks are behind the oldest batch");
        assert_eq!(q.len(), 3);
        assert_eq!(take_applied(&mut q, 12), Some(BTreeMap::from([(0, 20), (1, 10)])), "the latest batch at or below the ack");
        assert_eq!(q.len(), 1, "epoch 15 waits");
        assert_eq!(take_applied(&mut q, 14), None);
        assert_eq!(take_applied(&mut q, u64::MAX), Some(BTreeMap::from([(0, 30), (1, 15)])), "no external sink: the views applied it");
        assert!(q.is_empty());
    }

    #[test]
    fn a_restored_start_counts_as_handed_over() {
        let p = KafkaProgress::starting_at(&[0, 1], &BTreeMap::from([(0, 40), (1, 7), (5, 9)]));
        p.observe(100, &BTreeMap::from([(0, 40), (1, 9)]));
        assert_eq!(p.backlog(), 2, "only partition 1's two new records are behind");
        p.observe(200, &BTreeMap::from([(0, 40), (1, 7)]));
        assert_eq!(p.backlog(), 0);
        assert_eq!(p.covered_until(10_000), Some(200), "caught up without any new record");
    }

    #[test]
    fn caught_up_needs_everything_handed_over_and_waits_for_the_last_hand_over() {
        let p = KafkaProgress::new(&[0, 1]);
        p.observe(100, &BTreeMap::from([(0, 5), (1, 0)]));
        assert_eq!(p.backlog(), 5);
        assert_eq!(p.covered_until(10_000), None, "partition 0 is behind");
        p.handed_over(&BTreeMap::from([(0, 5)]));
        let handed = p.last_delivery.load(Ordering::Acquire);
        p.observe(handed - 50, &BTreeMap::from([(0, 5), (1, 0)]));
        assert_eq!(p.backlog(), 0);
        // The instant is `handed - 50`, but the records went in at `handed`: the views must
        // have applied that epoch first.
        assert_eq!(p.covered_until(u64::try_from(handed).unwrap()), None);
        assert_eq!(p.covered_until(u64::try_from(handed + CLOCK_SLACK_MS + 1).unwrap()), Some(handed - 50));
        // With no hand-over since, a later instant needs only its own epoch.
        p.observe(handed + 1_000, &BTreeMap::from([(0, 5), (1, 0)]));
        assert_eq!(p.covered_until(u64::try_from(handed + 1_000 + CLOCK_SLACK_MS + 1).unwrap()), Some(handed + 1_000));
    }

    #[test]
    fn start_offsets_past_a_partitions_end_read_it_from_its_first_offset() {
        // The attack of session 49: a checkpoint of {0: 7400, 1: 1880, 2: 500} against a
        // topic created again, whose partitions now end at 100, 1880 and 11408.
        let start = BTreeMap::from([(0, 7_400), (1, 1_880), (2, 500)]);
        let highs = BTreeMap::from([(0, 100), (1, 1_880), (2, 11_408)]);
        assert_eq!(fit_start_offsets("clicks", start.clone(), &highs), BTreeMap::from([(1, 1_880), (2, 500)]));
        // Partitions the broker did not report keep their offsets; an empty topic drops all.
        assert_eq!(fit_start_offsets("clicks", start.clone(), &BTreeMap::new()), start);
        let empty = BTreeMap::from([(0, 0), (1, 0), (2, 0)]);
        assert_eq!(fit_start_offsets("clicks", start, &empty), BTreeMap::new());
    }
}
