"""Process lifecycle: data survives a restart (clean or kill -9); limits; spool cleanup."""

from __future__ import annotations

import signal

from helpers import ServerProcess, u64
from test_http_protocol import assert_error


def test_data_survives_restart_and_kill(tmp_path):
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir).start()
    server.ok("CREATE TABLE keep (k UInt64) ENGINE = MergeTree ORDER BY k")
    server.ok(u64(1) + u64(2), params={"query": "INSERT INTO keep FORMAT RowBinary"})
    assert server.stop(signal.SIGTERM) == 0

    server = ServerProcess(data_dir).start()
    assert server.ok("SELECT groupArray(k) FROM keep") == b"[1,2]\n"
    server.ok(u64(3), params={"query": "INSERT INTO keep FORMAT RowBinary"})
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL

    server = ServerProcess(data_dir).start()
    try:
        assert server.ok("SELECT groupArray(k) FROM (SELECT k FROM keep ORDER BY k)") == b"[1,2,3]\n"
    finally:
        assert server.stop() == 0


def test_body_limit_and_spool_cleanup(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    server = ServerProcess(tmp_path / "data", ("--max-body-bytes", "1000", "--spool-dir", str(spool))).start()
    try:
        server.ok("CREATE TABLE s (k UInt64) ENGINE = MergeTree ORDER BY k")
        server.ok(u64(7) * 100, params={"query": "INSERT INTO s FORMAT RowBinary"})
        assert server.post(u64(7) * 5, params={"query": "INSERT INTO nope FORMAT RowBinary"}).status == 404
        assert list(spool.iterdir()) == []
        assert server.ok("SELECT count(), sum(k) FROM s") == b"100\t700\n"
        assert_error(server.post(b"x" * 1001), 413, 229, "QUERY_IS_TOO_LARGE")
        assert_error(server.post(b"x" * 1001, chunk_size=100), 413, 229, "QUERY_IS_TOO_LARGE")
    finally:
        assert server.stop() == 0
