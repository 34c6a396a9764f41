//! Command-line interface (clap derive). Every flag has help text; `sluice --help` and
//! `sluice <command> --help` print it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{FlagOverrides, Role};

/// Sluice: a URL shortener with real-time click analytics.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax, e.g. "info" or "sluice=debug,info").
    #[arg(long, global = true, env = "SLUICE_LOG", default_value = "info")]
    pub log: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API and/or the redirect service (embedded SQLite store and click log by default).
    Serve(ServeArgs),
    /// Apply pending link-store schema migrations and exit.
    Migrate(MigrateArgs),
    /// Send realistic redirect traffic (real user agents, GeoIP addresses, referrers) to a running Sluice and print the exact ground truth.
    Loadgen(Box<crate::loadgen::LoadgenArgs>),
    /// Backfill click history from an NDJSON event file or a combined-log-format access log.
    Import(crate::import::ImportArgs),
    /// Start everything on embedded defaults, generate ~20 s of realistic traffic, and print the stats next to the exact ground truth.
    Demo(crate::demo::DemoArgs),
    /// Inspect the embedded click log, or reset it after damage.
    Log {
        /// Log subcommand.
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Run a benchmark and print its report.
    Bench {
        /// Which benchmark.
        #[command(subcommand)]
        command: BenchCommand,
    },
}

/// `sluice bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Throughput and latency of the click dataflow (enrich, dedup, rollups, uniques) on generated events.
    Dataflow(crate::bench::dataflow::DataflowBenchArgs),
    /// Redirect req/s and p50/p99 latency (cache hit, cache miss) of the real `sluice serve`, side by side with nginx's static 302, on loopback.
    Redirect(crate::bench::redirect::RedirectBenchArgs),
    /// Click → visible in /v1/links/{code}/stats lag (p50/p99), beside the time the click takes to reach the click log.
    Freshness(crate::bench::freshness::FreshnessBenchArgs),
}

/// Flags shared by commands that read the configuration.
#[derive(Debug, Clone, Args, Default)]
pub struct ConfigArgs {
    /// TOML configuration file (same keys as the built-in defaults; overrides them).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory: SQLite links.db, click log, visitor secret. Created if missing.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `sluice serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Configuration file and data directory.
    #[command(flatten)]
    pub common: ConfigArgs,
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub listen: Option<SocketAddr>,
    /// What this process serves: all (API + redirects), redirect, or api.
    #[arg(long, value_enum)]
    pub role: Option<Role>,
    /// Origin of the short URLs the API returns (default http://<listen>, 127.0.0.1 / [::1] for an unspecified listen address); its host is an own short domain.
    #[arg(long, value_name = "URL", value_parser = parse_base_url)]
    pub base_url: Option<String>,
    /// Another own short domain (repeatable); links may use it and targets on it are refused.
    #[arg(long = "short-domain", value_name = "HOST", value_parser = crate::config::check_short_domain)]
    pub short_domains: Vec<String>,
    /// Tokio worker threads, 0 to 1024 (server.workers; 0 = one per CPU, the built-in default).
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=crate::config::MAX_WORKERS as u64))]
    pub workers: Option<usize>,
    /// Timely worker threads of the click dataflow, 1 to 1024 (dataflow.workers; default 1).
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=crate::config::MAX_WORKERS as u64))]
    pub dataflow_workers: Option<usize>,
    /// Timely processes of the click dataflow cluster, 1 or more (dataflow.processes; more than 1 needs --hostfile and --process-id).
    #[arg(long, value_name = "N", value_parser = parse_processes)]
    pub processes: Option<usize>,
    /// This process's index in the hostfile, 0 to processes - 1 (dataflow.process-id; only for a cluster of 2 or more processes).
    #[arg(long, value_name = "I")]
    pub process_id: Option<usize>,
    /// Timely hostfile: one host:port per process, in process-id order (dataflow.hostfile).
    #[arg(long, value_name = "FILE")]
    pub hostfile: Option<PathBuf>,
    /// Start even though the click log starts past offset 0 (after `sluice log reset`) and no checkpoint holds the clicks before it: the stats count only the clicks from the log's start, and the next checkpoint wins over the older ones if they are put back later. Without it such a start is refused.
    #[arg(long)]
    pub count_from_log_start: bool,
}

impl ServeArgs {
    /// The flag layer of the configuration.
    pub fn overrides(&self) -> FlagOverrides {
        FlagOverrides {
            listen: self.listen,
            data_dir: self.common.data_dir.clone(),
            role: self.role,
            base_url: self.base_url.clone(),
            short_domains: self.short_domains.clone(),
            workers: self.workers,
        }
    }

    /// Loads the configuration (see [`crate::config::Config::load`]) with every flag
    /// applied, the dataflow flags included, and validates it (after the flags: a cluster
    /// configured in the file takes its `--process-id` from the flag).
    ///
    /// Errors: as [`crate::config::Config::load`]; a cluster that cannot start, whether the
    /// flags, the config file or the environment gave its settings, is a usage error (exit
    /// code 2, [`crate::config::Config::check_cluster`]).
    pub fn load_config(&self) -> anyhow::Result<crate::config::Config> {
        let file = self.common.config.as_deref();
        let (mut cfg, _, mut sources) = crate::config::Config::load_unchecked(file, &self.overrides())?;
        let d = &mut cfg.dataflow;
        d.workers = self.dataflow_workers.unwrap_or(d.workers);
        d.processes = self.processes.unwrap_or(d.processes);
        d.process_id = self.process_id.or(d.process_id);
        d.hostfile = self.hostfile.clone().or(d.hostfile.take());
        d.count_from_log_start = self.count_from_log_start;
        // A flag names itself in the message.
        let flagged = |given: bool, source: &mut Option<String>| {
            if given {
                *source = None;
            }
        };
        flagged(self.processes.is_some(), &mut sources.processes);
        flagged(self.process_id.is_some(), &mut sources.process_id);
        flagged(self.hostfile.is_some(), &mut sources.hostfile);
        self.check_process_id_flag(d)?;
        cfg.check_cluster(&sources)?;
        cfg.check_loaded(file)?;
        Ok(cfg)
    }

    /// Refuses `--process-id` on a single process (with the configured `d`, the flags
    /// applied) as a usage error (exit code 2, before anything starts): it would be ignored.
    fn check_process_id_flag(&self, d: &crate::job::config::DataflowSection) -> anyhow::Result<()> {
        match self.process_id {
            Some(id) if d.processes <= 1 => Err(crate::bench::usage_error(format!(
                "--process-id {id} needs a cluster: --processes 2 or more and --hostfile (dataflow.processes is {}; a single process has no process id)",
                d.processes
            ))),
            _ => Ok(()),
        }
    }
}

/// `--processes`: a whole number, 1 or more.
///
/// Errors: the text, and what is expected.
fn parse_processes(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("expected a whole number of processes, 1 or more, got \"{s}\"")),
    }
}

/// `sluice migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Configuration file and data directory.
    #[command(flatten)]
    pub common: ConfigArgs,
    /// Link store to migrate (overrides store.url): an existing data directory (its links.db is created if missing), a sqlite: URL whose directory exists (the file is created if missing; sqlite:///abs/path, sqlite://localhost/abs/path or sqlite:rel/path, the scheme in any case) or a postgres:// URL. Unlike --data-dir, no directory is created (nor for a store.url): a missing one is a usage error (exit 2). Not with --data-dir (which would be ignored): giving both is a usage error.
    #[arg(long, value_name = "URL", conflicts_with = "data_dir")]
    pub store: Option<String>,
}

/// `sluice log ...`.
#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Print logged click events as NDJSON (one JSON object per line, with its offset).
    Tail(LogTailArgs),
    /// Start a new, empty click log after clicks.redb was damaged or lost, continuing from the newest checkpoint (keeps every click it counted). Stop `sluice serve` first.
    Reset(LogResetArgs),
}

/// `sluice log reset`.
#[derive(Debug, Clone, Args)]
pub struct LogResetArgs {
    /// TOML configuration file (read for `[server] data-dir` and the dataflow settings; same keys as the built-in defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory whose click log (clicks.redb) and checkpoints to reset. It must exist: a missing directory is an error, nothing is created.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `sluice log tail`.
#[derive(Debug, Clone, Args)]
pub struct LogTailArgs {
    /// TOML configuration file (read for `[server] data-dir`; same keys as the built-in defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory whose click log (clicks.redb) to read. Read only: a missing directory or log is an error, nothing is created.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print the last N events (ignored with --from).
    #[arg(short = 'n', long, default_value_t = 10, value_name = "N", allow_negative_numbers = true, value_parser = parse_count)]
    pub lines: u64,
    /// Print from this log offset on instead of the last N.
    #[arg(long, value_name = "OFFSET", allow_negative_numbers = true, value_parser = parse_count)]
    pub from: Option<u64>,
}

/// `--from` and `-n`: a whole number, 0 or more (a negative one is read as a value, not as
/// an unknown flag, so the message says what is wrong with it).
///
/// Errors: the text, and what is expected.
pub fn parse_count(s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| format!("expected a whole number from 0 to {}, got \"{s}\"", u64::MAX))
}

/// `--base-url`: checked as [`crate::config::check_base_url`] (a refused value is a usage
/// error, exit 2, as for every flag), kept as given.
fn parse_base_url(s: &str) -> Result<String, String> {
    crate::config::check_base_url(s).map(|_| s.to_owned())
}

/// `--listen`: an IP address and a port (`127.0.0.1:8080`, `[::1]:8080`, `0.0.0.0:8080`).
///
/// Errors: the text, and what is expected (a host name such as `localhost` is not resolved:
/// a listener binds an address).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| format!("expected IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080 (an address, not a host name), got \"{s}\""))
}

/// Longest a run of `sluice demo` or `sluice loadgen` (`--duration`) or a part of it
/// (`--attack-start`, `--attack-duration`) takes: 24 h (a typo such as `2000years` must
/// not overflow the clock arithmetic of the run).
pub const MAX_RUN: Duration = Duration::from_secs(24 * 3600);

/// Longest per-request timeout a load generator takes (`loadgen --timeout`): 1 h.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);

/// Oldest event time `loadgen --max-lateness` asks for: 400 days (the longest default
/// retention of hour and day buckets; later events are dead-lettered anyway).
pub const MAX_LATENESS: Duration = Duration::from_secs(400 * 24 * 3600);

/// Longest `import --retry-for`: 1 day (a longer retry window is a typo; `1000years` meant
/// retrying forever).
pub const MAX_RETRY_FOR: Duration = Duration::from_secs(24 * 3600);

/// A humantime duration (`20s`, `2m`, `1h 30m`) of at most `max`.
///
/// Errors: humantime's reason with an example, or the maximum (`at most 1day, got 2000years`).
pub fn parse_duration_at_most(s: &str, max: Duration) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 20s or 2m)"))?;
    if d > max {
        return Err(format!("at most {}, got {s}", crate::config::bounds::show(max)));
    }
    Ok(d)
}

/// `--duration`, `--attack-start`, `--attack-duration`: [`parse_duration_at_most`] [`MAX_RUN`].
pub fn parse_run_length(s: &str) -> Result<Duration, String> {
    parse_duration_at_most(s, MAX_RUN)
}

/// `loadgen --timeout`: [`parse_duration_at_most`] [`MAX_REQUEST_TIMEOUT`].
pub fn parse_request_timeout(s: &str) -> Result<Duration, String> {
    parse_duration_at_most(s, MAX_REQUEST_TIMEOUT)
}

/// `import --retry-for`: [`parse_duration_at_most`] [`MAX_RETRY_FOR`].
pub fn parse_retry_for(s: &str) -> Result<Duration, String> {
    parse_duration_at_most(s, MAX_RETRY_FOR)
}

/// `loadgen --max-lateness`: [`parse_duration_at_most`] [`MAX_LATENESS`].
pub fn parse_lateness(s: &str) -> Result<Duration, String> {
    parse_duration_at_most(s, MAX_LATENESS)
}

/// Fewest requests per second a rate flag takes (`loadgen --rate`, `--attack-rate`,
/// `demo --rate`, `bench freshness --rate`): 0.01, one request every 100 s (a typo such as
/// `1e-300` must not overflow the interval between requests).
pub const MIN_RATE: f64 = 0.01;

/// Most requests per second a rate flag takes: 1,000,000 (far above what one load
/// generator sends; a typo such as `1e300` must not plan an absurd run).
pub const MAX_RATE: f64 = 1_000_000.0;

/// Whether `rate` (requests per second) is within [`MIN_RATE`]..=[`MAX_RATE`] (NaN is not).
pub fn rate_in_range(rate: f64) -> bool {
    (MIN_RATE..=MAX_RATE).contains(&rate)
}

/// A rate flag's value: requests per second, a number from [`MIN_RATE`] to [`MAX_RATE`].
///
/// Errors: the text, and the accepted range (`from 0.01 to 1000000 requests per second, got 1e-300`).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let range = format!("from {MIN_RATE} to {MAX_RATE} requests per second");
    match s.trim().parse::<f64>() {
        Ok(r) if rate_in_range(r) => Ok(r),
        Ok(_) => Err(format!("{range}, got {s}")),
        Err(_) => Err(format!("expected a number {range}, got \"{s}\"")),
    }
}

/// Refuses a `rate` (requests per second, flag `rate_flag`) that sends no request in
/// `duration` (flag `duration_flag`): `rate × duration` must be at least 1.
///
/// Errors: `--rate 0.01 × --duration 1s plans no request; give a higher --rate or a longer
/// --duration`.
pub fn check_plans_a_request(rate_flag: &str, rate: f64, duration_flag: &str, duration: Duration) -> Result<(), String> {
    if rate * duration.as_secs_f64() >= 1.0 {
        return Ok(());
    }
    Err(format!(
        "--{rate_flag} {rate} × --{duration_flag} {} plans no request; give a higher --{rate_flag} or a longer --{duration_flag}",
        humantime::format_duration(duration)
    ))
}
