//! `sluice bench freshness`: how long a click takes to become visible in
//! `GET /v1/links/{code}/stats`, measured from outside like a dashboard would see it.
//!
//! Probe clicks are real redirects (`GET /{code}`, a desktop browser user agent, never
//! followed) fired at a steady `--rate` round-robin over `--probe-links` dedicated links,
//! so each link has at most one probe in flight. For the n-th probe of a link, the bench
//! polls that link's stats (`bucket=minute`, every `--poll`) until `totals.clicks` +
//! `totals.bot_clicks` reaches n (a probe over the flood cap counts as a bot click). Side by side, for the same click:
//! * **redirect answered**: the 302 arrived;
//! * **in the click log**: a tail of the embedded log saw the event (in-process server
//!   only; the log is held by the server process);
//! * **visible in the stats API**: the answer counts it.
//!
//! All lags are from the moment before the request was sent. Optional background traffic
//! (`--load` redirects/s of the loadgen mix on other links) runs meanwhile. By default the
//! bench starts a complete in-process server (the same [`System`] as `sluice serve`) in a
//! temporary directory; `--target URL` measures a running server instead.
//!
//! Baseline: the original specification's freshness target, 60 s click → dashboard; ours
//! is p99 ≤ 1 s. The last line reads
//! `freshness p50 <a> ms, p99 <b> ms (target p99 <= 1000 ms; original spec 60000 ms)`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use parking_lot::Mutex;
use serde_json::json;
use sluice_connectors::click_log::ClickLog;
use sluice_schemas::avro::decode_click_event;
use tokio::task::JoinSet;
use url::Url;

use crate::config::{Config, DEFAULT_TOML};
use crate::demo::check::{percentile, q_instant};
use crate::job::system::System;
use crate::loadgen::{self, LoadgenArgs};

/// A current desktop browser (a human click).
const BROWSER_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
/// A probe not visible after this long counts as lost.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// How much longer than the probes the background traffic runs (so it covers them all).
const BACKGROUND_EXTRA: Duration = Duration::from_secs(1);

/// Arguments of `sluice bench freshness`.
#[derive(clap::Args, Debug, Clone)]
pub struct FreshnessBenchArgs {
    /// Probe clicks per second, 0.01 to 1000000; with --duration it must plan at least one
    /// probe (rate × duration ≥ 1).
    #[arg(long, default_value_t = 20.0, value_parser = crate::cli::parse_rate, allow_negative_numbers = true, value_name = "R")]
    pub rate: f64,
    /// How long to fire probes, e.g. 30s (at most 1day).
    #[arg(long, default_value = "30s", value_parser = crate::cli::parse_run_length, value_name = "D")]
    pub duration: Duration,
    /// Background redirects per second (loadgen mix, on other links) during the run: 0 = none,
    /// else 0.01 to 1000000.
    #[arg(long, default_value_t = 500.0, value_name = "R")]
    pub load: f64,
    /// Dedicated probe links (round-robin).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub probe_links: usize,
    /// How often each in-flight probe polls the stats API.
    #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration, value_name = "D")]
    pub poll: Duration,
    /// Measure a running server at this origin instead of an in-process one (no click-log column).
    /// The run creates its probe links (`fresh-<run id>-<n>`) and the background links on
    /// that server and leaves them and their clicks there (they show in its stats, summaries
    /// and report jobs): point it at a test server, not at production.
    #[arg(long, value_name = "URL")]
    pub target: Option<Url>,
    /// Configuration file of the in-process server (same keys as `sluice serve`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Seed of the background traffic.
    #[arg(long, default_value_t = 11, value_name = "S")]
    pub seed: u64,
}

#[derive(Default)]
struct Landed {
    /// Probe code → instants its clicks were seen in the log, in log order.
    seen: HashMap<String, Vec<Instant>>,
}

/// Follows `log` from its head and notes when clicks of `codes` land.
async fn watch_log(log: ClickLog, codes: Vec<String>, landed: Arc<Mutex<Landed>>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut heads = log.subscribe();
    let mut next = log.head();
    loop {
        if *stop.borrow() {
            break;
        }
        if next >= log.head() {
            tokio::select! {
                r = heads.changed() => if r.is_err() { break },
                _ = stop.changed() => {}
            }
            continue;
        }
        let l = log.clone();
        let Ok(Ok(raw)) = tokio::task::spawn_blocking(move || l.read_raw(next, 4096)).await else { break };
        let now = Instant::now();
        let mut l = landed.lock();
        for (offset, bytes) in raw {
            next = offset + 1;
            if let Ok(ev) = decode_click_event(&bytes)
                && codes.contains(&ev.code)
            {
                l.seen.entry(ev.code).or_default().push(now);
            }
        }
    }
}

/// One probe's lags from the moment before sending, ms.
#[derive(Debug, Clone, Copy)]
struct Sample {
    answered: f64,
    logged: Option<f64>,
    visible: f64,
}

async fn create_links(client: &reqwest::Client, base: &Url, n: usize) -> anyhow::Result<Vec<String>> {
    let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let mut codes = Vec::with_capacity(n);
    for i in 0..n {
        let alias = format!("fresh-{tag}-{i}");
        let resp = client
            .post(format!("{}v1/links", base.as_str()))
            .json(&json!({"long_url": format!("https://example.com/freshness/{i}"), "custom_alias": alias}))
            .send()
            .await
            .context("could not create a probe link")?;
        if resp.status() != reqwest::StatusCode::CREATED {
            bail!("creating probe link \"{alias}\": {} {}", resp.status(), resp.text().await.unwrap_or_default());
        }
        codes.push(alias);
    }
    Ok(codes)
}

/// Fires one probe (the `nth` click of `code`) and measures it.
#[allow(clippy::too_many_arguments)]
async fn probe(
    redirects: reqwest::Client,
    api: reqwest::Client,
    base: Url,
    code: String,
    nth: u64,
    stats_query: String,
    poll: Duration,
    landed: Option<Arc<Mutex<Landed>>>,
) -> anyhow::Result<Sample> {
    let t0 = Instant::now();
    let resp = redirects.get(format!("{}{code}", base.as_str())).header("user-agent", BROWSER_UA).send().await.context("probe redirect failed")?;
    if !resp.status().is_redirection() {
        bail!("probe redirect for \"{code}\" answered {}", resp.status());
    }
    let answered = t0.elapsed();
    let url = format!("{}v1/links/{code}/stats?{stats_query}", base.as_str());
    let mut logged = None;
    loop {
        if let (None, Some(l)) = (logged, &landed)
            && let Some(t) = l.lock().seen.get(&code).and_then(|v| v.get(nth as usize - 1))
        {
            logged = Some(t.saturating_duration_since(t0));
        }
        let body: serde_json::Value = api.get(&url).send().await?.json().await?;
        // Bot clicks count too: the probes are one visitor clicking each link once a second,
        // so a probe link's 31st click in one UTC minute is over the flood cap
        // (`[dataflow.abuse.flood-cap]`, 30 per visitor, link and minute) and is counted as
        // a bot click; it is visible all the same.
        let seen = body["totals"]["clicks"].as_u64().unwrap_or(0) + body["totals"]["bot_clicks"].as_u64().unwrap_or(0);
        if seen >= nth {
            let visible = t0.elapsed();
            if let (None, Some(l)) = (logged, &landed) {
                logged = l.lock().seen.get(&code).and_then(|v| v.get(nth as usize - 1)).map(|t| t.saturating_duration_since(t0));
            }
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            return Ok(Sample { answered: ms(answered), logged: logged.map(ms), visible: ms(visible) });
        }
        if t0.elapsed() > PROBE_TIMEOUT {
            bail!("probe click on \"{code}\" not visible after {PROBE_TIMEOUT:?}");
        }
        tokio::time::sleep(poll).await;
    }
}

fn row(name: &str, mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return format!("  {name:<24} {:>9}", "n/a");
    }
    v.sort_by(f64::total_cmp);
    let scaled: Vec<i64> = v.iter().map(|x| (x * 1000.0).round() as i64).collect();
    let p = |q: f64| percentile(&scaled, q).map_or(0.0, |x| x as f64 / 1000.0);
    format!("  {name:<24} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}", p(50.0), p(90.0), p(99.0), v[v.len() - 1], v.iter().sum::<f64>() / v.len() as f64)
}

/// Refuses arguments that cannot make a run, before anything starts.
///
/// Errors: [`crate::bench::BenchError::Usage`] (exit code 2) naming the flag.
fn check_args(args: &FreshnessBenchArgs) -> anyhow::Result<()> {
    let usage = |msg: String| Err(crate::bench::BenchError::Usage(msg).into());
    if !crate::cli::rate_in_range(args.rate) {
        // The command line refuses it already (crate::cli::parse_rate); library callers set it.
        return usage(format!("--rate must be from {} to {} requests per second, got {:?}", crate::cli::MIN_RATE, crate::cli::MAX_RATE, args.rate));
    }
    if let Some(url) = args.target.as_ref().filter(|u| !matches!(u.scheme(), "http" | "https")) {
        return usage(format!("--target must be an http:// or https:// URL, got {url}"));
    }
    if args.duration.is_zero() || args.probe_links == 0 || args.poll.is_zero() {
        return usage("--duration, --probe-links and --poll must be positive".into());
    }
    if let Err(e) = crate::cli::check_plans_a_request("rate", args.rate, "duration", args.duration) {
        return usage(e);
    }
    if args.load != 0.0 && !crate::cli::rate_in_range(args.load) {
        return usage(format!("--load must be 0 (none) or from {} to {} requests per second, got {:?}", crate::cli::MIN_RATE, crate::cli::MAX_RATE, args.load));
    }
    // The background traffic runs for --duration + 1 s (BACKGROUND_EXTRA).
    if args.load != 0.0 && args.load * (args.duration + BACKGROUND_EXTRA).as_secs_f64() < 1.0 {
        return usage(format!(
            "--load {} × --duration {} (+1s) plans no background request; give a higher --load, a longer --duration, or --load 0 (none)",
            args.load,
            humantime::format_duration(args.duration)
        ));
    }
    Ok(())
}

/// Runs the benchmark (module docs) and prints the report.
///
/// Errors: invalid arguments ([`crate::bench::BenchError::Usage`], exit code 2), the server cannot start or be reached, a probe fails.
pub fn run(args: FreshnessBenchArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("sluice-bench").build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: FreshnessBenchArgs) -> anyhow::Result<()> {
    let mut temp = None;
    let system = match &args.target {
        Some(_) => None,
        None => {
            let dir = std::env::temp_dir().join(format!("sluice-bench-freshness-{}-{:08x}", std::process::id(), rand::random::<u32>()));
            let mut cfg: Config = match &args.config {
                Some(p) => Config::load(Some(p), &crate::config::FlagOverrides::default())?,
                None => toml::from_str(DEFAULT_TOML).context("built-in defaults")?,
            };
            cfg.server.data_dir = dir.clone();
            cfg.server.trusted_proxies.push("127.0.0.1".into());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            cfg.server.listen = listener.local_addr()?;
            temp = Some(dir);
            let system = System::start(cfg, listener).await?;
            // Requests before the start-up work is done are 503 `starting` (crate::start_gate).
            system.start_gate().wait_open().await;
            Some(system)
        }
    };
    let base = match (&args.target, &system) {
        (Some(t), _) => t.clone(),
        (None, Some(s)) => s.url(),
        (None, None) => unreachable!("a system is started without --target"),
    };
    let api = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(10)).build()?;
    let codes = create_links(&api, &base, args.probe_links).await?;
    let landed = system.as_ref().and_then(System::click_log).map(|_| Arc::new(Mutex::new(Landed::default())));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let watcher = match (system.as_ref().and_then(System::click_log), &landed) {
        (Some(log), Some(l)) => Some(tokio::spawn(watch_log(log.clone(), codes.clone(), Arc::clone(l), stop_rx))),
        _ => None,
    };
    let background = (args.load > 0.0).then(|| {
        let mut lg = LoadgenArgs::new(base.clone());
        lg.rate = args.load;
        lg.duration = args.duration + BACKGROUND_EXTRA;
        lg.seed = args.seed;
        lg.quiet = true;
        lg.proxy_trusted = Some(true);
        tokio::spawn(async move { loadgen::run(&lg).await })
    });
    let start_ms = crate::job::now_ms();
    let from = start_ms.div_euclid(60_000) * 60_000 - 60_000;
    let to = from + (args.duration.as_secs() as i64 / 60 + 15) * 60_000;
    let stats_query = format!("bucket=minute&from={}&to={}", q_instant(from), q_instant(to));
    // A closed output (`| head -1`) skips the measurement and ends quietly after the stop.
    let header = crate::stdout::println(&format!(
        "sluice bench freshness: {:.0} probe clicks/s for {:.0} s over {} links, background {:.0} redirects/s, polling every {:?}, {}",
        args.rate,
        args.duration.as_secs_f64(),
        codes.len(),
        args.load,
        args.poll,
        match &system {
            Some(s) =>
                format!("in-process server ({} dataflow worker(s), apply-interval {:?})", s.config().dataflow.workers, s.config().dataflow.apply_interval),
            None => format!("server at {base}"),
        }
    ));
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let t0 = tokio::time::Instant::now();
    let mut counts = vec![0u64; codes.len()];
    let mut probes = JoinSet::new();
    let mut i = 0usize;
    // Probe i is due i × interval after the start, strictly before the end: the count is
    // fixed by rate and duration, not by how late the loop wakes.
    while header.is_ok() && interval.mul_f64(i as f64) < args.duration {
        tokio::time::sleep_until(t0 + interval.mul_f64(i as f64)).await;
        let k = i % codes.len();
        counts[k] += 1;
        probes.spawn(probe(redirects.clone(), api.clone(), base.clone(), codes[k].clone(), counts[k], stats_query.clone(), args.poll, landed.clone()));
        i += 1;
    }
    let mut samples = Vec::new();
    let mut failures = 0;
    while let Some(r) = probes.join_next().await {
        match r.context("probe task failed")? {
            Ok(s) => samples.push(s),
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "probe failed");
            }
        }
    }
    let _ = stop.send(true);
    if let Some(w) = watcher {
        let _ = w.await;
    }
    let mut report = String::new();
    if let Some(bg) = background {
        if header.is_err() {
            bg.abort();
        } else {
            let r = bg.await.context("background traffic task failed")??;
            report.push_str(&format!("  background: {} requests answered at {:.0}/s\n", r.requests.answered, r.achieved_rate));
        }
    }
    report.push_str(&format!("  {} probes measured, {} failed; lag from sending the click, ms:\n", samples.len(), failures));
    report.push_str(&format!("  {:<24} {:>9} {:>9} {:>9} {:>9} {:>9}\n", "", "p50", "p90", "p99", "max", "mean"));
    report.push_str(&format!("{}\n", row("redirect answered", samples.iter().map(|s| s.answered).collect())));
    report.push_str(&format!("{}\n", row("in the click log", samples.iter().filter_map(|s| s.logged).collect())));
    report.push_str(&format!("{}\n", row("visible in stats API", samples.iter().map(|s| s.visible).collect())));
    let printed = header.and_then(|()| crate::stdout::print(&report));
    if let Some(s) = system {
        s.shutdown().await?;
    }
    if let Some(dir) = temp {
        let _ = std::fs::remove_dir_all(dir);
    }
    printed?;
    let mut vis: Vec<i64> = samples.iter().map(|s| s.visible.round() as i64).collect();
    vis.sort_unstable();
    let (p50, p99) = (percentile(&vis, 50.0).unwrap_or(0), percentile(&vis, 99.0).unwrap_or(0));
    crate::stdout::println(&format!("freshness p50 {p50} ms, p99 {p99} ms (target p99 <= 1000 ms; original spec 60000 ms)"))?;
    if failures > 0 {
        bail!("{failures} probes failed");
    }
    Ok(())
}
