"""ClickHouse-style errors: exception codes, their names and HTTP statuses.

The code numbers and names are ClickHouse's own (`src/Common/ErrorCodes.cpp`, checked
against the embedded engine with `errorCodeToName`). The code -> HTTP status mapping is a
transcription of ClickHouse's `src/Server/HTTP/exceptionCodeToHTTPStatus.cpp`, so a client
sees the same status from this front end as from a real server.
"""

from __future__ import annotations

import re

# Codes this front end raises itself (the engine raises the others).
UNSUPPORTED_METHOD = 1
CANNOT_READ_ALL_DATA = 33
BAD_ARGUMENTS = 36
TOO_LARGE_SIZE_COMPRESSED = 39
CHECKSUM_DOESNT_MATCH = 40
NOT_IMPLEMENTED = 48
SYNTAX_ERROR = 62
UNKNOWN_COMPRESSION_METHOD = 89
UNKNOWN_SETTING = 115
READONLY = 164
QUERY_IS_TOO_LARGE = 229
CANNOT_DECOMPRESS = 271
SESSION_NOT_FOUND = 372
SESSION_IS_LOCKED = 373
INVALID_SESSION_TIMEOUT = 374
HTTP_LENGTH_REQUIRED = 381
AUTHENTICATION_FAILED = 516
UNSUPPORTED_MEDIA_TYPE = 779
STD_EXCEPTION = 1001

_NAMES = {
    UNSUPPORTED_METHOD: "UNSUPPORTED_METHOD",
    CANNOT_READ_ALL_DATA: "CANNOT_READ_ALL_DATA",
    BAD_ARGUMENTS: "BAD_ARGUMENTS",
    TOO_LARGE_SIZE_COMPRESSED: "TOO_LARGE_SIZE_COMPRESSED",
    CHECKSUM_DOESNT_MATCH: "CHECKSUM_DOESNT_MATCH",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    SYNTAX_ERROR: "SYNTAX_ERROR",
    UNKNOWN_COMPRESSION_METHOD: "UNKNOWN_COMPRESSION_METHOD",
    UNKNOWN_SETTING: "UNKNOWN_SETTING",
    READONLY: "READONLY",
    QUERY_IS_TOO_LARGE: "QUERY_IS_TOO_LARGE",
    CANNOT_DECOMPRESS: "CANNOT_DECOMPRESS",
    SESSION_NOT_FOUND: "SESSION_NOT_FOUND",
    SESSION_IS_LOCKED: "SESSION_IS_LOCKED",
    INVALID_SESSION_TIMEOUT: "INVALID_SESSION_TIMEOUT",
    HTTP_LENGTH_REQUIRED: "HTTP_LENGTH_REQUIRED",
    AUTHENTICATION_FAILED: "AUTHENTICATION_FAILED",
    UNSUPPORTED_MEDIA_TYPE: "UNSUPPORTED_MEDIA_TYPE",
    STD_EXCEPTION: "STD_EXCEPTION",
}

# exceptionCodeToHTTPStatus.cpp, by code number.
_FORBIDDEN = {192, 193, 516, 512, 497}  # UNKNOWN_USER, WRONG_PASSWORD, AUTHENTICATION_FAILED, SET_NON_GRANTED_ROLE, ACCESS_DENIED
_BAD_REQUEST = {
    36, 427, 6, 25, 26, 38, 41, 72, 441, 675, 676, 27, 376, 15, 44, 37, 123, 8, 167, 168, 223, 62,
    117, 53, 321,
}
_NOT_FOUND = {60, 46, 47, 50, 56, 81, 115, 152, 63, 73, 336, 78, 511}
_STATUS_BY_CODE = {
    194: 401,  # REQUIRED_PASSWORD
    229: 413,  # QUERY_IS_TOO_LARGE
    48: 501,  # NOT_IMPLEMENTED
    209: 503,  # SOCKET_TIMEOUT
    76: 503,  # CANNOT_OPEN_FILE
    381: 411,  # HTTP_LENGTH_REQUIRED
    159: 408,  # TIMEOUT_EXCEEDED
    439: 503,  # CANNOT_SCHEDULE_TASK
    779: 415,  # UNSUPPORTED_MEDIA_TYPE
}


def http_status(code: int) -> int:
    """HTTP status ClickHouse answers for exception `code` (500 when unmapped)."""
    if code in _FORBIDDEN:
        return 403
    if code in _BAD_REQUEST:
        return 400
    if code in _NOT_FOUND:
        return 404
    return _STATUS_BY_CODE.get(code, 500)


class ClickHouseError(Exception):
    """An error to report to the client as `Code: N. DB::Exception: ...`.

    `message` is the exception text after `DB::Exception: `, including the trailing
    `(NAME)` when it came from the engine.
    """

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def own(cls, code: int, text: str) -> "ClickHouseError":
        """An error raised by this front end: appends the code name like ClickHouse does."""
        return cls(code, f"{text}. ({_NAMES.get(code, 'UNKNOWN_EXCEPTION')})")

    @property
    def status(self) -> int:
        """HTTP status for this error."""
        return http_status(self.code)

    def body(self, version: str) -> bytes:
        """Response body: one line, as a ClickHouse server writes it."""
        return f"Code: {self.code}. DB::Exception: {self.message} (version {version} (chdb))\n".encode()


_CODE_RE = re.compile(r"Code: (\d+)\. (?:DB::)?\w*Exception: ")


def from_engine(exc: BaseException) -> ClickHouseError:
    """Turn an exception raised by chdb into a ClickHouseError.

    chdb raises `ChdbError`/`RuntimeError` whose text contains ClickHouse's
    `Code: N. DB::Exception: ...`, sometimes behind a prefix such as
    `Streaming insert finish failed: ` and sometimes nested several times
    (`Code: 73. DB::Exception: Code: 73. DB::Exception: ...`). The innermost one is kept,
    up to its `(version ...)` suffix. Anything else becomes STD_EXCEPTION (1001).
    """
    text = str(exc)
    matches = list(_CODE_RE.finditer(text))
    if not matches:
        return ClickHouseError.own(STD_EXCEPTION, f"{type(exc).__name__}: {text.strip()}")
    last = matches[-1]
    message = text[last.end():]
    cut = message.find(" (version ")
    if cut != -1:
        message = message[:cut]
    return ClickHouseError(int(last.group(1)), message.strip())
