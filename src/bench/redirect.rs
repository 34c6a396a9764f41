//! `sluice bench redirect`: redirect throughput and latency of the real `sluice serve`
//! binary, side by side with nginx answering a static `return 302`, on loopback, under the
//! same load generators.
//!
//! One run:
//! 1. starts `sluice serve` (this executable, or `--sluice`) on a free 127.0.0.1 port with a
//!    temp data dir and creates `--links` links through `POST /v1/links`, all to
//!    `https://example.com/target`; starts nginx (`infra/bench/nginx-redirect.conf`: own
//!    pid/log/temp paths in the temp dir, `access_log off`, `return 302` to the same URL);
//! 2. **max rate**: `wrk` (`infra/bench/redirect.lua`: uniformly random codes from the
//!    list, browser-like headers) for `--duration` after a `--warmup`, `--rounds` times per
//!    target, sluice and nginx alternating so drift on a shared machine hits both alike;
//!    the median round is reported (closed-loop p50/p99 at max rate come from wrk);
//! 3. **paced**: the constant-rate client ([`paced`]) at `--paced-fraction` (½) of each
//!    target's median max rate, latency measured from each request's due time;
//! 4. **cache miss**: sluice restarted on the same data dir with an L1 of
//!    `--miss-cache-capacity` entries (16 ≪ `--links`), so nearly every request is an L1
//!    miss served by a store read plus a cache insert (the measured hit ratio is printed);
//!    unknown codes would exercise the negative cache instead, a different path;
//! 5. prints the table and the target verdicts (≥ 0.8× nginx's req/s on cache hits;
//!    p99 ≤ 2 ms at half the max rate), stops every child (also on error, Ctrl-C or
//!    SIGTERM) and removes the temp dir.
//!
//! Fairness: servers and load generators are pinned apart with `taskset` (first half of
//! the CPUs serve, the rest load; `--server-cpus`/`--client-cpus` override, `--no-pin`
//! disables). sluice gets as many tokio workers as server CPUs and nginx as many worker
//! processes; everything else sluice runs (click log writer, SQLite) shares those CPUs.
//! All of them run at `--nice` (default -10 when started at niceness 0; a caller's own
//! `nice` is kept) so that background work on a shared machine takes less of their CPUs. Clicks go to the click log as in production.

pub mod args;
pub mod child;
pub mod paced;
pub mod procs;
pub mod report;
pub mod threads;
pub mod wrk;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

pub use self::args::RedirectBenchArgs;
use self::child::{ChildProc, OnParentDeath};
use self::paced::PacedConfig;
use self::procs::{CpuPlan, TempDir, current_nice, effective_nice, find_program, free_port};
use self::report::{Placement, Setup, SluiceCounters, TargetResult};
use self::wrk::WrkRun;
use crate::bench::BenchError;

/// The redirect target of every benchmark link and of nginx's `return 302`.
pub const LOCATION: &str = "https://example.com/target";

const NGINX_TEMPLATE: &str = include_str!("../../infra/bench/nginx-redirect.conf");
const INSTALL_HINT: &str = "install it (Debian: apt-get install nginx wrk) or run infra/bench/redirect.sh, which does";

/// Runs the benchmark and prints the report; stops every child and removes the temp dir
/// before returning, also when interrupted by Ctrl-C, SIGTERM, SIGHUP or SIGQUIT. The
/// children also die when this process is killed outright ([`child`]).
///
/// Errors: [`BenchError::Usage`] (exit code 2) on refused arguments (see
/// [`RedirectBenchArgs::validate`], overlapping CPU lists); [`BenchError::Interrupted`]
/// (exit code 128 + the signal's number) when stopped by a signal; otherwise when a tool is
/// missing, a process fails to start or answer, or a run fails.
pub fn run(args: RedirectBenchArgs) -> anyhow::Result<()> {
    args.validate()?;
    let total = total_cpus();
    let mut plan = match (&args.server_cpus, &args.client_cpus) {
        (Some(s), Some(c)) => CpuPlan::explicit(s, c)?,
        _ => CpuPlan::split(total, !args.no_pin),
    };
    let current = current_nice();
    let nice = effective_nice(args.nice, current);
    plan.nice = (nice != 0).then_some(nice);
    plan.pin_self()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.client_cpus.max(1))
        .enable_all()
        .thread_name("bench-redirect")
        .build()
        .context("could not start the tokio runtime")?;
    rt.block_on(async {
        tokio::select! {
            r = bench(&args, &plan) => r,
            // The bench future (and with it every child) is dropped before this returns.
            e = interrupted() => Err(e.into()),
        }
    })
}

/// Waits for the first Ctrl-C (SIGINT), SIGTERM, SIGHUP or SIGQUIT.
async fn interrupted() -> BenchError {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup), Ok(mut quit)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup()), signal(SignalKind::quit()))
    else {
        return std::future::pending().await;
    };
    let (signal, number) = tokio::select! {
        _ = int.recv() => ("SIGINT", libc::SIGINT),
        _ = term.recv() => ("SIGTERM", libc::SIGTERM),
        _ = hup.recv() => ("SIGHUP", libc::SIGHUP),
        _ = quit.recv() => ("SIGQUIT", libc::SIGQUIT),
    };
    BenchError::Interrupted { signal, number }
}

/// Shared settings of every measurement.
struct Ctx<'a> {
    args: &'a RedirectBenchArgs,
    plan: &'a CpuPlan,
    wrk: PathBuf,
    script: PathBuf,
    threads: usize,
    requests: Arc<Vec<Vec<u8>>>,
    logs: PathBuf,
    http: reqwest::Client,
}

async fn bench(args: &RedirectBenchArgs, plan: &CpuPlan) -> anyhow::Result<()> {
    // Declared first, dropped last: children are killed before their directory goes.
    let tmp = TempDir::new()?;
    let sluice = match &args.sluice {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("could not locate the sluice executable")?,
    };
    let nginx = find_program(&args.nginx, INSTALL_HINT)?;
    let wrk = find_program(&args.wrk, INSTALL_HINT)?;
    let workers = args.workers.unwrap_or(plan.server_cpus).max(1);
    // wrk needs a connection per thread; the paced client caps the same way.
    let threads = wrk::effective_threads(args.threads.unwrap_or(plan.client_cpus), args.connections);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .context("could not build the HTTP client")?;
    let mut header = vec![
        format!("sluice bench redirect, {}", humantime::format_rfc3339_seconds(std::time::SystemTime::now())),
        report::machine(),
        format!("versions: sluice {}, {}, {}", env!("CARGO_PKG_VERSION"), tool_version(&nginx, "-v").await, tool_version(&wrk, "-v").await),
        Placement {
            server_cpus: plan.server.as_deref(),
            client_cpus: plan.client.as_deref(),
            workers,
            threads,
            threads_asked: args.threads,
            connections: args.connections,
            // The niceness the run has (set by `pin_self`, or the one it was started at).
            nice: current_nice(),
        }
        .line(),
        format!(
            "runs: {} rounds x {:?} at max rate per target (after a {:?} warm-up), then {:?} paced at {:.0} % of the median max rate; {} links, uniform random codes",
            args.rounds,
            args.duration,
            args.warmup,
            args.duration,
            args.paced_fraction * 100.0,
            args.links
        ),
    ];
    if plan.server.is_none() || total_cpus() <= 2 {
        header.push(format!(
            "note: {} CPUs in all: the load generators run on the same machine{} and take CPU time that a remote client would not, alike for both servers",
            total_cpus(),
            if plan.server.is_some() {
                " (on their own CPUs, but they share caches, memory and the kernel's network stack with the servers)"
            } else {
                ", unpinned"
            }
        ));
    }
    if !args.skip_miss {
        header.push(format!(
            "cache miss: sluice restarted on the same data dir with an L1 cache of {} entries for {} links requested uniformly, so nearly every request misses L1 (hit ratio below) and is answered by a link-store read (SQLite) plus a cache insert; unknown codes (negative cache) are not measured",
            args.miss_cache_capacity, args.links
        ));
    }
    if cfg!(debug_assertions) && args.sluice.is_none() {
        eprintln!("warning: this is a debug build of sluice; build with --release for meaningful figures");
    }

    let data_dir = tmp.path().join("data");
    let logs = tmp.path().to_path_buf();
    let (hit_config, dataflow_note) = server_config(&logs.join("hit.toml"), None, args.with_dataflow)?;
    header.push(format!("sluice server: {dataflow_note}; click log on (in the temp dir, {})", logs.display()));
    let mut server = start_sluice(plan, &sluice, &data_dir, workers, &hit_config, &logs.join("sluice-hit.log"), &http).await?;
    let codes = create_links(&http, server.0, args.links).await?;
    let script = logs.join("redirect.lua");
    std::fs::write(&script, wrk::script(&codes, args.seed)).context("could not write the wrk script")?;
    let requests = Arc::new(codes.iter().map(|c| format!("GET /{c} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {}\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.9\r\n\r\n", wrk::USER_AGENT).into_bytes()).collect());
    let ctx = Ctx { args, plan, wrk, script, threads, requests, logs: logs.clone(), http };
    let mut nginx_proc = start_nginx(plan, &nginx, tmp.path(), workers).await?;

    // Rounds alternate between the targets, so that load from elsewhere hits both alike.
    let mut targets = [
        Measured::new("sluice cache hit", server.0, Some(&mut server.1), true),
        Measured::new("nginx static 302", nginx_proc.0, Some(&mut nginx_proc.1), false),
    ];
    let [hit, nginx_result] = measure_alternating(&ctx, &mut targets).await?;
    nginx_proc.1.stop(Duration::from_secs(5)).await?;
    server.1.stop(Duration::from_secs(10)).await?;

    let miss = if args.skip_miss {
        None
    } else {
        // Same data dir, same links, an L1 far smaller than the link count.
        let (config, _) = server_config(&logs.join("miss.toml"), Some(args.miss_cache_capacity), args.with_dataflow)?;
        let (addr, mut proc_) = start_sluice(plan, &sluice, &data_dir, workers, &config, &logs.join("sluice-miss.log"), &ctx.http).await?;
        let mut targets = [Measured::new("sluice cache miss", addr, Some(&mut proc_), true)];
        let [miss] = measure_alternating(&ctx, &mut targets).await?;
        proc_.stop(Duration::from_secs(10)).await?;
        Some(miss)
    };
    let mut setup = Setup { header, paced_fraction: args.paced_fraction };
    setup.header.push(format!("load average at the end: {}", report::load_average()));
    crate::stdout::println(&report::render(&setup, &hit, miss.as_ref(), &nginx_result))
}

/// CPUs of the machine, whatever this process is pinned to.
fn total_cpus() -> usize {
    procs::online_cpus()
}

async fn tool_version(program: &Path, flag: &str) -> String {
    let out = tokio::process::Command::new(program).arg(flag).output().await;
    let text = out.map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))).unwrap_or_default();
    let first = text.lines().next().unwrap_or("").trim();
    first.strip_prefix("nginx version: ").unwrap_or(first).split(" Copyright").next().unwrap_or(first).trim().to_owned()
}

/// Writes the server's `--config` file to `path`: the L1 capacity when given, and the
/// in-process dataflow switched off unless `with_dataflow` (only when this build's
/// configuration has a `[dataflow]` section). The per-client connection limit is off: the
/// load generators are one client of up to 4,000 connections (`--connections`). Returns the
/// path and a description.
///
/// Errors when the file cannot be written.
fn server_config(path: &Path, cache_capacity: Option<u64>, with_dataflow: bool) -> anyhow::Result<(PathBuf, String)> {
    let mut text = String::from("[server]\nmax-connections-per-client = 0\n");
    if let Some(c) = cache_capacity {
        text.push_str(&format!("[redirect]\ncache-capacity = {c}\n"));
    }
    let mut note = "no in-process dataflow in this build".to_owned();
    if !with_dataflow {
        std::fs::write(path, format!("{text}[dataflow]\nenabled = false\n")).context("could not write the server config")?;
        if crate::config::Config::load(Some(path), &crate::config::FlagOverrides::default()).is_ok() {
            return Ok((path.to_path_buf(), "in-process dataflow off (--with-dataflow keeps it)".to_owned()));
        }
    } else {
        note = "in-process dataflow as configured (--with-dataflow)".to_owned();
    }
    std::fs::write(path, text).context("could not write the server config")?;
    Ok((path.to_path_buf(), note))
}

/// Starts `sluice serve` on a free port and waits for `/readyz` (200 once its start-up work is
/// done: until then the API answers 503 `starting`).
async fn start_sluice(
    plan: &CpuPlan,
    exe: &Path,
    data_dir: &Path,
    workers: usize,
    config: &Path,
    log: &Path,
    http: &reqwest::Client,
) -> anyhow::Result<(SocketAddr, ChildProc)> {
    let addr = free_port()?;
    let mut cmd = plan.server_command(exe);
    cmd.arg("serve")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--workers")
        .arg(workers.to_string())
        .arg("--config")
        .arg(config);
    cmd.env("SLUICE_LOG", "warn");
    let mut child = ChildProc::spawn("sluice serve", cmd, log.to_path_buf(), OnParentDeath::Kill)?;
    let url = format!("http://{addr}/readyz");
    child.wait_ready(Duration::from_secs(30), || async { http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) }).await?;
    Ok((addr, child))
}

/// Writes the nginx config into `dir/nginx/`, starts nginx and waits for its first 302.
async fn start_nginx(plan: &CpuPlan, exe: &Path, dir: &Path, workers: usize) -> anyhow::Result<(SocketAddr, ChildProc)> {
    let ndir = dir.join("nginx");
    std::fs::create_dir_all(&ndir).context("could not create the nginx dir")?;
    let addr = free_port()?;
    let conf = NGINX_TEMPLATE
        .replace("@WORKERS@", &workers.to_string())
        .replace("@DIR@", &ndir.display().to_string())
        .replace("@PORT@", &addr.port().to_string())
        .replace("@LOCATION@", LOCATION);
    let conf_path = ndir.join("nginx.conf");
    std::fs::write(&conf_path, conf).context("could not write the nginx config")?;
    let mut cmd = plan.server_command(exe);
    cmd.arg("-p").arg(&ndir).arg("-c").arg(&conf_path).arg("-e").arg(ndir.join("error.log"));
    // SIGTERM, not SIGKILL, if the benchmark dies: nginx's master then stops its workers.
    let mut child = ChildProc::spawn("nginx", cmd, dir.join("nginx.log"), OnParentDeath::Terminate)?;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().context("could not build the HTTP client")?;
    let url = format!("http://{addr}/probe");
    child.wait_ready(Duration::from_secs(10), || async { http.get(&url).send().await.is_ok_and(|r| r.status().as_u16() == 302) }).await?;
    Ok((addr, child))
}

/// Creates `n` links to [`LOCATION`] through the API, 16 at a time; returns their codes.
async fn create_links(http: &reqwest::Client, addr: SocketAddr, n: usize) -> anyhow::Result<Vec<String>> {
    let url = format!("http://{addr}/v1/links");
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (http, url, sem) = (http.clone(), url.clone(), Arc::clone(&sem));
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.context("semaphore closed")?;
            let resp = http.post(&url).json(&json!({ "long_url": LOCATION })).send().await.context("could not reach the link API")?;
            let status = resp.status();
            let body: Value = resp.json().await.context("link API answered non-JSON")?;
            if status.as_u16() != 201 {
                bail!("creating a link failed with {status}: {body}");
            }
            body["code"].as_str().map(str::to_owned).context("link API answer has no code")
        });
    }
    let mut codes = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        codes.push(r.context("link creation task failed")??);
    }
    codes.sort();
    Ok(codes)
}

async fn scrape(http: &reqwest::Client, addr: SocketAddr) -> anyhow::Result<SluiceCounters> {
    let text = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .context("could not read sluice /metrics")?
        .text()
        .await
        .context("could not read sluice /metrics")?;
    Ok(SluiceCounters::parse(&text))
}

fn wrk_run<'a>(ctx: &'a Ctx<'a>, duration: Duration) -> WrkRun<'a> {
    WrkRun { wrk: &ctx.wrk, script: &ctx.script, threads: ctx.threads, connections: ctx.args.connections, duration, cpus: ctx.plan }
}

async fn warmup(ctx: &Ctx<'_>, addr: SocketAddr) -> anyhow::Result<()> {
    if !ctx.args.warmup.is_zero() {
        let _r = wrk_run(ctx, ctx.args.warmup).run(addr, ctx.logs.join(format!("wrk-warmup-{}.log", addr.port()))).await?;
    }
    Ok(())
}

/// One target under measurement.
struct Measured<'p> {
    name: &'static str,
    addr: SocketAddr,
    process: Option<&'p mut ChildProc>,
    /// Scrape sluice's counters around the max-rate runs.
    sluice: bool,
}

impl<'p> Measured<'p> {
    fn new(name: &'static str, addr: SocketAddr, process: Option<&'p mut ChildProc>, sluice: bool) -> Self {
        Measured { name, addr, process, sluice }
    }

    fn alive(&mut self) -> anyhow::Result<()> {
        self.process.as_mut().map_or(Ok(()), |p| p.ensure_running())
    }

    fn cpu(&self) -> Option<Duration> {
        self.process.as_ref().and_then(|p| p.cpu_time())
    }
}

/// Warms every target up, runs `--rounds` max-rate rounds over the targets in turn, then
/// `--rounds` paced rounds in turn at `--paced-fraction` of each target's median max rate.
async fn measure_alternating<const N: usize>(ctx: &Ctx<'_>, targets: &mut [Measured<'_>; N]) -> anyhow::Result<[TargetResult; N]> {
    for t in targets.iter() {
        warmup(ctx, t.addr).await?;
    }
    let mut results: [TargetResult; N] = std::array::from_fn(|i| TargetResult {
        name: targets[i].name,
        rounds: Vec::new(),
        paced: Vec::new(),
        paced_rate: 0.0,
        counters: targets[i].sluice.then(SluiceCounters::default),
    });
    for round in 0..ctx.args.rounds {
        for (t, r) in targets.iter_mut().zip(results.iter_mut()) {
            let before = if t.sluice { Some(scrape(&ctx.http, t.addr).await?) } else { None };
            let cpu_before = t.cpu();
            // Unpinned, the server "CPUs" are all CPUs, load generators included: no figure.
            let pinned = ctx.plan.server.is_some();
            let busy_before = if pinned { procs::cpus_busy(ctx.plan.server.as_deref()) } else { None };
            let label = format!("{}-{round}", t.name.replace(' ', "-"));
            let wrk = wrk_run(ctx, ctx.args.duration).run(t.addr, ctx.logs.join(format!("wrk-{label}.log"))).await?;
            let server_cpu = match (cpu_before, t.cpu()) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                _ => None,
            };
            let server_cpus_busy = match (busy_before, procs::cpus_busy(ctx.plan.server.as_deref())) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                _ => None,
            };
            if let (Some(before), Some(total)) = (before, r.counters.as_mut()) {
                *total = total.plus(&scrape(&ctx.http, t.addr).await?.since(&before));
            }
            t.alive()?;
            let round = report::Round { wrk, server_cpu, server_cpus_busy, server_cpus: ctx.plan.server_cpus, pinned };
            eprintln!(
                "{label}: {:.0} req/s, p50 {} us, p99 {} us, server CPU {} us/req, others' share of the server CPUs {}, errors {}",
                wrk.rps(),
                wrk.p50_us,
                wrk.p99_us,
                round.cpu_us_per_request().map_or_else(|| "?".to_owned(), |c| format!("{c:.1}")),
                report::share_cell(round.others_share(), pinned),
                wrk.errors()
            );
            r.rounds.push(round);
        }
    }
    for r in results.iter_mut() {
        r.paced_rate = r.median().rps() * ctx.args.paced_fraction;
    }
    for round in 0..ctx.args.rounds {
        for (t, r) in targets.iter_mut().zip(results.iter_mut()) {
            let pid = t.process.as_ref().and_then(|p| p.pid());
            let before = pid.map(threads::snapshot);
            let p = paced_run(ctx, t.addr, r.paced_rate).await?;
            let uses = match (pid, before) {
                (Some(pid), Some(before)) => threads::render(&threads::delta(&before, &threads::snapshot(pid))),
                _ => "no schedstat".to_owned(),
            };
            t.alive()?;
            eprintln!(
                "{}-paced-{round}: {:.0} req/s asked, {:.0} answered/s, p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, sent {}, answered {}, timeouts {}, errors {}, unexpected status {}, reconnects {}; server threads: {uses}; client threads: cpu {:.0} ms, wait {:.1} ms",
                t.name.replace(' ', "-"),
                r.paced_rate,
                p.achieved_rps(),
                p.quantile_ms(0.5),
                p.quantile_ms(0.99),
                p.quantile_ms(0.999),
                p.sent,
                p.latencies_ns.len(),
                p.timeouts,
                p.errors,
                p.unexpected_status,
                p.reconnects,
                p.client_sched.on_cpu.as_secs_f64() * 1e3,
                p.client_sched.waiting.as_secs_f64() * 1e3
            );
            r.paced.push(p);
        }
    }
    Ok(results)
}

/// Sets the flag when dropped (stops the paced threads if the benchmark is interrupted).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One paced run against `addr` at `rate` requests per second.
async fn paced_run(ctx: &Ctx<'_>, addr: SocketAddr, rate: f64) -> anyhow::Result<paced::PacedResult> {
    let config = PacedConfig {
        addr,
        requests: Arc::clone(&ctx.requests),
        rate,
        connections: ctx.args.connections,
        threads: ctx.threads,
        duration: ctx.args.duration,
        timer_slack: ctx.args.client_timer_slack,
        busy_poll: ctx.args.client_busy_poll,
        expect_status: 302,
        seed: ctx.args.seed,
    };
    let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let flag = Arc::clone(&cancel.0);
    tokio::task::spawn_blocking(move || paced::run(&config, &flag)).await.context("paced client panicked")?
}
