//! An idle `sluice serve` costs next to no CPU: the timely worker parks while there is
//! nothing to do instead of polling every millisecond (~12 % of a core before), and a click
//! still wakes it at once (click → counted well within the README's 1 s freshness target).

use std::time::{Duration, Instant};

use crate::harness::BROWSER_UA;
use crate::process::Proc;

/// CPU time (user + system, clock ticks) of `pid`'s threads named `name`.
fn thread_ticks(pid: u32, name: &str) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc/<pid>/task") {
        let dir = task.expect("task").path();
        if std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == name) {
            let stat = std::fs::read_to_string(dir.join("stat")).expect("stat");
            // Fields after the parenthesized name: state is field 3, utime 14, stime 15.
            let rest = &stat[stat.rfind(')').expect("comm end") + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            total += f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_dataflow_worker_parks_and_a_click_wakes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Proc::start(dir.path()).await;
    p.create_link("https://example.com/idle", "idle").await;
    p.caught_up().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = thread_ticks(p.pid(), "timely:work-0");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let spent = thread_ticks(p.pid(), "timely:work-0") - before;
    // 5 s at 100 ticks/s: polling every millisecond spent ~60 ticks (debug build: more);
    // parking spends ~0-2. 10 leaves room for a slow, shared machine.
    assert!(spent < 10, "the idle worker spent {spent} CPU ticks in 5 s");

    // Woken by the click: counted well within the 1 s freshness target.
    let t0 = Instant::now();
    let r = p.http.get(format!("{}/idle", p.base)).header("user-agent", BROWSER_UA).send().await.expect("redirect");
    assert_eq!(r.status().as_u16(), 302);
    loop {
        let r = p.http.get(format!("{}/v1/links/idle/stats", p.base)).send().await.expect("stats");
        let body: serde_json::Value = r.json().await.expect("json");
        if body["totals"]["clicks"] == 1 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(1), "the click was not counted within 1 s: {body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    p.terminate();
}
