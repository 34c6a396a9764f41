//! `sluice demo` stopped by Ctrl-C / SIGTERM while its traffic runs, through the real binary:
//! it removes the temporary data dir it created (`<temp dir>/sluice-demo-*`), keeps a data
//! dir the user passed, and exits with 128 + the signal's number.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// The `sluice-demo-*` entries of `dir` (temporary data dirs of the demo).
pub(crate) fn demo_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("read temp dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("sluice-demo-")))
        .collect()
}

/// Starts `sluice demo` (60 s of traffic) with `TMPDIR=tmp` and `extra` arguments; returns
/// once it printed that the traffic is being generated, plus 1 s.
fn start_demo(tmp: &Path, extra: &[&std::ffi::OsStr]) -> Child {
    let mut child = Command::new(BIN)
        .args(["demo", "--duration", "60s", "--rate", "50", "--links", "3", "--listen", &format!("127.0.0.1:{}", free_port())])
        .args(extra)
        .env("TMPDIR", tmp)
        .env_remove("KAFKA_BROKERS")
        .env_remove("SLUICE__STORE__URL")
        .env_remove("SLUICE__REDIS__URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sluice demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("Generating") => break,
            Some(Ok(_)) => {}
            other => {
                let _ = child.kill();
                panic!("the demo ended before its traffic: {other:?} {:?}", child.wait());
            }
        }
    }
    // Keep draining stdout so the demo never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    std::thread::sleep(Duration::from_secs(1));
    child
}

/// Sends `signal` to `child` and waits (60 s at most) for its exit code.
fn signal_and_wait(mut child: Child, signal: &str) -> Option<i32> {
    assert!(Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().expect("kill").success());
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the demo did not stop within 60 s of {signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_interrupted_demo_removes_its_temporary_data_dir() {
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let child = start_demo(tmp.path(), &[]);
        let created = demo_dirs(tmp.path());
        assert_eq!(created.len(), 1, "SIG{signal}: the demo's temporary data dir exists during the traffic: {created:?}");
        assert!(created[0].join("links.db").exists(), "SIG{signal}: it is the data dir: {created:?}");
        assert_eq!(signal_and_wait(child, signal), Some(code), "SIG{signal}: exit code 128 + signal number");
        assert_eq!(demo_dirs(tmp.path()), Vec::<PathBuf>::new(), "SIG{signal}: the temporary data dir is removed");
    }
}

#[test]
fn an_interrupted_demo_keeps_a_data_dir_the_user_passed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("mine");
    let child = start_demo(tmp.path(), &["--data-dir".as_ref(), data.as_os_str()]);
    assert_eq!(signal_and_wait(child, "INT"), Some(130));
    assert!(data.join("links.db").exists() && data.join("clicks.redb").exists(), "the user's data dir is kept");
    assert_eq!(demo_dirs(tmp.path()), Vec::<PathBuf>::new(), "no temporary dir was made");
}
