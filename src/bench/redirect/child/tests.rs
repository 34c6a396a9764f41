//! Tests of the benchmark's child processes: they die with a SIGKILLed parent (checked in a
//! separate process, this test binary run again as that parent), they outlive the thread
//! that asked for them, and stopping or dropping one reaches everything it started.

use super::*;
use std::io::{BufRead, BufReader};

/// Set in the environment of the re-run test binary that plays the benchmark.
const HELPER_ENV: &str = "SLUICE_TEST_CHILD_PARENT";

/// True when `pid` has exited (no such process, or a zombie nobody reaped yet).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()).is_none_or(|state| state == "Z" || state == "X"),
    }
}

/// Polls until `pid` is dead or `bound` has passed; the time it took.
fn wait_dead(pid: u32, bound: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < bound {
        if dead(pid) {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Not a test of its own: the parent process of [`children_die_with_a_sigkilled_parent`].
/// Spawns `sleep 600` from a thread that ends right after, prints the child's pid and
/// waits to be killed.
#[test]
#[ignore = "run by children_die_with_a_sigkilled_parent as its parent process"]
fn helper_parent_process() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let handle = rt.handle().clone();
    let log = std::env::temp_dir().join(format!("sluice-child-test-{}.log", std::process::id()));
    let child = std::thread::spawn(move || {
        let _rt = handle.enter();
        let mut cmd = Command::new("sleep");
        cmd.arg("600");
        ChildProc::spawn("sleep", cmd, log, OnParentDeath::Kill)
    })
    .join()
    .expect("spawning thread")
    .expect("spawn sleep");
    println!("CHILD {}", child.pid().expect("pid"));
    // Killed long before; if the test failed, this bounds the orphaned helper's life.
    std::thread::sleep(Duration::from_secs(120));
    drop(child);
}

#[test]
fn children_die_with_a_sigkilled_parent() {
    let mut parent = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "bench::redirect::child::tests::helper_parent_process", "--ignored", "--nocapture", "--test-threads", "1"])
        .env(HELPER_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the parent process");
    let stdout = parent.stdout.take().expect("stdout");
    let child: u32 = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        // libtest prints `test <name> ... ` before the test's own output, on the same line.
        .find_map(|l| l.split_once("CHILD ").and_then(|(_, p)| p.trim().parse().ok()))
        .expect("the parent printed its child's pid");
    // The thread that spawned it has ended: a parent-death signal tied to that thread
    // would have fired by now.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!dead(child), "the child died with the thread that asked for it, not with its parent");
    parent.kill().expect("SIGKILL the parent");
    parent.wait().expect("reap the parent");
    let took = wait_dead(child, Duration::from_secs(5));
    assert!(took.is_some(), "child {child} still running 5 s after its parent was killed");
}

/// The pid `sh -c 'sleep 600 & echo $!; wait'` wrote to `log`.
async fn grandchild_from_log(log: &std::path::Path) -> u32 {
    let t = Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(log).ok().and_then(|s| s.trim().parse().ok()) {
            return pid;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no pid in the log");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn stop_and_drop_reach_the_whole_group() {
    let dir = tempfile::tempdir().expect("temp dir");
    for how in ["stop", "drop"] {
        let log = dir.path().join(format!("{how}.log"));
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 600 & echo $!; wait"]);
        let child = ChildProc::spawn("sh", cmd, log.clone(), OnParentDeath::Kill).expect("spawn sh");
        let grandchild = grandchild_from_log(&log).await;
        assert!(!dead(grandchild));
        if how == "stop" {
            child.stop(Duration::from_secs(5)).await.expect("stop");
        } else {
            drop(child);
        }
        assert!(wait_dead(grandchild, Duration::from_secs(5)).is_some(), "{how}: the child's own child {grandchild} survived");
    }
}

#[test]
fn spawning_needs_a_runtime() {
    let err = spawn_tied(Command::new("true")).expect_err("no runtime");
    assert!(err.to_string().contains("runtime"), "{err}");
}
