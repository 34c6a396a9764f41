//! The real `sluice` binary as a child process of the end-to-end test targets (`analytics`,
//! `kafka`, `anomalies`, `http`). Included by each target with `#[path = "../support/child.rs"] mod child;`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How often the waits below poll.
const POLL: Duration = Duration::from_millis(20);

/// A free loopback TCP port for a child server to take, reserved across the test processes
/// that run in parallel.
///
/// The port is found by binding port 0 and releasing it, so the kernel may hand the same
/// port to another test process before our child has bound it; that test's server then
/// fails to start and the test talks to ours (seen once: a flood test read another test's
/// anomaly). So a port is returned only once this process holds the lock of its file
/// `<temp dir>/sluice-test-ports/<port>` (`File::try_lock`, `flock` on Linux), kept until the
/// process exits; another process that gets the same port from the kernel skips it.
pub fn free_port() -> u16 {
    let dir = std::env::temp_dir().join("sluice-test-ports");
    std::fs::create_dir_all(&dir).expect("create the port lock directory");
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(port.to_string())).expect("open a port lock file");
        if file.try_lock().is_ok() {
            // Held for the rest of the process (each test runs in its own process).
            std::mem::forget(file);
            return port;
        }
    }
    panic!("no free loopback port whose lock file could be taken in 1000 tries");
}

/// A spawned process, SIGKILLed and reaped when dropped (a failing test leaves nothing behind).
pub struct ChildProcess {
    child: Child,
}

impl ChildProcess {
    /// Spawns `cmd`; panics naming `what` when it cannot start.
    pub fn spawn(cmd: &mut Command, what: &str) -> ChildProcess {
        ChildProcess { child: cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}")) }
    }

    /// `kill -9`, then reap.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// SIGTERM: the process must stop gracefully and exit 0 within 30 s.
    pub fn terminate(mut self) {
        let status = self.stop();
        assert!(status.success(), "graceful stop exits 0: {status}");
    }

    /// SIGTERM, then waits for the exit (30 s at most, else panics): its status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let ok = self.sigterm().expect("kill -TERM").success();
        assert!(ok);
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "no graceful stop within 30 s");
            std::thread::sleep(POLL);
        }
    }

    fn sigterm(&self) -> std::io::Result<std::process::ExitStatus> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()
    }

    /// The process id.
    #[allow(dead_code)] // not every target that includes this file uses it
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has exited (reaped), `None` while it runs.
    #[allow(dead_code)] // not every target that includes this file uses it
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait")
    }
}

/// `sluice serve --listen <listen> --data-dir <data> <args>` on the embedded defaults (the
/// environment's `KAFKA_BROKERS` and `SLUICE__STORE__URL` removed, so the click log and the
/// link store are the data dir's own), logging at `warn` without colours into the file
/// `log` (stdout discarded). Killed and reaped when dropped.
#[allow(dead_code)] // not every target that includes this file uses it
pub fn serve_embedded(listen: &str, data: &Path, args: &[&str], log: &Path) -> ChildProcess {
    let err = std::fs::File::create(log).unwrap_or_else(|e| panic!("create log file {}: {e}", log.display()));
    let data = data.to_str().expect("utf-8 data dir");
    ChildProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--listen", listen, "--data-dir", data])
            .args(args)
            .env("SLUICE_LOG", "warn")
            .env("NO_COLOR", "1")
            .env_remove("KAFKA_BROKERS")
            .env_remove("SLUICE__STORE__URL")
            .stdout(Stdio::null())
            .stderr(err),
        "sluice serve",
    )
}

/// Polls `GET http://{listen}/readyz` until it answers 200. Panics after `timeout`, or as soon
/// as `child` exits, with its exit status and its log file `log` (what [`serve_embedded`]
/// wrote), so a start-up failure says why.
#[allow(dead_code)] // not every target that includes this file uses it
pub async fn await_ready(child: &mut ChildProcess, http: &reqwest::Client, listen: &str, log: &Path, timeout: Duration) {
    let t0 = Instant::now();
    let url = format!("http://{listen}/readyz");
    loop {
        if http.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
            return;
        }
        let exited = child.exited();
        if exited.is_some() || t0.elapsed() > timeout {
            let log_text = std::fs::read_to_string(log).unwrap_or_else(|e| format!("(log unreadable: {e})"));
            panic!("sluice serve at {listen} not ready after {:?} (exit status: {exited:?}); its log:\n{log_text}", t0.elapsed());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`serve_embedded`] on a free port with the data dir `<dir>/data` and the log
/// `<dir>/serve.log`, once `/readyz` answers 200 ([`await_ready`], 60 s at most): the process
/// and its listen address.
#[allow(dead_code)] // not every target that includes this file uses it
pub async fn serve_embedded_ready(dir: &Path) -> (ChildProcess, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let log = dir.join("serve.log");
    let mut server = serve_embedded(&listen, &dir.join("data"), &[], &log);
    await_ready(&mut server, &reqwest::Client::new(), &listen, &log, Duration::from_secs(60)).await;
    (server, listen)
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `/readyz`'s `body` is an answer of the start-up: 503 naming `start_up` (the
/// process opens its data dir and stores) or `configured_blocklist` (the start-up work);
/// every request but the health routes is 503 `starting` until neither is named.
pub fn starting(body: &str) -> bool {
    body.contains("\"start_up\"") || body.contains("\"configured_blocklist\"")
}

/// Polls `GET {base}/healthz` until it answers (any status), then `GET {base}/readyz` until
/// it is no longer an answer of the start-up ([`starting`]); panics after 60 s.
pub async fn await_healthz(http: &reqwest::Client, base: &str) {
    let t0 = Instant::now();
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(t0.elapsed() < Duration::from_secs(60), "sluice serve at {base} did not start within 60 s");
        tokio::time::sleep(POLL).await;
    }
    loop {
        let body = match http.get(format!("{base}/readyz")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if !body.is_empty() && !starting(&body) {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "sluice serve at {base} did not finish its start-up work within 60 s: {body}");
        tokio::time::sleep(POLL).await;
    }
}
