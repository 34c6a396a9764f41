//! Configuration of the `sluice` binary: one [`Config`] loaded in layers, lowest priority
//! first: the built-in `default.toml` → the `--config` TOML file → environment variables
//! `SLUICE__<SECTION>__<KEY>` (`_` inside a key stands for `-`) → command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The built-in defaults (also documentation of every key).
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The most worker threads `server.workers` (`--workers`) and `dataflow.workers`
/// (`--dataflow-workers`) may ask for: far above any useful value on one machine, and low
/// enough that a typo (`100000`) is refused instead of starting that many threads.
pub const MAX_WORKERS: usize = 1024;

/// Which parts of the service one process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// API under `/v1/` and redirects at `/{code}` on one listener.
    All,
    /// Redirects and health endpoints only.
    Redirect,
    /// API and health endpoints only.
    Api,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// Listener, data directory, role, domains, proxies.
    pub server: ServerConfig,
    /// Link store location.
    pub store: StoreConfig,
    /// Link rules.
    pub links: LinksConfig,
    /// Redirect cache and click hand-off.
    pub redirect: RedirectSection,
    /// Visitor-id salt.
    pub visitor: VisitorConfig,
    /// `POST /v1/events` intake.
    #[serde(default)]
    pub ingest: IngestSection,
    /// The click dataflow run in-process.
    #[serde(default)]
    pub dataflow: crate::job::config::DataflowSection,
    /// The stats endpoints.
    #[serde(default)]
    pub stats: crate::job::config::StatsSection,
    /// Redis: L2 link cache and hot views (off unless `url` is set).
    #[serde(default)]
    pub redis: sluice_connectors::redis::RedisConfig,
    /// ClickHouse: history of every view (off unless `url` is set).
    #[serde(default)]
    pub clickhouse: sluice_connectors::clickhouse::ClickHouseConfig,
    /// Kafka as the click event log (off unless `brokers` is set; see `crate::kafka`).
    #[serde(default)]
    pub kafka: sluice_connectors::kafka::KafkaConfig,
    /// Admin endpoints' credentials.
    #[serde(default)]
    pub admin: admin::AdminSection,
    /// Link API limits (creation rate limit).
    #[serde(default)]
    pub api: admin::ApiSection,
    /// Webhook delivery of anomaly events (`crate::anomalies`).
    #[serde(default)]
    pub webhooks: crate::anomalies::WebhooksSection,
}

/// `[ingest]`: the `POST /v1/events` endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct IngestSection {
    /// Bearer token callers must present; unset = loopback peers only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Most events per request, 1..=10000.
    pub max_events: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Tolerance for event times ahead of the server clock, at most 1 day.
    #[serde(with = "humantime_serde")]
    pub max_future_skew: Duration,
}

impl Default for IngestSection {
    fn default() -> Self {
        IngestSection { token: None, max_events: 10_000, max_body_bytes: 32 << 20, max_future_skew: Duration::from_secs(300) }
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServerConfig {
    /// Socket address to listen on.
    pub listen: SocketAddr,
    /// Directory for everything the embedded defaults persist; created if missing.
    pub data_dir: PathBuf,
    /// What this process serves.
    pub role: Role,
    /// Origin of returned short URLs; default `http://` + `listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Further own short domains.
    #[serde(default)]
    pub short_domains: Vec<String>,
    /// Trusted proxies: CIDRs (`10.0.0.0/8`) or single addresses (`127.0.0.1`).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Which header trusted proxies report the client in: `auto`, `forwarded` or a header
    /// name ([`Config::forwarded_header`]).
    #[serde(default = "default_forwarded_header")]
    pub forwarded_header: String,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Tokio worker threads, `0..=`[`MAX_WORKERS`]; 0 = one per CPU.
    pub workers: usize,
    /// Scheduler slice the tokio workers request ([`crate::sched`]; below 0.1 ms clamped to it,
    /// above 100 ms refused); `0s` = the kernel's default.
    #[serde(default = "default_worker_slice", with = "humantime_serde")]
    pub worker_slice: Duration,
    /// A connection whose next request head (request line and header fields) has not fully
    /// arrived this long after the server started waiting for it (also between keep-alive
    /// requests) is closed; `0s` = no deadline; at most 1 h.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// After Ctrl-C / SIGTERM, connections still open this long after the listener closed
    /// (a half-sent request, an SSE stream) are dropped and the process goes on stopping; at most 1 h.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// A request body (`Content-Length` or chunked) that has not fully arrived this long
    /// after its head is answered 408 `request_timeout` and its connection closed; `0s` = no
    /// deadline; at most 1 h.
    #[serde(default = "default_body_read_timeout", with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// After the HTTP stop (`shutdown-timeout`): how long the rest of the stop (click log
    /// drain, dataflow checkpoint, sinks) may take before the process exits anyway, with an
    /// error. The whole stop takes at most `shutdown-timeout` + `drain-timeout`. 1 s to 1 h.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Most connections open at once; 0 = the file-descriptor limit less a reserve for
    /// everything else ([`crate::http_server::limits::fd_reserve`]). Over it, a connection
    /// is closed to make room ([`crate::http_server::limits`]; refused when none can).
    #[serde(default)]
    pub max_connections: usize,
    /// Most connections open at once per client address (IPv4 address, IPv6 /64); peers in
    /// `trusted-proxies` are not limited; 0 = no limit. Over it, one of the client's own
    /// connections is closed to make room (refused when none can).
    #[serde(default = "default_max_connections_per_client")]
    pub max_connections_per_client: usize,
    /// Whether plain redirect requests (`GET`/`HEAD /{code}` in HTTP/1.1 without a body)
    /// are answered by the server's own request parser, ahead of hyper (the same answers at
    /// less CPU per request; [`crate::http_server`]); `false`: hyper answers every request.
    #[serde(default = "default_express")]
    pub express: bool,
}

fn default_express() -> bool {
    true
}

fn default_max_connections_per_client() -> usize {
    crate::http_server::limits::DEFAULT_MAX_PER_CLIENT
}

fn default_click_log_linger() -> Duration {
    Duration::from_millis(20)
}

fn default_prefetch() -> String {
    "refuse".into()
}

fn default_forwarded_header() -> String {
    "auto".into()
}

fn default_worker_slice() -> Duration {
    Duration::from_micros(100)
}

fn default_body_read_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Shortest `server.drain-timeout`: less cannot drain a click log batch and write a
/// checkpoint, so every graceful stop would end unfinished (exit 1, queued clicks dropped).
pub const MIN_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

fn default_drain_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_header_read_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StoreConfig {
    /// Empty: SQLite in the data dir; else a `sqlite:` or `postgres://` URL.
    #[serde(default)]
    pub url: String,
    /// How long each connection to a PostgreSQL link store may take to be established
    /// while the store is opened (TCP connect, TLS and login; not the migrations): past it
    /// the start (or `sluice migrate`) fails naming the server. Default 10 s, more than 0, at most 10 min;
    /// SQLite ignores it.
    #[serde(default = "default_store_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long a request (and the start, for the pool's first connection) waits for a
    /// pooled PostgreSQL connection, a new connection's establishment included: past it the
    /// request is 503 `store_unavailable` (the start fails naming the server). Default 3 s,
    /// more than 0, at most 10 min; SQLite ignores it.
    #[serde(default = "default_store_acquire_timeout", with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

fn default_store_connect_timeout() -> Duration {
    sluice_connectors::DEFAULT_CONNECT_TIMEOUT
}

fn default_store_acquire_timeout() -> Duration {
    sluice_connectors::DEFAULT_ACQUIRE_TIMEOUT
}

impl StoreConfig {
    /// The bounds on reaching a PostgreSQL store (`connect-timeout`, `acquire-timeout`).
    pub fn timeouts(&self) -> sluice_connectors::StoreTimeouts {
        sluice_connectors::StoreTimeouts { connect: self.connect_timeout, acquire: self.acquire_timeout }
    }
}

/// `[links]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LinksConfig {
    /// Length of generated codes, 4..=64.
    pub code_length: usize,
    /// Longest long_url in bytes, 64..=65536.
    pub max_url_bytes: usize,
    /// Blocked destinations: domains (each covers its subdomains) or IP addresses (exact;
    /// IPv6 bare `2001:db8::1` or bracketed `[2001:db8::1]`); a port, scheme or path is
    /// ignored. An entry with no readable host is a configuration error.
    #[serde(default)]
    pub blocklist: Vec<String>,
    /// Append the short URL's query to the target.
    pub append_query: bool,
    /// Upper bound of `max-age` on 301s, at most 365 days.
    #[serde(with = "humantime_serde")]
    pub permanent_max_age: Duration,
}

/// `[redirect]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RedirectSection {
    /// Cache entries.
    pub cache_capacity: u64,
    /// Base TTL of cached links, at most 365 days.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// TTL jitter fraction, 0.0..=0.5.
    pub cache_ttl_jitter: f64,
    /// TTL of cached unknown codes, at most 1 day.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// Capacity of the click channel (events).
    pub click_channel_capacity: usize,
    /// Longest wait of the click log writer after the first queued click for more to
    /// arrive before one group commit (fsync) of them all; `0s` commits whatever is queued
    /// at once; at most 1 s. Longer: fewer commits (less CPU per click), clicks durable and counted that
    /// much later. Default 20 ms: against 5 ms it halved the append thread's CPU and took
    /// ~0.8 µs off each redirect at the max rate (BENCHMARKS.md, redirect, session 8), and
    /// 20 ms is nothing against the 60 s freshness budget (DESIGN.md).
    #[serde(default = "default_click_log_linger", with = "humantime_serde")]
    pub click_log_linger: Duration,
    /// `edge_region` of click events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_region: Option<String>,
    /// What a browser's prefetch of a short link gets: `"refuse"` (default), `"redirect"`
    /// or `"count"` ([`Config::prefetch`], `sluice_redirect::prefetch`).
    #[serde(default = "default_prefetch")]
    pub prefetch: String,
}

/// Rotation period of the visitor salt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaltPeriod {
    /// One UTC day.
    #[serde(rename = "1d")]
    Day,
    /// Seven days (epoch-aligned).
    #[serde(rename = "7d")]
    Week,
    /// Thirty days (epoch-aligned).
    #[serde(rename = "30d")]
    Month,
    /// Never rotates.
    #[serde(rename = "never")]
    Never,
}

impl SaltPeriod {
    /// Period length in ms, `None` for never.
    pub fn period_ms(self) -> Option<i64> {
        const DAY: i64 = 86_400_000;
        match self {
            SaltPeriod::Day => Some(DAY),
            SaltPeriod::Week => Some(7 * DAY),
            SaltPeriod::Month => Some(30 * DAY),
            SaltPeriod::Never => None,
        }
    }
}

/// A secret string: `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `[visitor]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct VisitorConfig {
    /// Salt rotation.
    pub salt_period: SaltPeriod,
    /// 64 hex characters; generated into the data dir when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
}

/// Values given on the command line; `None`/empty leaves the lower layers' value.
#[derive(Debug, Clone, Default)]
pub struct FlagOverrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--role`.
    pub role: Option<Role>,
    /// `--base-url`.
    pub base_url: Option<String>,
    /// `--short-domain` (replaces the configured list when non-empty).
    pub short_domains: Vec<String>,
    /// `--workers`.
    pub workers: Option<usize>,
}

impl Config {
    /// Applies command-line values on top.
    pub fn apply(&mut self, f: &FlagOverrides) {
        if let Some(v) = f.listen {
            self.server.listen = v;
        }
        if let Some(v) = &f.data_dir {
            self.server.data_dir = v.clone();
        }
        if let Some(v) = f.role {
            self.server.role = v;
        }
        if let Some(v) = &f.base_url {
            self.server.base_url = Some(v.clone());
        }
        if !f.short_domains.is_empty() {
            self.server.short_domains = f.short_domains.clone();
        }
        if let Some(v) = f.workers {
            self.server.workers = v;
        }
    }

    /// Checks value ranges (every duration's maximum first: [`bounds`]) and parses URLs and CIDRs.
    pub fn validate(&self) -> anyhow::Result<()> {
        bounds::check(self)?;
        // Redis keeps its all-time values by adding each day's change to them, measured
        // against the day key: a day key that expired while the dataflow can still change
        // that day would be added again whole.
        if self.redis.enabled() && self.redis.views && self.redis.day_ttl < self.dataflow.long_retention {
            bail!(
                "redis.day-ttl ({}) must be at least dataflow.long-retention ({}): a day's clicks would be counted again in the all-time values once its key expired",
                bounds::show(self.redis.day_ttl),
                bounds::show(self.dataflow.long_retention)
            );
        }
        self.base_url()?;
        for d in &self.server.short_domains {
            check_short_domain(d).map_err(|m| anyhow::anyhow!("server.short-domains entry {m}"))?;
        }
        self.trusted_proxies()?;
        self.forwarded_header()?;
        self.prefetch()?;
        let store = self.store.url.trim();
        if !store.is_empty() && !sluice_connectors::StoreTarget::is_url(store) {
            // Never echo the value: it may hold a password.
            let scheme = store.split_once("://").map_or("none", |(s, _)| s);
            bail!("store.url must be empty (SQLite in the data dir), postgres://… or sqlite:… (got a URL with scheme {scheme:?})");
        }
        if self.store.connect_timeout.is_zero() {
            bail!("store.connect-timeout must be more than 0, e.g. \"10s\"");
        }
        if self.store.acquire_timeout.is_zero() {
            bail!("store.acquire-timeout must be more than 0, e.g. \"3s\"");
        }
        if !(4..=64).contains(&self.links.code_length) {
            bail!("links.code-length must be between 4 and 64, got {}", self.links.code_length);
        }
        if !(64..=65_536).contains(&self.links.max_url_bytes) {
            bail!("links.max-url-bytes must be between 64 and 65536, got {}", self.links.max_url_bytes);
        }
        // The same rules as `POST /v1/admin/blocklist`: an entry that would be read as
        // something else than written (`10.0.0.0/8` as the one address 10.0.0.0, `*.evil.com`
        // matching nothing, `com` blocking every .com site) stops the start.
        for entry in &self.links.blocklist {
            if let Err(e) = sluice_serving::admin::pattern::validate_new_pattern(entry) {
                bail!("links.blocklist entry {entry:?} ({}): {}", e.code, e.message);
            }
        }
        if !(0.0..=0.5).contains(&self.redirect.cache_ttl_jitter) {
            bail!("redirect.cache-ttl-jitter must be between 0.0 and 0.5, got {}", self.redirect.cache_ttl_jitter);
        }
        if self.redirect.click_channel_capacity == 0 || self.redirect.cache_capacity == 0 {
            bail!("redirect.click-channel-capacity and redirect.cache-capacity must be positive");
        }
        if self.server.max_body_bytes < 1024 {
            bail!("server.max-body-bytes must be at least 1024, got {}", self.server.max_body_bytes);
        }
        if self.server.drain_timeout < MIN_DRAIN_TIMEOUT {
            bail!(
                "server.drain-timeout must be at least {MIN_DRAIN_TIMEOUT:?} (the stop drains the click log and writes the dataflow checkpoint in it), got {:?}",
                self.server.drain_timeout
            );
        }
        if self.server.workers > MAX_WORKERS {
            bail!("server.workers must be between 0 (one per CPU) and {MAX_WORKERS}, got {}", self.server.workers);
        }
        if let Some(s) = &self.visitor.secret {
            parse_secret(&s.0).context("visitor.secret (SLUICE__VISITOR__SECRET) must be 64 hex characters, the 32-byte key (e.g. `openssl rand -hex 32`)")?;
        }
        if !(1..=10_000).contains(&self.ingest.max_events) {
            bail!("ingest.max-events must be between 1 and 10000, got {}", self.ingest.max_events);
        }
        if self.ingest.max_body_bytes < 1024 {
            bail!("ingest.max-body-bytes must be at least 1024, got {}", self.ingest.max_body_bytes);
        }
        self.dataflow.validate()?;
        if self.dataflow.processes > 1 && self.visitor.secret.is_none() {
            // Each process would generate its own: one visitor would count once per process.
            bail!(
                "dataflow.processes = {} needs visitor.secret (SLUICE__VISITOR__SECRET), the same 64 hex characters in every process of the cluster (e.g. `openssl rand -hex 32`): visitor ids are keyed with it, and processes with secrets of their own would count one visitor once per process",
                self.dataflow.processes
            );
        }
        self.api.create_rate_limit()?;
        self.webhooks.webhook_config()?;
        self.admin.auto_actions.validate()?;
        self.redis.validate()?;
        self.clickhouse.validate()?;
        self.kafka.validate()?;
        Ok(())
    }

    /// The base URL: configured, or `http://` + listen address, where an unspecified listen
    /// address (`0.0.0.0`, `::`) becomes the loopback address of its family (`127.0.0.1`,
    /// `[::1]`; a short URL on `0.0.0.0` is no address a client can use, and the start-up log
    /// warns: [`Self::base_url_guessed`]). Must be http(s) with an empty path and without
    /// `user:password@` credentials (refused without echoing them); a trailing dot of the
    /// host is dropped (`https://SHO.RT.` → `https://sho.rt/`, the host short URLs carry).
    pub fn base_url(&self) -> anyhow::Result<url::Url> {
        let raw = self.server.base_url.clone().unwrap_or_else(|| {
            let mut listen = self.server.listen;
            if listen.ip().is_unspecified() {
                listen.set_ip(match listen.ip() {
                    std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            format!("http://{listen}")
        });
        check_base_url(&raw).map_err(|m| anyhow::anyhow!("server.base-url {m}"))
    }

    /// Whether [`Self::base_url`] is a loopback stand-in for an unspecified listen address
    /// (no `server.base-url` configured): short URLs then only work on this machine.
    pub fn base_url_guessed(&self) -> bool {
        self.server.base_url.is_none() && self.server.listen.ip().is_unspecified()
    }

    /// Trusted proxies as networks (single addresses become /32 or /128).
    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<IpNet>> {
        self.server
            .trusted_proxies
            .iter()
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                    .with_context(|| format!("server.trusted-proxies entry \"{s}\" is neither a CIDR nor an IP address"))
            })
            .collect()
    }

    /// `[redirect] prefetch` parsed.
    ///
    /// Errors: a value other than `refuse`, `redirect`, `count` (any case).
    pub fn prefetch(&self) -> anyhow::Result<sluice_redirect::prefetch::PrefetchPolicy> {
        Ok(self.redirect.prefetch.parse()?)
    }

    /// `server.forwarded-header` parsed. Errors: not `auto`, `forwarded` or a header name.
    pub fn forwarded_header(&self) -> anyhow::Result<sluice_redirect::client_ip::ForwardedHeader> {
        Ok(self.server.forwarded_header.parse()?)
    }

    /// The header `server.forwarded-header` names, lower-case, when it names one (`None` for
    /// `auto` and `forwarded`, and for a value [`Config::validate`] refuses).
    pub fn forwarded_header_name(&self) -> Option<String> {
        self.forwarded_header().ok()?.header_name().map(|h| h.as_str().to_owned())
    }

    /// How far ahead of the clock an event's time may be at intake (`POST /v1/events`,
    /// `sluice import --data-dir`), in ms: the smaller of `[ingest] max-future-skew` and
    /// `[dataflow] future-skew`, so the intake refuses (`ts_in_future`) what the dataflow
    /// would dead-letter `future` rather than accept it.
    pub fn intake_future_skew_ms(&self) -> i64 {
        i64::try_from(self.ingest.max_future_skew.min(self.dataflow.future_skew).as_millis()).unwrap_or(i64::MAX)
    }

    /// The client-address resolver of the trusted proxies and forwarding header configured
    /// (the redirect's, the create rate limit's).
    pub fn client_ip_resolver(&self) -> anyhow::Result<sluice_redirect::client_ip::ClientIpResolver> {
        Ok(sluice_redirect::client_ip::ClientIpResolver::new(self.trusted_proxies()?).with_header(self.forwarded_header()?))
    }

    /// Where the link store lives: `store.url`, or the data directory (SQLite).
    pub fn store_location(&self) -> String {
        if self.store.url.trim().is_empty() { self.server.data_dir.to_string_lossy().into_owned() } else { self.store.url.clone() }
    }
}

pub mod admin;
pub mod bounds;
mod data_dir;
mod load;
mod load_error;
mod values;
pub use data_dir::{check_data_dir_flag, check_store_flag, check_store_location, create_data_dir, existing_data_dir, refuse_non_directory};
pub use load::{ClusterSources, Given};
pub use values::{check_base_url, check_short_domain, parse_secret};

#[cfg(test)]
mod tests;
