"""Measure a ClickHouse HTTP endpoint the way the `clickhouse` crate uses it.

    python bench.py [--url URL] [--batches 10] [--rows 100000]

Inserts: `rows`-row batches of RowBinaryWithNamesAndTypes (what the crate sends with
validation on), chunked in 256 KiB pieces, uncompressed and as native LZ4 blocks
(`decompress=1`, one block per 256 KiB chunk like the crate). Queries: point queries with
a query parameter (multipart, like `.param()`) and a 1M-row fetch with `Accept-Encoding: lz4`.
Credentials and URL come from CLICKHOUSE_URL / CLICKHOUSE_USER / CLICKHOUSE_PASSWORD.
Works against chdb_http or a real ClickHouse server; the load goes to that URL only.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import struct
import time
import uuid
from urllib.parse import urlencode, urlsplit

import lz4.block
from clickhouse_cityhash.cityhash import CityHash128

CHUNK = 256 * 1024
COLUMNS = [("code", "String"), ("ts", "DateTime64(3)"), ("click_id", "UInt64"),
           ("country", "LowCardinality(String)"), ("referrer", "String"), ("is_bot", "UInt8")]


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def rb_string(value: str) -> bytes:
    raw = value.encode()
    return varint(len(raw)) + raw


def build_batch(rows: int) -> bytes:
    header = varint(len(COLUMNS)) + b"".join(rb_string(n) for n, _ in COLUMNS) + b"".join(
        rb_string(t) for _, t in COLUMNS)
    countries = [rb_string(c) for c in ("US", "DE", "FR", "BR", "IN")]
    body = [header]
    for i in range(rows):
        body.append(rb_string(f"c{i % 5000:05d}") + struct.pack("<qQ", 1_700_000_000_000 + i * 10, i)
                    + countries[i % 5] + rb_string(f"https://ref{i % 97}.example/path?q={i % 13}")
                    + bytes([i % 10 == 0]))
    return b"".join(body)


def native_block(data: bytes) -> bytes:
    payload = lz4.block.compress(data, store_size=False)
    header = struct.pack("<BII", 0x82, 9 + len(payload), len(data))
    h = CityHash128(header + payload)
    return struct.pack("<QQ", h >> 64, h & ((1 << 64) - 1)) + header + payload


class Endpoint:
    def __init__(self, url: str, user: str, password: str):
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port or 8123, timeout=300)
        self.auth = {"X-ClickHouse-User": user, "X-ClickHouse-Key": password}

    def post(self, body, params: dict | None = None, headers: dict | None = None, chunked: bool = False) -> bytes:
        path = "/?" + urlencode(params) if params else "/"
        self.conn.request("POST", path, body=body, headers={**self.auth, **(headers or {})},
                          encode_chunked=chunked)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {data[:500]!r}")
        return data


def multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = "clickhouse-rs-boundary-" + uuid.uuid4().hex[:16]
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode()
                    for k, v in fields.items()) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("CLICKHOUSE_URL", "http://127.0.0.1:18123"))
    parser.add_argument("--user", default=os.environ.get("CLICKHOUSE_USER", "default"))
    parser.add_argument("--password", default=os.environ.get("CLICKHOUSE_PASSWORD", ""))
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()

    ch = Endpoint(args.url, args.user, args.password)
    db = "bench_" + uuid.uuid4().hex[:8]
    ch.post(f"CREATE DATABASE {db}".encode())
    try:
        ch.post(b"CREATE TABLE ev (code String, ts DateTime64(3), click_id UInt64, country LowCardinality(String), "
                b"referrer String, is_bot UInt8) ENGINE = MergeTree PARTITION BY toDate(ts) ORDER BY (code, ts)",
                params={"database": db})
        batch = build_batch(args.rows)
        chunks = [batch[i:i + CHUNK] for i in range(0, len(batch), CHUNK)]
        compressed = [native_block(c) for c in chunks]
        query = "INSERT INTO `ev`(`code`,`ts`,`click_id`,`country`,`referrer`,`is_bot`) FORMAT RowBinaryWithNamesAndTypes"
        print(f"batch: {args.rows} rows, {len(batch) / 1e6:.1f} MB RowBinaryWithNamesAndTypes, "
              f"{sum(map(len, compressed)) / 1e6:.1f} MB as LZ4 blocks")
        for name, pieces, extra in (("plain", chunks, {}), ("lz4", compressed, {"decompress": "1"})):
            times = []
            for _ in range(args.batches):
                started = time.perf_counter()
                ch.post(iter(pieces), params={"database": db, "query": query, **extra}, chunked=True)
                times.append(time.perf_counter() - started)
            total = sum(times)
            print(f"insert {name:5}: {args.rows * args.batches / total:,.0f} rows/s over {args.batches} batches; "
                  f"per batch median {statistics.median(times) * 1000:.0f} ms, "
                  f"best {min(times) * 1000:.0f} ms ({args.rows / min(times):,.0f} rows/s)")
        count = ch.post(b"SELECT count() FROM ev", params={"database": db}).strip()
        assert int(count) == 2 * args.batches * args.rows, count

        latencies = []
        for i in range(200):
            body, ctype = multipart({"query": "SELECT count() FROM ev WHERE code = {c:String}",
                                     "param_c": f"c{i:05d}"})
            started = time.perf_counter()
            ch.post(body, params={"database": db, "default_format": "RowBinaryWithNamesAndTypes"},
                    headers={"Content-Type": ctype, "Accept-Encoding": "lz4"})
            latencies.append((time.perf_counter() - started) * 1000)
        latencies.sort()
        print(f"point query (param, multipart): p50 {latencies[99]:.1f} ms, p90 {latencies[179]:.1f} ms, "
              f"p99 {latencies[197]:.1f} ms")
        started = time.perf_counter()
        data = ch.post(b"SELECT * FROM ev LIMIT 1000000",
                       params={"database": db, "default_format": "RowBinaryWithNamesAndTypes"},
                       headers={"Accept-Encoding": "lz4"})
        print(f"fetch 1M rows (lz4 response, {len(data) / 1e6:.1f} MB on the wire): "
              f"{(time.perf_counter() - started) * 1000:.0f} ms")
    finally:
        ch.post(f"DROP DATABASE {db}".encode())


if __name__ == "__main__":
    main()
