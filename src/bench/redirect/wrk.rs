//! Driving a server at its maximum rate with `wrk` (Debian package): the Lua script that
//! requests random codes from a list (`infra/bench/redirect.lua`), the run, and parsing the
//! script's `BENCH_RESULT {json}` line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::child::{OnParentDeath, spawn_tied, tie_to_parent};
use super::procs::CpuPlan;

/// The wrk script template; `--@CODES@`, `--@USER_AGENT@` and `--@SEED@` are filled in.
const SCRIPT_TEMPLATE: &str = include_str!("../../../infra/bench/redirect.lua");

/// The user agent of every benchmark request (a current desktop Chrome).
pub const USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

/// The wrk script requesting `codes` uniformly at random (threads seeded from `seed`).
///
/// # Panics
/// Never for codes from the API (`[A-Za-z0-9_-]`); a code with another character would
/// break the Lua string and is refused by an assertion.
pub fn script(codes: &[String], seed: u64) -> String {
    assert!(codes.iter().all(|c| c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')), "codes are [A-Za-z0-9_-]");
    let list: String = codes.iter().map(|c| format!("  \"{c}\",\n")).collect();
    SCRIPT_TEMPLATE.replace("--@CODES@\n", &list).replace("--@USER_AGENT@", USER_AGENT).replace("--@SEED@", &seed.to_string())
}

/// What wrk measured over one run (latencies are closed-loop: each connection sends its
/// next request when the previous answer arrived, so they include queueing at max rate).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
pub struct WrkResult {
    /// Completed requests.
    pub requests: u64,
    /// Length of the run, µs.
    pub duration_us: u64,
    /// Response bytes read.
    pub bytes: u64,
    /// Mean latency, µs.
    pub mean_us: f64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 90th percentile latency, µs.
    pub p90_us: u64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
    /// 99.9th percentile latency, µs.
    pub p999_us: u64,
    /// Largest latency, µs.
    pub max_us: u64,
    /// Failed connects.
    pub connect_errors: u64,
    /// Failed reads.
    pub read_errors: u64,
    /// Failed writes.
    pub write_errors: u64,
    /// Responses with status ≥ 400.
    pub status_errors: u64,
    /// Requests without an answer within wrk's timeout.
    pub timeouts: u64,
}

impl WrkResult {
    /// Requests per second.
    pub fn rps(&self) -> f64 {
        if self.duration_us == 0 { 0.0 } else { self.requests as f64 * 1e6 / self.duration_us as f64 }
    }

    /// All errors wrk counted.
    pub fn errors(&self) -> u64 {
        self.connect_errors + self.read_errors + self.write_errors + self.status_errors + self.timeouts
    }
}

/// The threads wrk (and the paced client) run with when asked for `threads` over
/// `connections` keep-alive connections: at least one, at most one per connection (wrk
/// refuses fewer connections than threads).
pub fn effective_threads(threads: usize, connections: usize) -> usize {
    threads.clamp(1, connections.max(1))
}

/// How to run wrk.
#[derive(Debug, Clone)]
pub struct WrkRun<'a> {
    /// The wrk executable.
    pub wrk: &'a Path,
    /// The script file ([`script`]).
    pub script: &'a Path,
    /// wrk threads (`-t`; capped at `connections`, [`effective_threads`]).
    pub threads: usize,
    /// Open connections (`-c`).
    pub connections: usize,
    /// Length (`-d`): a whole number of seconds, at least 1 (wrk has no smaller unit).
    pub duration: Duration,
    /// CPU placement.
    pub cpus: &'a CpuPlan,
}

impl WrkRun<'_> {
    /// wrk's arguments for a run against `http://addr/`.
    ///
    /// Errors when the duration is not a whole, positive number of seconds (wrk would run
    /// for a rounded one) or there are no connections.
    pub fn args(&self, addr: SocketAddr) -> anyhow::Result<Vec<String>> {
        if self.duration.subsec_nanos() != 0 || self.duration.is_zero() {
            bail!("wrk runs for whole seconds only, not {:?}", self.duration);
        }
        if self.connections == 0 {
            bail!("wrk needs at least one connection");
        }
        let threads = effective_threads(self.threads, self.connections);
        Ok(vec![
            "-t".into(),
            threads.to_string(),
            "-c".into(),
            self.connections.to_string(),
            "-d".into(),
            format!("{}s", self.duration.as_secs()),
            "--timeout".into(),
            "5s".into(),
            "-s".into(),
            self.script.display().to_string(),
            format!("http://{addr}/"),
        ])
    }

    /// Runs wrk against `http://addr/` and returns the script's result line. wrk's own
    /// output goes to `log`. wrk is killed if this process dies ([`super::child`]).
    ///
    /// Errors when the arguments are refused ([`WrkRun::args`]), wrk cannot start, fails,
    /// or prints no result line.
    pub async fn run(&self, addr: SocketAddr, log: PathBuf) -> anyhow::Result<WrkResult> {
        let mut cmd = self.cpus.client_command(self.wrk);
        cmd.args(self.args(addr)?)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        tie_to_parent(&mut cmd, OnParentDeath::Kill);
        let child = spawn_tied(cmd).with_context(|| format!("could not run {}", self.wrk.display()))?;
        let out = child.wait_with_output().await.with_context(|| format!("could not run {}", self.wrk.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let _written = std::fs::write(&log, format!("{stdout}\n--- stderr ---\n{stderr}"));
        if !out.status.success() {
            bail!("wrk failed ({}): {}{}", out.status, stdout.trim(), stderr.trim());
        }
        parse_result(&stdout).with_context(|| format!("wrk printed no result line:\n{stdout}{stderr}"))
    }
}

/// The `BENCH_RESULT {json}` line of wrk's output, parsed.
///
/// Errors when there is no such line or its JSON does not match [`WrkResult`].
pub fn parse_result(stdout: &str) -> anyhow::Result<WrkResult> {
    let line = stdout.lines().find_map(|l| l.strip_prefix("BENCH_RESULT ")).context("no BENCH_RESULT line")?;
    serde_json::from_str(line).with_context(|| format!("malformed BENCH_RESULT line: {line}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_lists_every_code_once() {
        let codes = vec!["abc".to_owned(), "X_y-9".to_owned()];
        let s = script(&codes, 7);
        assert!(s.contains("local codes = {\n  \"abc\",\n  \"X_y-9\",\n}"), "{s}");
        assert!(s.contains(&format!("local user_agent = \"{USER_AGENT}\"")));
        assert!(s.contains("local seed = 7\n"));
        assert!(!s.contains("--@"));
    }

    #[test]
    fn result_line_is_parsed() {
        let out = "Running 1s test @ http://127.0.0.1:1/\n  1 threads and 2 connections\nBENCH_RESULT {\"requests\":1000,\"duration_us\":2000000,\"bytes\":5,\"mean_us\":12.50,\"p50_us\":10,\"p90_us\":20,\"p99_us\":30,\"p999_us\":40,\"max_us\":50,\"connect_errors\":1,\"read_errors\":2,\"write_errors\":3,\"status_errors\":4,\"timeouts\":5}\n";
        let r = parse_result(out).expect("parsed");
        assert_eq!(r.requests, 1000);
        assert_eq!(r.p99_us, 30);
        assert_eq!(r.errors(), 15);
        assert!((r.rps() - 500.0).abs() < 1e-9);
        assert!(parse_result("Running 1s test\n").is_err());
    }

    #[test]
    fn arguments_keep_the_duration_and_cap_threads() {
        let plan = CpuPlan::split(1, false);
        let addr: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let run = |threads, connections, duration| {
            WrkRun { wrk: Path::new("wrk"), script: Path::new("bench/r.lua"), threads, connections, duration, cpus: &plan }.args(addr)
        };
        let argv = run(8, 4, Duration::from_secs(2)).expect("args");
        assert_eq!(argv, ["-t", "4", "-c", "4", "-d", "2s", "--timeout", "5s", "-s", "bench/r.lua", "http://127.0.0.1:8080/"]);
        assert_eq!(run(2, 64, Duration::from_secs(90)).expect("args")[..6], ["-t", "2", "-c", "64", "-d", "90s"]);
        assert_eq!(run(0, 1, Duration::from_secs(1)).expect("args")[1], "1");
        for bad in [Duration::from_millis(1500), Duration::from_millis(500), Duration::ZERO] {
            let e = run(1, 1, bad).expect_err("not whole seconds");
            assert!(e.to_string().starts_with("wrk runs for whole seconds only"), "{e}");
        }
        assert_eq!((effective_threads(8, 4), effective_threads(2, 64), effective_threads(0, 0)), (4, 2, 1));
    }
}
