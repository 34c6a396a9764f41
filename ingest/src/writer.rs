//! The log writer: drains the intake channel into the click log with group commits.
//!
//! Batching: the writer waits for one event, then lets events queue until `max_batch` are
//! there or `linger` has passed since the first, takes them and appends the batch in one
//! fsync'd transaction. While an append is in flight new events queue in the channel, so under
//! load batches grow by themselves and the fsync cost is shared by many events. While
//! lingering the writer sleeps (looking at the queue's length every millisecond) rather than
//! waiting on the channel, so senders do not wake it once per event.
//!
//! Failures: an append that fails is retried with capped exponential backoff
//! (`retry_initial` doubling up to `retry_max`) up to `max_attempts` attempts in total; then
//! the batch is counted as dropped (`reason="log_error"`) and logged at error level. Events
//! keep queueing (and overflow is counted) meanwhile. Nothing is lost silently. A failing log
//! is logged once per failure episode (from a failed attempt until an append or probe
//! succeeds again, however many retries and batches a full disk takes): the first failed
//! attempt is a warning, the next ones debug lines (`sluice_click_log_write_errors_total`
//! counts each), and the success that ends it one info line, "recovered after N failed
//! attempts"; each dropped batch is still an error. An I/O error
//! (a full disk) closes the [`ClickLog`]'s file; the log reopens it at the next attempt (with
//! its own backoff, `sluice_connectors::click_log` docs), so appends resume by themselves once
//! the disk has room again, without a restart.
//!
//! Recovery with no clicks: while the latest append failed (`/readyz` shows the writer failed)
//! and nothing is queued, the writer probes the log ([`EventLog::probe`]: for the click log a
//! reopen and a commit that writes no event) on the same backoff (`retry_initial` doubling up
//! to `retry_max`); the first probe that succeeds clears the failed state. Without it an
//! instance taken out of a load balancer by its 503 would never get the click that brings it
//! back. A successful `POST /v1/events` append ([`crate::DurableAppender::with_stats`]) clears
//! it too.
//!
//! File check: every [`LogWriterConfig::file_check`] (2 s) the writer asks the log whether
//! its file is still at its path and whole ([`EventLog::check_file`]): the click log restores
//! a deleted or truncated `clicks.redb` from its open file, saves its open file to a side file
//! when another file took the path (and reports that until the stop), and reports a truncated
//! file it could not write back. A
//! problem is logged at error level when it appears and shown by `/readyz`
//! ([`crate::IngestStats::file_failure`]) until it is gone.
//!
//! Shutdown: when every [`crate::ClickSender`] is dropped, the writer appends what is left
//! in the channel and its task completes with a [`WriterSummary`].
//!
//! Appends run on the writer's own OS thread (`sluice-click-log`), one batch at a time. An
//! append is a CPU burst of up to a few milliseconds (encoding, B-tree inserts, the commit);
//! on a machine where it shares a CPU with a tokio worker, the worker's requests wait while
//! it runs. `perf sched` of `sluice bench redirect` (session 6: 1 worker pinned with the
//! writer on one CPU, paced at half the max rate) showed the append thread preempting the
//! worker ~300 times a second as it woke up, runs of up to 5.6 ms. So the thread runs under
//! Linux `SCHED_BATCH` by default ([`LogWriterConfig::policy`]): it keeps its full CPU share
//! (no starvation, whatever else runs on the machine) but never preempts the thread running
//! on its CPU when it wakes; it runs when the worker waits for requests. Its niceness can
//! also be raised ([`LogWriterConfig::nice_increment`], default 0).
//!
//! A slower append thread makes clicks durable later, never lost: the intake's
//! [`crate::PendingFloor`] (claimed before each drain, released after each append that
//! emptied the channel) tells the dataflow's log source which accepted clicks are not in the
//! log yet, so neither its freshness `as_of` nor its idle watermark overtakes them. (In
//! session 6, without the floor, a niceness of +5 on a busy machine let the idle watermark
//! overtake clicks waiting to be appended, and the e2e test
//! `redirects_survive_redis_and_clickhouse_outages_and_the_sinks_catch_up` saw 401 of 437.)

use std::ops::Range;
use std::time::{Duration, Instant};

use sluice_connectors::click_log::ClickLog;
use sluice_schemas::ClickEvent;
use tokio::task::JoinHandle;

use crate::channel::ClickReceiver;
use crate::pending::STALE_CHECK;
use crate::telemetry::{ClicksLogged, DropReason, LogWriteFailed, RecoveredBy};

/// Something events can be appended to durably; implemented by [`ClickLog`]. A seam so the
/// writer's retry logic can be tested against failing logs.
pub trait EventLog: Clone + Send + Sync + 'static {
    /// Appends `events` atomically and durably, returning their offsets (blocking I/O).
    fn append(&self, events: &[ClickEvent]) -> sluice_connectors::Result<Range<u64>>;

    /// Appends `events` marked as backfill (they bypass the dataflow's lateness limit, not
    /// dedup). Logs that cannot carry the mark refuse with
    /// [`sluice_connectors::Error::Config`] (the default), rather than storing the events as
    /// live ones.
    fn append_backfill(&self, events: &[ClickEvent]) -> sluice_connectors::Result<Range<u64>> {
        let _ = events;
        Err(sluice_connectors::Error::Config("this event log cannot mark backfill events".into()))
    }

    /// Checks that the log's file is still where it was opened, repairing what it can (the
    /// click log restores a deleted `clicks.redb` from its open file); blocking I/O, called by
    /// the writer every [`LogWriterConfig::file_check`]. Errors describe what is wrong; the
    /// default finds nothing.
    fn check_file(&self) -> sluice_connectors::Result<()> {
        Ok(())
    }

    /// Checks that the log takes writes again, without appending events (blocking I/O); called
    /// by the writer on its retry backoff while its latest append failed and no batch is
    /// waiting (module docs, "Failures"). `None` (the default): this log cannot be probed, the
    /// failed state then ends only with the next successful append.
    fn probe(&self) -> Option<sluice_connectors::Result<()>> {
        None
    }
}

impl EventLog for ClickLog {
    fn append(&self, events: &[ClickEvent]) -> sluice_connectors::Result<Range<u64>> {
        ClickLog::append(self, events)
    }

    fn append_backfill(&self, events: &[ClickEvent]) -> sluice_connectors::Result<Range<u64>> {
        ClickLog::append_backfill(self, events)
    }

    fn check_file(&self) -> sluice_connectors::Result<()> {
        ClickLog::check_file(self).map(|_| ())
    }

    fn probe(&self) -> Option<sluice_connectors::Result<()>> {
        Some(ClickLog::probe_write(self))
    }
}

/// Tuning of the log writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogWriterConfig {
    /// Most events per append (default 4096).
    pub max_batch: usize,
    /// Longest wait after the first event of a batch for more to arrive (default 5 ms);
    /// zero appends whatever is queued at once.
    pub linger: Duration,
    /// First retry delay after a failed append (default 10 ms).
    pub retry_initial: Duration,
    /// Cap of the doubling retry delay (default 1 s).
    pub retry_max: Duration,
    /// Attempts per batch before it is dropped, at least 1 (default 10, ≈ 3.5 s of retries).
    pub max_attempts: u32,
    /// Niceness added to the append thread's (Linux `setpriority` on the thread; default 0
    /// = the process's own, see the module docs for why; ignored where not permitted or not supported). See the
    /// module docs.
    pub nice_increment: i32,
    /// Scheduling policy of the append thread (Linux; default [`AppendPolicy::Batch`], see
    /// the module docs).
    pub policy: AppendPolicy,
    /// How often the writer checks that the log's file is still at its path
    /// ([`EventLog::check_file`]; default 2 s, zero = never; module docs).
    pub file_check: Duration,
}

/// Scheduling policy of the append thread (Linux `sched_setscheduler` on the thread;
/// ignored where not supported or not permitted, logged at debug level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendPolicy {
    /// The process's own (`SCHED_OTHER` as a rule).
    Inherit,
    /// `SCHED_BATCH`: same CPU share as `SCHED_OTHER` at the same niceness, but a waking
    /// append thread never preempts the thread running on its CPU (a tokio worker in the
    /// middle of requests); it runs when that thread blocks or its slice ends.
    Batch,
    /// `SCHED_IDLE`: runs only when nothing else wants the CPU.
    Idle,
}

impl Default for LogWriterConfig {
    fn default() -> Self {
        Self {
            max_batch: 4096,
            linger: Duration::from_millis(5),
            retry_initial: Duration::from_millis(10),
            retry_max: Duration::from_secs(1),
            max_attempts: 10,
            nice_increment: 0,
            policy: AppendPolicy::Batch,
            file_check: Duration::from_secs(2),
        }
    }
}

/// What a writer did over its lifetime (returned when its task ends).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterSummary {
    /// Successful appends.
    pub batches: u64,
    /// Events made durable.
    pub logged: u64,
    /// Events dropped after exhausting retries.
    pub dropped: u64,
    /// Failed append attempts.
    pub failed_attempts: u64,
}

/// Spawns the writer task on the current tokio runtime; see the module docs.
///
/// # Panics
/// If called outside a tokio runtime.
pub fn spawn_log_writer<L: EventLog>(receiver: ClickReceiver, log: L, config: LogWriterConfig) -> JoinHandle<WriterSummary> {
    tokio::spawn(run_writer(receiver, log, config))
}

async fn run_writer<L: EventLog>(mut receiver: ClickReceiver, log: L, config: LogWriterConfig) -> WriterSummary {
    // Present from the start at 0 (alerts on rate() or absent() need the series).
    metrics::counter!("sluice_click_log_write_errors_total").increment(0);
    let max_batch = config.max_batch.max(1);
    let mut summary = WriterSummary::default();
    let appender = match AppendThread::spawn(log.clone(), config.nice_increment, config.policy) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(error = %e, "could not start the click log append thread; appending on the blocking pool");
            None
        }
    };
    let mut buf: Vec<ClickEvent> = Vec::with_capacity(max_batch);
    let pending = std::sync::Arc::clone(&receiver.pending);
    // A claim not yet released (the last batch was cut at `max_batch`).
    let mut held = false;
    let mut next_file_check = tokio::time::Instant::now() + config.file_check;
    let mut probe = Probe::new(&config);
    loop {
        if !config.file_check.is_zero() && tokio::time::Instant::now() >= next_file_check {
            check_file(&log, &receiver).await;
            next_file_check = tokio::time::Instant::now() + config.file_check;
        }
        if receiver.rx.is_empty() {
            probe.run_if_due(&log, &receiver).await;
        }
        match tokio::time::timeout(STALE_CHECK, receiver.rx.recv_many(&mut buf, max_batch)).await {
            Ok(0) => break, // every sender dropped and the channel is empty
            Ok(_) => {}
            // Idle: a sender may have left a mark for an event already appended
            // (crate::pending); claim and drain as for a batch (usually an empty one).
            Err(_) if held || pending.has_unclaimed() => {}
            Err(_) => continue,
        }
        if !buf.is_empty() && !config.linger.is_zero() {
            linger(&receiver, buf.len(), max_batch, config.linger).await;
        }
        // Every event marked before the claim is in the channel (or in `buf`): the drain
        // below takes it unless the batch fills up first.
        pending.claim();
        held = true;
        // Whatever arrived meanwhile, up to `max_batch`, without waiting.
        let mut emptied = false;
        while buf.len() < max_batch {
            match receiver.rx.try_recv() {
                Ok(ev) => buf.push(ev),
                Err(_) => {
                    emptied = true;
                    break;
                }
            }
        }
        if !buf.is_empty() {
            buf = write_batch(&log, appender.as_ref(), buf, &config, &receiver, &mut summary).await;
        }
        if emptied {
            pending.release();
            held = false;
        }
    }
    if let Some(a) = appender {
        a.stop().await;
    }
    tracing::debug!(batches = summary.batches, logged = summary.logged, dropped = summary.dropped, "click log writer stopped");
    summary
}

/// Runs [`EventLog::check_file`] on the blocking pool and records the outcome in the stats
/// (`/readyz`): logged at error level when a problem appears, at info level when it is gone.
async fn check_file<L: EventLog>(log: &L, receiver: &ClickReceiver) {
    let log2 = log.clone();
    let result = match tokio::task::spawn_blocking(move || log2.check_file()).await {
        Ok(r) => r.map_err(|e| crate::telemetry::error_chain(&e)),
        Err(e) => Err(format!("the click log file check failed: {e}")),
    };
    let before = receiver.stats.file_failure();
    match result {
        Ok(()) => {
            if before.is_some() {
                tracing::info!("the click log file is in place again");
            }
            receiver.stats.set_file_failure(None);
        }
        Err(error) => {
            if before.as_deref() != Some(error.as_str()) {
                tracing::error!(%error, "click log file check failed");
            }
            receiver.stats.set_file_failure(Some(error));
        }
    }
}

/// The writer's probes of a failed log (module docs, "Recovery with no clicks").
struct Probe {
    initial: Duration,
    max: Duration,
    /// Delay after the next failed probe.
    delay: Duration,
    /// When the next probe is due; `None` while the log is not failed (set when a failure
    /// is first seen, one delay later: the failed append was just tried).
    next: Option<tokio::time::Instant>,
}

impl Probe {
    fn new(config: &LogWriterConfig) -> Self {
        Self { initial: config.retry_initial, max: config.retry_max.max(config.retry_initial), delay: config.retry_initial, next: None }
    }

    /// Probes `log` when its latest append failed and the backoff has passed; records a
    /// success (the failed state ends, logged at info level) or the probe's error.
    async fn run_if_due<L: EventLog>(&mut self, log: &L, receiver: &ClickReceiver) {
        if receiver.stats.append_failure().is_none() {
            self.delay = self.initial;
            self.next = None;
            return;
        }
        let now = tokio::time::Instant::now();
        let due = *self.next.get_or_insert(now + self.delay);
        if now < due {
            return;
        }
        let log2 = log.clone();
        let result = match tokio::task::spawn_blocking(move || log2.probe()).await {
            Ok(None) => {
                // Not probeable: wait for the next append.
                self.next = Some(tokio::time::Instant::now() + self.max);
                return;
            }
            Ok(Some(r)) => r.map_err(|e| crate::telemetry::error_chain(&e)),
            Err(e) => Err(format!("the click log probe failed: {e}")),
        };
        match result {
            Ok(()) => {
                receiver.stats.append_succeeded(RecoveredBy::Probe);
                self.delay = self.initial;
                self.next = None;
            }
            Err(error) => {
                // Not the first failure of the episode, as a rule: the failed append was.
                if receiver.stats.append_failed(error.clone()) {
                    tracing::warn!(%error, "click log probe failed");
                } else {
                    tracing::debug!(%error, "click log probe failed");
                }
                self.delay = (self.delay * 2).min(self.max);
                self.next = Some(tokio::time::Instant::now() + self.delay);
            }
        }
    }
}

/// Longest sleep between two looks at the queue while lingering.
const LINGER_STEP: Duration = Duration::from_millis(1);

/// Waits until `linger` has passed since the batch's first event, `max_batch` events
/// (`have` taken plus those queued) are available, or every sender is gone. It sleeps and
/// looks at the queue's length at most every [`LINGER_STEP`] instead of receiving: under
/// load a receiver waiting on the channel is woken by every send, a cost each redirect
/// would pay on the worker thread.
async fn linger(receiver: &ClickReceiver, have: usize, max_batch: usize, linger: Duration) {
    let deadline = tokio::time::Instant::now() + linger;
    loop {
        if have + receiver.rx.len() >= max_batch || receiver.rx.is_closed() {
            return;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline.min(now + LINGER_STEP)).await;
    }
}

/// Appends `batch` with retries; returns the emptied buffer for reuse.
async fn write_batch<L: EventLog>(
    log: &L,
    appender: Option<&AppendThread>,
    mut batch: Vec<ClickEvent>,
    config: &LogWriterConfig,
    receiver: &ClickReceiver,
    summary: &mut WriterSummary,
) -> Vec<ClickEvent> {
    let max_attempts = config.max_attempts.max(1);
    let mut delay = config.retry_initial;
    let n = batch.len() as u64;
    for attempt in 1..=max_attempts {
        let started = Instant::now();
        let joined = match appender {
            Some(a) => a.append(batch).await,
            None => {
                let log2 = log.clone();
                tokio::task::spawn_blocking(move || {
                    let r = log2.append(&batch);
                    (batch, r)
                })
                .await
                .map_err(|e| e.to_string())
            }
        };
        let result;
        (batch, result) = match joined {
            Ok(pair) => pair,
            Err(e) => {
                // The append panicked: the batch went with it.
                tracing::error!(error = %e, batch = n, "click log append task failed; dropping batch");
                receiver.stats.append_failed(format!("the append task failed: {e}"));
                receiver.stats.dropped(DropReason::LogError, n);
                summary.dropped += n;
                return Vec::with_capacity(config.max_batch.max(1));
            }
        };
        match result {
            Ok(range) => {
                ClicksLogged { source: "redirect", count: n, first_offset: range.start, elapsed: started.elapsed() }.emit();
                receiver.stats.logged(n);
                summary.batches += 1;
                summary.logged += n;
                batch.clear();
                return batch;
            }
            Err(e) => {
                summary.failed_attempts += 1;
                let error = crate::telemetry::error_chain(&e);
                let first_in_episode = receiver.stats.append_failed(error.clone());
                LogWriteFailed { error: &error, attempt, max_attempts, batch: batch.len(), first_in_episode }.emit();
                if attempt < max_attempts {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(config.retry_max);
                }
            }
        }
    }
    receiver.stats.dropped(DropReason::LogError, n);
    summary.dropped += n;
    batch.clear();
    batch
}

/// The result of one append: the batch back (for reuse) and the log's answer.
type AppendResult = (Vec<ClickEvent>, sluice_connectors::Result<Range<u64>>);

/// A batch to append and where to send the result.
type AppendJob = (Vec<ClickEvent>, tokio::sync::oneshot::Sender<AppendResult>);

/// The OS thread running one writer's appends at a lowered priority (module docs). It
/// ends when this handle is dropped; [`AppendThread::stop`] waits for that (and for its
/// copy of the log to be closed).
struct AppendThread {
    jobs: std::sync::mpsc::Sender<AppendJob>,
    /// Resolves (with an error: the sender is dropped) once the thread has dropped its log.
    done: tokio::sync::oneshot::Receiver<()>,
}

impl AppendThread {
    /// Starts the thread `sluice-click-log` appending to `log`, its niceness raised by
    /// `nice_increment` (best effort: a refusal is logged at debug level).
    ///
    /// Errors when the thread cannot be spawned.
    fn spawn<L: EventLog>(log: L, nice_increment: i32, policy: AppendPolicy) -> std::io::Result<Self> {
        let (jobs, rx) = std::sync::mpsc::channel::<AppendJob>();
        let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new().name("sluice-click-log".into()).spawn(move || {
            if let Err(e) = set_policy(policy) {
                tracing::debug!(error = %e, ?policy, "could not set the click log thread's scheduling policy");
            }
            if nice_increment != 0
                && let Err(e) = raise_nice(nice_increment)
            {
                tracing::debug!(error = %e, nice_increment, "could not lower the click log thread's priority");
            }
            while let Ok((batch, reply)) = rx.recv() {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| log.append(&batch))) {
                    Ok(r) => {
                        let _ = reply.send((batch, r));
                    }
                    // Dropping `reply` tells the writer the append failed with the batch.
                    Err(_) => drop(reply),
                }
            }
            drop(log);
            drop(done_tx);
        })?;
        Ok(AppendThread { jobs, done })
    }

    /// Ends the thread and waits until it has closed its copy of the log (so that the log
    /// can be opened again as soon as the writer's task has completed).
    async fn stop(self) {
        drop(self.jobs);
        let _ = self.done.await;
    }

    /// Appends `batch` on the thread; `Err` (with a description) when the append panicked.
    async fn append(&self, batch: Vec<ClickEvent>) -> Result<AppendResult, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs.send((batch, tx)).map_err(|_| "the click log append thread has stopped".to_owned())?;
        rx.await.map_err(|_| "the click log append panicked".to_owned())
    }
}

/// Adds `increment` to the calling thread's niceness (Linux: `setpriority(PRIO_PROCESS,
/// gettid())` applies to one thread).
#[cfg(target_os = "linux")]
fn raise_nice(increment: i32) -> std::io::Result<()> {
    let tid = rustix::thread::gettid();
    let now = rustix::process::getpriority_process(Some(tid))?;
    rustix::process::setpriority_process(Some(tid), (now + increment).clamp(-20, 19))?;
    Ok(())
}

/// Sets the calling thread's scheduling policy with the kernel's default slice (Linux
/// `sched_setattr(0, ...)` applies to the calling thread, keeping its niceness;
/// `SCHED_BATCH` and `SCHED_IDLE` need no privilege). [`AppendPolicy::Inherit`] keeps the
/// thread's policy. Either way a scheduler slice the thread inherited from the tokio worker
/// that spawned it (`[server] worker-slice`: short, so that request threads preempt
/// background bursts) is dropped: the append thread is one of those bursts.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_policy(policy: AppendPolicy) -> std::io::Result<()> {
    // SAFETY: sched_getscheduler only reads the calling thread's policy.
    let current = unsafe { libc::sched_getscheduler(0) };
    let p = match policy {
        AppendPolicy::Inherit if current < 0 => return Err(std::io::Error::last_os_error()),
        AppendPolicy::Inherit => current,
        AppendPolicy::Batch => libc::SCHED_BATCH,
        AppendPolicy::Idle => libc::SCHED_IDLE,
    };
    if p != libc::SCHED_OTHER && p != libc::SCHED_BATCH && p != libc::SCHED_IDLE {
        return Ok(()); // a real-time policy set by the operator: left alone
    }
    let tid = rustix::thread::gettid();
    let nice = rustix::process::getpriority_process(Some(tid))?;
    let attr = libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: p as u32,
        sched_flags: 0,
        sched_nice: nice,
        sched_priority: 0,
        sched_runtime: 0,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: `attr` is a valid, fully initialised `sched_attr` whose `size` is its size; pid
    // 0 is the calling thread; the kernel only reads it during the call.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const libc::sched_attr, 0u32) };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(not(target_os = "linux"))]
fn set_policy(_policy: AppendPolicy) -> std::io::Result<()> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "scheduling policies are set on Linux only"))
}

#[cfg(not(target_os = "linux"))]
fn raise_nice(_increment: i32) -> std::io::Result<()> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "per-thread niceness is set on Linux only"))
}
