//! The one error type of `sluice-connectors`.

/// Errors from link stores, the click log and (later) service connectors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The code is already used by a live link or by a deleted link inside its
    /// 30-day no-reuse period.
    #[error("code \"{0}\" is already taken")]
    CodeTaken(String),
    /// No live link has this code.
    #[error("link \"{0}\" not found")]
    NotFound(String),
    /// Optimistic concurrency check failed (`If-Match` / expected version).
    #[error("link \"{code}\" was modified: expected version {expected}, found {actual}")]
    VersionMismatch {
        /// Code of the link.
        code: String,
        /// Version the caller expected.
        expected: i64,
        /// Version currently stored.
        actual: i64,
    },
    /// An idempotency key was already recorded (insert-if-absent lost the race).
    #[error("idempotency key already recorded")]
    IdempotencyKeyExists,
    /// Database driver error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Schema migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Embedded click log error.
    #[error("click log error: {0}")]
    ClickLog(String),
    /// Invalid connector configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether retrying the same operation later may succeed (transient I/O), as opposed to
    /// a user error or a broken invariant.
    pub fn retryable(&self) -> bool {
        matches!(self, Error::Database(sqlx::Error::Io(_)) | Error::Database(sqlx::Error::PoolTimedOut))
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
