"""Proof that no answer was lost: acknowledged answers, and read-only checks of the database against them.

An answer counts as acknowledged once the call that gave it returned (``Ack``); ``answer_until_stopped``
is a participant who records each one while the app may be killed under it, and ``missing_acks`` looks every
one up afterwards. ``db_rows``/``lost_rows`` compare whole answer tables before and after, ``integrity_check``
runs SQLite's own check, and ``assert_answers_stored`` checks one finished session's answers exactly. Every
check opens the database read-only, so it can never repair or hide damage. Used by the reliability tests and
the load and fault benchmarks.
"""
from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study.participant_client import LETTERS4, Answers, client, finish, give_preference, outputs, value

ANSWER_TABLES = ("sessions", "assignments", "preferences", "uploads", "shown", "relevance", "ratings", "ranks",
                 "feedback")


def _read_only(db_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)


def assert_answers_stored(conn: sqlite3.Connection, sid: str, a: Answers) -> None:
    """The database holds exactly these answers for this session and letter, nothing else."""
    rel = {(r["letter"], r["position"]): r["relevant"] for r in conn.execute(
        "SELECT letter, position, relevant FROM relevance WHERE session_id = ?", (sid,))}
    assert rel == {(x, j + 1): int(a.wear[x][j] == "Yes") for x in LETTERS4 for j in range(4)}
    ratings = dict(conn.execute("SELECT letter, rating FROM ratings WHERE session_id = ?", (sid,)).fetchall())
    assert ratings == a.ratings
    ranks = dict(conn.execute("SELECT letter, rank FROM ranks WHERE session_id = ?", (sid,)).fetchall())
    assert ranks == {x: i + 1 for i, x in enumerate(a.ranking)}
    fb = dict(conn.execute("SELECT letter, text FROM feedback WHERE session_id = ?", (sid,)).fetchall())
    assert fb == {**a.feedback, "": a.overall}
    pref = conn.execute("SELECT text FROM preferences WHERE session_id = ?", (sid,)).fetchone()
    assert pref[0] == a.text
    shown = conn.execute("SELECT COUNT(*) FROM shown WHERE session_id = ?", (sid,)).fetchone()[0]
    assert shown == 16


def db_rows(db_path: Path) -> dict[str, set[tuple]]:
    """Every row of every answer table (events excluded: they only grow), to prove later that none was lost
    or changed. Opened read-only, so a check can never repair or hide damage."""
    conn = _read_only(db_path)
    try:
        return {t: set(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in ANSWER_TABLES}
    finally:
        conn.close()


def lost_rows(before: dict[str, set[tuple]], after: dict[str, set[tuple]]) -> dict[str, set[tuple]]:
    """Rows present (exactly) before that are missing or changed after, per table; empty when nothing was lost."""
    return {t: rows - after.get(t, set()) for t, rows in before.items() if rows - after.get(t, set())}


def integrity_check(db_path: Path) -> str:
    """SQLite's own full check of the file ('ok' when sound), read-only: it opens the database as the next
    start of the app would, after a crash, and reads every page."""
    conn = _read_only(db_path)
    try:
        return "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check").fetchall())
    finally:
        conn.close()


@dataclass(frozen=True)
class Ack:
    """One answer the server acknowledged (the call returned without error): it must be in the database."""

    session_id: str
    kind: str  # preference | wear | rate | feedback | rank | done
    letter: str = ""
    value: Any = None


def answer_until_stopped(url: str, k: int, acks: list[Ack], stop: threading.Event) -> None:
    """One participant through the API who records every acknowledged answer in ``acks`` and goes on with
    new sessions until ``stop`` is set or the server dies under them (then it simply returns)."""
    try:
        while not stop.is_set():
            c = client(url)
            a = Answers.make(k, tag=f"-{len(acks)}")
            sid = value(outputs(c.predict(api_name="/consent"))["link"])
            give_preference(c, a.text)
            acks.append(Ack(sid, "preference", value=a.text))
            for x in LETTERS4:
                if stop.is_set():
                    return
                c.predict(*a.wear[x], api_name=f"/wear_{x}")
                acks.append(Ack(sid, "wear", x, tuple(a.wear[x])))
                c.predict(a.ratings[x], api_name=f"/rate_{x}")
                acks.append(Ack(sid, "rate", x, a.ratings[x]))
                c.predict(a.feedback[x], api_name=f"/feedback_{x}")
                acks.append(Ack(sid, "feedback", x, a.feedback[x]))
            c.predict(*a.ranking[:3], api_name="/rank")
            acks.append(Ack(sid, "rank", value=tuple(a.ranking)))
            done = finish(c, a)
            acks.append(Ack(sid, "done", value=value(done["done"]).split("**")[1]))
    except Exception:  # noqa: BLE001 — the server was killed under this participant, as intended
        return


def _stored(conn: sqlite3.Connection, ack: Ack) -> bool:
    """Whether the database holds ``ack`` exactly as acknowledged."""
    sid, x = ack.session_id, ack.letter
    if ack.kind == "preference":
        row = conn.execute("SELECT text FROM preferences WHERE session_id = ?", (sid,)).fetchone()
        return row is not None and row[0] == ack.value
    if ack.kind == "wear":
        rel = dict(conn.execute("SELECT position, relevant FROM relevance WHERE session_id = ? AND letter = ?",
                                (sid, x)).fetchall())
        return rel == {j + 1: int(m == "Yes") for j, m in enumerate(ack.value)}
    if ack.kind == "rate":
        row = conn.execute("SELECT rating FROM ratings WHERE session_id = ? AND letter = ?", (sid, x)).fetchone()
        return row is not None and row[0] == ack.value
    if ack.kind == "feedback":
        row = conn.execute("SELECT text FROM feedback WHERE session_id = ? AND letter = ?", (sid, x)).fetchone()
        return row is not None and row[0] == ack.value
    if ack.kind == "rank":
        ranks = dict(conn.execute("SELECT letter, rank FROM ranks WHERE session_id = ?", (sid,)).fetchall())
        return ranks == {letter: i + 1 for i, letter in enumerate(ack.value)}
    row = conn.execute("SELECT status, completion_code FROM sessions WHERE session_id = ?", (sid,)).fetchone()
    return row is not None and tuple(row) == ("completed", ack.value)


def missing_acks(db_path: Path, acks: list[Ack]) -> list[Ack]:
    """The acknowledged answers the database does not hold exactly as acknowledged."""
    conn = _read_only(db_path)
    try:
        return [ack for ack in acks if not _stored(conn, ack)]
    finally:
        conn.close()
