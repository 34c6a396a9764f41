//! `[admin.auto-actions]` through the real binary: with `enabled = true, kinds =
//! ["visitor_flood"]` a click flood's critical `visitor_flood` anomaly disables its link
//! (redirect 404, the owner cannot re-enable it), the audit log holds exactly one
//! `auto.disable` record naming the anomaly, `GET /v1/anomalies` shows the action, and a
//! restart that replays the click log acts on nothing twice — also when the flood's clicks
//! came stamped behind event time and the replay derives its episode under another id. With
//! the default configuration (off) the same flood leaves the link redirecting and the audit
//! log empty.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{BROWSER_UA, Proc};

/// Creates link `code` and posts 150 clicks from one client within ~1.5 s (beyond the
/// per-visitor critical threshold of 120 per 60 s); returns the event timestamps.
async fn flood(p: &Proc, code: &str) -> Vec<i64> {
    let r =
        p.http.post(format!("{}/v1/links", p.base)).json(&json!({"long_url": "https://example.com/target", "custom_alias": code})).send().await.expect("link");
    assert_eq!(r.status(), 201);
    let now = chrono::Utc::now().timestamp_millis();
    let events: Vec<Value> = (0..150)
        .map(|i| json!({"event_id": format!("auto-{i}"), "code": code, "ts": now - 1500 + i * 10, "ip": "198.51.100.78", "user_agent": BROWSER_UA}))
        .collect();
    let r = p.http.post(format!("{}/v1/events", p.base)).json(&events).send().await.expect("events");
    assert!(r.status().is_success(), "{}", r.status());
    events.iter().map(|e| e["ts"].as_i64().expect("ts")).collect()
}

/// Status of `GET /<code>` (redirects not followed).
async fn redirect_status(p: &Proc, code: &str) -> u16 {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    client.get(format!("{}/{code}", p.base)).send().await.expect("redirect").status().as_u16()
}

/// The listed `visitor_flood` anomaly of `code` once `done` accepts it (polls up to 30 s).
async fn listed_flood(p: &Proc, code: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    listed_flood_within(p, code, what, Duration::from_secs(30), done).await
}

/// [`listed_flood`], polling up to `timeout`.
async fn listed_flood_within(p: &Proc, code: &str, what: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let page = p.get(&format!("/v1/anomalies?kind=visitor_flood&code={code}")).await;
        if let Some(item) = page["items"].as_array().expect("items").iter().find(|i| done(i)) {
            return item.clone();
        }
        assert!(t0.elapsed() < timeout, "no {what} visitor_flood anomaly on {code}: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn auto_audit(p: &Proc) -> Vec<Value> {
    p.get("/v1/admin/audit?actor=auto-action").await["items"].as_array().expect("items").clone()
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("auto-actions.toml");
    std::fs::write(&path, "[admin.auto-actions]\nenabled = true\nkinds = [\"visitor_flood\"]\naction = \"disable\"\n").expect("write config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_flood_disables_its_link_once_when_auto_actions_are_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = write_config(dir.path());
    let p = Proc::start_with_config(&data, &[], Some(&config)).await;
    let ts = flood(&p, "autoflood").await;

    let item = listed_flood(&p, "autoflood", "acted-on", |i| i["severity"] == "critical" && !i["actions"].as_array().is_none_or(Vec::is_empty)).await;
    let anomaly_id = item["anomaly_id"].as_str().expect("id").to_string();
    let actions = item["actions"].as_array().expect("actions");
    assert_eq!(actions.len(), 1, "{item}");
    let a = &actions[0];
    assert_eq!((&a["action"], &a["outcome"], &a["code"], &a["actor"]), (&json!("disable"), &json!("applied"), &json!("autoflood"), &json!("auto-action")));
    assert!(a["event_id"].as_u64().is_some_and(|e| e >= 1), "{a}");

    // The hold is in place before the action is recorded: the link is a 404 now.
    assert_eq!(redirect_status(&p, "autoflood").await, 404);
    // Its owner cannot re-enable it.
    let r = p.http.patch(format!("{}/v1/links/autoflood", p.base)).json(&json!({"enabled": true})).send().await.expect("patch");
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().await.expect("json")["error"]["code"], "link_held");

    // Exactly one audit record, naming the anomaly.
    let audit = auto_audit(&p).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    let r = &audit[0];
    assert_eq!((&r["action"], &r["target"], &r["origin_ip"]), (&json!("auto.disable"), &json!("autoflood"), &Value::Null));
    assert!(r["reason"].as_str().is_some_and(|s| s.starts_with("critical visitor_flood anomaly ") && s.contains(&anomaly_id)), "{r}");
    assert_eq!(r["details"]["anomaly_id"], json!(anomaly_id));
    assert_eq!(r["details"]["kind"], "visitor_flood");
    p.terminate();

    // A restart replays the click log (the detectors see the flood again): nothing new.
    let p = Proc::start_with_config(&data, &[], Some(&config)).await;
    let (clicks, bots) = p.flood_stats_for("autoflood", &ts).await;
    assert_eq!(clicks + bots, ts.len() as u64, "the replay counted every click");
    // The detectors' replayed events reach the store right after the views; give the
    // follower the same generous window it had the first time before judging.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        assert_eq!(auto_audit(&p).await.len(), 1, "no second audit record after the restart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let again = listed_flood(&p, "autoflood", "listed", |i| i["anomaly_id"] == json!(anomaly_id)).await;
    assert_eq!(again["actions"].as_array().expect("actions").len(), 1, "{again}");
    assert_eq!(again["actions"][0], item["actions"][0]);
    assert_eq!(redirect_status(&p, "autoflood").await, 404);

    // The admin lifts it like any admin disable.
    let r = p.http.post(format!("{}/v1/admin/links/autoflood/enable", p.base)).send().await.expect("enable");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(redirect_status(&p, "autoflood").await, 302);
    p.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_config_the_same_flood_disables_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Proc::start(dir.path()).await;
    flood(&p, "autoflood").await;
    let item = listed_flood(&p, "autoflood", "critical", |i| i["severity"] == "critical").await;
    assert_eq!(item["actions"], json!([]), "{item}");
    assert_eq!(redirect_status(&p, "autoflood").await, 302);
    assert_eq!(auto_audit(&p).await, Vec::<Value>::new());
    p.terminate();
}

/// Attack of session 56: a flood posted stamped 15 s to 6 s in the past while other
/// traffic keeps event time moving is opened at the first tick after the batch; a start
/// without a checkpoint (`checkpoint-interval = "0s"`) replays the click log with every
/// click there from the start and opens the episode earlier, so under another id. It must
/// continue the stored anomaly (same id, closed by the replay), open no second one, and
/// neither disable the link again (an admin re-enabled it) nor write a second audit record —
/// also at a further start after the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_without_a_checkpoint_continues_a_late_flood_and_acts_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("replay.toml");
    std::fs::write(
        &config,
        "[dataflow]\ncheckpoint-interval = \"0s\"\n[admin.auto-actions]\nenabled = true\nkinds = [\"visitor_flood\"]\naction = \"disable\"\n",
    )
    .expect("write config");
    let env = [("SLUICE__DATAFLOW__ABUSE__VISITOR_FLOOD__WINDOW", "30s")];
    let p = Proc::start_with_config(&data, &env, Some(&config)).await;
    for code in ["bg", "late"] {
        let r =
            p.http.post(format!("{}/v1/links", p.base)).json(&json!({"long_url": "https://example.com/t", "custom_alias": code})).send().await.expect("link");
        assert_eq!(r.status(), 201);
    }
    // Background clicks stamped on arrival (each from its own network) keep event time
    // moving: 10 a second.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bg = {
        let (http, base, stop) = (p.http.clone(), p.base.clone(), std::sync::Arc::clone(&stop));
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let now = chrono::Utc::now().timestamp_millis();
                let ev = json!([{"event_id": format!("bg-{n}"), "code": "bg", "ts": now, "ip": format!("10.{}.{}.1", n / 200 % 200, n % 200), "user_agent": BROWSER_UA}]);
                let _ = http.post(format!("{base}/v1/events")).json(&ev).send().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = chrono::Utc::now().timestamp_millis();
    let events: Vec<Value> = (0..300)
        .map(|i| json!({"event_id": format!("late-{i}"), "code": "late", "ts": now - 15_000 + i * 30, "ip": "198.51.100.81", "user_agent": BROWSER_UA}))
        .collect();
    let r = p.http.post(format!("{}/v1/events", p.base)).json(&events).send().await.expect("events");
    assert!(r.status().is_success(), "{}", r.status());
    let item = listed_flood(&p, "late", "acted-on", |i| i["severity"] == "critical" && !i["actions"].as_array().is_none_or(Vec::is_empty)).await;
    let id = item["anomaly_id"].clone();
    assert_eq!(redirect_status(&p, "late").await, 404);
    let r = p.http.post(format!("{}/v1/admin/links/late/enable", p.base)).json(&json!({"reason": "false positive"})).send().await.expect("enable");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(redirect_status(&p, "late").await, 302);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    bg.await.expect("background clicks");
    let still = listed_flood(&p, "late", "listed", |i| i["anomaly_id"] == id).await;
    assert_ne!(still["status"], "closed", "open at the stop: {still}");
    p.terminate();

    // The restart replays the click log: the same anomaly goes on and is closed.
    let p = Proc::start_with_config(&data, &env, Some(&config)).await;
    // (It closes a quiet period, 30 s, after the flood's clicks have left the window: about
    // 55 s after they were posted.)
    let closed = listed_flood_within(&p, "late", "closed", Duration::from_secs(120), |i| i["anomaly_id"] == id && i["status"] == "closed").await;
    assert_eq!(closed["window_start"], item["window_start"], "{closed}");
    let all = p.get("/v1/anomalies?kind=visitor_flood&code=late").await;
    let ids: Vec<&Value> = all["items"].as_array().expect("items").iter().map(|i| &i["anomaly_id"]).collect();
    assert_eq!(ids, vec![&id], "one anomaly for the flood: {all}");
    assert_eq!(closed["actions"].as_array().expect("actions").len(), 1, "{closed}");
    assert_eq!(auto_audit(&p).await.len(), 1, "no second audit record after the replay");
    assert_eq!(redirect_status(&p, "late").await, 302, "the admin's enable stands");
    p.terminate();

    // A further start without a checkpoint: nothing new.
    let p = Proc::start_with_config(&data, &env, Some(&config)).await;
    // Replayed once the stats count the flood (the checks of the redirect above count too,
    // as bot clicks: at least 300).
    let rfc = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).expect("ts").to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (from, to) = ((now - 15_000).div_euclid(60_000) * 60_000, ((now - 6_000).div_euclid(60_000) + 1) * 60_000);
    let t0 = Instant::now();
    loop {
        let v = p.get(&format!("/v1/links/late/stats?bucket=minute&from={}&to={}", rfc(from), rfc(to))).await;
        if v["totals"]["clicks"].as_u64().unwrap_or(0) + v["totals"]["bot_clicks"].as_u64().unwrap_or(0) >= 300 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "the replay did not count the flood: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        let again = p.get("/v1/anomalies?kind=visitor_flood&code=late").await;
        assert_eq!(again, all, "nothing new at a further replay");
        assert_eq!(auto_audit(&p).await.len(), 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(redirect_status(&p, "late").await, 302);
    p.terminate();
}
