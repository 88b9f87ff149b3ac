"""The study database's plumbing: pooled connections, one transaction per call, and the shared key-value bits.

``study.store.Store`` builds every participant-facing query on this. It is kept apart so the store reads as the
study's rules (sessions, answers, completion) while the how of talking to SQLite or PostgreSQL lives here: the
store's ``?`` SQL on SQLAlchemy, ``BEGIN IMMEDIATE`` transactions (SAVEPOINTs inside a ``batch()``), read-only
connections, an unreachable database turned into ``DatabaseUnavailable``, and the content-addressed blobs,
secrets and counters every host of a study shares.
"""
from __future__ import annotations

import logging
import re
import secrets
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Self

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from study.database import DatabaseUnavailable, database_url, is_sqlite, make_engine, named

log = logging.getLogger(__name__)

class Row(dict):
    """A result row read by column name or, like a DB-API tuple, by position."""

    def __getitem__(self, key: Any) -> Any:
        return list(self.values())[key] if isinstance(key, int) else super().__getitem__(key)


class Result:
    def __init__(self, result: Any) -> None:
        self._rows = [Row(r._mapping) for r in result] if result.returns_rows else []

    def fetchone(self) -> Row | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Row]:
        return self._rows

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)


class Conn:
    """A SQLAlchemy connection that takes the store's ``?`` SQL (see ``study.database.named``)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, args: tuple | list = ()) -> Result:
        stmt, params = named(sql, args)
        return Result(self.conn.execute(stmt, params))

    def executemany(self, sql: str, seq: Any) -> None:
        seq = list(seq)
        if seq:
            self.conn.execute(named(sql, seq[0])[0], [named(sql, a)[1] for a in seq])


@contextmanager
def available() -> Iterator[None]:
    """A database that cannot be reached becomes ``DatabaseUnavailable`` (a message for the participant)."""
    try:
        yield
    except (OperationalError, InterfaceError) as e:
        log.warning("database unavailable: %s", str(e).splitlines()[0][:200])
        raise DatabaseUnavailable() from e
    except DBAPIError as e:
        if e.connection_invalidated:
            raise DatabaseUnavailable() from e
        raise


class Database:
    """One study database (SQLite file or PostgreSQL URL, ``study.database``). Thread-safe: every call takes a
    pooled connection of its own, and Gradio runs handlers on worker threads."""

    def __init__(self, path: str | Path) -> None:
        target = str(path)
        self.url = target if re.match(r"^(sqlite|postgres)", target) else database_url("", target)
        self.path = Path(self.url.split("sqlite:///", 1)[1]) if is_sqlite(self.url) else None
        self.shared = not is_sqlite(self.url)  # a server: stimuli and uploads also go in as blobs
        # a write reads its session row locked: PostgreSQL's READ COMMITTED would let two transactions both see
        # "not completed" (two completion codes, an answer after completion); SQLite's BEGIN IMMEDIATE already
        # serialises every writer and has no FOR UPDATE
        self._for_update = "" if is_sqlite(self.url) else " FOR UPDATE"
        with available():
            self.engine = make_engine(self.url)
        self._lock = threading.RLock()
        self._batch: tuple[int, Any] | None = None  # (thread, connection) of a running batch()

    def close(self) -> None:
        self.engine.dispose()

    def _in_batch(self) -> Any:
        batch = self._batch
        return batch[1] if batch is not None and batch[0] == threading.get_ident() else None

    @contextmanager
    def _tx(self) -> Iterator[Conn]:
        """One transaction (SQLite: ``BEGIN IMMEDIATE``, the write lock up front, so writers never deadlock).

        Inside ``batch()`` each call becomes a SAVEPOINT instead, so a refused answer still rolls back
        only itself while the whole batch shares one commit.
        """
        batch = self._in_batch()
        if batch is not None:
            with batch.begin_nested():
                yield Conn(batch)
            return
        with available(), self.engine.begin() as conn:
            yield Conn(conn)

    @contextmanager
    def batch(self) -> Iterator[Self]:
        """One transaction around many calls (simulations, imports); every method keeps its checks.

        The app never uses this: a participant's answer is committed the moment it is given.
        """
        with self._lock, available(), self.engine.begin() as conn:
            self._batch = (threading.get_ident(), conn)
            try:
                yield self
            finally:
                self._batch = None

    def _query(self, sql: str, args: tuple = ()) -> list[Row]:
        batch = self._in_batch()
        if batch is not None:
            return Conn(batch).execute(sql, args).fetchall()
        with available(), self.engine.connect().execution_options(dressup_read=True) as conn:
            return Conn(conn).execute(sql, args).fetchall()

    @contextmanager
    def reading(self) -> Iterator[Any]:
        """A read-only SQLAlchemy connection (SQLite: a deferred BEGIN, so it never waits for a writer), for
        readers of whole tables such as ``study.push``."""
        with available(), self.engine.connect().execution_options(dressup_read=True) as conn:
            yield conn

    # --- blobs (stimuli and uploads, by content, readable by every host) ----------------------------------
    def put_blob(self, sha256: str, data: bytes) -> None:
        with self._tx() as c:
            c.execute("INSERT INTO blobs(sha256, data) VALUES (?, ?) ON CONFLICT DO NOTHING", (sha256, data))

    def blob(self, sha256: str) -> bytes | None:
        rows = self._query("SELECT data FROM blobs WHERE sha256 = ?", (sha256,))
        return bytes(rows[0]["data"]) if rows else None

    def secret(self, name: str) -> str:
        """A random secret kept in this database under ``name``: drawn on first use, the same ever after and
        for every host sharing the database (the Latin square's dealing, ``study.design``)."""
        with self._tx() as c:
            c.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
                      (f"secret:{name}", secrets.token_hex(32)))
            return str(c.execute("SELECT value FROM meta WHERE key = ?", (f"secret:{name}",)).fetchone()[0])

    # --- counters ---------------------------------------------------------------------------------
    def next_counter(self, name: str) -> int:
        """Atomically take the next value of a named counter (0, 1, 2, ...), e.g. the Latin-square row."""
        with self._tx() as c:  # the UPDATE locks the row: concurrent hosts take turns, none reads a stale value
            c.execute("INSERT INTO counters(name, value) VALUES (?, 0) ON CONFLICT DO NOTHING", (name,))
            value = c.execute("UPDATE counters SET value = value + 1 WHERE name = ? RETURNING value", (name,)).fetchone()[0]
        return int(value) - 1
