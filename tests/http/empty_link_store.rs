//! A `links.db` that cannot be a database, through the real binary: one cut to 0 bytes is
//! refused like a damaged one (SQLite would take it for a new, empty store: every link
//! lost without a word), and a start refused for the link store leaves `clicks.redb` as it
//! was.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::{await_ready, free_port, serve_embedded};

/// A data dir a server ran on (one link, `em-1`), stopped gracefully.
async fn served_data_dir(tmp: &Path) -> std::path::PathBuf {
    let data = tmp.join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let log = tmp.join("serve.log");
    let mut server = serve_embedded(&listen, &data, &[], &log);
    let http = reqwest::Client::new();
    await_ready(&mut server, &http, &listen, &log, Duration::from_secs(60)).await;
    let r = http
        .post(format!("http://{listen}/v1/links"))
        .json(&serde_json::json!({"long_url": "https://example.com/em", "custom_alias": "em-1"}))
        .send()
        .await
        .expect("create link");
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    server.terminate();
    data
}

/// `sluice serve` on `data` (embedded defaults): its exit code and stderr; `None` and what
/// it logged when it was still running (serving) after 30 s, then killed.
fn serve_once(data: &Path) -> (Option<i32>, String) {
    let log = data.with_file_name("refused.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--log", "error", "serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
        .arg(data)
        .env_remove("SLUICE_LOG")
        .env_remove("KAFKA_BROKERS")
        .env_remove("SLUICE__STORE__URL")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("run sluice serve");
    let t0 = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (code, std::fs::read_to_string(&log).expect("log"))
}

/// The refusal of a damaged `links.db` at `path`, SQLite's or sluice's words in `detail`.
fn refusal(path: &Path, detail: &str) -> String {
    format!(
        "error: could not open the link store: link store \"{p}\" is damaged and could not be repaired ({detail}); sluice will not start on \
         it. Stop every process using this data dir, move the file aside (e.g. to {p}.damaged) and restore it from a backup, or start \
         without it: every link in it is lost (the next `sluice serve` retires the codes that have clicks in the click log, so no new link \
         inherits them; `sqlite3 links.db .recover` may salvage rows from the damaged file)\n",
        p = path.display()
    )
}

/// Size, modification time and bytes of `path`.
fn snapshot(path: &Path) -> (u64, std::time::SystemTime, Vec<u8>) {
    let meta = std::fs::metadata(path).expect("stat");
    (meta.len(), meta.modified().expect("mtime"), std::fs::read(path).expect("read"))
}

/// Finding: a `links.db` cut to 0 bytes started as a new, empty link store, its links gone
/// without a word. The start is refused (exit 1) naming the file and what to do, and the
/// file is left as it was. (A first start, whose data dir holds no `links.db`, creates it as
/// before: every other test starts so.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_store_cut_to_zero_bytes_is_refused_not_taken_for_a_new_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = served_data_dir(tmp.path()).await;
    let links = data.join("links.db");
    std::fs::OpenOptions::new().write(true).open(&links).and_then(|f| f.set_len(0)).expect("truncate");
    let detail = "the file is empty (0 bytes): it holds no database, not even SQLite's header; if no link store was meant to be there yet, \
                  remove the empty file and start again";
    assert_eq!(serve_once(&data), (Some(1), refusal(&links, detail)));
    assert_eq!(std::fs::metadata(&links).expect("links.db").len(), 0, "left as it was");
}

/// Finding: a start refused for a damaged `links.db` rewrote `clicks.redb` (the click log was
/// opened, committed to and closed before the link store was looked at). A `links.db` that
/// is no database (garbage over its header) is refused before the click log is opened:
/// `clicks.redb` keeps its size, modification time and bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_refused_for_the_link_store_leaves_the_click_log_as_it_was() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = served_data_dir(tmp.path()).await;
    let links = data.join("links.db");
    let mut bytes = std::fs::read(&links).expect("read links.db");
    bytes[..16].copy_from_slice(b"not a database!\n");
    std::fs::write(&links, &bytes).expect("garble the header");
    let clicks = data.join("clicks.redb");
    let before = snapshot(&clicks);
    // A modification within the file system's timestamp granularity must show too.
    std::thread::sleep(Duration::from_millis(20));
    let detail = "the file does not start with SQLite's header (\"SQLite format 3\"): it holds no SQLite database";
    let refused = serve_once(&data);
    let after = snapshot(&clicks);
    assert_eq!((after.0, after.1), (before.0, before.1), "clicks.redb: size and modification time");
    assert!(after.2 == before.2, "clicks.redb: bytes");
    assert_eq!(refused, (Some(1), refusal(&links, detail)));
}
