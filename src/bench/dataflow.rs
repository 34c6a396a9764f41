//! `sluice bench dataflow`: throughput of the whole dataflow graph (gate, dedup, enrichment,
//! link-metadata join, rollups at four granularities with sketches) on a realistic
//! generated stream, replayed from memory, beside two baselines on the same events:
//! the naive reference implementation (plain maps, exact sets) and per-event Redis
//! `HINCRBY` + `PFADD` pipelining against a real local `redis-server`.
//!
//! The stream: Zipf popularity over links (s = 1), repeat visitors (Zipf over a visitor
//! pool, s = 0.8), real user agents from the uap-core test corpus with ~7 % crawler user
//! agents from the CrawlerDetect fixtures, client IPs drawn uniformly from public IPv4
//! space (10 % IPv6 from 2000::/3) — so every GeoIP range is hit in proportion to its
//! size — real referrer URLs (40 % direct), 1 % duplicate deliveries, event times advancing
//! at `--live-rate` clicks per second with up to 30 s of disorder, keyed into 4 partitions
//! by code.
//! Generation is not timed. The last line is
//! `dataflow events/s per worker: <N1> (1 worker), <N2> (2 workers)`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use sluice_dataflows::clock::ManualClock;
use sluice_dataflows::config::{AbuseConfig, PipelineConfig};
use sluice_dataflows::enrich::{EnrichConfig, Enricher};
use sluice_dataflows::hash::{owner, route_str, route_u128};
use sluice_dataflows::model::{Granularity, View};
use sluice_dataflows::operators::ClickEnricher;
use sluice_dataflows::pipeline::{self, PipelineInputs, PipelineOutputs};
use sluice_dataflows::reference::Reference;
use sluice_dataflows::source::{ClickSource, SourceFactory, SourceRecord, VecSource, partition_owner};
use sluice_dataflows::views::SummaryQuery;
use sluice_schemas::{ClickEvent, VisitorSalt, truncate_ip, visitor_id};
use uuid::Uuid;

/// Arguments of `sluice bench dataflow`.
#[derive(clap::Args, Debug, Clone)]
pub struct DataflowBenchArgs {
    /// Events in the generated stream (the dataflow runs all of them).
    #[arg(long, default_value_t = 2_000_000)]
    pub events: usize,
    /// Links (codes) clicks are spread over, Zipf s = 1.
    #[arg(long, default_value_t = 10_000)]
    pub links: usize,
    /// Distinct visitors (IP + user agent), Zipf s = 0.8.
    #[arg(long, default_value_t = 300_000)]
    pub visitors: usize,
    /// Clicks per second of event time the stream represents (its timestamps span
    /// `events / live-rate` seconds). The default, 20,000/s, is a large deployment at peak;
    /// a small one (`--live-rate 25`, about 2 M clicks a day) spreads clicks over many more
    /// buckets and rows.
    #[arg(long, default_value_t = 20_000)]
    pub live_rate: u64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Worker counts to measure, comma separated, each 1 to 1024.
    #[arg(long, value_delimiter = ',', default_value = "1,2", value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=crate::config::MAX_WORKERS as u64))]
    pub workers: Vec<usize>,
    /// Records a worker takes from its source per step (the pipeline's `batch-size`; default:
    /// the pipeline's default).
    #[arg(long, default_value_t = PipelineConfig::default().batch_size)]
    pub batch_size: usize,
    /// The rollups' apply interval in ms (the pipeline's `apply-interval`; default: the
    /// pipeline's default).
    #[arg(long, default_value_t = PipelineConfig::default().apply_interval.as_millis() as u64)]
    pub apply_interval_ms: u64,
    /// Back-pressure limit in 1-ms epochs (the pipeline's `max-inflight-epochs`; default:
    /// the pipeline's default).
    #[arg(long, default_value_t = PipelineConfig::default().max_inflight_epochs)]
    pub max_inflight_epochs: u64,
    /// Run the abuse detectors (`[dataflow.abuse] enabled`, on in `sluice serve` by default);
    /// `--abuse false` measures the analytics graph alone (dedup, enrichment, link metadata,
    /// rollups), as a deployment without abuse detection runs it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub abuse: bool,
    /// Events fed to the naive reference baseline (a prefix of the stream).
    #[arg(long, default_value_t = 300_000)]
    pub reference_events: usize,
    /// Events fed to the Redis baseline (a prefix of the stream); 0 skips it.
    #[arg(long, default_value_t = 30_000)]
    pub redis_events: usize,
    /// The `redis-server` executable started (on a free loopback port, no persistence) for
    /// the Redis baseline.
    #[arg(long, default_value = "redis-server")]
    pub redis_server: String,
    /// Directory holding `useragents/test_ua.yaml` and `bots/crawlerdetect-fixture-crawlers.txt`
    /// (default: `dataflows/tests/data` of the source tree this binary was built from).
    #[arg(long)]
    pub corpus_dir: Option<PathBuf>,
}

const PARTITIONS: u32 = 4;
const DAY_MS: i64 = 86_400_000;

/// The corpus in the source tree the binary was built from, or `dataflows/tests/data` under
/// the current directory when that tree has moved (a binary built in another checkout).
fn default_corpus_dir() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows/tests/data");
    if built.is_dir() { built } else { PathBuf::from("dataflows/tests/data") }
}

/// Refuses arguments that cannot make a run, before the events are generated.
///
/// Errors: [`crate::bench::BenchError::Usage`] (exit code 2) naming the flags.
fn check_args(args: &DataflowBenchArgs) -> Result<(), crate::bench::BenchError> {
    let usage = |msg: String| Err(crate::bench::BenchError::Usage(msg));
    if args.events == 0 || args.links == 0 || args.visitors == 0 || args.live_rate == 0 || args.workers.is_empty() {
        return usage("--events, --links, --visitors, --live-rate and --workers must be positive".into());
    }
    // The command line refuses these already (clap's range); library callers set them.
    if let Some(w) = args.workers.iter().find(|w| !(1..=crate::config::MAX_WORKERS).contains(*w)) {
        return usage(format!("--workers: each worker count must be from 1 to {}, got {w}", crate::config::MAX_WORKERS));
    }
    Ok(())
}

/// Runs the benchmark and prints the report (see module docs).
///
/// Errors: refused arguments ([`crate::bench::BenchError::Usage`], exit code 2), a missing
/// corpus, a dataflow or Redis baseline that fails.
pub fn run(args: DataflowBenchArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    let dir = args.corpus_dir.clone().unwrap_or_else(default_corpus_dir);
    let (humans, bots) = load_corpus(&dir)?;
    let started = Instant::now();
    // A fresh enricher (empty caches, including the user-agent table its clones share) for
    // every run, so no run profits from parses of an earlier one.
    let enricher = || Enricher::new(&EnrichConfig::default()).context("could not build the enricher");
    enricher()?;
    let stream = generate(&args, &humans, &bots)?;
    let unique = stream.iter().map(|r| r.event.event_id).collect::<std::collections::HashSet<_>>().len();
    crate::stdout::println(&format!(
        "sluice bench dataflow: {} events ({} distinct ids, {:.0} s of event time) over {} links, {} visitors, {} user agents ({} crawlers); generated in {:.1} s (not timed)",
        stream.len(),
        unique,
        stream.len() as f64 / args.live_rate.max(1) as f64,
        args.links,
        args.visitors,
        humans.len() + bots.len(),
        bots.len(),
        started.elapsed().as_secs_f64()
    ))?;
    let now_ms = stream.iter().map(|r| r.event.ts).max().unwrap_or(0) + 60_000;

    let mut per_worker = Vec::new();
    for &w in args.workers.iter().filter(|&&w| w > 1) {
        crate::stdout::println(&format!("load per worker, {w} workers (% of records): {}", load_shares(&stream, w)))?;
    }
    for &w in &args.workers {
        let config = PipelineConfig {
            workers: w,
            batch_size: args.batch_size,
            apply_interval: Duration::from_millis(args.apply_interval_ms),
            max_inflight_epochs: args.max_inflight_epochs,
            abuse: AbuseConfig { enabled: args.abuse, ..AbuseConfig::default() },
            ..PipelineConfig::default()
        };
        let r = run_dataflow(&stream, &config, now_ms, &enricher()?, unique as u64)?;
        crate::stdout::println(&format!(
            "dataflow, {w} worker(s): {:.2} s, {:.0} events/s total, {:.0} events/s per worker; CPU {:.2} s ({:.0} events per CPU second); peak RSS {} MiB (+{} MiB over the input); {} rollup rows, {:.0} bytes per row",
            r.secs,
            r.events as f64 / r.secs,
            r.events as f64 / r.secs / w as f64,
            r.cpu_secs,
            r.events as f64 / r.cpu_secs.max(0.01),
            r.peak_rss >> 20,
            r.peak_rss.saturating_sub(r.rss_before) >> 20,
            r.rows,
            r.bytes_per_row
        ))?;
        per_worker.push((w, r.events as f64 / r.secs / w as f64));
    }

    let n = args.reference_events.min(stream.len());
    let eps = run_reference(&stream[..n], now_ms, &enricher()?);
    crate::stdout::println(&format!("naive reference (1 thread, HashMap rows, exact HashSet uniques): {eps:.0} events/s over {n} events"))?;

    if args.redis_events > 0 {
        let n = args.redis_events.min(stream.len());
        let line = match run_redis(&stream[..n], &enricher()?, &args.redis_server) {
            Ok(eps) => format!("redis HINCRBY+PFADD, pipelined per 100 events (1 client): {eps:.0} events/s over {n} events"),
            Err(e) => format!("redis baseline skipped: {e:#}"),
        };
        crate::stdout::println(&line)?;
    }

    let pick = |w: usize| per_worker.iter().find(|(x, _)| *x == w).map_or(0.0, |(_, e)| *e);
    crate::stdout::println(&format!("dataflow events/s per worker: {:.0} (1 worker), {:.0} (2 workers)", pick(1), pick(2)))
}

/// Each worker's share of the records at the graph's three partitionings, for `workers`
/// workers: read from the source (partition `p` by worker `p % workers`), exchanged by event
/// id (dedup, enrichment, flood records' tap) and exchanged by code (link-metadata join, link
/// detectors, flood cap, rollups: a code lives on one worker).
fn load_shares(stream: &[SourceRecord], workers: usize) -> String {
    let mut counts = vec![[0u64; 3]; workers];
    for r in stream {
        counts[partition_owner(r.partition, workers)][0] += 1;
        counts[owner(route_u128(r.event.event_id.as_u128()), workers)][1] += 1;
        counts[owner(route_str(&r.event.code), workers)][2] += 1;
    }
    let total = stream.len().max(1) as f64;
    let col = |i: usize| counts.iter().map(|c| format!("{:.1}", 100.0 * c[i] as f64 / total)).collect::<Vec<_>>().join(" / ");
    format!("source {}; by event id {}; by code {}", col(0), col(1), col(2))
}

/// Human user agents from uap-core's `test_ua.yaml`, crawlers from CrawlerDetect's fixtures.
fn load_corpus(dir: &Path) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let ua_path = dir.join("useragents/test_ua.yaml");
    let text = std::fs::read_to_string(&ua_path).with_context(|| format!("could not read the uap-core corpus \"{}\" (see --corpus-dir)", ua_path.display()))?;
    let mut humans: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- user_agent_string: "))
        .map(|v| {
            let v = v.trim();
            if let Some(s) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                s.replace("''", "'")
            } else if let Some(s) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                s.replace("\\\"", "\"")
            } else {
                v.to_string()
            }
        })
        .filter(|s| !s.is_empty())
        .collect();
    humans.sort();
    humans.dedup();
    let bot_path = dir.join("bots/crawlerdetect-fixture-crawlers.txt");
    let text =
        std::fs::read_to_string(&bot_path).with_context(|| format!("could not read the crawler fixtures \"{}\" (see --corpus-dir)", bot_path.display()))?;
    let bots: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
    if humans.len() < 100 || bots.len() < 10 {
        bail!("the user-agent corpus in \"{}\" is too small", dir.display());
    }
    Ok((humans, bots))
}

const REFERRERS: &[&str] = &[
    "https://www.google.com/search?q=short+links",
    "https://www.google.de/",
    "https://www.bing.com/search?q=sluice",
    "https://duckduckgo.com/",
    "https://search.yahoo.com/search?p=x",
    "https://yandex.ru/search/?text=x",
    "https://t.co/x1y2z3",
    "https://www.facebook.com/",
    "https://l.facebook.com/l.php?u=x",
    "https://www.linkedin.com/feed/",
    "https://www.reddit.com/r/programming/",
    "https://news.ycombinator.com/item?id=1",
    "https://www.instagram.com/",
    "https://www.youtube.com/watch?v=x",
    "https://mail.google.com/mail/u/0/",
    "https://outlook.live.com/mail/0/",
    "https://chatgpt.com/",
    "https://www.perplexity.ai/search?q=x",
    "https://github.com/rust-lang/rust",
    "https://stackoverflow.com/questions/1",
    "https://medium.com/@someone/post",
    "https://www.nytimes.com/2026/01/01/tech.html",
    "https://www.bbc.co.uk/news",
    "https://en.wikipedia.org/wiki/URL_shortening",
    "https://slack.com/",
];

fn public_ipv4(rng: &mut ChaCha8Rng) -> Ipv4Addr {
    loop {
        let ip = Ipv4Addr::from(rng.random::<u32>());
        let o = ip.octets();
        let special = o[0] == 0
            || o[0] == 10
            || o[0] == 127
            || o[0] >= 224
            || (o[0] == 100 && (64..128).contains(&o[1]))
            || (o[0] == 169 && o[1] == 254)
            || (o[0] == 172 && (16..32).contains(&o[1]))
            || (o[0] == 192 && o[1] == 168)
            || (o[0] == 192 && o[1] == 0 && (o[2] == 0 || o[2] == 2))
            || (o[0] == 198 && (o[1] == 18 || o[1] == 19 || (o[1] == 51 && o[2] == 100)))
            || (o[0] == 203 && o[1] == 0 && o[2] == 113);
        if !special {
            return ip;
        }
    }
}

/// The benchmark stream (module docs), in delivery order.
fn generate(args: &DataflowBenchArgs, humans: &[String], bots: &[String]) -> anyhow::Result<Vec<SourceRecord>> {
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let salt = VisitorSalt::new([7; 32], None);
    let zipf = |n: usize, s: f64| Zipf::new(n as f64, s).map_err(|e| anyhow::anyhow!("zipf: {e}"));
    let (human_z, bot_z) = (zipf(humans.len(), 1.1)?, zipf(bots.len(), 1.0)?);
    let visitors: Vec<(Option<String>, Arc<str>, u64)> = (0..args.visitors)
        .map(|_| {
            let ip: IpAddr = if rng.random_bool(0.1) {
                IpAddr::V6(Ipv6Addr::from((0x2000u128 << 112) | (rng.random::<u128>() >> 3)))
            } else {
                IpAddr::V4(public_ipv4(&mut rng))
            };
            let ua: &str = if rng.random_bool(0.07) { &bots[bot_z.sample(&mut rng) as usize - 1] } else { &humans[human_z.sample(&mut rng) as usize - 1] };
            (Some(truncate_ip(ip)), Arc::from(ua), visitor_id(&salt, 0, ip, ua))
        })
        .collect();
    let codes: Vec<String> = (0..args.links).map(|i| format!("l{i:05x}")).collect();
    let (code_z, visitor_z) = (zipf(args.links, 1.0)?, zipf(args.visitors, 0.8)?);
    let start = 1_772_323_200_000i64; // 2026-03-01T00:00:00Z
    let mut offsets = [0u64; PARTITIONS as usize];
    let mut out: Vec<SourceRecord> = Vec::with_capacity(args.events);
    for i in 0..args.events {
        if i > 100 && rng.random_bool(0.01) {
            let mut dup = out[i - 1 - rng.random_range(0..100)].clone();
            let p = dup.partition as usize;
            dup.offset = offsets[p];
            offsets[p] += 1;
            out.push(dup);
            continue;
        }
        let code = &codes[code_z.sample(&mut rng) as usize - 1];
        let (ip, ua, vid) = &visitors[visitor_z.sample(&mut rng) as usize - 1];
        let ts = start + (i as i64 * 1000) / args.live_rate.max(1) as i64 - rng.random_range(0..30_000);
        let referrer = (!rng.random_bool(0.4)).then(|| REFERRERS[rng.random_range(0..REFERRERS.len())].to_string());
        let p = (route_str(code) % u64::from(PARTITIONS)) as usize;
        let event = ClickEvent {
            event_id: Uuid::from_u128(rng.random()),
            code: code.clone(),
            ts,
            ip_trunc: ip.clone(),
            visitor_id: *vid,
            user_agent: ua.to_string(),
            referrer,
            accept_language: None,
            edge_region: None,
        };
        out.push(SourceRecord { partition: p as u32, offset: offsets[p], event, backfill: false, arrival_ms: None });
        offsets[p] += 1;
    }
    Ok(out)
}

struct DataflowRun {
    events: usize,
    secs: f64,
    /// CPU time of the process (all threads, user + system) over the timed run, s.
    cpu_secs: f64,
    rss_before: u64,
    peak_rss: u64,
    rows: usize,
    bytes_per_row: f64,
}

/// Resident set size and its high-water mark, bytes (Linux `/proc/self/status`).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time of this process so far (all threads, user + system), s: `utime + stime` of
/// `/proc/self/stat` in clock ticks of 1/100 s (Linux `USER_HZ`); 0 elsewhere. On a shared
/// machine it says what the run cost when the wall clock says how long it waited too.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3, `state`.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn run_dataflow(stream: &[SourceRecord], config: &PipelineConfig, now_ms: i64, enricher: &Enricher, unique: u64) -> anyhow::Result<DataflowRun> {
    let workers = config.workers;
    // Partition p is read by worker p % workers, in offset order (not timed).
    let mut per_worker: Vec<Vec<SourceRecord>> = vec![Vec::new(); workers];
    for r in stream {
        per_worker[partition_owner(r.partition, workers)].push(r.clone());
    }
    let slots: Arc<Mutex<Vec<Option<Vec<SourceRecord>>>>> = Arc::new(Mutex::new(per_worker.into_iter().map(Some).collect()));
    let factory: SourceFactory = Arc::new(move |index, peers| {
        let records = slots.lock().map(|mut s| s[index].take()).ok().flatten().unwrap_or_default();
        let parts = (0..PARTITIONS).filter(|&p| partition_owner(p, peers) == index).collect();
        Box::new(VecSource::new(parts, records)) as Box<dyn ClickSource>
    });
    // Reset the high-water mark so VmHWM measures this run (Linux ≥ 4.0; ignored elsewhere).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (rss_before, _) = rss();
    let inputs = PipelineInputs { source: factory, enricher: enricher.clone(), clock: Arc::new(ManualClock::new(now_ms)), link_meta: None };
    let (t, cpu) = (Instant::now(), cpu_secs());
    let handle = pipeline::start(config, inputs, PipelineOutputs::default())?;
    let views = handle.views().clone();
    let stats = handle.stats_handle();
    handle.join()?;
    let secs = t.elapsed().as_secs_f64();
    let cpu_secs = cpu_secs() - cpu;
    let (_, peak_rss) = rss();
    let s = stats();
    let q = SummaryQuery {
        from_ms: 0,
        to_ms: now_ms.div_euclid(60_000) * 60_000 + DAY_MS,
        include_bots: true,
        limit: 1,
        org: None,
        tag: None,
        exclude: Default::default(),
    };
    let clicks = views.summary(&q)?.totals.clicks;
    if clicks != unique || s.dead_lettered != 0 {
        bail!("dataflow counted {clicks} clicks for {unique} distinct events ({} dead letters)", s.dead_lettered);
    }
    let size = views.size();
    Ok(DataflowRun { events: stream.len(), secs, cpu_secs, rss_before, peak_rss, rows: size.rows, bytes_per_row: size.bytes as f64 / size.rows.max(1) as f64 })
}

fn run_reference(stream: &[SourceRecord], now_ms: i64, enricher: &Enricher) -> f64 {
    let mut en = enricher.clone();
    let mut r = Reference::new(&Default::default(), false, true);
    let t = Instant::now();
    for rec in stream {
        r.push(rec, now_ms, |e| en.dims(e));
    }
    let eps = stream.len() as f64 / t.elapsed().as_secs_f64();
    std::hint::black_box(r.rollup_rows());
    eps
}

struct RedisServer(Child);

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_redis(stream: &[SourceRecord], enricher: &Enricher, server: &str) -> anyhow::Result<f64> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(server)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("could not start \"{server}\" (install redis-server or pass --redis-server)"))?;
    let _server = RedisServer(child);
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut con = loop {
        match client.get_connection() {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => return Err(e).context("redis-server did not start"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let mut en = enricher.clone();
    let t = Instant::now();
    for chunk in stream.chunks(100) {
        let mut pipe = redis::pipe();
        for rec in chunk {
            let e = &rec.event;
            let d = en.dims(e);
            for g in Granularity::ALL {
                let hash = format!("h:{}:{}:{}", e.code, g.as_str(), g.bucket_start(e.ts));
                for v in View::ALL {
                    let mut field = format!("{}:{}", v.as_str(), u8::from(d.is_bot));
                    for dim in v.dimensions() {
                        field.push(':');
                        field.push_str(d.get(*dim));
                    }
                    pipe.cmd("HINCRBY").arg(&hash).arg(&field).arg(1).ignore();
                    pipe.cmd("PFADD").arg(format!("{hash}:{field}")).arg(e.visitor_id).ignore();
                }
            }
        }
        pipe.query::<()>(&mut con).context("redis pipeline failed")?;
    }
    Ok(stream.len() as f64 / t.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker count of 0 among several (set without clap's range) is refused before any
    /// event is generated; it panicked in the run (index out of bounds).
    #[test]
    fn zero_workers_are_refused_before_generating() {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: DataflowBenchArgs,
        }
        let mut args = Wrapper::try_parse_from(["dataflow"]).expect("defaults parse").args;
        assert_eq!(check_args(&args), Ok(()));
        args.workers = vec![1, 0];
        assert_eq!(check_args(&args), Err(crate::bench::BenchError::Usage("--workers: each worker count must be from 1 to 1024, got 0".into())));
        args.workers.clear();
        assert_eq!(check_args(&args), Err(crate::bench::BenchError::Usage("--events, --links, --visitors, --live-rate and --workers must be positive".into())));
        assert!(Wrapper::try_parse_from(["dataflow", "--workers", "1,0"]).is_err(), "clap refuses it");
    }
}
