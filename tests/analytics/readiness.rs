//! `/readyz` of the real binary for what only a probe can tell: the embedded link store's
//! file deleted or replaced while `serve` runs, and (feature `integration-tests`) a Redis
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
    let error = format!(
        "link store \"{}\" was {what} while sluice has it open: links are still served, but changes are refused (they would only reach \
         the file sluice opened, which is lost when it stops); put the file you want at that path (e.g. from a backup) and restart sluice",
        path.display()
    );
    json!({"error": {"code": "not_ready", "message": "link_store is not working", "details": {"link_store": {"status": "failed", "error": error}}}})
}

/// `links.db` deleted while `serve` runs: `/readyz` answers 503 naming the file at once, an
/// error is logged, links are still served from the open file; another file put at the path
/// is reported as a replacement.
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
    std::fs::remove_file(&path).expect("delete links.db");
    assert_eq!(readyz(&http, &listen).await, (503, store_not_ready(&path, "deleted or moved away")));
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

    std::fs::write(&path, b"not the link store").expect("another file");
    assert_eq!(readyz(&http, &listen).await, (503, store_not_ready(&path, "replaced by another file")));
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
