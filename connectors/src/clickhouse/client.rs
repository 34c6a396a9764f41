//! The ClickHouse client (the `clickhouse` crate with its defaults: schema validation on, LZ4
//! compression; over a hyper client we build ourselves to set `TCP_NODELAY`), the versioned
//! migrations, and the healthcheck.
//!
//! Migrations are the files in `connectors/clickhouse-migrations/` (`NNNN_name.sql`, one or
//! more statements separated by `;` at the end of a line), embedded at build time and applied
//! in order at start-up; applied versions are recorded in the table `sluice_migrations`.
//! Every statement is idempotent (`IF NOT EXISTS`), so two processes migrating at once end in
//! the same schema.

use std::time::Duration;

use ::clickhouse::Client;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::config::ClickHouseConfig;
use crate::{Error, Result};

/// One versioned DDL file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Version (the file's number).
    pub version: u32,
    /// File name.
    pub name: &'static str,
    /// SQL text.
    pub sql: &'static str,
}

/// Every migration, in version order.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "0001_events_enriched.sql", sql: include_str!("../../clickhouse-migrations/0001_events_enriched.sql") },
    Migration { version: 2, name: "0002_rollups.sql", sql: include_str!("../../clickhouse-migrations/0002_rollups.sql") },
    Migration { version: 3, name: "0003_anomalies.sql", sql: include_str!("../../clickhouse-migrations/0003_anomalies.sql") },
    Migration { version: 4, name: "0004_anomalies_by_id.sql", sql: include_str!("../../clickhouse-migrations/0004_anomalies_by_id.sql") },
];

impl Migration {
    /// The statements of the file: comment lines removed, split at `;` ending a line.
    pub fn statements(&self) -> Vec<String> {
        let text: String = self.sql.lines().filter(|l| !l.trim_start().starts_with("--")).map(|l| format!("{l}\n")).collect();
        text.split(";\n").map(str::trim).filter(|s| !s.is_empty()).map(|s| s.trim_end_matches(';').to_string()).collect()
    }
}

/// What [`migrate`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions recorded before.
    pub before: Vec<u32>,
    /// Versions applied now.
    pub applied: Vec<u32>,
}

/// A client of `config.database` (validated first).
///
/// Errors: [`Error::Config`] for an invalid or disabled configuration.
pub fn client(config: &ClickHouseConfig) -> Result<Client> {
    Ok(server_client(config)?.with_database(&config.database))
}

/// A client without a database (for `CREATE DATABASE`).
pub fn server_client(config: &ClickHouseConfig) -> Result<Client> {
    config.validate()?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    connector.set_connect_timeout(Some(config.connect_timeout));
    // Idle sockets are dropped below ClickHouse's keep-alive timeout (10 s; 3 s before 23.11).
    let http = HyperClient::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(2)).build(connector);
    Ok(Client::with_http_client(http).with_url(config.url_str()?).with_user(&config.user).with_password(&config.password.0))
}

/// Runs `fut` within `timeout`, mapping errors to [`Error::ClickHouse`] / [`Error::Timeout`].
pub(crate) async fn within<T>(op: &'static str, timeout: Duration, fut: impl std::future::Future<Output = ::clickhouse::error::Result<T>>) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r.map_err(|source| Error::ClickHouse { op, source }),
        Err(_) => Err(Error::Timeout { service: "clickhouse", op, timeout_ms: timeout.as_millis() as u64 }),
    }
}

/// `SELECT 1` within `timeout`: what every query of the connector needs.
///
/// Errors: [`Error::Config`], [`Error::ClickHouse`] (unreachable, authentication),
/// [`Error::Timeout`].
pub async fn healthcheck(config: &ClickHouseConfig, timeout: Duration) -> Result<()> {
    let c = server_client(config)?;
    let one = within("run the healthcheck", timeout, c.query("SELECT 1").fetch_one::<u8>()).await?;
    if one == 1 { Ok(()) } else { Err(Error::Config(format!("clickhouse answered SELECT 1 with {one}"))) }
}

/// Creates the database if missing and applies the migrations not recorded yet.
///
/// Errors: [`Error::ClickHouse`] (the failing statement's version is in the log),
/// [`Error::Timeout`], [`Error::Config`].
pub async fn migrate(config: &ClickHouseConfig) -> Result<MigrationReport> {
    migrate_up_to(config, u32::MAX).await
}

/// [`migrate`], applying only the migrations up to version `last` (upgrade tests).
///
/// Errors: as [`migrate`].
pub async fn migrate_up_to(config: &ClickHouseConfig, last: u32) -> Result<MigrationReport> {
    let t = config.request_timeout;
    let server = server_client(config)?;
    // The name is a validated identifier: no quoting needed.
    within("create the database", t, server.query(&format!("CREATE DATABASE IF NOT EXISTS {}", config.database)).execute()).await?;
    let c = client(config)?;
    within(
        "create the migrations table",
        t,
        c.query(
            "CREATE TABLE IF NOT EXISTS sluice_migrations (version UInt32, name String, applied_at DateTime64(3, 'UTC')) \
             ENGINE = ReplacingMergeTree ORDER BY version",
        )
        .execute(),
    )
    .await?;
    let mut before: Vec<u32> = within("read applied migrations", t, c.query("SELECT DISTINCT version FROM sluice_migrations").fetch_all::<u32>()).await?;
    before.sort_unstable();
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version <= last && !before.contains(&m.version)) {
        for stmt in m.statements() {
            if let Err(e) = within("run a migration", t, c.query(&stmt).execute()).await {
                tracing::error!(version = m.version, name = m.name, error = %e, "clickhouse migration failed");
                return Err(e);
            }
        }
        within(
            "record a migration",
            t,
            c.query("INSERT INTO sluice_migrations (version, name, applied_at) SELECT ?, ?, now64(3)").bind(m.version).bind(m.name).execute(),
        )
        .await?;
        tracing::info!(version = m.version, name = m.name, database = %config.database, "clickhouse migration applied");
        applied.push(m.version);
    }
    Ok(MigrationReport { before, applied })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_ordered_and_split_into_statements() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
        }
        let rollups = MIGRATIONS[1].statements();
        assert_eq!(rollups.len(), 4);
        for (s, g) in rollups.iter().zip(["minute", "quarter", "hour", "day"]) {
            assert!(s.starts_with(&format!("CREATE TABLE IF NOT EXISTS rollups_{g} (")), "{s}");
            assert!(s.contains("ReplacingMergeTree(version)") && !s.contains(';') && !s.contains("--"));
        }
        assert_eq!(MIGRATIONS[0].statements().len(), 1);
        assert_eq!(MIGRATIONS[2].statements().len(), 1);
    }
}
