//! [`ClickHouseConfig`]: the `[clickhouse]` section of Sluice's configuration.
//!
//! ClickHouse is off unless `url` is set (`SLUICE__CLICKHOUSE__URL`, or the conventional
//! `CLICKHOUSE_URL`, `CLICKHOUSE_USER`, `CLICKHOUSE_PASSWORD`, `CLICKHOUSE_DATABASE` through
//! [`ClickHouseConfig::apply_env`]). Nothing here is specific to the local test server
//! (`infra/clickhouse`, chDB behind ClickHouse's HTTP interface): point it at any ClickHouse.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A password whose `Debug`/`Display` print `***`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Configuration of the ClickHouse connector (migrations, sink, rollup queries).
///
/// Field names are kebab-case in TOML and `SLUICE__CLICKHOUSE__<FIELD>` in the environment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP endpoint, `http://host:8123`. `None` (the default) disables ClickHouse. Also read
    /// from `CLICKHOUSE_URL`.
    #[serde(default)]
    pub url: Option<String>,
    /// User (default `default`). Also read from `CLICKHOUSE_USER`.
    #[serde(default = "default_user")]
    pub user: String,
    /// Password (default empty). Also read from `CLICKHOUSE_PASSWORD`.
    #[serde(default)]
    pub password: Password,
    /// Database holding Sluice's tables (default `sluice`), created at start-up if missing.
    /// `[A-Za-z_][A-Za-z0-9_]*`. Also read from `CLICKHOUSE_DATABASE`.
    #[serde(default = "default_database")]
    pub database: String,
    /// Rows buffered before an insert is sent (default 10 000) ...
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// ... or after this long since the first buffered row (default 1 s, at most 10 min),
    /// whichever first; a checkpoint waiting for the rows has them inserted at once.
    #[serde(default = "default_flush_interval", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Most rows buffered while ClickHouse is unavailable (default 2 000 000); rows beyond it
    /// are dropped and counted (rollup rows of keys already buffered are replaced, never
    /// dropped). While ClickHouse answers nothing is dropped: a buffer at the bound is
    /// inserted before more input is read.
    #[serde(default = "default_max_pending_rows")]
    pub max_pending_rows: usize,
    /// Deadline of one request (default 30 s, at most 1 h).
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Deadline of one read for the stats API (history ranges, ad-hoc dimensions; default
    /// 10 s): a ClickHouse that accepts connections but does not answer costs a stats
    /// request this long before its 503 `stats_history_unavailable`, not `request-timeout`.
    /// At most 1 h.
    #[serde(default = "default_query_timeout", with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Deadline of connecting (default 2 s, at most 10 min).
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Retry backoff: first delay (default 100 ms, at most 1 h), doubled per failure ...
    #[serde(default = "default_backoff_min", with = "humantime_serde")]
    pub backoff_min: Duration,
    /// ... up to this cap (default 10 s, at most 1 h).
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
}

fn default_user() -> String {
    "default".into()
}
fn default_database() -> String {
    "sluice".into()
}
fn default_batch_rows() -> usize {
    10_000
}
fn default_flush_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_max_pending_rows() -> usize {
    2_000_000
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_query_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_backoff_min() -> Duration {
    Duration::from_millis(100)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(10)
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: None,
            user: default_user(),
            password: Password::default(),
            database: default_database(),
            batch_rows: default_batch_rows(),
            flush_interval: default_flush_interval(),
            max_pending_rows: default_max_pending_rows(),
            request_timeout: default_request_timeout(),
            query_timeout: default_query_timeout(),
            connect_timeout: default_connect_timeout(),
            backoff_min: default_backoff_min(),
            backoff_max: default_backoff_max(),
        }
    }
}

fn cfg_err(field: &str, reason: impl fmt::Display) -> Error {
    Error::Config(format!("clickhouse.{field}: {reason}"))
}

/// Whether `s` is a plain ClickHouse identifier `[A-Za-z_][A-Za-z0-9_]*` (no quoting needed).
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl ClickHouseConfig {
    /// Whether ClickHouse is switched on (`url` is set).
    pub fn enabled(&self) -> bool {
        self.url.is_some()
    }

    /// Fills `url`, `user`, `password`, `database` from `CLICKHOUSE_URL`, `CLICKHOUSE_USER`,
    /// `CLICKHOUSE_PASSWORD`, `CLICKHOUSE_DATABASE` unless the corresponding
    /// `SLUICE__CLICKHOUSE__*` variable is set (that one wins; the binary's loader has applied
    /// it). `get` reads an environment variable. Empty values are ignored, except an empty
    /// `CLICKHOUSE_PASSWORD`, which means "no password".
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        let sluice = |f: &str| get(&format!("SLUICE__CLICKHOUSE__{f}")).is_some_and(|v| !v.trim().is_empty());
        let plain = |k: &str| get(k).filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_string());
        if !sluice("URL")
            && let Some(u) = plain("CLICKHOUSE_URL")
        {
            self.url = Some(u);
        }
        if !sluice("USER")
            && let Some(u) = plain("CLICKHOUSE_USER")
        {
            self.user = u;
        }
        if get("SLUICE__CLICKHOUSE__PASSWORD").is_none()
            && let Some(p) = get("CLICKHOUSE_PASSWORD")
        {
            self.password = Password(p);
        }
        if !sluice("DATABASE")
            && let Some(d) = plain("CLICKHOUSE_DATABASE")
        {
            self.database = d;
        }
    }

    /// Checks the configuration without any I/O.
    ///
    /// Errors with [`Error::Config`] naming the field: a URL that is not `http://…` (this
    /// build has no TLS) or has a path, query or credentials, an empty user, a database that
    /// is not a plain identifier, zero batch size, buffer or timeouts, or a backoff cap below
    /// its start.
    pub fn validate(&self) -> Result<()> {
        if let Some(url) = &self.url {
            let rest = url.strip_prefix("http://").ok_or_else(|| cfg_err("url", format!("\"{url}\" must start with http:// (no TLS in this build)")))?;
            let authority = rest.trim_end_matches('/');
            if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
                return Err(cfg_err("url", format!("\"{url}\" must be http://host:port without path, query or credentials")));
            }
        }
        if self.user.trim().is_empty() {
            return Err(cfg_err("user", "must not be empty"));
        }
        if !is_identifier(&self.database) {
            return Err(cfg_err("database", format!("\"{}\" must match [A-Za-z_][A-Za-z0-9_]*", self.database)));
        }
        for (field, n) in [("batch-rows", self.batch_rows), ("max-pending-rows", self.max_pending_rows)] {
            if n == 0 {
                return Err(cfg_err(field, "must be at least 1"));
            }
        }
        for (field, d) in [
            ("flush-interval", self.flush_interval),
            ("request-timeout", self.request_timeout),
            ("query-timeout", self.query_timeout),
            ("connect-timeout", self.connect_timeout),
            ("backoff-min", self.backoff_min),
        ] {
            if d.as_millis() == 0 {
                return Err(cfg_err(field, "must be at least 1ms"));
            }
        }
        if self.backoff_max < self.backoff_min {
            return Err(cfg_err("backoff-max", "must not be below backoff-min"));
        }
        Ok(())
    }

    pub(crate) fn url_str(&self) -> Result<&str> {
        self.url.as_deref().ok_or_else(|| cfg_err("url", "is not set"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_config_equals_the_defaults_and_validates() {
        let sample = serde_json::json!({
            "url": "http://127.0.0.1:18123",
            "user": "default",
            "password": "s3cret",
            "database": "sluice",
            "batch-rows": 10000,
            "flush-interval": "1s",
            "max-pending-rows": 2000000,
            "request-timeout": "30s",
            "connect-timeout": "2s",
            "backoff-min": "100ms",
            "backoff-max": "10s"
        });
        let c: ClickHouseConfig = serde_json::from_value(sample).expect("sample parses");
        let want = ClickHouseConfig { url: Some("http://127.0.0.1:18123".into()), password: Password("s3cret".into()), ..ClickHouseConfig::default() };
        assert_eq!(c, want);
        c.validate().expect("valid");
        assert!(!format!("{c:?}").contains("s3cret"), "password redacted: {c:?}");
        let round: ClickHouseConfig = serde_json::from_value(serde_json::to_value(&c).expect("ser")).expect("de");
        assert_eq!(round, c);
    }

    #[test]
    fn bad_values_name_their_field() {
        let bad = |f: fn(&mut ClickHouseConfig)| {
            let mut c = ClickHouseConfig::default();
            f(&mut c);
            c.validate().expect_err("invalid").to_string()
        };
        assert!(bad(|c| c.url = Some("https://x:8443".into())).contains("clickhouse.url"));
        assert!(bad(|c| c.url = Some("http://u:p@x:8123".into())).contains("clickhouse.url"));
        assert!(bad(|c| c.url = Some("http://x:8123/db".into())).contains("clickhouse.url"));
        assert!(bad(|c| c.database = "a-b".into()).contains("clickhouse.database"));
        assert!(bad(|c| c.database = "1a".into()).contains("clickhouse.database"));
        assert!(bad(|c| c.batch_rows = 0).contains("batch-rows"));
        assert!(bad(|c| c.backoff_max = Duration::from_millis(1)).contains("backoff-max"));
        assert!(serde_json::from_value::<ClickHouseConfig>(serde_json::json!({"urll": "x"})).is_err());
    }

    #[test]
    fn conventional_variables_fill_unless_the_sluice_ones_are_set() {
        let env = |k: &str| match k {
            "CLICKHOUSE_URL" => Some("http://127.0.0.1:18123".to_string()),
            "CLICKHOUSE_USER" => Some("u".to_string()),
            "CLICKHOUSE_PASSWORD" => Some("p".to_string()),
            "CLICKHOUSE_DATABASE" => Some("db1".to_string()),
            "SLUICE__CLICKHOUSE__DATABASE" => Some("db2".to_string()),
            _ => None,
        };
        let mut c = ClickHouseConfig::default();
        c.apply_env(env);
        assert_eq!(c.url.as_deref(), Some("http://127.0.0.1:18123"));
        assert_eq!((c.user.as_str(), c.password.0.as_str()), ("u", "p"));
        assert_eq!(c.database, "sluice", "SLUICE__CLICKHOUSE__DATABASE wins (applied by the loader)");
    }
}
