//! How errors are classified (retryable or not, metric kind) and worded from their causes.

use super::Error;

/// The message of [`Error::Migrate`]: a store with a migration this build does not have
/// (sqlx's `VersionMissing`) was written by a newer sluice; any other failure says they
/// could not be applied (the cause follows in the error's source).
pub(super) fn migrate_message(e: &sqlx::migrate::MigrateError) -> String {
    match e {
        sqlx::migrate::MigrateError::VersionMissing(v) => format!(
            "the link store has schema migration {v} applied, which this build does not have: a newer sluice wrote it (run that version, or restore a backup from before it)"
        ),
        _ => "the schema migrations could not be applied".to_owned(),
    }
}

impl Error {
    /// Whether retrying the same operation later may succeed (transient I/O, busy database,
    /// exhausted pool, a PostgreSQL server that is unreachable, shutting down or lost the
    /// database), as opposed to a user error or a broken invariant. The API answers
    /// retryable store errors with 503 `store_unavailable`, the others with 500 `internal`.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Database(e) | Error::StoreConnect { error: e, .. } | Error::StoreOpen { error: e, .. } => match e {
                sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
                sqlx::Error::Database(db) => match db.code() {
                    // SQLite (primary result code, the low byte of an extended one): BUSY (5),
                    // LOCKED (6), READONLY (8: the file became read-only under a running
                    // store, e.g. a remount), IOERR (10), FULL (13: the disk or
                    // `max_page_count` is full), CANTOPEN (14: e.g. `links.db` deleted under a
                    // running store).
                    Some(code) if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() => {
                        code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 8 | 10 | 13 | 14))
                    }
                    // PostgreSQL SQLSTATE: the server or the database is unavailable
                    // ([`pg_unavailable`]), or class 40 (serialization failure, deadlock).
                    Some(code) => pg_unavailable(&code) || code.starts_with("40"),
                    None => false,
                },
                _ => false,
            },
            Error::ClickLog { source, .. } | Error::AnomalyStore { source, .. } => {
                matches!(**source, redb::Error::Io(_) | redb::Error::DatabaseAlreadyOpen | redb::Error::PreviousIo)
            }
            #[cfg(feature = "kafka")]
            Error::Kafka { source, .. } => crate::kafka::kafka_error_retryable(source),
            #[cfg(feature = "kafka")]
            Error::SchemaRegistry { retryable, .. } => *retryable,
            #[cfg(feature = "redis")]
            Error::Redis { source, .. } => crate::redis::redis_error_retryable(source),
            #[cfg(feature = "clickhouse-sink")]
            Error::ClickHouse { source, .. } => crate::clickhouse::clickhouse_error_retryable(source),
            // Retryable once the operator has put the file back and restarted (503, not 500).
            Error::Timeout { .. }
            | Error::StoreConnectTimeout { .. }
            | Error::CircuitOpen { .. }
            | Error::ClickLogClosed { .. }
            | Error::AnomalyStoreClosed { .. }
            | Error::LinkStoreFileMoved { .. }
            | Error::LinkStoreWrittenBack { .. }
            | Error::LinkStoreWriteBack { .. }
            | Error::LinkStoreNotWritable { .. }
            | Error::LinkStoreLowOnSpace { .. } => true,
            _ => false,
        }
    }

    /// This error and its sources, joined by `": "` (for logs and readiness messages).
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            out.push_str(": ");
            out.push_str(&s.to_string());
            source = s.source();
        }
        out
    }

    /// Coarse classification for the `error_type` metric label: `"user"` (bad input, conflict),
    /// `"external"` (database / disk) or `"internal"` (corrupt data, configuration).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::CodeTaken(_) | Error::NotFound(_) | Error::VersionMismatch { .. } | Error::IdempotencyKeyExists | Error::InvalidValue { .. } => "user",
            Error::Database(_) | Error::Migrate(_) | Error::ClickLog { .. } | Error::ClickLogClosed { .. } | Error::AnomalyStore { .. } => "external",
            Error::ClickLogDeleted { .. } | Error::ClickLogDirRemoved { .. } | Error::ClickLogReplaced { .. } | Error::ClickLogDiverted { .. } => "external",
            Error::LinkStoreFileMoved { .. } | Error::LinkStoreNotWritable { .. } | Error::StoreReadOnly { .. } => "external",
            Error::LinkStoreWrittenBack { .. } | Error::LinkStoreWriteBack { .. } => "external",
            Error::LinkStoreLowOnSpace { .. } | Error::StoreConnectTimeout { .. } | Error::StoreConnect { .. } | Error::StoreOpen { .. } => "external",
            Error::AnomalyStoreClosed { .. } | Error::AnomalyStoreDeleted { .. } | Error::AnomalyStoreReplaced { .. } => "external",
            Error::AnomalyStoreDirRemoved { .. } | Error::AnomalyStoreLost { .. } => "external",
            Error::Corrupt(_)
            | Error::ClickLogDecode { .. }
            | Error::ClickLogFormat { .. }
            | Error::ClickLogDamaged { .. }
            | Error::ClickLogDamagedInUse { .. }
            | Error::ClickLogContinued { .. }
            | Error::StoreDamaged { .. }
            | Error::Config(_) => "internal",
            #[cfg(feature = "kafka")]
            Error::Kafka { .. } | Error::SchemaRegistry { .. } => "external",
            #[cfg(feature = "redis")]
            Error::Redis { .. } => "external",
            #[cfg(feature = "clickhouse-sink")]
            Error::ClickHouse { .. } => "external",
            Error::Timeout { .. } | Error::CircuitOpen { .. } => "external",
        }
    }

    pub(crate) fn click_log(op: &'static str, source: impl Into<redb::Error>) -> Self {
        Error::ClickLog { op, source: Box::new(source.into()) }
    }
}

/// SQLite's own words for `e`: the message and its (extended) result code (`disk I/O error
/// (SQLite code 266)`), without sqlx's "error returned from database: " prefix; any other error as sqlx
/// says it.
pub(super) fn sqlite_cause(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLite code {code})", db.message()),
            None => db.message().to_owned(),
        },
        other => other.to_string(),
    }
}

/// Whether a PostgreSQL SQLSTATE says the server or the database cannot be used right now,
/// rather than that the statement is wrong: classes 08 (connection exception), 53
/// (insufficient resources: disk full, out of memory, too many connections), 58 (system
/// error: I/O), 57P01 (admin shutdown, also sent to the sessions of a database dropped
/// `WITH (FORCE)`), 57P02 (crash shutdown), 57P03 (cannot connect now: starting up) and
/// 3D000 (invalid catalog name: the database does not exist, e.g. dropped under a running
/// store). Syntax errors, constraint violations and the like are not.
fn pg_unavailable(code: &str) -> bool {
    ["08", "53", "58"].iter().any(|class| code.starts_with(class)) || matches!(code, "57P01" | "57P02" | "57P03" | "3D000")
}

#[cfg(test)]
mod tests {
    use super::{migrate_message, pg_unavailable};

    #[test]
    fn a_store_with_a_migration_this_build_lacks_was_written_by_a_newer_build() {
        assert_eq!(
            migrate_message(&sqlx::migrate::MigrateError::VersionMissing(99)),
            "the link store has schema migration 99 applied, which this build does not have: a newer sluice wrote it (run that version, or restore a backup from before it)"
        );
        assert_eq!(migrate_message(&sqlx::migrate::MigrateError::VersionMismatch(3)), "the schema migrations could not be applied");
    }

    #[test]
    fn postgres_sqlstates_of_an_unusable_server_or_database_are_unavailable() {
        for code in ["08000", "08001", "08006", "53100", "53300", "58030", "57P01", "57P02", "57P03", "3D000"] {
            assert!(pg_unavailable(code), "{code}");
        }
        // Wrong statements and data stay errors (500): syntax, undefined table, unique and
        // check violations, value too long, query cancelled, invalid schema name.
        for code in ["42601", "42P01", "23505", "23514", "22001", "57014", "3F000", "40001"] {
            assert!(!pg_unavailable(code), "{code}");
        }
    }
}
