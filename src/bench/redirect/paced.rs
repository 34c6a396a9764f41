//! A constant-rate (open-loop) HTTP/1.1 load client, for latency at a fixed fraction of the
//! maximum rate (what wrk2's `-R` does; wrk2 is not packaged in Debian).
//!
//! Each client thread runs one epoll loop over its share of the keep-alive connections
//! (no async runtime, no pacer thread): request k of the thread is due at
//! `start + k / rate`; whenever a request is due and a connection is idle, it is sent on
//! that connection (oldest due first), and between events the thread sleeps in
//! `epoll_pwait2` until the next due instant (nanosecond timeout; the kernel may wake it up
//! to the thread's timer slack later, 50 µs by default, so that one wake-up can send a few
//! due requests instead of taking a timer interrupt for each).
//!
//! Latency is measured from when the request was due, not from when it was sent, so a
//! stalled server is charged for the requests it delayed (no coordinated omission, as in
//! wrk2); a client that wakes late is charged too, so figures are if anything pessimistic,
//! and the client's own CPU and run-queue wait are reported beside them. Nothing spins.
//! Responses are parsed just enough to find their end (`Content-Length`; no pipelining).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rustix::buffer::spare_capacity;
use rustix::event::{Timespec, epoll};

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
    /// Timer slack of the client threads (`PR_SET_TIMERSLACK`; zero leaves the default, 50 µs
    /// for normal threads): how late the kernel may wake a thread for a due request.
    pub timer_slack: Duration,
    /// Poll the sockets with a zero timeout instead of sleeping until the next due instant
    /// or answer: the thread never sleeps, so an answer never has to wake it (on loopback
    /// that wake-up is an inter-processor interrupt paid on the server's CPU).
    pub busy_poll: bool,
    /// The status every answer should have (302); others are counted in `unexpected_status`.
    pub expect_status: u16,
    /// Seed of the request choice.
    pub seed: u64,
}

/// What a paced run measured.
#[derive(Debug, Clone, Default)]
pub struct PacedResult {
    /// Latencies (due → complete answer) of the requests answered with the expected status,
    /// ns, sorted ascending.
    pub latencies_ns: Vec<u64>,
    /// Requests sent.
    pub sent: u64,
    /// Answers with a status other than the expected one (not in `latencies_ns`).
    pub unexpected_status: u64,
    /// Requests lost to a broken connection (reset, closed or malformed answer while the
    /// request was in flight); the connection is reopened.
    pub errors: u64,
    /// Requests without an answer 2 s after the run, plus requests that fell due and were
    /// never sent because every connection was still waiting.
    pub timeouts: u64,
    /// Idle keep-alive connections the server closed (reopened; no request lost).
    pub reconnects: u64,
    /// The run's length, or longer: from the first due instant to the last answer.
    pub elapsed: Duration,
    /// When the last answer arrived.
    pub last_answer: Option<Instant>,
    /// The client's own threads over the run: time on a CPU and time runnable but waiting
    /// for one (Linux schedstat; zero elsewhere). A
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
    /// Requests that got no answer with the expected status: timeouts, errors and
    /// unexpected statuses.
    pub fn failed(&self) -> u64 {
        self.timeouts + self.errors + self.unexpected_status
    }

    /// The `q`-quantile (0..=1) latency in ms by the nearest-rank method over every request
    /// due: the [`failed`](Self::failed) ones count as infinitely slow (a failure is never
    /// better than a slow answer), so the result is `f64::INFINITY` when the rank falls
    /// among them, and `NaN` when no request was due at all.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let answered = self.latencies_ns.len() as u64;
        let all = answered + self.failed();
        if all == 0 {
            return f64::NAN;
        }
        let rank = ((q.clamp(0.0, 1.0) * all as f64).ceil() as u64).clamp(1, all);
        if rank > answered { f64::INFINITY } else { self.latencies_ns[rank as usize - 1] as f64 / 1e6 }
    }

    /// Answered requests (expected status) per second of the run.
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

/// Runs the paced load on `config.threads` client threads (all inherit this process's CPU
/// affinity and scheduling policy) and merges their results. Setting `cancel` stops
/// sending early.
///
/// Errors when a connection cannot be opened at the start, or when epoll fails.
pub fn run(config: &PacedConfig, cancel: &Arc<AtomicBool>) -> anyhow::Result<PacedResult> {
    let threads = config.threads.clamp(1, config.connections.max(1));
    let gate = Arc::new(StartGate::new(threads));
    let config = Arc::new(config.clone());
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let conns = config.connections / threads + usize::from(t < config.connections % threads);
            let rate = config.rate * conns as f64 / config.connections.max(1) as f64;
            // Thread t's schedule is offset by t request intervals of the whole client, so
            // the threads' requests interleave evenly instead of arriving in bursts.
            let offset = Duration::from_secs_f64(t as f64 / config.rate.max(1e-3));
            let (cfg, cancel, gate) = (Arc::clone(&config), Arc::clone(cancel), Arc::clone(&gate));
            let seed = cfg.seed ^ (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            std::thread::Builder::new().name(format!("paced-{t}")).spawn(move || run_thread(&cfg, conns, rate, offset, seed, &gate, &cancel))
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

/// Bytes of one answer a connection can hold (sluice's and nginx's are a few hundred).
const ANSWER_CAPACITY: usize = 16 * 1024;

/// One keep-alive connection of a client thread's event loop.
struct Conn {
    stream: TcpStream,
    /// The answer read so far: `buf[..len]`.
    buf: Box<[u8; ANSWER_CAPACITY]>,
    len: usize,
    /// Due instant of the request in flight; `None` when idle.
    due: Option<Instant>,
}

impl Conn {
    /// Opens a non-blocking connection to `addr` (blocking connect of at most 2 s: loopback)
    /// and registers it with `epoll` under token `token`, readable interest, level-triggered.
    fn open(addr: SocketAddr, epoll: &OwnedFd, token: usize) -> std::io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        epoll::add(epoll, &stream, epoll::EventData::new_u64(token as u64), epoll::EventFlags::IN)?;
        let mut buf = Box::new([0; ANSWER_CAPACITY]);
        // Written once now, so that reading answers into it never page-faults during the run
        // (a zeroed allocation is only reserved address space; see `prefaulted`).
        buf.fill(b' ');
        std::hint::black_box(&mut buf);
        Ok(Conn { stream, buf, len: 0, due: None })
    }

    /// Sends `req` (a few hundred bytes: it fits an empty socket send buffer at once).
    fn send(&mut self, req: &[u8], due: Instant) -> std::io::Result<()> {
        self.len = 0;
        let n = (&self.stream).write(req)?;
        if n != req.len() {
            return Err(std::io::Error::new(ErrorKind::WriteZero, "short write of a request"));
        }
        self.due = Some(due);
        Ok(())
    }

    /// Reads what is available; the answer's status and whether the server closes the
    /// connection once it is complete, `Ok(None)` while incomplete, an error when the
    /// connection broke or the answer is malformed or more than one answer.
    fn receive(&mut self) -> std::io::Result<Option<(u16, bool)>> {
        if self.len == ANSWER_CAPACITY {
            return Err(std::io::Error::new(ErrorKind::InvalidData, "answer longer than 16 KiB"));
        }
        match (&self.stream).read(&mut self.buf[self.len..]) {
            Ok(0) => Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                self.len += n;
                match parse_response(&self.buf[..self.len]) {
                    Parsed::Incomplete => Ok(None),
                    Parsed::Complete { status, len, close } if len == self.len => Ok(Some((status, close))),
                    Parsed::Complete { .. } | Parsed::Malformed => Err(ErrorKind::InvalidData.into()),
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// An empty vector with room for `n` latencies whose memory is already written once, so that
/// recording a latency during the run never page-faults. A fresh allocation is only
/// reserved address space; the first write to each page is a page fault, and where the
/// allocator asks for transparent huge pages (mimalloc does for large blocks) one fault
/// zeroes 2 MiB at once: on the benchmark VM that took ~2.5 ms of the client thread
/// (`perf record -a` of a paced run, session 28), time in which no request was sent or
/// read and which the server was charged for.
fn prefaulted(n: usize) -> Vec<u64> {
    let mut v = Vec::with_capacity(n);
    v.resize(n, 1);
    std::hint::black_box(&mut v);
    v.clear();
    v
}

/// A new connection in place of connection `i` (the old one is closed when dropped, which
/// also takes it out of `epoll`).
fn reopen(addr: SocketAddr, epoll: &OwnedFd, i: usize) -> anyhow::Result<Conn> {
    Conn::open(addr, epoll, i).with_context(|| format!("could not reconnect to {addr}"))
}

/// The xorshift64 step that picks each request.
fn next_rng(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

/// Lets every client thread open its connections before the schedule starts, so that no
/// request falls due while connections are still being opened (the wait would be charged
/// to the server).
struct StartGate {
    barrier: std::sync::Barrier,
    start: std::sync::OnceLock<Instant>,
}

impl StartGate {
    fn new(threads: usize) -> StartGate {
        StartGate { barrier: std::sync::Barrier::new(threads), start: std::sync::OnceLock::new() }
    }

    /// Waits for every thread, then returns the common start instant (10 ms from the moment
    /// the last thread arrived).
    fn start(&self) -> Instant {
        if self.barrier.wait().is_leader() {
            let _ = self.start.set(Instant::now() + Duration::from_millis(10));
        }
        self.barrier.wait();
        self.start.get().copied().unwrap_or_else(Instant::now)
    }
}

/// One client thread: a single epoll loop over `conns` connections. Once every thread has
/// connected, request k is due at `start + offset + k/rate` while before
/// `start + duration`; whenever a request is due and a connection idle, it is sent on that
/// connection, oldest due first; between events the loop sleeps in `epoll_pwait2` until
/// the next due instant (nanosecond timeout, `timer_slack`), or polls without sleeping
/// when `busy_poll`.
fn run_thread(cfg: &PacedConfig, conns: usize, rate: f64, offset: Duration, seed: u64, gate: &StartGate, cancel: &AtomicBool) -> anyhow::Result<PacedResult> {
    let first = ThreadSched::this_thread();
    let setup = || -> anyhow::Result<(OwnedFd, Vec<Conn>)> {
        if let Some(slack) = std::num::NonZeroU64::new(u64::try_from(cfg.timer_slack.as_nanos()).unwrap_or(u64::MAX)) {
            rustix::thread::set_current_timer_slack(Some(slack)).context("could not set the client's timer slack")?;
        }
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).context("epoll_create failed")?;
        let conns = (0..conns.max(1))
            .map(|i| Conn::open(cfg.addr, &epoll, i).with_context(|| format!("could not connect to {}", cfg.addr)))
            .collect::<anyhow::Result<_>>()?;
        Ok((epoll, conns))
    };
    let expected = usize::try_from((cfg.duration.as_secs_f64() * rate) as u64).unwrap_or(0).min(1 << 26) + 1;
    // Before the start: faulting in this memory is not charged to any request.
    let mut out = PacedResult { latencies_ns: prefaulted(expected), ..PacedResult::default() };
    let opened = setup();
    // Every thread passes the gate, also one that failed, so that none waits forever.
    let start = gate.start();
    let (epoll, mut conns) = opened?;
    let end = start.checked_add(cfg.duration).context("--duration is too long")?;
    let deadline = end + Duration::from_secs(2);
    let first_due = start + offset;
    let interval_s = 1.0 / rate.max(1e-3);
    // Request k's due instant; `end` (stop) once it would not be representable.
    let due = |k: u64| Duration::try_from_secs_f64(k as f64 * interval_s).ok().and_then(|d| first_due.checked_add(d)).unwrap_or(end);
    let mut idle: Vec<usize> = (0..conns.len()).rev().collect();
    let mut rng = seed | 1;
    let mut k: u64 = 0;
    let mut next_due = first_due;
    let mut events: Vec<epoll::Event> = Vec::with_capacity(conns.len());
    let mut stopped = false;
    loop {
        let now = Instant::now();
        if !stopped && (next_due >= end || cancel.load(Ordering::Relaxed)) {
            stopped = true;
        }
        while !stopped && next_due <= now {
            let Some(i) = idle.pop() else { break };
            let req = &cfg.requests[(next_rng(&mut rng) % cfg.requests.len() as u64) as usize];
            out.sent += 1;
            if conns[i].send(req, next_due).is_err() {
                out.errors += 1;
                conns[i] = reopen(cfg.addr, &epoll, i)?;
                idle.push(i);
            }
            k += 1;
            next_due = due(k);
            stopped = next_due >= end;
        }
        let in_flight = conns.len() - idle.len();
        if stopped && in_flight == 0 {
            break;
        }
        // Sending may have taken a while: the sleep is measured from now, not from before.
        let now = Instant::now();
        if now >= deadline {
            // Sent and unanswered, plus due and never sent (every connection was busy).
            out.timeouts += in_flight as u64;
            while next_due < end {
                out.timeouts += 1;
                k += 1;
                next_due = due(k);
            }
            break;
        }
        let wake = if !stopped && !idle.is_empty() { next_due.min(deadline) } else { deadline };
        let timeout = if cfg.busy_poll { Duration::ZERO } else { wake.saturating_duration_since(now) };
        let timeout = Timespec { tv_sec: timeout.as_secs() as i64, tv_nsec: i64::from(timeout.subsec_nanos()) };
        events.clear();
        match epoll::wait(&epoll, spare_capacity(&mut events), Some(&timeout)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e).context("epoll_wait failed"),
        }
        for ev in &events {
            let i = ev.data.u64() as usize;
            let Some(due) = conns[i].due else {
                // An idle connection that became readable was closed by the server (or sent
                // an unasked-for answer): replace it; it stays idle and no request is lost.
                if !matches!(conns[i].receive(), Ok(None)) {
                    out.reconnects += 1;
                    conns[i] = reopen(cfg.addr, &epoll, i)?;
                }
                continue;
            };
            match conns[i].receive() {
                Ok(None) => {}
                Ok(Some((status, close))) => {
                    let done = Instant::now();
                    if status == cfg.expect_status {
                        out.latencies_ns.push(u64::try_from(done.duration_since(due).as_nanos()).unwrap_or(u64::MAX));
                    } else {
                        out.unexpected_status += 1;
                    }
                    out.last_answer = Some(done);
                    if close {
                        out.reconnects += 1;
                        conns[i] = reopen(cfg.addr, &epoll, i)?;
                    }
                    conns[i].due = None;
                    idle.push(i);
                }
                Err(_) => {
                    out.errors += 1;
                    conns[i] = reopen(cfg.addr, &epoll, i)?;
                    idle.push(i);
                }
            }
        }
    }
    out.elapsed = out.last_answer.map_or(Duration::ZERO, |t| t.saturating_duration_since(start)).max(cfg.duration);
    out.client_sched = ThreadSched::this_thread().since(first);
    Ok(out)
}

fn merge(total: &mut PacedResult, r: PacedResult) {
    total.latencies_ns.extend(r.latencies_ns);
    total.sent += r.sent;
    total.unexpected_status += r.unexpected_status;
    total.errors += r.errors;
    total.timeouts += r.timeouts;
    total.reconnects += r.reconnects;
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
    // No allocation per answer (the client must not touch fresh memory while it measures).
    let mut parts = status_line.split(' ');
    let status = match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => match code.parse::<u16>() {
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
mod tests;
