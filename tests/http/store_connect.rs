//! The real `sluice serve` (and `sluice migrate`) binary against a PostgreSQL link store
//! whose server accepts TCP connections and never answers (another service on the port, a
//! stalled proxy): opening the store is bounded by `[store] connect-timeout` and fails with
//! exit code 1 naming the server; a stop signal meanwhile ends the process at once, code 0;
//! probes are answered meanwhile (`/healthz` 200, `/readyz` and the rest 503).
//! Every start here runs on a fresh data dir, which the given-up start removes again.
//!
//! No PostgreSQL is needed: the "server" is a loopback listener of this test that holds every
//! connection it accepts and sends nothing.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::child::{ChildProcess, free_port};

/// A loopback TCP server that accepts connections, reads what they send and never writes
/// (optionally relaying the first one to a real server).
pub(super) struct SilentServer {
    pub(super) addr: SocketAddr,
    /// Connections accepted so far.
    pub(super) accepted: Arc<AtomicUsize>,
}

impl SilentServer {
    fn start() -> SilentServer {
        SilentServer::start_relaying_first(None)
    }

    /// A silent server that relays its first connection to `upstream` when given (a server
    /// that answers one connection and then none), holding every other one.
    pub(super) fn start_relaying_first(upstream: Option<SocketAddr>) -> SilentServer {
        SilentServer::start_relaying(upstream, None)
    }

    /// A server that relays its first connection to `upstream` at once and every later one
    /// after `later` (a server that is slow to accept each new connection), or holds the later
    /// ones for good when `later` is `None`; with no `upstream`, holds every connection.
    pub(super) fn start_relaying(upstream: Option<SocketAddr>, later: Option<Duration>) -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        // Detached: the accept loop (and every connection it holds) ends with the test process.
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let first = count.fetch_add(1, Ordering::SeqCst) == 0;
                match (upstream, later) {
                    (Some(upstream), _) if first => relay(conn, upstream),
                    (Some(upstream), Some(delay)) => {
                        std::thread::spawn(move || {
                            std::thread::sleep(delay);
                            relay(conn, upstream);
                        });
                    }
                    _ => {
                        std::thread::spawn(move || hold(conn));
                    }
                }
            }
        });
        SilentServer { addr, accepted }
    }

    /// `postgres://sluice:<password>@<addr>/links`.
    fn url(&self) -> String {
        format!("postgres://sluice:{PASSWORD}@{}/links", self.addr)
    }

    /// How the error names the server (no password).
    fn shown(&self) -> String {
        format!("postgres://sluice@{}/links", self.addr)
    }
}

/// Reads `conn` until the client closes it; never answers.
fn hold(mut conn: TcpStream) {
    let mut buf = [0u8; 1024];
    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
}

/// Copies `client` to `upstream` and back, each way on its own thread, until either closes.
fn relay(client: TcpStream, upstream: SocketAddr) {
    let server = TcpStream::connect(upstream).expect("connect to the upstream server");
    let (mut client_read, mut server_write) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
    let (mut server_read, mut client_write) = (server, client);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(std::net::Shutdown::Write);
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut server_read, &mut client_write);
        let _ = client_write.shutdown(std::net::Shutdown::Write);
    });
}

/// The store URL's password: never printed.
const PASSWORD: &str = "s3cretpw";

/// The error line of a start that gave up connecting to `server` after `timeout` (as
/// printed by `sluice serve`: the `[store] connect-timeout` value).
fn timeout_error(server: &SilentServer, context: &str, timeout: &str) -> String {
    format!(
        "error: {context}: the PostgreSQL server at {} did not complete a connection within {timeout} (TCP connect, TLS and login); check \
         that this host and port are those of a running PostgreSQL server that answers (not another service, a stalled proxy or a \
         firewall dropping the packets); a slow server: [store] connect-timeout bounds the first connection, and every pooled \
         connection must be made within 3s ([store] acquire-timeout)",
        server.shown()
    )
}

/// `sluice serve` (role all) on a free port and the data dir `data`, its link store at
/// `store_url`, `[store] connect-timeout` = `timeout`, logging at info into `log`.
pub(super) fn serve(data: &Path, store_url: &str, timeout: &str, log: &Path) -> ChildProcess {
    serve_on(&format!("127.0.0.1:{}", free_port()), data, store_url, timeout, log)
}

/// [`serve`] listening on `listen`.
fn serve_on(listen: &str, data: &Path, store_url: &str, timeout: &str, log: &Path) -> ChildProcess {
    serve_with(listen, data, store_url, timeout, &[], log)
}

/// [`serve_on`] with the extra environment variables `env`.
pub(super) fn serve_with(listen: &str, data: &Path, store_url: &str, timeout: &str, env: &[(&str, &str)], log: &Path) -> ChildProcess {
    let err = std::fs::File::create(log).expect("log file");
    ChildProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data)
            .envs(env.iter().copied())
            .env("SLUICE__STORE__URL", store_url)
            .env("SLUICE__STORE__CONNECT_TIMEOUT", timeout)
            .env("SLUICE_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("KAFKA_BROKERS")
            .stdout(Stdio::null())
            .stderr(err),
        "sluice serve",
    )
}

/// Waits until `child` exits; panics with its log after `limit`.
pub(super) fn exit_within(child: &mut ChildProcess, limit: Duration, log: &Path) -> ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.exited() {
            return status;
        }
        let log_text = || std::fs::read_to_string(log).unwrap_or_default();
        assert!(t0.elapsed() < limit, "sluice still running after {limit:?}; its log:\n{}", log_text());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `server` has accepted a connection (the start is opening the link store).
fn until_connected(server: &SilentServer, log: &Path) {
    let t0 = Instant::now();
    while server.accepted.load(Ordering::SeqCst) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "sluice connected to the store within 60 s; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_store_server_that_never_answers_fails_the_start_at_the_connect_timeout_and_removes_the_new_data_dir() {
    let server = SilentServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, log) = (dir.path().join("data"), dir.path().join("serve.log"));
    let mut child = serve(&data, &server.url(), "2s", &log);
    until_connected(&server, &log);
    let t0 = Instant::now();
    let status = exit_within(&mut child, Duration::from_secs(20), &log);
    let took = t0.elapsed();
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(status.code(), Some(1), "{log_text}");
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(12), "gave up after {took:?}, the timeout being 2 s: {log_text}");
    let last = log_text.lines().last().unwrap_or_default();
    assert_eq!(last, timeout_error(&server, "could not open the link store", "2s"), "{log_text}");
    assert!(!log_text.contains(PASSWORD), "the password is never shown: {log_text}");
    assert!(!data.exists(), "the data dir this start created is removed: {:?}", std::fs::read_dir(&data).map(|d| d.count()));
}

#[test]
fn a_stop_signal_while_the_store_does_not_answer_ends_the_start_at_once_with_code_0() {
    let server = SilentServer::start();
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (data, log) = (dir.path().join("data"), dir.path().join("serve.log"));
        // A connect timeout far beyond the test: only the signal can end this start in time.
        let mut child = serve(&data, &server.url(), "10min", &log);
        let connected = server.accepted.load(Ordering::SeqCst);
        while server.accepted.load(Ordering::SeqCst) == connected {
            assert!(child.exited().is_none(), "still starting; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(10));
        }
        // Stuck in the store's open for a while (nothing to accept meanwhile).
        std::thread::sleep(Duration::from_millis(300));
        assert!(child.exited().is_none(), "still starting");
        let t0 = Instant::now();
        assert!(Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().expect("kill").success());
        let status = exit_within(&mut child, Duration::from_secs(5), &log);
        let log_text = std::fs::read_to_string(&log).expect("log");
        assert_eq!(status.code(), Some(0), "SIG{signal}: {log_text}");
        assert!(t0.elapsed() < Duration::from_secs(3), "SIG{signal}: exited {:?} after the signal", t0.elapsed());
        assert!(log_text.contains("stop signal during start-up: the start was given up"), "SIG{signal}: {log_text}");
        assert!(!log_text.lines().any(|l| l.starts_with("error:")), "not a refused start, SIG{signal}: {log_text}");
        assert!(!data.exists(), "SIG{signal}: the data dir this start created is removed");
    }
}

#[test]
fn sluice_migrate_against_a_store_server_that_never_answers_fails_at_the_connect_timeout() {
    let server = SilentServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(dir.path())
        .args(["migrate", "--store", &server.url()])
        .env("SLUICE__STORE__CONNECT_TIMEOUT", "1s")
        .env("NO_COLOR", "1")
        .env_remove("SLUICE__STORE__URL")
        .output()
        .expect("run sluice migrate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(t0.elapsed() < Duration::from_secs(15), "took {:?}", t0.elapsed());
    assert_eq!(stderr.lines().last().unwrap_or_default(), timeout_error(&server, "migration failed", "1s"), "{stderr}");
}

/// One request on a new connection to `addr`; the whole answer (the server closes the
/// connection after it while starting).
fn exchange(addr: &str, request: &str) -> String {
    use std::io::Write;
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    conn.write_all(request.as_bytes()).expect("write");
    let mut out = String::new();
    conn.read_to_string(&mut out).expect("the server answers and closes the connection");
    out
}

#[test]
fn probes_are_answered_while_the_start_waits_for_the_store() {
    let server = SilentServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, log) = (dir.path().join("data"), dir.path().join("serve.log"));
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = serve_on(&listen, &data, &server.url(), "3s", &log);
    until_connected(&server, &log);
    let get = |path: &str| exchange(&listen, &format!("GET {path} HTTP/1.1\r\nHost: sho.rt\r\n\r\n"));

    let health = get("/healthz");
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert!(health.ends_with("\r\n\r\n{\"status\":\"ok\"}"), "{health}");
    let ready = get("/readyz");
    assert!(ready.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{ready}");
    let body: serde_json::Value = serde_json::from_str(ready.split_once("\r\n\r\n").expect("body").1).expect("json");
    assert_eq!(body["error"]["code"], "not_ready", "{ready}");
    assert_eq!(body["error"]["details"], serde_json::json!({"start_up": {"status": "applying"}}), "{ready}");
    let redirect = get("/abcdefg");
    assert!(redirect.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{redirect}");
    assert!(redirect.to_ascii_lowercase().contains("\r\nretry-after: 1\r\n"), "{redirect}");
    assert!(redirect.contains(r#"{"error":{"code":"starting","#), "{redirect}");
    let metrics = get("/metrics");
    assert!(metrics.lines().any(|l| l == "sluice_starting 1"), "{metrics}");

    // The start still gives up at the connect timeout, as without early answers.
    let status = exit_within(&mut child, Duration::from_secs(20), &log);
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(status.code(), Some(1), "{log_text}");
    assert_eq!(log_text.lines().last().unwrap_or_default(), timeout_error(&server, "could not open the link store", "3s"), "{log_text}");
    assert!(TcpStream::connect(&listen).is_err(), "nothing listens after the refused start");
    assert!(!data.exists(), "the data dir this start created is removed");
}
