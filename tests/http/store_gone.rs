//! The PostgreSQL link store losing its database under a running stack (feature
//! `integration-tests`, server at `SLUICE_POSTGRES_URL`): the test creates its own database,
//! serves from it, drops it `WITH (FORCE)` (which terminates the store's sessions, 57P01, and
//! makes reconnects fail with 3D000) and expects every store-backed route to answer 503
//! `store_unavailable`, like the SQLite store does for I/O failures, never 500 `internal`.

use std::sync::Arc;

use axum::http::Method;
use serde_json::json;
use sqlx::Connection;

use crate::admin::{TOKEN, admin};
use crate::harness::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_postgres_database_is_503_store_unavailable() {
    let server = std::env::var("SLUICE_POSTGRES_URL").expect("feature integration-tests is on: SLUICE_POSTGRES_URL must name a PostgreSQL server");
    let db = format!("gone_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&server).await.expect("connect to SLUICE_POSTGRES_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{db}\""))).execute(&mut conn).await.expect("create test database");
    let mut url = url::Url::parse(&server).expect("SLUICE_POSTGRES_URL is a URL");
    url.set_path(&format!("/{db}"));
    let store = sluice_connectors::PostgresLinkStore::connect(url.as_str()).await.expect("open postgres store");
    let app = TestApp::over(Arc::new(store), |c| c.admin.token = Some(sluice::config::Secret(TOKEN.into())));

    // Served while the database is there.
    let code = app.create(json!({"long_url": "https://example.com/gone", "custom_alias": "gone1"})).await["code"].as_str().expect("code").to_owned();
    assert_eq!(code, "gone1");
    assert_eq!(app.get("/v1/links/gone1").await.status.as_u16(), 200);
    assert_eq!(admin(&app, Method::GET, "/v1/admin/blocklist", None).await.status.as_u16(), 200);

    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{db}\" WITH (FORCE)"))).execute(&mut conn).await.expect("drop test database");

    let want = json!({"error": {"code": "store_unavailable", "message": "link store unavailable, retry later (GET /readyz says why)"}});
    // Twice each: the first call meets the terminated sessions, later ones the failing reconnect.
    for round in 0..2 {
        let r = app.post_json("/v1/links", &json!({"long_url": "https://example.com/after", "custom_alias": format!("after{round}")})).await;
        r.assert_error(503, "store_unavailable");
        assert_eq!(r.json(), want, "create, round {round}");
        let r = app.get("/v1/links/gone1").await;
        r.assert_error(503, "store_unavailable");
        assert_eq!(r.json(), want, "get, round {round}");
        let r = app.delete("/v1/links/gone1").await;
        r.assert_error(503, "store_unavailable");
        assert_eq!(r.json(), want, "delete, round {round}");
        let r = admin(&app, Method::GET, "/v1/admin/blocklist", None).await;
        r.assert_error(503, "store_unavailable");
        assert_eq!(r.json(), want, "admin blocklist, round {round}");
    }
}

/// A loopback TCP proxy to `upstream` that can be cut: the listener closes (new connections
/// are refused, as by a stopped server) and every relayed connection is dropped.
struct CuttableProxy {
    addr: std::net::SocketAddr,
    tasks: tokio::task::JoinHandle<()>,
    relays: Arc<parking_lot::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl CuttableProxy {
    async fn start(upstream: String) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let relays: Arc<parking_lot::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let held = Arc::clone(&relays);
        let tasks = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let relay = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                held.lock().push(relay.abort_handle());
            }
        });
        CuttableProxy { addr, tasks, relays }
    }

    fn cut(&self) {
        self.tasks.abort();
        for r in self.relays.lock().drain(..) {
            r.abort();
        }
    }
}

/// PostgreSQL unreachable (connections refused, the open ones broken): a request that needs
/// the store is answered 503 `store_unavailable` within the pool's acquire timeout (3 s),
/// not after sqlx's default 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_postgres_is_a_prompt_503() {
    let server = std::env::var("SLUICE_POSTGRES_URL").expect("feature integration-tests is on: SLUICE_POSTGRES_URL must name a PostgreSQL server");
    let mut url = url::Url::parse(&server).expect("SLUICE_POSTGRES_URL is a URL");
    let upstream = format!("{}:{}", url.host_str().expect("host"), url.port().unwrap_or(5432));
    let proxy = CuttableProxy::start(upstream).await;
    url.set_port(Some(proxy.addr.port())).expect("port");
    let schema = format!("cut_{}", uuid::Uuid::new_v4().simple());
    let store = sluice_connectors::PostgresLinkStore::connect_in_schema(url.as_str(), &schema).await.expect("open postgres store through the proxy");
    let app = TestApp::over(Arc::new(store), |_| {});
    app.create(json!({"long_url": "https://example.com/cut", "custom_alias": "cut1"})).await;
    assert_eq!(app.get("/v1/links/cut1").await.status.as_u16(), 200);

    proxy.cut();
    let want = json!({"error": {"code": "store_unavailable", "message": "link store unavailable, retry later (GET /readyz says why)"}});
    for (what, path) in [("get", "/v1/links/cut1"), ("get again", "/v1/links/cut1"), ("redirect of an uncached code", "/notcached1")] {
        let t0 = std::time::Instant::now();
        let r = app.get(path).await;
        let took = t0.elapsed();
        assert_eq!((r.status.as_u16(), r.json()), (503, want.clone()), "{what}");
        assert!(took < sluice_connectors::DEFAULT_ACQUIRE_TIMEOUT + std::time::Duration::from_secs(5), "{what}: answered after {took:?}");
    }
    let t0 = std::time::Instant::now();
    let r = app.post_json("/v1/links", &json!({"long_url": "https://example.com/after", "custom_alias": "after1"})).await;
    assert_eq!((r.status.as_u16(), r.json()), (503, want), "create");
    assert!(t0.elapsed() < sluice_connectors::DEFAULT_ACQUIRE_TIMEOUT + std::time::Duration::from_secs(5), "create answered after {:?}", t0.elapsed());
}
