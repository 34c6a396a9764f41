//! Where a server's threads spent a measurement: CPU time, time runnable but waiting for a
//! CPU (the run-queue delay a request arriving then also waits) and the number of times
//! they were put on a CPU, per thread name, from Linux `/proc/<pid>/task/<tid>/schedstat`
//! (ns on the CPU, ns waiting on a run queue, timeslices; needs `CONFIG_SCHED_INFO`).
//!
//! The paced runs print it for each server: a worker that waits for its CPU while another
//! thread of the same process runs there (the click log append thread) shows up as wait
//! time of `tokio-runtime-w` next to CPU time of `sluice-click-log`; nginx's worker is the
//! control for waits caused by the rest of the machine.

use std::collections::BTreeMap;
use std::time::Duration;

/// Per thread id: thread name and `[on CPU ns, run-queue wait ns, timeslices]`.
#[derive(Debug, Clone, Default)]
pub struct Snapshot(BTreeMap<u32, (String, [u64; 3])>);

/// Reads every thread of `pid` and of its child processes (nginx's workers); threads that
/// vanish meanwhile are skipped, so the snapshot may be empty (not Linux, no schedstat).
pub fn snapshot(pid: u32) -> Snapshot {
    let mut out = BTreeMap::new();
    let mut pending = vec![pid];
    let mut seen = 0;
    while let Some(p) = pending.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else { continue };
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let path = task.path();
            let children = std::fs::read_to_string(path.join("children")).unwrap_or_default();
            pending.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default().trim().to_owned();
            if let Some(v) = read_schedstat(&path.join("schedstat")) {
                out.insert(tid, (comm, v));
            }
        }
        seen += 1;
        if seen > 64 {
            break;
        }
    }
    Snapshot(out)
}

/// One schedstat file (`/proc/.../schedstat`): `[on CPU ns, run-queue wait ns, timeslices]`;
/// `None` when it is missing or malformed.
pub fn read_schedstat(path: &std::path::Path) -> Option<[u64; 3]> {
    let stat = std::fs::read_to_string(path).ok()?;
    let v: Vec<u64> = stat.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    if let [run, wait, slices] = v[..] { Some([run, wait, slices]) } else { None }
}

/// What threads of one name did between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadUse {
    /// Thread name (`comm`, at most 15 bytes).
    pub name: String,
    /// Threads of that name.
    pub threads: usize,
    /// Time on a CPU.
    pub on_cpu: Duration,
    /// Time runnable, waiting for a CPU.
    pub waiting: Duration,
    /// Times put on a CPU.
    pub slices: u64,
}

/// The use per thread name between `before` and `after` (threads present in both), names
/// that used no CPU left out, busiest first.
pub fn delta(before: &Snapshot, after: &Snapshot) -> Vec<ThreadUse> {
    let mut by_name: BTreeMap<&str, ThreadUse> = BTreeMap::new();
    for (tid, (name, b)) in &after.0 {
        let Some((_, a)) = before.0.get(tid) else { continue };
        let d = [b[0].saturating_sub(a[0]), b[1].saturating_sub(a[1]), b[2].saturating_sub(a[2])];
        if d[0] == 0 {
            continue;
        }
        let e = by_name.entry(name).or_insert_with(|| ThreadUse { name: name.clone(), threads: 0, on_cpu: Duration::ZERO, waiting: Duration::ZERO, slices: 0 });
        e.threads += 1;
        e.on_cpu += Duration::from_nanos(d[0]);
        e.waiting += Duration::from_nanos(d[1]);
        e.slices += d[2];
    }
    let mut v: Vec<ThreadUse> = by_name.into_values().collect();
    v.sort_by(|a, b| b.on_cpu.cmp(&a.on_cpu).then_with(|| a.name.cmp(&b.name)));
    v
}

/// One line: `name xN: cpu C ms, wait W ms (mean w us per slice), S slices; ...`.
pub fn render(uses: &[ThreadUse]) -> String {
    if uses.is_empty() {
        return "no schedstat".to_owned();
    }
    uses.iter()
        .map(|u| {
            let mean_wait_us = if u.slices > 0 { u.waiting.as_secs_f64() * 1e6 / u.slices as f64 } else { 0.0 };
            format!(
                "{}{}: cpu {:.0} ms, wait {:.1} ms ({mean_wait_us:.1} us/slice), {} slices",
                u.name,
                if u.threads > 1 { format!(" x{}", u.threads) } else { String::new() },
                u.on_cpu.as_secs_f64() * 1e3,
                u.waiting.as_secs_f64() * 1e3,
                u.slices
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(rows: &[(u32, &str, [u64; 3])]) -> Snapshot {
        Snapshot(rows.iter().map(|(t, n, v)| (*t, ((*n).to_owned(), *v))).collect())
    }

    #[test]
    fn delta_sums_per_name_and_skips_idle_and_new_threads() {
        let before = snap(&[(1, "w", [1_000_000, 0, 1]), (2, "w", [0, 0, 0]), (3, "log", [5, 5, 5]), (4, "idle", [7, 7, 7])]);
        let after = snap(&[
            (1, "w", [3_000_000, 500_000, 11]),
            (2, "w", [1_000_000, 1_500_000, 10]),
            (3, "log", [4_000_005, 5, 6]),
            (4, "idle", [7, 7, 7]),
            (5, "new", [9_000_000, 0, 1]),
        ]);
        let d = delta(&before, &after);
        assert_eq!(
            d,
            vec![
                ThreadUse { name: "log".into(), threads: 1, on_cpu: Duration::from_millis(4), waiting: Duration::ZERO, slices: 1 },
                ThreadUse { name: "w".into(), threads: 2, on_cpu: Duration::from_millis(3), waiting: Duration::from_millis(2), slices: 20 },
            ]
        );
        assert_eq!(render(&d[1..]), "w x2: cpu 3 ms, wait 2.0 ms (100.0 us/slice), 20 slices");
    }

    #[test]
    fn this_process_has_a_snapshot_on_linux() {
        let s = snapshot(std::process::id());
        if cfg!(target_os = "linux") && std::path::Path::new("/proc/self/schedstat").exists() {
            assert!(s.0.values().any(|(_, v)| v[0] > 0), "{s:?}");
        }
    }
}
