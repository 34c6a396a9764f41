//! Chunks: how appended events are stored (storage formats 2 and 3 of the click log).
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
//!
//! Compression (storage format 3): a chunk whose body (`end[]` and payload) LZ4 compresses to
//! fewer bytes is stored compressed, as below; otherwise as above. A plain chunk never
//! starts with a zero `count`, so the two forms are told apart by their first four bytes
//! and a log can hold both (a format-2 log upgraded to format 3 keeps its plain chunks).
//!
//! | bytes | content |
//! |---|---|
//! | 4 | 0 (marks a compressed chunk) |
//! | 4 | `count`: number of events (≥ 1) |
//! | 4 | `raw`: bytes of the uncompressed body (`4 × count` + payload length) |
//! | rest | the body compressed as one LZ4 block ([`lz4_flex::block`], the LZ4 block format of <https://github.com/lz4/lz4/blob/dev/doc/lz4_Block_format.md>) |
//!
//! Why: each append is fsync'd, and on the benchmark VM the host charges the VM's I/O to
//! its CPU quota; at 60 k clicks/s the uncompressed log wrote ~14 MB/s and the redirect
//! worker lost 2–5 ms every 100 ms to the throttling (BENCHMARKS.md, session 28). Click
//! events compress well (user agents, referrers and language headers repeat within a
//! chunk), and LZ4 costs the writer thread far less than it saves in I/O. Chunks are still
//! cut at [`CHUNK_MAX_BYTES`] of uncompressed body, so a reader never inflates more than
//! that per chunk (bar a single oversized event).

use std::borrow::Cow;
use std::ops::Range;

/// Most bytes of a chunk holding more than one event (header included): 16 KiB less room
/// for redb's leaf header, key and value length (16 bytes; 64 kept).
pub(super) const CHUNK_MAX_BYTES: usize = 16 * 1024 - 64;

const COUNT_BYTES: usize = 4;
const END_BYTES: usize = 4;
/// Header of a compressed chunk: marker, `count`, `raw`.
const COMPRESSED_HEADER: usize = 12;
/// Largest uncompressed body a compressed chunk may claim: chunks are cut at
/// [`CHUNK_MAX_BYTES`] unless one event is bigger, and an event is at most a few tens of
/// KiB. A damaged header claiming more is refused instead of allocating what it says.
const MAX_RAW_BYTES: usize = 64 * 1024 * 1024;

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

/// Writes the chunk of events `range` (see [`plan`]) of `buf`/`ends` into `out` (cleared
/// first): compressed when that is smaller, plain otherwise (module docs). `raw` is scratch
/// space for the uncompressed body.
///
/// # Panics
/// If `range` is empty or outside `ends`, or a chunk would exceed 4 GiB (chunks are cut at
/// [`CHUNK_MAX_BYTES`]; one event is at most a few tens of KiB).
pub(super) fn encode(buf: &[u8], ends: &[usize], range: Range<usize>, raw: &mut Vec<u8>, out: &mut Vec<u8>) {
    assert!(!range.is_empty(), "a chunk holds at least one event");
    let count = u32::try_from(range.len()).expect("chunk count fits u32");
    let base = if range.start == 0 { 0 } else { ends[range.start - 1] };
    let payload = &buf[base..ends[range.end - 1]];
    raw.clear();
    raw.reserve(END_BYTES * range.len() + payload.len());
    for &end in &ends[range] {
        raw.extend_from_slice(&u32::try_from(end - base).expect("chunk size fits u32").to_le_bytes());
    }
    raw.extend_from_slice(payload);
    // The compressor overwrites what it writes: only a buffer that grows is zeroed (once),
    // not the whole bound at every chunk.
    let bound = COMPRESSED_HEADER + lz4_flex::block::get_maximum_output_size(raw.len());
    if out.len() < bound {
        out.resize(bound, 0);
    }
    let compressed = lz4_flex::block::compress_into(raw, &mut out[COMPRESSED_HEADER..bound]).ok().filter(|&n| COMPRESSED_HEADER + n < COUNT_BYTES + raw.len());
    match compressed {
        Some(n) => {
            out.truncate(COMPRESSED_HEADER + n);
            out[..4].copy_from_slice(&0u32.to_le_bytes());
            out[4..8].copy_from_slice(&count.to_le_bytes());
            out[8..12].copy_from_slice(&u32::try_from(raw.len()).expect("chunk size fits u32").to_le_bytes());
        }
        None => {
            out.clear();
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(raw);
        }
    }
}

/// A validated view of a stored chunk: borrowed from the stored value when it is plain,
/// owned (inflated) when it was compressed.
#[derive(Debug, Clone)]
pub(super) struct Chunk<'a> {
    /// `end[]` then the payload (module docs).
    body: Cow<'a, [u8]>,
    count: usize,
}

impl<'a> Chunk<'a> {
    /// Parses (and for a compressed chunk inflates) `value`; `None` when it is not a
    /// well-formed chunk: too short, `count` 0, a compressed body that does not inflate to
    /// exactly `raw` bytes, ends decreasing or not matching the payload.
    pub(super) fn parse(value: &'a [u8]) -> Option<Self> {
        let first = read_u32(value.get(..COUNT_BYTES)?);
        let (count, body) = if first == 0 {
            let count = read_u32(value.get(4..8)?);
            let raw = read_u32(value.get(8..12)?);
            if raw > MAX_RAW_BYTES {
                return None;
            }
            let mut body = vec![0; raw];
            let n = lz4_flex::block::decompress_into(&value[COMPRESSED_HEADER..], &mut body).ok()?;
            if n != raw {
                return None;
            }
            (count, Cow::Owned(body))
        } else {
            (first, Cow::Borrowed(&value[COUNT_BYTES..]))
        };
        if count == 0 {
            return None;
        }
        let ends_len = count.checked_mul(END_BYTES)?;
        let ends = body.get(..ends_len)?;
        let payload_len = body.len() - ends_len;
        let mut prev = 0;
        for e in ends.chunks_exact(END_BYTES) {
            let end = read_u32(e);
            if end < prev {
                return None;
            }
            prev = end;
        }
        (prev == payload_len).then_some(Self { body, count })
    }

    /// Number of events.
    pub(super) fn len(&self) -> usize {
        self.count
    }

    /// The bytes of event `i` (`i < len()`).
    pub(super) fn event(&self, i: usize) -> &[u8] {
        let ends_len = self.count * END_BYTES;
        let start = if i == 0 { 0 } else { read_u32(&self.body[(i - 1) * END_BYTES..]) };
        let end = read_u32(&self.body[i * END_BYTES..]);
        &self.body[ends_len + start..ends_len + end]
    }
}

/// The event count a chunk's header claims (0 if the value is too short to have one);
/// only for deciding what truncation may delete, where a damaged chunk must not stop it.
pub(super) fn claimed_count(value: &[u8]) -> u64 {
    match value.get(..COUNT_BYTES).map(read_u32) {
        Some(0) => value.get(4..8).map_or(0, |b| read_u32(b) as u64),
        Some(n) => n as u64,
        None => 0,
    }
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
        let (mut raw, mut out) = (Vec::new(), Vec::new());
        let mut next = 0;
        for r in plan {
            assert_eq!(r.start, next, "consecutive");
            next = r.end;
            encode(&buf, &ends, r.clone(), &mut raw, &mut out);
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
        // Two events of distinct bytes do not compress: a plain chunk.
        let buf: Vec<u8> = (0..12).collect();
        let ends = vec![5, 12];
        let (mut raw, mut good) = (Vec::new(), Vec::new());
        encode(&buf, &ends, 0..2, &mut raw, &mut good);
        assert_eq!(claimed_count(&good), 2);
        assert_ne!(&good[..4], &[0, 0, 0, 0], "plain");
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

    /// `n` click-like events: the same user agent and language header, distinct ids.
    fn clicks(n: usize) -> (Vec<u8>, Vec<usize>) {
        let (mut buf, mut ends) = (Vec::new(), Vec::new());
        for i in 0..n {
            buf.extend_from_slice(
                format!("{i:08x}-id Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 en-US,en;q=0.9")
                    .as_bytes(),
            );
            ends.push(buf.len());
        }
        (buf, ends)
    }

    #[test]
    fn repetitive_chunks_are_stored_compressed_and_read_back_whole() {
        let (buf, ends) = clicks(100);
        let (mut raw, mut out) = (Vec::new(), Vec::new());
        let mut total = 0;
        for r in plan(&ends) {
            encode(&buf, &ends, r.clone(), &mut raw, &mut out);
            assert_eq!(&out[..4], &[0, 0, 0, 0], "compressed");
            assert_eq!(claimed_count(&out), r.len() as u64);
            let plain_len = COUNT_BYTES + END_BYTES * r.len() + (ends[r.end - 1] - if r.start == 0 { 0 } else { ends[r.start - 1] });
            assert!(out.len() * 3 < plain_len, "{} bytes compressed of {plain_len}", out.len());
            let c = Chunk::parse(&out).expect("parses");
            assert_eq!(c.len(), r.len());
            for (j, i) in r.enumerate() {
                let start = if i == 0 { 0 } else { ends[i - 1] };
                assert_eq!(c.event(j), &buf[start..ends[i]], "event {i}");
                total += 1;
            }
        }
        assert_eq!(total, 100);
    }

    #[test]
    fn damaged_compressed_chunks_are_refused() {
        let (buf, ends) = clicks(20);
        let (mut raw, mut good) = (Vec::new(), Vec::new());
        encode(&buf, &ends, 0..20, &mut raw, &mut good);
        assert_eq!(&good[..4], &[0, 0, 0, 0], "compressed");
        assert!(Chunk::parse(&good).is_some());
        assert!(Chunk::parse(&good[..11]).is_none(), "header cut");
        assert!(Chunk::parse(&good[..good.len() - 1]).is_none(), "block cut");
        let with = |at: usize, v: u32| {
            let mut bad = good.clone();
            bad[at..at + 4].copy_from_slice(&v.to_le_bytes());
            bad
        };
        assert!(Chunk::parse(&with(4, 0)).is_none(), "count 0");
        assert!(Chunk::parse(&with(4, 21)).is_none(), "count not matching the body");
        assert!(Chunk::parse(&with(8, read_u32(&good[8..]) as u32 + 1)).is_none(), "raw size too big");
        assert!(Chunk::parse(&with(8, read_u32(&good[8..]) as u32 - 1)).is_none(), "raw size too small");
        assert!(Chunk::parse(&with(8, u32::MAX)).is_none(), "raw size beyond the cap: no huge allocation");
        let mut garbage = good.clone();
        for b in &mut garbage[COMPRESSED_HEADER..] {
            *b ^= 0x5a;
        }
        assert!(Chunk::parse(&garbage).is_none(), "block garbled");
    }
}
