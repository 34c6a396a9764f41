//! The one error type of `sluice-redirect`.

/// Failures of the redirect path. Every variant is external or retryable: bad input never
/// produces an error here (an impossible code is simply a 404).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The link store failed while looking up a code (answered 503, retryable).
    #[error("link store lookup failed: {0}")]
    Store(#[from] std::sync::Arc<sluice_connectors::Error>),
}

impl Error {
    /// Whether retrying later may succeed (always, for a store failure).
    pub fn retryable(&self) -> bool {
        true
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
