//! Chunks: how appended events are stored (storage format 2 of the click log).
//!
//! One append (a group commit of the ingest writer) is stored as one or more chunks, each
//! the value of one entry of the `chunks` table, keyed by the offset of its first event.
//! Event `i` of the chunk keyed `k` has offset `k + i`, so offsets stay dense and per event.
//!
//! Layout of a chunk (all integers little-endian):
//!
//! | bytes | content |
//! |---|---|
//! | 4 | `count`: number of events (≥ 1) |
//! | 4 × `count` | `end[i]`: end of event `i` in the payload (non-decreasing; `end[count-1]` = payload length) |
//! | rest | payload: the events' Avro single-object encodings back to back; event `i` is `payload[end[i-1]..end[i]]` (`end[-1]` = 0) |
//!
//! A chunk holds at most [`CHUNK_MAX_BYTES`] bytes unless it holds a single event that is
//! bigger: redb stores a value that does not fit a page in a power-of-two run of 4 KiB pages,
//! so chunks are cut to fill 4 pages (16 KiB, less redb's per-leaf overhead) rather than one
//! value per group commit of any size (up to 2× the bytes on disk).

use std::ops::Range;

/// Most bytes of a chunk holding more than one event (header included): 16 KiB less room
/// for redb's leaf header, key and value length (16 bytes; 64 kept).
pub(super) const CHUNK_MAX_BYTES: usize = 16 * 1024 - 64;

const COUNT_BYTES: usize = 4;
const END_BYTES: usize = 4;

/// Splits events whose encodings end at `ends` (cumulative byte positions in one buffer, as
/// written by the encoder: event `i` is `buf[ends[i-1]..ends[i]]`) into consecutive index
/// ranges, each a chunk of at most [`CHUNK_MAX_BYTES`] bytes or a single event.
pub(super) fn plan(ends: &[usize]) -> Vec<Range<usize>> {
    let mut chunks = Vec::new();
    let mut first = 0;
    let mut first_start = 0;
    for (i, &end) in ends.iter().enumerate() {
        let n = i + 1 - first;
        let size = COUNT_BYTES + END_BYTES * n + (end - first_start);
        if n > 1 && size > CHUNK_MAX_BYTES {
            chunks.push(first..i);
            first = i;
            first_start = ends[i - 1];
        }
    }
    if first < ends.len() {
        chunks.push(first..ends.len());
    }
    chunks
}

/// Writes the chunk of events `range` (see [`plan`]) of `buf`/`ends` into `out` (cleared first).
///
/// # Panics
/// If `range` is empty or outside `ends`, or a chunk would exceed 4 GiB (chunks are cut at
/// [`CHUNK_MAX_BYTES`]; one event is at most a few tens of KiB).
pub(super) fn encode(buf: &[u8], ends: &[usize], range: Range<usize>, out: &mut Vec<u8>) {
    assert!(!range.is_empty(), "a chunk holds at least one event");
    let base = if range.start == 0 { 0 } else { ends[range.start - 1] };
    let payload = &buf[base..ends[range.end - 1]];
    out.clear();
    out.reserve(COUNT_BYTES + END_BYTES * range.len() + payload.len());
    out.extend_from_slice(&u32::try_from(range.len()).expect("chunk count fits u32").to_le_bytes());
    for &end in &ends[range] {
        out.extend_from_slice(&u32::try_from(end - base).expect("chunk size fits u32").to_le_bytes());
    }
    out.extend_from_slice(payload);
}

/// A validated view of a stored chunk.
#[derive(Debug, Clone, Copy)]
pub(super) struct Chunk<'a> {
    ends: &'a [u8],
    payload: &'a [u8],
}

impl<'a> Chunk<'a> {
    /// Parses `value`; `None` when it is not a well-formed chunk (too short, `count` 0, ends
    /// decreasing or not matching the payload).
    pub(super) fn parse(value: &'a [u8]) -> Option<Self> {
        let count = usize::try_from(u32::from_le_bytes(value.get(..COUNT_BYTES)?.try_into().ok()?)).ok()?;
        if count == 0 {
            return None;
        }
        let ends_len = count.checked_mul(END_BYTES)?;
        let ends = value.get(COUNT_BYTES..COUNT_BYTES.checked_add(ends_len)?)?;
        let payload = &value[COUNT_BYTES + ends_len..];
        let mut prev = 0;
        for e in ends.chunks_exact(END_BYTES) {
            let end = read_u32(e);
            if end < prev {
                return None;
            }
            prev = end;
        }
        (prev == payload.len()).then_some(Self { ends, payload })
    }

    /// Number of events.
    pub(super) fn len(&self) -> usize {
        self.ends.len() / END_BYTES
    }

    /// The bytes of event `i` (`i < len()`).
    pub(super) fn event(&self, i: usize) -> &'a [u8] {
        let start = if i == 0 { 0 } else { read_u32(&self.ends[(i - 1) * END_BYTES..]) };
        let end = read_u32(&self.ends[i * END_BYTES..]);
        &self.payload[start..end]
    }
}

/// The event count a chunk's header claims (0 if the value is too short to have one);
/// only for deciding what truncation may delete, where a damaged chunk must not stop it.
pub(super) fn claimed_count(value: &[u8]) -> u64 {
    value.get(..COUNT_BYTES).map_or(0, |b| read_u32(b) as u64)
}

fn read_u32(b: &[u8]) -> usize {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[..4]);
    u32::from_le_bytes(w) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events of the given sizes encoded back to back: (buffer, cumulative ends).
    fn encoded(sizes: &[usize]) -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            buf.extend(std::iter::repeat_n(i as u8, n));
            ends.push(buf.len());
        }
        (buf, ends)
    }

    #[test]
    fn chunks_round_trip_every_event() {
        let sizes = [190, 0, 1, 8000, 250, 17_000, 3, 190];
        let (buf, ends) = encoded(&sizes);
        let plan = plan(&ends);
        assert_eq!(plan.iter().map(|r| r.len()).sum::<usize>(), sizes.len());
        let mut out = Vec::new();
        let mut next = 0;
        for r in plan {
            assert_eq!(r.start, next, "consecutive");
            next = r.end;
            encode(&buf, &ends, r.clone(), &mut out);
            assert!(out.len() <= CHUNK_MAX_BYTES || r.len() == 1, "{} bytes for {r:?}", out.len());
            let c = Chunk::parse(&out).expect("parses");
            assert_eq!(c.len(), r.len());
            assert_eq!(claimed_count(&out), r.len() as u64);
            for (j, i) in r.enumerate() {
                assert_eq!(c.event(j), &vec![i as u8; sizes[i]][..], "event {i}");
            }
        }
    }

    #[test]
    fn plan_fills_chunks_up_to_the_cap() {
        // 190-byte events: 4 + 194 n <= 16,320 gives 84 per chunk.
        let (_, ends) = encoded(&[190; 200]);
        assert_eq!(plan(&ends), vec![0..84, 84..168, 168..200]);
        // A single event above the cap is a chunk of its own; neighbours are not merged into it.
        let (_, ends) = encoded(&[10, 20_000, 10, 10]);
        assert_eq!(plan(&ends), vec![0..1, 1..2, 2..4]);
        assert_eq!(plan(&[]), Vec::<Range<usize>>::new());
    }

    #[test]
    fn malformed_chunks_are_refused() {
        let (buf, ends) = encoded(&[5, 7]);
        let mut good = Vec::new();
        encode(&buf, &ends, 0..2, &mut good);
        assert!(Chunk::parse(&good).is_some());
        assert!(Chunk::parse(&[]).is_none());
        assert!(Chunk::parse(&[0, 0, 0, 0]).is_none(), "count 0");
        assert!(Chunk::parse(&good[..good.len() - 1]).is_none(), "payload cut");
        assert!(Chunk::parse(&[good.as_slice(), b"x"].concat()).is_none(), "trailing bytes");
        assert!(Chunk::parse(&[255, 255, 255, 255, 1]).is_none(), "count beyond the value");
        let mut decreasing = good.clone();
        // end[0] = 13 > end[1] = 12 (= the payload length, so only the order is wrong)
        decreasing[4..8].copy_from_slice(&13u32.to_le_bytes());
        assert!(Chunk::parse(&decreasing).is_none(), "ends decrease");
        assert_eq!(claimed_count(b"ab"), 0);
    }
}
