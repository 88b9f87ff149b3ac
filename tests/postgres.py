"""A throw-away PostgreSQL server for the tests: ``study.pg_cluster``'s, or a skip saying why there is none.

The server (Debian's binaries, a temporary cluster on a free loopback port, stopped at exit) lives in
``study/pg_cluster.py`` so the benchmarks share it; this module re-exports it for the tests and turns "no
PostgreSQL here" into a skip with the reason. Each test gets a database of its own (``fresh_database``);
``.ci/run`` always installs PostgreSQL.
"""
from __future__ import annotations

import pytest

from study import pg_cluster
from study.pg_cluster import PostgresServer, Reader, available, wait_until_up  # noqa: F401 — re-exported


def server() -> PostgresServer:
    """The test run's server (started on first use); skips the calling test when none can run here."""
    why = available()
    if why:
        pytest.skip(f"needs a PostgreSQL server: {why}")
    return pg_cluster.server()
