//! The real binary: restart on the same data directory (SIGKILL included) rebuilds
//! identical stats from the click log; report jobs survive restarts; dead letters reach
//! `/metrics`; `sluice demo --exit-after` runs green.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::child::{ChildProcess, await_healthz, free_port};
use crate::harness::{BROWSER_UA, event, now_ms, q};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// `sluice serve` on a data dir, as a child process.
pub(crate) struct Proc {
    child: ChildProcess,
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
}

impl Proc {
    /// Starts `sluice serve` on `dir` (embedded defaults) and waits for `/healthz`.
    pub(crate) async fn start(dir: &Path) -> Proc {
        Proc::start_logged(dir, &[], Stdio::inherit()).await
    }

    /// [`Self::start`] with extra environment variables.
    pub(crate) async fn start_with_env(dir: &Path, env: &[(&str, &str)]) -> Proc {
        Proc::start_logged(dir, env, Stdio::inherit()).await
    }

    /// [`Self::start_with_env`], its stderr going to `stderr`.
    pub(crate) async fn start_logged(dir: &Path, env: &[(&str, &str)], stderr: Stdio) -> Proc {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir)
            .env("SLUICE_LOG", "warn")
            // the embedded click log, even where the test environment exports a broker
            .env_remove("KAFKA_BROKERS")
            // and the embedded link store and no Redis, where a developer's shell exports them
            .env_remove("SLUICE__STORE__URL")
            .env_remove("SLUICE__REDIS__URL")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = ChildProcess::spawn(&mut cmd, "sluice serve");
        let p = Proc {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client"),
        };
        await_healthz(&p.http, &p.base).await;
        p
    }

    async fn get(&self, path: &str) -> Value {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.expect("get");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.expect("json")
    }

    /// `POST /v1/links` with `long_url` and `custom_alias` → asserts 201.
    pub(crate) async fn create_link(&self, long_url: &str, alias: &str) {
        let r = self.http.post(format!("{}/v1/links", self.base)).json(&json!({"long_url": long_url, "custom_alias": alias})).send().await.expect("post");
        assert_eq!(r.status(), reqwest::StatusCode::CREATED, "create {alias}");
    }

    pub(crate) async fn post_events(&self, events: &[Value]) -> reqwest::Result<reqwest::Response> {
        self.http.post(format!("{}/v1/events", self.base)).json(&events).send().await
    }

    /// Waits until every click logged up to 100 ms from now is counted (`freshness.as_of`;
    /// the 100 ms cover the log writer's group commit of redirect clicks).
    pub(crate) async fn caught_up(&self) {
        let t0 = Instant::now();
        let target = now_ms() + 100;
        loop {
            let f = &self.get("/v1/stats/summary?limit=1").await["freshness"];
            let as_of = f["as_of"].as_str().map(crate::harness::ms);
            if as_of.is_some_and(|a| a >= target) {
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "dataflow did not catch up: {f}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill(self) {
        self.child.kill9();
    }

    /// SIGTERM: exit 0 within 30 s.
    pub(crate) fn terminate(self) {
        self.child.terminate();
    }
}

/// Every stats answer of interest, without the freshness member.
async fn snapshot(p: &Proc, codes: &[&str], from: i64, to: i64) -> Vec<Value> {
    let mut out = Vec::new();
    for code in codes {
        for query in [
            "bucket=day",
            "bucket=hour&tz=Asia/Kolkata&dimensions=country",
            "bucket=minute&dimensions=device&include_bots=true",
            "bucket=day&dimensions=country,device",
        ] {
            let mut v = p.get(&format!("/v1/links/{code}/stats?{query}&from={}&to={}", q(from), q(to))).await;
            v.as_object_mut().expect("object").remove("freshness");
            out.push(v);
        }
    }
    let mut v = p.get(&format!("/v1/stats/summary?from={}&to={}", q(from), q(to))).await;
    v.as_object_mut().expect("object").remove("freshness");
    out.push(v);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_rebuild_identical_stats_and_never_double_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Proc::start(dir.path()).await;
    for code in ["rs-a", "rs-b"] {
        p.create_link("https://example.com/r", code).await;
    }
    let uas = [
        BROWSER_UA,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Twitterbot/1.0",
    ];
    for i in 0..30 {
        let code = if i % 3 == 0 { "rs-b" } else { "rs-a" };
        let r = p.http.get(format!("{}/{code}", p.base)).header("user-agent", uas[i % 3]).send().await.expect("redirect");
        assert_eq!(r.status().as_u16(), 302);
    }
    let now = now_ms();
    let evs: Vec<Value> = (0..40)
        .map(|i| {
            event(&format!("rs-{i}"), if i % 2 == 0 { "rs-a" } else { "rs-b" }, now - i * 600_000, &format!("81.2.69.{}", i % 7), uas[(i % 2) as usize], None)
        })
        .collect();
    assert!(p.post_events(&evs).await.expect("post").status().is_success());
    p.caught_up().await;
    let (from, to) = ((now - 7 * 3_600_000).div_euclid(3_600_000) * 3_600_000, now.div_euclid(60_000) * 60_000 + 120_000);
    let before = snapshot(&p, &["rs-a", "rs-b"], from, to).await;
    // rs-a: 10 iPhone redirects + 20 events (10 Twitterbot redirects are bots).
    assert_eq!(before[0]["totals"]["clicks"].as_u64(), Some(30), "{}", before[0]);
    assert_eq!(before[0]["totals"]["bot_clicks"].as_u64(), Some(10), "{}", before[0]);

    // SIGKILL, restart on the same directory: the views are rebuilt from the log.
    p.kill();
    let p = Proc::start(dir.path()).await;
    p.caught_up().await;
    assert_eq!(snapshot(&p, &["rs-a", "rs-b"], from, to).await, before, "identical after SIGKILL + restart");

    // C19.5: 1,000 events with distinct ids; the server dies halfway; the client re-sends
    // everything not acknowledged (and one acknowledged batch again, as a retry would).
    // 50 visitors with 20 clicks each, under the flood cap (30 per visitor, link and minute).
    let batch: Vec<Vec<Value>> = (0..20)
        .map(|b| (0..50).map(|i| event(&format!("c19-{b}-{i}"), "rs-a", now - 3_600_000 + b * 1000 + i, &format!("81.2.70.{i}"), BROWSER_UA, None)).collect())
        .collect();
    for b in &batch[..10] {
        assert!(p.post_events(b).await.expect("post").status().is_success());
    }
    p.kill();
    let p = Proc::start(dir.path()).await;
    for b in &batch[9..] {
        assert!(p.post_events(b).await.expect("post").status().is_success());
    }
    p.caught_up().await;
    let after = p.get(&format!("/v1/links/rs-a/stats?bucket=day&from={}&to={}", q(from), q(to))).await;
    let humans_a = before[0]["totals"]["clicks"].as_u64().expect("clicks");
    assert_eq!(after["totals"]["clicks"].as_u64(), Some(humans_a + 1000), "exactly once: {after}");

    // A graceful stop (SIGTERM) and start gives the same again.
    let again = snapshot(&p, &["rs-a", "rs-b"], from, to).await;
    p.terminate();
    let p = Proc::start(dir.path()).await;
    p.caught_up().await;
    assert_eq!(snapshot(&p, &["rs-a", "rs-b"], from, to).await, again);
}

/// A click log that lost its data under a checkpoint (deleted `clicks.redb`) must not be
/// resumed silently: new clicks would get offsets the checkpoint says were already counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_ahead_of_the_click_log_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Proc::start(dir.path()).await;
    p.create_link("https://example.com/c", "ck-a").await;
    let now = now_ms();
    let evs: Vec<Value> = (0..20).map(|i| event(&format!("ck-{i}"), "ck-a", now - i * 1000, &format!("81.2.71.{i}"), BROWSER_UA, None)).collect();
    assert!(p.post_events(&evs).await.expect("post").status().is_success());
    p.caught_up().await;
    // A graceful stop writes a checkpoint past the 20 events.
    p.terminate();
    let checkpoints = dir.path().join("checkpoints");
    assert!(std::fs::read_dir(&checkpoints).expect("checkpoints dir").next().is_some(), "a checkpoint at shutdown");
    std::fs::remove_file(dir.path().join("clicks.redb")).expect("remove click log");
    let out = serve_to_exit(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must not start: {stderr}");
    assert!(stderr.contains("checkpoint") && stderr.contains("clicks.redb"), "names the cause: {stderr}");
    // Moving the checkpoints away (as the message says) starts it again.
    std::fs::rename(&checkpoints, dir.path().join("checkpoints.old")).expect("move");
    let p = Proc::start(dir.path()).await;
    p.caught_up().await;
    p.terminate();
}

/// A `clicks.redb` replaced by another log (one with more events than the checkpoint's
/// offset, so the offset check alone would let it through) must not be resumed: the views
/// would mix the checkpoint's state with the other log's clicks after that offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_of_another_click_log_refuses_to_start() {
    let (dir, other) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let now = now_ms();
    for (d, n) in [(dir.path(), 6), (other.path(), 40)] {
        let p = Proc::start(d).await;
        p.create_link("https://example.com/c", "cx-a").await;
        let evs: Vec<Value> = (0..n).map(|i| event(&format!("cx-{n}-{i}"), "cx-a", now - i * 1000, &format!("81.2.72.{i}"), BROWSER_UA, None)).collect();
        assert!(p.post_events(&evs).await.expect("post").status().is_success());
        p.caught_up().await;
        p.terminate();
    }
    assert!(std::fs::read_dir(dir.path().join("checkpoints")).expect("checkpoints dir").next().is_some(), "a checkpoint at shutdown");
    std::fs::copy(other.path().join("clicks.redb"), dir.path().join("clicks.redb")).expect("replace the click log");
    let out = serve_to_exit(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must not start: {stderr}");
    assert!(stderr.contains("another click log") && stderr.contains("clicks.redb"), "names the cause: {stderr}");
    // Moving the checkpoints away (as the message says) rebuilds the views from the log as it is.
    std::fs::rename(dir.path().join("checkpoints"), dir.path().join("checkpoints.old")).expect("move");
    let p = Proc::start(dir.path()).await;
    p.caught_up().await;
    let day = 86_400_000;
    let (from, to) = ((now / day - 1) * day, (now / day + 1) * day);
    let stats = p.get(&format!("/v1/links/cx-a/stats?bucket=day&from={}&to={}", q(from), q(to))).await;
    assert_eq!(stats["totals"]["clicks"].as_u64(), Some(40), "the other log's clicks only: {stats}");
    p.terminate();
}

/// Runs `sluice serve` on `data` (embedded defaults, a free port) to its exit: for starts
/// that must be refused. Its output (stderr holds the reason).
pub(crate) fn serve_to_exit(data: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
        .arg(data)
        .env("SLUICE_LOG", "warn")
        .env_remove("KAFKA_BROKERS")
        .env_remove("SLUICE__STORE__URL")
        .env_remove("SLUICE__REDIS__URL")
        .stdin(Stdio::null())
        .output()
        .expect("run sluice serve")
}

impl Proc {
    /// `POST /v1/reports/export` → 202; the job id.
    async fn create_report(&self, body: &Value) -> String {
        let r = self.http.post(format!("{}/v1/reports/export", self.base)).json(body).send().await.expect("post report");
        let st = r.status();
        let v: Value = r.json().await.expect("json");
        assert_eq!(st, reqwest::StatusCode::ACCEPTED, "{v}");
        v["job_id"].as_str().expect("job_id").to_owned()
    }

    /// Polls the job until it succeeded; its download as text.
    async fn job_download(&self, id: &str) -> String {
        let t0 = Instant::now();
        loop {
            let v = self.get(&format!("/v1/jobs/{id}")).await;
            match v["status"].as_str() {
                Some("succeeded") => break,
                Some("queued" | "running") => {}
                _ => panic!("job {id}: {v}"),
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "job {id} did not finish: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = self.http.get(format!("{}/v1/jobs/{id}/download", self.base)).send().await.expect("download");
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        r.text().await.expect("text")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_jobs_survive_restarts_of_the_binary() {
    use crate::reports::{CSV_IST_HOURLY, IST_HOURLY, fixed_events};
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Proc::start(dir.path()).await;
    for code in ["rx-a", "rx-b"] {
        p.create_link("https://example.com/r", code).await;
    }
    assert!(p.post_events(&fixed_events()).await.expect("post").status().is_success());
    p.caught_up().await;
    let r = p.http.get(format!("{}/v1/stats/export?code=rx-a&{IST_HOURLY}", p.base)).send().await.expect("export");
    assert_eq!(r.text().await.expect("text"), CSV_IST_HOURLY);
    let report = json!({"codes": ["rx-a"], "from": "2024-06-01T00:00:00+05:30", "to": "2024-06-02T00:00:00+05:30", "bucket": "hour", "tz": "Asia/Kolkata", "dimensions": "referrer_domain"});
    let done = p.create_report(&report).await;
    assert_eq!(p.job_download(&done).await, CSV_IST_HOURLY);
    // A second job, then SIGKILL at once: whatever state it reached (queued, running or
    // done), after the restart it is listed and ends with the same file.
    let killed = p.create_report(&report).await;
    p.kill();
    let p = Proc::start(dir.path()).await;
    assert_eq!(p.get(&format!("/v1/jobs/{done}")).await["status"], "succeeded", "listed right after the restart");
    assert_eq!(p.job_download(&done).await, CSV_IST_HOURLY);
    assert_eq!(p.job_download(&killed).await, CSV_IST_HOURLY);
    // A graceful stop and start: both still there.
    p.terminate();
    let p = Proc::start(dir.path()).await;
    for id in [&done, &killed] {
        let v = p.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!((v["status"].as_str(), v["rows"].as_u64()), (Some("succeeded"), Some(3)), "{v}");
        assert_eq!(p.job_download(id).await, CSV_IST_HOURLY);
    }
}

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(name_and_labels)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_counted_in_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = now_ms();
    // The intake refuses what it knows the dataflow would drop, and so does `sluice import
    // --data-dir`, so the dead letters are written into the stopped server's click log
    // directly: dl-1 by `sluice import --no-backfill` (which creates the visitor secret and
    // the log), then two live events 72 h and 73 h behind it appended to the log, which the
    // dataflow (seeing dl-1 first) dead-letters `too_late`.
    let file = dir.path().join("dead-letters.ndjson");
    std::fs::write(&file, event("dl-1", "dead-letters", now, "192.0.2.1", BROWSER_UA, None).to_string() + "\n").expect("write");
    let data = dir.path().join("data");
    let out = Command::new(BIN)
        .args(["--log", "warn", "import", "--no-backfill", "--data-dir"])
        .arg(&data)
        .arg(&file)
        .env_remove("KAFKA_BROKERS")
        .output()
        .expect("import");
    assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
    let late = |n: u128, ts: i64| sluice_schemas::ClickEvent {
        event_id: uuid::Uuid::from_u128(n),
        code: "dead-letters".into(),
        ts,
        ip_trunc: Some("192.0.2.0".into()),
        visitor_id: 7,
        user_agent: BROWSER_UA.into(),
        referrer: None,
        accept_language: None,
        edge_region: None,
    };
    let log = sluice_connectors::click_log::ClickLog::open(&data).expect("open the click log");
    log.append(&[late(2, now - 72 * 3_600_000), late(3, now - 73 * 3_600_000)]).expect("append");
    drop(log);
    let p = Proc::start(&data).await;
    p.create_link("https://example.com/dead-letters", "dead-letters").await;
    // In one request, an event more than the lateness behind an earlier accepted one is
    // refused at intake (the dataflow would dead-letter it): dl-7 is accepted, dl-6 refused.
    let r = p
        .post_events(&[
            event("dl-6a", "dead-letters", now, "192.0.2.1", BROWSER_UA, None),
            event("dl-6", "dead-letters", now - 49 * 3_600_000, "192.0.2.1", BROWSER_UA, None),
            event("dl-7", "dead-letters", now - 47 * 3_600_000, "192.0.2.1", BROWSER_UA, None),
        ])
        .await
        .expect("post");
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["accepted"], 2, "{v}");
    assert_eq!(v["rejected"][0]["index"], 1, "{v}");
    assert_eq!(v["rejected"][0]["reason"], "too_late", "{v}");
    let t0 = Instant::now();
    loop {
        let text = p.http.get(format!("{}/metrics", p.base)).send().await.expect("metrics").text().await.expect("text");
        let too_late = metric(&text, "sluice_events_dead_lettered_total{reason=\"too_late\"}");
        if too_late == Some(2.0) {
            assert_eq!(metric(&text, "sluice_events_dead_lettered_total{reason=\"future\"}"), Some(0.0), "registered at zero");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "too_late = {too_late:?}\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Once the views' watermark has moved to dl-1 (the counter above can be published before
    // the views are), the intake itself refuses what the dataflow would drop (too late, per
    // event) and codes no link has; backfill bypasses lateness only.
    let t0 = Instant::now();
    loop {
        let f = &p.get("/v1/stats/summary?limit=1").await["freshness"];
        if f["watermark"].as_str().map(crate::harness::ms).is_some_and(|w| w >= now - 24 * 3_600_000) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the watermark never reached dl-1: {f}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let late = event("dl-4", "dead-letters", now - 73 * 3_600_000, "192.0.2.1", BROWSER_UA, None);
    let r = p.post_events(&[late.clone(), event("dl-5", "no-such-link", now, "192.0.2.1", BROWSER_UA, None)]).await.expect("post");
    assert_eq!(r.status(), reqwest::StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "all_events_rejected", "{v}");
    let reasons: Vec<(u64, &str)> = v["error"]["details"]["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|x| (x["index"].as_u64().expect("index"), x["reason"].as_str().expect("reason")))
        .collect();
    assert_eq!(reasons, vec![(0, "too_late"), (1, "unknown_code")], "{v}");
    let r = p.http.post(format!("{}/v1/events?backfill=true", p.base)).json(&[late]).send().await.expect("post");
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    assert_eq!(r.json::<Value>().await.expect("json")["accepted"], 1);
}

#[test]
fn demo_exit_after_matches_the_ground_truth() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Twice on one data dir, same seed: the second run's late and duplicate events must not
    // reuse the first run's event ids (they would be dropped as duplicates).
    for run in 1..=2 {
        demo_run_matches(dir.path(), run);
    }
}

fn demo_run_matches(dir: &std::path::Path, run: u32) {
    let out = Command::new(BIN)
        .args(["demo", "--exit-after", "--duration", "3s", "--rate", "120", "--links", "8", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .output()
        .expect("run sluice demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo run {run} failed: {}\nstdout:\n{stdout}\nstderr:\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Result: all 8 links match the ground truth"), "{stdout}");
    assert!(stdout.contains("Countries") && stdout.contains("Devices") && stdout.contains("Browsers"), "{stdout}");
    assert!(stdout.contains("Freshness (stats API freshness.lag_ms"), "{stdout}");
}
