//! `rm -rf` of the data dir while `serve` runs, then `mkdir -p`: `links.db` and
//! `visitor_secret` are written back from the running process (the open file, the secret in
//! memory), changes work again without a restart, and the restart serves the same links with
//! the same secret. When `links.db` cannot be written back (another thing at its path), the
//! graceful stop exits 1 naming the file.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::child::{ChildProcess, await_ready, free_port, serve_embedded};
use crate::harness::now_ms;

/// A running `sluice serve`: its process, address, log file and HTTP client.
struct Serve {
    child: ChildProcess,
    listen: String,
    log: std::path::PathBuf,
    http: reqwest::Client,
}

impl Serve {
    async fn start(data: &Path) -> Serve {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let listen = format!("127.0.0.1:{}", free_port());
        let log = data.with_extension(format!("log-{}", now_ms()));
        let mut child = serve_embedded(&listen, data, &[], &log);
        await_ready(&mut child, &http, &listen, &log, Duration::from_secs(60)).await;
        Serve { child, listen, log, http }
    }

    /// `POST /v1/links` of `alias` → `https://example.com/<alias>`: the status.
    async fn create(&self, alias: &str) -> u16 {
        let body = json!({"long_url": format!("https://example.com/{alias}"), "custom_alias": alias});
        self.http.post(format!("http://{}/v1/links", self.listen)).json(&body).send().await.expect("create").status().as_u16()
    }

    /// `GET /{code}` → (status, Location).
    async fn redirect(&self, code: &str) -> (u16, Option<String>) {
        let r = self.http.get(format!("http://{}/{code}", self.listen)).send().await.expect("redirect");
        (r.status().as_u16(), r.headers().get("location").map(|v| v.to_str().expect("ascii").to_owned()))
    }

    async fn readyz(&self) -> (u16, Value) {
        let r = self.http.get(format!("http://{}/readyz", self.listen)).send().await.expect("readyz");
        (r.status().as_u16(), r.json().await.expect("json"))
    }

    /// Polls `/readyz` until `details.link_store.error` is `want` (`None`: not reported) and
    /// the status is `status` (panics after 15 s).
    async fn await_link_store(&self, status: u16, want: Option<&str>) {
        let t0 = Instant::now();
        loop {
            let (got, body) = self.readyz().await;
            if got == status && body["error"]["details"]["link_store"]["error"].as_str() == want {
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(15), "/readyz {got}: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM; waits (30 s at most) for the exit: its code and log.
    fn stop(mut self) -> (Option<i32>, String) {
        let code = self.child.stop().code();
        (code, std::fs::read_to_string(&self.log).expect("read the log"))
    }
}

/// The newcomer's sequence: links created, `rm -rf` of the data dir, `mkdir -p` of it. Within
/// seconds `links.db` and `visitor_secret` are back, `/readyz` is 200 and creates work again
/// (the store switched to the written-back file); the stop exits 0 and the restart
/// redirects every link to its target with the same visitor secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_removed_and_recreated_keeps_every_link_and_the_visitor_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let links = data.join("links.db");
    let secret_path = data.join("visitor_secret");
    let s = Serve::start(&data).await;
    for alias in ["m1", "m2"] {
        assert_eq!(s.create(alias).await, 201);
    }
    let secret = std::fs::read(&secret_path).expect("read the visitor secret");
    assert_eq!(secret.len(), 64);

    std::fs::remove_dir_all(&data).expect("rm -rf the data dir");
    let deleted = format!(
        "link store \"{p}\" was deleted or moved away while sluice has it open: links are still served, but changes are refused \
         (they would only reach the file sluice opened, which is lost when it stops); sluice writes the links back to \"{p}\" from the \
         open file within seconds once its directory exists and nothing else is at that path (after `rm -rf` of the data dir: \
         `mkdir -p {d}`), and changes work again; if sluice stops before, every link is lost with it",
        p = links.display(),
        d = data.display()
    );
    s.await_link_store(503, Some(&deleted)).await;
    assert_eq!(s.create("m3").await, 503, "refused while only the unlinked file has the links");
    assert_eq!(s.redirect("m1").await, (302, Some("https://example.com/m1".to_owned())));
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(!data.exists(), "sluice does not create the data dir again");

    std::fs::create_dir_all(&data).expect("mkdir -p the data dir");
    s.await_link_store(200, None).await;
    assert!(links.is_file());
    let t0 = Instant::now();
    while !secret_path.exists() {
        assert!(t0.elapsed() < Duration::from_secs(10), "visitor_secret not written back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(std::fs::read(&secret_path).expect("read"), secret, "the same secret bytes");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&secret_path).expect("stat").permissions().mode() & 0o777, 0o600);
    assert_eq!(s.create("m3").await, 201, "changes work again without a restart");
    let (code, log) = s.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("the link store's file was deleted while in use; written back to its path from the open file (every link kept)"), "{log}");
    assert!(log.contains("the visitor secret file was deleted while in use; written back from memory"), "{log}");

    let s = Serve::start(&data).await;
    for alias in ["m1", "m2", "m3"] {
        assert_eq!(s.redirect(alias).await, (302, Some(format!("https://example.com/{alias}"))), "{alias}");
    }
    let (code, log) = s.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("generated a NEW visitor secret"), "{log}");
    assert_eq!(std::fs::read(&secret_path).expect("read"), secret);
}

/// The data dir removed and recreated with a directory where `links.db` belongs: nothing is
/// written back over it, and the graceful stop exits 1 naming the file whose links are lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_store_file_not_written_back_fails_the_stop_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let links = data.join("links.db");
    let s = Serve::start(&data).await;
    assert_eq!(s.create("kept").await, 201);
    // The data dir back at once, `links.db` a directory (renamed into place whole).
    let staging = dir.path().join("staging");
    std::fs::create_dir_all(staging.join("links.db")).expect("mkdir");
    std::fs::remove_dir_all(&data).expect("rm -rf the data dir");
    std::fs::rename(&staging, &data).expect("the data dir back");
    let replaced = format!(
        "link store \"{}\" was replaced by another file while sluice has it open: links are still served, but changes are refused \
         (they would only reach the file sluice opened, which is lost when it stops); stop sluice, put the file you want at that path \
         (e.g. from a backup), remove the -wal and -shm files beside it, and start sluice again",
        links.display()
    );
    s.await_link_store(503, Some(&replaced)).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(links.is_dir(), "left alone");
    let (code, log) = s.stop();
    assert_eq!(code, Some(1), "{log}");
    let want = format!(
        "error: the graceful stop finished, but the link store file \"{}\" was replaced by another file while sluice was running (left \
         alone): the links in the file sluice had open, and every change made since it left its path, are lost with this process",
        links.display()
    );
    let last: Vec<&str> = log.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(last, [want.as_str()], "{log}");
}
