//! A constant-rate (open-loop) HTTP/1.1 load client, for latency at a fixed fraction of the
//! maximum rate (what wrk2's `-R` does; wrk2 is not packaged in Debian).
//!
//! Per client thread, a *pacer* thread sleeps until each request is due (request k at
//! `start + k / rate`) and queues its due instant; one task per keep-alive connection on a
//! single-threaded tokio runtime takes the next due request whenever it is idle, sends it
//! and reads the answer. Latency is measured from when the request was due, not from when
//! it was sent, so a stalled server is charged for the requests it delayed (no coordinated
//! omission, as in wrk2); a pacer that wakes late (timer slack, ~50 µs for normal
//! priority) is charged too, so figures are if anything pessimistic. Nothing spins.
//! Responses are parsed just enough to find their end (`Content-Length`; no pipelining).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What to send, how fast and for how long.
#[derive(Debug, Clone)]
pub struct PacedConfig {
    /// Server address.
    pub addr: SocketAddr,
    /// Complete request byte strings; each request picks one uniformly at random.
    pub requests: Arc<Vec<Vec<u8>>>,
    /// Total rate over all connections, requests per second.
    pub rate: f64,
    /// Keep-alive connections (at least one per thread).
    pub connections: usize,
    /// Client threads; connections and rate are split evenly between them.
    pub threads: usize,
    /// How long requests are sent; answers still missing 2 s later count as timeouts.
    pub duration: Duration,
    /// The status every answer should have (302); others are counted in `unexpected_status`.
    pub expect_status: u16,
    /// Seed of the request choice.
    pub seed: u64,
}

/// What a paced run measured.
#[derive(Debug, Clone, Default)]
pub struct PacedResult {
    /// Latencies (due → complete answer) of all answered requests, ns, sorted ascending.
    pub latencies_ns: Vec<u64>,
    /// Requests sent.
    pub sent: u64,
    /// Answers with a status other than the expected one.
    pub unexpected_status: u64,
    /// Connection errors (reset, closed, malformed answer); the connection is reopened.
    pub errors: u64,
    /// Requests without an answer when the run ended.
    pub timeouts: u64,
    /// Time from the first due instant to the last answer.
    pub elapsed: Duration,
    /// When the last answer arrived.
    pub last_answer: Option<Instant>,
    /// The client's own threads (connection runtimes and pacers) over the run: time on a
    /// CPU and time runnable but waiting for one (Linux schedstat; zero elsewhere). A
    /// client that waits for its CPU delays answers it then charges to the server.
    pub client_sched: ThreadSched,
}

/// On-CPU and run-queue wait time of threads, from `/proc/thread-self/schedstat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadSched {
    /// Time on a CPU.
    pub on_cpu: Duration,
    /// Time runnable, waiting for a CPU.
    pub waiting: Duration,
}

impl ThreadSched {
    /// The calling thread's totals so far (zero when schedstat is unavailable).
    fn this_thread() -> ThreadSched {
        let [run, wait, _] = super::threads::read_schedstat(std::path::Path::new("/proc/thread-self/schedstat")).unwrap_or_default();
        ThreadSched { on_cpu: Duration::from_nanos(run), waiting: Duration::from_nanos(wait) }
    }

    fn since(self, before: ThreadSched) -> ThreadSched {
        ThreadSched { on_cpu: self.on_cpu.saturating_sub(before.on_cpu), waiting: self.waiting.saturating_sub(before.waiting) }
    }

    fn plus(self, other: ThreadSched) -> ThreadSched {
        ThreadSched { on_cpu: self.on_cpu + other.on_cpu, waiting: self.waiting + other.waiting }
    }
}

impl PacedResult {
    /// The `q`-quantile (0..=1) latency in ms by the nearest-rank method; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        quantile(&self.latencies_ns, q) as f64 / 1e6
    }

    /// Answered requests per second.
    pub fn achieved_rps(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.latencies_ns.len() as f64 / s } else { 0.0 }
    }
}

/// Nearest-rank quantile of ascending `sorted` (0 when empty).
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs the paced load on `config.threads` client threads (each with its pacer thread; all
/// inherit this process's CPU affinity and scheduling policy) and merges their results.
/// Setting `cancel` stops sending early.
///
/// Errors when a connection cannot be opened at the start.
pub fn run(config: &PacedConfig, cancel: &Arc<AtomicBool>) -> anyhow::Result<PacedResult> {
    let threads = config.threads.clamp(1, config.connections.max(1));
    let start = Instant::now() + Duration::from_millis(200);
    let config = Arc::new(config.clone());
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let conns = config.connections / threads + usize::from(t < config.connections % threads);
            let rate = config.rate * conns as f64 / config.connections.max(1) as f64;
            let (cfg, cancel) = (Arc::clone(&config), Arc::clone(cancel));
            let seed = cfg.seed ^ (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            std::thread::Builder::new().name(format!("paced-{t}")).spawn(move || run_thread(&cfg, conns, rate, start, seed, &cancel))
        })
        .collect::<Result<_, _>>()
        .context("could not start a client thread")?;
    let mut total = PacedResult::default();
    for h in handles {
        let r = h.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        merge(&mut total, r);
    }
    total.latencies_ns.sort_unstable();
    Ok(total)
}

struct Conn {
    addr: SocketAddr,
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await.map_err(|_| std::io::Error::from(ErrorKind::TimedOut))??;
        stream.set_nodelay(true)?;
        Ok(Conn { addr, stream, buf: Vec::with_capacity(1024) })
    }

    /// Replaces a broken connection.
    async fn reopen(&mut self) -> anyhow::Result<()> {
        *self = Conn::open(self.addr).await.with_context(|| format!("could not reconnect to {}", self.addr))?;
        Ok(())
    }

    /// Sends `req` and reads one complete answer (until `deadline`).
    async fn exchange(&mut self, req: &[u8], deadline: Instant) -> Exchange {
        self.buf.clear();
        if self.stream.write_all(req).await.is_err() {
            return Exchange::Broken;
        }
        loop {
            match tokio::time::timeout_at(deadline.into(), self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Exchange::TimedOut,
                Ok(Ok(0) | Err(_)) => return Exchange::Broken,
                Ok(Ok(_)) => match parse_response(&self.buf) {
                    Parsed::Incomplete => {}
                    Parsed::Complete { status, len, close } if len == self.buf.len() => return Exchange::Answered { status, close },
                    Parsed::Complete { .. } | Parsed::Malformed => return Exchange::Broken,
                },
            }
        }
    }
}

enum Exchange {
    Answered { status: u16, close: bool },
    Broken,
    TimedOut,
}

/// Due instants queued by the pacer, taken by whichever connection is idle.
type DueQueue = Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Instant>>>;

/// One connection: takes due requests off `queue` until the pacer has finished and the
/// queue is empty.
async fn run_conn(cfg: Arc<PacedConfig>, queue: DueQueue, seed: u64, deadline: Instant) -> anyhow::Result<PacedResult> {
    let mut conn = Conn::open(cfg.addr).await.with_context(|| format!("could not connect to {}", cfg.addr))?;
    let mut out = PacedResult::default();
    let mut rng = seed | 1;
    loop {
        let Some(due) = queue.lock().await.recv().await else { break };
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let req = &cfg.requests[(rng % cfg.requests.len() as u64) as usize];
        out.sent += 1;
        match conn.exchange(req, deadline).await {
            Exchange::Answered { status, close } => {
                let done = Instant::now();
                out.latencies_ns.push(u64::try_from(done.duration_since(due).as_nanos()).unwrap_or(u64::MAX));
                out.last_answer = Some(done);
                if status != cfg.expect_status {
                    out.unexpected_status += 1;
                }
                if close {
                    conn.reopen().await?;
                }
            }
            Exchange::Broken => {
                out.errors += 1;
                conn.reopen().await?;
            }
            Exchange::TimedOut => {
                out.timeouts += 1;
                break;
            }
        }
    }
    Ok(out)
}

/// Queues request k's due instant `start + k·interval` at that instant, until `end` or
/// `cancel`; dropping the sender at the end tells the connections to finish.
fn pace(tx: &tokio::sync::mpsc::UnboundedSender<Instant>, start: Instant, interval: Duration, end: Instant, cancel: &AtomicBool) -> ThreadSched {
    let first = ThreadSched::this_thread();
    let mut k: u32 = 0;
    loop {
        let due = start + interval * k;
        if due >= end || cancel.load(Ordering::Relaxed) {
            return ThreadSched::this_thread().since(first);
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if tx.send(due).is_err() {
            return ThreadSched::this_thread().since(first);
        }
        k = k.saturating_add(1);
    }
}

/// One client thread: a pacer thread at `rate` and a single-threaded runtime driving
/// `conns` connections.
fn run_thread(cfg: &Arc<PacedConfig>, conns: usize, rate: f64, start: Instant, seed: u64, cancel: &Arc<AtomicBool>) -> anyhow::Result<PacedResult> {
    let first = ThreadSched::this_thread();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("could not start a client runtime")?;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
    let end = start + cfg.duration;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let queue: DueQueue = Arc::new(tokio::sync::Mutex::new(rx));
    let mut total = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..conns {
            let seed = seed.wrapping_add((i as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
            set.spawn(run_conn(Arc::clone(cfg), Arc::clone(&queue), seed, end + Duration::from_secs(2)));
        }
        // Connect first, then pace: the pacer starts at `start`.
        let pacer = {
            let cancel = Arc::clone(cancel);
            std::thread::Builder::new().name("paced-pacer".into()).spawn(move || pace(&tx, start, interval, end, &cancel))
        }
        .context("could not start the pacer thread")?;
        let mut total = PacedResult::default();
        while let Some(r) = set.join_next().await {
            merge(&mut total, r.context("a client connection task failed")??);
        }
        total.client_sched = pacer.join().map_err(|_| anyhow::anyhow!("the pacer thread panicked"))?;
        Ok::<_, anyhow::Error>(total)
    })?;
    // Requests still queued when every connection gave up are unanswered too.
    total.timeouts += queue.try_lock().map_or(0, |mut q| {
        let mut n = 0;
        while q.try_recv().is_ok() {
            n += 1;
        }
        n
    });
    total.elapsed = total.last_answer.map_or(Duration::ZERO, |t| t.saturating_duration_since(start));
    total.client_sched = total.client_sched.plus(ThreadSched::this_thread().since(first));
    Ok(total)
}

fn merge(total: &mut PacedResult, r: PacedResult) {
    total.latencies_ns.extend(r.latencies_ns);
    total.sent += r.sent;
    total.unexpected_status += r.unexpected_status;
    total.errors += r.errors;
    total.timeouts += r.timeouts;
    total.elapsed = total.elapsed.max(r.elapsed);
    total.last_answer = total.last_answer.max(r.last_answer);
    total.client_sched = total.client_sched.plus(r.client_sched);
}

/// How far an HTTP/1.1 response in a buffer got.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head or body is not complete yet.
    Incomplete,
    /// A complete response of `len` bytes (head + `Content-Length` body) with `status`;
    /// `close` when it says `Connection: close`.
    Complete {
        /// Status code.
        status: u16,
        /// Bytes of the whole response.
        len: usize,
        /// The server closes the connection after it.
        close: bool,
    },
    /// Not an HTTP/1.x response with a `Content-Length` (chunked answers are not expected).
    Malformed,
}

/// Parses the response at the start of `buf`.
pub fn parse_response(buf: &[u8]) -> Parsed {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > 64 * 1024 { Parsed::Malformed } else { Parsed::Incomplete };
    };
    let Ok(head) = std::str::from_utf8(&buf[..head_end]) else { return Parsed::Malformed };
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = match status_line.split(' ').collect::<Vec<_>>().as_slice() {
        [version, code, ..] if version.starts_with("HTTP/1.") => match code.parse::<u16>() {
            Ok(s) => s,
            Err(_) => return Parsed::Malformed,
        },
        _ => return Parsed::Malformed,
    };
    let (mut content_length, mut close) = (None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { return Parsed::Malformed };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(n) => content_length = Some(n),
                Err(_) => return Parsed::Malformed,
            }
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Malformed;
        }
    }
    let Some(body) = content_length else { return Parsed::Malformed };
    let len = head_end + 4 + body;
    if buf.len() < len { Parsed::Incomplete } else { Parsed::Complete { status, len, close } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn responses_are_delimited() {
        let sluice = b"HTTP/1.1 302 Found\r\nlocation: https://example.com/target\r\ncache-control: private, max-age=0\r\ncontent-length: 0\r\ndate: Sat, 29 Nov 2025 20:00:00 GMT\r\n\r\n";
        assert_eq!(parse_response(sluice), Parsed::Complete { status: 302, len: sluice.len(), close: false });
        assert_eq!(parse_response(&sluice[..sluice.len() - 1]), Parsed::Incomplete);
        let nginx = b"HTTP/1.1 302 Moved Temporarily\r\nServer: nginx\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
        assert_eq!(parse_response(nginx), Parsed::Complete { status: 302, len: nginx.len(), close: true });
        assert_eq!(parse_response(&nginx[..nginx.len() - 2]), Parsed::Incomplete);
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), Parsed::Malformed);
        assert_eq!(parse_response(b"SSH-2.0 hello\r\n\r\n"), Parsed::Malformed);
        assert_eq!(parse_response(b"HTTP/1.1 302 Found\r\n\r\n"), Parsed::Malformed, "no content-length");
    }

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&v, 0.0), 1);
        assert_eq!(quantile(&[], 0.99), 0);
        assert_eq!(quantile(&[7], 0.5), 7);
    }

    /// The nearest-rank `q`-quantile by its definition, without sorting: the smallest value
    /// `v` of `data` such that at least `q·n` values are `<= v`.
    fn naive_quantile(data: &[u64], q: f64) -> u64 {
        let need = q * data.len() as f64;
        data.iter().copied().filter(|&v| data.iter().filter(|&&x| x <= v).count() as f64 >= need).min().unwrap_or(0)
    }

    #[test]
    fn quantiles_match_a_naive_reference() {
        // xorshift-generated latencies with many ties and a long tail.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for n in [1usize, 2, 3, 7, 10, 99, 100, 101, 1000, 1237] {
            let data: Vec<u64> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if x.is_multiple_of(10) { 1_000_000 + x % 9_000_000 } else { 50_000 + x % 300 }
                })
                .collect();
            let mut sorted = data.clone();
            sorted.sort_unstable();
            for q in [0.0, 0.001, 0.1, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0] {
                assert_eq!(quantile(&sorted, q), naive_quantile(&data, q), "n = {n}, q = {q}");
            }
        }
    }

    #[test]
    fn result_quantiles_are_in_ms() {
        let r = PacedResult { latencies_ns: vec![250_000, 500_000, 1_500_000, 2_500_000], elapsed: Duration::from_secs(2), ..PacedResult::default() };
        assert_eq!(r.quantile_ms(0.5), 0.5);
        assert_eq!(r.quantile_ms(0.99), 2.5);
        assert_eq!(r.achieved_rps(), 2.0);
        assert_eq!(PacedResult::default().achieved_rps(), 0.0);
    }

    #[test]
    fn paced_run_against_a_local_server() {
        // A tiny server answering every request with a 302 of 3 body bytes.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(n) = s.read(&mut chunk) {
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let _ = s.write_all(b"HTTP/1.1 302 Found\r\nContent-Length: 3\r\n\r\nabc");
                        }
                    }
                });
            }
        });
        let cfg = PacedConfig {
            addr,
            requests: Arc::new(vec![b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()]),
            rate: 2000.0,
            connections: 4,
            threads: 2,
            duration: Duration::from_millis(500),
            expect_status: 302,
            seed: 1,
        };
        let r = run(&cfg, &Arc::new(AtomicBool::new(false))).expect("run");
        // 2000/s for 0.5 s: each of 4 connections sends at 0, 2, ..., 498 ms → 250 each.
        assert_eq!(r.sent, 1000);
        assert_eq!(r.latencies_ns.len(), 1000);
        assert_eq!((r.errors, r.timeouts, r.unexpected_status), (0, 0, 0));
        assert!(r.latencies_ns.windows(2).all(|w| w[0] <= w[1]));
        if std::path::Path::new("/proc/thread-self/schedstat").exists() {
            // 1,000 requests over two client threads and their pacers cost some CPU.
            assert!(r.client_sched.on_cpu > Duration::ZERO, "{:?}", r.client_sched);
        }
    }
}
