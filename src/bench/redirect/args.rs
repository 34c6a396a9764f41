//! The arguments of `sluice bench redirect` and their checks: every refusal is a
//! [`BenchError::Usage`] (exit code 2) that names the flag and what it accepts.

use std::path::PathBuf;
use std::time::Duration;

use crate::bench::BenchError;
use crate::cli::MAX_RUN;

/// Arguments of `sluice bench redirect`.
#[derive(clap::Args, Debug, Clone)]
pub struct RedirectBenchArgs {
    /// Length of each measured run (every wrk round and every paced run), in whole seconds
    /// (wrk's `-d` has no smaller unit; 1500ms is refused rather than rounded).
    #[arg(long, default_value = "10s", value_parser = parse_run_duration, value_name = "D")]
    pub duration: Duration,
    /// Unmeasured wrk run before a target's first round (fills the cache, warms both
    /// servers), in whole seconds; 0s skips it.
    #[arg(long, default_value = "2s", value_parser = parse_warmup, value_name = "D")]
    pub warmup: Duration,
    /// Max-rate rounds per target (sluice and nginx alternate; the median round is reported).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub rounds: usize,
    /// Open keep-alive connections of wrk and of the paced client.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub connections: usize,
    /// wrk threads and paced-client threads (default: one per client CPU); at most
    /// --connections (wrk needs a connection per thread), larger values are capped.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Links created through the API; requests pick one uniformly at random.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub links: usize,
    /// L1 cache capacity (entries) of the cache-miss server; keep it far below --links.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub miss_cache_capacity: u64,
    /// Skip the cache-miss measurement.
    #[arg(long)]
    pub skip_miss: bool,
    /// Keep the in-process click dataflow on in the benchmarked server (it is switched off by
    /// default: it is not on the redirect path, it reads the click log behind it, and on the
    /// server's CPUs it would take time from redirects; `sluice bench dataflow` measures it).
    #[arg(long)]
    pub with_dataflow: bool,
    /// Rate of the paced run as a fraction of the target's median max rate: more than 0 and
    /// at most 1.
    #[arg(long, default_value_t = 0.5, value_parser = parse_paced_fraction, allow_negative_numbers = true, value_name = "F")]
    pub paced_fraction: f64,
    /// Timer slack of the paced client's threads (`PR_SET_TIMERSLACK`, at most 1ms): how much
    /// later than a request's due instant the kernel may wake the client to send it (the
    /// lateness is charged to the server's latency). 0 keeps Linux's default for normal
    /// threads, 50 µs; a smaller slack means a timer interrupt and wake-up for nearly every
    /// request.
    #[arg(long, default_value = "50us", value_parser = humantime::parse_duration, value_name = "D")]
    pub client_timer_slack: Duration,
    /// The paced client polls its sockets without sleeping (on its own CPUs), so a server's
    /// answer never has to wake it: on loopback, waking a sleeping client on another CPU is
    /// an inter-processor interrupt that the *server's* CPU pays per answer, a cost a
    /// remote client would not put on the server. Its threads then show 100 % CPU.
    #[arg(long, conflicts_with = "no_pin")]
    pub client_busy_poll: bool,
    /// CPUs of the servers (taskset list, e.g. 0 or 0-3); needs --client-cpus, and no CPU
    /// may be in both lists.
    #[arg(long, requires = "client_cpus", value_name = "LIST")]
    pub server_cpus: Option<String>,
    /// CPUs of wrk and the paced client (taskset list); needs --server-cpus.
    #[arg(long, requires = "server_cpus", value_name = "LIST")]
    pub client_cpus: Option<String>,
    /// Do not pin servers and load generators to separate CPUs.
    #[arg(long, conflicts_with_all = ["server_cpus", "client_cpus"])]
    pub no_pin: bool,
    /// Niceness of the servers, wrk and this process (applied as root; 0 leaves it), so that
    /// other work on a shared machine disturbs the measurement less. Default: -10 when
    /// started at niceness 0; a niceness the caller chose (`nice -n 19 sluice bench
    /// redirect`) is kept.
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-20..=19), value_name = "N")]
    pub nice: Option<i32>,
    /// sluice tokio workers and nginx worker processes (default: one per server CPU).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// The sluice executable to benchmark (default: this one; build it with --release).
    #[arg(long, value_name = "PATH")]
    pub sluice: Option<PathBuf>,
    /// The nginx executable.
    #[arg(long, default_value = "nginx", value_name = "PATH")]
    pub nginx: String,
    /// The wrk executable.
    #[arg(long, default_value = "wrk", value_name = "PATH")]
    pub wrk: String,
    /// Seed of the request choice (wrk threads and the paced client).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Most keep-alive connections per run: nginx's `worker_connections` (4096) less room for
/// its listener and wrk's reconnects.
pub const MAX_CONNECTIONS: usize = 4000;

/// Largest `--client-timer-slack`: beyond it the client's own lateness would dominate the
/// figures it charges to the server.
pub const MAX_TIMER_SLACK: Duration = Duration::from_millis(1);

impl RedirectBenchArgs {
    /// Checks the arguments clap cannot check one by one.
    ///
    /// Errors ([`BenchError::Usage`]) on zero rounds, connections or links, a paced fraction
    /// outside (0, 1] (clap's parser refuses those already), more than
    /// [`MAX_CONNECTIONS`] connections, a timer slack above [`MAX_TIMER_SLACK`], or a zero
    /// cache-miss capacity without `--skip-miss`, or a CPU in `--server-cpus`/`--client-cpus`
    /// that is not online. (Overlapping CPU lists are refused by
    /// [`super::procs::CpuPlan::explicit`].)
    pub fn validate(&self) -> Result<(), BenchError> {
        let usage = |m: String| Err(BenchError::Usage(m));
        if self.rounds == 0 || self.connections == 0 || self.links == 0 {
            return usage("--rounds, --connections and --links must be positive".into());
        }
        if !(self.paced_fraction > 0.0 && self.paced_fraction <= 1.0) {
            return usage(format!("--paced-fraction {} is out of range: more than 0 and at most 1", self.paced_fraction));
        }
        if self.connections > MAX_CONNECTIONS {
            return usage(format!("--connections must be at most {MAX_CONNECTIONS} (nginx's worker_connections is 4096 in infra/bench/nginx-redirect.conf)"));
        }
        if self.client_timer_slack > MAX_TIMER_SLACK {
            return usage(format!("--client-timer-slack must be at most {MAX_TIMER_SLACK:?}: the client's lateness is charged to the server"));
        }
        if !self.skip_miss && self.miss_cache_capacity == 0 {
            return usage("--miss-cache-capacity must be positive (or pass --skip-miss)".into());
        }
        let parsed = |l: &Option<String>| l.as_deref().and_then(|l| super::procs::parse_cpus(l).ok());
        let overlap = match (parsed(&self.server_cpus), parsed(&self.client_cpus)) {
            (Some(s), Some(c)) => s.intersection(&c).next().is_some(),
            _ => false,
        };
        // Malformed and overlapping lists are refused by `CpuPlan::explicit` (which names the
        // shared CPUs); here only CPUs that do not exist.
        let online = if overlap { None } else { super::procs::online_cpu_set() };
        for (flag, list) in [("--server-cpus", &self.server_cpus), ("--client-cpus", &self.client_cpus)] {
            let Some(list) = list else { continue };
            if let (Ok(cpus), Some(online)) = (super::procs::parse_cpus(list), &online)
                && let Some(missing) = cpus.iter().find(|c| !online.contains(c))
            {
                let all: Vec<String> = online.iter().map(usize::to_string).collect();
                return usage(format!("{flag} {list}: CPU {missing} is not online (online CPUs: {})", all.join(",")));
            }
        }
        Ok(())
    }
}

/// `--duration`: a whole number of seconds, at least 1 and at most [`MAX_RUN`] (a typo such
/// as `99999999999999s` must not start a benchmark that never ends).
fn parse_run_duration(s: &str) -> Result<Duration, String> {
    let d = parse_whole_seconds(s)?;
    if d.is_zero() {
        return Err("a measured run must last at least 1s".into());
    }
    if d > MAX_RUN {
        return Err(format!("a measured run lasts at most {}", humantime::format_duration(MAX_RUN)));
    }
    Ok(d)
}

/// `--warmup`: a whole number of seconds (0 skips the warm-up).
fn parse_warmup(s: &str) -> Result<Duration, String> {
    parse_whole_seconds(s)
}

/// A humantime duration (`10s`, `1m`, `2min 30s`) that is a whole number of seconds: wrk
/// runs for whole seconds only (`-d` takes s, m or h), and sub-second values used to be
/// rounded silently.
fn parse_whole_seconds(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 10s or 1m)"))?;
    if d.subsec_nanos() != 0 {
        let down = d.as_secs();
        let suggestion = if down == 0 { "1s".to_owned() } else { format!("{down}s or {}s", down + 1) };
        return Err(format!("{s} is not a whole number of seconds: wrk runs for whole seconds only; use e.g. {suggestion}"));
    }
    Ok(d)
}

/// `--paced-fraction`: a number in (0, 1].
fn parse_paced_fraction(s: &str) -> Result<f64, String> {
    let f: f64 =
        s.trim().parse().map_err(|_| format!("\"{s}\" is not a number; the paced rate is a fraction of the max rate, more than 0 and at most 1 (e.g. 0.5)"))?;
    if f > 0.0 && f <= 1.0 {
        Ok(f)
    } else {
        Err(format!("{s} is out of range: the paced rate is a fraction of the max rate, more than 0 and at most 1 (e.g. 0.5 for half of it)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: RedirectBenchArgs,
    }

    fn parse(argv: &[&str]) -> Result<RedirectBenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(argv.iter().copied())).map(|c| c.args)
    }

    /// The error text of a refused command line, and its exit code.
    fn refusal(argv: &[&str]) -> (String, i32) {
        let e = parse(argv).expect_err("refused");
        (e.to_string(), e.exit_code())
    }

    #[test]
    fn defaults_are_valid() {
        let a = parse(&[]).expect("defaults");
        assert_eq!((a.duration, a.warmup, a.paced_fraction), (Duration::from_secs(10), Duration::from_secs(2), 0.5));
        assert_eq!(a.validate(), Ok(()));
    }

    #[test]
    fn durations_are_whole_seconds() {
        let a = parse(&["--duration", "2m", "--warmup", "0s"]).expect("whole");
        assert_eq!((a.duration, a.warmup), (Duration::from_secs(120), Duration::ZERO));
        let (msg, code) = refusal(&["--duration", "1500ms"]);
        assert_eq!(code, 2);
        assert!(
            msg.contains(
                "invalid value '1500ms' for '--duration <D>': 1500ms is not a whole number of seconds: wrk runs for whole seconds only; use e.g. 1s or 2s"
            ),
            "{msg}"
        );
        let (msg, _) = refusal(&["--warmup", "500ms"]);
        assert!(msg.contains("'--warmup <D>': 500ms is not a whole number of seconds: wrk runs for whole seconds only; use e.g. 1s"), "{msg}");
        let (msg, code) = refusal(&["--duration", "0s"]);
        assert_eq!(code, 2);
        assert!(msg.contains("a measured run must last at least 1s"), "{msg}");
    }

    #[test]
    fn paced_fraction_range() {
        for (arg, want) in [("1", 1.0), ("0.25", 0.25)] {
            assert_eq!(parse(&["--paced-fraction", arg]).expect("in range").paced_fraction, want);
        }
        for bad in ["-0.5", "0", "1.5", "NaN", "-1"] {
            let (msg, code) = refusal(&["--paced-fraction", bad]);
            assert_eq!(code, 2, "{bad}");
            assert!(
                msg.contains(&format!("invalid value '{bad}' for '--paced-fraction <F>': {bad} is out of range: the paced rate is a fraction of the max rate, more than 0 and at most 1")),
                "{bad}: {msg}"
            );
        }
        let (msg, _) = refusal(&["--paced-fraction", "half"]);
        assert!(msg.contains("\"half\" is not a number"), "{msg}");
    }

    #[test]
    fn cross_checks_are_usage_errors() {
        let mut a = parse(&["--rounds", "0"]).expect("parsed");
        assert_eq!(a.validate().map_err(|e| e.exit_code()), Err(2));
        a.rounds = 1;
        a.connections = MAX_CONNECTIONS + 1;
        assert!(matches!(a.validate(), Err(BenchError::Usage(m)) if m.starts_with("--connections must be at most 4000")));
        a.connections = 4;
        a.miss_cache_capacity = 0;
        assert!(a.validate().is_err());
        a.skip_miss = true;
        assert_eq!(a.validate(), Ok(()));
    }

    /// Findings (newcomer, session 18): `--nice 50` and `--duration 99999999999999s` started
    /// a benchmark; a CPU that does not exist failed only at `taskset`, with exit 1.
    #[test]
    fn out_of_range_nice_duration_and_cpus_are_refused_up_front() {
        assert_eq!(parse(&["--nice", "19"]).expect("in range").nice, Some(19));
        assert_eq!(parse(&["--nice", "-20"]).expect("in range").nice, Some(-20));
        for bad in ["50", "-21"] {
            let (msg, code) = refusal(&["--nice", bad]);
            assert_eq!(code, 2, "{bad}");
            assert!(msg.contains(&format!("invalid value '{bad}' for '--nice <N>': {bad} is not in -20..=19")), "{msg}");
        }
        let (msg, code) = refusal(&["--duration", "99999999999999s"]);
        assert_eq!(code, 2);
        assert!(msg.contains("a measured run lasts at most 1day"), "{msg}");
        assert_eq!(parse(&["--duration", "24h"]).expect("at the limit").duration, MAX_RUN);
        let online = super::super::procs::online_cpu_set().expect("/sys/devices/system/cpu/online");
        let missing = online.last().expect("a CPU") + 1;
        let all: Vec<String> = online.iter().map(usize::to_string).collect();
        let a = parse(&["--server-cpus", "0", "--client-cpus", &missing.to_string()]).expect("parsed");
        assert_eq!(a.validate(), Err(BenchError::Usage(format!("--client-cpus {missing}: CPU {missing} is not online (online CPUs: {})", all.join(",")))));
        assert_eq!(a.validate().map_err(|e| e.exit_code()), Err(2));
    }
}
