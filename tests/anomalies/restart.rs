//! An anomaly still open when the process stops is closed by the next process, through the
//! normal lifecycle: a graceful stop writes a checkpoint, the restarted dataflow restores it
//! (its detectors' windows are not in it) and takes the store's open anomalies over, so the
//! anomaly gets its `closed` revision (the last revision + 1) once it has been quiet for the
//! quiet period, in the store, `GET /v1/anomalies`, the SSE stream and the webhooks, and no
//! second anomaly is opened for the same key.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{BROWSER_UA, Proc, SECRET, Sse, receiver};

/// A 20 s flood window (default 60 s) with the default quiet period of one window: the flood
/// below holds until about 20 s after its clicks and closes about 20 s later.
const ENV: [(&str, &str); 1] = [("SLUICE__DATAFLOW__ABUSE__VISITOR_FLOOD__WINDOW", "20s")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anomaly_open_at_a_graceful_stop_is_closed_after_the_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let p = Proc::start_with(&data, &ENV).await;
    let (hook_url, received) = receiver().await;
    create_link(&p, "stopflood").await;
    let r = p
        .http
        .post(format!("{}/v1/webhooks", p.base))
        .json(&json!({"url": hook_url, "secret": SECRET, "kinds": ["visitor_flood"]}))
        .send()
        .await
        .expect("webhook");
    assert_eq!(r.status(), 201, "{:?}", r.text().await);

    // 150 clicks from one client within 1.5 s: critical (120 per window) at once.
    let now = chrono::Utc::now().timestamp_millis();
    let events: Vec<Value> = (0..150)
        .map(|i| json!({"event_id": format!("stop-{i}"), "code": "stopflood", "ts": now - 1500 + i * 10, "ip": "198.51.100.79", "user_agent": BROWSER_UA}))
        .collect();
    let r = p.http.post(format!("{}/v1/events", p.base)).json(&events).send().await.expect("events");
    assert!(r.status().is_success(), "{}", r.status());
    // Not closed (`open`, or already `updated`: on a loaded machine the detector can emit the
    // open and its first updates in one batch, so the store's latest state skips `open`).
    let opened = listed(&p, "open", |i| i["status"] != "closed").await;
    let (id, key) = (opened["anomaly_id"].clone(), opened["key"].clone());

    // Graceful stop while it is open (it would close about 40 s after the clicks).
    p.terminate();
    let checkpoints: Vec<String> = std::fs::read_dir(data.join("checkpoints"))
        .expect("checkpoints dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ckpt-"))
        .collect();
    assert!(!checkpoints.is_empty(), "the graceful stop wrote a checkpoint");

    let p = Proc::start_with(&data, &ENV).await;
    let at_restart = listed(&p, "listed", |i| i["anomaly_id"] == id).await;
    assert_ne!(at_restart["status"], "closed", "still open when the restarted process came up: {at_restart}");
    let before: u64 = at_restart["revision"].as_u64().expect("revision");

    // The stream from the start: every event of the anomaly, ending with its close.
    let all = p.http.get(format!("{}/v1/anomalies/stream?kind=visitor_flood&last_event_id=0", p.base)).send().await.expect("stream");
    assert_eq!(all.status(), 200);
    let mut sse = Sse::new(all);
    let mut mine = Vec::new();
    let t0 = Instant::now();
    while !mine.last().is_some_and(|e: &Value| e["status"] == "closed") {
        let (_, e) = sse.next(Duration::from_secs(90)).await.expect("the anomaly's close on the stream within 90 s of the restart");
        assert_eq!(e["key"], key, "one anomaly for the key, no second one opened: {e}");
        if e["anomaly_id"] == id {
            mine.push(e);
        }
    }
    eprintln!("closed {:?} after the restart", t0.elapsed());
    let closed = mine.last().expect("closed").clone();
    let revisions: Vec<u64> = mine.iter().map(|e| e["revision"].as_u64().expect("revision")).collect();
    assert_eq!(revisions, (0..mine.len() as u64).collect::<Vec<_>>(), "each revision once, in order: {mine:?}");
    let statuses: Vec<&str> = mine.iter().map(|e| e["status"].as_str().expect("status")).collect();
    assert_eq!(statuses[0], "open");
    assert!(statuses[1..statuses.len() - 1].iter().all(|s| *s == "updated"), "{statuses:?}");
    // No click after the cut: the restarted detector only closes it, repeating the last
    // event's values (window_end included: the last tick known to hold).
    assert_eq!(closed["revision"].as_u64(), Some(before + 1), "{closed}");
    let last = &mine[mine.len() - 2];
    for field in ["window_start", "window_end", "severity", "observed", "expected", "score", "summary", "evidence", "code"] {
        assert_eq!(closed[field], last[field], "{field}");
    }

    // The list has it closed, and nothing else for the key.
    let page = p.get("/v1/anomalies?kind=visitor_flood").await;
    let items: Vec<&Value> = page["items"].as_array().expect("items").iter().filter(|i| i["key"] == key).collect();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!((&items[0]["anomaly_id"], &items[0]["status"], &items[0]["revision"]), (&id, &json!("closed"), &json!(before + 1)));

    // The webhook got the close, signed.
    let t0 = Instant::now();
    loop {
        let got = received
            .lock()
            .iter()
            .filter(|(_, b)| b["anomaly_id"] == id && b["status"] == "closed")
            .map(|(v, b)| (*v, b["revision"].clone()))
            .collect::<Vec<_>>();
        if !got.is_empty() {
            assert_eq!(got, vec![(true, json!(before + 1))]);
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "close not delivered: {:?}", received.lock());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.terminate();
}

/// Attack of session 51: a flood whose last clicks came less than `idle-timeout` before a
/// graceful stop opened no anomaly, then or after the restart: the watermark had not passed
/// them when the stop's checkpoint marked them read, and the detectors' windows are not in
/// checkpoints. The stop now settles event time first (the source turns idle at once), so
/// the detectors evaluate them and the anomaly is stored before the process exits. A long
/// idle timeout holds the watermark at the flood's last click for the whole test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_read_just_before_a_graceful_stop_is_reported() {
    // No periodic checkpoint either: its round would let the detectors see the clicks early.
    const HELD: [(&str, &str); 2] = [("SLUICE__DATAFLOW__IDLE_TIMEOUT", "10m"), ("SLUICE__DATAFLOW__CHECKPOINT_INTERVAL", "1h")];
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let p = Proc::start_with(&data, &HELD).await;
    create_link(&p, "lastflood").await;
    // 70 clicks from one client within 0.2 s: a warning (60 per window; critical from 120),
    // read and counted but not evaluated: the watermark is held at the last click. All 70 in
    // one second (a tick): straddling a tick's end, the watermark at the last click would
    // complete the earlier tick and the flood would be judged on its first clicks.
    let now = past_a_tick_start().await;
    post_flood(&p, "198.51.100.80", (0..70).map(|i| now - 200 + i * 2), 70).await;
    let page = p.get("/v1/anomalies?code=lastflood").await;
    assert_eq!(page["items"], json!([]), "no anomaly before the stop: {page}");
    // 70 more from another network stamped up to a second ahead of the clock (within
    // future-skew), which the stop waits for until the clock reaches them (attack of session
    // 51); the watermark never passes them before (it moves to their arrival at most, which
    // may complete the first flood's tick: that one is then reported before the stop).
    let now = past_a_tick_start().await;
    post_flood(&p, "203.0.113.81", (0..70).map(|i| now + 1000 - (70 - i) * 2), 140).await;
    let page = p.get("/v1/anomalies?code=lastflood").await;
    let ahead: Vec<&Value> = page["items"].as_array().expect("items").iter().filter(|i| i["evidence"]["network"] == "203.0.113.0/24").collect();
    assert!(ahead.is_empty(), "no anomaly of the clicks ahead before the stop: {page}");

    p.terminate();
    let p = Proc::start_with(&data, &HELD).await;
    let page = p.get("/v1/anomalies?kind=visitor_flood&code=lastflood").await;
    let items = page["items"].as_array().expect("items");
    let flood: Vec<&Value> = items.iter().filter(|i| i["observed"] == 70.0).collect();
    let networks: std::collections::BTreeSet<&str> = flood.iter().filter_map(|f| f["evidence"]["network"].as_str()).collect();
    assert_eq!((flood.len(), networks.len()), (2, 2), "one visitor_flood of each client's 70 clicks, stored at the stop: {page}");
    for f in flood {
        assert_eq!((&f["severity"], &f["evidence"]["clicks"]), (&json!("warning"), &json!(70)), "{f}");
    }
    p.terminate();
}

/// Attack of session 54: a flood read shortly before a *periodic* checkpoint, then `kill -9`
/// once that checkpoint was written, opened no anomaly ever: the checkpoint's cut held the
/// clicks, the detectors had not evaluated them yet (the watermark waits for more clicks or
/// `idle-timeout`), and the restart resumed after the cut. A periodic round now holds the
/// sources and settles event time first, so the anomaly is detected and stored before the
/// cut is taken. A long idle timeout holds the watermark at the flood's last click: nothing
/// but the round's settle lets the detectors see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_in_a_periodic_checkpoint_is_reported_despite_a_kill_right_after_it() {
    const HELD: [(&str, &str); 2] = [("SLUICE__DATAFLOW__IDLE_TIMEOUT", "10m"), ("SLUICE__DATAFLOW__CHECKPOINT_INTERVAL", "2s")];
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let p = Proc::start_with(&data, &HELD).await;
    create_link(&p, "lastflood").await;
    // 70 clicks from one client within one tick: a warning (60 per window), counted at once.
    let now = past_a_tick_start().await;
    post_flood(&p, "198.51.100.90", (0..70).map(|i| now - 200 + i * 2), 70).await;
    // The first checkpoint whose round began after the clicks were counted holds them.
    let counted = std::time::SystemTime::now();
    let t0 = Instant::now();
    let written = loop {
        let newer = std::fs::read_dir(data.join("checkpoints")).ok().into_iter().flatten().flatten().find(|e| {
            e.file_name().to_string_lossy().ends_with(".bin")
                && e.metadata().and_then(|m| m.modified()).is_ok_and(|m| m.duration_since(counted).is_ok_and(|d| d > Duration::from_millis(100)))
        });
        if let Some(e) = newer {
            break e.file_name();
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no checkpoint after the flood");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut p = p;
    p.child.kill().expect("kill -9");
    p.child.wait().expect("wait");
    drop(p);
    eprintln!("killed after {written:?}");

    let p = Proc::start_with(&data, &HELD).await;
    let t0 = Instant::now();
    let flood = loop {
        let page = p.get("/v1/anomalies?kind=visitor_flood&code=lastflood").await;
        let items = page["items"].as_array().expect("items").clone();
        if !items.is_empty() {
            break items;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "the flood in the checkpoint was never reported: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(flood.len(), 1, "one anomaly: {flood:?}");
    let f = &flood[0];
    assert_eq!((&f["severity"], &f["observed"], &f["evidence"]["clicks"]), (&json!("warning"), &json!(70.0), &json!(70)), "{f}");
    p.terminate();
}

/// The clock (ms UTC) once at least 300 ms of its second have passed, so `now - 200 ..
/// now - 60` and `now + 860 .. now + 999` each lie within one second (one tick of the
/// detectors).
async fn past_a_tick_start() -> i64 {
    loop {
        let now = chrono::Utc::now().timestamp_millis();
        if now.rem_euclid(1000) >= 300 {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(350 - now.rem_euclid(1000) as u64)).await;
    }
}

/// Posts one click to `lastflood` from `ip` at each of `stamps` (ms UTC), then waits until
/// the link counts `total` clicks (bots included: past 30 a minute, the flood cap makes a
/// visitor's clicks bot clicks).
async fn post_flood(p: &Proc, ip: &str, stamps: impl Iterator<Item = i64>, total: u64) {
    let events: Vec<Value> =
        stamps.enumerate().map(|(i, ts)| json!({"event_id": format!("{ip}-{i}"), "code": "lastflood", "ts": ts, "ip": ip, "user_agent": BROWSER_UA})).collect();
    let r = p.http.post(format!("{}/v1/events", p.base)).json(&events).send().await.expect("events");
    assert!(r.status().is_success(), "{}", r.status());
    let t0 = Instant::now();
    loop {
        let stats = p.get("/v1/links/lastflood/stats?bucket=minute&include_bots=true").await;
        if stats["totals"]["clicks"] == total {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{total} clicks not counted: {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates the link `alias` (to example.com).
async fn create_link(p: &Proc, alias: &str) {
    let r =
        p.http.post(format!("{}/v1/links", p.base)).json(&json!({"long_url": "https://example.com/target", "custom_alias": alias})).send().await.expect("link");
    assert_eq!(r.status(), 201, "{alias}");
}

/// The listed `visitor_flood` anomaly of link `stopflood` once `done` accepts it (polls up
/// to 30 s).
async fn listed(p: &Proc, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let page = p.get("/v1/anomalies?kind=visitor_flood&code=stopflood").await;
        if let Some(item) = page["items"].as_array().expect("items").iter().find(|i| done(i)) {
            return item.clone();
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no {what} visitor_flood anomaly: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
