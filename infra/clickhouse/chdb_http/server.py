"""HTTP front end: ClickHouse's HTTP interface (the subset the `clickhouse` crate uses) over chdb.

Endpoints: `GET /ping` and `GET /` -> `Ok.\\n`; `GET /?query=...` (read-only, as on a
server) and `POST /` run a query. See README.md for the supported parameters.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from . import compression
from .engine import Engine, QueryResult
from .errors import (
    HTTP_LENGTH_REQUIRED,
    QUERY_IS_TOO_LARGE,
    STD_EXCEPTION,
    ClickHouseError,
)
from .request import Credentials, parse_multipart, query_text, split_params

log = logging.getLogger("chdb_http")

_BINARY_FORMAT_PREFIXES = ("RowBinary", "Native", "Parquet", "Arrow", "ORC", "Avro", "Protobuf", "MsgPack", "BSON", "Npy")


def content_type(fmt: str) -> str:
    """Content-Type for a result in format `fmt` (ClickHouse's choices for the common ones)."""
    if fmt.startswith(_BINARY_FORMAT_PREFIXES):
        return "application/octet-stream"
    if fmt.startswith(("TabSeparated", "TSV")):
        return "text/tab-separated-values; charset=UTF-8"
    if fmt.startswith("CSV"):
        return "text/csv; charset=UTF-8; header=absent"
    if fmt.startswith("JSON"):
        return "application/json; charset=UTF-8"
    return "text/plain; charset=UTF-8"


def _printable(text: str, limit: int = 160) -> str:
    """`text` for a log line: at most `limit` characters, control characters as spaces."""
    return "".join(ch if ch.isprintable() else " " for ch in text[:limit])


class _BadRequestFraming(Exception):
    """The HTTP body framing is broken: answer 400 and close the connection."""


class ClickHouseHandler(BaseHTTPRequestHandler):
    """One HTTP/1.1 connection (keep-alive); requests on it are handled in order."""

    protocol_version = "HTTP/1.1"
    server_version = "chdb-http"
    # Idle keep-alive connections (and stalled uploads) are dropped after this many seconds.
    timeout = 300
    server: "ClickHouseHTTPServer"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    # --- request handling -------------------------------------------------------------

    def _handle(self) -> None:
        started = time.perf_counter()
        query_id = str(uuid.uuid4())
        status = 200
        size_in = 0
        self._log_text = ""
        try:
            body = self._read_body()
            size_in = len(body)
            url = urlsplit(self.path)
            if url.path == "/ping" or (url.path == "/" and self.command == "GET" and not url.query):
                self._send(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
                return
            if url.path != "/":
                status = 404
                self._send(404, f"There is no handle {url.path}\n\nUse / or /ping\n".encode(),
                           {"Content-Type": "text/plain; charset=UTF-8"})
                return
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            query_id = params.get("query_id") or query_id
            result, query_id, encoding_opts = self._run_query(params, body, query_id)
        except _BadRequestFraming as exc:
            status = 400
            self.close_connection = True
            self._send(400, f"{exc}\n".encode(), {"Content-Type": "text/plain; charset=UTF-8", "Connection": "close"})
            return
        except ClickHouseError as exc:
            status = exc.status
            self._send_error(exc, query_id)
            return
        except Exception as exc:  # noqa: BLE001 - any bug becomes a ClickHouse-style 500
            log.exception("internal error")
            error = ClickHouseError.own(STD_EXCEPTION, f"Internal error in chdb-http: {type(exc).__name__}: {exc}")
            status = error.status
            self._send_error(error, query_id)
            return
        finally:
            log.info(
                "%s %s status=%d in=%dB %.1fms query_id=%s %s",
                self.command, urlsplit(self.path).path, status, size_in,
                (time.perf_counter() - started) * 1000, query_id, self._log_text,
            )
        self._send_result(result, query_id, *encoding_opts)

    def _run_query(self, params: dict[str, str], body: bytes, query_id: str):
        headers = self.headers
        self.server.credentials.check(headers, params)
        encoding = headers.get("Content-Encoding")
        if encoding:
            body = compression.decode_content(body, encoding)
        ctype = headers.get("Content-Type", "")
        if ctype.lower().startswith("multipart/form-data"):
            params = {**params, **parse_multipart(ctype, body)}
            body = b""
        parsed = split_params(params, headers, readonly=self.command == "GET")
        query_id = parsed.query_id or query_id
        if parsed.decompress and body:
            body = compression.decode_blocks(body)
        request = parsed.request
        request.text = query_text(parsed.query, body)
        self._log_text = _printable(parsed.query or body[:160].decode("utf-8", "replace"))
        result = self.server.engine.execute(request)
        return result, query_id, (parsed.compress, parsed.http_compression)

    def _read_body(self) -> bytes:
        limit = self.server.max_body_bytes
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked(limit)
        length = self.headers.get("Content-Length")
        if length is None:
            if self.command == "POST":
                raise ClickHouseError.own(
                    HTTP_LENGTH_REQUIRED,
                    "The Transfer-Encoding is not chunked and there is no Content-Length header for POST request",
                )
            return b""
        try:
            size = int(length)
        except ValueError as exc:
            raise _BadRequestFraming(f"Invalid Content-Length: {length!r}") from exc
        if size < 0:
            raise _BadRequestFraming(f"Invalid Content-Length: {length!r}")
        if size > limit:
            self.close_connection = True
            raise ClickHouseError.own(QUERY_IS_TOO_LARGE, f"Request body of {size} bytes exceeds the limit of {limit}")
        body = self.rfile.read(size)
        if len(body) != size:
            raise _BadRequestFraming(f"Body ended after {len(body)} of {size} bytes")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise _BadRequestFraming("Malformed chunk size line")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise _BadRequestFraming(f"Malformed chunk size {line[:40]!r}") from exc
            if size == 0:
                while True:  # trailers, up to the empty line
                    trailer = self.rfile.readline(8192)
                    if trailer in (b"\r\n", b"\n", b""):
                        break
                return b"".join(parts)
            total += size
            if total > limit:
                self.close_connection = True
                raise ClickHouseError.own(QUERY_IS_TOO_LARGE, f"Request body exceeds the limit of {limit} bytes")
            chunk = self.rfile.read(size)
            if len(chunk) != size or self.rfile.read(2) != b"\r\n":
                raise _BadRequestFraming("Truncated chunk")
            parts.append(chunk)

    # --- responses --------------------------------------------------------------------

    def _common_headers(self, query_id: str) -> dict[str, str]:
        engine = self.server.engine
        return {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": engine.timezone,
            "X-ClickHouse-Server-Display-Name": "chdb-http",
            "Keep-Alive": "timeout=10",
        }

    def _send_result(self, result: QueryResult, query_id: str, compress: bool, http_compression: bool | None) -> None:
        headers = self._common_headers(query_id)
        headers["Content-Type"] = content_type(result.format)
        headers["X-ClickHouse-Format"] = result.format
        headers["X-ClickHouse-Summary"] = json.dumps(result.summary(), separators=(",", ":"))
        body = result.body
        if compress:
            body = compression.encode_blocks(body)
        else:
            enabled = self.server.engine.http_compression_default if http_compression is None else http_compression
            encoding = compression.choose_response_encoding(self.headers.get("Accept-Encoding")) if enabled else None
            if encoding and body:
                body = compression.encode_content(body, encoding)
                headers["Content-Encoding"] = encoding
        self._send(200, body, headers)

    def _send_error(self, error: ClickHouseError, query_id: str) -> None:
        headers = self._common_headers(query_id)
        headers["Content-Type"] = "text/plain; charset=UTF-8"
        headers["X-ClickHouse-Exception-Code"] = str(error.code)
        log.info("query_id=%s error %d: %s", query_id, error.code, error.message)
        self._send(error.status, error.body(self.server.engine.version), headers)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class ClickHouseHTTPServer(ThreadingHTTPServer):
    """Threaded HTTP server holding the engine and the accepted credentials."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, engine: Engine, credentials: Credentials, max_body_bytes: int):
        super().__init__(address, ClickHouseHandler)
        self.engine = engine
        self.credentials = credentials
        self.max_body_bytes = max_body_bytes


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chdb_http", description=__doc__)
    parser.add_argument("--data-dir", required=True, help="chdb database directory (created if missing)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=18123, help="port to bind; 0 picks a free one (default 18123)")
    parser.add_argument("--port-file", help="write the bound port to this file once listening")
    parser.add_argument("--slots", type=int, default=4, help="queries run at once (default 4)")
    parser.add_argument("--user", default="default", help="accepted user name (default 'default')")
    parser.add_argument("--password", default=os.environ.get("CHDB_HTTP_PASSWORD", ""),
                        help="accepted password (default: $CHDB_HTTP_PASSWORD or empty)")
    parser.add_argument("--spool-dir", help="where INSERT data is staged (default /dev/shm, else $TMPDIR)")
    parser.add_argument("--max-body-bytes", type=int, default=1 << 30, help="largest request body (default 1 GiB)")
    parser.add_argument("--log-file", help="log here instead of stderr")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO (one line per request), WARNING")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; returns the process exit code."""
    args = _parse_args(argv)
    logging.basicConfig(
        filename=args.log_file,
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    os.makedirs(args.data_dir, exist_ok=True)
    engine = Engine(os.path.abspath(args.data_dir), args.slots, args.spool_dir)
    server = ClickHouseHTTPServer((args.host, args.port), engine, Credentials(args.user, args.password),
                                  args.max_body_bytes)
    port = server.server_address[1]
    if args.port_file:
        tmp = f"{args.port_file}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    log.info("listening on http://%s:%d (engine %s, data %s, slots %d)",
             args.host, port, engine.version, args.data_dir, args.slots)

    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serving = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    serving.start()
    while not stop.wait(10):
        closed = engine.expire_sessions()
        if closed:
            log.info("expired %d HTTP sessions", closed)
    server.shutdown()
    server.server_close()
    engine.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
