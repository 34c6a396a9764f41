//! The real `sluice` binary opts its process out of transparent huge pages at the top of
//! `main` (`prctl(PR_SET_THP_DISABLE)`, src/main.rs) unless `MIMALLOC_ALLOW_THP` is set:
//! the kernel's `THP_enabled` line of `/proc/<pid>/status` (Linux ≥ 5.0) shows the flag,
//! whatever the system-wide setting is.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::{ChildProcess, free_port};

/// `THP_enabled` of `sluice serve` started with `env`, read once it answers `/healthz`
/// (the flag is set before anything else runs, so any later read shows it).
fn thp_enabled_of_serve(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = ChildProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--listen", &listen, "--data-dir"])
            .arg(dir.path().join("data"))
            .env_remove("MIMALLOC_ALLOW_THP")
            .env_remove("KAFKA_BROKERS")
            .env_remove("SLUICE__STORE__URL")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "sluice serve",
    );
    let t0 = Instant::now();
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(child.exited().is_none(), "sluice serve exited");
        assert!(t0.elapsed() < Duration::from_secs(60), "sluice serve did not listen within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).expect("status of the running child");
    let line = status.lines().find(|l| l.starts_with("THP_enabled:")).expect("kernel ≥ 5.0 reports THP_enabled");
    child.terminate();
    line.split_whitespace().nth(1).expect("value").to_owned()
}

#[test]
fn the_process_runs_without_transparent_huge_pages_unless_mimalloc_allow_thp_is_set() {
    assert_eq!(thp_enabled_of_serve(&[]), "0");
    // A kernel built without THP reports 0 for every process; this machine's has it.
    if std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
        assert_eq!(thp_enabled_of_serve(&[("MIMALLOC_ALLOW_THP", "1")]), "1");
    }
}
