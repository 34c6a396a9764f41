//! [`RedisLinkCache`]: the Redis implementation of [`LinkCacheL2`], shared by every redirect
//! process, with invalidations broadcast over pub/sub.
//!
//! * **Lookups** (`GET P link:{code}`) run on their own connection behind a short deadline
//!   (`op-timeout`, default 30 ms) and a circuit breaker: a dead or slow Redis makes the
//!   redirect read the store, and while the breaker is open no command is even sent.
//! * **Fills** (`SET … NX PX ttl`) never overwrite: a load that read the store before a write
//!   cannot replace the value the write published. TTLs are jittered (`cache-ttl` ±
//!   `cache-ttl-jitter`); negative entries (`-`) live `negative-ttl`.
//! * **Publishes** (`SET … PX ttl` + `PUBLISH`, one pipeline, so every subscriber that sees
//!   the message finds the new value) run in order on one background task. A publish that
//!   fails (Redis down) is kept — the latest state per code — and retried every 200 ms until
//!   it lands, so the shared cache cannot keep a stale link after an outage.
//! * **Subscriber**: one pub/sub connection per process; messages from other processes
//!   invalidate the local L1 ([`Invalidation::Code`]). When the subscription is
//!   re-established after a disconnect, messages may have been lost, so the callback gets
//!   [`Invalidation::All`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ::redis::AsyncCommands;
use async_trait::async_trait;
use futures::StreamExt;
use rand::RngExt;
use sluice_schemas::Link;
use tokio::sync::mpsc;

use super::client::GuardedConnection;
use super::config::RedisConfig;
use super::keys::Keys;
use super::metrics::{L2Metrics, L2WriteFailed};
use crate::link_cache::{Invalidation, L2Lookup, LinkCacheL2};
use crate::{Error, LinkChange, Result};

/// Value of a negative entry.
const NEGATIVE: &[u8] = b"-";
/// Deadline of background writes (fills, publishes).
const WRITE_TIMEOUT: Duration = Duration::from_millis(500);
/// Retry period of publishes that could not be written.
const REPAIR_EVERY: Duration = Duration::from_millis(200);
/// Most failed publishes kept for retry (the oldest codes are forgotten beyond it; their L2
/// entries then expire with their TTL).
const MAX_PENDING: usize = 100_000;

/// Callback receiving invalidations from other processes.
pub type InvalidationCallback = Arc<dyn Fn(Invalidation) + Send + Sync>;

/// The Redis L2 link cache (module docs). Create with [`RedisLinkCache::start`].
pub struct RedisLinkCache {
    lookups: GuardedConnection,
    fills: Arc<GuardedConnection>,
    keys: Keys,
    config: RedisConfig,
    origin: String,
    publish_tx: mpsc::UnboundedSender<(String, Option<Link>)>,
    metrics: L2Metrics,
    runtime: tokio::runtime::Handle,
    subscriber: parking_lot_free::AbortOnDrop,
}

mod parking_lot_free {
    //! A task handle that aborts its task when dropped.
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct AbortOnDrop(pub Mutex<Option<tokio::task::AbortHandle>>);

    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            if let Ok(mut g) = self.0.lock()
                && let Some(h) = g.take()
            {
                h.abort();
            }
        }
    }
}

impl std::fmt::Debug for RedisLinkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLinkCache").field("prefix", &self.keys.prefix()).field("lookups", &self.lookups).finish()
    }
}

impl RedisLinkCache {
    /// Validates `config` and creates the cache (connections open lazily, so this succeeds
    /// while Redis is down). Must be called inside a Tokio runtime; background tasks run on it.
    ///
    /// Errors: [`Error::Config`] for an invalid or disabled configuration.
    pub fn start(config: &RedisConfig) -> Result<Arc<RedisLinkCache>> {
        config.validate()?;
        let lookups = GuardedConnection::new_lazy(config, config.op_timeout)?;
        let writes = GuardedConnection::new_lazy(config, WRITE_TIMEOUT)?;
        let fills = Arc::new(GuardedConnection::new_lazy(config, WRITE_TIMEOUT)?);
        let keys = Keys::new(&config.key_prefix);
        let origin = format!("{:016x}", rand::rng().random::<u64>());
        let metrics = L2Metrics::register();
        let (publish_tx, rx) = mpsc::unbounded_channel();
        let publisher = Publisher { conn: writes, keys: keys.clone(), config: config.clone(), origin: origin.clone(), metrics: metrics.clone() };
        let runtime = tokio::runtime::Handle::current();
        runtime.spawn(publisher.run(rx));
        Ok(Arc::new(RedisLinkCache { lookups, fills, keys, config: config.clone(), origin, publish_tx, metrics, runtime, subscriber: Default::default() }))
    }

    /// Starts the process's subscriber: `on_invalidation` is called for every change other
    /// processes publish, and with [`Invalidation::All`] after each re-subscription. Call
    /// once; a second call replaces the first subscriber.
    pub fn subscribe(&self, on_invalidation: InvalidationCallback) -> Result<()> {
        let client = ::redis::Client::open(self.config.url_str()?).map_err(|source| Error::Redis { op: "parse the url", source })?;
        let sub = Subscriber {
            client,
            channel: self.keys.invalidation_channel(),
            origin: self.origin.clone(),
            connect_timeout: self.config.connect_timeout,
            callback: on_invalidation,
            metrics: self.metrics.clone(),
        };
        let handle = self.runtime.spawn(sub.run());
        if let Ok(mut g) = self.subscriber.0.lock()
            && let Some(old) = g.replace(handle.abort_handle())
        {
            old.abort();
        }
        Ok(())
    }

    /// Stops the subscriber started by [`Self::subscribe`], dropping its callback (and what
    /// the callback holds, e.g. the redirect state and its click sender: a graceful stop
    /// waits for those to be dropped). No-op without a subscriber.
    pub fn unsubscribe(&self) {
        if let Ok(mut g) = self.subscriber.0.lock()
            && let Some(h) = g.take()
        {
            h.abort();
        }
    }

    /// Sends `PING` over the cache's background-write connection within `timeout` (for
    /// `/readyz`: lookups report a dead Redis only once they fail, and none may run). The
    /// circuit breakers are neither consulted nor updated.
    ///
    /// Errors: [`Error::Timeout`], [`Error::Redis`] when Redis is unreachable or refuses.
    pub async fn ping(&self, timeout: Duration) -> Result<()> {
        self.fills.ping(timeout).await
    }

    /// The key layout in use.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn ttl_ms(&self, link: Option<&Link>) -> u64 {
        match link {
            None => self.config.negative_ttl.as_millis() as u64,
            Some(_) => jittered_ms(self.config.cache_ttl, self.config.cache_ttl_jitter),
        }
    }
}

fn jittered_ms(ttl: Duration, jitter: f64) -> u64 {
    let f = if jitter > 0.0 { 1.0 + rand::rng().random_range(-jitter..=jitter) } else { 1.0 };
    (ttl.as_millis() as f64 * f).max(1.0) as u64
}

fn encode(link: Option<&Link>) -> Vec<u8> {
    match link {
        // A Link always serializes (plain strings, numbers, timestamps).
        Some(l) => serde_json::to_vec(l).unwrap_or_else(|_| NEGATIVE.to_vec()),
        None => NEGATIVE.to_vec(),
    }
}

#[async_trait]
impl LinkCacheL2 for RedisLinkCache {
    async fn get(&self, code: &str) -> L2Lookup {
        let key = self.keys.link(code);
        let got = self.lookups.call("read a cached link", |mut c| async move { c.get::<_, Option<Vec<u8>>>(key).await }).await;
        match got {
            Ok(None) => {
                self.metrics.miss.increment(1);
                L2Lookup::Miss
            }
            Ok(Some(v)) if v == NEGATIVE => {
                self.metrics.absent.increment(1);
                L2Lookup::Absent
            }
            Ok(Some(v)) => match serde_json::from_slice::<Link>(&v) {
                Ok(link) if link.code == code => {
                    self.metrics.hit.increment(1);
                    L2Lookup::Hit(link)
                }
                _ => {
                    tracing::warn!(code, "undecodable L2 cache entry, reading the store");
                    self.metrics.error.increment(1);
                    L2Lookup::Miss
                }
            },
            Err(Error::CircuitOpen { .. }) => {
                self.metrics.skipped.increment(1);
                L2Lookup::Miss
            }
            Err(_) => {
                self.metrics.error.increment(1);
                L2Lookup::Miss
            }
        }
    }

    fn fill(&self, code: &str, link: Option<&Link>) {
        let (key, value, ttl) = (self.keys.link(code), encode(link), self.ttl_ms(link));
        let (conn, fills) = (Arc::clone(&self.fills), self.metrics.fills.clone());
        self.runtime.spawn(async move {
            let r = conn
                .call("fill the link cache", |mut c| async move {
                    ::redis::cmd("SET").arg(key).arg(value).arg("NX").arg("PX").arg(ttl).query_async::<()>(&mut c).await
                })
                .await;
            match r {
                Ok(()) => fills.increment(1),
                Err(Error::CircuitOpen { .. }) => {}
                Err(e) => L2WriteFailed { kind: "fill", error: &e }.emit(),
            }
        });
    }

    fn publish(&self, change: &LinkChange) {
        let item = match change {
            LinkChange::Upserted(link) => (link.code.clone(), Some(link.clone())),
            LinkChange::Deleted(code) => (code.clone(), None),
        };
        // The publisher lives as long as this cache; a send error means shutdown.
        let _ = self.publish_tx.send(item);
    }

    fn available(&self) -> bool {
        self.lookups.breaker_state() == super::breaker::BreakerState::Closed
    }
}

/// Writes published changes in order; keeps and retries the ones that failed.
struct Publisher {
    conn: GuardedConnection,
    keys: Keys,
    config: RedisConfig,
    origin: String,
    metrics: L2Metrics,
}

impl Publisher {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<(String, Option<Link>)>) {
        // Failed publishes, the latest state per code, in first-failure order.
        let mut pending: HashMap<String, Option<Link>> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut failures = 0u64;
        loop {
            let next = if pending.is_empty() {
                rx.recv().await
            } else {
                match tokio::time::timeout(REPAIR_EVERY, rx.recv()).await {
                    Ok(v) => v,
                    Err(_) => {
                        self.repair(&mut pending, &mut order, &mut failures).await;
                        continue;
                    }
                }
            };
            let Some((code, link)) = next else { return };
            if let Some(slot) = pending.get_mut(&code) {
                // A newer change supersedes the failed one; keep retrying in order.
                *slot = link;
                continue;
            }
            if let Err(e) = self.write(&code, link.as_ref()).await {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(code = %code, error = %e, "could not publish a link change to redis, will retry");
                }
                L2WriteFailed { kind: "publish", error: &e }.emit();
                if pending.len() >= MAX_PENDING && !order.is_empty() {
                    let oldest = order.remove(0);
                    pending.remove(&oldest);
                }
                order.push(code.clone());
                pending.insert(code, link);
            }
        }
    }

    async fn repair(&self, pending: &mut HashMap<String, Option<Link>>, order: &mut Vec<String>, failures: &mut u64) {
        while let Some(code) = order.first().cloned() {
            let link = pending.get(&code).cloned().flatten();
            if self.write(&code, link.as_ref()).await.is_err() {
                return;
            }
            order.remove(0);
            pending.remove(&code);
        }
        if *failures > 0 {
            tracing::info!(failures = *failures, "link changes published to redis after an outage");
            *failures = 0;
        }
    }

    async fn write(&self, code: &str, link: Option<&Link>) -> Result<()> {
        let key = self.keys.link(code);
        let value = encode(link);
        let ttl = match link {
            Some(_) => jittered_ms(self.config.cache_ttl, self.config.cache_ttl_jitter),
            // A deletion is cached as negative for the full TTL: codes are not reused for 30 days.
            None => self.config.cache_ttl.as_millis() as u64,
        };
        let (channel, message) = (self.keys.invalidation_channel(), format!("{}\n{code}", self.origin));
        self.conn
            .call("publish a link change", |mut c| async move {
                ::redis::pipe()
                    .cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(ttl)
                    .ignore()
                    .cmd("PUBLISH")
                    .arg(channel)
                    .arg(message)
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await?;
        self.metrics.publishes.increment(1);
        Ok(())
    }
}

/// The pub/sub loop of one process.
struct Subscriber {
    client: ::redis::Client,
    channel: String,
    origin: String,
    connect_timeout: Duration,
    callback: InvalidationCallback,
    metrics: L2Metrics,
}

impl Subscriber {
    async fn run(self) {
        let mut subscribed_before = false;
        let mut delay = Duration::from_millis(50);
        loop {
            let conn = tokio::time::timeout(self.connect_timeout.max(Duration::from_millis(500)), async {
                let mut ps = self.client.get_async_pubsub().await?;
                ps.subscribe(&self.channel).await?;
                Ok::<_, ::redis::RedisError>(ps)
            })
            .await;
            let ps = match conn {
                Ok(Ok(ps)) => ps,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "redis invalidation subscriber could not connect");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                    continue;
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            delay = Duration::from_millis(50);
            if subscribed_before {
                tracing::info!("redis invalidation subscriber reconnected, dropping the L1 cache");
                (self.callback)(Invalidation::All);
            }
            subscribed_before = true;
            let mut stream = ps.into_on_message();
            while let Some(msg) = stream.next().await {
                let payload: Vec<u8> = msg.get_payload_bytes().to_vec();
                let Ok(text) = std::str::from_utf8(&payload) else { continue };
                let Some((origin, code)) = text.split_once('\n') else { continue };
                if origin == self.origin {
                    continue;
                }
                self.metrics.received.increment(1);
                (self.callback)(Invalidation::Code(code.to_string()));
            }
            tracing::warn!("redis invalidation subscription lost, reconnecting");
            // Changes published while disconnected are covered by `All` after re-subscribing.
            (self.callback)(Invalidation::All);
        }
    }
}
