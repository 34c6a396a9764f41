//! Connection limits of [`super::serve_with`]: how many connections the server keeps open,
//! in all and per client address, and which connection makes room for a new one.
//!
//! Without limits a client can hold every file descriptor the process may open: tens of
//! thousands of connections that send nothing (or a request head one byte at a time) fill
//! the descriptor limit, and every later `accept` fails until the header read deadline
//! (30 s by default) closes them: for that long no browser gets its redirect. So:
//!
//! * **In all** at most [`ConnectionLimits::max_connections`] connections are open
//!   (`[server] max-connections`; 0 = derived from the process's file-descriptor limit, the
//!   `RLIMIT_NOFILE` soft limit less [`fd_reserve`] descriptors kept for the link store,
//!   the click log, checkpoints, sink connections and logs (at least those open at start
//!   plus a headroom); `sluice serve` first raises
//!   the soft limit to the hard one, [`raise_fd_limit`], as nginx's
//!   `worker_rlimit_nofile` and Go's runtime do).
//! * **Per client** at most [`ConnectionLimits::max_per_client`] (`[server]
//!   max-connections-per-client`, default 1,000; 0 = no limit). A client is the socket
//!   peer's address: an IPv4 address, or the /64 prefix of an IPv6 one (one host or
//!   network gets a /64, RFC 6177), an IPv4-mapped IPv6 address counting as its IPv4
//!   address. Peers inside `[server] trusted-proxies` are not limited per client (a load
//!   balancer's connections carry many clients); they count toward the total.
//! * **Making room**: a new connection over a limit closes one connection in the limit's
//!   scope (the same client's for the per-client limit, any for the total) and is served
//!   (a refusal, like nginx's `limit_conn`, would leave the idle holders in place and turn
//!   everyone else away). Chosen first: the *least recently active idle* connection, with
//!   nothing being answered or written: between keep-alive requests, before its first
//!   request, or with a request head still arriving (a slowloris). Then the least recently
//!   active *interruptible* one: a server-sent events stream (its client reconnects, with
//!   `Last-Event-ID` where the route resumes) or a request whose body is still arriving
//!   (the request is lost; a stalled upload is the least recently active). Never a
//!   connection with an answer in flight: a handler running, or an answer still being
//!   written to a slow reader. Activity is the latest read or write, in [`TICK`]s. The
//!   chosen connection first reads what is waiting for it (a request already sent is
//!   answered when the answer is ready at once), then is closed, without an answer; one
//!   that turned busy meanwhile is closed after its answer, like at a graceful stop. Only
//!   when no connection in scope can make room is the new one refused: closed right after
//!   `accept`, without an answer (reading its request would cost what the limit saves).
//!
//! Metrics: `sluice_http_connections` (gauge: connections open and not closing),
//! `sluice_http_connections_closed_for_room_total{limit}` and
//! `sluice_http_connections_refused_total{limit}`, `limit` = `client` or `server`. The first
//! refusal or eviction in every 10 s is logged at WARN with the counts since the last one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::Notify;

/// The resolution of a connection's activity time (100 ms): the server's clock task
/// advances a process-wide counter this often, and a read or write stores its value (one
/// atomic load and store, no clock read per I/O).
pub const TICK: Duration = Duration::from_millis(100);

/// Default `[server] max-connections-per-client`.
pub const DEFAULT_MAX_PER_CLIENT: usize = 1000;

/// The limits of one server (module docs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionLimits {
    /// Most connections open in all; 0 = derived from the file-descriptor limit
    /// ([`derived_max_connections`]).
    pub max_connections: usize,
    /// Most connections open per client (IPv4 address, IPv6 /64); 0 = no limit.
    pub max_per_client: usize,
    /// Peers not limited per client (`[server] trusted-proxies`).
    pub exempt: Vec<IpNet>,
}

/// Descriptors kept out of the connection limit for everything else the process opens,
/// when `open` descriptors are open already (stores, logs, the listener: [`open_fds`] once
/// they are open): 1,024, or a quarter of `nofile` when that is less than 4,096 — but at
/// least `open` plus [`FD_HEADROOM`], so that under a small limit (`ulimit -n 256`) the
/// connections cannot take the descriptors the process already holds and an `accept` does
/// not fail with "too many open files" before the limit makes room.
pub fn fd_reserve(nofile: u64, open: u64) -> u64 {
    let share = if nofile >= 4096 { 1024 } else { nofile / 4 };
    share.max(open.saturating_add(FD_HEADROOM))
}

/// Descriptors kept beyond those open at start for what the process opens later (SQLite
/// and sink connections, export files, checkpoints).
pub const FD_HEADROOM: u64 = 64;

/// The total connection limit for a file-descriptor soft limit of `nofile` with `open`
/// descriptors open: `nofile` less [`fd_reserve`], at least 1.
pub fn derived_max_connections(nofile: u64, open: u64) -> usize {
    usize::try_from(nofile.saturating_sub(fd_reserve(nofile, open)).max(1)).unwrap_or(usize::MAX)
}

/// Whether `max_connections` connections would leave fewer than [`fd_reserve`] of
/// `nofile` descriptors for everything else (any value, `usize::MAX` included).
pub fn leaves_no_reserve(max_connections: usize, nofile: u64, open: u64) -> bool {
    u64::try_from(max_connections).unwrap_or(u64::MAX).saturating_add(fd_reserve(nofile, open)) > nofile
}

/// Logs a warning when the connection limit `max` (`configured`: `[server] max-connections`,
/// 0 = derived) is short for the file-descriptor limit `nofile` with `open` descriptors
/// open: a derived limit under 64 connections (raise the hard limit), or a configured one
/// that leaves fewer than [`fd_reserve`] descriptors (accepts may then fail).
pub fn warn_if_short(configured: usize, max_connections: Option<usize>, nofile: Option<u64>, open: u64) {
    if let (Some(nofile), Some(max), 0) = (nofile, max_connections, configured)
        && max < 64
    {
        tracing::warn!(
            max_connections = max,
            fd_limit = nofile,
            open_fds = open,
            "the file-descriptor limit leaves room for few connections (idle ones are closed to make room); raise the hard limit (ulimit -Hn, LimitNOFILE=)"
        );
    } else if let (Some(nofile), Some(max)) = (nofile, max_connections)
        && leaves_no_reserve(max, nofile, open)
    {
        tracing::warn!(
            max_connections = max,
            fd_limit = nofile,
            "server.max-connections leaves fewer than the reserved descriptors of the file-descriptor limit: accepts may fail with 'too many open files' before the limit closes idle connections"
        );
    }
}

/// Descriptors this process has open now (entries of `/proc/self/fd`, less the one reading
/// it); 0 when they cannot be listed (not Linux).
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| (d.count() as u64).saturating_sub(1))
}

/// The process's `RLIMIT_NOFILE` soft limit (`None` when it cannot be read or is
/// unlimited).
pub fn fd_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Raises the `RLIMIT_NOFILE` soft limit to the hard limit; returns the soft limit now in
/// force (`None` when it cannot be read). A failure to raise it is logged at WARN and
/// leaves the limit as it was.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(soft), Some(hard)) = (limit.current, limit.maximum)
        && soft < hard
    {
        match setrlimit(Resource::Nofile, rustix::process::Rlimit { current: Some(hard), maximum: Some(hard) }) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the file-descriptor soft limit to the hard limit"),
            Err(e) => tracing::warn!(error = %e, soft, hard, "could not raise the file-descriptor soft limit"),
        }
    }
    fd_limit()
}

/// The limit key of a peer: an IPv4 address, or an IPv6 /64 prefix (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An IPv4 peer (also one written IPv4-mapped, `::ffff:a.b.c.d`).
    V4(u32),
    /// The first 64 bits of an IPv6 peer.
    V6(u64),
}

impl ClientKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(u32::from(v4)),
                None => ClientKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Ticks of [`TICK`] since the first server of the process started its clock.
static NOW_TICKS: AtomicU32 = AtomicU32::new(0);
static CLOCK_START: OnceLock<Instant> = OnceLock::new();

/// Sets the activity clock (tests: nextest runs each test in its own process).
#[cfg(test)]
pub(super) fn set_ticks(ticks: u32) {
    NOW_TICKS.store(ticks, Ordering::Relaxed);
}

/// Advances the activity clock every [`TICK`] until dropped (each server runs one; several
/// store the same value).
pub(super) fn spawn_clock() -> tokio::task::JoinHandle<()> {
    let start = *CLOCK_START.get_or_init(Instant::now);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            every.tick().await;
            let ticks = start.elapsed().as_millis() / TICK.as_millis();
            NOW_TICKS.store(u32::try_from(ticks).unwrap_or(u32::MAX), Ordering::Relaxed);
        }
    })
}

/// What the server knows of one connection's activity, shared by its stream (reads and
/// writes), its service (requests) and the registry (eviction). Cloning is cheap (an
/// `Arc`).
#[derive(Debug, Clone, Default)]
pub struct ConnActivity(Arc<ActivityState>);

#[derive(Debug, Default)]
struct ActivityState {
    read_since_write: AtomicBool,
    /// A request is being handled (set when its answer is not ready at once, cleared when
    /// that answer's body is written or dropped).
    busy: AtomicBool,
    /// The latest write took fewer bytes than offered, or had to wait: an answer is still
    /// going out (a slow reader; hyper holds the rest in its buffer).
    write_pending: AtomicBool,
    /// Answering with a server-sent events stream (`text/event-stream`).
    streaming: AtomicBool,
    /// A request body is still arriving.
    reading_body: AtomicBool,
    /// [`NOW_TICKS`] at the latest read or write (or the accept).
    last_active: AtomicU32,
    /// Closed to make room: set by the registry, read by the connection's task.
    evicted: AtomicBool,
    wake: Notify,
}

/// How readily a connection makes room (module docs), in the order they are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Room {
    /// Nothing being answered or written: between requests, before the first, or a head
    /// still arriving.
    Idle,
    /// Interruptible without losing a finished answer: an SSE stream (its client reconnects,
    /// with `Last-Event-ID` where the route resumes) or a request whose body is still
    /// arriving (the request is lost; it is the slowest of all).
    Interruptible,
}

impl ConnActivity {
    /// A new connection's state: active now, idle, nothing read.
    pub fn new() -> Self {
        let a = ConnActivity::default();
        a.0.last_active.store(NOW_TICKS.load(Ordering::Relaxed), Ordering::Relaxed);
        a
    }

    /// Whether the connection has read bytes since it last wrote any: `true` while a
    /// request is arriving or being answered, `false` between requests (after an answer,
    /// before the next request's first byte) and before the first request. Read at the
    /// graceful stop ([`super::until_drained`]).
    pub fn read_since_write(&self) -> bool {
        self.0.read_since_write.load(Ordering::Relaxed)
    }

    /// The stream read `n` bytes.
    pub fn on_read(&self, n: usize) {
        if n > 0 {
            self.0.read_since_write.store(true, Ordering::Relaxed);
            self.0.last_active.store(NOW_TICKS.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// The stream wrote `n` of the `offered` bytes (fewer: the rest is still to go out).
    pub fn on_write(&self, n: usize, offered: usize) {
        if n > 0 {
            self.0.read_since_write.store(false, Ordering::Relaxed);
            self.0.last_active.store(NOW_TICKS.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.0.write_pending.store(n < offered, Ordering::Relaxed);
    }

    /// A write had to wait for the socket (the peer does not read fast enough).
    pub fn on_write_blocked(&self) {
        self.0.write_pending.store(true, Ordering::Relaxed);
    }

    /// A request is being handled and its answer is not ready yet: the connection is busy
    /// until [`ConnActivity::on_answered`] (an answer ready at once never makes it busy).
    pub fn on_request(&self) {
        self.0.busy.store(true, Ordering::Relaxed);
    }

    /// The answer is a server-sent events stream (until [`ConnActivity::on_answered`]).
    pub fn on_stream(&self) {
        self.0.streaming.store(true, Ordering::Relaxed);
    }

    /// Whether a request body is still arriving (`true` from its head to its end).
    pub fn on_body(&self, arriving: bool) {
        self.0.reading_body.store(arriving, Ordering::Relaxed);
    }

    /// The answer's body is handed to hyper to its end (or dropped): the connection is no
    /// longer busy (its last bytes may still be going out, [`ConnActivity::on_write`]),
    /// active now.
    pub fn on_answered(&self) {
        self.0.last_active.store(NOW_TICKS.load(Ordering::Relaxed), Ordering::Relaxed);
        self.0.streaming.store(false, Ordering::Relaxed);
        self.0.busy.store(false, Ordering::Relaxed);
    }

    /// Whether the connection can be closed at once to make room: idle or interruptible
    /// (module docs); otherwise an answer is in flight and it closes after it.
    pub fn closable_now(&self) -> bool {
        self.room().is_some()
    }

    /// Whether the registry closed this connection to make room ([`Self::evicted`]).
    pub fn is_evicted(&self) -> bool {
        self.0.evicted.load(Ordering::Acquire)
    }

    /// Resolves once the registry closed this connection to make room (any number of
    /// tasks may wait).
    pub async fn evicted(&self) {
        loop {
            let woken = self.0.wake.notified();
            let mut woken = std::pin::pin!(woken);
            woken.as_mut().enable();
            if self.0.evicted.load(Ordering::Acquire) {
                return;
            }
            woken.await;
        }
    }

    fn room(&self) -> Option<Room> {
        let s = &self.0;
        if s.streaming.load(Ordering::Relaxed) || s.reading_body.load(Ordering::Relaxed) {
            Some(Room::Interruptible)
        } else if s.busy.load(Ordering::Relaxed) || s.write_pending.load(Ordering::Relaxed) {
            None
        } else {
            Some(Room::Idle)
        }
    }

    /// How readily it makes room and since when it is inactive (ticks); `None`: never.
    fn room_since(&self) -> Option<(Room, u32)> {
        self.room().map(|r| (r, self.0.last_active.load(Ordering::Relaxed)))
    }

    fn evict(&self) {
        self.0.evicted.store(true, Ordering::Release);
        self.0.wake.notify_waiters();
    }
}

/// Which limit a refusal or eviction is for (the `limit` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `max-connections-per-client`.
    Client,
    /// `max-connections`.
    Server,
}

impl Limit {
    fn label(self) -> &'static str {
        match self {
            Limit::Client => "client",
            Limit::Server => "server",
        }
    }
}

/// A connection let in: its activity state and its registration (dropping it removes the
/// connection from the counts).
#[derive(Debug)]
pub struct Admitted {
    /// Shared with the stream and the service.
    pub activity: ConnActivity,
    /// Removes the connection when dropped.
    pub registration: Registration,
}

/// The open connections of one server and their counts (module docs).
#[derive(Debug)]
pub struct ConnRegistry {
    max_connections: usize,
    max_per_client: usize,
    exempt: Vec<IpNet>,
    inner: Mutex<Inner>,
    /// Refusals and evictions since the last WARN, and when it was (ms since the clock's start).
    unlogged: AtomicU64,
    last_warn_ms: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    slots: HashMap<u64, Slot>,
    next_id: u64,
    /// Connections counted (open, not closing to make room).
    open: usize,
    per_client: HashMap<ClientKey, usize>,
}

#[derive(Debug)]
struct Slot {
    key: ClientKey,
    /// Counted per client (not exempt).
    limited: bool,
    /// Closing to make room: no longer counted.
    evicted: bool,
    activity: ConnActivity,
}

/// A connection's place in its [`ConnRegistry`]; dropping it removes the connection.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<ConnRegistry>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.registry.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(slot) = inner.slots.remove(&self.id)
            && !slot.evicted
        {
            inner.uncount(slot.key, slot.limited);
        }
        metrics::gauge!("sluice_http_connections").set(inner.open as f64);
    }
}

impl Inner {
    fn uncount(&mut self, key: ClientKey, limited: bool) {
        self.open -= 1;
        if limited && let Some(n) = self.per_client.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&key);
            }
        }
    }

    /// The connection matching `scope` to close for room: the least recently active idle
    /// one, else the least recently active interruptible one (ties: the oldest).
    fn first_to_make_room(&self, scope: impl Fn(&Slot) -> bool) -> Option<u64> {
        self.slots
            .iter()
            .filter(|(_, s)| !s.evicted && scope(s))
            .filter_map(|(id, s)| s.activity.room_since().map(|(room, t)| (room, t, *id)))
            .min()
            .map(|(_, _, id)| id)
    }

    fn evict(&mut self, id: u64) {
        let Some(slot) = self.slots.get_mut(&id) else { return };
        slot.evicted = true;
        slot.activity.evict();
        let (key, limited) = (slot.key, slot.limited);
        self.uncount(key, limited);
    }
}

impl ConnRegistry {
    /// A registry enforcing `limits` (`max_connections` 0: [`derived_max_connections`] of
    /// the current [`fd_limit`], or no limit when that is unknown).
    pub fn new(limits: &ConnectionLimits) -> Arc<Self> {
        let max_connections = match limits.max_connections {
            0 => fd_limit().map_or(usize::MAX, |nofile| derived_max_connections(nofile, open_fds())),
            n => n,
        };
        // Every series from the start (a first increase is then seen by `rate()`).
        for limit in [Limit::Client, Limit::Server] {
            metrics::counter!("sluice_http_connections_refused_total", "limit" => limit.label()).increment(0);
            metrics::counter!("sluice_http_connections_closed_for_room_total", "limit" => limit.label()).increment(0);
        }
        metrics::gauge!("sluice_http_connections").set(0.0);
        Arc::new(ConnRegistry {
            max_connections,
            max_per_client: limits.max_per_client,
            exempt: limits.exempt.clone(),
            inner: Mutex::new(Inner::default()),
            unlogged: AtomicU64::new(0),
            last_warn_ms: AtomicU64::new(0),
        })
    }

    /// The total limit in force.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Lets in a connection from `peer`, closing one in the scope of a limit it would pass
    /// (module docs). Errors: the limit that refused it,
    /// when every connection in that scope is being answered.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, Limit> {
        let key = ClientKey::of(peer);
        let limited = self.max_per_client > 0 && !self.exempt.iter().any(|n| n.contains(&peer));
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if limited && inner.per_client.get(&key).copied().unwrap_or(0) >= self.max_per_client {
            self.make_room(&mut inner, Limit::Client, |s| s.limited && s.key == key)?;
        }
        if inner.open >= self.max_connections {
            self.make_room(&mut inner, Limit::Server, |_| true)?;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let activity = ConnActivity::new();
        inner.slots.insert(id, Slot { key, limited, evicted: false, activity: activity.clone() });
        inner.open += 1;
        if limited {
            *inner.per_client.entry(key).or_insert(0) += 1;
        }
        metrics::gauge!("sluice_http_connections").set(inner.open as f64);
        Ok(Admitted { activity, registration: Registration { registry: Arc::clone(self), id } })
    }

    /// Closes the connection in `scope` that makes room first, for `limit`. Errors: `limit`,
    /// when none in scope can (counted as a refusal).
    fn make_room(&self, inner: &mut Inner, limit: Limit, scope: impl Fn(&Slot) -> bool) -> Result<(), Limit> {
        let chosen = inner.first_to_make_room(scope);
        self.note(limit, chosen.is_none());
        let id = chosen.ok_or(limit)?;
        inner.evict(id);
        Ok(())
    }

    /// Connections counted now (open and not closing to make room).
    pub fn open(&self) -> usize {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).open
    }

    /// Counts a refusal (`refused`) or an eviction for `limit`; logs the first in 10 s.
    fn note(&self, limit: Limit, refused: bool) {
        let name = if refused { "sluice_http_connections_refused_total" } else { "sluice_http_connections_closed_for_room_total" };
        metrics::counter!(name, "limit" => limit.label()).increment(1);
        let unlogged = self.unlogged.fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = u64::from(NOW_TICKS.load(Ordering::Relaxed)) * TICK.as_millis() as u64;
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if (last == 0 || now_ms >= last + 10_000) && self.last_warn_ms.compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.unlogged.store(0, Ordering::Relaxed);
            tracing::warn!(
                limit = limit.label(),
                max_connections = self.max_connections,
                max_per_client = self.max_per_client,
                refused,
                events_since_last_warning = unlogged,
                "connection limit reached: closing the least recently active idle connection, or refusing the new one when none is idle"
            );
        }
    }
}

#[cfg(test)]
mod tests;
