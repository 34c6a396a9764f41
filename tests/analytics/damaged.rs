//! Damaged embedded files in `--data-dir` through the real binary: a damaged `clicks.redb`,
//! `anomalies.redb` or `links.db` (truncated, bytes overwritten in the middle) is found when
//! `sluice serve` opens it, and the process refuses to start with exit code 1 and a message
//! naming the file and what to do — no panic, and no server answering 500s on it.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::child::free_port;
use crate::harness::{BROWSER_UA, event, now_ms};
use crate::process::Proc;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// Overwrites `len` bytes of `path` from `at` with pseudo-random bytes (xorshift).
pub(crate) fn garble(path: &Path, at: u64, len: u64) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).expect("open");
    f.seek(SeekFrom::Start(at)).expect("seek");
    let mut x: u32 = 0x9e37_79b9;
    let garbage: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    f.write_all(&garbage).expect("overwrite");
    f.sync_all().expect("sync");
}

/// `sluice serve` on `dir` with the embedded defaults: asserts it refuses to start (exits
/// within 60 s with code 1, no panic) and returns its stderr.
fn serve_refused(dir: &Path, what: &str) -> String {
    let log = dir.join("refused.log");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
        .arg(dir)
        .env("SLUICE_LOG", "warn")
        .env_remove("KAFKA_BROKERS")
        .env_remove("SLUICE__STORE__URL")
        .env_remove("SLUICE__REDIS__URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("run sluice serve");
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if t0.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: sluice serve started on the damaged file: {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&log).expect("log");
    assert_eq!(status.code(), Some(1), "{what}: must not start: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: no panic: {stderr}");
    stderr
}

/// Asserts `stderr` names `file` as damaged and says what to do.
fn assert_names_damaged(stderr: &str, file: &Path, what: &str) {
    assert!(stderr.contains(&format!("\"{}\" is damaged", file.display())), "{what}: names the file: {stderr}");
    // The click log's way out is `sluice log reset` (keeps the checkpoint's clicks); the
    // other files' is to move the file aside.
    let reset = file.file_name().is_some_and(|n| n == "clicks.redb") && stderr.contains("then run `sluice log reset --data-dir ");
    assert!(reset || stderr.contains("move the file aside"), "{what}: says what to do: {stderr}");
}

/// A damaged `clicks.redb` (truncated; overwritten with garbage) is found when `sluice serve`
/// opens it, not much later on the first read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_click_log_refuses_to_start_naming_the_file() {
    for damage in ["truncated", "garbage"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Proc::start(dir.path()).await;
        p.create_link("https://example.com/d", "dmg-a").await;
        let now = now_ms();
        for b in 0..20 {
            let evs: Vec<Value> =
                (0..100).map(|i| event(&format!("dmg-{b}-{i}"), "dmg-a", now - 1000 * b - i, &format!("81.2.72.{i}"), BROWSER_UA, None)).collect();
            assert!(p.post_events(&evs).await.expect("post").status().is_success());
        }
        p.caught_up().await;
        p.terminate();
        let log = dir.path().join("clicks.redb");
        let len = std::fs::metadata(&log).expect("log").len();
        match damage {
            "truncated" => std::fs::OpenOptions::new().write(true).open(&log).and_then(|f| f.set_len(len / 2)).expect("truncate"),
            _ => garble(&log, len / 3, len / 3),
        }
        let stderr = serve_refused(dir.path(), damage);
        assert_names_damaged(&stderr, &log, damage);
    }
}

/// A data dir whose `links.db` holds 300 links with ~1.5 KiB URLs and whose `anomalies.redb`
/// holds 100 webhook subscriptions (the most allowed) with ~1.9 KiB URLs, stopped gracefully (both files hold
/// everything, the SQLite WAL is checkpointed into `links.db`).
async fn filled_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Proc::start_with_env(dir.path(), &[("SLUICE__WEBHOOKS__ALLOW_PRIVATE", "true")]).await;
    let pad = "p".repeat(1500);
    for i in 0..300 {
        p.create_link(&format!("https://example.com/{i}/{pad}"), &format!("dmg-{i}")).await;
    }
    let long = "p".repeat(1900);
    for i in 0..100 {
        let r = p
            .http
            .post(format!("{}/v1/webhooks", p.base))
            .json(&json!({"url": format!("http://127.0.0.1:9/{i}/{long}"), "secret": "damaged-0123456789", "kinds": ["visitor_flood"]}))
            .send()
            .await
            .expect("webhook");
        assert_eq!(r.status(), reqwest::StatusCode::CREATED, "webhook {i}");
    }
    p.terminate();
    dir
}

/// Bytes overwritten in the middle of `links.db` or `anomalies.redb`: `sluice serve` refuses
/// to start, naming the file (before the fix it started and answered 500s on the damaged
/// rows). A file cut short, or garbage over its header, is refused the same way. The
/// undamaged data dir starts and serves the links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_link_store_or_anomaly_store_refuses_to_start_naming_the_file() {
    for (file, damage) in
        [("links.db", "middle"), ("links.db", "truncated"), ("links.db", "header"), ("anomalies.redb", "middle"), ("anomalies.redb", "truncated")]
    {
        let what = format!("{file} {damage}");
        let dir = filled_data_dir().await;
        let path = dir.path().join(file);
        let len = std::fs::metadata(&path).expect("file").len();
        assert!(len > 150 << 10, "{what}: the file spans many pages: {len} bytes");
        eprintln!("{what}: {len} bytes");
        match damage {
            "middle" => garble(&path, len / 2, 16 << 10),
            "truncated" => std::fs::OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(len / 2)).expect("truncate"),
            _ => garble(&path, 0, 100),
        }
        let stderr = serve_refused(dir.path(), &what);
        assert_names_damaged(&stderr, &path, &what);
    }
    // Undamaged, the same filling starts and serves.
    let dir = filled_data_dir().await;
    let p = Proc::start(dir.path()).await;
    let r = p.http.get(format!("{}/dmg-299", p.base)).send().await.expect("redirect");
    assert_eq!(r.status().as_u16(), 302);
    p.terminate();
}

/// A `sluice serve` killed with SIGKILL leaves `anomalies.redb` not closed cleanly: the next
/// start checks it, keeps its data and serves. A SIGKILL tears no write (the kernel finishes
/// each one), so nothing is damaged and no repair warning may appear: redb reports its
/// routine repair stages on every checked open, which once made a false warning at every start.
/// What does appear is one warning per store that the file was not closed cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anomaly_store_left_by_sigkill_keeps_its_data_without_a_false_repair_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Proc::start_with_env(dir.path(), &[("SLUICE__WEBHOOKS__ALLOW_PRIVATE", "true")]).await;
    let r = p
        .http
        .post(format!("{}/v1/webhooks", p.base))
        .json(&json!({"url": "http://127.0.0.1:9/hook", "secret": "damaged-0123456789", "kinds": ["visitor_flood"]}))
        .send()
        .await
        .expect("webhook");
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    p.kill();
    let log = dir.path().join("serve.log");
    let p = Proc::start_logged(dir.path(), &[], Stdio::from(std::fs::File::create(&log).expect("log file"))).await;
    let r = p.http.get(format!("{}/v1/webhooks", p.base)).send().await.expect("list");
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let hooks: Value = r.json().await.expect("json");
    p.terminate();
    let text = std::fs::read_to_string(&log).expect("log");
    let store = dir.path().join("anomalies.redb");
    assert!(store.exists());
    assert!(!text.contains("repairing"), "no repair warning for an undamaged file: {text}");
    // Each store the killed process held is named once as recovered (README, "Run it").
    for (what, file) in [("anomaly store", "anomalies.redb"), ("click log", "clicks.redb")] {
        let recovered: Vec<&str> = text.lines().filter(|l| l.contains(&format!("{what} was not closed cleanly")) && l.contains(file)).collect();
        assert_eq!(recovered.len(), 1, "{what}: {text}");
        assert!(recovered[0].contains("WARN"), "{}", recovered[0]);
    }
    assert_eq!(hooks["items"].as_array().map(Vec::len), Some(1), "the subscription survived: {hooks}");
}

/// A first start refused by the anomaly store (a damaged `anomalies.redb` put into an
/// otherwise new data dir) after the click log, `links.db` and `visitor_secret` were created:
/// the refused start removes what it created, so the data dir holds what it held before —
/// the damaged file, untouched — and the refusal's log.
#[test]
fn a_start_refused_after_the_link_store_was_created_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("anomalies.redb");
    let garbage = b"not a redb file, some bytes put here by hand. ".repeat(200);
    std::fs::write(&path, &garbage).expect("write");
    let stderr = serve_refused(dir.path(), "a damaged anomalies.redb in a new data dir");
    let refusal = format!(
        "error: could not open the anomaly store (another sluice process using this data dir, or a damaged anomalies.redb): anomaly store \"{}\" \
         is damaged and could not be repaired (Not a redb database: magic number mismatch); sluice will not start on it.",
        path.display()
    );
    assert!(stderr.contains(&refusal), "{stderr}");
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).expect("read dir").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, vec!["anomalies.redb", "refused.log"]);
    assert_eq!(std::fs::read(&path).expect("read"), garbage, "the damaged file is left as it was");
}

/// Size, modification time and SHA-256 of `path`.
fn fingerprint(path: &Path) -> (u64, std::time::SystemTime, Vec<u8>) {
    use sha2::Digest as _;
    let meta = std::fs::metadata(path).expect("stat");
    let digest = sha2::Sha256::digest(std::fs::read(path).expect("read"));
    (meta.len(), meta.modified().expect("mtime"), digest.to_vec())
}

/// Copies the files of `from` (no subdirectories) into a new temporary directory.
fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            std::fs::copy(entry.path(), to.path().join(entry.file_name())).expect("copy");
        }
    }
    to
}

/// What opening the damaged store in a copy of `dir` says (the store's own open: the
/// refusal `sluice serve` has always given for it), naming the file in `dir`.
async fn refusal_of_the_open(dir: &Path, file: &str) -> String {
    let copy = copy_dir(dir);
    let refusal = match file {
        "links.db" => format!(
            "error: could not open the link store: {}",
            sluice_connectors::SqliteLinkStore::open_dir(copy.path()).await.expect_err("a damaged links.db is refused")
        ),
        _ => {
            let Err(e) = sluice_connectors::anomaly_store::AnomalyStore::open(copy.path()) else { panic!("a damaged anomalies.redb is refused") };
            format!("error: could not open the anomaly store (another sluice process using this data dir, or a damaged anomalies.redb): {e}")
        }
    };
    refusal.replace(&copy.path().display().to_string(), &dir.display().to_string())
}

/// `file` (`links.db` or `anomalies.redb`) of a filled data dir damaged in the middle (the
/// header intact: only `PRAGMA quick_check`, or redb's integrity check, sees it): `sluice
/// serve` refuses to start as it always has (exit 1, the store's own refusal) and leaves
/// `clicks.redb` as it was (size, modification time, SHA-256).
async fn refused_mid_file_damage_leaves_the_click_log_as_it_was(file: &str) {
    let dir = filled_data_dir().await;
    let path = dir.path().join(file);
    let len = std::fs::metadata(&path).expect("file").len();
    garble(&path, len / 2, 16 << 10);
    let clicks = dir.path().join("clicks.redb");
    let before = fingerprint(&clicks);
    let refusal = refusal_of_the_open(dir.path(), file).await;
    // A modification within the file system's timestamp granularity must show too.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let stderr = serve_refused(dir.path(), file);
    assert_names_damaged(&stderr, &path, file);
    assert!(stderr.contains(&refusal), "{file}: the refusal of the store's open, {refusal:?}: {stderr}");
    assert!(fingerprint(&clicks) == before, "{file}: clicks.redb unchanged (size, modification time, SHA-256)");
}

/// Finding: a `links.db` damaged in the middle was found (by `PRAGMA quick_check`) only
/// after the click log had been opened and closed, which commits to `clicks.redb`. The
/// whole check runs before the click log is opened now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_refused_for_a_link_store_damaged_mid_file_leaves_the_click_log_as_it_was() {
    refused_mid_file_damage_leaves_the_click_log_as_it_was("links.db").await;
}

/// Finding: an `anomalies.redb` damaged in the middle was found (by redb's integrity check
/// at its open) only after the click log had been opened and closed. It is checked (without
/// writing to it) before the click log is opened now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_refused_for_an_anomaly_store_damaged_mid_file_leaves_the_click_log_as_it_was() {
    refused_mid_file_damage_leaves_the_click_log_as_it_was("anomalies.redb").await;
}
