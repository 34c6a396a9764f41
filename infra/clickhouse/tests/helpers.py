"""Test helpers written independently of the server code: an HTTP client, a RowBinary
encoder, ClickHouse's native compressed-block framing, and a server process runner."""

from __future__ import annotations

import http.client
import signal
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import lz4.block
from clickhouse_cityhash.cityhash import CityHash128

SERVER_DIR = Path(__file__).resolve().parent.parent
PASSWORD = "test-secret"
AUTH = {"X-ClickHouse-User": "default", "X-ClickHouse-Key": PASSWORD}


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class ServerProcess:
    """A chdb_http server on a free port, with its own data directory."""

    def __init__(self, data_dir: Path, extra_args: tuple[str, ...] = ()):
        self.data_dir = data_dir
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self, timeout: float = 60.0) -> "ServerProcess":
        port_file = self.data_dir.parent / f"{self.data_dir.name}.port"
        if port_file.exists():
            port_file.unlink()
        log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chdb_http", "--data-dir", str(self.data_dir), "--port", "0",
             "--port-file", str(port_file), "--password", PASSWORD, "--log-level", "DEBUG", *self.extra_args],
            cwd=SERVER_DIR, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {log.name}")
            if port_file.exists():
                self.port = int(port_file.read_text().strip())
                if self.get("/ping").status == 200:
                    return self
            time.sleep(0.05)
        raise RuntimeError("server did not start in time")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def request(self, method: str, path: str = "/", params: dict | None = None, body: bytes | None = None,
                headers: dict | None = None, chunk_size: int | None = None,
                conn: http.client.HTTPConnection | None = None) -> Response:
        """One request; `chunk_size` sends the body with chunked transfer encoding."""
        own = conn is None
        conn = conn or self.connection()
        url = path + ("?" + urlencode(params) if params else "")
        hdrs = dict(headers or {})
        try:
            if chunk_size is not None and body is not None:
                chunks = [body[i:i + chunk_size] for i in range(0, len(body), chunk_size)]
                conn.request(method, url, body=iter(chunks), headers=hdrs, encode_chunked=True)
            else:
                conn.request(method, url, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            if own:
                conn.close()

    def get(self, path: str = "/", params: dict | None = None, headers: dict | None = None) -> Response:
        return self.request("GET", path, params=params, headers=headers)

    def post(self, sql: str | bytes | None = None, params: dict | None = None, headers: dict | None = None,
             **kwargs) -> Response:
        """POST with the test credentials."""
        body = sql.encode() if isinstance(sql, str) else sql
        return self.request("POST", "/", params=params, body=body if body is not None else b"",
                            headers={**AUTH, **(headers or {})}, **kwargs)

    def ok(self, sql: str, params: dict | None = None, **kwargs) -> bytes:
        """POST and assert 200; returns the body."""
        resp = self.post(sql, params=params, **kwargs)
        assert resp.status == 200, (resp.status, resp.body)
        return resp.body

    def fresh_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        self.ok(f"CREATE DATABASE {name}")
        return name


# --- RowBinary --------------------------------------------------------------------------

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def rb_string(value: bytes | str) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return varint(len(raw)) + raw


def rb_header(columns: list[tuple[str, str]]) -> bytes:
    """RowBinaryWithNamesAndTypes header."""
    return varint(len(columns)) + b"".join(rb_string(n) for n, _ in columns) + b"".join(
        rb_string(t) for _, t in columns)


def u8(v: int) -> bytes:
    return struct.pack("<B", v)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


def i64(v: int) -> bytes:
    return struct.pack("<q", v)


# --- native compressed blocks -------------------------------------------------------------

def native_block(data: bytes, method: int = 0x82) -> bytes:
    """One compressed block: CityHash128 (first half written first) + header + payload."""
    payload = lz4.block.compress(data, store_size=False) if method == 0x82 else data
    header = struct.pack("<BII", method, 9 + len(payload), len(data))
    h = CityHash128(header + payload)
    return struct.pack("<QQ", h >> 64, h & ((1 << 64) - 1)) + header + payload


def decode_native_blocks(body: bytes) -> bytes:
    out = []
    pos = 0
    while pos < len(body):
        method, csize, usize = struct.unpack_from("<BII", body, pos + 16)
        block = body[pos + 16:pos + 16 + csize]
        h = CityHash128(block)
        assert body[pos:pos + 16] == struct.pack("<QQ", h >> 64, h & ((1 << 64) - 1)), "checksum"
        assert method == 0x82
        out.append(lz4.block.decompress(block[9:], uncompressed_size=usize))
        pos += 16 + csize
    return b"".join(out)


def multipart(fields: list[tuple[str, str]], boundary: str = "clickhouse-rs-boundary-0123456789abcdef") -> tuple[bytes, str]:
    """A body framed exactly like the `clickhouse` crate's multipart_query_body()."""
    body = b""
    for name, value in fields:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").encode()
        body += value.encode() + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"

