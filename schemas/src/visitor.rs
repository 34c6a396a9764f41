//! Visitor identity: `visitor_id` = keyed hash of (period salt, full client IP, user agent).
//!
//! The salt of a period is derived from a long-lived secret and the period index with
//! BLAKE3's keyed mode (BLAKE3 spec, section "keyed_hash"), so every process that shares the
//! secret derives the same salt and the same visitor ids, and nothing needs to be stored
//! per period. Periods are aligned to the Unix epoch in UTC (a day period starts at 00:00 UTC).

use std::net::IpAddr;

/// Secret from which per-period salts are derived.
#[derive(Clone)]
pub struct VisitorSalt {
    secret: [u8; 32],
    /// Period length in ms; `None` means the salt never rotates.
    period_ms: Option<i64>,
}

impl std::fmt::Debug for VisitorSalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VisitorSalt").field("secret", &"***").field("period_ms", &self.period_ms).finish()
    }
}

impl VisitorSalt {
    /// A salt source from a 32-byte secret and a rotation period in ms (`None` = never rotate).
    pub fn new(secret: [u8; 32], period_ms: Option<i64>) -> Self {
        Self { secret, period_ms }
    }

    /// Index of the period containing `ts_ms` (ms since epoch, UTC); 0 when not rotating.
    pub fn period_index(&self, ts_ms: i64) -> i64 {
        match self.period_ms {
            Some(p) if p > 0 => ts_ms.div_euclid(p),
            _ => 0,
        }
    }

    /// The 32-byte salt of the period containing `ts_ms`.
    pub fn salt_at(&self, ts_ms: i64) -> [u8; 32] {
        let idx = self.period_index(ts_ms);
        *blake3::keyed_hash(&self.secret, &idx.to_le_bytes()).as_bytes()
    }
}

/// `visitor_id` for a click at `ts_ms` from `ip` with `user_agent`.
///
/// BLAKE3 keyed hash (key = the period salt) over the canonical 16-byte IPv6 form of the
/// IP (IPv4 and IPv4-mapped IPv6 addresses map to the same bytes) followed by the user
/// agent bytes; the first 8 bytes, little-endian.
pub fn visitor_id(salt: &VisitorSalt, ts_ms: i64, ip: IpAddr, user_agent: &str) -> u64 {
    visitor_id_with_period_salt(&salt.salt_at(ts_ms), ip, user_agent)
}

/// [`visitor_id`] with the period's salt already derived (`period_salt` =
/// [`VisitorSalt::salt_at`] of the click's time), for callers that keep the salt of the
/// current period instead of deriving it per click.
pub fn visitor_id_with_period_salt(period_salt: &[u8; 32], ip: IpAddr, user_agent: &str) -> u64 {
    let key = *period_salt;
    let canonical = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let mut h = blake3::Hasher::new_keyed(&key);
    h.update(&canonical.octets());
    h.update(user_agent.as_bytes());
    let out = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&out.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

/// Truncates a client IP for geolocation: IPv4 to its /24, IPv6 to its /48, IPv4-mapped
/// IPv6 treated as IPv4. Returns the network address in canonical text form.
pub fn truncate_ip(ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            std::net::Ipv4Addr::new(o[0], o[1], o[2], 0).to_string()
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_matches_prefixes() {
        assert_eq!(truncate_ip("203.0.113.77".parse().unwrap()), "203.0.113.0");
        assert_eq!(truncate_ip("::ffff:192.0.2.10".parse().unwrap()), "192.0.2.0");
        assert_eq!(truncate_ip("2001:db8:1:2:3::1".parse().unwrap()), "2001:db8:1::");
    }

    #[test]
    fn mapped_and_plain_ipv4_are_one_visitor() {
        let s = VisitorSalt::new([7; 32], Some(86_400_000));
        let a = visitor_id(&s, 1_000, "192.0.2.10".parse().unwrap(), "ua");
        let b = visitor_id(&s, 2_000, "::ffff:192.0.2.10".parse().unwrap(), "ua");
        assert_eq!(a, b);
        let c = visitor_id(&s, 86_400_000 + 5, "192.0.2.10".parse().unwrap(), "ua");
        assert_ne!(a, c, "salt rotates at the UTC day boundary");
    }
}
