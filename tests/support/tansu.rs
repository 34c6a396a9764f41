//! A private tansu broker (the Kafka-API broker `infra/services/kafka.sh` installs) for the
//! tests that stop and restart a broker. Included with `#[path]` by the `kafka` end-to-end
//! target and by the Kafka connector's integration tests (`connectors/src/kafka/`), so it
//! uses nothing but `std`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The cached tansu binary (`SLUICE_TANSU_BIN`, else where `infra/services/kafka.sh`
/// installs it).
pub fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_TANSU_BIN") {
        return PathBuf::from(p);
    }
    let cache = std::env::var("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache"));
    cache.join("sluice/tansu/bin/tansu")
}

/// A private tansu broker on a free port with SQLite storage in `dir` (flags as in
/// `infra/services/kafka.sh`), stoppable and restartable on the same port and data; killed
/// when dropped.
pub struct Tansu {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Tansu {
    /// Starts a broker in `dir` (which must exist) and waits until it accepts connections.
    pub fn start(dir: &Path) -> Tansu {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let mut t = Tansu { port, dir: dir.to_path_buf(), child: None };
        t.restart();
        t
    }

    /// `127.0.0.1:<port>`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker (again) and waits until it accepts connections (at most 30 s).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let bin = tansu_bin();
        assert!(bin.exists(), "tansu not installed at {} (run infra/services/kafka.sh install)", bin.display());
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("broker.log")).expect("broker log");
        let child = Command::new(bin)
            .current_dir(&self.dir)
            .env_remove("STORAGE_ENGINE")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("CLUSTER_ID")
            .env("RUST_LOG", "warn")
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn tansu");
        self.child = Some(child);
        let addr = self.brokers();
        let t0 = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(30), "private tansu did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker gracefully (SIGTERM; SIGKILL after 30 s) and waits for it to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
