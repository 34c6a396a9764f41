//! The redirect hot path of Sluice: `GET /{code}` → 301/302 with `Location`, and a
//! [`sluice_schemas::ClickEvent`] per click handed to ingest without waiting.
//!
//! | module | what |
//! |---|---|
//! | [`handler`] | the `GET`/`HEAD /{code}` handler |
//! | [`head`] | [`head::RequestHead`]: what the handler reads of a request (`Parts` or a server's own view) |
//! | [`cache`] | L1 moka cache: jittered TTL, negative caching, single-flight, invalidation |
//! | `front` | a direct-mapped array of recently served entries ahead of the L1 cache |
//! | [`click`] | [`ClickSink`] and event minting (visitor id, truncated IP) |
//! | [`client_ip`] | socket peer vs. trusted-proxy forwarding headers |
//! | [`config`] | [`RedirectConfig`] |
//! | [`metrics`] | cache hit/miss counters, latency histogram |
//! | [`path`] | percent-encoding normalization of request paths (RFC 3986 §6.2.2.2) |
//! | [`prefetch`] | speculative requests (`Sec-Purpose: prefetch`) and what they get |
//! | [`state`] | [`RedirectState`] |
//!
//! Semantics (DESIGN.md): a click is a `GET` that produced a redirect. `HEAD`, 404 (unknown
//! or disabled), 410 (expired: `now >= expires_at`) and 503 are not clicks, nor are
//! speculative `GET`s (browser prefetches, [`prefetch`]) unless configured so. Codes are
//! case-sensitive; a path that is not `[A-Za-z0-9_-]{1,64}` is 404 without a lookup.
//!
//! Consumers: the `sluice` binary merges [`routes`] into its router; the API's link-change
//! hook calls [`RedirectState::invalidate`].
#![deny(missing_docs)]

pub mod cache;
pub mod click;
pub mod client_ip;
pub mod config;
pub mod error;
mod front;
pub mod handler;
pub mod head;
pub mod metrics;
pub mod path;
pub mod prefetch;
pub mod state;

/// Test fixture shared by the unit tests: an enabled 302 link `code` → `url`, no expiry,
/// created now (UTC).
#[cfg(test)]
pub(crate) fn test_link(code: &str, url: &str) -> sluice_schemas::Link {
    let now = chrono::Utc::now();
    sluice_schemas::Link {
        code: code.into(),
        long_url: url.into(),
        domain: None,
        expires_at: None,
        enabled: true,
        tags: vec![],
        redirect_type: sluice_schemas::RedirectType::Found,
        org: None,
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

use axum::Router;
use axum::routing::get;

pub use click::{ChannelClickSink, ClickSink};
pub use config::RedirectConfig;
pub use error::{Error, Result};
pub use head::{HeaderFields, RequestHead};
pub use state::RedirectState;

/// The redirect route `/{code}` (GET and HEAD) without fallbacks, for merging.
pub fn routes(state: RedirectState) -> Router {
    Router::new().route("/{code}", get(handler::redirect)).with_state(state)
}
