//! [`FloodClick`]: one click as the flood detector receives it, counted under its visitor
//! key, its network key or both, in 64 bytes.
//!
//! The tap used to emit one [`FloodRecord`] per click and key (two per click with a known
//! network, ~80 bytes each, every one carrying the link and user agent); the detector's input
//! is now one record per click and owning worker: a click whose two keys live on the same
//! worker (always, with one worker) travels, waits and is sorted once, and is counted under
//! both keys when its tick comes. A key's clicks are folded in the same order as before
//! ([`FloodClick::order`]), so the detector's state and events are unchanged.

use std::cmp::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::records::{FloodKey, FloodRecord, Network};
use crate::model::DimStr;
use crate::operators::abuse::pending::Held;

/// Bit of [`FloodClick::net`]: the click is counted under its visitor's key.
const BY_VISITOR: u64 = 1 << 62;
/// Bit of [`FloodClick::net`]: the click is counted under its network's key.
const BY_NETWORK: u64 = 1 << 63;
/// The bits of [`FloodClick::net`] that hold the network (shape tag and address).
const NET_MASK: u64 = (1 << 50) - 1;
/// Shape tags (bits 48..50) of a packed network; 0 is "no network".
const V4_TAG: u64 = 1 << 48;
const V6_TAG: u64 = 2 << 48;

/// Packs a network into bits 0..50: the shape tag in bits 48..50 (0: none, 1: IPv4 /24,
/// 2: IPv6 /48), the address below (octets in bits 0..24, groups in bits 0..48). Packed
/// values order as `Option<Network>` does (derived order: none, then IPv4, then IPv6, each
/// by its numbers).
pub(super) fn pack_network(n: Option<Network>) -> u64 {
    match n {
        None => 0,
        Some(Network::V4([a, b, c])) => V4_TAG | u64::from(a) << 16 | u64::from(b) << 8 | u64::from(c),
        Some(Network::V6([a, b, c])) => V6_TAG | u64::from(a) << 32 | u64::from(b) << 16 | u64::from(c),
    }
}

/// [`pack_network`] reversed (the flag bits above 50 are ignored).
pub(super) fn unpack_network(bits: u64) -> Option<Network> {
    let n = bits & NET_MASK;
    match n & !((1 << 48) - 1) {
        V4_TAG => Some(Network::V4([(n >> 16) as u8, (n >> 8) as u8, n as u8])),
        V6_TAG => Some(Network::V6([(n >> 32) as u16, (n >> 16) as u16, n as u16])),
        _ => None,
    }
}

/// One click of the flood detector's input (module docs): 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloodClick {
    /// Event time, ms UTC.
    pub ts: i64,
    /// The click's visitor.
    pub visitor_id: u64,
    /// The click's network ([`pack_network`], bits 0..50) and the keys it is counted under
    /// (bit 62: its visitor's, bit 63: its network's).
    net: u64,
    /// The link clicked.
    pub code: DimStr,
    /// The raw `User-Agent`.
    pub user_agent: Arc<str>,
}

impl FloodClick {
    /// A click of `visitor_id` from `network` (if known), counted under its visitor's key
    /// when `by_visitor` and under its network's key when `by_network` (ignored without a
    /// network).
    pub fn new(ts: i64, visitor_id: u64, network: Option<Network>, code: DimStr, user_agent: Arc<str>, by_visitor: bool, by_network: bool) -> FloodClick {
        let mut net = pack_network(network);
        if by_visitor {
            net |= BY_VISITOR;
        }
        if by_network && network.is_some() {
            net |= BY_NETWORK;
        }
        FloodClick { ts, visitor_id, net, code, user_agent }
    }

    /// The click's network, if known.
    #[inline]
    pub fn network(&self) -> Option<Network> {
        unpack_network(self.net)
    }

    /// Whether the click is counted under its visitor's key.
    #[inline]
    pub fn by_visitor(&self) -> bool {
        self.net & BY_VISITOR != 0
    }

    /// The network key the click is counted under, if any.
    #[inline]
    pub fn network_key(&self) -> Option<FloodKey> {
        if self.net & BY_NETWORK == 0 { None } else { self.network().map(FloodKey::Network) }
    }

    /// The keys the click is counted under: its visitor's first, then its network's.
    pub fn keys(&self) -> impl Iterator<Item = FloodKey> + '_ {
        self.by_visitor().then_some(FloodKey::Visitor(self.visitor_id)).into_iter().chain(self.network_key())
    }

    /// Routing hash: the visitor key's when the click is counted under it, else the network
    /// key's. A click is counted under both keys only when both route to the same worker
    /// (the tap splits it otherwise), so this is the route of every key it carries.
    pub fn route(&self) -> u64 {
        match self.network_key() {
            Some(k) if !self.by_visitor() => k.route(),
            _ => FloodKey::Visitor(self.visitor_id).route(),
        }
    }

    /// The network bits in `Option<Network>` order, then the key flags (the last tie-break
    /// of [`Held::order`]).
    #[inline]
    fn net_order(&self) -> (u64, u64) {
        (self.net & NET_MASK, self.net >> 62)
    }
}

impl From<FloodRecord> for FloodClick {
    /// The click of one record, counted under the record's key only: a visitor key's
    /// record is a click of that visitor (from the record's network, if known); a network
    /// key's is a click of the record's visitor from that network.
    fn from(r: FloodRecord) -> FloodClick {
        match r.key {
            FloodKey::Visitor(v) => FloodClick::new(r.ts, v, r.network, r.code, r.user_agent, true, false),
            FloodKey::Network(n) => FloodClick::new(r.ts, r.visitor_id, Some(n), r.code, r.user_agent, false, true),
        }
    }
}

impl Held for FloodClick {
    type Ctx = ();
    /// `(ts, visitor_id)`: the leading fields of [`Held::order`].
    type Prefix = (i64, u64);

    #[inline]
    fn prefix(&self) -> (i64, u64) {
        (self.ts, self.visitor_id)
    }

    #[inline]
    fn ts(&self) -> i64 {
        self.ts
    }

    /// `(ts, visitor, link, user agent, network, keys)`. Restricted to the clicks counted
    /// under one key this is the order the per-key records had (`(ts, key, visitor, link,
    /// user agent, network)` with the key fixed), so every key folds its clicks in the same
    /// order whether they arrive one record per key or one per click.
    fn order(&self, o: &Self, _: &()) -> Ordering {
        (self.ts, self.visitor_id, &self.code, &self.user_agent, self.net_order()).cmp(&(o.ts, o.visitor_id, &o.code, &o.user_agent, o.net_order()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn networks() -> Vec<Option<Network>> {
        vec![
            None,
            Some(Network::V4([0, 0, 0])),
            Some(Network::V4([0, 0, 255])),
            Some(Network::V4([0, 255, 0])),
            Some(Network::V4([203, 0, 113])),
            Some(Network::V4([255, 255, 255])),
            Some(Network::V6([0, 0, 0])),
            Some(Network::V6([0, 0, 65535])),
            Some(Network::V6([0x2001, 0x0db8, 1])),
            Some(Network::V6([65535, 0, 0])),
            Some(Network::V6([65535, 65535, 65535])),
        ]
    }

    #[test]
    fn clicks_are_64_bytes_and_give_back_their_network_and_keys() {
        assert_eq!(std::mem::size_of::<FloodClick>(), 64);
        for n in networks() {
            for v in [0, 7, u64::MAX] {
                for (bv, bn) in [(true, true), (true, false), (false, true), (false, false)] {
                    let c = FloodClick::new(5, v, n, DimStr::new("ab"), Arc::from("UA"), bv, bn);
                    assert_eq!(c.network(), n);
                    assert_eq!(c.by_visitor(), bv);
                    // The naive reference: the visitor's key if asked, the network's if asked
                    // and known.
                    let mut want = Vec::new();
                    if bv {
                        want.push(FloodKey::Visitor(v));
                    }
                    if let (true, Some(n)) = (bn, n) {
                        want.push(FloodKey::Network(n));
                    }
                    assert_eq!(c.keys().collect::<Vec<_>>(), want, "{n:?} {bv} {bn}");
                    assert_eq!(c.network_key(), want.iter().copied().find(|k| matches!(k, FloodKey::Network(_))));
                    let route = if !bv && c.network_key().is_some() { want[0].route() } else { FloodKey::Visitor(v).route() };
                    assert_eq!(c.route(), route);
                }
            }
        }
    }

    #[test]
    fn packed_networks_order_as_options_and_round_trip() {
        let ns = networks();
        for a in &ns {
            assert_eq!(unpack_network(pack_network(*a)), *a);
            for b in &ns {
                assert_eq!(pack_network(*a).cmp(&pack_network(*b)), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn a_keys_clicks_keep_the_order_of_its_records() {
        // Every (ts, visitor, link, user agent, network) combination from small domains, as
        // records of both keys and as clicks; per key, the clicks sorted by `order` must be
        // the records of that key sorted by the records' own order.
        let mut recs = Vec::new();
        for ts in [1, 2] {
            for visitor in [3, 4] {
                for code in ["a", "b"] {
                    for ua in ["x", "y"] {
                        for n in [Some(Network::V4([1, 2, 3])), Some(Network::V6([1, 2, 3])), None] {
                            let rec = |key| FloodRecord { key, ts, visitor_id: visitor, network: n, code: DimStr::new(code), user_agent: Arc::from(ua) };
                            recs.push(rec(FloodKey::Visitor(visitor)));
                            if let Some(n) = n {
                                recs.push(rec(FloodKey::Network(n)));
                            }
                        }
                    }
                }
            }
        }
        let full = |r: &FloodRecord| (r.ts, r.key, r.visitor_id, r.code.clone(), r.user_agent.clone(), r.network);
        let mut clicks: Vec<FloodClick> = recs
            .iter()
            .filter(|r| matches!(r.key, FloodKey::Visitor(_)))
            .map(|r| FloodClick::new(r.ts, r.visitor_id, r.network, r.code.clone(), r.user_agent.clone(), true, true))
            .collect();
        clicks.sort_by(|a, b| a.order(b, &()));
        for w in clicks.windows(2) {
            if w[0].prefix() != w[1].prefix() {
                assert_eq!(w[0].prefix().cmp(&w[1].prefix()), w[0].order(&w[1], &()));
            }
        }
        let mut keys: Vec<FloodKey> = recs.iter().map(|r| r.key).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let mut want: Vec<_> = recs.iter().filter(|r| r.key == key).map(full).collect();
            want.sort();
            let got: Vec<_> = clicks
                .iter()
                .filter(|c| c.keys().any(|k| k == key))
                .map(|c| (c.ts, key, c.visitor_id, c.code.clone(), c.user_agent.clone(), c.network()))
                .collect();
            assert_eq!(got, want, "{key:?}");
        }
    }
}
