//! GeoIP enrichment: the 10-row test vector of the bundled database, special-purpose
//! ranges, IPv4-mapped IPv6, textual forms, and a user-supplied GeoLite2-shaped database.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use sluice_dataflows::Error;
use sluice_dataflows::enrich::{CountryCode, CountryMemo, EnrichConfig, Enricher, GeoIp};

fn enricher() -> Enricher {
    Enricher::new(&EnrichConfig::default()).expect("bundled enrichment data compiles")
}

fn cc(s: &str) -> CountryCode {
    CountryCode::parse(s).expect("valid code")
}

#[test]
fn bundled_database_matches_the_test_vector_exactly() {
    let e = enricher();
    let path = format!(
        "{}/tests/data/geoip/geoip-test-vector.tsv",
        std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (set by cargo test and nextest at run time)")
    );
    let text = std::fs::read_to_string(path).expect("test vector exists");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("ip\tcountry_code"));
    let rows: Vec<(&str, &str)> = lines.filter(|l| !l.is_empty()).map(|l| l.split_once('\t').expect("two columns")).collect();
    assert_eq!(rows.len(), 10);
    for (ip, want) in rows {
        assert_eq!(e.country(Some(ip)), cc(want), "{ip}");
    }
}

#[test]
fn special_purpose_ranges_never_get_a_country() {
    let e = enricher();
    let geo = GeoIp::bundled().expect("bundled db");
    // The bundled database itself maps these to a country (data/README.md: AU and JP) ...
    assert_eq!(raw_lookup("192.168.1.0"), Some("AU".to_owned()));
    assert_eq!(raw_lookup("2001:db8::"), Some("JP".to_owned()));
    // ... but they never reach the lookup.
    for ip in [
        "10.0.0.0",
        "100.64.0.0",
        "127.0.0.1",
        "169.254.0.0",
        "172.16.0.0",
        "172.31.255.0",
        "192.0.2.0",
        "192.168.1.0",
        "198.18.0.0",
        "198.51.100.0",
        "203.0.113.0",
        "224.0.0.0",
        "240.0.0.0",
        "255.255.255.255",
        "0.0.0.0",
        "::",
        "::1",
        "2001:db8::",
        "2001:db8:1::",
        "fc00::",
        "fd12:3456:789a::",
        "fe80::",
        "ff02::",
        "3fff::",
        "::ffff:192.168.0.0",
        "::ffff:192.0.2.0",
        "::ffff:10.1.2.0",
    ] {
        assert_eq!(e.country(Some(ip)), CountryCode::UNKNOWN, "{ip}");
        assert_eq!(geo.lookup(ip.parse::<IpAddr>().expect("parses")), CountryCode::UNKNOWN, "{ip}");
    }
}

/// What the database itself says, bypassing the special-range filter.
fn raw_lookup(ip: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Rec {
        country_code: String,
    }
    let r = maxminddb::Reader::from_source(
        std::fs::read(format!(
            "{}/data/geoip/geo-whois-asn-country.mmdb",
            std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (set by cargo test and nextest at run time)")
        ))
        .expect("vendored db"),
    )
    .expect("valid db");
    let res = r.lookup(ip.parse().expect("parses")).expect("lookup");
    res.decode::<Rec>().expect("decodes").map(|r| r.country_code)
}

#[test]
fn ipv4_mapped_ipv6_is_looked_up_as_ipv4() {
    let e = enricher();
    // The database has no record for the mapped form itself (data/README.md).
    assert_eq!(raw_lookup("::ffff:8.8.8.8"), None);
    assert_eq!(e.country(Some("::ffff:8.8.8.8")), cc("US"));
    assert_eq!(e.country(Some("::ffff:77.88.8.0")), cc("RU"));
}

#[test]
fn textual_forms_and_garbage() {
    let e = enricher();
    assert_eq!(e.country(Some("2001:4860:4860:0000:0000:0000:0000:8888")), cc("US"));
    assert_eq!(e.country(Some("[2001:4860:4860::8888]:443")), cc("US"));
    assert_eq!(e.country(Some(" 8.8.8.0 ")), cc("US"));
    assert_eq!(e.country(Some("8.8.8.0:51234")), cc("US"));
    for bad in ["", " ", "8.8.8", "8.8.8.8.8", "999.1.1.1", "example.com", "::g", "\u{0}", "8.8.8.8/24"] {
        assert_eq!(e.country(Some(bad)), CountryCode::UNKNOWN, "{bad:?}");
    }
    assert_eq!(e.country(None), CountryCode::UNKNOWN);
    assert_eq!(CountryCode::UNKNOWN.as_str(), "ZZ");
}

#[test]
fn memoized_lookup_agrees_with_plain_lookup() {
    let geo = GeoIp::bundled().expect("bundled db");
    let mut memo = CountryMemo::default();
    let mut x: u64 = 0x1234_5678_9abc_def0;
    let mut known = 0;
    for i in 0..200_000u32 {
        // xorshift64: deterministic spread over the whole IPv4 and IPv6 spaces.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ip: IpAddr = if i % 4 == 0 {
            std::net::Ipv6Addr::from((0x2000u128 << 112) | (u128::from(x) << 40)).into()
        } else {
            std::net::Ipv4Addr::from((x >> 32) as u32).into()
        };
        let plain = geo.lookup(ip);
        assert_eq!(geo.lookup_memo(ip, &mut memo), plain, "{ip}");
        known += usize::from(plain.is_known());
    }
    assert!(known > 100_000, "most random addresses are mapped ({known})");
}

#[test]
fn configured_path_overrides_and_bad_paths_are_clear_errors() {
    let vendored = PathBuf::from(format!(
        "{}/data/geoip/geo-whois-asn-country.mmdb",
        std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (set by cargo test and nextest at run time)")
    ));
    let e = Enricher::new(&EnrichConfig { geoip_path: Some(vendored), ..EnrichConfig::default() }).expect("a valid file opens");
    assert_eq!(e.country(Some("81.2.69.160")), cc("GB"));

    let missing = PathBuf::from(format!("{}/no-such-file.mmdb", env!("CARGO_TARGET_TMPDIR")));
    match Enricher::new(&EnrichConfig { geoip_path: Some(missing), ..EnrichConfig::default() }) {
        Err(err @ Error::GeoIpOpen { .. }) => {
            assert!(err.to_string().contains("no-such-file.mmdb"), "{err}");
            assert_eq!(err.kind(), sluice_dataflows::ErrorKind::User);
        }
        Err(other) => panic!("wrong error {other}"),
        Ok(_) => panic!("missing file must fail"),
    }
    let not_mmdb = PathBuf::from(format!("{}/not-a-db.mmdb", env!("CARGO_TARGET_TMPDIR")));
    std::fs::write(&not_mmdb, b"definitely not a maxmind db").expect("write temp file");
    assert!(matches!(Enricher::new(&EnrichConfig { geoip_path: Some(not_mmdb), ..EnrichConfig::default() }), Err(Error::GeoIpOpen { .. })));
}

#[test]
fn geolite2_shaped_database_is_supported() {
    // A tiny IPv4 database in the GeoIP2/GeoLite2-Country record shape, written by the
    // minimal MaxMind DB writer below (format: MaxMind DB spec 2.0).
    let gb = Value::map([
        ("continent", Value::map([("code", Value::Str("EU"))])),
        ("country", Value::map([("iso_code", Value::Str("GB")), ("names", Value::map([("en", Value::Str("United Kingdom"))]))])),
        ("registered_country", Value::map([("iso_code", Value::Str("GB"))])),
    ]);
    let registered_only = Value::map([("registered_country", Value::map([("iso_code", Value::Str("AU"))]))]);
    let lower_case = Value::map([("country", Value::map([("iso_code", Value::Str("de"))]))]);
    let private = Value::map([("country", Value::map([("iso_code", Value::Str("AU"))]))]);
    let bytes = write_mmdb(
        "GeoLite2-Country",
        &[([81, 2, 69, 0], 24, gb), ([1, 2, 3, 0], 24, registered_only), ([5, 6, 0, 0], 16, lower_case), ([192, 168, 0, 0], 16, private)],
    );
    let path = PathBuf::from(format!("{}/geolite2-shaped.mmdb", env!("CARGO_TARGET_TMPDIR")));
    std::fs::write(&path, bytes).expect("write temp db");
    let geo = GeoIp::open(&path).expect("opens");
    assert_eq!(geo.database_type(), "GeoLite2-Country");
    let e = Enricher::new(&EnrichConfig { geoip_path: Some(path), ..EnrichConfig::default() }).expect("opens");
    assert_eq!(e.country(Some("81.2.69.0")), cc("GB"));
    assert_eq!(e.country(Some("1.2.3.0")), cc("AU"), "registered_country fallback");
    assert_eq!(e.country(Some("5.6.7.0")), cc("DE"), "code normalized to upper case");
    assert_eq!(e.country(Some("192.168.1.0")), CountryCode::UNKNOWN, "special range skipped");
    assert_eq!(e.country(Some("8.8.8.0")), CountryCode::UNKNOWN, "no record");
    assert_eq!(e.country(Some("2001:4860::")), CountryCode::UNKNOWN, "IPv6 in an IPv4 db");
}

// ---- minimal MaxMind DB writer (test only) ----------------------------------------

enum Value {
    Str(&'static str),
    Map(BTreeMap<&'static str, Value>),
    U16(u16),
    U32(u32),
    U64(u64),
    Array(Vec<Value>),
}

impl Value {
    fn map<const N: usize>(entries: [(&'static str, Value); N]) -> Value {
        Value::Map(entries.into_iter().collect())
    }

    fn encode(&self, out: &mut Vec<u8>) {
        fn ctrl(out: &mut Vec<u8>, typ: u8, size: usize) {
            assert!(size < 29, "test writer supports small sizes only");
            if typ <= 7 {
                out.push((typ << 5) | size as u8);
            } else {
                out.push(size as u8);
                out.push(typ - 7);
            }
        }
        fn uint(out: &mut Vec<u8>, typ: u8, v: u64) {
            let bytes = v.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            ctrl(out, typ, 8 - skip);
            out.extend_from_slice(&bytes[skip..]);
        }
        match self {
            Value::Str(s) => {
                ctrl(out, 2, s.len());
                out.extend_from_slice(s.as_bytes());
            }
            Value::Map(m) => {
                ctrl(out, 7, m.len());
                for (k, v) in m {
                    Value::Str(k).encode(out);
                    v.encode(out);
                }
            }
            Value::U16(v) => uint(out, 5, u64::from(*v)),
            Value::U32(v) => uint(out, 6, u64::from(*v)),
            Value::U64(v) => uint(out, 9, *v),
            Value::Array(items) => {
                ctrl(out, 11, items.len());
                items.iter().for_each(|i| i.encode(out));
            }
        }
    }
}

/// Builds an IPv4, 24-bit-record MaxMind DB holding the given networks.
fn write_mmdb(database_type: &'static str, networks: &[([u8; 4], u8, Value)]) -> Vec<u8> {
    const EMPTY: u64 = u64::MAX;
    let mut data = Vec::new();
    // Tree nodes: child = node index, or DATA_TAG | data offset, or EMPTY.
    const DATA_TAG: u64 = 1 << 40;
    let mut nodes: Vec<[u64; 2]> = vec![[EMPTY, EMPTY]];
    for (net, len, value) in networks {
        let offset = data.len() as u64;
        value.encode(&mut data);
        let addr = u32::from_be_bytes(*net);
        let mut node = 0usize;
        for depth in 0..*len {
            let bit = ((addr >> (31 - u32::from(depth))) & 1) as usize;
            if depth + 1 == *len {
                nodes[node][bit] = DATA_TAG | offset;
            } else {
                if nodes[node][bit] == EMPTY {
                    nodes.push([EMPTY, EMPTY]);
                    nodes[node][bit] = (nodes.len() - 1) as u64;
                }
                node = nodes[node][bit] as usize;
            }
        }
    }
    let node_count = nodes.len() as u64;
    let mut out = Vec::new();
    for n in &nodes {
        for rec in n {
            let v = if *rec == EMPTY {
                node_count
            } else if rec & DATA_TAG != 0 {
                node_count + 16 + (rec & !DATA_TAG)
            } else {
                *rec
            };
            out.extend_from_slice(&(v as u32).to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    Value::map([
        ("binary_format_major_version", Value::U16(2)),
        ("binary_format_minor_version", Value::U16(0)),
        ("build_epoch", Value::U64(1_700_000_000)),
        ("database_type", Value::Str(database_type)),
        ("description", Value::map([("en", Value::Str("test"))])),
        ("ip_version", Value::U16(4)),
        ("languages", Value::Array(vec![Value::Str("en")])),
        ("node_count", Value::U32(node_count as u32)),
        ("record_size", Value::U16(24)),
    ])
    .encode(&mut out);
    out
}
