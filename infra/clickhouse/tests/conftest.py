"""Shared fixtures: one server for the module-independent tests, on a free port."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import ServerProcess  # noqa: E402


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> ServerProcess:
    base = tmp_path_factory.mktemp("chdb")
    proc = ServerProcess(base / "data").start()
    yield proc
    assert proc.stop() == 0


@pytest.fixture()
def db(server) -> str:
    """A fresh database per test."""
    return server.fresh_database()

# The server package (for unit tests of its helpers).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
