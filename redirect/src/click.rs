//! Minting [`ClickEvent`]s at the redirect and handing them to ingest without waiting.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderName, header};
use rand::RngExt;
use sluice_schemas::visitor::visitor_id_with_period_salt;
use sluice_schemas::{ClickEvent, VisitorSalt, truncate_ip};
use uuid::Uuid;

use crate::head::HeaderFields;

/// Longest header value copied into an event (`User-Agent`, `Referer`,
/// `Accept-Language`), in bytes; longer values are cut at a character boundary.
pub const MAX_HEADER_BYTES: usize = 8192;

/// Where click events go: a bounded, non-blocking hand-off to ingest.
pub trait ClickSink: Send + Sync + 'static {
    /// Offers `event`; returns `false` (and counts `sluice_click_events_dropped_total`)
    /// when it was dropped because the channel is full or closed. Never blocks.
    fn try_send(&self, event: ClickEvent) -> bool;
}

/// Ingest's bounded channel: drops are counted by the sender
/// (`sluice_click_events_dropped_total{reason}`).
impl ClickSink for sluice_ingest::ClickSender {
    fn try_send(&self, event: ClickEvent) -> bool {
        sluice_ingest::ClickSender::try_send(self, event)
    }
}

/// A [`ClickSink`] over a bounded tokio channel (for tests and tools); drops and counts
/// when the channel is full.
#[derive(Debug, Clone)]
pub struct ChannelClickSink {
    tx: tokio::sync::mpsc::Sender<ClickEvent>,
    dropped: metrics::Counter,
}

impl ChannelClickSink {
    /// A sink and its receiver, with room for `capacity` events.
    pub fn new(capacity: usize) -> (Self, tokio::sync::mpsc::Receiver<ClickEvent>) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        (Self { tx, dropped: metrics::counter!(crate::metrics::CLICK_EVENTS_DROPPED_TOTAL, "reason" => "channel_full") }, rx)
    }
}

impl ClickSink for ChannelClickSink {
    fn try_send(&self, event: ClickEvent) -> bool {
        let ok = self.tx.try_send(event).is_ok();
        if !ok {
            self.dropped.increment(1);
        }
        ok
    }
}

/// A [`VisitorSalt`] with the salt of the period last asked for kept, so that minting a
/// visitor id costs one BLAKE3 keyed hash (of IP and user agent) instead of two (deriving
/// the period's salt, [`VisitorSalt::salt_at`], is the other); same ids as
/// [`sluice_schemas::visitor_id`].
pub struct PeriodSalts {
    salt: VisitorSalt,
    /// `(period index, that period's salt)` of the latest click.
    current: Mutex<Option<(i64, [u8; 32])>>,
}

impl std::fmt::Debug for PeriodSalts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeriodSalts").field("salt", &self.salt).finish_non_exhaustive()
    }
}

impl PeriodSalts {
    /// Salts derived from `salt`.
    pub fn new(salt: VisitorSalt) -> Self {
        Self { salt, current: Mutex::new(None) }
    }

    /// The salt of the period containing `ts_ms` (ms since the epoch, UTC).
    pub fn salt_at(&self, ts_ms: i64) -> [u8; 32] {
        let period = self.salt.period_index(ts_ms);
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match *current {
            Some((p, salt)) if p == period => salt,
            _ => {
                let salt = self.salt.salt_at(ts_ms);
                *current = Some((period, salt));
                salt
            }
        }
    }

    /// `visitor_id` of a click at `ts_ms` from `ip` with `user_agent`
    /// ([`sluice_schemas::visitor_id`]).
    pub fn visitor_id(&self, ts_ms: i64, ip: IpAddr, user_agent: &str) -> u64 {
        visitor_id_with_period_salt(&self.salt_at(ts_ms), ip, user_agent)
    }
}

/// Current time in ms since the Unix epoch, UTC.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Every request header [`build_event`] reads.
pub const READ_HEADERS: [HeaderName; 3] = [header::USER_AGENT, header::REFERER, header::ACCEPT_LANGUAGE];

/// Builds the event of one click on `code` at `ts` from `client_ip` with the request's
/// `headers`. The full IP is used only for `visitor_id` and then dropped; the event holds
/// `ip_trunc` (IPv4 /24, IPv6 /48). Without a known IP, `ip_trunc` is `None` and the
/// visitor is keyed on the unspecified address `::`.
pub fn build_event<H: HeaderFields + ?Sized>(
    code: &str,
    ts: i64,
    client_ip: Option<IpAddr>,
    headers: &H,
    salt: &PeriodSalts,
    edge_region: Option<&str>,
) -> ClickEvent {
    let user_agent = header_string(headers, &header::USER_AGENT).unwrap_or_default();
    let ip_for_visitor = client_ip.unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
    ClickEvent {
        event_id: event_id(ts),
        code: code.to_owned(),
        ts,
        ip_trunc: client_ip.map(ip_trunc),
        visitor_id: salt.visitor_id(ts, ip_for_visitor, &user_agent),
        referrer: header_string(headers, &header::REFERER),
        accept_language: header_string(headers, &header::ACCEPT_LANGUAGE),
        edge_region: edge_region.map(str::to_owned),
        user_agent,
    }
}

/// [`truncate_ip`] without the formatting machinery for IPv4 (and IPv4-mapped IPv6)
/// clients, the common case on the hot path: `a.b.c.0` written digit by digit into one
/// allocation. Other IPv6 addresses go to [`truncate_ip`]. Same output for every input.
fn ip_trunc(ip: IpAddr) -> String {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None => return truncate_ip(ip),
        },
    };
    let [a, b, c, _] = v4.octets();
    let mut s = String::with_capacity(15);
    for octet in [a, b, c] {
        push_decimal(&mut s, octet);
        s.push('.');
    }
    s.push('0');
    s
}

fn push_decimal(s: &mut String, n: u8) {
    if n >= 100 {
        s.push(char::from(b'0' + n / 100));
    }
    if n >= 10 {
        s.push(char::from(b'0' + n / 10 % 10));
    }
    s.push(char::from(b'0' + n % 10));
}

/// A UUIDv7 (RFC 9562 §5.7) for an event at `ts_ms`: the 48-bit Unix ms timestamp, then
/// 74 random bits from the thread-local CSPRNG (`rand::rng()`, ChaCha, seeded and
/// periodically reseeded from the OS). `Uuid::now_v7` would read the clock again and call
/// `getrandom(2)` once or twice per event, a system call on every redirect. IDs minted in
/// the same millisecond are unique (collision odds 2^-74 per pair) but not ordered.
fn event_id(ts_ms: i64) -> Uuid {
    let r: u128 = rand::rng().random();
    let mut bytes = [0u8; 10];
    bytes.copy_from_slice(&r.to_le_bytes()[..10]);
    uuid::Builder::from_unix_timestamp_millis(u64::try_from(ts_ms).unwrap_or(0), &bytes).into_uuid()
}

/// The first value of `name` as text (non-UTF-8 bytes replaced), cut to
/// [`MAX_HEADER_BYTES`]; `None` when absent.
fn header_string<H: HeaderFields + ?Sized>(headers: &H, name: &HeaderName) -> Option<String> {
    let v = headers.first(name)?;
    // Valid UTF-8 (nearly always ASCII) is checked by `from_utf8`'s word-at-a-time loop;
    // only invalid bytes take the slower lossy path.
    let s = match std::str::from_utf8(v) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(v),
    };
    let mut end = s.len().min(MAX_HEADER_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Some(s[..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};
    use sluice_schemas::visitor_id;

    #[test]
    fn event_fields() {
        let salt = VisitorSalt::new([3; 32], Some(86_400_000));
        let mut h = HeaderMap::new();
        h.insert(header::USER_AGENT, HeaderValue::from_static("UA/1"));
        h.insert(header::REFERER, HeaderValue::from_static("https://ref.example/x"));
        let ip: IpAddr = "203.0.113.77".parse().expect("ip");
        let e = build_event("abc", 1_700_000_000_123, Some(ip), &h, &PeriodSalts::new(salt.clone()), Some("eu-1"));
        assert_eq!(e.code, "abc");
        assert_eq!(e.ts, 1_700_000_000_123);
        assert_eq!(e.ip_trunc.as_deref(), Some("203.0.113.0"));
        assert_eq!(e.visitor_id, visitor_id(&salt, 1_700_000_000_123, ip, "UA/1"));
        assert_eq!(e.user_agent, "UA/1");
        assert_eq!(e.referrer.as_deref(), Some("https://ref.example/x"));
        assert_eq!(e.accept_language, None);
        assert_eq!(e.edge_region.as_deref(), Some("eu-1"));
        assert_eq!(e.event_id.get_version_num(), 7);
        assert_eq!(e.event_id.get_variant(), uuid::Variant::RFC4122);
        let (secs, nanos) = e.event_id.get_timestamp().expect("v7 timestamp").to_unix();
        assert_eq!((secs, nanos / 1_000_000), (1_700_000_000, 123), "uuidv7 carries the event time in ms");
    }

    #[test]
    fn period_salts_give_the_ids_of_visitor_id_across_periods() {
        let day = 86_400_000;
        let salt = VisitorSalt::new([7; 32], Some(day));
        let cached = PeriodSalts::new(salt.clone());
        let ip: IpAddr = "2001:db8::1".parse().expect("ip");
        // Back and forth across period boundaries (and before the epoch): the kept salt
        // must follow the period of every click.
        for ts in [5, day - 1, day, day + 1, 3 * day, -1, -day, 0, day - 1, 10 * day + 7] {
            assert_eq!(cached.visitor_id(ts, ip, "UA/2"), visitor_id(&salt, ts, ip, "UA/2"), "ts {ts}");
            assert_eq!(cached.salt_at(ts), salt.salt_at(ts), "ts {ts}");
        }
        assert_ne!(cached.salt_at(0), cached.salt_at(day), "periods differ");
        let fixed = VisitorSalt::new([7; 32], None);
        assert_eq!(PeriodSalts::new(fixed.clone()).visitor_id(123, ip, ""), visitor_id(&fixed, 123, ip, ""));
    }

    #[test]
    fn ip_trunc_matches_truncate_ip() {
        let mut ips: Vec<IpAddr> = Vec::new();
        for a in 0..=255u8 {
            for (b, c, d) in [(0, 0, 0), (a, 255 - a, a), (9, 10, 99), (100, 1, 255)] {
                let v4 = std::net::Ipv4Addr::new(a, b, c, d);
                ips.push(IpAddr::V4(v4));
                ips.push(IpAddr::V6(v4.to_ipv6_mapped()));
            }
        }
        for s in ["::", "::1", "2001:db8:1:2::5", "fe80::1", "64:ff9b::203.0.113.9", "::ffff:0:1.2.3.4"] {
            ips.push(s.parse().expect("ipv6"));
        }
        for ip in ips {
            assert_eq!(ip_trunc(ip), truncate_ip(ip), "{ip}");
        }
        assert_eq!(ip_trunc("203.0.113.77".parse().expect("ip")), "203.0.113.0");
    }

    #[test]
    fn event_ids_are_distinct_within_a_millisecond() {
        let ids: std::collections::HashSet<Uuid> = (0..10_000).map(|_| event_id(1_700_000_000_123)).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|u| u.as_bytes()[..6] == 1_700_000_000_123u64.to_be_bytes()[2..]), "48-bit big-endian ms prefix");
    }

    #[test]
    fn non_utf8_header_bytes_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert(header::USER_AGENT, HeaderValue::from_bytes(b"UA \xff\xfe/1").expect("obs-text bytes"));
        h.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_static("de-CH,de;q=0.9"));
        let e = build_event("x", 0, None, &h, &PeriodSalts::new(VisitorSalt::new([0; 32], None)), None);
        assert_eq!(e.user_agent, "UA \u{FFFD}\u{FFFD}/1");
        assert_eq!(e.accept_language.as_deref(), Some("de-CH,de;q=0.9"));
    }

    #[test]
    fn long_headers_are_cut_on_char_boundary() {
        let mut h = HeaderMap::new();
        let long = format!("https://m.search.example/s?q={}", "é".repeat(5000));
        h.insert(header::REFERER, HeaderValue::from_bytes(long.as_bytes()).expect("bytes"));
        let e = build_event("x", 0, None, &h, &PeriodSalts::new(VisitorSalt::new([0; 32], None)), None);
        let r = e.referrer.expect("referrer");
        assert!(r.len() <= MAX_HEADER_BYTES && r.len() >= MAX_HEADER_BYTES - 1);
        assert!(r.starts_with("https://m.search.example/s?q=é"));
        assert_eq!(e.ip_trunc, None);
    }
}
