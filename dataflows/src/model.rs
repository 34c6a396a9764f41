//! The vocabulary of the rollups: granularities, dimensions, views, and dimension values.
//!
//! A rollup row is keyed by `(code, granularity, bucket start, view, is_bot, dimension
//! values)` and carries `clicks` plus a [`crate::sketch::VisitorSketch`] of visitor ids.

use std::fmt;

use serde::{Deserialize, Serialize};

mod dim_sym;

pub use dim_sym::DimSym;

/// Bucket size of a stored rollup. Buckets are aligned to the Unix epoch in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Granularity {
    /// 60 s buckets, retained for `minute_retention` (default 48 h).
    Minute,
    /// 15 min buckets, the base for exact hours and days in any IANA zone (every real-world
    /// UTC offset is a multiple of 15 minutes), retained for `long_retention` (400 days).
    Quarter,
    /// 1 h UTC buckets, retained for `long_retention`.
    Hour,
    /// 1 day UTC buckets, retained for `long_retention`.
    Day,
}

impl Granularity {
    /// All granularities, finest first.
    pub const ALL: [Granularity; 4] = [Granularity::Minute, Granularity::Quarter, Granularity::Hour, Granularity::Day];

    /// Bucket length in milliseconds.
    pub const fn len_ms(self) -> i64 {
        match self {
            Granularity::Minute => 60_000,
            Granularity::Quarter => 900_000,
            Granularity::Hour => 3_600_000,
            Granularity::Day => 86_400_000,
        }
    }

    /// Start (ms since epoch, UTC) of the bucket containing `ts_ms`.
    #[inline]
    pub const fn bucket_start(self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.len_ms()) * self.len_ms()
    }

    /// Index 0..4, finest first.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Stable lowercase name (`minute`, `quarter`, `hour`, `day`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Granularity::Minute => "minute",
            Granularity::Quarter => "quarter",
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }
}

/// One enrichment dimension a view can be broken down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Dimension {
    /// ISO 3166-1 alpha-2 country, `ZZ` when unknown.
    Country,
    /// Device class (`desktop|mobile|tablet|bot|other`).
    Device,
    /// Browser family (uap-core).
    Browser,
    /// OS family (uap-core).
    Os,
    /// Registrable referrer domain, `(direct)` or `(invalid)`.
    ReferrerDomain,
    /// Referrer medium (`search|social|ai_assistant|email|internal|unknown|direct`).
    ReferrerMedium,
}

impl Dimension {
    /// All dimensions in key order.
    pub const ALL: [Dimension; 6] =
        [Dimension::Country, Dimension::Device, Dimension::Browser, Dimension::Os, Dimension::ReferrerDomain, Dimension::ReferrerMedium];

    /// The API name (`country`, `device`, `browser`, `os`, `referrer_domain`, `referrer_medium`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Dimension::Country => "country",
            Dimension::Device => "device",
            Dimension::Browser => "browser",
            Dimension::Os => "os",
            Dimension::ReferrerDomain => "referrer_domain",
            Dimension::ReferrerMedium => "referrer_medium",
        }
    }

    /// Parses an API name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Index into [`Dims::values`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Which breakdown a query (and a stored row) uses: the supported view combinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum View {
    /// No breakdown: one row per bucket.
    Total,
    /// One dimension.
    Single(Dimension),
    /// The pair (country, device).
    CountryDevice,
}

impl View {
    /// Number of stored views (total, six single dimensions, one pair).
    pub const COUNT: usize = 8;

    /// All stored views, in [`View::index`] order.
    pub const ALL: [View; 8] = [
        View::Total,
        View::Single(Dimension::Country),
        View::Single(Dimension::Device),
        View::Single(Dimension::Browser),
        View::Single(Dimension::Os),
        View::Single(Dimension::ReferrerDomain),
        View::Single(Dimension::ReferrerMedium),
        View::CountryDevice,
    ];

    /// Dense index 0..8.
    pub const fn index(self) -> usize {
        match self {
            View::Total => 0,
            View::Single(d) => 1 + d as usize,
            View::CountryDevice => 7,
        }
    }

    /// The dimensions of this view, in output order.
    pub fn dimensions(self) -> &'static [Dimension] {
        match self {
            View::Total => &[],
            View::Single(Dimension::Country) => &[Dimension::Country],
            View::Single(Dimension::Device) => &[Dimension::Device],
            View::Single(Dimension::Browser) => &[Dimension::Browser],
            View::Single(Dimension::Os) => &[Dimension::Os],
            View::Single(Dimension::ReferrerDomain) => &[Dimension::ReferrerDomain],
            View::Single(Dimension::ReferrerMedium) => &[Dimension::ReferrerMedium],
            View::CountryDevice => &[Dimension::Country, Dimension::Device],
        }
    }

    /// The view for a list of requested dimensions: none, one, or exactly `country,device`
    /// (in either order). `None` for unsupported combinations.
    pub fn for_dimensions(dims: &[Dimension]) -> Option<View> {
        match dims {
            [] => Some(View::Total),
            [d] => Some(View::Single(*d)),
            [Dimension::Country, Dimension::Device] | [Dimension::Device, Dimension::Country] => Some(View::CountryDevice),
            _ => None,
        }
    }

    /// Stable name (`total`, the dimension name, or `country,device`).
    pub fn as_str(self) -> &'static str {
        match self {
            View::Total => "total",
            View::Single(d) => d.as_str(),
            View::CountryDevice => "country,device",
        }
    }
}

/// A short string stored inline up to 22 bytes (country codes, device classes, most browser,
/// OS and domain names), on the heap otherwise. Moves between workers without touching a
/// shared reference count; serializes as a plain string.
#[derive(Clone)]
pub struct DimStr(DimRepr);

#[derive(Clone)]
enum DimRepr {
    Inline { len: u8, buf: [u8; 22] },
    Heap(Box<str>),
}

impl DimStr {
    /// Copies `s`.
    #[inline]
    pub fn new(s: &str) -> DimStr {
        if s.len() <= 22 {
            let mut buf = [0u8; 22];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            DimStr(DimRepr::Inline { len: s.len() as u8, buf })
        } else {
            DimStr(DimRepr::Heap(s.into()))
        }
    }

    /// The string.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Constructed from a &str, so the prefix is valid UTF-8.
            DimRepr::Inline { len, buf } => std::str::from_utf8(&buf[..*len as usize]).unwrap_or(""),
            DimRepr::Heap(s) => s,
        }
    }
}

impl Default for DimStr {
    fn default() -> Self {
        DimStr::new("")
    }
}

impl From<&str> for DimStr {
    fn from(s: &str) -> Self {
        DimStr::new(s)
    }
}

impl std::borrow::Borrow<str> for DimStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::ops::Deref for DimStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl DimStr {
    /// The UTF-8 bytes of the string (no validation, unlike [`DimStr::as_str`]).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes()
    }

    /// The UTF-8 bytes (no validation: comparisons never need it).
    #[inline]
    fn bytes(&self) -> &[u8] {
        match &self.0 {
            DimRepr::Inline { len, buf } => &buf[..*len as usize],
            DimRepr::Heap(s) => s.as_bytes(),
        }
    }
}

// Equality and order compare bytes: the same results as on `str` (byte-lexicographic),
// without re-validating UTF-8 on every comparison.
impl PartialEq for DimStr {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}
impl Eq for DimStr {}
impl PartialOrd for DimStr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for DimStr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes().cmp(other.bytes())
    }
}
impl std::hash::Hash for DimStr {
    /// Hashes exactly as `str` does (its bytes, then `0xff`: `Hasher::write_str`'s default and
    /// std's SipHasher), so maps keyed by `DimStr` are looked up by `&str` (`Borrow<str>`),
    /// without re-validating UTF-8.
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.bytes());
        state.write_u8(0xff);
    }
}
impl fmt::Debug for DimStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}
impl fmt::Display for DimStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl Serialize for DimStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
impl<'de> Deserialize<'de> for DimStr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(DimStr::new(&s))
    }
}

/// The enrichment of one click as the rollups see it: six dimension values (interned, 4 bytes
/// each) and the bot flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dims {
    /// Values in [`Dimension::ALL`] order: country, device, browser, os, referrer_domain,
    /// referrer_medium.
    pub values: [DimSym; 6],
    /// Known crawler or link-preview fetcher, or no user agent.
    pub is_bot: bool,
}

impl Dims {
    /// Value of one dimension.
    pub fn get(&self, d: Dimension) -> &'static str {
        self.values[d.index()].as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dim_str_inline_and_heap() {
        for s in ["", "US", "Chrome Mobile WebView", "a-very-long-registrable-domain.example.co.uk"] {
            let d = DimStr::new(s);
            assert_eq!(d.as_str(), s);
            let json = serde_json_like(&d);
            assert_eq!(json, s);
        }
        assert_eq!(std::mem::size_of::<DimStr>(), 24);
    }

    #[test]
    fn dim_str_hashes_like_str() {
        use std::hash::BuildHasher;
        let fx = crate::hash::FxBuildHasher;
        let sip = std::collections::hash_map::RandomState::new();
        for s in ["", "US", "Chrome Mobile WebView", "a-very-long-registrable-domain.example.co.uk", "Zürich"] {
            let d = DimStr::new(s);
            assert_eq!(fx.hash_one(&d), fx.hash_one(s), "{s:?}");
            assert_eq!(sip.hash_one(&d), sip.hash_one(s), "{s:?}");
        }
        let mut m: std::collections::HashMap<DimStr, u32> = std::collections::HashMap::new();
        m.insert(DimStr::new("example.com"), 7);
        assert_eq!(m.get("example.com"), Some(&7));
    }

    fn serde_json_like(d: &DimStr) -> String {
        let bytes = bincode::serialize(d).expect("serialize");
        let back: DimStr = bincode::deserialize(&bytes).expect("deserialize");
        back.as_str().to_string()
    }

    #[test]
    fn views_cover_supported_combinations() {
        assert_eq!(View::for_dimensions(&[]), Some(View::Total));
        assert_eq!(View::for_dimensions(&[Dimension::Os]), Some(View::Single(Dimension::Os)));
        assert_eq!(View::for_dimensions(&[Dimension::Device, Dimension::Country]), Some(View::CountryDevice));
        assert_eq!(View::for_dimensions(&[Dimension::Os, Dimension::Country]), None);
        for (i, v) in View::ALL.iter().enumerate() {
            assert_eq!(v.index(), i);
        }
        assert_eq!(Granularity::Hour.bucket_start(-1), -3_600_000);
    }
}
