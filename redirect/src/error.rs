//! The one error type of `sluice-redirect`.

/// Failures of the redirect path and its configuration. Bad request input never produces an
/// error here (an impossible code is simply a 404).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The link store failed while looking up a code (answered 503, retryable).
    #[error("link store lookup failed: {0}")]
    Store(#[from] std::sync::Arc<sluice_connectors::Error>),
    /// A `server.forwarded-header` value that is not a valid HTTP header name, or names a
    /// standard request header that carries no client address (`host`, `cookie`, ...): a
    /// config error, refused at start.
    #[error(
        "server.forwarded-header \"{value}\" {reason}: use \"auto\" (X-Forwarded-For, else Forwarded), \"forwarded\", \"x-forwarded-for\" or the header your proxy sets (e.g. \"x-real-ip\", \"cf-connecting-ip\")"
    )]
    ForwardedHeader {
        /// The configured value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A `redirect.prefetch` value other than `refuse`, `redirect` or `count`: a config error,
    /// refused at start.
    #[error("redirect.prefetch {value:?} is not one of \"refuse\" (the default), \"redirect\" or \"count\"")]
    Prefetch {
        /// The configured value.
        value: String,
    },
}

impl Error {
    /// Whether retrying later may succeed: a store failure may; a config error never does.
    pub fn retryable(&self) -> bool {
        matches!(self, Error::Store(_))
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
