//! Special-purpose IP ranges that must never reach the GeoIP lookup.
//!
//! Private, loopback, link-local, shared (CGNAT), documentation, benchmarking, multicast and
//! reserved addresses have no country. Some GeoIP databases nevertheless map a few of them
//! to one (the bundled database answers `AU` for `192.168.0.0/16` and `JP` for
//! `2001:db8::/32`, see `data/README.md`), so the enricher filters them out first and
//! reports `"ZZ"`.
//!
//! Sources: the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and its
//! updates), RFC 5771 (IPv4 multicast), RFC 4291 (IPv6 addressing architecture: only
//! `2000::/3` is allocated global unicast today) and RFC 9637 (`3fff::/20` documentation).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 networks (address, prefix length) that are not globally routable unicast.
const SPECIAL_V4: &[(u32, u8)] = &[
    (u32::from_be_bytes([0, 0, 0, 0]), 8),       // "this network" (RFC 791)
    (u32::from_be_bytes([10, 0, 0, 0]), 8),      // private (RFC 1918)
    (u32::from_be_bytes([100, 64, 0, 0]), 10),   // shared address space / CGNAT (RFC 6598)
    (u32::from_be_bytes([127, 0, 0, 0]), 8),     // loopback (RFC 1122)
    (u32::from_be_bytes([169, 254, 0, 0]), 16),  // link-local (RFC 3927)
    (u32::from_be_bytes([172, 16, 0, 0]), 12),   // private (RFC 1918)
    (u32::from_be_bytes([192, 0, 0, 0]), 24),    // IETF protocol assignments (RFC 6890)
    (u32::from_be_bytes([192, 0, 2, 0]), 24),    // documentation TEST-NET-1 (RFC 5737)
    (u32::from_be_bytes([192, 88, 99, 0]), 24),  // deprecated 6to4 relay anycast (RFC 7526)
    (u32::from_be_bytes([192, 168, 0, 0]), 16),  // private (RFC 1918)
    (u32::from_be_bytes([198, 18, 0, 0]), 15),   // benchmarking (RFC 2544)
    (u32::from_be_bytes([198, 51, 100, 0]), 24), // documentation TEST-NET-2 (RFC 5737)
    (u32::from_be_bytes([203, 0, 113, 0]), 24),  // documentation TEST-NET-3 (RFC 5737)
    (u32::from_be_bytes([224, 0, 0, 0]), 4),     // multicast (RFC 5771)
    (u32::from_be_bytes([240, 0, 0, 0]), 4),     // reserved + limited broadcast (RFC 1112, 919)
];

/// IPv6 networks inside global unicast `2000::/3` that are nevertheless special-purpose.
/// Everything outside `2000::/3` (loopback, unspecified, ULA `fc00::/7`, link-local
/// `fe80::/10`, multicast `ff00::/8`, NAT64 `64:ff9b::/96`, discard `100::/64`, ...) is
/// rejected by [`is_special`] before this table is consulted.
const SPECIAL_V6_IN_GLOBAL: &[(u128, u8)] = &[
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 23), // IETF protocol assignments incl. Teredo (RFC 2928, 4380)
    (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32), // documentation (RFC 3849)
    (0x2002_0000_0000_0000_0000_0000_0000_0000, 16), // 6to4 relays (RFC 3056): no stable country
    (0x3fff_0000_0000_0000_0000_0000_0000_0000, 20), // documentation (RFC 9637)
];

fn in_v4(addr: u32, (net, len): (u32, u8)) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
    addr & mask == net & mask
}

fn in_v6(addr: u128, (net, len): (u128, u8)) -> bool {
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
    addr & mask == net & mask
}

/// True if `ip` is in a private, loopback, link-local, CGNAT, documentation, benchmarking,
/// multicast or reserved IPv4 range (see [`SPECIAL_V4`]).
pub fn is_special_v4(ip: Ipv4Addr) -> bool {
    let a = u32::from(ip);
    SPECIAL_V4.iter().any(|&net| in_v4(a, net))
}

/// True if `ip` is not an ordinary global IPv6 unicast address: outside `2000::/3`, or in
/// one of the special blocks inside it. IPv4-mapped addresses are *not* handled here; map
/// them first with [`normalize`].
pub fn is_special_v6(ip: Ipv6Addr) -> bool {
    let a = u128::from(ip);
    let global_unicast = (a >> 125) == 0b001;
    !global_unicast || SPECIAL_V6_IN_GLOBAL.iter().any(|&net| in_v6(a, net))
}

/// Maps IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2) to plain IPv4 so
/// they are checked and looked up as IPv4; every other address is returned unchanged.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// True if the (already [`normalize`]d) address must not be geolocated.
pub fn is_special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_special_v4(v4),
        IpAddr::V6(v6) => is_special_v6(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn special(s: &str) -> bool {
        is_special(normalize(s.parse().expect("test address parses")))
    }

    #[test]
    fn special_ipv4_ranges_are_rejected() {
        for s in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "169.254.1.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.10",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.0",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(special(s), "{s} should be special");
        }
    }

    #[test]
    fn public_ipv4_edges_are_not_rejected() {
        for s in [
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.101.0",
            "203.0.114.0",
            "223.255.255.255",
        ] {
            assert!(!special(s), "{s} should be public");
        }
    }

    #[test]
    fn special_ipv6_ranges_are_rejected() {
        for s in [
            "::",
            "::1",
            "64:ff9b::808:808",
            "100::1",
            "2001::1",
            "2001:1ff:ffff::1",
            "2001:db8::1",
            "2001:db8:ffff:ffff::",
            "2002:c000:204::1",
            "3fff::1",
            "3fff:fff:ffff::",
            "fc00::1",
            "fdff:ffff::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:192.168.0.1",
            "::ffff:192.0.2.10",
        ] {
            assert!(special(s), "{s} should be special");
        }
    }

    #[test]
    fn public_ipv6_and_mapped_public_ipv4_are_not_rejected() {
        for s in [
            "2001:200::1",
            "2001:4860:4860::8888",
            "2001:67c:2e8:22::c100:68b",
            "2001:db7:ffff::",
            "2001:db9::",
            "2003::1",
            "2a00:1450::",
            "3ffe::1",
            "3fff:1000::",
            "::ffff:8.8.8.8",
        ] {
            assert!(!special(s), "{s} should be public");
        }
    }

    #[test]
    fn mapped_addresses_become_ipv4() {
        let ip: IpAddr = "::ffff:8.8.8.8".parse().expect("parses");
        assert_eq!(normalize(ip), IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)));
        let v6: IpAddr = "2001:db8::1".parse().expect("parses");
        assert_eq!(normalize(v6), v6);
    }
}
