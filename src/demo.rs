//! `sluice demo`: the whole system on real data in one command.
//!
//! 1. Starts a complete Sluice process ([`System`]) on the embedded defaults in a
//!    temporary directory (or `--data-dir`, or `[server] data-dir` of the configuration),
//!    on 127.0.0.1:8080 or a free port (or `--listen`, or `[server] listen`), trusting loopback as a proxy so the
//!    generator's `X-Forwarded-For` addresses give real countries and exact visitors.
//! 2. Runs `sluice loadgen` in-process against it for `--duration` (20 s): real user
//!    agents (~7 % bots and link-preview fetchers), GeoIP addresses, referrers, Zipf link
//!    popularity, `HEAD`s, late events and exact duplicates through `POST /v1/events`;
//!    meanwhile samples the stats API's `freshness.lag_ms`.
//! 3. Waits until every click is counted, then reads `/v1/links/{code}/stats` for every
//!    link like any client and compares with the generator's exact ground truth
//!    ([`check`]: clicks and bot clicks exactly, uniques within the HLL bound).
//! 4. Prints the report (top links vs truth, country/device/browser breakdowns, freshness,
//!    throughput) and keeps serving at the printed URL until Ctrl-C — or, with
//!    `--exit-after`, stops and returns whether everything matched.
//!
//! Ctrl-C / SIGTERM before the report (while the system starts, during the traffic or the
//! wait) stops the system gracefully, removes the temporary data directory (never a
//! `--data-dir`) and exits with 128 + the signal's number (130, 143); a second signal exits
//! at once, still removing it. After the report the signals stop the server as in
//! `sluice serve`.

pub mod check;
mod report;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use parking_lot::Mutex;
use tokio::net::TcpListener;

use crate::config::{Config, FlagOverrides, Given, SaltPeriod};
use crate::job::system::{Start, System};
use crate::loadgen::{self, LoadgenArgs};
use crate::serve::{StopSignal, StopSignals};

/// `sluice demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Data directory, kept at exit (default: [server] data-dir when the --config file or SLUICE__SERVER__DATA_DIR sets it, else a fresh temporary directory, removed at exit).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to serve on (an error if taken). Default: [server] listen when the --config file or SLUICE__SERVER__LISTEN sets it (an error if taken too), else 127.0.0.1:8080, or a free loopback port if that is taken.
    #[arg(long, value_name = "ADDR", value_parser = crate::cli::parse_listen)]
    pub listen: Option<SocketAddr>,
    /// How long to generate traffic, e.g. 20s (at most 1day).
    #[arg(long, default_value = "20s", value_parser = crate::cli::parse_run_length, value_name = "D")]
    pub duration: Duration,
    /// Redirect requests per second, 0.01 to 1000000; with --duration it must plan at least
    /// one request (rate × duration ≥ 1).
    #[arg(long, default_value_t = 300.0, value_parser = crate::cli::parse_rate, allow_negative_numbers = true, value_name = "R")]
    pub rate: f64,
    /// Links to create, 1 to 1000000.
    #[arg(long, default_value_t = 25, value_name = "N")]
    pub links: usize,
    /// Seed of the traffic.
    #[arg(long, default_value_t = 7, value_name = "S")]
    pub seed: u64,
    /// Exit after the report: status 0 if the stats match the ground truth, 1 otherwise.
    #[arg(long)]
    pub exit_after: bool,
    /// Configuration file (same keys as `sluice serve`; the demo adds loopback to the trusted proxies).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

const DEFAULT_LISTEN: std::net::SocketAddr = std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);
/// How long the demo waits for the dataflow to count everything after the traffic.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// Interval of freshness samples during the run.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// A temporary data directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> anyhow::Result<TempDir> {
        let name = format!("sluice-demo-{}-{:08x}", std::process::id(), rand::random::<u32>());
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).with_context(|| format!("could not create \"{}\"", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn salt_period_name(p: SaltPeriod) -> &'static str {
    match p {
        SaltPeriod::Day => "1d",
        SaltPeriod::Week => "7d",
        SaltPeriod::Month => "30d",
        SaltPeriod::Never => "never",
    }
}

/// The demo's configuration: `--config`/env/defaults, `--data-dir` and `--listen`, loopback
/// trusted, and `X-Forwarded-For` read (its load generator's visitors are addresses in that
/// header); with whether the file or the environment set the data dir and the listen address
/// (else the demo takes a temporary dir and a free port, as without the flags).
fn demo_config(args: &DemoArgs) -> anyhow::Result<(Config, Given)> {
    let flags = FlagOverrides { data_dir: args.data_dir.clone(), listen: args.listen, ..FlagOverrides::default() };
    let (mut cfg, given) = Config::load_noting_given(args.config.as_deref(), &flags)?;
    for p in ["127.0.0.1", "::1"] {
        if !cfg.server.trusted_proxies.iter().any(|t| t == p) {
            cfg.server.trusted_proxies.push(p.to_string());
        }
    }
    if !cfg.forwarded_header()?.reads_x_forwarded_for() {
        tracing::warn!(configured = %cfg.server.forwarded_header, "the demo reads X-Forwarded-For (its load generator's visitors): server.forwarded-header set to auto");
        cfg.server.forwarded_header = "auto".into();
    }
    Ok((cfg, given))
}

/// Listens on `listen` (given by `--listen` or the configuration: an error if taken), else
/// on [`DEFAULT_LISTEN`] or a free loopback port.
async fn bind(listen: Option<SocketAddr>) -> anyhow::Result<TcpListener> {
    if let Some(addr) = listen {
        return crate::http_listener::bind(addr).with_context(|| format!("could not listen on {addr}"));
    }
    match crate::http_listener::bind(DEFAULT_LISTEN) {
        Ok(l) => Ok(l),
        Err(_) => crate::http_listener::bind(std::net::SocketAddr::new(DEFAULT_LISTEN.ip(), 0)).context("could not listen on a loopback port"),
    }
}

/// Samples `freshness.lag_ms` of `/v1/stats/summary` until `done` is set.
async fn sample_freshness(client: reqwest::Client, base: url::Url, done: Arc<std::sync::atomic::AtomicBool>, samples: Arc<Mutex<Vec<i64>>>) {
    let url = format!("{}v1/stats/summary?limit=1", base.as_str());
    while !done.load(std::sync::atomic::Ordering::Acquire) {
        if let Ok(r) = client.get(&url).send().await
            && let Ok(v) = r.json::<serde_json::Value>().await
            && let Some(lag) = v["freshness"]["lag_ms"].as_i64()
        {
            samples.lock().push(lag);
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// The demo was stopped by Ctrl-C / SIGTERM before its report (module docs): the process
/// exits with 128 + the signal's number ([`exit_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted {
    /// `"SIGINT"` or `"SIGTERM"`.
    pub signal: &'static str,
    /// The signal's number (2 or 15).
    pub number: i32,
    /// Whether the demo's temporary data dir was removed (no `--data-dir` given).
    pub removed_temp_dir: bool,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "demo interrupted by {}", self.signal)?;
        if self.removed_temp_dir { f.write_str("; its temporary data dir was removed") } else { Ok(()) }
    }
}

impl std::error::Error for Interrupted {}

/// The exit code of a demo that failed with `e`: 128 + the signal's number when `e` is (or
/// wraps) an [`Interrupted`] (130 for SIGINT, 143 for SIGTERM), `None` otherwise.
pub fn exit_code(e: &anyhow::Error) -> Option<u8> {
    e.chain().find_map(|c| c.downcast_ref::<Interrupted>()).and_then(|i| u8::try_from(128 + i.number).ok())
}

/// Stops the demo after the stop signal `sig` arrived before its report: stops `system`
/// gracefully (when started) and removes the temporary data dir `temp` (when the demo
/// created one). A second signal during the stop exits at once with 128 + its number,
/// still removing the temporary dir. Returns the [`Interrupted`] error to end with.
async fn interrupted(sig: StopSignal, system: Option<System>, temp: Option<TempDir>, mut signals: StopSignals) -> anyhow::Error {
    let at = Instant::now();
    tracing::info!(signal = sig.name(), "stopping the demo");
    let temp_path = temp.as_ref().map(|t| t.0.clone());
    let second = tokio::spawn(async move {
        let second = signals.next_after(sig, at).await;
        tracing::warn!(signal = second.name(), "second stop signal: exiting now");
        if let Some(p) = temp_path {
            let _ = std::fs::remove_dir_all(p);
        }
        crate::serve::exit_now(128 + second.number());
    });
    if let Some(system) = system
        && let Err(e) = system.shutdown().await
    {
        tracing::warn!(error = %format!("{e:#}"), "the demo's server did not stop cleanly");
    }
    second.abort();
    let removed_temp_dir = temp.is_some();
    drop(temp);
    anyhow::Error::new(Interrupted { signal: sig.name(), number: sig.number(), removed_temp_dir })
}

/// Binds the listener ([`bind`] `listen`) and starts the complete system `cfg` describes, unless
/// `stop` resolves first ([`System::start_or_stop`]: what the start created is removed then).
async fn start<S>(mut cfg: Config, listen: Option<SocketAddr>, stop: impl std::future::Future<Output = S>) -> anyhow::Result<Start<S>> {
    let listener = bind(listen).await?;
    cfg.server.listen = listener.local_addr()?;
    System::start_or_stop(cfg, listener, stop).await
}

/// Refuses traffic settings that cannot make a demo, and a `--data-dir` that is a file,
/// before anything starts (the load generator would refuse them only after the server is up,
/// naming its own flags). Exit code 2 as for clap's own argument errors
/// ([`crate::bench::BenchError::Usage`]).
fn check_args(args: &DemoArgs) -> anyhow::Result<()> {
    let usage = |msg: String| Err(crate::bench::BenchError::Usage(msg).into());
    if args.duration.is_zero() {
        return usage("--duration must be positive, e.g. 20s".into());
    }
    if !crate::cli::rate_in_range(args.rate) {
        // The command line refuses it already (crate::cli::parse_rate); library callers set it.
        return usage(format!("--rate must be from {} to {} requests per second, got {:?}", crate::cli::MIN_RATE, crate::cli::MAX_RATE, args.rate));
    }
    if let Err(e) = crate::cli::check_plans_a_request("rate", args.rate, "duration", args.duration) {
        return usage(e);
    }
    if args.links == 0 {
        return usage("--links must be at least 1".into());
    }
    if args.links > crate::loadgen::MAX_LINKS {
        return usage(format!("--links must be at most {}, got {}", crate::loadgen::MAX_LINKS, args.links));
    }
    // A configured data dir (`[server] data-dir`) is checked once the configuration is read.
    if let Some(dir) = &args.data_dir {
        crate::config::refuse_non_directory(dir)?;
    }
    Ok(())
}

/// Runs the demo (module docs); returns whether the stats matched the ground truth.
///
/// Ctrl-C / SIGTERM before the report stops the system gracefully, removes the temporary
/// data dir (not a `--data-dir`) and ends with [`Interrupted`]; after the report they stop
/// the server as in `sluice serve`.
///
/// Errors: the system cannot start (port, data directory), the generator cannot create
/// links, or the dataflow does not catch up within two minutes; [`Interrupted`].
pub async fn run(args: DemoArgs) -> anyhow::Result<bool> {
    check_args(&args)?;
    let (mut cfg, given) = demo_config(&args)?;
    // `--data-dir`, or `[server] data-dir` set by the file or the environment, as `serve`
    // takes it (kept at exit); else a temporary one.
    let own_dir = args.data_dir.is_some() || given.data_dir;
    if own_dir {
        crate::config::refuse_non_directory(&cfg.server.data_dir)?;
    }
    let listen = (args.listen.is_some() || given.listen).then_some(cfg.server.listen);
    // Listened to from the start: without a handler a signal would end the process at once,
    // leaving the temporary data dir behind.
    let mut signals = StopSignals::listen();
    let temp = if own_dir { None } else { Some(TempDir::create()?) };
    if let Some(t) = &temp {
        cfg.server.data_dir = t.0.clone();
    }
    let data_dir = cfg.server.data_dir.clone();
    let system = match start(cfg, listen, signals.next()).await? {
        Start::Started(system) => *system,
        Start::Stopped(sig) => return Err(interrupted(sig, None, temp, signals).await),
    };
    let measured = tokio::select! {
        r = measure(&args, &system, &data_dir) => r,
        sig = signals.next() => return Err(interrupted(sig, Some(system), temp, signals).await),
    };
    let (ok, url, checks) = match measured {
        Ok(m) => m,
        // The reader of the report went away (`sluice demo | head -1`): stop quietly.
        Err(e) if crate::stdout::is_closed(&e) => return closed_output(e, system, temp).await,
        Err(e) => return Err(e),
    };

    if args.exit_after {
        system.shutdown().await?;
        return Ok(ok);
    }
    let mut hint = format!("\nSluice keeps serving at {url} — try:\n");
    if let Some(top) = checks.first() {
        hint.push_str(&format!("  curl -s '{url}v1/links/{}/stats?bucket=minute&dimensions=country' | jq\n", top.code));
        hint.push_str(&format!("  curl -si {url}{}\n", top.code));
    }
    hint.push_str(&format!("  curl -s '{url}v1/stats/summary' | jq\n"));
    hint.push_str(&format!("  curl -s {url}v1/openapi.json | jq '.paths | keys'\n"));
    hint.push_str("Press Ctrl-C to stop (twice to skip the graceful stop).\n");
    if let Err(e) = crate::stdout::print(&hint) {
        return if crate::stdout::is_closed(&e) { closed_output(e, system, temp).await } else { Err(e) };
    }
    let temp_path = temp.as_ref().map(|t| t.0.clone());
    crate::serve::serve_until_stopped(system, signals, move || {
        if let Some(p) = temp_path {
            let _ = std::fs::remove_dir_all(p);
        }
    })
    .await?;
    drop(temp);
    Ok(ok)
}

/// Ends the demo whose standard output was closed ([`crate::stdout::OutputClosed`] `e`):
/// stops `system` gracefully and removes the temporary data dir, then returns `e` (the binary
/// exits with status 0, quietly). Nobody reads what the demo would print, so it does not keep
/// serving either.
async fn closed_output(e: anyhow::Error, system: System, temp: Option<TempDir>) -> anyhow::Result<bool> {
    tracing::info!("standard output closed: stopping the demo");
    if let Err(stop) = system.shutdown().await {
        tracing::warn!(error = %format!("{stop:#}"), "the demo's server did not stop cleanly");
    }
    drop(temp);
    Err(e)
}

/// The traffic, the wait until it is counted, the checks and the report: whether every
/// link matched, the server's URL and the per-link checks.
async fn measure(args: &DemoArgs, system: &System, data_dir: &std::path::Path) -> anyhow::Result<(bool, url::Url, Vec<check::LinkCheck>)> {
    // The server answers 503 `starting` until its start-up work is done (crate::start_gate).
    system.start_gate().wait_open().await;
    let url = system.url();
    crate::stdout::println(&format!("Sluice demo: serving {url} (data dir {})", data_dir.display()))?;
    crate::stdout::println(&format!(
        "Generating {} s of traffic: {} links, {:.0} redirects/s with real user agents, GeoIP addresses and referrers,\n  plus late events and exact duplicates through POST /v1/events ...",
        args.duration.as_secs_f64(),
        args.links,
        args.rate
    ))?;

    let mut lg = LoadgenArgs::new(url.clone());
    lg.links = args.links;
    lg.rate = args.rate;
    lg.duration = args.duration;
    lg.seed = args.seed;
    lg.quiet = args.exit_after;
    lg.proxy_trusted = Some(true);
    lg.salt_period = Some(salt_period_name(system.config().visitor.salt_period).to_string());
    lg.ingest_token = system.config().ingest.token.as_ref().map(|t| t.0.clone());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = tokio::spawn(sample_freshness(client.clone(), url.clone(), Arc::clone(&done), Arc::clone(&samples)));
    let received_before = system.job().map_or(0, |j| j.stats().received);
    let started_ms = crate::job::now_ms();
    let t0 = Instant::now();
    let outcome = loadgen::run(&lg).await;
    done.store(true, std::sync::atomic::Ordering::Release);
    let _ = sampler.await;
    let lg_report = outcome.context("the traffic generator failed")?;
    let sync_started = Instant::now();
    system.sync(SYNC_TIMEOUT).await?;
    let catch_up = sync_started.elapsed();
    let elapsed = t0.elapsed();
    let received = system.job().map_or(0, |j| j.stats().received) - received_before;

    // Every event time lies within [start − max lateness, now]; whole minutes around it.
    let max_late_ms = i64::try_from(lg.max_lateness.as_millis()).unwrap_or(i64::MAX);
    let from_ms = (started_ms - max_late_ms - 60_000).div_euclid(60_000) * 60_000;
    let to_ms = (crate::job::now_ms() + 60_000).div_euclid(60_000) * 60_000 + 60_000;
    let checks = check::check_links(&client, &url, &lg_report.truth, from_ms, to_ms).await?;
    let mut lags = samples.lock().clone();
    lags.sort_unstable();
    let input = report::Input { url: url.clone(), loadgen: &lg_report, checks: &checks, lags: &lags, received, elapsed, catch_up, from_ms, to_ms };
    let ok = report::print(&client, input).await?;
    Ok((ok, url, checks))
}
