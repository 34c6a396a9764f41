//! [`RedisViewSink`] (`redis_sink`): writes the hot views from the change stream.
//!
//! Rows arrive as [`RollupBatch`]es with **absolute** values. A bounded channel feeds one
//! writer task that keeps the rows not yet written in a map keyed by row key (a newer value
//! replaces an older one), writes them in pipelines of `sink-batch-rows`, and removes them
//! only once Redis acknowledged the pipeline. Failures (Redis down, timeouts) are retried
//! with capped exponential backoff (`sink-backoff-min` doubling to `sink-backoff-max`) while
//! new batches keep merging into the map, so catching up after an outage is writing the
//! latest state of every row that changed meanwhile. Nothing here panics or gives up.
//! `sink-max-pending-rows` bounds that map in an outage only (rows of new keys beyond it are
//! dropped while the latest write failed); while Redis answers, input is read only while the
//! map is below the bound and a larger batch (a replay, a large backfill) is taken whole, so
//! nothing is dropped.
//!
//! Idempotence: minute and day rows are written with `HSET`/`ZADD` of absolute values. The
//! all-time values (per-link totals, top countries/referrers, top links) are maintained by
//! two Lua scripts that compare the new absolute day value with the stored one and add the
//! difference, atomically, so writing the same row twice adds zero — never `INCR` on replay.
//! All-time uniques are the union of the link's day sketches: the stored union sketch is
//! merged with each new day sketch ([`SketchUnion`]); a union is idempotent and day sketches
//! only grow, so replays and reorderings leave the same union. Its estimate is capped at the
//! all-time human clicks, as every uniques figure is (an estimate may exceed the exact
//! visitor count; rows arrive already capped at their own clicks).
//!
//! An emptied Redis (restarted without persistence, `FLUSHDB`) would leave the all-time
//! values at the sum of the days written since: each flush first sets the marker key
//! ([`Keys::views_marker`]) if it is missing and counts that in
//! [`SinkStatus::empty_store_seen`], which the binary answers by having the dataflow resend
//! every retained day row (whose deltas against the emptied day keys rebuild the sums).
//!
//! Which rows Redis gets: minute rows of the total view (series), day rows of the total,
//! country and referrer-domain views (totals and top lists). ClickHouse gets every row.
//! Bots count in `bot_clicks` only; uniques and top lists are of non-bot clicks (the stats
//! API's default).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::{Script, Value};
use sluice_schemas::rollup::{RollupBatch, RollupGranularity, RollupRow, RollupView};
use tokio::sync::{mpsc, watch};

use super::client::GuardedConnection;
use super::config::RedisConfig;
use super::keys::Keys;
use super::metrics::{SinkFlushed, SinkRowsDropped, SinkWriteFailed, describe};
use crate::backoff::{Backoff, log_failure};
use crate::{Error, Result};

/// Merges visitor sketches in the dataflow's canonical byte format. Implemented by the
/// binary with `sluice_dataflows::sketch::VisitorSketch` (connectors do not depend on the
/// dataflow crate).
pub trait SketchUnion: Send + Sync + 'static {
    /// The union of `a` and `b` as canonical bytes, and its unique-visitor estimate.
    /// Errors with a message when either input cannot be decoded.
    fn union(&self, a: &[u8], b: &[u8]) -> std::result::Result<(Vec<u8>, u64), String>;
}

/// Progress of the sink, published after every flush attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkStatus {
    /// `epoch_upper` of the latest batch whose rows are all written (0 before the first).
    pub applied_epoch: u64,
    /// Rows received and not written yet.
    pub pending_rows: usize,
    /// Rows written since start.
    pub rows_written: u64,
    /// Successful pipelines since start.
    pub flushes: u64,
    /// Failed pipelines since start.
    pub errors: u64,
    /// Rows dropped because the buffer was full. Once any is, `applied_epoch` stops
    /// advancing for the rest of the process: the rows are missing from Redis, so no
    /// checkpoint may say they are written; the next start replays from the checkpoint before
    /// the drop and writes them (absolute values).
    pub dropped_rows: u64,
    /// Whether the latest write attempt succeeded (true before the first).
    pub healthy: bool,
    /// The latest error, if the latest attempt failed.
    pub last_error: Option<String>,
    /// Times a write found Redis without the marker key ([`Keys::views_marker`]): a new
    /// Redis, or one that lost its data (restarted without persistence, `FLUSHDB`). The
    /// all-time values are sums of day changes, so the sink's owner answers each increase by
    /// having every retained row resent (`sluice_dataflows::views::Views::resend_to_sinks`).
    pub empty_store_seen: u64,
}

const HASH_DELTA: &str = r"
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local new = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('HINCRBY', KEYS[2], ARGV[1], new - old)
";

const ZSET_DELTA: &str = r"
local old = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
local new = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], new, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if new ~= old then redis.call('ZINCRBY', KEYS[2], new - old, ARGV[1]) end
return 0
";

type RowKey = (String, RollupGranularity, i64, RollupView, bool, Vec<String>);

/// Whether Redis keeps a row of this shape (module docs).
pub fn wanted(row: &RollupRow) -> bool {
    match row.granularity {
        RollupGranularity::Minute => row.view == RollupView::Total,
        RollupGranularity::Day => {
            matches!(row.view, RollupView::Total) || (!row.is_bot && matches!(row.view, RollupView::Country | RollupView::ReferrerDomain))
        }
        _ => false,
    }
}

/// Handle of the running sink (module docs). Dropping it stops the writer after it drained
/// what it can; use [`RedisViewSink::shutdown`] to wait for that.
pub struct RedisViewSink {
    tx: mpsc::Sender<RollupBatch>,
    status: watch::Receiver<SinkStatus>,
    task: tokio::task::JoinHandle<()>,
    /// A connection of its own for [`RedisViewSink::ping`], so a probe never queues behind
    /// the writer's pipelines (which can take seconds while catching up).
    probe: GuardedConnection,
}

impl std::fmt::Debug for RedisViewSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisViewSink").field("status", &*self.status.borrow()).finish()
    }
}

impl RedisViewSink {
    /// Validates `config` and starts the writer task on the current Tokio runtime (the
    /// connection opens lazily: starting succeeds while Redis is down).
    ///
    /// Errors: [`Error::Config`] for an invalid or disabled configuration.
    pub fn start(config: &RedisConfig, sketches: Arc<dyn SketchUnion>) -> Result<RedisViewSink> {
        config.validate()?;
        describe();
        let conn = GuardedConnection::new_lazy(config, config.sink_timeout)?;
        let (tx, rx) = mpsc::channel(64);
        let (status_tx, status) = watch::channel(SinkStatus { healthy: true, ..SinkStatus::default() });
        let writer = Writer {
            conn,
            keys: Keys::new(&config.key_prefix),
            config: config.clone(),
            sketches,
            pending: HashMap::new(),
            pending_epoch: 0,
            status: SinkStatus { healthy: true, ..SinkStatus::default() },
            status_tx,
            hash_delta: Script::new(HASH_DELTA),
            zset_delta: Script::new(ZSET_DELTA),
        };
        let task = tokio::spawn(writer.run(rx));
        let probe = GuardedConnection::new_lazy(config, config.sink_timeout)?;
        Ok(RedisViewSink { tx, status, task, probe })
    }

    /// Sends `PING` within `timeout` on a connection of its own (for `/readyz`: the writer
    /// tries Redis only while rows are pending, so with nothing to write its status cannot
    /// tell that Redis went away). The writer's breaker is neither consulted nor updated.
    ///
    /// Errors: [`Error::Timeout`], [`Error::Redis`] when Redis is unreachable or refuses.
    pub async fn ping(&self, timeout: Duration) -> Result<()> {
        self.probe.ping(timeout).await
    }

    /// Queues a batch, waiting while the channel (64 batches) is full.
    ///
    /// Errors: [`Error::Config`] if the writer has stopped (only after shutdown).
    pub async fn send(&self, batch: RollupBatch) -> Result<()> {
        self.tx.send(batch).await.map_err(|_| Error::Config("redis sink is stopped".into()))
    }

    /// Queues a batch without waiting; returns it back when the channel is full or closed.
    pub fn try_send(&self, batch: RollupBatch) -> std::result::Result<(), RollupBatch> {
        self.tx.try_send(batch).map_err(|e| match e {
            mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b) => b,
        })
    }

    /// The latest status.
    pub fn status(&self) -> SinkStatus {
        self.status.borrow().clone()
    }

    /// A receiver of status updates.
    pub fn watch(&self) -> watch::Receiver<SinkStatus> {
        self.status.clone()
    }

    /// Waits until every batch with `epoch_upper <= epoch` is written; `false` on timeout.
    pub async fn wait_applied(&self, epoch: u64, timeout: Duration) -> bool {
        let mut rx = self.status.clone();
        tokio::time::timeout(timeout, rx.wait_for(|s| s.applied_epoch >= epoch)).await.is_ok_and(|r| r.is_ok())
    }

    /// Closes the input and waits up to `timeout` for the writer to drain; returns the final
    /// status (with `pending_rows > 0` if Redis stayed unavailable).
    pub async fn shutdown(self, timeout: Duration) -> SinkStatus {
        let RedisViewSink { tx, status, task, probe: _ } = self;
        drop(tx);
        let abort = task.abort_handle();
        if tokio::time::timeout(timeout, task).await.is_err() {
            abort.abort();
        }
        status.borrow().clone()
    }
}

struct Writer {
    conn: GuardedConnection,
    keys: Keys,
    config: RedisConfig,
    sketches: Arc<dyn SketchUnion>,
    pending: HashMap<RowKey, RollupRow>,
    pending_epoch: u64,
    status: SinkStatus,
    status_tx: watch::Sender<SinkStatus>,
    hash_delta: Script,
    zset_delta: Script,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<RollupBatch>) {
        let mut backoff = Backoff::new(self.config.sink_backoff_min, self.config.sink_backoff_max);
        let mut open = true;
        loop {
            if self.pending.is_empty() {
                if !open {
                    return;
                }
                match rx.recv().await {
                    Some(b) => self.merge(b),
                    None => open = false,
                }
            }
            // Below the bound only: a buffer at it is written before more input is read (the
            // forwarder in front of the channel waits meanwhile; nothing is dropped while Redis
            // answers).
            while open && self.pending.len() < self.config.sink_max_pending_rows {
                match rx.try_recv() {
                    Ok(b) => self.merge(b),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                }
            }
            if self.pending.is_empty() {
                self.publish_applied();
                continue;
            }
            match self.flush_some().await {
                Ok(()) => {
                    backoff.reset();
                    if self.pending.is_empty() {
                        self.publish_applied();
                    }
                }
                Err(e) => {
                    self.status.errors += 1;
                    self.status.healthy = false;
                    self.status.last_error = Some(e.chain());
                    let n = self.status.errors;
                    SinkWriteFailed { error: &e, pending: self.pending.len(), log: log_failure(n) }.emit();
                    self.status.pending_rows = self.pending.len();
                    self.status_tx.send_replace(self.status.clone());
                    // Back off, but keep merging new batches so the buffer holds the latest state.
                    let deadline = tokio::time::Instant::now() + backoff.next_delay();
                    while open {
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(b)) => self.merge(b),
                            Ok(None) => open = false,
                            Err(_) => break,
                        }
                    }
                    if !open {
                        tokio::time::sleep_until(deadline).await;
                    }
                }
            }
        }
    }

    fn merge(&mut self, mut batch: RollupBatch) {
        self.pending_epoch = self.pending_epoch.max(batch.epoch_upper);
        let mut dropped = 0u64;
        for row in batch.rows.drain(..) {
            if !wanted(&row) {
                continue;
            }
            let key: RowKey = (row.code.clone(), row.granularity, row.bucket_start_ms, row.view, row.is_bot, row.dims.clone());
            // The bound drops rows in an outage only (the latest write failed): while Redis
            // answers, a batch above it (a replay, a large backfill) is taken whole.
            if !self.status.healthy && self.pending.len() >= self.config.sink_max_pending_rows && !self.pending.contains_key(&key) {
                dropped += 1;
                continue;
            }
            self.pending.insert(key, row);
        }
        if dropped > 0 {
            self.status.dropped_rows += dropped;
            SinkRowsDropped { rows: dropped }.emit();
        }
        self.status.pending_rows = self.pending.len();
    }

    fn publish_applied(&mut self) {
        // Rows dropped are not in Redis: what follows them is not "applied" either.
        if self.status.dropped_rows == 0 {
            self.status.applied_epoch = self.status.applied_epoch.max(self.pending_epoch);
        }
        self.status.pending_rows = 0;
        self.status_tx.send_replace(self.status.clone());
    }

    /// Writes up to `sink-batch-rows` pending rows; removes them only on success.
    async fn flush_some(&mut self) -> Result<()> {
        let t0 = Instant::now();
        let keys: Vec<RowKey> = self.pending.keys().take(self.config.sink_batch_rows).cloned().collect();
        let rows: Vec<&RollupRow> = keys.iter().filter_map(|k| self.pending.get(k)).collect();
        // Set when missing: a Redis without it is new or lost its data (status field
        // `empty_store_seen`).
        let marker = self.keys.views_marker();
        let created: Option<String> = self
            .conn
            .call_within("check the views marker", self.config.sink_timeout, |mut c| async move {
                ::redis::cmd("SET").arg(&marker).arg(1).arg("NX").query_async(&mut c).await
            })
            .await?;
        if created.is_some() {
            self.status.empty_store_seen += 1;
            tracing::info!(key = %self.keys.views_marker(), "redis holds no views marker (a new or emptied Redis): every retained row is resent");
        }
        self.write_rows(&rows).await?;
        let n = rows.len() as u64;
        for k in &keys {
            self.pending.remove(k);
        }
        self.status.rows_written += n;
        self.status.flushes += 1;
        self.status.healthy = true;
        self.status.last_error = None;
        self.status.pending_rows = self.pending.len();
        SinkFlushed { rows: n, elapsed: t0.elapsed(), pending: self.pending.len() }.emit();
        self.status_tx.send_replace(self.status.clone());
        Ok(())
    }

    /// Phase 1: minute and day rows (scripts return the new all-time clicks of day totals).
    /// Phase 2: all-time union sketches, uniques and the top-links score.
    async fn write_rows(&self, rows: &[&RollupRow]) -> Result<()> {
        let k = &self.keys;
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        let minute_cutoff = now_ms.div_euclid(60_000) * 60_000 - (i64::from(self.config.series_minutes) - 1) * 60_000;
        let (minute_ttl, day_ttl) = (self.config.minute_ttl.as_millis() as u64, self.config.day_ttl.as_millis() as u64);

        let mut pipe = ::redis::pipe();
        pipe.load_script(&self.hash_delta).ignore();
        pipe.load_script(&self.zset_delta).ignore();
        // code → (sketches of human day-total rows, index of its clicks script result)
        let mut per_code: BTreeMap<&str, (Vec<&[u8]>, Option<usize>)> = BTreeMap::new();
        let mut results = 0usize;
        for r in rows {
            let field = if r.is_bot { "bot_clicks" } else { "clicks" };
            match (r.granularity, r.view) {
                (RollupGranularity::Minute, RollupView::Total) => {
                    let mk = k.minute(&r.code, r.bucket_start_ms);
                    pipe.hset(&mk, field, r.clicks).ignore();
                    if !r.is_bot {
                        pipe.hset(&mk, "uniques", r.uniques).ignore();
                    }
                    pipe.pexpire(&mk, minute_ttl as i64).ignore();
                    let idx = k.minutes(&r.code);
                    pipe.zadd(&idx, r.bucket_start_ms, r.bucket_start_ms).ignore();
                    pipe.cmd("ZREMRANGEBYSCORE").arg(&idx).arg("-inf").arg(format!("({minute_cutoff}")).ignore();
                    pipe.pexpire(&idx, minute_ttl as i64).ignore();
                }
                (RollupGranularity::Day, RollupView::Total) => {
                    let dk = k.day(&r.code, r.bucket_start_ms);
                    pipe.invoke_script(self.hash_delta.key(&dk).key(k.totals(&r.code)).arg(field).arg(r.clicks).arg(day_ttl));
                    if !r.is_bot {
                        pipe.hset(&dk, "uniques", r.uniques).ignore();
                        let e = per_code.entry(r.code.as_str()).or_default();
                        e.0.push(&r.sketch);
                        e.1 = Some(results);
                    }
                    results += 1;
                }
                (RollupGranularity::Day, RollupView::Country | RollupView::ReferrerDomain) if !r.is_bot => {
                    let dim = if r.view == RollupView::Country { "country" } else { "referrer" };
                    let value = r.dims.first().map(String::as_str).unwrap_or("");
                    pipe.invoke_script(
                        self.zset_delta.key(k.day_top(&r.code, r.bucket_start_ms, dim)).key(k.top(&r.code, dim)).arg(value).arg(r.clicks).arg(day_ttl),
                    )
                    .ignore();
                }
                _ => {}
            }
        }
        let timeout = self.config.sink_timeout;
        let totals: Vec<i64> = self.conn.call_within("write view rows", timeout, |mut c| async move { pipe.query_async(&mut c).await }).await?;
        if per_code.is_empty() {
            return Ok(());
        }

        // Phase 2: merge the new day sketches into each link's all-time union.
        let codes: Vec<&str> = per_code.keys().copied().collect();
        let mut get = ::redis::pipe();
        for c in &codes {
            get.get(k.sketch(c));
        }
        let stored: Vec<Value> = self.conn.call_within("read union sketches", timeout, |mut c| async move { get.query_async(&mut c).await }).await?;
        let mut set = ::redis::pipe();
        for (i, code) in codes.iter().enumerate() {
            let (sketches, clicks_idx) = &per_code[code];
            let mut acc: Option<Vec<u8>> = match stored.get(i) {
                Some(Value::BulkString(b)) => Some(b.clone()),
                _ => None,
            };
            let mut estimate = None;
            for s in sketches {
                acc = match acc {
                    None => Some(s.to_vec()),
                    Some(base) => match self.sketches.union(&base, s) {
                        Ok((bytes, est)) => {
                            estimate = Some(est);
                            Some(bytes)
                        }
                        Err(msg) => {
                            tracing::warn!(code = %code, error = %msg, "undecodable sketch, keeping the stored union");
                            Some(base)
                        }
                    },
                };
            }
            let Some(acc) = acc else { continue };
            let estimate = match estimate {
                Some(e) => e,
                // A single sketch and nothing stored: its own estimate is the row's uniques.
                None => rows
                    .iter()
                    .find(|r| r.code == *code && r.granularity == RollupGranularity::Day && r.view == RollupView::Total && !r.is_bot)
                    .map_or(0, |r| r.uniques),
            };
            // The all-time human clicks the script just returned: uniques never exceed the
            // clicks of the same rows (the dataflow's `cap_uniques`, so the stats API over the
            // same days gives the same figure).
            let all_time_clicks = clicks_idx.and_then(|idx| totals.get(idx)).copied();
            let estimate = all_time_clicks.map_or(estimate, |c| estimate.min(u64::try_from(c).unwrap_or(0)));
            set.set(k.sketch(code), acc).ignore();
            set.hset(k.totals(code), "uniques", estimate).ignore();
            if let Some(total) = all_time_clicks {
                set.zadd(k.top_links(), *code, total).ignore();
            }
        }
        self.conn.call_within("write union sketches", timeout, |mut c| async move { set.query_async::<()>(&mut c).await }).await
    }
}
