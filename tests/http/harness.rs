//! Test harness: a full `sluice serve` stack (the exact router the binary serves) over a
//! real link store, driven in-process with `oneshot`, with click events captured from a
//! channel sink instead of the click log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde_json::{Value, json};
use sluice::config::{Config, DEFAULT_TOML};
use sluice::serve::{Stack, build_stack};
use sluice_connectors::LinkStore;
use sluice_redirect::ChannelClickSink;
use sluice_schemas::{ClickEvent, VisitorSalt};
use tower::ServiceExt;

/// The visitor secret every test stack uses, so tests can recompute visitor ids.
pub const SECRET: [u8; 32] = [7; 32];
/// Base URL of test stacks.
pub const BASE: &str = "https://sho.rt.example";
/// A current desktop browser User-Agent (cases README: BROWSER_UA).
pub const BROWSER_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

/// Which link store backs a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in a temporary data directory.
    Sqlite,
    /// PostgreSQL at `SLUICE_POSTGRES_URL`, in a fresh schema.
    #[cfg_attr(not(feature = "integration-tests"), allow(dead_code))]
    Postgres,
}

/// A running (in-process) stack.
pub struct TestApp {
    pub stack: Stack,
    pub store: Arc<dyn LinkStore>,
    pub config: Config,
    events: Mutex<tokio::sync::mpsc::Receiver<ClickEvent>>,
    /// Socket peer attached to requests that do not set one.
    pub peer: SocketAddr,
    _dir: tempfile::TempDir,
}

/// A response with its body read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not json ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ascii header"))
    }

    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }

    /// Asserts the DESIGN.md error shape with `status` and `code`; returns the error object.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "status; body: {}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.header("content-type"), Some("application/json"), "error content type");
        let v = self.json();
        let err = v.get("error").unwrap_or_else(|| panic!("no error object: {v}")).clone();
        assert_eq!(err["code"], code, "error code; body: {v}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "error message: {v}");
        let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
        assert_eq!(keys, vec!["error"], "only an error member: {v}");
        err
    }
}

/// The default configuration with test settings (base URL, an extra short domain,
/// a blocklist entry), then `tweak`.
pub fn test_config(dir: &std::path::Path, tweak: impl FnOnce(&mut Config)) -> Config {
    let mut cfg: Config = toml::from_str(DEFAULT_TOML).expect("defaults");
    cfg.server.data_dir = dir.to_path_buf();
    cfg.server.base_url = Some(BASE.into());
    cfg.server.short_domains = vec!["kürz.example".into()];
    cfg.links.blocklist = vec!["blocked.example".into()];
    tweak(&mut cfg);
    cfg.validate().expect("test config valid");
    cfg
}

async fn open_backend(backend: Backend, dir: &std::path::Path) -> Arc<dyn LinkStore> {
    match backend {
        Backend::Sqlite => Arc::new(sluice_connectors::SqliteLinkStore::open_dir(dir).await.expect("open sqlite store")),
        Backend::Postgres => {
            let url = std::env::var("SLUICE_POSTGRES_URL")
                .expect("feature integration-tests is on: SLUICE_POSTGRES_URL must name a PostgreSQL server (./infra/test starts one)");
            let schema = format!("http_{}", uuid::Uuid::new_v4().simple());
            Arc::new(sluice_connectors::PostgresLinkStore::connect_in_schema(&url, &schema).await.expect("open postgres store"))
        }
    }
}

impl TestApp {
    pub async fn start(backend: Backend) -> TestApp {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = test_config(dir.path(), tweak);
        let store = open_backend(backend, dir.path()).await;
        Self::over_store(store, config, dir)
    }

    /// A stack over `store` (e.g. a PostgreSQL store on a database the test controls).
    #[cfg_attr(not(feature = "integration-tests"), allow(dead_code))]
    pub fn over(store: Arc<dyn LinkStore>, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = test_config(dir.path(), tweak);
        Self::over_store(store, config, dir)
    }

    /// Another stack (e.g. another role) over the same store.
    pub fn sibling(&self, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = self.config.clone();
        tweak(&mut config);
        Self::over_store(self.store.clone(), config, dir)
    }

    fn over_store(store: Arc<dyn LinkStore>, config: Config, dir: tempfile::TempDir) -> TestApp {
        let (sink, rx) = ChannelClickSink::new(100_000);
        let stack = build_stack(&config, store.clone(), Arc::new(sink), SECRET, Vec::new()).expect("build stack");
        TestApp { stack, store, config, events: Mutex::new(rx), peer: "203.0.113.9:40000".parse().expect("addr"), _dir: dir }
    }

    /// Sends `req` through the router; adds the default socket peer unless one is set.
    pub async fn call(&self, mut req: Request<Body>) -> Resp {
        if req.extensions().get::<ConnectInfo<SocketAddr>>().is_none() {
            req.extensions_mut().insert(ConnectInfo(self.peer));
        }
        let resp = self.stack.router.clone().oneshot(req).await.expect("router is infallible");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Resp { status: parts.status, headers: parts.headers, body }
    }

    pub async fn request(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<String>) -> Resp {
        let mut b = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(body.map_or_else(Body::empty, Body::from)).expect("request");
        self.call(req).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.request(Method::POST, path, &[("content-type", "application/json")], Some(body.to_string())).await
    }

    pub async fn patch_json(&self, path: &str, body: &Value, if_match: Option<&str>) -> Resp {
        let mut h = vec![("content-type", "application/json")];
        if let Some(m) = if_match {
            h.push(("if-match", m));
        }
        self.request(Method::PATCH, path, &h, Some(body.to_string())).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request(Method::GET, path, &[("user-agent", BROWSER_UA)], None).await
    }

    pub async fn head(&self, path: &str) -> Resp {
        self.request(Method::HEAD, path, &[("user-agent", BROWSER_UA)], None).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.request(Method::DELETE, path, &[], None).await
    }

    /// Creates a link; asserts 201 and returns the body.
    pub async fn create(&self, body: Value) -> Value {
        let r = self.post_json("/v1/links", &body).await;
        assert_eq!(r.status, StatusCode::CREATED, "create {body}: {}", String::from_utf8_lossy(&r.body));
        r.json()
    }

    /// Creates a link to `url` and returns its code.
    pub async fn create_url(&self, url: &str) -> String {
        self.create(json!({ "long_url": url })).await["code"].as_str().expect("code").to_owned()
    }

    /// Asserts that no link has this code (validation errors must not create one).
    pub async fn assert_no_link(&self, code: &str) {
        let r = self.get(&format!("/v1/links/{code}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "link {code:?} must not exist");
    }

    /// Click events produced so far and not yet taken.
    pub fn take_events(&self) -> Vec<ClickEvent> {
        let mut rx = self.events.lock();
        let mut out = Vec::new();
        while let Ok(e) = rx.try_recv() {
            out.push(e);
        }
        out
    }

    /// The visitor salt the stack uses (same secret and period).
    pub fn salt(&self) -> VisitorSalt {
        VisitorSalt::new(SECRET, self.config.visitor.salt_period.period_ms())
    }
}

/// Polls `pred` every 20 ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut pred: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if pred().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Generates one `#[tokio::test]` per backend for each listed `async fn name(b: Backend)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Backend::Sqlite).await
                }
            )*
        }
        #[cfg(feature = "integration-tests")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Backend::Postgres).await
                }
            )*
        }
    };
}
