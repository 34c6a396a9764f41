//! [`ClickHouseSink`] (`clickhouse_sink`): batched, retried, idempotent inserts of rollup
//! rows, enriched events and anomalies.
//!
//! A bounded channel feeds one writer task. It buffers rollup rows per granularity keyed by
//! row key (a newer value of a key replaces the buffered one: fewer rows, same result),
//! events and anomalies in arrival order, and sends one `INSERT` per table when `batch-rows`
//! rows are buffered (or `max-pending-rows`, when lower), when `flush-interval` has passed
//! since the first buffered row, or at once when a checkpoint waits for the rows
//! ([`ClickHouseSink::wait_applied`]: a long `flush-interval` must not fail every checkpoint).
//! Buffers are cleared only after ClickHouse acknowledged the insert; failures are retried
//! with capped exponential backoff while new input keeps merging in. `max-pending-rows`
//! bounds that buffer in an outage only: rows beyond it are dropped while the latest attempt
//! failed. While ClickHouse answers, nothing is dropped: a batch larger than the bound (a
//! replay, a large backfill) is taken whole and written at once, and the writer reads no more
//! input until its buffer is written (the forwarder in front of it waits).
//! Migrations run before the first insert (retried the same way), so the sink starts while
//! ClickHouse is down. Nothing here panics or gives up.
//!
//! Idempotence: every table is a `ReplacingMergeTree` (see the DDL); a batch inserted twice
//! (a retry after a lost acknowledgement, a replay after a crash) leaves one row per key
//! under `FINAL`. Rollup rows carry `version = epoch_upper` of their batch, so a replayed
//! older value never wins over a newer one. Inserts set `async_insert = 0`: the
//! acknowledgement means the rows are in a part on disk. They also set
//! `max_partitions_per_insert_block = 0` (no limit): `events_enriched` is partitioned by day,
//! and one insert of a backfill over more than 100 days (ClickHouse's default limit, error
//! `TOO_MANY_PARTS` 252) would otherwise be refused on every retry, holding every later row.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ::clickhouse::{Client, RowOwned, RowWrite};
use sluice_schemas::EnrichedClick;
use sluice_schemas::rollup::{RollupBatch, RollupGranularity};
use tokio::sync::{Notify, mpsc, watch};

use super::client::{client, migrate, within};
use super::config::ClickHouseConfig;
use super::metrics::{InsertFailed, RowsDropped, RowsInserted, describe};
use super::rows::{AnomalyRecord, EnrichedEventRecord, RollupRecord, rollup_table};
use crate::backoff::{Backoff, log_failure};
use crate::{Error, Result};

/// Most rows one `INSERT` carries (larger buffers are sent in several).
const MAX_INSERT_ROWS: usize = 200_000;

/// Input of the sink.
#[derive(Debug, Clone)]
pub enum SinkInput {
    /// Changed rollup rows (absolute values).
    Rollups(RollupBatch),
    /// Deduplicated enriched clicks.
    Events(Vec<EnrichedClick>),
    /// Detected anomalies.
    Anomalies(Vec<AnomalyRecord>),
}

/// Progress of the sink, published after every insert attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClickHouseSinkStatus {
    /// `epoch_upper` of the latest rollup batch whose rows are all inserted.
    pub applied_epoch: u64,
    /// Rows given to the sink and not acknowledged by ClickHouse yet (all tables): buffered,
    /// in an insert in flight, or queued for the writer while it waits for ClickHouse
    /// ([`ClickHouseSink::status`]; [`ClickHouseSink::watch`] counts the writer's own).
    pub pending_rows: usize,
    /// Rows inserted since start (all tables).
    pub rows_written: u64,
    /// Successful inserts since start.
    pub inserts: u64,
    /// Failed attempts (inserts and migrations) since start.
    pub errors: u64,
    /// Rows dropped because the buffer was full. Once any is, `applied_epoch` stops
    /// advancing for the rest of the process (no checkpoint may cover missing rows; the next
    /// start replays from the one before the drop and writes them).
    pub dropped_rows: u64,
    /// Whether the migrations have run.
    pub migrated: bool,
    /// Whether the latest attempt succeeded (true before the first).
    pub healthy: bool,
    /// The latest error, if the latest attempt failed.
    pub last_error: Option<String>,
}

/// Handle of the running sink (module docs).
pub struct ClickHouseSink {
    config: ClickHouseConfig,
    tx: mpsc::Sender<SinkInput>,
    status: watch::Receiver<ClickHouseSinkStatus>,
    task: tokio::task::JoinHandle<()>,
    /// Waits for the applied epoch, which have the writer insert what it buffers at once.
    waiting: Arc<Waiting>,
    /// Rows sent and not taken into the writer's buffer yet ([`Queued`]).
    queued: Arc<Queued>,
}

/// Rows of the input queued in the channel: sent, and not taken by the writer yet. The writer
/// takes input only between requests to ClickHouse, so while a request is in flight (an
/// insert, the migrations of the first attempt) whatever is sent waits here; without this
/// count a ClickHouse that accepts connections and never answers showed `pending_rows: 0`
/// for up to `request-timeout` while rows piled up.
#[derive(Default)]
struct Queued(AtomicUsize);

impl Queued {
    fn add(&self, rows: usize) {
        self.0.fetch_add(rows, Ordering::SeqCst);
    }

    fn sub(&self, rows: usize) {
        self.0.fetch_sub(rows, Ordering::SeqCst);
    }

    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Rows carried by `input` (a rollup batch, events, anomalies).
fn rows_of(input: &SinkInput) -> usize {
    match input {
        SinkInput::Rollups(b) => b.rows.len(),
        SinkInput::Events(e) => e.len(),
        SinkInput::Anomalies(a) => a.len(),
    }
}

/// [`ClickHouseSink::wait_applied`] calls in progress: while there is one, the writer inserts
/// what it buffers without waiting for `flush-interval` (rows that arrive during the wait
/// included), and `wake` interrupts the writer's wait for that interval.
#[derive(Default)]
struct Waiting {
    count: AtomicUsize,
    wake: Notify,
}

/// One wait in [`Waiting::count`] for as long as it lives (also when the wait is dropped).
struct WaitGuard<'a>(&'a Waiting);

impl<'a> WaitGuard<'a> {
    fn new(w: &'a Waiting) -> WaitGuard<'a> {
        w.count.fetch_add(1, Ordering::SeqCst);
        w.wake.notify_one();
        WaitGuard(w)
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for ClickHouseSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseSink").field("status", &*self.status.borrow()).finish()
    }
}

type RollupKey = (String, i64, String, bool, String, String);

impl ClickHouseSink {
    /// Validates `config` and starts the writer on the current Tokio runtime (no I/O yet).
    ///
    /// Errors: [`Error::Config`] for an invalid or disabled configuration.
    pub fn start(config: &ClickHouseConfig) -> Result<ClickHouseSink> {
        let client = client(config)?.with_setting("async_insert", "0").with_setting("max_partitions_per_insert_block", "0");
        describe();
        let (tx, rx) = mpsc::channel(256);
        let initial = ClickHouseSinkStatus { healthy: true, ..ClickHouseSinkStatus::default() };
        let (status_tx, status) = watch::channel(initial.clone());
        let waiting = Arc::new(Waiting::default());
        let queued = Arc::new(Queued::default());
        let writer = Writer {
            client,
            config: config.clone(),
            rollups: Default::default(),
            events: Vec::new(),
            anomalies: Vec::new(),
            pending_epoch: 0,
            first_buffered: None,
            status: initial,
            status_tx,
            waiting: Arc::clone(&waiting),
            queued: Arc::clone(&queued),
        };
        let task = tokio::spawn(writer.run(rx));
        Ok(ClickHouseSink { config: config.clone(), tx, status, task, waiting, queued })
    }

    /// `SELECT 1` on a connection of its own within `timeout` (readiness probes: a ClickHouse
    /// that is down is reported even while the writer has nothing to insert).
    ///
    /// Errors: [`Error::ClickHouse`] (e.g. connection refused), [`Error::Timeout`].
    pub async fn ping(&self, timeout: Duration) -> Result<()> {
        super::client::healthcheck(&self.config, timeout).await
    }

    /// Queues input, waiting while the channel (256 messages) is full.
    ///
    /// Errors: [`Error::Config`] if the writer has stopped (only after shutdown).
    pub async fn send(&self, input: SinkInput) -> Result<()> {
        // A place first (a send given up while waiting counts nothing), then counted before
        // it is in the channel: the writer may take it at once.
        let permit = self.tx.reserve().await.map_err(|_| Error::Config("clickhouse sink is stopped".into()))?;
        self.queued.add(rows_of(&input));
        permit.send(input);
        Ok(())
    }

    /// Queues input without waiting; returns it back when the channel is full or closed.
    pub fn try_send(&self, input: SinkInput) -> std::result::Result<(), SinkInput> {
        let rows = rows_of(&input);
        self.queued.add(rows);
        self.tx.try_send(input).map_err(|e| {
            self.queued.sub(rows);
            match e {
                mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b) => b,
            }
        })
    }

    /// The latest status; its `pending_rows` includes the rows queued for the writer
    /// ([`ClickHouseSinkStatus::pending_rows`]).
    pub fn status(&self) -> ClickHouseSinkStatus {
        let mut s = self.status.borrow().clone();
        s.pending_rows += self.queued.get();
        s
    }

    /// A receiver of the status updates the writer publishes (after each insert attempt and
    /// each input it takes): their `pending_rows` counts the rows the writer holds (buffered
    /// or in an insert in flight), not those still queued for it ([`Self::status`] does).
    pub fn watch(&self) -> watch::Receiver<ClickHouseSinkStatus> {
        self.status.clone()
    }

    /// Waits until every rollup batch with `epoch_upper <= epoch` is inserted and nothing
    /// else is pending; `false` on timeout. The writer inserts what it buffers at once,
    /// without waiting for `flush-interval` (a retry after a failure keeps its backoff).
    pub async fn wait_applied(&self, epoch: u64, timeout: Duration) -> bool {
        let _hurry = WaitGuard::new(&self.waiting);
        let mut rx = self.status.clone();
        tokio::time::timeout(timeout, rx.wait_for(|s| s.applied_epoch >= epoch && s.pending_rows == 0)).await.is_ok_and(|r| r.is_ok())
    }

    /// Closes the input and waits up to `timeout` for the buffers to be inserted; returns the
    /// final status (`pending_rows > 0` if ClickHouse stayed unavailable).
    pub async fn shutdown(self, timeout: Duration) -> ClickHouseSinkStatus {
        let ClickHouseSink { tx, status, task, queued, .. } = self;
        drop(tx);
        let abort = task.abort_handle();
        if tokio::time::timeout(timeout, task).await.is_err() {
            abort.abort();
        }
        let mut s = status.borrow().clone();
        s.pending_rows += queued.get();
        s
    }
}

struct Writer {
    client: Client,
    config: ClickHouseConfig,
    rollups: [HashMap<RollupKey, RollupRecord>; 4],
    events: Vec<EnrichedEventRecord>,
    anomalies: Vec<AnomalyRecord>,
    pending_epoch: u64,
    first_buffered: Option<Instant>,
    status: ClickHouseSinkStatus,
    status_tx: watch::Sender<ClickHouseSinkStatus>,
    waiting: Arc<Waiting>,
    queued: Arc<Queued>,
}

impl Writer {
    fn pending(&self) -> usize {
        self.rollups.iter().map(HashMap::len).sum::<usize>() + self.events.len() + self.anomalies.len()
    }

    /// Buffered rows that make an insert due at once: `batch-rows`, or `max-pending-rows`
    /// when lower (a buffer at its bound is written before more input is read).
    fn full(&self) -> usize {
        self.config.batch_rows.min(self.config.max_pending_rows).max(1)
    }

    async fn run(mut self, mut rx: mpsc::Receiver<SinkInput>) {
        let mut open = true;
        let mut backoff = Backoff::new(self.config.backoff_min, self.config.backoff_max);
        // The first flush is due at once: it runs the migrations (creating the database and
        // tables) before any row arrives, so history queries and readiness are right from
        // the start; on failure it is retried with backoff like any insert.
        let mut retry_at: Option<tokio::time::Instant> = Some(tokio::time::Instant::now());
        loop {
            let pending = self.pending();
            if pending == 0 {
                self.publish_applied();
                if !open {
                    return;
                }
            }
            let due = match (self.first_buffered, retry_at) {
                (_, Some(r)) => Some(r),
                (Some(f), None) if pending < self.full() && open && self.waiting.count.load(Ordering::SeqCst) == 0 => {
                    Some(tokio::time::Instant::from_std(f + self.config.flush_interval))
                }
                (Some(_), None) => Some(tokio::time::Instant::now()),
                (None, None) => None,
            };
            let flush_now = match due {
                Some(at) if at <= tokio::time::Instant::now() => true,
                Some(at) if open => tokio::select! {
                    m = rx.recv() => { self.accept(m, &mut open); retry_at.is_none() && self.pending() >= self.full() }
                    () = tokio::time::sleep_until(at) => true,
                    // A checkpoint waits for the buffer: insert it now (after a failure, the
                    // retry keeps its backoff).
                    () = self.waiting.wake.notified(), if retry_at.is_none() => true,
                },
                Some(at) => {
                    tokio::time::sleep_until(at).await;
                    true
                }
                None => {
                    let m = rx.recv().await;
                    self.accept(m, &mut open);
                    self.pending() >= self.full()
                }
            };
            if !flush_now {
                continue;
            }
            match self.flush().await {
                Ok(()) => {
                    backoff.reset();
                    retry_at = None;
                }
                Err(e) => {
                    if schema_missing(&e) {
                        // The server came back without our database or tables (a new data
                        // directory, a DROP): the next attempt runs the migrations again.
                        self.status.migrated = false;
                    }
                    self.status.errors += 1;
                    self.status.healthy = false;
                    self.status.last_error = Some(e.chain());
                    self.status.pending_rows = self.pending();
                    let n = self.status.errors;
                    InsertFailed { error: &e, pending: self.pending(), log: log_failure(n) }.emit();
                    self.status_tx.send_replace(self.status.clone());
                    retry_at = Some(tokio::time::Instant::now() + backoff.next_delay());
                }
            }
        }
    }

    fn accept(&mut self, m: Option<SinkInput>, open: &mut bool) {
        let Some(m) = m else {
            *open = false;
            return;
        };
        let taken = rows_of(&m);
        // The bound holds in an outage only (module docs): while ClickHouse answers, input is
        // read only when the buffer is below it, and a batch above it is taken whole.
        let room = if self.status.healthy { usize::MAX } else { self.config.max_pending_rows.saturating_sub(self.pending()) };
        let mut dropped = 0u64;
        match m {
            SinkInput::Rollups(mut batch) => {
                self.pending_epoch = self.pending_epoch.max(batch.epoch_upper);
                let mut room = room;
                for row in batch.rows.drain(..) {
                    let rec = RollupRecord::from_row(&row, batch.epoch_upper);
                    let key: RollupKey = (rec.code.clone(), rec.bucket, rec.view.clone(), rec.is_bot, rec.value1.clone(), rec.value2.clone());
                    let map = &mut self.rollups[granularity_index(row.granularity)];
                    if let Some(old) = map.get_mut(&key) {
                        if old.version <= rec.version {
                            *old = rec;
                        }
                    } else if room > 0 {
                        map.insert(key, rec);
                        room -= 1;
                    } else {
                        dropped += 1;
                    }
                }
            }
            SinkInput::Events(evs) => {
                let take = evs.len().min(room);
                dropped += (evs.len() - take) as u64;
                self.events.extend(evs.iter().take(take).map(EnrichedEventRecord::from));
            }
            SinkInput::Anomalies(a) => {
                let take = a.len().min(room);
                dropped += (a.len() - take) as u64;
                self.anomalies.extend(a.into_iter().take(take));
            }
        }
        if dropped > 0 {
            self.status.dropped_rows += dropped;
            RowsDropped { rows: dropped }.emit();
        }
        if self.first_buffered.is_none() && self.pending() > 0 {
            self.first_buffered = Some(Instant::now());
        }
        self.status.pending_rows = self.pending();
        self.status_tx.send_replace(self.status.clone());
        // Only now: in the buffer (published above), or dropped.
        self.queued.sub(taken);
    }

    fn publish_applied(&mut self) {
        self.first_buffered = None;
        if self.status.applied_epoch < self.pending_epoch || self.status.pending_rows != 0 {
            // Rows dropped are not in ClickHouse: what follows them is not "applied" either
            // (no checkpoint may cover them; the next start replays and writes them).
            if self.status.dropped_rows == 0 {
                self.status.applied_epoch = self.status.applied_epoch.max(self.pending_epoch);
            }
            self.status.pending_rows = 0;
            self.status_tx.send_replace(self.status.clone());
        }
    }

    /// Migrates if needed, then inserts every buffer; a buffer is cleared once inserted.
    async fn flush(&mut self) -> Result<()> {
        if !self.status.migrated {
            migrate(&self.config).await?;
            self.status.migrated = true;
        }
        for g in RollupGranularity::ALL {
            let i = granularity_index(g);
            if self.rollups[i].is_empty() {
                continue;
            }
            let rows: Vec<RollupRecord> = self.rollups[i].values().cloned().collect();
            insert(&self.client, self.config.request_timeout, &mut self.status, rollup_table(g), &rows).await?;
            self.rollups[i].clear();
            self.publish_pending();
        }
        // Rows stay in their buffer (and in `pending_rows`) until ClickHouse acknowledged them.
        if !self.events.is_empty() {
            insert(&self.client, self.config.request_timeout, &mut self.status, "events_enriched", &self.events).await?;
            self.events.clear();
            self.publish_pending();
        }
        if !self.anomalies.is_empty() {
            insert(&self.client, self.config.request_timeout, &mut self.status, "anomalies", &self.anomalies).await?;
            self.anomalies.clear();
        }
        self.status.healthy = true;
        self.status.last_error = None;
        self.status.pending_rows = self.pending();
        self.status_tx.send_replace(self.status.clone());
        Ok(())
    }

    /// Publishes `pending_rows` after an insert acknowledged part of the buffers.
    fn publish_pending(&mut self) {
        self.status.pending_rows = self.pending();
        self.status_tx.send_replace(self.status.clone());
    }
}

/// Inserts `rows` into `table` through `client` (chunks of at most [`MAX_INSERT_ROWS`], each
/// within `timeout`), counting each acknowledged chunk in `status`.
async fn insert<T>(client: &Client, timeout: Duration, status: &mut ClickHouseSinkStatus, table: &'static str, rows: &[T]) -> Result<()>
where
    T: RowOwned + RowWrite + Send + Sync,
{
    for chunk in rows.chunks(MAX_INSERT_ROWS) {
        let t0 = Instant::now();
        within("insert rows", timeout, async move {
            let mut insert = client.insert::<T>(table).await?;
            for r in chunk {
                insert.write(r).await?;
            }
            insert.end().await
        })
        .await?;
        status.rows_written += chunk.len() as u64;
        status.inserts += 1;
        RowsInserted { table, rows: chunk.len() as u64, elapsed: t0.elapsed() }.emit();
    }
    Ok(())
}

/// Whether `e` is ClickHouse saying that the database or a table does not exist
/// (`UNKNOWN_DATABASE`, code 81; `UNKNOWN_TABLE`, code 60: ClickHouse's
/// `src/Common/ErrorCodes.cpp`), which the migrations create.
fn schema_missing(e: &Error) -> bool {
    match e {
        Error::ClickHouse { source: ::clickhouse::error::Error::BadResponse(msg), .. } => msg.contains("(UNKNOWN_DATABASE)") || msg.contains("(UNKNOWN_TABLE)"),
        _ => false,
    }
}

fn granularity_index(g: RollupGranularity) -> usize {
    match g {
        RollupGranularity::Minute => 0,
        RollupGranularity::Quarter => 1,
        RollupGranularity::Hour => 2,
        RollupGranularity::Day => 3,
    }
}
