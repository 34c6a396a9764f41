//! Shared state of the link API: the store, the deployment's settings and the link-change
//! hooks the binary wires (redirect cache invalidation, the dataflow's metadata feed).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use sluice_connectors::{LinkChange, LinkStore};
use sluice_schemas::Link;

use crate::url_policy::{UrlPolicy, normalize_host};

/// Called synchronously after every successful create, update and delete, before the API
/// responds; so a hook that invalidates an in-process cache gives read-after-write.
/// Hooks must be fast and must not block (no I/O): hand work to a task if needed.
pub trait LinkChangeHook: Send + Sync + 'static {
    /// One change, as committed by the store.
    fn link_changed(&self, change: &LinkChange);
}

impl<F: Fn(&LinkChange) + Send + Sync + 'static> LinkChangeHook for F {
    fn link_changed(&self, change: &LinkChange) {
        self(change)
    }
}

/// Settings of the link API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Origin of the short URLs the API returns (`http://127.0.0.1:8080`); must have an
    /// empty path. Its host is one of the service's own short domains.
    pub base_url: url::Url,
    /// Further own short domains (hosts, Unicode or punycode); links may name one as `domain`.
    pub short_domains: Vec<String>,
    /// Length of generated codes (default 7).
    pub code_length: usize,
    /// Maximum `long_url` length in bytes after normalization (default 8192).
    pub max_url_bytes: usize,
    /// Blocked destination domains (a host equal to or under one → 422 `policy_violation`).
    pub blocklist: Vec<String>,
    /// The port this process listens on when it listens on an unspecified (`0.0.0.0`, `::`)
    /// or a loopback address, `None` otherwise: targets on any loopback host at that port are
    /// redirect loops ([`UrlPolicy::loopback_port`]), whatever the base URL's host is.
    pub loopback_port: Option<u16>,
}

impl ApiConfig {
    /// Defaults for `base_url`: 7-character codes, 8192-byte URLs, no extra domains, no
    /// blocklist, no unspecified listen address.
    pub fn new(base_url: url::Url) -> Self {
        Self { base_url, short_domains: Vec::new(), code_length: 7, max_url_bytes: 8192, blocklist: Vec::new(), loopback_port: None }
    }
}

pub(crate) struct Inner {
    pub store: Arc<dyn LinkStore>,
    pub policy: UrlPolicy,
    pub code_length: usize,
    /// `scheme://host[:port]` of the base URL, no trailing slash.
    pub base_prefix: String,
    pub base_scheme: String,
    /// Punycode host of the base URL.
    pub base_host: String,
    /// All own short-domain hosts (base host first), punycode.
    pub own_hosts: Vec<String>,
    pub hooks: Vec<Arc<dyn LinkChangeHook>>,
    pub key_locks: KeyLocks,
    /// `POST /v1/links` rate limit (C25), when configured.
    pub create_limiter: Option<Arc<crate::ratelimit::RateLimiter>>,
}

/// Cheaply clonable handle to the API's state.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").field("backend", &self.inner.store.backend()).field("base", &self.inner.base_prefix).finish()
    }
}

impl ApiState {
    /// State over `store` with `config` and no hooks.
    pub fn new(store: Arc<dyn LinkStore>, config: ApiConfig) -> Self {
        let base_host = config.base_url.host_str().map(normalize_host).unwrap_or_default();
        let mut own_hosts = vec![base_host.clone()];
        for d in &config.short_domains {
            let h = normalize_host(d);
            if !own_hosts.contains(&h) {
                own_hosts.push(h);
            }
        }
        let base_prefix = config.base_url.origin().ascii_serialization();
        let policy = UrlPolicy::new(config.max_url_bytes, &own_hosts, &config.blocklist).with_loopback_port(config.loopback_port);
        Self {
            inner: Arc::new(Inner {
                store,
                policy,
                code_length: config.code_length,
                base_prefix,
                base_scheme: config.base_url.scheme().to_owned(),
                base_host,
                own_hosts,
                hooks: Vec::new(),
                key_locks: KeyLocks::default(),
                create_limiter: None,
            }),
        }
    }

    /// Adds a hook called after every link change.
    ///
    /// # Panics
    /// If called after the state was cloned (hooks are wired once, before serving).
    pub fn with_hook(mut self, hook: Arc<dyn LinkChangeHook>) -> Self {
        Arc::get_mut(&mut self.inner).expect("hooks are added before the state is shared").hooks.push(hook);
        self
    }

    /// Limits `POST /v1/links` per client with `limiter` ([`crate::ratelimit`]).
    ///
    /// # Panics
    /// If called after the state was cloned.
    pub fn with_create_limiter(mut self, limiter: Arc<crate::ratelimit::RateLimiter>) -> Self {
        Arc::get_mut(&mut self.inner).expect("the limiter is set before the state is shared").create_limiter = Some(limiter);
        self
    }

    /// The link store.
    pub fn store(&self) -> &Arc<dyn LinkStore> {
        &self.inner.store
    }

    /// The short URL of `link`: `base_url/{code}`, or `{scheme}://{domain}/{code}` for a
    /// link on another own short domain.
    pub fn short_url(&self, link: &Link) -> String {
        match &link.domain {
            Some(d) if *d != self.inner.base_host => format!("{}://{}/{}", self.inner.base_scheme, d, link.code),
            _ => format!("{}/{}", self.inner.base_prefix, link.code),
        }
    }

    pub(crate) fn notify(&self, change: LinkChange) {
        for hook in &self.inner.hooks {
            hook.link_changed(&change);
        }
    }
}

/// Per-key async mutexes (for `Idempotency-Key`): requests with the same key run one at a
/// time inside this process. Entries are weak and pruned as the map grows.
#[derive(Default)]
pub(crate) struct KeyLocks {
    map: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl KeyLocks {
    pub(crate) fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.map.lock();
        if let Some(m) = map.get(key).and_then(Weak::upgrade) {
            return m;
        }
        if map.len() >= 1024 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let m = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key.to_owned(), Arc::downgrade(&m));
        m
    }
}
