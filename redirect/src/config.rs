//! Settings of the redirect service (the binary maps its `[redirect]` config section and
//! parts of `[server]`/`[links]` onto this).

use std::time::Duration;

use ipnet::IpNet;

use crate::client_ip::ForwardedHeader;
use crate::prefetch::PrefetchPolicy;

/// Redirect settings.
#[derive(Debug, Clone)]
pub struct RedirectConfig {
    /// Most links held in the L1 cache (entries, not bytes).
    pub cache_capacity: u64,
    /// Base time-to-live of a cached link.
    pub cache_ttl: Duration,
    /// Relative jitter applied to `cache_ttl` per entry, uniform in `[-j, +j]` (0.15 = ±15 %),
    /// so entries loaded together do not expire together.
    pub cache_ttl_jitter: f64,
    /// Time-to-live of a cached "no such code" answer.
    pub negative_ttl: Duration,
    /// Append the short URL's query string to the target (`/abc?utm=x` → `target?utm=x`).
    pub append_query: bool,
    /// Upper bound of `Cache-Control: max-age` on 301s (also bounded by time to expiry).
    pub permanent_max_age: Duration,
    /// Peers whose forwarding header is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Which header those peers report the client in (default `X-Forwarded-For`, else
    /// `Forwarded`).
    pub forwarded_header: ForwardedHeader,
    /// Value of `ClickEvent::edge_region`.
    pub edge_region: Option<String>,
    /// What a browser's speculative `GET` gets ([`crate::prefetch`]; default: refused).
    pub prefetch: PrefetchPolicy,
}

impl Default for RedirectConfig {
    /// 100 000 entries, 60 s ±15 %, 5 s negative TTL, query appending on, 1 h max-age for
    /// 301s, no trusted proxies, no region, prefetches refused.
    fn default() -> Self {
        Self {
            cache_capacity: 100_000,
            cache_ttl: Duration::from_secs(60),
            cache_ttl_jitter: 0.15,
            negative_ttl: Duration::from_secs(5),
            append_query: true,
            permanent_max_age: Duration::from_secs(3600),
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::Auto,
            edge_region: None,
            prefetch: PrefetchPolicy::Refuse,
        }
    }
}
