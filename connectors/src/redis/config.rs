//! [`RedisConfig`]: the `[redis]` section of Sluice's configuration and its validation.
//!
//! Redis is off unless `url` is set (`SLUICE__REDIS__URL`, or the conventional `REDIS_URL`
//! through [`RedisConfig::apply_env`]). With it on, the redirect path uses Redis as its
//! second-level link cache and the hot views are written to it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A Redis URL whose `Debug`/`Display` hide the password (`redis://:***@host:6379/0`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RedisUrl(pub String);

impl RedisUrl {
    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        match (self.0.find("://"), self.0.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                let userinfo = &self.0[s + 3..at];
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{}{user}:***{}", &self.0[..s + 3], &self.0[at..])
            }
            _ => self.0.clone(),
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Configuration of the Redis connector (L2 link cache and hot-view sink).
///
/// Field names are kebab-case in TOML and `SLUICE__REDIS__<FIELD>` in the environment;
/// durations are human-readable (`"30ms"`, `"2h"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]`. `None` (the default) disables Redis. Also read
    /// from `REDIS_URL`.
    #[serde(default)]
    pub url: Option<RedisUrl>,
    /// Prefix of every key and channel Sluice uses (default `sluice:`), so one Redis can
    /// serve several deployments and every test its own namespace.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Deadline of one L2 cache command on the redirect path (default 30 ms). A slower
    /// answer counts as a failure and the redirect reads the store. At most 10 s.
    #[serde(default = "default_op_timeout", with = "humantime_serde")]
    pub op_timeout: Duration,
    /// Deadline of connecting (default 200 ms, at most 1 min).
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Consecutive failures after which the circuit breaker opens (default 5).
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open breaker refuses calls before letting one probe through (default 1 s,
    /// at most 1 h).
    #[serde(default = "default_breaker_open_for", with = "humantime_serde")]
    pub breaker_open_for: Duration,
    /// Time-to-live of a cached link in Redis (default 10 min, at most 365 days), jittered by
    /// `cache-ttl-jitter`.
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Relative jitter of `cache-ttl`, uniform in `[-j, +j]` (default 0.15).
    #[serde(default = "default_jitter")]
    pub cache_ttl_jitter: f64,
    /// Time-to-live of a negative entry ("no such code", default 5 s, at most 1 day). Deletions are written
    /// as negative entries with the full `cache-ttl`.
    #[serde(default = "default_negative_ttl", with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// Write the hot views (per-link totals, minute series, top countries/referrers).
    #[serde(default = "default_true")]
    pub views: bool,
    /// Most rows one sink pipeline writes (default 2 000).
    #[serde(default = "default_sink_batch_rows")]
    pub sink_batch_rows: usize,
    /// Deadline of one sink pipeline (default 2 s, at most 10 min); a slower one is retried.
    #[serde(default = "default_sink_timeout", with = "humantime_serde")]
    pub sink_timeout: Duration,
    /// Most distinct rows the sink buffers while Redis is unavailable (default 1 000 000);
    /// rows of new keys beyond it are dropped and counted.
    #[serde(default = "default_sink_max_pending")]
    pub sink_max_pending_rows: usize,
    /// Retry backoff of the sink: first delay (default 50 ms, at most 1 h), doubled per failure ...
    #[serde(default = "default_backoff_min", with = "humantime_serde")]
    pub sink_backoff_min: Duration,
    /// ... up to this cap (default 5 s, at most 1 h).
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub sink_backoff_max: Duration,
    /// Time-to-live of minute keys and the minute index (default 2 h, at most 365 days).
    #[serde(default = "default_minute_ttl", with = "humantime_serde")]
    pub minute_ttl: Duration,
    /// Minutes kept in the per-link minute index (default 60: "the last hour").
    #[serde(default = "default_series_minutes")]
    pub series_minutes: u32,
    /// Time-to-live of per-day keys (default 400 days, the dataflow's long retention; at most
    /// 3650 days). The
    /// all-time totals and top lists are maintained from day rows by difference, so a day
    /// key must outlive any update of its day (late events, backfills).
    #[serde(default = "default_day_ttl", with = "humantime_serde")]
    pub day_ttl: Duration,
}

fn default_prefix() -> String {
    "sluice:".into()
}
fn default_op_timeout() -> Duration {
    Duration::from_millis(30)
}
fn default_connect_timeout() -> Duration {
    Duration::from_millis(200)
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_open_for() -> Duration {
    Duration::from_secs(1)
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(600)
}
fn default_jitter() -> f64 {
    0.15
}
fn default_negative_ttl() -> Duration {
    Duration::from_secs(5)
}
fn default_true() -> bool {
    true
}
fn default_sink_batch_rows() -> usize {
    2_000
}
fn default_sink_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_sink_max_pending() -> usize {
    1_000_000
}
fn default_backoff_min() -> Duration {
    Duration::from_millis(50)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(5)
}
fn default_minute_ttl() -> Duration {
    Duration::from_secs(2 * 3600)
}
fn default_series_minutes() -> u32 {
    60
}
fn default_day_ttl() -> Duration {
    Duration::from_secs(400 * 86_400)
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            key_prefix: default_prefix(),
            op_timeout: default_op_timeout(),
            connect_timeout: default_connect_timeout(),
            breaker_failures: default_breaker_failures(),
            breaker_open_for: default_breaker_open_for(),
            cache_ttl: default_cache_ttl(),
            cache_ttl_jitter: default_jitter(),
            negative_ttl: default_negative_ttl(),
            views: true,
            sink_batch_rows: default_sink_batch_rows(),
            sink_timeout: default_sink_timeout(),
            sink_max_pending_rows: default_sink_max_pending(),
            sink_backoff_min: default_backoff_min(),
            sink_backoff_max: default_backoff_max(),
            minute_ttl: default_minute_ttl(),
            series_minutes: default_series_minutes(),
            day_ttl: default_day_ttl(),
        }
    }
}

fn cfg_err(field: &str, reason: impl fmt::Display) -> Error {
    Error::Config(format!("redis.{field}: {reason}"))
}

impl RedisConfig {
    /// Whether Redis is switched on (`url` is set).
    pub fn enabled(&self) -> bool {
        self.url.is_some()
    }

    /// Fills `url` from `REDIS_URL` unless `SLUICE__REDIS__URL` is set (that one wins; the
    /// binary's config loader has already applied it). `get` reads an environment variable.
    /// Empty values are ignored.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        let set = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if set("SLUICE__REDIS__URL").is_none()
            && let Some(u) = set("REDIS_URL")
        {
            self.url = Some(RedisUrl(u.trim().to_string()));
        }
    }

    /// Checks the configuration without any I/O.
    ///
    /// Errors with [`Error::Config`] naming the field: a URL that is not `redis://…`,
    /// `rediss://…` or `unix://…` or that the client cannot parse, an empty prefix or one
    /// with whitespace or braces (braces are Redis Cluster hash tags, used for the code), a
    /// zero timeout, breaker threshold, batch size or buffer, jitter outside `0..0.9`, a
    /// backoff cap below its start, fewer than one or more than 1440 series minutes, or a
    /// TTL of zero or under one millisecond. (`sluice` checks the maxima of the durations.)
    pub fn validate(&self) -> Result<()> {
        if let Some(url) = &self.url {
            let u = url.0.as_str();
            if !(u.starts_with("redis://") || u.starts_with("rediss://") || u.starts_with("unix://")) {
                return Err(cfg_err("url", format!("\"{}\" must start with redis://, rediss:// or unix://", url.redacted())));
            }
            ::redis::Client::open(u).map_err(|e| cfg_err("url", format!("\"{}\": {e}", url.redacted())))?;
        }
        if self.key_prefix.is_empty() || self.key_prefix.chars().any(|c| c.is_whitespace() || c == '{' || c == '}') {
            return Err(cfg_err("key-prefix", "must be non-empty, without whitespace or braces"));
        }
        for (field, d) in [
            ("op-timeout", self.op_timeout),
            ("connect-timeout", self.connect_timeout),
            ("breaker-open-for", self.breaker_open_for),
            ("cache-ttl", self.cache_ttl),
            ("negative-ttl", self.negative_ttl),
            ("sink-timeout", self.sink_timeout),
            ("sink-backoff-min", self.sink_backoff_min),
            ("minute-ttl", self.minute_ttl),
            ("day-ttl", self.day_ttl),
        ] {
            if d.as_millis() == 0 {
                return Err(cfg_err(field, "must be at least 1ms"));
            }
        }
        if self.sink_backoff_max < self.sink_backoff_min {
            return Err(cfg_err("sink-backoff-max", "must not be below sink-backoff-min"));
        }
        if !(0.0..0.9).contains(&self.cache_ttl_jitter) {
            return Err(cfg_err("cache-ttl-jitter", format!("{} is outside 0..0.9", self.cache_ttl_jitter)));
        }
        for (field, n) in [
            ("breaker-failures", self.breaker_failures as usize),
            ("sink-batch-rows", self.sink_batch_rows),
            ("sink-max-pending-rows", self.sink_max_pending_rows),
        ] {
            if n == 0 {
                return Err(cfg_err(field, "must be at least 1"));
            }
        }
        if !(1..=1440).contains(&self.series_minutes) {
            return Err(cfg_err("series-minutes", format!("{} is outside 1..=1440", self.series_minutes)));
        }
        Ok(())
    }

    /// The URL, or [`Error::Config`] when Redis is not configured.
    pub(crate) fn url_str(&self) -> Result<&str> {
        self.url.as_ref().map(|u| u.0.as_str()).ok_or_else(|| cfg_err("url", "is not set"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
url = "redis://:secret@127.0.0.1:16379/0"
key-prefix = "sluice:"
op-timeout = "30ms"
connect-timeout = "200ms"
breaker-failures = 5
breaker-open-for = "1s"
cache-ttl = "10m"
cache-ttl-jitter = 0.15
negative-ttl = "5s"
views = true
sink-batch-rows = 2000
sink-timeout = "2s"
sink-max-pending-rows = 1000000
sink-backoff-min = "50ms"
sink-backoff-max = "5s"
minute-ttl = "2h"
series-minutes = 60
day-ttl = "400days"
"#;

    fn parse(s: &str) -> std::result::Result<RedisConfig, String> {
        serde_json::to_value(toml_like(s)).map_err(|e| e.to_string()).and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
    }

    /// Minimal `key = value` parser for the sample (the connector crate has no TOML
    /// dependency; the binary parses the real file with figment).
    fn toml_like(s: &str) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        for line in s.lines().filter(|l| l.contains('=')) {
            let (k, v) = line.split_once('=').expect("key = value");
            let v = v.trim();
            let value = if let Some(q) = v.strip_prefix('"') {
                serde_json::Value::String(q.trim_end_matches('"').to_string())
            } else {
                serde_json::from_str(v).expect("json scalar")
            };
            m.insert(k.trim().to_string(), value);
        }
        m
    }

    #[test]
    fn sample_config_equals_the_defaults_and_validates() {
        let c = parse(SAMPLE).expect("sample parses");
        let want = RedisConfig { url: Some(RedisUrl("redis://:secret@127.0.0.1:16379/0".into())), ..RedisConfig::default() };
        assert_eq!(c, want);
        c.validate().expect("valid");
        assert!(!format!("{c:?}").contains("secret"), "password redacted in Debug");
        assert_eq!(want.url.expect("url").to_string(), "redis://:***@127.0.0.1:16379/0");
    }

    #[test]
    fn unknown_fields_and_bad_values_are_rejected() {
        assert!(parse("urll = \"redis://x\"").is_err());
        let bad = |f: fn(&mut RedisConfig)| {
            let mut c = RedisConfig::default();
            f(&mut c);
            c.validate().expect_err("invalid").to_string()
        };
        assert!(bad(|c| c.url = Some(RedisUrl("http://x".into()))).contains("redis.url"));
        assert!(bad(|c| c.key_prefix = "a{b".into()).contains("key-prefix"));
        assert!(bad(|c| c.op_timeout = Duration::ZERO).contains("op-timeout"));
        assert!(bad(|c| c.cache_ttl_jitter = 0.95).contains("cache-ttl-jitter"));
        assert!(bad(|c| c.sink_backoff_max = Duration::from_millis(1)).contains("sink-backoff-max"));
        assert!(bad(|c| c.series_minutes = 0).contains("series-minutes"));
        assert!(bad(|c| c.breaker_failures = 0).contains("breaker-failures"));
    }

    #[test]
    fn redis_url_env_fills_only_when_the_sluice_variable_is_absent() {
        let mut c = RedisConfig::default();
        c.apply_env(|k| (k == "REDIS_URL").then(|| "redis://127.0.0.1:1/".to_string()));
        assert_eq!(c.url, Some(RedisUrl("redis://127.0.0.1:1/".into())));
        let mut c = RedisConfig::default();
        c.apply_env(|k| Some(format!("redis://{k}/")));
        assert_eq!(c.url, None, "SLUICE__REDIS__URL was applied by the loader and wins");
    }
}
