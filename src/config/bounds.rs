//! Upper bounds of every duration in the configuration.
//!
//! humantime accepts any duration up to `u64::MAX` seconds (`"18446744073709551615s"`,
//! `"2000years"`), far past what the code adding a duration to an `Instant`, handing it to
//! moka or hyper, or printing it as `max-age` can take: such a value panicked a task or the
//! start instead of being refused. [`check`] refuses, before anything starts, any duration
//! above its key's maximum with a message naming the key, the maximum and an example
//! (`redirect.click-log-linger must be at most 1s, e.g. "20ms"`).
//!
//! The maxima (one per key, [`durations`]): lingers and slices at most 1 s / 100 ms,
//! connection and request timeouts at most 10 min to 1 h, TTLs and max-ages at most
//! 365 days (so a `max-age` never approaches RFC 9111's 2^31 s cap), event-time
//! horizons and retentions at most 3650 days (10 years), the abuse detectors' tick 1 min and
//! windows 1 h. Lower bounds stay in the sections' own validation.

use std::time::Duration;

use super::Config;

const SECOND: u64 = 1;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// One duration key: its dotted name, its value in `cfg`, its maximum and an example (its
/// default, or a typical value when the default is `0s`).
pub struct DurationKey {
    /// Dotted name as in TOML (`"redirect.click-log-linger"`).
    pub key: &'static str,
    /// The configured value.
    pub value: Duration,
    /// The largest value accepted.
    pub max: Duration,
    /// A valid value for the message (humantime syntax).
    pub example: &'static str,
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Every duration of the configuration with its maximum (the module docs say why).
pub fn durations(cfg: &Config) -> Vec<DurationKey> {
    let (s, st, r, df, ab) = (&cfg.server, &cfg.store, &cfg.redirect, &cfg.dataflow, &cfg.dataflow.abuse);
    let (rd, ch, kf, wh) = (&cfg.redis, &cfg.clickhouse, &cfg.kafka, &cfg.webhooks);
    let k = |key, value, max, example| DurationKey { key, value, max, example };
    vec![
        k("server.worker-slice", s.worker_slice, Duration::from_millis(100), "100us"),
        k("server.header-read-timeout", s.header_read_timeout, secs(HOUR), "30s"),
        k("server.body-read-timeout", s.body_read_timeout, secs(HOUR), "30s"),
        k("server.shutdown-timeout", s.shutdown_timeout, secs(HOUR), "10s"),
        k("server.drain-timeout", s.drain_timeout, secs(HOUR), "10s"),
        k("store.connect-timeout", st.connect_timeout, secs(10 * MINUTE), "10s"),
        k("store.acquire-timeout", st.acquire_timeout, secs(10 * MINUTE), "3s"),
        k("links.permanent-max-age", cfg.links.permanent_max_age, secs(365 * DAY), "1h"),
        k("redirect.cache-ttl", r.cache_ttl, secs(365 * DAY), "60s"),
        k("redirect.negative-ttl", r.negative_ttl, secs(DAY), "5s"),
        k("redirect.click-log-linger", r.click_log_linger, secs(1), "20ms"),
        k("ingest.max-future-skew", cfg.ingest.max_future_skew, secs(DAY), "5m"),
        k("dataflow.allowed-lateness", df.allowed_lateness, secs(3650 * DAY), "48h"),
        k("dataflow.dedup-horizon", df.dedup_horizon, secs(3650 * DAY), "24h"),
        k("dataflow.future-skew", df.future_skew, secs(DAY), "5m"),
        k("dataflow.idle-timeout", df.idle_timeout, secs(HOUR), "5s"),
        k("dataflow.minute-retention", df.minute_retention, secs(3650 * DAY), "48h"),
        k("dataflow.long-retention", df.long_retention, secs(3650 * DAY), "400days"),
        k("dataflow.apply-interval", df.apply_interval, secs(10 * MINUTE), "50ms"),
        k("dataflow.meta-poll-interval", df.meta_poll_interval, secs(HOUR), "1s"),
        k("dataflow.checkpoint-interval", df.checkpoint_interval, secs(DAY), "30s"),
        k("dataflow.abuse.tick", ab.tick, secs(MINUTE), "1s"),
        k("dataflow.abuse.link-window", ab.link_window, secs(HOUR), "60s"),
        k("dataflow.abuse.baseline-half-life", ab.baseline_half_life, secs(DAY), "10m"),
        k("dataflow.abuse.warmup", ab.warmup, secs(DAY), "3m"),
        k("dataflow.abuse.update-interval", ab.update_interval, secs(HOUR), "10s"),
        k("dataflow.abuse.visitor-flood.window", ab.visitor_flood.window, secs(HOUR), "60s"),
        k("stats.cache-max-age", cfg.stats.cache_max_age, secs(DAY), "2s"),
        k("redis.op-timeout", rd.op_timeout, secs(10), "30ms"),
        k("redis.connect-timeout", rd.connect_timeout, secs(MINUTE), "200ms"),
        k("redis.breaker-open-for", rd.breaker_open_for, secs(HOUR), "1s"),
        k("redis.cache-ttl", rd.cache_ttl, secs(365 * DAY), "10m"),
        k("redis.negative-ttl", rd.negative_ttl, secs(DAY), "5s"),
        k("redis.sink-timeout", rd.sink_timeout, secs(10 * MINUTE), "2s"),
        k("redis.sink-backoff-min", rd.sink_backoff_min, secs(HOUR), "50ms"),
        k("redis.sink-backoff-max", rd.sink_backoff_max, secs(HOUR), "5s"),
        k("redis.minute-ttl", rd.minute_ttl, secs(365 * DAY), "2h"),
        k("redis.day-ttl", rd.day_ttl, secs(3650 * DAY), "400days"),
        k("clickhouse.flush-interval", ch.flush_interval, secs(10 * MINUTE), "1s"),
        k("clickhouse.request-timeout", ch.request_timeout, secs(HOUR), "30s"),
        k("clickhouse.query-timeout", ch.query_timeout, secs(HOUR), "10s"),
        k("clickhouse.connect-timeout", ch.connect_timeout, secs(10 * MINUTE), "2s"),
        k("clickhouse.backoff-min", ch.backoff_min, secs(HOUR), "100ms"),
        k("clickhouse.backoff-max", ch.backoff_max, secs(HOUR), "10s"),
        k("kafka.linger", kf.linger, secs(900), "20ms"),
        k("kafka.message-timeout", kf.message_timeout, secs(HOUR), "30s"),
        k("admin.auto-actions.max-age", cfg.admin.auto_actions.max_age, secs(7 * DAY), "15m"),
        k("webhooks.timeout", wh.timeout, secs(10 * MINUTE), "10s"),
        k("webhooks.backoff-base", wh.backoff_base, secs(DAY), "1s"),
        k("webhooks.backoff-max", wh.backoff_max, secs(DAY), "10m"),
    ]
}

/// `d` in the unit the maxima are written in: `365days`, `1day`, `1h`, `10m`, `900s`, `100ms`.
pub fn show(d: Duration) -> String {
    let s = d.as_secs();
    match () {
        _ if d.subsec_nanos() != 0 || s == 0 => format!("{}ms", d.as_millis()),
        _ if s == DAY => "1day".into(),
        _ if s.is_multiple_of(DAY) => format!("{}days", s / DAY),
        _ if s.is_multiple_of(HOUR) => format!("{}h", s / HOUR),
        _ if s.is_multiple_of(MINUTE) => format!("{}m", s / MINUTE),
        _ => format!("{s}s"),
    }
}

/// Refuses the first duration above its maximum.
///
/// Errors: `<key> must be at most <max>, e.g. "<example>"`.
pub fn check(cfg: &Config) -> anyhow::Result<()> {
    match durations(cfg).into_iter().find(|d| d.value > d.max) {
        Some(d) => anyhow::bail!("{} must be at most {}, e.g. \"{}\"", d.key, show(d.max), d.example),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
