"""The embedded ClickHouse engine (chdb): query slots, per-request sessions, HTTP sessions.

One chdb engine per process, bound to one data directory (chdb allows a single path per
process). A request runs in a *slot* (at most `slots` requests run at once; further ones
wait) on a chdb connection of its own: a chdb connection is a ClickHouse session (current
database, `SET` settings), costs ~0.3 ms to open, and must not run two queries at once.
A fresh connection per request means nothing a request sets can leak into the next one,
as with a ClickHouse server's HTTP interface. Requests that name an HTTP session
(`session_id`) reuse that session's connection until it expires, as ClickHouse does.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field

import chdb

from . import sql
from .errors import (
    BAD_ARGUMENTS,
    INVALID_SESSION_TIMEOUT,
    READONLY,
    SESSION_IS_LOCKED,
    SESSION_NOT_FOUND,
    SYNTAX_ERROR,
    ClickHouseError,
    from_engine,
)

log = logging.getLogger("chdb_http.engine")

# Output "formats" that the chdb Python wrapper turns into Python objects: not wire formats.
_PYTHON_ONLY_FORMATS = {"dataframe", "datastore", "arrowtable"}
# ClickHouse's max_session_timeout default (seconds) and default_session_timeout.
MAX_SESSION_TIMEOUT = 3600
DEFAULT_SESSION_TIMEOUT = 60


@dataclass
class SessionSpec:
    """HTTP session parameters: `session_id`, `session_timeout` (s), `session_check`, `close_session`."""

    session_id: str
    timeout: int = DEFAULT_SESSION_TIMEOUT
    check: bool = False
    close: bool = False


@dataclass
class QueryRequest:
    """One query as the HTTP layer hands it over.

    `text` is the whole query: SQL, possibly followed by inline data for
    `INSERT ... FORMAT <name>` (already decompressed). `params` maps query parameter names
    (without `param_`) to their values in ClickHouse's escaped text form; `settings` are
    (name, value) pairs to apply to the session before the query.
    """

    text: bytes
    default_format: str = "TabSeparated"
    database: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    settings: list[tuple[str, str]] = field(default_factory=list)
    readonly: bool = False
    session: SessionSpec | None = None


@dataclass
class QueryResult:
    """Result bytes in `format`, and the counters for `X-ClickHouse-Summary`."""

    body: bytes
    format: str
    read_rows: int = 0
    read_bytes: int = 0
    written_rows: int = 0
    written_bytes: int = 0
    elapsed_ns: int = 0

    def summary(self) -> dict[str, str]:
        """`X-ClickHouse-Summary` fields (ClickHouse sends every value as a string)."""
        return {
            "read_rows": str(self.read_rows),
            "read_bytes": str(self.read_bytes),
            "written_rows": str(self.written_rows),
            "written_bytes": str(self.written_bytes),
            "total_rows_to_read": str(self.read_rows),
            "result_bytes": str(len(self.body)),
            "elapsed_ns": str(self.elapsed_ns),
        }


def default_spool_dir() -> str:
    """Where INSERT data is staged: /dev/shm (memory) when usable, else the temp dir."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return "/dev/shm"
    return tempfile.gettempdir()


class _HttpSession:
    def __init__(self, conn, timeout: int):
        self.conn = conn
        self.lock = threading.Lock()
        self.timeout = timeout
        self.expires_at = time.monotonic() + timeout


class Engine:
    """Runs queries on the chdb engine stored in `data_dir`; at most `slots` at once.

    INSERT data is staged in files under `spool_dir` (default: `default_spool_dir()`).
    """

    def __init__(self, data_dir: str, slots: int, spool_dir: str | None = None):
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self._path = data_dir
        self._spool_dir = spool_dir or default_spool_dir()
        # The engine shuts down when its last connection closes: this one keeps it up.
        self._anchor = chdb.connect(data_dir)
        row = self._anchor.query("SELECT version(), timezone(), getSetting('enable_http_compression')", "TSV")
        version, timezone, compression = row.bytes().decode().rstrip("\n").split("\t")
        self.version = version
        self.timezone = timezone
        self.http_compression_default = compression in ("1", "true")
        self._slots = threading.BoundedSemaphore(slots)
        self._sessions: dict[str, _HttpSession] = {}
        self._sessions_lock = threading.Lock()
        self._closed = False

    # --- public API -------------------------------------------------------------------

    def execute(self, request: QueryRequest) -> QueryResult:
        """Run one request; raises ClickHouseError with the engine's code and message."""
        with self._slots:
            if request.session is not None:
                return self._execute_in_session(request)
            try:
                conn = chdb.connect(self._path)
            except Exception as exc:  # noqa: BLE001 - chdb raises plain RuntimeError
                raise from_engine(exc) from exc
            try:
                self._prepare(conn, request, fresh=True)
                return self._run(conn, request)
            finally:
                conn.close()

    def expire_sessions(self) -> int:
        """Close HTTP sessions idle past their timeout; returns how many were closed."""
        now = time.monotonic()
        closed = 0
        with self._sessions_lock:
            for session_id, session in list(self._sessions.items()):
                if session.expires_at <= now and session.lock.acquire(blocking=False):
                    del self._sessions[session_id]
                    session.conn.close()
                    session.lock.release()
                    closed += 1
        return closed

    def close(self) -> None:
        """Close every session and the engine (flushes nothing: MergeTree writes are synchronous)."""
        if self._closed:
            return
        self._closed = True
        with self._sessions_lock:
            for session in self._sessions.values():
                session.conn.close()
            self._sessions.clear()
        self._anchor.close()

    # --- internals --------------------------------------------------------------------

    def _execute_in_session(self, request: QueryRequest) -> QueryResult:
        spec = request.session
        assert spec is not None
        if spec.timeout < 0 or spec.timeout > MAX_SESSION_TIMEOUT:
            raise ClickHouseError.own(
                INVALID_SESSION_TIMEOUT,
                f"Session timeout '{spec.timeout}' is larger than max_session_timeout: {MAX_SESSION_TIMEOUT}. "
                "Maximum session timeout could be modified in configuration file",
            )
        self.expire_sessions()
        with self._sessions_lock:
            session = self._sessions.get(spec.session_id)
            fresh = session is None
            if fresh:
                if spec.check:
                    raise ClickHouseError.own(SESSION_NOT_FOUND, f"Session {spec.session_id} not found")
                try:
                    session = _HttpSession(chdb.connect(self._path), spec.timeout)
                except Exception as exc:  # noqa: BLE001
                    raise from_engine(exc) from exc
                self._sessions[spec.session_id] = session
            if not session.lock.acquire(blocking=False):
                raise ClickHouseError.own(
                    SESSION_IS_LOCKED, f"Session {spec.session_id} is locked by a concurrent client"
                )
        try:
            # Readonly (GET) is not applied inside HTTP sessions: it could never be lifted
            # again on the session's connection.
            self._prepare(session.conn, request, fresh=fresh, apply_readonly=False)
            return self._run(session.conn, request)
        finally:
            session.timeout = spec.timeout
            session.expires_at = time.monotonic() + spec.timeout
            session.lock.release()
            if spec.close:
                with self._sessions_lock:
                    if self._sessions.get(spec.session_id) is session:
                        del self._sessions[spec.session_id]
                        session.conn.close()

    def _prepare(self, conn, request: QueryRequest, fresh: bool, apply_readonly: bool = True) -> None:
        statements = []
        if fresh:
            # chdb turns this on (bare expressions run as SELECT); a ClickHouse server does not.
            statements.append("SET implicit_select = 0")
        if request.settings:
            assignments = ", ".join(f"{name} = {sql.quote_string(value)}" for name, value in request.settings)
            statements.append(f"SET {assignments}")
        if request.database:
            statements.append(f"USE {sql.quote_identifier(request.database)}")
        if apply_readonly and request.readonly and not any(n == "readonly" for n, _ in request.settings):
            statements.append("SET readonly = 2")
        for statement in statements:
            try:
                conn.query(statement, "TSV")
            except Exception as exc:  # noqa: BLE001
                raise from_engine(exc) from exc

    def _run(self, conn, request: QueryRequest) -> QueryResult:
        started = time.perf_counter_ns()
        insert = sql.split_insert(request.text)
        try:
            if insert is not None:
                result = self._insert(conn, insert, request.text)
            else:
                result = self._query(conn, request)
        except ClickHouseError:
            raise
        except Exception as exc:  # noqa: BLE001
            error = from_engine(exc)
            if error.code == READONLY and request.readonly:
                error.message = error.message.removesuffix("(READONLY)") + (
                    "For queries over HTTP, method GET implies readonly. "
                    "You should use method POST for modifying queries. (READONLY)"
                )
            raise error from exc
        result.elapsed_ns = time.perf_counter_ns() - started
        return result

    def _insert(self, conn, insert: sql.InsertWithData, text: bytes) -> QueryResult:
        # The data goes through a spool file and `FROM INFILE`: chdb's streaming inserter
        # (`send_insert`) reports success when the table rejects the block (e.g. "Too many
        # partitions for single INSERT block"), and inline data in the query text is cut at
        # the first newline (clickhouse-local's multi-query rule), which breaks binary formats.
        fd, path = tempfile.mkstemp(prefix="chdb-http-", suffix=".insert", dir=self._spool_dir)
        try:
            with os.fdopen(fd, "wb") as spool:
                spool.write(memoryview(text)[insert.data_offset:])
            statement = f"{insert.head} FROM INFILE {sql.quote_string(path)} {insert.settings} FORMAT {insert.format}"
            res = conn.query(statement, "TSV")
        finally:
            os.unlink(path)
        return QueryResult(
            body=b"",
            format=insert.format,
            written_rows=res.rows_written(),
            written_bytes=res.bytes_written(),
        )

    def _query(self, conn, request: QueryRequest) -> QueryResult:
        try:
            statement = request.text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ClickHouseError.own(
                SYNTAX_ERROR, f"Query text is not valid UTF-8 at byte {exc.start} (data needs INSERT ... FORMAT)"
            ) from exc
        if not statement.strip():
            raise ClickHouseError.own(SYNTAX_ERROR, "Empty query")
        sql.check_single_statement(statement)
        fmt = request.default_format
        if fmt.lower() in _PYTHON_ONLY_FORMATS:
            raise ClickHouseError(73, f"Unknown format {fmt}. (UNKNOWN_FORMAT)")
        for name in request.params:
            if not sql.is_identifier(name):
                raise ClickHouseError.own(BAD_ARGUMENTS, f"Invalid query parameter name: param_{name}")
        res = conn.query(statement, fmt, params=request.params)
        return QueryResult(
            body=res.bytes(),
            format=sql.output_format(statement) or fmt,
            read_rows=res.rows_read(),
            read_bytes=res.bytes_read(),
            written_rows=res.rows_written(),
            written_bytes=res.bytes_written(),
        )
