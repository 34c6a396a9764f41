//! A fresh PostgreSQL database per test (feature `integration-tests`, server at
//! `SLUICE_POSTGRES_URL`), for `[store] url`: created empty, dropped when the guard goes.

use sqlx::Connection;

/// A database of its own on the test server; dropped (`WITH (FORCE)`) by [`FreshDb::drop_now`].
pub struct FreshDb {
    server: String,
    name: String,
    /// `postgres://…/<name>`, for `[store] url`.
    pub url: String,
}

impl FreshDb {
    /// Creates `<prefix>_<uuid>` on the server at `SLUICE_POSTGRES_URL`.
    pub async fn create(prefix: &str) -> FreshDb {
        let server = std::env::var("SLUICE_POSTGRES_URL").expect("feature integration-tests is on: SLUICE_POSTGRES_URL must name a PostgreSQL server");
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&server).await.expect("connect to SLUICE_POSTGRES_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut conn).await.expect("create test database");
        let mut url = url::Url::parse(&server).expect("SLUICE_POSTGRES_URL is a URL");
        url.set_path(&format!("/{name}"));
        FreshDb { server, name, url: url.to_string() }
    }

    /// Drops the database (the servers using it must be stopped).
    pub async fn drop_now(self) {
        let mut conn = sqlx::PgConnection::connect(&self.server).await.expect("connect to SLUICE_POSTGRES_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name))).execute(&mut conn).await.expect("drop test database");
    }
}
