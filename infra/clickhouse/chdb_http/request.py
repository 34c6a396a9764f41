"""Turning an HTTP request into a QueryRequest, as ClickHouse's HTTPHandler does.

URL parameters (and, for `multipart/form-data` bodies, form fields) are split into:
- parameters the handler itself interprets (`_HANDLER_PARAMS`),
- query parameters `param_<name>` for `{name:Type}` substitution,
- everything else: settings, applied with `SET` (an unknown one fails with UNKNOWN_SETTING,
  as on a server). `_IGNORED_PARAMS` are accepted and have no effect here.
"""

from __future__ import annotations

import base64
import hmac
import re
from dataclasses import dataclass

from . import sql
from .engine import QueryRequest, SessionSpec
from .errors import (
    AUTHENTICATION_FAILED,
    BAD_ARGUMENTS,
    NOT_IMPLEMENTED,
    SYNTAX_ERROR,
    UNKNOWN_SETTING,
    ClickHouseError,
)

# Interpreted by the HTTP layer (not settings).
_HANDLER_PARAMS = {
    "query", "database", "default_format", "compress", "decompress", "user", "password",
    "query_id", "session_id", "session_timeout", "session_check", "close_session",
}
# HTTP-interface parameters of ClickHouse that change nothing here (see README):
# results are always buffered (as with wait_end_of_query=1), there are no roles, quotas
# or stack traces, and client_protocol_version only concerns the Native format.
_IGNORED_PARAMS = {
    "wait_end_of_query", "buffer_size", "role", "quota_key", "stacktrace",
    "client_protocol_version", "http_response_buffer_size",
}


def _flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("1", "true", "yes", "on")


@dataclass
class Credentials:
    """The user and password the server accepts (ClickHouse's `default` user by default)."""

    user: str = "default"
    password: str = ""

    def check(self, headers, params: dict[str, str]) -> None:
        """Raise AUTHENTICATION_FAILED (516) unless the request presents these credentials.

        Accepted like ClickHouse: `X-ClickHouse-User`/`X-ClickHouse-Key` headers, HTTP basic
        auth, or `user`/`password` URL parameters; an absent user means `default`.
        """
        user = headers.get("X-ClickHouse-User")
        password = headers.get("X-ClickHouse-Key")
        auth = headers.get("Authorization")
        if auth and auth.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError) as exc:
                raise ClickHouseError.own(AUTHENTICATION_FAILED, "Malformed basic authorization header") from exc
            basic_user, _, basic_password = decoded.partition(":")
            user = basic_user if user is None else user
            password = basic_password if password is None else password
        if user is None:
            user = params.get("user")
        if password is None:
            password = params.get("password")
        user = user or "default"
        password = password or ""
        ok_user = hmac.compare_digest(user.encode(), self.user.encode())
        ok_password = hmac.compare_digest(password.encode(), self.password.encode())
        if not (ok_user and ok_password):
            raise ClickHouseError.own(
                AUTHENTICATION_FAILED,
                f"{user}: Authentication failed: password is incorrect, or there is no user with such name",
            )


_BOUNDARY_RE = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.I)
_NAME_RE = re.compile(r'\bname="([^"]*)"', re.I)
_FILENAME_RE = re.compile(r'\bfilename="([^"]*)"', re.I)


def parse_multipart(content_type: str, body: bytes) -> dict[str, str]:
    """Fields of a `multipart/form-data` body (the `clickhouse` crate's `.param()` requests).

    Returns field name -> UTF-8 value. A file part (external table data) is refused with
    NOT_IMPLEMENTED; a malformed body with BAD_ARGUMENTS.
    """
    match = _BOUNDARY_RE.search(content_type)
    if not match:
        raise ClickHouseError.own(BAD_ARGUMENTS, "multipart/form-data without a boundary")
    delimiter = b"--" + (match.group(1) or match.group(2)).encode()
    pieces = body.split(delimiter)
    if len(pieces) < 2 or not pieces[-1].startswith(b"--"):
        raise ClickHouseError.own(BAD_ARGUMENTS, "multipart/form-data body without its closing boundary")
    fields: dict[str, str] = {}
    for piece in pieces[1:-1]:
        if not piece.startswith(b"\r\n") or not piece.endswith(b"\r\n"):
            raise ClickHouseError.own(BAD_ARGUMENTS, "malformed multipart/form-data part")
        headers_blob, sep, value = piece[2:-2].partition(b"\r\n\r\n")
        if not sep:
            raise ClickHouseError.own(BAD_ARGUMENTS, "multipart/form-data part without a header end")
        headers = headers_blob.decode("utf-8", errors="replace")
        name = _NAME_RE.search(headers)
        if name is None:
            raise ClickHouseError.own(BAD_ARGUMENTS, "multipart/form-data part without a name")
        if _FILENAME_RE.search(headers):
            raise ClickHouseError.own(
                NOT_IMPLEMENTED, f"External data (file part {name.group(1)!r}) is not supported by this server"
            )
        try:
            fields[name.group(1)] = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ClickHouseError.own(BAD_ARGUMENTS, f"form field {name.group(1)!r} is not valid UTF-8") from exc
    return fields


@dataclass
class ParsedParams:
    """Everything the handler needs from the URL/form parameters besides the query."""

    query: str | None
    request: QueryRequest
    query_id: str | None
    compress: bool
    decompress: bool
    http_compression: bool | None  # enable_http_compression if the request sets it


def split_params(params: dict[str, str], headers, readonly: bool) -> ParsedParams:
    """Classify URL/form parameters; raises ClickHouseError on bad names or values."""
    settings: list[tuple[str, str]] = []
    query_params: dict[str, str] = {}
    http_compression = None
    for name, value in params.items():
        if name in _HANDLER_PARAMS or name in _IGNORED_PARAMS:
            continue
        if name.startswith("param_"):
            key = name[len("param_"):]
            if not sql.is_identifier(key):
                raise ClickHouseError.own(BAD_ARGUMENTS, f"Invalid query parameter name: {name}")
            query_params[key] = value
            continue
        if not sql.is_identifier(name):
            raise ClickHouseError.own(UNKNOWN_SETTING, f"Unknown setting '{name}'")
        if name == "enable_http_compression":
            http_compression = _flag(value)
        settings.append((name, value))

    session = None
    session_id = params.get("session_id")
    if session_id:
        timeout_text = params.get("session_timeout", "60")
        try:
            timeout = int(timeout_text)
        except ValueError as exc:
            raise ClickHouseError.own(BAD_ARGUMENTS, f"Invalid session timeout: '{timeout_text}'") from exc
        session = SessionSpec(
            session_id=session_id,
            timeout=timeout,
            check=_flag(params.get("session_check")),
            close=_flag(params.get("close_session")),
        )

    default_format = params.get("default_format") or headers.get("X-ClickHouse-Format") or "TabSeparated"
    database = params.get("database") or headers.get("X-ClickHouse-Database") or None
    request = QueryRequest(
        text=b"",
        default_format=default_format,
        database=database,
        params=query_params,
        settings=settings,
        readonly=readonly,
        session=session,
    )
    return ParsedParams(
        query=params.get("query"),
        request=request,
        query_id=params.get("query_id") or None,
        compress=_flag(params.get("compress")),
        decompress=_flag(params.get("decompress")),
        http_compression=http_compression,
    )


def query_text(query: str | None, body: bytes) -> bytes:
    """The whole query as ClickHouse reads it: the `query` parameter, a newline, the body."""
    if query:
        return query.encode("utf-8") + b"\n" + body if body else query.encode("utf-8")
    if not body:
        raise ClickHouseError.own(SYNTAX_ERROR, "Empty query")
    return body
