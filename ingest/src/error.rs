//! The one error type of `sluice-ingest`.

/// Errors of click intake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The click log refused the events (I/O failure, full disk, corrupt file).
    #[error("could not append events to the click log")]
    Log(#[from] sluice_connectors::Error),
    /// The blocking append task panicked or was cancelled (runtime shutting down).
    #[error("click log append task failed: {0}")]
    Task(String),
}

impl Error {
    /// Whether the same request may succeed later (always true for storage trouble: the log
    /// may recover; false for a task failure during shutdown).
    pub fn retryable(&self) -> bool {
        matches!(self, Error::Log(_))
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
