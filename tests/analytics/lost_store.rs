//! A lost link store through the real binary: `links.db` deleted while `clicks.redb`
//! survives. The codes with clicks in the log are retired at the next start (a new link
//! cannot take one and inherit its clicks); a click log only `sluice import` wrote retires
//! nothing (importing history before the first `serve` is legitimate).

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::harness::{BROWSER_UA, event, now_ms};
use crate::process::Proc;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// `POST /v1/links` with `custom_alias`: the status and body.
async fn create(p: &Proc, alias: &str) -> (u16, Value) {
    let r =
        p.http.post(format!("{}/v1/links", p.base)).json(&json!({"long_url": "https://example.com/new", "custom_alias": alias})).send().await.expect("post");
    (r.status().as_u16(), r.json().await.expect("json"))
}

/// `GET /v1/links/{code}/stats` by hour over the last day: status and body.
async fn stats(p: &Proc, code: &str) -> (u16, Value) {
    let hour = now_ms().div_euclid(3_600_000) * 3_600_000;
    let (from, to) = (crate::harness::q(hour - 86_400_000), crate::harness::q(hour + 3_600_000));
    let r = p.http.get(format!("{}/v1/links/{code}/stats?bucket=hour&from={from}&to={to}", p.base)).send().await.expect("stats");
    (r.status().as_u16(), r.json().await.expect("json"))
}

fn remove_link_store(dir: &Path) {
    for name in ["links.db", "links.db-wal", "links.db-shm"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    assert!(!dir.join("links.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_of_a_lost_link_store_are_retired_at_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Proc::start(dir.path()).await;
    p.create_link("https://example.com/old", "lost-a").await;
    p.create_link("https://example.com/old", "lost-b").await;
    for _ in 0..3 {
        let r = p.http.get(format!("{}/lost-a", p.base)).header("user-agent", BROWSER_UA).send().await.expect("redirect");
        assert_eq!(r.status().as_u16(), 302);
    }
    p.caught_up().await;
    assert_eq!(stats(&p, "lost-a").await.1["totals"]["clicks"], 3);
    p.terminate();

    remove_link_store(dir.path());
    let log = dir.path().join("restart.log");
    let p = Proc::start_logged(dir.path(), &[], Stdio::from(std::fs::File::create(&log).expect("log file"))).await;
    p.caught_up().await;
    // lost-a has clicks in the log: retired. lost-b has none: free.
    let (status, body) = create(&p, "lost-a").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "alias_conflict", "{body}");
    // it says so (newcomer, session 21: the message spoke of a deleted link)
    assert_eq!(body["error"]["details"], json!({"alias": "lost-a", "deleted": false, "retired": true}), "{body}");
    assert!(body["error"]["message"].as_str().expect("message").contains("is retired for good"), "{body}");
    assert_eq!(create(&p, "lost-b").await.0, 201);
    // No link has lost-a: its clicks count for nobody.
    assert_eq!(stats(&p, "lost-a").await.0, 404);
    let (status, fresh) = stats(&p, "lost-b").await;
    assert_eq!((status, &fresh["totals"]["clicks"]), (200, &json!(0)), "{fresh}");
    let stderr = std::fs::read_to_string(&log).expect("read log");
    assert!(stderr.contains("retired") && stderr.contains("retired=1"), "the warning says so: {stderr}");

    // A plain restart (same store) retires nothing more and keeps lost-a retired.
    p.terminate();
    let p = Proc::start(dir.path()).await;
    assert_eq!(create(&p, "lost-a").await.0, 409);
    assert_eq!(stats(&p, "lost-b").await.1["totals"]["clicks"], 0);
    p.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_log_filled_by_import_retires_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = now_ms();
    let lines: Vec<String> =
        (0..4).map(|i| event(&format!("imp-{i}"), "imp-a", now - 3_600_000 - i * 60_000, &format!("81.2.69.{i}"), BROWSER_UA, None).to_string()).collect();
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, lines.join("\n") + "\n").expect("write events");
    let data = dir.path().join("data");
    let out = Command::new(BIN)
        .arg("import")
        .arg("--data-dir")
        .arg(&data)
        .arg(&file)
        .env_remove("SLUICE__STORE__URL")
        .env_remove("KAFKA_BROKERS")
        .output()
        .expect("run sluice import");
    assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!data.join("links.db").exists(), "import creates no link store");

    let p = Proc::start(&data).await;
    let (status, body) = create(&p, "imp-a").await;
    assert_eq!(status, 201, "{body}");
    p.caught_up().await;
    assert_eq!(stats(&p, "imp-a").await.1["totals"]["clicks"], 4, "the imported history counts for the link");
    // The store is now recorded: losing it from here on retires imp-a.
    p.terminate();
    remove_link_store(&data);
    let p = Proc::start(&data).await;
    assert_eq!(create(&p, "imp-a").await.0, 409);
    p.terminate();
}

/// A start refused by a later check (a checkpoint of another `clicks.redb`) retires nothing: with the original click log back, the foreign log's codes are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_start_retires_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (foreign, own) = (dir.path().join("foreign"), dir.path().join("own"));
    // Another deployment's click log: one click for "foreign-x", another store's id.
    let p = Proc::start(&foreign).await;
    p.create_link("https://example.com/f", "foreign-x").await;
    let r = p.http.get(format!("{}/foreign-x", p.base)).header("user-agent", BROWSER_UA).send().await.expect("redirect");
    assert_eq!(r.status().as_u16(), 302);
    p.caught_up().await;
    p.terminate();
    // This data dir: three clicks, checkpointed at the graceful stop (offset 3 > 1).
    let p = Proc::start(&own).await;
    p.create_link("https://example.com/o", "own-a").await;
    for _ in 0..3 {
        let r = p.http.get(format!("{}/own-a", p.base)).header("user-agent", BROWSER_UA).send().await.expect("redirect");
        assert_eq!(r.status().as_u16(), 302);
    }
    p.caught_up().await;
    p.terminate();
    assert!(std::fs::read_dir(own.join("checkpoints")).expect("checkpoints dir").next().is_some(), "a checkpoint was written");

    std::fs::rename(own.join("clicks.redb"), dir.path().join("own-clicks.redb")).expect("move the log aside");
    std::fs::copy(foreign.join("clicks.redb"), own.join("clicks.redb")).expect("copy the foreign log");
    let out = crate::process::serve_to_exit(&own);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // (The checkpoint records the id of the log it was taken of: the foreign log is refused by
    // that check, before the one of its length.)
    assert!(stderr.contains("was taken of another click log") && stderr.contains("was clicks.redb replaced?"), "{stderr}");
    assert!(stderr.contains("(e.g. from a backup; sluice saved no copy of a click log in the data dir)"), "names no file that does not exist: {stderr}");
    assert!(!stderr.contains("retired"), "{stderr}");

    std::fs::rename(dir.path().join("own-clicks.redb"), own.join("clicks.redb")).expect("put the log back");
    let p = Proc::start(&own).await;
    let (status, body) = create(&p, "foreign-x").await;
    assert_eq!(status, 201, "the refused start retired no code: {body}");
    p.caught_up().await;
    assert_eq!(stats(&p, "own-a").await.1["totals"]["clicks"], 3);
    p.terminate();
}

/// `sluice log reset --data-dir dir`: its stdout (exit 0 asserted).
fn log_reset(dir: &Path) -> String {
    let out = Command::new(BIN)
        .args(["log", "reset", "--data-dir"])
        .arg(dir)
        .env_remove("SLUICE__STORE__URL")
        .env_remove("KAFKA_BROKERS")
        .output()
        .expect("run sluice log reset");
    assert!(out.status.success(), "log reset: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `n` clicks on `code` through the redirect (each answered 302).
async fn click(p: &Proc, code: &str, n: usize) {
    for _ in 0..n {
        let r = p.http.get(format!("{}/{code}", p.base)).header("user-agent", BROWSER_UA).send().await.expect("redirect");
        assert_eq!(r.status().as_u16(), 302);
    }
}

/// A server on `dir` creates `promo`, which gets 3 clicks, and stops gracefully (a
/// checkpoint holds the clicks).
async fn promo_with_three_clicks(dir: &Path) {
    let p = Proc::start(dir).await;
    p.create_link("https://example.com/old", "promo").await;
    click(&p, "promo", 3).await;
    p.caught_up().await;
    p.terminate();
}

/// After `sluice log reset` the clicks counted before it live only in the checkpoint; a link
/// store lost after the reset is still noticed (the reset records the store's id in the new
/// log, attack of session 44: the new log recorded none, so nothing was retired) and the
/// checkpoint's codes are retired with the new log's: no new link inherits their clicks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_store_lost_after_a_log_reset_retires_the_checkpoints_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    promo_with_three_clicks(dir.path()).await; // graceful stop: a checkpoint holds them

    std::fs::File::options().write(true).open(dir.path().join("clicks.redb")).expect("open").set_len(0).expect("damage the log");
    let report = log_reset(dir.path());
    assert!(report.contains("recorded in the new log"), "{report}");

    // Variant 1: the store is lost right after the reset.
    let kept = dir.path().join("kept");
    std::fs::create_dir(&kept).expect("mkdir");
    for name in ["links.db", "links.db-wal", "links.db-shm"] {
        if dir.path().join(name).exists() {
            std::fs::copy(dir.path().join(name), kept.join(name)).expect("keep a copy of the store");
        }
    }
    remove_link_store(dir.path());
    let p = Proc::start(dir.path()).await;
    p.caught_up().await;
    let (status, body) = create(&p, "promo").await;
    assert_eq!((status, &body["error"]["details"]["retired"]), (409, &json!(true)), "{body}");
    assert_eq!(stats(&p, "promo").await.0, 404);
    assert_eq!(create(&p, "free-1").await.0, 201);
    p.terminate();

    // Variant 2: the original store back, clicks on a new link in the new log, then the
    // store is lost again: the checkpoint-only code and the new log's code are both retired.
    remove_link_store(dir.path());
    for name in ["links.db", "links.db-wal", "links.db-shm"] {
        if kept.join(name).exists() {
            std::fs::copy(kept.join(name), dir.path().join(name)).expect("restore the store");
        }
    }
    let p = Proc::start(dir.path()).await;
    p.create_link("https://example.com/new", "fresh").await;
    click(&p, "fresh", 2).await;
    p.caught_up().await;
    assert_eq!(stats(&p, "promo").await.1["totals"]["clicks"], 3, "the restored store's link keeps its clicks");
    p.terminate();
    remove_link_store(dir.path());
    let p = Proc::start(dir.path()).await;
    p.caught_up().await;
    for code in ["promo", "fresh"] {
        let (status, body) = create(&p, code).await;
        assert_eq!((status, &body["error"]["details"]["retired"]), (409, &json!(true)), "{code}: {body}");
    }
    assert_eq!(create(&p, "free-2").await.0, 201);
    p.terminate();
}

/// A reset log whose reset could not read the store's id (links.db already gone) retires
/// the checkpoint's codes at the next start that finds links.db missing (attack of session
/// 44: the new link inherited the old clicks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_without_a_store_id_retires_the_checkpoints_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    promo_with_three_clicks(dir.path()).await;
    remove_link_store(dir.path());

    // links.db gone before the reset: none recorded by it, the checkpoint's codes retired.
    std::fs::File::options().write(true).open(dir.path().join("clicks.redb")).expect("open").set_len(0).expect("damage the log");
    let report = log_reset(dir.path());
    assert!(report.contains("no link store at") && report.contains("retires the codes the checkpoint counted"), "{report}");
    let log = dir.path().join("restart.log");
    let p = Proc::start_logged(dir.path(), &[], Stdio::from(std::fs::File::create(&log).expect("log file"))).await;
    p.caught_up().await;
    let (status, body) = create(&p, "promo").await;
    assert_eq!((status, &body["error"]["details"]["retired"]), (409, &json!(true)), "{body}");
    assert_eq!(create(&p, "free-3").await.0, 201);
    let stderr = std::fs::read_to_string(&log).expect("read log");
    assert!(stderr.contains("whose click log was reset") && stderr.contains("retired=1"), "{stderr}");
    p.terminate();
}
