"""Unit tests of engine-error parsing and the code -> HTTP status map (no server)."""

from __future__ import annotations

from chdb_http.errors import ClickHouseError, from_engine, http_status


def test_from_engine_keeps_the_innermost_exception():
    nested = RuntimeError(
        "Code: 73. DB::Exception: Code: 73. DB::Exception: Unknown format Nope. Maybe you meant: ['One']. "
        "(UNKNOWN_FORMAT) (version 26.9.2.1). (UNKNOWN_FORMAT) (version 26.9.2.1). (UNKNOWN_FORMAT)")
    err = from_engine(nested)
    assert (err.code, err.message) == (73, "Unknown format Nope. Maybe you meant: ['One']. (UNKNOWN_FORMAT)")


def test_from_engine_strips_prefixes_and_keeps_multiline_text():
    err = from_engine(RuntimeError(
        "Streaming insert finish failed: Code: 33. DB::Exception: Cannot read all data: (at row 3)\n"
        ": While executing BinaryRowInputFormat. (CANNOT_READ_ALL_DATA) (version 26.9.2.1)"))
    assert err.code == 33
    assert err.message == "Cannot read all data: (at row 3)\n: While executing BinaryRowInputFormat. (CANNOT_READ_ALL_DATA)"
    assert err.body("1.2.3") == (b"Code: 33. DB::Exception: Cannot read all data: (at row 3)\n: While executing "
                                 b"BinaryRowInputFormat. (CANNOT_READ_ALL_DATA) (version 1.2.3 (chdb))\n")


def test_from_engine_without_a_code():
    err = from_engine(ValueError("boom"))
    assert (err.code, err.message) == (1001, "ValueError: boom. (STD_EXCEPTION)")


def test_http_status_matches_clickhouse():
    expected = {60: 404, 62: 400, 81: 404, 115: 404, 516: 403, 194: 401, 229: 413, 48: 501, 381: 411,
                159: 408, 779: 415, 164: 500, 40: 500, 252: 500}
    assert {code: http_status(code) for code in expected} == expected
    assert ClickHouseError.own(36, "bad").message == "bad. (BAD_ARGUMENTS)"
