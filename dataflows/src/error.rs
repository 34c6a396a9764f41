//! The one error type of `sluice-dataflows` (STYLE §3.4).
//!
//! Every variant carries a classification: [`Error::kind`] says whose fault it is (the
//! caller's input, an external system, or a broken invariant of ours) and
//! [`Error::retryable`] whether trying the same call again later can succeed. Retry code and
//! the `error_type` metric label branch on these, never on message text.

/// Whose fault an error is (STYLE §3.4 rule 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input from the caller (query parameters, configuration, bytes from a store).
    User,
    /// A system outside this crate failed (operating system, network between processes).
    External,
    /// A broken invariant inside this crate.
    Internal,
}

impl ErrorKind {
    /// Stable lowercase label for metrics and logs (`user`, `external`, `internal`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::User => "user",
            ErrorKind::External => "external",
            ErrorKind::Internal => "internal",
        }
    }
}

/// Errors returned by the dataflow crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline configuration is invalid; the message names the offending key.
    #[error("invalid dataflow configuration: {0}")]
    Config(String),

    /// A stats query is invalid. `code` is a stable snake_case error code the serving layer
    /// returns to clients (`invalid_range`, `unaligned_range`, `range_too_long`,
    /// `range_not_retained`, `unsupported_tz_offset`, `invalid_limit`).
    #[error("invalid stats query ({code}): {message}")]
    InvalidQuery {
        /// Stable snake_case code.
        code: &'static str,
        /// Human-readable explanation, lowercase.
        message: String,
        /// Structured details for the error body's `details` (`unsupported_tz_offset`: the
        /// parameter, the zone, its offset and the instant), `None` when there are none.
        details: Option<serde_json::Value>,
    },

    /// The link's rollups live on a timely worker of another process (multi-process mode);
    /// the query must be sent to that process.
    #[error("link \"{code}\" is maintained by worker {worker} in another process")]
    NotLocal {
        /// The short code asked for.
        code: String,
        /// Global index of the worker that owns the code.
        worker: usize,
    },

    /// Sketch bytes (from a sink, checkpoint or peer) could not be decoded.
    #[error("could not decode visitor sketch: {0}")]
    SketchDecode(String),

    /// The timely runtime could not be started (for example a cluster peer is unreachable).
    #[error("could not start the dataflow runtime: {0}")]
    Start(String),

    /// A worker thread panicked or returned an error.
    #[error("dataflow worker failed: {0}")]
    Worker(String),

    /// Waiting for the dataflow to reach a frontier took longer than the given timeout.
    #[error("timed out after {0:?} waiting for the dataflow to catch up")]
    Timeout(std::time::Duration),

    /// A user-supplied GeoIP database (`EnrichConfig::geoip_path`) could not be read or is not
    /// a MaxMind DB file.
    #[error("could not open GeoIP database \"{path}\": {message}")]
    GeoIpOpen {
        /// The configured path.
        path: String,
        /// Why it failed (I/O or format error), lowercase.
        message: String,
    },

    /// Vendored enrichment data (uap-core regexes, bot patterns, referrer lists, bundled
    /// GeoIP database) failed to load or compile: a build defect, not a user error.
    #[error("could not load enrichment data: {0}")]
    EnrichData(String),

    /// A blocklist entry sent to the abuse detectors has no readable host.
    #[error("invalid blocklist entry: {0}")]
    Blocklist(String),
}

impl Error {
    /// Classification of the error (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::InvalidQuery { .. } | Error::SketchDecode(_) | Error::GeoIpOpen { .. } | Error::Blocklist(_) => ErrorKind::User,
            Error::NotLocal { .. } | Error::Start(_) | Error::Timeout(_) => ErrorKind::External,
            Error::Worker(_) | Error::EnrichData(_) => ErrorKind::Internal,
        }
    }

    /// Whether retrying the same call later can succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, Error::Start(_) | Error::Timeout(_))
    }

    pub(crate) fn query(code: &'static str, message: impl Into<String>) -> Error {
        Error::InvalidQuery { code, message: message.into(), details: None }
    }

    /// [`Self::query`] with `details`.
    pub(crate) fn query_with(code: &'static str, message: impl Into<String>, details: serde_json::Value) -> Error {
        Error::InvalidQuery { code, message: message.into(), details: Some(details) }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
