//! The start-up gate of the real binary over a PostgreSQL link store that stops answering
//! while `[links] blocklist` is being applied (feature `integration-tests`, server at
//! `SLUICE_POSTGRES_URL`).
//!
//! Why not a database that does not exist yet, or a server that is down at the start: then
//! `sluice serve` does not get as far as serving — opening the store (its migrations) fails
//! and the process exits with code 1 naming the cause (`could not open the link store: …
//! database "…" does not exist`), which is what an orchestrator should see. The gate is for
//! a store that goes away after it was opened, before the start-up work is done. So the
//! store is reached through a TCP proxy that relays to the real server until sluice sends
//! its first statement on the `blocklist` table (the start-up work's, or the dataflow's
//! blocklist sync started just before it): from then on the proxy refuses connections and
//! drops the open ones, exactly as a server that went down. The test then brings it back,
//! and the same process opens its gate by itself.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::child::{ChildProcess, free_port};
use crate::harness::BROWSER_UA;

/// What the proxy waits for in sluice's statements before it goes down.
const TRIGGER: &[u8] = b"blocklist";

/// The steady failure while the proxy is down: every connection attempt refused until the
/// pool's acquire timeout.
const POOL_TIMED_OUT: &str = "database error: pool timed out while waiting for an open connection";

/// A loopback TCP proxy to PostgreSQL that goes down (listener closed, relayed connections
/// dropped) at the first client bytes holding [`TRIGGER`], and comes back on the same port
/// when told ([`Self::restore`]).
struct TrippingProxy {
    addr: SocketAddr,
    upstream: String,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Set once the proxy went down.
    tripped: AtomicBool,
    /// Whether [`TRIGGER`] still takes the proxy down (only the first time).
    disarmed: AtomicBool,
    /// The accept loop and every relay, aborted when the proxy goes down.
    tasks: parking_lot::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Shared {
    fn trip(&self) {
        if self.disarmed.swap(true, Ordering::SeqCst) {
            return;
        }
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
        self.tripped.store(true, Ordering::SeqCst);
    }
}

impl TrippingProxy {
    async fn start(upstream: String) -> TrippingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let proxy = TrippingProxy { addr: listener.local_addr().expect("addr"), upstream, shared: Arc::default() };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (upstream, shared) = (self.upstream.clone(), Arc::clone(&self.shared));
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let relay = tokio::spawn(relay(client, upstream.clone(), Arc::clone(&shared)));
                shared.tasks.lock().push(relay.abort_handle());
            }
        });
        self.shared.tasks.lock().push(accept.abort_handle());
    }

    /// Listens again on the same port, relaying everything from now on.
    fn restore(&self) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind(self.addr).expect("bind the proxy's port again");
        self.serve(socket.listen(64).expect("listen"));
    }
}

/// Relays `client` to `upstream` until either side closes, or the proxy trips on `client`'s
/// bytes (which are then not relayed).
async fn relay(client: tokio::net::TcpStream, upstream: String, shared: Arc<Shared>) {
    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { return };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let down = tokio::io::copy(&mut server_read, &mut client_write);
    let up = async {
        let mut buf = vec![0u8; 64 << 10];
        // The end of the previous read: a trigger split across two reads is found too.
        let mut window: Vec<u8> = Vec::new();
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                return server_write.shutdown().await;
            }
            if !shared.disarmed.load(Ordering::SeqCst) {
                window.extend_from_slice(&buf[..n]);
                if window.windows(TRIGGER.len()).any(|w| w == TRIGGER) {
                    shared.trip();
                    return Ok(());
                }
                window.drain(..window.len().saturating_sub(TRIGGER.len()));
            }
            server_write.write_all(&buf[..n]).await?;
        }
    };
    tokio::select! {
        _ = down => {}
        _ = up => {}
    }
}

/// A fresh database on the test server, migrated, holding `cb-held` (to `evil.example`, which
/// the configuration blocks) and `cb-free`; returns the server URL, the database's name and
/// its URL through `proxy_port`.
async fn database(proxy_port: u16) -> (String, String, String) {
    let server = std::env::var("SLUICE_POSTGRES_URL").expect("feature integration-tests is on: SLUICE_POSTGRES_URL must name a PostgreSQL server");
    let name = format!("gate_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&server).await.expect("connect to SLUICE_POSTGRES_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut conn).await.expect("create test database");
    let mut url = url::Url::parse(&server).expect("SLUICE_POSTGRES_URL is a URL");
    url.set_path(&format!("/{name}"));
    let store = sluice_connectors::PostgresLinkStore::connect(url.as_str()).await.expect("open and migrate the test database");
    let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("valid");
    for (code, long_url) in [("cb-held", "https://evil.example/a"), ("cb-free", "https://example.com/ok")] {
        let link = sluice_schemas::Link {
            code: code.into(),
            long_url: long_url.into(),
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
        sluice_connectors::LinkStore::insert(&store, &link).await.expect("insert");
    }
    store.close().await;
    url.set_port(Some(proxy_port)).expect("port");
    (server, name, url.to_string())
}

async fn drop_database(server: &str, name: &str) {
    let mut conn = sqlx::PgConnection::connect(server).await.expect("connect to SLUICE_POSTGRES_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))).execute(&mut conn).await.expect("drop test database");
}

/// `sluice serve` (role all) on a free port over `store_url` with `[links] blocklist =
/// ["evil.example"]`, logging into `dir/serve.log`; returns it and its base URL.
fn serve(dir: &std::path::Path, store_url: &str) -> (ChildProcess, String) {
    let config = dir.join("sluice.toml");
    std::fs::write(&config, "[links]\nblocklist = [\"evil.example\"]\n").expect("write config");
    let listen = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.join("serve.log")).expect("log file");
    let data = dir.join("data");
    let child = ChildProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--role", "all", "--listen", &listen, "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .env("SLUICE__STORE__URL", store_url)
            .env("SLUICE_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("KAFKA_BROKERS")
            .stdout(Stdio::null())
            .stderr(log),
        "sluice serve",
    );
    (child, format!("http://{listen}"))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(30)).build().expect("client")
}

/// Waits until the process answers `/healthz` and the proxy went down (the start-up work
/// met the store gone), then until `/readyz` reports the steady failure.
async fn until_starting_on_a_gone_store(http: &reqwest::Client, base: &str, proxy: &TrippingProxy, log: &std::path::Path) {
    let t0 = Instant::now();
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    while http.get(format!("{base}/healthz")).send().await.is_err() || !proxy.shared.tripped.load(Ordering::SeqCst) {
        assert!(t0.elapsed() < Duration::from_secs(60), "serving /healthz with the store gone within 60 s; log:\n{}", log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    loop {
        let body: Value = http.get(format!("{base}/readyz")).send().await.expect("readyz").json().await.expect("json");
        if body["error"]["details"]["configured_blocklist"]["error"] == POOL_TIMED_OUT {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "/readyz reports the store's failure within 60 s: {body}; log:\n{}", log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A role-`all` server (a `[links] blocklist` entry) over a fresh PostgreSQL database reached
/// through a [`TrippingProxy`], just started.
struct GatedServer {
    /// The PostgreSQL server URL (`SLUICE_POSTGRES_URL`).
    server: String,
    /// The test's database on it.
    db: String,
    proxy: TrippingProxy,
    dir: tempfile::TempDir,
    child: ChildProcess,
    base: String,
}

async fn gated_server() -> GatedServer {
    let server = std::env::var("SLUICE_POSTGRES_URL").expect("feature integration-tests is on: SLUICE_POSTGRES_URL must name a PostgreSQL server");
    let pg = url::Url::parse(&server).expect("SLUICE_POSTGRES_URL is a URL");
    let proxy = TrippingProxy::start(format!("{}:{}", pg.host_str().expect("host"), pg.port().unwrap_or(5432))).await;
    let (server, db, store_url) = database(proxy.addr.port()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, base) = serve(dir.path(), &store_url);
    GatedServer { server, db, proxy, dir, child, base }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_gone_while_the_blocklist_is_applied_gates_everything_but_health_until_it_is_back() {
    let GatedServer { server, db, proxy, dir, child, base } = gated_server().await;
    let http = client();
    until_starting_on_a_gone_store(&http, &base, &proxy, &dir.path().join("serve.log")).await;

    // Alive, not ready, and saying why.
    let r = http.get(format!("{base}/healthz")).send().await.expect("healthz");
    assert_eq!((r.status().as_u16(), r.json::<Value>().await.expect("json")), (200, json!({"status": "ok"})));
    let r = http.get(format!("{base}/readyz")).send().await.expect("readyz");
    assert_eq!((r.status().as_u16(), r.headers()["content-type"].to_str().expect("ascii")), (503, "application/json"));
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"error": {
            "code": "not_ready",
            "message": "starting: the configured [links] blocklist is not applied to the existing links yet; redirects and the API answer 503 starting until it is",
            "details": {"configured_blocklist": {"status": "retrying", "error": POOL_TIMED_OUT}}
        }})
    );
    let r = http.get(format!("{base}/metrics")).send().await.expect("metrics");
    assert_eq!(r.status(), 200);
    let metrics = r.text().await.expect("text");
    assert!(metrics.lines().any(|l| l == "sluice_starting 1"), "{metrics}");

    // Redirects (the held link's too, and a code that does not exist) and the API: 503 starting.
    let starting = json!({"error": {"code": "starting", "message": sluice::start_gate::STARTING_MESSAGE}});
    for (method, path) in [
        (reqwest::Method::GET, "/cb-held"),
        (reqwest::Method::GET, "/cb-free"),
        (reqwest::Method::GET, "/somecode"),
        (reqwest::Method::GET, "/v1/links/x"),
        (reqwest::Method::GET, "/v1/links/cb-held"),
        (reqwest::Method::POST, "/v1/links"),
    ] {
        let r = http.request(method.clone(), format!("{base}{path}")).header("user-agent", BROWSER_UA).send().await.expect("request");
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
    let r = http.head(format!("{base}/cb-held")).header("user-agent", BROWSER_UA).send().await.expect("head");
    assert_eq!((r.status().as_u16(), r.headers()["retry-after"].to_str().expect("ascii")), (503, "1"));

    // The store is back: the same process applies the entry and opens its gate.
    proxy.restore();
    let t0 = Instant::now();
    loop {
        let r = http.get(format!("{base}/readyz")).send().await.expect("readyz");
        if r.status() == 200 {
            break;
        }
        let body = r.text().await.expect("body");
        assert!(t0.elapsed() < Duration::from_secs(60), "ready within 60 s of the store's return: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = http.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.lines().any(|l| l == "sluice_starting 0"), "{metrics}");
    let r = http.get(format!("{base}/cb-held")).header("user-agent", BROWSER_UA).send().await.expect("held");
    let held = (r.status().as_u16(), r.headers().get("location").is_none(), r.json::<Value>().await.expect("json")["error"]["code"].clone());
    assert_eq!(held, (404, true, json!("not_found")));
    let r = http.get(format!("{base}/cb-free")).header("user-agent", BROWSER_UA).send().await.expect("free");
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().expect("ascii")), (302, "https://example.com/ok"));
    let link: Value = http.get(format!("{base}/v1/links/cb-held")).send().await.expect("link").json().await.expect("json");
    assert_eq!(link["enabled"], false, "{link}");
    let audit: Value = http.get(format!("{base}/v1/admin/audit")).send().await.expect("audit").json().await.expect("json");
    let actions: Vec<_> = audit["items"].as_array().expect("items").iter().map(|e| json!([e["action"], e["actor"], e["target"], e["details"]])).collect();
    assert_eq!(actions, [json!(["blocklist.add", "config", "evil.example", {"affected": ["cb-held"]}])]);
    let log = std::fs::read_to_string(dir.path().join("serve.log")).expect("log");
    assert!(log.contains("could not apply [links] blocklist to the existing links"), "{log}");
    assert!(log.contains("start-up work done: serving every request"), "{log}");

    child.terminate();
    drop_database(&server, &db).await;
}

/// A stop while the store is gone during the start-up work ends the process promptly,
/// exit code 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_the_start_up_work_waits_for_the_store_ends_the_process_promptly() {
    let GatedServer { server, db, proxy, dir, child, base } = gated_server().await;
    until_starting_on_a_gone_store(&client(), &base, &proxy, &dir.path().join("serve.log")).await;
    let t0 = Instant::now();
    child.terminate();
    assert!(t0.elapsed() < Duration::from_secs(10), "stopped after {:?}", t0.elapsed());
    drop_database(&server, &db).await;
}

/// `sluice import --target` into a server held in its start-up gate: 503 `starting` with
/// `Retry-After: 1` to every request. With `--retry-for 2500ms` the import gives up after
/// the attempts at 0, 1 and 2 s (the next would start past 2.5 s): exit 1, nothing stored,
/// the server's answer named. With the default 60 s it waits out the gate (held here about
/// 3 s longer) and stores every event exactly once (the click log holds each once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_waits_out_the_start_up_gate_within_retry_for() {
    use crate::cli_run::{import, text};
    use crate::import_target::{AGAIN, event, write_ndjson};

    let GatedServer { server, db, proxy, dir, child, base } = gated_server().await;
    let http = client();
    until_starting_on_a_gone_store(&http, &base, &proxy, &dir.path().join("serve.log")).await;
    let events: Vec<Value> = (0..5).map(|i| event(&format!("gated-{i}"), "cb-free", i, BROWSER_UA)).collect();
    let file = dir.path().join("events.ndjson");
    write_ndjson(&file, &events);
    let file_arg = file.to_str().expect("utf-8").to_owned();
    let url = format!("{base}/v1/events?backfill=true");
    let r = http.post(&url).json(&events).send().await.expect("post");
    assert_eq!((r.status().as_u16(), r.headers()["retry-after"].to_str().expect("ascii")), (503, "1"));
    let starting = r.text().await.expect("body");
    assert_eq!(
        serde_json::from_str::<Value>(&starting).expect("json"),
        json!({"error": {"code": "starting", "message": sluice::start_gate::STARTING_MESSAGE}})
    );

    // The deadline: three attempts, then exit 1 saying so.
    let t0 = Instant::now();
    let (target, file_for_import) = (base.clone(), file_arg.clone());
    let out = tokio::task::spawn_blocking(move || import(&["--target", &target, "--retry-for", "2500ms", &file_for_import])).await.expect("import");
    let took = t0.elapsed();
    assert_eq!(
        (out.status.code(), text(&out.stderr), text(&out.stdout)),
        (
            Some(1),
            format!(
                "error: import stopped before any event was stored; the 5 events of lines 1-5 were not stored, and nothing after them was \
                 sent: could not send events to {url} (3 attempts, retried for at most --retry-for 2s 500ms); the last answered 503 \
                 Service Unavailable: {starting}. {AGAIN}\n"
            ),
            String::new()
        )
    );
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(10), "gave up after {took:?}");

    // The default --retry-for: the import is still waiting when the store comes back 3 s
    // later, then stores all 5 events.
    let (target, file_for_import) = (base.clone(), file_arg.clone());
    let import_run = tokio::task::spawn_blocking(move || import(&["--target", &target, &file_for_import]));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!import_run.is_finished(), "the import waits for the gate");
    let r = http.post(&url).json(&events[..1]).send().await.expect("post");
    assert_eq!(r.status().as_u16(), 503, "still starting");
    proxy.restore();
    let out = import_run.await.expect("import");
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(0), String::new()));
    let stdout = text(&out.stdout);
    let head = format!("imported \"{file_arg}\" into {base}/v1/events (backfill): 5 lines, 5 events parsed, 5 stored, 0 rejected in ");
    assert!(stdout.starts_with(&head) && stdout.ends_with(" events/s)\n") && stdout.lines().count() == 1, "{stdout}");
    crate::import_data_dir::clicks_of(&http, base.trim_start_matches("http://"), "cb-free", 5).await;
    child.terminate();
    // Stored once each: the refused attempts stored nothing.
    let log = sluice_connectors::click_log::ClickLog::open(&dir.path().join("data")).expect("open the click log");
    let stored = log.read(0, 100).expect("read");
    let ids: std::collections::BTreeSet<_> = stored.iter().map(|(_, e)| e.event_id).collect();
    assert_eq!((stored.len(), ids.len(), stored.iter().all(|(_, e)| e.code == "cb-free")), (5, 5, true));
    drop_database(&server, &db).await;
}
