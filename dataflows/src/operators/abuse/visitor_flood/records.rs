//! The flood detector's inputs: the keys a flood is counted by ([`FloodKey`], [`Network`]),
//! the [`FloodRecord`] of one click and key, and the operator `TapFloodRecords` that splits
//! the detector's input ([`FloodClick`]s, module `click.rs`) off the deduplicated clicks
//! (module docs of [`super`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sluice_schemas::anomaly::{network_key, visitor_key};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use super::click::FloodClick;
use crate::hash::{mix64, owner};
use crate::model::DimStr;
use crate::records::GatedClick;

/// A client network: the network address of an IPv4 /24 or an IPv6 /48.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Network {
    /// The first three octets.
    V4([u8; 3]),
    /// The first three 16-bit groups.
    V6([u16; 3]),
}

impl Network {
    /// The network of an address (`ip_trunc`, already truncated, or a full address);
    /// `None` for anything that is not an IP address.
    pub fn parse(ip: &str) -> Option<Network> {
        match ip.trim().parse::<std::net::IpAddr>().ok()? {
            std::net::IpAddr::V4(a) => {
                let [x, y, z, _] = a.octets();
                Some(Network::V4([x, y, z]))
            }
            std::net::IpAddr::V6(a) => {
                let g = a.segments();
                Some(Network::V6([g[0], g[1], g[2]]))
            }
        }
    }

    /// CIDR text: `203.0.113.0/24`, `2001:db8:1::/48`.
    pub fn cidr(&self) -> String {
        match *self {
            Network::V4([a, b, c]) => format!("{a}.{b}.{c}.0/24"),
            Network::V6([a, b, c]) => format!("{}/48", std::net::Ipv6Addr::new(a, b, c, 0, 0, 0, 0, 0)),
        }
    }

    fn route(&self) -> u64 {
        match *self {
            Network::V4([a, b, c]) => mix64(u64::from_be_bytes([0, 0, 0, 0, 4, a, b, c])),
            Network::V6([a, b, c]) => mix64((6u64 << 48 | u64::from(a) << 32 | u64::from(b) << 16 | u64::from(c)) ^ 0x6e65_7476_3600_0000),
        }
    }
}

/// What a flood is counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FloodKey {
    /// One visitor id (salted hash of client IP and user agent).
    Visitor(u64),
    /// One client network.
    Network(Network),
}

impl FloodKey {
    /// Routing hash: fixed, so every process and worker count agrees on a key's owner.
    pub fn route(&self) -> u64 {
        match self {
            FloodKey::Visitor(v) => mix64(v ^ 0x7669_7369_746f_7201),
            FloodKey::Network(n) => n.route(),
        }
    }

    /// The anomaly key: `visitor:<hex>` or `network:<cidr>`.
    pub fn anomaly_key(&self) -> String {
        match self {
            FloodKey::Visitor(v) => visitor_key(*v),
            FloodKey::Network(n) => network_key(&n.cidr()),
        }
    }

    /// The key of an anomaly key ([`FloodKey::anomaly_key`] reversed); `None` for any other
    /// text.
    pub fn from_anomaly_key(key: &str) -> Option<FloodKey> {
        if let Some(hex) = key.strip_prefix("visitor:") {
            return (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok().map(FloodKey::Visitor)).flatten();
        }
        let (addr, bits) = key.strip_prefix("network:")?.split_once('/')?;
        let n = Network::parse(addr)?;
        let k = FloodKey::Network(n);
        (bits == if matches!(n, Network::V4(_)) { "24" } else { "48" } && k.anomaly_key() == key).then_some(k)
    }
}

/// One click as one of its keys sees it: the per-key form of a [`FloodClick`]
/// ([`super::FloodDetector::push`] takes these, one key at a time; the stream carries
/// [`FloodClick`]s, one per click and owning worker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloodRecord {
    /// The key counted.
    pub key: FloodKey,
    /// Event time, ms UTC.
    pub ts: i64,
    /// The click's visitor.
    pub visitor_id: u64,
    /// The click's network, if known.
    pub network: Option<Network>,
    /// The link clicked.
    pub code: DimStr,
    /// The raw `User-Agent` (shared by the click's two records).
    pub user_agent: Arc<str>,
}

/// Extension trait: split flood records off the deduplicated clicks (module docs).
pub trait TapFloodRecords<'scope> {
    /// Returns `(the clicks, unchanged; their flood clicks)`: one [`FloodClick`] per click,
    /// counted under its visitor and its network (if known), or two when those keys are
    /// owned by different workers (one per key).
    fn tap_flood_records(self) -> (StreamVec<'scope, u64, GatedClick>, StreamVec<'scope, u64, FloodClick>);
}

impl<'scope> TapFloodRecords<'scope> for StreamVec<'scope, u64, GatedClick> {
    fn tap_flood_records(self) -> (StreamVec<'scope, u64, GatedClick>, StreamVec<'scope, u64, FloodClick>) {
        let peers = self.scope().peers();
        let mut builder = OperatorBuilder::new("TapFloodRecords".to_owned(), self.scope());
        let mut input = builder.new_input(self, Pipeline);
        let (pass_out, pass) = builder.new_output::<Vec<GatedClick>>();
        let (flood_out, floods) = builder.new_output::<Vec<FloodClick>>();
        let mut pass_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<GatedClick>>>::from(pass_out);
        let mut flood_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<FloodClick>>>::from(flood_out);
        builder.build(move |initial| {
            drop(initial);
            let mut buf: Vec<FloodClick> = Vec::new();
            let mut uas = UaCache::default();
            move |_frontiers| {
                let mut pass = pass_out.activate();
                let mut floods = flood_out.activate();
                input.for_each(|cap, data| {
                    let t = *cap.least().expect("input capability has a time");
                    let (c0, c1) = (cap.delayed(&t, 0), cap.delayed(&t, 1));
                    buf.reserve(data.len());
                    for c in data.iter() {
                        let e = &c.event;
                        let network = e.ip_trunc.as_deref().and_then(Network::parse);
                        let ua = uas.get(&e.user_agent);
                        let code = DimStr::new(&e.code);
                        // Both keys on one worker (always with one): one click counted under both.
                        let apart = network
                            .is_some_and(|n| peers > 1 && owner(FloodKey::Visitor(e.visitor_id).route(), peers) != owner(FloodKey::Network(n).route(), peers));
                        if apart {
                            buf.push(FloodClick::new(e.ts, e.visitor_id, network, code.clone(), Arc::clone(&ua), false, true));
                        }
                        buf.push(FloodClick::new(e.ts, e.visitor_id, network, code, ua, true, !apart));
                    }
                    floods.session(&c1).give_container(&mut buf);
                    buf.clear();
                    pass.session(&c0).give_container(data);
                });
            }
        });
        (pass, floods)
    }
}

/// Recent user agents, so a visitor's clicks share one allocation (and compare by pointer in
/// the evidence lists): a direct-mapped cache of [`UA_CACHE_SLOTS`] slots by hash of the text.
struct UaCache {
    slots: Vec<Option<Arc<str>>>,
}

const UA_CACHE_SLOTS: usize = 4096;

impl Default for UaCache {
    fn default() -> UaCache {
        UaCache { slots: vec![None; UA_CACHE_SLOTS] }
    }
}

impl UaCache {
    /// The shared text of `ua` (a hit returns the cached `Arc`, a miss replaces the slot).
    fn get(&mut self, ua: &str) -> Arc<str> {
        use std::hash::BuildHasher;
        let i = (crate::hash::FxBuildHasher.hash_one(ua) as usize) % UA_CACHE_SLOTS;
        match &self.slots[i] {
            Some(a) if **a == *ua => Arc::clone(a),
            _ => {
                let a: Arc<str> = Arc::from(ua);
                self.slots[i] = Some(Arc::clone(&a));
                a
            }
        }
    }
}
