//! Real-socket tests of the readiness gate ([`crate::start_gate`]): connections accepted
//! while the start-up work runs, only the health routes served until it is done, then
//! everything; a stop while starting ends the server promptly.

use std::sync::Arc;

use super::*;
use crate::router::BeforeServing;
use crate::start_gate::STARTING_MESSAGE;

/// A server over a SQLite store in `dir` holding the link `gated1` → `https://example.com/g`,
/// whose start-up work reports the failure `"store says no"` and then waits for `release`.
async fn start_gated(
    dir: &std::path::Path,
    release: Arc<tokio::sync::Notify>,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>, App) {
    let mut cfg: Config = toml::from_str(DEFAULT_TOML).expect("defaults");
    cfg.server.data_dir = dir.to_path_buf();
    cfg.server.base_url = Some("https://sho.rt.example".into());
    cfg.validate().expect("valid config");
    let store = Arc::new(sluice_connectors::SqliteLinkStore::open_dir(dir).await.expect("store"));
    let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("valid");
    let link = sluice_schemas::Link {
        code: "gated1".into(),
        long_url: "https://example.com/g".into(),
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
    sluice_connectors::LinkStore::insert(store.as_ref(), &link).await.expect("insert");
    let (sink, _events) = ChannelClickSink::new(1000);
    let (_stack, app) = build_stack_app(&cfg, store, Arc::new(sink), [7; 32], StackExtras::default()).expect("stack");
    let run: crate::router::StartupWork = Arc::new(move |gate| {
        let release = Arc::clone(&release);
        // Reported before the server accepts its first connection (`run` is called first).
        gate.report_failure("store says no".into());
        Box::pin(async move { release.notified().await })
    });
    let app = app.with_before_serving(BeforeServing { name: "test_work", pending: "the test work is not done yet", run });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_with(listener, app.clone(), ServerOptions::default(), async move {
        let _ = stopped.await;
    }));
    (addr, stop, server, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_the_start_up_work_is_done_only_the_health_routes_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let release = Arc::new(tokio::sync::Notify::new());
    let (addr, stop, server, app) = start_gated(dir.path(), Arc::clone(&release)).await;
    let base = format!("http://{addr}");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");

    let r = http.get(format!("{base}/healthz")).send().await.expect("healthz");
    assert_eq!((r.status().as_u16(), r.json::<Value>().await.expect("json")), (200, json!({"status": "ok"})));
    let r = http.get(format!("{base}/metrics")).send().await.expect("metrics");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("text").contains("sluice_starting 1"), "the gauge says the server is starting");
    let ready = json!({"error": {
        "code": "not_ready",
        "message": "starting: the test work is not done yet; redirects and the API answer 503 starting until it is",
        "details": {"test_work": {"status": "retrying", "error": "store says no"}}
    }});
    let r = http.get(format!("{base}/readyz")).send().await.expect("readyz");
    assert_eq!((r.status().as_u16(), r.headers()["cache-control"].to_str().expect("ascii")), (503, "no-store"));
    assert_eq!(r.json::<Value>().await.expect("json"), ready);

    let starting = json!({"error": {"code": "starting", "message": STARTING_MESSAGE}});
    let gated = [
        (reqwest::Method::GET, "/gated1"),
        (reqwest::Method::GET, "/%67ated1"),
        (reqwest::Method::GET, "/v1/links/gated1"),
        (reqwest::Method::POST, "/v1/links"),
        (reqwest::Method::GET, "/v1/openapi.json"),
    ];
    for (method, path) in gated {
        let r = http.request(method.clone(), format!("{base}{path}")).header("user-agent", UA).send().await.expect("request");
        let h = r.headers();
        let heads = (
            r.status().as_u16(),
            h["retry-after"].to_str().expect("ascii"),
            h["content-type"].to_str().expect("ascii"),
            h["cache-control"].to_str().expect("ascii"),
        );
        assert_eq!(heads, (503, "1", "application/json", "no-store"), "{method} {path}");
        assert_eq!(r.json::<Value>().await.expect("json"), starting, "{method} {path}");
    }
    let r = http.head(format!("{base}/gated1")).header("user-agent", UA).send().await.expect("head");
    assert_eq!((r.status().as_u16(), r.headers()["retry-after"].to_str().expect("ascii")), (503, "1"));
    assert!(!app.start_gate().is_open());

    // Done: the gate opens for good, every request is served.
    release.notify_one();
    tokio::time::timeout(Duration::from_secs(30), app.start_gate().wait_open()).await.expect("the gate opens");
    let r = http.get(format!("{base}/gated1")).header("user-agent", UA).send().await.expect("redirect");
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().expect("ascii")), (302, "https://example.com/g"));
    assert_eq!(http.get(format!("{base}/v1/links/gated1")).send().await.expect("get").status(), 200);
    let r = http.get(format!("{base}/readyz")).send().await.expect("readyz");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let metrics = http.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("sluice_starting 0"), "the gauge says the server is serving");

    stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(30), server).await.expect("stops in time").expect("server task");
}

/// A stop while the start-up work still runs ends the server at once: the work is dropped,
/// the connections answered and closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_starting_ends_the_server_promptly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let release = Arc::new(tokio::sync::Notify::new());
    let (addr, stop, server, app) = start_gated(dir.path(), release).await;
    // A kept-alive connection that was answered while starting.
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.write_all(b"GET /gated1 HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), c.read(&mut buf)).await.expect("answered").expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 503 "), "{:?}", String::from_utf8_lossy(&buf[..n]));
    let t0 = std::time::Instant::now();
    stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("stops at once").expect("server task");
    assert!(t0.elapsed() < Duration::from_secs(2), "stopped after {:?}", t0.elapsed());
    closed_by_server(&mut c).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer listening");
    assert!(!app.start_gate().is_open(), "the work never finished");
}
