//! Truncated client IP → ISO 3166-1 alpha-2 country, from a MaxMind-format database.
//!
//! The default database is compiled into the binary (`include_bytes!`), so the pipeline
//! runs offline from any directory: ip-location-db `geo-whois-asn-country` (CC0 package;
//! contains NRO data under CC BY 4.0, see `data/README.md`). Its records are
//! `{"country_code": "US"}`, not the GeoIP2 schema. A user may point
//! [`super::EnrichConfig::geoip_path`] at their own `.mmdb` (for example MaxMind
//! GeoLite2-Country, records `{"country": {"iso_code": "US"}, "registered_country": ...}`);
//! every lookup tries both record shapes, so either kind of file works.
//!
//! Special-purpose addresses never reach the lookup ([`super::ip_ranges`]), and IPv4-mapped
//! IPv6 addresses are looked up as IPv4.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use maxminddb::{PathElement, Reader};

use super::ip_ranges;
use crate::error::{Error, Result};

/// The bundled IP-to-country database (ip-location-db geo-whois-asn-country, MaxMind DB
/// format, 7.8 MB; provenance and licence in `dataflows/data/README.md`).
static BUNDLED_MMDB: &[u8] = include_bytes!("../../data/geoip/geo-whois-asn-country.mmdb");

/// An ISO 3166-1 alpha-2 country code, always two ASCII upper-case letters.
///
/// [`CountryCode::UNKNOWN`] (`"ZZ"`, the user-assigned code CLDR uses for "unknown region")
/// stands for "no country": special-purpose or unparseable addresses and addresses the
/// database does not cover.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// `"ZZ"`: unknown country.
    pub const UNKNOWN: CountryCode = CountryCode(*b"ZZ");

    /// Parses a two-letter code, case-insensitively (`"us"` → `US`). Returns `None` for
    /// anything that is not exactly two ASCII letters.
    pub fn parse(code: &str) -> Option<CountryCode> {
        match code.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => Some(CountryCode([a.to_ascii_uppercase(), b.to_ascii_uppercase()])),
            _ => None,
        }
    }

    /// The code as a string slice, e.g. `"US"` or `"ZZ"`.
    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("ZZ")
    }

    /// True unless this is [`CountryCode::UNKNOWN`].
    pub fn is_known(&self) -> bool {
        *self != CountryCode::UNKNOWN
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountryCode({})", self.as_str())
    }
}

/// Record paths tried in order for every lookup: the ip-location-db shape first, then the
/// GeoIP2/GeoLite2 `country`, then `registered_country` (GeoLite2 leaves `country` empty
/// for some anycast and satellite networks but still knows where they are registered).
const RECORD_PATHS: &[&[PathElement<'static>]] = &[
    &[PathElement::Key("country_code")],
    &[PathElement::Key("country"), PathElement::Key("iso_code")],
    &[PathElement::Key("registered_country"), PathElement::Key("iso_code")],
];

/// A loaded IP-to-country database. Immutable and shared between enricher clones.
pub struct GeoIp {
    reader: Reader<Cow<'static, [u8]>>,
}

impl GeoIp {
    /// Opens the database compiled into the binary.
    ///
    /// # Errors
    /// [`Error::EnrichData`] if the embedded bytes are not a valid MaxMind DB (a build
    /// problem, never expected at run time).
    pub fn bundled() -> Result<GeoIp> {
        let reader = Reader::from_source(Cow::Borrowed(BUNDLED_MMDB))
            .map_err(|e| Error::EnrichData(format!("bundled GeoIP database is not a valid MaxMind DB: {e}")))?;
        Ok(GeoIp { reader })
    }

    /// Reads a MaxMind DB file (e.g. GeoLite2-Country.mmdb) fully into memory.
    ///
    /// # Errors
    /// [`Error::GeoIpOpen`] if the file cannot be read or is not a MaxMind DB.
    pub fn open(path: &Path) -> Result<GeoIp> {
        let bytes = std::fs::read(path).map_err(|e| Error::GeoIpOpen { path: path.display().to_string(), message: e.to_string() })?;
        let reader = Reader::from_source(Cow::Owned(bytes)).map_err(|e| Error::GeoIpOpen { path: path.display().to_string(), message: e.to_string() })?;
        Ok(GeoIp { reader })
    }

    /// `database_type` from the file's metadata (`"country"` for the bundled file,
    /// `"GeoLite2-Country"` for MaxMind's).
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// Country of a parsed address; `ZZ` for special-purpose addresses, addresses without a
    /// record and records without a usable two-letter code. Never panics.
    pub fn lookup(&self, ip: IpAddr) -> CountryCode {
        self.lookup_inner(ip, None)
    }

    /// Like [`GeoIp::lookup`], remembering the decoded code per database record in `memo`
    /// (many networks share one record, so the tree walk is all that remains). Same results.
    pub fn lookup_memo(&self, ip: IpAddr, memo: &mut CountryMemo) -> CountryCode {
        self.lookup_inner(ip, Some(memo))
    }

    fn lookup_inner(&self, ip: IpAddr, memo: Option<&mut CountryMemo>) -> CountryCode {
        let ip = ip_ranges::normalize(ip);
        if ip_ranges::is_special(ip) {
            return CountryCode::UNKNOWN;
        }
        let Ok(found) = self.reader.lookup(ip) else {
            return CountryCode::UNKNOWN;
        };
        let Some(offset) = found.offset() else {
            return CountryCode::UNKNOWN;
        };
        if let Some(memo) = memo {
            if let Some(cc) = memo.map.get(&offset) {
                return *cc;
            }
            let cc = Self::decode(&found);
            if memo.map.len() < CountryMemo::MAX_ENTRIES {
                memo.map.insert(offset, cc);
            }
            return cc;
        }
        Self::decode(&found)
    }

    fn decode<S: AsRef<[u8]>>(found: &maxminddb::LookupResult<'_, S>) -> CountryCode {
        for path in RECORD_PATHS {
            if let Ok(Some(code)) = found.decode_path::<&str>(path)
                && let Some(cc) = CountryCode::parse(code)
            {
                return cc;
            }
        }
        CountryCode::UNKNOWN
    }

    /// [`GeoIp::lookup_str`] with a [`CountryMemo`].
    pub fn lookup_str_memo(&self, ip: Option<&str>, memo: &mut CountryMemo) -> CountryCode {
        match ip.and_then(parse_ip) {
            Some(ip) => self.lookup_memo(ip, memo),
            None => CountryCode::UNKNOWN,
        }
    }

    /// Country of an address in text form: the event's `ip_trunc` (canonical `"203.0.113.0"`
    /// or `"2001:db8:1::"`), tolerating surrounding whitespace, brackets and a port
    /// (`"[2001:db8::1]:51234"`, `"192.0.2.1:80"`). `None`, empty or unparseable → `ZZ`.
    pub fn lookup_str(&self, ip: Option<&str>) -> CountryCode {
        match ip.and_then(parse_ip) {
            Some(ip) => self.lookup(ip),
            None => CountryCode::UNKNOWN,
        }
    }
}

/// Decoded country per database record offset, owned by one enricher clone. Bounded at
/// [`CountryMemo::MAX_ENTRIES`] (the bundled database has a few hundred distinct records; a
/// city-level database may have millions, and then only the first ones are remembered).
#[derive(Default)]
pub struct CountryMemo {
    map: HashMap<usize, CountryCode, BuildHasherDefault<OffsetHasher>>,
}

impl CountryMemo {
    /// Most records remembered.
    pub const MAX_ENTRIES: usize = 65_536;
}

/// Hasher for record offsets (plain integers): one multiply, no DoS concern since offsets
/// come from our own database file, not from clients.
#[derive(Default)]
struct OffsetHasher(u64);

impl Hasher for OffsetHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
}

/// Lenient textual IP parse (see [`GeoIp::lookup_str`]).
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let t = text.trim();
    if t.is_empty() || t.len() > 64 {
        return None;
    }
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = t.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    t.strip_prefix('[').and_then(|r| r.strip_suffix(']')).and_then(|r| r.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_code_parse_and_display() {
        assert_eq!(CountryCode::parse("us").map(|c| c.to_string()), Some("US".to_string()));
        assert_eq!(CountryCode::parse("ZZ"), Some(CountryCode::UNKNOWN));
        for bad in ["", "U", "USA", "1A", "é", "U "] {
            assert_eq!(CountryCode::parse(bad), None, "{bad:?}");
        }
        assert!(!CountryCode::UNKNOWN.is_known());
        assert_eq!(format!("{:?}", CountryCode::UNKNOWN), "CountryCode(ZZ)");
    }

    #[test]
    fn lenient_ip_parsing() {
        let v6: IpAddr = "2001:db8::1".parse().expect("parses");
        assert_eq!(parse_ip("[2001:db8::1]:51234"), Some(v6));
        assert_eq!(parse_ip("[2001:db8::1]"), Some(v6));
        assert_eq!(parse_ip(" 2001:0db8:0000:0000:0000:0000:0000:0001 "), Some(v6));
        assert_eq!(parse_ip("192.0.2.1:80"), Some("192.0.2.1".parse().expect("parses")));
        for bad in ["", " ", "not an ip", "300.1.1.1", "1.2.3", "fe80::1%eth0", "[::1"] {
            assert_eq!(parse_ip(bad), None, "{bad:?}");
        }
    }
}
