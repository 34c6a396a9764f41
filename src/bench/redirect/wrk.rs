//! Driving a server at its maximum rate with `wrk` (Debian package): the Lua script that
//! requests random codes from a list (`infra/bench/redirect.lua`), the run, and parsing the
//! script's `BENCH_RESULT {json}` line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

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

/// How to run wrk.
#[derive(Debug, Clone)]
pub struct WrkRun<'a> {
    /// The wrk executable.
    pub wrk: &'a Path,
    /// The script file ([`script`]).
    pub script: &'a Path,
    /// wrk threads (`-t`).
    pub threads: usize,
    /// Open connections (`-c`), at least `threads`.
    pub connections: usize,
    /// Length (`-d`, whole seconds, at least 1).
    pub duration: Duration,
    /// CPU placement.
    pub cpus: &'a CpuPlan,
}

impl WrkRun<'_> {
    /// Runs wrk against `http://addr/` and returns the script's result line. wrk's own
    /// output goes to `log`.
    ///
    /// Errors when wrk cannot start, fails, or prints no result line.
    pub async fn run(&self, addr: SocketAddr, log: PathBuf) -> anyhow::Result<WrkResult> {
        let secs = self.duration.as_secs().max(1);
        let threads = self.threads.max(1);
        let mut cmd = self.cpus.client_command(self.wrk);
        cmd.arg("-t")
            .arg(threads.to_string())
            .arg("-c")
            .arg(self.connections.max(threads).to_string())
            .arg("-d")
            .arg(format!("{secs}s"))
            .arg("--timeout")
            .arg("5s")
            .arg("-s")
            .arg(self.script)
            .arg(format!("http://{addr}/"))
            .kill_on_drop(true);
        let out = cmd.output().await.with_context(|| format!("could not run {}", self.wrk.display()))?;
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
}
