//! [`BucketEntry`]: one click of the flood detector's window, in 24 bytes.

use super::records::{FloodKey, Network};

/// Marks a [`BucketEntry`] not counted in its key's evidence lists.
pub(super) const UNTRACKED: u32 = u32::MAX;

/// `net` of an entry keyed by its visitor.
const VISITOR_KEY: u64 = 0;
/// Tag bits (48 and up) of `net` for the two network shapes; the address bits sit below.
const V4_TAG: u64 = 1 << 48;
const V6_TAG: u64 = 2 << 48;

/// One click in a window bucket: its key, its visitor and, if it was counted in the key's
/// evidence lists, its link and user agent as ids into the detector's string table (to take
/// it out of them when it leaves; [`UNTRACKED`] otherwise). 24 bytes, packed:
///
/// * `who`: the visitor id of a [`FloodKey::Visitor`] key; the click's visitor for a
///   network key;
/// * `net`: 0 for a visitor key; for a network key its address with a tag in bits 48..50
///   (IPv4 /24: tag 1, octets in bits 0..24; IPv6 /48: tag 2, groups in bits 0..48).
///
/// A visitor key's entry keeps no separate visitor: the detector reads an entry's visitor
/// only for network keys (per-visitor counts, [`BucketEntry::visitor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BucketEntry {
    who: u64,
    net: u64,
    /// Link id in the detector's string table, or [`UNTRACKED`].
    pub(super) code: u32,
    /// User-agent id in the detector's string table, or [`UNTRACKED`] with `code`.
    pub(super) ua: u32,
}

impl BucketEntry {
    /// The entry of a click of `visitor` counted under `key`.
    #[inline]
    pub(super) fn new(key: FloodKey, visitor: u64, code: u32, ua: u32) -> BucketEntry {
        let (who, net) = match key {
            FloodKey::Visitor(v) => (v, VISITOR_KEY),
            FloodKey::Network(Network::V4([a, b, c])) => (visitor, V4_TAG | u64::from(a) << 16 | u64::from(b) << 8 | u64::from(c)),
            FloodKey::Network(Network::V6([a, b, c])) => (visitor, V6_TAG | u64::from(a) << 32 | u64::from(b) << 16 | u64::from(c)),
        };
        BucketEntry { who, net, code, ua }
    }

    /// The key the click was counted under.
    #[inline]
    pub(super) fn key(&self) -> FloodKey {
        let n = self.net;
        match n & !((1 << 48) - 1) {
            VISITOR_KEY => FloodKey::Visitor(self.who),
            V4_TAG => FloodKey::Network(Network::V4([(n >> 16) as u8, (n >> 8) as u8, n as u8])),
            _ => FloodKey::Network(Network::V6([(n >> 32) as u16, (n >> 16) as u16, n as u16])),
        }
    }

    /// The click's visitor: exact for a network key; for a visitor key, the key's visitor
    /// (the detector keeps no per-visitor counts for visitor keys, so it never asks).
    #[inline]
    pub(super) fn visitor(&self) -> u64 {
        self.who
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_24_bytes_and_give_back_their_key_visitor_and_ids() {
        assert_eq!(std::mem::size_of::<BucketEntry>(), 24);
        let keys = [
            FloodKey::Visitor(0),
            FloodKey::Visitor(u64::MAX),
            FloodKey::Visitor(0x0123_4567_89ab_cdef),
            FloodKey::Network(Network::V4([0, 0, 0])),
            FloodKey::Network(Network::V4([255, 255, 255])),
            FloodKey::Network(Network::V4([203, 0, 113])),
            FloodKey::Network(Network::V6([0, 0, 0])),
            FloodKey::Network(Network::V6([u16::MAX, u16::MAX, u16::MAX])),
            FloodKey::Network(Network::V6([0x2001, 0x0db8, 0x0001])),
        ];
        for key in keys {
            for visitor in [0, 7, u64::MAX] {
                for (code, ua) in [(UNTRACKED, UNTRACKED), (0, 0), (12, u32::MAX - 1)] {
                    let e = BucketEntry::new(key, visitor, code, ua);
                    assert_eq!(e.key(), key);
                    assert_eq!((e.code, e.ua), (code, ua));
                    match key {
                        FloodKey::Visitor(v) => assert_eq!(e.visitor(), v),
                        FloodKey::Network(_) => assert_eq!(e.visitor(), visitor),
                    }
                }
            }
        }
    }
}
