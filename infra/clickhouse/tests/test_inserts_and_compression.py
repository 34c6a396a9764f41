"""INSERT bodies (RowBinary, RowBinaryWithNamesAndTypes, chunked, decompress=1) and
compressed responses (compress=1, Accept-Encoding)."""

from __future__ import annotations

import gzip
import json
import struct
import zlib

import lz4.frame
from helpers import decode_native_blocks, i64, native_block, rb_header, rb_string, u8, u64
from test_http_protocol import assert_error

COLUMNS = [("code", "String"), ("ts", "DateTime64(3)"), ("click_id", "UInt64"),
           ("country", "LowCardinality(String)"), ("is_bot", "UInt8")]
DDL = ("CREATE TABLE ev (code String, ts DateTime64(3), click_id UInt64, country LowCardinality(String), "
       "is_bot UInt8) ENGINE = MergeTree PARTITION BY toDate(ts) ORDER BY (code, ts)")
INSERT = "INSERT INTO ev (code, ts, click_id, country, is_bot) FORMAT "
BASE_TS = 1_700_000_000_000


def row(i: int) -> tuple:
    # code lengths vary so that some rows start with whitespace bytes (length 9, 10, 13, 32)
    return ("c" * (1 + i % 40), BASE_TS + i * 600_000, i, ["US", "DE", "FR"][i % 3], i % 2)


def encode(rows) -> bytes:
    return b"".join(rb_string(c) + i64(ts) + u64(cid) + rb_string(cc) + u8(bot) for c, ts, cid, cc, bot in rows)


def read_back(server, db) -> bytes:
    return server.ok("SELECT code, ts, click_id, country, is_bot FROM ev ORDER BY click_id",
                     params={"database": db, "default_format": "RowBinary"})


def test_rowbinary_insert_content_length_and_chunked(server, db):
    server.ok(DDL, params={"database": db})
    rows = [row(i) for i in range(1000)]
    data = encode(rows)
    resp = server.post(data[: len(encode(rows[:500]))], params={"database": db, "query": INSERT + "RowBinary"})
    assert resp.status == 200
    summary = json.loads(resp.header("X-ClickHouse-Summary"))
    assert summary["written_rows"] == "500"
    rest = data[len(encode(rows[:500])):]
    server.ok(rest, params={"database": db, "query": INSERT + "RowBinary"}, chunk_size=4096)
    assert read_back(server, db) == data
    # one partition per day (rows are 10 minutes apart)
    days = {(BASE_TS + i * 600_000) // 86_400_000 for i in range(1000)}
    assert len(days) == 8
    parts = server.ok(f"SELECT uniqExact(partition) FROM system.parts WHERE database = '{db}' AND table = 'ev'")
    assert parts == f"{len(days)}\n".encode()


def test_rowbinary_with_names_and_types_like_the_crate(server, db):
    server.ok(DDL, params={"database": db})
    rows = [row(i) for i in range(200)]
    body = rb_header(COLUMNS) + encode(rows)
    query = "INSERT INTO `ev`(`code`,`ts`,`click_id`,`country`,`is_bot`) FORMAT RowBinaryWithNamesAndTypes"
    server.ok(body, params={"database": db, "query": query}, chunk_size=256 * 1024)
    assert read_back(server, db) == encode(rows)
    # a header whose types disagree with the table is refused by the engine
    bad = rb_header([(n, "UInt16" if t == "UInt8" else t) for n, t in COLUMNS]) + encode(rows)
    resp = server.post(bad, params={"database": db, "query": query})
    assert resp.status != 200 and resp.header("X-ClickHouse-Exception-Code")


def test_insert_with_data_in_the_body(server, db):
    server.ok(DDL, params={"database": db})
    rows = [row(9)]  # code of length 10: the data starts with a '\n' byte
    data = encode(rows)
    assert data[0:1] == b"\n"
    server.ok((INSERT + "RowBinary\n").encode() + data, params={"database": db})
    assert read_back(server, db) == data
    server.ok("INSERT INTO ev FORMAT JSONEachRow "
              '{"code":"j","ts":"2024-01-01 00:00:00.001","click_id":5000,"country":"US","is_bot":1}',
              params={"database": db})
    assert server.ok("SELECT code, toUnixTimestamp64Milli(ts) FROM ev WHERE click_id = 5000",
                     params={"database": db}) == b"j\t1704067200001\n"
    assert_error(server.post(encode([row(1)])[:-1], params={"database": db, "query": INSERT + "RowBinary"}),
                 500, 33, "CANNOT_READ_ALL_DATA")
    assert_error(server.post(b"", params={"database": db, "query": "INSERT INTO nope FORMAT RowBinary"}),
                 404, 60, "UNKNOWN_TABLE")


def test_errors_raised_by_the_table_are_reported(server, db):
    # chdb's streaming inserter reports success here; the server must not
    server.ok(DDL, params={"database": db})
    rows = [("x", BASE_TS + i * 86_400_000, i, "US", 0) for i in range(150)]  # 150 days
    resp = server.post(encode(rows), params={"database": db, "query": INSERT + "RowBinary"})
    assert_error(resp, 500, 252, "TOO_MANY_PARTS")
    assert server.ok("SELECT count() FROM ev", params={"database": db}) == b"0\n"
    settings = "INSERT INTO ev (code, ts, click_id, country, is_bot) SETTINGS max_partitions_per_insert_block = 200 FORMAT "
    server.ok(encode(rows), params={"database": db, "query": settings + "RowBinary"})
    assert server.ok("SELECT count() FROM ev", params={"database": db}) == b"150\n"


# A block produced by the `clickhouse` crate 0.15.3 itself:
# `clickhouse::_priv::lz4_compress(&(0..5000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>())`.
CRATE_BLOCK = bytes.fromhex(
    "f05cfab8a55583159ad3f6cb443a07a8822201000088130000ffec000102030405060708090a0b0c0d0e0f10"
    "1112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c"
    "3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768"
    "696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f9091929394"
    "95969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0"
    "c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebec"
    "edeeeff0f1f2f3f4f5f6f7f8f9fafb00ffffffffffffffffffffffffffffffffffff8660e1e2e3e4e5e6"
)


def test_decompress_block_made_by_the_crate(server, db):
    server.ok("CREATE TABLE b (v UInt8) ENGINE = MergeTree ORDER BY tuple()", params={"database": db})
    params = {"database": db, "query": "INSERT INTO b FORMAT RowBinary", "decompress": "1"}
    server.ok(CRATE_BLOCK, params=params)
    values = [i % 251 for i in range(5000)]
    assert server.ok("SELECT count(), sum(v) FROM b", params={"database": db}) == f"5000\t{sum(values)}\n".encode()


def test_decompress_many_blocks_and_errors(server, db):
    server.ok(DDL, params={"database": db})
    data = encode(row(i) for i in range(3000))
    blocks = b"".join(native_block(data[i:i + 10_000]) for i in range(0, len(data), 10_000))
    params = {"database": db, "query": INSERT + "RowBinary", "decompress": "1"}
    server.ok(blocks, params=params, chunk_size=7777)
    assert read_back(server, db) == data
    one = native_block(encode([row(1)]))
    corrupt = one[:-1] + bytes([one[-1] ^ 1])
    assert_error(server.post(corrupt, params=params), 500, 40, "CHECKSUM_DOESNT_MATCH")
    assert_error(server.post(one[:-2], params=params), 500, 33, "CANNOT_READ_ALL_DATA")
    zstd_like = native_block(encode([row(1)]), method=0x90)
    assert_error(server.post(zstd_like, params=params), 500, 89, "UNKNOWN_COMPRESSION_METHOD")
    uncompressed_method = native_block(encode([row(5000)]), method=0x02)
    server.ok(uncompressed_method, params=params)
    assert server.ok("SELECT count() FROM ev WHERE click_id = 5000", params={"database": db}) == b"1\n"


def test_compressed_responses(server):
    sql = "SELECT number, toString(number) FROM numbers(200000)"
    plain = server.ok(sql)
    assert len(plain) > 2_000_000
    resp = server.post(sql, headers={"Accept-Encoding": "lz4"})
    assert resp.header("Content-Encoding") == "lz4"
    assert lz4.frame.decompress(resp.body) == plain
    resp = server.post(sql, headers={"Accept-Encoding": "br, gzip"})
    assert resp.header("Content-Encoding") == "gzip"
    assert gzip.decompress(resp.body) == plain
    resp = server.post(sql, headers={"Accept-Encoding": "lz4"}, params={"enable_http_compression": "0"})
    assert resp.header("Content-Encoding") is None and resp.body == plain
    resp = server.post(sql, params={"compress": "1"})
    assert resp.header("Content-Encoding") is None
    assert decode_native_blocks(resp.body) == plain
    # each native block holds at most 1 MiB of input (ClickHouse's max_compress_block_size)
    first_usize = struct.unpack_from("<I", resp.body, 16 + 5)[0]
    assert first_usize == 1 << 20
    # errors are never compressed
    resp = server.post("SELECT * FROM nope", headers={"Accept-Encoding": "lz4"})
    assert resp.header("Content-Encoding") is None and resp.body.startswith(b"Code: 60.")


def test_compressed_request_bodies(server):
    sql = b"SELECT 'compressed body'"
    for encoding, body in (("gzip", gzip.compress(sql)), ("deflate", zlib.compress(sql)), ("lz4", lz4.frame.compress(sql))):
        assert server.post(body, headers={"Content-Encoding": encoding}).body == b"compressed body\n"
    assert_error(server.post(sql, headers={"Content-Encoding": "br"}), 415, 779, "UNSUPPORTED_MEDIA_TYPE")
    assert_error(server.post(b"not gzip", headers={"Content-Encoding": "gzip"}), 500, 271, "CANNOT_DECOMPRESS")
