"""A throw-away PostgreSQL server: Debian's binaries, a temporary cluster, a free port.

The server runs as the ``postgres`` user (``initdb`` refuses root) from a temporary folder, listens on
127.0.0.1 only, trusts local connections (it lives for one run) and is stopped and removed at exit. Each
user gets a database of its own (``fresh_database``); ``Reader`` reads it with ``sqlite3``'s ``?`` style so
the same checks read both. ``available`` says why no server can run here (no PostgreSQL, no ``postgres``
user). Used by the multi-host tests (tests/postgres.py skips them when unavailable) and ``bench load --hosts``.
"""
from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from study.launcher import free_port

_lock = threading.Lock()
_server: "PostgresServer | None" = None


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def available() -> str | None:
    """None when a server can be started here, else why not."""
    if not _bin("initdb") or not _bin("pg_ctl"):
        return "PostgreSQL is not installed (apt-get install postgresql)"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "running as root without runuser to become the postgres user"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no 'postgres' user (installed by Debian's postgresql package)"
    return None


def _as_postgres(args: list[str], **kw) -> subprocess.CompletedProcess:
    cmd = ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


@dataclass
class PostgresServer:
    """One cluster: its data folder and the loopback port it listens on."""

    data: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        _as_postgres([_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.data / "server.log"), "-w", "-t", "60",
                      "-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=on", "start"])

    def stop(self, mode: str = "fast") -> None:
        _as_postgres([_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"])

    def fresh_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url().replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def server() -> PostgresServer:
    """The run's server (started on first use); RuntimeError saying why when none can run here."""
    global _server
    why = available()
    if why:
        raise RuntimeError(f"needs a PostgreSQL server: {why}")
    with _lock:
        if _server is None:
            root = Path(tempfile.mkdtemp(prefix="dressup-pg-"))
            os.chmod(root, 0o755)
            data = root / "data"
            data.mkdir()
            shutil.chown(data, "postgres", "postgres")
            _as_postgres([_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"])
            _server = PostgresServer(data, free_port())
            _server.start()
            atexit.register(_stop_quietly, _server, root)
        return _server


def _stop_quietly(srv: PostgresServer, root: Path) -> None:
    try:
        srv.stop("immediate")
    except Exception:  # noqa: BLE001 — already stopped
        pass
    shutil.rmtree(root, ignore_errors=True)


def wait_until_up(srv: PostgresServer, timeout: float = 30) -> None:
    """Return once ``srv`` accepts connections (after a restart); its last error after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(srv.url().replace("+psycopg", ""), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class _Row(tuple):
    """A row read by position or by column name, as ``sqlite3.Row`` is (so the tests' checks read both)."""

    names: tuple[str, ...] = ()

    def __getitem__(self, key):  # type: ignore[override]
        return tuple.__getitem__(self, self.names.index(key) if isinstance(key, str) else key)

    def keys(self) -> tuple[str, ...]:
        return self.names


class Reader:
    """A read-only connection with the DB-API ``?`` style of ``sqlite3``, for the checks of ``study.answer_checks``."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url.replace("+psycopg", ""), autocommit=True)

    def execute(self, sql: str, args: tuple = ()):
        cur = self.conn.execute(sql.replace("?", "%s"), args)
        names = tuple(d.name for d in cur.description or ())
        rows = [_Row(r) for r in cur.fetchall()]
        for r in rows:
            r.names = names
        return _Rows(rows)

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.conn.close()


class _Rows(list):
    """A query's rows, read with ``sqlite3``'s cursor methods."""

    def fetchone(self):
        return self[0] if self else None

    def fetchall(self):
        return list(self)
