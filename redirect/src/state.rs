//! [`RedirectState`]: everything the hot path needs, shared behind one `Arc`.

use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use sluice_connectors::{Invalidation, LinkCacheL2, LinkStore};
use sluice_schemas::VisitorSalt;

use crate::cache::LinkCache;
use crate::click::{ClickSink, PeriodSalts};
use crate::client_ip::ClientIpResolver;
use crate::config::RedirectConfig;
use crate::metrics::RedirectMetrics;

pub(crate) struct Inner {
    pub cache: LinkCache,
    pub config: RedirectConfig,
    pub resolver: ClientIpResolver,
    pub salt: PeriodSalts,
    pub sink: Arc<dyn ClickSink>,
    pub metrics: RedirectMetrics,
    /// `public, max-age=<permanent_max_age>` for 301s of links without expiry.
    pub permanent_cc: HeaderValue,
    /// [`RedirectState::read_headers`].
    pub read_headers: Vec<HeaderName>,
}

/// Cheaply clonable state of the redirect service.
#[derive(Clone)]
pub struct RedirectState {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for RedirectState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedirectState").field("cache", &self.inner.cache).field("config", &self.inner.config).finish()
    }
}

impl RedirectState {
    /// State over `store`, minting visitor ids with `salt` and sending click events to
    /// `sink`. Registers the redirect metrics with the installed recorder.
    pub fn new(store: Arc<dyn LinkStore>, config: RedirectConfig, salt: VisitorSalt, sink: Arc<dyn ClickSink>) -> Self {
        Self::with_l2(store, config, salt, sink, None)
    }

    /// [`Self::new`] with a second-level cache between the L1 cache and the store (shared
    /// by every redirect process; see [`LinkCache`]). Changes made through this process's
    /// API should also be published to `l2` ([`LinkCacheL2::publish`]) and invalidations
    /// received from it applied with [`Self::apply_invalidation`].
    pub fn with_l2(store: Arc<dyn LinkStore>, config: RedirectConfig, salt: VisitorSalt, sink: Arc<dyn ClickSink>, l2: Option<Arc<dyn LinkCacheL2>>) -> Self {
        let metrics = RedirectMetrics::register();
        let mut cache = LinkCache::new(store, &config, metrics.clone());
        if let Some(l2) = l2 {
            cache = cache.with_l2(l2);
        }
        let permanent_cc = HeaderValue::from_str(&format!("public, max-age={}", config.permanent_max_age.as_secs()))
            .unwrap_or(HeaderValue::from_static("public, max-age=3600"));
        let resolver = ClientIpResolver::new(config.trusted_proxies.clone()).with_header(config.forwarded_header.clone());
        let read_headers = crate::click::READ_HEADERS.into_iter().chain(crate::prefetch::READ_HEADERS).chain(resolver.read_headers()).collect();
        Self { inner: Arc::new(Inner { cache, resolver, read_headers, config, salt: PeriodSalts::new(salt), sink, metrics, permanent_cc }) }
    }

    /// Every request header the redirect handler reads (click event fields, speculative
    /// request markers, the forwarding headers of trusted proxies): a server that parses
    /// requests itself may hand the handler a request head holding only these
    /// ([`crate::handler::answer_now`]) and get the same answer and click event.
    pub fn read_headers(&self) -> &[HeaderName] {
        &self.inner.read_headers
    }

    /// The L1 link cache.
    pub fn cache(&self) -> &LinkCache {
        &self.inner.cache
    }

    /// Forgets the cached state of `code` (wire this into the API's link-change hook for
    /// read-after-write).
    pub fn invalidate(&self, code: &str) {
        self.inner.cache.invalidate(code);
    }

    /// Applies an invalidation another process published through the L2 cache.
    pub fn apply_invalidation(&self, inv: &Invalidation) {
        match inv {
            Invalidation::Code(code) => self.inner.cache.invalidate(code),
            Invalidation::All => self.inner.cache.invalidate_all(),
        }
    }

    /// `Cache-Control` of a 301 at `now_ms`: `public, max-age=N` with N the configured
    /// maximum, lowered to the whole seconds left until `expires_at_ms` (0 when less than
    /// one second is left), so no browser caches a redirect past the link's expiry.
    pub fn permanent_cache_control(&self, expires_at_ms: Option<i64>, now_ms: i64) -> HeaderValue {
        let max = self.inner.config.permanent_max_age.as_secs();
        match expires_at_ms {
            Some(exp) => {
                let left = u64::try_from((exp - now_ms).max(0) / 1000).unwrap_or(0);
                if left >= max {
                    self.inner.permanent_cc.clone()
                } else {
                    HeaderValue::from_str(&format!("public, max-age={left}")).unwrap_or(HeaderValue::from_static("no-store"))
                }
            }
            None => self.inner.permanent_cc.clone(),
        }
    }
}
