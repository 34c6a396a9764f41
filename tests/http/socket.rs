//! Real sockets: the stack served on 127.0.0.1:0 and driven with reqwest, and the real
//! `sluice` binary (serve → create → follow → stop → `sluice log tail`).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::child::{await_ready, serve_embedded};
use crate::harness::{BROWSER_UA, Backend, TestApp, wait_until};

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

async fn serve(app: &TestApp) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = app.stack.router.clone();
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.expect("serve");
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_socket_create_follow_head_and_forwarded_clients() {
    let app = TestApp::start_with(Backend::Sqlite, |c| c.server.trusted_proxies = vec!["127.0.0.1".into()]).await;
    let addr = serve(&app).await;
    let http = client();
    let base = format!("http://{addr}");
    let created: Value = http
        .post(format!("{base}/v1/links"))
        .json(&json!({"long_url": "https://example.com/socket?a=1"}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let code = created["code"].as_str().expect("code");
    let r = http.get(format!("{base}/{code}?utm=x")).header("user-agent", BROWSER_UA).send().await.expect("get");
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "https://example.com/socket?a=1&utm=x");
    assert_eq!(r.headers().get_all("content-length").iter().count(), 1);
    let h = http.head(format!("{base}/{code}")).send().await.expect("head");
    assert_eq!(h.status(), 302);
    assert_eq!(h.headers()["location"], "https://example.com/socket?a=1");
    assert!(h.headers().get_all("content-length").iter().count() <= 1);
    let n = http.get(format!("{base}/nope")).send().await.expect("404");
    assert_eq!(n.status(), 404);
    assert_eq!(n.headers()["content-type"], "application/json");
    // through a trusted proxy (the test client on 127.0.0.1)
    for xff in ["2001:db8::1", "[2001:db8::1]:51234", "192.0.2.10"] {
        let r = http.get(format!("{base}/{code}")).header("user-agent", BROWSER_UA).header("x-forwarded-for", xff).send().await.expect("get");
        assert_eq!(r.status(), 302);
    }
    let ev = app.take_events();
    assert_eq!(ev.len(), 4, "GET + 3 forwarded GETs; HEAD and 404 are not clicks");
    assert_eq!(ev[0].ip_trunc.as_deref(), Some("127.0.0.0"), "the real socket peer");
    let trunc: Vec<_> = ev[1..].iter().map(|e| e.ip_trunc.clone().expect("trunc")).collect();
    assert_eq!(trunc, vec!["2001:db8::", "2001:db8::", "192.0.2.0"]);
    assert_eq!(ev[1].visitor_id, ev[2].visitor_id);
    assert_ne!(ev[1].visitor_id, ev[3].visitor_id);
}

/// `server.forwarded-header = "x-real-ip"` (nginx's `real_ip_header X-Real-IP`): behind a
/// trusted proxy the click's address is the one in `X-Real-IP`; `X-Forwarded-For` and
/// `Forwarded` are then ignored (a client could set them), and a request without `X-Real-IP`
/// counts under the proxy's own address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_forwarding_header_is_the_only_one_read() {
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.server.trusted_proxies = vec!["127.0.0.1".into()];
        c.server.forwarded_header = "X-Real-IP".into();
    })
    .await;
    let addr = serve(&app).await;
    let http = client();
    let base = format!("http://{addr}");
    let r = http.post(format!("{base}/v1/links")).json(&json!({"long_url": "https://example.com/real-ip"})).send().await.expect("post");
    assert_eq!(r.status(), 201);
    let code = r.json::<Value>().await.expect("json")["code"].as_str().expect("code").to_owned();
    let follow = |headers: &'static [(&'static str, &'static str)]| {
        let mut req = http.get(format!("{base}/{code}")).header("user-agent", BROWSER_UA);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        async move { assert_eq!(req.send().await.expect("get").status(), 302) }
    };
    follow(&[("x-real-ip", "198.51.100.23"), ("x-forwarded-for", "192.0.2.10")]).await;
    follow(&[("x-forwarded-for", "192.0.2.10"), ("forwarded", "for=192.0.2.11")]).await;
    follow(&[("x-real-ip", "2001:db8:7::1")]).await;
    let trunc: Vec<_> = app.take_events().into_iter().map(|e| e.ip_trunc.expect("trunc")).collect();
    assert_eq!(trunc, vec!["198.51.100.0", "127.0.0.0", "2001:db8:7::"]);

    // Without tokens, the admin API and event posting admit direct loopback callers only: a
    // request carrying the configured header came through the proxy (an outside client).
    let admin = |real_ip: Option<&'static str>| {
        let mut req = http.get(format!("{base}/v1/admin/blocklist"));
        if let Some(ip) = real_ip {
            req = req.header("x-real-ip", ip);
        }
        async move { req.send().await.expect("admin").status().as_u16() }
    };
    assert_eq!((admin(None).await, admin(Some("198.51.100.23")).await), (200, 403));
    // the same rule for POST /v1/events (its check: sluice-ingest's no_token_means_loopback_peers_only)
    let mut cfg = sluice::config::Config::load(None, &sluice::config::FlagOverrides::default()).expect("config");
    cfg.server.forwarded_header = "X-Real-IP".into();
    assert_eq!(sluice::serve::events_config(&cfg).client_header.as_deref(), Some("x-real-ip"));
}

/// `links.db` deleted from a data dir whose click log is kept: the server still starts (an
/// imported click log may precede any link store) but warns, naming the file and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_link_store_beside_a_click_log_is_warned_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let http = client();
    let first = dir.path().join("first.log");
    let mut server = serve_embedded(&listen, &data, &[], &first);
    await_ready(&mut server, &http, &listen, &first, Duration::from_secs(30)).await;
    drop(server);
    let warning = "the link store is not the one this click log was served with";
    assert!(!std::fs::read_to_string(&first).expect("log").contains(warning), "no warning on a fresh data dir");
    for f in ["links.db", "links.db-wal", "links.db-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    let second = dir.path().join("second.log");
    let mut server = serve_embedded(&listen, &data, &[], &second);
    await_ready(&mut server, &http, &listen, &second, Duration::from_secs(30)).await;
    drop(server);
    let log = std::fs::read_to_string(&second).expect("log");
    assert!(log.contains(warning) && log.contains("clicks.redb") && log.contains("retired=0"), "{log}");
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    crate::child::free_port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_persists_clicks_and_tails_the_log() {
    let bin = env!("CARGO_BIN_EXE_sluice");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let spawn = || {
        Child(
            Command::new(bin)
                .args(["serve", "--listen", &listen, "--data-dir", data.to_str().expect("utf-8")])
                .env("SLUICE_LOG", "warn")
                // the embedded click log, even where the test environment exports a broker
                .env_remove("KAFKA_BROKERS")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn sluice serve"),
        )
    };
    let mut server = spawn();
    let http = client();
    let base = format!("http://{listen}");
    let ready = || {
        let http = http.clone();
        let url = format!("{base}/readyz");
        async move { http.get(&url).send().await.is_ok_and(|r| r.status() == 200) }
    };
    assert!(wait_until(Duration::from_secs(30), ready).await, "server came up");
    assert!(data.is_dir(), "--data-dir created");
    let created: Value =
        http.post(format!("{base}/v1/links")).json(&json!({"long_url": "https://example.com/bin"})).send().await.expect("post").json().await.expect("json");
    let code = created["code"].as_str().expect("code").to_owned();
    assert_eq!(created["short_url"], format!("http://{listen}/{code}"), "default base url is http://<listen>");
    let r = http.get(format!("{base}/{code}")).header("user-agent", BROWSER_UA).send().await.expect("follow");
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "https://example.com/bin");
    // graceful stop drains the click channel into the log
    let status = Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let exited = wait_until(Duration::from_secs(20), || {
        let done = server.0.try_wait().expect("try_wait").is_some();
        async move { done }
    })
    .await;
    assert!(exited, "server stopped on SIGTERM");
    let out = Command::new(bin).args(["log", "tail", "--data-dir", data.to_str().expect("utf-8")]).env("SLUICE_LOG", "warn").output().expect("log tail");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8(out.stdout).expect("utf-8").lines().map(|l| serde_json::from_str(l).expect("ndjson")).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["offset"], 0);
    assert_eq!(lines[0]["event"]["code"], code.as_str());
    assert_eq!(lines[0]["event"]["ip_trunc"], "127.0.0.0");
    assert_eq!(lines[0]["event"]["user_agent"], BROWSER_UA);
    let secret_mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(data.join("visitor_secret")).expect("secret").permissions());
    assert_eq!(secret_mode & 0o777, 0o600);
    // restart: links and the log survive
    server = spawn();
    assert!(wait_until(Duration::from_secs(30), ready).await, "server came back");
    let r = http.get(format!("{base}/{code}")).send().await.expect("follow again");
    assert_eq!(r.headers()["location"], "https://example.com/bin");
    drop(server);
}

/// `sluice log tail` on a directory that does not exist (or holds no log) exits non-zero
/// with a clear message and creates nothing.
#[test]
fn log_tail_on_a_missing_directory_fails_and_creates_nothing() {
    let bin = env!("CARGO_BIN_EXE_sluice");
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("typo");
    let out = Command::new(bin).args(["log", "tail", "--data-dir", missing.to_str().expect("utf-8")]).env("SLUICE_LOG", "warn").output().expect("log tail");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no data directory") && err.contains("typo"), "{err}");
    assert!(out.stdout.is_empty());
    assert!(!missing.exists(), "nothing created");
    let out = Command::new(bin).args(["log", "tail", "--data-dir", tmp.path().to_str().expect("utf-8")]).env("SLUICE_LOG", "warn").output().expect("log tail");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no click log in"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_dir(tmp.path()).expect("read dir").count(), 0, "no log file created");
}

#[test]
fn migrate_refuses_a_store_url_of_another_scheme() {
    let bin = env!("CARGO_BIN_EXE_sluice");
    let tmp = tempfile::tempdir().expect("tempdir");
    for url in ["mysql://user:secret@x/db", "https://example.com/x"] {
        let out = Command::new(bin).current_dir(tmp.path()).args(["migrate", "--store", url]).env("SLUICE_LOG", "warn").output().expect("migrate");
        assert_eq!(out.status.code(), Some(2), "{url}: a usage error");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--store must be a data directory") && !err.contains("secret"), "{url}: {err}");
        assert_eq!(std::fs::read_dir(tmp.path()).expect("read dir").count(), 0, "{url}: nothing created");
    }
}

#[test]
fn every_subcommand_has_help() {
    let bin = env!("CARGO_BIN_EXE_sluice");
    for args in [vec!["--help"], vec!["serve", "--help"], vec!["migrate", "--help"], vec!["log", "tail", "--help"], vec!["bench", "dataflow", "--help"]] {
        let out = Command::new(bin).args(&args).output().expect("run");
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8(out.stdout).expect("utf-8");
        assert!(text.contains("Usage"), "{args:?}: {text}");
    }
    let out = Command::new(bin).args(["serve", "--help"]).output().expect("run");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    for flag in ["--listen", "--data-dir", "--role", "--base-url", "--short-domain", "--config", "--workers"] {
        assert!(text.contains(flag), "serve --help documents {flag}");
    }
    let bad = Command::new(bin).args(["serve", "--role", "nope"]).output().expect("run");
    assert!(!bad.status.success());
}

/// An empty `Idempotency-Key` header, written byte for byte on a raw socket to the real
/// binary (no client library trims or drops it): 400 `invalid_idempotency_key`, no link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_idempotency_key_on_the_wire_is_refused() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = serve_embedded(&listen, &data, &[], &log);
    await_ready(&mut child, &client(), &listen, &log, Duration::from_secs(60)).await;
    let body = r#"{"long_url":"https://example.com/empty-key","custom_alias":"emptykey"}"#;
    for header in ["Idempotency-Key: \r\n", "Idempotency-Key:\r\n", "Idempotency-Key: \t \r\n"] {
        let request = format!(
            "POST /v1/links HTTP/1.1\r\nHost: {listen}\r\nContent-Type: application/json\r\n{header}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = tokio::task::block_in_place(|| {
            let mut s = std::net::TcpStream::connect(&listen).expect("connect");
            s.write_all(request.as_bytes()).expect("write");
            let mut answer = String::new();
            s.read_to_string(&mut answer).expect("read");
            answer
        });
        let (head, json_body) = answer.split_once("\r\n\r\n").expect("a complete answer");
        assert_eq!(head.lines().next(), Some("HTTP/1.1 400 Bad Request"), "{header:?}: {answer}");
        let v: Value = serde_json::from_str(json_body).expect("json body");
        assert_eq!(
            v,
            json!({"error": {"code": "invalid_idempotency_key", "message": "Idempotency-Key must be 1 to 255 visible ascii characters"}}),
            "{header:?}"
        );
    }
    let r = client().get(format!("http://{listen}/v1/links/emptykey")).send().await.expect("get");
    assert_eq!(r.status(), 404, "no link was created");
    drop(child);
}
