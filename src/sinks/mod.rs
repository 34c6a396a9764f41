//! The materialized views outside the process: Redis (L2 link cache + hot views) and
//! ClickHouse (history), switched on by `[redis] url` / `[clickhouse] url` (or `REDIS_URL`,
//! `CLICKHOUSE_URL`, `CLICKHOUSE_USER`, `CLICKHOUSE_PASSWORD`, `CLICKHOUSE_DATABASE` for
//! `sluice serve`, see [`apply_conventional_env`]).
//!
//! [`Sinks::start`] builds what is configured; [`Sinks::change_sink`] is the dataflow's
//! change-stream output: every `ChangeBatch` goes through an unbounded channel (the
//! dataflow worker never waits) to a forwarder task that converts it ([`convert`]) and
//! hands it to the Redis view sink and the ClickHouse sink, waiting on their bounded
//! channels. Both sinks buffer by row key while their service is down and catch up when it
//! returns (connectors docs). Their health is reported by `/readyz` ([`Sinks::dependencies`])
//! without failing it: redirects and the API work without them.
//!
//! | file | what |
//! |---|---|
//! | `convert.rs` | change rows → `RollupRow`s, anomalies → `AnomalyRecord`s; sketch union over `VisitorSketch` |
//! | `events.rs` | `events_enriched`: a click-log tail enriched like the dataflow does |
//! | `clickhouse_stats.rs` | per-link stats from ClickHouse, identical to the in-memory path |
//! | `tests.rs` | ClickHouse answers vs in-memory views (feature `integration-tests`) |

pub mod clickhouse_stats;
pub mod convert;
pub mod events;
#[cfg(all(test, feature = "integration-tests"))]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use sluice_connectors::LinkCacheL2;
use sluice_connectors::click_log::ClickLog;
use sluice_connectors::clickhouse::AnomalyRecord;
use sluice_connectors::clickhouse::{ClickHouseReader, ClickHouseSink, SinkInput};
use sluice_connectors::redis::{RedisLinkCache, RedisViewSink};
use sluice_dataflows::anomaly::AnomalySink;
use sluice_dataflows::changes::{ChangeBatch, ChangeSink};
use sluice_dataflows::views::Views;
use sluice_schemas::Anomaly;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::health::{CachedProbe, Dependency, PROBE_MAX_AGE, PROBE_TIMEOUT, RefreshFuture};
pub use clickhouse_stats::{ClickHouseStats, HistoryError};
pub use convert::DataflowSketches;

/// Fills `[redis]` and `[clickhouse]` from the conventional variables (`REDIS_URL`,
/// `CLICKHOUSE_URL`, `CLICKHOUSE_USER`, `CLICKHOUSE_PASSWORD`, `CLICKHOUSE_DATABASE`) where
/// the `SLUICE__…` ones are not set. `sluice serve` calls this; tests do not, so a test
/// environment that exports these variables for the connector tests does not switch the
/// sinks on in every HTTP test.
pub fn apply_conventional_env(cfg: &mut Config) {
    cfg.redis.apply_env(|k| std::env::var(k).ok());
    cfg.clickhouse.apply_env(|k| std::env::var(k).ok());
}

/// The configured sinks of this process (module docs).
#[derive(Default)]
pub struct Sinks {
    l2: Option<Arc<RedisLinkCache>>,
    redis: Option<Arc<RedisViewSink>>,
    clickhouse: Option<Arc<ClickHouseSink>>,
    history: Option<ClickHouseStats>,
    tx: Option<mpsc::UnboundedSender<Forward>>,
    forwarder: Option<JoinHandle<()>>,
    events: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    /// `[redis] minute-ttl`: how far back an empty Redis gets its minute rows again.
    minute_ttl: Duration,
}

/// What the forwarder task takes from the dataflow's worker threads.
enum Forward {
    Changes(ChangeBatch),
    Anomalies(Vec<AnomalyRecord>),
}

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sinks")
            .field("l2", &self.l2.is_some())
            .field("redis_views", &self.redis.is_some())
            .field("clickhouse", &self.clickhouse.is_some())
            .finish()
    }
}

impl Sinks {
    /// Starts what `cfg` switches on (nothing connects yet: Redis and ClickHouse may be down
    /// at start-up). Must run inside a Tokio runtime.
    ///
    /// Errors: an invalid `[redis]` or `[clickhouse]` section.
    pub fn start(cfg: &Config) -> anyhow::Result<Sinks> {
        let mut s = Sinks::default();
        if cfg.redis.enabled() {
            s.l2 = Some(RedisLinkCache::start(&cfg.redis).context("invalid [redis] configuration")?);
            if cfg.redis.views {
                s.redis = Some(Arc::new(RedisViewSink::start(&cfg.redis, Arc::new(DataflowSketches))?));
                s.minute_ttl = cfg.redis.minute_ttl;
            }
            let url = cfg.redis.url.as_ref().map(ToString::to_string).unwrap_or_default();
            tracing::info!(url = %url, prefix = %cfg.redis.key_prefix, views = cfg.redis.views, "redis link cache and view sink configured");
        }
        if cfg.clickhouse.enabled() {
            s.clickhouse = Some(Arc::new(ClickHouseSink::start(&cfg.clickhouse).context("invalid [clickhouse] configuration")?));
            s.history = Some(ClickHouseStats::new(ClickHouseReader::new(&cfg.clickhouse)?).with_flood_cap(cfg.dataflow.abuse.flood_cap.cap()));
            tracing::info!(url = cfg.clickhouse.url.as_deref().unwrap_or(""), database = %cfg.clickhouse.database, "clickhouse sink configured");
        }
        if s.redis.is_some() || s.clickhouse.is_some() {
            let (tx, rx) = mpsc::unbounded_channel();
            s.forwarder = Some(tokio::spawn(forward(rx, s.redis.clone(), s.clickhouse.clone())));
            s.tx = Some(tx);
        }
        Ok(s)
    }

    /// The dataflow's change-stream output (`None` when no view sink is configured).
    pub fn change_sink(&self) -> Option<ChangeSink> {
        let tx = self.tx.clone()?;
        Some(Arc::new(move |b: ChangeBatch| {
            // Fails only after shutdown, when nothing is listening any more.
            let _ = tx.send(Forward::Changes(b));
        }))
    }

    /// The abuse detectors' output into ClickHouse `anomalies` (`None` without ClickHouse).
    pub fn anomaly_sink(&self) -> Option<AnomalySink> {
        self.clickhouse.as_ref()?;
        let tx = self.tx.clone()?;
        Some(Arc::new(move |batch: &[Anomaly]| {
            let _ = tx.send(Forward::Anomalies(batch.iter().map(convert::anomaly).collect()));
        }))
    }

    /// Starts the `events_enriched` tail of `log` ([`events`]) when ClickHouse is configured.
    ///
    /// Errors: the enrichment data cannot be loaded.
    pub async fn start_events(&mut self, cfg: &Config, log: ClickLog) -> anyhow::Result<()> {
        let Some(sink) = self.clickhouse.clone() else { return Ok(()) };
        let ecfg = crate::job::enrich_config(cfg)?;
        let enricher = tokio::task::spawn_blocking(move || sluice_dataflows::enrich::Enricher::new(&ecfg))
            .await
            .context("enricher task failed")?
            .context("could not load the enrichment data")?;
        let (stop, stopped) = watch::channel(false);
        let task = if cfg.kafka.enabled() {
            // Kafka mode: the clicks are in the topic, the embedded log stays empty.
            tokio::spawn(events::tail_kafka(cfg.kafka.clone(), enricher, sink, stopped))
        } else {
            tokio::spawn(events::tail(log, enricher, sink, stopped))
        };
        self.events = Some((stop, task));
        Ok(())
    }

    /// The Redis L2 link cache, if configured.
    pub fn link_cache_l2(&self) -> Option<Arc<RedisLinkCache>> {
        self.l2.clone()
    }

    /// Stops applying other processes' link invalidations (call first when stopping: the
    /// subscription holds the redirect state, whose click sender must be dropped for the
    /// click log writer to drain).
    pub fn stop_invalidations(&self) {
        if let Some(l2) = &self.l2 {
            l2.unsubscribe();
        }
    }

    /// The L2 cache as the redirect path's trait object.
    pub fn l2_dyn(&self) -> Option<Arc<dyn LinkCacheL2>> {
        self.l2.clone().map(|l| l as Arc<dyn LinkCacheL2>)
    }

    /// Stats from ClickHouse, if configured.
    pub fn history(&self) -> Option<ClickHouseStats> {
        self.history.clone()
    }

    /// Whenever the Redis view sink finds a Redis without its views marker (a new Redis, or
    /// one that lost its data: `SinkStatus::empty_store_seen`), has `views` emit every
    /// retained day row again, with the unsealed quarters and minutes and the minute rows
    /// of the last `[redis] minute-ttl` ([`Views::resend_to_sinks`]): Redis keeps its
    /// all-time values (`totals`, `top:*`) by adding each day's change, so an emptied Redis
    /// needs every day to get them whole again. No-op without the Redis view sink or views.
    /// The task ends with the sink.
    pub fn resend_on_empty_store(&self, views: Option<&Views>) {
        let (Some(sink), Some(views)) = (&self.redis, views) else { return };
        let (mut status, views, minute_ttl) = (sink.watch(), views.clone(), self.minute_ttl);
        drop(tokio::spawn(async move {
            let mut seen = 0u64;
            while status.changed().await.is_ok() {
                let n = status.borrow_and_update().empty_store_seen;
                if n > seen {
                    seen = n;
                    let from = crate::job::now_ms() - i64::try_from(minute_ttl.as_millis()).unwrap_or(i64::MAX);
                    let blocks = views.resend_to_sinks(from);
                    tracing::info!(blocks, "redis came back without its views: every retained day row (and the recent minutes) is resent to the sinks");
                }
            }
        }));
    }

    /// The Redis view sink, if configured.
    pub fn redis_views(&self) -> Option<&Arc<RedisViewSink>> {
        self.redis.as_ref()
    }

    /// The ClickHouse sink, if configured.
    pub fn clickhouse(&self) -> Option<&Arc<ClickHouseSink>> {
        self.clickhouse.as_ref()
    }

    /// What `/readyz` reports about the configured sinks.
    pub fn dependencies(&self) -> Vec<Arc<dyn Dependency>> {
        let mut out: Vec<Arc<dyn Dependency>> = Vec::new();
        if let Some(l2) = &self.l2 {
            out.push(Arc::new(L2Health { cache: Arc::clone(l2), probe: CachedProbe::new(PROBE_MAX_AGE) }));
        }
        if let Some(r) = &self.redis {
            out.push(Arc::new(RedisSinkHealth { sink: Arc::clone(r), probe: CachedProbe::new(PROBE_MAX_AGE) }));
        }
        if let Some(c) = &self.clickhouse {
            out.push(Arc::new(ClickHouseHealth { sink: Arc::clone(c), probe: CachedProbe::new(PROBE_MAX_AGE) }));
        }
        out
    }

    /// What the view sinks durably applied, for Kafka offset commits: a probe returning the
    /// largest epoch such that every change batch with `epoch_upper` at or below it is
    /// written by every configured view sink (Redis views, ClickHouse); `None` when neither
    /// is configured.
    pub fn applied_probe(&self) -> Option<crate::job::kafka_source::SinkAcks> {
        let (redis, ch) = (self.redis.clone(), self.clickhouse.clone());
        if redis.is_none() && ch.is_none() {
            return None;
        }
        Some(Arc::new(move || {
            let r = redis.as_ref().map_or(u64::MAX, |r| r.status().applied_epoch);
            let c = ch.as_ref().map_or(u64::MAX, |c| c.status().applied_epoch);
            r.min(c)
        }))
    }

    /// Waits up to `timeout` until both sinks have written every batch with
    /// `epoch_upper <= epoch`; `false` on timeout (a sink without a service stays behind).
    pub async fn wait_applied(&self, epoch: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        if let Some(r) = &self.redis
            && !r.wait_applied(epoch, deadline.saturating_duration_since(tokio::time::Instant::now())).await
        {
            return false;
        }
        if let Some(c) = &self.clickhouse
            && !c.wait_applied(epoch, deadline.saturating_duration_since(tokio::time::Instant::now())).await
        {
            return false;
        }
        true
    }

    /// Stops accepting changes and gives the sinks up to `timeout` in all to write what they
    /// hold (call after the dataflow stopped); the Redis view sink and the ClickHouse sink
    /// write side by side, so one whose service is down does not take the other's time. A
    /// sink left with rows logs a warning naming it. What a dead service did not get is
    /// written at the next start: the dataflow replays the click log from the last
    /// checkpoint the sinks had applied (a checkpoint waits for them), and the
    /// `events_enriched` tail starts from the log's first offset.
    pub async fn shutdown(mut self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        self.tx = None;
        if let Some((stop, task)) = self.events.take() {
            let _ = stop.send(true);
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
        if let Some(f) = self.forwarder.take() {
            let _ = tokio::time::timeout_at(deadline, f).await;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (redis, ch) = (self.redis.take().and_then(|r| Arc::try_unwrap(r).ok()), self.clickhouse.take().and_then(|c| Arc::try_unwrap(c).ok()));
        let (r, c) = tokio::join!(
            async move {
                match redis {
                    Some(r) => Some(r.shutdown(left).await),
                    None => None,
                }
            },
            async move {
                match ch {
                    Some(c) => Some(c.shutdown(left).await),
                    None => None,
                }
            }
        );
        if let Some(st) = r {
            log_stopped("the Redis view sink", st.pending_rows, st.rows_written, st.last_error.as_deref());
        }
        if let Some(st) = c {
            log_stopped("the ClickHouse sink", st.pending_rows, st.rows_written, st.last_error.as_deref());
        }
    }

    /// The configured view sinks that hold rows not written yet or whose latest write
    /// failed, each as `the <sink> (<n> rows not written; last error: <error>)`, joined
    /// with `and`; `None` when every sink is up to date. For the error of a checkpoint
    /// that waited for them ([`crate::job::system::System::shutdown`]).
    pub fn behind(&self) -> Option<String> {
        let mut out = Vec::new();
        if let Some(r) = &self.redis {
            let s = r.status();
            out.extend(describe_behind("the Redis view sink", s.pending_rows, s.dropped_rows, s.healthy, s.last_error.as_deref()));
        }
        if let Some(c) = &self.clickhouse {
            let s = c.status();
            out.extend(describe_behind("the ClickHouse sink", s.pending_rows, s.dropped_rows, s.healthy, s.last_error.as_deref()));
        }
        (!out.is_empty()).then(|| out.join(" and "))
    }
}

/// One sink of [`Sinks::behind`], or `None` when it is up to date.
fn describe_behind(sink: &str, pending: usize, dropped: u64, healthy: bool, last_error: Option<&str>) -> Option<String> {
    if pending == 0 && dropped == 0 && healthy {
        return None;
    }
    let mut rows = if pending == 1 { "1 row".to_string() } else { format!("{pending} rows") };
    if dropped > 0 {
        rows = format!("{rows}, and {dropped} dropped at its buffer bound,");
    }
    Some(match last_error {
        Some(e) => format!("{sink} ({rows} not written; last error: {e})"),
        None => format!("{sink} ({rows} not written)"),
    })
}

/// The log line of a sink at the end of [`Sinks::shutdown`].
fn log_stopped(sink: &str, pending: usize, written: u64, last_error: Option<&str>) {
    if pending == 0 {
        tracing::info!(written, "{sink} stopped");
    } else {
        tracing::warn!(pending, written, last_error, "{sink} stopped with rows not written; the next start writes them again");
    }
}

async fn forward(mut rx: mpsc::UnboundedReceiver<Forward>, redis: Option<Arc<RedisViewSink>>, ch: Option<Arc<ClickHouseSink>>) {
    while let Some(m) = rx.recv().await {
        let b = match m {
            Forward::Changes(b) => b,
            Forward::Anomalies(a) => {
                if let Some(c) = &ch
                    && c.send(SinkInput::Anomalies(a)).await.is_err()
                {
                    tracing::warn!("clickhouse sink stopped, anomalies not forwarded");
                }
                continue;
            }
        };
        let mut batch = convert::batch(b);
        batch.dedup_keep_last();
        if let Some(r) = &redis {
            let copy = if ch.is_some() { batch.clone() } else { std::mem::take(&mut batch) };
            if r.send(copy).await.is_err() {
                tracing::warn!("redis view sink stopped, change batch not forwarded");
            }
        }
        if let Some(c) = &ch
            && c.send(SinkInput::Rollups(batch)).await.is_err()
        {
            tracing::warn!("clickhouse sink stopped, change batch not forwarded");
        }
    }
}

/// The L2 link cache as `/readyz` sees it: up while Redis answers a `PING` (probed at most
/// once per [`PROBE_MAX_AGE`], within [`PROBE_TIMEOUT`]), so a Redis that is down at start-up
/// or goes away is reported although no lookup has failed yet. Before the first probe (no
/// `/readyz` yet) the lookups' breaker decides.
struct L2Health {
    cache: Arc<RedisLinkCache>,
    probe: CachedProbe,
}

impl Dependency for L2Health {
    fn name(&self) -> &'static str {
        "redis_link_cache"
    }
    fn status(&self) -> (bool, serde_json::Value) {
        let up = self.probe.last().map_or_else(|| self.cache.available(), |r| r.is_ok());
        (up, json!({ "status": if up { "up" } else { "down" } }))
    }
    fn refresh(&self) -> RefreshFuture<'_> {
        Box::pin(self.probe.refresh(|| async {
            self.cache.ping(PROBE_TIMEOUT).await.map_err(|e| {
                tracing::debug!(error = %e, "readiness probe: redis link cache does not answer");
                e.to_string()
            })
        }))
    }
}

/// The Redis view sink as `/readyz` sees it: up while its latest write succeeded (true before
/// the first) and Redis answers a `PING` (probed on a connection of the sink's own at most
/// once per [`PROBE_MAX_AGE`], within [`PROBE_TIMEOUT`]), so a Redis that is down is
/// reported even while nothing is pending and the writer has nothing to try. `last_error` is
/// the latest write's error, else the failed probe's.
struct RedisSinkHealth {
    sink: Arc<RedisViewSink>,
    probe: CachedProbe,
}

impl Dependency for RedisSinkHealth {
    fn name(&self) -> &'static str {
        "redis_views"
    }
    fn status(&self) -> (bool, serde_json::Value) {
        let s = self.sink.status();
        let probed = self.probe.last().unwrap_or(Ok(()));
        let writing = s.healthy && probed.is_ok();
        let up = writing && s.dropped_rows == 0;
        let last_error = s.last_error.or(probed.err());
        let mut body = json!({ "status": sink_status(writing, s.dropped_rows), "pending_rows": s.pending_rows, "applied_epoch": s.applied_epoch, "last_error": last_error });
        add_dropped(&mut body, s.dropped_rows);
        (up, body)
    }
    fn refresh(&self) -> RefreshFuture<'_> {
        Box::pin(self.probe.refresh(|| async {
            self.sink.ping(PROBE_TIMEOUT).await.map_err(|e| {
                let error = crate::health::error_chain(&e);
                tracing::debug!(error = %error, "readiness probe: redis view sink does not answer");
                error
            })
        }))
    }
}

/// A view sink's `/readyz` status: `down` while it cannot write, else `incomplete` once it
/// dropped rows at its buffer bound during an outage (they stay missing until the next start,
/// which replays from the checkpoint before the drop: checkpoints stop at it), else `up`.
fn sink_status(writing: bool, dropped_rows: u64) -> &'static str {
    match (writing, dropped_rows) {
        (false, _) => "down",
        (true, 0) => "up",
        (true, _) => "incomplete",
    }
}

/// Adds `dropped_rows` (rows dropped at the buffer bound) to a sink's `/readyz` entry once
/// there are any.
fn add_dropped(body: &mut serde_json::Value, dropped_rows: u64) {
    if dropped_rows > 0 {
        body["dropped_rows"] = json!(dropped_rows);
    }
}

/// The ClickHouse sink as `/readyz` sees it: up while its latest insert (or migration)
/// succeeded and ClickHouse answers `SELECT 1` (probed on a connection of its own at most
/// once per [`PROBE_MAX_AGE`], within [`PROBE_TIMEOUT`]), so a ClickHouse that is down or
/// does not answer is reported even while the writer has nothing to insert. `last_error`
/// is the latest insert's error (with its causes), else the failed probe's.
struct ClickHouseHealth {
    sink: Arc<ClickHouseSink>,
    probe: CachedProbe,
}

impl Dependency for ClickHouseHealth {
    fn name(&self) -> &'static str {
        "clickhouse"
    }
    fn status(&self) -> (bool, serde_json::Value) {
        let s = self.sink.status();
        let probed = self.probe.last().unwrap_or(Ok(()));
        let writing = s.healthy && probed.is_ok();
        let up = writing && s.dropped_rows == 0;
        let last_error = s.last_error.or(probed.err());
        let status = sink_status(writing, s.dropped_rows);
        let mut body =
            json!({ "status": status, "pending_rows": s.pending_rows, "applied_epoch": s.applied_epoch, "migrated": s.migrated, "last_error": last_error });
        add_dropped(&mut body, s.dropped_rows);
        (up, body)
    }
    fn refresh(&self) -> RefreshFuture<'_> {
        Box::pin(self.probe.refresh(|| async {
            self.sink.ping(PROBE_TIMEOUT).await.map_err(|e| {
                let error = crate::health::error_chain(&e);
                tracing::debug!(error = %error, "readiness probe: clickhouse does not answer");
                error
            })
        }))
    }
}
