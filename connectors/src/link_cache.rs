//! [`LinkCacheL2`]: the second-level link cache the redirect path consults between its
//! in-process L1 cache and the link store.
//!
//! The trait lives here (without any feature) so `sluice-redirect` can hold an optional
//! `Arc<dyn LinkCacheL2>` whatever backends are compiled in; the Redis implementation is
//! `redis::RedisLinkCache` (feature `redis`).
//!
//! Contract every implementation keeps:
//! * [`LinkCacheL2::get`] never fails and never blocks longer than its own short deadline:
//!   an unavailable cache answers [`L2Lookup::Miss`], and the caller reads the store.
//! * [`LinkCacheL2::fill`] and [`LinkCacheL2::publish`] return at once; the I/O runs in the
//!   background. `fill` never overwrites an entry (a slow load cannot replace what a later
//!   write published); `publish` overwrites it with the committed state and tells every
//!   process sharing the cache to drop the code from its L1.

use async_trait::async_trait;
use sluice_schemas::Link;

use crate::LinkChange;

/// Answer of a second-level lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L2Lookup {
    /// The cache holds the link.
    Hit(Link),
    /// The cache holds a negative entry: no live link has this code (unknown or deleted).
    Absent,
    /// Nothing cached, or the cache is unavailable / too slow: read the store.
    Miss,
}

/// What a process must drop from its L1 cache when another process changed a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// One code changed.
    Code(String),
    /// Invalidations may have been missed (the subscription was re-established): drop
    /// everything.
    All,
}

/// A second-level link cache shared by redirect processes (module docs).
#[async_trait]
pub trait LinkCacheL2: Send + Sync + 'static {
    /// Looks `code` up. Never an error: failures and timeouts are [`L2Lookup::Miss`].
    async fn get(&self, code: &str) -> L2Lookup;

    /// Caches what the store answered for `code` (`None`: a negative entry with the short
    /// negative TTL), unless an entry exists. Returns at once.
    fn fill(&self, code: &str, link: Option<&Link>);

    /// Writes the committed state of a changed link (a negative entry for a deletion) and
    /// broadcasts its invalidation to every process. Returns at once; a change that cannot
    /// be written now is retried in the background.
    fn publish(&self, change: &LinkChange);

    /// Whether the cache answered recently (for `/readyz`; redirects work either way).
    fn available(&self) -> bool;
}
