//! Per-test store contexts: a temporary data directory (SQLite) or a fresh schema in the
//! PostgreSQL database at `SLUICE_POSTGRES_URL`, dropped when the test passes.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use sluice_connectors::{LinkStore, open_store};
use sluice_schemas::{Link, RedirectType};

/// What a behaviour test gets: a location string accepted by `open_store` / `migrate`.
pub struct Ctx {
    /// Data directory path or `postgres://` URL selecting the test's own schema.
    pub target: String,
}

impl Ctx {
    /// Opens (or re-opens) the test's store.
    pub async fn open(&self) -> Arc<dyn LinkStore> {
        open_store(&self.target).await.expect("open link store")
    }
}

pub async fn sqlite<F, Fut>(test: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("data").to_str().expect("utf-8 temp path").to_string();
    test(Ctx { target }).await;
}

#[cfg(feature = "integration-tests")]
pub async fn postgres<F, Fut>(test: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    use sqlx::Connection;
    let url = std::env::var("SLUICE_POSTGRES_URL").expect(
        "feature integration-tests is on: SLUICE_POSTGRES_URL must name a PostgreSQL server \
         (./infra/test starts one)",
    );
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect to SLUICE_POSTGRES_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\""))).execute(&mut conn).await.expect("create test schema");
    let sep = if url.contains('?') { '&' } else { '?' };
    test(Ctx { target: format!("{url}{sep}options[search_path]={schema}") }).await;
    // Only reached when the test passed: failed tests leave their schema for inspection
    // (infra/test recreates the test database on every run).
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE"))).execute(&mut conn).await.expect("drop test schema");
}

/// 2024-03-01T12:00:00.123456789Z: nanoseconds on purpose, the stores keep microseconds.
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_709_294_400, 123_456_789).expect("valid instant")
}

/// `t` truncated to whole microseconds, computed independently of the store code.
pub fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = t.timestamp_subsec_nanos();
    t - TimeDelta::nanoseconds(i64::from(nanos % 1000))
}

/// A plain link created at `at`.
pub fn link(code: &str, at: DateTime<Utc>) -> Link {
    Link {
        code: code.to_string(),
        long_url: format!("https://example.com/{code}"),
        domain: None,
        expires_at: None,
        enabled: true,
        tags: Vec::new(),
        redirect_type: RedirectType::Found,
        org: None,
        created_at: at,
        updated_at: at,
        version: 0,
    }
}

/// What the store should hold for `l` inserted as is.
pub fn stored(l: &Link) -> Link {
    let mut tags: Vec<String> = Vec::new();
    for t in &l.tags {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    Link { tags, expires_at: l.expires_at.map(micros), created_at: micros(l.created_at), updated_at: micros(l.created_at), version: 1, ..l.clone() }
}

pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
