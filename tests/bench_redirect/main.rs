//! `sluice bench redirect` through the real binary with the real nginx and wrk (Debian
//! packages; these tests print a notice and pass when either is missing): the children
//! (sluice serve, nginx master and workers, wrk) die with a SIGKILLed benchmark, a stop
//! signal ends it with exit code 128 + the signal's number after its children are gone, and
//! refused arguments exit with code 2 before anything starts.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// One benchmark at a time: each starts two servers and wrk on this machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn tools_present() -> bool {
    let found = |name: &str| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]).any(|d| d.join(name).is_file())
    };
    let ok = found("nginx") && found("wrk");
    if !ok {
        eprintln!("NOTICE: nginx or wrk not installed (Debian: apt-get install nginx wrk); bench redirect process tests not run");
    }
    ok
}

/// Starts a long benchmark (60 s rounds) whose stderr goes to `stderr`.
fn start_bench(stderr: &Path) -> Child {
    Command::new(BIN)
        .args(["bench", "redirect", "--no-pin", "--nice", "0", "--links", "20", "--warmup", "0s", "--duration", "60s", "--rounds", "1", "--skip-miss"])
        .args(["--connections", "4", "--threads", "1"])
        .env("SLUICE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).expect("stderr file"))
        .spawn()
        .expect("start sluice bench redirect")
}

/// Every descendant of `pid` as (pid, command name), from `/proc/<pid>/task/*/children`.
fn descendants(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut pending = vec![pid];
    while let Some(p) = pending.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else { continue };
        for task in tasks.flatten() {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for c in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
                let comm = std::fs::read_to_string(format!("/proc/{c}/comm")).unwrap_or_default().trim().to_owned();
                out.push((c, comm));
                pending.push(c);
            }
        }
    }
    out
}

/// Waits until the benchmark runs sluice serve, an nginx master with a worker, and wrk;
/// returns them all.
fn wait_for_children(bench: &mut Child, stderr: &Path) -> Vec<(u32, String)> {
    let t = Instant::now();
    loop {
        let d = descendants(bench.id());
        let n = |name: &str| d.iter().filter(|(_, c)| c == name).count();
        if n("sluice") >= 1 && n("nginx") >= 2 && n("wrk") >= 1 {
            return d;
        }
        if let Ok(Some(status)) = bench.try_wait() {
            panic!("the benchmark exited early ({status}): {}", std::fs::read_to_string(stderr).unwrap_or_default());
        }
        assert!(t.elapsed() < Duration::from_secs(90), "children not all up after 90 s: {d:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True when `pid` has exited (gone, or a zombie not reaped yet).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()).is_none_or(|s| s == "Z" || s == "X"),
    }
}

fn send(pid: u32, sig: Signal) {
    rustix::process::kill_process(Pid::from_raw(i32::try_from(pid).expect("pid")).expect("pid"), sig).expect("send signal");
}

fn wait_timeout(child: &mut Child, bound: Duration) -> ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        assert!(t.elapsed() < bound, "the benchmark did not exit within {bound:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn children_die_with_a_sigkilled_bench() {
    if !tools_present() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("temp dir");
    let stderr = dir.path().join("stderr");
    let mut bench = start_bench(&stderr);
    let children = wait_for_children(&mut bench, &stderr);
    send(bench.id(), Signal::KILL);
    bench.wait().expect("reap the benchmark");
    let t = Instant::now();
    while !children.iter().all(|(p, _)| dead(*p)) {
        let alive: Vec<_> = children.iter().filter(|(p, _)| !dead(*p)).collect();
        assert!(t.elapsed() < Duration::from_secs(5), "still running 5 s after the benchmark was SIGKILLed: {alive:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("all {} children ({children:?}) gone {:?} after the SIGKILL", children.len(), t.elapsed());
}

#[test]
fn stop_signals_exit_with_128_plus_their_number() {
    if !tools_present() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("temp dir");
    for (sig, name, code) in [(Signal::INT, "SIGINT", 130), (Signal::TERM, "SIGTERM", 143), (Signal::HUP, "SIGHUP", 129), (Signal::QUIT, "SIGQUIT", 131)] {
        let stderr = dir.path().join(name);
        let mut bench = start_bench(&stderr);
        let children = wait_for_children(&mut bench, &stderr);
        send(bench.id(), sig);
        let status = wait_timeout(&mut bench, Duration::from_secs(30));
        let text = std::fs::read_to_string(&stderr).unwrap_or_default();
        assert_eq!(status.code(), Some(code), "{name}: {status}; stderr:\n{text}");
        assert!(text.contains(&format!("error: interrupted by {name}; children stopped")), "{name}: {text}");
        let alive: Vec<_> = children.iter().filter(|(p, _)| !dead(*p)).collect();
        assert!(alive.is_empty(), "{name}: children still running after the benchmark exited: {alive:?}");
    }
}

/// Runs the binary with `args` (nothing is started: they are refused up front).
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN).args(["bench", "redirect"]).args(args).stdin(Stdio::null()).output().expect("run sluice");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn refused_arguments_exit_with_2() {
    let (code, err) = refused(&["--server-cpus", "0-1", "--client-cpus", "1-2"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--server-cpus 0-1 and --client-cpus 1-2 overlap: CPU 1 in both"), "{err}");
    let (code, err) = refused(&["--duration", "1500ms"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("1500ms is not a whole number of seconds"), "{err}");
    let (code, err) = refused(&["--paced-fraction", "-0.5"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("more than 0 and at most 1"), "{err}");
    let (code, err) = refused(&["--rounds", "0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--rounds, --connections and --links must be positive"), "{err}");
}
