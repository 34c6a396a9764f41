//! The link-creation rate limit (`[api] create-rate-limit`, cases README C25): at most
//! `max` `POST /v1/links` requests per client per fixed window.
//!
//! - **Client**: the socket peer, or, only when the peer is a trusted proxy, the address the
//!   proxy reports (the binary hands in its [`ClientIpFn`], the redirect's resolver); an
//!   untrusted `X-Forwarded-For` is ignored. IPv6 clients are keyed by their /64 (one host
//!   usually owns a whole /64 and could otherwise rotate addresses freely).
//! - **Atomic**: the check and the increment happen under one mutex, before the request is
//!   handled, so N + k concurrent requests yield exactly N admitted ones (a check-then-increment
//!   limiter lets concurrent requests through, C25 step 1).
//! - **Window**: fixed, starting at a client's first request; when it ends the next request
//!   opens a new one. Refused requests get 429 `rate_limited` with `Retry-After` (whole seconds
//!   until the window ends, at least 1) and every answer carries `X-RateLimit-Limit`,
//!   `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds until the window ends).
//! - **Only links created count**: a request is admitted against the window before it is
//!   handled (so the count stays atomic), and its slot is given back when the answer is not
//!   a new link — a 4xx or 5xx error, or the replay of an `Idempotency-Key` request. Refused
//!   requests do not count. A request over the limit that carries an `Idempotency-Key` is
//!   still answered with its replay when the key's create succeeded before (a client
//!   retrying a create it lost the answer of gets its link, not a 429); otherwise it gets
//!   the 429 like any other. The state is per process: N API processes admit up to N × max
//!   per window from one client.
//!
//! governor (GCRA) was not used: it refills continuously, so a burst of max + 20 within a
//! second admits max + 1 or more, not exactly max.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::json;

use crate::error::ApiError;

/// Resolves the client address from the socket peer and the request headers (trusted
/// proxies only); `None` when the peer is unknown.
pub type ClientIpFn = Arc<dyn Fn(Option<IpAddr>, &HeaderMap) -> Option<IpAddr> + Send + Sync>;

/// Clients tracked before expired windows are pruned.
const PRUNE_AT: usize = 10_000;

/// A limit: `max` requests per `window`. Parsed from `"60/1m"`, `"10/s"`, `"1000/1h"`,
/// `"5/30s"` (count, `/`, an optional number and a unit `s`, `m`, `h`; or `second`, `minute`,
/// `hour`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests admitted per window (at least 1).
    pub max: u32,
    /// Window length (1 s to 1 day).
    pub window: Duration,
}

impl FromStr for RateLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("rate limit \"{s}\" must look like \"60/1m\" (count/window, window in s, m or h)");
        let (count, window) = s.trim().split_once('/').ok_or_else(bad)?;
        let max: u32 = count.trim().parse().map_err(|_| bad())?;
        let w = window.trim();
        let split = w.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u64 = if split == 0 { 1 } else { w[..split].parse().map_err(|_| bad())? };
        let unit = match &w[split..] {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            _ => return Err(bad()),
        };
        let window = Duration::from_secs(n.checked_mul(unit).ok_or_else(bad)?);
        if max == 0 || window < Duration::from_secs(1) || window > Duration::from_secs(86_400) {
            return Err(format!("rate limit \"{s}\": count must be at least 1 and the window between 1s and 24h"));
        }
        Ok(RateLimit { max, window })
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}s", self.max, self.window.as_secs())
    }
}

/// The key of a client: IPv4 address, IPv6 /64, or unknown.
fn client_key(ip: Option<IpAddr>) -> Option<IpAddr> {
    ip.map(|ip| match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    })
}

/// The verdict for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted; `remaining` requests are left in the window, which ends in `reset`.
    Allowed {
        /// Requests left in this window after this one.
        remaining: u32,
        /// Time until the window ends.
        reset: Duration,
    },
    /// Refused until the window ends in `retry_after`.
    Limited {
        /// Time until the window ends.
        retry_after: Duration,
    },
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
}

/// A per-client fixed-window limiter (module docs).
pub struct RateLimiter {
    limit: RateLimit,
    clients: Mutex<HashMap<Option<IpAddr>, Window>>,
    resolve: ClientIpFn,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").field("limit", &self.limit).field("clients", &self.clients.lock().len()).finish()
    }
}

impl RateLimiter {
    /// A limiter for `limit` keying clients with `resolve`.
    pub fn new(limit: RateLimit, resolve: ClientIpFn) -> Self {
        Self { limit, clients: Mutex::new(HashMap::new()), resolve }
    }

    /// A limiter that keys clients by the socket peer only (no trusted proxies).
    pub fn by_peer(limit: RateLimit) -> Self {
        Self::new(limit, Arc::new(|peer, _| peer))
    }

    /// The configured limit.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes one request of client `ip` at `now` (check and increment under one lock).
    pub fn acquire(&self, ip: Option<IpAddr>, now: Instant) -> Decision {
        let key = client_key(ip);
        let mut clients = self.clients.lock();
        if clients.len() >= PRUNE_AT {
            let window = self.limit.window;
            clients.retain(|_, w| now.saturating_duration_since(w.start) < window);
        }
        let w = clients.entry(key).or_insert(Window { start: now, count: 0 });
        if now.saturating_duration_since(w.start) >= self.limit.window {
            *w = Window { start: now, count: 0 };
        }
        let reset = self.limit.window.saturating_sub(now.saturating_duration_since(w.start));
        if w.count >= self.limit.max {
            return Decision::Limited { retry_after: reset };
        }
        w.count += 1;
        Decision::Allowed { remaining: self.limit.max - w.count, reset }
    }

    /// Gives back the slot of a request of client `ip` admitted at `admitted_at` that created
    /// nothing (module docs), if its window is still the client's current one; returns the
    /// requests then left in the window (`None`: the window has ended meanwhile).
    pub fn refund(&self, ip: Option<IpAddr>, admitted_at: Instant) -> Option<u32> {
        let mut clients = self.clients.lock();
        let w = clients.get_mut(&client_key(ip))?;
        let current = w.start <= admitted_at && admitted_at.saturating_duration_since(w.start) < self.limit.window;
        if !current || w.count == 0 {
            return None;
        }
        w.count -= 1;
        Some(self.limit.max - w.count)
    }
}

/// Marks a request over the limit that carries an `Idempotency-Key`: the create handler
/// answers it with the key's replay when there is one, and with [`OverLimit::response`]
/// otherwise (module docs).
#[derive(Debug, Clone, Copy)]
pub struct OverLimit {
    limit: RateLimit,
    retry_after: Duration,
}

impl OverLimit {
    /// 429 `rate_limited` with `Retry-After` (whole seconds until the window ends, at least
    /// 1) and the `X-RateLimit-*` headers; counted in `sluice_api_rate_limited_total`.
    pub fn response(self) -> Response {
        let OverLimit { limit, retry_after } = self;
        let secs = ceil_secs(retry_after).max(1);
        metrics::counter!("sluice_api_rate_limited_total", "route" => "create_link").increment(1);
        let mut resp = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many links created from this client: at most {} per {} s, retry in {secs} s", limit.max, limit.window.as_secs()),
        )
        .with_details(json!({ "limit": limit.max, "window_seconds": limit.window.as_secs(), "retry_after_seconds": secs }))
        .into_response();
        let h = resp.headers_mut();
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        set_headers(h, limit.max, 0, retry_after);
        resp
    }
}

/// Whole seconds, rounded up, at least 1.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn set_headers(h: &mut HeaderMap, limit: u32, remaining: u32, reset: Duration) {
    h.insert("x-ratelimit-limit", HeaderValue::from(limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(ceil_secs(reset).max(1)));
}

/// Middleware: admits or refuses (429 `rate_limited`) one request (module docs).
pub async fn limit_requests(State(limiter): State<Arc<RateLimiter>>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let ip = (limiter.resolve)(peer, req.headers());
    let limit = limiter.limit;
    let now = Instant::now();
    match limiter.acquire(ip, now) {
        Decision::Allowed { remaining, reset } => {
            let mut resp = next.run(req).await;
            let created = resp.status() == StatusCode::CREATED && !resp.headers().contains_key("idempotent-replayed");
            let remaining = if created { remaining } else { limiter.refund(ip, now).unwrap_or(remaining) };
            set_headers(resp.headers_mut(), limit.max, remaining, reset);
            resp
        }
        Decision::Limited { retry_after } => {
            let over = OverLimit { limit, retry_after };
            if !req.headers().contains_key("idempotency-key") {
                return over.response();
            }
            let mut req = req;
            req.extensions_mut().insert(over);
            let mut resp = next.run(req).await;
            if resp.status() != StatusCode::TOO_MANY_REQUESTS {
                set_headers(resp.headers_mut(), limit.max, 0, retry_after);
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limits() {
        assert_eq!("60/1m".parse::<RateLimit>(), Ok(RateLimit { max: 60, window: Duration::from_secs(60) }));
        assert_eq!("10/s".parse::<RateLimit>(), Ok(RateLimit { max: 10, window: Duration::from_secs(1) }));
        assert_eq!(" 5 / 30s ".parse::<RateLimit>(), Ok(RateLimit { max: 5, window: Duration::from_secs(30) }));
        assert_eq!("1000/hour".parse::<RateLimit>(), Ok(RateLimit { max: 1000, window: Duration::from_secs(3600) }));
        for bad in ["", "60", "0/1m", "60/0s", "60/2d", "x/1m", "60/1y", "60/25h", "-1/1m"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn exactly_max_per_window_per_client() {
        let l = RateLimiter::by_peer(RateLimit { max: 3, window: Duration::from_secs(10) });
        let t0 = Instant::now();
        let a: Option<IpAddr> = Some("198.51.100.1".parse().expect("ip"));
        let b: Option<IpAddr> = Some("198.51.100.2".parse().expect("ip"));
        let got: Vec<Decision> = (0..5).map(|i| l.acquire(a, t0 + Duration::from_millis(i))).collect();
        assert_eq!(got[0], Decision::Allowed { remaining: 2, reset: Duration::from_secs(10) });
        assert_eq!(got[2], Decision::Allowed { remaining: 0, reset: Duration::from_millis(9_998) });
        assert_eq!(got[3], Decision::Limited { retry_after: Duration::from_millis(9_997) });
        assert!(matches!(l.acquire(b, t0), Decision::Allowed { remaining: 2, .. }), "another client has its own window");
        // The window ends exactly 10 s after the first request.
        assert!(matches!(l.acquire(a, t0 + Duration::from_millis(9_999)), Decision::Limited { .. }));
        assert!(matches!(l.acquire(a, t0 + Duration::from_secs(10)), Decision::Allowed { remaining: 2, .. }));
    }

    #[test]
    fn ipv6_clients_share_their_slash_64() {
        let l = RateLimiter::by_peer(RateLimit { max: 1, window: Duration::from_secs(60) });
        let now = Instant::now();
        assert!(matches!(l.acquire(Some("2001:db8:1:2::1".parse().expect("ip")), now), Decision::Allowed { .. }));
        assert!(matches!(l.acquire(Some("2001:db8:1:2:ffff::9".parse().expect("ip")), now), Decision::Limited { .. }));
        assert!(matches!(l.acquire(Some("2001:db8:1:3::1".parse().expect("ip")), now), Decision::Allowed { .. }));
        assert!(matches!(l.acquire(Some("::ffff:192.0.2.1".parse().expect("ip")), now), Decision::Allowed { .. }));
        assert!(matches!(l.acquire(Some("192.0.2.1".parse().expect("ip")), now), Decision::Limited { .. }), "mapped v4 = v4");
    }

    #[test]
    fn concurrent_acquires_admit_exactly_max() {
        let l = Arc::new(RateLimiter::by_peer(RateLimit { max: 60, window: Duration::from_secs(60) }));
        let now = Instant::now();
        let ip = Some("203.0.113.7".parse().expect("ip"));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let l = Arc::clone(&l);
                std::thread::spawn(move || (0..10).filter(|_| matches!(l.acquire(ip, now), Decision::Allowed { .. })).count())
            })
            .collect();
        let admitted: usize = handles.into_iter().map(|h| h.join().expect("thread")).sum();
        assert_eq!(admitted, 60);
    }
}
