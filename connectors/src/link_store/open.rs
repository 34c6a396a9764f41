//! Choosing and opening a link store from one configuration string, and `sluice migrate`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::LinkStore;
use super::postgres::{PostgresLinkStore, StoreTimeouts};
use super::sqlite::SqliteLinkStore;
use super::sqlite_header::CheckedStoreFile;
use crate::{Error, Result};

/// Where the links live, parsed from a configuration string by [`StoreTarget::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreTarget {
    /// A data directory; the store is `DIR/links.db`.
    SqliteDir(PathBuf),
    /// A `sqlite:` URL naming the database file.
    SqliteUrl(String),
    /// A `postgres://` or `postgresql://` URL.
    Postgres(String),
}

impl StoreTarget {
    /// `postgres://…` / `postgresql://…` → PostgreSQL; `sqlite:…` → that SQLite file; anything
    /// else is a data directory path (SQLite `links.db` inside it). Schemes are matched in any
    /// case (RFC 3986 §3.1: `SQLITE:links.db` is `sqlite:links.db`) and kept in lower case in
    /// the URL held (sqlx matches `sqlite:` in lower case only, and read any other as part
    /// of the file name).
    ///
    /// A `sqlite:` URL is read as sqlx reads it (`sqlite:data.db`, `sqlite://data.db`: a file
    /// relative to the working directory; `sqlite:///var/x.db`: an absolute one), except that
    /// `sqlite://localhost/var/x.db` names `/var/x.db` (an empty authority or `localhost`, as
    /// in a `file:` URL, RFC 8089 §2) and `sqlite://host/path` with any other host is refused:
    /// sqlx would open `host/path` relative to the working directory, which is not what such a
    /// URL says. Its query must be one sqlx takes (`mode`, `cache`, `immutable`, `vfs`).
    ///
    /// Errors with [`Error::Config`] for an empty string, and for a `sqlite:` URL without a
    /// file (`sqlite:`, `sqlite://`), an in-memory database (`sqlite::memory:`,
    /// `mode=memory`): such a store keeps nothing past its connections (migrations applied
    /// to it are lost, links vanish at stop), a host other than `localhost`, or one sqlx
    /// refuses (`?mode=bogus`: the message says why).
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Error::Config("link store location is empty".into()));
        }
        if let Some(rest) = strip_scheme(s, "postgres://") {
            Ok(StoreTarget::Postgres(format!("postgres://{rest}")))
        } else if let Some(rest) = strip_scheme(s, "postgresql://") {
            Ok(StoreTarget::Postgres(format!("postgresql://{rest}")))
        } else if let Some(rest) = strip_scheme(s, "sqlite:") {
            let (url, rest) = match rest.strip_prefix("//") {
                Some(after) => {
                    let authority = &after[..after.find(['/', '?']).unwrap_or(after.len())];
                    let path = &after[authority.len()..];
                    if path.starts_with('/') && authority.eq_ignore_ascii_case("localhost") {
                        (format!("sqlite://{path}"), path)
                    } else if path.starts_with('/') && !authority.is_empty() {
                        return Err(Error::Config(format!(
                            "link store URL \"{s}\" names the host \"{authority}\": a sqlite: URL names a file on this machine; write \
                             sqlite:///<absolute path> (or sqlite://localhost/<absolute path>), or sqlite:<relative path>"
                        )));
                    } else {
                        (format!("sqlite://{after}"), after)
                    }
                }
                None => (format!("sqlite:{rest}"), rest),
            };
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            if path.is_empty() {
                return Err(Error::Config(format!("link store URL \"{s}\" names no database file: give one, e.g. sqlite:///var/lib/sluice/links.db")));
            }
            let memory = path == ":memory:" || path.starts_with("file::memory:") || query.split('&').any(|kv| kv == "mode=memory");
            if memory {
                return Err(Error::Config(format!(
                    "link store URL \"{s}\" is an in-memory SQLite database, which keeps no link past the process: name a database file, e.g. sqlite:///var/lib/sluice/links.db"
                )));
            }
            sqlite_options(&url).map_err(|why| Error::Config(format!("link store URL \"{s}\" is not a valid sqlite: URL: {why}")))?;
            Ok(StoreTarget::SqliteUrl(url))
        } else {
            Ok(StoreTarget::SqliteDir(Path::new(s).to_path_buf()))
        }
    }

    /// Whether `s` names a store by URL (`postgres://`, `postgresql://` or `sqlite:`, the
    /// scheme in any case) rather than by a data directory path ([`StoreTarget::parse`]).
    pub fn is_url(s: &str) -> bool {
        let s = s.trim();
        ["postgres://", "postgresql://", "sqlite:"].iter().any(|scheme| strip_scheme(s, scheme).is_some())
    }

    /// The SQLite database file this target opens: `DIR/links.db` for a data directory, the
    /// file of a `sqlite:` URL as sqlx reads it (`sqlite:/var/x.db`, `sqlite:///var/x.db`
    /// and `sqlite://data.db` name `/var/x.db`, `/var/x.db` and `data.db`); `None` for
    /// PostgreSQL.
    ///
    /// Errors: [`Error::Config`] for a `sqlite:` URL sqlx does not parse (never one
    /// [`StoreTarget::parse`] made), saying why.
    pub fn sqlite_file(&self) -> Result<Option<PathBuf>> {
        Ok(match self {
            StoreTarget::SqliteDir(dir) => Some(dir.join(super::sqlite::SQLITE_FILE_NAME)),
            StoreTarget::SqliteUrl(url) => Some(
                sqlite_options(url)
                    .map_err(|why| Error::Config(format!("link store URL \"{url}\" is not a valid sqlite: URL: {why}")))?
                    .get_filename()
                    .to_path_buf(),
            ),
            StoreTarget::Postgres(_) => None,
        })
    }

    /// Backend name (`"sqlite"` or `"postgres"`).
    pub fn backend(&self) -> &'static str {
        match self {
            StoreTarget::SqliteDir(_) | StoreTarget::SqliteUrl(_) => "sqlite",
            StoreTarget::Postgres(_) => "postgres",
        }
    }
}

/// `s` without its leading `scheme` (which ends in `:` or `://`), matched in any case.
fn strip_scheme<'a>(s: &'a str, scheme: &str) -> Option<&'a str> {
    s.get(..scheme.len()).filter(|head| head.eq_ignore_ascii_case(scheme)).map(|_| &s[scheme.len()..])
}

/// sqlx's options of the `sqlite:` URL `url` (scheme in lower case); the error is why sqlx
/// refuses it (`unknown value "bogus" for `mode``), without sqlx's generic prefix.
fn sqlite_options(url: &str) -> std::result::Result<sqlx::sqlite::SqliteConnectOptions, String> {
    <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url).map_err(|e| match e {
        sqlx::Error::Configuration(why) => why.to_string(),
        other => other.to_string(),
    })
}

/// Opens the link store named by `url_or_path` (see [`StoreTarget::parse`]), creating the
/// SQLite file and directory if missing, and applies pending migrations. A PostgreSQL
/// connection is bounded by [`StoreTimeouts::default`] ([`open_store_within`]).
///
/// Errors: [`Error::Config`] (bad location), [`Error::StoreDamaged`] (the SQLite file fails
/// its integrity check at open), [`Error::Database`] (cannot connect/open),
/// [`Error::StoreConnectTimeout`] (a PostgreSQL server that does not answer in time),
/// [`Error::Migrate`] (a migration failed or the database has migrations this build lacks).
pub async fn open_store(url_or_path: &str) -> Result<Arc<dyn LinkStore>> {
    open_store_within(url_or_path, StoreTimeouts::default()).await
}

/// [`open_store`], the PostgreSQL connections made while opening bounded by `timeouts`
/// (`[store] connect-timeout` for the first, `[store] acquire-timeout` for the pool's; TCP
/// connect, TLS and login, not the migrations: [`PostgresLinkStore::connect_within`]). A
/// SQLite store opens a local file and ignores them.
///
/// Errors as [`open_store`].
pub async fn open_store_within(url_or_path: &str, timeouts: StoreTimeouts) -> Result<Arc<dyn LinkStore>> {
    open_store_checked(url_or_path, timeouts, None).await
}

/// [`open_store_within`], after [`StoreTarget::check_existing_file`] found the SQLite file
/// intact (`checked`): a file unchanged since is not checked a second time (the check reads
/// the whole file). `None` checks as [`open_store_within`] does.
///
/// Errors as [`open_store`].
pub async fn open_store_checked(url_or_path: &str, timeouts: StoreTimeouts, checked: Option<&CheckedStoreFile>) -> Result<Arc<dyn LinkStore>> {
    Ok(match StoreTarget::parse(url_or_path)? {
        StoreTarget::SqliteDir(dir) => Arc::new(SqliteLinkStore::open_dir_after(&dir, checked).await?),
        StoreTarget::SqliteUrl(url) => Arc::new(SqliteLinkStore::open_url_after(&url, checked).await?),
        StoreTarget::Postgres(url) => Arc::new(PostgresLinkStore::connect_within(&url, timeouts).await?),
    })
}

/// Outcome of [`migrate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// `"sqlite"` or `"postgres"`.
    pub backend: &'static str,
    /// Versions recorded as applied before this run, ascending.
    pub before: Vec<i64>,
    /// Versions recorded as applied after this run, ascending (all known migrations).
    pub after: Vec<i64>,
}

impl MigrationReport {
    /// Versions this run applied.
    pub fn newly_applied(&self) -> Vec<i64> {
        self.after.iter().copied().filter(|v| !self.before.contains(v)).collect()
    }
}

const APPLIED_SQL: &str = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";

/// Versions recorded in `_sqlx_migrations`; empty when the table does not exist yet.
fn applied_or_empty(rows: std::result::Result<Vec<i64>, sqlx::Error>) -> Result<Vec<i64>> {
    match rows {
        Ok(v) => Ok(v),
        Err(sqlx::Error::Database(e)) if e.message().contains("_sqlx_migrations") => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

async fn applied_sqlite(pool: &sqlx::SqlitePool) -> Result<Vec<i64>> {
    applied_or_empty(sqlx::query_scalar(APPLIED_SQL).fetch_all(pool).await)
}

async fn applied_postgres(pool: &sqlx::PgPool) -> Result<Vec<i64>> {
    applied_or_empty(sqlx::query_scalar(APPLIED_SQL).fetch_all(pool).await)
}

/// Applies pending migrations to the store named by `url_or_path` (what `sluice migrate`
/// runs) and reports the applied versions before and after. Idempotent. PostgreSQL
/// connections are bounded by [`StoreTimeouts::default`] ([`migrate_within`]).
///
/// Errors as [`open_store`].
pub async fn migrate(url_or_path: &str) -> Result<MigrationReport> {
    migrate_within(url_or_path, StoreTimeouts::default()).await
}

/// [`migrate`], the PostgreSQL connections bounded by `timeouts` as in
/// [`open_store_within`] (ignored by SQLite).
///
/// Errors as [`open_store`].
pub async fn migrate_within(url_or_path: &str, timeouts: StoreTimeouts) -> Result<MigrationReport> {
    let target = StoreTarget::parse(url_or_path)?;
    match &target {
        StoreTarget::SqliteDir(_) | StoreTarget::SqliteUrl(_) => {
            use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
            use std::str::FromStr;
            let opts = match &target {
                StoreTarget::SqliteDir(dir) => {
                    std::fs::create_dir_all(dir).map_err(|e| Error::Config(format!("could not create data dir \"{}\": {e}", dir.display())))?;
                    SqliteConnectOptions::new().filename(dir.join(super::sqlite::SQLITE_FILE_NAME))
                }
                StoreTarget::SqliteUrl(url) => SqliteConnectOptions::from_str(url)?,
                StoreTarget::Postgres(_) => unreachable!("matched above"),
            };
            if let Some(parent) = opts.get_filename().parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| Error::Config(format!("could not create directory \"{}\": {e}", parent.display())))?;
            }
            let path = opts.get_filename().to_path_buf();
            // Under the same directory lock as a store's open (a serving process may be
            // opening the file); released before `open_dir`/`open_url` take it again.
            let guard = super::sqlite::lock_dir_of(&path).await?;
            // A 0-byte file is damage, not a new store (`sqlite_header`); a missing one has
            // nothing applied, and is created by the store's open below, not by this look
            // (which would leave it at 0 bytes for that open to refuse).
            super::sqlite_header::check_header(&path)?;
            let before = if path.exists() {
                let pool = SqlitePool::connect_with(opts).await.map_err(|e| super::sqlite::open_error(&path, e))?;
                super::sqlite::check_integrity(&pool, &path).await?;
                let before = applied_sqlite(&pool).await?;
                pool.close().await;
                before
            } else {
                Vec::new()
            };
            drop(guard);
            let store = match &target {
                StoreTarget::SqliteDir(dir) => SqliteLinkStore::open_dir(dir).await?,
                StoreTarget::SqliteUrl(url) => SqliteLinkStore::open_url(url).await?,
                StoreTarget::Postgres(_) => unreachable!("matched above"),
            };
            let after = applied_sqlite(&store.writer_pool()).await?;
            store.close().await;
            Ok(MigrationReport { backend: "sqlite", before, after })
        }
        StoreTarget::Postgres(url) => {
            // One direct connection first: a pool would retry until its acquire timeout and
            // then report only "pool timed out", hiding the cause (connection refused, bad
            // password, unknown database).
            let opts = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(url)?;
            sqlx::Connection::close(super::postgres::connect_direct(&opts, timeouts).await?).await?;
            let pool = super::postgres::connect_pool(opts, timeouts).await?;
            let before = applied_postgres(&pool).await?;
            let store = PostgresLinkStore::connect_within(url, timeouts).await?;
            let after = applied_postgres(&pool).await?;
            store.close().await;
            pool.close().await;
            Ok(MigrationReport { backend: "postgres", before, after })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_sqlite_file_of_each_target() {
        let file = |s: &str| StoreTarget::parse(s).expect(s).sqlite_file().expect(s);
        assert_eq!(file("data"), Some(PathBuf::from("data/links.db")));
        assert_eq!(file("/srv/sluice/"), Some(PathBuf::from("/srv/sluice/links.db")));
        assert_eq!(file("sqlite:/var/x.db"), Some(PathBuf::from("/var/x.db")));
        assert_eq!(file("sqlite:///var/x.db"), Some(PathBuf::from("/var/x.db")));
        assert_eq!(file("sqlite://x.db?mode=rwc"), Some(PathBuf::from("x.db")));
        assert_eq!(file("sqlite://localhost/var/x.db"), Some(PathBuf::from("/var/x.db")));
        assert_eq!(file("SQLite:///var/x.db"), Some(PathBuf::from("/var/x.db")));
        assert_eq!(file("sqlite:x.db"), Some(PathBuf::from("x.db")));
        assert_eq!(file("postgres://u:p@h/db"), None);
    }

    #[test]
    fn targets_are_chosen_by_prefix() {
        assert_eq!(StoreTarget::parse("postgres://u:p@127.0.0.1:5432/db").expect("pg"), StoreTarget::Postgres("postgres://u:p@127.0.0.1:5432/db".into()));
        assert_eq!(StoreTarget::parse("postgresql://h/db").expect("pg").backend(), "postgres");
        assert_eq!(
            StoreTarget::parse("sqlite:///var/lib/sluice/links.db").expect("sqlite"),
            StoreTarget::SqliteUrl("sqlite:///var/lib/sluice/links.db".into())
        );
        assert_eq!(StoreTarget::parse(" ./data ").expect("dir"), StoreTarget::SqliteDir(PathBuf::from("./data")));
        assert!(matches!(StoreTarget::parse("  "), Err(Error::Config(_))));
    }

    #[test]
    fn a_sqlite_url_without_a_file_or_in_memory_is_refused() {
        let msg = |s: &str| match StoreTarget::parse(s) {
            Err(Error::Config(m)) => m,
            other => panic!("{s}: {other:?}"),
        };
        for s in ["sqlite:", "sqlite://", "sqlite:?mode=rwc", " sqlite: "] {
            let url = s.trim();
            assert_eq!(msg(s), format!("link store URL \"{url}\" names no database file: give one, e.g. sqlite:///var/lib/sluice/links.db"), "{s}");
        }
        for s in
            ["sqlite::memory:", "sqlite://:memory:", "sqlite:file::memory:?cache=shared", "sqlite:links.db?mode=memory", "sqlite:x.db?cache=shared&mode=memory"]
        {
            assert_eq!(
                msg(s),
                format!(
                    "link store URL \"{s}\" is an in-memory SQLite database, which keeps no link past the process: name a database file, e.g. sqlite:///var/lib/sluice/links.db"
                ),
                "{s}"
            );
        }
        for s in ["sqlite:links.db", "sqlite://links.db?mode=rwc", "sqlite:///srv/sluice/memory.db"] {
            assert_eq!(StoreTarget::parse(s).expect(s), StoreTarget::SqliteUrl(s.into()));
        }
    }

    /// Findings: `SQLITE:x.db` was read as a data directory named `SQLITE:x.db` (schemes are
    /// case-insensitive, RFC 3986 §3.1); `sqlite://host/x.db` opened `host/x.db` relative to
    /// the working directory; `?mode=bogus` said only "database error".
    #[test]
    fn sqlite_urls_schemes_in_any_case_hosts_and_bad_queries() {
        for (s, url) in [
            ("SQLITE:links.db", "sqlite:links.db"),
            ("Sqlite:///srv/x.db?mode=rwc", "sqlite:///srv/x.db?mode=rwc"),
            ("sqlite://localhost/srv/x.db", "sqlite:///srv/x.db"),
            ("SQLITE://LocalHost/srv/x.db", "sqlite:///srv/x.db"),
            ("sqlite://links.db", "sqlite://links.db"),
        ] {
            assert_eq!(StoreTarget::parse(s).expect(s), StoreTarget::SqliteUrl(url.into()), "{s}");
        }
        assert_eq!(StoreTarget::parse("POSTGRES://u:p@h/db").expect("pg"), StoreTarget::Postgres("postgres://u:p@h/db".into()));
        assert_eq!(StoreTarget::parse("PostgreSQL://h/db").expect("pg"), StoreTarget::Postgres("postgresql://h/db".into()));
        // Not a scheme: a data directory whose name merely starts like one.
        assert_eq!(StoreTarget::parse("sqlite-data").expect("dir"), StoreTarget::SqliteDir(PathBuf::from("sqlite-data")));
        let msg = |s: &str| match StoreTarget::parse(s) {
            Err(Error::Config(m)) => m,
            other => panic!("{s}: {other:?}"),
        };
        for (s, host) in [("sqlite://db.example/srv/x.db", "db.example"), ("SQLITE://data/x.db?mode=rwc", "data"), ("sqlite://u@h:1/x.db", "u@h:1")] {
            assert_eq!(
                msg(s),
                format!(
                    "link store URL \"{s}\" names the host \"{host}\": a sqlite: URL names a file on this machine; write sqlite:///<absolute path> (or \
                     sqlite://localhost/<absolute path>), or sqlite:<relative path>"
                )
            );
        }
        for (s, why) in [
            ("sqlite:x.db?mode=bogus", "unknown value \"bogus\" for `mode`"),
            ("SQLITE:///srv/x.db?cache=none", "unknown value \"none\" for `cache`"),
            ("sqlite:x.db?colour=red", "unknown query parameter `colour` while parsing connection URL"),
        ] {
            assert_eq!(msg(s), format!("link store URL \"{s}\" is not a valid sqlite: URL: {why}"));
        }
    }

    /// A refused connection names the server (never the password) and says the cause once.
    #[tokio::test]
    async fn a_refused_postgres_connection_names_the_server_once() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let url = format!("postgres://u:pw@127.0.0.1:{port}/db");
        let err = migrate_within(&url, StoreTimeouts::default()).await.expect_err("refused");
        assert_eq!(
            err.chain(),
            format!(
                "could not connect to the PostgreSQL server at postgres://u@127.0.0.1:{port}/db: error communicating with database: Connection refused (os error 111)"
            )
        );
        assert!(err.retryable() && err.kind() == "external", "{err:?}");
    }

    /// A server that accepts TCP connections and never answers: opening (and migrating) a
    /// store on it fails at the connect timeout, naming the server without its password.
    #[tokio::test]
    async fn a_postgres_server_that_never_answers_fails_at_the_connect_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((c, _)) = listener.accept().await {
                conns.push(c);
            }
        });
        let url = format!("postgres://sluice:s3cret@{addr}/links?sslmode=disable");
        let timeouts = StoreTimeouts { connect: Duration::from_millis(300), acquire: Duration::from_millis(700) };
        let t0 = std::time::Instant::now();
        let Err(err) = open_store_within(&url, timeouts).await else { panic!("no store") };
        assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
        let expected =
            Error::StoreConnectTimeout { store: format!("postgres://sluice@{addr}/links"), timeout: timeouts.connect, acquire_timeout: timeouts.acquire };
        assert_eq!(err.to_string(), expected.to_string());
        assert!(err.to_string().ends_with("every pooled connection must be made within 700ms ([store] acquire-timeout)"), "{err}");
        assert!(err.retryable() && err.kind() == "external");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("the PostgreSQL server at postgres://sluice@{addr}/links did not complete a connection within 300ms")),
            "{message}"
        );
        assert!(!message.contains("s3cret"), "{message}");
        let Err(err) = migrate_within(&url, timeouts).await else { panic!("no migration") };
        assert!(matches!(err, Error::StoreConnectTimeout { .. }), "{err:?}");
        held.abort();
    }

    #[test]
    fn a_postgres_server_is_described_without_its_password() {
        use std::str::FromStr;
        let opts = sqlx::postgres::PgConnectOptions::from_str("postgresql://u:pw@[::1]:5433/db?password=other").expect("url");
        assert_eq!(super::super::postgres::describe(&opts), "postgres://u@[::1]:5433/db");
    }

    #[tokio::test]
    async fn sqlite_url_creates_its_directory_and_the_data_dir_form_finds_the_same_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("nested").join("data");
        let url = format!("sqlite://{}/links.db", sub.display());
        let store = open_store(&url).await.expect("open by url");
        assert_eq!(store.backend(), "sqlite");
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("valid");
        let link = sluice_schemas::Link {
            code: "same".into(),
            long_url: "https://example.com/".into(),
            domain: None,
            expires_at: None,
            enabled: true,
            tags: vec![],
            redirect_type: sluice_schemas::RedirectType::Found,
            org: None,
            created_at: at,
            updated_at: at,
            version: 1,
        };
        store.insert(&link).await.expect("insert");
        let by_dir = open_store(sub.to_str().expect("utf-8")).await.expect("open by dir");
        assert_eq!(by_dir.get("same").await.expect("get"), Some(link));
    }
}
