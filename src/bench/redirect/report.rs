//! The side-by-side table of `sluice bench redirect`, the target verdicts, and the
//! machine description printed with it.

use std::fmt::Write as _;

use super::paced::PacedResult;
use super::wrk::WrkResult;

/// Counter deltas scraped from sluice's `/metrics` around the max-rate runs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SluiceCounters {
    /// `sluice_redirect_cache_hits_total`.
    pub cache_hits: f64,
    /// `sluice_redirect_cache_misses_total`.
    pub cache_misses: f64,
    /// `sluice_click_events_dropped_total`, all reasons.
    pub clicks_dropped: f64,
    /// `sluice_http_requests_total{status_class="3xx"}`.
    pub redirects: f64,
}

impl SluiceCounters {
    /// `self - before`, per counter.
    pub fn since(&self, before: &SluiceCounters) -> SluiceCounters {
        SluiceCounters {
            cache_hits: self.cache_hits - before.cache_hits,
            cache_misses: self.cache_misses - before.cache_misses,
            clicks_dropped: self.clicks_dropped - before.clicks_dropped,
            redirects: self.redirects - before.redirects,
        }
    }

    /// Sum of two deltas.
    pub fn plus(&self, o: &SluiceCounters) -> SluiceCounters {
        SluiceCounters {
            cache_hits: self.cache_hits + o.cache_hits,
            cache_misses: self.cache_misses + o.cache_misses,
            clicks_dropped: self.clicks_dropped + o.clicks_dropped,
            redirects: self.redirects + o.redirects,
        }
    }

    /// Share of lookups answered by the L1 cache (0..=1; 0 without lookups).
    pub fn hit_ratio(&self) -> f64 {
        let n = self.cache_hits + self.cache_misses;
        if n > 0.0 { self.cache_hits / n } else { 0.0 }
    }

    /// Reads the counters from Prometheus text (sums every series of each name).
    pub fn parse(text: &str) -> SluiceCounters {
        let mut c = SluiceCounters::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(v) = value.parse::<f64>() else { continue };
            let name = series.split('{').next().unwrap_or("");
            match name {
                "sluice_redirect_cache_hits_total" => c.cache_hits += v,
                "sluice_redirect_cache_misses_total" => c.cache_misses += v,
                "sluice_click_events_dropped_total" => c.clicks_dropped += v,
                "sluice_http_requests_total" if series.contains("status_class=\"3xx\"") => c.redirects += v,
                _ => {}
            }
        }
        c
    }
}

/// One max-rate round of one target.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// What wrk measured.
    pub wrk: WrkResult,
    /// CPU time the server process (all threads; nginx: master + workers) used during the
    /// run; `None` when it could not be read.
    pub server_cpu: Option<std::time::Duration>,
    /// Busy time of the server's CPUs during the run, by anyone (`/proc/stat`).
    pub server_cpus_busy: Option<std::time::Duration>,
    /// Number of server CPUs.
    pub server_cpus: usize,
    /// Whether the servers had CPUs of their own (unpinned, their "CPUs" are all CPUs,
    /// shared with the load generators).
    pub pinned: bool,
}

impl Round {
    /// Share (0..=1) of the server CPUs' time taken by other work (other processes, and
    /// interrupt time the kernel does not charge to the server) during the run; `None` when
    /// unreadable or not pinned (the load generators' own CPU time would count as others').
    pub fn others_share(&self) -> Option<f64> {
        if !self.pinned {
            return None;
        }
        let (busy, own) = (self.server_cpus_busy?, self.server_cpu?);
        let wall = self.wrk.duration_us as f64 / 1e6 * self.server_cpus.max(1) as f64;
        (wall > 0.0).then(|| (busy.saturating_sub(own).as_secs_f64() / wall).clamp(0.0, 1.0))
    }

    /// Server CPU time per answered request, µs.
    pub fn cpu_us_per_request(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.wrk.requests > 0).then(|| cpu.as_secs_f64() * 1e6 / self.wrk.requests as f64)
    }
}

/// Everything measured for one target.
#[derive(Debug, Clone)]
pub struct TargetResult {
    /// Row label.
    pub name: &'static str,
    /// The max-rate wrk runs, in order.
    pub rounds: Vec<Round>,
    /// The paced runs at a fraction of the median max rate, in order.
    pub paced: Vec<PacedResult>,
    /// The paced runs' target rate, requests per second.
    pub paced_rate: f64,
    /// sluice counters over the max-rate runs (`None` for nginx).
    pub counters: Option<SluiceCounters>,
}

/// The lower median of `v` (`NaN` when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() { f64::NAN } else { s[(s.len() - 1) / 2] }
}

impl TargetResult {
    /// The round with the median requests/s (the lower middle for an even count).
    ///
    /// # Panics
    /// When there are no rounds (the benchmark always runs at least one).
    pub fn median(&self) -> &WrkResult {
        let mut by_rps: Vec<&WrkResult> = self.rounds.iter().map(|r| &r.wrk).collect();
        by_rps.sort_by(|a, b| a.rps().total_cmp(&b.rps()));
        by_rps[(by_rps.len() - 1) / 2]
    }

    /// Median over the paced runs of their `q`-quantile latency, ms.
    pub fn paced_quantile_ms(&self, q: f64) -> f64 {
        median(&self.paced.iter().map(|p| p.quantile_ms(q)).collect::<Vec<_>>())
    }

    /// Median over the rounds of the others' share of the server CPUs.
    pub fn others_share(&self) -> Option<f64> {
        let v: Vec<f64> = self.rounds.iter().filter_map(Round::others_share).collect();
        (!v.is_empty()).then(|| median(&v))
    }

    /// The "others" cell: [`TargetResult::others_share`] as a percentage ([`share_cell`]).
    pub fn others_cell(&self) -> String {
        share_cell(self.others_share(), self.rounds.iter().any(|r| r.pinned))
    }

    /// Median server CPU µs per request over the rounds that have it.
    pub fn cpu_us_per_request(&self) -> Option<f64> {
        let v: Vec<f64> = self.rounds.iter().filter_map(Round::cpu_us_per_request).collect();
        (!v.is_empty()).then(|| median(&v))
    }

    fn errors(&self) -> u64 {
        self.rounds.iter().map(|r| r.wrk.errors()).sum::<u64>() + self.paced.iter().map(PacedResult::failed).sum::<u64>()
    }
}

/// Per-round ratios of `a`'s to `b`'s requests/s (rounds run back to back, so each pair saw
/// about the same machine), and their median.
pub fn paired_ratios(a: &TargetResult, b: &TargetResult) -> (Vec<f64>, f64) {
    let v: Vec<f64> = a.rounds.iter().zip(&b.rounds).map(|(x, y)| x.wrk.rps() / y.wrk.rps().max(1e-9)).collect();
    let m = median(&v);
    (v, m)
}

/// The report's inputs beyond the per-target results.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Lines describing machine, versions and placement.
    pub header: Vec<String>,
    /// Fraction of the max rate of the paced run (0.5).
    pub paced_fraction: f64,
}

/// A share as `NN %`; `n/a` when the servers were not pinned (no CPUs of their own to
/// measure), `?` when it could not be read.
pub fn share_cell(share: Option<f64>, pinned: bool) -> String {
    match share {
        Some(s) => format!("{:.0} %", s * 100.0),
        None if !pinned => "n/a".to_owned(),
        None => "?".to_owned(),
    }
}

/// Where the benchmark's processes run: the header's `placement:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement<'a> {
    /// CPU list of the servers (`None` = not pinned).
    pub server_cpus: Option<&'a str>,
    /// CPU list of wrk and the paced client (`None` = not pinned).
    pub client_cpus: Option<&'a str>,
    /// sluice tokio workers, and nginx worker processes.
    pub workers: usize,
    /// wrk and paced-client threads actually used (at most `connections`).
    pub threads: usize,
    /// `--threads` as given.
    pub threads_asked: Option<usize>,
    /// Keep-alive connections.
    pub connections: usize,
    /// Niceness of the benchmark's processes.
    pub nice: i32,
}

/// `n word` or `n words`.
pub fn count(n: usize, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

impl Placement<'_> {
    /// `placement: servers on CPUs 0 (2 sluice tokio workers / 2 nginx worker processes), ...`.
    pub fn line(&self) -> String {
        let capped = match self.threads_asked {
            Some(asked) if asked > self.threads => format!(", --threads {asked} capped at {}", count(self.connections, "connection", "connections")),
            _ => String::new(),
        };
        format!(
            "placement: servers on CPUs {} ({} / {}), wrk + paced client on CPUs {} ({}{capped}), {}, nice {}",
            self.server_cpus.unwrap_or("any"),
            count(self.workers, "sluice tokio worker", "sluice tokio workers"),
            count(self.workers, "nginx worker process", "nginx worker processes"),
            self.client_cpus.unwrap_or("any"),
            count(self.threads, "thread", "threads"),
            count(self.connections, "connection", "connections"),
            self.nice
        )
    }
}

fn ms(us: f64) -> String {
    format!("{:.3} ms", us / 1000.0)
}

/// The full report: header, table, counters and target verdicts.
pub fn render(setup: &Setup, hit: &TargetResult, miss: Option<&TargetResult>, nginx: &TargetResult) -> String {
    let mut out = String::new();
    for h in &setup.header {
        let _ = writeln!(out, "{h}");
    }
    let pct = (setup.paced_fraction * 100.0).round();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| {:<18} | {:>8} | {:>9} | {:>9} | {:>10} | {:>12} | {:>10} | {:>8} | {:>16} | {:>6} |",
        "target",
        "req/s",
        "p50",
        "p99",
        format!("p99 @{pct}%"),
        format!("p99.9 @{pct}%"),
        "CPU/req",
        "others",
        "rounds req/s",
        "errors"
    );
    let _ = writeln!(out, "|{:-<20}|{:->10}|{:->11}|{:->11}|{:->12}|{:->14}|{:->12}|{:->10}|{:->18}|{:->8}|", "", "", "", "", "", "", "", "", "", "");
    for t in [Some(hit), miss, Some(nginx)].into_iter().flatten() {
        let m = t.median();
        let rounds: Vec<String> = t.rounds.iter().map(|r| format!("{:.1}", r.wrk.rps() / 1000.0)).collect();
        let _ = writeln!(
            out,
            "| {:<18} | {:>8.0} | {:>9} | {:>9} | {:>10} | {:>12} | {:>10} | {:>8} | {:>16} | {:>6} |",
            t.name,
            m.rps(),
            ms(m.p50_us as f64),
            ms(m.p99_us as f64),
            ms(t.paced_quantile_ms(0.99) * 1000.0),
            ms(t.paced_quantile_ms(0.999) * 1000.0),
            t.cpu_us_per_request().map_or_else(|| "?".to_owned(), |c| format!("{c:.1} us")),
            t.others_cell(),
            format!("{}k", rounds.join("/")),
            t.errors()
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "req/s, p50, p99: wrk at max rate (closed loop), median round; p99 @{pct}%: constant-rate client at {pct}% of that rate, latency from each request's due time (a request that failed: timed out, lost to a broken connection or answered with another status, counts as infinitely slow), median of rounds; CPU/req: server CPU time (all threads/processes) per request at max rate; others: share of the server CPUs taken by other work (other processes, uncharged interrupt time) during the max-rate runs (n/a when the servers are not pinned to CPUs of their own)"
    );
    for t in [Some(hit), miss, Some(nginx)].into_iter().flatten() {
        let p99s: Vec<String> = t.paced.iter().map(|p| format!("{:.3}", p.quantile_ms(0.99))).collect();
        let answered: Vec<String> = t.paced.iter().map(|p| format!("{:.0}", p.achieved_rps())).collect();
        let _ = write!(out, "{}: paced {:.0} req/s asked, answered {}/s, p99 {} ms", t.name, t.paced_rate, answered.join("/"), p99s.join("/"));
        if let Some(c) = &t.counters {
            let _ = write!(out, "; L1 hit ratio {:.1} %, 3xx {:.0}, clicks dropped {:.0}", c.hit_ratio() * 100.0, c.redirects, c.clicks_dropped);
        }
        let _ = writeln!(out);
    }
    let (pairs, ratio) = paired_ratios(hit, nginx);
    let pairs: Vec<String> = pairs.iter().map(|r| format!("{r:.2}")).collect();
    let p99_half = hit.paced_quantile_ms(0.99);
    let _ = writeln!(out);
    if let (Some(s), Some(n)) = (hit.cpu_us_per_request(), nginx.cpu_us_per_request()) {
        let _ = writeln!(out, "server CPU per request: sluice cache hit {s:.1} us, nginx {n:.1} us (nginx/sluice {:.2})", n / s);
    }
    let _ = writeln!(
        out,
        "ratio sluice cache hit / nginx req/s: {ratio:.2}, median of the per-round ratios {} (target >= 0.80: {})",
        pairs.join("/"),
        verdict(ratio >= 0.8)
    );
    let _ = writeln!(out, "sluice cache hit p99 at {pct}% of its max rate: {p99_half:.3} ms (target <= 2 ms: {})", verdict(p99_half <= 2.0));
    out
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// Machine facts for the header: CPU model, CPU count, kernel, load average.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    format!("machine: {} x {}, Linux {}, load average {}", cpus, model.as_deref().unwrap_or("unknown CPU"), kernel.trim(), load_average())
}

/// The 1-minute load average from `/proc/loadavg` (`?` when unreadable).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| s.split_whitespace().next().map(str::to_owned)).unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_from_prometheus_text() {
        let text = "# TYPE sluice_redirect_cache_hits_total counter\n\
            sluice_redirect_cache_hits_total 90\n\
            sluice_redirect_cache_misses_total 10\n\
            sluice_click_events_dropped_total{reason=\"channel_full\"} 3\n\
            sluice_click_events_dropped_total{reason=\"closed\"} 1\n\
            sluice_http_requests_total{route=\"/{code}\",status_class=\"3xx\"} 100\n\
            sluice_http_requests_total{route=\"/{code}\",status_class=\"4xx\"} 7\n\
            sluice_redirect_cache_hits_total_other 5\n";
        let c = SluiceCounters::parse(text);
        assert_eq!(c, SluiceCounters { cache_hits: 90.0, cache_misses: 10.0, clicks_dropped: 4.0, redirects: 100.0 });
        assert!((c.hit_ratio() - 0.9).abs() < 1e-12);
        let d = c.since(&SluiceCounters { cache_hits: 40.0, cache_misses: 10.0, clicks_dropped: 4.0, redirects: 50.0 });
        assert_eq!(d, SluiceCounters { cache_hits: 50.0, cache_misses: 0.0, clicks_dropped: 0.0, redirects: 50.0 });
        assert_eq!(SluiceCounters::default().hit_ratio(), 0.0);
    }

    fn wrk(requests: u64) -> WrkResult {
        WrkResult {
            requests,
            duration_us: 1_000_000,
            bytes: 0,
            mean_us: 0.0,
            p50_us: requests,
            p90_us: 0,
            p99_us: 0,
            p999_us: 0,
            max_us: 0,
            connect_errors: 0,
            read_errors: 0,
            write_errors: 0,
            status_errors: 0,
            timeouts: 0,
        }
    }

    fn target(rps: &[u64]) -> TargetResult {
        let rounds = rps
            .iter()
            .map(|&r| Round {
                wrk: wrk(r),
                server_cpu: Some(std::time::Duration::from_millis(r)),
                server_cpus_busy: Some(std::time::Duration::from_millis(750)),
                server_cpus: 1,
                pinned: true,
            })
            .collect();
        TargetResult { name: "x", rounds, paced: vec![], paced_rate: 0.0, counters: None }
    }

    #[test]
    fn median_round_by_rps() {
        let mut t = target(&[300, 100, 200]);
        assert_eq!(t.median().requests, 200);
        // 750 ms busy in a 1 s run, 100..300 ms of it the server's own.
        assert_eq!(t.others_share(), Some(0.55));
        t.rounds.push(Round { wrk: wrk(400), server_cpu: None, server_cpus_busy: None, server_cpus: 1, pinned: true });
        assert_eq!(t.median().requests, 200, "lower middle of four");
        // 1 ms of CPU per 1 request/s over 1 s = 1000 us per request, every round.
        assert_eq!(t.cpu_us_per_request(), Some(1000.0));
        assert!(median(&[]).is_nan());
    }

    fn paced(latencies_ms: &[u64]) -> PacedResult {
        PacedResult {
            latencies_ns: latencies_ms.iter().map(|ms| ms * 1_000_000).collect(),
            elapsed: std::time::Duration::from_secs(1),
            ..PacedResult::default()
        }
    }

    #[test]
    fn report_shows_ratio_and_verdicts() {
        let setup = Setup { header: vec!["machine: test".to_owned()], paced_fraction: 0.5 };
        let mut hit = target(&[80, 30, 90]);
        hit.name = "sluice cache hit";
        // Median of the paced runs' p99s: 1, 3 and 2 ms -> 2 ms.
        hit.paced = vec![paced(&[1; 100]), paced(&[3; 100]), paced(&[2; 100])];
        hit.paced_rate = 40.0;
        hit.counters = Some(SluiceCounters { cache_hits: 99.0, cache_misses: 1.0, clicks_dropped: 0.0, redirects: 100.0 });
        let mut nginx = target(&[100, 60, 100]);
        nginx.name = "nginx static 302";
        nginx.paced = vec![paced(&[1; 10])];
        let out = render(&setup, &hit, None, &nginx);
        assert!(out.starts_with("machine: test\n"), "{out}");
        assert!(out.contains("ratio sluice cache hit / nginx req/s: 0.80, median of the per-round ratios 0.80/0.50/0.90 (target >= 0.80: met)"), "{out}");
        assert!(out.contains("sluice cache hit p99 at 50% of its max rate: 2.000 ms (target <= 2 ms: met)"), "{out}");
        assert!(
            out.contains(
                "sluice cache hit: paced 40 req/s asked, answered 100/100/100/s, p99 1.000/3.000/2.000 ms; L1 hit ratio 99.0 %, 3xx 100, clicks dropped 0"
            ),
            "{out}"
        );
        // Table row: median round 80 req/s, its p50 (80 us in this fixture), paced p99 2 ms.
        let row = out.lines().find(|l| l.starts_with("| sluice cache hit")).expect("hit row");
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[1..6], ["sluice cache hit", "80", "0.080 ms", "0.000 ms", "2.000 ms"]);
        assert_eq!(cells[9], "0.1/0.0/0.1k", "rounds in thousands of req/s");

        // One round below 0.8 of nginx and a paced p99 above 2 ms: both NOT met.
        let mut slow = target(&[79]);
        slow.name = "sluice cache hit";
        slow.paced = vec![paced(&[3; 10])];
        let out = render(&setup, &slow, None, &target(&[100]));
        assert!(out.contains("ratio sluice cache hit / nginx req/s: 0.79, median of the per-round ratios 0.79 (target >= 0.80: NOT met)"), "{out}");
        assert!(out.contains("p99 at 50% of its max rate: 3.000 ms (target <= 2 ms: NOT met)"), "{out}");

        // Fast answers but 2 % of the requests timed out: their p99 is a failure, NOT met.
        let mut lossy = target(&[80]);
        lossy.name = "sluice cache hit";
        lossy.paced = vec![PacedResult { timeouts: 2, ..paced(&[1; 98]) }];
        let out = render(&setup, &lossy, None, &target(&[100]));
        assert!(out.contains("p99 at 50% of its max rate: inf ms (target <= 2 ms: NOT met)"), "{out}");
        // Nothing sent at all (a zero-length run): no figure, NOT met.
        lossy.paced = vec![PacedResult::default()];
        let out = render(&setup, &lossy, None, &target(&[100]));
        assert!(out.contains("p99 at 50% of its max rate: NaN ms (target <= 2 ms: NOT met)"), "{out}");
    }

    #[test]
    fn others_share_is_not_applicable_unpinned() {
        let pinned = target(&[100]);
        assert_eq!(pinned.others_cell(), "65 %");
        let mut unpinned = target(&[100]);
        // Unpinned, "the server CPUs" are all CPUs: the load generators' busy time made
        // this read 100 % before.
        for r in &mut unpinned.rounds {
            r.pinned = false;
            r.server_cpus_busy = Some(std::time::Duration::from_millis(2000));
            r.server_cpus = 2;
        }
        assert_eq!(unpinned.rounds[0].others_share(), None);
        assert_eq!(unpinned.others_cell(), "n/a");
        let mut unreadable = target(&[100]);
        unreadable.rounds[0].server_cpu = None;
        assert_eq!(unreadable.others_cell(), "?");
        let setup = Setup { header: vec![], paced_fraction: 0.5 };
        let mut hit = unpinned.clone();
        hit.name = "sluice cache hit";
        let out = render(&setup, &hit, None, &unpinned);
        let row = out.lines().find(|l| l.starts_with("| sluice cache hit")).expect("hit row");
        assert_eq!(row.split('|').map(str::trim).nth(8), Some("n/a"), "{out}");
    }

    #[test]
    fn placement_counts_are_effective_and_pluralized() {
        let one = Placement { server_cpus: Some("0"), client_cpus: Some("1"), workers: 1, threads: 1, threads_asked: None, connections: 1, nice: -10 };
        assert_eq!(
            one.line(),
            "placement: servers on CPUs 0 (1 sluice tokio worker / 1 nginx worker process), wrk + paced client on CPUs 1 (1 thread), 1 connection, nice -10"
        );
        let capped = Placement { server_cpus: None, client_cpus: None, workers: 2, threads: 4, threads_asked: Some(8), connections: 4, nice: 0 };
        assert_eq!(
            capped.line(),
            "placement: servers on CPUs any (2 sluice tokio workers / 2 nginx worker processes), wrk + paced client on CPUs any (4 threads, --threads 8 capped at 4 connections), 4 connections, nice 0"
        );
        let asked = Placement { threads_asked: Some(4), ..capped };
        assert!(asked.line().contains("(4 threads), 4 connections"), "{}", asked.line());
    }

    #[test]
    fn paired_ratio_is_the_median_of_round_ratios() {
        let (pairs, m) = paired_ratios(&target(&[80, 30, 90]), &target(&[100, 60, 100]));
        assert_eq!(pairs, vec![0.8, 0.5, 0.9]);
        assert_eq!(m, 0.8);
    }
}
