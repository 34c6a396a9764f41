//! `/readyz` of the real binary for what only a probe can tell: the embedded link store's
//! file deleted, replaced or made unwritable while `serve` runs, and (feature `integration-tests`) a Redis
//! link cache that is down at start-up or goes away, before any lookup failed, and a Redis
//! view sink whose Redis goes away while it has nothing to write.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::child::{ChildProcess, await_ready, free_port, serve_embedded};

/// `/readyz`: status code and body.
async fn readyz(http: &reqwest::Client, listen: &str) -> (u16, Value) {
    let r = http.get(format!("http://{listen}/readyz")).send().await.expect("readyz");
    (r.status().as_u16(), r.json().await.expect("json"))
}

/// `serve` on `data` with `args`, ready; its log file is `<data>.log`.
async fn serve(http: &reqwest::Client, data: &Path, args: &[&str]) -> (ChildProcess, String, std::path::PathBuf) {
    let listen = format!("127.0.0.1:{}", free_port());
    let log = data.with_extension("log");
    let mut child = serve_embedded(&listen, data, args, &log);
    await_ready(&mut child, http, &listen, &log, Duration::from_secs(60)).await;
    (child, listen, log)
}

/// What `/readyz` answers while `links.db` at `path` is not the file the store opened.
fn store_not_ready(path: &Path, what: &str) -> Value {
    let advice = if what == "replaced by another file" {
        "stop sluice, put the file you want at that path (e.g. from a backup), remove the -wal and -shm files beside it, and start sluice again".to_owned()
    } else {
        format!(
            "sluice writes the links back to \"{}\" from the open file within seconds once its directory exists and nothing else is at that \
             path (after `rm -rf` of the data dir: `mkdir -p {}`), and changes work again; if sluice stops before, every link is lost with it",
            path.display(),
            path.parent().expect("dir").display()
        )
    };
    let error = format!(
        "link store \"{}\" was {what} while sluice has it open: links are still served, but changes are refused (they would only reach \
         the file sluice opened, which is lost when it stops); {advice}",
        path.display()
    );
    json!({"error": {"code": "not_ready", "message": "link_store is not working", "details": {"link_store": {"status": "failed", "error": error}}}})
}

/// `links.db` deleted with its data dir while `serve` runs (so it cannot be written back
/// yet): `/readyz` answers 503 naming the file at once, an error is logged, links are still
/// served from the open file and changes refused; another file put at the path (the data dir
/// coming back holding it) is reported as a replacement and left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_replaced_link_store_file_fails_readiness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let (child, listen, log) = serve(&http, &data, &[]).await;
    let created: Value = http
        .post(format!("http://{listen}/v1/links"))
        .json(&json!({"long_url": "https://example.com/kept", "custom_alias": "kept"}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    assert_eq!(created["code"], "kept", "{created}");
    assert_eq!(readyz(&http, &listen).await.0, 200);

    let path = data.join("links.db");
    std::fs::remove_dir_all(&data).expect("rm -rf the data dir");
    let (status, body) = readyz(&http, &listen).await;
    assert_eq!(
        (status, &body["error"]["details"]["link_store"]),
        (503, &store_not_ready(&path, "deleted or moved away")["error"]["details"]["link_store"]),
        "{body}"
    );
    let r = http.get(format!("http://{listen}/kept")).send().await.expect("redirect");
    assert_eq!(r.status().as_u16(), 302, "served from the open file");
    let r = http.get(format!("http://{listen}/v1/links/kept")).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 200, "read from the open file");
    // A change would only reach the unlinked file (lost at the next start): refused with 503,
    // and nothing is written (the link is unchanged, the alias still free).
    let unavailable = json!({"error": {"code": "store_unavailable", "message": "link store unavailable, retry later (GET /readyz says why)"}});
    let create = http.post(format!("http://{listen}/v1/links")).json(&json!({"long_url": "https://example.com/lost", "custom_alias": "lost"}));
    let r = create.send().await.expect("create");
    assert_eq!((r.status().as_u16(), r.json::<Value>().await.expect("json")), (503, unavailable.clone()));
    let r = http.patch(format!("http://{listen}/v1/links/kept")).json(&json!({"enabled": false})).send().await.expect("patch");
    assert_eq!((r.status().as_u16(), r.json::<Value>().await.expect("json")), (503, unavailable.clone()));
    let r = http.delete(format!("http://{listen}/v1/links/kept")).send().await.expect("delete");
    assert_eq!((r.status().as_u16(), r.json::<Value>().await.expect("json")), (503, unavailable));
    let r = http.get(format!("http://{listen}/v1/links/kept")).send().await.expect("get");
    assert_eq!(r.json::<Value>().await.expect("json")["enabled"], true, "the refused PATCH changed nothing");
    assert_eq!(http.get(format!("http://{listen}/v1/links/lost")).send().await.expect("get").status().as_u16(), 404);
    // The watcher logs it within its 2 s period.
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).expect("read log");
        if let Some(line) = text.lines().find(|l| l.contains(" ERROR ") && l.contains("the link store's file is gone")) {
            assert!(line.contains(&format!("error=link store \"{}\" was deleted or moved away while sluice has it open", path.display())), "{line}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no error logged: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The data dir comes back at once holding another `links.db` (renamed into place whole:
    // a write-back never sees the path free).
    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).expect("mkdir");
    std::fs::write(staging.join("links.db"), b"not the link store").expect("another file");
    std::fs::rename(&staging, &data).expect("the data dir back");
    let (status, body) = readyz(&http, &listen).await;
    assert_eq!(
        (status, &body["error"]["details"]["link_store"]),
        (503, &store_not_ready(&path, "replaced by another file")["error"]["details"]["link_store"]),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(std::fs::read(&path).expect("read"), b"not the link store", "left alone");
    drop(child);
}

/// `links.db` made unwritable while `serve` runs (`chattr +i` as root, which stops root as a
/// read-only remount does; `chmod 0444` otherwise): `/readyz` answers 503 naming the file,
/// creates are refused with 503 `store_unavailable` and nothing is written, redirects go on;
/// with write access back, `/readyz` is 200 and creates work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_store_file_that_stops_being_writable_fails_readiness() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let (child, listen, _log) = serve(&http, &data, &[]).await;
    let create = |alias: &str| http.post(format!("http://{listen}/v1/links")).json(&json!({"long_url": "https://example.com/", "custom_alias": alias})).send();
    assert_eq!(create("kept").await.expect("create").status().as_u16(), 201);
    assert_eq!(readyz(&http, &listen).await.0, 200);

    let path = data.join("links.db");
    let root = rustix::process::geteuid().is_root();
    let set = |unwritable: bool| {
        if root {
            let out = std::process::Command::new("chattr").arg(if unwritable { "+i" } else { "-i" }).arg(&path).output().expect("run chattr (e2fsprogs)");
            assert!(out.status.success(), "chattr on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        } else {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(if unwritable { 0o444 } else { 0o644 })).expect("chmod");
        }
    };
    set(true);
    let probe = readyz(&http, &listen).await;
    let create_refused = create("lost").await.expect("create");
    let refused = (create_refused.status().as_u16(), create_refused.json::<Value>().await.expect("json"));
    let redirect = http.get(format!("http://{listen}/kept")).send().await.expect("redirect").status().as_u16();
    set(false);

    let error = probe.1["error"]["details"]["link_store"]["error"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        (probe.0, &probe.1["error"]["code"], &probe.1["error"]["message"]),
        (503, &json!("not_ready"), &json!("link_store is not working")),
        "{}",
        probe.1
    );
    assert!(error.starts_with(&format!("link store \"{}\" can no longer be written (the file: ", path.display())), "{error}");
    let unavailable = json!({"error": {"code": "store_unavailable", "message": "link store unavailable, retry later (GET /readyz says why)"}});
    assert_eq!(refused, (503, unavailable));
    assert_eq!(redirect, 302, "redirects go on");
    assert_eq!(readyz(&http, &listen).await.0, 200, "writable again");
    assert_eq!(http.get(format!("http://{listen}/v1/links/lost")).send().await.expect("get").status().as_u16(), 404, "the refused create wrote nothing");
    assert_eq!(create("lost").await.expect("create").status().as_u16(), 201);
    drop(child);
}

#[cfg(feature = "integration-tests")]
mod redis {
    use super::*;

    /// `dependencies.redis_link_cache` of `/readyz` (optional: `/readyz` stays 200).
    async fn link_cache(http: &reqwest::Client, listen: &str) -> Value {
        let (status, body) = readyz(http, listen).await;
        assert_eq!(status, 200, "{body}");
        body["dependencies"]["redis_link_cache"].clone()
    }

    /// Polls until the link cache is reported `want` (10 s at most).
    async fn await_link_cache(http: &reqwest::Client, listen: &str, want: &str) {
        let t0 = Instant::now();
        while link_cache(http, listen).await != json!({"status": want}) {
            assert!(t0.elapsed() < Duration::from_secs(10), "redis_link_cache never {want}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// PINGs `redis` has answered so far (`INFO commandstats`).
    fn pings(redis: &crate::sinks::PrivateRedis) -> u64 {
        let out = std::process::Command::new("redis-cli").args(["-p", &redis.port().to_string(), "INFO", "commandstats"]).output().expect("redis-cli");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("cmdstat_ping:calls="))
            .map_or(0, |rest| rest.split(',').next().and_then(|n| n.parse().ok()).expect("a call count"))
    }

    /// Redis down when `serve` starts: `redis_link_cache` is down (no lookup has failed yet),
    /// up once Redis answers, down again when it stops; `/readyz` under load pings Redis at
    /// most once a second per probe (link cache, view sink).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_redis_link_cache_is_reported_as_redis_answers_pings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let redis_dir = dir.path().join("redis");
        std::fs::create_dir_all(&redis_dir).expect("redis dir");
        let mut redis = crate::sinks::PrivateRedis::start(&redis_dir);
        redis.stop();
        let config = dir.path().join("sluice.toml");
        std::fs::write(&config, format!("[redis]\nurl = \"{}\"\nkey-prefix = \"it:readyz:\"\n", redis.url())).expect("config");
        let http = reqwest::Client::new();
        let (child, listen, _log) = serve(&http, &dir.path().join("data"), &["--config", config.to_str().expect("utf-8")]).await;
        assert_eq!(link_cache(&http, &listen).await, json!({"status": "down"}), "down from the start");

        redis.restart();
        await_link_cache(&http, &listen, "up").await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let before = pings(&redis);
        let t0 = Instant::now();
        for _ in 0..50 {
            assert_eq!(link_cache(&http, &listen).await, json!({"status": "up"}));
        }
        let (took, sent) = (t0.elapsed(), pings(&redis) - before);
        // One probe per started second at most (the first of the 50 probes again) for each of
        // the two Redis dependencies (the link cache and the view sink, each on its connection).
        assert!(sent <= 2 * (took.as_secs() + 1), "{sent} PINGs for 50 /readyz in {took:?}");

        redis.stop();
        await_link_cache(&http, &listen, "down").await;
        drop(child);
    }

    /// `dependencies.redis_views` of `/readyz` (optional: `/readyz` stays 200).
    async fn view_sink(http: &reqwest::Client, listen: &str) -> Value {
        let (status, body) = readyz(http, listen).await;
        assert_eq!(status, 200, "{body}");
        body["dependencies"]["redis_views"].clone()
    }

    /// Polls until the view sink is reported `want` (10 s at most); returns its state.
    async fn await_view_sink(http: &reqwest::Client, listen: &str, want: &str) -> Value {
        let t0 = Instant::now();
        loop {
            let state = view_sink(http, listen).await;
            if state["status"] == want {
                return state;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "redis_views never {want}: {state}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// No clicks, so the view sink has nothing to write and never tries Redis: `redis_views`
    /// is still reported down while Redis is down (its own cached PING), up again when Redis
    /// is back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_redis_view_sink_is_reported_down_while_redis_is_down_with_nothing_pending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let redis_dir = dir.path().join("redis");
        std::fs::create_dir_all(&redis_dir).expect("redis dir");
        let mut redis = crate::sinks::PrivateRedis::start(&redis_dir);
        let config = dir.path().join("sluice.toml");
        std::fs::write(&config, format!("[redis]\nurl = \"{}\"\nkey-prefix = \"it:readyz-views:\"\n", redis.url())).expect("config");
        let http = reqwest::Client::new();
        let (child, listen, _log) = serve(&http, &dir.path().join("data"), &["--config", config.to_str().expect("utf-8")]).await;
        let up = view_sink(&http, &listen).await;
        assert_eq!((&up["status"], &up["pending_rows"], &up["last_error"]), (&json!("up"), &json!(0), &Value::Null), "{up}");

        redis.stop();
        let down = await_view_sink(&http, &listen, "down").await;
        assert_eq!(down["pending_rows"], 0, "nothing to write: {down}");
        let error = down["last_error"].as_str().expect("the probe's error");
        assert!(error.starts_with("redis could not ping: ") || error == "redis did not answer within 500 ms while trying to ping", "{error}");

        redis.restart();
        let up = await_view_sink(&http, &listen, "up").await;
        assert_eq!((&up["pending_rows"], &up["last_error"]), (&json!(0), &Value::Null), "{up}");
        drop(child);
    }
}

#[cfg(feature = "integration-tests")]
mod clickhouse {
    use super::*;
    use crate::clickhouse::Ch;

    /// `serve` on `data` with `config` as its only ClickHouse settings (the test environment's
    /// CLICKHOUSE_* variables, which win over the file, are removed), ready.
    async fn serve_with(http: &reqwest::Client, data: &Path, config: &Path) -> (ChildProcess, String) {
        let listen = format!("127.0.0.1:{}", free_port());
        let log = data.with_extension("log");
        let err = std::fs::File::create(&log).expect("log file");
        let mut child = ChildProcess::spawn(
            std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(["serve", "--listen", &listen, "--data-dir"])
                .arg(data)
                .arg("--config")
                .arg(config)
                .env("SLUICE_LOG", "warn")
                .env("NO_COLOR", "1")
                .env_remove("KAFKA_BROKERS")
                .env_remove("SLUICE__STORE__URL")
                .env_remove("CLICKHOUSE_URL")
                .env_remove("CLICKHOUSE_USER")
                .env_remove("CLICKHOUSE_PASSWORD")
                .env_remove("CLICKHOUSE_DATABASE")
                .stdout(std::process::Stdio::null())
                .stderr(err),
            "sluice serve",
        );
        await_ready(&mut child, http, &listen, &log, Duration::from_secs(60)).await;
        (child, listen)
    }

    /// `dependencies.clickhouse` of `/readyz` once it is `want` (10 s at most).
    async fn await_clickhouse(http: &reqwest::Client, listen: &str, want: &str) -> Value {
        let t0 = Instant::now();
        loop {
            let (status, body) = readyz(http, listen).await;
            assert_eq!(status, 200, "optional dependency: {body}");
            let state = body["dependencies"]["clickhouse"].clone();
            if state["status"] == want {
                return state;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "clickhouse never {want}: {state}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Nothing listens at the configured address and no click was made: `/readyz` reports
    /// ClickHouse down (its own probe and the start-up migration), with the cause.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clickhouse_that_nobody_answers_is_reported_down_before_any_click() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("sluice.toml");
        let dead = free_port();
        std::fs::write(&config, format!("[clickhouse]\nurl = \"http://127.0.0.1:{dead}\"\ndatabase = \"it_readyz_dead\"\n")).expect("config");
        let http = reqwest::Client::new();
        let (child, listen) = serve_with(&http, &dir.path().join("data"), &config).await;
        let down = await_clickhouse(&http, &listen, "down").await;
        assert_eq!((&down["pending_rows"], &down["migrated"]), (&json!(0), &json!(false)), "{down}");
        let error = down["last_error"].as_str().expect("last_error");
        assert!(error.starts_with("clickhouse could not ") && error.contains("Connection refused"), "the cause is named: {error}");
        drop(child);
    }

    /// A fresh database is created at start-up, not at the first click: `/readyz` says
    /// migrated, and a query that only ClickHouse answers (ad-hoc dimensions) gives the
    /// empty result for a link without clicks instead of 503.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clickhouse_is_migrated_at_start_up_and_answers_before_the_first_click() {
        let ch = Ch::fresh("readyz_mig");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("sluice.toml");
        std::fs::write(
            &config,
            format!("[clickhouse]\nurl = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\ndatabase = \"{}\"\n", ch.url, ch.user, ch.password, ch.database),
        )
        .expect("config");
        let http = reqwest::Client::new();
        let (child, listen) = serve_with(&http, &dir.path().join("data"), &config).await;
        let t0 = Instant::now();
        loop {
            let state = await_clickhouse(&http, &listen, "up").await;
            if state["migrated"] == true {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "never migrated: {state}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = http
            .post(format!("http://{listen}/v1/links"))
            .json(&json!({"long_url": "https://example.com/readyz-mig", "custom_alias": "readyz-mig"}))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status().as_u16(), 201);
        let r = http.get(format!("http://{listen}/v1/links/readyz-mig/stats?dimensions=browser,os")).send().await.expect("stats");
        let status = r.status().as_u16();
        let body: Value = r.json().await.expect("json");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["totals"], json!({"clicks": 0, "uniques": 0, "bot_clicks": 0}), "{body}");
        assert_eq!(body["rows"], json!([]), "{body}");
        drop(child);
        ch.drop_database().await;
    }
}
