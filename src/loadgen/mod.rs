//! `sluice loadgen`: real HTTP traffic against a running Sluice with a realistic mix, and the
//! exact ground truth of what it sent.
//!
//! What a run does:
//! 1. creates `--links` links through `POST /v1/links` (or uses `--codes`);
//! 2. for `--duration`, sends `--rate` redirect requests per second (`GET`, some `HEAD`),
//!    never following the redirect, at most `--concurrency` in flight: Zipf link popularity,
//!    real browser / link-preview / crawler user agents, client addresses from real GeoIP
//!    ranges in `X-Forwarded-For`, real referrers, returning visitors (see [`plan`]);
//! 3. once per second posts late events (event time up to `--max-lateness` in the past) to
//!    `POST /v1/events`, and re-sends some already posted events unchanged (exact
//!    duplicates: same `event_id`);
//! 4. with `--attack SHAPE`, adds an attack on one link ([`attack`]: burst, flood, bots,
//!    referrer-spam, geo-shift) from `--attack-start` at `--attack-rate`;
//! 5. stops by itself at the end of the duration, waits for requests in flight, and returns
//!    a [`LoadgenReport`] with the [`truth::GroundTruth`].
//!
//! Library use: `sluice demo` calls [`run`] in-process with `progress = false` and
//! `proxy_trusted = Some(true)`.
//!
//! Exactness: the truth is exact when every request got an answer (`report.exact`). Visitor
//! counts additionally need the server to trust this host as a proxy (otherwise every
//! request comes from this host's address and visitors collapse to distinct user agents):
//! `--server-config FILE` lets loadgen check `server.trusted-proxies`; without it, loadgen
//! says it cannot tell. Requests the server drops internally (a full click channel, counted
//! in `sluice_click_events_dropped_total`) are invisible from outside.

pub mod attack;
mod client;
pub mod data;
pub mod ips;
pub mod plan;
mod report;
mod runner;
pub mod truth;

#[cfg(test)]
pub(crate) mod test_server;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use url::Url;

pub use attack::AttackKind;
pub use report::{AttackReport, InjectStats, LoadgenReport, RequestStats};
pub use truth::{GroundTruth, LinkTruth};

/// Default of `--max-error-share`: 5 % of the redirect requests may go without a redirect
/// (a loaded server timing out a few requests) before a run counts as failed.
pub const DEFAULT_MAX_ERROR_SHARE: f64 = 0.05;

/// `sluice loadgen`.
#[derive(Debug, Clone, Args)]
pub struct LoadgenArgs {
    /// Origin the redirects are sent to.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_name = "URL")]
    pub target: Url,
    /// Origin of the API (links, events); default: --target.
    #[arg(long, value_name = "URL")]
    pub api: Option<Url>,
    /// Links to create, 1 to 1000000.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub links: usize,
    /// Use these existing codes instead of creating links (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    pub codes: Vec<String>,
    /// Redirect requests per second, 0.01 to 1000000; with --duration it must plan at least
    /// one request (rate × duration ≥ 1).
    #[arg(long, default_value_t = 200.0, value_parser = crate::cli::parse_rate, allow_negative_numbers = true, value_name = "R")]
    pub rate: f64,
    /// How long to send, e.g. 20s, 2m (at most 1day).
    #[arg(long, default_value = "20s", value_parser = crate::cli::parse_run_length, value_name = "D")]
    pub duration: Duration,
    /// Seed of every random choice (same seed, same request sequence).
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,
    /// Write the ground truth as JSON to FILE (its directory must exist; checked before the run).
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,
    /// Bearer token for POST /v1/events (the server's [ingest] token).
    #[arg(long, env = "SLUICE_INGEST_TOKEN", value_name = "T", hide_env_values = true)]
    pub ingest_token: Option<String>,
    /// Most requests in flight at once.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub concurrency: usize,
    /// Per-request timeout, e.g. 10s (more than 0, at most 1h).
    #[arg(long, default_value = "10s", value_parser = crate::cli::parse_request_timeout, value_name = "D")]
    pub timeout: Duration,
    /// Zipf exponent of link popularity.
    #[arg(long, default_value_t = 1.1, value_name = "S")]
    pub zipf: f64,
    /// Share of new visitors that are bots or link-preview fetchers (0..1).
    #[arg(long, default_value_t = 0.07, value_name = "P")]
    pub bot_share: f64,
    /// Share of requests sent as HEAD (0..1; not clicks).
    #[arg(long, default_value_t = 0.03, value_name = "P")]
    pub head_share: f64,
    /// Share of requests from returning visitors (0..1).
    #[arg(long, default_value_t = 0.35, value_name = "P")]
    pub repeat_share: f64,
    /// Late events posted per redirect request (0..1), with past event times.
    #[arg(long, default_value_t = 0.03, value_name = "P")]
    pub late_share: f64,
    /// Exact duplicates re-posted per redirect request (0..1).
    #[arg(long, default_value_t = 0.02, value_name = "P")]
    pub duplicate_share: f64,
    /// Oldest event time of a late event, before now (at least 1s, at most 400days).
    #[arg(long, default_value = "10m", value_parser = crate::cli::parse_lateness, value_name = "D")]
    pub max_lateness: Duration,
    /// The server's visitor salt period: 1d, 7d, 30d or never (read from --server-config when given).
    #[arg(long, value_name = "PERIOD")]
    pub salt_period: Option<String>,
    /// The server's configuration file: salt period, ingest token, and whether it trusts this host's X-Forwarded-For.
    #[arg(long, value_name = "FILE")]
    pub server_config: Option<PathBuf>,
    /// Add an attack on one link: extra requests of this shape on top of the normal traffic, from --attack-start for --attack-duration at --attack-rate; attack requests count as clicks in the ground truth, and the report names the link and the attack window.
    #[arg(long, value_enum, value_name = "SHAPE")]
    pub attack: Option<AttackKind>,
    /// When the attack starts after the first request (default: a third of --duration; at most 1day).
    #[arg(long, value_parser = crate::cli::parse_run_length, value_name = "D", requires = "attack")]
    pub attack_start: Option<Duration>,
    /// How long the attack lasts (default: until the end of the run; at most 1day).
    #[arg(long, value_parser = crate::cli::parse_run_length, value_name = "D", requires = "attack")]
    pub attack_duration: Option<Duration>,
    /// Extra requests per second of the attack, 0.01 to 1000000 (default: --rate, at least 20).
    #[arg(long, value_parser = crate::cli::parse_rate, allow_negative_numbers = true, value_name = "R", requires = "attack")]
    pub attack_rate: Option<f64>,
    /// Code of the attacked link, one of --codes (default: the link of median popularity).
    #[arg(long, value_name = "CODE", requires = "attack")]
    pub attack_code: Option<String>,
    /// Exit 1 (after the report) when more than this share (0..1) of the redirect requests
    /// sent got no redirect: another status than 3xx (404 for codes the server does not
    /// have, 5xx), or no answer at all. A run where no request got a redirect always exits 1.
    #[arg(long, default_value_t = DEFAULT_MAX_ERROR_SHARE, value_name = "P")]
    pub max_error_share: f64,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Set by callers that know whether the server trusts this host as a proxy (`sluice demo`).
    #[arg(skip)]
    pub proxy_trusted: Option<bool>,
}

impl LoadgenArgs {
    /// Defaults of every flag with `target` (for library callers); `ingest_token` comes
    /// from `SLUICE_INGEST_TOKEN` when set.
    ///
    /// # Panics
    /// Only if `SLUICE_INGEST_TOKEN` is set to something that is not UTF-8 (the built-in
    /// defaults always parse).
    pub fn new(target: Url) -> LoadgenArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: LoadgenArgs,
        }
        let mut args = Wrapper::try_parse_from(["loadgen"]).unwrap_or_else(|e| panic!("loadgen defaults do not parse: {e}")).args;
        args.target = target;
        args
    }
}

/// Settings resolved from the arguments (and the server configuration, if given).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub api: Url,
    pub period_ms: Option<i64>,
    pub token: Option<String>,
    pub proxy_trusted: Option<bool>,
}

/// Salt period in ms from its configuration spelling.
pub fn parse_salt_period(s: &str) -> anyhow::Result<Option<i64>> {
    const DAY: i64 = 86_400_000;
    Ok(match s {
        "1d" => Some(DAY),
        "7d" => Some(7 * DAY),
        "30d" => Some(30 * DAY),
        "never" => None,
        other => bail!("salt period must be 1d, 7d, 30d or never, got \"{other}\""),
    })
}

/// The addresses this host connects from when `target` is a loopback URL (`None` for other
/// targets: then the source address cannot be known here).
fn loopback_sources(target: &Url) -> Option<Vec<IpAddr>> {
    let v4 = IpAddr::from([127, 0, 0, 1]);
    let v6 = IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
    match target.host()? {
        url::Host::Ipv4(ip) if ip.is_loopback() => Some(vec![v4]),
        url::Host::Ipv6(ip) if ip.is_loopback() => Some(vec![v6]),
        url::Host::Domain(d) if d.eq_ignore_ascii_case("localhost") => Some(vec![v4, v6]),
        _ => None,
    }
}

/// Most links `--links` creates: 1,000,000 (each is one `POST /v1/links` before the run).
pub const MAX_LINKS: usize = 1_000_000;

/// Whether `--truth` can be written after the run: its directory exists and it is not a
/// directory itself (so a typo does not cost a whole run).
///
/// Errors: what is wrong with the path, naming it.
fn check_truth_path(path: &std::path::Path) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!("--truth \"{}\" is a directory; give a file name", path.display()));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    if !parent.is_dir() {
        let what = if parent.exists() { "is not a directory" } else { "does not exist" };
        return Err(format!("--truth \"{}\": directory \"{}\" {what}", path.display(), parent.display()));
    }
    Ok(())
}

/// Refuses flag values that cannot make a run, before anything is sent: a usage error
/// ([`crate::bench::BenchError::Usage`], exit code 2 as clap's own, like `sluice demo`'s)
/// naming the flag.
/// The attack's window as offsets from the first request: from `--attack-start` (default a
/// third of `--duration`) for `--attack-duration` (default the rest of the run), cut at
/// `--duration`. Empty (at `--duration`) without `--attack`.
pub(crate) fn attack_window(args: &LoadgenArgs) -> std::ops::Range<Duration> {
    if args.attack.is_none() {
        return args.duration..args.duration;
    }
    let at = args.attack_start.unwrap_or(args.duration / 3).min(args.duration);
    at..(at + args.attack_duration.unwrap_or(args.duration)).min(args.duration)
}

/// An `--attack` whose window holds no time sends no attack request: refused up front.
fn check_attack_window(args: &LoadgenArgs) -> Result<(), String> {
    if args.attack.is_none() || !attack_window(args).is_empty() {
        return Ok(());
    }
    let fmt = humantime::format_duration;
    if args.attack_duration.is_some_and(|d| d.is_zero()) {
        return Err("--attack-duration must be positive, e.g. 10s".into());
    }
    let start = args.attack_start.unwrap_or(args.duration / 3);
    Err(format!("--attack-start {} is not before the end of the run (--duration {}): no attack request would be sent", fmt(start), fmt(args.duration)))
}

fn check_args(args: &LoadgenArgs) -> Result<(), crate::bench::BenchError> {
    let usage = |msg: String| Err(crate::bench::BenchError::Usage(msg));
    for (name, p) in [
        ("bot-share", args.bot_share),
        ("head-share", args.head_share),
        ("repeat-share", args.repeat_share),
        ("late-share", args.late_share),
        ("duplicate-share", args.duplicate_share),
        ("max-error-share", args.max_error_share),
    ] {
        if !(0.0..=1.0).contains(&p) {
            return usage(format!("--{name} must be between 0 and 1, got {p}"));
        }
    }
    for (name, url) in [("target", Some(&args.target)), ("api", args.api.as_ref())] {
        if let Some(url) = url.filter(|u| !matches!(u.scheme(), "http" | "https")) {
            return usage(format!("--{name} must be an http:// or https:// URL, got {url}"));
        }
    }
    // The command line refuses these already (crate::cli::parse_rate); library callers set them.
    for (name, rate) in [("rate", Some(args.rate)), ("attack-rate", args.attack_rate)] {
        if let Some(r) = rate.filter(|r| !crate::cli::rate_in_range(*r)) {
            return usage(format!("--{name} must be from {} to {} requests per second, got {r:?}", crate::cli::MIN_RATE, crate::cli::MAX_RATE));
        }
    }
    if args.duration.is_zero() {
        return usage("--duration must be positive".into());
    }
    if args.concurrency == 0 {
        return usage("--concurrency must be positive".into());
    }
    if let Err(e) = crate::cli::check_plans_a_request("rate", args.rate, "duration", args.duration) {
        return usage(e);
    }
    if let Err(e) = check_attack_window(args) {
        return usage(e);
    }
    if args.timeout.is_zero() {
        return usage("--timeout must be positive, e.g. 10s (every request would time out)".into());
    }
    if args.codes.is_empty() && args.links == 0 {
        return usage("--links must be at least 1 (or give --codes)".into());
    }
    if args.links > MAX_LINKS {
        return usage(format!("--links must be at most {MAX_LINKS}, got {}", args.links));
    }
    if let Some(path) = &args.truth
        && let Err(e) = check_truth_path(path)
    {
        return usage(e);
    }
    if !(args.zipf.is_finite() && args.zipf >= 0.0) {
        return usage(format!("--zipf must be a non-negative number, got {}", args.zipf));
    }
    if let Some(bad) = args.codes.iter().find(|c| !sluice_ingest::event_input::is_code(c)) {
        return usage(format!("--codes: \"{bad}\" is not a short code"));
    }
    // Before any link is created (finding: the links were created, then the code refused).
    if let Some(code) = &args.attack_code {
        if args.codes.is_empty() {
            return usage(format!(
                "--attack-code \"{code}\" needs --codes naming it: the links this run creates get their codes from the server (without --attack-code the attack takes the link of median popularity)"
            ));
        }
        if !args.codes.contains(code) {
            return usage(format!("--attack-code \"{code}\" is not one of --codes"));
        }
    }
    if let Some(s) = &args.salt_period
        && let Err(e) = parse_salt_period(s)
    {
        return usage(format!("--salt-period: {e}"));
    }
    if args.max_lateness < Duration::from_secs(1) {
        return usage("--max-lateness must be at least 1s".into());
    }
    Ok(())
}

pub(crate) fn resolve(args: &LoadgenArgs) -> anyhow::Result<Settings> {
    check_args(args)?;
    let server = match &args.server_config {
        Some(path) => Some(crate::config::Config::load(Some(path), &crate::config::FlagOverrides::default()).context("could not read --server-config")?),
        None => None,
    };
    let period_ms = match (&args.salt_period, &server) {
        (Some(s), _) => parse_salt_period(s)?,
        (None, Some(cfg)) => cfg.visitor.salt_period.period_ms(),
        (None, None) => Some(86_400_000),
    };
    let token = args.ingest_token.clone().or_else(|| server.as_ref().and_then(|c| c.ingest.token.as_ref().map(|t| t.0.clone())));
    let proxy_trusted = args.proxy_trusted.or_else(|| {
        let server = server.as_ref()?;
        let (nets, header) = (server.trusted_proxies().ok()?, server.forwarded_header().ok()?);
        let sources = loopback_sources(&args.target)?;
        Some(header.reads_x_forwarded_for() && sources.iter().all(|ip| nets.iter().any(|n| n.contains(ip))))
    });
    Ok(Settings { api: args.api.clone().unwrap_or_else(|| args.target.clone()), period_ms, token, proxy_trusted })
}

/// Runs the generator (see the module docs) and returns its report; writes `--truth`.
///
/// Errors: invalid arguments, the API refusing to create links, an unreachable target, or
/// a `--truth` file that cannot be written. Failed individual requests are not errors:
/// they are counted in the report.
pub async fn run(args: &LoadgenArgs) -> anyhow::Result<LoadgenReport> {
    let settings = resolve(args)?;
    let report = runner::run(args, &settings).await?;
    if let Some(path) = &args.truth {
        let text = serde_json::to_string_pretty(&report.truth)?;
        std::fs::write(path, text + "\n").with_context(|| format!("could not write --truth \"{}\"", path.display()))?;
    }
    Ok(report)
}

/// `sluice loadgen` on the command line: [`run`], then the report on stdout, then the exit
/// status ([`LoadgenReport::outcome`] with `--max-error-share`): an error when no redirect
/// request got a redirect, or when too many got none.
pub async fn run_cli(args: &LoadgenArgs) -> anyhow::Result<()> {
    let report = run(args).await?;
    let mut out = std::io::stdout().lock();
    let printed = report.print(&mut out, 20).and_then(|()| std::io::Write::flush(&mut out)).map_err(crate::stdout::write_error);
    drop(out);
    // A closed output (`| head -1`) loses only the rest of the report: the exit status still
    // says whether the server redirected.
    if let Err(e) = printed
        && !crate::stdout::is_closed(&e)
    {
        return Err(e);
    }
    report.outcome(&args.target, args.max_error_share)
}
