//! `sluice demo` with `[server] data-dir` and `listen` set by the `--config` file or by
//! `SLUICE__SERVER__DATA_DIR` / `SLUICE__SERVER__LISTEN`, through the real binary: the demo
//! serves there, as `sluice serve` would (the flags still win), and keeps the data dir.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::free_port;
use crate::demo_interrupt::demo_dirs;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// Runs `sluice demo <args>` (60 s of traffic) with `TMPDIR=tmp` and `env` until it printed
/// the line naming where it serves, which is returned; then stops it with SIGTERM and
/// asserts its exit code 143.
fn serving_line(tmp: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["demo", "--duration", "60s", "--rate", "20", "--links", "2"])
        .args(args)
        .env("TMPDIR", tmp)
        .env_remove("KAFKA_BROKERS")
        .env_remove("SLUICE__STORE__URL")
        .env_remove("SLUICE__REDIS__URL")
        .env_remove("SLUICE__SERVER__DATA_DIR")
        .env_remove("SLUICE__SERVER__LISTEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn sluice demo");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("Sluice demo: serving") => break line,
            Some(Ok(_)) => {}
            other => {
                let _ = child.kill();
                panic!("the demo ended before serving: {other:?} {:?}", child.wait());
            }
        }
    };
    std::thread::spawn(move || for _ in lines {});
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success());
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the demo did not stop within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(143), "{line}");
    line
}

/// Finding: `sluice demo` ran in a temporary dir on 127.0.0.1:8080 whatever `[server]
/// data-dir` and `listen` the `--config` file or the environment set. It takes them now, as
/// `sluice serve` does, and keeps the data dir at exit; `--data-dir` and `--listen` still win.
#[test]
fn the_demo_serves_on_the_configured_listen_address_and_data_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (file_port, env_port, flag_port) = (free_port(), free_port(), free_port());
    let (file_dir, env_dir, flag_dir) = (tmp.path().join("from-file"), tmp.path().join("from-env"), tmp.path().join("from-flag"));
    let config = tmp.path().join("sluice.toml");
    std::fs::write(&config, format!("[server]\ndata-dir = \"{}\"\nlisten = \"127.0.0.1:{file_port}\"\n", file_dir.display())).expect("config");
    let config = config.to_str().expect("utf-8");
    let want = |port: u16, dir: &Path| format!("Sluice demo: serving http://127.0.0.1:{port}/ (data dir {})", dir.display());

    assert_eq!(serving_line(tmp.path(), &["--config", config], &[]), want(file_port, &file_dir), "from the file");
    let env_listen = format!("127.0.0.1:{env_port}");
    let env = [("SLUICE__SERVER__DATA_DIR", env_dir.to_str().expect("utf-8")), ("SLUICE__SERVER__LISTEN", env_listen.as_str())];
    assert_eq!(serving_line(tmp.path(), &[], &env), want(env_port, &env_dir), "from the environment");
    let flag_listen = format!("127.0.0.1:{flag_port}");
    let flags = ["--config", config, "--listen", &flag_listen, "--data-dir", flag_dir.to_str().expect("utf-8")];
    assert_eq!(serving_line(tmp.path(), &flags, &env), want(flag_port, &flag_dir), "the flags win");

    for dir in [&file_dir, &env_dir, &flag_dir] {
        assert!(dir.join("links.db").is_file() && dir.join("clicks.redb").is_file(), "{} is kept", dir.display());
    }
    assert_eq!(demo_dirs(tmp.path()), Vec::<PathBuf>::new(), "no temporary data dir");
}
