//! The processes of `sluice bench redirect`: the CPU split between servers and load
//! generators (`taskset`), free loopback ports, a temporary directory removed on drop, and
//! the CPU time of processes (the child processes themselves: [`super::child`]).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::bench::BenchError;

/// A directory under the system temp dir, removed with everything in it on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `$TMPDIR/sluice-bench-redirect-<pid>-<random>`.
    ///
    /// Errors when the directory cannot be created.
    pub fn new() -> anyhow::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("sluice-bench-redirect-{}-{:08x}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&path).with_context(|| format!("could not create \"{}\"", path.display()))?;
        Ok(TempDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(error = %e, dir = %self.path.display(), "could not remove the benchmark's temp dir");
        }
    }
}

/// Which CPUs the servers and the load generators run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuPlan {
    /// CPU list (taskset syntax, e.g. `0` or `0-1`) of sluice / nginx; `None` = not pinned.
    pub server: Option<String>,
    /// CPU list of wrk and the paced client (this process); `None` = not pinned.
    pub client: Option<String>,
    /// CPUs the servers may use: sluice's tokio workers and nginx's worker processes.
    pub server_cpus: usize,
    /// CPUs the load generators may use: wrk threads and paced-client threads.
    pub client_cpus: usize,
    /// Niceness of every benchmark process (`nice -n`), so that other work on a shared
    /// machine disturbs the measurement less; `None` = unchanged.
    pub nice: Option<i32>,
}

impl CpuPlan {
    /// The split for `total` CPUs numbered `0..total`: the first half (at least one) serves,
    /// the rest generates load. With one CPU, or `pin = false`, nothing is pinned and both
    /// sides count all CPUs.
    pub fn split(total: usize, pin: bool) -> CpuPlan {
        let total = total.max(1);
        if !pin || total < 2 {
            return CpuPlan { server: None, client: None, server_cpus: total, client_cpus: total, nice: None };
        }
        let s = total / 2;
        CpuPlan { server: Some(cpu_range(0, s)), client: Some(cpu_range(s, total)), server_cpus: s, client_cpus: total - s, nice: None }
    }

    /// An explicit split from taskset CPU lists (`0`, `0-3`, `0,2`).
    ///
    /// Errors ([`BenchError::Usage`]) when a list is malformed or the lists share CPUs
    /// (servers and load generators on the same CPU would measure each other's load).
    pub fn explicit(server: &str, client: &str) -> Result<CpuPlan, BenchError> {
        let usage = |flag: &str, e: String| BenchError::Usage(format!("{flag}: {e}"));
        let s = parse_cpus(server).map_err(|e| usage("--server-cpus", e))?;
        let c = parse_cpus(client).map_err(|e| usage("--client-cpus", e))?;
        let shared: Vec<String> = s.iter().filter(|n| c.contains(n)).map(usize::to_string).collect();
        if !shared.is_empty() {
            return Err(BenchError::Usage(format!(
                "--server-cpus {server} and --client-cpus {client} overlap: CPU{} {} in both; the servers and the load generators need CPUs of their own (or pass --no-pin instead of both lists)",
                if shared.len() == 1 { "" } else { "s" },
                shared.join(",")
            )));
        }
        Ok(CpuPlan { server_cpus: s.len(), client_cpus: c.len(), server: Some(server.to_owned()), client: Some(client.to_owned()), nice: None })
    }

    /// Pins every thread of this process to the client CPUs and applies the niceness to
    /// the calling thread; threads started later inherit both, so call this before starting
    /// any. A niceness that cannot be applied (not root) is reported and skipped.
    ///
    /// Errors when `taskset` is missing or refuses.
    pub fn pin_self(&self) -> anyhow::Result<()> {
        if let Some(n) = self.nice {
            let out = std::process::Command::new("renice").args(["-n", &n.to_string(), "-p", &std::process::id().to_string()]).output();
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => eprintln!("warning: could not renice the benchmark to {n}: {}", String::from_utf8_lossy(&o.stderr).trim()),
                Err(e) => eprintln!("warning: could not run renice: {e}"),
            }
        }
        let Some(cpus) = &self.client else { return Ok(()) };
        let out = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
            .output()
            .context("could not run taskset (util-linux); pass --no-pin to run without CPU pinning")?;
        if !out.status.success() {
            bail!("taskset could not pin the benchmark to CPUs {cpus}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    /// A command running `program` on the server CPUs.
    pub fn server_command(&self, program: &Path) -> Command {
        placed(self.server.as_deref(), program)
    }

    /// A command running `program` on the client CPUs.
    pub fn client_command(&self, program: &Path) -> Command {
        placed(self.client.as_deref(), program)
    }
}

/// `[taskset -c CPUS] program`. No `nice` wrapper: [`CpuPlan::pin_self`] has already set
/// this process's niceness, which children inherit, and `nice -n N` is relative (it would
/// give them twice the adjustment: −20 for `--nice -10`).
fn placed(cpus: Option<&str>, program: &Path) -> Command {
    let mut argv: Vec<std::ffi::OsString> = Vec::new();
    if let Some(c) = cpus {
        argv.extend(["taskset".into(), "-c".into(), c.into()]);
    }
    argv.push(program.into());
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    cmd
}

fn cpu_range(from: usize, to: usize) -> String {
    if to - from == 1 { from.to_string() } else { format!("{from}-{}", to - 1) }
}

/// Number of distinct CPUs in a taskset list such as `0-2,5`.
///
/// Errors on anything that is not a comma-separated list of numbers and ranges.
pub fn count_cpus(list: &str) -> anyhow::Result<usize> {
    parse_cpus(list).map(|c| c.len()).map_err(anyhow::Error::msg)
}

/// The distinct CPU numbers of a taskset list such as `0-2,5`, ascending.
///
/// Errors (with a message naming the list) on anything that is not a comma-separated list
/// of numbers and ranges.
pub fn parse_cpus(list: &str) -> Result<std::collections::BTreeSet<usize>, String> {
    let bad = || format!("\"{list}\" is not a CPU list (e.g. 0 or 0-3 or 0,2)");
    let mut cpus = std::collections::BTreeSet::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
                if b < a || b - a > 65_536 {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => {
                cpus.insert(part.trim().parse::<usize>().map_err(|_| bad())?);
            }
        }
    }
    Ok(cpus)
}

/// CPUs online (`/sys/devices/system/cpu/online`), whatever this process's affinity; the
/// CPUs this process may use when that file is unreadable.
pub fn online_cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|l| count_cpus(l.trim()).ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// The online CPUs (`/sys/devices/system/cpu/online`); `None` when unreadable.
pub fn online_cpu_set() -> Option<std::collections::BTreeSet<usize>> {
    std::fs::read_to_string("/sys/devices/system/cpu/online").ok().and_then(|l| parse_cpus(l.trim()).ok())
}

/// A loopback port that was free a moment ago (bound, read, released).
///
/// Errors when no port can be bound.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("could not bind a loopback port")?;
    l.local_addr().context("could not read the bound address")
}

/// Resolves `name` to an executable: as given when it contains `/`, else the first match in
/// `$PATH`, `/usr/sbin` and `/sbin` (nginx lives in sbin, which a non-root `$PATH` may lack).
///
/// Errors with `hint` when nothing is found.
pub fn find_program(name: &str, hint: &str) -> anyhow::Result<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => Ok(p),
            Ok(_) => bail!("\"{name}\" is not a file (a directory?); {hint}"),
            Err(_) => bail!("\"{name}\" does not exist; {hint}"),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin", "/sbin"].map(PathBuf::from));
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("\"{name}\" was not found; {hint}")
}

/// CPU time (user + system) used so far by process `pid` and its child processes (nginx's
/// workers), from `/proc/<pid>/stat`, which also counts threads that have exited; in
/// clock ticks of 10 ms (`USER_HZ` = 100 on Linux). `None` when unreadable (not Linux, or
/// the process is gone).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let mut ticks = 0u64;
    let mut pending = vec![pid];
    let mut seen = 0;
    while let Some(p) = pending.pop() {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        // Fields after the parenthesized command name: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        ticks += utime + stime;
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for task in tasks.flatten() {
                let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
                pending.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
            }
        }
        seen += 1;
        if seen > 4096 {
            break;
        }
    }
    Some(Duration::from_millis(ticks * 10))
}

/// Busy (non-idle, non-iowait) time of the CPUs in the taskset list `cpus` (all CPUs when
/// `None`), summed, from `/proc/stat` (10 ms ticks); `None` when unreadable.
pub fn cpus_busy(cpus: Option<&str>) -> Option<Duration> {
    let wanted = cpus.map(expand_cpus);
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut ticks = 0u64;
    for line in stat.lines() {
        let Some(rest) = line.strip_prefix("cpu") else { continue };
        let mut fields = rest.split_whitespace();
        let Some(Ok(n)) = fields.next().map(str::parse::<usize>) else { continue };
        if wanted.as_ref().is_some_and(|w| !w.contains(&n)) {
            continue;
        }
        let v: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal ...; guest time is inside user.
        ticks += v.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum::<u64>();
    }
    Some(Duration::from_millis(ticks * 10))
}

/// The CPU numbers of a taskset list (malformed parts are skipped).
fn expand_cpus(list: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.trim().parse::<usize>().ok()),
        }
    }
    out
}

/// Niceness the benchmark runs at: `--nice` when given; otherwise -10 for a process started
/// at niceness 0, and 0 (leave it) for one the caller started at another niceness
/// (`nice -n 19 sluice bench redirect` on a shared machine stays at 19).
pub fn effective_nice(flag: Option<i32>, current: i32) -> i32 {
    flag.unwrap_or(if current == 0 { DEFAULT_NICE } else { 0 })
}

/// `--nice`'s default for a process started at niceness 0.
const DEFAULT_NICE: i32 = -10;

/// This process's niceness (`getpriority(PRIO_PROCESS, 0)`, -20..=19); 0 when it cannot be read.
pub fn current_nice() -> i32 {
    rustix::process::getpriority_process(None).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    /// Finding (newcomer, session 58): `--nice` defaulted to -10, so `nice -n 19 sluice bench
    /// redirect` reniced itself and its children to -10 as root.
    #[test]
    fn a_niceness_the_caller_chose_is_kept_unless_nice_is_given() {
        assert_eq!(super::effective_nice(None, 0), -10);
        assert_eq!(super::effective_nice(None, 19), 0, "0 leaves the niceness as it is");
        assert_eq!(super::effective_nice(None, -5), 0);
        assert_eq!(super::effective_nice(Some(5), 19), 5);
        assert_eq!(super::effective_nice(Some(0), 0), 0);
    }

    use super::*;

    #[test]
    fn split_halves_the_cpus() {
        assert_eq!(CpuPlan::split(2, true), CpuPlan { server: Some("0".into()), client: Some("1".into()), server_cpus: 1, client_cpus: 1, nice: None });
        assert_eq!(CpuPlan::split(8, true), CpuPlan { server: Some("0-3".into()), client: Some("4-7".into()), server_cpus: 4, client_cpus: 4, nice: None });
        assert_eq!(CpuPlan::split(3, true), CpuPlan { server: Some("0".into()), client: Some("1-2".into()), server_cpus: 1, client_cpus: 2, nice: None });
        assert_eq!(CpuPlan::split(1, true), CpuPlan { server: None, client: None, server_cpus: 1, client_cpus: 1, nice: None });
        assert_eq!(CpuPlan::split(4, false), CpuPlan { server: None, client: None, server_cpus: 4, client_cpus: 4, nice: None });
    }

    #[test]
    fn commands_are_wrapped() {
        let mut plan = CpuPlan::split(2, true);
        let argv = |c: &Command| {
            let c = c.as_std();
            std::iter::once(c.get_program()).chain(c.get_args()).map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>()
        };
        assert_eq!(argv(&plan.server_command(Path::new("/bin/x"))), ["taskset", "-c", "0", "/bin/x"]);
        plan.nice = Some(-10);
        // No `nice` wrapper: the children inherit the niceness `pin_self` gave the bench.
        assert_eq!(argv(&plan.client_command(Path::new("/bin/x"))), ["taskset", "-c", "1", "/bin/x"]);
        assert_eq!(argv(&CpuPlan::split(1, true).server_command(Path::new("/bin/x"))), ["/bin/x"]);
    }

    /// Field 19 (`nice`) of `/proc/<pid>/stat`.
    fn niceness(stat: &str) -> i32 {
        let rest = stat.rsplit_once(')').expect("stat").1;
        rest.split_whitespace().nth(16).expect("nice field").parse().expect("number")
    }

    #[test]
    fn children_get_the_benchs_niceness_once() {
        // A child of a plan with a niceness runs at this process's niceness (inherited), not
        // at that niceness added on top (`nice -n` is relative: −10 twice gave −20).
        let mut plan = CpuPlan::split(1, true);
        plan.nice = Some(-5);
        let own = niceness(&std::fs::read_to_string("/proc/thread-self/stat").expect("own stat"));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        // Spawned inside the runtime: tokio registers the child's pipes with its reactor.
        let out = rt.block_on(async { plan.client_command(Path::new("/bin/sh")).args(["-c", "cat /proc/$$/stat"]).output().await }).expect("run sh");
        assert!(out.status.success());
        assert_eq!(niceness(&String::from_utf8_lossy(&out.stdout)), own);
    }

    #[test]
    fn cpu_time_grows_with_work() {
        // Busy until the counted CPU time has grown by 200 ms: on a loaded machine that takes
        // longer than 200 ms of wall time, never less (one busy thread cannot use more CPU
        // time than wall time, up to the 10 ms tick granularity of the counters).
        let me = std::process::id();
        let before = cpu_time(me).expect("own cpu time");
        let t = std::time::Instant::now();
        let mut x = 0u64;
        let used = loop {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            let used = cpu_time(me).expect("own cpu time") - before;
            if used >= Duration::from_millis(200) {
                break used;
            }
            assert!(t.elapsed() < Duration::from_secs(120), "busy for 2 minutes, counted only {used:?}");
        };
        let wall = t.elapsed();
        // Other test threads of this process may run meanwhile: bound by all CPUs.
        let bound = wall * u32::try_from(online_cpus()).expect("cpu count") + Duration::from_millis(20);
        assert!(used <= bound, "counted {used:?} of CPU in {wall:?} of wall time");
        assert!(cpu_time(u32::MAX).is_none());
    }

    #[test]
    fn busy_time_of_cpu_sets() {
        assert_eq!(expand_cpus("0-2,5"), vec![0, 1, 2, 5]);
        let all = cpus_busy(None).expect("/proc/stat");
        let first = cpus_busy(Some("0")).expect("/proc/stat");
        assert!(first <= all && all > Duration::ZERO);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpus("0").expect("one"), 1);
        assert_eq!(count_cpus("1").expect("one"), 1);
        assert_eq!(count_cpus("0-3,6,8-9").expect("seven"), 7);
        assert_eq!(count_cpus("0-1,1").expect("two"), 2, "counted once");
        assert!(count_cpus("3-1").is_err() && count_cpus("a").is_err() && count_cpus("").is_err());
    }

    #[test]
    fn overlapping_cpu_lists_are_refused() {
        let plan = CpuPlan::explicit("0-1", "2-3").expect("disjoint");
        assert_eq!((plan.server_cpus, plan.client_cpus), (2, 2));
        let err = CpuPlan::explicit("0-2", "2,3").expect_err("CPU 2 in both");
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.to_string(),
            "--server-cpus 0-2 and --client-cpus 2,3 overlap: CPU 2 in both; the servers and the load generators need CPUs of their own (or pass --no-pin instead of both lists)"
        );
        let err = CpuPlan::explicit("0-3", "1,3-5").expect_err("1 and 3 in both");
        assert!(err.to_string().contains("overlap: CPUs 1,3 in both"), "{err}");
        let err = CpuPlan::explicit("0", "x").expect_err("malformed");
        assert_eq!(err, BenchError::Usage("--client-cpus: \"x\" is not a CPU list (e.g. 0 or 0-3 or 0,2)".into()));
    }

    #[test]
    fn a_program_path_that_is_a_directory_or_missing_says_which() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_str().expect("utf-8").to_owned();
        let err = find_program(&d, "install wrk").expect_err("a directory");
        assert_eq!(err.to_string(), format!("\"{d}\" is not a file (a directory?); install wrk"));
        let missing = format!("{d}/wrk");
        let err = find_program(&missing, "install wrk").expect_err("missing");
        assert_eq!(err.to_string(), format!("\"{missing}\" does not exist; install wrk"));
    }
}
