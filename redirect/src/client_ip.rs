//! Which IP a click comes from: the socket peer, or, only when the peer is a trusted proxy,
//! the right-most untrusted hop of the forwarding header ([`ForwardedHeader`], nginx's
//! `real_ip_header`): by default `X-Forwarded-For` (preferred when present) or `Forwarded`
//! (RFC 7239 `for=`); configurable to `Forwarded` only or to any one header a proxy sets
//! (`X-Real-IP`, `CF-Connecting-IP`, `True-Client-IP`), read as a comma-separated list.
//!
//! Hop forms of the list headers: `192.0.2.10`, `192.0.2.10:1234`, `2001:db8::1`,
//! `2001:0db8:0000:0000:0000:0000:0000:0001`, `[2001:db8::1]`, `[2001:db8::1]:51234`,
//! `::ffff:192.0.2.10`, any of them in double quotes ([`parse_hop`]). `Forwarded` is read by
//! its grammar (RFC 7239 §4 and §6, [`forwarded`]): quoted-strings with their quoted-pairs
//! decoded, one hop per element, IPv6 only in brackets and quoted (`for="[2001:db8::1]"`).
//! Zone ids (`fe80::1%eth0`) name an interface of the machine that wrote them, never a
//! client: such a hop names no address, like `unknown`, `_hidden` or any other garbage.
//!
//! The walk, right to left, from the peer: while the address reached is trusted, the hop
//! left of it (which that trusted proxy wrote) is taken. A hop that names no address ends
//! the walk, and the client is the address reached: the trusted proxy that wrote the hop
//! (the peer, when it is the right-most hop). This is nginx's `real_ip_recursive on`
//! (`ngx_http_get_forwarded_addr_internal`: a hop that does not parse stops the walk at the
//! last address found); Envoy (`xff_num_trusted_hops`) and Go's `realclientip` fall back to
//! the peer instead, and Rails' `RemoteIp` drops invalid hops and walks on. Skipping such a
//! hop, as Rails does, would read what lies left of it, which the client wrote when a trusted
//! proxy reports `for=unknown`: the client could choose its address. Stopping credits an
//! address a trusted proxy reported, never one a client chose, and keeps more of what the
//! proxies said than falling back to the peer. A line holding bytes outside visible ASCII is
//! read too (each of its hops that is not an address names none), never skipped.

use std::net::IpAddr;

use axum::http::{HeaderName, header};
use ipnet::IpNet;

use crate::Error;
use crate::head::{HeaderFields, visible_ascii};

mod forwarded;

/// Which request header a trusted proxy reports the client address in (`[server]
/// forwarded-header`; nginx's `real_ip_header`). Only ever read when the peer is a trusted
/// proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `"auto"` (default): every `X-Forwarded-For` line when there is one, else the `for=`
    /// parameters of every `Forwarded` line (RFC 7239). A proxy that sets only `Forwarded`
    /// must then strip a client's `X-Forwarded-For`, or pick [`Self::Forwarded`].
    #[default]
    Auto,
    /// `"forwarded"`: RFC 7239 `Forwarded` `for=` only; `X-Forwarded-For` is ignored.
    Forwarded,
    /// Any other header name (`"x-forwarded-for"`, `"x-real-ip"`, `"cf-connecting-ip"`):
    /// that header only, every line, comma-separated addresses; `Forwarded` is ignored.
    List(HeaderName),
}

impl std::str::FromStr for ForwardedHeader {
    type Err = Error;

    /// `"auto"` and `"forwarded"` (any case, surrounding blanks ignored) or a header name
    /// (RFC 9110 token; stored lower-case). Errors: [`Error::ForwardedHeader`] for anything
    /// else (empty, blanks or `:` inside, non-ASCII) and for the standard request headers of
    /// [`NOT_CLIENT_ADDRESS_HEADERS`] (a client sets those itself).
    fn from_str(s: &str) -> Result<Self, Error> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        if t.eq_ignore_ascii_case("forwarded") {
            return Ok(Self::Forwarded);
        }
        let refuse = |reason| Error::ForwardedHeader { value: s.to_owned(), reason };
        let name = HeaderName::from_bytes(t.as_bytes()).map_err(|_| refuse("is not a header name"))?;
        if NOT_CLIENT_ADDRESS_HEADERS.contains(&name.as_str()) || name.as_str().starts_with("sec-") {
            return Err(refuse("is a standard request header that carries no client address"));
        }
        Ok(Self::List(name))
    }
}

impl ForwardedHeader {
    /// The one header read, for [`Self::List`].
    pub fn header_name(&self) -> Option<&HeaderName> {
        match self {
            Self::List(name) => Some(name),
            _ => None,
        }
    }

    /// Whether a client address in `X-Forwarded-For` is read (`auto` or that header named).
    pub fn reads_x_forwarded_for(&self) -> bool {
        match self {
            Self::Auto => true,
            Self::Forwarded => false,
            Self::List(name) => name == "x-forwarded-for",
        }
    }
}

impl std::fmt::Display for ForwardedHeader {
    /// The config spelling: `auto`, `forwarded` or the lower-case header name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Forwarded => f.write_str("forwarded"),
            Self::List(name) => f.write_str(name.as_str()),
        }
    }
}

/// Standard request headers (RFC 9110/9111/9112, RFC 6265, Fetch) that no proxy reports a
/// client address in: refused as `server.forwarded-header` (with every `Sec-*` header).
pub const NOT_CLIENT_ADDRESS_HEADERS: [&str; 27] = [
    "accept",
    "accept-encoding",
    "accept-language",
    "authorization",
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "cookie",
    "expect",
    "host",
    "idempotency-key",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "origin",
    "pragma",
    "proxy-authorization",
    "range",
    "referer",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "via",
];

/// Resolves client IPs against a trusted-proxy list.
#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: Vec<IpNet>,
    header: ForwardedHeader,
}

impl ClientIpResolver {
    /// A resolver trusting `trusted` (empty: forwarding headers are never believed) and
    /// reading the default header ([`ForwardedHeader::Auto`]).
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self { trusted, header: ForwardedHeader::Auto }
    }

    /// Every request header [`Self::resolve`] may read: none without trusted proxies; else
    /// `X-Forwarded-For` and `Forwarded` ([`ForwardedHeader::Auto`]), `Forwarded`, or the
    /// configured header.
    pub fn read_headers(&self) -> Vec<HeaderName> {
        if self.trusted.is_empty() {
            return Vec::new();
        }
        match &self.header {
            ForwardedHeader::Auto => vec![HeaderName::from_static("x-forwarded-for"), HeaderName::from_static("forwarded")],
            ForwardedHeader::Forwarded => vec![HeaderName::from_static("forwarded")],
            ForwardedHeader::List(name) => vec![name.clone()],
        }
    }

    /// The same resolver reading `header` from trusted proxies.
    pub fn with_header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// Whether `ip` (IPv4-mapped IPv6 compared as IPv4) is inside a trusted CIDR.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client IP for a request from `peer` carrying `headers`; `None` only when the
    /// peer is unknown (no socket, e.g. in-process tests).
    pub fn resolve<H: HeaderFields + ?Sized>(&self, peer: Option<IpAddr>, headers: &H) -> Option<IpAddr> {
        let peer = peer?;
        if self.trusted.is_empty() || !self.is_trusted(peer) {
            return Some(peer);
        }
        let hops = match &self.header {
            ForwardedHeader::Auto => {
                let xff = list_hops(headers, &HeaderName::from_static("x-forwarded-for"));
                if xff.is_empty() { forwarded_for_hops(headers) } else { xff }
            }
            ForwardedHeader::Forwarded => forwarded_for_hops(headers),
            ForwardedHeader::List(name) => list_hops(headers, name),
        };
        let mut current = peer;
        for hop in hops.iter().rev() {
            if !self.is_trusted(current) {
                break;
            }
            // A hop that names no address ends the walk (module docs).
            match *hop {
                Some(ip) => current = ip,
                None => break,
            }
        }
        Some(current)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Hops in order (client first) from every `name` line, each a comma-separated list
/// ([`parse_hop`]; `None`: the hop names no address). Empty list elements are ignored.
fn list_hops<H: HeaderFields + ?Sized>(headers: &H, name: &HeaderName) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for v in headers.all(name) {
        for h in v.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|h| !h.is_empty()) {
            hops.push(visible_ascii(h).and_then(parse_hop));
        }
    }
    hops
}

/// Hops in order (client first) from the `for=` parameters of every `Forwarded` line
/// (RFC 7239 section 4, [`forwarded`]).
fn forwarded_for_hops<H: HeaderFields + ?Sized>(headers: &H) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for v in headers.all(&header::FORWARDED) {
        forwarded::push_hops(v, &mut hops);
    }
    hops
}

/// Parses one hop of a list header (`X-Forwarded-For`) in any of the forms listed in the
/// module docs; `None` for anything else (`unknown`, `_hidden`, a zone id, a port past
/// 65535, text after the brackets).
pub fn parse_hop(raw: &str) -> Option<IpAddr> {
    let s = raw.trim();
    let s = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(s).trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !after.is_empty() && !after.strip_prefix(':').is_some_and(is_port) {
            return None;
        }
        return inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    // IPv4 with a port: exactly one ':'.
    let (host, port) = s.rsplit_once(':')?;
    if host.contains(':') || !is_port(port) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Digits only (no sign), at most 65535.
fn is_port(p: &str) -> bool {
    !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests;
