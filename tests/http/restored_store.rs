//! A link store restored from a backup (attack of session 46, H4): it keeps its store id but
//! not the links created after the backup. Those with clicks must not be created again (a new
//! link would inherit their clicks); the others may.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::child::{ChildProcess, await_ready, free_port, serve_embedded};

/// Starts `sluice serve` (role all) on `data`, logging to `log`, and waits until it is ready.
async fn start(http: &reqwest::Client, data: &Path, log: &Path) -> (ChildProcess, String) {
    start_role(http, data, log, "all").await
}

/// `POST /v1/links` with `custom_alias`: status and body.
async fn create(http: &reqwest::Client, at: &str, alias: &str) -> (u16, Value) {
    let r = http
        .post(format!("http://{at}/v1/links"))
        .json(&json!({"long_url": format!("https://example.com/{alias}"), "custom_alias": alias}))
        .send()
        .await
        .expect("post");
    (r.status().as_u16(), r.json::<Value>().await.expect("json"))
}

async fn follow(http: &reqwest::Client, at: &str, code: &str, times: usize) {
    for _ in 0..times {
        assert_eq!(http.get(format!("http://{at}/{code}")).send().await.expect("follow").status(), 302, "{code}");
    }
}

/// Backup taken after a graceful stop; then links created, clicked, deleted, and the process
/// killed (`kill -9`) two seconds later; `links.db` restored: the clicked links created after
/// the backup are retired (409, `retired: true`), an unclicked one is free, and the backup's
/// own links (one deleted after the backup, live again) are served. A later start finds
/// nothing more to retire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clicked_codes_created_after_a_restored_backup_are_retired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let (before, at) = start(&http, &data, &dir.path().join("1.log")).await;
    for alias in ["kept", "kept-deleted"] {
        assert_eq!(create(&http, &at, alias).await.0, 201);
        follow(&http, &at, alias, 2).await;
    }
    before.terminate();
    let backup = dir.path().join("links.db.backup");
    std::fs::copy(data.join("links.db"), &backup).expect("backup");

    let (after, at) = start(&http, &data, &dir.path().join("2.log")).await;
    for alias in ["after-clicked", "after-deleted", "after-unclicked"] {
        assert_eq!(create(&http, &at, alias).await.0, 201);
    }
    follow(&http, &at, "after-clicked", 3).await;
    follow(&http, &at, "after-deleted", 1).await;
    for code in ["after-deleted", "kept-deleted"] {
        assert_eq!(http.delete(format!("http://{at}/v1/links/{code}")).send().await.expect("delete").status(), 204);
    }
    // The clicks are in the log, and the change mark recorded (every second), before the kill.
    tokio::time::sleep(Duration::from_secs(3)).await;
    after.kill9();
    for name in ["links.db-wal", "links.db-shm"] {
        let _ = std::fs::remove_file(data.join(name));
    }
    std::fs::copy(&backup, data.join("links.db")).expect("restore the backup");

    let log3 = dir.path().join("3.log");
    let (restored, at) = start(&http, &data, &log3).await;
    let text = std::fs::read_to_string(&log3).expect("log");
    assert!(text.contains("restored from a backup") && text.contains("retired=2"), "{text}");
    for alias in ["after-clicked", "after-deleted"] {
        let (status, body) = create(&http, &at, alias).await;
        assert_eq!((status, &body["error"]["details"]), (409, &json!({"alias": alias, "deleted": false, "retired": true})), "{body}");
    }
    assert_eq!(create(&http, &at, "after-unclicked").await.0, 201, "no clicks: free");
    for code in ["kept", "kept-deleted", "after-unclicked"] {
        follow(&http, &at, code, 1).await;
    }
    assert_eq!(http.get(format!("http://{at}/after-clicked")).send().await.expect("follow").status(), 404);
    restored.terminate();

    let log4 = dir.path().join("4.log");
    let (again, _) = start(&http, &data, &log4).await;
    let text = std::fs::read_to_string(&log4).expect("log");
    assert!(!text.contains("restored from a backup") && !text.contains("retired="), "{text}");
    again.terminate();

    // The same backup put back a second time (attack of session 47: its retired codes are
    // not in it, and its change mark is the log's again): noticed by the epoch.
    std::fs::copy(&backup, data.join("links.db")).expect("restore the backup again");
    let log5 = dir.path().join("5.log");
    let (twice, at) = start(&http, &data, &log5).await;
    let text = std::fs::read_to_string(&log5).expect("log");
    // after-unclicked was created again, and clicked, in the run on the first restored copy.
    assert!(text.contains("restored from a backup") && text.contains("retired=3"), "{text}");
    for alias in ["after-clicked", "after-deleted", "after-unclicked"] {
        assert_eq!(create(&http, &at, alias).await.1["error"]["details"]["retired"], json!(true), "{alias}");
    }
    twice.terminate();
}

/// Attack of session 47: a newer backup put back after an older one had been restored and
/// used (its change mark not below the log's) is noticed too, and a code clicked only in
/// the run on the older copy is retired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_backup_put_back_after_an_older_one_retires_the_codes_clicked_in_between() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let (s, at) = start(&http, &data, &dir.path().join("1.log")).await;
    assert_eq!(create(&http, &at, "a").await.0, 201);
    follow(&http, &at, "a", 1).await;
    s.terminate();
    let older = dir.path().join("older.db");
    std::fs::copy(data.join("links.db"), &older).expect("older backup");
    let (s, at) = start(&http, &data, &dir.path().join("2.log")).await;
    for alias in ["x", "x2", "x3"] {
        assert_eq!(create(&http, &at, alias).await.0, 201);
    }
    follow(&http, &at, "x", 1).await;
    s.terminate();
    let newer = dir.path().join("newer.db");
    std::fs::copy(data.join("links.db"), &newer).expect("newer backup");

    std::fs::copy(&older, data.join("links.db")).expect("restore the older backup");
    let (s, at) = start(&http, &data, &dir.path().join("3.log")).await;
    assert_eq!(create(&http, &at, "x").await.0, 409, "x was clicked");
    assert_eq!(create(&http, &at, "p").await.0, 201);
    follow(&http, &at, "p", 2).await;
    s.terminate();

    std::fs::copy(&newer, data.join("links.db")).expect("put the newer backup back");
    let log4 = dir.path().join("4.log");
    let (s, at) = start(&http, &data, &log4).await;
    let text = std::fs::read_to_string(&log4).expect("log");
    assert!(text.contains("restored from a backup") && text.contains("retired=1"), "{text}");
    let (status, body) = create(&http, &at, "p").await;
    assert_eq!((status, &body["error"]["details"]["retired"]), (409, &json!(true)), "{body}");
    for code in ["a", "x", "x2", "x3"] {
        follow(&http, &at, code, 1).await;
    }
    s.terminate();
}

/// The same restore under split roles, both processes started at once: whichever takes the
/// click log first, the `api` process creates no link with a clicked code of the lost links
/// (when the redirect process holds the log, it waits for that process's check of the
/// restored store, whose answers to earlier requests came from before the backup).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_pair_started_together_on_a_restored_store_retires_the_clicked_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    // A split pair has run (the store answered an api process's request), then the backup.
    let (redirect, _) = start_role(&http, &data, &dir.path().join("r1.log"), "redirect").await;
    let (api, at) = start_role(&http, &data, &dir.path().join("a1.log"), "api").await;
    assert_eq!(create(&http, &at, "kept").await.0, 201);
    api.terminate();
    redirect.terminate();
    let backup = dir.path().join("links.db.backup");
    std::fs::copy(data.join("links.db"), &backup).expect("backup");

    let (all, at) = start(&http, &data, &dir.path().join("2.log")).await;
    assert_eq!(create(&http, &at, "after").await.0, 201);
    follow(&http, &at, "after", 2).await;
    all.terminate();
    for name in ["links.db-wal", "links.db-shm"] {
        let _ = std::fs::remove_file(data.join(name));
    }
    std::fs::copy(&backup, data.join("links.db")).expect("restore the backup");

    let (redirect_at, api_at) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let (redirect_log, api_log) = (dir.path().join("r3.log"), dir.path().join("a3.log"));
    let mut redirect = serve_embedded(&redirect_at, &data, &["--role", "redirect"], &redirect_log);
    let mut api = serve_embedded(&api_at, &data, &["--role", "api"], &api_log);
    await_ready(&mut api, &http, &api_at, &api_log, Duration::from_secs(60)).await;
    let (status, body) = create(&http, &api_at, "after").await;
    assert_eq!((status, &body["error"]["details"]["retired"]), (409, &json!(true)), "{body}");
    await_ready(&mut redirect, &http, &redirect_at, &redirect_log, Duration::from_secs(60)).await;
    follow(&http, &redirect_at, "kept", 1).await;
    api.terminate();
    redirect.terminate();
}

/// [`start`] with `--role role`.
async fn start_role(http: &reqwest::Client, data: &Path, log: &Path, role: &str) -> (ChildProcess, String) {
    let at = format!("127.0.0.1:{}", free_port());
    let mut child = serve_embedded(&at, data, &["--role", role], log);
    await_ready(&mut child, http, &at, log, Duration::from_secs(60)).await;
    (child, at)
}

/// Attack of session 47: a backup put back while the click log was lost, then `sluice log
/// reset` (as the refused start says): the reset log records the restored store, and the
/// first start still retires the checkpoint's clicked codes that the store does not know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_put_back_with_the_click_log_lost_and_reset_retires_the_checkpoints_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let (s, at) = start(&http, &data, &dir.path().join("1.log")).await;
    assert_eq!(create(&http, &at, "a1").await.0, 201);
    follow(&http, &at, "a1", 1).await;
    s.terminate();
    let backup = dir.path().join("b.db");
    std::fs::copy(data.join("links.db"), &backup).expect("backup");
    let (s, at) = start(&http, &data, &dir.path().join("2.log")).await;
    assert_eq!(create(&http, &at, "n1").await.0, 201);
    follow(&http, &at, "n1", 1).await;
    s.terminate();
    std::fs::copy(&backup, data.join("links.db")).expect("restore");
    std::fs::remove_file(data.join("clicks.redb")).expect("lose the click log");
    let reset = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--log", "warn", "log", "reset", "--data-dir"])
        .arg(&data)
        .env_remove("SLUICE__STORE__URL")
        .env_remove("KAFKA_BROKERS")
        .output()
        .expect("run log reset");
    assert!(reset.status.success(), "{}", String::from_utf8_lossy(&reset.stderr));
    let log3 = dir.path().join("3.log");
    let (s, at) = start(&http, &data, &log3).await;
    let text = std::fs::read_to_string(&log3).expect("log");
    assert!(text.contains("restored from a backup, or a log reset") && text.contains("retired=1"), "{text}");
    let (status, body) = create(&http, &at, "n1").await;
    assert_eq!((status, &body["error"]["details"]["retired"]), (409, &json!(true)), "{body}");
    follow(&http, &at, "a1", 1).await;
    s.terminate();
    // Checked once: the next start finds nothing to do.
    let log4 = dir.path().join("4.log");
    let (s, _) = start(&http, &data, &log4).await;
    assert!(!std::fs::read_to_string(&log4).expect("log").contains("retired="));
    s.terminate();
}
