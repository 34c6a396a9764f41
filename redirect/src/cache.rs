//! The L1 link cache: bounded moka cache with jittered TTLs, negative caching,
//! single-flight loads and read-after-write invalidation.
//!
//! Invalidation uses an epoch: every load records the global epoch at which its store read
//! *started*; [`LinkCache::invalidate`] bumps the epoch and remembers it per code. A cached
//! entry whose load started before the latest invalidation of its code is stale and is
//! reloaded. This also covers the race where a load that began before a write finishes
//! after it (moka would otherwise insert that old value after the invalidation).
//!
//! **Front** (`crate::front`): hits are served first from a small direct-mapped array of
//! entries the moka cache recently returned (at most 1 s, and at most a quarter of the
//! TTL, after moka returned them), with the same freshness check, so that the common hit
//! costs neither moka's read bookkeeping nor its housekeeping.
//!
//! **L2** (optional, [`LinkCache::with_l2`]): on an L1 miss the load asks the shared
//! second-level cache ([`LinkCacheL2`], Redis) before the store, and fills it from the store
//! on an L2 miss. L1 hits never touch it. For [`L2_BYPASS`] after a code is invalidated in
//! this process, loads skip L2 and read the store: the write's new state may not have
//! reached L2 yet, and this process must read its own writes. [`LinkCache::invalidate_all`]
//! drops every entry (after the L2 invalidation subscription was re-established).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode};
use moka::Expiry;
use rand::RngExt;
use sluice_connectors::{L2Lookup, LinkCacheL2, LinkStore};
use sluice_schemas::{Link, RedirectType};

use crate::config::RedirectConfig;
use crate::front::Front;
use crate::metrics::RedirectMetrics;

/// A link prepared for answering redirects: header values are computed once per load.
#[derive(Debug)]
pub struct CachedLink {
    /// `Location` for requests without a query string (the stored target, ASCII).
    pub location: HeaderValue,
    /// The target up to (excluding) its fragment, for appending a query string.
    pub target_before_fragment: Box<str>,
    /// The target's fragment including `#`, or empty.
    pub fragment: Box<str>,
    /// Whether the target already has a `?` before its fragment.
    pub target_has_query: bool,
    /// 301 or 302.
    pub status: StatusCode,
    /// Disabled links answer 404.
    pub enabled: bool,
    /// Expiry, ms since the epoch (UTC); the link answers 410 from this instant on.
    pub expires_at_ms: Option<i64>,
}

impl CachedLink {
    /// Prepares `link`; `None` if its target is not a valid header value (never true for
    /// targets validated by the API, which are ASCII without controls).
    pub fn from_link(link: &Link) -> Option<Self> {
        let location = HeaderValue::from_str(&link.long_url).ok()?;
        let (before, fragment) = match link.long_url.find('#') {
            Some(i) => link.long_url.split_at(i),
            None => (link.long_url.as_str(), ""),
        };
        Some(Self {
            location,
            target_has_query: before.contains('?'),
            target_before_fragment: before.into(),
            fragment: fragment.into(),
            status: match link.redirect_type {
                RedirectType::Permanent => StatusCode::MOVED_PERMANENTLY,
                RedirectType::Found => StatusCode::FOUND,
            },
            enabled: link.enabled,
            expires_at_ms: link.expires_at.map(|t| t.timestamp_millis()),
        })
    }
}

/// A cache entry: the link (or `None` = no such code) and the epoch its load started at.
#[derive(Debug)]
pub struct Entry {
    pub(crate) epoch: u64,
    pub(crate) link: Option<Arc<CachedLink>>,
}

struct JitteredExpiry {
    ttl: Duration,
    jitter: f64,
    negative_ttl: Duration,
}

impl JitteredExpiry {
    fn ttl_for(&self, entry: &Entry) -> Duration {
        if entry.link.is_none() {
            return self.negative_ttl;
        }
        if self.jitter <= 0.0 {
            return self.ttl;
        }
        let f = 1.0 + rand::rng().random_range(-self.jitter..=self.jitter);
        self.ttl.mul_f64(f)
    }
}

impl Expiry<Arc<str>, Arc<Entry>> for JitteredExpiry {
    fn expire_after_create(&self, _key: &Arc<str>, value: &Arc<Entry>, _created_at: Instant) -> Option<Duration> {
        Some(self.ttl_for(value))
    }

    fn expire_after_update(&self, _key: &Arc<str>, value: &Arc<Entry>, _at: Instant, _left: Option<Duration>) -> Option<Duration> {
        Some(self.ttl_for(value))
    }
}

/// How long after a local invalidation of a code its loads skip the L2 cache.
pub const L2_BYPASS: Duration = Duration::from_secs(2);

/// The L1 cache in front of the (optional) L2 cache and the link store.
pub struct LinkCache {
    store: Arc<dyn LinkStore>,
    cache: moka::future::Cache<Arc<str>, Arc<Entry>>,
    epoch: AtomicU64,
    /// Entries loaded at an epoch below this are stale ([`Self::invalidate_all`]).
    all_before: AtomicU64,
    invalidated: moka::sync::Cache<Arc<str>, u64>,
    l2: Option<Arc<dyn LinkCacheL2>>,
    /// Codes invalidated within [`L2_BYPASS`]: their loads read the store.
    l2_bypass: moka::sync::Cache<Arc<str>, ()>,
    /// Recently served entries ahead of `cache` ([`crate::front`]).
    front: Front,
    metrics: RedirectMetrics,
}

impl std::fmt::Debug for LinkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkCache").field("entries", &self.cache.entry_count()).field("epoch", &self.epoch.load(Ordering::Relaxed)).finish()
    }
}

impl LinkCache {
    /// A cache over `store` sized and timed by `config`.
    pub fn new(store: Arc<dyn LinkStore>, config: &RedirectConfig, metrics: RedirectMetrics) -> Self {
        let jitter = config.cache_ttl_jitter.clamp(0.0, 0.9);
        let cache = moka::future::Cache::builder()
            .max_capacity(config.cache_capacity)
            .expire_after(JitteredExpiry { ttl: config.cache_ttl, jitter, negative_ttl: config.negative_ttl })
            .build();
        // An invalidation record must outlive every entry loaded before it.
        let record_ttl = config.cache_ttl.mul_f64(1.0 + jitter).max(config.negative_ttl) + Duration::from_secs(1);
        let invalidated = moka::sync::Cache::builder().max_capacity(config.cache_capacity.max(100_000)).time_to_live(record_ttl).build();
        let l2_bypass = moka::sync::Cache::builder().max_capacity(100_000).time_to_live(L2_BYPASS).build();
        let front = Front::new(config.cache_capacity, config.cache_ttl.mul_f64(1.0 - jitter), config.negative_ttl);
        Self { store, cache, epoch: AtomicU64::new(0), all_before: AtomicU64::new(0), invalidated, l2: None, l2_bypass, front, metrics }
    }

    /// Consults `l2` between this cache and the store (module docs).
    pub fn with_l2(mut self, l2: Arc<dyn LinkCacheL2>) -> Self {
        self.l2 = Some(l2);
        self
    }

    /// The L2 cache, if any.
    pub fn l2(&self) -> Option<&Arc<dyn LinkCacheL2>> {
        self.l2.as_ref()
    }

    /// The link for `code` (`None` when no live link has it), from the cache or, once per
    /// code at a time however many requests miss together, from the store. Counts
    /// `sluice_redirect_cache_hits_total` / `_misses_total`.
    ///
    /// Errors: [`crate::Error::Store`] when the store read fails (not cached).
    pub async fn lookup(&self, code: &str) -> crate::Result<Option<Arc<CachedLink>>> {
        self.lookup_at(code, Instant::now()).await
    }

    /// [`Self::lookup`] for a request that arrived at `now` (a clock read the caller already
    /// made; the front serves entries until their slot's deadline measured against it).
    ///
    /// Errors: as [`Self::lookup`].
    pub async fn lookup_at(&self, code: &str, now: Instant) -> crate::Result<Option<Arc<CachedLink>>> {
        if let Some(link) = self.with_front(code, now, |l| l.cloned()) {
            return Ok(link);
        }
        if let Some(e) = self.cache.get(code).await {
            if self.is_fresh(code, &e) {
                self.front.put(code, &e, now);
                self.metrics.cache_hits.increment(1);
                return Ok(e.link.clone());
            }
            self.front.forget(code);
            self.cache.invalidate(code).await;
        }
        self.metrics.cache_misses.increment(1);
        let key: Arc<str> = Arc::from(code);
        let e = self.cache.try_get_with(key.clone(), self.load(code)).await?;
        if self.is_fresh(code, &e) {
            return Ok(e.link.clone());
        }
        // We joined a load that started before the latest write: read again ourselves.
        let e = self.load(code).await.map_err(Arc::new)?;
        self.cache.insert(key, e.clone()).await;
        Ok(e.link.clone())
    }

    /// `f` applied to the answer [`Self::lookup_at`] would give (the link, `None` = no live
    /// link has this code) when the front array (module docs) holds a fresh entry for
    /// `code` at `now`, counted as a cache hit; `None` (nothing counted, `f` not called)
    /// otherwise: [`Self::lookup_at`] then consults the L1 cache and the store. `f` runs
    /// with the front's slot locked, so that a hit changes no reference count: keep it
    /// short and copy out what outlives it.
    pub fn with_front<R>(&self, code: &str, now: Instant, f: impl FnOnce(Option<&Arc<CachedLink>>) -> R) -> Option<R> {
        let r = self.front.with(code, now, |e| self.is_fresh_epoch(code, e.epoch).then(|| f(e.link)))?;
        self.metrics.cache_hits.increment(1);
        Some(r)
    }

    /// Forgets what is cached for `code`: the next lookup reads the store. Synchronous and
    /// cheap; called by the API's link-change hook before the API responds.
    pub fn invalidate(&self, code: &str) {
        let inv = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let key: Arc<str> = Arc::from(code);
        if self.l2.is_some() {
            self.l2_bypass.insert(Arc::clone(&key), ());
        }
        self.invalidated.insert(key, inv);
        self.front.forget(code);
    }

    /// Forgets everything cached: every entry loaded before this call is reloaded.
    pub fn invalidate_all(&self) {
        let inv = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.all_before.fetch_max(inv, Ordering::SeqCst);
    }

    /// Number of cached entries (approximate, for tests and diagnostics).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    fn is_fresh(&self, code: &str, e: &Entry) -> bool {
        self.is_fresh_epoch(code, e.epoch)
    }

    /// Whether an entry for `code` loaded at `epoch` is still current (no invalidation of
    /// `code`, or of everything, since).
    fn is_fresh_epoch(&self, code: &str, epoch: u64) -> bool {
        if epoch == self.epoch.load(Ordering::SeqCst) {
            return true;
        }
        if epoch < self.all_before.load(Ordering::SeqCst) {
            return false;
        }
        self.invalidated.get(code).is_none_or(|inv| epoch >= inv)
    }

    async fn load(&self, code: &str) -> Result<Arc<Entry>, sluice_connectors::Error> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        if let Some(l2) = &self.l2
            && !self.l2_bypass.contains_key(code)
        {
            match l2.get(code).await {
                L2Lookup::Hit(l) => return Ok(Arc::new(Entry { epoch, link: prepare(&l) })),
                L2Lookup::Absent => return Ok(Arc::new(Entry { epoch, link: None })),
                L2Lookup::Miss => {}
            }
        }
        let link = self.store.get(code).await?;
        if let Some(l2) = &self.l2 {
            l2.fill(code, link.as_ref());
        }
        Ok(Arc::new(Entry { epoch, link: link.as_ref().and_then(prepare) }))
    }
}

fn prepare(l: &sluice_schemas::Link) -> Option<Arc<CachedLink>> {
    let c = CachedLink::from_link(l);
    if c.is_none() {
        tracing::warn!(code = %l.code, "stored target is not a valid header value, answering 404");
    }
    c.map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The jittered TTL of a positive entry stays inside `ttl × [1 − j, 1 + j]` and spreads
    /// over it (10,000 draws: the chance that none falls in the outer tenth of either side
    /// is 0.9^10000); negative entries always get `negative_ttl`.
    #[test]
    fn jittered_ttl_spreads_within_its_bounds() {
        let e = JitteredExpiry { ttl: Duration::from_secs(100), jitter: 0.25, negative_ttl: Duration::from_secs(5) };
        let negative = Entry { epoch: 0, link: None };
        assert_eq!(e.ttl_for(&negative), Duration::from_secs(5));
        let zero = JitteredExpiry { jitter: 0.0, ..e };
        let link = crate::test_link("j", "https://e.example/j");
        let p = Entry { epoch: 0, link: prepare(&link) };
        assert!(p.link.is_some());
        assert_eq!(zero.ttl_for(&p), Duration::from_secs(100));
        let e = JitteredExpiry { ttl: Duration::from_secs(100), jitter: 0.25, negative_ttl: Duration::from_secs(5) };
        let draws: Vec<f64> = (0..10_000).map(|_| e.ttl_for(&p).as_secs_f64()).collect();
        assert!(draws.iter().all(|d| (75.0..=125.0).contains(d)), "out of bounds");
        assert!(draws.iter().any(|d| *d < 80.0) && draws.iter().any(|d| *d > 120.0), "no spread");
    }
}
