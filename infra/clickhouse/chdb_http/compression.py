"""ClickHouse's native compression framing and HTTP content encodings.

Native framing (`decompress=1` request bodies, `compress=1` responses), one block:

    | checksum: 16 B | method: 1 B | compressed_size: u32 LE | uncompressed_size: u32 LE | payload |

`compressed_size` counts the 9-byte header plus the payload. The checksum is CityHash128
v1.0.2 of header + payload, written as two little-endian u64 halves, low (`first`) half
first (ClickHouse `CompressedWriteBuffer`; the `clickhouse` crate writes
`cityhash_102_128(..).rotate_right(64)` as a little-endian u128, the same bytes).
Methods: 0x82 LZ4 block, 0x02 NONE. Source: https://clickhouse.com/docs/native-protocol/compression

HTTP content encodings (`Content-Encoding` of request bodies, `Accept-Encoding` of
responses): `lz4` is the LZ4 *frame* format (magic 0x184D2204), `gzip` and `deflate` (zlib).
"""

from __future__ import annotations

import struct
import zlib

import lz4.block
import lz4.frame
from clickhouse_cityhash.cityhash import CityHash128

from .errors import (
    CANNOT_DECOMPRESS,
    CANNOT_READ_ALL_DATA,
    CHECKSUM_DOESNT_MATCH,
    TOO_LARGE_SIZE_COMPRESSED,
    UNKNOWN_COMPRESSION_METHOD,
    UNSUPPORTED_MEDIA_TYPE,
    ClickHouseError,
)

METHOD_NONE = 0x02
METHOD_LZ4 = 0x82
METHOD_ZSTD = 0x90
CHECKSUM_SIZE = 16
HEADER_SIZE = 9
# ClickHouse's DBMS_MAX_COMPRESSED_SIZE: a block larger than 1 GiB is rejected.
MAX_BLOCK_SIZE = 0x40000000
# ClickHouse's default max_compress_block_size: responses are cut into blocks of this size.
RESPONSE_BLOCK_SIZE = 1 << 20

_HEADER = struct.Struct("<BII")
_MASK64 = (1 << 64) - 1


def checksum(data: bytes | memoryview) -> bytes:
    """16-byte block checksum: CityHash128 v1.0.2 of `data`, low half first, each LE.

    `clickhouse_cityhash.CityHash128` returns `first << 64 | second`, where `first` is the
    half ClickHouse writes first.
    """
    value = CityHash128(data)
    return struct.pack("<QQ", (value >> 64) & _MASK64, value & _MASK64)


def decode_blocks(body: bytes) -> bytes:
    """Decode a whole body of native compressed blocks into the uncompressed bytes.

    Raises ClickHouseError with ClickHouse's codes: CHECKSUM_DOESNT_MATCH (40),
    UNKNOWN_COMPRESSION_METHOD (89), CANNOT_DECOMPRESS (271), TOO_LARGE_SIZE_COMPRESSED (39)
    and CANNOT_READ_ALL_DATA (33) for a truncated block.
    """
    view = memoryview(body)
    out: list[bytes] = []
    offset = 0
    total = len(body)
    while offset < total:
        if total - offset < CHECKSUM_SIZE + HEADER_SIZE:
            raise ClickHouseError.own(
                CANNOT_READ_ALL_DATA,
                f"Cannot read all data. Bytes read: {total - offset}. "
                f"Bytes expected: {CHECKSUM_SIZE + HEADER_SIZE} (compressed block header)",
            )
        expected_sum = bytes(view[offset:offset + CHECKSUM_SIZE])
        start = offset + CHECKSUM_SIZE
        method, compressed_size, uncompressed_size = _HEADER.unpack_from(view, start)
        if compressed_size > MAX_BLOCK_SIZE or uncompressed_size > MAX_BLOCK_SIZE:
            raise ClickHouseError.own(
                TOO_LARGE_SIZE_COMPRESSED,
                f"Too large size_compressed_without_checksum: {compressed_size}, "
                f"size_decompressed: {uncompressed_size}. Most likely corrupted data",
            )
        if compressed_size < HEADER_SIZE:
            raise ClickHouseError.own(
                CANNOT_DECOMPRESS,
                f"Can't decompress data: the compressed data size ({compressed_size}) "
                f"is less than the header size ({HEADER_SIZE})",
            )
        end = start + compressed_size
        if end > total:
            raise ClickHouseError.own(
                CANNOT_READ_ALL_DATA,
                f"Cannot read all data. Bytes read: {total - start}. "
                f"Bytes expected: {compressed_size} (compressed block)",
            )
        block = view[start:end]
        actual_sum = checksum(block)
        if actual_sum != expected_sum:
            raise ClickHouseError.own(
                CHECKSUM_DOESNT_MATCH,
                f"Checksum doesn't match: corrupted data. Reference: {expected_sum.hex()}. "
                f"Actual: {actual_sum.hex()}. Size of compressed block: {compressed_size}",
            )
        payload = block[HEADER_SIZE:]
        if method == METHOD_LZ4:
            try:
                data = lz4.block.decompress(payload, uncompressed_size=uncompressed_size)
            except lz4.block.LZ4BlockError as exc:
                raise ClickHouseError.own(CANNOT_DECOMPRESS, f"Cannot decompress LZ4 block: {exc}") from exc
            if len(data) != uncompressed_size:
                raise ClickHouseError.own(
                    CANNOT_DECOMPRESS,
                    f"Cannot decompress LZ4 block: got {len(data)} bytes, header says {uncompressed_size}",
                )
        elif method == METHOD_NONE:
            if len(payload) != uncompressed_size:
                raise ClickHouseError.own(
                    CANNOT_DECOMPRESS,
                    f"Uncompressed block of {len(payload)} bytes, header says {uncompressed_size}",
                )
            data = bytes(payload)
        else:
            raise ClickHouseError.own(
                UNKNOWN_COMPRESSION_METHOD,
                f"Unknown compression method: 0x{method:02x} (supported here: LZ4 0x82, NONE 0x02)",
            )
        out.append(data)
        offset = end
    return b"".join(out)


def encode_blocks(data: bytes, block_size: int = RESPONSE_BLOCK_SIZE) -> bytes:
    """Encode `data` as LZ4 native compressed blocks of at most `block_size` input bytes."""
    out: list[bytes] = []
    for start in range(0, len(data), block_size):
        chunk = data[start:start + block_size]
        payload = lz4.block.compress(chunk, store_size=False)
        header = _HEADER.pack(METHOD_LZ4, HEADER_SIZE + len(payload), len(chunk))
        out.append(checksum(header + payload))
        out.append(header)
        out.append(payload)
    return b"".join(out)


def decode_content(body: bytes, encoding: str) -> bytes:
    """Undo a request `Content-Encoding` (lz4 frame, gzip, deflate; empty or identity: as is)."""
    name = encoding.strip().lower()
    try:
        if name in ("", "identity"):
            return body
        if name == "lz4":
            return lz4.frame.decompress(body)
        if name in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if name == "deflate":
            return zlib.decompress(body)
    except (RuntimeError, zlib.error) as exc:
        raise ClickHouseError.own(CANNOT_DECOMPRESS, f"Cannot decode {name} request body: {exc}") from exc
    raise ClickHouseError.own(
        UNSUPPORTED_MEDIA_TYPE, f"Unsupported Content-Encoding {encoding!r} (supported: lz4, gzip, deflate)"
    )


def choose_response_encoding(accept_encoding: str | None) -> str | None:
    """First encoding in `Accept-Encoding` that this server can produce, or None."""
    if not accept_encoding:
        return None
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        name = name.strip().lower()
        if params.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000"):
            continue
        if name in ("lz4", "gzip", "deflate"):
            return name
    return None


def encode_content(data: bytes, encoding: str) -> bytes:
    """Apply a response content encoding chosen by `choose_response_encoding`."""
    if encoding == "lz4":
        return lz4.frame.compress(data)
    if encoding == "gzip":
        compressor = zlib.compressobj(3, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return compressor.compress(data) + compressor.flush()
    if encoding == "deflate":
        return zlib.compress(data, 3)
    raise ValueError(f"unsupported response encoding {encoding!r}")
