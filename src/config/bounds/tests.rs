use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Toml};

use super::*;
use crate::config::DEFAULT_TOML;

/// Every duration key, its maximum and the example its message gives.
const EXPECTED: &[(&str, &str, &str)] = &[
    ("server.worker-slice", "100ms", "100us"),
    ("server.header-read-timeout", "1h", "30s"),
    ("server.body-read-timeout", "1h", "30s"),
    ("server.shutdown-timeout", "1h", "10s"),
    ("server.drain-timeout", "1h", "10s"),
    ("store.connect-timeout", "10m", "10s"),
    ("store.acquire-timeout", "10m", "3s"),
    ("links.permanent-max-age", "365days", "1h"),
    ("redirect.cache-ttl", "365days", "60s"),
    ("redirect.negative-ttl", "1day", "5s"),
    ("redirect.click-log-linger", "1s", "20ms"),
    ("ingest.max-future-skew", "1day", "5m"),
    ("dataflow.allowed-lateness", "3650days", "48h"),
    ("dataflow.dedup-horizon", "3650days", "24h"),
    ("dataflow.future-skew", "1day", "5m"),
    ("dataflow.idle-timeout", "1h", "5s"),
    ("dataflow.minute-retention", "3650days", "48h"),
    ("dataflow.long-retention", "3650days", "400days"),
    ("dataflow.apply-interval", "10m", "50ms"),
    ("dataflow.meta-poll-interval", "1h", "1s"),
    ("dataflow.checkpoint-interval", "1day", "30s"),
    ("dataflow.abuse.tick", "1m", "1s"),
    ("dataflow.abuse.link-window", "1h", "60s"),
    ("dataflow.abuse.baseline-half-life", "1day", "10m"),
    ("dataflow.abuse.warmup", "1day", "3m"),
    ("dataflow.abuse.update-interval", "1h", "10s"),
    ("dataflow.abuse.visitor-flood.window", "1h", "60s"),
    ("stats.cache-max-age", "1day", "2s"),
    ("redis.op-timeout", "10s", "30ms"),
    ("redis.connect-timeout", "1m", "200ms"),
    ("redis.breaker-open-for", "1h", "1s"),
    ("redis.cache-ttl", "365days", "10m"),
    ("redis.negative-ttl", "1day", "5s"),
    ("redis.sink-timeout", "10m", "2s"),
    ("redis.sink-backoff-min", "1h", "50ms"),
    ("redis.sink-backoff-max", "1h", "5s"),
    ("redis.minute-ttl", "365days", "2h"),
    ("redis.day-ttl", "3650days", "400days"),
    ("clickhouse.flush-interval", "10m", "1s"),
    ("clickhouse.request-timeout", "1h", "30s"),
    ("clickhouse.query-timeout", "1h", "10s"),
    ("clickhouse.connect-timeout", "10m", "2s"),
    ("clickhouse.backoff-min", "1h", "100ms"),
    ("clickhouse.backoff-max", "1h", "10s"),
    ("kafka.linger", "15m", "20ms"),
    ("kafka.message-timeout", "1h", "30s"),
    ("admin.auto-actions.max-age", "7days", "15m"),
    ("webhooks.timeout", "10m", "10s"),
    ("webhooks.backoff-base", "1day", "1s"),
    ("webhooks.backoff-max", "1day", "10m"),
];

/// The defaults with `key = "value"` set, as a TOML file would set it.
fn load_with(key: &str, value: &str) -> anyhow::Result<Config> {
    let (table, name) = key.rsplit_once('.').expect("dotted key");
    let snippet = format!("[{table}]\n{name} = \"{value}\"\n");
    let cfg: Config = Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(&snippet)).extract().map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
    cfg.validate()?;
    Ok(cfg)
}

#[test]
fn every_duration_key_past_its_maximum_is_refused_naming_key_maximum_and_example() {
    let cfg: Config = toml::from_str(DEFAULT_TOML).expect("defaults");
    let keys: Vec<&str> = durations(&cfg).iter().map(|d| d.key).collect();
    assert_eq!(keys, EXPECTED.iter().map(|e| e.0).collect::<Vec<_>>(), "the table lists every key once, in order");
    for &(key, max, example) in EXPECTED {
        let max_d = humantime::parse_duration(max).expect("maximum parses");
        let just_past = format!("{}ms", max_d.as_millis() + 1);
        for value in ["18446744073709551615s", "2000years", just_past.as_str()] {
            let err = load_with(key, value).map(|_| ()).expect_err(&format!("{key} = {value:?} must be refused"));
            assert_eq!(format!("{err:#}"), format!("{key} must be at most {max}, e.g. \"{example}\""), "{key} = {value:?}");
        }
        // The maximum itself passes this check (another rule, e.g. lateness ≤ retention, may
        // still refuse it), and so does the example.
        if let Err(e) = load_with(key, max) {
            assert!(!format!("{e:#}").contains("must be at most"), "{key} = {max:?}: {e:#}");
        }
        load_with(key, example).unwrap_or_else(|e| panic!("{key} = {example:?} (the example) must be valid: {e:#}"));
    }
}

/// Every duration the configuration serializes (humantime strings) is in the table, so a new
/// duration key cannot go without a maximum.
#[test]
fn the_table_covers_every_duration_of_the_configuration() {
    fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    walk(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, out);
                }
            }
            toml::Value::String(s) if humantime::parse_duration(s).is_ok() => out.push(prefix.to_owned()),
            _ => {}
        }
    }
    let cfg: Config = toml::from_str(DEFAULT_TOML).expect("defaults");
    let mut found = Vec::new();
    walk("", &toml::Value::try_from(&cfg).expect("serializes"), &mut found);
    found.retain(|k| k != "visitor.salt-period"); // "1d": an enum, not a duration
    let listed: Vec<&str> = EXPECTED.iter().map(|e| e.0).collect();
    for k in &found {
        assert!(listed.contains(&k.as_str()), "duration key {k} has no maximum in config::bounds");
    }
    assert_eq!(found.len(), listed.len(), "found {found:?}");
}

#[test]
fn show_writes_what_humantime_reads_back() {
    for d in [Duration::from_millis(100), Duration::from_secs(1), Duration::from_secs(900), Duration::from_secs(600), Duration::from_secs(86_400 * 365)] {
        assert_eq!(humantime::parse_duration(&show(d)).expect("parses"), d, "{}", show(d));
    }
    assert_eq!(show(Duration::from_secs(900)), "15m");
    assert_eq!(show(Duration::from_secs(86_400)), "1day");
}

/// RFC 9111 §1.2.2: a `max-age` above 2^31 s is read as 2^31; neither max-age gets near it.
#[test]
fn max_ages_stay_below_two_to_the_31_seconds() {
    let cfg: Config = toml::from_str(DEFAULT_TOML).expect("defaults");
    for d in durations(&cfg).iter().filter(|d| d.key.ends_with("max-age")) {
        assert!(d.max.as_secs() < 1 << 31, "{}", d.key);
    }
}

/// Redis day keys outlive the days the dataflow can still change (`redis.day-ttl` at least
/// `dataflow.long-retention`), when the Redis views are on.
#[test]
fn redis_day_keys_must_outlive_the_long_retention() {
    let with = |extra: &str| -> anyhow::Result<Config> {
        let cfg: Config = Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(extra)).extract()?;
        cfg.validate()?;
        Ok(cfg)
    };
    let err = with("[redis]\nurl = \"redis://127.0.0.1:6379/\"\nday-ttl = \"1m\"\n").expect_err("a 1-minute day key");
    assert_eq!(
        format!("{err:#}"),
        "redis.day-ttl (1m) must be at least dataflow.long-retention (400days): a day's clicks would be counted again in the all-time values once its key expired"
    );
    with("[redis]\nurl = \"redis://127.0.0.1:6379/\"\nday-ttl = \"400days\"\n").expect("equal is fine");
    with("[redis]\nurl = \"redis://127.0.0.1:6379/\"\nday-ttl = \"30days\"\n[dataflow]\nlong-retention = \"30days\"\nallowed-lateness = \"1day\"\n")
        .expect("both shorter");
    with("[redis]\nurl = \"redis://127.0.0.1:6379/\"\nday-ttl = \"1m\"\nviews = false\n").expect("no views: no day keys");
    with("[redis]\nday-ttl = \"1m\"\n").expect("no redis");
}
