//! Redis connector (feature `redis`): the second-level link cache of the redirect path and
//! the hot views dashboards read. The key layout is documented in the repository README
//! (section "Redis and ClickHouse") and in [`keys`].
//!
//! | piece | what |
//! |---|---|
//! | [`RedisLinkCache`] | [`crate::LinkCacheL2`] over Redis: cache-aside, negative entries, jittered TTL, pub/sub invalidation across processes |
//! | [`RedisViewSink`] (`redis_sink`) | writes per-link totals, minute series and top lists from the change stream |
//! | [`CircuitBreaker`], [`GuardedConnection`] | deadlines and a breaker: a dead Redis costs the redirect nothing |
//! | [`RedisConfig`] | the `[redis]` configuration section |
//! | [`healthcheck`] | `PING`, what every connection does first |
//!
//! # Delivery guarantee
//!
//! **L2 cache: best effort, never in the way.** Lookups answer within `op-timeout` or count
//! as misses; with the breaker open they are not attempted. A process's own writes are read
//! back at once (its L1 skips L2 for a moment after a local invalidation); other processes
//! drop the entry when the invalidation message arrives (measured well under 100 ms on one
//! machine). Changes that could not be published during an outage are retried until they
//! land; until then other processes may serve the previous target for up to their L1 TTL.
//!
//! **View sink: effectively once.** Rows carry absolute values and are written with
//! `SET`/`HSET`/`ZADD` or by difference inside Lua scripts, so replaying a batch, or writing
//! an older value before the newer one, ends in the same state. Rows are kept until Redis
//! acknowledged them and retried with capped backoff; [`SinkStatus::applied_epoch`] says
//! which batches are fully written (offsets may be committed up to there).
//!
//! # Tests
//!
//! Unit tests need no server. `integration_tests` (features `redis` and `integration-tests`)
//! need `redis-server` at `SLUICE_REDIS_URL` (`infra/services/redis.sh start`); the outage
//! tests start private `redis-server` processes on free ports.

pub mod breaker;
pub mod client;
pub mod config;
pub mod keys;
pub mod l2;
pub mod metrics;
pub mod sink;

#[cfg(all(test, feature = "integration-tests"))]
pub(crate) mod integration_tests;

pub use breaker::{BreakerState, CircuitBreaker};
pub use client::{GuardedConnection, redis_error_retryable};
pub use config::{RedisConfig, RedisUrl};
pub use keys::Keys;
pub use l2::{InvalidationCallback, RedisLinkCache};
pub use sink::{RedisViewSink, SinkStatus, SketchUnion};

use crate::{Error, Result};

/// Connects to `config.url` and sends `PING` within `timeout` (the first thing every
/// connection of the connector does).
///
/// Errors: [`Error::Config`] without a URL, [`Error::Redis`] if it cannot connect or the
/// answer is not `PONG`, [`Error::Timeout`].
pub async fn healthcheck(config: &RedisConfig, timeout: std::time::Duration) -> Result<()> {
    let client = ::redis::Client::open(config.url_str()?).map_err(|source| Error::Redis { op: "parse the url", source })?;
    let ping = async {
        let mut c = client.get_multiplexed_async_connection().await?;
        ::redis::cmd("PING").query_async::<String>(&mut c).await
    };
    match tokio::time::timeout(timeout, ping).await {
        Ok(Ok(p)) if p == "PONG" => Ok(()),
        Ok(Ok(p)) => Err(Error::Config(format!("redis answered PING with \"{p}\""))),
        Ok(Err(source)) => Err(Error::Redis { op: "ping", source }),
        Err(_) => Err(Error::Timeout { service: "redis", op: "ping", timeout_ms: timeout.as_millis() as u64 }),
    }
}
