//! Click enrichment: user agent → browser, OS, device class and bot flag; truncated IP →
//! country; referrer → domain and medium.
//!
//! Why it exists: rollups are keyed by these derived dimensions, and deriving them needs
//! real-world data (uap-core rules, crawler lists, a GeoIP database, the Public Suffix List,
//! Matomo's referrer lists). All of it is vendored under `dataflows/data/` with its licence
//! and compiled into the binary, so the pipeline runs offline from any directory; only a
//! user-supplied GeoIP file is read at run time.
//!
//! Shape: [`Enricher::new`] compiles the data once per process (about 0.2 s and 40 MB
//! resident in a release build) and shares it behind an `Arc`. Each clone of an
//! [`Enricher`] (one per timely worker) has its own bounded LRU caches for user agents and
//! referrers and its own GeoIP record memo, so the hot path takes no locks. Behind the
//! per-clone user-agent LRU, the clones of one [`Enricher::new`] share a bounded table of
//! parse results (taken under a lock only on a local miss), so a user agent is parsed once
//! per process rather than once per worker: uap-core parsing is the costliest step of
//! enrichment (tens of µs per user agent), and with N workers every new user agent would
//! otherwise be parsed N times. In front of the LRU and the GeoIP lookup, each clone keeps
//! two small direct-mapped caches (`front_cache.rs`): user agent → its dimension values,
//! `ip_trunc` → country, so the common case of a repeated user agent or client network is
//! one hash and one comparison ([`Enricher::enrich_dims`], the graph's path).
//! [`Enricher::enrich`] is a pure function of the event (caching never changes a result)
//! and never panics.
//!
//! | file | concept |
//! |---|---|
//! | `user_agent.rs` | uap-core parsing, [`UaInfo`] |
//! | `device_class.rs` | [`DeviceClass`] rules |
//! | `bots.rs` | crawler / link-preview detection |
//! | `front_cache.rs` | direct-mapped caches in front of the LRU and GeoIP lookups |
//! | `geo.rs` | [`CountryCode`], MaxMind DB lookup |
//! | `ip_ranges.rs` | special-purpose IP ranges skipped before the lookup |
//! | `referrer.rs` | referrer parsing and `referrer_domain` rules |
//! | `referrer_medium.rs` | [`ReferrerMedium`] from Matomo lists and webmail hosts |

mod bots;
mod device_class;
mod front_cache;
mod geo;
pub mod ip_ranges;
mod referrer;
mod referrer_medium;
mod user_agent;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use lru::LruCache;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sluice_schemas::ClickEvent;

use crate::error::{Error, Result};
use crate::hash::FxHashMap;
use crate::model::{DimSym, Dims};
use front_cache::FrontCache;

pub use bots::{BotClassifier, BotVerdict};
pub use device_class::DeviceClass;
pub use geo::{CountryCode, CountryMemo, GeoIp, parse_ip};
pub use referrer::{DIRECT, INVALID, ReferrerInfo, is_loopback_host, normalize_own_host, registrable_domain};
pub use referrer_medium::{EMAIL_HOSTS, MediumLists, MediumMatch, ReferrerMedium};
pub use user_agent::{BOT_BROWSER, MAX_UA_BYTES, UaInfo, UaParser, UaParts};

/// Referrers longer than this (bytes) are classified but not cached, so one cache entry
/// never pins a multi-kilobyte search URL.
const MAX_CACHED_REFERRER_BYTES: usize = 512;

/// Slots of each clone's direct-mapped user-agent → dimensions cache (in front of the LRU).
const UA_FRONT_SLOTS: usize = 4096;
/// Longest user agent (bytes) the front cache keeps; longer ones go to the LRU only.
const UA_FRONT_MAX_BYTES: usize = 512;
/// Slots of each clone's direct-mapped `ip_trunc` → country cache (in front of GeoIP).
const COUNTRY_FRONT_SLOTS: usize = 8192;
/// Longest `ip_trunc` text the country cache keeps (a bracketed IPv6 address with a port).
const COUNTRY_FRONT_MAX_BYTES: usize = 64;
/// Slots of each clone's direct-mapped referrer → (domain, medium) cache (in front of the
/// referrer LRU, for [`Enricher::enrich_dims`]).
const REFERRER_FRONT_SLOTS: usize = 4096;

/// A user agent's dimension values as the rollups take them: device class, browser, OS
/// (in [`Dims::values`] positions 1, 2, 3) and the bot flag.
#[derive(Clone, Copy)]
struct UaDims {
    values: [DimSym; 3],
    is_bot: bool,
}

/// Fields derived from one raw click. Cheap to clone (three `Arc<str>`s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrichment {
    /// ISO 3166-1 alpha-2 country of `ip_trunc`; `"ZZ"` when unknown.
    pub country: CountryCode,
    /// Device class (`desktop|mobile|tablet|bot|other`).
    pub device: DeviceClass,
    /// Browser family (uap-core; `"Other"` when unknown, `"Bot"` for bots imitating a browser).
    pub browser: Arc<str>,
    /// OS family (uap-core; `"Other"` when unknown).
    pub os: Arc<str>,
    /// `"(direct)"`, `"(invalid)"` or the referrer's domain (see [`registrable_domain`]).
    pub referrer_domain: Arc<str>,
    /// Referrer medium.
    pub referrer_medium: ReferrerMedium,
    /// Known crawler or link-preview fetcher, or no user agent (empty or whitespace only).
    pub is_bot: bool,
}

/// Enrichment configuration (a section of the binary's config file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct EnrichConfig {
    /// A MaxMind DB file to use instead of the bundled IP-to-country database, e.g.
    /// MaxMind GeoLite2-Country.mmdb. `None` = the bundled database.
    pub geoip_path: Option<PathBuf>,
    /// The service's own short-link hosts (`sho.rt.example`, or a URL such as
    /// `https://sho.rt.example`). Referrers on these hosts or their subdomains count as
    /// `"(direct)"` with medium `internal` (case C22).
    pub own_hosts: Vec<String>,
    /// Entries in each enricher clone's user-agent cache (default 16,384; at most
    /// [`MAX_UA_BYTES`] + ~100 bytes each).
    pub ua_cache_capacity: usize,
    /// Entries in each enricher clone's referrer cache (default 8,192; referrers longer
    /// than 512 bytes are not cached).
    pub referrer_cache_capacity: usize,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig { geoip_path: None, own_hosts: Vec::new(), ua_cache_capacity: 16_384, referrer_cache_capacity: 8_192 }
    }
}

/// Data compiled from the vendored files; identical for every enricher in the process.
struct Bundled {
    uap: UaParser,
    bots: BotClassifier,
    lists: MediumLists,
}

fn bundled() -> Result<Arc<Bundled>> {
    static BUNDLED: OnceLock<std::result::Result<Arc<Bundled>, String>> = OnceLock::new();
    BUNDLED
        .get_or_init(|| {
            let started = std::time::Instant::now();
            let b = (|| Ok::<_, Error>(Bundled { uap: UaParser::bundled()?, bots: BotClassifier::bundled()?, lists: MediumLists::bundled()? }))()
                .map(Arc::new)
                .map_err(|e| e.to_string());
            if b.is_ok() {
                tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "enrichment rules compiled");
            }
            b
        })
        .clone()
        .map_err(Error::EnrichData)
}

/// Everything an enricher clone shares.
struct Shared {
    bundled: Arc<Bundled>,
    geo: GeoIp,
    own_hosts: Vec<String>,
    direct: Arc<str>,
    invalid: Arc<str>,
    /// Parse results shared by the clones (module docs); at most `ua_shared_capacity`
    /// entries, emptied when full.
    ua_shared: Mutex<FxHashMap<Box<str>, UaInfo>>,
    ua_shared_capacity: usize,
}

/// Counters of one enricher clone's caches since it was created (for per-batch telemetry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnrichStats {
    /// User-agent cache hits.
    pub ua_hits: u64,
    /// User-agent cache misses (full parse): neither this clone's LRU nor the table shared
    /// by the clones knew the user agent.
    pub ua_misses: u64,
    /// Referrer cache hits.
    pub referrer_hits: u64,
    /// Referrer cache misses (full parse; includes uncacheable long referrers).
    pub referrer_misses: u64,
}

/// Enriches click events. See the module documentation.
pub struct Enricher {
    shared: Arc<Shared>,
    ua_cache: LruCache<Box<str>, UaInfo>,
    referrer_cache: LruCache<Box<str>, (Arc<str>, ReferrerMedium)>,
    country_memo: CountryMemo,
    /// Direct-mapped front caches (module `front_cache`): per user agent its dimension
    /// values, per `ip_trunc` text its country.
    ua_front: FrontCache<UaDims>,
    country_front: FrontCache<CountryCode>,
    referrer_front: FrontCache<(DimSym, DimSym)>,
    /// Interned country values (the process-wide table is only asked once per country).
    country_syms: FxHashMap<CountryCode, DimSym>,
    stats: EnrichStats,
}

impl Clone for Enricher {
    /// Shares the compiled data and the table of user-agent parses; the clone starts with
    /// its own empty LRU caches and GeoIP memo.
    fn clone(&self) -> Self {
        Enricher {
            shared: Arc::clone(&self.shared),
            ua_cache: LruCache::new(self.ua_cache.cap()),
            referrer_cache: LruCache::new(self.referrer_cache.cap()),
            country_memo: CountryMemo::default(),
            ua_front: FrontCache::new(UA_FRONT_SLOTS, UA_FRONT_MAX_BYTES),
            country_front: FrontCache::new(COUNTRY_FRONT_SLOTS, COUNTRY_FRONT_MAX_BYTES),
            referrer_front: FrontCache::new(REFERRER_FRONT_SLOTS, MAX_CACHED_REFERRER_BYTES),
            country_syms: FxHashMap::default(),
            stats: EnrichStats::default(),
        }
    }
}

impl Enricher {
    /// Builds an enricher. The vendored rules are compiled once per process (about 0.2 s in
    /// a release build, shared by later calls); a configured GeoIP file is read into memory.
    ///
    /// # Errors
    /// [`Error::GeoIpOpen`] if `geoip_path` cannot be read or is not a MaxMind DB;
    /// [`Error::EnrichData`] if vendored data fails to compile (a build defect).
    pub fn new(cfg: &EnrichConfig) -> Result<Enricher> {
        let bundled = bundled()?;
        let geo = match &cfg.geoip_path {
            Some(path) => GeoIp::open(path)?,
            None => GeoIp::bundled()?,
        };
        tracing::info!(database_type = geo.database_type(), custom = cfg.geoip_path.is_some(), "geoip database loaded");
        let own_hosts = cfg.own_hosts.iter().filter_map(|h| normalize_own_host(h)).collect();
        let cap = |n: usize| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        Ok(Enricher {
            shared: Arc::new(Shared {
                bundled,
                geo,
                own_hosts,
                direct: Arc::from(DIRECT),
                invalid: Arc::from(INVALID),
                ua_shared: Mutex::new(FxHashMap::default()),
                ua_shared_capacity: cfg.ua_cache_capacity.max(1),
            }),
            ua_cache: LruCache::new(cap(cfg.ua_cache_capacity)),
            referrer_cache: LruCache::new(cap(cfg.referrer_cache_capacity)),
            country_memo: CountryMemo::default(),
            ua_front: FrontCache::new(UA_FRONT_SLOTS, UA_FRONT_MAX_BYTES),
            country_front: FrontCache::new(COUNTRY_FRONT_SLOTS, COUNTRY_FRONT_MAX_BYTES),
            referrer_front: FrontCache::new(REFERRER_FRONT_SLOTS, MAX_CACHED_REFERRER_BYTES),
            country_syms: FxHashMap::default(),
            stats: EnrichStats::default(),
        })
    }

    /// Derives all dimensions of one raw click. Never panics, for any field values.
    pub fn enrich(&mut self, ev: &ClickEvent) -> Enrichment {
        let ua = self.user_agent(&ev.user_agent);
        let country = self.country_cached(ev.ip_trunc.as_deref());
        let (referrer_domain, referrer_medium) = self.referrer_cached(ev.referrer.as_deref());
        Enrichment { country, device: ua.device, browser: ua.browser, os: ua.os, referrer_domain, referrer_medium, is_bot: ua.is_bot }
    }

    /// The rollup dimensions of one raw click: the values of [`Enricher::enrich`] as
    /// [`Dims`] (country, device, browser, OS, referrer domain, referrer medium; bot flag).
    /// Same results; the user agent's values come from a direct-mapped cache in front of the
    /// LRU (counted as user-agent hits), so a repeated user agent costs one hash and one
    /// comparison.
    pub fn enrich_dims(&mut self, ev: &ClickEvent) -> Dims {
        let ua = user_agent::truncate(&ev.user_agent);
        let slot = self.ua_front.slot(ua);
        let cached = slot.and_then(|i| self.ua_front.get(i, ua)).copied();
        let ua_dims = match cached {
            Some(d) => {
                self.stats.ua_hits += 1;
                d
            }
            None => {
                let info = self.user_agent(ua);
                let d = UaDims { values: [DimSym::new(info.device.as_str()), DimSym::new(&info.browser), DimSym::new(&info.os)], is_bot: info.is_bot };
                if let Some(i) = slot {
                    self.ua_front.put(i, ua, d);
                }
                d
            }
        };
        let country = self.country_cached(ev.ip_trunc.as_deref());
        let (referrer_domain, referrer_medium) = self.referrer_dims(ev.referrer.as_deref());
        let country = *self.country_syms.entry(country).or_insert_with(|| DimSym::new(country.as_str()));
        let [device, browser, os] = ua_dims.values;
        Dims { values: [country, device, browser, os, referrer_domain, referrer_medium], is_bot: ua_dims.is_bot }
    }

    /// Referrer domain and medium as dimension values, through the clone's direct-mapped
    /// front cache (counted as referrer hits) in front of [`Enricher::referrer_cached`].
    fn referrer_dims(&mut self, referrer: Option<&str>) -> (DimSym, DimSym) {
        let r = referrer.filter(|r| !r.is_empty());
        let slot = r.and_then(|r| self.referrer_front.slot(r));
        if let (Some(i), Some(r)) = (slot, r)
            && let Some(v) = self.referrer_front.get(i, r)
        {
            self.stats.referrer_hits += 1;
            return *v;
        }
        let (domain, medium) = self.referrer_cached(r);
        let v = (DimSym::new(&domain), DimSym::new(medium.as_str()));
        if let (Some(i), Some(r)) = (slot, r) {
            self.referrer_front.put(i, r, v);
        }
        v
    }

    /// Country of `ip_trunc` through the clone's front cache and GeoIP record memo.
    fn country_cached(&mut self, ip: Option<&str>) -> CountryCode {
        let Some(ip) = ip else { return CountryCode::UNKNOWN };
        let slot = self.country_front.slot(ip);
        if let Some(&cc) = slot.and_then(|i| self.country_front.get(i, ip)) {
            return cc;
        }
        let cc = self.shared.geo.lookup_str_memo(Some(ip), &mut self.country_memo);
        if let Some(i) = slot {
            self.country_front.put(i, ip, cc);
        }
        cc
    }

    /// Browser, OS, device class and bot flag of a user agent, from this clone's LRU cache
    /// or parsed (user agents longer than [`MAX_UA_BYTES`] are cut first).
    pub fn user_agent(&mut self, ua: &str) -> UaInfo {
        let ua = user_agent::truncate(ua);
        if let Some(info) = self.ua_cache.get(ua) {
            self.stats.ua_hits += 1;
            return info.clone();
        }
        // This clone's own copy of the strings: the per-click `Arc` clones then never touch
        // a reference count that another worker's thread touches too.
        let own = |i: &UaInfo| UaInfo { browser: Arc::from(&*i.browser), os: Arc::from(&*i.os), device: i.device, is_bot: i.is_bot };
        let shared = self.shared.ua_shared.lock().get(ua).map(own);
        let info = match shared {
            Some(info) => {
                self.stats.ua_hits += 1;
                info
            }
            None => {
                self.stats.ua_misses += 1;
                let b = &self.shared.bundled;
                let info = user_agent::classify(&b.uap, &b.bots, ua);
                let mut table = self.shared.ua_shared.lock();
                if table.len() >= self.shared.ua_shared_capacity {
                    table.clear();
                }
                table.insert(Box::from(ua), own(&info));
                info
            }
        };
        self.ua_cache.put(Box::from(ua), info.clone());
        info
    }

    /// Country of a truncated IP (`ClickEvent::ip_trunc`); `"ZZ"` for `None`, unparseable,
    /// special-purpose and unmapped addresses.
    pub fn country(&self, ip_trunc: Option<&str>) -> CountryCode {
        self.shared.geo.lookup_str(ip_trunc)
    }

    /// Referrer domain and medium (uncached; [`Enricher::enrich`] caches). See the rules in
    /// `referrer.rs`.
    pub fn referrer(&self, referrer: Option<&str>) -> (Arc<str>, ReferrerMedium) {
        let info = referrer::classify(&self.shared.bundled.lists, &self.shared.own_hosts, referrer);
        let domain = match info.domain.as_str() {
            DIRECT => Arc::clone(&self.shared.direct),
            INVALID => Arc::clone(&self.shared.invalid),
            _ => Arc::from(info.domain),
        };
        (domain, info.medium)
    }

    fn referrer_cached(&mut self, referrer: Option<&str>) -> (Arc<str>, ReferrerMedium) {
        let Some(r) = referrer.filter(|r| !r.is_empty()) else {
            return (Arc::clone(&self.shared.direct), ReferrerMedium::Direct);
        };
        if r.len() > MAX_CACHED_REFERRER_BYTES {
            self.stats.referrer_misses += 1;
            return self.referrer(Some(r));
        }
        if let Some((d, m)) = self.referrer_cache.get(r) {
            self.stats.referrer_hits += 1;
            return (Arc::clone(d), *m);
        }
        self.stats.referrer_misses += 1;
        let out = self.referrer(Some(r));
        self.referrer_cache.put(Box::from(r), (Arc::clone(&out.0), out.1));
        out
    }

    /// Which list, if any, flags a user agent as a bot (uncached; for diagnostics and the
    /// measurement tests). uap-core's `Spider` device is not consulted here.
    pub fn bot_verdict(&self, ua: &str) -> BotVerdict {
        self.shared.bundled.bots.verdict(user_agent::truncate(ua))
    }

    /// The uap-core families of a user agent (uncached; for the agreement tests).
    pub fn ua_parts(&self, ua: &str) -> UaParts {
        self.shared.bundled.uap.parse(ua)
    }

    /// Medium match with the list's source name for a lower-case host and path
    /// (diagnostics and tests).
    pub fn medium_of_host(&self, host: &str, path: &str) -> MediumMatch<'_> {
        self.shared.bundled.lists.classify(host, path)
    }

    /// Cache counters of this clone since it was created.
    pub fn stats(&self) -> EnrichStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_round_trip_and_unknown_keys_are_rejected() {
        let default = EnrichConfig::default();
        let json = serde_json::to_string(&default).expect("serializes");
        assert_eq!(json, r#"{"geoip-path":null,"own-hosts":[],"ua-cache-capacity":16384,"referrer-cache-capacity":8192}"#);
        let back: EnrichConfig = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, default);

        let partial: EnrichConfig = serde_json::from_str(r#"{"geoip-path":"GeoLite2-Country.mmdb","own-hosts":["sho.rt"]}"#).expect("partial config parses");
        assert_eq!(partial.geoip_path, Some(PathBuf::from("GeoLite2-Country.mmdb")));
        assert_eq!(partial.own_hosts, vec!["sho.rt".to_owned()]);
        assert_eq!(partial.ua_cache_capacity, 16_384);

        let err = serde_json::from_str::<EnrichConfig>(r#"{"geoip_path":"x"}"#).expect_err("snake_case key is unknown");
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn clones_share_user_agent_parses() {
        let a = Enricher::new(&EnrichConfig { ua_cache_capacity: 2, ..EnrichConfig::default() }).expect("builds");
        let (mut w0, mut w1) = (a.clone(), a.clone());
        let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
        let first = w0.user_agent(ua);
        assert_eq!(w0.stats().ua_misses, 1);
        // Another clone finds the parse in the shared table: a hit, equal result.
        assert_eq!(w1.user_agent(ua), first);
        assert_eq!((w1.stats().ua_hits, w1.stats().ua_misses), (1, 0));
        assert_eq!(&*first.browser, "Chrome");
        // The shared table is bounded (2 entries here): a third user agent empties it, and
        // results stay those of a fresh parse.
        for other in ["curl/8.0", "Wget/1.21", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"] {
            let fresh = Enricher::new(&EnrichConfig::default()).expect("builds").user_agent(other);
            assert_eq!(w0.user_agent(other), fresh, "{other}");
        }
        assert!(a.shared.ua_shared.lock().len() <= 2);
        assert_eq!(w1.user_agent(ua), first);
    }

    #[test]
    fn enrich_dims_equals_enrich_for_new_and_repeated_events() {
        let uas = [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "curl/8.0",
            "",
            "\u{1F600} not a browser",
        ];
        let ips = [
            None,
            Some("8.8.8.0"),
            Some("81.2.69.0"),
            Some("10.1.2.0"),
            Some("2001:db8:1::"),
            Some("2a00:1450:4001::"),
            Some("not an ip"),
            Some("[2001:4860::1]:443"),
        ];
        let refs = [None, Some("https://www.google.com/search?q=x"), Some("https://t.co/x"), Some("::bad::"), Some("")];
        let mut cached = Enricher::new(&EnrichConfig::default()).expect("builds");
        let mut plain = Enricher::new(&EnrichConfig::default()).expect("builds");
        let mut n = 0;
        // Two passes: the second one is served from the front caches.
        for _ in 0..2 {
            for (i, ua) in uas.iter().enumerate() {
                for (j, ip) in ips.iter().enumerate() {
                    let ev = ClickEvent {
                        event_id: uuid::Uuid::from_u128(1),
                        code: "ab".into(),
                        ts: 0,
                        ip_trunc: ip.map(str::to_owned),
                        visitor_id: 1,
                        user_agent: (*ua).to_owned(),
                        referrer: refs[(i + j) % refs.len()].map(str::to_owned),
                        accept_language: None,
                        edge_region: None,
                    };
                    let e = plain.enrich(&ev);
                    let expected = Dims {
                        values: [
                            DimSym::new(e.country.as_str()),
                            DimSym::new(e.device.as_str()),
                            DimSym::new(&e.browser),
                            DimSym::new(&e.os),
                            DimSym::new(&e.referrer_domain),
                            DimSym::new(e.referrer_medium.as_str()),
                        ],
                        is_bot: e.is_bot,
                    };
                    assert_eq!(cached.enrich_dims(&ev), expected, "{ua:?} {ip:?}");
                    n += 1;
                }
            }
        }
        assert_eq!(n, 2 * uas.len() * ips.len());
        // Every user agent after the first sight of each is a hit.
        assert_eq!(cached.stats().ua_misses, uas.len() as u64);
        assert_eq!(cached.stats().ua_hits, (n - uas.len()) as u64);
    }

    #[test]
    fn zero_capacities_are_clamped_to_one() {
        let cfg = EnrichConfig { ua_cache_capacity: 0, referrer_cache_capacity: 0, ..EnrichConfig::default() };
        let mut e = Enricher::new(&cfg).expect("builds");
        let a = e.user_agent("curl/8.0");
        assert_eq!(e.user_agent("curl/8.0"), a);
        assert_eq!(e.stats().ua_hits, 1);
    }
}
