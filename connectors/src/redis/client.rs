//! [`GuardedConnection`]: a lazily connecting Redis connection behind a deadline and a
//! [`CircuitBreaker`], so callers on the hot path never wait longer than the deadline and a
//! dead Redis is not even asked while the breaker is open.

use std::future::Future;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{RedisError, RedisResult};

use super::breaker::{BreakerState, CircuitBreaker};
use super::config::RedisConfig;
use crate::{Error, Result};

/// Whether a Redis error says the server is unreachable or overloaded (a breaker failure,
/// worth retrying) rather than that the command was wrong.
pub fn redis_error_retryable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(e.retry_method(), ::redis::RetryMethod::Reconnect | ::redis::RetryMethod::WaitAndRetry | ::redis::RetryMethod::RetryImmediately)
}

/// One multiplexed connection (reconnected by the client on failure), a per-call deadline
/// and a breaker.
pub struct GuardedConnection {
    conn: ConnectionManager,
    breaker: CircuitBreaker,
    timeout: Duration,
}

impl std::fmt::Debug for GuardedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedConnection").field("breaker", &self.breaker.state()).field("timeout", &self.timeout).finish()
    }
}

impl GuardedConnection {
    /// A connection to `config.url` that connects on first use, with calls bounded by
    /// `timeout`. Must be called inside a Tokio runtime.
    ///
    /// Errors: [`Error::Config`] without a URL, [`Error::Redis`] for a URL the client rejects.
    pub fn new_lazy(config: &RedisConfig, timeout: Duration) -> Result<GuardedConnection> {
        let client = ::redis::Client::open(config.url_str()?).map_err(|source| Error::Redis { op: "parse the url", source })?;
        let mc = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let conn = client.get_connection_manager_lazy(mc).map_err(|source| Error::Redis { op: "create a connection", source })?;
        Ok(GuardedConnection { conn, breaker: CircuitBreaker::new(config.breaker_failures, config.breaker_open_for), timeout })
    }

    /// Runs `f` on the connection if the breaker allows, within the deadline.
    ///
    /// Errors: [`Error::CircuitOpen`] (not attempted), [`Error::Timeout`], [`Error::Redis`].
    /// Unreachable-server errors and timeouts count against the breaker; command errors
    /// (wrong type, script errors) do not.
    pub async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.call_within(op, self.timeout, f).await
    }

    /// [`Self::call`] with another deadline (the sink's large pipelines).
    pub async fn call_within<T, F, Fut>(&self, op: &'static str, timeout: Duration, f: F) -> Result<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let permit = self.breaker.try_acquire().ok_or(Error::CircuitOpen { service: "redis" })?;
        match tokio::time::timeout(timeout, f(self.conn.clone())).await {
            Ok(Ok(v)) => {
                self.breaker.record(permit, true);
                Ok(v)
            }
            Ok(Err(source)) => {
                self.breaker.record(permit, !redis_error_retryable(&source));
                Err(Error::Redis { op, source })
            }
            Err(_) => {
                self.breaker.record(permit, false);
                Err(Error::Timeout { service: "redis", op, timeout_ms: timeout.as_millis() as u64 })
            }
        }
    }

    /// Sends `PING` within `timeout`, for health checks: the breaker is neither consulted
    /// nor updated (a probe must see a Redis that came back while the breaker is open, and
    /// must not open it for the calls it guards).
    ///
    /// Errors: [`Error::Timeout`], [`Error::Redis`] (unreachable, or an error reply), or
    /// [`Error::Config`] when the answer is not `PONG`.
    pub async fn ping(&self, timeout: Duration) -> Result<()> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(timeout, ::redis::cmd("PING").query_async::<String>(&mut conn)).await {
            Ok(Ok(p)) if p == "PONG" => Ok(()),
            Ok(Ok(p)) => Err(Error::Config(format!("redis answered PING with \"{p}\""))),
            Ok(Err(source)) => Err(Error::Redis { op: "ping", source }),
            Err(_) => Err(Error::Timeout { service: "redis", op: "ping", timeout_ms: timeout.as_millis() as u64 }),
        }
    }

    /// The breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }
}
