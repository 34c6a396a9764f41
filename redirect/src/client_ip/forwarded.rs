//! The `for=` nodes of RFC 7239 `Forwarded` field values, read by the grammar of RFC 7239
//! §4 and §6 rather than by splitting at `,` and `;`: a value is a token or a quoted-string
//! (RFC 9110 §5.6.4), so a quoted `,` or `;` separates nothing and a quoted-pair (`\"`,
//! `\\`, `\x`) stands for the character after the backslash.
//!
//! Each element (one proxy's report) is one hop: its `for=` node when that is an address
//! (`192.0.2.43`, `"192.0.2.43:47011"`, `"[2001:db8::17]"`, `"[2001:db8::17]:4711"`), else
//! a hop that names no address (`None`): `for=unknown`, an obfuscated node (`for=_hidden`),
//! a node outside the grammar (an unquoted `[2001:db8::1]`, which is no token; an IPv6
//! address without brackets; a zone id, `[fe80::1%eth0]`, which names an interface of the
//! machine that wrote it), `for=` given twice in one element, and an element without `for=`
//! (that proxy named no client). A syntax error (an unterminated quote, a byte no token or
//! quoted-string holds) makes the rest of its line one such hop: where the elements after it
//! begin cannot be known.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sluice_schemas::field_value::FieldReader;

/// Appends the hops of one `Forwarded` field value (client first) to `hops`.
pub(super) fn push_hops(line: &[u8], hops: &mut Vec<Option<IpAddr>>) {
    let mut p = FieldReader::new(line);
    loop {
        p.skip_ows();
        if p.at_end() {
            return;
        }
        // An empty list element (RFC 9110 §5.6.1: ignored).
        if p.eat(b',') {
            continue;
        }
        match element(&mut p) {
            Some(hop) => hops.push(hop),
            None => {
                hops.push(None);
                return;
            }
        }
    }
}

/// One `forwarded-element` up to the `,` after it (consumed) or the end: `Some(hop)`, or
/// `None` on a syntax error.
fn element(p: &mut FieldReader<'_>) -> Option<Option<IpAddr>> {
    // `None`: no `for=` yet; `Some(node)`: the node of the one `for=`.
    let mut node: Option<Option<IpAddr>> = None;
    let mut twice = false;
    loop {
        p.skip_ows();
        if p.at_end() || p.eat(b',') {
            break;
        }
        if p.eat(b';') {
            continue;
        }
        let name = p.token()?;
        p.eat(b'=').then_some(())?;
        let mut value = Vec::new();
        let quoted = p.token_or_quoted_string(&mut value)?;
        if name.eq_ignore_ascii_case(b"for") {
            twice |= node.is_some();
            node = Some(parse_node(&value, quoted));
        }
        p.skip_ows();
        if !matches!(p.peek(), None | Some(b',' | b';')) {
            return None;
        }
    }
    // RFC 7239 §4: a parameter MUST NOT occur more than once per element.
    Some(if twice { None } else { node.flatten() })
}

/// The address of a `node` (RFC 7239 §6): `nodename [ ":" node-port ]` with `nodename` an
/// IPv4 address or an IPv6 address in brackets; `None` for `unknown`, an obfuscated node
/// and anything else. A `:` or `[` is only possible in a quoted value (`quoted`).
fn parse_node(value: &[u8], quoted: bool) -> Option<IpAddr> {
    let text = std::str::from_utf8(value).ok()?;
    if !quoted {
        return text.parse::<Ipv4Addr>().ok().map(IpAddr::V4);
    }
    let (ip, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (IpAddr::V6(inner.parse::<Ipv6Addr>().ok()?), port)
    } else {
        let (name, port) = text.split_once(':').map_or((text, None), |(n, p)| (n, Some(p)));
        (IpAddr::V4(name.parse::<Ipv4Addr>().ok()?), port)
    };
    port.is_none_or(node_port).then_some(ip)
}

/// `node-port = port / obfport` (RFC 7239 §6): 1 to 5 digits, or `_` and then letters,
/// digits, `.`, `_` and `-`.
fn node_port(p: &str) -> bool {
    let digits = (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    let obfuscated = p.len() > 1 && p.starts_with('_') && p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    digits || obfuscated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hops(line: &str) -> Vec<Option<IpAddr>> {
        let mut out = Vec::new();
        push_hops(line.as_bytes(), &mut out);
        out
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    #[test]
    fn one_hop_per_element() {
        assert_eq!(hops(""), []);
        assert_eq!(hops(" , ,"), []);
        assert_eq!(hops("for=192.0.2.60;proto=http;by=203.0.113.43"), [ip("192.0.2.60")]);
        assert_eq!(hops(r#"for=192.0.2.43, for="[2001:db8:cafe::17]", for=unknown"#), [ip("192.0.2.43"), ip("2001:db8:cafe::17"), None]);
        assert_eq!(hops("proto=https, for=192.0.2.1;;"), [None, ip("192.0.2.1")]);
        assert_eq!(hops(r#"for="a,b;c", for=192.0.2.2"#), [None, ip("192.0.2.2")]);
        // A syntax error: one last hop for the rest of the line.
        assert_eq!(hops(r#"for=192.0.2.3, for="192.0.2.4, for=192.0.2.5"#), [ip("192.0.2.3"), None]);
        assert_eq!(hops("for=192.0.2.3, for=[::1], for=192.0.2.5"), [ip("192.0.2.3"), None]);
        assert_eq!(hops("for=192.0.2.3, =x"), [ip("192.0.2.3"), None]);
        assert_eq!(hops("for=192.0.2.3 x"), [None]);
        assert_eq!(hops("for=\"\\\u{1}\""), [None]);
    }

    #[test]
    fn node_forms() {
        assert_eq!(parse_node(b"192.0.2.43", false), ip("192.0.2.43"));
        assert_eq!(parse_node(b"192.0.2.43", true), ip("192.0.2.43"));
        assert_eq!(parse_node(b"192.0.2.43:65535", true), ip("192.0.2.43"));
        assert_eq!(parse_node(b"192.0.2.43:99999", true), ip("192.0.2.43"), "1*5DIGIT");
        assert_eq!(parse_node(b"[2001:db8::1]:_a.b-c", true), ip("2001:db8::1"));
        for bad in ["2001:db8::1", "[fe80::1%eth0]", "[2001:db8::1]x", "192.0.2.43:", "192.0.2.43:_", "192.0.2.43:1:2", "_x", "unknown", "01.2.3.4"] {
            assert_eq!(parse_node(bad.as_bytes(), true), None, "{bad}");
        }
        assert_eq!(parse_node(b"[2001:db8::1]", false), None, "brackets are no token");
    }
}
