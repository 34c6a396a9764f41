//! `sluice serve --role redirect` and `--role api` as two processes on one data dir (the
//! embedded defaults): links and redirects work across them; the stats are served by
//! neither, and both say so (start-up warnings, the API's 503, the redirect side's 404).

use std::time::Duration;

use serde_json::{Value, json};

use crate::child::{await_ready, free_port, serve_embedded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_roles_share_links_and_say_where_the_stats_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (redirect_at, api_at) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let (redirect_log, api_log) = (dir.path().join("redirect.log"), dir.path().join("api.log"));
    let mut redirect = serve_embedded(&redirect_at, &data, &["--role", "redirect"], &redirect_log);
    let mut api = serve_embedded(&api_at, &data, &["--role", "api"], &api_log);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    await_ready(&mut redirect, &http, &redirect_at, &redirect_log, Duration::from_secs(60)).await;
    await_ready(&mut api, &http, &api_at, &api_log, Duration::from_secs(60)).await;

    // a link created through the API process redirects on the redirect process (one links.db)
    let created = http
        .post(format!("http://{api_at}/v1/links"))
        .json(&json!({"long_url": "https://example.com/split", "custom_alias": "split"}))
        .send()
        .await
        .expect("post");
    assert_eq!(created.status(), 201);
    let r = http.get(format!("http://{redirect_at}/split")).send().await.expect("follow");
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().expect("ascii")), (302, "https://example.com/split"));

    // stats: 503 on the API process, 404 naming the roles on the redirect process
    let r = http.get(format!("http://{api_at}/v1/links/split/stats")).send().await.expect("stats");
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body,
        json!({"error": {"code": "stats_unavailable", "message": "this process runs no click dataflow (role api, or [dataflow] enabled = false); the stats are served by the process with role all that holds the click log and runs the dataflow"}})
    );
    let r = http.get(format!("http://{redirect_at}/v1/links/split/stats")).send().await.expect("stats");
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body,
        json!({"error": {"code": "not_found", "message": "this process serves redirects only (role redirect): the API under /v1/, the stats included, is served by a process with role all or api", "details": {"path": "/v1/links/split/stats"}}})
    );
    // events: 404 on the API process naming the process that takes them (no click log here)
    let r = http.post(format!("http://{api_at}/v1/events")).json(&json!([])).send().await.expect("events");
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body,
        json!({"error": {"code": "not_found", "message": "this process holds no click log (role api): POST /v1/events is served by the process with role all that holds the click log, or by any process with role all or api when [kafka] brokers are configured", "details": {"path": "/v1/events"}}})
    );
    // ... and on the redirect process, which serves no /v1/ route at all
    let r = http.post(format!("http://{redirect_at}/v1/events")).json(&json!([])).send().await.expect("events");
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body,
        json!({"error": {"code": "not_found", "message": "this process serves redirects only (role redirect): POST /v1/events is served by the process with role all that holds the click log, or by any process with role all or api when [kafka] brokers are configured", "details": {"path": "/v1/events"}}})
    );
    drop((redirect, api));

    let log = std::fs::read_to_string(&redirect_log).expect("redirect log");
    assert!(log.contains("role redirect: this process records clicks and runs the click dataflow but serves no API"), "{log}");
    let log = std::fs::read_to_string(&api_log).expect("api log");
    assert!(log.contains("role api: this process holds no click log and runs no click dataflow"), "{log}");
}

/// The README's redirect process listens on `0.0.0.0`: without `--base-url` the short URLs
/// use `127.0.0.1` (never `0.0.0.0`, with a start-up warning), and a target on any loopback
/// spelling of the listen port is a redirect loop (otherwise `curl -L` follows it to itself
/// and every hop counts as a click).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_on_an_unspecified_address_refuses_loops_through_any_loopback_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let (listen, local) = (format!("0.0.0.0:{port}"), format!("127.0.0.1:{port}"));
    let log = dir.path().join("serve.log");
    let mut child = serve_embedded(&listen, &dir.path().join("data"), &[], &log);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    await_ready(&mut child, &http, &local, &log, Duration::from_secs(60)).await;

    let post = |body: Value| {
        let http = http.clone();
        let url = format!("http://{local}/v1/links");
        async move {
            let r = http.post(url).json(&body).send().await.expect("post");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }
    };
    let (st, body) = post(json!({"long_url": "https://example.com/ok", "custom_alias": "ok"})).await;
    assert_eq!((st, body["short_url"].as_str()), (201, Some(format!("http://127.0.0.1:{port}/ok").as_str())), "{body}");
    for (host, shown) in [
        (format!("127.0.0.1:{port}"), "127.0.0.1"),
        (format!("localhost:{port}"), "localhost"),
        (format!("0.0.0.0:{port}"), "0.0.0.0"),
        (format!("[::1]:{port}"), "[::1]"),
        (format!("127.0.0.2:{port}"), "127.0.0.2"),
    ] {
        let (st, body) = post(json!({"long_url": format!("http://{host}/loop"), "custom_alias": "loop"})).await;
        assert_eq!(
            (st, body),
            (
                400,
                json!({"error": {"code": "redirect_loop", "message": format!("long_url points at this service's own short domain \"{shown}\""), "details": {"host": shown}}})
            ),
            "{host}"
        );
    }
    drop(child);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains(
            "listening on an unspecified address without a base URL: short URLs use the loopback address; set --base-url (server.base-url) to the public origin"
        ),
        "{text}"
    );
}

/// A process on a loopback address with a public `--base-url`: a target at its own listen
/// address (or another loopback spelling of its port) reaches the process itself, so it is a
/// redirect loop although its host is not the base URL's; loopback hosts on other ports are
/// other services and are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_on_a_loopback_address_refuses_loops_to_its_listen_port_whatever_the_base_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let local = format!("127.0.0.1:{port}");
    let log = dir.path().join("serve.log");
    let mut child = serve_embedded(&local, &dir.path().join("data"), &["--base-url", "https://sho.rt.example"], &log);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    await_ready(&mut child, &http, &local, &log, Duration::from_secs(60)).await;

    let post = |long_url: String| {
        let (http, url) = (http.clone(), format!("http://{local}/v1/links"));
        async move {
            let r = http.post(url).json(&json!({"long_url": long_url})).send().await.expect("post");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }
    };
    for (host, shown) in [(format!("127.0.0.1:{port}"), "127.0.0.1"), (format!("localhost:{port}"), "localhost"), (format!("[::1]:{port}"), "[::1]")] {
        let (st, body) = post(format!("http://{host}/selfloop")).await;
        let message = format!("long_url points at this service's own short domain \"{shown}\"");
        assert_eq!((st, body), (400, json!({"error": {"code": "redirect_loop", "message": message, "details": {"host": shown}}})), "{host}");
    }
    let other = if port == u16::MAX { port - 1 } else { port + 1 };
    for long_url in [format!("http://127.0.0.1:{other}/x"), "http://localhost:3000/x".to_owned()] {
        let (st, body) = post(long_url.clone()).await;
        assert_eq!((st, body["long_url"].as_str()), (201, Some(long_url.as_str())), "{body}");
    }
    let (st, body) = post("https://sho.rt.example/x".to_owned()).await;
    assert_eq!((st, body["error"]["code"].as_str()), (400, Some("redirect_loop")), "{body}");
}

/// `POST http://{at}/v1/links` of `https://example.com/new` with `custom_alias`: the status
/// and body.
fn create_alias(http: &reqwest::Client, at: String, alias: &'static str) -> impl Future<Output = (u16, Value)> + use<> {
    let http = http.clone();
    async move {
        let r =
            http.post(format!("http://{at}/v1/links")).json(&json!({"long_url": "https://example.com/new", "custom_alias": alias})).send().await.expect("post");
        (r.status().as_u16(), r.json::<Value>().await.expect("json"))
    }
}

/// Deletes the embedded link store in `data` (`links.db` and its -wal and -shm files).
fn remove_store(data: &std::path::Path) {
    for name in ["links.db", "links.db-wal", "links.db-shm"] {
        let _ = std::fs::remove_file(data.join(name));
    }
}

/// Replaces the embedded link store in `data` under a running process with a new, empty one
/// made in `staging`: renamed over `links.db` (the path is never free, so the running process
/// never writes its open file back there), then the old -wal and -shm files removed.
async fn replace_store(data: &std::path::Path, staging: &std::path::Path) {
    let fresh = sluice_connectors::link_store::SqliteLinkStore::open_dir(staging).await.expect("a new store");
    fresh.close().await;
    std::fs::rename(staging.join("links.db"), data.join("links.db")).expect("rename over links.db");
    for name in ["links.db-wal", "links.db-shm"] {
        let _ = std::fs::remove_file(data.join(name));
    }
}

/// A process with role `all` on `data` (its log in `dir`) creates `aliases` (201 each), follows
/// the first `clicks` times (302 each), stops gracefully (the clicks written); then the link
/// store is lost ([`remove_store`]).
async fn clicked_then_store_lost(http: &reqwest::Client, dir: &std::path::Path, data: &std::path::Path, aliases: &[&'static str], clicks: usize) {
    let (at, log) = (format!("127.0.0.1:{}", free_port()), dir.join("all.log"));
    let mut all = serve_embedded(&at, data, &[], &log);
    await_ready(&mut all, http, &at, &log, Duration::from_secs(60)).await;
    for &alias in aliases {
        assert_eq!(create_alias(http, at.clone(), alias).await.0, 201, "{alias}");
    }
    for _ in 0..clicks {
        assert_eq!(http.get(format!("http://{at}/{}", aliases[0])).send().await.expect("follow").status(), 302);
    }
    all.terminate();
    remove_store(data);
}

/// A lost link store on a split pair (attack of session 44): the `api` process, started first
/// after `links.db` was deleted, checks the store against the click log no other process holds
/// and retires the codes with clicks, so no link created through it inherits their clicks;
/// it closes the log again, and the redirect process started next takes it (and, the store
/// now recorded in the log, retires nothing more). Started while the redirect process holds
/// the log, an `api` process starts normally (that process checked at its start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_process_started_first_retires_a_lost_stores_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let create = |at: String, alias: &'static str| create_alias(&http, at, alias);
    // One process (role all): two links, clicks on one, a graceful stop (clicks written).
    clicked_then_store_lost(&http, dir.path(), &data, &["lost-a", "lost-b"], 3).await;

    // The api process first: lost-a (clicks in the log) is retired, lost-b (none) is free.
    let (api_at, api_log) = (format!("127.0.0.1:{}", free_port()), dir.path().join("api.log"));
    let mut api = serve_embedded(&api_at, &data, &["--role", "api"], &api_log);
    await_ready(&mut api, &http, &api_at, &api_log, Duration::from_secs(60)).await;
    let (status, body) = create(api_at.clone(), "lost-a").await;
    assert_eq!((status, &body["error"]["details"]), (409, &json!({"alias": "lost-a", "deleted": false, "retired": true})), "{body}");
    assert_eq!(create(api_at.clone(), "lost-b").await.0, 201);
    let text = std::fs::read_to_string(&api_log).expect("api log");
    assert!(text.contains("the link store is not the one this click log was served with") && text.contains("retired=1"), "{text}");

    // The log was closed: the redirect process starts (within its wait), records nothing new.
    let (redirect_at, redirect_log) = (format!("127.0.0.1:{}", free_port()), dir.path().join("redirect.log"));
    let mut redirect = serve_embedded(&redirect_at, &data, &["--role", "redirect"], &redirect_log);
    await_ready(&mut redirect, &http, &redirect_at, &redirect_log, Duration::from_secs(60)).await;
    let r = http.get(format!("http://{redirect_at}/lost-b")).send().await.expect("follow");
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().expect("ascii")), (302, "https://example.com/new"));
    assert_eq!(http.get(format!("http://{redirect_at}/lost-a")).send().await.expect("follow").status(), 404);
    let text = std::fs::read_to_string(&redirect_log).expect("redirect log");
    assert!(!text.contains("retired"), "{text}");
    // It serves no /v1/ route, POST /v1/events included, and does not say it does.
    assert!(!text.contains("POST /v1/events ready"), "{text}");

    // A second api process while the redirect process holds the log: it starts and serves.
    let (api2_at, api2_log) = (format!("127.0.0.1:{}", free_port()), dir.path().join("api2.log"));
    let mut api2 = serve_embedded(&api2_at, &data, &["--role", "api"], &api2_log);
    await_ready(&mut api2, &http, &api2_at, &api2_log, Duration::from_secs(60)).await;
    let (status, body) = create(api2_at.clone(), "lost-a").await;
    assert_eq!((status, &body["error"]["details"]["retired"]), (409, &json!(true)), "{body}");
    assert_eq!(create(api2_at.clone(), "fresh").await.0, 201);
    drop((api, redirect, api2));
}

/// Polls until `child` exits (panics after `timeout`); its exit code and its log `log`.
async fn exit_of(child: &mut crate::child::ChildProcess, log: &std::path::Path, timeout: Duration) -> (Option<i32>, String) {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(status) = child.exited() {
            return (status.code(), std::fs::read_to_string(log).expect("log"));
        }
        assert!(t0.elapsed() < timeout, "still running after {timeout:?}: {}", std::fs::read_to_string(log).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Attack of session 46 on the fix above: an `api` process that finds the click log held
/// waits until the holder has confirmed its check of the link store (a request it answers
/// in the store) — so a pair
/// started together after a lost store never hands out a retired code — and refuses to start
/// when no holder ever checks it (links.db deleted under a running process); it refuses a
/// click log it cannot open (damaged) before creating a link store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_process_never_serves_an_unchecked_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let create = |at: String, alias: &'static str| create_alias(&http, at, alias);
    clicked_then_store_lost(&http, dir.path(), &data, &["lost-a"], 1).await;

    // Both at once: whichever takes the log, the api process serves only a checked store.
    let (redirect_at, redirect_log) = (format!("127.0.0.1:{}", free_port()), dir.path().join("redirect.log"));
    let (api_at, api_log) = (format!("127.0.0.1:{}", free_port()), dir.path().join("api.log"));
    let mut redirect = serve_embedded(&redirect_at, &data, &["--role", "redirect"], &redirect_log);
    let mut api = serve_embedded(&api_at, &data, &["--role", "api"], &api_log);
    await_ready(&mut api, &http, &api_at, &api_log, Duration::from_secs(60)).await;
    let (status, body) = create(api_at.clone(), "lost-a").await;
    assert_eq!((status, &body["error"]["details"]["retired"]), (409, &json!(true)), "{body}");
    await_ready(&mut redirect, &http, &redirect_at, &redirect_log, Duration::from_secs(60)).await;
    drop(api);

    // links.db replaced under the running redirect process by a new store no holder checks
    // (renamed over it whole: a file merely deleted would be written back by that process).
    replace_store(&data, &dir.path().join("fresh")).await;
    let (api2_at, api2_log) = (format!("127.0.0.1:{}", free_port()), dir.path().join("api2.log"));
    let mut api2 = serve_embedded(&api2_at, &data, &["--role", "api"], &api2_log);
    let (code, text) = exit_of(&mut api2, &api2_log, Duration::from_secs(60)).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("is held by another process, which has not confirmed within 30 s that it checked this link store against it"), "{text}");
    // The redirect process's links.db was replaced under it: its stop exits 1 naming the file.
    let ok = std::process::Command::new("kill").args(["-TERM", &redirect.id().to_string()]).status().expect("kill").success();
    assert!(ok);
    let (code, text) = exit_of(&mut redirect, &redirect_log, Duration::from_secs(30)).await;
    assert_eq!(code, Some(1), "{text}");
    let want = format!(
        "error: the graceful stop finished, but the link store file \"{}\" was replaced by another file while sluice was running",
        data.join("links.db").display()
    );
    assert!(text.contains(&want), "{text}");

    // A damaged click log: refused before any link store is created.
    remove_store(&data);
    std::fs::write(data.join("clicks.redb"), b"not a redb file at all, just some bytes").expect("damage the log");
    let (api3_at, api3_log) = (format!("127.0.0.1:{}", free_port()), dir.path().join("api3.log"));
    let mut api3 = serve_embedded(&api3_at, &data, &["--role", "api"], &api3_log);
    let (code, text) = exit_of(&mut api3, &api3_log, Duration::from_secs(60)).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("role api checks the link store against the data dir's click log before it creates links"), "{text}");
    assert!(!data.join("links.db").exists(), "nothing created");
}

/// Attack of session 47: an `api` process started while another process held the click log
/// (here the test, as `sluice log tail` or `sluice import --data-dir` would) waited its 30 s
/// and exited 1 although the log was free after 3 s. It takes the free log and checks the
/// store itself: it serves, and a lost store's clicked code is retired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_process_takes_the_click_log_once_its_holder_lets_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    clicked_then_store_lost(&http, dir.path(), &data, &["held-a"], 1).await;
    let held = sluice_connectors::click_log::ClickLog::open(&data).expect("hold the log");
    let (api_at, api_log) = (format!("127.0.0.1:{}", free_port()), dir.path().join("api.log"));
    let t0 = std::time::Instant::now();
    let mut api = serve_embedded(&api_at, &data, &["--role", "api"], &api_log);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(api.exited().is_none(), "still waiting: {}", std::fs::read_to_string(&api_log).unwrap_or_default());
    drop(held);
    await_ready(&mut api, &http, &api_at, &api_log, Duration::from_secs(60)).await;
    assert!(t0.elapsed() < Duration::from_secs(20), "ready after {:?}, not after the whole wait", t0.elapsed());
    let (status, body) = create_alias(&http, api_at.clone(), "held-a").await;
    assert_eq!((status, &body["error"]["details"]["retired"]), (409, &json!(true)), "{body}");
    assert_eq!(create_alias(&http, api_at.clone(), "held-b").await.0, 201);
    drop(api);
}
