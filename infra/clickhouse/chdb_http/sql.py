"""Just enough SQL lexing to route a request the way ClickHouse's HTTP handler does.

We never parse SQL ourselves beyond three questions, each answered on top-level tokens
(outside string literals, quoted identifiers, comments, heredocs and parentheses):
- is this `INSERT ... FORMAT <name>` followed by data, and where does the data start;
- does the text hold more than one statement (ClickHouse's HTTP interface refuses that);
- which output format does a trailing `FORMAT <name>` clause select.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SYNTAX_ERROR, ClickHouseError

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|\#[ !][^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<string>'(?:[^'\\]|\\.|'')*(?:'|\Z))
  | (?P<qident>"(?:[^"\\]|\\.|"")*(?:"|\Z)|`(?:[^`\\]|\\.|``)*(?:`|\Z))
  | (?P<heredoc>\$(?P<tag>[A-Za-z0-9_]*)\$.*?(?:\$(?P=tag)\$|\Z))
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<number>[0-9][0-9A-Za-z_.]*)
  | (?P<other>.)
    """,
    re.S | re.X,
)


@dataclass(frozen=True)
class Token:
    """A top-level token: `kind` is a group name of _TOKEN_RE, `depth` the paren depth."""

    kind: str
    text: str
    start: int
    end: int
    depth: int


def tokens(sql: str):
    """Yield the significant tokens of `sql` (no whitespace, no comments) with paren depth."""
    depth = 0
    for match in _TOKEN_RE.finditer(sql):
        kind = match.lastgroup
        if kind == "tag":  # the inner group of heredoc is never the last group matched
            kind = "heredoc"
        if kind in ("ws", "comment"):
            continue
        text = match.group()
        if kind == "other":
            if text in "([{":
                depth += 1
            elif text in ")]}":
                depth = max(0, depth - 1)
        yield Token(kind, text, match.start(), match.end(), depth)


def _word(token: Token, upper: str) -> bool:
    return token.kind == "word" and token.text.upper() == upper


def _format_name(token: Token | None) -> str | None:
    if token is None:
        return None
    if token.kind == "word":
        return token.text
    if token.kind == "qident":
        return token.text[1:-1]
    return None


@dataclass(frozen=True)
class InsertWithData:
    """`INSERT ... FORMAT <fmt>` followed by data starting at byte `data_offset`.

    `head` is the statement up to its SETTINGS and FORMAT clauses, `settings` the
    `SETTINGS ...` clause if there is one (empty otherwise).
    """

    head: str
    settings: str
    format: str
    data_offset: int


_INSERT_PREFIX_RE = re.compile(rb"\A(?:\s+|--[^\n]*\n|/\*.*?\*/)*INSERT\b", re.S | re.I)
# ClickHouse's HTTP handler may receive megabytes after the FORMAT clause; we only lex this
# much of the beginning to find it (longer INSERT heads are refused with a clear error).
_MAX_INSERT_HEAD = 256 * 1024


def split_insert(text: bytes) -> InsertWithData | None:
    """Find the data of an `INSERT ... FORMAT <name> <data>` statement.

    Returns None for anything else (including `INSERT ... VALUES` and `INSERT ... SELECT`,
    which are plain SQL). The data starts after the first newline in the whitespace run
    that follows the format name, or after that whole run when it has no newline
    (ClickHouse's ParserInsertQuery rule, so `query=INSERT ... FORMAT X` + body sends
    exactly the body as data).
    """
    if not _INSERT_PREFIX_RE.match(text):
        return None
    head_bytes = text[:_MAX_INSERT_HEAD]
    head = head_bytes.decode("utf-8", errors="surrogateescape")
    previous_format: Token | None = None
    settings_token: Token | None = None
    for token in tokens(head):
        if previous_format is not None:
            name = _format_name(token)
            if name is None:
                raise ClickHouseError.own(SYNTAX_ERROR, "Syntax error: expected a format name after FORMAT")
            # Map the character offset back to a byte offset (surrogateescape round-trips).
            end = len(head[: token.end].encode("utf-8", errors="surrogateescape"))
            data = _skip_to_data(text, end)
            statement = head[: previous_format.start].rstrip()
            if statement.endswith(";"):
                raise ClickHouseError.own(SYNTAX_ERROR, "You have excessive ';' symbol before data for INSERT")
            if not is_identifier(name):
                raise ClickHouseError.own(SYNTAX_ERROR, f"Invalid format name {name!r}")
            settings = ""
            if settings_token is not None:
                settings = statement[settings_token.start:]
                statement = statement[: settings_token.start].rstrip()
            return InsertWithData(statement, settings, name, data)
        if token.depth == 0 and token.kind == "word":
            upper = token.text.upper()
            if upper in ("VALUES", "SELECT", "WITH", "FROM"):
                return None
            if upper == "FORMAT":
                previous_format = token
            elif upper == "SETTINGS" and settings_token is None:
                settings_token = token
        if token.kind == "other" and token.text == ";" and token.depth == 0:
            return None
    if len(text) > _MAX_INSERT_HEAD:
        raise ClickHouseError.own(
            SYNTAX_ERROR, f"INSERT statement without a FORMAT clause in its first {_MAX_INSERT_HEAD} bytes"
        )
    return None


def _skip_to_data(text: bytes, pos: int) -> int:
    end = pos
    while end < len(text) and text[end] in b" \t\n\r\f\v":
        end += 1
    newline = text.find(b"\n", pos, end)
    return newline + 1 if newline != -1 else end


def check_single_statement(sql: str) -> None:
    """Raise SYNTAX_ERROR (62) if `sql` holds more than one statement (a trailing `;` is fine)."""
    seen_semicolon = False
    for token in tokens(sql):
        if seen_semicolon:
            raise ClickHouseError.own(
                SYNTAX_ERROR,
                "Syntax error (Multi-statements are not allowed): failed at position "
                f"{token.start + 1} ({token.text[:20]!r})",
            )
        if token.kind == "other" and token.text == ";" and token.depth == 0:
            seen_semicolon = True


def output_format(sql: str) -> str | None:
    """The format named by a top-level `FORMAT <name>` clause of a query, if any."""
    found: str | None = None
    toks = list(tokens(sql))
    for index, token in enumerate(toks):
        if token.depth == 0 and _word(token, "FORMAT") and index + 1 < len(toks):
            following = toks[index + 2] if index + 2 < len(toks) else None
            if following is None or _word(following, "SETTINGS") or following.text == ";":
                found = _format_name(toks[index + 1]) or found
    return found


def quote_string(value: str) -> str:
    """A ClickHouse string literal for `value` (backslash escapes)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_identifier(name: str) -> str:
    """A back-quoted ClickHouse identifier for `name`."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


_IDENTIFIER_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")


def is_identifier(name: str) -> bool:
    """True for a plain identifier (setting names, query parameter names)."""
    return bool(_IDENTIFIER_RE.match(name))
