//! The ClickHouse of the end-to-end tests, reached over its HTTP interface: connection
//! settings from `CLICKHOUSE_URL`, `CLICKHOUSE_USER`, `CLICKHOUSE_PASSWORD` (else the local
//! dev server of `infra/services/clickhouse.sh`) and a fresh database per test. Included by
//! the `analytics` and `kafka` targets with `#[path = "../support/clickhouse.rs"]`.

use std::collections::BTreeMap;

/// ClickHouse as the tests see it, with this test's database.
#[derive(Clone)]
pub struct Ch {
    /// HTTP endpoint, e.g. `http://127.0.0.1:18123`.
    pub url: String,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// The test's database `it_<tag>_<10 hex>` (created by the binary's migrations).
    pub database: String,
    http: reqwest::Client,
}

impl Ch {
    /// The test environment's server and a fresh database name `it_<tag>_<random>`.
    pub fn fresh(tag: &str) -> Ch {
        let env = |k: &str, d: &str| std::env::var(k).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| d.to_string());
        Ch {
            url: env("CLICKHOUSE_URL", "http://127.0.0.1:18123"),
            user: env("CLICKHOUSE_USER", "default"),
            password: env("CLICKHOUSE_PASSWORD", "sluice"),
            database: format!("it_{tag}_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]),
            http: reqwest::Client::new(),
        }
    }

    /// Runs `sql` in the test database; the TSV answer, or the server's error text.
    pub async fn query(&self, sql: &str) -> Result<String, String> {
        let r = self
            .http
            .post(format!("{}/?database={}&default_format=TabSeparated", self.url.trim_end_matches('/'), self.database))
            .header("X-ClickHouse-User", &self.user)
            .header("X-ClickHouse-Key", &self.password)
            .body(sql.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let ok = r.status().is_success();
        let text = r.text().await.map_err(|e| e.to_string())?;
        if ok { Ok(text) } else { Err(text) }
    }

    /// `code \t n1 \t n2 …` lines as code → numbers, for the codes of `only`.
    pub async fn per_code<T>(&self, sql: &str, only: &BTreeMap<String, T>) -> Result<BTreeMap<String, Vec<u64>>, String> {
        let text = self.query(sql).await?;
        let mut out = BTreeMap::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let mut f = line.split('\t');
            let code = f.next().unwrap_or_default().to_string();
            let nums = f.map(|n| n.parse::<u64>().map_err(|e| format!("{line}: {e}"))).collect::<Result<Vec<_>, _>>()?;
            if only.contains_key(&code) {
                out.insert(code, nums);
            }
        }
        Ok(out)
    }

    /// Drops the test database (errors ignored: cleanup only).
    pub async fn drop_database(&self) {
        let c = Ch { database: "default".into(), ..self.clone() };
        let _ = c.query(&format!("DROP DATABASE IF EXISTS {}", self.database)).await;
    }
}
