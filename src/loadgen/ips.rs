//! Client addresses from real GeoIP ranges: pools of IPv4 /24 and IPv6 /48 networks that
//! the bundled IP-to-country database (the one the pipeline enriches with) maps to each
//! country of [`COUNTRY_WEIGHTS`], found by seeded rejection sampling at start-up.
//!
//! Networks are looked up by their network address, which is exactly the `ip_trunc` the
//! redirect stores, so every generated client geolocates to its drawn country in the
//! pipeline. Special-purpose ranges never qualify (the database lookup refuses them).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::{Rng, RngExt};
use sluice_dataflows::enrich::{CountryMemo, GeoIp};

use super::data::{COUNTRY_WEIGHTS, IPV6_PER_MILLE};

/// Random /24s examined per start-up (the IPv4 space has 16.7 M).
const V4_SAMPLES: usize = 300_000;
/// Random /48s examined (inside the RIRs' IPv6 blocks below).
const V6_SAMPLES: usize = 60_000;
/// IPv6 /12 blocks the five RIRs allocate from (IANA ipv6-unicast-address-assignments).
const V6_RIR_BLOCKS: [u16; 5] = [0x2400, 0x2600, 0x2800, 0x2a00, 0x2c00];

/// Networks per country and the weights to draw a country with.
#[derive(Debug, Clone)]
pub struct IpPools {
    /// (country, weight, /24 prefixes as `a.b.c`).
    v4: Vec<(&'static str, u32, Vec<[u8; 3]>)>,
    v4_total: u32,
    /// /48 prefixes (three 16-bit groups) that geolocate to any country.
    v6: Vec<[u16; 3]>,
}

impl IpPools {
    /// Samples the address space with `rng` and keeps the networks of the configured
    /// countries (countries with no network found are left out).
    ///
    /// Errors if the bundled database cannot be opened or no network qualifies.
    pub fn build(rng: &mut impl Rng) -> anyhow::Result<IpPools> {
        let geo = GeoIp::bundled().map_err(|e| anyhow::anyhow!("could not open the bundled GeoIP database: {e}"))?;
        let mut memo = CountryMemo::default();
        let wanted: BTreeMap<&str, u32> = COUNTRY_WEIGHTS.iter().copied().collect();
        let mut found: BTreeMap<&'static str, Vec<[u8; 3]>> = BTreeMap::new();
        for _ in 0..V4_SAMPLES {
            let n: u32 = rng.random();
            let [a, b, c, _] = n.to_be_bytes();
            let cc = geo.lookup_memo(IpAddr::V4(Ipv4Addr::new(a, b, c, 0)), &mut memo);
            if let Some((&code, _)) = wanted.get_key_value(cc.as_str()) {
                found.entry(code).or_default().push([a, b, c]);
            }
        }
        let v4: Vec<(&'static str, u32, Vec<[u8; 3]>)> =
            COUNTRY_WEIGHTS.iter().filter_map(|&(code, w)| found.remove(code).map(|nets| (code, w, nets))).collect();
        let v4_total = v4.iter().map(|(_, w, _)| w).sum();
        let mut v6 = Vec::new();
        for _ in 0..V6_SAMPLES {
            let block = V6_RIR_BLOCKS[rng.random_range(0..V6_RIR_BLOCKS.len())];
            let g = [block | rng.random_range(0..0x10u16), rng.random(), rng.random()];
            let ip = IpAddr::V6(Ipv6Addr::new(g[0], g[1], g[2], 0, 0, 0, 0, 0));
            if geo.lookup_memo(ip, &mut memo).is_known() {
                v6.push(g);
            }
        }
        anyhow::ensure!(!v4.is_empty(), "no IPv4 network of the configured countries found in the GeoIP database");
        Ok(IpPools { v4, v4_total, v6 })
    }

    /// Countries with networks, with their number of /24s (diagnostics and tests).
    pub fn countries(&self) -> Vec<(&'static str, usize)> {
        self.v4.iter().map(|(c, _, nets)| (*c, nets.len())).collect()
    }

    /// Number of IPv6 /48s found.
    pub fn v6_networks(&self) -> usize {
        self.v6.len()
    }

    /// An IPv4 client address in `country` (host 1..=254), or `None` when no network of
    /// that country was found.
    pub fn draw_in(&self, country: &str, rng: &mut impl Rng) -> Option<IpAddr> {
        let (_, _, nets) = self.v4.iter().find(|(c, _, _)| *c == country)?;
        let [a, b, c] = nets[rng.random_range(0..nets.len())];
        Some(IpAddr::V4(Ipv4Addr::new(a, b, c, rng.random_range(1..=254))))
    }

    /// A client address: IPv6 with probability [`IPV6_PER_MILLE`] (when any /48 was found),
    /// else IPv4 in a country drawn by weight; host bits random (IPv4 host 1..=254).
    pub fn draw(&self, rng: &mut impl Rng) -> IpAddr {
        if !self.v6.is_empty() && rng.random_range(0..1000) < IPV6_PER_MILLE {
            let g = self.v6[rng.random_range(0..self.v6.len())];
            return IpAddr::V6(Ipv6Addr::new(g[0], g[1], g[2], rng.random(), rng.random(), rng.random(), rng.random(), rng.random_range(1..=0xffff)));
        }
        let mut pick = rng.random_range(0..self.v4_total);
        let nets = self
            .v4
            .iter()
            .find(|(_, w, _)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map_or(&self.v4[0].2, |(_, _, n)| n);
        let [a, b, c] = nets[rng.random_range(0..nets.len())];
        IpAddr::V4(Ipv4Addr::new(a, b, c, rng.random_range(1..=254)))
    }
}
