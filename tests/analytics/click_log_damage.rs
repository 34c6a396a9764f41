//! `clicks.redb` damaged from outside while the real binary serves (README, "Run it"):
//! truncated (written back from the open file, or reported: `/readyz` 503, an error log, a
//! graceful stop that exits 1) and replaced by another file (saved to a side file that keeps
//! every click), and the way back with `sluice log reset`, which keeps the checkpoint's clicks.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::child::{ChildProcess, await_ready, free_port, serve_embedded};
use crate::harness::{BROWSER_UA, event, now_ms, q};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// A running `sluice serve` on a data dir: its address and log file.
struct Server {
    child: ChildProcess,
    listen: String,
    log: std::path::PathBuf,
    http: reqwest::Client,
}

impl Server {
    async fn start(data: &Path) -> Server {
        Server::start_with(data, &[]).await
    }

    /// [`Server::start`] with more `sluice serve` arguments.
    async fn start_with(data: &Path, args: &[&str]) -> Server {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let listen = format!("127.0.0.1:{}", free_port());
        let log = data.with_extension(format!("log-{}", now_ms()));
        let mut child = serve_embedded(&listen, data, args, &log);
        await_ready(&mut child, &http, &listen, &log, Duration::from_secs(60)).await;
        Server { child, listen, log, http }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).expect("read the server log")
    }

    async fn create_link(&self, alias: &str) {
        let body = serde_json::json!({"long_url": "https://example.com/d", "custom_alias": alias});
        let r = self.http.post(format!("http://{}/v1/links", self.listen)).json(&body).send().await.expect("post link");
        assert_eq!(r.status().as_u16(), 201);
    }

    /// `POST /v1/events` of clicks `range` on `code` (each its own visitor: no flood cap) → its status.
    async fn post_clicks(&self, code: &str, range: std::ops::Range<u32>) -> u16 {
        let now = now_ms();
        let evs: Vec<Value> = range
            .map(|i| event(&format!("{code}-{i}"), code, now - i64::from(i) * 10, &format!("81.2.{}.{}", 70 + i / 200, i % 200), BROWSER_UA, None))
            .collect();
        self.http.post(format!("http://{}/v1/events", self.listen)).json(&evs).send().await.expect("post events").status().as_u16()
    }

    async fn clicks(&self, code: &str) -> u64 {
        let day = 86_400_000;
        let now = now_ms();
        let url = format!("http://{}/v1/links/{code}/stats?bucket=day&from={}&to={}", self.listen, q((now / day - 1) * day), q((now / day + 1) * day));
        let v: Value = self.http.get(url).send().await.expect("stats").json().await.expect("json");
        v["totals"]["clicks"].as_u64().unwrap_or_else(|| panic!("{v}"))
    }

    /// Waits until the stats of `code` show `want` clicks (panics after 30 s with what they show).
    async fn await_clicks(&self, code: &str, want: u64) {
        let t0 = Instant::now();
        loop {
            let got = self.clicks(code).await;
            if got == want {
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "{code}: {got} clicks, want {want}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /{code}` as a browser → its status.
    async fn redirect(&self, code: &str) -> u16 {
        let r = self.http.get(format!("http://{}/{code}", self.listen)).header("user-agent", BROWSER_UA).send().await.expect("redirect");
        r.status().as_u16()
    }

    /// `totals.clicks` of `GET /v1/stats/summary` (every link's, deleted ones' included).
    async fn summary_clicks(&self) -> u64 {
        let v: Value = self.http.get(format!("http://{}/v1/stats/summary", self.listen)).send().await.expect("summary").json().await.expect("json");
        v["totals"]["clicks"].as_u64().unwrap_or_else(|| panic!("{v}"))
    }

    /// Waits until the summary shows `want` clicks (panics after 30 s with what it shows).
    async fn await_summary_clicks(&self, want: u64) {
        let t0 = Instant::now();
        loop {
            let got = self.summary_clicks().await;
            if got == want {
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "summary: {got} clicks, want {want}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `/readyz` until `details.click_log_writer` is (`failed`) or is not (`!failed`)
    /// reported failed (panics after 15 s); its error when failed.
    async fn await_writer_state(&self, failed: bool) -> Option<String> {
        let t0 = Instant::now();
        loop {
            let (_, body) = self.readyz().await;
            let w = &body["error"]["details"]["click_log_writer"];
            if (w["status"] == "failed") == failed {
                return w["error"].as_str().map(str::to_owned);
            }
            assert!(t0.elapsed() < Duration::from_secs(15), "/readyz: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of `sluice_click_events_dropped_total{reason="log_error"}` (0 while absent).
    async fn dropped_log_error(&self) -> u64 {
        let text = self.http.get(format!("http://{}/metrics", self.listen)).send().await.expect("metrics").text().await.expect("text");
        text.lines()
            .find_map(|l| l.strip_prefix("sluice_click_events_dropped_total{reason=\"log_error\"} "))
            .map_or(0, |v| v.trim().parse().unwrap_or_else(|e| panic!("{v}: {e}")))
    }

    async fn readyz(&self) -> (u16, Value) {
        let r = self.http.get(format!("http://{}/readyz", self.listen)).send().await.expect("readyz");
        (r.status().as_u16(), r.json().await.expect("json"))
    }

    /// Polls `/readyz` until it answers 503 (panics after 10 s); the `click_log_writer` error.
    async fn await_writer_failed(&self) -> String {
        let t0 = Instant::now();
        loop {
            let (status, body) = self.readyz().await;
            if status == 503 {
                let w = &body["error"]["details"]["click_log_writer"];
                assert_eq!(w["status"], "failed", "{body}");
                return w["error"].as_str().expect("error").to_owned();
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "/readyz still {status}: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM; waits (30 s at most) for the exit; its exit code and log.
    fn stop(mut self) -> (Option<i32>, String) {
        let code = self.child.stop().code();
        (code, self.log_text())
    }
}

/// `sluice <args> --data-dir <data>` to its exit: (exit code, stdout, stderr).
fn sluice(args: &[&str], data: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("SLUICE_LOG", "warn")
        .env("NO_COLOR", "1")
        .env_remove("KAFKA_BROKERS")
        .env_remove("SLUICE__STORE__URL")
        .env_remove("SLUICE__REDIS__URL")
        .output()
        .expect("run sluice");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new().write(true).open(path).expect("open").set_len(len).expect("truncate");
}

/// Waits until the server's log contains `text` (10 s at most).
async fn await_log(s: &Server, text: &str) {
    let t0 = Instant::now();
    while !s.log_text().contains(text) {
        assert!(t0.elapsed() < Duration::from_secs(10), "no {text:?} in the log:\n{}", s.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The F2 repro on a log this process wrote: `truncate -s` while serving. The file check
/// writes it back from the open file within seconds (a warning names it), `/readyz` stays
/// ready, clicks after the cut are kept, the stop exits 0 and the next start has all 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_click_log_is_written_back_while_serving_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let path = data.join("clicks.redb");
    let s = Server::start(&data).await;
    s.create_link("t1").await;
    for b in 0..3 {
        assert_eq!(s.post_clicks("t1", b * 100..(b + 1) * 100).await, 200);
    }
    s.await_clicks("t1", 300).await;
    let len = std::fs::metadata(&path).expect("metadata").len();
    let cut = (len * 7 / 10).min(100_000);
    truncate(&path, cut);
    await_log(&s, "click log written back from the open file after it was truncated; nothing was lost").await;
    assert!(s.log_text().contains("the click log file shrank while in use (truncated outside sluice)"), "{}", s.log_text());
    assert_eq!(s.readyz().await.0, 200);
    assert_eq!(s.post_clicks("t1", 300..400).await, 200);
    s.await_clicks("t1", 400).await;
    let (code, log) = s.stop();
    assert_eq!(code, Some(0), "{log}");
    let s = Server::start(&data).await;
    s.await_clicks("t1", 400).await;
    assert_eq!(s.post_clicks("t1", 400..401).await, 200);
    s.await_clicks("t1", 401).await;
    assert_eq!(s.stop().0, Some(0));
}

/// `clicks.redb` moved away (as the old message said) before a start: the start is refused
/// naming `sluice log reset` before it creates anything, and the reset creates the new log
/// and keeps the checkpoint's 20 clicks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_log_moved_away_is_reset_keeping_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let s = Server::start(&data).await;
    s.create_link("t3").await;
    assert_eq!(s.post_clicks("t3", 0..20).await, 200);
    s.await_clicks("t3", 20).await;
    assert_eq!(s.stop().0, Some(0));
    std::fs::rename(data.join("clicks.redb"), dir.path().join("moved.redb")).expect("move away");
    let (code, _, stderr) = sluice(&["serve", "--listen", &format!("127.0.0.1:{}", free_port())], &data);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("that is not in the data dir: there is no {}/clicks.redb (moved away or deleted)", data.display())), "{stderr}");
    assert!(stderr.contains(&format!("run `sluice log reset --data-dir {}`", data.display())), "{stderr}");
    assert!(stderr.contains("sluice saved no copy of a click log in the data dir"), "names no file that does not exist: {stderr}");
    assert!(!data.join("clicks.redb").exists(), "the refused start created no click log");
    // An offline import is refused the same way, before it creates anything (it used to
    // leave an empty clicks.redb behind).
    let events = dir.path().join("events.ndjson");
    std::fs::write(&events, event("imp-1", "t3", now_ms() - 60_000, "198.51.100.7", BROWSER_UA, None).to_string() + "\n").expect("write events");
    let (code, _, stderr) = sluice(&["import", events.to_str().expect("utf-8")], &data);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("run `sluice log reset --data-dir {}`", data.display())), "{stderr}");
    assert!(!data.join("clicks.redb").exists(), "the refused import created no click log");
    let (code, stdout, stderr) = sluice(&["log", "reset"], &data);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.lines().filter(|l| !l.starts_with("older checkpoint")).count(), 3, "{stdout}");
    assert!(stdout.contains("is empty and continues at offset 20"), "{stdout}");
    // The link store's id goes on in the new log (a store lost later is noticed).
    assert!(stdout.contains(&format!("of \"{}\" recorded in the new log", data.join("links.db").display())), "{stdout}");
    // One checkpoint file remains loadable: the rewritten one (the original of the old log is
    // removed, older ones renamed `.old-log`), and it is the one the report names.
    let bins: Vec<std::path::PathBuf> = std::fs::read_dir(data.join("checkpoints"))
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    assert_eq!(bins.len(), 1, "{bins:?}");
    assert!(stdout.contains(&format!("checkpoint \"{}\" (rewritten from \"", bins[0].display())), "{stdout}");
    let s = Server::start(&data).await;
    s.await_clicks("t3", 20).await;
    assert_eq!(s.post_clicks("t3", 20..21).await, 200);
    s.await_clicks("t3", 21).await;
    assert_eq!(s.stop().0, Some(0));
    // Nothing to reset on a log that holds clicks of the checkpoint's log.
    let (code, _, stderr) = sluice(&["log", "reset"], &data);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("opens and stores 1 clicks, and the newest checkpoint was taken of it: nothing to reset"), "{stderr}");
}

/// Every file under `dir` with its bytes, and every directory (`None`), by path.
fn tree(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Option<Vec<u8>>> {
    let mut out = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("ls") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(tree(&path));
            out.insert(path, None);
        } else {
            let bytes = std::fs::read(&path).expect("read");
            out.insert(path, Some(bytes));
        }
    }
    out
}

/// `truncate -s 0 clicks.redb` after a graceful stop: the log cut to nothing, damage like a
/// cut inside redb's header, not a new log. A start is refused naming `sluice log reset` and
/// leaves the data dir byte for byte as it was (redb used to write a new ~72 KiB database
/// into the empty file before the checkpoint check refused the start); `log tail` refuses it
/// with the same message; the reset moves it aside and keeps the checkpoint's 20 clicks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_log_cut_to_zero_bytes_is_damage_a_refused_start_leaves_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let path = data.join("clicks.redb");
    let s = Server::start(&data).await;
    s.create_link("t0").await;
    assert_eq!(s.post_clicks("t0", 0..20).await, 200);
    s.await_clicks("t0", 20).await;
    assert_eq!(s.stop().0, Some(0));
    truncate(&path, 0);
    let before = tree(&data);
    let damaged = format!(
        "error: could not open the click log in \"{d}\": click log \"{p}\" is damaged and could not be repaired (the file is empty \
         (0 bytes): it holds no database, not even redb's header); sluice will not start on it. Stop every process using this data dir, \
         then run `sluice log reset --data-dir {d}`: it moves the damaged file aside and starts a new, empty click log that continues \
         from the newest checkpoint, keeping every click the checkpoint counted (or, instead, put a backup of \"{p}\" back at that path)",
        d = data.display(),
        p = path.display()
    );
    let errors = |stderr: &str| stderr.lines().filter(|l| l.starts_with("error: ")).map(str::to_owned).collect::<Vec<_>>();
    let (code, _, stderr) = sluice(&["serve", "--listen", &format!("127.0.0.1:{}", free_port())], &data);
    assert_eq!((code, errors(&stderr)), (Some(1), vec![damaged.clone()]), "{stderr}");
    assert!(tree(&data) == before, "the refused start changed the data dir");
    let (code, stdout, stderr) = sluice(&["log", "tail"], &data);
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (Some(1), "", format!("{damaged}\n").as_str()));
    assert!(tree(&data) == before, "log tail changed the data dir");

    let (code, stdout, stderr) = sluice(&["log", "reset"], &data);
    assert_eq!(code, Some(0), "{stderr}");
    let aside: Vec<std::path::PathBuf> = std::fs::read_dir(&data)
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("clicks.redb.damaged-")))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::metadata(&aside[0]).expect("metadata").len(), 0);
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("older checkpoint")).collect();
    assert_eq!(
        lines[0],
        format!(
            "damaged click log \"{}\" (the file is empty (0 bytes): it holds no database, not even redb's header) moved aside to \"{}\"",
            path.display(),
            aside[0].display()
        )
    );
    assert!(lines[1].ends_with("is empty and continues at offset 20"), "{stdout}");
    let s = Server::start(&data).await;
    s.await_clicks("t0", 20).await;
    assert_eq!(s.post_clicks("t0", 20..21).await, 200);
    s.await_clicks("t0", 21).await;
    assert_eq!(s.stop().0, Some(0));
}

/// `mv other clicks.redb` while serving: the open log is saved to a side file with every
/// click and written there; `/readyz` answers 503 naming both files; clicks after the
/// replacement are counted and kept; the stop exits 1 saying what to do; doing it (moving
/// the side file back) restarts with all 30 clicks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_click_log_is_saved_to_a_side_file_and_no_click_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let path = data.join("clicks.redb");
    let s = Server::start(&data).await;
    s.create_link("t4").await;
    assert_eq!(s.post_clicks("t4", 0..20).await, 200);
    s.await_clicks("t4", 20).await;
    let other = dir.path().join("other.redb");
    std::fs::write(&other, b"not the click log").expect("write");
    std::fs::rename(&other, &path).expect("replace");
    let error = s.await_writer_failed().await;
    let prefix =
        format!("click log \"{}\" was replaced by another file while in use; sluice saved the log it had open, with every click, to \"", path.display());
    assert!(error.starts_with(&prefix), "{error}");
    let side = error[prefix.len()..].split('"').next().expect("side file").to_owned();
    assert!(side.starts_with(&format!("{}.recovered-", path.display())), "{side}");
    assert_eq!(s.post_clicks("t4", 20..30).await, 200);
    s.await_clicks("t4", 30).await;
    assert_eq!(s.readyz().await.0, 503, "still reported");
    let (code, log) = s.stop();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&format!("move \\\"{side}\\\" to \\\"{}\\\" and start it again", path.display()))
            || log.contains(&format!("move \"{side}\" to \"{}\"", path.display())),
        "{log}"
    );
    assert_eq!(std::fs::read(&path).expect("read"), b"not the click log", "the replacement is left alone");
    std::fs::rename(&side, &path).expect("move the side file back, as the message says");
    let s = Server::start(&data).await;
    s.await_clicks("t4", 30).await;
    assert_eq!(s.stop().0, Some(0));
}

/// `rm -rf` of the data dir while serving, not created again: neither the periodic
/// checkpoint (every second here) nor the stop's creates it again (it came back holding only
/// a checkpoint), and the stop exits 1 saying the clicks are lost instead of advising a
/// `mkdir -p` that a stopped process can no longer answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_removed_while_serving_is_not_created_again_and_the_stop_says_what_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, "[dataflow]\ncheckpoint-interval = \"1s\"\n").expect("write config");
    let s = Server::start_with(&data, &["--config", config.to_str().expect("utf-8")]).await;
    s.create_link("gone").await;
    for _ in 0..3 {
        assert_eq!(s.redirect("gone").await, 302);
    }
    s.await_clicks("gone", 3).await;
    std::fs::remove_dir_all(&data).expect("rm -rf the data dir");
    assert_eq!(s.redirect("gone").await, 302, "links are still served from the open store");
    assert!(s.await_writer_state(true).await.is_some(), "the writer reports the removed data dir");
    // Three periodic checkpoint rounds.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert!(!data.exists(), "a periodic checkpoint created the data dir again");
    let (code, log) = s.stop();
    assert_eq!(code, Some(1), "{log}");
    assert!(!data.exists(), "the stop created the data dir again");
    let want = format!(
        "the graceful stop finished, but the data dir {d} was removed while sluice was running and did not exist again \
         before the stop: the clicks of its click log, and whatever else it held, are lost with this process; nothing was \
         written back, and a next start in {d} begins a new, empty data dir",
        d = data.display()
    );
    assert!(log.contains(&format!("no checkpoint written: the data dir {} no longer exists", data.display())), "{log}");
    let last = log.lines().filter(|l| l.starts_with("error: ")).collect::<Vec<_>>();
    assert_eq!(last, [format!("error: {want}")], "one error line, with no `mkdir -p` advice: {log}");
}

/// The newcomer's sequence: `rm -rf` of the data dir while serving, redirects, `mkdir -p`,
/// redirects. The log keeps its open (deleted) file, so the clicks after the removal are
/// counted, not dropped; `/readyz` says what happened; after `mkdir` the next file check
/// writes all 13 clicks back to the path; the graceful stop exits 0, and the restart counts
/// the same 13. A start that is refused afterwards (the click log moved away) creates
/// neither `links.db` nor `visitor_secret`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_removed_and_recreated_while_serving_keeps_every_click() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let path = data.join("clicks.redb");
    // No periodic checkpoint: the restart below rebuilds the views from the log alone.
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, "[dataflow]\ncheckpoint-interval = \"1h\"\n").expect("write config");
    let args = ["--config", config.to_str().expect("utf-8")];
    let s = Server::start_with(&data, &args).await;
    s.create_link("rm").await;
    for _ in 0..5 {
        assert_eq!(s.redirect("rm").await, 302);
    }
    s.await_clicks("rm", 5).await;
    std::fs::remove_dir_all(&data).expect("rm -rf the data dir");
    for _ in 0..5 {
        assert_eq!(s.redirect("rm").await, 302);
    }
    let error = s.await_writer_state(true).await.expect("the writer's error");
    assert_eq!(
        error,
        format!(
            "click log \"{p}\" and its directory \"{d}\" were removed while in use; sluice keeps every click, new ones included, in the \
             file it has open (deleted: only this process can still read it) and writes it back to \"{p}\" within seconds once the \
             directory exists again (`mkdir -p {d}`). If sluice stops before, the clicks in that file are lost",
            p = path.display(),
            d = data.display()
        )
    );
    s.await_clicks("rm", 10).await;
    assert_eq!(s.dropped_log_error().await, 0, "no click dropped");
    assert!(!data.exists(), "nothing recreated the data dir");
    std::fs::create_dir_all(&data).expect("mkdir -p the data dir");
    for _ in 0..3 {
        assert_eq!(s.redirect("rm").await, 302);
    }
    assert_eq!(s.await_writer_state(false).await, None, "the click log is back");
    await_log(&s, "click log file restored at its path from the open file").await;
    assert!(path.exists());
    s.await_clicks("rm", 13).await;
    s.await_summary_clicks(13).await;
    assert_eq!(s.dropped_log_error().await, 0, "no click dropped");
    let (code, log) = s.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("ends before the last acknowledged append"), "{log}");

    // links.db was written back too (with the link): the summary (every link's clicks) has
    // the same 13.
    let s = Server::start_with(&data, &args).await;
    s.await_summary_clicks(13).await;
    let (code, log) = s.stop();
    assert_eq!(code, Some(0), "{log}");
    let (code, stdout, stderr) = sluice(&["log", "tail", "-n", "100"], &data);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.lines().count(), 13, "the log holds the 13 clicks: {stdout}");

    // A start refused (the click log moved away) creates nothing.
    std::fs::rename(&path, dir.path().join("moved.redb")).expect("move the click log away");
    for name in ["links.db", "links.db-wal", "links.db-shm", "visitor_secret"] {
        let _ = std::fs::remove_file(data.join(name));
    }
    let (code, _, stderr) = sluice(&["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--config", args[1]], &data);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("run `sluice log reset --data-dir {}`", data.display())), "{stderr}");
    for name in ["clicks.redb", "links.db", "visitor_secret"] {
        assert!(!data.join(name).exists(), "the refused start created {name}");
    }
}
